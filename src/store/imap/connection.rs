//! One IMAP connection: TCP with deadlines, TLS or STARTTLS, login, capabilities, and the
//! mailbox currently selected on it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::secret::Secret;
use crate::store::{MailboxId, StoreError, StoreResult, UidValidity};

use super::errors::from_imap;
use super::nesting::NestingGuard;

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
    /// Deadline for connecting and for every read or write.
    pub timeout: Duration,
    /// The TLS connector, built once: loading the trust store takes tens of milliseconds.
    pub tls: std::sync::OnceLock<native_tls::TlsConnector>,
    /// Whether the plaintext warning was already logged.
    pub plaintext_warned: std::sync::atomic::AtomicBool,
}

/// Byte counters shared by every connection of a store.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub commands: AtomicU64,
}

/// The limits of the command in progress on one connection: when it must be answered by,
/// and how many bytes its answer may take. Shared between the connection and its stream.
#[derive(Debug)]
pub struct CommandLimits {
    timeout: Duration,
    /// Deadline, bytes read so far, and the byte budget of the current command.
    state: parking_lot::Mutex<(Instant, u64, u64)>,
}

impl CommandLimits {
    fn new(timeout: Duration) -> Self {
        CommandLimits {
            timeout,
            state: parking_lot::Mutex::new((Instant::now() + timeout, 0, MAX_RESPONSE_BYTES)),
        }
    }

    /// Starts the clock and a byte budget for a new command.
    pub fn start_command(&self, budget: u64) {
        *self.state.lock() = (Instant::now() + self.timeout, 0, budget);
    }
}

/// A TCP stream that counts the bytes it moves (on the wire, so after TLS) and enforces the
/// current command's deadline and response budget: a server that trickles bytes forever or
/// announces a multi-gigabyte literal gets an error instead of a hung or exhausted client.
pub struct CountingTcp {
    inner: TcpStream,
    counters: Arc<Counters>,
    limits: Arc<CommandLimits>,
    /// The read timeout last set on the socket (setting it costs a system call).
    socket_timeout: Option<Duration>,
}

/// How far a read may overrun the command's deadline before the socket timeout is
/// tightened again.
const DEADLINE_SLACK: Duration = Duration::from_secs(1);

impl Read for CountingTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (deadline, used, budget) = *self.limits.state.lock();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the server did not finish answering before the deadline",
            ));
        }
        if used > budget {
            return Err(io::Error::other(format!(
                "the server's answer exceeded {budget} bytes"
            )));
        }
        let stale = match self.socket_timeout {
            Some(set) => left > set || left + DEADLINE_SLACK < set,
            None => true,
        };
        if stale {
            self.inner.set_read_timeout(Some(left))?;
            self.socket_timeout = Some(left);
        }
        let n = self.inner.read(buf)?;
        self.limits.state.lock().1 += n as u64;
        self.counters
            .bytes_received
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Write for CountingTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counters
            .bytes_sent
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The transport under the IMAP session: TLS, or plaintext only when explicitly allowed.
pub enum Wire {
    Tls(Box<native_tls::TlsStream<CountingTcp>>),
    Plain(CountingTcp),
}

/// The byte stream the IMAP session reads: the transport, with the decrypted bytes checked
/// by a nesting guard before the parser sees them.
pub struct ImapStream {
    wire: Wire,
    guard: NestingGuard,
}

impl ImapStream {
    fn new(wire: Wire) -> Self {
        ImapStream {
            wire,
            guard: NestingGuard::default(),
        }
    }
}

impl Read for ImapStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.wire {
            Wire::Tls(s) => s.read(buf)?,
            Wire::Plain(s) => s.read(buf)?,
        };
        self.guard.feed(&buf[..n])?;
        Ok(n)
    }
}

