//! The mailbox hierarchy as directories: the store's decoded mailbox paths, made safe and
//! unique as file names.

use std::collections::{BTreeMap, HashMap};

use crate::store::{MailboxId, MailboxInfo, MailboxPath};

/// One directory of the mailbox tree. Directories implied by a child's path but not listed
/// themselves have no identifier.
#[derive(Debug, Clone, Default)]
pub struct MailboxDir {
    /// The mailbox this directory shows, if it exists on the server.
    pub id: Option<MailboxId>,
    /// Its path as the server has it (decoded, before the names were made safe): what a
    /// new child's path or a rename target is built from.
    pub server_path: MailboxPath,
    /// Whether it can hold messages (not `\Noselect`, or a special-use mailbox listed so).
    pub selectable: bool,
    /// Listed `\Noselect` though it has a special use: Dovecot 2.3 lists so a special-use
    /// mailbox of its configuration (`Archive`) first made as the parent of another
    /// (`Archive/2023`), and it opens, takes messages and holds them. Taken as holding
    /// messages; a server that refuses to open it shows its children alone.
    pub unsure: bool,
    /// Child directory name -> its display path.
    pub children: BTreeMap<String, String>,
    /// Its RFC 6154 special use (`trash`, `all`...), lower case, if the server gave one.
    pub special_use: Option<String>,
}

/// Special uses of mailboxes that show messages of other mailboxes again (Gmail's
/// `[Gmail]/All Mail`, Starred and Important): `--hide-virtual-folders` leaves them out of
/// listings and searches of every mailbox.
pub const VIRTUAL_USES: [&str; 3] = ["all", "flagged", "important"];

impl MailboxDir {
    /// True if it shows messages of other mailboxes again (see [`VIRTUAL_USES`]).
    pub fn is_virtual(&self) -> bool {
        self.special_use
            .as_deref()
            .is_some_and(|u| VIRTUAL_USES.contains(&u))
    }

    /// The mailbox, if this directory is one that can hold messages.
    pub fn selectable_id(&self) -> Option<&MailboxId> {
        self.id.as_ref().filter(|_| self.selectable)
    }
}

/// All mailbox directories by display path (`""` is the root, `Archive/2023` a child).
#[derive(Debug, Clone, Default)]
pub struct MailboxTree {
    dirs: HashMap<String, MailboxDir>,
    special_use: HashMap<String, MailboxId>,
    by_id: HashMap<MailboxId, String>,
}

