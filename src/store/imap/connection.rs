//! One IMAP connection: TCP with deadlines, TLS or STARTTLS, the protocol layer on top, and
//! the mailbox currently selected on it.
//!
//! Every blocking step (connecting, the TLS handshake, each read and write) ends by the
//! earlier of the command's own deadline (`--timeout`) and the deadline of the filesystem
//! call being served (`crate::call`). A cancelled call shuts the socket down, which ends any
//! read or write at once.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::call::{self, OnCancel};
use crate::secret::Secret;
use crate::store::{MailboxId, StoreError, StoreResult, UidValidity};

use super::deflate::Deflate;
use super::errors::{check, from_wire};
use super::login;
use super::wire::{Command, Done, Tagged, Untagged, Wire, WireError};

/// The most one answer may take unless the command says otherwise: far more than any
/// BODYSTRUCTURE batch or 4 MiB section range needs, and small enough to keep memory bounded.
pub const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Implicit TLS from the first byte (`imaps://`, port 993).
    Tls,
    /// Plain TCP upgraded with STARTTLS ([RFC 3501 §6.2.1](https://www.rfc-editor.org/rfc/rfc3501#section-6.2.1)).
    StartTls,
}

/// How to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `LOGIN user password`.
    Login,
    /// `AUTHENTICATE PLAIN` ([RFC 4616](https://www.rfc-editor.org/rfc/rfc4616)).
    Plain,
    /// `AUTHENTICATE XOAUTH2` with a bearer token as the secret.
    XOAuth2,
    /// `AUTHENTICATE OAUTHBEARER` ([RFC 7628](https://www.rfc-editor.org/rfc/rfc7628)).
    OAuthBearer,
}

/// Everything needed to open a connection.
pub struct ConnectConfig {
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    pub user: String,
    pub secret: Secret,
    pub auth: Auth,
    /// Extra trusted CA certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// Skip certificate and host name verification (explicit, loudly logged).
    pub insecure: bool,
    /// Allow `imap://` to continue in plaintext when STARTTLS is unavailable.
    pub allow_plaintext: bool,
    /// Deadline for connecting and for every command (APPEND: for every step of progress).
    pub timeout: Duration,
    /// The TLS connector, built once: loading the trust store takes tens of milliseconds.
    pub tls: std::sync::OnceLock<native_tls::TlsConnector>,
    /// Whether the plaintext warning was already logged.
    pub plaintext_warned: std::sync::atomic::AtomicBool,
    /// When to ask for COMPRESS=DEFLATE ([RFC 4978](https://www.rfc-editor.org/rfc/rfc4978))
    /// if the server offers it.
    pub compress: Compression,
}

/// When a connection asks for COMPRESS=DEFLATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Unless the server is on this machine (a loopback address): there, compressing
    /// costs both sides CPU and saves no time.
    Auto,
    Always,
    Never,
}

impl Compression {
    /// Whether to compress a connection to `peer` (`None`: the address is unknown).
    pub fn wanted(self, peer: Option<std::net::IpAddr>) -> bool {
        match self {
            Compression::Always => true,
            Compression::Never => false,
            Compression::Auto => !peer.is_some_and(|ip| ip.is_loopback()),
        }
    }
}

/// What every connection of a store shares: byte and command counters, and whether the
/// server just went silent.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub commands: AtomicU64,
    /// Until when commands get the short deadline (see [`SILENT_DEADLINE`]).
    silent_until: parking_lot::Mutex<Option<Instant>>,
}

/// After a command heard nothing at all from the server for its whole deadline, the server
/// is taken as silent for this long...
const SILENT_FOR: Duration = Duration::from_secs(2);
/// ...and each command in that time gets at most this long. A server that froze then costs
/// each later call a second rather than a whole `--timeout` (the kernel retries a failed
/// page-cache read at once with a second request, which would double a `read`'s wait), and
/// a server that is back answers well within it.
pub const SILENT_DEADLINE: Duration = Duration::from_secs(1);

impl Counters {
    /// The short deadline for a command starting `now`, while the server is taken as silent.
    fn silence_cap(&self, now: Instant) -> Option<Instant> {
        self.silent_until
            .lock()
            .filter(|&until| now < until)
            .map(|_| now + SILENT_DEADLINE)
    }

    /// A command heard nothing from the server before its deadline.
    fn heard_nothing(&self) {
        *self.silent_until.lock() = Some(Instant::now() + SILENT_FOR);
    }
}

