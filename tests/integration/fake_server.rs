//! A scripted IMAP server on 127.0.0.1 for hostile-server tests: it answers from a fixed model
//! of mailboxes and messages in plaintext (STARTTLS is refused), lets each message misbehave in
//! a chosen way, and logs every command line it receives.
//!
//! Only what imapfs's read path sends is understood: CAPABILITY, STARTTLS, LOGIN, LIST,
//! EXAMINE/SELECT, `UID FETCH` of listing items, BODYSTRUCTURE and `BODY.PEEK[section]<o.n>`,
//! NOOP and LOGOUT ([RFC 3501 §6](https://www.rfc-editor.org/rfc/rfc3501#section-6)).
//! Everything else gets `BAD`.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use base64::Engine as _;

/// The user and password every fake server accepts (any other login is accepted too).
pub const USER: &str = "alice";
/// See [`USER`].
pub const PASSWORD: &str = "fake-pass";

/// Longest command line the fake reads; a longer one ends the connection.
const MAX_LINE: u64 = 64 * 1024;

/// How one message (or a mailbox's listing) answers a command, instead of answering well.
#[derive(Clone, Debug, Default)]
pub enum Misbehaviour {
    /// Answer correctly.
    #[default]
    Normal,
    /// Send these bytes (complete untagged lines) in place of this message's answer, then go
    /// on normally with the rest of the response.
    Replace(Vec<u8>),
    /// Send these bytes (complete untagged lines) first, then the correct answer: responses
    /// the client did not ask for, in the middle of one it did.
    Prepend(Vec<u8>),
    /// Send only the first `n` bytes of the correct answer, then close the connection.
    CutAfter(usize),
    /// Announce a literal of `announced` bytes, send `sent` filler bytes, then close.
    ShortLiteral { announced: u64, sent: usize },
    /// Announce a literal whose length is `announced` (any digits, even more than fit in 64
    /// bits), then stream filler until the client hangs up or `limit` bytes went out.
    Flood { announced: String, limit: u64 },
    /// Send `* BYE` instead of the answer, then close.
    Bye,
    /// Answer the whole command with `NO` and this text (which may start with a response
    /// code), sending nothing more for it.
    Refuse(String),
    /// Misbehave like the inner value the first `n` times, then answer correctly.
    FirstTimes(usize, Box<Misbehaviour>),
}

impl Misbehaviour {
    /// What the `asked`-th request meets: [`Misbehaviour::FirstTimes`] resolved.
    fn on(&self, asked: usize) -> &Misbehaviour {
        match self {
            Misbehaviour::FirstTimes(n, inner) if asked <= *n => inner.on(asked),
            Misbehaviour::FirstTimes(..) => &Misbehaviour::Normal,
            other => other,
        }
    }
}

/// One message of the model.
#[derive(Clone, Debug)]
pub struct FakeMessage {
    pub uid: u32,
    /// The FLAGS list contents, e.g. `\Seen $label`.
    pub flags: String,
    /// `BODY[]`, exactly.
    pub raw: Vec<u8>,
    /// The RFC822.SIZE token (normally `raw.len()`; a test may lie or send garbage).
    pub size: String,
    /// The raw value of the Subject field, or `None` for a message without one.
    pub subject: Option<Vec<u8>>,
    /// The BODYSTRUCTURE token exactly as sent (may be broken on purpose).
    pub bodystructure: Vec<u8>,
    /// `BODY[section]` contents by section (`"1"`, `"2.1"`...).
    pub sections: BTreeMap<String, Vec<u8>>,
    /// How it answers in the listing FETCH.
    pub on_listing: Misbehaviour,
    /// How it answers `UID FETCH ... BODYSTRUCTURE`.
    pub on_structure: Misbehaviour,
    /// How it answers `UID FETCH ... BODY.PEEK[...]` (any section, also `BODY[]`).
    pub on_section: Misbehaviour,
}

