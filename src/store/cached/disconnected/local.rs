//! Changes made offline, applied to the kept metadata (`store/cached.rs`'s index), so
//! that the mount shows them at once; the server's next listing replaces them.

use redb::ReadableTable;

use super::super::{decode, encode, Tables};
use crate::store::{MailboxId, MailboxInfo, MessageMeta, MessageStructure, Uid, UidValidity};

/// A change made offline, as the kept metadata shows it. Each leaves the mailboxes it
/// touches without a version, so that the next listing online is a full one.
#[derive(Debug)]
pub(in crate::store::cached) enum LocalChange {
    Flags {
        mailbox: MailboxId,
        uid: Uid,
        flags: Vec<String>,
    },
    /// `target`: the target's UIDVALIDITY and the provisional UID, when the target is kept.
    Moved {
        from: MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: MailboxId,
        target: Option<(UidValidity, Uid)>,
    },
    Expunged {
        mailbox: MailboxId,
        uid: Uid,
    },
    Appended {
        mailbox: MailboxId,
        meta: MessageMeta,
    },
    /// A mailbox created offline: listed, with an empty listing.
    Created(MailboxInfo),
}

impl Tables<'_, '_> {
    /// Leaves a mailbox changed here without a version: the next listing is a full one.
    fn unversion(&mut self, mailbox: &MailboxId) -> Result<(), redb::Error> {
        if let Some(mut head) = self.head(mailbox)? {
            head.version = None;
            head.dirty = true;
            self.heads
                .insert(mailbox.as_str(), encode(&head).as_slice())?;
        }
        Ok(())
    }

    fn meta(&self, mailbox: &MailboxId, uid: Uid) -> Result<Option<MessageMeta>, redb::Error> {
        Ok(self
            .messages
            .get((mailbox.as_str(), uid.0))?
            .and_then(|v| decode(v.value())))
    }

    /// A change made offline, applied to what is kept.
    pub(in crate::store::cached) fn local(
        &mut self,
        change: LocalChange,
    ) -> Result<(), redb::Error> {
        match change {
            LocalChange::Flags {
                mailbox,
                uid,
                flags,
            } => {
                if let Some(mut meta) = self.meta(&mailbox, uid)? {
                    meta.flags = flags;
                    self.messages
                        .insert((mailbox.as_str(), uid.0), encode(&meta).as_slice())?;
                }
                self.unversion(&mailbox)
            }
            LocalChange::Moved {
                from,
                validity,
                uid,
                to,
                target,
            } => {
                let meta = self.meta(&from, uid)?;
                self.messages.remove((from.as_str(), uid.0))?;
                if let (Some(mut meta), Some((to_validity, new_uid))) = (meta, target) {
                    meta.uid = new_uid;
                    self.messages
                        .insert((to.as_str(), new_uid.0), encode(&meta).as_slice())?;
                    self.copy_message(&from, validity, uid, &to, to_validity, new_uid)?;
                }
                self.unversion(&from)?;
                self.unversion(&to)
            }
            LocalChange::Expunged { mailbox, uid } => {
                self.messages.remove((mailbox.as_str(), uid.0))?;
                self.unversion(&mailbox)
            }
            LocalChange::Appended { mailbox, meta } => {
                self.messages
                    .insert((mailbox.as_str(), meta.uid.0), encode(&meta).as_slice())?;
                self.unversion(&mailbox)
            }
            LocalChange::Created(_) => Ok(()),
        }
    }

    /// What is kept of a message's structure and parts, under its provisional place too, so
    /// that its directory opens offline after a move.
    fn copy_message(
        &mut self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
        to_validity: UidValidity,
        new_uid: Uid,
    ) -> Result<(), redb::Error> {
        let structure: Option<MessageStructure> = self
            .structures
            .get((from.as_str(), validity.0, uid.0))?
            .and_then(|v| decode(v.value()));
        if let Some(mut structure) = structure {
            structure.uid = new_uid;
            self.structures.insert(
                (to.as_str(), to_validity.0, new_uid.0),
                encode(&structure).as_slice(),
            )?;
        }
        let name = from.as_str();
        let mut parts = Vec::new();
        for row in self.parts.range(
            (name, validity.0, uid.0, &[][..])..(name, validity.0, uid.0, &[0xffu8; 64][..]),
        )? {
            let (key, value) = row?;
            parts.push((key.value().3.to_vec(), value.value().to_vec()));
        }
        for (item, value) in parts {
            self.parts.insert(
                (to.as_str(), to_validity.0, new_uid.0, item.as_slice()),
                value.as_slice(),
            )?;
        }
        Ok(())
    }
}
