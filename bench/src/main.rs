//! `imapfs-bench`: measures imapfs against the IMAP protocol floor, mbsync and grep over a
//! local Maildir, on loopback and on a slow link, and writes one table (stdout and a file).
//!
//! It builds nothing; `scripts/bench.sh` installs what is missing, builds imapfs and this
//! driver in release mode and runs it. Must run as root (Dovecot and FUSE).

mod cpu;
mod fuse_probe;
mod mbsync;
mod mount;
mod process;
mod raw_imap;
mod report;
mod server;
mod stats;
mod suite;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::Parser;

/// Benchmark imapfs against the IMAP protocol floor, mbsync and grep over a Maildir.
#[derive(Parser, Debug)]
#[command(name = "imapfs-bench", version)]
struct Args {
    /// Generated messages in the mailbox (plus one with a 10 MB attachment) [default: 10000, --quick: 500].
    #[arg(long, value_name = "N")]
    messages: Option<usize>,
    /// Runs per row; each row reports the median [default: 3, --quick: 1].
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,
    /// A quick check: 500 messages, 1,000 in Walk, 1 run (explicit --messages/--runs/--walk-messages still win).
    #[arg(long)]
    quick: bool,
    /// Where to write the table (Markdown).
    #[arg(long, value_name = "PATH", default_value = "bench/RESULTS.md")]
    out: PathBuf,
    /// Seed of the generated corpus.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Average size of a generated message, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 25_000)]
    avg_size: usize,
    /// What the greps look for (matches the subjects of the first ten messages).
    #[arg(long, default_value = "bulk-0000")]
    word: String,
    /// Delay of the slow link in each direction, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 25)]
    delay_ms: u64,
    /// Bandwidth of the slow link in each direction, bytes per second (10 Mbit/s).
    #[arg(long, value_name = "BYTES", default_value_t = 1_250_000)]
    bandwidth: u64,
    /// --cache-size for the grep mounts [default: the corpus plus a quarter, in 64 MiB steps].
    #[arg(long, value_name = "BYTES")]
    grep_cache: Option<u64>,
    /// --cache-size for the extra cold grep that checks the memory bound under eviction.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    small_cache: u64,
    /// Small generated messages in the mailbox the forget row walks (`Walk`) [default: 20000, --quick: 1000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    walk_messages: Option<u64>,
    /// --cache-size of the forget row's second mount, which keeps the caches out of its figures.
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    walk_cache: u64,
    /// Messages in the Search mailbox of the search rows (plus 5 that hold the word searched) [default: 2000, --quick: 200].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    search_messages: Option<u64>,
    /// Measure only these groups of rows (comma separated), e.g. `--only prefetch,remount`;
    /// rows that compare with another group's show a ratio only if it ran too.
    #[arg(long, value_name = "GROUP", value_enum, value_delimiter = ',')]
    only: Vec<suite::Group>,
    /// The imapfs binary [default: `imapfs` beside this program].
    #[arg(long, value_name = "PATH")]
    imapfs: Option<PathBuf>,
    /// An empty directory for the server, the Maildirs and the mountpoint (path at most 50
    /// bytes) [default: a new one under /tmp]. Its contents are removed afterwards.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Keep imapfs's logs here (set IMAPFS_LOG=imapfs=debug for detail).
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// The command line to record in the results [default: $BENCH_COMMAND, else this one].
    #[arg(long, value_name = "TEXT")]
    command: Option<String>,
    /// Measure only the live-update rows (11a, 11b), print them, and write nothing.
    #[arg(long)]
    live_only: bool,
    /// Internal: print the seconds of one fstat of PATH (the FUSE round-trip probe) and exit.
    #[arg(long, value_name = "PATH", hide = true)]
    fuse_probe: Option<PathBuf>,
}

/// The scratch directory: made here (and removed) or given (emptied afterwards).
enum WorkDir {
    Made(tempfile::TempDir),
    Given(PathBuf),
}

impl WorkDir {
    fn new(given: Option<&Path>) -> io::Result<WorkDir> {
        let work = match given {
            Some(dir) => {
                fs::create_dir_all(dir)?;
                if fs::read_dir(dir)?.next().is_some() {
                    return Err(io::Error::other(format!(
                        "--work-dir {} is not empty",
                        dir.display()
                    )));
                }
                WorkDir::Given(fs::canonicalize(dir)?)
            }
            None => WorkDir::Made(
                tempfile::Builder::new()
                    .prefix("imapfs-bench.")
                    .tempdir_in("/tmp")?,
            ),
        };
        // Dovecot's unprivileged processes must reach the server directory inside.
        fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755))?;
        if work.path().as_os_str().len() > 50 {
            return Err(io::Error::other(format!(
                "work directory {} is too long for Dovecot's sockets (at most 50 bytes)",
                work.path().display()
            )));
        }
        Ok(work)
    }

    fn path(&self) -> &Path {
        match self {
            WorkDir::Made(t) => t.path(),
            WorkDir::Given(p) => p,
        }
    }

    /// Removes the contents, unless something is still mounted inside (removing through a
    /// live imapfs mount would move real messages to Trash).
    fn clean(self) {
        let mounted = mount::mounts_under(self.path());
        if !mounted.is_empty() {
            eprintln!(
                "imapfs-bench: {} is still mounted; leaving {} in place",
                mounted[0].display(),
                self.path().display()
            );
            if let WorkDir::Made(t) = self {
                let _ = t.keep();
            }
            return;
        }
        if let WorkDir::Given(dir) = &self {
            if let Ok(entries) = fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = if path.is_dir() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                }
            }
        }
    }
}

fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().next()?.trim().to_string();
    (output.status.success() && !line.is_empty()).then_some(line)
}

/// `commit abc1234`, noting uncommitted changes to the code measured. Read-only git commands
/// (no optional locks), so a concurrent commit is never disturbed.
fn commit() -> String {
    let Some(head) = first_line("git", &["rev-parse", "--short", "HEAD"]) else {
        return "(commit unknown)".into();
    };
    let changed = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no", "--"])
        .args(["src", "fixture", "Cargo.toml", "Cargo.lock"])
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if changed {
        format!("commit {head} plus uncommitted changes in src/ or fixture/")
    } else {
        format!("commit {head}")
    }
}

fn proc_field(file: &str, key: &str) -> Option<String> {
    let text = fs::read_to_string(file).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn machine(args: &Args, imapfs: &Path) -> report::Machine {
    let command = args
        .command
        .clone()
        .or_else(|| std::env::var("BENCH_COMMAND").ok())
        .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    let memory = proc_field("/proc/meminfo", "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or_else(
            || "unknown".into(),
            |kb| format!("{:.1} GiB", kb as f64 / (1u64 << 20) as f64),
        );
    report::Machine {
        date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
        uname: first_line("uname", &["-srm"]).unwrap_or_default(),
        cpu: proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into()),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory,
        command,
        commit: commit(),
        versions: suite::versions(imapfs),
    }
}

fn run(args: &Args, work: &Path) -> io::Result<()> {
    let imapfs = match &args.imapfs {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|dir| dir.join("imapfs"))
            .ok_or_else(|| io::Error::other("cannot locate the imapfs binary"))?,
    };
    if !imapfs.is_file() {
        return Err(io::Error::other(format!(
            "{} not found; build it (cargo build --release -p imapfs) or pass --imapfs",
            imapfs.display()
        )));
    }
    let config = suite::Config {
        messages: args
            .messages
            .unwrap_or(if args.quick { 500 } else { 10_000 }),
        runs: args
            .runs
            .map_or(if args.quick { 1 } else { 3 }, |r| r as usize),
        seed: args.seed,
        avg_size: args.avg_size,
        word: args.word.clone(),
        delay_each_way: Duration::from_millis(args.delay_ms),
        bandwidth: args.bandwidth.max(1),
        grep_cache: args.grep_cache,
        small_cache: args.small_cache,
        walk_messages: args
            .walk_messages
            .map_or(if args.quick { 1_000 } else { 20_000 }, |n| n as usize),
        walk_cache: args.walk_cache,
        imapfs: imapfs.clone(),
        work: work.to_path_buf(),
        log_dir: args.log_dir.clone(),
        live_only: args.live_only,
        search_messages: args
            .search_messages
            .map_or(if args.quick { 200 } else { 2_000 }, |n| n as usize),
        only: args.only.clone(),
    };
    let machine = machine(args, &imapfs);
    let results = suite::run(&config)?;
    if config.live_only {
        print!("{}", report::render_live(&config, &results));
        for (row, why) in &results.wrong {
            eprintln!("imapfs-bench: WRONG RESULT ({row}): {why}");
        }
        return Ok(());
    }
    let text = report::render(&config, &machine, &results);
    print!("{text}");
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    fs::write(&args.out, &text)?;
    eprintln!("imapfs-bench: written to {}", args.out.display());
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.fuse_probe {
        return match fuse_probe::fstat_seconds(path, 2000) {
            Ok(seconds) => {
                println!("{seconds}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("imapfs-bench: fuse probe of {}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = process::install_signal_thread() {
        eprintln!("imapfs-bench: cannot handle signals: {e}");
        return ExitCode::FAILURE;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("imapfs-bench: must run as root (it starts Dovecot and mounts FUSE)");
        return ExitCode::FAILURE;
    }
    let work = match WorkDir::new(args.work_dir.as_deref()) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("imapfs-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = run(&args, work.path());
    work.clean();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if process::interrupted() => {
            eprintln!("imapfs-bench: interrupted; everything it started is stopped");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("imapfs-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