/// The earlier of `at` and the current filesystem call's deadline.
fn within_call(at: Instant) -> Instant {
    call::deadline().map_or(at, |d| d.min(at))
}

/// The limits of the command in progress on one connection: when it must be answered by,
/// and how many bytes its answer may take. Shared by the protocol layer (which charges every
/// byte of every response) and the socket (which enforces the deadline).
#[derive(Debug)]
pub struct CommandLimits {
    timeout: Duration,
    /// The store's shared state, to shorten deadlines while the server is silent.
    shared: Option<Arc<Counters>>,
    state: parking_lot::Mutex<LimitState>,
}

#[derive(Debug, Clone, Copy)]
struct LimitState {
    deadline: Instant,
    /// The filesystem call's deadline when the command started, if there was a call.
    call_deadline: Option<Instant>,
    used: u64,
    budget: u64,
    /// The deadline moves forward whenever bytes move (APPEND of a large message).
    streaming: bool,
    /// Bytes received from the server since the command started.
    received: u64,
    /// The first byte must come by then (a plaintext greeting: see [`GREETING_WAIT`]).
    first_byte_by: Option<Instant>,
}

/// How long a plaintext connection (`imap://`) waits for the first byte of the greeting. An
/// IMAP server greets at once; a TLS port waits silently for the client's handshake, so
/// silence this long means "this port speaks TLS", said in well under a second rather than
/// after `--timeout`.
pub const GREETING_WAIT: Duration = Duration::from_millis(600);

impl CommandLimits {
    /// Limits whose first deadline is `timeout` from now (or the call's, if earlier).
    pub fn new(timeout: Duration) -> Self {
        Self::build(timeout, None)
    }

    /// Like `new`, for a connection of a store: deadlines are short while its server is
    /// silent, and a command that hears nothing makes it so.
    pub fn shared(timeout: Duration, shared: Arc<Counters>) -> Self {
        Self::build(timeout, Some(shared))
    }

    fn build(timeout: Duration, shared: Option<Arc<Counters>>) -> Self {
        let limits = CommandLimits {
            timeout,
            shared,
            state: parking_lot::Mutex::new(LimitState {
                deadline: Instant::now(),
                call_deadline: None,
                used: 0,
                budget: MAX_RESPONSE_BYTES,
                streaming: false,
                received: 0,
                first_byte_by: None,
            }),
        };
        limits.start(MAX_RESPONSE_BYTES, false);
        limits
    }

    fn start(&self, budget: u64, streaming: bool) {
        let now = Instant::now();
        let mut deadline = within_call(now + self.timeout);
        if let Some(cap) = self.shared.as_ref().and_then(|s| s.silence_cap(now)) {
            deadline = deadline.min(cap);
        }
        *self.state.lock() = LimitState {
            deadline,
            call_deadline: call::deadline(),
            used: 0,
            budget,
            streaming,
            received: 0,
            first_byte_by: None,
        };
    }

    /// Like `start_command`, but the answer's first byte must come within `wait`.
    pub fn start_greeting(&self, budget: u64, wait: Duration) {
        self.start(budget, false);
        self.state.lock().first_byte_by = Some(Instant::now() + wait);
    }

    /// Starts the clock and a byte budget for a new command.
    pub fn start_command(&self, budget: u64) {
        self.start(budget, false);
    }

    /// Like `start_command`, but the deadline is "no progress for the timeout": every byte
    /// read or written moves it, still never past the call's deadline.
    pub fn start_streaming(&self, budget: u64) {
        self.start(budget, true);
    }

    /// Bytes moved (`received` of them from the server): a streaming command's deadline
    /// moves forward.
    pub fn progressed(&self, received: u64) {
        let mut state = self.state.lock();
        state.received += received;
        if state.streaming {
            let next = Instant::now() + self.timeout;
            state.deadline = state.call_deadline.map_or(next, |d| d.min(next));
        }
    }

    /// When the command in progress must be answered by.
    pub fn deadline(&self) -> Instant {
        let state = self.state.lock();
        match state.first_byte_by {
            Some(by) if state.received == 0 => state.deadline.min(by),
            _ => state.deadline,
        }
    }

    /// The deadline passed: if nothing came from the server meanwhile, it is silent.
    fn expired(&self) {
        let heard = self.state.lock().received > 0;
        if let (false, Some(shared)) = (heard, &self.shared) {
            shared.heard_nothing();
        }
    }

