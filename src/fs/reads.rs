//! Opening and reading files: raw bytes of `message.eml` in ranges, rendered parts whole,
//! and whole messages read ahead when a walk reads them in listing order.

use super::content::{Source, SMALL_MESSAGE};
use super::inodes::{MessageRef, Node};
use super::virtual_dirs::VirtualNode;
use super::walk::Walk;
use super::{newmail, Fs, FsError, FsResult, Invalidation, OpenReply};
use crate::mime::{self, Content};
use crate::store::{clip, ByteRange, Transfer, TransferEncoding};
use std::sync::atomic::Ordering;

/// How many whole messages (of at most `SMALL_MESSAGE`) to fetch at once when a walk reads
/// them in order, and how many bytes they may add up to.
pub const BODY_READ_AHEAD: usize = 64;
const BODY_READ_AHEAD_BYTES: u64 = 2 << 20;

/// Whole messages of one mailbox, with their sizes, to fetch in one request.
pub type Batch = Vec<(MessageRef, u64)>;

impl Fs {
    /// Opens a file for reading; writing is refused on a read-only mount. A file that a
    /// message shows, opened for writing, becomes a new file that replaces the message when
    /// it is stored (its old content is kept unless the open truncates).
    pub fn open(&self, ino: u64, write: bool) -> FsResult<OpenReply> {
        self.open_with(ino, write, false)
    }

    /// `open` with the `O_TRUNC` flag known.
    pub fn open_with(&self, ino: u64, write: bool, truncate: bool) -> FsResult<OpenReply> {
        // A text body is rendered before it is opened, so it is read with its exact size
        // (and the page cache, and mmap) rather than with direct I/O.
        match self.exact_file(self.node(ino)?)? {
            Node::NewFile { dir_path, name } => {
                self.open_new_file(&dir_path, &name)?;
                // Stored, opened to read and open nowhere else: its bytes hold until
                // someone opens it to write, so it is read through the page cache (mmap
                // works); dropped at every open, and when a writer opens it.
                let file = self.new_files.get(&dir_path, &name);
                let stored = !write
                    && file.as_ref().is_some_and(|f| {
                        f.stored().is_some() && f.opens.load(Ordering::Relaxed) == 1
                    });
                if write {
                    self.invalidations.send(Invalidation::Inode { ino });
                }
                Ok(OpenReply {
                    fh: ino,
                    direct_io: !stored,
                    keep_cache: false,
                    no_flush: false,
                })
            }
            Node::StoredFile {
                message,
                name,
                size,
                mtime,
            } => {
                if write {
                    self.refuse_if_read_only()?;
                    let keep = if truncate { 0 } else { size };
                    self.overwrite_stored_file(ino, &message, &name, (size, keep), mtime)?;
                    // Readers may hold its pages: they are written over now.
                    self.invalidations.send(Invalidation::Inode { ino });
                    return Ok(OpenReply {
                        fh: ino,
                        direct_io: true,
                        keep_cache: false,
                        no_flush: false,
                    });
                }
                Ok(OpenReply {
                    fh: 0,
                    direct_io: false,
                    keep_cache: true,
                    no_flush: true,
                })
            }
            Node::File {
                message,
                spec,
                known_size,
                ..
            } => {
                if write && self.is_copy(&message) {
                    // A copy being filled whose file shows already (a file `cp` copied
                    // first made the copy): what is written over it is compared with it.
                    return Ok(OpenReply {
                        fh: 0,
                        direct_io: true,
                        keep_cache: false,
                        no_flush: true,
                    });
                }
                if write {
                    return Err(if self.config.read_only {
                        FsError::ReadOnly
                    } else {
                        FsError::NotPermitted("message parts cannot be changed".into())
                    });
                }
                let exact = known_size.is_some() || spec.exact_size;
                Ok(OpenReply {
                    fh: 0,
                    direct_io: !exact,
                    keep_cache: exact,
                    no_flush: true,
                })
            }
            Node::Virtual(VirtualNode::TrashNote { .. }) => Ok(OpenReply {
                fh: 0,
                direct_io: true,
                keep_cache: false,
                no_flush: false,
            }),
            Node::Root | Node::Mailbox { .. } | Node::Message { .. } | Node::Virtual(_) => {
                Err(FsError::IsADirectory)
            }
        }
    }

