//! Changes both ways: another client's (the memory store's helpers against the same
//! commands from an independent client on Dovecot) and the store's own, through the trait.

use super::{compare_listing, on_both, outcome, Load, Pair, Report};
use crate::store::{
    ConditionalStore, Flag, MailStore, MailboxId, MailboxListing, MessageMeta, NewMessage,
    StoreResult, Uid, UidValidity,
};

/// The mailbox the remote-change helpers are compared in.
const CHANGES: &str = "Changes";

/// The remote-change helpers against the same changes made by another client on Dovecot,
/// as `list_messages` shows them after each step.
pub(super) fn compare_remote_changes(pair: &mut Pair, report: &mut Report) {
    let mailbox = MailboxId::new(CHANGES);
    pair.create_mailbox(CHANGES);
    let step = |pair: &mut Pair, report: &mut Report, what: &str| {
        let before = report.disagreements.len();
        let listings = compare_listing(pair, report, &mailbox);
        for line in &mut report.disagreements[before..] {
            *line = format!("after {what}: {line}");
        }
        listings
    };
    let message = |n: u32| Load {
        name: format!("change {n}"),
        mailbox: CHANGES.into(),
        raw: format!("Subject: change {n}\r\nMessage-ID: <{n}@conformance>\r\n\r\nbody {n}\r\n")
            .into_bytes(),
        flags: match n {
            1 => vec![],
            2 => vec!["$Label2", "\\Seen"],
            _ => vec!["\\Draft", "$Label1", "\\Answered"],
        },
    };
    for n in 1..=3 {
        pair.add(&message(n));
    }
    let before = step(pair, report, "add_message x3");

    // Looking a message up by Message-ID (to find an APPEND that may have landed).
    for id in ["<2@conformance>", "2@conformance", "<9@conformance>"] {
        let found =
            |result: StoreResult<(UidValidity, Vec<MessageMeta>)>| result.map(|(_, metas)| metas);
        let real = found(pair.real.find_by_message_id(&mailbox, id));
        let memory = found(pair.memory.find_by_message_id(&mailbox, id));
        report.check(
            &format!("find_by_message_id {id}"),
            &real.as_ref().ok(),
            &memory.as_ref().ok(),
        );
        report.check(
            &format!("find_by_message_id {id}"),
            &outcome(&real),
            &outcome(&memory),
        );
    }

    // Flags replaced: system flags in any case and order, keywords old and new.
    let flags = [
        "$Label1",
        "\\seen",
        "$New",
        "\\Flagged",
        "$Label2",
        "$label1",
    ];
    pair.client_command("SELECT", |c| c.select(CHANGES).map(drop));
    pair.client_command("UID STORE", |c| {
        c.uid_store("1", "FLAGS ($Label1 \\seen $New \\Flagged $Label2 $label1)")
            .map(drop)
    });
    pair.memory.set_flags(CHANGES, Uid(1), &flags);
    step(pair, report, "set_flags");
    pair.client_command("UID STORE", |c| c.uid_store("3", "FLAGS ()").map(drop));
    pair.memory.set_flags(CHANGES, Uid(3), &[]);
    step(pair, report, "set_flags to none");

    // The store's own flag change SELECTs the mailbox, which takes \\Recent from a message
    // another client (not in the mailbox) just added; a UID that is gone is refused.
    pair.client_command("SELECT", |c| c.select("INBOX").map(drop));
    pair.add(&message(5));
    let (real, memory) = step(
        pair,
        report,
        "add_message while another client is elsewhere",
    );
    let flags = [
        Flag::parse("$Trait").unwrap(),
        Flag::parse("\\seen").unwrap(),
    ];
    let changed = (
        pair.real
            .set_flags(&mailbox, real.uid_validity, Uid(1), &flags),
        MailStore::set_flags(&pair.memory, &mailbox, memory.uid_validity, Uid(1), &flags),
    );
    report.check(
        "MailStore::set_flags",
        &outcome(&changed.0),
        &outcome(&changed.1),
    );
    step(pair, report, "MailStore::set_flags");
    let gone = (
        pair.real
            .set_flags(&mailbox, real.uid_validity, Uid(99), &flags),
        MailStore::set_flags(&pair.memory, &mailbox, memory.uid_validity, Uid(99), &flags),
    );
    report.check(
        "MailStore::set_flags of a UID that is gone",
        &outcome(&gone.0),
        &outcome(&gone.1),
    );
    pair.client_command("SELECT", |c| c.select(CHANGES).map(drop));
    compare_conditional_store(pair, report, &mailbox);

    // One message expunged.
    pair.client_command("UID STORE", |c| {
        c.uid_store("2", "+FLAGS.SILENT (\\Deleted)").map(drop)
    });
    pair.client_command("UID EXPUNGE", |c| c.uid_expunge("2").map(drop));
    pair.memory.remove_message(CHANGES, Uid(2));
    step(pair, report, "remove_message");

    // The mailbox deleted and created again: new UIDVALIDITY, UIDs from 1.
    pair.client_command("SELECT", |c| c.select("INBOX").map(drop));
    pair.client_command("DELETE", |c| c.delete(CHANGES));
    pair.client_command("CREATE", |c| c.create(CHANGES));
    pair.memory.recreate_mailbox(CHANGES);
    let (real, memory) = step(pair, report, "recreate_mailbox");
    report.check(
        "recreate_mailbox: UIDVALIDITY changed on Dovecot",
        &true,
        &(real.uid_validity != before.0.uid_validity),
    );
    report.check(
        "recreate_mailbox: UIDVALIDITY changed in memory",
        &true,
        &(memory.uid_validity != before.1.uid_validity),
    );
    pair.add(&message(4));
    step(pair, report, "add_message after recreate_mailbox");
}

