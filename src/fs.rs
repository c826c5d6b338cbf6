//! The filesystem core: attributes, names, reads and changes, in its own types.
//!
//! `fuse.rs` adapts this to the kernel; nothing here sees a FUSE request or reply, so the
//! core is driven directly in tests with the in-memory store. The parts, each with its own
//! lock and one job: the inode table (`inodes.rs`), what is known of mailboxes and messages
//! (`metadata.rs`), content (`content.rs` over a `ContentCache`), open directories
//! (`handles.rs`), new files (`newfiles.rs`) and the walk detector (`walk.rs`). Changes the
//! store reports become kernel invalidations in `events.rs`.

pub mod ahead;
pub mod changes;
pub mod clock;
pub mod content;
pub mod copies;
pub mod errors;
pub mod events;
pub mod handles;
pub mod inodes;
pub mod mailboxes;
pub mod metadata;
pub mod namespace;
pub mod newfiles;
pub mod newmail;
pub mod prefetch;
pub mod reads;
pub mod searches;
pub mod sizes;
pub mod spool;
pub mod virtual_dirs;
pub mod walk;
pub mod xattr;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

pub use self::changes::DeleteMode;
use self::clock::{Clock, SystemClock};
use self::content::ContentFetcher;
pub use self::errors::{FsError, FsResult, Level};
pub use self::events::Invalidation;
use self::events::Invalidations;
use self::handles::DirSnapshots;
use self::inodes::{InodeTable, MessageRef, Node, NodeKey};
use self::metadata::MetadataCache;
use self::newfiles::NewFiles;
use self::virtual_dirs::{TrashNotes, VirtualNode};
use self::walk::WalkDetector;
use crate::cache::memory::MemoryCache;
use crate::cache::ContentCache;
use crate::readers::RequestCounts;
use crate::store::{MailStore, MailboxId, Uid};

/// How long the kernel may trust a directory entry or attributes that can change remotely.
const TTL_VOLATILE: Duration = Duration::from_secs(1);
/// How long for what never changes: a message's files, their sizes once exact.
const TTL_FINAL: Duration = Duration::from_secs(60);

/// Numbers for `statfs`, in blocks of [`STATFS_BLOCK`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    /// Free blocks (all of them available to the user).
    pub free_blocks: u64,
    /// Files and directories: those known (listed messages), and room for as many more
    /// as `free_files` (IMAP counts no inodes: `df -i` must not show 100% used).
    pub files: u64,
    pub free_files: u64,
}

/// The block size `statfs` counts in.
pub const STATFS_BLOCK: u64 = 4096;

/// File or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
    Symlink,
}

/// Attributes of a node, as the kernel needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    /// Status change: a file's mtime; for a mailbox directory, when a change to what it
    /// holds was last seen after its first listing, else when the mount started (its mtime
    /// becomes known only once it is listed, and `tar` takes a ctime that moved while it
    /// read a directory for a change).
    pub ctime: SystemTime,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
}

/// An attribute answer with how long the kernel may cache it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrReply {
    pub attr: Attr,
    /// How long the attributes may be cached.
    pub ttl: Duration,
    /// How long the name may be cached (for lookups).
    pub entry_ttl: Duration,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: String,
}

/// How an opened file is to be read by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReply {
    pub fh: u64,
    /// The size shown so far is only an estimate: bypass the page cache so reads reach EOF.
    pub direct_io: bool,
    /// Content is final: keep the kernel's pages across opens.
    pub keep_cache: bool,
    /// Closing it stores nothing, so the kernel need not send FLUSH (`FOPEN_NOFLUSH`).
    pub no_flush: bool,
}

/// Settings of the filesystem core.
#[derive(Debug, Clone)]
pub struct FsConfig {
    pub uid: u32,
    pub gid: u32,
    pub read_only: bool,
    pub cache_bytes: u64,
    /// What removing a message directory does.
    pub delete: DeleteMode,
    /// Where new files are kept until they are appended (and kept if APPEND fails).
    pub spool_dir: PathBuf,
    /// Where deleted messages go (a display path); `None`: the `\Trash` mailbox, or else
    /// the one named Trash.
    pub trash: Option<String>,
    /// Leave `\All`, `\Flagged` and `\Important` mailboxes out of listings and root searches.
    pub hide_virtual_folders: bool,
    /// The connections the store keeps open at most: walks fetch ahead on all but one, so
    /// that what the user asks meanwhile finds one free.
    pub connections: usize,
}

