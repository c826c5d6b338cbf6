//! Reading one complete response from the stream: its line, and for each `{n}` or `~{n}`
//! that ends a line, the n bytes of the literal and the line that goes on after it
//! ([RFC 3501 §4.3](https://www.rfc-editor.org/rfc/rfc3501#section-4.3),
//! [RFC 3516 §4.3](https://www.rfc-editor.org/rfc/rfc3516#section-4.3)).
//!
//! Every byte is looked at once: lines are searched for LF only in bytes not yet searched,
//! and literals are copied with `read_exact`-style reads straight into the response buffer.
//! Every byte taken is charged to the command's budget, and a literal announced larger than
//! what is left of it is refused before anything is allocated for it.

use std::io::{self, Read};

use super::WireError;
use crate::store::imap::connection::CommandLimits;

/// Bytes read from the stream at a time while looking for a line end.
const CHUNK: usize = 64 * 1024;

/// The bytes read from the stream and not yet handed out.
pub struct Input {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            buf: vec![0; CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }
}

/// The length of the literal announced at the end of `line` (`{n}`, `{n+}` or `~{n}` before
/// CRLF), if the line ends with one. An announcement whose number does not fit is an error.
fn announced_literal(line: &[u8]) -> Result<Option<u64>, WireError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(inner) = line.strip_suffix(b"}") else {
        return Ok(None);
    };
    let inner = inner.strip_suffix(b"+").unwrap_or(inner);
    let digits_start = inner
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |p| p + 1);
    let digits = &inner[digits_start..];
    if digits.is_empty() || digits_start == 0 || inner[digits_start - 1] != b'{' {
        return Ok(None);
    }
    let n = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or_else(|| {
            WireError::Protocol(format!(
                "the server announced a literal of {} digits",
                digits.len()
            ))
        })?;
    Ok(Some(n))
}

impl Input {
    /// True when no byte read from the stream is waiting (after STARTTLS, anything waiting
    /// was sent before the handshake and must not be taken as protected).
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Reads more from `stream` into the empty buffer; false at end of stream.
    fn fill<R: Read>(&mut self, stream: &mut R) -> Result<bool, WireError> {
        debug_assert!(self.is_empty());
        loop {
            match stream.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WireError::Io(e)),
            }
        }
    }

    /// Reads one complete response into a new buffer.
    pub fn read_unit<R: Read>(
        &mut self,
        stream: &mut R,
        limits: &CommandLimits,
    ) -> Result<Vec<u8>, WireError> {
        let mut unit = Vec::new();
        loop {
            let line_start = unit.len();
            self.read_line(stream, limits, &mut unit)?;
            let Some(n) = announced_literal(&unit[line_start..])? else {
                return Ok(unit);
            };
            if n > limits.remaining() {
                return Err(WireError::Protocol(format!(
                    "the server announced a literal of {n} bytes, more than the {} bytes this answer may take",
                    limits.budget()
                )));
            }
            self.read_literal(stream, limits, &mut unit, n as usize)?;
        }
    }

    /// Appends one line (up to and including LF) to `unit`.
    fn read_line<R: Read>(
        &mut self,
        stream: &mut R,
        limits: &CommandLimits,
        unit: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        loop {
            if self.is_empty() && !self.fill(stream)? {
                return Err(WireError::Closed(None));
            }
            let chunk = &self.buf[self.start..self.end];
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            limits.charge(take as u64)?;
            unit.extend_from_slice(&chunk[..take]);
            self.start += take;
            if done {
                return Ok(());
            }
        }
    }

    /// Appends the `n` bytes of a literal to `unit`.
    fn read_literal<R: Read>(
        &mut self,
        stream: &mut R,
        limits: &CommandLimits,
        unit: &mut Vec<u8>,
        n: usize,
    ) -> Result<(), WireError> {
        limits.charge(n as u64)?;
        unit.reserve_exact(n);
        let buffered = n.min(self.end - self.start);
        unit.extend_from_slice(&self.buf[self.start..self.start + buffered]);
        self.start += buffered;
        let mut left = (n - buffered) as u64;
        while left > 0 {
            let got = stream
                .by_ref()
                .take(left)
                .read_to_end(unit)
                .map_err(WireError::Io)?;
            if got == 0 {
                return Err(WireError::Closed(Some(format!(
                    "the connection ended {left} bytes before the end of a literal"
                ))));
            }
            left -= got as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(budget: u64) -> CommandLimits {
        let l = CommandLimits::new(Duration::from_secs(5));
        l.start_command(budget);
        l
    }

    /// A stream that hands out its bytes `step` at a time.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_response_with_literals_is_one_unit_in_any_chunking() {
        let wire =
            b"* 1 FETCH (UID 1 BODY[] {5}\r\nab\r\nc BINARY[1] ~{3}\r\n\0\0\0)\r\na1 OK done\r\n";
        for step in [1, 2, 7, 100] {
            let mut input = Input::default();
            let mut stream = Trickle { data: wire, step };
            let l = limits(1 << 20);
            let first = input.read_unit(&mut stream, &l).unwrap();
            assert_eq!(first, &wire[..wire.len() - 12]);
            assert_eq!(input.read_unit(&mut stream, &l).unwrap(), b"a1 OK done\r\n");
            assert!(matches!(
                input.read_unit(&mut stream, &l),
                Err(WireError::Closed(None))
            ));
        }
    }

    #[test]
    fn literal_announcements_are_recognised_only_at_line_end() {
        assert_eq!(announced_literal(b"x {12}\r\n").unwrap(), Some(12));
        assert_eq!(announced_literal(b"x {12+}\r\n").unwrap(), Some(12));
        assert_eq!(announced_literal(b"x ~{0}\n").unwrap(), Some(0));
        assert_eq!(announced_literal(b"x {12} y\r\n").unwrap(), None);
        assert_eq!(announced_literal(b"x {}\r\n").unwrap(), None);
        assert_eq!(announced_literal(b"x {1a}\r\n").unwrap(), None);
        assert_eq!(announced_literal(b"12}\r\n").unwrap(), None);
        assert!(announced_literal(b"x {99999999999999999999999999}\r\n").is_err());
    }

    #[test]
    fn a_literal_larger_than_the_budget_is_refused_before_reading_it() {
        let mut input = Input::default();
        let mut stream = &b"* 1 FETCH (BODY[] {4000000000}\r\nxx"[..];
        let err = input.read_unit(&mut stream, &limits(1 << 20)).unwrap_err();
        assert!(
            matches!(err, WireError::Protocol(ref m) if m.contains("4000000000")),
            "{err:?}"
        );
    }

    #[test]
    fn an_endless_line_stops_at_the_budget() {
        let endless = vec![b'x'; 3 << 20];
        let mut input = Input::default();
        let err = input
            .read_unit(&mut &endless[..], &limits(1 << 20))
            .unwrap_err();
        assert!(matches!(err, WireError::Protocol(_)), "{err:?}");
    }

    #[test]
    fn a_cut_literal_or_line_is_a_closed_connection() {
        let mut input = Input::default();
        let err = input
            .read_unit(&mut &b"* 1 FETCH (BODY[] {10}\r\nabc"[..], &limits(1 << 20))
            .unwrap_err();
        assert!(matches!(err, WireError::Closed(Some(_))), "{err:?}");
        let mut input = Input::default();
        let err = input
            .read_unit(&mut &b"* OK no line end"[..], &limits(1 << 20))
            .unwrap_err();
        assert!(matches!(err, WireError::Closed(None)), "{err:?}");
    }
}