    /// Notes an error of a read or write: a timeout is the deadline passing.
    fn note(&self, e: io::Error) -> io::Error {
        if matches!(
            e.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        ) {
            self.expired();
        }
        e
    }

    /// Counts `n` more bytes of the answer; an error once past the budget.
    pub fn charge(&self, n: u64) -> Result<(), WireError> {
        let mut state = self.state.lock();
        state.used = state.used.saturating_add(n);
        if state.used > state.budget {
            return Err(WireError::Protocol(format!(
                "the server's answer exceeded {} bytes",
                state.budget
            )));
        }
        Ok(())
    }

    /// Bytes the answer may still take.
    pub fn remaining(&self) -> u64 {
        let state = self.state.lock();
        state.budget.saturating_sub(state.used)
    }

    /// The byte budget of the command in progress.
    pub fn budget(&self) -> u64 {
        self.state.lock().budget
    }
}

/// A TCP stream that counts the bytes it moves (on the wire, so after TLS) and ends every
/// read and write by the current command's deadline: a server that stops answering, or
/// trickles bytes forever, gets an error instead of a hung client.
pub struct CountingTcp {
    inner: TcpStream,
    counters: Arc<Counters>,
    limits: Arc<CommandLimits>,
    /// The first bytes the server sent, to tell what a port speaks when a handshake or a
    /// greeting fails (TLS records start with 0x15 or 0x16, IMAP greetings with `* `).
    head: Arc<parking_lot::Mutex<Vec<u8>>>,
    /// The timeouts last set on the socket (setting one costs a system call).
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

/// How many of the server's first bytes [`CountingTcp`] keeps.
const HEAD_BYTES: usize = 8;

impl CountingTcp {
    /// Where the server's first bytes on this connection are kept, as far as read.
    pub fn head_handle(&self) -> Arc<parking_lot::Mutex<Vec<u8>>> {
        Arc::clone(&self.head)
    }
}

/// What a port speaks, told from the first bytes it sent, for an error message.
pub fn port_speaks(head: &[u8]) -> Option<&'static str> {
    match head.first() {
        Some(0x15 | 0x16) => Some("TLS"),
        Some(b'*') => Some("plain IMAP"),
        _ => None,
    }
}

/// How far a read or write may overrun the command's deadline before the socket timeout is
/// set again.
const DEADLINE_SLACK: Duration = Duration::from_millis(50);

/// The time left until `deadline`, and whether the socket's timeout `set` must change.
fn time_left(deadline: Instant, set: Option<Duration>) -> io::Result<(Duration, bool)> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the server did not answer before the deadline",
        ));
    }
    let stale = set.is_none_or(|set| left > set || left + DEADLINE_SLACK < set);
    Ok((left, stale))
}

impl Read for CountingTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (left, stale) = time_left(self.limits.deadline(), self.read_timeout)
            .map_err(|e| self.limits.note(e))?;
        if stale {
            self.inner.set_read_timeout(Some(left))?;
            self.read_timeout = Some(left);
        }
        let n = self.inner.read(buf).map_err(|e| self.limits.note(e))?;
        {
            let mut head = self.head.lock();
            if head.len() < HEAD_BYTES {
                let take = n.min(HEAD_BYTES - head.len());
                head.extend_from_slice(&buf[..take]);
            }
        }
        if n > 0 {
            self.limits.progressed(n as u64);
            self.counters
                .bytes_received
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

impl Write for CountingTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (left, stale) = time_left(self.limits.deadline(), self.write_timeout)
            .map_err(|e| self.limits.note(e))?;
        if stale {
            self.inner.set_write_timeout(Some(left))?;
            self.write_timeout = Some(left);
        }
        let n = self.inner.write(buf).map_err(|e| self.limits.note(e))?;
        if n > 0 {
            self.limits.progressed(0);
            self.counters
                .bytes_sent
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The transport under the IMAP session: TLS, or plaintext only when explicitly allowed.
pub enum Link {
    Tls(Box<native_tls::TlsStream<CountingTcp>>),
    Plain(CountingTcp),
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Tls(s) => s.read(buf),
            Link::Plain(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Tls(s) => s.write(buf),
            Link::Plain(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Tls(s) => s.flush(),
            Link::Plain(s) => s.flush(),
        }
    }
}

/// The byte stream the protocol layer reads: the transport, inflated once COMPRESS=DEFLATE
/// is on. Nothing that parses it recurses (`wire::cursor` skips nested lists with a bounded
/// counter; a BODYSTRUCTURE is checked by its own nesting guard before imap-proto sees it),
/// so its bytes are not scanned on the way.
pub struct ImapStream {
    link: Link,
    deflate: Option<Box<Deflate>>,
}

impl ImapStream {
    /// Compresses both directions from the next byte on (after the server's OK to
    /// `COMPRESS DEFLATE`).
    pub fn start_deflate(&mut self) {
        self.deflate = Some(Box::default());
    }
}

impl Read for ImapStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.deflate {
            Some(d) => d.read_from(&mut self.link, buf),
            None => self.link.read(buf),
        }
    }
}