/// A hook the core calls after it freed a lot of memory at once (a large listing replaced,
/// many inodes forgotten); what to do about it is the process's policy.
pub type ReleaseHook = Arc<dyn Fn() + Send + Sync>;

/// The parts a core is built from that a caller may choose.
pub struct FsParts {
    /// The clock of freshness decisions.
    pub clock: Arc<dyn Clock>,
    /// Where raw content is cached.
    pub cache: Arc<dyn ContentCache>,
    /// Called after large frees.
    pub release_memory: Option<ReleaseHook>,
}

impl FsParts {
    /// The real clock, and an in-memory cache of three quarters of `cache_bytes` (the
    /// rest holds rendered files).
    pub fn defaults(config: &FsConfig) -> FsParts {
        FsParts {
            clock: Arc::new(SystemClock),
            cache: Arc::new(MemoryCache::new(config.cache_bytes / 4 * 3)),
            release_memory: None,
        }
    }
}

/// The filesystem core.
pub struct Fs {
    store: Arc<dyn MailStore>,
    config: FsConfig,
    inodes: Mutex<InodeTable>,
    metadata: MetadataCache,
    content: Arc<ContentFetcher>,
    /// Whole messages fetched ahead of walks that read them...
    bodies_ahead: ahead::Ahead<reads::Batch>,
    /// ... and structures ahead of walks that look into message directories...
    structures_ahead: ahead::Ahead<(MessageRef, Vec<Uid>)>,
    /// ... which a reader waits for when it gets there first.
    layouts_coming: ahead::Coming<MessageRef>,
    dirs: DirSnapshots,
    new_files: NewFiles,
    /// Part files and encapsulated messages removed from this mount's view.
    hidden: Mutex<HashSet<NodeKey>>,
    /// Messages copied for directories made by their names, while they are filled.
    copies: copies::Copies,
    walks: WalkDetector,
    /// Notes written into the mount's trash directories.
    notes: TrashNotes,
    /// Message directories of stored files removed through the file, for `rm -r`.
    removed_dirs: virtual_dirs::RemovedDirs,
    /// Kept search results.
    searches: searches::SearchResults,
    /// When the core was made (directories' ctime).
    started: SystemTime,
    /// The newest message of each mailbox's listing kept from an earlier mount, once
    /// found: its directory's mtime until it is listed.
    kept_dates: Mutex<HashMap<MailboxId, SystemTime>>,
    /// Prefetches asked for on this mount.
    prefetches: prefetch::Prefetches,
    invalidations: Invalidations,
    release_memory: Option<ReleaseHook>,
    /// Nodes dropped by `forget` since memory was last released.
    forgotten: AtomicU64,
    /// Names the kernel looked up (it had none cached, or its entry had expired).
    lookups: AtomicU64,
    /// Closes the kernel told of (FLUSH).
    flushes: AtomicU64,
    /// Directories read from their start (the kernel held no listing of them).
    dir_reads: AtomicU64,
    /// What the FUSE threads served.
    requests: Arc<RequestCounts>,
    /// What spool recovery said of each file it had to leave in the spool.
    spool_report: Mutex<std::collections::BTreeMap<PathBuf, String>>,
}

impl Fs {
    /// A filesystem over `store` with the default parts.
    pub fn new(store: Arc<dyn MailStore>, config: FsConfig) -> Fs {
        let parts = FsParts::defaults(&config);
        Fs::with_parts(store, config, parts)
    }

