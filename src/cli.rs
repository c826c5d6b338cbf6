//! The command line: `imapfs [OPTIONS] <SOURCE> <MOUNTPOINT>`, where every option is
//! also accepted as `-o name[=value]` so that fstab and `mount -t fuse.imapfs` can pass it.
//!
//! [`Options`] is clap's definition: each option is one field whose doc line is its help.
//! The `-o` items are not a second definition: each `name[=value]` is turned into the
//! `--long-name[=value]` it names and clap parses those in front of argv. clap keeps the
//! last occurrence of an option, so an option given as `--long-name` wins over the same
//! option given with `-o`, and among several `-o` items the last one wins.

use std::ffi::OsString;
use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Arg, ArgAction, Command, CommandFactory, Parser, ValueEnum};

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
/// How often mailboxes the server does not push changes of are checked, by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// How long a quiet watcher connection waits before it is checked, by default.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(120);
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
    "owner",
    "group",
    "comment",
    "loop",
    "async",
    "sync",
    "dirsync",
    "lazytime",
    "nolazytime",
    "strictatime",
    "nostrictatime",
    "silent",
    "loud",
    "mand",
    "nomand",
    "iversion",
    "noiversion",
    "nosymfollow",
];

const AFTER_HELP: &str = "\
SOURCE is imaps://USER@HOST[:PORT] (implicit TLS, port 993 by default) or
imap://USER@HOST[:PORT] (STARTTLS, port 143 by default). Percent-encode special
characters in USER (alice%40example.com); write an IPv6 HOST in brackets ([::1]).

Every option can also be given as -o NAME[=VALUE], with the dashes of the long name
written as underscores: -o read_only,cache_size=1G -o uid=1000. Items are separated
by commas, so a -o value cannot contain a comma. -o ro is --read-only. An option
given as --long-name wins over the same option given with -o; otherwise the last
occurrence of an option wins. Standard mount options that do not apply (rw, nosuid,
nodev, noexec, noatime, user, users, auto, noauto, _netdev, nofail, defaults, x-*)
are accepted and ignored. A space in a -o value may be written \\040, as in fstab.

SOURCE may also be the name of an account in the config file
($XDG_CONFIG_HOME/imapfs/config.toml, else ~/.config/imapfs/config.toml):
  [accounts.work]
  source = \"imaps://alice@imap.example.com\"
  password_command = \"pass show mail/work\"
  cache_size = \"1G\"
Every option can be set there under its -o name; the command line wins.

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

