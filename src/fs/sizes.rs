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
//! `BINARY.SIZE` (or the lines') as an estimate until it is looked up or stat'ed
//! (`exact_file`): then a small one is fetched, and of a large one a few bytes around its
//! end (with BINARY; without, it is read with direct I/O and exact once read).

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
/// `rsync`, which trust `stat`, then see its exact size. Of a larger one only a few bytes
/// are fetched (`decoded_end`), so that `ls -l` never fetches a large attachment.
const DECODED_AT_LOOKUP: u64 = 1 << 20;

/// Whether `kept` (a layout's) shows the same part, with the same content, as `spec`.
fn is_same_part(kept: &FileSpec, spec: &FileSpec) -> bool {
    kept.section == spec.section && kept.content == spec.content
}

/// The file spec of `entries` (nested message directories included) for the same part
/// and content as `spec`.
fn same_part<'a>(entries: &'a [Entry], spec: &FileSpec) -> Option<&'a FileSpec> {
    entries.iter().find_map(|entry| match &entry.kind {
        EntryKind::File(kept) => is_same_part(kept, spec).then_some(kept),
        EntryKind::Message { entries, .. } => same_part(entries, spec),
    })
}

/// How many one-byte ranges of a part one request asks for, to find where it ends when
/// its `BINARY.SIZE` was wrong (`decoded_end`)...
const SIZE_PROBES: u64 = 63;
/// ... until the end is known to lie in at most this many bytes, which are then fetched.
const PROBED_SPAN: u64 = 64 << 10;
/// Requests enough for any part: (64 KiB × 64^9 is more than 2^64).
const ROUNDS_MOST: usize = 10;

/// How much of the end of a base64 part tells its decoded size (two full lines and more).
const BASE64_TAIL: u64 = 240;

/// The request for the end of base64 part `spec` (its decoded size follows from it).
fn tail_of(spec: &FileSpec) -> PartItem {
    last_bytes(spec, BASE64_TAIL)
}

/// The request for the last `most` bytes (as stored) of part `spec`.
fn last_bytes(spec: &FileSpec, most: u64) -> PartItem {
    let len = spec.stored_size.min(most);
    PartItem::Bytes {
        section: spec.section.clone(),
        transfer: Transfer::Encoded,
        range: Some(ByteRange {
            offset: spec.stored_size - len,
            len,
        }),
    }
}

/// How much of the end of a base64 part shows its padding (`==`, `=` or none) whatever
/// line break ends it.
const PADDING_TAIL: u64 = 8;

/// The request for the last bytes of base64 part `spec`, which show its padding.
fn padding_of(spec: &FileSpec) -> PartItem {
    last_bytes(spec, PADDING_TAIL)
}

/// How many `=` end the base64 text `tail` ends (line breaks and spaces after them
/// aside); `None` if it does not end in base64.
fn padding(tail: &[u8]) -> Option<u64> {
    let end = tail.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    let body = &tail[..end];
    let last = *body.last()?;
    if !(last.is_ascii_alphanumeric() || last == b'+' || last == b'/' || last == b'=') {
        return None;
    }
    Some(
        body.iter()
            .rev()
            .take(2)
            .take_while(|&&b| b == b'=')
            .count() as u64,
    )
}

/// What to ask first for `spec` to know its size: with BINARY, `BINARY.SIZE` (the same
/// item for every message of a batch, so one command serves them all), and of a base64
/// part also its last bytes (`padding_of`); without BINARY, the end of a base64 part.
fn wanted(spec: &FileSpec, binary: bool) -> Vec<PartItem> {
    if spec.exact_size {
        return Vec::new();
    }
    match &spec.content {
        Content::Decoded(TransferEncoding::Base64) if binary && spec.stored_size > 0 => vec![
            PartItem::DecodedSize(spec.section.clone()),
            padding_of(spec),
        ],
        Content::Decoded(_) if binary => vec![PartItem::DecodedSize(spec.section.clone())],
        Content::Decoded(TransferEncoding::Base64) if spec.stored_size > 0 => vec![tail_of(spec)],
        Content::Raw | Content::Decoded(_) | Content::Text { .. } => Vec::new(),
    }
}

