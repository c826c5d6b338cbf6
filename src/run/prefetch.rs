//! `imapfs prefetch`: fills the disk cache without mounting (IMAP's offline mode), with a
//! progress bar on a terminal, plain lines otherwise, and a summary. The work is the core's
//! ([`Fs::prefetch_mailbox`]), the same a mounted imapfs does for
//! `setfattr -n user.imapfs.prefetch`; only no kernel is asked anything.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{fs_config, login_error, unconnected_store, RunError};
use crate::cache::memory::MemoryCache;
use crate::cache::tiered::TieredCache;
use crate::cli::Options;
use crate::fs::prefetch::{Depth, Pace, Progress};
use crate::fs::{Fs, FsParts};
use crate::store::cached::CachedStore;
use crate::store::{MailStore, MailboxId};

/// Plain progress lines come at most this often.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// Prefetches `mailboxes` (paths as the mount shows them; none: every selectable one) of
/// the account `opts` names into its disk cache. A mailbox that fails is reported and the
/// others go on; the result is an error if any failed.
pub fn prefetch(opts: &Options, mailboxes: &[String], depth: Depth) -> Result<(), RunError> {
    if opts.offline {
        return Err(RunError::Daemon(
            "imapfs prefetch needs the server; --offline asks for none".into(),
        ));
    }
    let Some(path) = super::cache_path(opts) else {
        return Err(RunError::Daemon(
            "imapfs prefetch fills the disk cache; with --no-disk-cache there is none to fill"
                .into(),
        ));
    };
    // The password first, while this is the only thread: the disk cache starts a writer
    // thread, after which `IMAPFS_PASSWORD` can no longer be erased from /proc/PID/environ.
    let imap = unconnected_store(opts)?;
    let (dir, disk) = super::open_disk_cache(opts, &path).map_err(RunError::Daemon)?;
    imap.log_in().map_err(|e| login_error(opts, e))?;
    let store = Arc::new(CachedStore::new(
        Arc::new(imap),
        dir,
        Some(Arc::clone(&disk)),
        false,
    ));
    let config = fs_config(opts);
    let memory = MemoryCache::new(config.cache_bytes / 4 * 3);
    let parts = FsParts {
        cache: Arc::new(TieredCache::new(memory, Arc::clone(&disk))),
        ..FsParts::defaults(&config)
    };
    let fs = Fs::with_parts(Arc::clone(&store) as Arc<dyn MailStore>, config, parts);

    let chosen = choose(store.as_ref(), mailboxes)?;
    let started = Instant::now();
    let display = Display::new(std::io::stderr().is_terminal(), chosen.len());
    let mut total = Progress::default();
    let mut failed = Vec::new();
    for (id, shown) in &chosen {
        let bar = display.begin(shown);
        match fs.prefetch_mailbox(id, depth, Pace::Full(opts.connections), &|p| bar.update(p)) {
            Ok(done) => {
                bar.finish(&done, None);
                total.messages += done.messages;
                total.messages_total += done.messages_total;
                total.bytes += done.bytes;
                total.bytes_total += done.bytes_total;
                total.skipped += done.skipped;
                total.skipped_bytes += done.skipped_bytes;
            }
            Err(e) => {
                bar.finish(&bar.last(), Some(&e.to_string()));
                failed.push(shown.clone());
            }
        }
    }
    // What the writer thread still holds reaches the disk before the summary is printed.
    store.flush();
    disk.flush();
    let took = started.elapsed();
    let stats = store.stats();
    let fetched = total.bytes.saturating_sub(total.skipped_bytes);
    println!(
        "prefetched {} of {} mailboxes: {} messages ({} cached already), {} in {:.1} s ({}/s); \
         from the server: {} ({} bytes) in {} commands",
        chosen.len() - failed.len(),
        chosen.len(),
        total.messages,
        total.skipped,
        human_bytes(fetched),
        took.as_secs_f64(),
        human_bytes((fetched as f64 / took.as_secs_f64().max(0.001)) as u64),
        human_bytes(stats.bytes_received),
        stats.bytes_received,
        stats.commands,
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(RunError::Daemon(format!(
            "{} of {} mailboxes were not prefetched completely ({}); run it again to go on where it stopped",
            failed.len(),
            chosen.len(),
            failed.join(", ")
        )))
    }
}

