//! The command line: `imapfs [OPTIONS] <SOURCE> <MOUNTPOINT>`, where every option is
//! also accepted as `-o name[=value]` so that fstab and `mount -t fuse.imapfs` can pass it.
//!
//! Two layers: a clap derive struct reads argv, then the `-o` items are parsed with the
//! same value parsers and merged under it. An option given as `--long-name` wins over
//! the same option given with `-o`; among several `-o` items the last one wins.

use std::ffi::OsString;
use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueEnum};

/// Cache size used when none is given: 256 MiB.
pub const DEFAULT_CACHE_SIZE: u64 = 256 * 1024 * 1024;
/// IMAP connection pool size used when none is given.
pub const DEFAULT_CONNECTIONS: usize = 4;
/// Largest accepted IMAP connection pool size.
pub const MAX_CONNECTIONS: usize = 16;
/// Per-command IMAP timeout used when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest accepted timeout in seconds (one day), so deadline arithmetic cannot overflow.
pub const MAX_TIMEOUT_SECS: u64 = 86_400;
/// Port for `imaps://` (implicit TLS), [RFC 8314 §7](https://www.rfc-editor.org/rfc/rfc8314#section-7).
pub const IMAPS_PORT: u16 = 993;
/// Port for `imap://` (STARTTLS), [RFC 3501 §2.1](https://www.rfc-editor.org/rfc/rfc3501#section-2.1).
pub const IMAP_PORT: u16 = 143;

/// Standard mount options that mean nothing to imapfs; `-o` accepts and ignores them
/// (with or without a value), as do keys starting with `x-` (fstab comments).
const IGNORED_MOUNT_OPTIONS: &[&str] = &[
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "noatime",
    "atime",
    "relatime",
    "nodiratime",
    "user",
    "nouser",
    "users",
    "auto",
    "noauto",
    "_netdev",
    "nofail",
    "defaults",
];

const AFTER_HELP: &str = "\
SOURCE is imaps://USER@HOST[:PORT] (implicit TLS, port 993 by default) or
imap://USER@HOST[:PORT] (STARTTLS, port 143 by default). Percent-encode special
characters in USER (alice%40example.com); write an IPv6 HOST in brackets ([::1]).

Every option can also be given as -o NAME[=VALUE], with the dashes of the long name
written as underscores: -o read_only,cache_size=1G -o uid=1000. Items are separated
by commas, so a -o value cannot contain a comma. -o ro is --read-only. An option
given as --long-name wins over the same option given with -o. Standard mount
options that do not apply (rw, nosuid, nodev, noexec, noatime, user, users, auto,
noauto, _netdev, nofail, defaults, x-*) are accepted and ignored.

The password is never an option: imapfs runs --password-command, else reads the
IMAPFS_PASSWORD environment variable (and erases it), else prompts on the terminal.";

/// How the IMAP connection is secured, chosen by the SOURCE scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `imaps://`: TLS from the first byte ([RFC 8314 §3.3](https://www.rfc-editor.org/rfc/rfc8314#section-3.3)).
    Tls,
    /// `imap://`: plain TCP upgraded with STARTTLS ([RFC 3501 §6.2.1](https://www.rfc-editor.org/rfc/rfc3501#section-6.2.1)).
    StartTls,
}

/// The IMAP account to mount, parsed from SOURCE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// How the connection is secured.
    pub security: Security,
    /// The login name, percent-decoded. Never empty, never holds a control character.
    pub user: String,
    /// Host name or IP address; an IPv6 address is stored without its brackets.
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

impl fmt::Display for Source {
    /// `user@host:port`, with an IPv6 host in brackets; for messages, not for parsing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

/// What deleting a message file does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeleteMode {
    /// Move the message to the Trash mailbox ([RFC 6154](https://www.rfc-editor.org/rfc/rfc6154) `\Trash`).
    #[value(help = "Move the message to the Trash mailbox")]
    Trash,
    /// Mark the message `\Deleted` and expunge it ([RFC 4315 §2.1](https://www.rfc-editor.org/rfc/rfc4315#section-2.1)).
    #[value(help = "Mark the message \\Deleted and expunge it at once")]
    Expunge,
    /// Refuse to delete messages.
    Off,
}

/// How imapfs logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMethod {
    /// The LOGIN command ([RFC 3501 §6.2.3](https://www.rfc-editor.org/rfc/rfc3501#section-6.2.3)).
    #[value(help = "LOGIN with user name and password")]
    Login,
    /// AUTHENTICATE PLAIN ([RFC 4616](https://www.rfc-editor.org/rfc/rfc4616)).
    #[value(help = "AUTHENTICATE PLAIN with user name and password")]
    Plain,
    /// AUTHENTICATE XOAUTH2 (Google and Microsoft), with an OAuth2 access token.
    #[value(
        name = "xoauth2",
        help = "AUTHENTICATE XOAUTH2 with an OAuth2 access token"
    )]
    XOAuth2,
    /// AUTHENTICATE OAUTHBEARER ([RFC 7628](https://www.rfc-editor.org/rfc/rfc7628)), with an OAuth2 access token.
    #[value(
        name = "oauthbearer",
        help = "AUTHENTICATE OAUTHBEARER with an OAuth2 access token"
    )]
    OAuthBearer,
}

