//! body.txt and body.html through a real mount, for a corpus of odd real-world messages
//! (tests/data/bodies), compared with what Python's `email` package makes of the same bytes
//! as fetched from the server; and each message's BODYSTRUCTURE compared with the answer
//! recorded beside it, which the memory store's tests replay.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::support::*;

/// The corpus: `<name>.eml`, and `<name>.bodystructure` with Dovecot 2.3.19's BODYSTRUCTURE.
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bodies");

/// Prints `<file> <plain|html> absent|error <Exception>|present <hex of UTF-8>` for each
/// message file in the directory given: the part `get_body` picks and its `get_content()`,
/// its lines ended by LF.
const PYTHON_ORACLE: &str = r#"
import email, email.policy, os, sys
folder = sys.argv[1]
for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name), 'rb') as f:
        # From bytes, not from a file: the file reader turns CRLF into LF.
        msg = email.message_from_bytes(f.read(), policy=email.policy.default)
    for kind in ('plain', 'html'):
        try:
            part = msg.get_body((kind,))
            if part is None:
                print(name, kind, 'absent')
            else:
                # imapfs ends the lines of body.txt and body.html with LF.
                text = part.get_content().replace('\r\n', '\n')
                print(name, kind, 'present', text.encode('utf-8').hex())
        except Exception as e:
            print(name, kind, 'error', type(e).__name__)
"#;

/// One of the two body files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Body {
    Text,
    Html,
}

impl Body {
    fn file(self) -> &'static str {
        match self {
            Body::Text => "body.txt",
            Body::Html => "body.html",
        }
    }

    fn python_kind(self) -> &'static str {
        match self {
            Body::Text => "plain",
            Body::Html => "html",
        }
    }
}

/// What a reader of a body file gets: no file, or its exact bytes.
type Shown = Option<Vec<u8>>;

/// What Python's `email` says: a body (or none), or an exception it raised.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Python {
    Shows(Shown),
    Raises(String),
}

/// A body where imapfs knowingly shows something other than Python's answer.
struct Disagreement {
    file: &'static str,
    body: Body,
    /// What imapfs shows: `None` for no file.
    shows: Option<&'static str>,
    why: &'static str,
}