/// The mailboxes to prefetch, with their paths as the mount shows them: those named (in
/// the order given), or every selectable one. A name the server does not have is an error
/// before anything is fetched.
fn choose(store: &dyn MailStore, names: &[String]) -> Result<Vec<(MailboxId, String)>, RunError> {
    let list = store
        .list_mailboxes()
        .map_err(|e| RunError::Daemon(format!("cannot list the mailboxes: {e}")))?;
    // A special-use mailbox listed \Noselect is shown holding messages (`MailboxDir::unsure`).
    let selectable: Vec<(MailboxId, String)> = list
        .into_iter()
        .filter(|m| m.selectable || m.special_use.is_some())
        .map(|m| (m.id, m.path.join("/")))
        .collect();
    if names.is_empty() {
        return Ok(selectable);
    }
    let mut chosen = Vec::new();
    for name in names {
        match selectable.iter().find(|(_, shown)| {
            shown == name || (name.eq_ignore_ascii_case("INBOX") && shown == "INBOX")
        }) {
            Some(found) => chosen.push(found.clone()),
            None => {
                let known: Vec<&str> = selectable.iter().map(|(_, s)| s.as_str()).collect();
                let mut shown = known
                    .iter()
                    .take(20)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                if known.len() > 20 {
                    shown.push_str(", ...");
                }
                return Err(RunError::Daemon(format!(
                    "there is no mailbox {name:?} (the mailboxes are: {shown})"
                )));
            }
        }
    }
    Ok(chosen)
}

/// Where progress goes: bars on a terminal, lines otherwise.
struct Display {
    terminal: bool,
    mailboxes: usize,
    begun: Mutex<usize>,
}

impl Display {
    fn new(terminal: bool, mailboxes: usize) -> Display {
        Display {
            terminal,
            mailboxes,
            begun: Mutex::new(0),
        }
    }

    fn begin(&self, mailbox: &str) -> MailboxProgress {
        let n = {
            let mut begun = self.begun.lock();
            *begun += 1;
            *begun
        };
        let label = format!("[{n}/{}] {mailbox}", self.mailboxes);
        let bar = self.terminal.then(|| {
            let bar = indicatif::ProgressBar::new(0);
            let style = indicatif::ProgressStyle::with_template(
                "{prefix} {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(label.clone());
            bar
        });
        MailboxProgress {
            label,
            bar,
            last: Mutex::new((Progress::default(), None)),
        }
    }
}

/// One mailbox's progress.
struct MailboxProgress {
    label: String,
    bar: Option<indicatif::ProgressBar>,
    /// The last progress told, and when a line was last printed.
    last: Mutex<(Progress, Option<Instant>)>,
}

impl MailboxProgress {
    fn update(&self, p: &Progress) {
        let mut last = self.last.lock();
        last.0 = *p;
        match &self.bar {
            Some(bar) => {
                bar.set_length(p.bytes_total);
                bar.set_position(p.bytes);
                bar.set_message(format!("{}/{} messages", p.messages, p.messages_total));
            }
            None => {
                if last.1.is_none_or(|at| at.elapsed() >= LINE_EVERY) {
                    last.1 = Some(Instant::now());
                    eprintln!("{}: {}", self.label, describe(p));
                }
            }
        }
    }

    fn last(&self) -> Progress {
        self.last.lock().0
    }

    fn finish(&self, p: &Progress, error: Option<&str>) {
        let line = match error {
            Some(why) => format!("{}: stopped at {}: {why}", self.label, describe(p)),
            None => format!("{}: done, {}", self.label, describe(p)),
        };
        match &self.bar {
            Some(bar) => bar.finish_with_message(match error {
                Some(why) => format!("failed: {why}"),
                None => format!("{}/{} messages", p.messages, p.messages_total),
            }),
            None => eprintln!("{line}"),
        }
    }
}

fn describe(p: &Progress) -> String {
    let mut out = format!("{} of {} messages", p.messages, p.messages_total);
    if p.bytes_total > 0 {
        out.push_str(&format!(
            ", {} of {}",
            human_bytes(p.bytes),
            human_bytes(p.bytes_total)
        ));
    }
    if p.skipped > 0 {
        out.push_str(&format!(" ({} cached already)", p.skipped));
    }
    out
}

/// `12.3 MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 << 20), "10.0 MiB");
    }

    #[test]
    fn progress_lines_say_what_is_done() {
        let p = Progress {
            messages: 3,
            messages_total: 10,
            bytes: 2048,
            bytes_total: 4096,
            skipped: 1,
            skipped_bytes: 100,
        };
        assert_eq!(
            describe(&p),
            "3 of 10 messages, 2.0 KiB of 4.0 KiB (1 cached already)"
        );
        let headers = Progress {
            messages: 5,
            messages_total: 5,
            ..Progress::default()
        };
        assert_eq!(describe(&headers), "5 of 5 messages");
    }
}