/// Everything the command line decides, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The account to mount.
    pub source: Source,
    /// The directory to mount on (not checked here).
    pub mountpoint: PathBuf,
    /// Stay in the foreground instead of detaching.
    pub foreground: bool,
    /// Shell command whose standard output is the password.
    pub password_command: Option<String>,
    /// PEM file of CA certificates to trust instead of the system ones.
    pub ca_file: Option<PathBuf>,
    /// Mount read-only: no flag changes, moves or deletions.
    pub read_only: bool,
    /// Largest number of bytes the part cache may hold; at least 1.
    pub cache_size: u64,
    /// IMAP connection pool size, 1 to [`MAX_CONNECTIONS`].
    pub connections: usize,
    /// Time limit for one IMAP command, 1 s to [`MAX_TIMEOUT_SECS`].
    pub timeout: Duration,
    /// What deleting a message does.
    pub delete: DeleteMode,
    /// Skip TLS certificate and host name verification.
    pub insecure: bool,
    /// Allow `imap://` to go on without STARTTLS when the server does not offer it.
    pub allow_plaintext: bool,
    /// Let other users access the mount (FUSE `allow_other`).
    pub allow_other: bool,
    /// Shell command whose standard output is an OAuth2 access token.
    pub oauth2_token_command: Option<String>,
    /// How to log in.
    pub auth: AuthMethod,
    /// Owner shown for files; `None` means the mounting user.
    pub uid: Option<u32>,
    /// Group shown for files; `None` means the mounting user's group.
    pub gid: Option<u32>,
    /// Verbose logging.
    pub debug: bool,
    /// Write the log to this file instead of standard error.
    pub log_file: Option<PathBuf>,
    /// Where new files wait until they are appended; `None` means the default
    /// (`$XDG_STATE_HOME/imapfs/spool`, else `~/.local/state/imapfs/spool`).
    pub spool_dir: Option<PathBuf>,
}

/// Why the command line was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// clap's own outcome: `--help`, `--version` or a usage error. Call
    /// [`clap::Error::exit`] to print it and exit as clap does.
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// SOURCE is malformed. The message never repeats the whole input, which might
    /// hold a password typed by mistake.
    #[error("invalid SOURCE: {0}")]
    Source(String),
    /// An option value (or a size given to [`parse_size`]) is malformed or out of range.
    #[error("invalid value '{value}' for {option}: {reason}")]
    InvalidValue {
        /// Which option, e.g. `-o cache_size` or `size`.
        option: String,
        /// The value as given.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A `-o` item is unknown or has the wrong form (a value for a flag, none for an option).
    #[error("-o {key}: {reason}")]
    MountOption {
        /// The `-o` key as given.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The argv form, as clap sees it.
#[derive(Debug, Parser)]
#[command(
    name = "imapfs",
    version,
    about = "Mount an IMAP account as a directory tree of mailboxes, messages and MIME parts",
    after_help = AFTER_HELP
)]
struct Argv {
    /// The account, `imaps://USER@HOST[:PORT]` or `imap://USER@HOST[:PORT]`.
    #[arg(
        value_name = "SOURCE",
        help = "imaps://USER@HOST[:PORT] or imap://USER@HOST[:PORT]"
    )]
    source: String,

    /// Directory to mount on
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,

    /// Options as NAME[=VALUE], comma separated (see below); may be repeated
    #[arg(short = 'o', value_name = "OPTION[,...]")]
    mount_options: Vec<String>,

    #[command(flatten)]
    settings: Settings,
}

/// The options, each unset unless given; filled once from argv and once from `-o`.
#[derive(Debug, Default, Clone, PartialEq, Eq, clap::Args)]
struct Settings {
    /// Stay in the foreground instead of detaching
    #[arg(short = 'f', long)]
    foreground: bool,

    /// Run CMD with `sh -c`; its standard output is the password
    #[arg(long, value_name = "CMD", value_parser = non_empty_string)]
    password_command: Option<String>,

    /// Trust the CA certificates in this PEM file instead of the system ones
    #[arg(long, value_name = "PATH", value_parser = non_empty_path)]
    ca_file: Option<PathBuf>,

    /// Mount read-only (-o ro): no flag changes, moves or deletions
    #[arg(long)]
    read_only: bool,

    /// Part cache size: bytes, or with K, M, G (or KiB, MiB, GiB) [default: 256M]
    #[arg(long, value_name = "BYTES", value_parser = size_value)]
    cache_size: Option<u64>,

    /// Number of IMAP connections to keep open, 1 to 16 [default: 4]
    #[arg(long, value_name = "N", value_parser = connections_value)]
    connections: Option<usize>,

    /// Give up on an IMAP command after SECS seconds [default: 30]
    #[arg(long, value_name = "SECS", value_parser = timeout_value)]
    timeout: Option<Duration>,

    /// What deleting a message does [default: trash]
    #[arg(long, value_name = "MODE")]
    delete: Option<DeleteMode>,

    /// Do not verify the server's TLS certificate (dangerous)
    #[arg(long)]
    insecure: bool,

