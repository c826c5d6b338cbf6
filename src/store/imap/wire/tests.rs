//! The protocol layer on literal wire bytes through a mock stream: what it writes, when it
//! waits, and what it makes of real Dovecot answers and of hostile ones.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::store::imap::connection::CommandLimits;
use crate::store::imap::quote;

/// A scripted server: hands out `input` `step` bytes per read (then end of stream) and
/// records every write with how much input had been read before it.
struct Mock {
    input: Vec<u8>,
    read: usize,
    step: usize,
    writes: Vec<(usize, Vec<u8>)>,
    /// Writes fail (a broken pipe) once this many bytes were written.
    hang_up_after: Option<usize>,
}

impl Mock {
    fn new(input: &[u8]) -> Self {
        Mock {
            input: input.to_vec(),
            read: 0,
            step: usize::MAX,
            writes: Vec::new(),
            hang_up_after: None,
        }
    }

    /// Everything written, as one byte string.
    fn written(&self) -> Vec<u8> {
        self.writes.iter().flat_map(|(_, w)| w.clone()).collect()
    }

    /// How much input had been read when the first write containing `needle` was made.
    fn read_before(&self, needle: &[u8]) -> usize {
        self.writes
            .iter()
            .find(|(_, w)| w.windows(needle.len()).any(|x| x == needle))
            .map(|(at, _)| *at)
            .unwrap_or_else(|| panic!("{:?} never written", String::from_utf8_lossy(needle)))
    }
}

impl Read for Mock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step).min(self.input.len() - self.read);
        buf[..n].copy_from_slice(&self.input[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}

impl Write for Mock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written: usize = self.writes.iter().map(|(_, w)| w.len()).sum();
        if self.hang_up_after.is_some_and(|limit| written >= limit) {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "hung up"));
        }
        self.writes.push((self.read, buf.to_vec()));
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn limits(budget: u64) -> Arc<CommandLimits> {
    let l = Arc::new(CommandLimits::new(Duration::from_secs(5)));
    l.start_command(budget);
    l
}

fn wire(input: &[u8]) -> Wire<Mock> {
    Wire::new(Mock::new(input), limits(64 << 20))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_dovecot_login_and_select_session() {
    let mut w = wire(
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n\
          i1 OK [CAPABILITY IMAP4rev1 UNSELECT UIDPLUS CONDSTORE BINARY MOVE LITERAL+ SPECIAL-USE] Logged in\r\n\
          * ENABLED CONDSTORE\r\ni2 OK Enabled (0.001 + 0.000 secs).\r\n\
          * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)\r\n\
          * OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n* 10 EXISTS\r\n* 10 RECENT\r\n\
          * OK [UNSEEN 2] First unseen.\r\n* OK [UIDVALIDITY 1796393861] UIDs valid\r\n\
          * OK [UIDNEXT 11] Predicted next UID\r\n* OK [HIGHESTMODSEQ 12] Highest\r\n\
          i3 OK [READ-ONLY] Examine completed (0.003 + 0.000 + 0.002 secs).\r\n",
    );
    let greeting = w.read_greeting().unwrap();
    assert!(!greeting.preauth);
    let Some(Code::Capability(caps)) = greeting.code else {
        panic!("no capabilities in the greeting")
    };
    assert!(caps.contains(&"LITERAL+".to_string()));
    let user = quote::string("alice", "user").unwrap();
    let password = quote::string("p\"w\\d", "password").unwrap();
    let login = w
        .run(Command::new("LOGIN").arg(&user).arg(&password))
        .unwrap();
    assert_eq!(login.tagged.status, Status::Ok);
    assert!(
        matches!(login.tagged.code, Some(Code::Capability(ref c)) if c.contains(&"BINARY".to_string()))
    );
    let enabled = w.run(Command::new("ENABLE").syntax("CONDSTORE")).unwrap();
    assert_eq!(
        enabled.untagged,
        [Untagged::Enabled(vec!["CONDSTORE".into()])]
    );
    let inbox = quote::string("INBOX", "mailbox").unwrap();
    let examine = w.run(Command::new("EXAMINE").arg(&inbox)).unwrap();
    assert_eq!(examine.tagged.code, Some(Code::ReadOnly));
    assert_eq!(examine.untagged.len(), 8);
    assert!(examine.untagged.contains(&Untagged::Exists(10)));
    let codes: Vec<&Code> = examine.codes().collect();
    assert!(codes.contains(&&Code::UidValidity(1796393861)));
    assert!(codes.contains(&&Code::HighestModSeq(12)));
    assert_eq!(
        text(&w.stream.written()),
        "i1 LOGIN \"alice\" \"p\\\"w\\\\d\"\r\ni2 ENABLE CONDSTORE\r\ni3 EXAMINE \"INBOX\"\r\n"
    );
}

