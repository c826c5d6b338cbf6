//! Exact sizes before any content is read, so that no tool sees a file shrink or grow
//! after `stat`. A base64 part's size follows from its last bytes and its line width,
//! learned with its message directory; a text body's (its charset conversion changes it)
//! from the body itself, rendered when the file is first looked up, stat'ed or opened,
//! never for a walk that only passes by (`find`, `grep -r --include=message.eml`).
//!
//! The server's `BINARY.SIZE` alone is never taken as exact: Dovecot 2.3 answers sizes
//! short of the part (even below zero) for a part followed by a transfer-encoded one in
//! a larger message, while `BINARY[part]` itself is right. A base64 part's `BINARY.SIZE`
//! is exact when it fits the part's stored size in lines of 76 (nearly every part:
//! checked without a request); otherwise the part's last bytes are asked for, and it is
//! exact where its lines agree (without BINARY, from its lines alone). A
//! quoted-printable part, or a base64 part whose two answers differ, shows
//! `BINARY.SIZE` (or the lines') as an estimate, and is fetched when looked up if it is
//! small (`exact_file`), or read with direct I/O and exact once read.

use std::collections::HashMap;
use std::sync::Arc;

use super::inodes::{MessageRef, Node};
use super::walk::Walk;
use super::{Fs, FsResult};
use crate::mime::{self, Content, Entry, EntryKind, FileSpec};
use crate::store::{
    ByteRange, MailboxId, MessageStructure, PartItem, PartValue, Section, Transfer,
    TransferEncoding, Uid, UidValidity,
};

/// Every file spec of a layout, nested message directories included.
fn specs_mut(entries: &mut [Entry]) -> Vec<&mut FileSpec> {
    let mut out = Vec::new();
    for entry in entries {
        match &mut entry.kind {
            EntryKind::File(spec) => out.push(spec),
            EntryKind::Message { entries, .. } => out.extend(specs_mut(entries)),
        }
    }
    out
}

/// Messages whose text bodies come in one request when text files are stat'ed in order.
const TEXT_READ_AHEAD: usize = 64;
/// Text bodies larger than this (estimated) are not read ahead.
const TEXT_READ_AHEAD_BYTES: u64 = 64 << 10;

/// A decoded part whose size is only an estimate (quoted-printable, base64 in lines of
/// uneven width, or a size the server misstated) is fetched whole when it is looked up or
/// stat'ed, as a text body is, if it is stored in at most this many bytes: `tar` and
/// `rsync`, which trust `stat`, then see its exact size. Larger ones stay estimates
/// until read, so that `ls -l` never fetches a large attachment.
const DECODED_AT_LOOKUP: u64 = 1 << 20;

/// How much of the end of a base64 part tells its decoded size (two full lines and more).
const BASE64_TAIL: u64 = 240;

/// The request for the end of base64 part `spec` (its decoded size follows from it).
fn tail_of(spec: &FileSpec) -> PartItem {
    let len = spec.stored_size.min(BASE64_TAIL);
    PartItem::Bytes {
        section: spec.section.clone(),
        transfer: Transfer::Encoded,
        range: Some(ByteRange {
            offset: spec.stored_size - len,
            len,
        }),
    }
}

/// What to ask first for `spec` to know its size: with BINARY, `BINARY.SIZE` (the same
/// item for every message of a batch, so one command serves them all); without, the end
/// of a base64 part.
fn wanted(spec: &FileSpec, binary: bool) -> Option<PartItem> {
    if spec.exact_size {
        return None;
    }
    match &spec.content {
        Content::Decoded(_) if binary => Some(PartItem::DecodedSize(spec.section.clone())),
        Content::Decoded(TransferEncoding::Base64) if spec.stored_size > 0 => Some(tail_of(spec)),
        Content::Raw | Content::Decoded(_) | Content::Text { .. } => None,
    }
}

