//! What the core knows of the account besides content: the mailbox tree, each mailbox's
//! listing, message layouts, and the names `mv` gave messages; and when each is fresh
//! enough to use without asking the server (read from an injected clock).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;
use parking_lot::Mutex;

use super::clock::Clock;
use super::inodes::MessageRef;
use super::mailboxes::MailboxTree;
use super::newmail::{parse_origin, FileOrigin};
use crate::mime::{self, Entry};
use crate::store::{
    MailboxChange, MailboxId, MailboxListing, MailboxVersion, MessageMeta, Uid, UidValidity,
};

/// A mailbox tree younger than this is used without asking the server again.
pub const TREE_FRESH: Duration = Duration::from_secs(1);
/// A listing younger than this is reused for directory listings.
pub const LISTING_FRESH: Duration = Duration::from_secs(1);
/// A lookup that misses relists the mailbox if the listing is older than this.
pub const LISTING_RECHECK_ON_MISS: Duration = Duration::from_secs(5);
/// Message layouts kept: enough for a walk over a large mailbox to find each again on its
/// second pass (a `grep -r` twice), at a few hundred bytes each.
const LAYOUTS_KEPT: usize = 16_384;

/// One listed message, held compactly, since a mailbox's listing is kept for as long as
/// the mount lives (20,000 messages took 7 MB as `MessageMeta`s with their names; this is
/// under half): the directory name is made from the subject when asked for, the UID is
/// the key it is held under, and messages with the same flags share one list.
#[derive(Debug, Clone)]
struct Listed {
    size: u64,
    internal_date: SystemTime,
    subject: Option<Box<[u8]>>,
    flags: Arc<[String]>,
    /// Only for a message imapfs made from a file, so boxed.
    origin: Option<Box<Origin>>,
}

/// A message's raw `X-Imapfs-File` header, and what it says if it can be read.
#[derive(Debug, Clone)]
struct Origin {
    raw: Box<[u8]>,
    file: Option<FileOrigin>,
}

impl Listed {
    fn new(meta: MessageMeta, flag_sets: &mut FlagSets) -> Listed {
        let origin = meta.origin.map(|raw| {
            // The header can come from anyone: a file bigger than the message that holds
            // it is not one imapfs stored (its size is what `touch` or `>>` reads whole).
            let file = parse_origin(&raw).filter(|f| f.size <= meta.size);
            Box::new(Origin {
                raw: raw.into_boxed_slice(),
                file,
            })
        });
        Listed {
            size: meta.size,
            internal_date: meta.internal_date,
            subject: meta.subject.map(Vec::into_boxed_slice),
            flags: flag_sets.get(meta.flags),
            origin,
        }
    }

    fn meta(&self, uid: Uid) -> MessageMeta {
        MessageMeta {
            uid,
            size: self.size,
            internal_date: self.internal_date,
            subject: self.subject.as_deref().map(<[u8]>::to_vec),
            flags: self.flags.to_vec(),
            origin: self.origin.as_ref().map(|o| o.raw.to_vec()),
        }
    }

    /// The directory name: `<UID> <Subject>`.
    fn name(&self, uid: Uid) -> String {
        mime::message_dir_name(uid, self.subject.as_deref())
    }

    fn file_origin(&self) -> Option<&FileOrigin> {
        self.origin.as_ref().and_then(|o| o.file.as_ref())
    }

    /// Marked `\Deleted` (a copy of it would be too).
    fn is_deleted(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f.eq_ignore_ascii_case("\\Deleted"))
    }
}

/// Flag lists shared by the messages that have the same flags (most messages of a mailbox
/// have one of a few).
#[derive(Default)]
struct FlagSets(std::collections::HashSet<Arc<[String]>>);

impl FlagSets {
    fn get(&mut self, flags: Vec<String>) -> Arc<[String]> {
        if let Some(shared) = self.0.get(flags.as_slice()) {
            return shared.clone();
        }
        let shared: Arc<[String]> = flags.into();
        self.0.insert(shared.clone());
        shared
    }
}

/// The messages of one mailbox as last listed, with local and reported changes applied.
struct Listing {
    validity: UidValidity,
    version: Option<MailboxVersion>,
    /// When what the mailbox holds last changed, as far as this mount knows: its
    /// directory's mtime (the kernel drops a cached listing when it changes).
    changed: SystemTime,
    /// When a change to what the mailbox holds was seen after its first listing (the
    /// directory's ctime): the first listing itself changes nothing, though it dates the
    /// directory (`tar` takes a ctime moved while it read a directory for a change).
    status_changed: Option<SystemTime>,
    messages: BTreeMap<Uid, Listed>,
    /// File names of file-born messages: the newest message of each name.
    files: BTreeMap<String, Uid>,
    fetched: Instant,
    /// Raised by every change of what the listing holds, flags included (search results
    /// are kept while it stays).
    generation: u64,
    /// Set after a change here: the next directory listing asks the server again.
    stale: bool,
    /// This mount's changes to the mailbox that the listing knows of: the ticket it was
    /// asked for at, or the ticket after a change here applied to it.
    as_of: ChangeTicket,
    /// UIDs this mount saw leave: a UID is never given again for this UIDVALIDITY, so a
    /// report of its arrival that left the server before it went is not believed.
    left: BTreeSet<Uid>,
}

/// How a listing at most some age old is to be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingPlan {
    /// The listing held will do.
    Use,
    /// Ask whether the mailbox changed since `known` (one cheap request); if not, the
    /// listing held is confirmed fresh.
    CheckVersion {
        known: MailboxVersion,
        ticket: ChangeTicket,
    },
    /// List the mailbox.
    Relist { ticket: ChangeTicket },
}

/// The count of this mount's changes to a mailbox when a request went out: an answer that
/// was under way while the mount changed the mailbox may miss the change, so it is not
/// trusted as fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangeTicket(u64);

/// What a new listing (or a reported change) did to what was known.
#[derive(Debug, Default)]
pub struct ListingChange {
    /// The mailbox was recreated: everything known of the old one is void.
    pub validity_changed: bool,
    /// Messages that are gone, with the names they had.
    pub removed: Vec<(String, MessageRef)>,
    /// Whether messages arrived.
    pub arrived: bool,
    /// Messages whose flags changed.
    pub flagged: Vec<MessageRef>,
    /// How many messages the listing holds now.
    pub size: usize,
}