/// The layout of a base64 part stored in `octets` bytes that decodes to `decoded` bytes
/// and ends with `pad` `=`, if its lines are 76 characters wide (what nearly every mailer
/// writes, RFC 2045 §6.8), each ended by CRLF, the last one's CRLF counted or not. `None`
/// when `decoded` does not fit: a `BINARY.SIZE` that fits is taken as exact; one that does
/// not is checked against the part's last bytes. The padding counts: lines alone cannot
/// tell n from n - 1 where n is a multiple of 3, and Dovecot 2.3.19 answers n - 1 for a
/// part of n ≢ 1 (mod 3) bytes followed by another.
fn lines_of_76(octets: u64, decoded: u64, pad: u64) -> Option<mime::Base64Lines> {
    const WIDTH: u64 = 76;
    // Base64 is longer than what it encodes; a larger `decoded` (Dovecot 2.3 has answered
    // sizes below zero) cannot fit, and must not overflow below.
    if decoded >= octets || (3 - decoded % 3) % 3 != pad {
        return None;
    }
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

/// Where a decoded part stored in `stored` bytes ends, from `fetch`, which answers how
/// many bytes the server sends for each range it is given (one request each call): first
/// one byte each side of `estimate`'s end, then `SIZE_PROBES` one-byte ranges per round
/// across what is left, then the last `PROBED_SPAN` bytes at most (see `decoded_end`).
/// An error when a request fails or the answers contradict each other or tell nothing.
fn find_end(
    estimate: u64,
    stored: u64,
    mut fetch: impl FnMut(&[ByteRange]) -> Result<Vec<(ByteRange, u64)>, String>,
) -> Result<u64, String> {
    // The part ends in [low, high]: decoding never makes it longer than it is stored.
    let (mut low, mut high) = (0, stored);
    let mut ranges = vec![ByteRange {
        offset: estimate.min(stored).saturating_sub(1),
        len: 2,
    }];
    // Each round leaves a 64th of the span at most (or fetches it): more rounds than that
    // takes are a server that does not keep to what it was asked.
    for _ in 0..ROUNDS_MOST {
        let before = (low, high);
        for (range, got) in fetch(&ranges)? {
            // `got` bytes from `offset`: the part ends there when fewer came than were
            // asked for, and after them otherwise.
            if got < range.len {
                high = high.min(range.offset + got);
            }
            if got > 0 || range.offset == 0 {
                low = low.max(range.offset + got.min(range.len));
            }
        }
        if low > high {
            return Err(format!(
                "the answers put the end after {low} and at most at {high}"
            ));
        }
        if low == high {
            return Ok(low);
        }
        if (low, high) == before {
            return Err(format!("the answers left the end between {low} and {high}"));
        }
        let span = high - low;
        ranges = if span <= PROBED_SPAN {
            vec![ByteRange {
                offset: low,
                len: span + 1,
            }]
        } else {
            (1..=SIZE_PROBES)
                .map(|k| ByteRange {
                    offset: low
                        + (u128::from(span) * u128::from(k) / u128::from(SIZE_PROBES + 1)) as u64,
                    len: 1,
                })
                .collect()
        };
    }
    Err(format!(
        "{ROUNDS_MOST} requests left the end between {low} and {high}"
    ))
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
                let mut items = wanted(spec, binary).into_iter();
                let Some(item) = items.next() else {
                    continue;
                };
                let (lines, told) = match by_item.remove(&(*uid, item)) {
                    Some(PartValue::Size(told)) => (None, Some(told)),
                    Some(PartValue::Bytes(tail)) => {
                        (mime::base64_lines(spec.stored_size, &tail), None)
                    }
                    None => continue,
                };
                let pad = items
                    .next()
                    .and_then(|item| match by_item.remove(&(*uid, item)) {
                        Some(PartValue::Bytes(tail)) => padding(&tail),
                        _ => None,
                    });
                let base64 = spec.content == Content::Decoded(TransferEncoding::Base64);
                let lines = match (lines, told) {
                    (None, Some(told)) if base64 && spec.stored_size > 0 => {
                        match pad.and_then(|pad| lines_of_76(spec.stored_size, told, pad)) {
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

    /// The exact size of a large decoded part whose size is an estimate (with BINARY), from
    /// the server's decoding of a few bytes of it, never the whole part. First one byte
    /// before the estimate's end and one after: when the estimate is right (nearly always)
    /// one byte comes back, and that is all. Otherwise (Dovecot 2.3 answers `BINARY.SIZE`s
    /// short of a quoted-printable part followed by an encoded one, even below zero), the
    /// part's end lies between two offsets, and one request of `SIZE_PROBES` one-byte
    /// ranges narrows that to a 64th, until at most `PROBED_SPAN` bytes are left to fetch:
    /// two or three requests and a few KiB for a part of a few MB. `None` when the request
    /// fails or the answers contradict each other: the estimate stays, and the part is read
    /// with direct I/O.
    fn decoded_end(&self, message: &MessageRef, spec: &FileSpec) -> Option<u64> {
        let fetch = |ranges: &[ByteRange]| -> Result<Vec<(ByteRange, u64)>, String> {
            let items: Vec<PartItem> = ranges
                .iter()
                .map(|&range| PartItem::Bytes {
                    section: spec.section.clone(),
                    transfer: Transfer::Decoded,
                    range: Some(range),
                })
                .collect();
            // Through the content layer: offline, a message held whole answers.
            let answers = self
                .content
                .fetch_parts(
                    &message.mailbox,
                    message.validity,
                    &[(message.uid, items)],
                    &[],
                )
                .map_err(|e| e.to_string())?;
            Ok(answers
                .into_iter()
                .filter_map(|(_, item, value)| match (item, value) {
                    (
                        PartItem::Bytes {
                            range: Some(range), ..
                        },
                        PartValue::Bytes(bytes),
                    ) => Some((range, bytes.len() as u64)),
                    _ => None,
                })
                .collect())
        };
        match find_end(spec.size_hint, spec.stored_size, fetch) {
            Ok(size) => Some(size),
            Err(why) => {
                tracing::debug!(uid = message.uid.0, section = %spec.section, estimate = spec.size_hint, why, "a part's end not found; its estimate stays until it is read");
                None
            }
        }
    }

    /// The exact size `remember_exact` kept for `spec`'s part, if any.
    fn remembered_exact(&self, message: &MessageRef, spec: &FileSpec) -> Option<u64> {
        let layout = self.metadata.layout(message)?;
        let kept = same_part(&layout, spec)?;
        kept.exact_size.then_some(kept.size_hint)
    }

    /// Keeps the exact size `spec` now has in its message's layout, so that the next
    /// `stat` or open of the file, or a lookup after the kernel forgot it, does not ask
    /// again.
    fn remember_exact(&self, message: &MessageRef, spec: &FileSpec) {
        let Some(layout) = self.metadata.layout(message) else {
            return;
        };
        let mut entries = (*layout).clone();
        for kept in specs_mut(&mut entries) {
            if is_same_part(kept, spec) {
                settle(kept, Learned::Exact(kept.lines, spec.size_hint));
            }
        }
        self.metadata
            .insert_layout(message.clone(), Arc::new(entries));
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
        let decoded = matches!(spec.content, Content::Decoded(_));
        let small_decoded = decoded && spec.stored_size <= DECODED_AT_LOOKUP;
        let binary = self.store.capabilities().binary;
        // A size learned from a read is exact already: nothing to fetch again.
        let mut estimate = !spec.exact_size && known_size.is_none();
        if estimate && decoded {
            // The node the kernel holds keeps the estimate it was made with; what was
            // learned since is in the layout. A large part's end is asked for.
            let remembered = self.remembered_exact(&message, &spec);
            let found = remembered.or_else(|| {
                (!small_decoded && binary)
                    .then(|| self.decoded_end(&message, &spec))
                    .flatten()
            });
            if let Some(size) = found {
                let lines = spec.lines;
                settle(&mut spec, Learned::Exact(lines, size));
                if remembered.is_none() {
                    self.remember_exact(&message, &spec);
                }
                estimate = false;
            }
        }
        if estimate && (text || small_decoded) {
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
        let pad = |decoded: u64| (3 - decoded % 3) % 3;
        let fits =
            |octets, decoded| lines_of_76(octets, decoded, pad(decoded)).map(|l| l.decoded_len);
        assert_eq!(fits(136_844, 100_000), Some(100_000));
        assert_eq!(fits(136_846, 100_000), Some(100_000), "a last CRLF counted");
        assert_eq!(fits(136_844, 99_962), None, "what Dovecot 2.3 answered");
        assert_eq!(fits(136_848, 100_000), None);
        assert_eq!(fits(16, 10), Some(10), "one short line");
        assert_eq!(fits(76, 57), Some(57), "one full line");
        assert_eq!(fits(154, 114), Some(114), "two full lines");
        assert_eq!(
            fits(4_120, 18_446_744_073_709_551_486),
            None,
            "a size below zero, without overflow"
        );
        // 512 bytes are 684 characters ending in `=`, 9 full lines: as many as 511 bytes
        // (ending in `==`) or 510 (no `=`) make. Dovecot 2.3.19 answered 511 for a
        // 512-byte part followed by another; the padding tells them apart.
        assert_eq!(lines_of_76(700, 512, 1).map(|l| l.decoded_len), Some(512));
        assert_eq!(lines_of_76(700, 511, 1), None, "511 bytes end in ==");
        assert_eq!(lines_of_76(700, 510, 1), None, "510 bytes end in no =");
        assert_eq!(padding(b"QUJD\r\n"), Some(0));
        assert_eq!(padding(b"QUI=\r\n"), Some(1));
        assert_eq!(padding(b"\nQQ=="), Some(2));
        assert_eq!(padding(b"x-->\r\n"), None, "not base64 at its end");
    }

    /// A server that decodes a part of `size` bytes: what `find_end` sends it, and how many
    /// bytes it answers for each range.
    fn server(
        size: u64,
        requests: &mut Vec<Vec<ByteRange>>,
    ) -> impl FnMut(&[ByteRange]) -> Result<Vec<(ByteRange, u64)>, String> + '_ {
        move |ranges: &[ByteRange]| {
            requests.push(ranges.to_vec());
            Ok(ranges
                .iter()
                .map(|&r| (r, size.saturating_sub(r.offset).min(r.len)))
                .collect())
        }
    }

    #[test]
    fn a_right_estimate_costs_one_request_and_one_byte() {
        let mut requests = Vec::new();
        assert_eq!(
            find_end(400_000, 1_247_997, server(400_000, &mut requests)),
            Ok(400_000)
        );
        assert_eq!(requests.len(), 1);
    }

    #[test]
    fn a_wrong_estimate_finds_the_end_in_a_few_requests_and_bytes() {
        let stored = 1_247_997;
        for size in [0, 1, 399_999, 400_000, 400_001, 1_000_000, stored] {
            for estimate in [0, 1, 381_578, 400_000, 812_345, stored, u64::MAX] {
                let mut requests = Vec::new();
                let found = find_end(estimate, stored, server(size, &mut requests));
                assert_eq!(found, Ok(size), "size {size}, estimate {estimate}");
                assert!(
                    requests.len() <= 3,
                    "size {size}, estimate {estimate}: {requests:?}"
                );
                let asked: u64 = requests.iter().flatten().map(|r| r.len).sum();
                assert!(
                    asked <= (64 << 10) + 1_024,
                    "size {size}, estimate {estimate}: {asked} bytes"
                );
            }
        }
        // A part of 10 GB: still a few requests.
        let mut requests = Vec::new();
        let size = 7_777_777_777;
        assert_eq!(find_end(0, 10 << 30, server(size, &mut requests)), Ok(size));
        assert!(requests.len() <= 6, "{}", requests.len());
    }

    #[test]
    fn answers_that_contradict_or_tell_nothing_are_an_error_and_end() {
        // The end is past the estimate, then the one-byte ranges come back empty and
        // full by turns: it cannot be before one and after a later one.
        let odd = |ranges: &[ByteRange]| {
            Ok(ranges
                .iter()
                .enumerate()
                .map(|(i, &r)| {
                    (
                        r,
                        if ranges.len() == 1 {
                            r.len
                        } else {
                            (i % 2) as u64
                        },
                    )
                })
                .collect())
        };
        assert!(find_end(5_000_000, 10_000_000, odd).is_err());
        // No answer at all.
        assert!(find_end(5_000_000, 10_000_000, |_: &[ByteRange]| Ok(Vec::new())).is_err());
        // A request that fails.
        assert!(find_end(5_000_000, 10_000_000, |_: &[ByteRange]| Err("cut".into())).is_err());
        // More than was asked for, every time: never past the stored size, and an end.
        let generous = |ranges: &[ByteRange]| Ok(ranges.iter().map(|&r| (r, r.len + 10)).collect());
        assert!(find_end(5_000_000, 10_000_000, generous).is_err());
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