#[test]
fn parentheses_hug_what_they_enclose() {
    let mut w = wire(b"* SEARCH 3\r\ni1 OK Search completed.\r\n");
    let who = quote::string("x y", "search text").unwrap();
    let cmd = Command::new("UID SEARCH")
        .syntax("OR")
        .syntax("(")
        .syntax("FROM")
        .arg(&who)
        .syntax("SEEN")
        .syntax(")")
        .syntax("(")
        .syntax("(")
        .syntax("DRAFT")
        .syntax(")")
        .syntax(")");
    w.run(cmd).unwrap();
    assert_eq!(
        text(&w.stream.written()),
        "i1 UID SEARCH OR (FROM \"x y\" SEEN) ((DRAFT))\r\n"
    );
}

#[test]
fn a_synchronizing_literal_waits_for_the_continuation() {
    let mut w = wire(b"+ OK\r\ni1 OK [APPENDUID 1796393866 1] Append completed.\r\n");
    w.stream.step = 6;
    let name = quote::string("Reçus", "mailbox").unwrap();
    let done = w.run(Command::new("CREATE").arg(&name)).unwrap();
    assert_eq!(done.tagged.status, Status::Ok);
    assert_eq!(text(&w.stream.written()), "i1 CREATE {6}\r\nReçus\r\n");
    // The name went only once `+ OK` had been read.
    assert_eq!(w.stream.read_before("Reçus".as_bytes()), 6);
    assert_eq!(w.stream.read_before(b"i1 CREATE"), 0);
}

#[test]
fn literal_plus_and_literal_minus_do_not_wait() {
    let long = "m".repeat(5000);
    for (cap, sync_for_long) in [("LITERAL+", false), ("LITERAL-", true)] {
        let input: &[u8] = if sync_for_long {
            b"i1 OK done\r\n+ go\r\ni2 OK done\r\n"
        } else {
            b"i1 OK done\r\ni2 OK done\r\n"
        };
        let mut w = wire(input);
        w.set_capabilities(&[cap.to_string()]);
        let short = quote::string("café", "x").unwrap();
        w.run(Command::new("CREATE").arg(&short)).unwrap();
        let long_arg = quote::string(&long, "x").unwrap();
        w.run(Command::new("CREATE").arg(&long_arg)).unwrap();
        let written = text(&w.stream.written());
        assert!(
            written.starts_with("i1 CREATE {5+}\r\ncafé\r\ni2 CREATE {5000"),
            "{cap}: {}",
            &written[..40]
        );
        assert_eq!(written.contains("{5000+}"), !sync_for_long, "{cap}");
    }
}

#[test]
fn a_no_instead_of_the_continuation_is_the_answer_and_the_literal_is_not_sent() {
    let mut w = wire(
        b"i1 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\ni2 OK NOOP completed\r\n",
    );
    let name = quote::string("INBOX", "mailbox").unwrap();
    let mut message: &[u8] = b"Subject: big\r\n\r\nnever sent\r\n";
    let len = message.len() as u64;
    let done = w
        .run(
            Command::new("APPEND")
                .arg(&name)
                .stream(&mut message, len, false),
        )
        .unwrap();
    assert_eq!(done.tagged.status, Status::No);
    assert_eq!(done.tagged.code, Some(Code::OverQuota));
    assert_eq!(text(&w.stream.written()), "i1 APPEND \"INBOX\" {28}\r\n");
    // The connection is still in step with the server.
    assert!(!w.is_broken());
    assert_eq!(
        w.run(Command::new("NOOP")).unwrap().tagged.status,
        Status::Ok
    );
}