impl Source {
    /// `host:port`, with an IPv6 host in brackets (`[::1]:993`); for messages.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Source {
    /// `user@host:port`, with an IPv6 host in brackets; for messages, not for parsing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.server())
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

/// When imapfs compresses its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressWhen {
    #[value(help = "when the server offers it, unless it is on this machine (loopback)")]
    Auto,
    #[value(help = "whenever the server offers it")]
    Always,
    #[value(help = "never")]
    Never,
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
///
/// This is also clap's definition of the command line: each field is one option, its doc
/// line is the option's help, and its `-o` form is derived from its long name.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Options {
    /// The account to mount, `imaps://USER@HOST[:PORT]` or `imap://USER@HOST[:PORT]`.
    #[arg(
        value_name = "SOURCE",
        value_parser = parse_source,
        help = "imaps://USER@HOST[:PORT] or imap://USER@HOST[:PORT]"
    )]
    pub source: Source,

    /// Directory to mount on
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,

    /// Stay in the foreground instead of detaching
    #[arg(short = 'f', long)]
    pub foreground: bool,

    /// Run CMD with `sh -c`; its standard output is the password
    #[arg(long, value_name = "CMD", value_parser = non_empty_string)]
    pub password_command: Option<String>,

    /// Also trust the CA certificate in this PEM file (the system's stay trusted)
    #[arg(long, value_name = "PATH", value_parser = non_empty_path)]
    pub ca_file: Option<PathBuf>,

    /// Mount read-only (-o ro): no flag changes, moves or deletions
    #[arg(long)]
    pub read_only: bool,

    /// Part cache size: bytes, or with K, M, G (or KiB, MiB, GiB)
    #[arg(long, value_name = "BYTES", value_parser = size_value, default_value = "256M")]
    pub cache_size: u64,

    /// Number of IMAP connections to keep open, 1 to 16
    #[arg(long, value_name = "N", value_parser = connections_value, default_value_t = DEFAULT_CONNECTIONS)]
    pub connections: usize,

    /// Give up on an IMAP command after SECS seconds
    #[arg(long, value_name = "SECS", value_parser = seconds_value, default_value = "30")]
    pub timeout: Duration,

    /// Check mailboxes whose changes the server does not push every SECS seconds
    #[arg(long, value_name = "SECS", value_parser = seconds_value, default_value = "60")]
    pub poll_interval: Duration,

    /// Do not watch for changes made elsewhere; see them when a directory is read again
    #[arg(long)]
    pub no_watch: bool,

    /// Check a quiet watcher connection after SECS seconds (for tests)
    #[arg(long, value_name = "SECS", value_parser = seconds_value, default_value = "120", hide = true)]
    pub keepalive: Duration,

    /// What deleting a message does
    #[arg(long, value_name = "MODE", value_enum, default_value_t = DeleteMode::Trash)]
    pub delete: DeleteMode,

    /// The mailbox deleted messages go to, as the mount shows it (default: the server's
    /// \Trash mailbox, else the one named Trash)
    #[arg(long, value_name = "MAILBOX", value_parser = non_empty_string)]
    pub trash: Option<String>,

    /// Leave mailboxes that show other mailboxes' messages again (\All, \Flagged,
    /// \Important: Gmail's All Mail, Starred, Important) out of listings and root searches
    #[arg(long)]
    pub hide_virtual_folders: bool,

    /// Do not verify the server's TLS certificate (dangerous)
    #[arg(long)]
    pub insecure: bool,

    /// Allow imap:// to log in without STARTTLS if the server does not offer it
    #[arg(long)]
    pub allow_plaintext: bool,

    /// Use COMPRESS=DEFLATE: auto (when the server offers it, unless it is on this
    /// machine), always, never. It saves two thirds of the bytes of text mail, costs CPU
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = CompressWhen::Auto)]
    pub compress: CompressWhen,

    /// The same as --compress never
    #[arg(long)]
    pub no_compress: bool,

    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf)
    #[arg(long)]
    pub allow_other: bool,

    /// Run CMD with `sh -c`; its standard output is an OAuth2 access token
    #[arg(long = "oauth2-token-command", value_name = "CMD", value_parser = non_empty_string)]
    pub oauth2_token_command: Option<String>,

    /// How to log in
    #[arg(long, value_name = "METHOD", value_enum, default_value_t = AuthMethod::Login)]
    pub auth: AuthMethod,

    /// Owner shown for files [default: the mounting user]
    #[arg(long, value_name = "N", value_parser = id_value)]
    pub uid: Option<u32>,

    /// Group shown for files [default: the mounting user's group]
    #[arg(long, value_name = "N", value_parser = id_value)]
    pub gid: Option<u32>,

    /// Log verbosely (the same as -vv)
    #[arg(long)]
    pub debug: bool,

    /// Log more: -v changes and reconnects, -vv every IMAP command (secrets hidden)
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Write the log to PATH instead of standard error
    #[arg(long, value_name = "PATH", value_parser = non_empty_path)]
    pub log_file: Option<PathBuf>,

    /// Mount even on a directory that is not empty (its contents are hidden meanwhile)
    #[arg(long)]
    pub nonempty: bool,

    /// SOURCE exactly as given (an account name, or the URL as typed): the mount's name in
    /// /proc/mounts, so that `mount -a`, `findmnt SOURCE` and `umount SOURCE` find it.
    #[arg(skip)]
    pub mount_name: String,

    /// Keep new files in DIR until they are appended (and if APPEND fails) [default: $XDG_STATE_HOME/imapfs/spool/USER@HOST:PORT]
    #[arg(long, value_name = "DIR", value_parser = non_empty_path)]
    pub spool_dir: Option<PathBuf>,

    /// Keep what was read on disk in DIR, across mounts [default: $XDG_CACHE_HOME/imapfs/USER@HOST:PORT]
    #[arg(long, value_name = "DIR", value_parser = non_empty_path)]
    pub cache_dir: Option<PathBuf>,

    /// At most this much content in the disk cache (bytes, or with K, M, G); it also keeps 5% of its filesystem free
    #[arg(long, value_name = "BYTES", value_parser = size_value, default_value = "2G")]
    pub disk_cache_size: u64,

    /// Keep nothing on disk: every mount starts cold, and the mount needs the server
    #[arg(long)]
    pub no_disk_cache: bool,

    /// Start offline on purpose: serve what the disk cache holds, never ask the server
    #[arg(long, conflicts_with = "no_disk_cache")]
    pub offline: bool,
}

