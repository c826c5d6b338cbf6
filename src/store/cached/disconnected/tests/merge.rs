//! Offline flag changes replayed with CONDSTORE: conditional (`UNCHANGEDSINCE`), merged
//! with another client's change on `MODIFIED`, and as before without CONDSTORE.

use std::sync::Arc;

use super::super::super::journal::{Change, Journal};
use super::{flags, id, settled, sorted, Account};
use crate::store::memory::Op;
use crate::store::{MailStore, Uid};

/// The journaled flag changes: (UID, since, base).
fn journaled(account: &Account) -> Vec<(Uid, Option<u64>, Option<Vec<String>>)> {
    let (_, queue) = Journal::open(&account.cache()).unwrap();
    queue
        .entries
        .iter()
        .filter_map(|e| match &e.change {
            Change::Flags {
                uid, since, base, ..
            } => Some((*uid, *since, base.as_ref().map(|b| sorted(b)))),
            _ => None,
        })
        .collect()
}

fn modseq(account: &Account) -> u64 {
    let version = account.memory.mailbox_version(&id("INBOX")).unwrap();
    version.expect("CONDSTORE").highest_modseq
}

fn strings(list: &[&str]) -> Vec<String> {
    sorted(&list.iter().map(|f| f.to_string()).collect::<Vec<_>>())
}

/// What the server holds in INBOX: flags by UID order.
fn inbox_flags(account: &Account) -> Vec<Vec<String>> {
    account.server("INBOX").into_iter().map(|m| m.1).collect()
}

#[test]
fn a_conflict_is_seen_by_unchangedsince_and_merged_onto_the_servers_flags() {
    let account = Account::new(4);
    account
        .memory
        .set_flags("INBOX", Uid(1), &["\\Flagged", "\\Answered"]);
    account.seen();
    let since = modseq(&account);
    let validity = account.memory.uid_validity("INBOX");
    let offline = account.mount(true);
    // 1: +$mine, while another client adds $theirs and takes \Answered off.
    // 2: +$both, which the other client sets too.
    // 3: -\Seen... it has none; +\Seen, which nobody else touches.
    for (uid, add) in [(1, "$mine"), (2, "$both"), (3, "\\Seen")] {
        offline
            .change_flags(&id("INBOX"), validity, Uid(uid), &flags(&[add]), &[])
            .unwrap();
    }
    drop(offline);
    assert_eq!(
        journaled(&account),
        [
            (
                Uid(1),
                Some(since),
                Some(strings(&["\\Flagged", "\\Answered"]))
            ),
            (Uid(2), Some(since), Some(vec![])),
            (Uid(3), Some(since), Some(vec![])),
        ],
        "the HIGHESTMODSEQ last listed, kept after the first change left no version"
    );
    account
        .memory
        .set_flags("INBOX", Uid(1), &["\\Flagged", "$theirs"]);
    account.memory.set_flags("INBOX", Uid(2), &["$both"]);
    let (stores, fetches) = (
        account.memory.count(Op::SetFlags),
        account.memory.count(Op::FetchFlags),
    );

    let online = account.mount(false);
    settled(&online);
    assert_eq!(
        inbox_flags(&account),
        [
            strings(&["\\Flagged", "$theirs", "$mine"]),
            strings(&["$both"]),
            strings(&["\\Seen"]),
            vec![],
        ]
    );
    // 1: MODIFIED, a fetch, the merge; 2: MODIFIED, a fetch, nothing left to send;
    // 3: stored at once.
    assert_eq!(account.memory.count(Op::SetFlags) - stores, 2 + 1 + 1);
    assert_eq!(account.memory.count(Op::FetchFlags) - fetches, 2);
}

#[test]
fn a_message_that_keeps_changing_gets_the_change_unconditionally_after_three_retries() {
    let account = Account::new(1);
    account.seen();
    let validity = account.memory.uid_validity("INBOX");
    let offline = account.mount(true);
    offline
        .change_flags(
            &id("INBOX"),
            validity,
            Uid(1),
            &flags(&["$mine"]),
            &flags(&["\\Flagged"]),
        )
        .unwrap();
    drop(offline);
    account
        .memory
        .set_flags("INBOX", Uid(1), &["\\Flagged", "$t0"]);
    // Another client changes the message again right after each fetch of its flags.
    for n in 1..=4 {
        let memory = Arc::clone(&account.memory);
        account.memory.after_next(Op::FetchFlags, move || {
            let theirs = format!("$t{n}");
            memory.set_flags("INBOX", Uid(1), &["\\Flagged", theirs.as_str()]);
        });
    }
    let stores = account.memory.count(Op::SetFlags);

    let online = account.mount(false);
    settled(&online);
    assert_eq!(inbox_flags(&account), [strings(&["$t4", "$mine"])]);
    // Four conditional tries (the first and three retries), then one without condition.
    assert_eq!(account.memory.count(Op::SetFlags) - stores, 5);
    assert_eq!(account.memory.count(Op::FetchFlags), 4);
}

#[test]
fn the_replays_own_change_of_a_message_is_not_taken_for_a_conflict() {
    let account = Account::new(1);
    account.seen();
    let validity = account.memory.uid_validity("INBOX");
    let offline = account.mount(true);
    for flag in ["$one", "$two", "\\Seen"] {
        offline
            .change_flags(&id("INBOX"), validity, Uid(1), &flags(&[flag]), &[])
            .unwrap();
    }
    drop(offline);
    let online = account.mount(false);
    settled(&online);
    assert_eq!(
        inbox_flags(&account),
        [strings(&["\\Flagged", "$one", "$two", "\\Seen"])]
    );
    assert_eq!(account.memory.count(Op::FetchFlags), 0, "no MODIFIED");
}

#[test]
fn without_condstore_the_delta_goes_as_before() {
    // Without CONDSTORE when listed: nothing to be conditional on. With it when listed
    // but not when replayed: the server cannot make it conditional.
    for condstore_when_listed in [false, true] {
        let account = Account::new(2);
        account.memory.set_condstore(condstore_when_listed);
        account.seen();
        let validity = account.memory.uid_validity("INBOX");
        let offline = account.mount(true);
        offline
            .change_flags(&id("INBOX"), validity, Uid(1), &flags(&["$mine"]), &[])
            .unwrap();
        drop(offline);
        let since = journaled(&account)[0].1;
        assert_eq!(since.is_some(), condstore_when_listed);
        account.memory.set_condstore(false);
        account
            .memory
            .set_flags("INBOX", Uid(1), &["\\Flagged", "$theirs"]);
        let stores = account.memory.count(Op::SetFlags);

        let online = account.mount(false);
        settled(&online);
        assert_eq!(
            inbox_flags(&account),
            [strings(&["\\Flagged", "$theirs", "$mine"]), vec![]],
            "listed with CONDSTORE: {condstore_when_listed}"
        );
        assert_eq!(account.memory.count(Op::SetFlags) - stores, 1);
        assert_eq!(account.memory.count(Op::FetchFlags), 0);
    }
}