#[test]
fn a_literal8_append_streams_the_message_in_chunks() {
    let mut w = wire(b"+ OK\r\ni1 OK [APPENDUID 7 42] Append completed.\r\n");
    w.stream.step = 6;
    let message: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let name = quote::string("a\"b\\c", "mailbox").unwrap();
    let mut source = &message[..];
    let done = w
        .run(
            Command::new("APPEND")
                .arg(&name)
                .syntax("(\\Seen)")
                .syntax("\"01-Mar-2023 09:00:00 +0000\"")
                .stream(&mut source, message.len() as u64, true),
        )
        .unwrap();
    assert_eq!(done.tagged.code, Some(Code::AppendUid(7, 42)));
    let head = b"i1 APPEND \"a\\\"b\\\\c\" (\\Seen) \"01-Mar-2023 09:00:00 +0000\" ~{200000}\r\n";
    let written = w.stream.written();
    assert_eq!(&written[..head.len()], head);
    assert_eq!(&written[head.len()..written.len() - 2], &message[..]);
    assert_eq!(&written[written.len() - 2..], b"\r\n");
    // In chunks of at most 64 KiB, none of them before the `+`.
    let chunks: Vec<usize> = w.stream.writes.iter().map(|(_, b)| b.len()).collect();
    assert!(chunks.iter().all(|&n| n <= STREAM_CHUNK), "{chunks:?}");
    assert!(w.stream.writes[1..].iter().all(|(read, _)| *read >= 6));
}

#[test]
fn a_server_that_refuses_mid_message_and_hangs_up_is_heard() {
    let mut w = wire(b"+ OK\r\ni1 NO [LIMIT] Message too large\r\n");
    w.stream.step = 6;
    w.stream.hang_up_after = Some(100_000);
    let name = quote::string("INBOX", "mailbox").unwrap();
    let message = vec![b'x'; 1 << 20];
    let mut source = &message[..];
    let done = w
        .run(
            Command::new("APPEND")
                .arg(&name)
                .stream(&mut source, message.len() as u64, false),
        )
        .unwrap();
    assert_eq!(
        (done.tagged.status, done.tagged.code),
        (Status::No, Some(Code::Limit))
    );
    assert!(
        w.is_broken(),
        "a message cut short leaves the connection unusable"
    );
    // Without an answer to read, the write error stands.
    let mut w = wire(b"+ OK\r\n");
    w.stream.hang_up_after = Some(100_000);
    let mut source = &message[..];
    let err = w
        .run(
            Command::new("APPEND")
                .arg(&name)
                .stream(&mut source, message.len() as u64, false),
        )
        .unwrap_err();
    assert!(matches!(err, WireError::Io(_)), "{err:?}");
}

#[test]
fn a_message_shorter_than_announced_breaks_the_connection() {
    let mut w = wire(b"+ OK\r\n");
    let name = quote::string("INBOX", "mailbox").unwrap();
    let mut short: &[u8] = b"only this";
    let err = w
        .run(
            Command::new("APPEND")
                .arg(&name)
                .stream(&mut short, 100, false),
        )
        .unwrap_err();
    assert!(matches!(err, WireError::Source(_)), "{err:?}");
    assert!(w.is_broken());
    assert!(matches!(
        w.run(Command::new("NOOP")),
        Err(WireError::Broken)
    ));
}

#[test]
fn pipelined_commands_are_answered_in_any_order() {
    let mut w = wire(
        b"* 1 FETCH (UID 5 BODY[1] {2}\r\nhi)\r\n* 2 FETCH (UID 6 BINARY.SIZE[2] 9)\r\n\
          i2 OK Fetch completed.\r\ni1 OK Fetch completed.\r\n",
    );
    let t1 = w
        .send(
            Command::new("UID FETCH")
                .syntax("5")
                .syntax("(UID BODY.PEEK[1])"),
        )
        .unwrap();
    let t2 = w
        .send(
            Command::new("UID FETCH")
                .syntax("6")
                .syntax("(UID BINARY.SIZE[2])"),
        )
        .unwrap();
    assert_eq!(w.finish(&t1).unwrap().tag, "i1");
    assert_eq!(w.finish(&t2).unwrap().tag, "i2");
    let untagged = w.take_untagged();
    assert_eq!(fetches(&untagged).count(), 2);
    // Both commands went out before any answer was read.
    assert_eq!(w.stream.read_before(b"i2 UID FETCH"), 0);
}