impl Write for ImapStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.wire {
            Wire::Tls(s) => s.write(buf),
            Wire::Plain(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.wire {
            Wire::Tls(s) => s.flush(),
            Wire::Plain(s) => s.flush(),
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

/// A logged-in IMAP session and what we know about it.
pub struct Connection {
    pub session: imap::Session<ImapStream>,
    pub selection: Selection,
    pub capabilities: Vec<String>,
    /// Deadline and byte budget of the command in progress.
    pub limits: Arc<CommandLimits>,
}

impl Connection {
    /// True if the server announced `cap` (case-insensitive).
    pub fn has_capability(&self, cap: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(cap))
    }
}

fn connect_tcp(config: &ConnectConfig) -> StoreResult<TcpStream> {
    let addrs: Vec<SocketAddr> = (config.host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(|e| StoreError::Connection(format!("cannot resolve {}: {e}", config.host)))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, config.timeout) {
            Ok(tcp) => {
                let io = |e: io::Error| StoreError::Connection(e.to_string());
                tcp.set_read_timeout(Some(config.timeout)).map_err(io)?;
                tcp.set_write_timeout(Some(config.timeout)).map_err(io)?;
                tcp.set_nodelay(true).map_err(io)?;
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

fn handshake(
    config: &ConnectConfig,
    tcp: CountingTcp,
) -> StoreResult<native_tls::TlsStream<CountingTcp>> {
    let connector = match config.tls.get() {
        Some(c) => c,
        None => {
            let built = tls_connector(config)?;
            config.tls.get_or_init(|| built)
        }
    };
    connector.connect(&config.host, tcp).map_err(|e| match e {
        native_tls::HandshakeError::Failure(e) => {
            StoreError::Connection(format!("TLS handshake with {} failed: {e}", config.host))
        }
        native_tls::HandshakeError::WouldBlock(_) => {
            StoreError::Timeout(format!("TLS handshake with {}", config.host))
        }
    })
}

/// Reads one CRLF line of a pre-TLS exchange, bounded so a hostile server cannot grow it.
fn read_plain_line(reader: &mut BufReader<&mut CountingTcp>) -> StoreResult<String> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(8192)
        .read_until(b'\n', &mut line)
        .map_err(|e| StoreError::Connection(e.to_string()))?;
    if n == 0 {
        return Err(StoreError::Connection(
            "server closed the connection".into(),
        ));
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// Upgrades a plain connection with STARTTLS; `Ok(None)` when the server refuses it.
fn starttls(tcp: &mut CountingTcp) -> StoreResult<bool> {
    // The greeting and our one command are read without buffering past the tagged reply,
    // since the TLS handshake must start at the very next byte.
    let mut reader = BufReader::with_capacity(1, tcp);
    let greeting = read_plain_line(&mut reader)?;
    if !greeting.starts_with("* OK") {
        return Err(StoreError::Connection(format!(
            "unexpected greeting: {}",
            greeting.chars().take(100).collect::<String>()
        )));
    }
    reader
        .get_mut()
        .write_all(b"s0 STARTTLS\r\n")
        .map_err(|e| StoreError::Connection(e.to_string()))?;
    loop {
        let line = read_plain_line(&mut reader)?;
        if let Some(rest) = line.strip_prefix("s0 ") {
            return Ok(rest.starts_with("OK"));
        }
    }
}

struct PlainAuth<'a> {
    user: &'a str,
    secret: &'a str,
    auth: Auth,
    host: &'a str,
    port: u16,
}

impl imap::Authenticator for PlainAuth<'_> {
    type Response = Vec<u8>;
    fn process(&self, _challenge: &[u8]) -> Vec<u8> {
        match self.auth {
            Auth::Login | Auth::Plain => format!("\0{}\0{}", self.user, self.secret).into_bytes(),
            Auth::XOAuth2 => {
                format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.secret).into_bytes()
            }
            Auth::OAuthBearer => format!(
                "n,a={},\x01host={}\x01port={}\x01auth=Bearer {}\x01\x01",
                self.user, self.host, self.port, self.secret
            )
            .into_bytes(),
        }
    }
}

/// Opens, protects and authenticates a new connection, then learns the capabilities.
pub fn connect(config: &ConnectConfig, counters: &Arc<Counters>) -> StoreResult<Connection> {
    let tcp = connect_tcp(config)?;
    let limits = Arc::new(CommandLimits::new(config.timeout));
    let mut tcp = CountingTcp {
        inner: tcp,
        counters: Arc::clone(counters),
        limits: Arc::clone(&limits),
        socket_timeout: None,
    };
    let (stream, greeting_pending) = match config.transport {
        Transport::Tls => (Wire::Tls(Box::new(handshake(config, tcp)?)), true),
        Transport::StartTls => {
            if starttls(&mut tcp)? {
                (Wire::Tls(Box::new(handshake(config, tcp)?)), false)
            } else if config.allow_plaintext {
                // Loud once; every reconnect would otherwise repeat it.
                if !config
                    .plaintext_warned
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(host = %config.host, "server refused STARTTLS; continuing in PLAINTEXT as --allow-plaintext asks");
                } else {
                    tracing::debug!(host = %config.host, "reconnected in plaintext");
                }
                (Wire::Plain(tcp), false)
            } else {
                return Err(StoreError::Unsupported(format!(
                    "{} does not offer STARTTLS; refusing to send the password in plaintext (use imaps:// or --allow-plaintext)",
                    config.host
                )));
            }
        }
    };
    let mut client = imap::Client::new(ImapStream::new(stream));
    if greeting_pending {
        client.read_greeting().map_err(from_imap)?;
    }
    let secret = config.secret.expose();
    let mut session = match config.auth {
        Auth::Login => client
            .login(&config.user, secret)
            .map_err(|(e, _)| login_error(e, config))?,
        method => {
            let name = match method {
                Auth::Plain | Auth::Login => "PLAIN",
                Auth::XOAuth2 => "XOAUTH2",
                Auth::OAuthBearer => "OAUTHBEARER",
            };
            let authenticator = PlainAuth {
                user: &config.user,
                secret,
                auth: method,
                host: &config.host,
                port: config.port,
            };
            client
                .authenticate(name, &authenticator)
                .map_err(|(e, _)| login_error(e, config))?
        }
    };
    counters.commands.fetch_add(2, Ordering::Relaxed);
    let capabilities: Vec<String> = session
        .capabilities()
        .map_err(from_imap)?
        .iter()
        .map(capability_name)
        .collect();
    let has = |cap: &str| capabilities.iter().any(|c| c.eq_ignore_ascii_case(cap));
    if has("CONDSTORE") && has("ENABLE") {
        // Then every EXAMINE reports HIGHESTMODSEQ, which tells an unchanged mailbox from
        // a changed one without listing it again (RFC 7162 §3.1).
        counters.commands.fetch_add(1, Ordering::Relaxed);
        limits.start_command(MAX_RESPONSE_BYTES);
        session
            .run_command_and_check_ok("ENABLE CONDSTORE")
            .map_err(from_imap)?;
    }
    Ok(Connection {
        session,
        selection: Selection::None,
        capabilities,
        limits,
    })
}

/// The name of a capability as the server spelled it (`MOVE`, `AUTH=PLAIN`).
fn capability_name(cap: &imap_proto::types::Capability<'_>) -> String {
    use imap_proto::types::Capability;
    match cap {
        Capability::Imap4rev1 => "IMAP4rev1".into(),
        Capability::Auth(mech) => format!("AUTH={mech}"),
        Capability::Atom(atom) => atom.to_string(),
    }
}

fn login_error(e: imap::Error, config: &ConnectConfig) -> StoreError {
    match e {
        imap::Error::No(no) => StoreError::Refused(format!(
            "login as {} at {} refused: {}",
            config.user, config.host, no.information
        )),
        other => from_imap(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_are_extracted() {
        use imap_proto::types::Capability;
        assert_eq!(capability_name(&Capability::Atom("MOVE".into())), "MOVE");
        assert_eq!(
            capability_name(&Capability::Auth("PLAIN".into())),
            "AUTH=PLAIN"
        );
        assert_eq!(capability_name(&Capability::Imap4rev1), "IMAP4rev1");
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
}