/// A level of a mailbox path made safe as one file name: no `/`, NUL or control
/// characters, not `.` or `..`, at most `MAX_NAME_BYTES` bytes.
fn display_component(level: &str) -> String {
    let cleaned: String = level
        .chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
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

/// Whether the display path `path` is `dir` or lies below it.
pub fn is_within(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Where `path` is once the directory `from` (and all below it) moved to `to`; `None` for a
/// path outside it.
pub fn moved_path(path: &str, from: &str, to: &str) -> Option<String> {
    is_within(path, from).then(|| format!("{to}{}", &path[from.len()..]))
}

/// `parent/name`, or `name` at the root.
pub fn child_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

impl MailboxTree {
    /// Builds the tree from a LIST answer.
    pub fn build(list: &[MailboxInfo]) -> MailboxTree {
        let mut tree = MailboxTree::default();
        tree.dirs.insert(String::new(), MailboxDir::default());
        // Display path of each server path prefix seen, so that two paths that clean up to
        // the same text (`Q1/Q2` and `Q1_Q2`) get distinct directories, and one server path
        // always the same one.
        let mut by_server: HashMap<&[String], String> = HashMap::new();
        for info in list {
            let mut path = String::new();
            for (i, level) in info.path.iter().enumerate() {
                let prefix = &info.path[..=i];
                let last = i + 1 == info.path.len();
                let known = by_server.get(prefix).cloned();
                // A second mailbox at a path already taken (two wire names that decode
                // alike) gets a directory of its own rather than replacing the first.
                let clash = last
                    && known
                        .as_ref()
                        .is_some_and(|p| tree.dirs[p].id.as_ref().is_some_and(|id| *id != info.id));
                path = match known {
                    Some(known) if !clash => known,
                    _ => {
                        let siblings = &tree.dirs[&path].children;
                        let name = unique_among(display_component(level), siblings);
                        let child = child_path(&path, &name);
                        if let Some(dir) = tree.dirs.get_mut(&path) {
                            dir.children.insert(name, child.clone());
                        }
                        if !clash {
                            by_server.insert(prefix, child.clone());
                        }
                        child
                    }
                };
                let dir = tree.dirs.entry(path.clone()).or_default();
                dir.server_path = prefix.to_vec();
                if last {
                    dir.id = Some(info.id.clone());
                    dir.unsure = !info.selectable && info.special_use.is_some();
                    dir.selectable = info.selectable || dir.unsure;
                    dir.special_use = info.special_use.clone();
                    tree.by_id.insert(info.id.clone(), path.clone());
                }
            }
            if let Some(use_) = &info.special_use {
                tree.special_use
                    .entry(use_.clone())
                    .or_insert_with(|| info.id.clone());
            }
        }
        tree
    }

    /// The directory at `path`.
    pub fn get(&self, path: &str) -> Option<&MailboxDir> {
        self.dirs.get(path)
    }

    /// The mailbox with a SPECIAL-USE attribute (`trash`, `sent`...), if any.
    pub fn special_use(&self, use_: &str) -> Option<&MailboxId> {
        self.special_use.get(use_)
    }

    /// Whether `other` has the same mailboxes at the same paths.
    pub fn same_mailboxes(&self, other: &MailboxTree) -> bool {
        self.by_id == other.by_id
    }

    /// The display path of a mailbox.
    pub fn path_of(&self, id: &MailboxId) -> Option<&str> {
        self.by_id.get(id).map(String::as_str)
    }

    /// Every directory, by display path.
    pub fn dirs(&self) -> impl Iterator<Item = (&str, &MailboxDir)> {
        self.dirs.iter().map(|(p, d)| (p.as_str(), d))
    }

    /// Every mailbox and its display path.
    pub fn mailboxes(&self) -> impl Iterator<Item = (&MailboxId, &str)> {
        self.by_id.iter().map(|(id, path)| (id, path.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_within_itself_and_its_subtree_only() {
        assert!(is_within("Projects", "Projects"));
        assert!(is_within("Projects/Sub/X", "Projects"));
        assert!(!is_within("Projects-2", "Projects"));
        assert!(!is_within("Proj", "Projects"));
        assert_eq!(
            moved_path("Projects/Sub", "Projects", "Old").as_deref(),
            Some("Old/Sub")
        );
        assert_eq!(moved_path("Projects-2", "Projects", "Old"), None);
    }

    fn info(path: &[&str], id: &str, selectable: bool) -> MailboxInfo {
        MailboxInfo {
            id: MailboxId::new(id),
            path: path.iter().map(|l| l.to_string()).collect(),
            selectable,
            special_use: None,
        }
    }

    #[test]
    fn hierarchy_and_decoded_names() {
        let tree = MailboxTree::build(&[
            info(&["INBOX"], "INBOX", true),
            info(&["Archive", "2023"], "Archive/2023", true),
            info(&["Reçus"], "Re&AOc-us", true),
            info(&["Shared"], "Shared", false),
        ]);
        let root = tree.get("").unwrap();
        let names: Vec<&str> = root.children.keys().map(String::as_str).collect();
        assert_eq!(names, ["Archive", "INBOX", "Reçus", "Shared"]);
        // Archive is implied by Archive/2023, so it has no mailbox of its own.
        assert!(tree.get("Archive").unwrap().id.is_none());
        assert_eq!(tree.get("Archive").unwrap().server_path, ["Archive"]);
        assert_eq!(
            tree.get("Archive/2023").unwrap().id,
            Some(MailboxId::new("Archive/2023"))
        );
        assert_eq!(
            tree.get("Reçus").unwrap().id,
            Some(MailboxId::new("Re&AOc-us"))
        );
        assert_eq!(tree.path_of(&MailboxId::new("Re&AOc-us")), Some("Reçus"));
        assert!(!tree.get("Shared").unwrap().selectable);
        assert!(tree.get("Shared").unwrap().selectable_id().is_none());
    }

    #[test]
    fn names_that_clean_up_alike_stay_apart_and_long_names_are_cut() {
        let long = "x".repeat(1000);
        let tree = MailboxTree::build(&[
            info(&["Q1/Q2"], "Q1/Q2", true),
            info(&["Q1_Q2"], "Q1_Q2", true),
            info(&["Q1/Q2", "sub"], "Q1/Q2.sub", true),
            info(&[&long], "long", true),
        ]);
        let root = tree.get("").unwrap();
        assert_eq!(
            tree.get(&root.children["Q1_Q2"]).unwrap().id,
            Some(MailboxId::new("Q1/Q2"))
        );
        assert_eq!(
            tree.get(&root.children["Q1_Q2 (2)"]).unwrap().id,
            Some(MailboxId::new("Q1_Q2"))
        );
        // A child of the first keeps to the first's directory.
        assert!(tree.get("Q1_Q2/sub").is_some());
        assert_eq!(tree.get("Q1_Q2/sub").unwrap().server_path, ["Q1/Q2", "sub"]);
        assert!(root.children.keys().all(|n| n.len() <= 200));
        assert!(root.children.contains_key(&"x".repeat(200)));
    }

    #[test]
    fn hostile_components_are_made_safe_and_clashing_paths_stay_apart() {
        let tree = MailboxTree::build(&[
            info(&["a/b", "c"], "a/b.c", true),
            info(&[".."], "..", true),
            info(&["&Jjo"], "&Jjo", true),
            info(&["&Jjo"], "&-Jjo", true),
        ]);
        let root = tree.get("").unwrap();
        assert!(root.children.contains_key("a_b"));
        assert!(tree.get("a_b/c").is_some());
        assert!(root.children.contains_key("_.."));
        assert_eq!(tree.get("&Jjo").unwrap().id, Some(MailboxId::new("&Jjo")));
        assert_eq!(
            tree.get("&Jjo (2)").unwrap().id,
            Some(MailboxId::new("&-Jjo"))
        );
    }
}