    /// Allow imap:// to log in without STARTTLS if the server does not offer it
    #[arg(long)]
    allow_plaintext: bool,

    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf)
    #[arg(long)]
    allow_other: bool,

    /// Run CMD with `sh -c`; its standard output is an OAuth2 access token
    #[arg(long = "oauth2-token-command", value_name = "CMD", value_parser = non_empty_string)]
    oauth2_token_command: Option<String>,

    /// How to log in [default: login]
    #[arg(long, value_name = "METHOD")]
    auth: Option<AuthMethod>,

    /// Owner shown for files [default: the mounting user]
    #[arg(long, value_name = "N", value_parser = id_value)]
    uid: Option<u32>,

    /// Group shown for files [default: the mounting user's group]
    #[arg(long, value_name = "N", value_parser = id_value)]
    gid: Option<u32>,

    /// Log verbosely
    #[arg(long)]
    debug: bool,

    /// Write the log to PATH instead of standard error
    #[arg(long, value_name = "PATH", value_parser = non_empty_path)]
    log_file: Option<PathBuf>,

    /// Keep new files in DIR until they are appended (and if APPEND fails)
    #[arg(long, value_name = "DIR", value_parser = non_empty_path)]
    spool_dir: Option<PathBuf>,
}

impl Settings {
    /// `self` where set, else `fallback`: explicit argv options over `-o` ones.
    fn or(self, fallback: Settings) -> Settings {
        Settings {
            foreground: self.foreground || fallback.foreground,
            password_command: self.password_command.or(fallback.password_command),
            ca_file: self.ca_file.or(fallback.ca_file),
            read_only: self.read_only || fallback.read_only,
            cache_size: self.cache_size.or(fallback.cache_size),
            connections: self.connections.or(fallback.connections),
            timeout: self.timeout.or(fallback.timeout),
            delete: self.delete.or(fallback.delete),
            insecure: self.insecure || fallback.insecure,
            allow_plaintext: self.allow_plaintext || fallback.allow_plaintext,
            allow_other: self.allow_other || fallback.allow_other,
            oauth2_token_command: self.oauth2_token_command.or(fallback.oauth2_token_command),
            auth: self.auth.or(fallback.auth),
            uid: self.uid.or(fallback.uid),
            gid: self.gid.or(fallback.gid),
            debug: self.debug || fallback.debug,
            log_file: self.log_file.or(fallback.log_file),
            spool_dir: self.spool_dir.or(fallback.spool_dir),
        }
    }

    /// Sets the option named by the `-o` key `key` (underscores, not dashes).
    fn apply_mount_option(&mut self, key: &str, value: Option<&str>) -> Result<(), CliError> {
        match key {
            "foreground" => self.foreground = flag(key, value)?,
            "password_command" => {
                self.password_command = Some(with_value(key, value, non_empty_string)?)
            }
            "ca_file" => self.ca_file = Some(with_value(key, value, non_empty_path)?),
            "ro" | "read_only" => self.read_only = flag(key, value)?,
            "cache_size" => self.cache_size = Some(with_value(key, value, size_value)?),
            "connections" => self.connections = Some(with_value(key, value, connections_value)?),
            "timeout" => self.timeout = Some(with_value(key, value, timeout_value)?),
            "delete" => self.delete = Some(with_value(key, value, enum_value)?),
            "insecure" => self.insecure = flag(key, value)?,
            "allow_plaintext" => self.allow_plaintext = flag(key, value)?,
            "allow_other" => self.allow_other = flag(key, value)?,
            "oauth2_token_command" => {
                self.oauth2_token_command = Some(with_value(key, value, non_empty_string)?)
            }
            "auth" => self.auth = Some(with_value(key, value, enum_value)?),
            "uid" => self.uid = Some(with_value(key, value, id_value)?),
            "gid" => self.gid = Some(with_value(key, value, id_value)?),
            "debug" => self.debug = flag(key, value)?,
            "log_file" => self.log_file = Some(with_value(key, value, non_empty_path)?),
            "spool_dir" => self.spool_dir = Some(with_value(key, value, non_empty_path)?),
            _ if IGNORED_MOUNT_OPTIONS.contains(&key) || key.starts_with("x-") => {}
            _ => return Err(unknown_mount_option(key)),
        }
        Ok(())
    }
}

/// The error for an unrecognised `-o` key, with a hint where one helps.
fn unknown_mount_option(key: &str) -> CliError {
    let underscored = key.replace('-', "_");
    let is_long_option = Argv::command()
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .any(|long| long.replace('-', "_") == underscored);
    let reason = if is_long_option && underscored != key {
        format!("unknown mount option; -o names use underscores: {underscored}")
    } else if key.contains("pass") && !key.contains("command") {
        "unknown mount option; the password is never an option (use --password-command, \
         IMAPFS_PASSWORD or the prompt)"
            .to_owned()
    } else {
        "unknown mount option".to_owned()
    };
    CliError::MountOption {
        key: key.to_owned(),
        reason,
    }
}

/// A `-o` flag: present means on; a value is an error.
fn flag(key: &str, value: Option<&str>) -> Result<bool, CliError> {
    match value {
        None => Ok(true),
        Some(_) => Err(CliError::MountOption {
            key: key.to_owned(),
            reason: "takes no value".to_owned(),
        }),
    }
}

/// A `-o` option that needs a value, parsed with the same parser as its long form.
fn with_value<T>(
    key: &str,
    value: Option<&str>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, CliError> {
    let value = value.ok_or_else(|| CliError::MountOption {
        key: key.to_owned(),
        reason: format!("needs a value ({key}=VALUE)"),
    })?;
    parse(value).map_err(|reason| CliError::InvalidValue {
        option: format!("-o {key}"),
        value: value.to_owned(),
        reason,
    })
}

fn non_empty_string(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

fn non_empty_path(s: &str) -> Result<PathBuf, String> {
    non_empty_string(s).map(PathBuf::from)
}

fn connections_value(s: &str) -> Result<usize, String> {
    let range = format!("expected a whole number from 1 to {MAX_CONNECTIONS}");
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_CONNECTIONS).contains(&n) && is_plain_number(s) => Ok(n),
        _ => Err(range),
    }
}

