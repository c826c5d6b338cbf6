//! The rows of the table and the targets of the issue they are checked against.

use super::{mib, ratio, secs, thousands};
use crate::server::{SEARCH_HITS, SEARCH_MAILBOX, SEARCH_WORD};
use crate::stats::Series;
use crate::suite::{
    Config, Forget, Results, BINDFS_OPTIONS, BULK_COMMAND, FLOOR_COMMAND, FORGET_TARGET,
    LISTING_PEAK_TARGET,
};

/// One line of the table.
pub(super) struct Row {
    pub(super) id: &'static str,
    pub(super) what: String,
    pub(super) runs: usize,
    pub(super) seconds: Option<f64>,
    pub(super) bytes: Option<u64>,
    pub(super) commands: Option<u64>,
    pub(super) client_cpu: Option<f64>,
    pub(super) server_cpu: Option<f64>,
    pub(super) reference: String,
    pub(super) ratio: Option<f64>,
    pub(super) target: String,
    pub(super) met: Option<bool>,
}

impl Row {
    /// A measured row without a target.
    pub(super) fn measured(id: &'static str, what: String, series: &Series) -> Row {
        Row {
            id,
            what,
            runs: series.runs(),
            seconds: Some(series.seconds()),
            bytes: Some(series.bytes()),
            commands: series.commands(),
            client_cpu: series.client_cpu(),
            server_cpu: series.server_cpu(),
            reference: String::new(),
            ratio: None,
            target: String::new(),
            met: None,
        }
    }

    /// The same row checked against `limit`: met when `ratio <= limit`.
    pub(super) fn check(
        mut self,
        reference: String,
        ratio: f64,
        limit: f64,
        target: String,
    ) -> Row {
        self.reference = reference;
        self.ratio = Some(ratio);
        self.target = target;
        self.met = Some(ratio.is_finite() && ratio <= limit);
        self
    }
}

/// The faster mbsync variant, as (label, series): the strictest reference.
fn fastest_mbsync(r: &Results) -> (&'static str, &Series) {
    if r.mbsync_deflate.seconds() <= r.mbsync_plain.seconds() {
        ("R2", &r.mbsync_deflate)
    } else {
        ("R3", &r.mbsync_plain)
    }
}

