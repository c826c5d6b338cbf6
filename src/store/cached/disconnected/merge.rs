//! The replay of one offline flag change: conditional where the server has CONDSTORE,
//! and merged with another client's change to the same message
//! ([RFC 4549 §4.3](https://www.rfc-editor.org/rfc/rfc4549#section-4.3),
//! [RFC 7162 §3.1.3](https://www.rfc-editor.org/rfc/rfc7162#section-3.1.3)).

use std::collections::HashMap;

use super::super::Shared;
use super::contains;
use crate::store::{ConditionalStore, Flag, MailboxId, StoreResult, Uid, UidValidity};

/// Conditional tries after the first conflict, before the change goes unconditionally.
const MERGE_RETRIES: usize = 3;

/// The MODSEQ this replay's own flag change left on a message: a later offline change of
/// the same message is conditional on that, so the replay's own change does not count as
/// another client's.
pub(super) type OwnModseqs = HashMap<(MailboxId, Uid), u64>;

/// An offline flag change, where its message is on the server now.
pub(super) struct FlagChange<'a> {
    pub mailbox: &'a MailboxId,
    pub validity: UidValidity,
    pub uid: Uid,
    pub add: &'a [Flag],
    pub remove: &'a [Flag],
    /// The mailbox's HIGHESTMODSEQ the change was made at, if known.
    pub since: Option<u64>,
    /// The flags the mount showed before the change, if known (for the log).
    pub base: Option<&'a [String]>,
}

/// What of the offline delta the server's flags `now` lack: the flags to add that are not
/// set, and the flags to remove that are.
fn missing_from(now: &[String], add: &[Flag], remove: &[Flag]) -> (Vec<Flag>, Vec<Flag>) {
    let add = add.iter().filter(|f| !contains(now, f.as_str()));
    let remove = remove.iter().filter(|f| contains(now, f.as_str()));
    (add.cloned().collect(), remove.cloned().collect())
}

impl Shared {
    /// Replays a flag change. The delta goes as `+FLAGS.SILENT` / `-FLAGS.SILENT`, never a
    /// replacement. With CONDSTORE and `since` known each STORE carries
    /// `UNCHANGEDSINCE`; a message another client changed after `since` comes back
    /// `MODIFIED`. Then its flags and MODSEQ now are fetched (`UID FETCH (FLAGS MODSEQ)`),
    /// the conflict is logged, and only what the server's flags lack of the delta is sent,
    /// conditional on the MODSEQ fetched: the other client's changes to other flags stay;
    /// a flag both changed the same way needs nothing; a flag both changed ends as the
    /// offline change says, since it is the later. After three more conflicts it is sent
    /// unconditionally: `+FLAGS`/`-FLAGS` cannot undo another client's other flags, so the
    /// condition serves to see a conflict, not to keep one from doing harm. Without
    /// CONDSTORE, or without `since`, the delta goes unconditionally, as it always did.
    pub(super) fn replay_flags(
        &self,
        change: &FlagChange<'_>,
        own: &mut OwnModseqs,
    ) -> StoreResult<()> {
        let inner = &self.inner;
        let &FlagChange {
            mailbox,
            validity,
            uid,
            ..
        } = change;
        let key = (mailbox.clone(), uid);
        let Some(mut since) = change.since else {
            own.remove(&key);
            return inner.change_flags(mailbox, validity, uid, change.add, change.remove);
        };
        if let Some(&left) = own.get(&key) {
            since = since.max(left);
        }
        let (mut add, mut remove) = (change.add.to_vec(), change.remove.to_vec());
        let mut retries = 0;
        loop {
            match inner
                .change_flags_unchanged_since(mailbox, validity, uid, &add, &remove, since)?
            {
                ConditionalStore::Stored(modseq) => {
                    match modseq {
                        Some(modseq) => own.insert(key, modseq),
                        None => own.remove(&key),
                    };
                    return Ok(());
                }
                ConditionalStore::NotOffered => break,
                ConditionalStore::Modified => {}
            }
            let now = inner.flags_now(mailbox, validity, uid)?;
            (add, remove) = missing_from(&now.flags, change.add, change.remove);
            tracing::info!(
                mailbox = %mailbox,
                %uid,
                base = ?change.base,
                server = ?now.flags,
                add = ?names(&add),
                remove = ?names(&remove),
                unchanged_since = since,
                "offline flag change: another client changed the message meanwhile (MODIFIED); merging: only what the server's flags lack is sent"
            );
            if add.is_empty() && remove.is_empty() {
                own.remove(&key);
                return Ok(());
            }
            match now.modseq {
                Some(modseq) if retries < MERGE_RETRIES => {
                    since = modseq;
                    retries += 1;
                }
                _ => {
                    tracing::info!(mailbox = %mailbox, %uid, retries,
                        "offline flag change: the message keeps changing; its flags are added and removed without a condition");
                    break;
                }
            }
        }
        own.remove(&key);
        inner.change_flags(mailbox, validity, uid, &add, &remove)
    }
}

fn names(flags: &[Flag]) -> Vec<&str> {
    flags.iter().map(Flag::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(list: &[&str]) -> Vec<Flag> {
        list.iter().map(|f| Flag::parse(f).unwrap()).collect()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn only_what_the_server_lacks_of_the_offline_delta_is_sent() {
        // Offline: +$mine -\Flagged. The other client: +$theirs -\Seen, and it also
        // added $mine: that needs nothing.
        let now = strings(&["$theirs", "$mine", "\\Flagged"]);
        let (add, remove) = missing_from(&now, &flags(&["$mine"]), &flags(&["\\Flagged"]));
        assert_eq!((add, remove), (vec![], flags(&["\\Flagged"])));
        // Case does not matter for system flags.
        let now = strings(&["\\seen"]);
        let (add, remove) = missing_from(&now, &flags(&["\\Seen"]), &flags(&["\\Answered"]));
        assert_eq!((add, remove), (vec![], vec![]));
        let (add, remove) = missing_from(&[], &flags(&["\\Seen", "$x"]), &flags(&["$y"]));
        assert_eq!((add, remove), (flags(&["\\Seen", "$x"]), vec![]));
    }
}
