//! A minimal IMAP client over TLS that sends one command at a time and reads the answer as
//! raw bytes, for the protocol floor, the server warm-up and the round-trip calibration.
//!
//! It parses nothing but what it needs to find the end of a response: lines, literals
//! (`{n}` CRLF followed by n bytes, [RFC 3501 §4.3](https://www.rfc-editor.org/rfc/rfc3501#section-4.3))
//! and the tagged status line ([RFC 3501 §7.1](https://www.rfc-editor.org/rfc/rfc3501#section-7.1)).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use native_tls::{Certificate, TlsConnector, TlsStream};

/// How long any read or write may block.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// What came back for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Bytes of the response, untagged lines and literals included (TLS payload, not wire).
    pub bytes: u64,
    /// Untagged `* n FETCH` responses.
    pub fetches: u64,
}

/// A logged-in or fresh connection.
pub struct RawImap {
    stream: BufReader<TlsStream<TcpStream>>,
    next_tag: u32,
}

impl RawImap {
    /// Connects with TLS to `addr` (certificate checked against `ca_pem` and `127.0.0.1`)
    /// and reads the greeting.
    pub fn connect(addr: SocketAddr, ca_pem: &[u8]) -> io::Result<RawImap> {
        let ca = Certificate::from_pem(ca_pem).map_err(io::Error::other)?;
        let connector = TlsConnector::builder()
            .add_root_certificate(ca)
            .disable_built_in_roots(true)
            .build()
            .map_err(io::Error::other)?;
        let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let tls = connector
            .connect("127.0.0.1", tcp)
            .map_err(|e| io::Error::other(format!("TLS handshake with {addr}: {e}")))?;
        let mut session = RawImap {
            stream: BufReader::new(tls),
            next_tag: 1,
        };
        let mut greeting = Vec::new();
        session.stream.read_until(b'\n', &mut greeting)?;
        if !greeting.starts_with(b"* OK") {
            return Err(io::Error::other(format!(
                "unexpected greeting from {addr}: {}",
                String::from_utf8_lossy(&greeting).trim_end()
            )));
        }
        Ok(session)
    }

    /// LOGIN with both arguments as quoted strings.
    pub fn login(&mut self, user: &str, password: &str) -> io::Result<()> {
        let quoted = |s: &str| -> io::Result<String> {
            if s.bytes()
                .any(|b| matches!(b, b'"' | b'\\' | b'\r' | b'\n' | 0))
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "user and password must not contain quotes, backslashes or line breaks",
                ));
            }
            Ok(format!("\"{s}\""))
        };
        self.run(&format!("LOGIN {} {}", quoted(user)?, quoted(password)?))
            .map(drop)
    }

    /// Sends `command` with a fresh tag and reads until its tagged OK.
    pub fn run(&mut self, command: &str) -> io::Result<Reply> {
        let tag = format!("b{}", self.next_tag);
        self.next_tag += 1;
        let stream = self.stream.get_mut();
        stream.write_all(format!("{tag} {command}\r\n").as_bytes())?;
        stream.flush()?;
        read_response(&mut self.stream, tag.as_bytes())
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", first_word(command))))
    }

    /// LOGOUT, ignoring a server that already closed.
    pub fn logout(mut self) {
        let _ = self.run("LOGOUT");
    }
}

fn first_word(command: &str) -> &str {
    command.split(' ').next().unwrap_or(command)
}

/// Reads responses until the one tagged `tag`, which must be OK.
fn read_response(reader: &mut impl BufRead, tag: &[u8]) -> io::Result<Reply> {
    let mut reply = Reply {
        bytes: 0,
        fetches: 0,
    };
    let mut line = Vec::new();
    let mut at_start = true;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        reply.bytes += n as u64;
        if at_start {
            if line.starts_with(tag) && line.get(tag.len()) == Some(&b' ') {
                let status = String::from_utf8_lossy(&line[tag.len() + 1..]);
                return if status.starts_with("OK") {
                    Ok(reply)
                } else {
                    Err(io::Error::other(format!(
                        "server said {}",
                        status.trim_end()
                    )))
                };
            }
            if is_fetch(&line) {
                reply.fetches += 1;
            }
        }
        match literal_len(&line) {
            Some(len) => {
                let copied = io::copy(&mut reader.by_ref().take(len), &mut io::sink())?;
                if copied < len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection inside a literal",
                    ));
                }
                reply.bytes += len;
                at_start = false;
            }
            None => at_start = true,
        }
    }
}

/// Whether `line` starts an untagged FETCH response: `* <number> FETCH`.
fn is_fetch(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"* ") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest[digits..].starts_with(b" FETCH")
}

/// The length of the literal announced at the end of `line` (`{n}` CRLF), if any.
fn literal_len(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"\r\n").or(line.strip_suffix(b"\n"))?;
    let body = body.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_found_only_at_the_end_of_a_line() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {123}\r\n"), Some(123));
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {0}\r\n"), Some(0));
        assert_eq!(literal_len(b"* 1 FETCH (SUBJECT \"{12}\")\r\n"), None);
        assert_eq!(literal_len(b"{}\r\n"), None);
        assert_eq!(literal_len(b"{1a}\r\n"), None);
    }

    #[test]
    fn a_response_ends_at_its_tag_and_skips_literals() {
        // The literal contains what looks like the tagged line; it must not end the response.
        let wire = b"* 1 FETCH (UID 1 BODY[] {12}\r\nb7 OK fake\r\n)\r\n\
                     * 2 FETCH (UID 2 FLAGS ())\r\n\
                     * OK [ALERT] hello\r\n\
                     b7 OK Fetch completed.\r\n\
                     * 3 FETCH (UID 3)\r\n";
        let mut reader = &wire[..];
        let reply = read_response(&mut reader, b"b7").expect("response");
        assert_eq!(reply.fetches, 2);
        let consumed = wire.len() - reader.len();
        assert_eq!(reply.bytes, consumed as u64);
        assert!(reader.starts_with(b"* 3 FETCH"));
    }

    #[test]
    fn a_tagged_no_is_an_error() {
        let mut reader = &b"b1 NO [NONEXISTENT] Mailbox doesn't exist\r\n"[..];
        let err = read_response(&mut reader, b"b1").expect_err("NO");
        assert!(err.to_string().contains("NONEXISTENT"));
    }

    #[test]
    fn fetch_lines_are_recognised() {
        assert!(is_fetch(b"* 12 FETCH (UID 12)\r\n"));
        assert!(!is_fetch(b"* 12 EXISTS\r\n"));
        assert!(!is_fetch(b"* OK FETCH\r\n"));
    }
}