#[test]
fn binary_answers_from_dovecot_keep_their_nul_bytes() {
    let mut w = wire(
        b"* 1 FETCH (UID 1 BINARY[] ~{57}\r\nSubject: nul test\r\nMessage-ID: <nul1@x>\r\n\r\nbefore\x00after\r\n)\r\n\
          * 2 FETCH (UID 2 BINARY[] ~{57}\r\nSubject: nul test\r\nMessage-ID: <nul1@x>\r\n\r\nbefore\x00after\r\n)\r\n\
          i1 OK Fetch completed (0.001 + 0.000 secs).\r\n",
    );
    w.stream.step = 7;
    let done = w
        .run(
            Command::new("UID FETCH")
                .syntax("1:*")
                .syntax("(BINARY.PEEK[])"),
        )
        .unwrap();
    let bodies: Vec<&[u8]> = fetches(&done.untagged)
        .map(|f| {
            f.section(SectionKind::Binary, "", None)
                .unwrap()
                .data
                .as_deref()
                .unwrap()
        })
        .collect();
    assert_eq!(bodies.len(), 2);
    assert!(bodies.iter().all(|b| b.len() == 57 && b[49] == 0));
}

#[test]
fn unknown_cte_answers_like_dovecot() {
    let mut w = wire(
        b"* 1 FETCH (UID 1)\r\ni1 NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding (0.001 + 0.000 secs).\r\n",
    );
    let done = w
        .run(
            Command::new("UID FETCH")
                .syntax("1")
                .syntax("(BINARY.PEEK[1])"),
        )
        .unwrap();
    assert_eq!(done.tagged.code, Some(Code::UnknownCte));
    assert_eq!(fetches(&done.untagged).next().unwrap().uid, Some(1));
}

#[test]
fn unknown_untagged_responses_are_skipped_and_namespace_is_kept() {
    let mut w = wire(
        b"* STATUS INBOX (MESSAGES 3)\r\n* 3 RECENT\r\n* XAPPLE {3}\r\n(((\r\n* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n\
          * 4 EXPUNGE\r\ni1 OK NOOP completed.\r\n",
    );
    let done = w.run(Command::new("NOOP")).unwrap();
    assert_eq!(done.tagged.status, Status::Ok);
    assert_eq!(
        done.untagged,
        [
            Untagged::MailboxStatus(MailboxStatus {
                mailbox: "INBOX".into(),
                messages: Some(3),
                ..MailboxStatus::default()
            }),
            Untagged::Other,
            Untagged::Other,
            Untagged::Namespace(Some((String::new(), Some('/')))),
            Untagged::Expunge(4)
        ]
    );
}

#[test]
fn a_bye_then_a_closed_connection_says_why() {
    let mut w = wire(b"* BYE Selected mailbox was deleted, have to disconnect.\r\n");
    let err = w.run(Command::new("NOOP")).unwrap_err();
    assert!(
        matches!(&err, WireError::Closed(Some(t)) if t.contains("deleted")),
        "{err:?}"
    );
    let mut w = wire(b"* BYE Server shutting down.\r\n");
    assert!(matches!(w.read_greeting(), Err(WireError::Closed(Some(_)))));
}

/// Dovecot answers a FETCH of a part it cannot decode with BYE and closes the connection;
/// the next pipelined command's write then fails on the closed socket. What the server
/// said is still read, so the caller knows it was a BYE (and fetches the part as stored).
#[test]
fn a_bye_before_a_pipelined_write_fails_is_still_heard() {
    let mut w = wire(b"* BYE FETCH failed: Base64 data ends prematurely\r\n");
    let fetch = |uid: u32| Command::new("UID FETCH").syntax(format!("{uid} (UID BINARY.PEEK[1])"));
    let first_len = {
        let mut probe = wire(b"");
        probe.send(fetch(6)).unwrap();
        probe.stream.written().len()
    };
    w.stream.hang_up_after = Some(first_len);
    let (first, second) = (fetch(6), fetch(7));
    let err = w.send_all(vec![first, second]).unwrap_err();
    assert!(matches!(err, WireError::Io(_)), "{err:?}");
    assert!(w.said_bye(), "the BYE was read");
    assert!(w.is_broken());
}