/// Why the command line was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// clap's own outcome: `--help`, `--version` or a usage error. Call
    /// [`clap::Error::exit`] to print it and exit as clap does.
    #[error(transparent)]
    Clap(clap::Error),
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

/// The argv form, as clap sees it: the `-o` items and the options.
#[derive(Debug, clap::Parser)]
#[command(
    name = "imapfs",
    version,
    about = "Mount an IMAP account as a directory tree of mailboxes, messages and MIME parts",
    after_help = AFTER_HELP,
    // The last occurrence of an option wins; `parse_args` relies on it to put argv over -o.
    args_override_self = true
)]
struct Argv {
    /// Options as NAME[=VALUE], comma separated (see below); may be repeated
    #[arg(short = 'o', value_name = "OPTION[,...]")]
    mount_options: Vec<String>,

    #[command(flatten)]
    options: Options,
}

/// Parses the whole command line. `args` starts with the program name, as
/// [`std::env::args_os`] does.
///
/// The `-o` items become the long options they name (see `mount_option_args`) and are
/// parsed in front of the rest of argv, so that with clap keeping the last occurrence an
/// option given as `--long-name` wins over the same option given with `-o`, and among
/// `-o` items the last one wins. Flags are on if given in either form.
pub fn parse_args<I, T>(args: I) -> Result<Options, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    parse_args_over(args, Vec::new())
}

/// [`parse_args`] with `defaults` (long options, as `--name=value`) taken as given before
/// everything in `args`, so that the command line, `-o` included, wins over them: the
/// options of an account from the config file.
pub fn parse_args_over<I, T>(args: I, defaults: Vec<OsString>) -> Result<Options, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mount_name = source_position(&args)
        .and_then(|i| args.get(i))
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let argv = parse_argv(&args)?;
    let mut command = Argv::command();
    command.build();
    let from_mount_options = mount_option_args(&command, &argv.mount_options)?;
    let mut options = if from_mount_options.is_empty() && defaults.is_empty() {
        argv.options
    } else {
        // Right after the program name, so that every option in argv comes later and wins.
        let program = args.iter().take(1);
        let merged = program
            .chain(&defaults)
            .chain(&from_mount_options)
            .chain(args.iter().skip(1))
            .cloned();
        parse_argv(merged)?.options
    };
    options.mount_name = mount_name;
    Ok(options)
}

/// Where SOURCE is in `args` (which start with the program name): the first argument that
/// is neither an option nor an option's value, as clap's declaration of the options says.
pub fn source_position(args: &[OsString]) -> Option<usize> {
    positionals(args).first().copied()
}

