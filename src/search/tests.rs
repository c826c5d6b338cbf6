use super::*;

const TODAY: SearchDate = SearchDate {
    year: 2026,
    month: 3,
    day: 31,
};

fn ok(query: &str) -> SearchKey {
    parse(query, TODAY).unwrap_or_else(|e| panic!("{query:?}: {e}"))
}

fn err(query: &str) -> QueryError {
    match parse(query, TODAY) {
        Ok(key) => panic!("{query:?} parsed as {key:?}"),
        Err(e) => e,
    }
}

fn text(s: &str) -> SearchKey {
    SearchKey::Text(s.into())
}

fn flag(f: &str) -> SearchKey {
    SearchKey::Flag(Flag::parse(f).unwrap())
}

fn not(k: SearchKey) -> SearchKey {
    SearchKey::Not(Box::new(k))
}

fn or(a: SearchKey, b: SearchKey) -> SearchKey {
    SearchKey::Or(Box::new(a), Box::new(b))
}

fn date(year: i32, month: u32, day: u32) -> SearchDate {
    SearchDate::new(year, month, day).unwrap()
}

#[test]
fn words_and_phrases_are_text() {
    assert_eq!(ok("invoice"), text("invoice"));
    assert_eq!(
        ok("quarterly  \"the numbers\""),
        SearchKey::And(vec![text("quarterly"), text("the numbers")])
    );
    assert_eq!(ok(r#""say \"hi\" \\ back""#), text(r#"say "hi" \ back"#));
    assert_eq!(ok("12:30"), text("12:30"));
    assert_eq!(ok("Grüße"), text("Grüße"));
    assert!(ok("Grüße").needs_utf8());
    assert!(!ok("hello").needs_utf8());
}

#[test]
fn every_key() {
    use Address::*;
    assert_eq!(ok("from:alice"), SearchKey::Address(From, "alice".into()));
    assert_eq!(ok("to:bob"), SearchKey::Address(To, "bob".into()));
    assert_eq!(ok("cc:carol"), SearchKey::Address(Cc, "carol".into()));
    assert_eq!(ok("BCC:dave"), SearchKey::Address(Bcc, "dave".into()));
    assert_eq!(
        ok("subject:\"big deal\""),
        SearchKey::Subject("big deal".into())
    );
    assert_eq!(ok("body:zanzibar"), SearchKey::Body("zanzibar".into()));
    assert_eq!(
        ok("header:X-Mailer:\"Foo Bar\""),
        SearchKey::Header("X-Mailer".into(), "Foo Bar".into())
    );
    assert_eq!(
        ok("header:List-Id:"),
        SearchKey::Header("List-Id".into(), String::new())
    );
    assert_eq!(ok("since:2024-02-29"), SearchKey::Since(date(2024, 2, 29)));
    assert_eq!(ok("before:2025-01-01"), SearchKey::Before(date(2025, 1, 1)));
    assert_eq!(ok("on:2025-12-31"), SearchKey::On(date(2025, 12, 31)));
    assert_eq!(ok("is:unread"), not(flag("\\Seen")));
    assert_eq!(ok("is:read"), flag("\\Seen"));
    assert_eq!(ok("is:flagged"), flag("\\Flagged"));
    assert_eq!(ok("is:answered"), flag("\\Answered"));
    assert_eq!(ok("is:draft"), flag("\\Draft"));
    assert_eq!(ok("is:deleted"), flag("\\Deleted"));
    assert_eq!(ok("tag:$Important"), flag("$Important"));
    assert_eq!(ok("larger:10K"), SearchKey::Larger(10 * 1024));
    assert_eq!(ok("smaller:2m"), SearchKey::Smaller(2 << 20));
    assert_eq!(ok("larger:500"), SearchKey::Larger(500));
    assert_eq!(
        ok("uid:4:9"),
        SearchKey::Uid(UidRange {
            first: Uid(4),
            last: Some(Uid(9))
        })
    );
    assert_eq!(
        ok("uid:7"),
        SearchKey::Uid(UidRange {
            first: Uid(7),
            last: Some(Uid(7))
        })
    );
    assert_eq!(
        ok("uid:100:*"),
        SearchKey::Uid(UidRange {
            first: Uid(100),
            last: None
        })
    );
    assert_eq!(
        ok("imap:\"OR UNSEEN (FROM \\\"a b\\\")\""),
        SearchKey::Raw("OR UNSEEN (FROM \"a b\")".into())
    );
    assert_eq!(ok("imap:UNANSWERED"), SearchKey::Raw("UNANSWERED".into()));
    assert_eq!(
        ok("gmail:\"has:attachment\""),
        SearchKey::Gmail("has:attachment".into())
    );
}

#[test]
fn relative_dates_count_back_from_today() {
    assert_eq!(ok("since:7d"), SearchKey::Since(date(2026, 3, 24)));
    assert_eq!(ok("since:31d"), SearchKey::Since(date(2026, 2, 28)));
    assert_eq!(ok("since:2w"), SearchKey::Since(date(2026, 3, 17)));
    // A month back from the 31st of March is the end of February.
    assert_eq!(ok("since:1m"), SearchKey::Since(date(2026, 2, 28)));
    assert_eq!(ok("before:3m"), SearchKey::Before(date(2025, 12, 31)));
    assert_eq!(ok("on:1y"), SearchKey::On(date(2025, 3, 31)));
    assert_eq!(ok("since:0d"), SearchKey::Since(TODAY));
    assert_eq!(ok("since:2025y"), SearchKey::Since(date(1, 3, 31)));
    // Before year 1: no IMAP date (a bug hunt found it sent, and refused by the server).
    for query in ["since:5000y", "since:24400m"] {
        let e = err(query);
        assert!(e.to_string().contains("date"), "{query}: {e}");
    }
}

#[test]
fn days_round_trip_and_match_known_dates() {
    assert_eq!(date(1970, 1, 1).days(), 0);
    assert_eq!(date(2000, 3, 1).days(), 11_017);
    for days in (-800_000..800_000).step_by(997) {
        assert_eq!(SearchDate::from_days(days).days(), days);
    }
    assert_eq!(SearchDate::new(2023, 2, 29), None);
    assert_eq!(SearchDate::new(2100, 2, 29), None);
    assert!(SearchDate::new(2000, 2, 29).is_some());
    assert_eq!(SearchDate::new(2024, 13, 1), None);
    assert_eq!(SearchDate::new(2024, 4, 31), None);
}

#[test]
fn not_or_and_parentheses() {
    assert_eq!(ok("-is:read"), not(flag("\\Seen")));
    assert_eq!(ok("-spam"), not(text("spam")));
    assert_eq!(ok("well-known"), text("well-known"));
    // OR binds tighter than the implicit AND, as in Gmail.
    assert_eq!(
        ok("a OR b c"),
        SearchKey::And(vec![or(text("a"), text("b")), text("c")])
    );
    assert_eq!(ok("a OR b OR c"), or(or(text("a"), text("b")), text("c")));
    assert_eq!(
        ok("(from:a OR from:b) -(is:read subject:x)"),
        SearchKey::And(vec![
            or(
                SearchKey::Address(Address::From, "a".into()),
                SearchKey::Address(Address::From, "b".into())
            ),
            not(SearchKey::And(vec![
                flag("\\Seen"),
                SearchKey::Subject("x".into())
            ])),
        ])
    );
    assert_eq!(
        ok("ORANGE or"),
        SearchKey::And(vec![text("ORANGE"), text("or")])
    );
    assert_eq!(ok("\"OR\""), text("OR"));
    assert_eq!(ok("((x))"), text("x"));
}

#[test]
fn errors_say_what_and_where() {
    let cases: &[(&str, usize, &str)] = &[
        ("   ", 1, "empty"),
        ("foo:bar", 1, "unknown key foo:"),
        ("invoice colour:red", 9, "unknown key colour:"),
        ("from:", 1, "from: needs a value"),
        ("from:\"\"", 1, "from: needs a value"),
        ("\"unbalanced", 1, "without its closing"),
        ("a \"b", 3, "without its closing"),
        ("(a b", 1, "'(' without its ')'"),
        ("a b)", 4, "')' without its '('"),
        (")", 1, "')' without its '('"),
        ("()", 1, "empty parentheses"),
        ("since:2024-02-30", 7, "not a date"),
        ("since:yesterday", 7, "not a date"),
        ("before:24-01-01", 8, "not a date"),
        ("larger:10X", 8, "not a size"),
        ("smaller:K", 9, "not a size"),
        ("larger:99999999999", 8, "not a size"),
        ("uid:0", 5, "not a UID"),
        ("uid:a:b", 5, "not a UID"),
        ("is:important", 4, "is:important is unknown"),
        ("tag:\\Seen", 5, "not a keyword"),
        ("tag:a%b", 5, "not a keyword"),
        ("a OR", 3, "nothing after OR"),
        ("OR a", 1, "OR needs a term"),
        ("a - b", 3, "nothing after '-'"),
        ("header:X-Foo", 8, "NAME:VALUE"),
        ("header::x", 8, "not a header field name"),
        ("wo\"rd\"", 3, "inside a word"),
        ("imap:\"UNSEEN {5}\"", 14, "literal"),
        ("imap:\"X (\"", 9, "'(' without its ')'"),
        ("imap:\"A )\"", 9, "')' without its '('"),
        ("imap:\"\"", 1, "imap: needs a value"),
        ("imap:\"SUBJECT é\"", 15, "ASCII"),
    ];
    for (query, position, words) in cases {
        let e = err(query);
        assert!(
            e.message.contains(words),
            "{query:?}: {e} does not say {words:?}"
        );
        assert_eq!(e.position, *position, "{query:?}: {e}");
    }
}

#[test]
fn raw_imap_cannot_end_the_command() {
    for raw in [
        "ALL\r\nA1 DELETE INBOX",
        "ALL\nx",
        "SUBJECT \"a\r\nb\"",
        "SUBJECT {3+}",
        "\u{0}",
        "SUBJECT \"x\\\"",
    ] {
        assert!(check_raw_imap(raw).is_err(), "{raw:?} passed");
    }
    for raw in [
        "UNSEEN",
        "OR (FROM \"a\") (TO b)",
        "UID 1:5,9 NOT DELETED",
        "KEYWORD \\x",
    ] {
        // `KEYWORD \x` is a syntax error for the server to report, but harmless.
        assert!(check_raw_imap(raw).is_ok(), "{raw:?} failed");
    }
}

#[test]
fn quoted_values_keep_injection_as_text() {
    // A query is data: the store quotes it; here it must stay one value.
    assert_eq!(
        ok("subject:\"x\\\" ) DELETE INBOX\""),
        SearchKey::Subject("x\" ) DELETE INBOX".into())
    );
}

#[test]
fn no_query_makes_the_parser_panic() {
    // Every prefix of tricky queries, byte by byte: errors, never panics.
    let tricky = "(a OR -\"b\\\" c\" header:X:\"y\" imap:\"(\\\\\" since:1m uid:3:* Ü)";
    for end in 0..=tricky.len() {
        if tricky.is_char_boundary(end) {
            let _ = parse(&tricky[..end], TODAY);
        }
    }
    for s in [
        "-", "--", "-(", "(-", "OR", "OR OR", ":", "a:", "\"", "\\", "((((", "))))",
    ] {
        let _ = parse(s, TODAY);
    }
}

/// Offline matching decodes as Dovecot does: a bug hunt found `subject:Käse`, `body:café`
/// and `hello` missed offline (encoded words, quoted-printable Latin-1, base64), and
/// `aGVsbG8` (base64 text itself) found.
#[test]
fn local_matching_decodes_words_transfer_encodings_and_charsets() {
    use super::local::Candidate;
    let raw: &[u8] = b"From: =?UTF-8?Q?J=C3=B6rg?= <j@example.org>\r\n\
        Subject: =?ISO-8859-1?Q?K=E4se?= und Brot\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 cr=E8me\r\n\
        --b\r\nContent-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n\
        --b--\r\n";
    let fields = |name: &str| -> Vec<Vec<u8>> {
        crate::store::imap::convert::header_field(raw, name)
            .into_iter()
            .collect()
    };
    let candidate = Candidate {
        uid: crate::store::Uid(1),
        raw,
        flags: &[],
        internal_date: std::time::UNIX_EPOCH,
        size: raw.len() as u64,
        fields: &fields,
    };
    for (query, want) in [
        ("subject:Käse", true),
        ("käse", true),
        ("from:Jörg", true),
        ("body:café", true),
        ("crème", true),
        ("hello", true),
        ("body:world", true),
        ("aGVsbG8", false),
        ("body:Brot", false),
        ("Brot", true),
    ] {
        assert_eq!(candidate.matches(&ok(query)), Ok(want), "{query}");
    }
}
