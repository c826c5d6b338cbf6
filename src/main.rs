//! The `imapfs` command: parse the command line (with the config file), set up logging, run.
//! `imapfs --generate man|bash|zsh|fish` prints the man page or a shell completion script
//! made from the same clap declaration (for `scripts/install.sh`; not shown in `--help`).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;

use imapfs::cli::{self, CliError};
use imapfs::config::{self, ConfigError};

/// The log filter for the verbosity asked for, unless `IMAPFS_LOG` gives one: warnings and
/// errors; `-v` what the mount changes and reconnects; `-vv` (or `--debug`) every IMAP
/// command, with secrets hidden; `-vvv` everything.
fn default_filter(opts: &cli::Options) -> &'static str {
    let level = if opts.debug {
        opts.verbose.max(2)
    } else {
        opts.verbose
    };
    match level {
        0 => "imapfs=warn",
        1 => "imapfs=info",
        2 => "imapfs=debug",
        _ => "imapfs=trace",
    }
}

fn init_logging(opts: &cli::Options) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("IMAPFS_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default_filter(opts)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match &opts.log_file {
        Some(path) => {
            // Mailbox and file names are private: the log is the user's alone.
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        // Colour only for a person at a terminal: never in a file, a pipe or the journal.
        None => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}

/// Panics go to the log too (a detached imapfs has no stderr to read), with the thread.
fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        tracing::error!(thread = thread.name().unwrap_or("unnamed"), "panic: {info}");
        default(info);
    }));
}

/// `imapfs --generate WHAT`: the man page or a completion script on standard output.
fn generate(what: &str) -> ExitCode {
    use clap_complete::Shell;
    let mut command = cli::command();
    let mut out = std::io::stdout().lock();
    let shell = match what {
        "man" => {
            return match clap_mangen::Man::new(command).render(&mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("imapfs: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => {
            eprintln!("imapfs: --generate takes man, bash, zsh or fish, not '{other}'");
            return ExitCode::from(2);
        }
    };
    clap_complete::generate(shell, &mut command, "imapfs", &mut out);
    ExitCode::SUCCESS
}

/// `imapfs prefetch [OPTIONS] SOURCE [MAILBOX...]`.
fn prefetch(args: &[OsString]) -> ExitCode {
    if args.iter().skip(2).any(|a| a == "--help" || a == "-h") {
        print!("{}", cli::PREFETCH_USAGE);
        return ExitCode::SUCCESS;
    }
    let request = match cli::prefetch_args(args) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("imapfs prefetch: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(opts) = parsed(request.argv) else {
        return ExitCode::from(2);
    };
    if let Err(e) = init_logging(&opts) {
        eprintln!("imapfs: {e}");
        return ExitCode::from(2);
    }
    log_panics();
    let depth = if request.headers_only {
        imapfs::fs::prefetch::Depth::Headers
    } else {
        imapfs::fs::prefetch::Depth::Everything
    };
    match imapfs::run::prefetch(&opts, &request.mailboxes, depth) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imapfs prefetch: {e}");
            ExitCode::from(1)
        }
    }
}

/// The options of a command line (with the config file's account, and its password handed
/// over), or `None` after the error is printed.
fn parsed(args: Vec<OsString>) -> Option<cli::Options> {
    let invocation = match config::parse_command_line(args) {
        Ok(invocation) => invocation,
        Err(ConfigError::Cli(CliError::Clap(e))) => e.exit(),
        Err(e) => {
            eprintln!("imapfs: {e}");
            return None;
        }
    };
    if let Some(mut password) = invocation.password {
        // The file's password comes after --password-command and IMAPFS_PASSWORD; handed
        // over as IMAPFS_PASSWORD, it is erased from the environment once read.
        if invocation.options.password_command.is_none()
            && std::env::var_os("IMAPFS_PASSWORD").is_none()
        {
            std::env::set_var("IMAPFS_PASSWORD", &password);
        }
        config::wipe(&mut password);
    }
    Some(invocation.options)
}

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let program = args
        .first()
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let as_helper = program
        .file_name()
        .is_some_and(|name| cli::HELPER_NAMES.iter().any(|h| name == *h));
    if as_helper {
        match cli::from_mount_helper(&args) {
            cli::HelperCall::Fake => return ExitCode::SUCCESS,
            cli::HelperCall::Mount(own) => args = own,
        }
    }
    if !as_helper && args.get(1).is_some_and(|a| a == "prefetch") {
        return prefetch(&args);
    }
    if args.get(1).is_some_and(|a| a == "--generate") {
        let what = args.get(2).map(|a| a.to_string_lossy().into_owned());
        return generate(what.as_deref().unwrap_or_default());
    }
    let Some(opts) = parsed(args) else {
        return ExitCode::from(2);
    };
    if let Err(e) = init_logging(&opts) {
        eprintln!("imapfs: {e}");
        return ExitCode::from(2);
    }
    log_panics();
    match imapfs::run::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imapfs: {e}");
            ExitCode::from(1)
        }
    }
}