fn timeout_value(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(secs) if (1..=MAX_TIMEOUT_SECS).contains(&secs) && is_plain_number(s) => {
            Ok(Duration::from_secs(secs))
        }
        _ => Err(format!(
            "expected a whole number of seconds from 1 to {MAX_TIMEOUT_SECS}"
        )),
    }
}

fn id_value(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(id) if is_plain_number(s) => Ok(id),
        _ => Err("expected a numeric id".to_owned()),
    }
}

/// Whether `s` is only ASCII digits (Rust's integer parsing also takes a leading `+`).
fn is_plain_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A [`ValueEnum`] by its exact (lower-case) name, with the choices in the error.
fn enum_value<T: ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| v.get_name().to_owned())
            .collect();
        format!("expected one of: {}", names.join(", "))
    })
}

/// Parses a byte count: plain digits, or digits with a `K`, `M`, `G`, `KiB`, `MiB` or
/// `GiB` suffix in any case (powers of 1024). Zero is rejected, as is any overflow.
pub fn parse_size(s: &str) -> Result<u64, CliError> {
    size_value(s).map_err(|reason| CliError::InvalidValue {
        option: "size".to_owned(),
        value: s.to_owned(),
        reason,
    })
}

fn size_value(s: &str) -> Result<u64, String> {
    const EXPECTED: &str =
        "expected bytes, or a number with K, M, G, KiB, MiB or GiB (powers of 1024)";
    let digits_end = s.bytes().take_while(u8::is_ascii_digit).count();
    // `digits_end` counts ASCII bytes from the start, so it is a char boundary.
    let (digits, suffix) = s.split_at(digits_end);
    let multiplier: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(EXPECTED.to_owned()),
    };
    let count: u64 = digits.parse().map_err(|_| EXPECTED.to_owned())?;
    match count.checked_mul(multiplier) {
        Some(0) => Err("must be greater than zero".to_owned()),
        Some(bytes) => Ok(bytes),
        None => Err("too large".to_owned()),
    }
}

/// Parses SOURCE: `imaps://USER@HOST[:PORT]` or `imap://USER@HOST[:PORT]`.
///
/// The scheme is case-insensitive; one trailing `/` is allowed. USER is
/// percent-decoded and must be non-empty UTF-8 without control characters; a raw
/// `@` in USER is tolerated, since the host part follows the last `@`. A `:` in the
/// user part (a password) is refused without echoing it. HOST is a DNS name or IPv4
/// address, or an IPv6 address in brackets. PORT defaults to 993 for `imaps` and 143
/// for `imap`. Paths, queries, fragments and `;AUTH=` parameters are refused.
/// See [RFC 5092 §3.2](https://www.rfc-editor.org/rfc/rfc5092#section-3.2) for the
/// IMAP URL form this is a subset of.
pub fn parse_source(s: &str) -> Result<Source, CliError> {
    let bad = |reason: &str| CliError::Source(reason.to_owned());
    let expected = "expected imaps://USER@HOST[:PORT] or imap://USER@HOST[:PORT]";
    let (scheme, rest) = s.split_once("://").ok_or_else(|| bad(expected))?;
    let (security, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "imaps" => (Security::Tls, IMAPS_PORT),
        "imap" => (Security::StartTls, IMAP_PORT),
        _ => {
            return Err(bad(
                "the scheme must be imaps:// (TLS) or imap:// (STARTTLS)",
            ))
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(bad(
            "a path, query or fragment is not allowed; give only USER@HOST[:PORT]",
        ));
    }
    let (userinfo, hostport) = authority
        .rsplit_once('@')
        .ok_or_else(|| bad("the user is missing; write USER@HOST"))?;
    let user = parse_user(userinfo)?;
    let (host, port) = parse_hostport(hostport, default_port)?;
    Ok(Source {
        security,
        user,
        host,
        port,
    })
}

/// Checks and percent-decodes the user part of SOURCE.
fn parse_user(userinfo: &str) -> Result<String, CliError> {
    let bad = |reason: &str| CliError::Source(reason.to_owned());
    if userinfo.contains(':') {
        // Deliberately not echoed: what follows the ':' is probably a password.
        return Err(bad(
            "a password cannot be given in SOURCE; use --password-command, \
             the IMAPFS_PASSWORD environment variable or the prompt",
        ));
    }
    if userinfo.contains(';') {
        return Err(bad(
            ";AUTH= and other parameters are not supported; use --auth",
        ));
    }
    let bytes = userinfo.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let value = hex
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    bad("bad percent-encoding in the user; write %XX with two hex digits")
                })?;
            decoded.push(value);
            i += 3;
        } else {
            decoded.push(byte);
            i += 1;
        }
    }
    let user = String::from_utf8(decoded)
        .map_err(|_| bad("the user is not valid UTF-8 once percent-decoded"))?;
    if user.is_empty() {
        return Err(bad("the user is empty"));
    }
    if user.chars().any(char::is_control) {
        return Err(bad("the user contains a control character"));
    }
    Ok(user)
}

