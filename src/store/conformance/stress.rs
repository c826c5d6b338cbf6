//! Messages written to stress section numbering and the message parser where Dovecot has
//! quirks: nested and top-level message/rfc822, multipart/digest, empty and unterminated
//! multiparts, parts without a blank line after their header, boundaries that are prefixes
//! of others, 8-bit headers, NUL bytes, bare LF and lone CR, very long lines.

/// `(name, raw bytes)` of every stress message. Lines end in CRLF unless the name says not.
pub(super) fn stress_messages() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("nested-rfc822", crlf(NESTED_RFC822)),
        ("top-level-rfc822", crlf(TOP_LEVEL_RFC822)),
        ("rfc822-base64-encoded", crlf(RFC822_ENCODED)),
        ("digest", crlf(DIGEST)),
        ("empty-multipart", crlf(EMPTY_MULTIPART)),
        ("empty-nested-multiparts", crlf(EMPTY_NESTED_MULTIPARTS)),
        ("part-header-without-blank-line", crlf(NO_BLANK_LINE)),
        (
            "header-only-no-final-newline",
            b"Subject: only\r\nX-Y: z".to_vec(),
        ),
        ("prefix-boundaries", crlf(PREFIX_BOUNDARIES)),
        ("encoded-leaves", crlf(ENCODED_LEAVES)),
        ("utf8-headers", utf8_headers()),
        ("latin1-headers", latin1_headers()),
        ("nul-bytes", nul_bytes()),
        ("bare-lf", BARE_LF.as_bytes().to_vec()),
        ("mixed-line-ends", MIXED_LINE_ENDS.to_vec()),
        ("long-lines", long_lines()),
    ]
}

/// `text` with every LF made CRLF.
fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

const NESTED_RFC822: &str = "\
Subject: outer
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=o

preamble
--o
Content-Type: text/plain

outer text
--o
Content-Type: message/rfc822

Subject: middle
Content-Type: message/rfc822

Subject: inner
Content-Type: multipart/alternative; boundary=i

--i
Content-Type: text/plain

inner plain
--i
Content-Type: message/rfc822

Subject: innermost

innermost body
--i--
--o
Content-Type: message/rfc822
Content-Disposition: attachment; filename=forwarded.eml

Subject: no MIME in here

just text
--o--
epilogue
";

const TOP_LEVEL_RFC822: &str = "\
Subject: the whole message is a message
MIME-Version: 1.0
Content-Type: message/rfc822

Subject: wrapped
Content-Type: multipart/mixed; boundary=w

--w
Content-Type: text/plain

one
--w
Content-Type: text/html

<b>two</b>
--w--
";

const RFC822_ENCODED: &str = "\
Subject: a message/rfc822 with a transfer encoding
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=m

--m
Content-Type: message/rfc822
Content-Transfer-Encoding: base64

U3ViamVjdDogaGlkZGVuDQoNCmJvZHkNCg==
--m
Content-Type: message/rfc822
Content-Transfer-Encoding: 8bit

Subject: eight bit

inner
--m--
";

const DIGEST: &str = "\
Subject: digest
MIME-Version: 1.0
Content-Type: multipart/digest; boundary=d

--d

Subject: first

first body
--d
Content-Type: text/plain

not a message
--d

Subject: third
Content-Type: multipart/mixed; boundary=x

--x

x1
--x
Content-Type: message/rfc822

Subject: deep

deep body
--x--
--d
Content-Type: multipart/digest; boundary=dd

--dd

Subject: in a nested digest

nested
--dd--
--d--
";

const EMPTY_MULTIPART: &str = "\
Subject: no parts at all
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=e

--e--
";

const EMPTY_NESTED_MULTIPARTS: &str = "\
Subject: empty and unterminated multiparts inside
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=a

--a
Content-Type: multipart/alternative; boundary=b

--b--
--a
Content-Type: multipart/related; boundary=c

--a
Content-Type: multipart/mixed

no boundary parameter
--a
Content-Type: text/plain

last
--a--
";

const NO_BLANK_LINE: &str = "\
Subject: part headers that run into the boundary
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=n

--n
Content-Type: text/plain
--n
Content-Type: text/html
X-Not-A-Blank-Line: but a body line follows
<p>body?</p>
--n
Content-Type: text/plain

ok
--n
Content-Type: text/plain";

const PREFIX_BOUNDARIES: &str = "\
Subject: boundaries that are prefixes of each other
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: multipart/alternative; boundary=b2

--b2
Content-Type: text/plain

in b2
--b2--
--b  \t
Content-Type: text/plain

after whitespace on the boundary line
--b-junk
Content-Type: text/plain

after junk on the boundary line
--b--
";

const ENCODED_LEAVES: &str = "\
Subject: leaves in every transfer encoding
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=t

--t
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

R3LDvMOfZSBhdXMgS8O2bG4hDQpad2VpdGUgWmVpbGUNCg==
--t
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 cr=C3=A8me, a soft=
 break and a trailing space=20