/// The layout of a base64 part stored in `octets` bytes that decodes to `decoded` bytes,
/// if its lines are 76 characters wide (what nearly every mailer writes, RFC 2045 §6.8),
/// each ended by CRLF, the last one's CRLF counted or not. `None` when `decoded` does not
/// fit: a `BINARY.SIZE` that fits is taken as exact; one that does not is checked against
/// the part's last bytes.
fn lines_of_76(octets: u64, decoded: u64) -> Option<mime::Base64Lines> {
    const WIDTH: u64 = 76;
    let chars = decoded.div_ceil(3) * 4;
    let lines = chars.div_ceil(WIDTH).max(1);
    let bare = chars + 2 * (lines - 1);
    (octets == bare || octets == bare + 2).then_some(mime::Base64Lines {
        width: WIDTH,
        stride: WIDTH + 2,
        decoded_len: decoded,
    })
}

/// What the answers to `wanted` say of a part's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Learned {
    /// Its lines, and `BINARY.SIZE` if asked, agree: the size is exact.
    Exact(Option<mime::Base64Lines>, u64),
    /// A size to show until the part is read.
    Estimate(u64),
    /// Nothing new.
    Nothing,
}

/// Sets what `learned` says of `spec`'s size.
fn settle(spec: &mut FileSpec, learned: Learned) {
    match learned {
        Learned::Exact(lines, size) => {
            spec.size_hint = size;
            spec.exact_size = true;
            spec.lines = lines;
        }
        Learned::Estimate(size) => spec.size_hint = size,
        Learned::Nothing => {}
    }
}

/// The size a part's answers give: exact where its base64 lines show it and the server's
/// `BINARY.SIZE` (`told`, when asked) agrees, an estimate otherwise. A `told` larger than
/// the part's stored size (`stored`) is ignored: decoding never makes a part longer, and
/// Dovecot 2.3 has answered sizes below zero (2^64 less a little), which the kernel would
/// refuse as a file's size.
fn learned(lines: Option<mime::Base64Lines>, told: Option<u64>, stored: u64) -> Learned {
    let told = told.filter(|&size| size <= stored);
    match (lines, told) {
        (Some(lines), None) => Learned::Exact(Some(lines), lines.decoded_len),
        (Some(lines), Some(told)) if told == lines.decoded_len => Learned::Exact(Some(lines), told),
        (Some(lines), Some(_)) => Learned::Estimate(lines.decoded_len),
        (None, Some(told)) => Learned::Estimate(told),
        (None, None) => Learned::Nothing,
    }
}

/// The request that fetches a small text body whose size is not known yet, if `spec` is one.
fn small_text(spec: &FileSpec, binary: bool) -> Option<PartItem> {
    let small = spec.size_hint <= TEXT_READ_AHEAD_BYTES;
    let text = matches!(spec.content, Content::Text { .. });
    (text && !spec.exact_size && small).then(|| PartItem::Bytes {
        section: spec.section.clone(),
        transfer: if binary {
            Transfer::Decoded
        } else {
            Transfer::Encoded
        },
        range: None,
    })
}