/// A flag change conditional on the HIGHESTMODSEQ just listed (`UNCHANGEDSINCE`, as the
/// replay of offline changes sends it): stored; the same again after another client's
/// change: `MODIFIED`, and nothing stored; then the message's flags and MODSEQ. The
/// independent client has `mailbox` selected. MODSEQ values are not compared (the memory
/// store counts them its own way), only that they move on.
fn compare_conditional_store(pair: &mut Pair, report: &mut Report, mailbox: &MailboxId) {
    let (real, memory) = compare_listing(pair, report, mailbox);
    let since = |l: &MailboxListing| l.version.map_or(0, |v| v.highest_modseq);
    let kind = |r: &StoreResult<ConditionalStore>| match r {
        Ok(ConditionalStore::Stored(modseq)) => {
            format!("stored, MODSEQ told: {}", modseq.is_some())
        }
        Ok(other) => format!("{other:?}"),
        Err(_) => format!("{:?}", outcome(r)),
    };
    let add = [Flag::parse("$Cond").unwrap()];
    let remove = [Flag::parse("$Trait").unwrap()];
    let conditional = |pair: &Pair, since: (u64, u64)| {
        (
            pair.real.change_flags_unchanged_since(
                mailbox,
                real.uid_validity,
                Uid(1),
                &add,
                &remove,
                since.0,
            ),
            pair.memory.change_flags_unchanged_since(
                mailbox,
                memory.uid_validity,
                Uid(1),
                &add,
                &remove,
                since.1,
            ),
        )
    };
    let stored = conditional(pair, (since(&real), since(&memory)));
    report.check(
        "change_flags_unchanged_since, unchanged",
        &"stored, MODSEQ told: true".to_string(),
        &kind(&stored.0),
    );
    report.check(
        "change_flags_unchanged_since, unchanged",
        &kind(&stored.0),
        &kind(&stored.1),
    );
    let (real_after, memory_after) = compare_listing(pair, report, mailbox);
    pair.client_command("UID STORE", |c| {
        c.uid_store("1", "+FLAGS.SILENT ($Other)").map(drop)
    });
    let mut theirs: Vec<&str> = memory_after.messages[0]
        .flags
        .iter()
        .map(String::as_str)
        .collect();
    theirs.push("$Other");
    pair.memory.set_flags(CHANGES, Uid(1), &theirs);
    let again = conditional(pair, (since(&real_after), since(&memory_after)));
    report.check(
        "change_flags_unchanged_since after another client's change",
        &"Modified".to_string(),
        &kind(&again.0),
    );
    report.check(
        "change_flags_unchanged_since after another client's change",
        &kind(&again.0),
        &kind(&again.1),
    );
    let now = (
        pair.real.flags_now(mailbox, real.uid_validity, Uid(1)),
        pair.memory.flags_now(mailbox, memory.uid_validity, Uid(1)),
    );
    let flags = |r: &StoreResult<crate::store::FlagsNow>| r.as_ref().ok().map(|n| n.flags.clone());
    report.check("flags_now", &flags(&now.0), &flags(&now.1));
    let moved_on = |r: &StoreResult<crate::store::FlagsNow>, l: &MailboxListing| {
        r.as_ref()
            .ok()
            .and_then(|n| n.modseq)
            .is_some_and(|m| m > since(l))
    };
    report.check(
        "flags_now: MODSEQ after the other client's change",
        &moved_on(&now.0, &real_after),
        &moved_on(&now.1, &memory_after),
    );
    report.check(
        "flags_now of a UID that is gone",
        &outcome(&pair.real.flags_now(mailbox, real.uid_validity, Uid(99))),
        &outcome(&pair.memory.flags_now(mailbox, memory.uid_validity, Uid(99))),
    );
    compare_listing(pair, report, mailbox);
}