pub(super) fn rows(config: &Config, r: &Results) -> Vec<Row> {
    let rtt = 2.0 * config.delay_each_way.as_secs_f64();
    let bw = config.bandwidth as f64;
    let word = &config.word;
    let mut rows = Vec::new();

    rows.push(Row::measured(
        "R1",
        format!("protocol floor: one `{FLOOR_COMMAND}`, loopback"),
        &r.floor,
    ));
    if r.bulk_fetch.runs() > 0 {
        rows.push(Row::measured(
            "R11",
            format!("every message whole in one `{BULK_COMMAND}`, loopback, no compression"),
            &r.bulk_fetch,
        ));
    }
    rows.push(Row::measured(
        "R2",
        "mbsync full sync into an empty Maildir, COMPRESS=DEFLATE".into(),
        &r.mbsync_deflate,
    ));
    rows.push(Row::measured(
        "R3",
        "mbsync full sync into an empty Maildir, no compression".into(),
        &r.mbsync_plain,
    ));
    rows.push(Row::measured(
        "R4",
        format!("`grep -rl {word}` over the Maildir mbsync made (page cache warm)"),
        &r.grep_maildir,
    ));

    match &r.fuse_reference_missing {
        None => rows.push(Row::measured(
            "R6",
            format!(
                "FUSE reference: the warm grep of 3b over the same tree shape (one directory with \
                 one `message.eml` per message, hard links into the server's Maildir) through \
                 `bindfs` (a FUSE passthrough; `-o {BINDFS_OPTIONS}`)"
            ),
            &r.fuse_reference,
        )),
        Some(why) => rows.push(Row {
            what: format!("FUSE reference through bindfs: not measured ({why})"),
            ..Row::measured("R6", String::new(), &Series::default())
        }),
    }

    let (mb_id, mb) = fastest_mbsync(r);
    let ls = &r.ls_cold;
    let ls_what = || "imapfs: cold `ls -l INBOX` (fresh mount)".to_string();
    rows.push(Row::measured("1a", ls_what(), ls).check(
        format!("R1 time {} s", secs(r.floor.seconds())),
        ratio(ls.seconds(), r.floor.seconds()),
        1.5,
        "time ≤ 1.5x floor".into(),
    ));
    rows.push(Row::measured("1b", ls_what(), ls).check(
        format!("R1 bytes {}", thousands(r.floor.bytes())),
        ratio(ls.bytes() as f64, r.floor.bytes() as f64),
        2.0,
        "bytes ≤ 2x floor".into(),
    ));
    rows.push(Row::measured("1c", ls_what(), ls).check(
        format!("{mb_id} (faster mbsync) {} s", secs(mb.seconds())),
        ratio(ls.seconds(), mb.seconds()),
        0.1,
        "time ≤ 0.1x mbsync".into(),
    ));

    let part = r.large_part_bytes as f64;
    let limit = 1.2 * part + 20.0 * 1024.0;
    rows.push(
        Row::measured(
            "2",
            format!(
                "imapfs: cold read of `body.txt` of the {} message with the 10 MB attachment (mailbox listed)",
                mib(r.large_bytes)
            ),
            &r.body_large,
        )
        .check(
            format!(
                "1.2 × text part ({} B) + 20 KiB = {} B",
                r.large_part_bytes,
                thousands(limit as u64)
            ),
            ratio(r.body_large.bytes() as f64, limit),
            1.0,
            "bytes ≤ 1x limit".into(),
        ),
    );

    rows.push(
        Row::measured(
            "3a",
            format!(
                "imapfs: cold `grep -rl --include=message.eml {word}` over INBOX (fresh mount)"
            ),
            &r.grep_cold,
        )
        .check(
            format!("{mb_id} (faster mbsync) {} s", secs(mb.seconds())),
            ratio(r.grep_cold.seconds(), mb.seconds()),
            1.0,
            "time ≤ 1x mbsync".into(),
        ),
    );
    if r.grep_cold_plain.runs() > 0 {
        // What a user with the server on the same machine gets: `--compress auto` (the
        // default) does not compress a connection to loopback.
        rows.push(
            Row::measured(
                "3c",
                "imapfs with its default `--compress auto`, server on this machine (no \
                 compression): the cold grep of 3a (= 10a)"
                    .into(),
                &r.grep_cold_plain,
            )
            .check(
                format!("{mb_id} (faster mbsync) {} s", secs(mb.seconds())),
                ratio(r.grep_cold_plain.seconds(), mb.seconds()),
                1.0,
                "time ≤ 1x mbsync".into(),
            ),
        );
    }
    if r.grep_cold_plain.runs() > 0 && r.bulk_fetch.runs() > 0 {
        rows.push(
            Row::measured(
                "3d",
                "imapfs: the cold grep of 3c (default options, no compression on loopback) \
                 against fetching every message in one command"
                    .into(),
                &r.grep_cold_plain,
            )
            .check(
                format!("R11 {} s", secs(r.bulk_fetch.seconds())),
                ratio(r.grep_cold_plain.seconds(), r.bulk_fetch.seconds()),
                1.5,
                "time ≤ 1.5x one bulk FETCH".into(),
            ),
        );
    }
    if r.grep_cold_plain.runs() > 0 {
        rows.push(
            Row::measured(
                "3e",
                "imapfs: the cold grep of 3c against mbsync's full sync, at least twice as fast"
                    .into(),
                &r.grep_cold_plain,
            )
            .check(
                format!("{mb_id} (faster mbsync) {} s", secs(mb.seconds())),
                ratio(r.grep_cold_plain.seconds(), mb.seconds()),
                0.5,
                "time ≤ 0.5x mbsync".into(),
            ),
        );
    }
    rows.push(
        Row::measured(
            "3b",
            format!(
                "imapfs: warm grep (the same again on that mount, --cache-size {})",
                mib(r.config_grep_cache)
            ),
            &r.grep_warm,
        )
        .check(
            format!("R4 {} s", secs(r.grep_maildir.seconds())),
            ratio(r.grep_warm.seconds(), r.grep_maildir.seconds()),
            2.0,
            "time ≤ 2x Maildir grep".into(),
        ),
    );

    if r.fuse_reference_missing.is_none() {
        let warm = &r.grep_warm;
        rows.push(Row {
            reference: format!("R6 {} s", secs(r.fuse_reference.seconds())),
            ratio: Some(ratio(warm.seconds(), r.fuse_reference.seconds())),
            target: "(for comparison)".into(),
            ..Row::measured(
                "3b'",
                "imapfs: warm grep (3b) against the FUSE reference".into(),
                warm,
            )
        });
    }

    if r.grep_cold_read_only.runs() > 0 && r.bulk_fetch.runs() > 0 {
        rows.push(
            Row::measured(
                "3f",
                "imapfs, read-only mount (`--read-only`, no compression; the kernel opens \
                 files itself): the cold grep of 3a against fetching every message in one \
                 command"
                    .into(),
                &r.grep_cold_read_only,
            )
            .check(
                format!("R11 {} s", secs(r.bulk_fetch.seconds())),
                ratio(r.grep_cold_read_only.seconds(), r.bulk_fetch.seconds()),
                1.5,
                "time ≤ 1.5x one bulk FETCH".into(),
            ),
        );
    }
    if r.grep_warm_read_only.runs() > 0 {
        rows.push(
            Row::measured(
                "3g",
                "imapfs, read-only mount: warm grep (the same again on the mount of 3f)".into(),
                &r.grep_warm_read_only,
            )
            .check(
                format!("R4 {} s", secs(r.grep_maildir.seconds())),
                ratio(r.grep_warm_read_only.seconds(), r.grep_maildir.seconds()),
                2.0,
                "time ≤ 2x Maildir grep".into(),
            ),
        );
    }

    rows.push(Row::measured(
        "R5",
        "protocol floor over the slow link".into(),
        &r.floor_slow,
    ));
    let ls_slow = &r.ls_slow;
    let transfer = ls_slow.bytes() as f64 / bw;
    let allowed = 10.0 * rtt + transfer;
    let rounds = (ls_slow.seconds() - transfer) / rtt;
    rows.push(
        Row::measured(
            "4a",
            format!("imapfs over the slow link: cold `ls -l INBOX` (≈ {rounds:.1} round trips + transfer)"),
            ls_slow,
        )
        .check(
            format!(
                "10 RTT + transfer = {} + {} s = {} s",
                secs(10.0 * rtt),
                secs(transfer),
                secs(allowed)
            ),
            ratio(ls_slow.seconds(), allowed),
            1.0,
            "time ≤ 1x".into(),
        ),
    );
    let body = &r.body_slow;
    let transfer = body.bytes() as f64 / bw;
    let rounds = (body.seconds() - transfer) / rtt;
    rows.push(
        Row::measured(
            "4b",
            format!(
                "imapfs over the slow link: cold read of one `body.txt` in the listed mailbox (≈ {rounds:.2} round trips + transfer)"
            ),
            body,
        )
        .check(
            format!(
                "2 commands, one round trip each: 2 RTT + transfer = {} + {} s = {} s",
                secs(2.0 * rtt),
                secs(transfer),
                secs(2.0 * rtt + transfer)
            ),
            // Each command waits for the one before: the commands are the round trips.
            // The time estimate above also holds client and server processing.
            body.commands().map_or(f64::NAN, |c| c as f64 / 2.0),
            1.0,
            "commands ≤ 2".into(),
        ),
    );

    let peak = r.rss_grep.iter().copied().max().unwrap_or(0);
    let limit = r.config_grep_cache + (64 << 20);
    rows.push(Row {
        id: "5a",
        what: format!(
            "imapfs peak RSS (VmHWM) over the cold + warm grep (3a, 3b): {}",
            mib(peak)
        ),
        runs: r.rss_grep.len(),
        seconds: None,
        bytes: None,
        commands: None,
        client_cpu: None,
        server_cpu: None,
        reference: format!(
            "--cache-size {} + 64 MiB = {}",
            mib(r.config_grep_cache),
            mib(limit)
        ),
        ratio: Some(ratio(peak as f64, limit as f64)),
        target: "RSS ≤ 1x".into(),
        met: Some(peak > 0 && peak <= limit),
    });
    let peak = r.rss_small.iter().copied().max().unwrap_or(0);
    let limit = config.small_cache + (64 << 20);
    let small = Row::measured(
        "5b",
        format!(
            "imapfs: cold grep with --cache-size {}: peak RSS {}",
            mib(config.small_cache),
            mib(peak)
        ),
        &r.grep_small,
    );
    rows.push(Row {
        reference: format!("{} + 64 MiB = {}", mib(config.small_cache), mib(limit)),
        ratio: Some(ratio(peak as f64, limit as f64)),
        target: "RSS ≤ 1x".into(),
        met: Some(peak > 0 && peak <= limit),
        ..small
    });

    if let Some(forget) = &r.forget {
        rows.push(forget_row("6a", forget, r.walk_messages));
    }
    if let Some(forget) = &r.forget_small_cache {
        rows.push(Row {
            target: "(for comparison)".into(),
            met: None,
            ..forget_row("6b", forget, r.walk_messages)
        });
    }

    if let Some(l) = &r.listing_peak {
        let limit = l.after_mount + LISTING_PEAK_TARGET;
        let above = l.peak.saturating_sub(l.after_mount);
        let row = Row::measured(
            "6c",
            format!(
                "imapfs: cold `ls -l Walk` over {} messages (fresh mount, default options); \
                 RSS after mount {}, peak {} ({} above)",
                thousands(r.walk_messages as u64),
                mib(l.after_mount),
                mib(l.peak),
                mib(above),
            ),
            &l.ls,
        );
        rows.push(Row {
            met: Some(l.peak > 0 && l.peak <= limit),
            ..row.check(
                format!(
                    "after mount {} + {} = {}",
                    mib(l.after_mount),
                    mib(LISTING_PEAK_TARGET),
                    mib(limit)
                ),
                ratio(l.peak as f64, limit as f64),
                1.0,
                "peak RSS ≤ 1x".into(),
            )
        });
    }

    rows.extend(live_rows(config, r));

    cache_rows(r, &mut rows);
    search_rows(r, &mut rows);
    compression_rows(r, &mut rows);

    // Groups left out with --only.
    rows.retain(|row| row.runs > 0 || row.what.contains("not measured"));
    for row in &mut rows {
        if r.wrong.iter().any(|(id, _)| row.id.starts_with(id)) {
            row.met = Some(false);
            row.target.push_str(" (WRONG RESULT, see below)");
        }
    }
    rows
}