#[derive(Default)]
struct Inner {
    tree: Option<(Arc<MailboxTree>, Instant)>,
    /// The tree last forgotten after a change elsewhere, until a new LIST replaces it:
    /// what lookups see meanwhile, and while the server cannot be asked.
    stale_tree: Option<Arc<MailboxTree>>,
    /// The last tree a new LIST replaced with another set of mailboxes: where a mailbox
    /// renamed elsewhere was, once a lookup has listed the tree before its report came.
    replaced_tree: Option<Arc<MailboxTree>>,
    /// Raised whenever the tree is forgotten: a LIST that went out before is older than
    /// the change that made it be forgotten, and must not be kept.
    tree_epoch: u64,
    listings: HashMap<MailboxId, Listing>,
    /// This mount's changes per mailbox (see `ChangeTicket`).
    changes: HashMap<MailboxId, u64>,
    /// Names that `mv` gave messages moved into a mailbox, valid until its next directory
    /// listing: mailbox -> name -> (message, mtime).
    aliases: HashMap<MailboxId, HashMap<String, (MessageRef, SystemTime)>>,
    layouts: Option<LruCache<MessageRef, Arc<Vec<Entry>>>>,
    /// The last listing generation given out.
    generation: u64,
    /// Sizes and raw Subjects of the messages this mount stored lately, per mailbox (the
    /// newest `STORED_HERE_KEPT`): a listing taken before may not hold them yet.
    stored_here: HashMap<MailboxId, std::collections::VecDeque<SizeAndSubject>>,
    /// Messages whose flags this mount changed lately: at which of the mailbox's change
    /// counts, and when. A listing or a report asked for before may hold the flags from
    /// before the change (the server had not applied it yet), so for such a message the
    /// flags held are kept. Kept `FLAG_MARKS_KEPT`.
    flags_changed_here: HashMap<MessageRef, (ChangeTicket, Instant)>,
}

/// How long a flag change made here outranks what listings and reports say of the message:
/// longer than any answer takes to come.
const FLAG_MARKS_KEPT: Duration = Duration::from_secs(300);

/// A message's size and raw Subject (none: it has none).
type SizeAndSubject = (u64, Option<Vec<u8>>);

/// How many messages stored lately are remembered per mailbox (`Inner::stored_here`).
const STORED_HERE_KEPT: usize = 256;

/// The metadata cache; its one lock is never held while asking the server.
pub struct MetadataCache {
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl Listing {
    /// What the mailbox holds changed now.
    fn changed_now(&mut self) {
        let now = SystemTime::now().max(self.changed + Duration::from_nanos(1));
        self.changed = now;
        self.status_changed = Some(now);
    }

    /// Rebuilds the file names after messages came or went.
    fn index_files(&mut self) {
        self.files.clear();
        for (uid, entry) in &self.messages {
            if let Some(origin) = entry.file_origin() {
                // Later UIDs win: a newer version of a file replaces an older one.
                self.files.insert(origin.name.clone(), *uid);
            }
        }
    }

    /// The listed message whose directory is named `name`, with its mtime.
    fn named(&self, mailbox: &MailboxId, name: &str) -> Option<(MessageRef, SystemTime)> {
        let uid = uid_in_name(name)?;
        let entry = self.messages.get(&uid)?;
        (entry.name(uid) == name).then(|| (self.message_ref(mailbox, uid), entry.internal_date))
    }

    fn message_ref(&self, mailbox: &MailboxId, uid: Uid) -> MessageRef {
        MessageRef {
            mailbox: mailbox.clone(),
            validity: self.validity,
            uid,
        }
    }
}

/// The UID a message directory name starts with.
fn uid_in_name(name: &str) -> Option<Uid> {
    let digits = name.split(' ').next()?;
    digits.parse().ok().map(Uid)
}

impl Inner {
    fn layouts(&mut self) -> &mut LruCache<MessageRef, Arc<Vec<Entry>>> {
        self.layouts
            .get_or_insert_with(|| LruCache::new(NonZeroUsize::new(LAYOUTS_KEPT).expect("nonzero")))
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Marks `mailbox`'s listing (if held) as changed in any way.
    fn touch(&mut self, mailbox: &MailboxId) {
        let generation = self.next_generation();
        if let Some(listing) = self.listings.get_mut(mailbox) {
            listing.generation = generation;
        }
    }

    fn ticket(&self, mailbox: &MailboxId) -> ChangeTicket {
        ChangeTicket(self.changes.get(mailbox).copied().unwrap_or(0))
    }

    /// Notes that this mount changed the flags of `uids` of `mailbox` at `now` (see
    /// `flags_changed_here`).
    fn flags_changed_here(
        &mut self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
        now: Instant,
    ) {
        *self.changes.entry(mailbox.clone()).or_default() += 1;
        let ticket = self.ticket(mailbox);
        self.flags_changed_here
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < FLAG_MARKS_KEPT);
        for uid in uids {
            let message = MessageRef {
                mailbox: mailbox.clone(),
                validity,
                uid: *uid,
            };
            self.flags_changed_here.insert(message, (ticket, now));
        }
    }

    /// Whether this mount changed the flags of `uid` of `mailbox` after a listing asked for
    /// at `ticket`, or a report asked for at `asked_at`.
    fn flags_newer_here(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        ticket: Option<ChangeTicket>,
        asked_at: Option<Instant>,
    ) -> bool {
        if self.flags_changed_here.is_empty() {
            return false;
        }
        let message = MessageRef {
            mailbox: mailbox.clone(),
            validity,
            uid,
        };
        self.flags_changed_here
            .get(&message)
            .is_some_and(|(changed, at)| {
                ticket.is_some_and(|t| t < *changed) || asked_at.is_some_and(|a| a < *at)
            })
    }

    /// Drops layouts of `mailbox` not under `keep`.
    fn drop_layouts(&mut self, mailbox: &MailboxId, keep: Option<UidValidity>) {
        let layouts = self.layouts();
        let doomed: Vec<MessageRef> = layouts
            .iter()
            .map(|(m, _)| m)
            .filter(|m| &m.mailbox == mailbox && Some(m.validity) != keep)
            .cloned()
            .collect();
        for m in doomed {
            layouts.pop(&m);
        }
    }
}

impl MetadataCache {
    /// The time by the cache's clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// An empty cache reading `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MetadataCache {
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    // ---- the mailbox tree ---------------------------------------------------------------

    /// The tree held, if it is at most `max_age` old; with `None`, any tree held, one
    /// forgotten after a change elsewhere included.
    pub fn tree(&self, max_age: Option<Duration>) -> Option<Arc<MailboxTree>> {
        let now = self.clock.now();
        let inner = self.inner.lock();
        let Some((tree, at)) = inner.tree.as_ref() else {
            return match max_age {
                Some(_) => None,
                None => inner.stale_tree.clone(),
            };
        };
        match max_age {
            Some(age) if now.saturating_duration_since(*at) >= age => None,
            _ => Some(Arc::clone(tree)),
        }
    }

    /// What to hand back to [`Metadata::set_tree`] with a LIST about to go out.
    pub fn tree_ticket(&self) -> u64 {
        self.inner.lock().tree_epoch
    }

    /// Keeps a tree just listed, unless it was forgotten since `ticket` was taken (the
    /// LIST may predate the change; the newer LIST is kept instead). True if kept.
    pub fn set_tree(&self, tree: Arc<MailboxTree>, ticket: u64) -> bool {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        if inner.tree_epoch != ticket {
            return false;
        }
        let before = inner
            .tree
            .take()
            .map(|(t, _)| t)
            .or_else(|| inner.stale_tree.take());
        if let Some(before) = before.filter(|b| !b.same_mailboxes(&tree)) {
            inner.replaced_tree = Some(before);
        }
        inner.tree = Some((tree, now));
        inner.stale_tree = None;
        true
    }

    /// Forgets the tree a LIST replaced (after a rename here, whose report needs nothing).
    pub fn forget_replaced_tree(&self) {
        self.inner.lock().replaced_tree = None;
    }