impl ImapStream {
    /// Bytes already decrypted by TLS and not read yet (none in plaintext), plus one if
    /// compressed bytes wait to be inflated.
    fn pending(&self) -> usize {
        let tls = match &self.link {
            Link::Tls(s) => s.buffered_read_size().unwrap_or(0),
            Link::Plain(_) => 0,
        };
        let inflating = self.deflate.as_ref().is_some_and(|d| d.has_pending_input());
        tls + usize::from(inflating)
    }
}

impl Write for ImapStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.deflate {
            Some(d) => d.write_to(&mut self.link, buf),
            None => self.link.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.deflate {
            Some(d) => d.flush_to(&mut self.link),
            None => self.link.flush(),
        }
    }
}

/// What is selected on a connection. Read paths use EXAMINE so nothing can set `\Seen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    None,
    Examine(MailboxId, UidValidity),
    Select(MailboxId, UidValidity),
}

impl Selection {
    /// The mailbox selected, in either mode.
    pub fn mailbox(&self) -> Option<(&MailboxId, UidValidity)> {
        match self {
            Selection::None => None,
            Selection::Examine(m, v) | Selection::Select(m, v) => Some((m, *v)),
        }
    }
}

/// A logged-in IMAP connection and what we know about it.
pub struct Connection {
    pub(super) wire: Wire<ImapStream>,
    pub selection: Selection,
    /// The UIDNEXT the selected mailbox had when it was selected, if the server said.
    pub(super) uid_next_seen: Option<u32>,
    pub(super) capabilities: Vec<String>,
    limits: Arc<CommandLimits>,
    counters: Arc<Counters>,
    /// The socket under the transport, to shut down when the call waiting on it is cancelled.
    socket: Arc<TcpStream>,
}

impl Connection {
    /// True if the server announced `cap` (case-insensitive).
    pub fn has_capability(&self, cap: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(cap))
    }

    /// The server's address, if the socket knows it.
    pub fn peer(&self) -> Option<std::net::IpAddr> {
        self.socket.peer_addr().ok().map(|a| a.ip())
    }

    /// The server's capabilities as it announced them after login.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// True once an error left the connection in an unknown state; it must be dropped.
    pub fn is_broken(&self) -> bool {
        self.wire.is_broken()
    }

    /// True if the server said BYE on this connection (and so is closing it).
    pub fn said_bye(&self) -> bool {
        self.wire.said_bye()
    }

    /// The socket's descriptor, to wait on with poll(2) while no command is under way.
    pub(super) fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.socket.as_raw_fd()
    }

    /// True if the server's bytes already wait above the socket (in TLS or the protocol
    /// layer): waiting on the socket would not see them.
    pub(super) fn has_buffered_input(&self) -> bool {
        self.wire.has_buffered() || self.wire.stream().pending() > 0
    }

    /// Shuts the socket down if the current call is cancelled while the guard lives.
    pub fn cancel_with_call(&self) -> Option<OnCancel> {
        call::current().map(|c| shutdown_on_cancel(&c, &self.socket))
    }

    /// Runs one command with the default byte budget; an answer other than OK is an error.
    pub fn run(&mut self, cmd: Command<'_>) -> StoreResult<Done> {
        self.run_with_budget(MAX_RESPONSE_BYTES, cmd)
    }

    /// Runs one command whose answer may take `budget` bytes.
    pub fn run_with_budget(&mut self, budget: u64, cmd: Command<'_>) -> StoreResult<Done> {
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        self.limits.start_command(budget);
        let done = self.wire.run(cmd).map_err(from_wire)?;
        check(&done.tagged)?;
        Ok(done)
    }

    /// Runs one command and returns its answer whatever its status (login reports a refusal
    /// its own way).
    pub(super) fn run_unchecked(&mut self, budget: u64, cmd: Command<'_>) -> StoreResult<Done> {
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        self.limits.start_command(budget);
        self.wire.run(cmd).map_err(from_wire)
    }

    /// Runs a command that streams a literal: its deadline is "no progress for the timeout".
    pub fn run_streaming(&mut self, budget: u64, cmd: Command<'_>) -> StoreResult<Done> {
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        self.limits.start_streaming(budget);
        let done = self.wire.run(cmd).map_err(from_wire)?;
        check(&done.tagged)?;
        Ok(done)
    }

    /// Sends `commands` one after another without waiting, then reads every answer: one
    /// round trip for all. Their answers together may take `budget` bytes. The first answer
    /// other than OK is the error.
    pub fn run_pipelined(
        &mut self,
        budget: u64,
        commands: Vec<Command<'_>>,
    ) -> StoreResult<(Vec<Untagged>, Vec<Tagged>)> {
        self.counters
            .commands
            .fetch_add(commands.len() as u64, Ordering::Relaxed);
        self.limits.start_command(budget);
        let tags = self.wire.send_all(commands).map_err(from_wire)?;
        let mut answers = Vec::with_capacity(tags.len());
        for tag in &tags {
            answers.push(self.wire.finish(tag).map_err(from_wire)?);
        }
        for answer in &answers {
            check(answer)?;
        }
        Ok((self.wire.take_untagged(), answers))
    }
}