    /// Bytes of the file a file-born message shows: its second part, decoded, exactly
    /// `size` long (a message whose part does not match is an error, not a wrong file).
    pub(super) fn read_stored_file(
        &self,
        message: &MessageRef,
        size: u64,
        offset: u64,
        want: u64,
    ) -> FsResult<Vec<u8>> {
        let section = newmail::file_section();
        if self.store.capabilities().binary {
            let source = Source {
                message,
                section: &section,
                transfer: Transfer::Decoded,
                len: size,
                decode: None,
            };
            // The size is the header's word: a part that holds more or fewer bytes is an
            // error at every read, never a file cut short or padded (the message may be
            // any sender's, and the part may be cached already through its directory).
            let read = self.content.read(source, offset, want).and_then(|data| {
                let expected = size.saturating_sub(offset).min(want);
                let at_end = offset.saturating_add(want) >= size;
                if data.len() as u64 != expected
                    || (at_end && self.content.holds_past(&source, size))
                {
                    return Err(FsError::Store(crate::store::StoreError::Protocol(format!(
                        "the stored file's part is not the {size} bytes its message says"
                    ))));
                }
                Ok(data)
            });
            match read {
                // The server's decoding is not the file: its base64 bytes, decoded here,
                // may be (imapfs once declared a `.eml` that is no message as
                // `message/rfc822`, and Dovecot's BINARY decodes such a part as a message).
                Err(FsError::Store(crate::store::StoreError::Protocol(why))) => {
                    tracing::debug!(mailbox = %message.mailbox, uid = message.uid.0, %why, "the server's BINARY answer is not the stored file; decoding its bytes here");
                }
                other => return other,
            }
        }
        let content = Content::Decoded(TransferEncoding::Base64);
        let data = self.content.rendered(message, &section, &content, false)?;
        if data.len() as u64 != size {
            return Err(FsError::Store(crate::store::StoreError::Protocol(format!(
                "the stored file holds {} bytes, its message says {size}",
                data.len()
            ))));
        }
        let range = ByteRange { offset, len: want };
        Ok(clip(&data, Some(range)).to_vec())
    }

    /// Reads up to `size` bytes at `offset`. Only the end of the file gives fewer bytes.
    pub fn read(&self, ino: u64, _fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        self.read_node(self.node(ino)?, Some(ino), offset, size)
    }

    /// `read` of `node`, which has the inode `ino` if the kernel holds it.
    pub(super) fn read_node(
        &self,
        node: Node,
        ino: Option<u64>,
        offset: u64,
        size: u32,
    ) -> FsResult<Vec<u8>> {
        let (message, spec) = match node {
            Node::NewFile { dir_path, name } => {
                return self.read_new_file(&dir_path, &name, offset, size)
            }
            Node::StoredFile {
                message, size: len, ..
            } => return self.read_stored_file(&message, len, offset, u64::from(size)),
            Node::Virtual(VirtualNode::TrashNote { uid, name }) => {
                return self.read_note(uid, &name, offset, size)
            }
            Node::File { message, spec, .. } => (message, spec),
            Node::Root | Node::Mailbox { .. } | Node::Message { .. } | Node::Virtual(_) => {
                return Err(FsError::IsADirectory)
            }
        };
        // A handle on a message of a mailbox since recreated: its bytes are another
        // mailbox's now, even where they are still cached.
        if let Some(now) = self.metadata.validity(&message.mailbox) {
            if now != message.validity {
                return Err(FsError::Store(
                    crate::store::StoreError::UidValidityChanged {
                        mailbox: message.mailbox.clone(),
                        expected: message.validity,
                        actual: now,
                    },
                ));
            }
        }
        let size = u64::from(size);
        // Ranged reads of what the server can give as the file shows it.
        let ranged = match &spec.content {
            Content::Raw => Some(Transfer::Encoded),
            Content::Decoded(encoding) if mime::is_identity(encoding) => Some(Transfer::Encoded),
            Content::Decoded(_) if self.store.capabilities().binary => Some(Transfer::Decoded),
            // Decoded here, from the stored bytes that hold each range.
            Content::Decoded(_) if spec.lines.is_some() => Some(Transfer::Decoded),
            Content::Decoded(_) | Content::Text { .. } => None,
        };
        let decode = spec.lines.filter(|_| !self.store.capabilities().binary);
        if let (Some(transfer), true) = (ranged, spec.exact_size) {
            if offset == 0 && spec.section.is_whole() {
                self.read_ahead_messages(&message);
            }
            let source = Source {
                message: &message,
                section: &spec.section,
                transfer,
                len: spec.size_hint,
                decode,
            };
            return self.content.read(source, offset, size);
        }
        let binary = self.store.capabilities().binary;
        let data = self
            .content
            .rendered(&message, &spec.section, &spec.content, binary)?;
        if spec.exact_size && data.len() as u64 != spec.size_hint {
            // The size the kernel was told came from the part's end and line width; the
            // part does not keep to it. An error, never a file of another length.
            return Err(FsError::Store(crate::store::StoreError::Protocol(format!(
                "the part decodes to {} bytes, not the {} its encoding showed",
                data.len(),
                spec.size_hint
            ))));
        }
        if let Some(ino) = ino {
            self.inodes.lock().set_known_size(ino, data.len() as u64);
        }
        let range = ByteRange { offset, len: size };
        Ok(clip(&data, Some(range)).to_vec())
    }