    /// The tree held, or else the one it replaced, that has `mailbox` (see
    /// `replaced_tree`).
    pub fn tree_with(&self, mailbox: &MailboxId) -> Option<Arc<MailboxTree>> {
        let inner = self.inner.lock();
        let current = inner
            .tree
            .as_ref()
            .map(|(t, _)| t)
            .or(inner.stale_tree.as_ref());
        let found = [current, inner.replaced_tree.as_ref()]
            .into_iter()
            .flatten()
            .find(|t| t.path_of(mailbox).is_some())
            .cloned();
        found
    }

    /// Forgets the tree, so that the next look that needs a fresh one asks the server. It
    /// stays as the stale tree until then (see [`MetadataCache::tree`]).
    pub fn invalidate_tree(&self) {
        let mut inner = self.inner.lock();
        if let Some((tree, _)) = inner.tree.take() {
            inner.stale_tree = Some(tree);
        }
        inner.tree_epoch += 1;
    }

    // ---- listings -------------------------------------------------------------------------

    /// How to have a listing of `mailbox` at most `max_age` old (`None`: any listing). A
    /// `followed` mailbox's listing is kept true by the store's reports: it is always
    /// fresh unless this mount changed the mailbox since.
    pub fn plan_listing(
        &self,
        mailbox: &MailboxId,
        max_age: Option<Duration>,
        followed: bool,
    ) -> ListingPlan {
        let now = self.clock.now();
        let inner = self.inner.lock();
        let ticket = inner.ticket(mailbox);
        let Some(listing) = inner.listings.get(mailbox) else {
            return ListingPlan::Relist { ticket };
        };
        let fresh = match max_age {
            None => true,
            Some(_) if followed => !listing.stale,
            Some(age) => !listing.stale && now.saturating_duration_since(listing.fetched) < age,
        };
        match (fresh, listing.stale, listing.version) {
            (true, _, _) => ListingPlan::Use,
            (false, false, Some(known)) => ListingPlan::CheckVersion { known, ticket },
            _ => ListingPlan::Relist { ticket },
        }
    }

    /// The server says the mailbox is as listed: the listing counts as fresh again, unless
    /// this mount changed the mailbox since `ticket`.
    pub fn confirm_unchanged(&self, mailbox: &MailboxId, ticket: ChangeTicket) -> bool {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        if inner.ticket(mailbox) != ticket {
            return false;
        }
        match inner.listings.get_mut(mailbox) {
            Some(listing) => {
                listing.fetched = now;
                true
            }
            None => false,
        }
    }

    /// Keeps a new listing of `mailbox` (asked for at `ticket`) and says what changed. A
    /// changed UIDVALIDITY drops everything known of the old mailbox.
    pub fn install_listing(
        &self,
        mailbox: &MailboxId,
        fresh: MailboxListing,
        ticket: ChangeTicket,
    ) -> ListingChange {
        let now = self.clock.now();
        let mut flag_sets = FlagSets::default();
        let messages: BTreeMap<Uid, Listed> = fresh
            .messages
            .into_iter()
            .map(|meta| (meta.uid, Listed::new(meta, &mut flag_sets)))
            .collect();
        let mut inner = self.inner.lock();
        // Asked for before a change this mount made and applied to the listing held (a
        // message moved in, one moved out): the held one knows more of what this mount
        // did, and keeps its names reachable. It stays marked to be listed again.
        if let Some(held) = inner.listings.get(mailbox) {
            if held.validity == fresh.uid_validity && ticket < held.as_of {
                tracing::debug!(mailbox = %mailbox, "a listing asked for before a change here is dropped; the one held knows of the change");
                return ListingChange {
                    size: held.messages.len(),
                    ..ListingChange::default()
                };
            }
        }
        let mut change = ListingChange {
            size: messages.len(),
            ..ListingChange::default()
        };
        let mut messages = messages;
        if let Some(held) = inner
            .listings
            .get(mailbox)
            .filter(|held| held.validity == fresh.uid_validity)
        {
            for (uid, entry) in messages.iter_mut() {
                let newer_here =
                    || inner.flags_newer_here(mailbox, held.validity, *uid, Some(ticket), None);
                if let Some(kept) = held.messages.get(uid).filter(|_| newer_here()) {
                    entry.flags = kept.flags.clone();
                }
            }
        }
        if let Some(old) = inner.listings.get(mailbox) {
            if old.validity != fresh.uid_validity {
                change.validity_changed = true;
            }
            for (uid, entry) in &old.messages {
                if change.validity_changed || !messages.contains_key(uid) {
                    let message = MessageRef {
                        mailbox: mailbox.clone(),
                        validity: old.validity,
                        uid: *uid,
                    };
                    change.removed.push((entry.name(*uid), message));
                }
            }
            change.arrived = messages.keys().any(|uid| !old.messages.contains_key(uid))
                || change.validity_changed;
        }
        if change.validity_changed {
            tracing::warn!(mailbox = %mailbox, "UIDVALIDITY changed: dropping everything cached for the old mailbox");
            inner.drop_layouts(mailbox, Some(fresh.uid_validity));
            inner.aliases.remove(mailbox);
        }
        // A change made here while the listing was on its way may be missing from it.
        let stale = inner.ticket(mailbox) != ticket;
        // A mailbox's first listing dates it by its newest message; later, by the change.
        let changed = match inner.listings.get(mailbox) {
            Some(old) if change.removed.is_empty() && !change.arrived => old.changed,
            Some(old) => SystemTime::now().max(old.changed + Duration::from_nanos(1)),
            None => messages
                .values()
                .map(|e| e.internal_date)
                .max()
                .unwrap_or_else(SystemTime::now),
        };
        let same_flags = |old: &Listing| {
            old.messages
                .iter()
                .all(|(uid, e)| messages.get(uid).is_some_and(|n| n.flags == e.flags))
        };
        let generation = match inner.listings.get(mailbox) {
            Some(old) if change.removed.is_empty() && !change.arrived && same_flags(old) => {
                old.generation
            }
            _ => inner.next_generation(),
        };
        let left = inner
            .listings
            .get(mailbox)
            .filter(|old| old.validity == fresh.uid_validity)
            .map(|old| old.left.clone())
            .unwrap_or_default();
        let mut listing = Listing {
            validity: fresh.uid_validity,
            version: fresh.version,
            changed,
            status_changed: match inner.listings.get(mailbox) {
                Some(old) if old.changed != changed => Some(changed),
                Some(old) => old.status_changed,
                None => None,
            },
            messages,
            files: BTreeMap::new(),
            fetched: now,
            generation,
            stale,
            as_of: ticket,
            left,
        };
        listing.index_files();
        inner.listings.insert(mailbox.clone(), listing);
        change
    }

