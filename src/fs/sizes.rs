//! Exact sizes before any content is read, so that no tool sees a file shrink or grow
//! after `stat`. A transfer-encoded part's size comes from the server (`BINARY.SIZE`) with
//! its message directory; a text body's (its charset conversion changes it) from the body
//! itself, rendered when the file is first looked up, stat'ed or opened, never for a walk
//! that only passes by (`find`, `grep -r --include=message.eml`). Without BINARY, a base64
//! part's size follows from its last bytes and its line width; a quoted-printable
//! attachment's stays an estimate (read with direct I/O).

use std::collections::HashMap;
use std::sync::Arc;

use super::inodes::{MessageRef, Node};
use super::walk::Walk;
use super::{Fs, FsResult};
use crate::mime::{self, Content, Entry, EntryKind, FileSpec};
use crate::store::{
    ByteRange, MailboxId, MessageStructure, PartItem, PartValue, Transfer, TransferEncoding, Uid,
    UidValidity,
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

/// How much of the end of a base64 part tells its decoded size (two full lines and more).
const BASE64_TAIL: u64 = 240;

/// What to ask for `spec` to know its size, if anything.
fn wanted(spec: &FileSpec, binary: bool) -> Option<PartItem> {
    if spec.exact_size {
        return None;
    }
    match &spec.content {
        Content::Decoded(_) if binary => Some(PartItem::DecodedSize(spec.section.clone())),
        // Without BINARY, the end of a base64 part gives its decoded size.
        Content::Decoded(TransferEncoding::Base64) if spec.stored_size > 0 => {
            let len = spec.stored_size.min(BASE64_TAIL);
            Some(PartItem::Bytes {
                section: spec.section.clone(),
                transfer: Transfer::Encoded,
                range: Some(ByteRange {
                    offset: spec.stored_size - len,
                    len,
                }),
            })
        }
        Content::Raw | Content::Decoded(_) | Content::Text { .. } => None,
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
        for (uid, entries) in layouts.iter_mut() {
            for spec in specs_mut(entries) {
                let Some(item) = wanted(spec, binary) else {
                    continue;
                };
                match by_item.remove(&(*uid, item)) {
                    Some(PartValue::Size(size)) => {
                        spec.size_hint = size;
                        spec.exact_size = true;
                    }
                    Some(PartValue::Bytes(tail)) => {
                        if let Some(lines) = mime::base64_lines(spec.stored_size, &tail) {
                            spec.size_hint = lines.decoded_len;
                            spec.exact_size = true;
                            spec.lines = Some(lines);
                        }
                    }
                    None => {}
                }
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
    /// is kept). Other nodes are returned as they are.
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
        if !spec.exact_size && matches!(spec.content, Content::Text { .. }) {
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
            let binary = self.store.capabilities().binary;
            let data = self
                .content
                .rendered(&message, &spec.section, &spec.content, binary)?;
            spec.size_hint = data.len() as u64;
            spec.exact_size = true;
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
