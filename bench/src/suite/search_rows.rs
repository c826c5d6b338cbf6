//! The search rows (`ls MAILBOX/.search/body:WORD` against a cold `grep -rl WORD`, on the
//! slow link) and the compression rows: the same operations without COMPRESS=DEFLATE.

use std::io;
use std::process::Command;

use super::{brief, lines_of, progress, Bench, Results};
use crate::server::{SEARCH_HITS, SEARCH_MAILBOX, SEARCH_WORD};
use crate::stats::Sample;

impl Bench<'_> {
    /// 9: on fresh mounts over the slow link, `ls Search/.search/body:WORD`, then
    /// `grep -rl WORD` over Search.
    pub(super) fn search_rows(&mut self, results: &mut Results) -> io::Result<()> {
        let mount = self.mount(self.slow.port(), None)?;
        let query = mount
            .path()
            .join(SEARCH_MAILBOX)
            .join(".search")
            .join(format!("body:{SEARCH_WORD}"));
        let out = self.scratch("search.out");
        let mut ls = Command::new("ls");
        ls.arg(&query);
        let ls_sample = self.measure_on_mount(&mount, &self.slow, &mut ls, &out, &[0])?;
        let hits = lines_of(&out)?.len();
        results.unmount_measured(mount, "the mount of ls .search (9a)");
        let (grep, matches) = self.slow_search_grep(false, results)?;
        progress(&format!(
            "  search, slow link: ls .search {}; grep -rl {}",
            brief(&ls_sample),
            brief(&grep)
        ));
        for (row, got) in [("9", hits), ("R9", matches)] {
            if got != SEARCH_HITS {
                results.wrong(
                    row,
                    format!("{got} messages found, {SEARCH_HITS} hold {SEARCH_WORD:?}"),
                );
            }
        }
        results.search_ls.push(ls_sample);
        results.search_grep.push(grep);
        Ok(())
    }

    /// A cold `grep -rl WORD` over the Search mailbox on a fresh mount over the slow link.
    fn slow_search_grep(
        &mut self,
        no_compress: bool,
        results: &mut Results,
    ) -> io::Result<(Sample, usize)> {
        let mount = self.mount_with(self.slow.port(), None, None, no_compress)?;
        let dir = mount.path().join(SEARCH_MAILBOX);
        let result = self.grep_dir(&mount, &self.slow, SEARCH_WORD, &dir)?;
        results.unmount_measured(mount, "the mount of the slow-link grep over Search");
        Ok(result)
    }

    /// 10: without compression, the cold grep of 3a and the slow grep of 9; and prefetch of
    /// the Search mailbox over the slow link, with and without compression.
    pub(super) fn without_compression(&mut self, results: &mut Results) -> io::Result<()> {
        // As many runs as the main rows: 3c-3e compare this grep's median with theirs.
        for _ in 0..self.config.runs {
            let mount = self.mount_with(self.loopback.port(), Some(self.grep_cache), None, true)?;
            let (cold, matches) = self.grep_mount(&mount)?;
            mount.unmount()?;
            progress(&format!(
                "  imapfs grep cold, no compression: {}",
                brief(&cold)
            ));
            if results.grep_matches.1 > 0 && matches != results.grep_matches.1 {
                results.wrong(
                    "10a",
                    format!(
                        "grep found {matches} files, with compression {}",
                        results.grep_matches.1
                    ),
                );
            }
            results.grep_cold_plain.push(cold);
        }

        let (grep, matches) = self.slow_search_grep(true, results)?;
        progress(&format!(
            "  grep -rl over Search, slow link, no compression: {}",
            brief(&grep)
        ));
        if matches != SEARCH_HITS {
            results.wrong(
                "10b",
                format!("{matches} messages found, {SEARCH_HITS} hold {SEARCH_WORD:?}"),
            );
        }
        results.search_grep_plain.push(grep);

        let messages = self.corpus.search_messages;
        for no_compress in [false, true] {
            let sample = self.prefetch(&self.slow, SEARCH_MAILBOX, messages, no_compress)?;
            let name = if no_compress { "plain" } else { "deflate" };
            progress(&format!(
                "  imapfs prefetch of Search, slow link ({name}): {}",
                brief(&sample)
            ));
            if no_compress {
                results.slow_prefetch_plain.push(sample);
            } else {
                results.slow_prefetch_deflate.push(sample);
            }
        }
        Ok(())
    }
}