/// `find` over Walk, then drop_caches: RSS after drop_caches against RSS after the mount.
fn forget_row(id: &'static str, f: &Forget, messages: usize) -> Row {
    let cache = f.cache.map_or("default options".to_string(), |c| {
        format!("--cache-size {}", mib(c))
    });
    let settled = if f.settled {
        format!("settled {:.1} s after it", f.settle_seconds)
    } else {
        format!("still moving {:.1} s after it", f.settle_seconds)
    };
    let row = Row::measured(
        id,
        format!(
            "imapfs: `find Walk` over {} messages (fresh mount, {cache}), then `sync; echo 2 > \
             /proc/sys/vm/drop_caches`; RSS after mount {}, peak {}, after find {}, after \
             drop_caches {} ({settled})",
            thousands(messages as u64),
            mib(f.after_mount),
            mib(f.peak),
            mib(f.after_find),
            mib(f.after_drop),
        ),
        &f.find,
    );
    let limit = f.limit();
    Row {
        met: Some(f.after_drop > 0 && f.after_drop <= limit),
        ..row.check(
            format!(
                "after mount {} + {} = {}",
                mib(f.after_mount),
                mib(FORGET_TARGET),
                mib(limit)
            ),
            ratio(f.after_drop as f64, limit as f64),
            1.0,
            "RSS after drop_caches ≤ 1x".into(),
        )
    }
}

