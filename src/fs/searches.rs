//! `.search` directories: every name inside one is a query (`crate::search`), run by the
//! server (`MailStore::search`), and its hits are symlinks to their message directories.
//! `MAILBOX/.search/QUERY` holds the hits of one mailbox; `MNT/.search/QUERY` holds one
//! directory per mailbox with hits. Neither `.search` is listed: it is reached by name,
//! like `.snapshot` on a filer. Results are kept while the mailbox's listing shows no
//! change (flags included), so the live-update reports refresh them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::handles::DirItem;
use super::inodes::Node;
use super::metadata::LISTING_FRESH;
use super::virtual_dirs::VirtualNode;
use super::{Fs, FsError, FsResult};
use crate::search::{self, SearchDate, SearchKey};
use crate::store::MailboxId;

/// The name of the search directory, at the root and in every mailbox directory.
pub const SEARCH: &str = ".search";
/// Another name for it that always reaches search, also where a mailbox is called
/// `.search` (the mailbox wins that name).
pub const SEARCH_ALIAS: &str = ".imapfs-search";
/// Queries whose results are kept.
const QUERIES_KEPT: usize = 256;
/// Separates the components of a nested mailbox in a cross-mailbox result's directory
/// name (U+2044 FRACTION SLASH, which looks like `/`).
const FLAT_SEPARATOR: char = '\u{2044}';

/// One hit: the message directory's name in its mailbox, and its mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub name: String,
    pub mtime: SystemTime,
}

/// The hits of a query in one mailbox, and what they were true for.
struct Held {
    hits: Arc<Vec<Hit>>,
    /// The listing generation before the search; `None`: the mailbox was not listed.
    generation: Option<u64>,
    /// Today, for relative dates.
    day: i64,
    at: Instant,
}

/// The results kept, by mailbox and query text.
#[derive(Default)]
pub struct SearchResults {
    held: Mutex<HashMap<(MailboxId, String), Held>>,
}

/// Whether `name` is a search directory's name.
pub fn is_search_name(name: &str) -> bool {
    name == SEARCH || name == SEARCH_ALIAS
}

/// Days since the epoch, today (UTC).
fn today() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs / 86_400) as i64
}

/// A mailbox path as one directory name: components joined by `⁄`, with `%` and `⁄`
/// inside a component percent-encoded, so that two mailboxes never share a name.
pub fn flat_name(path: &str) -> String {
    path.split('/')
        .map(|c| c.replace('%', "%25").replace(FLAT_SEPARATOR, "%E2%81%84"))
        .collect::<Vec<_>>()
        .join(&FLAT_SEPARATOR.to_string())
}

/// The mailbox path a flat name stands for (the inverse of `flat_name`).
pub fn path_of_flat(name: &str) -> Option<String> {
    let components: Vec<String> = name
        .split(FLAT_SEPARATOR)
        .map(|c| c.replace("%E2%81%84", "\u{2044}").replace("%25", "%"))
        .collect();
    let path = components.join("/");
    (flat_name(&path) == name).then_some(path)
}

/// Where a hit's symlink points: its message directory, relative to the result directory.
pub fn hit_target(from_root: bool, mailbox: &str, name: &str) -> String {
    if from_root {
        format!("../../../{mailbox}/{name}")
    } else {
        format!("../../{name}")
    }
}

impl Fs {
    /// The `.search` directory in the mailbox directory at `path` (`""`: the root).
    pub(super) fn search_dir(&self, path: &str) -> FsResult<Node> {
        if path.is_empty() {
            return Ok(Node::Virtual(VirtualNode::Searches { mailbox: None }));
        }
        self.searchable(path)?;
        Ok(Node::Virtual(VirtualNode::Searches {
            mailbox: Some(path.to_string()),
        }))
    }

    /// The server's identifier of the selectable mailbox shown at `path`.
    fn searchable(&self, path: &str) -> FsResult<MailboxId> {
        let tree = self.tree(false)?;
        tree.get(path)
            .and_then(|d| d.selectable_id().cloned())
            .ok_or(FsError::NotFound)
    }