/// The store's own changes, made through the trait on both sides (CREATE, APPEND, MOVE,
/// EXPUNGE, RENAME, DELETE), compared by what each returns and by the listings after.
pub(super) fn compare_store_writes(pair: &mut Pair, report: &mut Report) {
    let path = |levels: &[&str]| -> Vec<String> { levels.iter().map(|l| l.to_string()).collect() };
    let writes = MailboxId::new("Writes");
    let trash = MailboxId::new("Trash");
    for levels in [&["Writes"][..], &["Writes"], &["Writes", "Sub"], &["Bad*"]] {
        let created = on_both(pair, |s| s.create_mailbox(&path(levels)));
        report.check(
            &format!("create_mailbox {levels:?}"),
            &created.0.as_ref().ok(),
            &created.1.as_ref().ok(),
        );
        report.check(
            &format!("create_mailbox {levels:?}"),
            &outcome(&created.0),
            &outcome(&created.1),
        );
    }

    // APPEND with flags and a date; the IMAP store leaves the date out (see above).
    let date = pair.next_date();
    let flags = [
        Flag::parse("\\Seen").unwrap(),
        Flag::parse("$Appended").unwrap(),
    ];
    for n in 1..=3 {
        let raw = format!("Subject: appended {n}\r\n\r\nbody\r\n").into_bytes();
        let appended = on_both(pair, |s| {
            let mut content: &[u8] = &raw;
            s.append(
                &writes,
                NewMessage {
                    content: &mut content,
                    len: raw.len() as u64,
                    binary: false,
                    flags: &flags,
                    internal_date: Some(date),
                },
            )
        });
        let uid = |a: &StoreResult<Option<(UidValidity, Uid)>>| {
            a.as_ref().ok().map(|a| a.map(|(_, uid)| uid))
        };
        report.check(&format!("append {n}"), &uid(&appended.0), &uid(&appended.1));
        report.check(
            &format!("append {n}"),
            &outcome(&appended.0),
            &outcome(&appended.1),
        );
        if let Ok(Some((_, uid))) = appended.1 {
            pair.names
                .insert((writes.clone(), uid), format!("appended {n}"));
        }
    }
    let (real, memory) = compare_listing(pair, report, &writes);
    let dates = |l: &MailboxListing| {
        l.messages
            .iter()
            .map(|m| m.internal_date)
            .collect::<Vec<_>>()
    };
    report.check(
        "append: INTERNALDATE on Dovecot",
        &vec![date; 3],
        &dates(&real),
    );
    report.check(
        "append: INTERNALDATE in memory",
        &vec![date; 3],
        &dates(&memory),
    );

    let validity = (real.uid_validity, memory.uid_validity);
    // COPY to Trash, of a message there and of one gone (the copy is listed below).
    for (uid, what) in [
        (Uid(3), "copy_message"),
        (Uid(99), "copy_message of a UID that is gone"),
    ] {
        let copied = (
            pair.real.copy_message(&writes, validity.0, uid, &trash),
            pair.memory.copy_message(&writes, validity.1, uid, &trash),
        );
        let new_uid = |m: &StoreResult<Option<(UidValidity, Uid)>>| {
            m.as_ref().ok().map(|m| m.map(|(_, uid)| uid))
        };
        report.check(what, &new_uid(&copied.0), &new_uid(&copied.1));
        report.check(what, &outcome(&copied.0), &outcome(&copied.1));
    }

    // MOVE to Trash, then EXPUNGE, of messages there and gone.
    let moved = (
        pair.real.move_message(&writes, validity.0, Uid(1), &trash),
        pair.memory
            .move_message(&writes, validity.1, Uid(1), &trash),
    );
    let new_uid = |m: &StoreResult<Option<(UidValidity, Uid)>>| {
        m.as_ref().ok().map(|m| m.map(|(_, uid)| uid))
    };
    report.check("move_message", &new_uid(&moved.0), &new_uid(&moved.1));
    report.check("move_message", &outcome(&moved.0), &outcome(&moved.1));
    for (uid, what) in [
        (Uid(2), "expunge_message"),
        (Uid(99), "expunge_message of a UID that is gone"),
    ] {
        let expunged = (
            pair.real.expunge_message(&writes, validity.0, uid),
            pair.memory.expunge_message(&writes, validity.1, uid),
        );
        report.check(what, &outcome(&expunged.0), &outcome(&expunged.1));
    }
    let mut listed = Report::default();
    compare_listing(pair, &mut listed, &writes);
    compare_listing(pair, &mut listed, &trash);
    report.disagreements.extend(
        listed
            .disagreements
            .into_iter()
            .filter(|line| !line.contains("INTERNALDATE")),
    );

    // RENAME with what is under it, then DELETE: of a parent, of INBOX, of nothing.
    let renamed = on_both(pair, |s| s.rename_mailbox(&writes, &path(&["Renamed"])));
    report.check(
        "rename_mailbox",
        &renamed.0.as_ref().ok(),
        &renamed.1.as_ref().ok(),
    );
    report.check("rename_mailbox", &outcome(&renamed.0), &outcome(&renamed.1));
    for name in ["Renamed", "INBOX", "Nope", "Renamed/Sub", "Renamed"] {
        let deleted = on_both(pair, |s| s.delete_mailbox(&MailboxId::new(name)));
        report.check(
            &format!("delete_mailbox {name}"),
            &outcome(&deleted.0),
            &outcome(&deleted.1),
        );
    }
}