/// Every known disagreement. Each is checked both ways: imapfs shows `shows`, and Python
/// still says something else (so that a stale entry is noticed).
const DISAGREEMENTS: &[Disagreement] = &[
    // Where the server's BODYSTRUCTURE and Python's parser read the message differently,
    // imapfs can only show what the server serves.
    Disagreement {
        file: "missing-blank-line",
        body: Body::Text,
        shows: Some(""),
        why: "Dovecot reads a part's header up to a blank line or the next boundary, so \
              the line after Content-Type is a (broken) header line and the part's body is \
              empty; Python ends the header at the first line that is not a field",
    },
    Disagreement {
        file: "multipart-no-parts",
        body: Body::Text,
        shows: Some(""),
        why: "IMAP requires a multipart to have a part, so Dovecot reports one empty \
              text/plain part for a multipart without any; Python finds no body",
    },
    Disagreement {
        file: "multipart-no-boundary",
        body: Body::Text,
        shows: Some(""),
        why: "as multipart-no-parts: without a boundary Dovecot cannot split the multipart \
              and reports one empty text/plain part",
    },
    Disagreement {
        file: "signed-rfc2231-boundary",
        body: Body::Text,
        shows: Some(""),
        why: "Dovecot 2.3 looks for a parameter named exactly `boundary`, so an RFC 2231 \
              `boundary*=us-ascii''s3` leaves the multipart unsplit (one empty text/plain \
              part); Python decodes the parameter and splits it",
    },
    Disagreement {
        file: "no-mime-version-qp",
        body: Body::Text,
        shows: Some("café without MIME-Version or Content-Type.\n"),
        why: "without MIME-Version or Content-Type Dovecot's BODYSTRUCTURE ignores \
              Content-Transfer-Encoding (RFC 2045 §4) and reports 7bit, but its BINARY, which \
              imapfs reads the body with, decodes the quoted-printable; Python decodes it \
              too, and then replaces the UTF-8 bytes, reading them as ASCII",
    },
    Disagreement {
        file: "cte-uppercase-junk",
        body: Body::Text,
        shows: Some("été"),
        why: "Dovecot drops the comment in `Content-Transfer-Encoding: BASE64 (comment)` \
              (RFC 822 comments are allowed there) and reports base64; Python does not \
              recognise `base64 (comment)` and leaves the body encoded",
    },
    Disagreement {
        file: "params-comments-quoting",
        body: Body::Text,
        shows: Some("Euro sign in Latin-9: €.\n"),
        why: "Dovecot drops the comment in `text/plain (a comment); charset=...`; Python keeps \
              it in the subtype (`plain (a comment)`), so finds no text/plain",
    },
    // Where imapfs decides differently from Python on purpose.
    Disagreement {
        file: "charset-latin1-c1-bytes",
        body: Body::Text,
        shows: Some("“Smart quotes” and € from a mislabelled Windows mailer.\n"),
        why: "iso-8859-1 is decoded as windows-1252, as browsers and mail readers do \
              (WHATWG Encoding): bytes 0x80-0x9F are nearly always Windows punctuation, not \
              the C1 controls Python's latin-1 gives",
    },
    Disagreement {
        file: "charset-unknown",
        body: Body::Text,
        shows: Some("Unknown charset, UTF-8 bytes: café.\n"),
        why: "an unknown charset is read as UTF-8 if valid, else windows-1252; Python's \
              get_content raises LookupError",
    },
    Disagreement {
        file: "charset-unknown-8bit",
        body: Body::Text,
        shows: Some("Unknown 8bit, Latin-1 bytes: café.\n"),
        why: "as charset-unknown, for the common `unknown-8bit` label",
    },
    Disagreement {
        file: "eightbit-no-charset",
        body: Body::Text,
        shows: Some("UTF-8 with no charset: naïve café.\n"),
        why: "Dovecot reports charset us-ascii for a part that names none, so us-ascii is \
              read like no charset (UTF-8 if valid, else windows-1252); Python decodes 8-bit \
              bytes as ASCII and replaces each with U+FFFD",
    },
    Disagreement {
        file: "us-ascii-with-latin1",
        body: Body::Text,
        shows: Some("Labelled us-ascii, sent as Latin-1: café.\n"),
        why: "as eightbit-no-charset: not UTF-8, so windows-1252",
    },
    Disagreement {
        file: "html-meta-charset",
        body: Body::Html,
        shows: Some("<html><head><meta charset=\"utf-8\"></head><body><p>café</p></body></html>\n"),
        why: "as eightbit-no-charset, for HTML whose charset is only in a <meta>",
    },
    Disagreement {
        file: "charset-gb2312-gbk",
        body: Body::Text,
        shows: Some("GBK beyond GB2312: 中文 镕\n"),
        why: "gb2312 is decoded as GBK, its superset, as browsers do (WHATWG Encoding): \
              mail labelled gb2312 often holds GBK characters, which Python's strict \
              gb2312 replaces",
    },
    Disagreement {
        file: "charset-utf8-bom",
        body: Body::Text,
        shows: Some("A byte-order mark first.\n"),
        why: "a byte-order mark is taken as the charset and removed (WHATWG decode); Python \
              keeps it as U+FEFF at the start of the text",
    },
    Disagreement {
        file: "qp-trailing-whitespace",
        body: Body::Text,
        shows: Some(
            "Transport padding after this line\nand a soft break with blanks after itjoined.\n",
        ),
        why: "RFC 2045 §6.7 rule 3: blanks at the end of an encoded line were added in \
              transport and are deleted, and `=` followed by blanks then a line break is a \
              soft line break; Python keeps the blanks and the `=`",
    },
    // A known limitation.
    Disagreement {
        file: "related-start-param",
        body: Body::Html,
        shows: None,
        why: "multipart/related's root is taken to be its first part: the `start` \
              parameter names the root by Content-ID, which our BodyPart does not keep \
              (BODYSTRUCTURE has it); Python follows `start` to the second part",
    },
];

/// The corpus files, sorted by name: (name without `.eml`, path).
fn corpus() -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = fs::read_dir(CORPUS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    files.sort();
    files
}

