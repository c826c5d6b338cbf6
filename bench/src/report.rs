//! The results as one Markdown table (plus the set-up and method), for stdout and RESULTS.md.

use std::fmt::Write as _;

mod targets;

use self::targets::{live_rows, rows, Row};
use crate::server::{SEARCH_HITS, SEARCH_WORD, WALK_AVG_SIZE};
use crate::stats::Series;
use crate::suite::{Config, Results, BULK_COMMAND, FLOOR_COMMAND};

const MIB: f64 = (1u64 << 20) as f64;

/// Where and how the numbers were taken.
pub struct Machine {
    pub date: String,
    pub uname: String,
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub command: String,
    pub commit: String,
    pub versions: Vec<String>,
}

/// Seconds with three significant decimals.
fn secs(s: f64) -> String {
    if s < 0.1 {
        format!("{s:.4}")
    } else {
        format!("{s:.3}")
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `client / server` CPU seconds; `-` for a side not measured.
fn cpu_cell(client: Option<f64>, server: Option<f64>) -> String {
    match (client, server) {
        (None, None) => String::new(),
        _ => {
            let side = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.2}"));
            format!("{} / {}", side(client), side(server))
        }
    }
}

/// Bytes in MiB, one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

/// A ratio with three significant digits, so that 0.101 does not read as 0.10.
fn ratio_text(x: f64) -> String {
    if !x.is_finite() {
        "∞".into()
    } else if x < 1.0 {
        format!("{x:.3}x")
    } else if x < 10.0 {
        format!("{x:.2}x")
    } else {
        format!("{x:.1}x")
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::INFINITY
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| # | measurement | runs | seconds (median) | bytes from server | IMAP commands | CPU s client / server | reference | ratio | target | result |\n\
         |---|---|---:|---:|---:|---:|---:|---|---:|---|---|\n",
    );
    for row in rows {
        let cell = |v: Option<String>| v.unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.id,
            row.what,
            row.runs,
            cell(row.seconds.map(secs)),
            cell(row.bytes.map(thousands)),
            cell(row.commands.map(thousands)),
            cpu_cell(row.client_cpu, row.server_cpu),
            row.reference,
            cell(row.ratio.map(ratio_text)),
            row.target,
            match row.met {
                Some(true) => "**met**",
                Some(false) => "**NOT met**",
                None => "",
            }
        );
    }
    out
}