    /// A filesystem over `store` with the parts given.
    pub fn with_parts(store: Arc<dyn MailStore>, config: FsConfig, parts: FsParts) -> Fs {
        Fs {
            content: Arc::new(ContentFetcher::new(
                Arc::clone(&store),
                parts.cache,
                config.cache_bytes / 4,
            )),
            bodies_ahead: ahead::Ahead::default(),
            structures_ahead: ahead::Ahead::default(),
            layouts_coming: ahead::Coming::default(),
            metadata: MetadataCache::new(parts.clock),
            store,
            config,
            inodes: Mutex::new(InodeTable::default()),
            dirs: DirSnapshots::default(),
            new_files: NewFiles::default(),
            hidden: Mutex::new(HashSet::new()),
            copies: copies::Copies::default(),
            walks: WalkDetector::default(),
            notes: TrashNotes::default(),
            removed_dirs: virtual_dirs::RemovedDirs::default(),
            searches: searches::SearchResults::default(),
            started: SystemTime::now(),
            kept_dates: Mutex::new(HashMap::new()),
            prefetches: prefetch::Prefetches::default(),
            invalidations: Invalidations::default(),
            release_memory: parts.release_memory,
            forgotten: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            requests: Arc::default(),
            dir_reads: AtomicU64::new(0),
            spool_report: Mutex::new(Default::default()),
        }
    }

    /// The counts of FUSE requests shown in `user.imapfs.stats`, for the FUSE threads to
    /// keep.
    pub fn request_counts(&self) -> Arc<RequestCounts> {
        Arc::clone(&self.requests)
    }

    fn dir_attr(&self, ino: u64, mtime: SystemTime) -> Attr {
        Attr {
            ino,
            kind: Kind::Directory,
            size: 0,
            mtime,
            ctime: self.started,
            perm: 0o700,
            nlink: 2,
            uid: self.config.uid,
            gid: self.config.gid,
        }
    }

    fn file_attr(&self, ino: u64, size: u64, mtime: SystemTime) -> Attr {
        Attr {
            ino,
            kind: Kind::File,
            size,
            mtime,
            ctime: mtime,
            perm: 0o600,
            nlink: 1,
            uid: self.config.uid,
            gid: self.config.gid,
        }
    }

    /// Attributes of `node` (which has, or will have, inode `ino`).
    fn attr_of(&self, ino: u64, node: &Node) -> AttrReply {
        match node {
            Node::Root => AttrReply {
                attr: self.dir_attr(ino, self.started),
                ttl: TTL_VOLATILE,
                entry_ttl: TTL_VOLATILE,
            },
            // A followed mailbox stays true until a report invalidates it: long TTLs. Its
            // mtime is when its contents last changed, so the kernel drops a cached
            // listing of it when that changes.
            Node::Mailbox { path } => {
                let (mtime, ctime, ttl) = self.mailbox_dir_state(path);
                // The first listing dates the directory (back to its newest message, or
                // to then for an empty one), but nothing changed then: tar, which compares
                // the ctime before and after reading a directory, must not see a change
                // in that. Changes seen later move the ctime too.
                AttrReply {
                    attr: Attr {
                        ctime,
                        ..self.dir_attr(ino, mtime)
                    },
                    ttl,
                    entry_ttl: ttl,
                }
            }
            // A message never changes for its UIDVALIDITY and UID, so its attributes and
            // the names inside it are final. Its own name is not: the message can vanish, or
            // the mailbox be recreated with another message under the same name. In a
            // followed mailbox a report invalidates the name when that happens (as for the
            // mailbox's own listing), so a walk does not look every message up again.
            Node::Message { message, mtime, .. } => AttrReply {
                attr: self.dir_attr(ino, *mtime),
                ttl: TTL_FINAL,
                entry_ttl: if self.store.is_followed(&message.mailbox) {
                    TTL_FINAL
                } else {
                    TTL_VOLATILE
                },
            },
            Node::NewFile { dir_path, name } => {
                let (size, mtime) = self
                    .new_files
                    .get(dir_path, name)
                    .map_or((0, UNIX_EPOCH), |f| (f.size(), f.mtime()));
                AttrReply {
                    attr: self.file_attr(ino, size, mtime),
                    ttl: Duration::ZERO,
                    entry_ttl: Duration::ZERO,
                }
            }
            Node::Virtual(VirtualNode::TrashNote { uid, name }) => {
                let (size, mtime) = self.notes.stat(*uid, name).unwrap_or((0, UNIX_EPOCH));
                AttrReply {
                    attr: self.file_attr(ino, size, mtime),
                    ttl: Duration::ZERO,
                    entry_ttl: Duration::ZERO,
                }
            }
            Node::Virtual(VirtualNode::Hit {
                from_root,
                mailbox,
                name,
                mtime,
                ..
            }) => {
                let target = searches::hit_target(*from_root, mailbox, name);
                AttrReply {
                    attr: Attr {
                        kind: Kind::Symlink,
                        perm: 0o777,
                        ..self.file_attr(ino, target.len() as u64, *mtime)
                    },
                    ttl: TTL_VOLATILE,
                    entry_ttl: TTL_VOLATILE,
                }
            }
            Node::Virtual(_) => AttrReply {
                attr: self.dir_attr(ino, self.started),
                ttl: TTL_VOLATILE,
                entry_ttl: TTL_VOLATILE,
            },
            // What the file was when imapfs stored it, which is what the message holds.
            Node::StoredFile { size, mtime, .. } => AttrReply {
                attr: self.file_attr(ino, *size, *mtime),
                ttl: TTL_FINAL,
                entry_ttl: TTL_VOLATILE,
            },
            Node::File {
                message,
                spec,
                mtime,
                known_size,
                ..
            } => {
                let exact = known_size
                    .or(spec.exact_size.then_some(spec.size_hint))
                    .or_else(|| {
                        self.content
                            .rendered_len(message, &spec.section, &spec.content)
                    });
                AttrReply {
                    attr: self.file_attr(ino, exact.unwrap_or(spec.size_hint), *mtime),
                    // An estimated size must not be cached: the kernel would cut reads at it.
                    entry_ttl: TTL_FINAL,
                    ttl: if exact.is_some() {
                        TTL_FINAL
                    } else {
                        Duration::ZERO
                    },
                }
            }
        }
    }

