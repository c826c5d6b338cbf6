//! `Change` as journal records hold it. Postcard names a variant by its place and reads a
//! variant's fields by their order, with no way to tell a field that is missing: a journal
//! written by an older imapfs is read only if no variant moves and none gains a field. So
//! a change that needs more fields is a new variant at the end, and the old one stays as
//! it was, read as the same `Change` with the new fields `None`.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::Change;
use crate::store::{MailboxId, Uid, UidValidity};

/// The variants in the order journals hold them; never reordered, never changed.
#[derive(Serialize, Deserialize)]
pub(super) enum StoredChange {
    /// A flag change as journals before `since` and `base` hold it.
    Flags {
        mailbox: MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: Vec<String>,
        remove: Vec<String>,
    },
    Move {
        from: MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: MailboxId,
        provisional: Uid,
        size: Option<u64>,
        internal_date: Option<SystemTime>,
    },
    Expunge {
        mailbox: MailboxId,
        validity: UidValidity,
        uid: Uid,
    },
    Append {
        mailbox: MailboxId,
        provisional: Uid,
        len: u64,
        binary: bool,
        internal_date: SystemTime,
        message_id: Option<String>,
        flags: Vec<String>,
        name: String,
    },
    Create {
        path: Vec<String>,
        provisional: MailboxId,
    },
    /// A flag change with the HIGHESTMODSEQ and the flags it was made from.
    FlagsSince {
        mailbox: MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: Vec<String>,
        remove: Vec<String>,
        since: Option<u64>,
        base: Option<Vec<String>>,
    },
}

impl From<StoredChange> for Change {
    fn from(stored: StoredChange) -> Change {
        match stored {
            StoredChange::Flags {
                mailbox,
                validity,
                uid,
                add,
                remove,
            } => Change::Flags {
                mailbox,
                validity,
                uid,
                add,
                remove,
                since: None,
                base: None,
            },
            StoredChange::FlagsSince {
                mailbox,
                validity,
                uid,
                add,
                remove,
                since,
                base,
            } => Change::Flags {
                mailbox,
                validity,
                uid,
                add,
                remove,
                since,
                base,
            },
            StoredChange::Move {
                from,
                validity,
                uid,
                to,
                provisional,
                size,
                internal_date,
            } => Change::Move {
                from,
                validity,
                uid,
                to,
                provisional,
                size,
                internal_date,
            },
            StoredChange::Expunge {
                mailbox,
                validity,
                uid,
            } => Change::Expunge {
                mailbox,
                validity,
                uid,
            },
            StoredChange::Append {
                mailbox,
                provisional,
                len,
                binary,
                internal_date,
                message_id,
                flags,
                name,
            } => Change::Append {
                mailbox,
                provisional,
                len,
                binary,
                internal_date,
                message_id,
                flags,
                name,
            },
            StoredChange::Create { path, provisional } => Change::Create { path, provisional },
        }
    }
}

impl From<Change> for StoredChange {
    fn from(change: Change) -> StoredChange {
        match change {
            Change::Flags {
                mailbox,
                validity,
                uid,
                add,
                remove,
                since,
                base,
            } => StoredChange::FlagsSince {
                mailbox,
                validity,
                uid,
                add,
                remove,
                since,
                base,
            },
            Change::Move {
                from,
                validity,
                uid,
                to,
                provisional,
                size,
                internal_date,
            } => StoredChange::Move {
                from,
                validity,
                uid,
                to,
                provisional,
                size,
                internal_date,
            },
            Change::Expunge {
                mailbox,
                validity,
                uid,
            } => StoredChange::Expunge {
                mailbox,
                validity,
                uid,
            },
            Change::Append {
                mailbox,
                provisional,
                len,
                binary,
                internal_date,
                message_id,
                flags,
                name,
            } => StoredChange::Append {
                mailbox,
                provisional,
                len,
                binary,
                internal_date,
                message_id,
                flags,
                name,
            },
            Change::Create { path, provisional } => StoredChange::Create { path, provisional },
        }
    }
}