/// 11a: one APPEND by another client until it shows (issue 11: under 20 KB and at most 3
/// commands, within 2 s); 11b: a second `ls -l` of the unchanged mailbox on the slow link
/// (no command, well under one round trip).
pub(super) fn live_rows(config: &Config, r: &Results) -> Vec<Row> {
    let mut rows = Vec::new();
    let rtt = 2.0 * config.delay_each_way.as_secs_f64();
    let append = &r.live_append;
    if append.runs() > 0 {
        let commands = append.commands().unwrap_or(u64::MAX);
        let row = Row::measured(
            "11a",
            format!(
                "imapfs, loopback: another client APPENDs one message to the listed {}-message \
                 INBOX; until `stat` of its directory succeeds",
                thousands(r.corpus_messages as u64)
            ),
            append,
        )
        .check(
            "20,000 bytes, 3 commands, 2 s".into(),
            ratio(append.bytes() as f64, 20_000.0),
            1.0,
            "bytes < 20 KB, ≤ 3 commands, ≤ 2 s".into(),
        );
        rows.push(Row {
            met: Some(append.bytes() < 20_000 && commands <= 3 && append.seconds() <= 2.0),
            ..row
        });
    }
    let again = &r.live_ls_again;
    if again.runs() > 0 {
        let local = r.live_ls_local.seconds();
        let waited = (again.seconds() - local).max(0.0);
        let row = Row::measured(
            "11b",
            format!(
                "imapfs over the slow link: second `ls -l INBOX`, unchanged and followed \
                 ({} s more than `ls -l` of as many local directories)",
                secs(waited)
            ),
            again,
        )
        .check(
            format!("local `ls -l` {} s + 1 RTT {} s", secs(local), secs(rtt)),
            ratio(waited, rtt),
            1.0,
            "no command; time − local ls < 1 RTT".into(),
        );
        rows.push(Row {
            met: Some(again.commands() == Some(0) && waited < rtt),
            ..row
        });
    }
    rows
}