#[test]
fn hostile_answers_are_errors_that_break_the_connection() {
    let cases: [(&str, &[u8]); 12] = [
        (
            "a literal larger than the budget",
            b"* 1 FETCH (UID 1 BODY[] {4000000000}\r\nxxxx",
        ),
        (
            "a literal count past 64 bits",
            b"* 1 FETCH (UID 1 BODY[] {99999999999999999999999999}\r\n",
        ),
        ("an unterminated line", b"* 1 FETCH (UID 1 BODY[] \"no end"),
        (
            "a literal cut short",
            b"* 1 FETCH (UID 1 BODY[] {100}\r\nonly a few",
        ),
        (
            "a literal without its line end",
            b"* 1 FETCH (UID 1 BODY[] {5}hello)\r\ni1 OK\r\n",
        ),
        ("a response that ends mid-line", b"* 1 FETCH (UID 1"),
        (
            "NUL in a quoted string",
            b"* 1 FETCH (UID 1 BODY[1] \"a\0b\")\r\ni1 OK\r\n",
        ),
        (
            "garbage",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\ni1 OK\r\n",
        ),
        ("an answer for a tag never sent", b"zz9 OK what\r\n"),
        (
            "a continuation nobody asked for",
            b"+ more please\r\ni1 OK\r\n",
        ),
        (
            "a malformed FETCH",
            b"* 1 FETCH (UID 1 RFC822.SIZE banana)\r\ni1 OK\r\n",
        ),
        ("nesting past the bound", b""),
    ];
    for (what, input) in cases {
        let mut input = input.to_vec();
        if input.is_empty() {
            input = format!(
                "* 1 FETCH (UID 1 BODYSTRUCTURE {}x{})\r\ni1 OK\r\n",
                "(".repeat(500),
                ")".repeat(500)
            )
            .into_bytes();
        }
        let mut w = Wire::new(Mock::new(&input), limits(1 << 20));
        let result = w.run(
            Command::new("UID FETCH")
                .syntax("1")
                .syntax("(UID BODY.PEEK[])"),
        );
        assert!(result.is_err(), "{what}: {result:?}");
        assert!(w.is_broken(), "{what}");
    }
}

#[test]
fn bare_lf_line_ends_from_a_sloppy_server_are_taken() {
    let mut w = wire(b"* 1 FETCH (UID 7 BODY[1] {3}\nab\n)\n* 2 EXISTS\ni1 OK done\n");
    let done = w
        .run(
            Command::new("UID FETCH")
                .syntax("7")
                .syntax("(UID BODY.PEEK[1])"),
        )
        .unwrap();
    let fetch = fetches(&done.untagged).next().unwrap();
    assert_eq!(
        fetch
            .section(SectionKind::Body, "1", None)
            .unwrap()
            .data
            .as_deref(),
        Some(&b"ab\n"[..])
    );
    assert!(done.untagged.contains(&Untagged::Exists(2)));
}

#[test]
fn an_endless_answer_stops_at_the_budget() {
    let mut input = b"* 1 FETCH (UID 1 BODY[] {10}\r\n0123456789)\r\n".repeat(1000);
    input.extend_from_slice(b"i1 OK\r\n");
    let mut w = Wire::new(Mock::new(&input), limits(10_000));
    let err = w.run(Command::new("NOOP")).unwrap_err();
    assert!(
        matches!(err, WireError::Protocol(ref m) if m.contains("10000")),
        "{err:?}"
    );
}

#[test]
fn line_breaks_in_syntax_are_refused_before_anything_is_sent() {
    let mut w = wire(b"");
    let err = w
        .run(Command::new("UID FETCH").syntax("1\r\ni9 DELETE INBOX"))
        .unwrap_err();
    assert!(matches!(err, WireError::Invalid(_)));
    assert!(w.stream.written().is_empty());
    assert!(!w.is_broken());
}

#[test]
fn bytes_left_after_starttls_are_refused() {
    let mut w = wire(b"i1 OK Begin TLS negotiation now.\r\n");
    w.run(Command::new("STARTTLS")).unwrap();
    assert!(w.into_inner().is_ok());
    let mut w = wire(
        b"i1 OK Begin TLS negotiation now.\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n",
    );
    w.run(Command::new("STARTTLS")).unwrap();
    assert!(w.into_inner().is_err());
}