/// Where the arguments are in `args` (which start with the program name) that are neither
/// an option nor an option's value, as clap's declaration of the options says.
fn positionals(args: &[OsString]) -> Vec<usize> {
    let mut command = Argv::command();
    command.build();
    let takes_value = |arg: Option<&Arg>| arg.is_some_and(|a| a.get_action().takes_values());
    let mut found = Vec::new();
    let mut i = 1;
    while let Some(arg) = args.get(i) {
        let text = arg.to_string_lossy();
        if text == "--" {
            found.extend(i + 1..args.len());
            return found;
        }
        if let Some(long) = text.strip_prefix("--") {
            if !long.contains('=')
                && takes_value(command.get_arguments().find(|a| a.get_long() == Some(long)))
            {
                i += 1;
            }
        } else if let Some(shorts) = text.strip_prefix('-').filter(|s| !s.is_empty()) {
            for (at, short) in shorts.char_indices() {
                if takes_value(
                    command
                        .get_arguments()
                        .find(|a| a.get_short() == Some(short)),
                ) {
                    if at + short.len_utf8() == shorts.len() {
                        i += 1;
                    }
                    break;
                }
            }
        } else {
            found.push(i);
        }
        i += 1;
    }
    found
}

/// `imapfs prefetch [OPTIONS] SOURCE [MAILBOX...]`, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefetchArgs {
    /// The mount's command line for the same options and SOURCE (with `.` as a mount point
    /// that is never used), for [`crate::config::parse_command_line`].
    pub argv: Vec<OsString>,
    /// The mailboxes named, as paths of the mount (`Archive/2024`); none: every one.
    pub mailboxes: Vec<String>,
    /// `--headers-only`: listings and structures, no message content.
    pub headers_only: bool,
}

/// What `imapfs prefetch --help` prints.
pub const PREFETCH_USAGE: &str = "\
Fill the disk cache without mounting, for reading offline later.

Usage: imapfs prefetch [OPTIONS] SOURCE [MAILBOX...]

  SOURCE          as for a mount: imaps://USER@HOST[:PORT], or an account of the config file
  MAILBOX         a mailbox as the mount shows it (Archive/2024); none: every mailbox
  --headers-only  listings and structures only, no message content
  --connections N fetch over N connections at a time (default 4)

Every option of the mount about the server, the password, TLS and the disk cache
(--cache-dir, --disk-cache-size) applies. What is cached already is not fetched again,
so an interrupted prefetch resumes where it stopped.
";

/// Takes `imapfs prefetch ...` (`args` from the program name on, `prefetch` included)
/// apart: the first argument that is not an option is SOURCE, the others are mailboxes.
pub fn prefetch_args(args: &[OsString]) -> Result<PrefetchArgs, CliError> {
    let mut rest: Vec<OsString> = Vec::with_capacity(args.len());
    rest.extend(args.first().cloned());
    let mut headers_only = false;
    for arg in args.iter().skip(2) {
        if arg == "--headers-only" {
            headers_only = true;
        } else {
            rest.push(arg.clone());
        }
    }
    let at = positionals(&rest);
    let Some((&source, names)) = at.split_first() else {
        return Err(CliError::Source(
            "none given (imapfs prefetch [OPTIONS] SOURCE [MAILBOX...])".into(),
        ));
    };
    let mailboxes = names
        .iter()
        .map(|&i| {
            let name = rest[i].to_string_lossy();
            name.trim_matches('/').to_owned()
        })
        .collect();
    let mut argv: Vec<OsString> = rest
        .iter()
        .enumerate()
        .filter(|(i, _)| !names.contains(i))
        .map(|(_, a)| a.clone())
        .collect();
    // The mount point comes right after SOURCE (names were after it, so it stays put).
    argv.insert(source + 1, OsString::from("."));
    Ok(PrefetchArgs {
        argv,
        mailboxes,
        headers_only,
    })
}

/// Undoes the octal escapes fstab and /proc/mounts use in fields (`\040` for a space,
/// `\011`, `\012`, `\134`); anything else is kept as it is.
pub fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

/// Program names under which imapfs is a mount helper: mount(8) runs
/// `/sbin/mount.fuse.imapfs` for `-t fuse.imapsfs` lines (a symlink to imapfs installed
/// there finds imapfs by its absolute path, whatever PATH mount left).
pub const HELPER_NAMES: [&str; 2] = ["mount.fuse.imapfs", "mount.imapfs"];

/// What mount(8) asked of a helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperCall {
    /// `-f`: pretend, do nothing.
    Fake,
    /// imapfs's own arguments for the call.
    Mount(Vec<OsString>),
}