fn all_runs(r: &Results) -> String {
    let series: [(&str, &Series); 34] = [
        ("R1 floor", &r.floor),
        ("R11 bulk fetch", &r.bulk_fetch),
        ("R2 mbsync deflate", &r.mbsync_deflate),
        ("R3 mbsync plain", &r.mbsync_plain),
        ("R4 grep Maildir", &r.grep_maildir),
        ("R6 grep through bindfs", &r.fuse_reference),
        ("R6b first grep through bindfs", &r.fuse_reference_fresh),
        ("R10 grep Search, disk cache", &r.grep_without_prefetch),
        ("7e grep Search beside a prefetch", &r.grep_beside_prefetch),
        ("1 ls -l", &r.ls_cold),
        ("2 body.txt (10 MB message)", &r.body_large),
        ("3a grep cold", &r.grep_cold),
        ("3b grep warm", &r.grep_warm),
        ("3f grep cold, read-only", &r.grep_cold_read_only),
        ("3g grep warm, read-only", &r.grep_warm_read_only),
        ("R5 floor, slow link", &r.floor_slow),
        ("4a ls -l, slow link", &r.ls_slow),
        ("4b body.txt, slow link", &r.body_slow),
        ("5b grep, small cache", &r.grep_small),
        ("11a one APPEND elsewhere to visible", &r.live_append),
        ("11b second ls -l, slow link", &r.live_ls_again),
        ("11b' ls -l of as many local directories", &r.live_ls_local),
        ("7a prefetch INBOX, deflate", &r.prefetch_deflate),
        ("7c prefetch INBOX, no compression", &r.prefetch_plain),
        ("R7 grep cold, disk cache", &r.remount_first_cold),
        ("R8 grep warm, disk cache", &r.remount_first_warm),
        ("8a ls -l, warm remount", &r.remount_ls),
        ("8b grep, warm remount", &r.remount_grep),
        ("R9 grep -rl Search, slow link", &r.search_grep),
        ("9a ls .search, slow link", &r.search_ls),
        ("10a grep cold, no compression", &r.grep_cold_plain),
        (
            "10b grep -rl Search, slow link, no compression",
            &r.search_grep_plain,
        ),
        (
            "10c prefetch Search, slow link, no compression",
            &r.slow_prefetch_plain,
        ),
        (
            "10d prefetch Search, slow link, deflate",
            &r.slow_prefetch_deflate,
        ),
    ];
    let mut out = String::from(
        "| measurement | seconds per run | bytes per run | commands per run | CPU s (client, server) per run |\n\
         |---|---|---|---|---|\n",
    );
    for (name, s) in series.into_iter().filter(|(_, s)| s.runs() > 0) {
        let join = |f: &dyn Fn(&crate::stats::Sample) -> String| {
            s.samples.iter().map(f).collect::<Vec<_>>().join(" / ")
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} |",
            join(&|x| secs(x.seconds)),
            join(&|x| thousands(x.bytes)),
            join(&|x| x.commands.map_or("-".into(), thousands)),
            join(&|x| format!(
                "({})",
                cpu_cell(x.client_cpu, x.server_cpu).replace(" / ", ", ")
            )),
        );
    }
    let rss: Vec<String> = r.rss_grep.iter().map(|b| mib(*b)).collect();
    let _ = writeln!(
        out,
        "| 5a peak RSS per grep mount | {} | | | |",
        rss.join(" / ")
    );
    for (name, f) in [("6a", &r.forget), ("6b", &r.forget_small_cache)] {
        let Some(f) = f else { continue };
        let s = &f.find;
        let join = |f: &dyn Fn(&crate::stats::Sample) -> String| {
            s.samples.iter().map(f).collect::<Vec<_>>().join(" / ")
        };
        let _ = writeln!(
            out,
            "| {name} find over Walk; RSS after mount / peak / after find / after drop_caches: \
             {} / {} / {} / {} | {} | {} | {} | {} |",
            mib(f.after_mount),
            mib(f.peak),
            mib(f.after_find),
            mib(f.after_drop),
            join(&|x| secs(x.seconds)),
            join(&|x| thousands(x.bytes)),
            join(&|x| x.commands.map_or("-".into(), thousands)),
            join(&|x| format!(
                "({})",
                cpu_cell(x.client_cpu, x.server_cpu).replace(" / ", ", ")
            )),
        );
    }
    out
}