    /// Applies a change the store reported, as far as the listing held allows; says what
    /// changed for the kernel.
    pub fn apply_change(&self, reported: &MailboxChange) -> ListingChange {
        let mut inner = self.inner.lock();
        let mut change = ListingChange::default();
        let Some(held_validity) = inner.listings.get(&reported.mailbox).map(|l| l.validity) else {
            return change;
        };
        // Flags changed here after the report was asked for: the report may predate them.
        let newer_here: BTreeSet<Uid> = reported
            .flags
            .iter()
            .map(|(uid, _)| *uid)
            .chain(reported.arrived.iter().map(|m| m.uid))
            .filter(|uid| {
                inner.flags_newer_here(
                    &reported.mailbox,
                    held_validity,
                    *uid,
                    None,
                    reported.asked_at,
                )
            })
            .collect();
        let Some(listing) = inner.listings.get_mut(&reported.mailbox) else {
            return change;
        };
        let validity = reported.validity.unwrap_or(listing.validity);
        if reported.validity_changed || validity != listing.validity {
            change.validity_changed = true;
            change.arrived = true;
            change.removed = listing
                .messages
                .iter()
                .map(|(uid, entry)| {
                    let message = MessageRef {
                        mailbox: reported.mailbox.clone(),
                        validity: listing.validity,
                        uid: *uid,
                    };
                    (entry.name(*uid), message)
                })
                .collect();
            // Nothing held is true any more: the next look lists the mailbox.
            inner.listings.remove(&reported.mailbox);
            inner.drop_layouts(&reported.mailbox, reported.validity);
            inner.aliases.remove(&reported.mailbox);
            return change;
        }
        for uid in &reported.vanished {
            if let Some(entry) = listing.messages.remove(uid) {
                let message = MessageRef {
                    mailbox: reported.mailbox.clone(),
                    validity: listing.validity,
                    uid: *uid,
                };
                change.removed.push((entry.name(*uid), message));
            }
        }
        let mut flag_sets = FlagSets::default();
        for meta in reported
            .arrived
            .iter()
            .filter(|m| !listing.left.contains(&m.uid))
        {
            let mut entry = Listed::new(meta.clone(), &mut flag_sets);
            if newer_here.contains(&meta.uid) {
                if let Some(held) = listing.messages.get(&meta.uid) {
                    entry.flags = held.flags.clone();
                }
            }
            change.arrived |= listing.messages.insert(meta.uid, entry).is_none();
        }
        for (uid, flags) in &reported.flags {
            if newer_here.contains(uid) {
                tracing::debug!(mailbox = %reported.mailbox, %uid, "flags reported from before a change made here: kept as changed here");
                continue;
            }
            if let Some(entry) = listing.messages.get_mut(uid) {
                entry.flags = flag_sets.get(flags.clone());
                change.flagged.push(MessageRef {
                    mailbox: reported.mailbox.clone(),
                    validity: listing.validity,
                    uid: *uid,
                });
            }
        }
        // The version held no longer describes the listing.
        listing.version = None;
        if !newer_here.is_empty() {
            // What the report said of those messages' other flags is not taken either:
            // the next look lists the mailbox again.
            listing.stale = true;
        }
        listing.index_files();
        if change.arrived || !change.removed.is_empty() {
            listing.changed_now();
        }
        change.size = listing.messages.len();
        inner.touch(&reported.mailbox);
        change
    }

    /// When what `mailbox` holds last changed (its directory's mtime), if it was listed.
    pub fn changed(&self, mailbox: &MailboxId) -> Option<SystemTime> {
        self.inner.lock().listings.get(mailbox).map(|l| l.changed)
    }

    /// When a change to what `mailbox` holds was seen after its first listing (its
    /// directory's ctime), if one was.
    pub fn status_changed(&self, mailbox: &MailboxId) -> Option<SystemTime> {
        self.inner
            .lock()
            .listings
            .get(mailbox)
            .and_then(|l| l.status_changed)
    }

    /// A number that changes whenever what the listing of `mailbox` holds changes, flags
    /// included; `None` if it is not listed.
    pub fn generation(&self, mailbox: &MailboxId) -> Option<u64> {
        self.inner
            .lock()
            .listings
            .get(mailbox)
            .map(|l| l.generation)
    }

    /// The message directories of listed `uids` in `mailbox`: name, message and mtime;
    /// UIDs not listed are left out.
    pub fn named(
        &self,
        mailbox: &MailboxId,
        uids: &[Uid],
    ) -> Vec<(String, MessageRef, SystemTime)> {
        let inner = self.inner.lock();
        let Some(listing) = inner.listings.get(mailbox) else {
            return Vec::new();
        };
        uids.iter()
            .filter_map(|uid| {
                let e = listing.messages.get(uid)?;
                Some((
                    e.name(*uid),
                    listing.message_ref(mailbox, *uid),
                    e.internal_date,
                ))
            })
            .collect()
    }

    /// The listing of `mailbox` as held: its UIDVALIDITY and messages in UID order.
    pub fn listed(&self, mailbox: &MailboxId) -> Option<(UidValidity, Vec<MessageMeta>)> {
        let inner = self.inner.lock();
        let listing = inner.listings.get(mailbox)?;
        Some((
            listing.validity,
            listing
                .messages
                .iter()
                .map(|(uid, e)| e.meta(*uid))
                .collect(),
        ))
    }

    /// The UIDVALIDITY of the mailbox as last listed.
    pub fn validity(&self, mailbox: &MailboxId) -> Option<UidValidity> {
        self.inner.lock().listings.get(mailbox).map(|l| l.validity)
    }

    /// A listed message's metadata.
    pub fn message(&self, message: &MessageRef) -> Option<MessageMeta> {
        let inner = self.inner.lock();
        let listing = inner.listings.get(&message.mailbox)?;
        if listing.validity != message.validity {
            return None;
        }
        listing
            .messages
            .get(&message.uid)
            .map(|e| e.meta(message.uid))
    }

    /// Whether the listing of `mailbox` holds a message of `size` bytes and this raw
    /// Subject (none: without one), or this mount stored one lately (the listing may
    /// predate it: `cp a.eml b.eml` into a mailbox in quick succession).
    pub fn holds_like(&self, mailbox: &MailboxId, size: u64, subject: Option<&[u8]>) -> bool {
        let inner = self.inner.lock();
        let listed = inner.listings.get(mailbox).is_some_and(|l| {
            l.messages
                .values()
                .any(|e| e.size == size && e.subject.as_deref() == subject)
        });
        listed
            || inner.stored_here.get(mailbox).is_some_and(|s| {
                s.iter()
                    .any(|(n, sub)| *n == size && sub.as_deref() == subject)
            })
    }

    /// This mount stored a message of `size` bytes and this raw Subject in `mailbox`.
    pub fn stored_here(&self, mailbox: &MailboxId, size: u64, subject: Option<Vec<u8>>) {
        let mut inner = self.inner.lock();
        let kept = inner.stored_here.entry(mailbox.clone()).or_default();
        if kept.len() == STORED_HERE_KEPT {
            kept.pop_front();
        }
        kept.push_back((size, subject));
    }

    /// The messages of `size` bytes and this raw Subject in the listings of mailboxes other
    /// than `not_in`, with their INTERNALDATEs: what an RFC 5322 file stored into `not_in`
    /// may be a copy of. A message marked `\Deleted` is left out (its copy would be too).
    pub fn like_elsewhere(
        &self,
        not_in: &MailboxId,
        size: u64,
        subject: Option<&[u8]>,
    ) -> Vec<(MessageRef, SystemTime)> {
        let inner = self.inner.lock();
        let mut found = Vec::new();
        for (mailbox, listing) in inner.listings.iter().filter(|(m, _)| *m != not_in) {
            for (uid, entry) in &listing.messages {
                if entry.size == size && entry.subject.as_deref() == subject && !entry.is_deleted()
                {
                    let message = MessageRef {
                        mailbox: mailbox.clone(),
                        validity: listing.validity,
                        uid: *uid,
                    };
                    found.push((message, entry.meta(*uid).internal_date));
                }
            }
        }
        found
    }

