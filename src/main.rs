//! The `imapfs` command: parse the command line, set up logging, run.

use std::process::ExitCode;

use imapfs::cli::{self, CliError};

fn init_logging(opts: &cli::Options) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let default = if opts.debug {
        "imapfs=debug"
    } else {
        "imapfs=info"
    };
    let filter = EnvFilter::try_from_env("IMAPFS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
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
        None => builder.with_writer(std::io::stderr).init(),
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

fn main() -> ExitCode {
    let opts = match cli::parse_args(std::env::args_os()) {
        Ok(opts) => opts,
        Err(CliError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("imapfs: {e}");
            return ExitCode::from(2);
        }
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