/// A row that compares `series` with a reference without a target.
fn compared(id: &'static str, what: String, series: &Series, reference: String, ratio: f64) -> Row {
    Row {
        reference,
        ratio: Some(ratio),
        target: "(for comparison)".into(),
        ..Row::measured(id, what, series)
    }
}

/// 7: prefetch against mbsync, like with like; 8: the warm remount.
fn cache_rows(r: &Results, rows: &mut Vec<Row>) {
    let prefetch = |compress: bool| {
        format!(
            "`imapfs prefetch INBOX` into an empty disk cache, {}",
            if compress {
                "COMPRESS=DEFLATE"
            } else {
                "--no-compress"
            }
        )
    };
    for (ids, series, (mb_id, mb), compress) in [
        (
            ["7a", "7b"],
            &r.prefetch_deflate,
            ("R2", &r.mbsync_deflate),
            true,
        ),
        (
            ["7c", "7d"],
            &r.prefetch_plain,
            ("R3", &r.mbsync_plain),
            false,
        ),
    ] {
        if mb.runs() == 0 {
            rows.push(Row::measured(ids[0], prefetch(compress), series));
            continue;
        }
        rows.push(Row::measured(ids[0], prefetch(compress), series).check(
            format!("{mb_id} time {} s", secs(mb.seconds())),
            ratio(series.seconds(), mb.seconds()),
            1.0,
            format!("time ≤ 1x {mb_id}"),
        ));
        rows.push(Row::measured(ids[1], prefetch(compress), series).check(
            format!("{mb_id} bytes {}", thousands(mb.bytes())),
            ratio(series.bytes() as f64, mb.bytes() as f64),
            1.0,
            format!("bytes ≤ 1x {mb_id}"),
        ));
    }
    let (alone, beside) = (&r.grep_without_prefetch, &r.grep_beside_prefetch);
    if alone.runs() > 0 && beside.runs() > 0 {
        let grep = || {
            format!(
                "cold `grep -rl --include=message.eml {SEARCH_WORD}` over {SEARCH_MAILBOX} on a \
                 fresh mount with a disk cache"
            )
        };
        rows.push(Row::measured("R10", format!("imapfs: {}", grep()), alone));
        rows.push(
            Row::measured(
                "7e",
                format!(
                    "imapfs: the {}, while the mount prefetches INBOX in the background \
                     (`setfattr -n user.imapfs.prefetch -v 1`, a second before; when the \
                     last grep ended it said `{}`)",
                    grep(),
                    r.prefetch_state_after_grep
                ),
                beside,
            )
            .check(
                format!("R10 time {} s", secs(alone.seconds())),
                ratio(beside.seconds(), alone.seconds()),
                1.2,
                "time ≤ 1.2x alone".into(),
            ),
        );
    }

    let cold = &r.remount_first_cold;
    let warm = &r.remount_first_warm;
    rows.push(Row::measured(
        "R7",
        "imapfs with a disk cache (`--cache-dir`): cold grep of 3a on a first mount".into(),
        cold,
    ));
    rows.push(Row::measured(
        "R8",
        "imapfs with a disk cache: warm grep, the same again on that first mount".into(),
        warm,
    ));
    let ls = &r.remount_ls;
    rows.push(
        Row::measured(
            "8a",
            "imapfs warm remount (unmounted after R8, mounted again on the same cache): `ls -l INBOX`"
                .into(),
            ls,
        )
        .check(
            "10 KB = 10,240 B".into(),
            ratio(ls.bytes() as f64, 10_240.0),
            1.0,
            "bytes < 10 KB".into(),
        ),
    );
    let grep = &r.remount_grep;
    let what = || "imapfs warm remount: the grep of 3a, after 8a".to_string();
    rows.push(Row::measured("8b", what(), grep).check(
        format!("R7 bytes {}", thousands(cold.bytes())),
        ratio(grep.bytes() as f64, cold.bytes() as f64),
        0.01,
        "bytes < 1% of the first grep's".into(),
    ));
    rows.push(Row::measured("8c", what(), grep).check(
        format!("R8 time {} s", secs(warm.seconds())),
        ratio(grep.seconds(), warm.seconds()),
        1.2,
        "time ≤ 1.2x warm grep".into(),
    ));
    if r.fuse_reference_missing.is_none() && r.fuse_reference_fresh.runs() > 0 {
        // What a fresh mount costs any FUSE filesystem with this tree shape: the kernel's
        // dentries, attributes, directory and page caches of the mount start empty.
        let (fresh, settled) = (&r.fuse_reference_fresh, &r.fuse_reference);
        rows.push(Row::measured(
            "R6b",
            "FUSE reference: the first grep through bindfs on a fresh mount (R6's tree; the \
             files in the page cache underneath, as imapfs's disk cache is on a warm remount)"
                .into(),
            fresh,
        ));
        let bindfs = ratio(fresh.seconds(), settled.seconds());
        rows.push(Row {
            reference: format!(
                "bindfs fresh / warm: R6b {} s / R6 {} s = {bindfs:.2}x",
                secs(fresh.seconds()),
                secs(settled.seconds())
            ),
            ratio: Some(ratio(grep.seconds(), warm.seconds()) / bindfs),
            target: "(for comparison)".into(),
            ..Row::measured(
                "8c'",
                "imapfs warm remount grep / warm grep (8c), against the same ratio for a FUSE \
                 passthrough"
                    .into(),
                grep,
            )
        });
    }
}