/// What Dovecot 2.3.19 sends on a connection that asked for NOTIFY (RFC 5465) with nothing
/// selected: STATUS with only what changed, LIST for mailboxes created, renamed (OLDNAME)
/// and deleted (`\NonExistent`), and a name outside ASCII as a UTF-8 literal.
#[test]
fn notify_reports_from_dovecot() {
    let mut w = wire(
        b"* STATUS Archive (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 1796399733 UNSEEN 1 HIGHESTMODSEQ 2)\r\n\
          * STATUS {17}\r\n\xd0\x9f\xd1\x80\xd0\xbe\xd0\xb5\xd0\xba\xd1\x82\xd1\x8b/Q1 (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 1796399732 UNSEEN 1 HIGHESTMODSEQ 2)\r\n\
          i1 OK NOTIFY completed (0.024 + 0.000 + 0.023 secs).\r\n\
          * STATUS INBOX (HIGHESTMODSEQ 21)\r\n\
          * STATUS Archive (UNSEEN 0 HIGHESTMODSEQ 3)\r\n\
          * LIST () \"/\" Baz/Bar (\"OLDNAME\" (Foo/Bar))\r\n\
          * LIST (\\NonExistent) \"/\" Newbox2\r\n",
    );
    let done = w
        .run(Command::new("NOTIFY").syntax("SET STATUS (personal (MessageNew))"))
        .unwrap();
    assert_eq!(
        done.untagged,
        [
            Untagged::MailboxStatus(MailboxStatus {
                mailbox: "Archive".into(),
                messages: Some(1),
                uid_next: Some(2),
                uid_validity: Some(1796399733),
                highest_modseq: Some(2),
            }),
            Untagged::MailboxStatus(MailboxStatus {
                mailbox: "Проекты/Q1".into(),
                messages: Some(1),
                uid_next: Some(2),
                uid_validity: Some(1796399732),
                highest_modseq: Some(2),
            }),
        ]
    );
    let pushed: Vec<Response> = (0..4).map(|_| w.next_response().unwrap()).collect();
    assert_eq!(
        pushed[0],
        Response::Untagged(Untagged::MailboxStatus(MailboxStatus {
            mailbox: "INBOX".into(),
            highest_modseq: Some(21),
            ..MailboxStatus::default()
        }))
    );
    assert_eq!(
        pushed[1],
        Response::Untagged(Untagged::MailboxStatus(MailboxStatus {
            mailbox: "Archive".into(),
            highest_modseq: Some(3),
            ..MailboxStatus::default()
        }))
    );
    let Response::Untagged(Untagged::List(renamed)) = &pushed[2] else {
        panic!("{:?}", pushed[2])
    };
    assert_eq!(renamed.name, "Baz/Bar");
    assert_eq!(renamed.old_name.as_deref(), Some("Foo/Bar"));
    let Response::Untagged(Untagged::List(deleted)) = &pushed[3] else {
        panic!("{:?}", pushed[3])
    };
    assert_eq!(
        (deleted.name.as_str(), deleted.attributes.as_slice()),
        ("Newbox2", &["\\NonExistent".to_string()][..])
    );
}

