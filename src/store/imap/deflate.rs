//! COMPRESS=DEFLATE ([RFC 4978](https://www.rfc-editor.org/rfc/rfc4978)): raw deflate (no
//! zlib header) in both directions of a connection, from the byte after the server's OK on.
//!
//! The codec sits between the protocol layer and the transport (TLS or plain TCP), so every
//! read and write still goes through the socket's deadlines and byte counters, which then
//! count compressed bytes: what really crosses the network. Each command ends with a sync
//! flush (RFC 4978 §4: "the client must flush after each command"), so the server sees the
//! whole command at once; the server does the same after each response.

use std::io::{self, Read, Write};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Compressed bytes read from the transport at a time.
const INPUT_CHUNK: usize = 64 * 1024;

/// Room made in the output buffer before each step of compressing.
const OUTPUT_STEP: usize = 16 * 1024;

/// The state of one connection's compression: a compressor for what goes to the server and
/// a decompressor for what comes from it, each a single deflate stream for the connection's
/// life ([RFC 4978 §4](https://www.rfc-editor.org/rfc/rfc4978#section-4)).
pub struct Deflate {
    compress: Compress,
    decompress: Decompress,
    /// Compressed bytes read from the transport and not yet inflated: `input[start..end]`.
    input: Box<[u8]>,
    start: usize,
    end: usize,
    /// Compressed bytes waiting to be written to the transport.
    output: Vec<u8>,
    /// The last read filled the caller's buffer, so the inflater may hold more output.
    filled: bool,
}

impl Default for Deflate {
    fn default() -> Self {
        Deflate::new()
    }
}

/// The error for bytes from the server that do not inflate.
fn corrupt(detail: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt compressed data from the server (COMPRESS=DEFLATE): {detail}"),
    )
}

