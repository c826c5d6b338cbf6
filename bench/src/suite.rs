//! The measurement plan: set up the server, then in each run measure every row once, side by
//! side, so that a noisy moment hits all rows alike.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

mod cache_rows;
mod forget;
mod fuse_reference;
mod imapfs_rows;
mod live;
mod references;
mod search_rows;

use fixture::proxy::{Proxy, ProxyOptions};
use fixture::Dovecot;

use crate::cpu;
use crate::mbsync::{self, Account, Mbsync};
use crate::mount::{Mount, MountOptions};
use crate::process;
use crate::raw_imap::RawImap;
use crate::server::{self, Corpus, MAILBOX, USER, WALK_AVG_SIZE, WALK_MAILBOX};

pub use self::forget::{Forget, ListingPeak, FORGET_TARGET, LISTING_PEAK_TARGET};
pub use self::fuse_reference::BINDFS_OPTIONS;
use self::fuse_reference::{find_program, link_tree};
use crate::stats::{Sample, Series};

/// The command whose time and bytes are the protocol floor.
pub const FLOOR_COMMAND: &str = "UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)";
/// R11: every message whole in one command, the wire's floor for a cold grep.
pub const BULK_COMMAND: &str = "UID FETCH 1:* (BODY.PEEK[])";

/// What to measure and how.
#[derive(Debug, Clone)]
pub struct Config {
    pub messages: usize,
    pub runs: usize,
    pub seed: u64,
    pub avg_size: usize,
    /// What the greps look for.
    pub word: String,
    /// The slow link's delay in each direction.
    pub delay_each_way: Duration,
    /// The slow link's bandwidth in each direction, bytes per second.
    pub bandwidth: u64,
    /// `--cache-size` for the grep mounts; `None`: large enough for the whole corpus.
    pub grep_cache: Option<u64>,
    /// `--cache-size` of the extra cold grep that checks the memory bound under eviction.
    pub small_cache: u64,
    /// Messages in the mailbox the forget row walks.
    pub walk_messages: usize,
    /// `--cache-size` of the forget row's second mount (6b).
    pub walk_cache: u64,
    pub imapfs: PathBuf,
    /// Scratch space: the server, the mbsync Maildirs, the mountpoint.
    pub work: PathBuf,
    /// Where to keep imapfs's logs (`None`: not kept).
    pub log_dir: Option<PathBuf>,
    /// Measure the live-update rows (11a, 11b) alone.
    pub live_only: bool,
    /// Messages in the Search mailbox (plus the few that hold the search word).
    pub search_messages: usize,
    /// The groups of rows to measure; empty: all.
    pub only: Vec<Group>,
}

/// A group of rows, to measure some alone (`--only`) while working on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// R1, R5: the protocol floor on loopback and on the slow link.
    Floor,
    /// R2, R3: mbsync with and without compression (and the mbsync command count).
    Mbsync,
    /// R4, R6: grep over the Maildir, and through bindfs.
    Maildir,
    /// 1, 2, 4a, 4b: cold `ls -l` and `body.txt` reads, loopback and slow link.
    Ls,
    /// 3a, 3b, 5a, 5b: cold and warm grep, and the small-cache grep.
    Grep,
    /// 6a, 6b: `find` then drop_caches.
    Forget,
    /// 7: `imapfs prefetch` against mbsync.
    Prefetch,
    /// 8: a warm remount with the disk cache.
    Remount,
    /// 9: `.search` against `grep -rl` on the slow link.
    Search,
    /// 10: the same operations without compression, and prefetch over the slow link.
    Compress,
    /// 11: live updates (one APPEND elsewhere until visible; a second `ls -l`).
    Live,
}

impl Config {
    /// Whether `group` is measured.
    pub fn wants(&self, group: Group) -> bool {
        self.only.is_empty() || self.only.contains(&group)
    }
}