/// Registers a hook on `call` that shuts `socket` down.
fn shutdown_on_cancel(call: &Arc<call::Call>, socket: &Arc<TcpStream>) -> OnCancel {
    let socket = Arc::clone(socket);
    call.on_cancel(move || {
        let _ = socket.shutdown(Shutdown::Both);
    })
}

/// The addresses of `host`: an IP address as it is, a name through the system's resolver
/// on a thread of its own, waited for until `deadline` or the call's cancellation. The
/// resolver's own timeouts (several seconds per name server and search domain after a
/// network change) would otherwise hold the call past `--timeout`, deaf to Ctrl-C.
fn resolve(host: &str, port: u16, deadline: Instant) -> StoreResult<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = host.to_string();
    resolve_with(host, deadline, move || {
        (name.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect)
    })
}

/// `resolve`'s wait, for any `lookup`.
fn resolve_with(
    host: &str,
    deadline: Instant,
    lookup: impl FnOnce() -> io::Result<Vec<SocketAddr>> + Send + 'static,
) -> StoreResult<Vec<SocketAddr>> {
    let (found, answer) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            // Nobody may be waiting any more: then the answer is dropped.
            let _ = found.send(lookup());
        })
        .map_err(|e| StoreError::Connection(format!("cannot resolve {host}: {e}")))?;
    match call::recv_within(&answer, deadline) {
        Ok(addrs) => {
            addrs.map_err(|e| StoreError::Connection(format!("cannot resolve {host}: {e}")))
        }
        Err(call::Unanswered::Interrupted) => Err(StoreError::Interrupted),
        Err(call::Unanswered::TimedOut) => Err(StoreError::Timeout(format!("resolving {host}"))),
        Err(call::Unanswered::Gone) => {
            Err(StoreError::Connection(format!("cannot resolve {host}")))
        }
    }
}

fn connect_tcp(config: &ConnectConfig, deadline: Instant) -> StoreResult<TcpStream> {
    let addrs = resolve(&config.host, config.port, deadline)?;
    let mut last = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StoreError::Timeout(format!("connecting to {addr}")));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(tcp) => {
                tcp.set_nodelay(true)
                    .map_err(|e| StoreError::Connection(e.to_string()))?;
                return Ok(tcp);
            }
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        Some((addr, e)) if e.kind() == io::ErrorKind::TimedOut => {
            StoreError::Timeout(format!("connecting to {addr}"))
        }
        Some((addr, e)) => StoreError::Connection(format!("cannot connect to {addr}: {e}")),
        None => StoreError::Connection(format!("{} has no address", config.host)),
    })
}

fn tls_connector(config: &ConnectConfig) -> StoreResult<native_tls::TlsConnector> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            StoreError::Invalid(format!("cannot read CA file {}: {e}", path.display()))
        })?;
        let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
            StoreError::Invalid(format!(
                "CA file {} is not a PEM certificate: {e}",
                path.display()
            ))
        })?;
        builder.add_root_certificate(cert);
    }
    if config.insecure {
        builder.danger_accept_invalid_certs(true);
        builder.danger_accept_invalid_hostnames(true);
    }
    builder
        .build()
        .map_err(|e| StoreError::Connection(format!("TLS setup failed: {e}")))
}

