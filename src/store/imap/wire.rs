//! The IMAP protocol layer over any byte stream (TLS, plain TCP, or a test's mock): tagged
//! commands out, complete responses in ([RFC 3501 §2.2](https://www.rfc-editor.org/rfc/rfc3501#section-2.2)).
//!
//! A command is written as a tag and its parts: syntax built by this crate, strings from
//! `quote` (quoted strings or literals), and streamed literals. A synchronizing literal waits
//! for the server's `+`; a tagged answer in its place (`NO [OVERQUOTA]` before an APPEND's
//! message) is the command's answer and the rest is not sent. With LITERAL+ or LITERAL-
//! ([RFC 7888](https://www.rfc-editor.org/rfc/rfc7888)) small literals go without waiting.
//! A response is read as one unit, its line and every literal it announces, and parsed once.
//! Commands may be pipelined: send several, then finish each by its tag.
//!
//! Any error while a command is under way leaves the connection in an unknown state: the
//! wire is then broken and refuses every later command, so its owner drops it.

mod command;
mod cursor;
mod datetime;
mod fetch;
mod input;
mod response;
#[cfg(test)]
mod tests;

use std::io::{self, Read, Write};
use std::sync::Arc;

pub use command::{Command, Part};
pub use cursor::lossy_utf8_strings;
pub use datetime::{format_date_time, parse_date_time};
pub use fetch::{Fetch, SectionData, SectionKind};
pub use response::{
    parse_response, Code, ListEntry, MailboxStatus, QuotaResource, Response, Status, Tagged,
    Untagged,
};

use super::connection::CommandLimits;
use super::quote::Form;
use input::Input;

/// Where every command sent is logged (at debug, redacted: see [`Command::redacted`]) and
/// every tagged answer; `-vv` shows them, `IMAPFS_LOG=imapfs::imap=debug` alone too.
pub const LOG_TARGET: &str = "imapfs::imap";

/// Bytes of a streamed literal read and written at a time.
const STREAM_CHUNK: usize = 64 * 1024;

/// Longest literal sent without waiting under LITERAL- (RFC 7888 §5).
const LITERAL_MINUS_MAX: usize = 4096;

/// What went wrong below the level of a command's answer.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The transport failed; `TimedOut`/`WouldBlock` when a deadline passed.
    #[error("{0}")]
    Io(io::Error),
    /// The server closed the connection, saying why (its BYE) if it did.
    #[error("the server closed the connection{}", .0.as_ref().map(|t| format!(": {t}")).unwrap_or_default())]
    Closed(Option<String>),
    /// The server's bytes break the protocol or the command's limits.
    #[error("{0}")]
    Protocol(String),
    /// A command part that must not be sent (checked before anything is written).
    #[error("{0}")]
    Invalid(String),
    /// Reading the content of a streamed literal failed.
    #[error("reading what was to be sent: {0}")]
    Source(io::Error),
    /// An earlier error left this connection in an unknown state.
    #[error("the connection is unusable after an earlier error")]
    Broken,
}

/// How literals may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Literals {
    /// Wait for `+` before each literal.
    Synchronizing,
    /// LITERAL-: no wait for literals of at most 4096 bytes.
    Minus,
    /// LITERAL+: no wait for any literal.
    Plus,
}

/// A command's answer: its tagged completion and the untagged responses that came with it.
#[derive(Debug)]
pub struct Done {
    pub untagged: Vec<Untagged>,
    pub tagged: Tagged,
}

impl Done {
    /// Response codes of the completion and of every untagged status response.
    pub fn codes(&self) -> impl Iterator<Item = &Code> {
        self.untagged
            .iter()
            .filter_map(|u| match u {
                Untagged::Status { code, .. } => code.as_ref(),
                _ => None,
            })
            .chain(self.tagged.code.as_ref())
    }
}

/// The FETCH responses among untagged responses.
pub fn fetches(untagged: &[Untagged]) -> impl Iterator<Item = &Fetch> {
    untagged.iter().filter_map(|u| match u {
        Untagged::Fetch(f) => Some(&**f),
        _ => None,
    })
}

/// The greeting's status and response code ([RFC 3501 §7.1](https://www.rfc-editor.org/rfc/rfc3501#section-7.1)).
#[derive(Debug)]
pub struct Greeting {
    /// `* PREAUTH`: already logged in.
    pub preauth: bool,
    pub code: Option<Code>,
}