/// Round-trip times measured with NOOP, to show what the proxies add.
#[derive(Debug, Clone, Copy, Default)]
pub struct Calibration {
    pub direct_us: f64,
    pub loopback_proxy_us: f64,
    pub slow_proxy_ms: f64,
    /// One FUSE request and its answer (fstat through bindfs with attr_timeout=0), caller
    /// and daemon on the same CPU and on different CPUs, if bindfs is installed.
    pub fuse_roundtrip_us: Option<(f64, Option<f64>)>,
}

/// Everything measured.
#[derive(Debug, Default)]
pub struct Results {
    pub config_grep_cache: u64,
    pub corpus_messages: usize,
    pub corpus_bytes: u64,
    pub walk_messages: usize,
    pub walk_bytes: u64,
    pub large_bytes: u64,
    pub large_part_bytes: u64,
    pub fill_seconds: f64,
    pub calibration: Calibration,
    pub floor: Series,
    /// R11: every message in one `UID FETCH 1:* (BODY.PEEK[])`, loopback, uncompressed.
    pub bulk_fetch: Series,
    pub mbsync_deflate: Series,
    pub mbsync_plain: Series,
    pub grep_maildir: Series,
    /// The warm grep through a FUSE passthrough (bindfs) over the same tree shape.
    pub fuse_reference: Series,
    /// 7e: a cold grep over Search on a mount with a disk cache, alone and while INBOX is
    /// prefetched in the background.
    pub grep_without_prefetch: Series,
    pub grep_beside_prefetch: Series,
    /// What `getfattr -n user.imapfs.prefetch INBOX` said when the last 7e grep ended.
    pub prefetch_state_after_grep: String,
    /// R6b: the first grep through bindfs, on a fresh mount.
    pub fuse_reference_fresh: Series,
    /// Why the FUSE reference was not measured, if it was not.
    pub fuse_reference_missing: Option<String>,
    pub ls_cold: Series,
    pub body_large: Series,
    pub grep_cold: Series,
    pub grep_warm: Series,
    /// A read-only mount without compression: cold grep, then warm grep (3f, 3g).
    pub grep_cold_read_only: Series,
    pub grep_warm_read_only: Series,
    pub floor_slow: Series,
    pub ls_slow: Series,
    pub body_slow: Series,
    /// Peak RSS of each grep mount (cold then warm grep).
    pub rss_grep: Vec<u64>,
    pub grep_small: Series,
    pub rss_small: Vec<u64>,
    /// `find` over the Walk mailbox and RSS until after drop_caches: default mount options
    /// (6a), then with a small cache (6b).
    pub forget: Option<Forget>,
    pub forget_small_cache: Option<Forget>,
    /// A cold `ls -l` of the Walk mailbox and the peak RSS it reached (6c).
    pub listing_peak: Option<ListingPeak>,
    /// One APPEND by another client until it shows through a mount (loopback).
    pub live_append: Series,
    /// A second `ls -l` of the unchanged, followed mailbox, slow link.
    pub live_ls_again: Series,
    /// `ls -l` of as many local directories (what `ls -l` itself costs).
    pub live_ls_local: Series,
    /// Files the greps reported: (over the Maildir, over imapfs).
    pub grep_matches: (usize, usize),
    pub search_messages: usize,
    pub search_bytes: u64,
    /// `imapfs prefetch INBOX` into an empty disk cache, with and without compression.
    pub prefetch_deflate: Series,
    pub prefetch_plain: Series,
    /// The first mount with a disk cache: cold grep, then warm grep.
    pub remount_first_cold: Series,
    pub remount_first_warm: Series,
    /// The mount after it with the same disk cache: `ls -l`, then grep.
    pub remount_ls: Series,
    pub remount_grep: Series,
    /// Slow link, fresh mounts: `ls .search/body:WORD`, and `grep -rl WORD`.
    pub search_ls: Series,
    pub search_grep: Series,
    /// Without compression: the cold grep of 3a (as many runs as the rest), the slow grep
    /// of 9b (1 run); and
    /// `imapfs prefetch` of the Search mailbox over the slow link, with and without.
    pub grep_cold_plain: Series,
    pub search_grep_plain: Series,
    pub slow_prefetch_deflate: Series,
    pub slow_prefetch_plain: Series,
    /// Rows whose output was wrong, with why.
    pub wrong: Vec<(&'static str, String)>,
    /// What went wrong around a measurement without making it wrong.
    pub notes: Vec<String>,
    pub total_seconds: f64,
    /// `/proc/loadavg` (1, 5, 15 minutes) before and after, to show how busy the machine was.
    pub load_before: String,
    pub load_after: String,
}

impl Results {
    /// Unmounts a mount whose measurement is complete: a daemon slow to exit (over the
    /// slow link, a fetch still under way) is noted in the report, not fatal to the rest.
    fn unmount_measured(&mut self, mount: Mount, what: &str) {
        if let Err(e) = mount.unmount() {
            eprintln!("imapfs-bench: {what}: {e}");
            self.notes.push(format!("{what}: {e}"));
        }
    }