impl Fs {
    /// Makes the sizes of freshly built layouts (of messages of `mailbox`) exact, in one
    /// request for all of them. What cannot be known stays an estimate (and is looked at
    /// again by `exact_file`); a failed request is logged, not an error. The small text
    /// bodies of `texts_of` (a message looked at by itself, not passed by in a walk) come
    /// in the same request and are kept rendered: `cat body.txt` of a message not seen
    /// before then costs two requests, its structure and this one.
    pub(super) fn exact_sizes(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        layouts: &mut [(Uid, Vec<Entry>)],
        texts_of: Option<Uid>,
        structures: &[MessageStructure],
    ) {
        let binary = self.store.capabilities().binary;
        let mut texts: HashMap<(Uid, PartItem), FileSpec> = HashMap::new();
        let asked: Vec<(Uid, Vec<PartItem>)> = layouts
            .iter_mut()
            .map(|(uid, entries)| {
                let alone = (texts_of == Some(*uid)).then(|| MessageRef {
                    mailbox: mailbox.clone(),
                    validity,
                    uid: *uid,
                });
                let mut items = Vec::new();
                for spec in specs_mut(entries) {
                    items.extend(wanted(spec, binary));
                    let text = alone
                        .as_ref()
                        .and_then(|m| self.text_to_fetch(m, spec, binary));
                    if let Some(item) = text {
                        texts.insert((*uid, item.clone()), spec.clone());
                        items.push(item);
                    }
                }
                (*uid, items)
            })
            .filter(|(_, items)| !items.is_empty())
            .collect();
        if asked.is_empty() {
            return;
        }
        let answers = match self
            .content
            .fetch_parts(mailbox, validity, &asked, structures)
        {
            Ok(answers) => answers,
            Err(e) => {
                tracing::warn!(mailbox = %mailbox, error = %e, "could not learn exact sizes; estimates shown");
                return;
            }
        };
        let mut by_item: HashMap<(Uid, PartItem), PartValue> = answers
            .into_iter()
            .map(|(uid, item, value)| ((uid, item), value))
            .collect();
        for (key, spec) in texts {
            if let Some(PartValue::Bytes(bytes)) = by_item.remove(&key) {
                let m = MessageRef {
                    mailbox: mailbox.clone(),
                    validity,
                    uid: key.0,
                };
                self.keep_text(&m, &spec, &bytes, binary);
            }
        }
        // Base64 parts whose BINARY.SIZE does not fit lines of 76: their ends are asked
        // for next, with the size the server told.
        let mut doubtful: HashMap<(Uid, Section), u64> = HashMap::new();
        for (uid, entries) in layouts.iter_mut() {
            for spec in specs_mut(entries) {
                let Some(item) = wanted(spec, binary) else {
                    continue;
                };
                let (lines, told) = match by_item.remove(&(*uid, item)) {
                    Some(PartValue::Size(told)) => (None, Some(told)),
                    Some(PartValue::Bytes(tail)) => {
                        (mime::base64_lines(spec.stored_size, &tail), None)
                    }
                    None => continue,
                };
                let base64 = spec.content == Content::Decoded(TransferEncoding::Base64);
                let lines = match (lines, told) {
                    (None, Some(told)) if base64 && spec.stored_size > 0 => {
                        match lines_of_76(spec.stored_size, told) {
                            Some(lines) => Some(lines),
                            None => {
                                doubtful.insert((*uid, spec.section.clone()), told);
                                continue;
                            }
                        }
                    }
                    _ => lines,
                };
                settle(spec, learned(lines, told, spec.stored_size));
            }
        }
        if !doubtful.is_empty() {
            self.check_doubtful_sizes(mailbox, validity, layouts, &doubtful, structures);
        }
    }

    /// For each base64 part of `doubtful` (with the `BINARY.SIZE` the server told), its
    /// last bytes, in one request: exact where they agree with the server, an estimate
    /// where they do not (or cannot be had).
    fn check_doubtful_sizes(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        layouts: &mut [(Uid, Vec<Entry>)],
        doubtful: &HashMap<(Uid, Section), u64>,
        structures: &[MessageStructure],
    ) {
        let mut asked: Vec<(Uid, Vec<PartItem>)> = Vec::new();
        for (uid, entries) in layouts.iter_mut() {
            let items: Vec<PartItem> = specs_mut(entries)
                .into_iter()
                .filter(|spec| doubtful.contains_key(&(*uid, spec.section.clone())))
                .map(|spec| tail_of(spec))
                .collect();
            if !items.is_empty() {
                asked.push((*uid, items));
            }
        }
        let answers = self
            .content
            .fetch_parts(mailbox, validity, &asked, structures)
            .unwrap_or_else(|e| {
                tracing::debug!(mailbox = %mailbox, error = %e, "the ends of base64 parts: not fetched; their sizes stay estimates");
                Vec::new()
            });
        let mut tails: HashMap<(Uid, PartItem), PartValue> = answers
            .into_iter()
            .map(|(uid, item, value)| ((uid, item), value))
            .collect();
        for (uid, entries) in layouts.iter_mut() {
            for spec in specs_mut(entries) {
                let Some(&told) = doubtful.get(&(*uid, spec.section.clone())) else {
                    continue;
                };
                let lines = match tails.remove(&(*uid, tail_of(spec))) {
                    Some(PartValue::Bytes(tail)) => mime::base64_lines(spec.stored_size, &tail),
                    _ => None,
                };
                if let Some(lines) = lines.filter(|l| l.decoded_len != told) {
                    tracing::debug!(mailbox = %mailbox, uid = uid.0, section = %spec.section, told, lines = lines.decoded_len, "the server's BINARY.SIZE and the part's base64 lines disagree: its size stays an estimate until it is read");
                }
                settle(spec, learned(lines, Some(told), spec.stored_size));
            }
        }
    }