/// What a user can do about a certificate the handshake refused, after the TLS library's
/// own words (which name the check, not the way out), chosen by OpenSSL's reason.
fn certificate_hint(error: &str, host: &str, ca_file: Option<&Path>) -> String {
    let says = |words: &[&str]| words.iter().any(|w| error.contains(w));
    if says(&["hostname mismatch", "IP address mismatch"]) {
        format!(
            ". The server's certificate is not issued for {host}: connect by the name it was \
             issued for"
        )
    } else if says(&["certificate has expired", "certificate is not yet valid"]) {
        ". The dates of the server's certificate do not cover now: it must be renewed, or \
         this machine's clock is wrong"
            .into()
    } else if says(&[
        "unable to get local issuer certificate",
        "unable to get issuer certificate",
        "self-signed certificate",
        "self signed certificate",
    ]) {
        match ca_file {
            Some(ca) => format!(
                ". The CA certificate in {} did not sign the server's certificate",
                ca.display()
            ),
            None => ". The server's certificate is not signed by a CA this machine trusts: \
                     for a private or self-signed CA, give its certificate with --ca-file FILE"
                .into(),
        }
    } else {
        String::new()
    }
}

fn handshake(
    config: &ConnectConfig,
    tcp: CountingTcp,
    after_starttls: bool,
) -> StoreResult<native_tls::TlsStream<CountingTcp>> {
    let connector = match config.tls.get() {
        Some(c) => c,
        None => {
            let built = tls_connector(config)?;
            config.tls.get_or_init(|| built)
        }
    };
    let head = Arc::clone(&tcp.head);
    connector.connect(&config.host, tcp).map_err(|e| match e {
        native_tls::HandshakeError::Failure(e) => match port_speaks(&head.lock()) {
            // A plain port greets at once, and that greeting is the handshake's answer.
            Some("plain IMAP") if !after_starttls => StoreError::Untrusted(format!(
                "{}:{} speaks plain IMAP, not TLS: it answered the TLS handshake with an \
                 IMAP greeting. Use imap://USER@{}:{} (STARTTLS) for this port, or the \
                 server's TLS port (usually 993) with imaps://",
                config.host, config.port, config.host, config.port
            )),
            _ => StoreError::Untrusted(format!(
                "TLS handshake with {} failed: {e}{}",
                config.host,
                certificate_hint(&e.to_string(), &config.host, config.ca_file.as_deref())
            )),
        },
        native_tls::HandshakeError::WouldBlock(_) => {
            StoreError::Timeout(format!("TLS handshake with {}", config.host))
        }
    })
}

/// The error of a step that failed because the call was cancelled (the socket was shut
/// down under it) is `Interrupted`, whatever the step saw.
fn unless_cancelled<T>(result: StoreResult<T>) -> StoreResult<T> {
    match result {
        Err(_) if call::cancelled() => Err(StoreError::Interrupted),
        other => other,
    }
}

/// Opens, protects and authenticates a new connection, then learns the capabilities. Each
/// step ends by `--timeout` from its start or the current call's deadline, if earlier.
pub fn connect(config: &ConnectConfig, counters: &Arc<Counters>) -> StoreResult<Connection> {
    if call::cancelled() {
        return Err(StoreError::Interrupted);
    }
    let limits = Arc::new(CommandLimits::shared(config.timeout, Arc::clone(counters)));
    let tcp = connect_tcp(config, limits.deadline()).inspect_err(|e| {
        if matches!(e, StoreError::Timeout(_)) {
            limits.expired();
        }
    })?;
    let socket = Arc::new(
        tcp.try_clone()
            .map_err(|e| StoreError::Connection(e.to_string()))?,
    );
    let _cancel = call::current().map(|c| shutdown_on_cancel(&c, &socket));
    unless_cancelled(open(config, counters, limits, tcp, socket))
}