/// Splits and checks `HOST[:PORT]` or `[IPV6][:PORT]`.
fn parse_hostport(hostport: &str, default_port: u16) -> Result<(String, u16), CliError> {
    let bad = |reason: String| CliError::Source(reason);
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (literal, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing ']'".to_owned()))?;
        if literal.parse::<Ipv6Addr>().is_err() {
            return Err(bad(format!("'{literal}' is not an IPv6 address")));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| bad("only ':PORT' may follow the IPv6 address".to_owned()))?,
            ),
        };
        (literal, port)
    } else {
        if hostport.matches(':').count() > 1 {
            return Err(bad(
                "write an IPv6 address in brackets, e.g. imaps://user@[::1]".to_owned(),
            ));
        }
        let (host, port) = match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        };
        if host.is_empty() {
            return Err(bad("the host is missing".to_owned()));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(bad(format!(
                "'{host}' is not a valid host name (letters, digits, '-', '.', '_')"
            )));
        }
        (host, port)
    };
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&n| n != 0 && is_plain_number(p))
            .ok_or_else(|| bad(format!("bad port '{p}' (expected 1 to 65535)")))?,
    };
    Ok((host.to_owned(), port))
}

/// Parses the `-o` items into `(key, value)` pairs, in order.
///
/// Each item is split on commas (so a value cannot contain a comma), empty pieces
/// are skipped, and each piece is split at its first `=`: `ro` gives `("ro", None)`,
/// `uid=1000` gives `("uid", Some("1000"))`, `a=` gives `("a", Some(""))`. A piece
/// with an empty key (`=x`) is an error. Keys are not checked here.
pub fn parse_mount_options(items: &[String]) -> Result<Vec<(String, Option<String>)>, CliError> {
    let mut options = Vec::new();
    for piece in items.iter().flat_map(|item| item.split(',')) {
        if piece.is_empty() {
            continue;
        }
        let (key, value) = match piece.split_once('=') {
            Some((key, value)) => (key, Some(value.to_owned())),
            None => (piece, None),
        };
        if key.is_empty() {
            return Err(CliError::MountOption {
                key: piece.to_owned(),
                reason: "the option name is missing before '='".to_owned(),
            });
        }
        options.push((key.to_owned(), value));
    }
    Ok(options)
}