    /// The small text bodies of `message` and of the messages after it whose layouts are
    /// known, fetched in one request and kept rendered: when text files are stat'ed one
    /// message after another (`ls -lR`, `rsync`), their sizes come 64 messages at a time.
    /// Best effort: a failure leaves each to be fetched alone.
    fn render_text_ahead(&self, message: &MessageRef) {
        let binary = self.store.capabilities().binary;
        let following = self.metadata.following(message, TEXT_READ_AHEAD, |_| true);
        let mut specs: HashMap<(Uid, PartItem), FileSpec> = HashMap::new();
        let mut asked: Vec<(Uid, Vec<PartItem>)> = Vec::new();
        for meta in following {
            let m = MessageRef {
                uid: meta.uid,
                ..message.clone()
            };
            let Some(layout) = self.metadata.layout(&m) else {
                continue;
            };
            let mut entries = (*layout).clone();
            let mut items = Vec::new();
            for spec in specs_mut(&mut entries) {
                let Some(item) = self.text_to_fetch(&m, spec, binary) else {
                    continue;
                };
                specs.insert((meta.uid, item.clone()), spec.clone());
                items.push(item);
            }
            if !items.is_empty() {
                asked.push((meta.uid, items));
            }
        }
        if asked.len() < 2 {
            return;
        }
        let answers =
            match self
                .content
                .fetch_parts(&message.mailbox, message.validity, &asked, &[])
            {
                Ok(answers) => answers,
                Err(e) => {
                    tracing::debug!(error = %e, "text bodies read ahead: not fetched");
                    return;
                }
            };
        for (uid, item, value) in answers {
            let (Some(spec), PartValue::Bytes(bytes)) = (specs.get(&(uid, item)), value) else {
                continue;
            };
            let m = MessageRef {
                uid,
                ..message.clone()
            };
            self.keep_text(&m, spec, &bytes, binary);
        }
    }

    /// The request for `spec`'s body, if it is a small text body of `message` whose size
    /// is not known and that is not kept rendered already.
    fn text_to_fetch(
        &self,
        message: &MessageRef,
        spec: &FileSpec,
        binary: bool,
    ) -> Option<PartItem> {
        small_text(spec, binary).filter(|_| {
            self.content
                .rendered_len(message, &spec.section, &spec.content)
                .is_none()
        })
    }

    /// Keeps a text body fetched whole (decoded by the server with `binary`) rendered.
    fn keep_text(&self, message: &MessageRef, spec: &FileSpec, bytes: &[u8], binary: bool) {
        let rendered = if binary {
            mime::render_decoded(&spec.content, bytes)
        } else {
            mime::render(&spec.content, bytes)
        };
        self.content
            .keep_rendered(message, &spec.section, &spec.content, Arc::new(rendered));
    }

