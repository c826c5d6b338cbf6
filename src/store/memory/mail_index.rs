//! Dovecot 2.3's mail index for the memory store: how a mailbox keeps a message's flags and
//! keywords, and how `FETCH FLAGS` lists them (`mail-index` keywords, `imap_write_flags`),
//! `\Recent` included. Checked against Dovecot 2.3.19 by `store/conformance.rs`.

/// The system flags a message can carry, in the order Dovecot lists them.
const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// The flag of a message no session has selected the mailbox since; listed after the
/// system flags, before the keywords.
pub(super) const RECENT: &str = "\\Recent";

/// A mailbox's keywords, in the order they were first used in it: Dovecot lists a
/// message's keywords in this order, not in the order they were given, and matches them
/// without regard to case, keeping the spelling of their first use.
#[derive(Debug, Default)]
pub(super) struct Keywords(Vec<String>);

impl Keywords {
    /// `flags` as the index keeps them: system flags in their canonical spelling and order
    /// (any case given), then keywords in the mailbox's order, each once; keywords not
    /// used in the mailbox before are added to it in the order given. `\Recent` is the
    /// server's alone and is dropped.
    pub(super) fn index_flags<S: AsRef<str>>(&mut self, flags: &[S]) -> Vec<String> {
        let mut system = [false; SYSTEM_FLAGS.len()];
        let mut keywords: Vec<usize> = Vec::new();
        for flag in flags.iter().map(AsRef::as_ref) {
            if let Some(i) = SYSTEM_FLAGS
                .iter()
                .position(|s| s.eq_ignore_ascii_case(flag))
            {
                system[i] = true;
            } else if !flag.eq_ignore_ascii_case(RECENT) {
                keywords.push(self.index_of(flag));
            }
        }
        keywords.sort_unstable();
        keywords.dedup();
        SYSTEM_FLAGS
            .iter()
            .zip(system)
            .filter(|(_, set)| *set)
            .map(|(flag, _)| (*flag).to_string())
            .chain(keywords.into_iter().map(|i| self.0[i].clone()))
            .collect()
    }

    /// The keyword's place in the mailbox, added at the end if it is new.
    fn index_of(&mut self, keyword: &str) -> usize {
        match self.0.iter().position(|k| k.eq_ignore_ascii_case(keyword)) {
            Some(i) => i,
            None => {
                self.0.push(keyword.to_string());
                self.0.len() - 1
            }
        }
    }
}

/// Flags kept by [`Keywords::index_flags`] as `FETCH FLAGS` lists them, with `\Recent`
/// after the system flags when the message is recent.
pub(super) fn listed_flags(flags: &[String], recent: bool) -> Vec<String> {
    let mut listed = flags.to_vec();
    if recent {
        let after_system = flags
            .iter()
            .take_while(|f| SYSTEM_FLAGS.contains(&f.as_str()))
            .count();
        listed.insert(after_system, RECENT.to_string());
    }
    listed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_flags_come_first_in_dovecots_order_and_spelling() {
        let mut keywords = Keywords::default();
        let kept = keywords.index_flags(&["\\draft", "$x", "\\SEEN", "\\Answered", "\\Recent"]);
        assert_eq!(kept, ["\\Answered", "\\Seen", "\\Draft", "$x"]);
        assert_eq!(
            listed_flags(&kept, true),
            ["\\Answered", "\\Seen", "\\Draft", "\\Recent", "$x"]
        );
        assert_eq!(listed_flags(&kept, false), kept);
        assert_eq!(listed_flags(&[], true), [RECENT]);
    }

    #[test]
    fn keywords_keep_the_order_and_spelling_of_their_first_use() {
        let mut keywords = Keywords::default();
        assert_eq!(keywords.index_flags(&["$Label2"]), ["$Label2"]);
        assert_eq!(
            keywords.index_flags(&["$Label1", "$New", "$label2", "$LABEL1"]),
            ["$Label2", "$Label1", "$New"]
        );
        assert_eq!(
            keywords.index_flags(&["$new", "$label1"]),
            ["$Label1", "$New"]
        );
    }
}