    /// Parses a query, or says (in the log and the error) what is wrong where.
    fn parse_query(&self, query: &str) -> FsResult<SearchKey> {
        search::parse(query, SearchDate::from_days(today()))
            .map_err(|e| FsError::Invalid(format!("search query {query:?}: {e}")))
    }

    /// What `name` inside a search directory stands for.
    pub(super) fn resolve_search(&self, dir: &VirtualNode, name: &str) -> FsResult<Node> {
        let node = match dir {
            VirtualNode::Searches { mailbox } => {
                self.parse_query(name)?;
                VirtualNode::Query {
                    mailbox: mailbox.clone(),
                    query: name.to_string(),
                }
            }
            VirtualNode::Query {
                mailbox: Some(path),
                query,
            } => self.hit_node(query, false, path, name)?,
            VirtualNode::Query {
                mailbox: None,
                query,
            } => {
                let path = path_of_flat(name).ok_or(FsError::NotFound)?;
                let id = self.searchable(&path)?;
                if self.hits(&id, query)?.is_empty() {
                    return Err(FsError::NotFound);
                }
                VirtualNode::QueryMailbox {
                    query: query.clone(),
                    mailbox: path,
                }
            }
            VirtualNode::QueryMailbox { query, mailbox } => {
                self.hit_node(query, true, mailbox, name)?
            }
            _ => return Err(FsError::NotFound),
        };
        Ok(Node::Virtual(node))
    }

    fn hit_node(
        &self,
        query: &str,
        from_root: bool,
        path: &str,
        name: &str,
    ) -> FsResult<VirtualNode> {
        let id = self.searchable(path)?;
        let hit = self
            .hits(&id, query)?
            .iter()
            .find(|h| h.name == name)
            .cloned()
            .ok_or(FsError::NotFound)?;
        Ok(VirtualNode::Hit {
            query: query.to_string(),
            from_root,
            mailbox: path.to_string(),
            name: hit.name,
            mtime: hit.mtime,
        })
    }

    /// The entries of a search directory.
    pub(super) fn search_items(&self, dir: &VirtualNode) -> FsResult<Vec<DirItem>> {
        let hits_of = |query: &str, from_root: bool, path: &str| -> FsResult<Vec<DirItem>> {
            let id = self.searchable(path)?;
            Ok(self
                .hits(&id, query)?
                .iter()
                .map(|hit| DirItem::Child {
                    name: hit.name.clone(),
                    node: Node::Virtual(VirtualNode::Hit {
                        query: query.to_string(),
                        from_root,
                        mailbox: path.to_string(),
                        name: hit.name.clone(),
                        mtime: hit.mtime,
                    }),
                })
                .collect())
        };
        match dir {
            // Queries are reached by name; nothing is listed.
            VirtualNode::Searches { .. } => Ok(Vec::new()),
            VirtualNode::Query {
                mailbox: Some(path),
                query,
            } => hits_of(query, false, path),
            VirtualNode::Query {
                mailbox: None,
                query,
            } => {
                let tree = self.tree(true)?;
                let mut mailboxes: Vec<(String, MailboxId, bool, bool)> = tree
                    .dirs()
                    .filter(|(_, d)| !(self.config.hide_virtual_folders && d.is_virtual()))
                    .filter_map(|(path, d)| {
                        let id = d.selectable_id()?.clone();
                        Some((path.to_string(), id, d.unsure, !d.children.is_empty()))
                    })
                    .collect();
                mailboxes.sort();
                let mut items = Vec::new();
                for (path, id, unsure, parent) in mailboxes {
                    let hits = match self.hits(&id, query) {
                        // A mailbox listed \Noselect that the server does not open has no
                        // hits; unreachable, as its listing shows its children alone where
                        // it has some (`listing_at_hand`), else the error.
                        Err(e) if unsure && (parent || !e.is_unreachable()) => {
                            tracing::debug!(mailbox = %id, error = %e, "not searched");
                            continue;
                        }
                        other => other?,
                    };
                    if !hits.is_empty() {
                        items.push(DirItem::Child {
                            name: flat_name(&path),
                            node: Node::Virtual(VirtualNode::QueryMailbox {
                                query: query.clone(),
                                mailbox: path,
                            }),
                        });
                    }
                }
                Ok(items)
            }
            VirtualNode::QueryMailbox { query, mailbox } => hits_of(query, true, mailbox),
            _ => Err(FsError::NotADirectory),
        }
    }