/// The whole document.
pub fn render(config: &Config, machine: &Machine, r: &Results) -> String {
    let rows = rows(config, r);
    let met = rows.iter().filter(|row| row.met == Some(true)).count();
    let checked = rows.iter().filter(|row| row.met.is_some()).count();
    let rtt_ms = 2.0 * config.delay_each_way.as_secs_f64() * 1e3;
    let c = &r.calibration;
    let mut out = String::new();
    let _ = writeln!(out, "# imapfs benchmark results\n");
    let _ = writeln!(
        out,
        "Measured {} on `{}`, {}, {} cores, {} RAM.  \nCommand: `{}`  \nimapfs {}; {}.\n",
        machine.date,
        machine.uname,
        machine.cpu,
        machine.cores,
        machine.memory,
        machine.command,
        machine.commit,
        machine.versions.join("; ")
    );
    let _ = writeln!(
        out,
        "Corpus: INBOX with {} messages, {} bytes ({} B on average): {} generated messages \
         (seed {}, about {} B each; plain, multipart/alternative and with an attachment) \
         plus one of {} with a 10 MB attachment; Walk, for the forget rows, with {} \
         generated messages of about {} B ({} bytes); and Search, for the search rows, with \
         {} messages ({} bytes). Filled in {:.1} s. \
         Each timed row is the median of {} runs; in each run every row is measured once, \
         one after another. The whole benchmark took {:.0} s; the load average (1, 5, 15 min) \
         was {} before and {} after.\n",
        thousands(r.corpus_messages as u64),
        thousands(r.corpus_bytes),
        thousands(r.corpus_bytes / r.corpus_messages.max(1) as u64),
        thousands(config.messages as u64),
        config.seed,
        thousands(config.avg_size as u64),
        mib(r.large_bytes),
        thousands(r.walk_messages as u64),
        thousands(WALK_AVG_SIZE as u64),
        thousands(r.walk_bytes),
        thousands(r.search_messages as u64),
        thousands(r.search_bytes),
        r.fill_seconds,
        config.runs,
        r.total_seconds,
        r.load_before,
        r.load_after
    );
    let _ = writeln!(
        out,
        "Links: *loopback* is the server through a counting proxy with no delay (a NOOP round \
         trip takes {:.0} µs through it, {:.0} µs direct); the *slow link* is the same proxy \
         delaying each direction by {} ms (RTT {:.0} ms; a NOOP takes {:.1} ms) and capping \
         each direction at {} B/s.\n",
        c.loopback_proxy_us,
        c.direct_us,
        config.delay_each_way.as_millis(),
        rtt_ms,
        c.slow_proxy_ms,
        thousands(config.bandwidth)
    );
    if let Some((same, other)) = c.fuse_roundtrip_us {
        let files = r.corpus_messages.max(1) as f64;
        let other = other.map_or(String::new(), |o| {
            format!(" and {o:.0} µs when they are on different CPUs")
        });
        let _ = writeln!(
            out,
            "A FUSE round trip (one GETATTR: `fstat` through bindfs with `attr_timeout=0`) \
             takes {same:.0} µs when the caller and the daemon share a CPU{other}; the warm \
             grep over the Maildir (R4) spends {:.0} µs per message in all.\n",
            r.grep_maildir.seconds() / files * 1e6
        );
    }
    let _ = writeln!(out, "{}", table(&rows));
    let _ = writeln!(out, "Targets met: {met} of {checked}.\n");
    let _ = writeln!(
        out,
        "grep found {} files over the Maildir and {} over imapfs.\n",
        r.grep_matches.0, r.grep_matches.1
    );
    for (id, f) in [("6a", &r.forget), ("6b", &r.forget_small_cache)] {
        if let Some(f) = f {
            let _ = writeln!(
                out,
                "{id}: find printed {} entries, {} of them message directories.\n",
                thousands(f.entries as u64),
                thousands(f.message_dirs as u64)
            );
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(out, "Notes:\n");
        for note in &r.notes {
            let _ = writeln!(out, "- {note}");
        }
        out.push('\n');
    }
    if !r.wrong.is_empty() {
        let _ = writeln!(out, "**Wrong results:**\n");
        for (row, why) in &r.wrong {
            let _ = writeln!(out, "- {row}: {why}");
        }
        out.push('\n');
    }
    out.push_str(&method(config));
    let _ = writeln!(out, "\n## All runs\n\n{}", all_runs(r));
    out
}

fn method(config: &Config) -> String {
    format!(
        "## How it is measured\n\n\
- **Server.** A private Dovecot 2.3 (the `imapfs-fixture` crate) on loopback, IMAPS with a \
  throwaway CA, COMPRESS=DEFLATE offered. The bulk messages are written straight into its \
  Maildir; the 10 MB message is APPENDed. Before the first run one untimed \
  `UID FETCH 1:* (… ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)])` fills \
  Dovecot's index cache and the page cache, so every row sees the same warm server. The \
  kernel page cache is not dropped: a *cold* imapfs run is a fresh mount, whose FUSE page \
  cache, part cache and listings start empty.\n\
- **Bytes from server** are what the proxy forwarded from the server to the client (TLS \
  records, i.e. bytes on the wire above TCP), counted from just before the measured \
  operation to just after. **IMAP commands**: imapfs's own counter (the root's \
  `user.imapfs.stats` xattr, difference across the operation); for mbsync the distinct \
  tags in an extra, untimed `mbsync -Dn` run (LOGIN and LOGOUT included); the floor is \
  one command by definition (its LOGIN and EXAMINE are neither timed nor counted).\n\
- **CPU s client / server**: user plus system CPU seconds spent during the operation. \
  Client: imapfs (all threads) plus the command run on the mount, or mbsync, grep, or the \
  floor client's thread. Server: every Dovecot process (its process group, plus the children \
  its master reaped), TLS included. The proxies run in the driver and count for neither. \
  When client + server approaches cores × seconds, the row is CPU-bound.\n\
- **Protocol floor (R1, R5, R11).** A minimal client (TLS, LOGIN, EXAMINE) times only \
  `{FLOOR_COMMAND}` from sending it to reading its tagged OK, parsing nothing but line \
  and literal boundaries. R11 does the same with `{BULK_COMMAND}`, the least a cold grep \
  of every message can cost on the wire (3d).\n\
- **mbsync (R2, R3).** isync's `mbsync` pulls INBOX into an empty Maildir (`Sync Pull`, \
  `Create Near`), through the loopback proxy, fresh state each run. isync uses \
  COMPRESS=DEFLATE whenever the server offers it; R3 turns it off with \
  `DisableExtension COMPRESS=DEFLATE`. The ratios use the faster of R2 and R3.\n\
- **grep.** imapfs: `grep -rl --include=message.eml {word} <mount>/INBOX`, which walks \
  every message directory and reads every `message.eml`; warm is the same command again on \
  the same mount, right after. Maildir: `grep -rl {word}` over the copy mbsync just wrote. \
  Both must list the same number of files. 3f and 3g do the same on a fresh mount with \
  `--read-only` and no compression: imapfs answers ENOSYS to OPEN and FLUSH there, so the \
  kernel opens files itself and a file it holds is read again with no request.\n\
- **FUSE reference (R6).** What a plain FUSE filesystem costs on this kernel for the warm \
  grep of 3b: the same command over a tree of the same shape (one directory per message, \
  each holding one `message.eml`, hard links to the server's Maildir files) served by \
  `bindfs`, a FUSE passthrough (libfuse's path-based API, single-threaded), with long \
  kernel cache lifetimes; mounted fresh each run, the first grep (R6b), then the warm one \
  (R6). It is a yardstick for the kernel round trips a per-message directory layout costs, \
  not a hard floor. R6b is what any FUSE filesystem of this shape pays on a fresh mount, \
  when the kernel's dentries, attributes, directory listings and page cache of the mount \
  are empty and the data is in the page cache underneath: a warm remount of imapfs (8c) \
  starts the same way, and 8c' sets its slowdown against bindfs's.\n\
- **Slow link (4a, 4b).** Round trips are estimated as (elapsed − bytes from server ÷ \
  bandwidth) ÷ RTT; the remainder includes client and server processing time, so the \
  estimate is an upper bound on network round trips. 4b lists the mailbox first (untimed) \
  on the same mount, waits until the mount has sent nothing for 3.2 s (the watcher starts \
  meanwhile), then times `cat` of one `body.txt` of a message in the middle of it.\n\
- **Memory (5a, 5b).** `VmHWM` of the imapfs process from `/proc/PID/status` after the \
  greps. 5b is one extra cold grep with a cache much smaller than the corpus.\n\
- **Forget (6a, 6b).** A fresh mount; `ls` of its root; RSS (`VmRSS` of imapfs from \
  `/proc/PID/status`) is *after mount*. Then `find <mount>/Walk`, timed and counted like \
  the other rows: it looks up every message directory and the files in it (imapfs fetches \
  the BODYSTRUCTUREs and, for exact sizes, the small text bodies); RSS *after find*, and \
  `VmHWM` as the *peak*. Then `sync; echo 2 > /proc/sys/vm/drop_caches`: the kernel drops \
  its unused dentries and inodes and sends FORGET for every inode of the mount. RSS is read \
  every 100 ms until it stays within 256 KiB for 1 s (at most 10 s): *after drop_caches*, \
  and the time from the end of drop_caches to the value it settled at. Target (the \
  issue's): after drop_caches at most 16 MiB above after mount. 6a mounts with the default \
  options (a 256 MiB cache, a quarter of it for rendered files, which the text bodies \
  fetched for sizes fill); 6b repeats it with --cache-size {walk_cache}, so that what \
  stays is what the caches cannot hold: the mailbox listing, the layout cache and the \
  heap. `find` must print the mailbox, every message directory and each one's files \
  (`message.eml`, `body.txt`, and `body.html` or the attachment). Measured once each, \
  after everything else, because drop_caches empties those caches for the whole machine.\n\
- **Listing peak (6c).** A fresh mount with the default options; `ls` of its root; RSS \
  *after mount*. Then `ls -l <mount>/Walk`, timed and counted like the other rows, and \
  `VmHWM` after it: the most the listing of every message (its FETCH answer, the listing \
  kept, the names and the directory handle `ls` reads) ever held at once. Target (the \
  performance issue's): at most 32 MiB above after mount. `ls -l` must print one line per \
  message.\n\
- **Compression.** imapfs's default, `--compress auto`, uses COMPRESS=DEFLATE when the \
  server offers it unless the server is on this machine. Every server here is reached \
  through a proxy on loopback that stands for one elsewhere, so the mounts run with \
  `--compress always`: every imapfs row above is compressed unless it says \
  `--no-compress` (`--compress never`). 3c is the default's own case on loopback. The \
  proxy counts the compressed bytes.\n\
- **Prefetch (7).** `imapfs prefetch INBOX` (its default 4 connections) into an empty \
  `--cache-dir` under the work directory, through the loopback proxy, with compression \
  (against R2, mbsync with it) and with `--no-compress` (against R3, mbsync without): like \
  with like. CPU client is the prefetch process. Commands are from its summary line. \
  **7e**: a fresh mount with an empty `--cache-dir` lists Search and INBOX (untimed) and \
  greps Search cold (R10); then the same on another fresh mount and cache, a second after \
  `setfattr -n user.imapfs.prefetch -v 1 INBOX`; the row says how far the prefetch was \
  when the grep ended. A background prefetch fetches 1 MiB batches on one connection, each once the \
  mount has served no request for 300 ms (or after 5 s of waiting).\n\
- **Warm remount (8).** A mount with a `--cache-dir` of its own (the other mounts run \
  with `--no-disk-cache`) greps INBOX cold (R7) and warm (R8); it is unmounted, and mounted \
  again on the same cache: `ls -l INBOX` (8a), then the grep (8b, 8c). Each grep must find \
  the files the first one found.\n\
- **Search (9).** The Search mailbox: {search} generated messages (seed {search_seed}, \
  same sizes as INBOX) plus {SEARCH_HITS} APPENDed plain ones with `{SEARCH_WORD}` at the \
  end of the body, the only messages holding it. Over the slow link, each on a fresh mount: \
  `ls <mount>/Search/.search/body:{SEARCH_WORD}` (the server's SEARCH, the mailbox \
  listing for the names) and `grep -rl --include=message.eml {SEARCH_WORD}` over Search \
  (R9). Both must find the {SEARCH_HITS} messages.\n\
- **Without compression (10).** After the runs: the cold grep of 3a with `--no-compress` \
  (10a, loopback; as many runs as the rest, since 3c-3e compare its median with theirs), \
  and once each the slow-link grep of R9 with it (10b), and \
  `imapfs prefetch Search` over the slow link without (10c) and with (10d) compression. \
  The reference column gives time and bytes against the compressed run.\n\
- **Clean-up.** Every mount is unmounted (SIGTERM to `imapfs -f`, lazy unmount if that \
  fails) and every process stopped, also on SIGINT/SIGTERM; `scripts/bench.sh` sweeps \
  whatever is left under its work directory on exit.\n",
        word = config.word,
        walk_cache = mib(config.walk_cache),
        search = thousands(config.search_messages as u64),
        search_seed = config.seed + 1,
    )
}

/// The live-update rows alone (`--live-only`), as a table.
pub fn render_live(config: &Config, r: &Results) -> String {
    table(&live_rows(config, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn a_check_is_met_only_within_its_limit() {
        let series = Series::default();
        let row = Row::measured("x", "x".into(), &series);
        assert_eq!(
            row.check(String::new(), 2.0, 2.0, String::new()).met,
            Some(true)
        );
        let row = Row::measured("x", "x".into(), &series);
        assert_eq!(
            row.check(String::new(), 2.01, 2.0, String::new()).met,
            Some(false)
        );
        let row = Row::measured("x", "x".into(), &series);
        assert_eq!(
            row.check(String::new(), f64::INFINITY, 2.0, String::new())
                .met,
            Some(false)
        );
    }
}