/// One IMAP connection's protocol state over `S`.
pub struct Wire<S> {
    stream: S,
    input: Input,
    limits: Arc<CommandLimits>,
    next_tag: u64,
    literals: Literals,
    /// Tags sent and not yet answered.
    pending: Vec<String>,
    /// Answers read while waiting for something else (pipelining, literals).
    completed: Vec<Tagged>,
    untagged: Vec<Untagged>,
    /// The text of a BYE, kept to say why the connection then closed.
    bye: Option<String>,
    /// Whether the server ever said BYE on this connection.
    said_bye: bool,
    broken: bool,
}

impl<S: Read + Write> Wire<S> {
    /// A wire over `stream`; each response is charged to `limits`.
    pub fn new(stream: S, limits: Arc<CommandLimits>) -> Self {
        Wire {
            stream,
            input: Input::default(),
            limits,
            next_tag: 0,
            literals: Literals::Synchronizing,
            pending: Vec::new(),
            completed: Vec::new(),
            untagged: Vec::new(),
            bye: None,
            said_bye: false,
            broken: false,
        }
    }

    /// Uses LITERAL+ or LITERAL- from now on if `capabilities` has it.
    pub fn set_capabilities(&mut self, capabilities: &[String]) {
        let has = |c: &str| capabilities.iter().any(|x| x.eq_ignore_ascii_case(c));
        self.literals = if has("LITERAL+") {
            Literals::Plus
        } else if has("LITERAL-") {
            Literals::Minus
        } else {
            Literals::Synchronizing
        };
    }

    /// True if the server said BYE: it is closing this connection.
    pub fn said_bye(&self) -> bool {
        self.said_bye
    }

    /// True once an error left the connection in an unknown state.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// True if bytes the server sent were read from the stream and not parsed yet: one
    /// who waits for the stream to become readable must look here first.
    pub fn has_buffered(&self) -> bool {
        !self.input.is_empty()
    }

    /// The stream under the protocol.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// The stream, for a caller that must leave the protocol (STARTTLS). Bytes the server
    /// sent that were not read yet would be lost, or taken as protected when they were not,
    /// so they are an error.
    pub fn into_inner(self) -> Result<S, WireError> {
        if self.input.is_empty() {
            Ok(self.stream)
        } else {
            Err(WireError::Protocol(
                "the server sent more after its answer, before the TLS handshake".into(),
            ))
        }
    }

    /// The stream, to change how the next bytes are carried (COMPRESS). Bytes already read
    /// past the last answer were carried the old way and would be misread, so they are an
    /// error, and the wire is broken.
    pub fn stream_at_boundary(&mut self) -> Result<&mut S, WireError> {
        if self.broken {
            return Err(WireError::Broken);
        }
        if !self.input.is_empty() {
            self.broken = true;
            return Err(WireError::Protocol(
                "the server sent more after its answer, before compression started".into(),
            ));
        }
        Ok(&mut self.stream)
    }