/// One attachment of [`FakeMessage::with_attachments`].
#[derive(Clone, Debug)]
pub struct FakeAttachment {
    /// Content-Disposition parameters as (name, value bytes); each value is sent as a quoted
    /// string when it can be, else as a literal.
    pub params: Vec<(String, Vec<u8>)>,
    /// The decoded content; it is sent base64-encoded.
    pub content: Vec<u8>,
}

/// A MIME text body with CRLF lines, and its line count.
fn crlf_text(text: &str) -> (Vec<u8>, usize) {
    let body = text.replace('\n', "\r\n").into_bytes();
    let lines = body.iter().filter(|&&b| b == b'\n').count();
    (body, lines)
}

/// Base64 in 76-character CRLF lines, as MIME sends it.
fn base64_lines(data: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(encoded.len() * 78 / 76 + 2);
    for line in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl FakeMessage {
    /// The subject as text (lossy), as a test expects it in the directory name.
    pub fn subject_text(&self) -> String {
        String::from_utf8_lossy(self.subject.as_deref().unwrap_or_default()).to_string()
    }

    /// A message with a raw header of `Subject:` + `subject` (when given) and the given
    /// structure and sections; `raw` is made up from them.
    pub fn with_structure(
        uid: u32,
        subject: Option<&[u8]>,
        bodystructure: &[u8],
        sections: BTreeMap<String, Vec<u8>>,
    ) -> FakeMessage {
        let mut raw = header(uid, subject, "text/plain; charset=us-ascii");
        for content in sections.values() {
            raw.extend_from_slice(content);
        }
        FakeMessage {
            uid,
            flags: String::new(),
            size: raw.len().to_string(),
            raw,
            subject: subject.map(<[u8]>::to_vec),
            bodystructure: bodystructure.to_vec(),
            sections,
            on_listing: Misbehaviour::Normal,
            on_structure: Misbehaviour::Normal,
            on_section: Misbehaviour::Normal,
        }
    }

    /// A single-part text/plain message.
    pub fn text(uid: u32, subject: &str, body: &str) -> FakeMessage {
        let (body, lines) = crlf_text(body);
        let mut raw = header(
            uid,
            Some(subject.as_bytes()),
            "text/plain; charset=us-ascii",
        );
        raw.extend_from_slice(&body);
        let structure = format!(
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" {} {lines} NIL NIL NIL NIL)",
            body.len()
        );
        FakeMessage {
            uid,
            flags: String::new(),
            size: raw.len().to_string(),
            raw,
            subject: Some(subject.as_bytes().to_vec()),
            bodystructure: structure.into_bytes(),
            sections: BTreeMap::from([("1".to_string(), body)]),
            on_listing: Misbehaviour::Normal,
            on_structure: Misbehaviour::Normal,
            on_section: Misbehaviour::Normal,
        }
    }

    /// multipart/mixed: a text/plain body (section 1), then each attachment (sections 2, 3...)
    /// as base64 application/octet-stream with its Content-Disposition parameters.
    pub fn with_attachments(
        uid: u32,
        subject: &[u8],
        text: &str,
        attachments: &[FakeAttachment],
    ) -> FakeMessage {
        let (body, lines) = crlf_text(text);
        let mut structure = format!(
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" {} {lines} NIL NIL NIL NIL)",
            body.len()
        )
        .into_bytes();
        let mut raw = header(uid, Some(subject), "multipart/mixed; boundary=\"fake-b\"");
        raw.extend_from_slice(b"--fake-b\r\nContent-Type: text/plain\r\n\r\n");
        raw.extend_from_slice(&body);
        let mut sections = BTreeMap::from([("1".to_string(), body)]);
        for (i, attachment) in attachments.iter().enumerate() {
            let encoded = base64_lines(&attachment.content);
            structure.extend_from_slice(
                format!(
                    "(\"application\" \"octet-stream\" NIL NIL NIL \"base64\" {} NIL (\"attachment\" (",
                    encoded.len()
                )
                .as_bytes(),
            );
            for (j, (name, value)) in attachment.params.iter().enumerate() {
                if j > 0 {
                    structure.push(b' ');
                }
                structure.extend_from_slice(&imap_string(name.as_bytes()));
                structure.push(b' ');
                structure.extend_from_slice(&imap_string(value));
            }
            structure.extend_from_slice(b")) NIL NIL)");
            raw.extend_from_slice(
                b"\r\n--fake-b\r\nContent-Type: application/octet-stream\r\n\
                  Content-Transfer-Encoding: base64\r\n\r\n",
            );
            raw.extend_from_slice(&encoded);
            sections.insert((i + 2).to_string(), encoded);
        }
        raw.extend_from_slice(b"\r\n--fake-b--\r\n");
        structure.extend_from_slice(b" \"mixed\" (\"boundary\" \"fake-b\") NIL NIL NIL)");
        FakeMessage {
            uid,
            flags: String::new(),
            size: raw.len().to_string(),
            raw,
            subject: Some(subject.to_vec()),
            bodystructure: structure,
            sections,
            on_listing: Misbehaviour::Normal,
            on_structure: Misbehaviour::Normal,
            on_section: Misbehaviour::Normal,
        }
    }
}

/// The header block of a made-up message.
fn header(uid: u32, subject: Option<&[u8]>, content_type: &str) -> Vec<u8> {
    let mut raw = Vec::new();
    if let Some(subject) = subject {
        raw.extend_from_slice(b"Subject: ");
        raw.extend_from_slice(subject);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(
        format!(
            "Message-ID: <{uid}@fake.test>\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    raw
}

/// One mailbox of the model.
#[derive(Clone, Debug)]
pub struct FakeMailbox {
    /// The name exactly as LIST sends it (a quoted string, or a literal when not 7-bit).
    pub wire_name: String,
    /// LIST attributes, e.g. `\HasNoChildren`.
    pub attributes: String,
    pub uid_validity: u32,
    pub messages: Vec<FakeMessage>,
}

impl FakeMailbox {
    /// A selectable mailbox with these messages and UIDVALIDITY 1.
    pub fn new(wire_name: &str, messages: Vec<FakeMessage>) -> FakeMailbox {
        FakeMailbox {
            wire_name: wire_name.to_string(),
            attributes: "\\HasNoChildren".into(),
            uid_validity: 1,
            messages,
        }
    }
}

/// Everything the server knows.
#[derive(Clone, Debug)]
pub struct Script {
    /// The CAPABILITY list after `IMAP4rev1`.
    pub capabilities: String,
    /// The hierarchy delimiter LIST reports (`None`: `NIL`, a server without hierarchy).
    pub delimiter: Option<char>,
    pub mailboxes: Vec<FakeMailbox>,
}

impl Script {
    /// A server with these mailboxes, `/` as delimiter, UIDPLUS and MOVE.
    pub fn new(mailboxes: Vec<FakeMailbox>) -> Script {
        Script {
            capabilities: "UIDPLUS MOVE".into(),
            delimiter: Some('/'),
            mailboxes,
        }
    }
}

/// Which answer a misbehaviour counter belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Answer {
    Listing,
    Structure,
    Section,
}

struct Shared {
    script: Script,
    log: Mutex<Vec<String>>,
    /// How often each (mailbox, uid, answer) has been asked for, for `FirstTimes`.
    asked: Mutex<HashMap<(String, u32, Answer), usize>>,
    stopping: AtomicBool,
    connections: AtomicU64,
    open: Mutex<Vec<TcpStream>>,
    /// Reads of a part or message answered with `Misbehaviour::Refuse`.
    refused_sections: AtomicU64,
    /// Commands other than LOGOUT received on a connection after it refused one.
    after_refusal: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A connection thread that panicked must not take the server down with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake server; dropping it closes every connection.
pub struct FakeServer {
    port: u16,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Listens on a free loopback port and serves `script` to every connection.
    pub fn start(script: Script) -> FakeServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind fake server");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            script,
            log: Mutex::new(Vec::new()),
            asked: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
            refused_sections: AtomicU64::new(0),
            after_refusal: AtomicU64::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name(format!("fake-imap-{port}"))
            .spawn(move || {
                for incoming in listener.incoming() {
                    if accept_shared.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = incoming else { continue };
                    accept_shared.connections.fetch_add(1, Ordering::SeqCst);
                    if let Ok(clone) = stream.try_clone() {
                        lock(&accept_shared.open).push(clone);
                    }
                    let conn_shared = Arc::clone(&accept_shared);
                    let _ = thread::Builder::new()
                        .name("fake-imap-conn".into())
                        .spawn(move || {
                            // A client hanging up mid-answer is normal here.
                            let _ = serve(stream, &conn_shared);
                        });
                }
            })
            .expect("spawn fake server");
        FakeServer {
            port,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// `imap://alice@127.0.0.1:PORT`, the source imapfs takes (with `--allow-plaintext`).
    pub fn source(&self) -> String {
        format!("imap://{USER}@127.0.0.1:{}", self.port)
    }

    /// Every command line received so far, in order, CRLF removed.
    pub fn commands(&self) -> Vec<String> {
        lock(&self.shared.log).clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Reads of a part or message answered with a [`Misbehaviour::Refuse`] so far.
    pub fn refused_sections(&self) -> u64 {
        self.shared.refused_sections.load(Ordering::SeqCst)
    }

    /// Commands other than LOGOUT that came on a connection after it had refused one (and
    /// were not already here, pipelined, when the refusal went out): zero when every such
    /// connection was given up.
    pub fn commands_after_refusal(&self) -> u64 {
        self.shared.after_refusal.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1));
        if let Some(handle) = self.accept_thread.take() {
            let _ = handle.join();
        }
        for stream in lock(&self.shared.open).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// An IMAP string for `bytes`: quoted when it can be ([RFC 3501 §4.3](https://www.rfc-editor.org/rfc/rfc3501#section-4.3)),
/// else a literal (8-bit bytes, NUL, CR, LF, or empty).
pub fn imap_string(bytes: &[u8]) -> Vec<u8> {
    let quotable = !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| (1..=0x7f).contains(&b) && b != b'\r' && b != b'\n');
    if quotable {
        let mut out = vec![b'"'];
        for &b in bytes {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
        out
    } else {
        let mut out = format!("{{{}}}\r\n", bytes.len()).into_bytes();
        out.extend_from_slice(bytes);
        out
    }
}

/// Why a connection ends: the client left, or the script closes it on purpose.
enum Closed {
    Io,
    OnPurpose,
}

impl From<io::Error> for Closed {
    fn from(_: io::Error) -> Self {
        Closed::Io
    }
}

/// One connection's state.
struct Conn<'a> {
    out: TcpStream,
    shared: &'a Shared,
    selected: Option<usize>,
    /// Whether this connection refused a command.
    refused: bool,
}

fn serve(stream: TcpStream, shared: &Shared) -> Result<(), Closed> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut conn = Conn {
        out: stream,
        shared,
        selected: None,
        refused: false,
    };
    conn.send(
        format!(
            "* OK [CAPABILITY IMAP4rev1 {}] fake server ready\r\n",
            shared.script.capabilities
        )
        .as_bytes(),
    )?;
    // Bytes the client had sent before it could have read a refusal (pipelined commands
    // already here when it went out): not counted as coming after it.
    let mut pipelined: Option<usize> = None;
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)?;
        if n == 0 || !line.ends_with(b"\n") {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        lock(&shared.log).push(text.clone());
        let logout = text
            .split_whitespace()
            .nth(1)
            .is_some_and(|verb| verb.eq_ignore_ascii_case("LOGOUT"));
        match &mut pipelined {
            Some(left) if *left >= n => *left -= n,
            Some(_) if !logout => {
                shared.after_refusal.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        conn.command(&text)?;
        if conn.refused && pipelined.is_none() {
            pipelined = Some(reader.buffer().len());
        }
    }
}

impl Conn<'_> {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }

    fn close(&mut self) -> Closed {
        let _ = self.out.shutdown(Shutdown::Both);
        Closed::OnPurpose
    }

    fn command(&mut self, line: &str) -> Result<(), Closed> {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        let (word, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let word = word.to_ascii_uppercase();
        let caps = self.shared.script.capabilities.clone();
        match word.as_str() {
            "CAPABILITY" => {
                self.send(format!("* CAPABILITY IMAP4rev1 {caps}\r\n{tag} OK done\r\n").as_bytes())?
            }
            "STARTTLS" => self.send(format!("{tag} NO no TLS on this server\r\n").as_bytes())?,
            "LOGIN" | "AUTHENTICATE" => {
                self.send(format!("{tag} OK [CAPABILITY IMAP4rev1 {caps}] welcome\r\n").as_bytes())?
            }
            "NOOP" | "UNSELECT" | "CLOSE" | "CHECK" => {
                self.send(format!("{tag} OK done\r\n").as_bytes())?
            }
            "LOGOUT" => {
                self.send(format!("* BYE see you\r\n{tag} OK bye\r\n").as_bytes())?;
                return Err(self.close());
            }
            "LIST" => self.list(tag)?,
            "EXAMINE" | "SELECT" => self.select(tag, args)?,
            "UID" => {
                let (sub, uid_args) = args.split_once(' ').unwrap_or((args, ""));
                if sub.eq_ignore_ascii_case("FETCH") {
                    self.fetch(tag, uid_args)?;
                } else {
                    self.send(format!("{tag} BAD the fake does not do UID {sub}\r\n").as_bytes())?;
                }
            }
            _ => self.send(format!("{tag} BAD the fake does not do {word}\r\n").as_bytes())?,
        }
        Ok(())
    }

    fn list(&mut self, tag: &str) -> io::Result<()> {
        let script = &self.shared.script;
        let mut out = Vec::new();
        for mailbox in &script.mailboxes {
            out.extend_from_slice(
                format!(
                    "* LIST ({}) {} ",
                    mailbox.attributes,
                    script
                        .delimiter
                        .map_or("NIL".to_string(), |d| format!("\"{d}\""))
                )
                .as_bytes(),
            );
            out.extend_from_slice(&imap_string(mailbox.wire_name.as_bytes()));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
        self.send(&out)
    }

    fn select(&mut self, tag: &str, args: &str) -> io::Result<()> {
        let name = unquote(args);
        let found = self
            .shared
            .script
            .mailboxes
            .iter()
            .position(|m| m.wire_name == name);
        self.selected = found;
        let Some(index) = found else {
            return self.send(format!("{tag} NO [NONEXISTENT] no such mailbox\r\n").as_bytes());
        };
        let mailbox = &self.shared.script.mailboxes[index];
        let next = mailbox.messages.iter().map(|m| m.uid).max().unwrap_or(0) + 1;
        let text = format!(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
             * {} EXISTS\r\n* 0 RECENT\r\n\
             * OK [UIDVALIDITY {}] ok\r\n* OK [UIDNEXT {next}] ok\r\n\
             {tag} OK [READ-ONLY] done\r\n",
            mailbox.messages.len(),
            mailbox.uid_validity
        );
        self.send(text.as_bytes())
    }

    /// `UID FETCH set (items)`: one FETCH line per message of the set, each answered by its
    /// own script.
    fn fetch(&mut self, tag: &str, args: &str) -> Result<(), Closed> {
        let Some(index) = self.selected else {
            self.send(format!("{tag} BAD nothing selected\r\n").as_bytes())?;
            return Ok(());
        };
        let (set, items) = args.split_once(' ').unwrap_or((args, ""));
        let items = items.to_ascii_uppercase();
        let mailbox = &self.shared.script.mailboxes[index];
        let max_uid = mailbox.messages.iter().map(|m| m.uid).max().unwrap_or(0);
        let answer = if items.contains("BODYSTRUCTURE") {
            Answer::Structure
        } else if items.contains("HEADER.FIELDS") {
            Answer::Listing
        } else {
            Answer::Section
        };
        for (seq, message) in mailbox.messages.iter().enumerate() {
            if !in_set(set, message.uid, max_uid) {
                continue;
            }
            let good = fetch_line(seq + 1, message, answer, &items);
            let behaviour = match answer {
                Answer::Listing => &message.on_listing,
                Answer::Structure => &message.on_structure,
                Answer::Section => &message.on_section,
            };
            let key = (mailbox.wire_name.clone(), message.uid, answer);
            let asked = {
                let mut counts = lock(&self.shared.asked);
                let count = counts.entry(key).or_insert(0);
                *count += 1;
                *count
            };
            if let Misbehaviour::Refuse(text) = behaviour.on(asked) {
                self.refused = true;
                if answer == Answer::Section {
                    self.shared.refused_sections.fetch_add(1, Ordering::SeqCst);
                }
                self.send(format!("{tag} NO {text}\r\n").as_bytes())?;
                return Ok(());
            }
            self.misbehave(behaviour, asked, &good, seq + 1, message.uid, &items)?;
        }
        self.send(format!("{tag} OK fetch done\r\n").as_bytes())?;
        Ok(())
    }

    /// Sends `good`, or what `behaviour` says instead on the `asked`-th request.
    fn misbehave(
        &mut self,
        behaviour: &Misbehaviour,
        asked: usize,
        good: &[u8],
        seq: usize,
        uid: u32,
        items: &str,
    ) -> Result<(), Closed> {
        match behaviour.on(asked) {
            Misbehaviour::Normal | Misbehaviour::Refuse(_) | Misbehaviour::FirstTimes(..) => {
                self.send(good)?
            }
            Misbehaviour::Replace(bytes) => self.send(bytes)?,
            Misbehaviour::Prepend(bytes) => {
                self.send(bytes)?;
                self.send(good)?;
            }
            Misbehaviour::CutAfter(n) => {
                let _ = self.send(&good[..(*n).min(good.len())]);
                return Err(self.close());
            }
            Misbehaviour::ShortLiteral { announced, sent } => {
                let head = literal_head(seq, uid, items, &announced.to_string());
                let _ = self.send(&head);
                let _ = self.send(&vec![b'x'; *sent]);
                return Err(self.close());
            }
            Misbehaviour::Flood { announced, limit } => {
                let head = literal_head(seq, uid, items, announced);
                self.send(&head)?;
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0u64;
                while sent < *limit {
                    if self.shared.stopping.load(Ordering::SeqCst) || self.send(&chunk).is_err() {
                        break;
                    }
                    sent += chunk.len() as u64;
                }
                return Err(self.close());
            }
            Misbehaviour::Bye => {
                let _ = self.send(b"* BYE the fake is going away\r\n");
                return Err(self.close());
            }
        }
        Ok(())
    }
}

/// The start of a FETCH answer whose data item is a literal of `announced` bytes.
fn literal_head(seq: usize, uid: u32, items: &str, announced: &str) -> Vec<u8> {
    let (section, origin) = section_of(items).unwrap_or_default();
    let origin = origin.map_or(String::new(), |(o, _)| format!("<{o}>"));
    format!("* {seq} FETCH (UID {uid} BODY[{section}]{origin} {{{announced}}}\r\n").into_bytes()
}

/// The correct FETCH line of `message` for the requested items.
fn fetch_line(seq: usize, message: &FakeMessage, answer: Answer, items: &str) -> Vec<u8> {
    let mut out = format!("* {seq} FETCH (UID {}", message.uid).into_bytes();
    match answer {
        Answer::Listing => {
            out.extend_from_slice(
                format!(
                    " FLAGS ({}) RFC822.SIZE {} INTERNALDATE \"01-Mar-2023 10:00:00 +0000\" BODY[HEADER.FIELDS (SUBJECT)] ",
                    message.flags, message.size
                )
                .as_bytes(),
            );
            let mut field = Vec::new();
            if let Some(subject) = &message.subject {
                field.extend_from_slice(b"Subject: ");
                field.extend_from_slice(subject);
                field.extend_from_slice(b"\r\n");
            }
            field.extend_from_slice(b"\r\n");
            out.extend_from_slice(&imap_string_always_literal(&field));
        }
        Answer::Structure => {
            if items.contains("RFC822.SIZE") {
                out.extend_from_slice(format!(" RFC822.SIZE {}", message.size).as_bytes());
            }
            out.extend_from_slice(b" BODYSTRUCTURE ");
            out.extend_from_slice(&message.bodystructure);
        }
        Answer::Section => {
            let (section, range) = section_of(items).unwrap_or_default();
            let content: &[u8] = if section.is_empty() {
                &message.raw
            } else {
                message.sections.get(&section).map_or(&[], Vec::as_slice)
            };
            let (content, origin) = match range {
                Some((offset, len)) => {
                    let start = usize::try_from(offset)
                        .unwrap_or(usize::MAX)
                        .min(content.len());
                    let end = start
                        .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
                        .min(content.len());
                    (&content[start..end], format!("<{offset}>"))
                }
                None => (content, String::new()),
            };
            out.extend_from_slice(format!(" BODY[{section}]{origin} ").as_bytes());
            out.extend_from_slice(&imap_string_always_literal(content));
        }
    }
    out.extend_from_slice(b")\r\n");
    out
}

fn imap_string_always_literal(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{{{}}}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out
}

/// The section and `<offset.length>` of a `BODY.PEEK[section]<o.n>` item.
fn section_of(items: &str) -> Option<(String, Option<(u64, u64)>)> {
    let start = items.find("BODY.PEEK[")? + "BODY.PEEK[".len();
    let end = start + items[start..].find(']')?;
    let section = items[start..end].to_string();
    let rest = &items[end + 1..];
    let range = rest.strip_prefix('<').and_then(|r| {
        let (o, n) = r.split_once('>')?.0.split_once('.')?;
        Some((o.parse().ok()?, n.parse().ok()?))
    });
    Some((section, range))
}

/// Whether `uid` is in a UID set such as `1:*`, `4` or `2:5,9` (`*` is the highest UID).
fn in_set(set: &str, uid: u32, max_uid: u32) -> bool {
    let value = |s: &str| {
        if s == "*" {
            Some(max_uid)
        } else {
            s.parse::<u32>().ok()
        }
    };
    set.split(',').any(|item| match item.split_once(':') {
        Some((a, b)) => match (value(a), value(b)) {
            (Some(a), Some(b)) => (a.min(b)..=a.max(b)).contains(&uid),
            _ => false,
        },
        None => value(item) == Some(uid),
    })
}

/// The mailbox argument of EXAMINE/SELECT: a quoted string (unescaped) or an atom.
fn unquote(arg: &str) -> String {
    let Some(inner) = arg.strip_prefix('"') else {
        return arg.split(' ').next().unwrap_or("").to_string();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets() {
        assert!(in_set("1:*", 7, 9));
        assert!(in_set("2:5,9", 9, 9));
        assert!(!in_set("2:5,9", 6, 9));
        assert!(in_set("*", 9, 9));
        assert!(!in_set("x", 1, 9));
    }

    #[test]
    fn sections_and_ranges() {
        assert_eq!(
            section_of("(UID BODY.PEEK[2.1]<0.4194304>)"),
            Some(("2.1".into(), Some((0, 4_194_304))))
        );
        assert_eq!(section_of("(UID BODY.PEEK[])"), Some((String::new(), None)));
    }

    #[test]
    fn strings_are_quoted_or_literal() {
        assert_eq!(imap_string(b"a\"b"), b"\"a\\\"b\"");
        assert_eq!(imap_string(b"\x1b[31m"), b"\"\x1b[31m\"");
        assert_eq!(imap_string(b"a\0b"), b"{3}\r\na\0b");
        assert_eq!(imap_string("é".as_bytes()), b"{2}\r\n\xc3\xa9");
        assert_eq!(unquote("\"a\\\"b\" x"), "a\"b");
    }
}