    /// Whether the message is in its mailbox's listing.
    pub fn is_listed(&self, message: &MessageRef) -> bool {
        let inner = self.inner.lock();
        inner.listings.get(&message.mailbox).is_some_and(|l| {
            l.validity == message.validity && l.messages.contains_key(&message.uid)
        })
    }

    /// Whether the message is known to have left its mailbox: the listing held of it, of
    /// the same UIDVALIDITY, lacks its UID (false where no such listing is held).
    pub fn is_gone(&self, message: &MessageRef) -> bool {
        let inner = self.inner.lock();
        inner.listings.get(&message.mailbox).is_some_and(|l| {
            l.validity == message.validity && !l.messages.contains_key(&message.uid)
        })
    }

    /// The message a directory name in `mailbox` stands for: one from the listing, or else
    /// a name `mv` gave it (which never hides a listed message of that name).
    pub fn find_message(
        &self,
        mailbox: &MailboxId,
        name: &str,
    ) -> Option<(MessageRef, SystemTime)> {
        let inner = self.inner.lock();
        let listed = inner
            .listings
            .get(mailbox)
            .and_then(|listing| listing.named(mailbox, name));
        listed.or_else(|| {
            inner
                .aliases
                .get(mailbox)
                .and_then(|a| a.get(name))
                .cloned()
        })
    }

    /// Every listed message, in any mailbox but `not_in`, whose directory is named `name`.
    pub fn find_message_elsewhere(
        &self,
        name: &str,
        not_in: &MailboxId,
    ) -> Vec<(MessageRef, SystemTime)> {
        let inner = self.inner.lock();
        inner
            .listings
            .iter()
            .filter(|(mailbox, _)| *mailbox != not_in)
            .filter_map(|(mailbox, listing)| listing.named(mailbox, name))
            .collect()
    }

    /// Every listed message of `mailbox` in UID order, with its name and mtime; names `mv`
    /// gave stop resolving (a directory listing is "the next listing").
    pub fn snapshot(&self, mailbox: &MailboxId) -> Vec<(String, MessageRef, SystemTime)> {
        self.inner.lock().aliases.remove(mailbox);
        self.listed_names(mailbox)
    }

    /// Every listed message of `mailbox` in UID order, with its name and mtime (what
    /// `snapshot` gives, without ending names `mv` gave).
    pub fn listed_names(&self, mailbox: &MailboxId) -> Vec<(String, MessageRef, SystemTime)> {
        let inner = self.inner.lock();
        let Some(listing) = inner.listings.get(mailbox) else {
            return Vec::new();
        };
        listing
            .messages
            .iter()
            .map(|(&uid, e)| {
                let message = MessageRef {
                    mailbox: mailbox.clone(),
                    validity: listing.validity,
                    uid,
                };
                (e.name(uid), message, e.internal_date)
            })
            .collect()
    }

    /// The file-born message shown as the file `name` in `mailbox`, if any.
    pub fn find_file(&self, mailbox: &MailboxId, name: &str) -> Option<(MessageRef, FileOrigin)> {
        let inner = self.inner.lock();
        let listing = inner.listings.get(mailbox)?;
        let uid = *listing.files.get(name)?;
        let origin = listing.messages.get(&uid)?.file_origin()?.clone();
        Some((listing.message_ref(mailbox, uid), origin))
    }

    /// Every file a file-born message of `mailbox` shows, by name.
    pub fn files(&self, mailbox: &MailboxId) -> Vec<(MessageRef, FileOrigin)> {
        let inner = self.inner.lock();
        let Some(listing) = inner.listings.get(mailbox) else {
            return Vec::new();
        };
        listing
            .files
            .values()
            .filter_map(|uid| {
                let origin = listing.messages.get(uid)?.file_origin()?.clone();
                Some((listing.message_ref(mailbox, *uid), origin))
            })
            .collect()
    }

    /// The messages shown as a file named `name` of `size` bytes in the listings of
    /// mailboxes other than `not_in`: what a file of that name stored into `not_in` may be
    /// a copy of. A message marked `\Deleted` is left out (its copy would be too).
    pub fn files_elsewhere(&self, not_in: &MailboxId, name: &str, size: u64) -> Vec<MessageRef> {
        let inner = self.inner.lock();
        let mut found = Vec::new();
        for (mailbox, listing) in inner.listings.iter().filter(|(m, _)| *m != not_in) {
            let Some(uid) = listing.files.get(name) else {
                continue;
            };
            let Some(entry) = listing.messages.get(uid) else {
                continue;
            };
            if entry.file_origin().is_some_and(|o| o.size == size) && !entry.is_deleted() {
                found.push(listing.message_ref(mailbox, *uid));
            }
        }
        found
    }

    /// The UID listed just before `message`, if it is listed.
    pub fn previous_uid(&self, message: &MessageRef) -> Option<Uid> {
        let inner = self.inner.lock();
        let listing = inner
            .listings
            .get(&message.mailbox)
            .filter(|l| l.validity == message.validity)?;
        listing.messages.get(&message.uid)?;
        listing
            .messages
            .range(..message.uid)
            .next_back()
            .map(|(uid, _)| *uid)
    }

    /// Listed messages from `message` on (itself first), in order, whose size `wanted`
    /// accepts, at most `limit`.
    pub fn following(
        &self,
        message: &MessageRef,
        limit: usize,
        mut wanted: impl FnMut(u64) -> bool,
    ) -> Vec<MessageMeta> {
        let inner = self.inner.lock();
        let Some(listing) = inner
            .listings
            .get(&message.mailbox)
            .filter(|l| l.validity == message.validity)
        else {
            return Vec::new();
        };
        listing
            .messages
            .range(message.uid..)
            .filter(|(_, e)| wanted(e.size))
            .take(limit)
            .map(|(uid, e)| e.meta(*uid))
            .collect()
    }

    /// Statistics for `statfs`: messages known and their bytes.
    pub fn totals(&self) -> (u64, u64) {
        let inner = self.inner.lock();
        let files = inner
            .listings
            .values()
            .map(|l| l.messages.len() as u64)
            .sum();
        let bytes = inner
            .listings
            .values()
            .flat_map(|l| l.messages.values())
            .map(|e| e.size)
            .sum();
        (files, bytes)
    }

    // ---- this mount's changes -------------------------------------------------------------

    /// Counts a change made here, so that a listing under way is not trusted, and makes
    /// the next directory listing ask the server.
    pub fn mark_stale(&self, mailbox: &MailboxId) {
        let mut inner = self.inner.lock();
        *inner.changes.entry(mailbox.clone()).or_default() += 1;
        inner.touch(mailbox);
        let ticket = inner.ticket(mailbox);
        if let Some(listing) = inner.listings.get_mut(mailbox) {
            listing.stale = true;
            listing.as_of = ticket;
        }
    }