    /// The hits of `query` in `mailbox`: kept ones while the mailbox has not changed, or
    /// the server's answer. Only a mailbox with hits is listed (to name them).
    fn hits(&self, mailbox: &MailboxId, query: &str) -> FsResult<Arc<Vec<Hit>>> {
        let key = self.parse_query(query)?;
        let day = today();
        if self.metadata.generation(mailbox).is_some() {
            self.ensure_listing(mailbox, Some(LISTING_FRESH))?;
        }
        let generation = self.metadata.generation(mailbox);
        let slot = (mailbox.clone(), query.to_string());
        if let Some(held) = self.searches.held.lock().get(&slot) {
            let fresh = match (held.generation, generation) {
                (Some(then), Some(now)) => then == now,
                (None, None) => held.at.elapsed() < LISTING_FRESH,
                _ => false,
            };
            if fresh && held.day == day {
                return Ok(Arc::clone(&held.hits));
            }
        }
        let uids = self.store.search(mailbox, &key)?;
        let mut hits = Vec::new();
        if !uids.is_empty() {
            self.ensure_listing(mailbox, Some(LISTING_FRESH))?;
            let mut named = self.metadata.named(mailbox, &uids);
            if named.len() < uids.len() {
                // Messages that arrived after the listing was taken.
                self.ensure_listing(mailbox, Some(Duration::ZERO))?;
                named = self.metadata.named(mailbox, &uids);
            }
            hits = named
                .into_iter()
                .map(|(name, _, mtime)| Hit { name, mtime })
                .collect();
        }
        let hits = Arc::new(hits);
        let mut held = self.searches.held.lock();
        if held.len() >= QUERIES_KEPT {
            // Forget the oldest results.
            if let Some(oldest) = held
                .iter()
                .min_by_key(|(_, h)| h.at)
                .map(|(k, _)| k.clone())
            {
                held.remove(&oldest);
            }
        }
        held.insert(
            slot,
            Held {
                hits: Arc::clone(&hits),
                generation,
                day,
                at: Instant::now(),
            },
        );
        Ok(hits)
    }

    /// Where a search hit points.
    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        match self.node(ino)? {
            Node::Virtual(VirtualNode::Hit {
                from_root,
                mailbox,
                name,
                ..
            }) => Ok(hit_target(from_root, &mailbox, &name).into_bytes()),
            _ => Err(FsError::Invalid("not a symbolic link".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_names_never_clash_and_come_back() {
        let paths = [
            "INBOX",
            "Archive/2024",
            "Archive\u{2044}2024",
            "Archive%E2%81%842024",
            "a%/b",
            "a/%b",
            "a%25/b",
        ];
        let flat: Vec<String> = paths.iter().map(|p| flat_name(p)).collect();
        for (i, a) in flat.iter().enumerate() {
            assert_eq!(path_of_flat(a).as_deref(), Some(paths[i]), "{a}");
            for b in &flat[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(flat_name("Archive/2024"), "Archive\u{2044}2024");
        assert_eq!(path_of_flat("x%2"), None);
    }

    #[test]
    fn targets_climb_to_the_mailbox() {
        assert_eq!(hit_target(false, "INBOX", "4 Hi"), "../../4 Hi");
        assert_eq!(hit_target(true, "A/B", "4 Hi"), "../../../A/B/4 Hi");
    }
}