/// Turns a mount helper call, `mount.fuse.imapfs SOURCE DIR [-sfnv] [-o OPTIONS] [-t TYPE]`
/// ([mount(8)](https://man7.org/linux/man-pages/man8/mount.8.html), "external helpers"),
/// into imapfs's arguments: `-n` (no mtab), `-s` (sloppy), `-v` (verbose, which would
/// flood the journal with IMAP commands) and `-t` are mount's own and dropped; `-o` stays.
pub fn from_mount_helper(args: &[OsString]) -> HelperCall {
    let mut out: Vec<OsString> = args.iter().take(1).cloned().collect();
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-t" => {
                rest.next();
            }
            "-o" => {
                out.push(arg.clone());
                out.extend(rest.next().cloned());
            }
            _ if text.starts_with("-t") && text.len() > 2 => {}
            _ if text.starts_with("-o") => out.push(arg.clone()),
            _ if text.starts_with('-') && text.len() > 1 => {
                if text.contains('f') {
                    return HelperCall::Fake;
                }
            }
            _ => out.push(arg.clone()),
        }
    }
    HelperCall::Mount(out)
}

/// The command as clap declares it, for the man page and shell completions.
pub fn command() -> Command {
    Argv::command()
}

/// Runs clap over `args`.
fn parse_argv(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<Argv, CliError> {
    Argv::try_parse_from(args).map_err(from_clap)
}

/// clap's error as a [`CliError`], except that a bad SOURCE becomes [`CliError::Source`]:
/// clap's message would repeat the whole SOURCE, which might hold a password.
fn from_clap(err: clap::Error) -> CliError {
    let cause = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<CliError>());
    match cause {
        Some(CliError::Source(reason)) => CliError::Source(reason.clone()),
        _ => CliError::Clap(err),
    }
}

/// `-o` keys that are not a long name with underscores, and the long name they stand for.
const MOUNT_OPTION_ALIASES: &[(&str, &str)] = &[("ro", "read-only")];

/// Turns the `-o` items of `command` into the long options they name, in order:
/// `cache_size=1G` becomes `--cache-size=1G`, `debug` becomes `--debug` and `ro` becomes
/// `--read-only`; ignored mount options are dropped. Each item is checked here, on its own,
/// so that an error names the `-o` key as it was written.
fn mount_option_args(command: &Command, items: &[String]) -> Result<Vec<OsString>, CliError> {
    let mut args = Vec::new();
    for (key, value) in parse_mount_options(items)? {
        if option_named_by(command, &key).is_none()
            && (IGNORED_MOUNT_OPTIONS.contains(&key.as_str()) || key.starts_with("x-"))
        {
            continue;
        }
        args.push(named_option_arg(command, &key, value.as_deref())?);
    }
    Ok(args)
}

/// The long option that the option named `key` (its `-o` name) with `value` stands for:
/// `cache_size`, `1G` gives `--cache-size=1G`. The value is checked here, so that an error
/// names `key` as it was written. For the config file, which names options the same way.
pub fn option_arg(key: &str, value: Option<&str>) -> Result<OsString, CliError> {
    let mut command = Argv::command();
    command.build();
    named_option_arg(&command, key, value)
}

fn named_option_arg(
    command: &Command,
    key: &str,
    value: Option<&str>,
) -> Result<OsString, CliError> {
    let Some(arg) = option_named_by(command, key) else {
        return Err(unknown_mount_option(command, key));
    };
    let long = arg.get_long().unwrap_or_default();
    let wrong_form = |reason: String| CliError::MountOption {
        key: key.to_owned(),
        reason,
    };
    let item = match (arg.get_action().takes_values(), value) {
        (false, None) => format!("--{long}"),
        (false, Some(_)) => return Err(wrong_form("takes no value".to_owned())),
        (true, None) => return Err(wrong_form(format!("needs a value ({key}=VALUE)"))),
        (true, Some(value)) => {
            check_mount_option_value(arg, key, value)?;
            format!("--{long}={value}")
        }
    };
    Ok(OsString::from(item))
}