    /// A message left its mailbox (moved, deleted) by this mount's doing: it is no longer
    /// listed there, and no name `mv` gave it resolves any more.
    pub fn message_left(&self, message: &MessageRef) {
        self.mark_stale(&message.mailbox);
        let mut inner = self.inner.lock();
        if let Some(listing) = inner.listings.get_mut(&message.mailbox) {
            if listing.validity == message.validity {
                listing.messages.remove(&message.uid);
                listing.left.insert(message.uid);
                listing.index_files();
                listing.changed_now();
            }
        }
        if let Some(aliases) = inner.aliases.get_mut(&message.mailbox) {
            aliases.retain(|_, (m, _)| m != message);
        }
    }

    /// A message this mount moved arrived as `new`: it is listed there at once, resolves
    /// under the name `mv` gave it (if any) until the next listing of the target, and keeps
    /// its layout. Returns whether the target turned out to be a recreated mailbox (its
    /// UIDVALIDITY is not the one held), whose old listing is then dropped.
    pub fn message_moved(
        &self,
        old: &MessageRef,
        new: &MessageRef,
        new_name: Option<&str>,
    ) -> bool {
        self.arrived(old, new, new_name, true)
    }

    /// A message this mount copied: `new` holds what `old` holds, so it is listed and
    /// laid out as `old` is. Returns whether the target's UIDVALIDITY changed.
    pub fn message_copied(&self, old: &MessageRef, new: &MessageRef) -> bool {
        self.arrived(old, new, None, false)
    }

    /// `old`'s listing entry and layout given to `new` (taken from `old` when `moved`).
    fn arrived(
        &self,
        old: &MessageRef,
        new: &MessageRef,
        new_name: Option<&str>,
        moved: bool,
    ) -> bool {
        let mut inner = self.inner.lock();
        let recreated = inner
            .listings
            .get(&new.mailbox)
            .is_some_and(|l| l.validity != new.validity);
        if recreated {
            inner.listings.remove(&new.mailbox);
            inner.aliases.remove(&new.mailbox);
            inner.drop_layouts(&new.mailbox, Some(new.validity));
        }
        let layout = if moved {
            inner.layouts().pop(old)
        } else {
            inner.layouts().get(old).cloned()
        };
        if let Some(layout) = layout {
            inner.layouts().put(new.clone(), layout);
        }
        let meta = inner
            .listings
            .get(&old.mailbox)
            .filter(|l| l.validity == old.validity)
            .and_then(|l| l.messages.get(&old.uid))
            .cloned();
        let mtime = meta
            .as_ref()
            .map_or(SystemTime::UNIX_EPOCH, |m| m.internal_date);
        if let (Some(listing), Some(meta)) = (inner.listings.get_mut(&new.mailbox), meta) {
            listing.messages.insert(new.uid, meta);
            listing.index_files();
            listing.changed_now();
        }
        inner.touch(&new.mailbox);
        if let Some(name) = new_name {
            inner
                .aliases
                .entry(new.mailbox.clone())
                .or_default()
                .insert(name.to_string(), (new.clone(), mtime));
        }
        recreated
    }

    /// Flags this mount set.
    pub fn flags_set(&self, message: &MessageRef, flags: Vec<String>) {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        inner.flags_changed_here(&message.mailbox, message.validity, &[message.uid], now);
        if let Some(entry) = inner
            .listings
            .get_mut(&message.mailbox)
            .filter(|l| l.validity == message.validity)
            .and_then(|l| l.messages.get_mut(&message.uid))
        {
            entry.flags = flags.into();
        }
        inner.touch(&message.mailbox);
    }

    /// Applies `change` to the flags of listed messages `uids` of `mailbox` as they are now,
    /// so that a change another client made meanwhile (heard by the watcher) stays shown.
    pub fn flags_changed(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
        change: impl Fn(&[String]) -> Vec<String>,
    ) {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        inner.flags_changed_here(mailbox, validity, uids, now);
        if let Some(listing) = inner
            .listings
            .get_mut(mailbox)
            .filter(|l| l.validity == validity)
        {
            let mut sets = FlagSets::default();
            for uid in uids {
                if let Some(entry) = listing.messages.get_mut(uid) {
                    entry.flags = sets.get(change(&entry.flags));
                }
            }
        }
        inner.touch(mailbox);
    }

    /// Mailboxes this mount renamed (old identifier to new): what is known of them follows.
    pub fn mailboxes_renamed(&self, ids: &HashMap<MailboxId, MailboxId>) {
        let mut inner = self.inner.lock();
        for (old, new) in ids {
            if let Some(listing) = inner.listings.remove(old) {
                inner.listings.insert(new.clone(), listing);
            }
            if let Some(changes) = inner.changes.remove(old) {
                inner.changes.insert(new.clone(), changes);
            }
            inner.aliases.remove(old);
            let moved: Vec<MessageRef> = inner
                .layouts()
                .iter()
                .map(|(m, _)| m)
                .filter(|m| &m.mailbox == old)
                .cloned()
                .collect();
            for m in moved {
                if let Some(layout) = inner.layouts().pop(&m) {
                    let renamed = MessageRef {
                        mailbox: new.clone(),
                        ..m
                    };
                    inner.layouts().put(renamed, layout);
                }
            }
        }
    }

    /// A mailbox this mount deleted.
    pub fn mailbox_deleted(&self, mailbox: &MailboxId) {
        let mut inner = self.inner.lock();
        inner.listings.remove(mailbox);
        inner.aliases.remove(mailbox);
        inner.drop_layouts(mailbox, None);
        // The tree held shows the mailbox: it is no tree to fall back on, and a LIST that
        // went out before the DELETE must not bring it back.
        inner.tree = None;
        inner.stale_tree = None;
        inner.tree_epoch += 1;
    }

    // ---- layouts --------------------------------------------------------------------------

    /// A message's directory layout, if known.
    pub fn layout(&self, message: &MessageRef) -> Option<Arc<Vec<Entry>>> {
        self.inner.lock().layouts().get(message).cloned()
    }

    /// Whether a message's layout is known (without counting as a use).
    pub fn has_layout(&self, message: &MessageRef) -> bool {
        self.inner.lock().layouts().contains(message)
    }

    /// Forgets a message's layout (its directory was forgotten by the kernel).
    pub fn drop_layout(&self, message: &MessageRef) {
        self.inner.lock().layouts().pop(message);
    }