    /// Runs `f`, marking the wire broken if it fails.
    fn guarded<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, WireError>,
    ) -> Result<T, WireError> {
        if self.broken {
            return Err(WireError::Broken);
        }
        let result = f(self);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Reads the server's greeting: `* OK`, `* PREAUTH`, or `* BYE` (an error).
    pub fn read_greeting(&mut self) -> Result<Greeting, WireError> {
        self.guarded(|w| match w.read_response()? {
            Response::Untagged(Untagged::Status {
                status: status @ (Status::Ok | Status::PreAuth),
                code,
                ..
            }) => Ok(Greeting {
                preauth: status == Status::PreAuth,
                code,
            }),
            Response::Untagged(Untagged::Status {
                status: Status::Bye,
                text,
                ..
            }) => Err(WireError::Closed(Some(text))),
            other => Err(WireError::Protocol(format!(
                "unexpected greeting: {}",
                short(&format!("{other:?}"))
            ))),
        })
    }

    /// Reads and parses the next response, noting a BYE.
    fn read_response(&mut self) -> Result<Response, WireError> {
        let unit = match self.input.read_unit(&mut self.stream, &self.limits) {
            Err(WireError::Closed(None)) => return Err(WireError::Closed(self.bye.take())),
            other => other?,
        };
        let response = parse_response(&unit)?;
        // RFC 3501 §7.1: an ALERT's text must reach the user; the log is where they look.
        let alert = match &response {
            Response::Untagged(Untagged::Status {
                code: Some(Code::Alert),
                text,
                ..
            })
            | Response::Tagged(Tagged {
                code: Some(Code::Alert),
                text,
                ..
            }) => Some(text),
            _ => None,
        };
        if let Some(text) = alert {
            tracing::warn!(target: LOG_TARGET, alert = %short(text), "the server sent an ALERT");
        }
        if let Response::Untagged(Untagged::Status {
            status: Status::Bye,
            text,
            ..
        }) = &response
        {
            self.bye = Some(text.clone());
            self.said_bye = true;
        }
        Ok(response)
    }

    /// Files a tagged answer under its command; one for a tag never sent is an error.
    fn file_tagged(&mut self, tagged: Tagged) -> Result<(), WireError> {
        let Some(i) = self.pending.iter().position(|t| *t == tagged.tag) else {
            return Err(WireError::Protocol(format!(
                "an answer for tag {:?}, which was never sent",
                short(&tagged.tag)
            )));
        };
        self.pending.swap_remove(i);
        tracing::debug!(target: LOG_TARGET, "S: {} {:?} {}", tagged.tag, tagged.status, short(&tagged.text));
        if tagged.code == Some(Code::ServerBug) {
            // The server's session may still hold what the failed command took: Dovecot,
            // failing an EXAMINE of a mailbox renamed meanwhile, keeps its lock file until
            // the session ends, and every other session waits on it. Ending ours frees it.
            tracing::warn!(tag = %tagged.tag, text = %short(&tagged.text), "the server failed internally (SERVERBUG); this connection is closed");
            self.broken = true;
        }
        self.completed.push(tagged);
        Ok(())
    }

    /// Writes `commands` one after another (pipelined) and returns their tags. When a write
    /// fails after some were sent, what the server said to those is read first: a server
    /// that answered an earlier one with BYE and closed the connection (Dovecot does, for
    /// a part it cannot decode) has the later write fail on a closed socket, and
    /// [`Wire::said_bye`] must still tell so. The write's error is returned.
    pub fn send_all(&mut self, commands: Vec<Command<'_>>) -> Result<Vec<String>, WireError> {
        let mut tags = Vec::with_capacity(commands.len());
        for cmd in commands {
            match self.send(cmd) {
                Ok(tag) => tags.push(tag),
                Err(e) => {
                    // The connection is done for; what already came is still read.
                    self.broken = false;
                    for tag in &tags {
                        if self.finish(tag).is_err() {
                            break;
                        }
                    }
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        Ok(tags)
    }

    /// Writes `cmd` (waiting for `+` before each synchronizing literal) and returns its tag.
    /// If the server answers the command instead of a `+`, the rest is not sent and the
    /// answer waits for [`Wire::finish`].
    pub fn send(&mut self, cmd: Command<'_>) -> Result<String, WireError> {
        for part in &cmd.parts {
            if let Part::Syntax(s) = part {
                if s.contains(['\r', '\n', '\0']) {
                    return Err(WireError::Invalid(format!(
                        "command syntax with a line break or NUL: {:?}",
                        short(s)
                    )));
                }
            }
        }
        self.guarded(|w| w.write_command(cmd))
    }

    fn write_command(&mut self, cmd: Command<'_>) -> Result<String, WireError> {
        self.next_tag += 1;
        let tag = format!("i{}", self.next_tag);
        if tracing::enabled!(target: LOG_TARGET, tracing::Level::DEBUG) {
            tracing::debug!(target: LOG_TARGET, "C: {}", cmd.redacted(&tag));
        }
        self.pending.push(tag.clone());
        let mut out = tag.clone().into_bytes();
        let mut after_open = false;
        for part in cmd.parts {
            // A list's parentheses hug what they enclose: `(FROM "x")`.
            let closes = matches!(&part, Part::Syntax(s) if s.starts_with(')'));
            if !after_open && !closes {
                out.push(b' ');
            }
            after_open = matches!(&part, Part::Syntax(s) if s.ends_with('('));
            match part {
                Part::Syntax(s) => out.extend_from_slice(s.as_bytes()),
                Part::Arg(arg) => match arg.form() {
                    Form::Quoted(q) => out.extend_from_slice(q.as_bytes()),
                    Form::Literal(bytes) => {
                        let free = match self.literals {
                            Literals::Plus => true,
                            Literals::Minus => bytes.len() <= LITERAL_MINUS_MAX,
                            Literals::Synchronizing => false,
                        };
                        if free {
                            out.extend_from_slice(format!("{{{}+}}\r\n", bytes.len()).as_bytes());
                        } else {
                            out.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
                            if !self.go_ahead(&tag, &mut out)? {
                                return Ok(tag);
                            }
                        }
                        out.extend_from_slice(bytes);
                    }
                },
                Part::Stream {
                    source,
                    len,
                    binary,
                } => {
                    let tilde = if binary { "~" } else { "" };
                    out.extend_from_slice(format!("{tilde}{{{len}}}\r\n").as_bytes());
                    if !self.go_ahead(&tag, &mut out)? {
                        return Ok(tag);
                    }
                    if let Err(e) = self.copy(source, len) {
                        return self.answer_despite(e, &tag);
                    }
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        self.write_out(&mut out)?;
        Ok(tag)
    }

    fn write_out(&mut self, out: &mut Vec<u8>) -> Result<(), WireError> {
        self.stream.write_all(out).map_err(WireError::Io)?;
        self.stream.flush().map_err(WireError::Io)?;
        out.clear();
        Ok(())
    }

    /// Sends what is pending and waits for the server's `+`; false if it answered the
    /// command `tag` instead.
    fn go_ahead(&mut self, tag: &str, out: &mut Vec<u8>) -> Result<bool, WireError> {
        self.write_out(out)?;
        loop {
            match self.read_response()? {
                Response::Continuation(_) => {
                    tracing::debug!(target: LOG_TARGET, "S: + (go ahead with the literal)");
                    return Ok(true);
                }
                Response::Tagged(t) => {
                    let ours = t.tag == tag;
                    self.file_tagged(t)?;
                    if ours {
                        return Ok(false);
                    }
                }
                Response::Untagged(u) => self.untagged.push(u),
            }
        }
    }

    /// Copies `len` bytes from `source` to the server in chunks, so memory stays bounded
    /// whatever the size.
    fn copy(&mut self, source: &mut (dyn Read + Send), len: u64) -> Result<(), WireError> {
        let mut buf = vec![0u8; STREAM_CHUNK];
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left).map_or(STREAM_CHUNK, |l| l.min(STREAM_CHUNK));
            let n = match source.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(WireError::Source(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("it ended after {} of {len} bytes", len - left),
                    )))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WireError::Source(e)),
            };
            self.stream.write_all(&buf[..n]).map_err(WireError::Io)?;
            left -= n as u64;
        }
        Ok(())
    }

    /// After writing a literal failed: a server that refused the message and hung up (a
    /// size limit, a quota) may have said so first. If its answer to `tag` can still be
    /// read, it is the command's answer; the connection is unusable either way.
    fn answer_despite(&mut self, error: WireError, tag: &str) -> Result<String, WireError> {
        if !matches!(error, WireError::Io(_)) {
            return Err(error);
        }
        loop {
            match self.read_response() {
                Ok(Response::Tagged(t)) if t.tag == tag => {
                    self.file_tagged(t)?;
                    self.broken = true;
                    return Ok(tag.to_string());
                }
                Ok(Response::Untagged(u)) => self.untagged.push(u),
                _ => return Err(error),
            }
        }
    }

    /// Reads until the answer to `tag` has come and returns it; untagged responses wait
    /// for [`Wire::take_untagged`].
    pub fn finish(&mut self, tag: &str) -> Result<Tagged, WireError> {
        if let Some(i) = self.completed.iter().position(|t| t.tag == tag) {
            return Ok(self.completed.swap_remove(i));
        }
        self.guarded(|w| loop {
            match w.read_response()? {
                Response::Tagged(t) => {
                    let ours = t.tag == tag;
                    w.file_tagged(t)?;
                    if ours {
                        let i = w.completed.len() - 1;
                        return Ok(w.completed.swap_remove(i));
                    }
                }
                Response::Untagged(u) => w.untagged.push(u),
                Response::Continuation(text) => {
                    return Err(WireError::Protocol(format!(
                        "a continuation nobody asked for: {}",
                        short(&text)
                    )))
                }
            }
        })
    }

    /// The untagged responses read so far.
    pub fn take_untagged(&mut self) -> Vec<Untagged> {
        std::mem::take(&mut self.untagged)
    }

    /// Sends `cmd` and reads its answer.
    pub fn run(&mut self, cmd: Command<'_>) -> Result<Done, WireError> {
        let tag = self.send(cmd)?;
        let tagged = self.finish(&tag)?;
        Ok(Done {
            untagged: self.take_untagged(),
            tagged,
        })
    }

    /// The next response, whatever it is (for exchanges such as AUTHENTICATE).
    pub fn next_response(&mut self) -> Result<Response, WireError> {
        self.guarded(|w| w.read_response())
    }

    /// Writes one line (`line` then CRLF), such as a SASL response.
    pub fn write_line(&mut self, line: &[u8]) -> Result<(), WireError> {
        tracing::debug!(target: LOG_TARGET, "C: *** ({} bytes)", line.len());
        self.guarded(|w| {
            let mut out = Vec::with_capacity(line.len() + 2);
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
            w.write_out(&mut out)
        })
    }

    /// Forgets `tag`'s answer (after an exchange read it through [`Wire::next_response`]).
    pub fn forget(&mut self, tag: &str) {
        self.pending.retain(|t| t != tag);
    }
}

/// Server text shortened for errors and logs (a hostile server can send megabytes).
pub fn short(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