    /// When whole messages are read one after another in listing order (`grep -r`, `cat */
    /// message.eml`), fetch the next few small ones in the same request: one round trip for
    /// `BODY_READ_AHEAD` messages instead of one each. Where the reader is, if nobody has
    /// fetched it yet, in this read; the batch after it on the read-ahead thread, while the
    /// reader works through this one. A failed read-ahead is only logged; the read itself
    /// then fetches what it needs.
    fn read_ahead_messages(&self, message: &MessageRef) {
        let previous = self.metadata.previous_uid(message);
        let walking = self
            .walks
            .visit(Walk::Bodies, &message.mailbox, message.uid, previous);
        if !walking {
            return;
        }
        if !self.content.held_or_coming(message) {
            let batch = self.bodies_from(message, true);
            let last = batch.last().map_or(message.uid, |(m, _)| m.uid);
            if batch.len() > 1 {
                if let Err(e) = self.content.prefetch_messages(&batch) {
                    tracing::debug!(error = %e, "read-ahead of messages failed");
                }
            }
            self.bodies_ahead.fetched_to(message, last);
        }
        self.bodies_ahead.send_due(message, |after| {
            let batch = self.bodies_from(after, false);
            let (first, end) = (batch.first()?.0.uid, batch.last()?.0.uid);
            Some((first, end, batch))
        });
    }

    /// The small messages from `message` on (or after it) for one request of at most
    /// `BODY_READ_AHEAD` messages and `BODY_READ_AHEAD_BYTES` (less with a cache under 32
    /// MiB), less those cached or on their way.
    fn bodies_from(&self, message: &MessageRef, with_it: bool) -> Batch {
        // Three batches may be on their way or waiting to be read: together they stay well
        // within the memory cache, or they would push each other out before the reader came
        // to them (and each message would begin a batch of its own).
        let mut budget = BODY_READ_AHEAD_BYTES.min(self.config.cache_bytes / 16);
        self.metadata
            .following(message, BODY_READ_AHEAD + 1, |size| size <= SMALL_MESSAGE)
            .into_iter()
            .filter(|meta| with_it || meta.uid != message.uid)
            .take(BODY_READ_AHEAD)
            .take_while(|meta| {
                let fits = meta.size <= budget;
                budget = budget.saturating_sub(meta.size);
                fits
            })
            .map(|meta| {
                let m = MessageRef {
                    uid: meta.uid,
                    ..message.clone()
                };
                (m, meta.size)
            })
            .filter(|(m, _)| !self.content.held_or_coming(m))
            .collect()
    }
}