    /// Keeps a message's layout.
    pub fn insert_layout(&self, message: MessageRef, layout: Arc<Vec<Entry>>) {
        self.inner.lock().layouts().put(message, layout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::clock::ManualClock;

    fn meta(uid: u32, subject: &str) -> MessageMeta {
        MessageMeta {
            uid: Uid(uid),
            size: 10,
            internal_date: SystemTime::UNIX_EPOCH,
            subject: Some(subject.as_bytes().to_vec()),
            flags: Vec::new(),
            origin: None,
        }
    }

    fn listing(validity: u32, messages: Vec<MessageMeta>) -> MailboxListing {
        MailboxListing {
            uid_validity: UidValidity(validity),
            messages,
            version: None,
        }
    }

    #[test]
    fn a_message_seen_leaving_is_not_brought_back_by_a_late_report_of_its_arrival() {
        let cache = MetadataCache::new(Arc::new(ManualClock::new()));
        let drafts = MailboxId::new("Drafts");
        let ListingPlan::Relist { ticket } = cache.plan_listing(&drafts, None, false) else {
            panic!("nothing listed yet")
        };
        cache.install_listing(&drafts, listing(1, vec![meta(1, "a")]), ticket);
        let copy = MessageRef {
            mailbox: drafts.clone(),
            validity: UidValidity(1),
            uid: Uid(2),
        };
        // The copy this mount made, then removed, before the watcher's report of it came.
        cache.message_copied(
            &MessageRef {
                uid: Uid(1),
                ..copy.clone()
            },
            &copy,
        );
        assert!(cache.is_listed(&copy));
        cache.message_left(&copy);
        let mut late = MailboxChange::new(drafts.clone());
        late.validity = Some(UidValidity(1));
        late.arrived = vec![meta(2, "a"), meta(3, "b")];
        let change = cache.apply_change(&late);
        assert!(change.arrived, "UID 3 did arrive");
        assert!(!cache.is_listed(&copy), "UID 2 is gone for good");
        assert!(cache.is_listed(&MessageRef {
            uid: Uid(3),
            ..copy.clone()
        }));
        // A new listing with the same UIDVALIDITY keeps what it knows left.
        let ListingPlan::Relist { ticket } =
            cache.plan_listing(&drafts, Some(Duration::ZERO), false)
        else {
            panic!("stale")
        };
        cache.install_listing(&drafts, listing(1, vec![meta(1, "a")]), ticket);
        cache.apply_change(&late);
        assert!(!cache.is_listed(&copy));
    }

    #[test]
    fn freshness_follows_the_clock_and_local_changes() {
        let clock = Arc::new(ManualClock::new());
        let cache = MetadataCache::new(clock.clone());
        let inbox = MailboxId::new("INBOX");
        let ListingPlan::Relist { ticket } = cache.plan_listing(&inbox, None, false) else {
            panic!("nothing listed yet")
        };
        cache.install_listing(&inbox, listing(1, vec![meta(1, "a")]), ticket);
        assert_eq!(
            cache.plan_listing(&inbox, Some(LISTING_FRESH), false),
            ListingPlan::Use
        );
        clock.advance(LISTING_FRESH);
        assert!(matches!(
            cache.plan_listing(&inbox, Some(LISTING_FRESH), false),
            ListingPlan::Relist { .. }
        ));
        assert_eq!(cache.plan_listing(&inbox, None, false), ListingPlan::Use);

        // A listing under way while this mount changed the mailbox is kept, but stale.
        let ListingPlan::Relist { ticket } = cache.plan_listing(&inbox, Some(LISTING_FRESH), false)
        else {
            panic!()
        };
        cache.mark_stale(&inbox);
        cache.install_listing(&inbox, listing(1, vec![meta(1, "a")]), ticket);
        assert!(matches!(
            cache.plan_listing(&inbox, Some(LISTING_FRESH), false),
            ListingPlan::Relist { .. }
        ));
    }

    #[test]
    fn a_followed_listing_stays_fresh_until_this_mount_changes_the_mailbox() {
        let clock = Arc::new(ManualClock::new());
        let cache = MetadataCache::new(clock.clone());
        let inbox = MailboxId::new("INBOX");
        cache.install_listing(&inbox, listing(1, vec![meta(1, "a")]), ChangeTicket(0));
        clock.advance(Duration::from_secs(3600));
        assert_eq!(
            cache.plan_listing(&inbox, Some(LISTING_FRESH), true),
            ListingPlan::Use
        );
        cache.mark_stale(&inbox);
        assert!(matches!(
            cache.plan_listing(&inbox, Some(LISTING_FRESH), true),
            ListingPlan::Relist { .. }
        ));
    }

    /// A LIST that went out before the tree was forgotten (a change elsewhere reported
    /// meanwhile) is not kept over the one that went out after.
    #[test]
    fn a_tree_listed_before_it_was_forgotten_is_not_kept() {
        let cache = MetadataCache::new(Arc::new(ManualClock::new()));
        let tree = || Arc::new(MailboxTree::build(&[]));
        let early = cache.tree_ticket();
        cache.invalidate_tree();
        let late = cache.tree_ticket();
        assert!(cache.set_tree(tree(), late));
        assert!(!cache.set_tree(tree(), early), "the older LIST is dropped");
        assert!(cache.tree(None).is_some());
    }

    /// `rmdir` of a mailbox while a LIST is under way (a lookup's, or one after a report
    /// of a change elsewhere): the LIST that went out before the DELETE is not kept, and
    /// the tree that showed the mailbox is not shown again. Seen under load: `ls` of the
    /// root right after `rmdir Projects` still listed it.
    #[test]
    fn a_tree_listed_before_a_mailbox_was_deleted_is_not_kept() {
        let cache = MetadataCache::new(Arc::new(ManualClock::new()));
        let gone = MailboxId::new("Projects");
        let with_it = || {
            Arc::new(MailboxTree::build(&[crate::store::MailboxInfo {
                id: gone.clone(),
                path: vec!["Projects".into()],
                selectable: true,
                special_use: None,
            }]))
        };
        assert!(cache.set_tree(with_it(), cache.tree_ticket()));
        let before = cache.tree_ticket();
        cache.mailbox_deleted(&gone);
        assert!(
            !cache.set_tree(with_it(), before),
            "the older LIST is dropped"
        );
        assert!(cache.tree(None).is_none(), "no tree showing it is held");
    }

    #[test]
    fn names_resolve_by_uid_and_exact_name() {
        let cache = MetadataCache::new(Arc::new(ManualClock::new()));
        let inbox = MailboxId::new("INBOX");
        let ListingPlan::Relist { ticket } = cache.plan_listing(&inbox, None, false) else {
            panic!()
        };
        cache.install_listing(&inbox, listing(7, vec![meta(3, "hello")]), ticket);
        let (found, _) = cache.find_message(&inbox, "3 hello").unwrap();
        assert_eq!(found.uid, Uid(3));
        assert_eq!(found.validity, UidValidity(7));
        assert!(cache.find_message(&inbox, "3 hell").is_none());
        assert!(cache.find_message(&inbox, "4 hello").is_none());
        assert!(cache.find_message(&inbox, "x").is_none());
    }

    #[test]
    fn a_new_listing_reports_what_left_and_what_came() {
        let cache = MetadataCache::new(Arc::new(ManualClock::new()));
        let inbox = MailboxId::new("INBOX");
        let ticket = ChangeTicket(0);
        cache.install_listing(&inbox, listing(1, vec![meta(1, "a"), meta(2, "b")]), ticket);
        let change =
            cache.install_listing(&inbox, listing(1, vec![meta(2, "b"), meta(3, "c")]), ticket);
        assert!(!change.validity_changed);
        assert!(change.arrived);
        let removed: Vec<&str> = change.removed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(removed, ["1 a"]);
        let change = cache.install_listing(&inbox, listing(2, vec![meta(2, "x")]), ticket);
        assert!(change.validity_changed);
        assert_eq!(change.removed.len(), 2);
    }

    #[test]
    fn reported_changes_update_the_listing_in_place() {
        let cache = MetadataCache::new(Arc::new(ManualClock::new()));
        let inbox = MailboxId::new("INBOX");
        cache.install_listing(
            &inbox,
            listing(1, vec![meta(1, "a"), meta(2, "b")]),
            ChangeTicket(0),
        );
        let change = cache.apply_change(&MailboxChange {
            validity: Some(UidValidity(1)),
            arrived: vec![meta(5, "new")],
            vanished: vec![Uid(1)],
            flags: vec![(Uid(2), vec!["\\Seen".into()])],
            ..MailboxChange::new(inbox.clone())
        });
        assert!(change.arrived);
        assert_eq!(change.removed.len(), 1);
        let two = MessageRef {
            mailbox: inbox.clone(),
            validity: UidValidity(1),
            uid: Uid(2),
        };
        assert_eq!(cache.message(&two).unwrap().flags, ["\\Seen"]);
        let names: Vec<String> = cache
            .snapshot(&inbox)
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        assert_eq!(names, ["2 b", "5 new"]);
    }

    /// A flag change made here while a report or a listing was on its way: what they
    /// say of the message's flags may be from before the server applied it, and must not
    /// undo it (a resync asked for after an APPEND, answered after a `+\Flagged`, showed
    /// the message unflagged and gave its next version no flag). Asked for after the
    /// change, they are believed.
    #[test]
    fn flags_changed_here_outrank_reports_and_listings_asked_for_before() {
        let clock = Arc::new(ManualClock::new());
        let cache = MetadataCache::new(clock.clone());
        let inbox = MailboxId::new("INBOX");
        let one = MessageRef {
            mailbox: inbox.clone(),
            validity: UidValidity(1),
            uid: Uid(1),
        };
        let flags = |cache: &MetadataCache| cache.message(&one).unwrap().flags;
        let ListingPlan::Relist { ticket } = cache.plan_listing(&inbox, None, false) else {
            panic!("nothing listed yet")
        };
        cache.install_listing(&inbox, listing(1, vec![meta(1, "a")]), ticket);
        let asked = clock.now();
        let ListingPlan::Relist { ticket: before } =
            cache.plan_listing(&inbox, Some(Duration::ZERO), false)
        else {
            panic!("asked for any age")
        };
        clock.advance(Duration::from_millis(5));
        cache.flags_changed(&inbox, UidValidity(1), &[Uid(1)], |_| {
            vec!["\\Flagged".to_string()]
        });
        // The report of the message's arrival, and of its flags, both from before.
        let late = MailboxChange {
            validity: Some(UidValidity(1)),
            arrived: vec![meta(1, "a")],
            flags: vec![(Uid(1), Vec::new())],
            asked_at: Some(asked),
            ..MailboxChange::new(inbox.clone())
        };
        assert!(cache.apply_change(&late).flagged.is_empty());
        assert_eq!(flags(&cache), ["\\Flagged"]);
        // What else the report said of them is not taken: the next look lists again.
        assert!(matches!(
            cache.plan_listing(&inbox, Some(Duration::from_secs(60)), true),
            ListingPlan::Relist { .. }
        ));
        // A listing asked for before the change keeps the flags made here.
        cache.install_listing(&inbox, listing(1, vec![meta(1, "a")]), before);
        assert_eq!(flags(&cache), ["\\Flagged"]);
        // Asked for after it: believed (another client took the flag off).
        clock.advance(Duration::from_millis(5));
        let later = MailboxChange {
            asked_at: Some(clock.now()),
            ..late.clone()
        };
        assert_eq!(
            cache.apply_change(&later).flagged,
            std::slice::from_ref(&one)
        );
        assert!(flags(&cache).is_empty());
        let ListingPlan::Relist { ticket: after } =
            cache.plan_listing(&inbox, Some(Duration::ZERO), false)
        else {
            panic!("asked for any age")
        };
        let mut seen = meta(1, "a");
        seen.flags = vec!["\\Seen".into()];
        cache.install_listing(&inbox, listing(1, vec![seen]), after);
        assert_eq!(flags(&cache), ["\\Seen"]);
        // A report without a time is believed, as before.
        let untimed = MailboxChange {
            asked_at: None,
            ..late
        };
        cache.apply_change(&untimed);
        assert!(flags(&cache).is_empty());
    }

    #[test]
    fn a_listing_gives_back_what_it_was_given_and_shares_equal_flag_lists() {
        let cache = MetadataCache::new(Arc::new(ManualClock::new()));
        let inbox = MailboxId::new("INBOX");
        let mut given = vec![meta(1, "a"), meta(2, "b"), meta(3, "c")];
        given[0].flags = vec!["\\Seen".into()];
        given[1].flags = vec!["\\Seen".into()];
        given[2].origin = Some(b"name=\"x.txt\"; size=3; mtime=5.000000000".to_vec());
        given[2].subject = None;
        let ListingPlan::Relist { ticket } = cache.plan_listing(&inbox, None, false) else {
            panic!("nothing listed yet")
        };
        cache.install_listing(&inbox, listing(7, given.clone()), ticket);
        assert_eq!(cache.listed(&inbox), Some((UidValidity(7), given)));
        let files: Vec<String> = cache
            .files(&inbox)
            .into_iter()
            .map(|(_, f)| f.name)
            .collect();
        assert_eq!(files, ["x.txt"]);
        let inner = cache.inner.lock();
        let messages = &inner.listings[&inbox].messages;
        assert!(Arc::ptr_eq(
            &messages[&Uid(1)].flags,
            &messages[&Uid(2)].flags
        ));
        assert_eq!(messages[&Uid(3)].name(Uid(3)), "3 (no subject)");
    }

    /// The soak's ENOENT: a listing of the target asked for before a message was moved in
    /// arrives after the move; the moved message's name must still resolve.
    #[test]
    fn a_listing_asked_for_before_a_move_in_does_not_hide_the_moved_message() {
        let cache = MetadataCache::new(Arc::new(ManualClock::new()));
        let (a, b) = (MailboxId::new("A"), MailboxId::new("B"));
        cache.install_listing(&a, listing(7, vec![meta(1, "one")]), ChangeTicket(0));
        cache.install_listing(&b, listing(9, vec![meta(5, "moved")]), ChangeTicket(0));
        // A listing of A goes out...
        let ListingPlan::Relist { ticket } = cache.plan_listing(&a, Some(Duration::ZERO), false)
        else {
            panic!("a relist")
        };
        // ... the mount moves B/5 to A, where it is UID 2 ...
        let (old, new) = (
            MessageRef {
                mailbox: b.clone(),
                validity: UidValidity(9),
                uid: Uid(5),
            },
            MessageRef {
                mailbox: a.clone(),
                validity: UidValidity(7),
                uid: Uid(2),
            },
        );
        cache.message_moved(&old, &new, None);
        cache.message_left(&old);
        cache.mark_stale(&a);
        // ... and the listing from before the move arrives.
        cache.install_listing(&a, listing(7, vec![meta(1, "one")]), ticket);
        assert_eq!(
            cache.find_message(&a, "2 moved").map(|(m, _)| m),
            Some(new),
            "the moved message's name no longer resolves"
        );
        // It is still to be listed again.
        assert!(matches!(
            cache.plan_listing(&a, Some(LISTING_FRESH), false),
            ListingPlan::Relist { .. }
        ));
    }
}