    /// Marks `row` wrong if its grep over imapfs found another number of files than
    /// grep over the Maildir.
    fn check_against_maildir(&mut self, row: &'static str, got: usize) {
        let want = self.grep_matches.0;
        if got != want {
            self.wrong(
                row,
                format!("grep over imapfs found {got} files, over the Maildir {want}"),
            );
        }
    }

    fn wrong(&mut self, row: &'static str, why: String) {
        eprintln!("imapfs-bench: WRONG RESULT ({row}): {why}");
        if !self.wrong.iter().any(|(r, w)| *r == row && *w == why) {
            self.wrong.push((row, why));
        }
    }
}

fn progress(text: &str) {
    eprintln!("imapfs-bench: {text}");
}

/// Bytes from the server once the proxy has forwarded everything in flight.
fn settled_bytes(proxy: &Proxy) -> u64 {
    let mut last = proxy.bytes_from_server();
    loop {
        thread::sleep(Duration::from_millis(20));
        let now = proxy.bytes_from_server();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn lines_of(path: &Path) -> io::Result<Vec<String>> {
    BufReader::new(File::open(path)?).lines().collect()
}

struct Bench<'a> {
    config: &'a Config,
    dovecot: Dovecot,
    corpus: Corpus,
    ca_pem: Vec<u8>,
    loopback: Proxy,
    slow: Proxy,
    mbsync_deflate: Mbsync,
    mbsync_plain: Mbsync,
    grep_cache: u64,
    mounts: usize,
    /// Dovecot's master, whose process group is the whole server.
    dovecot_master: Option<u32>,
    /// `bindfs` and the tree it serves for the FUSE reference, when bindfs is installed.
    fuse_reference: Option<(PathBuf, PathBuf)>,
}

/// Runs the whole plan.
pub fn run(config: &Config) -> io::Result<Results> {
    let started = Instant::now();
    let mut results = Results {
        load_before: load_average(),
        ..Results::default()
    };
    let mut bench = Bench::set_up(config)?;
    results.corpus_messages = bench.corpus.messages;
    results.corpus_bytes = bench.corpus.total_bytes;
    results.walk_messages = bench.corpus.walk_messages;
    results.walk_bytes = bench.corpus.walk_bytes;
    results.large_bytes = bench.corpus.large_bytes;
    results.large_part_bytes = bench.corpus.large_body.len() as u64;
    results.fill_seconds = bench.corpus.fill_seconds;
    results.search_messages = bench.corpus.search_messages;
    results.search_bytes = bench.corpus.search_bytes;
    results.config_grep_cache = bench.grep_cache;
    if bench.fuse_reference.is_none() {
        results.fuse_reference_missing = Some("bindfs is not installed".into());
    }
    results.calibration = bench.calibrate()?;

    if config.live_only {
        for run in 1..=config.runs {
            progress(&format!("live rows, run {run} of {}", config.runs));
            bench.imapfs_live(&mut results)?;
        }
        results.total_seconds = started.elapsed().as_secs_f64();
        results.load_after = load_average();
        return Ok(results);
    }
    for run in 1..=config.runs {
        progress(&format!("run {run} of {}", config.runs));
        bench.run_once(&mut results)?;
    }
    if config.wants(Group::Grep) {
        progress("extra cold grep with a small cache (1 run)");
        bench.grep_small_cache(&mut results)?;
    }
    if config.wants(Group::Compress) {
        progress("without compression, and prefetch over the slow link");
        bench.without_compression(&mut results)?;
    }
    // Last: drop_caches empties the dentry and inode caches of the whole machine.
    if config.wants(Group::Forget) {
        progress("listing peak: ls -l of Walk on a fresh mount (1 run)");
        results.listing_peak = Some(bench.listing_peak(&mut results)?);
        progress("forget: find over Walk, then drop_caches (1 run each, default and small cache)");
        results.forget = Some(bench.forget_after_walk(None, &mut results)?);
        results.forget_small_cache =
            Some(bench.forget_after_walk(Some(config.walk_cache), &mut results)?);
    }
    if config.wants(Group::Mbsync) {
        progress("counting mbsync's commands (mbsync -Dn, untimed)");
        let n = bench.corpus.messages;
        results
            .mbsync_deflate
            .set_commands(bench.mbsync_deflate.count_commands(n)?);
        results
            .mbsync_plain
            .set_commands(bench.mbsync_plain.count_commands(n)?);
    }
    results.total_seconds = started.elapsed().as_secs_f64();
    results.load_after = load_average();
    Ok(results)
}

impl<'a> Bench<'a> {
    fn set_up(config: &'a Config) -> io::Result<Bench<'a>> {
        progress("starting Dovecot");
        let dovecot = server::start(&config.work.join("server"))?;
        progress(&format!(
            "filling INBOX with {} messages of about {} bytes (seed {}) and one with a 10 MB \
             attachment, and {WALK_MAILBOX} with {} of about {WALK_AVG_SIZE} bytes",
            config.messages, config.avg_size, config.seed, config.walk_messages
        ));
        let corpus = server::fill(
            &dovecot,
            config.messages,
            config.walk_messages,
            config.search_messages,
            config.seed,
            config.avg_size,
        )?;
        process::check()?;
        progress(&format!(
            "corpus: {} messages, {} bytes; {WALK_MAILBOX}: {} messages, {} bytes; warming the \
             server up",
            corpus.messages, corpus.total_bytes, corpus.walk_messages, corpus.walk_bytes
        ));
        server::warm_up(&dovecot)?;
        let loopback = Proxy::start(dovecot.imaps_addr(), ProxyOptions::default())?;
        let slow = Proxy::start(
            dovecot.imaps_addr(),
            ProxyOptions {
                delay_each_way: config.delay_each_way,
                bandwidth_bytes_per_sec: Some(config.bandwidth),
            },
        )?;
        let trust = server::write_trust_file(&dovecot, &config.work.join("trust.pem"))?;
        let account = |compress| Account {
            port: loopback.port(),
            user: USER,
            password: dovecot.password(USER),
            trust_file: &trust,
            compress,
        };
        let mbsync_deflate = Mbsync::new(&config.work.join("mbsync-deflate"), &account(true))?;
        let mbsync_plain = Mbsync::new(&config.work.join("mbsync-plain"), &account(false))?;
        let grep_cache = config.grep_cache.unwrap_or_else(|| {
            // The whole corpus plus a quarter, in whole 64 MiB steps.
            let step = 64 << 20;
            (corpus.total_bytes + corpus.total_bytes / 4).div_ceil(step) * step
        });
        let ca_pem = fs::read(dovecot.ca_file())?;
        let fuse_reference = match find_program("bindfs") {
            Some(bindfs) => {
                let tree = config.work.join("tree");
                link_tree(&dovecot.maildir(USER), &tree.join(MAILBOX))?;
                Some((bindfs, tree))
            }
            None => None,
        };
        Ok(Bench {
            fuse_reference,
            config,
            corpus,
            ca_pem,
            loopback,
            slow,
            mbsync_deflate,
            mbsync_plain,
            grep_cache,
            mounts: 0,
            dovecot_master: cpu::pid_file(&dovecot.dir().join("run/master.pid")),
            dovecot,
        })
    }

    fn mailbox_dir(mount: &Mount) -> PathBuf {
        mount.path().join(MAILBOX)
    }

    fn scratch(&self, name: &str) -> PathBuf {
        self.config.work.join(name)
    }

    fn mount(&mut self, proxy_port: u16, cache_size: Option<u64>) -> io::Result<Mount> {
        self.mount_with(proxy_port, cache_size, None, false)
    }

    /// A mount with a disk cache in `cache_dir` (`None`: none), and without compression if
    /// `no_compress`.
    fn mount_with(
        &mut self,
        proxy_port: u16,
        cache_size: Option<u64>,
        cache_dir: Option<&Path>,
        no_compress: bool,
    ) -> io::Result<Mount> {
        self.mount_full(proxy_port, cache_size, cache_dir, no_compress, false)
    }

    /// A read-only mount without a disk cache or compression.
    fn mount_read_only(&mut self, proxy_port: u16, cache_size: Option<u64>) -> io::Result<Mount> {
        self.mount_full(proxy_port, cache_size, None, true, true)
    }

    fn mount_full(
        &mut self,
        proxy_port: u16,
        cache_size: Option<u64>,
        cache_dir: Option<&Path>,
        no_compress: bool,
        read_only: bool,
    ) -> io::Result<Mount> {
        self.mounts += 1;
        let log_file = match &self.config.log_dir {
            Some(dir) => {
                fs::create_dir_all(dir)?;
                Some(dir.join(format!("imapfs-{:03}.log", self.mounts)))
            }
            None => None,
        };
        Mount::start(&MountOptions {
            imapfs: &self.config.imapfs,
            source: format!("imaps://{USER}@127.0.0.1:{proxy_port}"),
            ca_file: self.dovecot.ca_file(),
            password: self.dovecot.password(USER),
            mountpoint: &self.scratch("mnt"),
            spool_dir: &self.scratch("spool"),
            cache_size,
            log_file,
            cache_dir,
            no_compress,
            read_only,
        })
    }

    /// A logged-in session through `addr` with the mailbox examined.
    fn raw_session(&self, addr: std::net::SocketAddr) -> io::Result<RawImap> {
        let mut session = RawImap::connect(addr, &self.ca_pem)?;
        session.login(USER, self.dovecot.password(USER))?;
        session.run(&format!("EXAMINE {MAILBOX}"))?;
        Ok(session)
    }

    fn calibrate(&self) -> io::Result<Calibration> {
        let mean_noop = |addr, count: u32| -> io::Result<f64> {
            let mut session = self.raw_session(addr)?;
            let started = Instant::now();
            for _ in 0..count {
                session.run("NOOP")?;
            }
            let secs = started.elapsed().as_secs_f64() / f64::from(count);
            session.logout();
            Ok(secs)
        };
        Ok(Calibration {
            direct_us: mean_noop(self.dovecot.imaps_addr(), 500)? * 1e6,
            loopback_proxy_us: mean_noop(self.loopback.addr(), 500)? * 1e6,
            slow_proxy_ms: mean_noop(self.slow.addr(), 10)? * 1e3,
            fuse_roundtrip_us: self
                .fuse_roundtrips()?
                .map(|(same, other)| (same * 1e6, other.map(|s| s * 1e6))),
        })
    }

    fn run_once(&mut self, results: &mut Results) -> io::Result<()> {
        let wants = |group| self.config.wants(group);
        if wants(Group::Floor) {
            process::check()?;
            let floor = self.floor(false)?;
            progress(&format!("  floor: {}", brief(&floor)));
            results.floor.push(floor);
            let bulk = self.one_command(BULK_COMMAND)?;
            progress(&format!("  bulk fetch: {}", brief(&bulk)));
            results.bulk_fetch.push(bulk);
        }

        if wants(Group::Ls) {
            process::check()?;
            self.imapfs_ls_then_body(false, results)?;
        }

        let mbsync = wants(Group::Mbsync) || wants(Group::Maildir);
        for compress in [true, false].into_iter().filter(|_| mbsync) {
            process::check()?;
            let sample = self.mbsync(compress)?;
            let name = if compress { "deflate" } else { "plain" };
            progress(&format!("  mbsync ({name}): {}", brief(&sample)));
            if compress {
                results.mbsync_deflate.push(sample);
            } else {
                results.mbsync_plain.push(sample);
            }
        }

        if wants(Group::Maildir) {
            process::check()?;
            let (sample, matches) = self.grep_maildir()?;
            progress(&format!("  grep over Maildir: {}", brief(&sample)));
            results.grep_maildir.push(sample);
            results.grep_matches.0 = matches;
        }

        if wants(Group::Maildir) && self.fuse_reference.is_some() {
            process::check()?;
            let (fresh, sample, matches) = self.grep_fuse_reference()?;
            progress(&format!(
                "  grep through bindfs (FUSE reference): fresh mount {}, warm {}",
                brief(&fresh),
                brief(&sample)
            ));
            results.fuse_reference_fresh.push(fresh);
            if matches != results.grep_matches.0 {
                results.wrong(
                    "R6",
                    format!(
                        "grep through bindfs found {matches} files, over the Maildir {}",
                        results.grep_matches.0
                    ),
                );
            }
            results.fuse_reference.push(sample);
        }

        if wants(Group::Grep) {
            process::check()?;
            self.imapfs_grep(results)?;
            process::check()?;
            self.imapfs_grep_read_only(results)?;
        }

        if wants(Group::Floor) {
            process::check()?;
            let floor = self.floor(true)?;
            progress(&format!("  slow floor: {}", brief(&floor)));
            results.floor_slow.push(floor);
        }

        if wants(Group::Ls) {
            process::check()?;
            self.imapfs_ls_then_body(true, results)?;
        }

        if wants(Group::Live) {
            process::check()?;
            self.imapfs_live(results)?;
        }

        if wants(Group::Prefetch) {
            process::check()?;
            self.prefetch_rows(results)?;
        }

        if wants(Group::Remount) {
            process::check()?;
            self.remount_rows(results)?;
        }

        if wants(Group::Search) {
            process::check()?;
            self.search_rows(results)?;
        }
        Ok(())
    }

    /// Dovecot's CPU seconds so far (0 if its master's pid is unknown).
    fn server_cpu(&self) -> f64 {
        self.dovecot_master.map_or(0.0, cpu::group_seconds)
    }
}

/// One sample in a progress line.
fn brief(s: &Sample) -> String {
    format!(
        "{:.3} s, {} bytes, {} commands, CPU client {:.2} s / server {:.2} s",
        s.seconds,
        s.bytes,
        s.commands.map_or("?".into(), |c| c.to_string()),
        s.client_cpu.unwrap_or(0.0),
        s.server_cpu.unwrap_or(0.0)
    )
}

/// Versions of what was measured, for the report.
pub fn versions(imapfs: &Path) -> Vec<String> {
    let imapfs_version = Command::new(imapfs)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "imapfs".into());
    vec![imapfs_version, server::dovecot_version(), mbsync::version()]
}
