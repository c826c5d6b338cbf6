//! The mailbox hierarchy as directories: LIST results split on the server's delimiter and
//! decoded from modified UTF-7 ([RFC 3501 §5.1.3](https://www.rfc-editor.org/rfc/rfc3501#section-5.1.3)).

use std::collections::{BTreeMap, HashMap};

use crate::store::{MailboxInfo, MailboxName};
use crate::utf7;

/// One directory of the mailbox tree. Directories implied by a child's name but not listed
/// themselves have no wire name.
#[derive(Debug, Clone, Default)]
pub struct MailboxDir {
    /// The mailbox this directory shows, if it exists on the server.
    pub wire: Option<MailboxName>,
    /// Whether it can hold messages (not `\Noselect`).
    pub selectable: bool,
    /// Child directory name -> its path.
    pub children: BTreeMap<String, String>,
}

/// All mailbox directories by display path (`""` is the root, `Archive/2023` a child).
#[derive(Debug, Clone, Default)]
pub struct MailboxTree {
    dirs: HashMap<String, MailboxDir>,
    special_use: HashMap<String, MailboxName>,
    delimiter: Option<char>,
}

/// A display name for one wire component: decoded, and safe as a single file name.
fn display_component(wire: &str) -> String {
    let decoded = match utf7::decode(wire) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(name = wire, error = %e, "mailbox name is not valid modified UTF-7; showing it as sent");
            wire.to_string()
        }
    };
    let cleaned: String = decoded
        .chars()
        .map(|c| {
            if c == '/' || c == '\0' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let mut cleaned = match cleaned.as_str() {
        "" | "." | ".." => format!("_{cleaned}"),
        _ => cleaned,
    };
    if cleaned.len() > crate::mime::MAX_NAME_BYTES {
        let mut end = crate::mime::MAX_NAME_BYTES;
        while !cleaned.is_char_boundary(end) {
            end -= 1;
        }
        cleaned.truncate(end);
    }
    cleaned
}

/// `name`, or `name (2)`, `name (3)`... whichever `taken` does not hold yet.
fn unique_among(name: String, taken: &BTreeMap<String, String>) -> String {
    if !taken.contains_key(&name) {
        return name;
    }
    (2..)
        .map(|n| format!("{name} ({n})"))
        .find(|candidate| !taken.contains_key(candidate))
        .expect("an unused suffix exists")
}

impl MailboxTree {
    /// Builds the tree from a LIST answer.
    pub fn build(list: &[MailboxInfo]) -> MailboxTree {
        let mut tree = MailboxTree::default();
        tree.dirs.insert(String::new(), MailboxDir::default());
        // Display path of each wire prefix seen, so that two wire names that clean up to the
        // same text (`Q1/Q2` and `Q1_Q2`) get distinct directories, and one wire name always
        // the same one.
        let mut by_wire: HashMap<String, String> = HashMap::new();
        for info in list {
            let parts: Vec<&str> = match info.delimiter {
                Some(d) => info.name.0.split(d).collect(),
                None => vec![info.name.0.as_str()],
            };
            let mut path = String::new();
            let mut wire_prefix = String::new();
            for (i, part) in parts.iter().enumerate() {
                let parent = path.clone();
                // INBOX is case-insensitive on the wire; show it as INBOX.
                let inbox = i == 0 && part.eq_ignore_ascii_case("INBOX");
                if i > 0 {
                    wire_prefix.extend(info.delimiter);
                }
                wire_prefix.push_str(if inbox { "INBOX" } else { part });
                path = match by_wire.get(&wire_prefix) {
                    Some(known) => known.clone(),
                    None => {
                        let name = if inbox {
                            "INBOX".to_string()
                        } else {
                            display_component(part)
                        };
                        let siblings = &tree.dirs[&parent].children;
                        let name = unique_among(name, siblings);
                        let child = if parent.is_empty() {
                            name.clone()
                        } else {
                            format!("{parent}/{name}")
                        };
                        if let Some(dir) = tree.dirs.get_mut(&parent) {
                            dir.children.insert(name, child.clone());
                        }
                        by_wire.insert(wire_prefix.clone(), child.clone());
                        child
                    }
                };
                let dir = tree.dirs.entry(path.clone()).or_default();
                if i + 1 == parts.len() {
                    dir.wire = Some(info.name.clone());
                    dir.selectable = info.selectable;
                }
            }
            if tree.delimiter.is_none() {
                tree.delimiter = info.delimiter;
            }
            if let Some(use_) = &info.special_use {
                tree.special_use
                    .entry(use_.clone())
                    .or_insert_with(|| info.name.clone());
            }
        }
        tree
    }

    /// The directory at `path`.
    pub fn get(&self, path: &str) -> Option<&MailboxDir> {
        self.dirs.get(path)
    }

    /// The mailbox with a SPECIAL-USE attribute (`trash`, `sent`...), if any.
    pub fn special_use(&self, use_: &str) -> Option<&MailboxName> {
        self.special_use.get(use_)
    }

    /// The server's hierarchy delimiter, if it has one.
    pub fn delimiter(&self) -> Option<char> {
        self.delimiter
    }

    /// The display path of a wire mailbox name.
    pub fn path_of(&self, wire: &MailboxName) -> Option<&str> {
        self.dirs
            .iter()
            .find(|(_, d)| d.wire.as_ref() == Some(wire))
            .map(|(p, _)| p.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, selectable: bool) -> MailboxInfo {
        MailboxInfo {
            name: MailboxName(name.into()),
            delimiter: Some('/'),
            selectable,
            special_use: None,
        }
    }

    #[test]
    fn hierarchy_and_utf7_names() {
        let tree = MailboxTree::build(&[
            info("INBOX", true),
            info("Archive/2023", true),
            info("Re&AOc-us", true),
            info("Shared", false),
        ]);
        let root = tree.get("").unwrap();
        let names: Vec<&str> = root.children.keys().map(String::as_str).collect();
        assert_eq!(names, ["Archive", "INBOX", "Reçus", "Shared"]);
        // Archive is implied by Archive/2023, so it has no mailbox of its own.
        assert!(tree.get("Archive").unwrap().wire.is_none());
        assert_eq!(
            tree.get("Archive/2023").unwrap().wire,
            Some(MailboxName("Archive/2023".into()))
        );
        assert_eq!(
            tree.get("Reçus").unwrap().wire,
            Some(MailboxName("Re&AOc-us".into()))
        );
        assert!(!tree.get("Shared").unwrap().selectable);
    }

    #[test]
    fn names_that_clean_up_alike_stay_apart_and_long_names_are_cut() {
        let dotted = |name: &str| {
            let mut i = info(name, true);
            i.delimiter = Some('.');
            i
        };
        let long = "x".repeat(1000);
        let tree = MailboxTree::build(&[
            dotted("Q1/Q2"),
            dotted("Q1_Q2"),
            dotted("Q1/Q2.sub"),
            dotted(&long),
        ]);
        let root = tree.get("").unwrap();
        assert_eq!(
            tree.get(&root.children["Q1_Q2"]).unwrap().wire,
            Some(MailboxName("Q1/Q2".into()))
        );
        assert_eq!(
            tree.get(&root.children["Q1_Q2 (2)"]).unwrap().wire,
            Some(MailboxName("Q1_Q2".into()))
        );
        // A child of the first keeps to the first's directory.
        assert!(tree.get("Q1_Q2/sub").is_some());
        assert!(root.children.keys().all(|n| n.len() <= 200));
        assert!(root.children.contains_key(&"x".repeat(200)));
    }

    #[test]
    fn hostile_components_are_made_safe() {
        let mut dot = info("x", true);
        dot.delimiter = Some('.');
        dot.name = MailboxName("a/b.c".into());
        let tree = MailboxTree::build(&[dot, info("..", true), info("&Jjo", true)]);
        let root = tree.get("").unwrap();
        assert!(root.children.contains_key("a_b"));
        assert!(tree.get("a_b/c").is_some());
        assert!(root.children.contains_key("_.."));
        // Invalid modified UTF-7 is shown as sent, not dropped.
        assert!(root.children.contains_key("&Jjo"));
    }
}