/// The option of `command` that the `-o` key `key` names: its long name with the dashes
/// written as underscores, or an alias. Help and version are not options.
fn option_named_by<'c>(command: &'c Command, key: &str) -> Option<&'c Arg> {
    if key.contains('-') {
        return None;
    }
    let long = match MOUNT_OPTION_ALIASES.iter().find(|(alias, _)| *alias == key) {
        Some((_, long)) => (*long).to_owned(),
        None => key.replace('_', "-"),
    };
    command.get_arguments().find(|arg| {
        arg.get_long() == Some(long.as_str())
            && !matches!(
                arg.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    })
}

/// Parses `value` with `arg`'s own value parser, alone, so that a bad value is reported
/// for the `-o` key it came with rather than for the long option it became.
fn check_mount_option_value(arg: &Arg, key: &str, value: &str) -> Result<(), CliError> {
    let long = arg.get_long().unwrap_or_default();
    let alone = Command::new("imapfs").arg(arg.clone());
    let Err(err) = alone.try_get_matches_from(["imapfs".to_owned(), format!("--{long}={value}")])
    else {
        return Ok(());
    };
    // A value parser's own message, else (for a fixed set of values) the choices.
    let reason = match std::error::Error::source(&err) {
        Some(cause) => cause.to_string(),
        None => {
            let values = arg.get_possible_values();
            let names: Vec<&str> = values
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(PossibleValue::get_name)
                .collect();
            format!("expected one of: {}", names.join(", "))
        }
    };
    Err(CliError::InvalidValue {
        option: format!("-o {key}"),
        value: value.to_owned(),
        reason,
    })
}