    /// A file node with its exact size: a text body is rendered now (once; the rendering
    /// is kept), and so is a decoded part whose size is still an estimate, up to
    /// `DECODED_AT_LOOKUP` stored bytes (a failure to fetch it leaves the estimate),
    /// unless a read learned its size. Other nodes are returned as they are.
    pub(super) fn exact_file(&self, node: Node) -> FsResult<Node> {
        let Node::File {
            message,
            dir,
            name,
            mut spec,
            mtime,
            known_size,
        } = node
        else {
            return Ok(node);
        };
        let text = matches!(spec.content, Content::Text { .. });
        let small_decoded =
            matches!(spec.content, Content::Decoded(_)) && spec.stored_size <= DECODED_AT_LOOKUP;
        // A size learned from a read is exact already: nothing to fetch again.
        if !spec.exact_size && known_size.is_none() && (text || small_decoded) {
            if text {
                let previous = self.metadata.previous_uid(&message);
                let walking =
                    self.walks
                        .visit(Walk::TextSizes, &message.mailbox, message.uid, previous);
                if walking
                    && self
                        .content
                        .rendered_len(&message, &spec.section, &spec.content)
                        .is_none()
                {
                    self.render_text_ahead(&message);
                }
            }
            let binary = self.store.capabilities().binary;
            match self
                .content
                .rendered(&message, &spec.section, &spec.content, binary)
            {
                Ok(data) => {
                    spec.size_hint = data.len() as u64;
                    spec.exact_size = true;
                }
                // A text body's size is its rendering's: without it, the lookup fails.
                Err(e) if text => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, section = %spec.section, "a part's exact size: not fetched; its estimate stays");
                }
            }
        }
        Ok(Node::File {
            message,
            dir,
            name,
            spec,
            mtime,
            known_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(decoded_len: u64) -> Option<mime::Base64Lines> {
        Some(mime::Base64Lines {
            width: 76,
            stride: 78,
            decoded_len,
        })
    }

    #[test]
    fn a_base64_part_is_exact_when_its_lines_and_binary_size_agree() {
        assert_eq!(
            learned(lines(100), Some(100), 140),
            Learned::Exact(lines(100), 100)
        );
    }

    #[test]
    fn without_binary_a_base64_parts_lines_are_its_size() {
        assert_eq!(
            learned(lines(100), None, 140),
            Learned::Exact(lines(100), 100)
        );
    }

    /// Dovecot 2.3 answered 99,962 for a 100,000-byte part followed by another base64 part.
    #[test]
    fn a_binary_size_the_lines_contradict_is_only_an_estimate() {
        assert_eq!(
            learned(lines(100_000), Some(99_962), 136_844),
            Learned::Estimate(100_000)
        );
    }

    /// A quoted-printable part: nothing to check `BINARY.SIZE` against.
    #[test]
    fn binary_size_alone_is_an_estimate() {
        assert_eq!(
            learned(None, Some(15_954), 93_600),
            Learned::Estimate(15_954)
        );
        assert_eq!(learned(None, None, 93_600), Learned::Nothing);
    }

    /// 100,000 bytes in lines of 76 are 1,755 lines, 133,336 characters and 1,754 CRLFs.
    #[test]
    fn a_binary_size_that_fits_lines_of_76_is_taken_without_a_request() {
        let fits = |octets, decoded| lines_of_76(octets, decoded).map(|l| l.decoded_len);
        assert_eq!(fits(136_844, 100_000), Some(100_000));
        assert_eq!(fits(136_846, 100_000), Some(100_000), "a last CRLF counted");
        assert_eq!(fits(136_844, 99_962), None, "what Dovecot 2.3 answered");
        assert_eq!(fits(136_848, 100_000), None);
        assert_eq!(fits(16, 10), Some(10), "one short line");
        assert_eq!(fits(76, 57), Some(57), "one full line");
        assert_eq!(fits(154, 114), Some(114), "two full lines");
    }

    /// Dovecot 2.3 answered 18446744073709491606 for a 3,600-byte part.
    #[test]
    fn a_binary_size_above_the_stored_size_is_ignored() {
        assert_eq!(
            learned(None, Some(18_446_744_073_709_491_606), 3_600),
            Learned::Nothing
        );
        assert_eq!(
            learned(lines(100), Some(u64::MAX), 140),
            Learned::Exact(lines(100), 100)
        );
    }
}