fn open(
    config: &ConnectConfig,
    counters: &Arc<Counters>,
    limits: Arc<CommandLimits>,
    tcp: TcpStream,
    socket: Arc<TcpStream>,
) -> StoreResult<Connection> {
    let mut tcp = CountingTcp {
        inner: tcp,
        counters: Arc::clone(counters),
        limits: Arc::clone(&limits),
        head: Arc::default(),
        read_timeout: None,
        write_timeout: None,
    };
    let (link, greeting_pending) = match config.transport {
        Transport::Tls => (Link::Tls(Box::new(handshake(config, tcp, false)?)), true),
        Transport::StartTls => {
            counters.commands.fetch_add(1, Ordering::Relaxed);
            if login::starttls(&mut tcp, &limits, config)? {
                limits.start_command(login::LOGIN_BUDGET);
                (Link::Tls(Box::new(handshake(config, tcp, true)?)), false)
            } else if config.allow_plaintext {
                // Loud once; every reconnect would otherwise repeat it.
                if !config.plaintext_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(host = %config.host, "server refused STARTTLS; continuing in PLAINTEXT as --allow-plaintext asks");
                } else {
                    tracing::debug!(host = %config.host, "reconnected in plaintext");
                }
                (Link::Plain(tcp), false)
            } else {
                return Err(StoreError::Unsupported(format!(
                    "{} does not offer STARTTLS; refusing to send the password in plaintext (use imaps:// or --allow-plaintext)",
                    config.host
                )));
            }
        }
    };
    let stream = ImapStream {
        link,
        deflate: None,
    };
    let mut conn = Connection {
        wire: Wire::new(stream, Arc::clone(&limits)),
        selection: Selection::None,
        uid_next_seen: None,
        capabilities: Vec::new(),
        limits,
        counters: Arc::clone(counters),
        socket,
    };
    login::log_in(&mut conn, config, greeting_pending)?;
    Ok(conn)
}

impl Connection {
    /// Starts the clock for a step of getting connected that is not a command (the greeting).
    pub(super) fn start_step(&self, budget: u64) {
        self.limits.start_command(budget);
    }

    /// Counts a command run by hand (an exchange such as AUTHENTICATE) and starts its clock.
    pub(super) fn begin_exchange(&self, budget: u64) {
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        self.limits.start_command(budget);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenSSL's words for the refusals a user meets, and what each is told to do.
    #[test]
    fn a_refused_certificate_comes_with_what_to_do() {
        let verify = |reason: &str| {
            format!(
                "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate \
                 verify failed:../ssl/statem/statem_clnt.c:1889: ({reason})"
            )
        };
        let hint = |reason: &str| certificate_hint(&verify(reason), "mail.example.org", None);
        for untrusted in [
            "unable to get local issuer certificate",
            "self-signed certificate",
            "self-signed certificate in certificate chain",
        ] {
            assert!(hint(untrusted).contains("--ca-file FILE"), "{untrusted}");
        }
        for mismatch in ["hostname mismatch", "IP address mismatch"] {
            assert!(
                hint(mismatch).contains("not issued for mail.example.org"),
                "{mismatch}"
            );
        }
        for dates in ["certificate has expired", "certificate is not yet valid"] {
            assert!(hint(dates).contains("clock"), "{dates}");
        }
        let given = certificate_hint(
            &verify("unable to get local issuer certificate"),
            "mail.example.org",
            Some(Path::new("/etc/ca.pem")),
        );
        assert!(
            given.contains("/etc/ca.pem did not sign") && !given.contains("give its"),
            "{given}"
        );
        assert_eq!(hint("certificate revoked"), "");
        assert_eq!(
            certificate_hint("unexpected EOF", "mail.example.org", None),
            ""
        );
    }

    /// A resolver that does not answer holds a connection attempt until its deadline, or
    /// until its caller gives up; not for the resolver's own timeouts.
    #[test]
    fn a_silent_resolver_ends_at_the_deadline_or_the_callers_signal() {
        let silent = || {
            std::thread::sleep(Duration::from_secs(5));
            Ok(Vec::new())
        };
        let started = Instant::now();
        let waited = resolve_with(
            "mail.example.org",
            started + Duration::from_millis(200),
            silent,
        );
        assert!(matches!(waited, Err(StoreError::Timeout(_))), "{waited:?}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );

        let caller = call::Call::new(Instant::now() + Duration::from_secs(600), None);
        let gives_up = Arc::clone(&caller);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            gives_up.cancel();
        });
        let _in = call::enter(caller);
        let started = Instant::now();
        let waited = resolve_with(
            "mail.example.org",
            started + Duration::from_secs(600),
            silent,
        );
        assert!(matches!(waited, Err(StoreError::Interrupted)), "{waited:?}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn addresses_are_taken_as_they_are_and_names_go_through_the_resolver() {
        let deadline = Instant::now() + Duration::from_secs(30);
        assert_eq!(
            resolve("127.0.0.1", 993, deadline).unwrap(),
            vec![SocketAddr::from(([127, 0, 0, 1], 993))]
        );
        assert!(resolve("localhost", 993, deadline)
            .unwrap()
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 993));
    }