/// The error for an unrecognised `-o` key, with a hint where one helps.
fn unknown_mount_option(command: &Command, key: &str) -> CliError {
    let underscored = key.replace('-', "_");
    let reason = if underscored != key && option_named_by(command, &underscored).is_some() {
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

fn seconds_value(s: &str) -> Result<Duration, String> {
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
        // fstab writes a space in a value as \040 (and mount passes it on as written).
        let (key, value) = match piece.split_once('=') {
            Some((key, value)) => (key, Some(unescape_octal(value))),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn prefetch_takes_source_then_mailboxes_and_keeps_the_mount_options() {
        let got = prefetch_args(&os(&[
            "imapfs",
            "prefetch",
            "--ca-file",
            "ca.pem",
            "-o",
            "cache_dir=/c",
            "imaps://alice@example.com",
            "INBOX",
            "/Archive/2024/",
            "--headers-only",
        ]))
        .unwrap();
        assert_eq!(
            got.argv,
            os(&[
                "imapfs",
                "--ca-file",
                "ca.pem",
                "-o",
                "cache_dir=/c",
                "imaps://alice@example.com",
                "."
            ])
        );
        assert_eq!(got.mailboxes, ["INBOX", "Archive/2024"]);
        assert!(got.headers_only);
        let opts = parse_args(got.argv).unwrap();
        assert_eq!(
            opts.ca_file.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
        assert_eq!(opts.cache_dir.as_deref(), Some(std::path::Path::new("/c")));

        let all = prefetch_args(&os(&["imapfs", "prefetch", "work"])).unwrap();
        assert_eq!(all.argv, os(&["imapfs", "work", "."]));
        assert!(all.mailboxes.is_empty() && !all.headers_only);
        assert!(matches!(
            prefetch_args(&os(&["imapfs", "prefetch", "--timeout", "5"])),
            Err(CliError::Source(_))
        ));
    }
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
                poll_interval: Duration::from_secs(60),
                no_watch: false,
                keepalive: Duration::from_secs(120),
                delete: DeleteMode::Trash,
                trash: None,
                hide_virtual_folders: false,
                insecure: false,
                allow_plaintext: false,
                compress: CompressWhen::Auto,
                no_compress: false,
                allow_other: false,
                oauth2_token_command: None,
                auth: AuthMethod::Login,
                uid: None,
                gid: None,
                debug: false,
                verbose: 0,
                nonempty: false,
                mount_name: SOURCE.into(),
                log_file: None,
                spool_dir: None,
                cache_dir: None,
                disk_cache_size: 2 << 30,
                no_disk_cache: false,
                offline: false,
            }
        );
        // The defaults clap applies are the documented constants.
        assert_eq!(
            (o.cache_size, o.connections, o.timeout),
            (DEFAULT_CACHE_SIZE, DEFAULT_CONNECTIONS, DEFAULT_TIMEOUT)
        );
        assert_eq!(
            (o.poll_interval, o.keepalive),
            (DEFAULT_POLL_INTERVAL, DEFAULT_KEEPALIVE)
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
        (&["--poll-interval", "1"], "poll_interval=1", |o| {
            o.poll_interval == Duration::from_secs(1)
        }),
        (&["--no-watch"], "no_watch", |o| o.no_watch),
        (&["--keepalive", "2"], "keepalive=2", |o| {
            o.keepalive == Duration::from_secs(2)
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
        (&["--no-compress"], "no_compress", |o| o.no_compress),
        (&["--compress", "always"], "compress=always", |o| {
            o.compress == CompressWhen::Always
        }),
        (&["--compress", "never"], "compress=never", |o| {
            o.compress == CompressWhen::Never
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
        (&["--trash", "Deleted Items"], "trash=Deleted Items", |o| {
            o.trash.as_deref() == Some("Deleted Items")
        }),
        (&["--hide-virtual-folders"], "hide_virtual_folders", |o| {
            o.hide_virtual_folders
        }),
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
        let mut command = Argv::command();
        command.build();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                assert!(option_named_by(&command, long).is_none(), "-o {long}");
                continue;
            }
            let key = long.replace('-', "_");
            let named = option_named_by(&command, &key).map(Arg::get_id);
            assert_eq!(named, Some(arg.get_id()), "--{long} has no -o {key}");
        }
    }

    #[test]
    fn verbosity_counts_and_nonempty() {
        assert_eq!(ok(&[]).verbose, 0);
        assert_eq!(ok(&["-v"]).verbose, 1);
        assert_eq!(ok(&["-vv"]).verbose, 2);
        assert_eq!(ok(&["-v", "--verbose", "-o", "verbose"]).verbose, 3);
        assert!(ok(&["-o", "nonempty"]).nonempty);
    }

    #[test]
    fn octal_escapes_in_mount_option_values() {
        let o = ok(&[
            "-o",
            "password_command=pass\\040show\\040mail,x-systemd.after=a\\040b",
        ]);
        assert_eq!(o.password_command.as_deref(), Some("pass show mail"));
        assert_eq!(unescape_octal("a\\134b\\011c\\9d\\04"), "a\\b\tc\\9d\\04");
    }

    #[test]
    fn source_is_found_among_options_and_their_values() {
        let at = |args: &[&str]| {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            source_position(&args)
        };
        assert_eq!(at(&["imapfs", "work", "/mnt"]), Some(1));
        assert_eq!(at(&["imapfs", "-o", "ro", "work", "/mnt"]), Some(3));
        assert_eq!(at(&["imapfs", "-oro", "-f", "work"]), Some(3));
        assert_eq!(at(&["imapfs", "-fo", "ro", "work"]), Some(3));
        assert_eq!(at(&["imapfs", "--timeout", "5", "-vv", "work"]), Some(4));
        assert_eq!(at(&["imapfs", "--timeout=5", "--debug", "work"]), Some(3));
        assert_eq!(at(&["imapfs", "-f", "--", "-work"]), Some(3));
        assert_eq!(at(&["imapfs", "-f"]), None);
        let o = parse_args(["imapfs", "-o", "ro", SOURCE, "/m"]).unwrap();
        assert_eq!(o.mount_name, SOURCE);
    }

    #[test]
    fn defaults_from_a_config_file_lose_to_the_command_line() {
        let defaults = || {
            vec![
                OsString::from("--cache-size=1M"),
                OsString::from("--timeout=9"),
                OsString::from("--read-only"),
            ]
        };
        let args = ["imapfs", SOURCE, "/m", "-o", "cache_size=2M"];
        let o = parse_args_over(args, defaults()).unwrap();
        assert_eq!(o.cache_size, 2 << 20);
        assert_eq!(o.timeout, Duration::from_secs(9));
        assert!(o.read_only);
        let o = parse_args_over(["imapfs", SOURCE, "/m", "--timeout", "3"], defaults()).unwrap();
        assert_eq!(o.timeout, Duration::from_secs(3));
    }

    #[test]
    fn mount_helper_calls_become_imapfs_arguments() {
        let call = |args: &[&str]| {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            from_mount_helper(&args)
        };
        let mount = |args: &[&str]| HelperCall::Mount(args.iter().map(OsString::from).collect());
        assert_eq!(
            call(&[
                "/sbin/mount.fuse.imapfs",
                "work",
                "/m",
                "-o",
                "rw,_netdev",
                "-n",
                "-t",
                "fuse.imapfs"
            ]),
            mount(&["/sbin/mount.fuse.imapfs", "work", "/m", "-o", "rw,_netdev"])
        );
        assert_eq!(
            call(&[
                "mount.imapfs",
                "-sv",
                SOURCE,
                "/m",
                "-ouid=3",
                "-tfuse.imapfs"
            ]),
            mount(&["mount.imapfs", SOURCE, "/m", "-ouid=3"])
        );
        assert_eq!(
            call(&["mount.fuse.imapfs", "work", "/m", "-f"]),
            HelperCall::Fake
        );
        let HelperCall::Mount(args) = call(&["mount.fuse.imapfs", SOURCE, "/m", "-o", "rw,uid=5"])
        else {
            panic!()
        };
        assert_eq!(parse_args(args).unwrap().uid, Some(5));
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
        let o = ok(&["-o", "uid=1", "--uid", "2", "-o", "uid=3"]);
        assert_eq!(o.uid, Some(2));
    }

    #[test]
    fn last_mount_option_wins() {
        let o = ok(&["-o", "uid=1,uid=2", "-o", "uid=3"]);
        assert_eq!(o.uid, Some(3));
        let o = ok(&["-o", "delete=off", "-o", "delete=expunge,connections=2"]);
        assert_eq!((o.delete, o.connections), (DeleteMode::Expunge, 2));
    }

    #[test]
    fn last_long_option_wins() {
        let o = ok(&["--cache-size", "1M", "--cache-size=3M", "--auth", "plain"]);
        assert_eq!((o.cache_size, o.auth), (3 << 20, AuthMethod::Plain));
    }

    #[test]
    fn a_flag_may_be_given_twice_in_either_form() {
        let o = ok(&[
            "-o",
            "debug,ro",
            "--debug",
            "--read-only",
            "-o",
            "read_only",
        ]);
        assert!(o.debug && o.read_only);
        assert!(ok(&["-f", "--foreground", "-o", "foreground"]).foreground);
    }

    #[test]
    fn mount_options_name_only_options() {
        for key in [
            "help",
            "version",
            "h",
            "f",
            "o",
            "source",
            "mountpoint",
            "mount_options",
        ] {
            assert_eq!(
                err(&["-o", key]),
                format!("-o {key}: unknown mount option"),
                "-o {key}"
            );
        }
        assert_eq!(err(&["-o", "ro=1"]), "-o ro: takes no value");
        assert_eq!(
            err(&["-o", "read-only"]),
            "-o read-only: unknown mount option; -o names use underscores: read_only"
        );
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
            &["--poll-interval", "0"],
            &["--poll-interval", "86401"],
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
        // clap parses SOURCE, but its error (which quotes the value) is not the one returned.
        let args = ["imapfs", "-o", "ro", "imaps://alice:hunter2@h", "/mnt"];
        assert!(matches!(parse_args(args), Err(CliError::Source(_))));
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
        assert!(matches!(
            parse(&["--auth", "XOAUTH2"]),
            Err(CliError::Clap(_))
        ));
        assert_eq!(
            err(&["-o", "auth=XOAUTH2"]),
            "invalid value 'XOAUTH2' for -o auth: \
             expected one of: login, plain, xoauth2, oauthbearer"
        );
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