/// 9: the server's search against grep over the slow link.
fn search_rows(r: &Results, rows: &mut Vec<Row>) {
    let grep = &r.search_grep;
    rows.push(Row::measured(
        "R9",
        format!(
            "imapfs over the slow link: cold `grep -rl --include=message.eml {SEARCH_WORD}` over \
             {SEARCH_MAILBOX} ({} messages, {} bytes; {SEARCH_HITS} hits; fresh mount)",
            thousands(r.search_messages as u64),
            thousands(r.search_bytes)
        ),
        grep,
    ));
    let ls = &r.search_ls;
    let what = || {
        format!(
            "imapfs over the slow link: `ls {SEARCH_MAILBOX}/.search/body:{SEARCH_WORD}` (fresh mount)"
        )
    };
    rows.push(Row::measured("9a", what(), ls).check(
        format!("R9 time {} s", secs(grep.seconds())),
        ratio(ls.seconds(), grep.seconds()),
        1.0,
        "time < 1x cold grep".into(),
    ));
    rows.push(Row::measured("9b", what(), ls).check(
        format!("R9 bytes {}", thousands(grep.bytes())),
        ratio(ls.bytes() as f64, grep.bytes() as f64),
        0.01,
        "bytes < 1% of cold grep's".into(),
    ));
}

/// 10: the same operations without compression, compared with them with it.
fn compression_rows(r: &Results, rows: &mut Vec<Row>) {
    let both = |plain: &Series, compressed: &Series| {
        format!(
            "{:.2}x the time, {:.2}x the bytes",
            ratio(plain.seconds(), compressed.seconds()),
            ratio(plain.bytes() as f64, compressed.bytes() as f64)
        )
    };
    let pairs: [(&'static str, String, &Series, &str, &Series); 3] = [
        (
            "10a",
            "imapfs: cold grep of 3a, loopback, --no-compress".into(),
            &r.grep_cold_plain,
            "3a",
            &r.grep_cold,
        ),
        (
            "10b",
            "imapfs over the slow link: the cold grep of R9, --no-compress".into(),
            &r.search_grep_plain,
            "R9",
            &r.search_grep,
        ),
        (
            "10c",
            format!("`imapfs prefetch {SEARCH_MAILBOX}` over the slow link, --no-compress"),
            &r.slow_prefetch_plain,
            "10d",
            &r.slow_prefetch_deflate,
        ),
    ];
    for (id, what, plain, ref_id, compressed) in pairs {
        if compressed.runs() == 0 {
            rows.push(Row::measured(id, what, plain));
            continue;
        }
        let row = compared(
            id,
            what,
            plain,
            format!("{ref_id} (compressed): {}", both(plain, compressed)),
            ratio(plain.seconds(), compressed.seconds()),
        );
        rows.push(row);
    }
    rows.push(Row::measured(
        "10d",
        format!("`imapfs prefetch {SEARCH_MAILBOX}` over the slow link, COMPRESS=DEFLATE"),
        &r.slow_prefetch_deflate,
    ));
}