impl Deflate {
    /// A fresh pair of streams. Commands are short, so the default level costs little.
    pub fn new() -> Self {
        Deflate {
            compress: Compress::new(Compression::default(), false),
            decompress: Decompress::new(false),
            input: vec![0; INPUT_CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            output: Vec::new(),
            filled: false,
        }
    }

    /// Whether compressed bytes from the server were read and not inflated yet, or the
    /// last read filled its buffer (the inflater may hold more output): one who waits for
    /// the socket to become readable must look here first.
    pub fn has_pending_input(&self) -> bool {
        self.end > self.start || self.filled
    }

    /// Inflates into `buf` what `inner` sends. Output the inflater holds back from an
    /// earlier call comes first, before `inner` is read again: a response's last bytes are
    /// never left waiting behind a read that would block. 0 at the transport's end.
    pub fn read_from<R: Read>(&mut self, inner: &mut R, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let (produced, status) = self.inflate(buf)?;
            self.filled = produced == buf.len();
            if produced > 0 {
                return Ok(produced);
            }
            if status == Status::StreamEnd {
                return Err(corrupt("the server ended its compressed stream"));
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            } else if self.start > 0 {
                // Input the inflater did not take yet: keep it and read behind it.
                self.input.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.input.len() {
                return Err(corrupt("no progress over a whole buffer of input"));
            }
            let n = loop {
                match inner.read(&mut self.input[self.end..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            if n == 0 {
                return Ok(0);
            }
            self.end += n;
        }
    }

    /// One step of inflating what is buffered into `buf`: bytes produced, and the
    /// inflater's status.
    fn inflate(&mut self, buf: &mut [u8]) -> io::Result<(usize, Status)> {
        let (in_before, out_before) = (self.decompress.total_in(), self.decompress.total_out());
        let status = self
            .decompress
            .decompress(
                &self.input[self.start..self.end],
                buf,
                FlushDecompress::None,
            )
            .map_err(corrupt)?;
        let consumed = (self.decompress.total_in() - in_before) as usize;
        let produced = (self.decompress.total_out() - out_before) as usize;
        self.start += consumed;
        Ok((produced, status))
    }

    /// Deflates `buf` and writes what the compressor gives out so far to `inner`; the rest
    /// goes with the next [`Deflate::flush_to`].
    pub fn write_to<W: Write>(&mut self, inner: &mut W, buf: &[u8]) -> io::Result<usize> {
        self.deflate(buf, FlushCompress::None)?;
        self.send(inner)?;
        Ok(buf.len())
    }

    /// Ends what was written so far on a byte boundary (a sync flush: an empty stored block)
    /// and writes it all to `inner`, so the server can inflate every byte of it now.
    pub fn flush_to<W: Write>(&mut self, inner: &mut W) -> io::Result<()> {
        self.deflate(&[], FlushCompress::Sync)?;
        self.send(inner)?;
        inner.flush()
    }

    fn deflate(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        loop {
            if self.output.capacity() - self.output.len() < OUTPUT_STEP {
                self.output.reserve(OUTPUT_STEP);
            }
            let before = self.compress.total_in();
            self.compress
                .compress_vec(input, &mut self.output, flush)
                .map_err(|e| io::Error::other(format!("compressing a command: {e}")))?;
            input = &input[(self.compress.total_in() - before) as usize..];
            // Done when all input is taken and the compressor stopped short of the room it
            // had (a full buffer may mean more is waiting).
            if input.is_empty() && self.output.len() < self.output.capacity() {
                return Ok(());
            }
        }
    }

    fn send<W: Write>(&mut self, inner: &mut W) -> io::Result<()> {
        if !self.output.is_empty() {
            inner.write_all(&self.output)?;
            self.output.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport that hands out what it holds in pieces of at most `piece` bytes and
    /// records what is written.
    struct Pipe {
        incoming: Vec<u8>,
        at: usize,
        piece: usize,
        written: Vec<u8>,
        flushes: usize,
    }

    impl Pipe {
        fn new(incoming: Vec<u8>, piece: usize) -> Self {
            Pipe {
                incoming,
                at: 0,
                piece,
                written: Vec::new(),
                flushes: 0,
            }
        }
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.piece).min(self.incoming.len() - self.at);
            buf[..n].copy_from_slice(&self.incoming[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    /// What a server sends: each piece compressed and sync-flushed, as Dovecot does after
    /// each response.
    fn server_stream(pieces: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
        let mut server = Deflate::new();
        let mut wire = Pipe::new(Vec::new(), 1);
        let mut boundaries = Vec::new();
        for piece in pieces {
            server.write_to(&mut wire, piece).unwrap();
            server.flush_to(&mut wire).unwrap();
            boundaries.push(wire.written.len());
        }
        (wire.written, boundaries)
    }

    fn read_all(codec: &mut Deflate, pipe: &mut Pipe, buf_len: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0; buf_len];
        loop {
            match codec.read_from(pipe, &mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("* {i} FETCH (UID {i} FLAGS (\\Seen))\r\n"))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn what_one_side_writes_the_other_reads_exactly() {
        let big = text(20_000);
        let noise: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for payload in [b"i1 NOOP\r\n".to_vec(), big, noise] {
            let (wire, _) = server_stream(&[&payload]);
            for (piece, buf_len) in [(1, 7), (13, 4096), (100_000, 100), (1 << 20, 1 << 20)] {
                let mut pipe = Pipe::new(wire.clone(), piece);
                let got = read_all(&mut Deflate::new(), &mut pipe, buf_len).unwrap();
                assert!(got == payload, "piece {piece}, buffer {buf_len}");
            }
        }
    }

    #[test]
    fn text_shrinks_on_the_wire() {
        let payload = text(5_000);
        let (wire, _) = server_stream(&[&payload]);
        assert!(
            wire.len() * 4 < payload.len(),
            "{} bytes of text took {} compressed",
            payload.len(),
            wire.len()
        );
    }

    #[test]
    fn each_flushed_piece_reads_whole_from_the_bytes_sent_up_to_its_flush() {
        let pieces: [&[u8]; 3] = [b"* OK first\r\n", &text(3_000), b"i2 OK done\r\n"];
        let (wire, boundaries) = server_stream(&pieces);
        let mut codec = Deflate::new();
        let mut expected = Vec::new();
        let mut got = Vec::new();
        let mut from = 0;
        for (piece, &until) in pieces.iter().zip(&boundaries) {
            // Only the bytes up to this flush have arrived: all of the piece must come out
            // of them, and then the reader sees the end instead of waiting for more.
            let mut pipe = Pipe::new(wire[from..until].to_vec(), 5);
            got.extend(read_all(&mut codec, &mut pipe, 1000).unwrap());
            expected.extend_from_slice(piece);
            assert!(got == expected, "after {} pieces", expected.len());
            from = until;
        }
    }

    #[test]
    fn output_held_back_by_the_inflater_counts_as_pending() {
        let payload = text(2_000);
        let (wire, _) = server_stream(&[&payload]);
        let mut pipe = Pipe::new(wire, usize::MAX);
        let mut codec = Deflate::new();
        let mut buf = [0; 100];
        assert_eq!(codec.read_from(&mut pipe, &mut buf).unwrap(), 100);
        // The whole stream was read from the transport; what is left is in the codec.
        assert!(codec.has_pending_input());
        let rest = read_all(&mut codec, &mut pipe, 100).unwrap();
        assert_eq!(100 + rest.len(), payload.len());
        assert!(!codec.has_pending_input());
    }

    #[test]
    fn a_command_reaches_the_wire_whole_at_its_flush() {
        let mut client = Deflate::new();
        let mut pipe = Pipe::new(Vec::new(), 1);
        client
            .write_to(&mut pipe, b"i7 UID FETCH 1:* (FLAGS)")
            .unwrap();
        client.write_to(&mut pipe, b"\r\n").unwrap();
        client.flush_to(&mut pipe).unwrap();
        assert_eq!(pipe.flushes, 1);
        // A sync flush ends with an empty stored block.
        assert!(pipe.written.ends_with(&[0, 0, 0xff, 0xff]));
        let mut server_side = Pipe::new(pipe.written.clone(), 3);
        let got = read_all(&mut Deflate::new(), &mut server_side, 64).unwrap();
        assert_eq!(got, b"i7 UID FETCH 1:* (FLAGS)\r\n");
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic_or_a_hang() {
        let (wire, _) = server_stream(&[&text(2_000)]);
        let mut saw_error = false;
        for at in [0, 1, 2, 10, wire.len() / 2] {
            let mut bad = wire.clone();
            bad[at] ^= 0xff;
            let mut pipe = Pipe::new(bad, 4096);
            // Whatever comes out before the damage is found, the reader ends: an error, or
            // the end of the transport (a flipped bit may still inflate to something).
            if let Err(e) = read_all(&mut Deflate::new(), &mut pipe, 4096) {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                assert!(e.to_string().contains("corrupt compressed data"), "{e}");
                saw_error = true;
            }
        }
        assert!(saw_error, "no flipped byte was noticed");
        // A block of the reserved type 3 (RFC 1951 §3.2.3): never valid.
        let mut pipe = Pipe::new(b"\x06 OK not compressed\r\n".to_vec(), 100);
        let err = read_all(&mut Deflate::new(), &mut pipe, 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_final_block_from_the_server_is_an_error() {
        let mut server = Compress::new(Compression::default(), false);
        let mut wire = Vec::with_capacity(1024);
        server
            .compress_vec(b"* BYE\r\n", &mut wire, FlushCompress::Finish)
            .unwrap();
        let mut pipe = Pipe::new(wire, 100);
        let mut codec = Deflate::new();
        let mut buf = [0; 100];
        assert_eq!(codec.read_from(&mut pipe, &mut buf).unwrap(), 7);
        let err = codec.read_from(&mut pipe, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}

/// A whole connection against a scripted server on a socket: COMPRESS is asked for after
/// login, commands and answers go compressed, the counters count compressed bytes, and
/// corrupt data from the server is a connection error at once.
#[cfg(test)]
mod over_a_socket {
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::store::imap::connection::{connect, Auth, ConnectConfig, Counters, Transport};
    use crate::store::imap::wire::Command;
    use crate::store::StoreError;

    /// What the server answers the first command after COMPRESS.
    #[derive(Clone, Copy, PartialEq)]
    enum Answer {
        Compressed,
        Garbage,
    }

    /// The server's bytes written so far, shared with the test.
    struct Server {
        stream: TcpStream,
        written: Arc<AtomicU64>,
    }

    impl Server {
        fn send(&mut self, bytes: &[u8]) {
            self.written.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            self.stream.write_all(bytes).unwrap();
        }

        /// One plaintext line, read a byte at a time so nothing after it is taken.
        fn line(&mut self) -> String {
            let mut line = Vec::new();
            let mut byte = [0u8];
            while !line.ends_with(b"\r\n") {
                assert_eq!(self.stream.read(&mut byte).unwrap(), 1, "client hung up");
                line.push(byte[0]);
            }
            String::from_utf8(line).unwrap()
        }

        /// The tag of `line`, after checking the command is `what`.
        fn tag_of(line: &str, what: &str) -> String {
            let (tag, rest) = line.split_once(' ').unwrap();
            assert!(rest.starts_with(what), "{what} expected, got {line:?}");
            tag.to_string()
        }
    }

    fn serve(listener: TcpListener, answer: Answer, written: Arc<AtomicU64>) {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut server = Server { stream, written };
        server.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n");
        let tag = Server::tag_of(&server.line(), "STARTTLS");
        server.send(format!("{tag} NO not today\r\n").as_bytes());
        let tag = Server::tag_of(&server.line(), "LOGIN");
        server.send(format!("{tag} OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] in\r\n").as_bytes());
        let tag = Server::tag_of(&server.line(), "COMPRESS DEFLATE");
        server.send(format!("{tag} OK deflating\r\n").as_bytes());

        let mut codec = Deflate::new();
        let mut command = Vec::new();
        let mut buf = [0u8; 256];
        while !command.ends_with(b"\r\n") {
            let n = codec.read_from(&mut server.stream, &mut buf).unwrap();
            assert!(n > 0, "client hung up");
            command.extend_from_slice(&buf[..n]);
        }
        let command = String::from_utf8(command).unwrap();
        let tag = Server::tag_of(&command, "NOOP");
        let mut out = Vec::new();
        match answer {
            Answer::Compressed => {
                codec
                    .write_to(&mut out, format!("{tag} OK noop done\r\n").as_bytes())
                    .unwrap();
                codec.flush_to(&mut out).unwrap();
            }
            // A block of the reserved type 3: never valid deflate.
            Answer::Garbage => out.extend_from_slice(b"\x06\x07 garbage\r\n"),
        }
        server.send(&out);
        // Stay connected until the client goes: a client waiting for more would hang here.
        let _ = server.stream.read(&mut buf);
    }

    fn config(port: u16) -> ConnectConfig {
        ConnectConfig {
            host: "127.0.0.1".into(),
            port,
            transport: Transport::StartTls,
            user: "alice".into(),
            secret: crate::secret::obtain(Some("printf %s pw"), "IMAPFS_DEFLATE_UNUSED", "")
                .unwrap(),
            auth: Auth::Login,
            ca_file: None,
            insecure: false,
            allow_plaintext: true,
            timeout: Duration::from_secs(20),
            tls: Default::default(),
            plaintext_warned: Default::default(),
            compress: super::super::connection::Compression::Always,
        }
    }

    #[test]
    fn auto_compresses_every_server_but_one_on_this_machine() {
        use super::super::connection::Compression;
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        for remote in ["192.0.2.7", "10.1.2.3", "2001:db8::1"] {
            assert!(Compression::Auto.wanted(ip(remote)), "{remote}");
            assert!(!Compression::Never.wanted(ip(remote)), "{remote}");
        }
        for local in ["127.0.0.1", "127.3.4.5", "::1"] {
            assert!(!Compression::Auto.wanted(ip(local)), "{local}");
            assert!(Compression::Always.wanted(ip(local)), "{local}");
        }
        // An address the socket cannot tell is taken as elsewhere.
        assert!(Compression::Auto.wanted(None));
    }

    /// Connects to a scripted server answering `answer`, runs NOOP, and returns its result
    /// with the bytes the server wrote and the bytes the client counted.
    fn noop_against(answer: Answer) -> (Result<(), StoreError>, u64, u64) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let written = Arc::new(AtomicU64::new(0));
        let server_written = Arc::clone(&written);
        let server = std::thread::spawn(move || serve(listener, answer, server_written));
        let counters = Arc::new(Counters::default());
        let mut conn = connect(&config(port), &counters).expect("connect");
        let result = conn.run(Command::new("NOOP")).map(|_| ());
        let received = counters.bytes_received.load(Ordering::SeqCst);
        drop(conn);
        server.join().unwrap();
        (result, written.load(Ordering::SeqCst), received)
    }

    #[test]
    fn commands_and_answers_go_compressed_and_are_counted_as_sent() {
        let (result, written, received) = noop_against(Answer::Compressed);
        result.unwrap();
        assert_eq!(
            received, written,
            "the counter counts the bytes on the wire"
        );
    }

    #[test]
    fn corrupt_compressed_data_is_a_connection_error_at_once() {
        // A client that waited for more would end in a timeout instead, after 20 s.
        let (result, _, _) = noop_against(Answer::Garbage);
        match result {
            Err(StoreError::Connection(text)) => {
                assert!(text.contains("corrupt compressed data"), "{text}")
            }
            other => panic!("expected a connection error, got {other:?}"),
        }
    }
}