/// Python's answers for each message, by name; the messages are written to `dir` first.
fn python_answers(
    messages: &BTreeMap<String, Vec<u8>>,
    dir: &Path,
) -> BTreeMap<(String, Body), Python> {
    for (name, raw) in messages {
        fs::write(dir.join(name), raw).unwrap();
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(PYTHON_ORACLE)
        .arg(dir)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut answers = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        let body = [Body::Text, Body::Html]
            .into_iter()
            .find(|body| body.python_kind() == fields[1])
            .unwrap_or_else(|| panic!("python3 printed {line:?}"));
        let answer = match (fields[2], fields.get(3)) {
            ("absent", None) => Python::Shows(None),
            ("present", Some(hex)) => Python::Shows(Some(from_hex(hex))),
            ("error", Some(exception)) => Python::Raises(exception.to_string()),
            _ => panic!("python3 printed {line:?}"),
        };
        answers.insert((fields[0].to_string(), body), answer);
    }
    answers
}

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The BODYSTRUCTURE value in an untagged `UID FETCH n BODYSTRUCTURE` answer, as sent.
fn raw_body_structure(session: &mut Session, uid: u32) -> Vec<u8> {
    let answer = session
        .run_command_and_read_response(format!("UID FETCH {uid} BODYSTRUCTURE"))
        .expect("fetch BODYSTRUCTURE");
    let marker = b"BODYSTRUCTURE ";
    let start = answer
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap_or_else(|| panic!("no BODYSTRUCTURE in {:?}", String::from_utf8_lossy(&answer)))
        + marker.len();
    let value = answer[start..]
        .strip_suffix(b")\r\n")
        .expect("BODYSTRUCTURE last in its FETCH");
    value.to_vec()
}

/// Readable bytes for a failure message.
fn show(shown: &Shown) -> String {
    match shown {
        None => "no file".to_string(),
        Some(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn body_files_agree_with_python_email_except_where_documented() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    let mut names = BTreeMap::new();
    for (name, path) in corpus() {
        let uid = fixture::append(&mut client, "INBOX", &fs::read(&path).unwrap(), &[]).unwrap();
        names.insert(uid, name);
    }
    assert!(names.len() >= 50, "corpus has {} messages", names.len());

    // The server's own copies, fetched apart from imapfs, and what it says of their structure.
    let server = server_mailbox(&mut client, "INBOX");
    let mut failures = Vec::new();
    let mut messages = BTreeMap::new();
    for (uid, name) in &names {
        messages.insert(name.clone(), server[uid].1.clone());
        let recorded_path = Path::new(CORPUS).join(format!("{name}.bodystructure"));
        let actual = raw_body_structure(&mut client, *uid);
        let recorded = fs::read(&recorded_path).ok();
        if recorded.as_ref() != Some(&actual) {
            let actual_path = recorded_path.with_extension("bodystructure.actual");
            fs::write(&actual_path, &actual).unwrap();
            failures.push(format!(
                "{name}: BODYSTRUCTURE {} {}; the server's answer is in {}",
                if recorded.is_some() {
                    "differs from"
                } else {
                    "not recorded in"
                },
                recorded_path.display(),
                actual_path.display()
            ));
        }
    }
    let scratch = tempfile::tempdir().unwrap();
    let python = python_answers(&messages, scratch.path());

    let mount = MountSpec::new(&dovecot, "alice").mount();
    let dirs: BTreeMap<u32, PathBuf> = fs::read_dir(mount.join("INBOX"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let dir_name = p.file_name().unwrap().to_string_lossy().into_owned();
            (dir_name.split(' ').next().unwrap().parse().unwrap(), p)
        })
        .collect();
    for (uid, name) in &names {
        for body in [Body::Text, Body::Html] {
            let path = dirs[uid].join(body.file());
            let shown: Shown = path.exists().then(|| fs::read(&path).unwrap());
            let python = &python[&(name.clone(), body)];
            let known = DISAGREEMENTS
                .iter()
                .find(|d| d.file == name && d.body == body);
            let place = format!("{name}/{}", body.file());
            match known {
                None if *python == Python::Shows(shown.clone()) => {}
                None => failures.push(format!(
                    "{place}: imapfs shows {}, Python's email {}",
                    show(&shown),
                    match python {
                        Python::Shows(shown) => show(shown),
                        Python::Raises(exception) => format!("raises {exception}"),
                    }
                )),
                Some(d) => {
                    let documented = d.shows.map(|s| s.as_bytes().to_vec());
                    if shown != documented {
                        failures.push(format!(
                            "{place}: imapfs shows {}, documented {} ({})",
                            show(&shown),
                            show(&documented),
                            d.why
                        ));
                    }
                    if *python == Python::Shows(documented) {
                        failures.push(format!("{place}: Python agrees now; drop the entry"));
                    }
                }
            }
        }
    }
    for d in DISAGREEMENTS {
        if !names.values().any(|name| name == d.file) {
            failures.push(format!("{}: documented but not in the corpus", d.file));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}\n--- imapfs log ---\n{}",
        failures.len(),
        failures.join("\n"),
        mount.log()
    );
}