/// Parses the whole command line. `args` starts with the program name, as
/// [`std::env::args_os`] does.
///
/// Options given as `--long-name` win over the same option given with `-o`; among
/// `-o` items the last one wins. Flags are on if given in either form.
pub fn parse_args<I, T>(args: I) -> Result<Options, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv = Argv::try_parse_from(args)?;
    let source = parse_source(&argv.source)?;
    let mut from_mount_options = Settings::default();
    for (key, value) in parse_mount_options(&argv.mount_options)? {
        from_mount_options.apply_mount_option(&key, value.as_deref())?;
    }
    let s = argv.settings.or(from_mount_options);
    Ok(Options {
        source,
        mountpoint: argv.mountpoint,
        foreground: s.foreground,
        password_command: s.password_command,
        ca_file: s.ca_file,
        read_only: s.read_only,
        cache_size: s.cache_size.unwrap_or(DEFAULT_CACHE_SIZE),
        connections: s.connections.unwrap_or(DEFAULT_CONNECTIONS),
        timeout: s.timeout.unwrap_or(DEFAULT_TIMEOUT),
        delete: s.delete.unwrap_or(DeleteMode::Trash),
        insecure: s.insecure,
        allow_plaintext: s.allow_plaintext,
        allow_other: s.allow_other,
        oauth2_token_command: s.oauth2_token_command,
        auth: s.auth.unwrap_or(AuthMethod::Login),
        uid: s.uid,
        gid: s.gid,
        debug: s.debug,
        log_file: s.log_file,
        spool_dir: s.spool_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SOURCE: &str = "imaps://alice@mail.example.com";

    fn parse(extra: &[&str]) -> Result<Options, CliError> {
        let mut args = vec!["imapfs", SOURCE, "/mnt/mail"];
        args.extend_from_slice(extra);
        parse_args(args)
    }

    fn ok(extra: &[&str]) -> Options {
        match parse(extra) {
            Ok(options) => options,
            Err(err) => panic!("{extra:?} was refused: {err}"),
        }
    }

    fn err(extra: &[&str]) -> String {
        match parse(extra) {
            Ok(options) => panic!("{extra:?} was accepted: {options:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn defaults() {
        let o = ok(&[]);
        assert_eq!(
            o,
            Options {
                source: Source {
                    security: Security::Tls,
                    user: "alice".into(),
                    host: "mail.example.com".into(),
                    port: 993,
                },
                mountpoint: PathBuf::from("/mnt/mail"),
                foreground: false,
                password_command: None,
                ca_file: None,
                read_only: false,
                cache_size: 256 * 1024 * 1024,
                connections: 4,
                timeout: Duration::from_secs(30),
                delete: DeleteMode::Trash,
                insecure: false,
                allow_plaintext: false,
                allow_other: false,
                oauth2_token_command: None,
                auth: AuthMethod::Login,
                uid: None,
                gid: None,
                debug: false,
                log_file: None,
                spool_dir: None,
            }
        );
    }

    /// Every option, as (long form, -o form, check on the result).
    type Case = (&'static [&'static str], &'static str, fn(&Options) -> bool);

    const EVERY_OPTION: &[Case] = &[
        (&["--foreground"], "foreground", |o| o.foreground),
        (
            &["--password-command", "pass show mail"],
            "password_command=pass show mail",
            |o| o.password_command.as_deref() == Some("pass show mail"),
        ),
        (&["--ca-file", "/etc/ca.pem"], "ca_file=/etc/ca.pem", |o| {
            o.ca_file == Some(PathBuf::from("/etc/ca.pem"))
        }),
        (&["--read-only"], "read_only", |o| o.read_only),
        (&["--cache-size", "1G"], "cache_size=1G", |o| {
            o.cache_size == 1 << 30
        }),
        (&["--connections", "16"], "connections=16", |o| {
            o.connections == 16
        }),
        (&["--timeout", "5"], "timeout=5", |o| {
            o.timeout == Duration::from_secs(5)
        }),
        (&["--delete", "expunge"], "delete=expunge", |o| {
            o.delete == DeleteMode::Expunge
        }),
        (&["--delete", "off"], "delete=off", |o| {
            o.delete == DeleteMode::Off
        }),
        (&["--insecure"], "insecure", |o| o.insecure),
        (&["--allow-plaintext"], "allow_plaintext", |o| {
            o.allow_plaintext
        }),
        (&["--allow-other"], "allow_other", |o| o.allow_other),
        (
            &["--oauth2-token-command", "oama access a"],
            "oauth2_token_command=oama access a",
            |o| o.oauth2_token_command.as_deref() == Some("oama access a"),
        ),
        (&["--auth", "plain"], "auth=plain", |o| {
            o.auth == AuthMethod::Plain
        }),
        (&["--auth", "xoauth2"], "auth=xoauth2", |o| {
            o.auth == AuthMethod::XOAuth2
        }),
        (&["--auth", "oauthbearer"], "auth=oauthbearer", |o| {
            o.auth == AuthMethod::OAuthBearer
        }),
        (&["--uid", "1001"], "uid=1001", |o| o.uid == Some(1001)),
        (&["--gid", "100"], "gid=100", |o| o.gid == Some(100)),
        (&["--debug"], "debug", |o| o.debug),
        (
            &["--log-file", "/tmp/imapfs.log"],
            "log_file=/tmp/imapfs.log",
            |o| o.log_file == Some(PathBuf::from("/tmp/imapfs.log")),
        ),
        (
            &["--spool-dir", "/tmp/spool"],
            "spool_dir=/tmp/spool",
            |o| o.spool_dir == Some(PathBuf::from("/tmp/spool")),
        ),
    ];

    #[test]
    fn every_option_in_long_form() {
        for (long, _, check) in EVERY_OPTION {
            assert!(check(&ok(long)), "{long:?}");
            assert!(!check(&ok(&[])), "{long:?} holds by default");
        }
    }

    #[test]
    fn every_option_in_mount_option_form() {
        for (_, item, check) in EVERY_OPTION {
            assert!(check(&ok(&["-o", item])), "-o {item}");
            let joined = format!("-o{item}");
            assert!(check(&ok(&[&joined])), "{joined}");
        }
    }

    #[test]
    fn every_long_option_has_a_mount_option() {
        for arg in Argv::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let key = long.replace('-', "_");
            let mut settings = Settings::default();
            let result = settings.apply_mount_option(&key, None);
            assert!(
                !matches!(&result, Err(CliError::MountOption { reason, .. }) if reason.starts_with("unknown")),
                "--{long} has no -o {key}"
            );
        }
    }

    #[test]
    fn short_foreground_and_ro() {
        assert!(ok(&["-f"]).foreground);
        assert!(ok(&["-o", "ro"]).read_only);
    }

    #[test]
    fn several_items_and_several_o() {
        let o = ok(&[
            "-o",
            "ro,cache_size=64M,uid=1000",
            "-o",
            "debug",
            "-o",
            "gid=1000,connections=2",
        ]);
        assert!(o.read_only && o.debug);
        assert_eq!(o.cache_size, 64 << 20);
        assert_eq!((o.uid, o.gid, o.connections), (Some(1000), Some(1000), 2));
    }

    #[test]
    fn options_may_come_after_positionals_or_before() {
        let o = parse_args(["imapfs", "-o", "ro", SOURCE, "/mnt/mail", "--debug"]).unwrap();
        assert!(o.read_only && o.debug);
    }

    #[test]
    fn long_option_wins_over_mount_option() {
        let o = ok(&["-o", "cache_size=1M,auth=plain", "--cache-size", "2M"]);
        assert_eq!(o.cache_size, 2 << 20);
        assert_eq!(o.auth, AuthMethod::Plain);
        let o = ok(&["--timeout", "9", "-o", "timeout=7"]);
        assert_eq!(o.timeout, Duration::from_secs(9));
    }

    #[test]
    fn last_mount_option_wins() {
        let o = ok(&["-o", "uid=1,uid=2", "-o", "uid=3"]);
        assert_eq!(o.uid, Some(3));
    }

    #[test]
    fn standard_mount_options_are_ignored() {
        let o = ok(&[
            "-o",
            "rw,nosuid,nodev,noexec,noatime,user,users,auto,noauto,_netdev,defaults",
            "-o",
            "user=alice,nofail,x-systemd.automount",
        ]);
        assert_eq!(o, ok(&[]));
    }

    #[test]
    fn mount_option_errors() {
        assert_eq!(
            err(&["-o", "frobnicate"]),
            "-o frobnicate: unknown mount option"
        );
        assert_eq!(
            err(&["-o", "cache-size=1M"]),
            "-o cache-size: unknown mount option; -o names use underscores: cache_size"
        );
        assert!(err(&["-o", "password=hunter2"]).contains("never an option"));
        assert!(!err(&["-o", "password=hunter2"]).contains("hunter2"));
        assert_eq!(err(&["-o", "debug=1"]), "-o debug: takes no value");
        assert_eq!(
            err(&["-o", "cache_size"]),
            "-o cache_size: needs a value (cache_size=VALUE)"
        );
        assert_eq!(
            err(&["-o", "delete=shred"]),
            "invalid value 'shred' for -o delete: expected one of: trash, expunge, off"
        );
        assert!(err(&["-o", "=x"]).contains("name is missing"));
        assert!(err(&["-o", "password_command="]).contains("must not be empty"));
    }

    #[test]
    fn value_range_errors() {
        for bad in [
            &["--connections", "0"][..],
            &["--connections", "17"],
            &["--connections", "+2"],
            &["--timeout", "0"],
            &["--timeout", "86401"],
            &["--timeout", "1.5"],
            &["--cache-size", "0"],
            &["--cache-size", "lots"],
            &["--uid", "-1"],
            &["--delete", "shred"],
            &["--auth", "cram-md5"],
            &["--password-command", ""],
        ] {
            assert!(matches!(parse(bad), Err(CliError::Clap(_))), "{bad:?}");
        }
        assert!(err(&["-o", "connections=0"]).contains("from 1 to 16"));
        assert!(err(&["-o", "timeout=0"]).contains("from 1 to 86400"));
    }

    #[test]
    fn no_password_option() {
        assert!(matches!(
            parse(&["--password", "x"]),
            Err(CliError::Clap(_))
        ));
    }

    #[test]
    fn help_and_version_are_clap_errors() {
        for (flag, kind) in [
            ("--help", clap::error::ErrorKind::DisplayHelp),
            ("-h", clap::error::ErrorKind::DisplayHelp),
            ("--version", clap::error::ErrorKind::DisplayVersion),
        ] {
            match parse_args(["imapfs", flag]) {
                Err(CliError::Clap(e)) => assert_eq!(e.kind(), kind),
                other => panic!("{flag}: {other:?}"),
            }
        }
        let help = Argv::command().render_long_help().to_string();
        for needle in [
            "--password-command",
            "-o NAME[=VALUE]",
            "--cache-size",
            "imaps://",
        ] {
            assert!(help.contains(needle), "help lacks {needle}");
        }
    }

    #[test]
    fn missing_positionals_are_usage_errors() {
        assert!(matches!(parse_args(["imapfs"]), Err(CliError::Clap(_))));
        assert!(matches!(
            parse_args(["imapfs", SOURCE]),
            Err(CliError::Clap(_))
        ));
    }

    fn source(s: &str) -> Source {
        match parse_source(s) {
            Ok(source) => source,
            Err(err) => panic!("{s}: {err}"),
        }
    }

    fn source_err(s: &str) -> String {
        match parse_source(s) {
            Ok(source) => panic!("{s} was accepted: {source:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn source_default_ports() {
        let s = source("imaps://alice@example.com");
        assert_eq!((s.security, s.port), (Security::Tls, 993));
        let s = source("imap://alice@example.com");
        assert_eq!((s.security, s.port), (Security::StartTls, 143));
    }

    #[test]
    fn source_explicit_port_and_trailing_slash() {
        let s = source("IMAPS://bob@127.0.0.1:1993/");
        assert_eq!(
            s,
            Source {
                security: Security::Tls,
                user: "bob".into(),
                host: "127.0.0.1".into(),
                port: 1993,
            }
        );
        assert_eq!(s.to_string(), "bob@127.0.0.1:1993");
    }

    #[test]
    fn source_percent_encoded_user() {
        let s = source("imaps://alice%40example.com@imap.example.com");
        assert_eq!(s.user, "alice@example.com");
        assert_eq!(s.host, "imap.example.com");
        assert_eq!(s.to_string(), "alice@example.com@imap.example.com:993");
        assert_eq!(source("imap://J%C3%BCrgen@h").user, "Jürgen");
        // A raw '@' in the user: the host follows the last '@'.
        assert_eq!(source("imap://a@b.c@h").user, "a@b.c");
    }

    #[test]
    fn source_ipv6() {
        let s = source("imaps://alice@[::1]:9993");
        assert_eq!((s.host.as_str(), s.port), ("::1", 9993));
        assert_eq!(s.to_string(), "alice@[::1]:9993");
        assert_eq!(source("imap://alice@[2001:db8::7]").port, 143);
    }

    #[test]
    fn source_errors() {
        let cases = [
            ("mail.example.com", "expected imaps://"),
            ("https://alice@example.com", "scheme must be"),
            ("imaps://example.com", "user is missing"),
            ("imaps://@example.com", "user is empty"),
            ("imaps://alice@", "host is missing"),
            ("imaps://alice@:993", "host is missing"),
            ("imaps://alice@example.com/INBOX", "path"),
            ("imaps://alice@example.com?x=1", "query"),
            ("imaps://alice@example.com#f", "fragment"),
            ("imaps://alice@example.com:0", "bad port '0'"),
            ("imaps://alice@example.com:65536", "bad port"),
            ("imaps://alice@example.com:", "bad port ''"),
            ("imaps://alice@example.com:+99", "bad port"),
            ("imaps://alice@::1", "in brackets"),
            ("imaps://alice@[::1", "closing ']'"),
            ("imaps://alice@[nope]", "not an IPv6 address"),
            ("imaps://alice@[::1]x", "only ':PORT'"),
            ("imaps://alice@exa mple.com", "not a valid host name"),
            ("imaps://al%4@example.com", "percent-encoding"),
            ("imaps://al%zz@example.com", "percent-encoding"),
            ("imaps://al%FF@example.com", "UTF-8"),
            ("imaps://al%0Ace@example.com", "control character"),
            ("imaps://alice;AUTH=*@example.com", ";AUTH="),
        ];
        for (input, needle) in cases {
            let message = source_err(input);
            assert!(message.contains(needle), "{input}: {message}");
        }
    }

    #[test]
    fn source_password_is_refused_and_not_echoed() {
        let message = source_err("imaps://alice:hunter2@example.com");
        assert!(message.contains("password"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        let message = err_args(&["imapfs", "imaps://alice:hunter2@h", "/mnt"]);
        assert!(!message.contains("hunter2"), "{message}");
    }

    fn err_args(args: &[&str]) -> String {
        match parse_args(args) {
            Ok(o) => panic!("accepted: {o:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn sizes() {
        let cases: &[(&str, u64)] = &[
            ("1", 1),
            ("1048576", 1 << 20),
            ("4K", 4 << 10),
            ("4k", 4 << 10),
            ("4KiB", 4 << 10),
            ("4kib", 4 << 10),
            ("256M", 256 << 20),
            ("256m", 256 << 20),
            ("256MiB", 256 << 20),
            ("2G", 2 << 30),
            ("2gib", 2 << 30),
            ("2GiB", 2 << 30),
        ];
        for &(input, bytes) in cases {
            assert_eq!(parse_size(input).unwrap(), bytes, "{input}");
        }
    }

    #[test]
    fn size_errors() {
        for input in [
            "",
            "0",
            "0K",
            "K",
            "-1",
            "+1",
            "1.5G",
            "1 G",
            "1GB",
            "1T",
            "1KiBB",
            "lots",
            "99999999999999999999",
            "17179869184G",
        ] {
            assert!(parse_size(input).is_err(), "{input:?} was accepted");
        }
        assert_eq!(
            parse_size("0").unwrap_err().to_string(),
            "invalid value '0' for size: must be greater than zero"
        );
    }

    #[test]
    fn mount_option_pairs() {
        let items = vec!["ro,uid=1000,,a=".to_owned(), "b=c=d".to_owned()];
        assert_eq!(
            parse_mount_options(&items).unwrap(),
            vec![
                ("ro".to_owned(), None),
                ("uid".to_owned(), Some("1000".to_owned())),
                ("a".to_owned(), Some(String::new())),
                ("b".to_owned(), Some("c=d".to_owned())),
            ]
        );
        assert!(parse_mount_options(&[]).unwrap().is_empty());
    }

    #[test]
    fn enum_values_are_exact_lower_case_names() {
        assert_eq!(enum_value::<AuthMethod>("xoauth2"), Ok(AuthMethod::XOAuth2));
        assert_eq!(
            enum_value::<AuthMethod>("oauthbearer"),
            Ok(AuthMethod::OAuthBearer)
        );
        assert!(enum_value::<AuthMethod>("XOAUTH2").is_err());
    }

    proptest! {
        #[test]
        fn parse_mount_options_never_panics(items in proptest::collection::vec(any::<String>(), 0..4)) {
            if let Ok(pairs) = parse_mount_options(&items) {
                for (key, value) in pairs {
                    prop_assert!(!key.is_empty() && !key.contains(','));
                    prop_assert!(!value.unwrap_or_default().contains(','));
                }
            }
        }

        #[test]
        fn parse_size_never_panics(s in any::<String>()) {
            if let Ok(bytes) = parse_size(&s) {
                prop_assert!(bytes > 0);
            }
        }

        #[test]
        fn parse_size_of_digits_with_suffix(n in 1u64..1_000_000, suffix in "(|k|K|m|M|g|G|KiB|mib|GIB)") {
            let unit = match suffix.to_ascii_lowercase().chars().next() {
                Some('k') => 1 << 10,
                Some('m') => 1 << 20,
                Some('g') => 1 << 30,
                _ => 1,
            };
            prop_assert_eq!(parse_size(&format!("{n}{suffix}")).unwrap(), n * unit);
        }

        #[test]
        fn parse_source_never_panics(s in any::<String>(), t in "imaps?://[a-z%@:\\[\\]0-9./]{0,20}") {
            let _ = parse_source(&s);
            let _ = parse_source(&t);
        }

        #[test]
        fn parse_args_never_panics(items in proptest::collection::vec("[a-z_=,]{0,12}", 0..3)) {
            let mut args = vec!["imapfs".to_owned(), SOURCE.to_owned(), "/mnt".to_owned()];
            for item in items {
                args.push("-o".to_owned());
                args.push(item);
            }
            let _ = parse_args(args);
        }
    }
}