    /// A mailbox directory's mtime, and how long the kernel may trust what it knows of it.
    fn mailbox_dir_state(&self, path: &str) -> (SystemTime, SystemTime, Duration) {
        let id = self
            .metadata
            .tree(None)
            .and_then(|t| t.get(path).and_then(|d| d.selectable_id().cloned()));
        let Some(id) = id else {
            return (self.started, self.started, TTL_VOLATILE);
        };
        // Not listed yet: dated as the listing an earlier mount kept (so the mtime does not
        // move when the listing comes, unless the mailbox changed), else by the start.
        let mtime = self.metadata.changed(&id).unwrap_or_else(|| {
            let held = self.kept_dates.lock().get(&id).copied();
            held.or_else(|| {
                let found = self.store.kept_newest(&id)?;
                self.kept_dates.lock().insert(id.clone(), found);
                Some(found)
            })
            .unwrap_or(self.started)
        });
        let ttl = if self.store.is_followed(&id) {
            TTL_FINAL
        } else {
            TTL_VOLATILE
        };
        let ctime = self
            .metadata
            .status_changed(&id)
            .map_or(self.started, |t| t.max(self.started));
        (mtime, ctime, ttl)
    }

    /// The node behind an inode the kernel holds.
    fn node(&self, ino: u64) -> FsResult<Node> {
        self.inodes
            .lock()
            .get(ino)
            .cloned()
            .ok_or(FsError::NotFound)
    }

    /// Attributes of `ino`.
    pub fn getattr(&self, ino: u64) -> FsResult<AttrReply> {
        let node = self.exact_file(self.node(ino)?)?;
        Ok(self.attr_of(ino, &node))
    }

    /// Whether changes are refused with EROFS.
    pub fn read_only(&self) -> bool {
        self.config.read_only
    }

    /// How many nodes the kernel holds (for tests and benchmarks of `forget`).
    pub fn inode_count(&self) -> usize {
        self.inodes.lock().len()
    }

    /// Tells the process that a lot of memory was just freed.
    fn released_memory(&self) {
        if let Some(hook) = &self.release_memory {
            hook();
        }
    }
}

#[cfg(test)]
mod tests;