/// LIST-STATUS (RFC 5819) as Dovecot answers it: each LIST followed by its STATUS, none for
/// a `\Noselect` mailbox.
#[test]
fn list_status_from_dovecot() {
    let mut w = wire(
        b"* LIST () \"/\" Archive\r\n\
          * STATUS Archive (MESSAGES 1 UIDNEXT 3 UIDVALIDITY 1796399733 HIGHESTMODSEQ 6)\r\n\
          * LIST (\\Noselect) \"/\" &BB8EQAQ+BDUEOgRCBEs-\r\n\
          * LIST (\\Marked) \"/\" &BB8EQAQ+BDUEOgRCBEs-/Q1\r\n\
          * STATUS &BB8EQAQ+BDUEOgRCBEs-/Q1 (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 1796399732 HIGHESTMODSEQ 2)\r\n\
          * STATUS \"a \\\"b\" ()\r\n\
          i1 OK List completed (0.011 + 0.000 + 0.010 secs).\r\n",
    );
    let done = w
        .run(Command::new("LIST").syntax("\"\" \"*\" RETURN (STATUS (MESSAGES))"))
        .unwrap();
    let statuses: Vec<&MailboxStatus> = done
        .untagged
        .iter()
        .filter_map(|u| match u {
            Untagged::MailboxStatus(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(statuses.len(), 3);
    assert_eq!(statuses[1].mailbox, "&BB8EQAQ+BDUEOgRCBEs-/Q1");
    assert_eq!(statuses[1].uid_next, Some(2));
    assert_eq!(statuses[2].mailbox, "a \"b");
    assert_eq!(statuses[2].messages, None);
    for bad in [
        &b"* STATUS INBOX (MESSAGES x)\r\n"[..],
        b"* STATUS INBOX (UIDNEXT 99999999999)\r\n",
        b"* STATUS INBOX MESSAGES 3\r\n",
        b"* STATUS INBOX (MESSAGES 3\r\n",
    ] {
        assert!(parse_response(bad).is_err(), "{}", text(bad));
    }
}

/// An EXAMINE with QRESYNC (RFC 7162 §3.2.5) as Dovecot answers it: what vanished since the
/// known MODSEQ as ranges, and the flags of what changed (UIDs 11 and 12 arrived since).
#[test]
fn a_qresync_examine_from_dovecot() {
    let mut w = wire(
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)\r\n\
          * OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n* 10 EXISTS\r\n* 0 RECENT\r\n\
          * OK [UNSEEN 2] First unseen.\r\n* OK [UIDVALIDITY 1796399730] UIDs valid\r\n\
          * OK [UIDNEXT 13] Predicted next UID\r\n* OK [HIGHESTMODSEQ 20] Highest\r\n\
          * VANISHED (EARLIER) 2,5:6\r\n\
          * 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen) MODSEQ (13))\r\n\
          * 9 FETCH (UID 11 FLAGS () MODSEQ (14))\r\n\
          * 10 FETCH (UID 12 FLAGS () MODSEQ (17))\r\n\
          i1 OK [READ-ONLY] Examine completed (0.003 + 0.000 + 0.002 secs).\r\n\
          * VANISHED 8\r\n* 9 EXISTS\r\n* OK [HIGHESTMODSEQ 26] Highest\r\n",
    );
    let inbox = quote::string("INBOX", "mailbox").unwrap();
    let done = w
        .run(
            Command::new("EXAMINE")
                .arg(&inbox)
                .syntax("(QRESYNC (1796399730 12))"),
        )
        .unwrap();
    assert!(done.untagged.contains(&Untagged::Vanished {
        earlier: true,
        uids: vec![(2, 2), (5, 6)],
    }));
    // (UID, FLAGS, MODSEQ) of each FETCH.
    type Changed = (Option<u32>, Option<Vec<String>>, Option<u64>);
    let changed: Vec<Changed> = fetches(&done.untagged)
        .map(|f| (f.uid, f.flags.clone(), f.modseq))
        .collect();
    assert_eq!(
        changed,
        [
            (
                Some(1),
                Some(vec!["\\Flagged".to_string(), "\\Seen".to_string()]),
                Some(13)
            ),
            (Some(11), Some(vec![]), Some(14)),
            (Some(12), Some(vec![]), Some(17)),
        ]
    );
    // Then, while idling, an expunge as it happens.
    assert_eq!(
        w.next_response().unwrap(),
        Response::Untagged(Untagged::Vanished {
            earlier: false,
            uids: vec![(8, 8)],
        })
    );
    assert_eq!(
        w.next_response().unwrap(),
        Response::Untagged(Untagged::Exists(9))
    );
    assert!(parse_response(b"* VANISHED (LATER) 3\r\n").is_err());
    assert!(parse_response(b"* VANISHED\r\n").is_err());
}