--t
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
--t
Content-Type: application/octet-stream
Content-Transfer-Encoding: x-unknown

kept as it is
--t
Content-Type: text/plain
Content-Transfer-Encoding: 8bit

plain eight-bit: caf\u{e9}
--t--
";

/// Raw UTF-8 in the Subject, the boundary and parameters.
fn utf8_headers() -> Vec<u8> {
    let mut raw = Vec::new();
    raw.extend_from_slice("Subject: caf\u{e9} cr\u{e8}me \u{2014} raw UTF-8\r\n".as_bytes());
    raw.extend_from_slice(b"MIME-Version: 1.0\r\n");
    raw.extend_from_slice(b"Content-Type: multipart/mixed; boundary=\"\xc3\xa9t\xc3\xa9\"\r\n\r\n");
    raw.extend_from_slice(b"--\xc3\xa9t\xc3\xa9\r\n");
    raw.extend_from_slice(b"Content-Type: text/plain; name=\"r\xc3\xa9sum\xc3\xa9.txt\"\r\n");
    raw.extend_from_slice(
        b"Content-Disposition: attachment; filename=r\xc3\xa9sum\xc3\xa9.txt\r\n\r\n",
    );
    raw.extend_from_slice(b"body \xff\xfe\r\n");
    raw.extend_from_slice(b"--\xc3\xa9t\xc3\xa9--\r\n");
    raw
}

/// Latin-1 bytes (not UTF-8) in the Subject and in parameters.
fn latin1_headers() -> Vec<u8> {
    let mut raw = Vec::new();
    raw.extend_from_slice(b"Subject: caf\xe9 in Latin-1\r\n");
    raw.extend_from_slice(b"MIME-Version: 1.0\r\n");
    raw.extend_from_slice(b"Content-Type: multipart/mixed; boundary=l\r\n\r\n");
    raw.extend_from_slice(b"--l\r\n");
    raw.extend_from_slice(b"Content-Type: text/plain; charset=\"caf\xe9\"\r\n");
    raw.extend_from_slice(b"Content-Disposition: attachment; filename=r\xe9sum\xe9.txt\r\n\r\n");
    raw.extend_from_slice(b"body\r\n");
    raw.extend_from_slice(b"--l--\r\n");
    raw
}

/// NUL bytes in a header value, a parameter and a body.
fn nul_bytes() -> Vec<u8> {
    let mut raw = Vec::new();
    raw.extend_from_slice(b"Subject: a\0b\r\n");
    raw.extend_from_slice(b"MIME-Version: 1.0\r\n");
    raw.extend_from_slice(b"Content-Type: multipart/mixed; boundary=z\r\n\r\n");
    raw.extend_from_slice(b"--z\r\n");
    raw.extend_from_slice(b"Content-Type: text/plain; name=\"n\0l.txt\"\r\n\r\n");
    raw.extend_from_slice(b"nul \0 in the body\0\r\n");
    raw.extend_from_slice(b"--z\r\n");
    raw.extend_from_slice(b"Content-Type: application/octet-stream\r\n");
    raw.extend_from_slice(b"Content-Transfer-Encoding: binary\r\n\r\n");
    raw.extend_from_slice(b"\0\0\0\x01\x02\r\n");
    raw.extend_from_slice(b"--z--\r\n");
    raw
}

const BARE_LF: &str = "\
Subject: bare LF everywhere
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=lf

--lf
Content-Type: text/plain

plain, LF only
--lf
Content-Type: text/html

<p>html, LF only</p>
--lf--
";

/// CRLF, LF, lone CR, CR CR LF and a CR at the very end.
const MIXED_LINE_ENDS: &[u8] = b"Subject: mixed\r\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\nContent-Type: text/plain\r\n\r\na lone\rCR and\r\r\nCR CR LF\n--q\r\nContent-Type: text/plain\n\nlast\r\n--q--\r";

/// A 10,000-byte Subject, a folded header, a 100,000-byte body line and a boundary longer
/// than Dovecot's 80-byte limit.
fn long_lines() -> Vec<u8> {
    let boundary = "B".repeat(100);
    let mut raw = String::new();
    raw.push_str(&format!("Subject: {}\r\n", "s".repeat(10_000)));
    raw.push_str("X-Folded: one\r\n\ttwo\r\n    three\r\n");
    raw.push_str("MIME-Version: 1.0\r\n");
    raw.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
    ));
    raw.push_str(&format!("--{boundary}\r\n"));
    raw.push_str("Content-Type: text/plain\r\n\r\n");
    raw.push_str(&"x".repeat(100_000));
    raw.push_str(&format!("\r\n--{boundary}\r\n"));
    raw.push_str("Content-Type: text/plain\r\n\r\nshort\r\n");
    raw.push_str(&format!("--{boundary}--\r\n"));
    raw.into_bytes()
}