    #[test]
    fn selection_reports_its_mailbox() {
        let s = Selection::Examine(MailboxId::new("INBOX"), UidValidity(7));
        assert_eq!(
            s.mailbox(),
            Some((&MailboxId::new("INBOX"), UidValidity(7)))
        );
        assert_eq!(Selection::None.mailbox(), None);
    }

    #[test]
    fn the_call_deadline_bounds_every_command_deadline() {
        let limits = CommandLimits::new(Duration::from_secs(30));
        let call = call::Call::new(Instant::now() + Duration::from_secs(2), None);
        let _in_call = call::enter(Arc::clone(&call));
        limits.start_command(100);
        assert!(limits.deadline() <= call.deadline());
        limits.start_streaming(100);
        std::thread::sleep(Duration::from_millis(5));
        limits.progressed(0);
        assert!(limits.deadline() <= call.deadline());
    }

    #[test]
    fn streaming_deadlines_move_with_progress_and_fixed_ones_do_not() {
        let limits = CommandLimits::new(Duration::from_secs(30));
        limits.start_command(100);
        let fixed = limits.deadline();
        std::thread::sleep(Duration::from_millis(5));
        limits.progressed(0);
        assert_eq!(limits.deadline(), fixed);
        limits.start_streaming(100);
        let first = limits.deadline();
        std::thread::sleep(Duration::from_millis(5));
        limits.progressed(0);
        assert!(limits.deadline() > first);
    }

    #[test]
    fn a_command_that_hears_nothing_shortens_the_next_deadlines() {
        let counters = Arc::new(Counters::default());
        let limits = CommandLimits::shared(Duration::from_secs(30), Arc::clone(&counters));
        limits.start_command(100);
        limits.progressed(10);
        limits.expired();
        limits.start_command(100);
        assert!(
            limits.deadline() > Instant::now() + Duration::from_secs(20),
            "it heard something"
        );
        limits.expired();
        limits.start_command(100);
        assert!(limits.deadline() <= Instant::now() + SILENT_DEADLINE);
        let other = CommandLimits::shared(Duration::from_secs(30), Arc::clone(&counters));
        assert!(
            other.deadline() <= Instant::now() + SILENT_DEADLINE,
            "the whole store"
        );
    }

    #[test]
    fn a_greeting_must_start_within_its_wait_and_may_then_take_the_timeout() {
        let limits = CommandLimits::new(Duration::from_secs(30));
        limits.start_greeting(100, Duration::from_millis(800));
        assert!(limits.deadline() <= Instant::now() + Duration::from_millis(800));
        limits.progressed(1);
        assert!(limits.deadline() > Instant::now() + Duration::from_secs(20));
        limits.start_command(100);
        assert!(limits.deadline() > Instant::now() + Duration::from_secs(20));
    }

    #[test]
    fn the_first_bytes_tell_what_a_port_speaks() {
        assert_eq!(port_speaks(b"\x15\x03\x03\x00\x02"), Some("TLS"));
        assert_eq!(port_speaks(b"\x16\x03\x01"), Some("TLS"));
        assert_eq!(port_speaks(b"* OK [CAP"), Some("plain IMAP"));
        assert_eq!(port_speaks(b""), None);
        assert_eq!(port_speaks(b"HTTP/1.1"), None);
    }

    #[test]
    fn the_budget_is_charged_and_refused_past_its_end() {
        let limits = CommandLimits::new(Duration::from_secs(30));
        limits.start_command(10);
        limits.charge(6).unwrap();
        assert_eq!(limits.remaining(), 4);
        assert!(limits.charge(5).is_err());
        limits.start_command(10);
        assert_eq!(limits.remaining(), 10);
    }

    #[test]
    fn a_passed_deadline_is_a_timeout_before_any_system_call() {
        let err = time_left(Instant::now() - Duration::from_millis(1), None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let (left, stale) = time_left(Instant::now() + Duration::from_secs(1), None).unwrap();
        assert!(stale && left <= Duration::from_secs(1));
        let (_, stale) = time_left(
            Instant::now() + Duration::from_secs(1),
            Some(Duration::from_secs(1)),
        )
        .unwrap();
        assert!(!stale);
    }
}