#[test]
fn the_log_form_of_a_command_hides_secrets_and_literal_bytes() {
    let user = quote::string("alice", "user").unwrap();
    let password = quote::string("hunter2 \"x\"", "password").unwrap();
    let login = Command::new("LOGIN").arg(&user).arg(&password);
    assert_eq!(login.redacted("i1"), "i1 LOGIN *** ***");
    let auth = Command::new("AUTHENTICATE").syntax("PLAIN");
    assert_eq!(auth.redacted("i2"), "i2 AUTHENTICATE PLAIN");
    let name = quote::string("Reçus", "mailbox").unwrap();
    let quoted = quote::string("Archive", "mailbox").unwrap();
    let select = Command::new("UID COPY")
        .syntax("1:3")
        .arg(&name)
        .arg(&quoted);
    assert_eq!(select.redacted("i3"), "i3 UID COPY 1:3 {6} \"Archive\"");
    let mut body: &[u8] = b"secret body";
    let append = Command::new("APPEND")
        .arg(&quoted)
        .stream(&mut body, 11, true);
    assert_eq!(append.redacted("i4"), "i4 APPEND \"Archive\" ~{11}");
}

/// GETQUOTAROOT as Dovecot 2.3 answers it with the `count` backend, and as RFC 2087's own
/// example has it (two resources, a root with no quota, an atom root).
#[test]
fn quota_root_and_quota_responses() {
    let mut w = wire(
        b"* QUOTAROOT INBOX \"User quota\"\r\n\
          * QUOTA \"User quota\" (STORAGE 10 512)\r\n\
          i1 OK Getquotaroot completed (0.001 + 0.000 secs).\r\n",
    );
    let inbox = quote::string("INBOX", "mailbox").unwrap();
    let done = w.run(Command::new("GETQUOTAROOT").arg(&inbox)).unwrap();
    assert_eq!(
        done.untagged,
        vec![
            Untagged::QuotaRoot {
                mailbox: "INBOX".into(),
                roots: vec!["User quota".into()],
            },
            Untagged::Quota {
                root: "User quota".into(),
                resources: vec![QuotaResource {
                    name: "STORAGE".into(),
                    usage: 10,
                    limit: 512,
                }],
            },
        ]
    );
    assert_eq!(
        parse_response(b"* QUOTA \"\" (STORAGE 1 2 message 3 4)\r\n").unwrap(),
        Response::Untagged(Untagged::Quota {
            root: String::new(),
            resources: vec![
                QuotaResource {
                    name: "STORAGE".into(),
                    usage: 1,
                    limit: 2,
                },
                QuotaResource {
                    name: "MESSAGE".into(),
                    usage: 3,
                    limit: 4,
                },
            ],
        })
    );
    assert_eq!(
        parse_response(b"* QUOTAROOT comp.mail.mime\r\n").unwrap(),
        Response::Untagged(Untagged::QuotaRoot {
            mailbox: "comp.mail.mime".into(),
            roots: vec![],
        })
    );
    assert_eq!(
        parse_response(b"* QUOTA \"\" ()\r\n").unwrap(),
        Response::Untagged(Untagged::Quota {
            root: String::new(),
            resources: vec![],
        })
    );
    for bad in [
        &b"* QUOTA \"\" (STORAGE 1)\r\n"[..],
        b"* QUOTA \"\" (STORAGE x 2)\r\n",
        b"* QUOTA \"\" STORAGE 1 2\r\n",
        b"* QUOTA \"\" (STORAGE 1 2\r\n",
    ] {
        assert!(parse_response(bad).is_err(), "{bad:?}");
    }
}

/// Dovecot answers SERVERBUG when it fails internally, e.g. an EXAMINE of a mailbox another
/// session renamed meanwhile, and its session may keep that mailbox's lock file: the wire
/// is broken so that its owner closes the connection, which frees the lock.
#[test]
fn a_serverbug_answer_is_returned_and_breaks_the_wire() {
    let mut w = wire(
        b"i1 NO [SERVERBUG] Internal error occurred. Refer to server log for more information. [2026-12-05 03:36:01] (0.003 + 0.000 + 0.002 secs).\r\n",
    );
    let done = w.run(Command::new("EXAMINE").syntax("Projets")).unwrap();
    assert_eq!(
        (done.tagged.status, done.tagged.code),
        (Status::No, Some(Code::ServerBug))
    );
    assert!(w.is_broken());
    assert!(matches!(
        w.run(Command::new("NOOP")),
        Err(WireError::Broken)
    ));
    // Any other refusal keeps the connection.
    let mut w = wire(b"i1 NO [NONEXISTENT] Mailbox doesn't exist: Projets\r\n");
    w.run(Command::new("EXAMINE").syntax("Projets")).unwrap();
    assert!(!w.is_broken());
}
