//! Extended attributes of message directories: flags (read-write) and identity (read-only).

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use super::inodes::{MessageRef, Node};
use super::prefetch::Depth;
use super::{Fs, FsError, FsResult};
use crate::store::{Flag, LinkState, MailboxId, MessageMeta};

/// Flags, space-separated; writing replaces the whole set.
pub const FLAGS: &str = "user.imap.flags";
/// Read-only attributes.
pub const UID: &str = "user.imap.uid";
pub const UIDVALIDITY: &str = "user.imap.uidvalidity";
pub const INTERNALDATE: &str = "user.imap.internaldate";
pub const MAILBOX: &str = "user.imap.mailbox";

/// On the root: what the mount asked of the server so far (for benchmarks and debugging).
pub const STATS: &str = "user.imapfs.stats";

/// On the root: `online`, or `offline since <time>` (serving the disk cache).
pub const STATE: &str = "user.imapfs.state";

/// On the root: what is not on the server yet, one line each: the changes made offline
/// that wait for it (refused ones with why), then the spool files not stored, with why.
/// Empty when nothing waits. Set to `retry` to replay the changes now.
pub const PENDING: &str = "user.imapfs.pending";

/// On a mailbox: set (to `1`, or `headers`) to prefetch it in the background; read for how
/// far that came.
pub const PREFETCH: &str = "user.imapfs.prefetch";

const ALL: [&str; 5] = [FLAGS, UID, UIDVALIDITY, INTERNALDATE, MAILBOX];

/// Year, month, day, hour, minute, second (UTC) of a Unix time
/// (Howard Hinnant's days-from-civil inverse).
pub fn civil_from_unix(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// An RFC 3339 timestamp in UTC (`2023-11-14T22:13:20Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, mo, d, h, mi, s) = civil_from_unix(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

impl Fs {
    /// A listed message's metadata; ENOENT once it left its mailbox's listing.
    fn listed_meta(&self, message: &MessageRef) -> FsResult<MessageMeta> {
        self.metadata.message(message).ok_or(FsError::NotFound)
    }

    /// The message whose attributes `node` shows: a message directory's, or a stored
    /// file's (also one just written, once stored: its mailbox is listed again if the
    /// listing held predates it, so that its flags are known).
    fn attribute_message(&self, node: &Node) -> FsResult<Option<MessageRef>> {
        let message = match node {
            Node::Message {
                message, section, ..
            } if section.is_whole() => return Ok(Some(message.clone())),
            // Listed: what the listing says of it is all there is.
            Node::StoredFile { message, .. } => return Ok(Some(message.clone())),
            Node::NewFile { dir_path, name } => {
                match self.new_files.get(dir_path, name).and_then(|f| f.stored()) {
                    Some(Some(message)) => message,
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        if self.metadata.message(&message).is_none() {
            self.ensure_listing(&message.mailbox, Some(std::time::Duration::ZERO))?;
        }
        Ok(Some(message))
    }

    /// `getxattr`.
    pub fn getxattr(&self, ino: u64, name: &OsStr) -> FsResult<Vec<u8>> {
        if ino == super::inodes::ROOT && name.to_str() == Some(STATS) {
            let s = self.store.stats();
            return Ok(format!(
                "commands={} bytes_received={} bytes_sent={} lookups={} flushes={} dir_reads={} \
                 requests={} handoffs={}",
                s.commands,
                s.bytes_received,
                s.bytes_sent,
                self.lookups.load(Ordering::Relaxed),
                self.flushes.load(Ordering::Relaxed),
                self.dir_reads.load(Ordering::Relaxed),
                self.requests.requests.load(Ordering::Relaxed),
                self.requests.handoffs.load(Ordering::Relaxed)
            )
            .into_bytes());
        }
        if ino == super::inodes::ROOT && name.to_str() == Some(PENDING) {
            let mut out: String = self
                .store
                .pending_changes()
                .iter()
                .map(|l| format!("{l}\n"))
                .collect();
            out.push_str(&self.pending_spool_files());
            return Ok(out.into_bytes());
        }
        if ino == super::inodes::ROOT && name.to_str() == Some(STATE) {
            return Ok(match self.store.link_state() {
                LinkState::Online => b"online".to_vec(),
                LinkState::Offline { since } => {
                    let secs = since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    let (y, mo, d, h, mi, s) = civil_from_unix(secs);
                    format!("offline since {y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
                        .into_bytes()
                }
            });
        }
        let name = name.to_str().ok_or(FsError::NoAttribute)?;
        if name == PREFETCH {
            let id = self.mailbox_of_dir(ino)?;
            return match self.prefetches.by_mailbox.lock().get(&id) {
                Some(state) => Ok(state.describe().into_bytes()),
                None => Err(FsError::NoAttribute),
            };
        }
        if !name.starts_with("user.") {
            // ENOTSUP rather than ENODATA: `ls -l` asks for security.selinux and the POSIX
            // ACL names on every entry, and remembers ENOTSUP for the whole mount, sparing
            // three requests per file.
            return Err(FsError::NotSupported);
        }
        let Some(message) = self.attribute_message(&self.node(ino)?)? else {
            return Err(FsError::NoAttribute);
        };
        let value = match name {
            FLAGS => {
                // \Recent is the server's alone: showing it would make a read-modify-write
                // of this attribute fail.
                let flags = self.listed_meta(&message)?.flags;
                let shown: Vec<&str> = flags
                    .iter()
                    .map(String::as_str)
                    .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                    .collect();
                shown.join(" ")
            }
            UID => message.uid.to_string(),
            UIDVALIDITY => message.validity.to_string(),
            INTERNALDATE => rfc3339(self.listed_meta(&message)?.internal_date),
            MAILBOX => self.mailbox_path(&message.mailbox),
            _ => return Err(FsError::NoAttribute),
        };
        Ok(value.into_bytes())
    }

    /// The selectable mailbox a mailbox directory shows.
    fn mailbox_of_dir(&self, ino: u64) -> FsResult<MailboxId> {
        let Node::Mailbox { path } = self.node(ino)? else {
            return Err(FsError::NotSupported);
        };
        self.holding_messages(&path).ok_or(FsError::NotSupported)
    }

    /// `listxattr`: NUL-terminated names.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        let node = self.node(ino)?;
        let message = match &node {
            Node::NewFile { dir_path, name } => self
                .new_files
                .get(dir_path, name)
                .is_some_and(|f| matches!(f.stored(), Some(Some(_)))),
            Node::StoredFile { .. } => true,
            Node::Message { section, .. } => section.is_whole(),
            _ => false,
        };
        match node {
            _ if message => {
                let mut out = Vec::new();
                for name in ALL {
                    out.extend_from_slice(name.as_bytes());
                    out.push(0);
                }
                Ok(out)
            }
            Node::Root => Ok(format!("{STATS}\0{STATE}\0{PENDING}\0").into_bytes()),
            // A prefetch asked for here: how far it got (`getfattr -d` shows it).
            Node::Mailbox { .. } => {
                let asked = self
                    .mailbox_of_dir(ino)
                    .is_ok_and(|id| self.prefetches.by_mailbox.lock().contains_key(&id));
                Ok(if asked {
                    format!("{PREFETCH}\0").into_bytes()
                } else {
                    Vec::new()
                })
            }
            _ => Ok(Vec::new()),
        }
    }

    /// `setxattr`: only `user.imap.flags` can be written: a list replaces the whole set, and
    /// `+flag` / `-flag` words add and remove flags, leaving the others as they are.
    pub fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8]) -> FsResult<()> {
        if name.to_str() == Some(PREFETCH) {
            // Reading ahead changes nothing on the server: allowed on a read-only mount.
            let id = self.mailbox_of_dir(ino)?;
            let depth = match std::str::from_utf8(value).map(|v| v.trim_end_matches(['\n', '\0'])) {
                Ok("1" | "all" | "") => Depth::Everything,
                Ok("headers") => Depth::Headers,
                _ => {
                    return Err(FsError::Invalid(
                        "user.imapfs.prefetch takes 1 (everything) or headers".into(),
                    ))
                }
            };
            return self.start_prefetch(&id, depth);
        }
        self.refuse_if_read_only()?;
        if ino == super::inodes::ROOT && name.to_str() == Some(PENDING) {
            return match std::str::from_utf8(value).map(|v| v.trim_end_matches(['\n', '\0'])) {
                Ok("retry") => {
                    self.store.retry_pending();
                    Ok(())
                }
                _ => Err(FsError::Invalid("user.imapfs.pending takes retry".into())),
            };
        }
        let node = self.node(ino)?;
        if let (Node::Mailbox { .. }, Some(FLAGS)) = (&node, name.to_str()) {
            let mailbox = self.mailbox_of_dir(ino)?;
            return match FlagsValue::parse(flags_text(value)?)? {
                FlagsValue::Change { add, remove } => {
                    self.change_mailbox_flags(&mailbox, &add, &remove)
                }
                FlagsValue::Replace(_) => Err(FsError::Invalid(
                    "a mailbox takes +flag and -flag words, a change to all its messages".into(),
                )),
            };
        }
        let name = name.to_str().unwrap_or_default();
        let Some(message) = self.attribute_message(&node)? else {
            return Err(match (&node, name) {
                (Node::Message { .. }, UID | UIDVALIDITY | INTERNALDATE | MAILBOX) => {
                    FsError::NotPermitted(format!("{name} is read-only"))
                }
                _ => FsError::NotSupported,
            });
        };
        match name {
            FLAGS => match FlagsValue::parse(flags_text(value)?)? {
                FlagsValue::Replace(flags) => self.set_message_flags(&message, &flags),
                FlagsValue::Change { add, remove } => {
                    self.change_message_flags(&message, &add, &remove)
                }
            },
            UID | UIDVALIDITY | INTERNALDATE | MAILBOX => {
                Err(FsError::NotPermitted(format!("{name} is read-only")))
            }
            _ => Err(FsError::NotSupported),
        }
    }

    /// `removexattr`: removing the flags clears them; the rest are read-only.
    pub fn removexattr(&self, ino: u64, name: &OsStr) -> FsResult<()> {
        match name.to_str() {
            // A mailbox directory has no flags of its own to clear.
            Some(FLAGS) if matches!(self.node(ino)?, Node::Mailbox { .. }) => {
                Err(FsError::NoAttribute)
            }
            Some(FLAGS) => self.setxattr(ino, name, b""),
            Some(UID | UIDVALIDITY | INTERNALDATE | MAILBOX) => {
                self.refuse_if_read_only()?;
                Err(FsError::NotPermitted(format!("{name:?} is read-only")))
            }
            _ => Err(FsError::NoAttribute),
        }
    }
}

/// The text of a value written to `user.imap.flags`, without a final newline or NUL.
fn flags_text(value: &[u8]) -> FsResult<&str> {
    std::str::from_utf8(value)
        .map(|text| text.trim_end_matches(['\n', '\0']))
        .map_err(|_| FsError::Invalid("flags must be UTF-8 text".into()))
}

/// The longest value `user.imap.flags` takes: its flags go on one command line, which
/// servers keep under 8 KiB or so with the UID set.
const MAX_FLAGS_TEXT: usize = 2048;

/// What is written to `user.imap.flags`.
#[derive(Debug, PartialEq, Eq)]
enum FlagsValue {
    /// `\Seen $label`: the message's flags become these.
    Replace(Vec<Flag>),
    /// `+\Seen -\Flagged`: these are added and removed, other flags stay (another
    /// client's too: `UID STORE +FLAGS` / `-FLAGS`).
    Change { add: Vec<Flag>, remove: Vec<Flag> },
}

impl FlagsValue {
    /// A list of flags, or of flags each after `+` or `-`; not both in one value, and no
    /// flag both added and removed.
    fn parse(text: &str) -> FsResult<FlagsValue> {
        if text.len() > MAX_FLAGS_TEXT {
            return Err(FsError::Invalid(format!(
                "at most {MAX_FLAGS_TEXT} bytes of flags at a time"
            )));
        }
        let invalid = |e: crate::store::StoreError| FsError::Invalid(e.to_string());
        let words: Vec<&str> = text.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
        let signed = |w: &&str| w.starts_with(['+', '-']);
        if !words.iter().any(signed) {
            return Flag::parse_list(text)
                .map(FlagsValue::Replace)
                .map_err(invalid);
        }
        if !words.iter().all(signed) {
            return Err(FsError::Invalid(
                "flags are either all +flag / -flag (a change) or none (the new set)".into(),
            ));
        }
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for word in words {
            let flag = Flag::parse(&word[1..]).map_err(invalid)?;
            let (to, other) = match word.as_bytes()[0] {
                b'+' => (&mut add, &remove),
                _ => (&mut remove, &add),
            };
            // Keywords are matched regardless of case, as servers do.
            let same = |f: &Flag| f.as_str().eq_ignore_ascii_case(flag.as_str());
            if other.iter().any(same) {
                return Err(FsError::Invalid(format!(
                    "{flag} is both added and removed"
                )));
            }
            if !to.iter().any(same) {
                to.push(flag);
            }
        }
        Ok(FlagsValue::Change { add, remove })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn flags_values_replace_or_change() {
        let flags = |words: &[&str]| -> Vec<Flag> {
            words.iter().map(|w| Flag::parse(w).unwrap()).collect()
        };
        assert_eq!(
            FlagsValue::parse("\\seen $a").unwrap(),
            FlagsValue::Replace(flags(&["\\Seen", "$a"]))
        );
        assert_eq!(
            FlagsValue::parse("").unwrap(),
            FlagsValue::Replace(Vec::new())
        );
        assert_eq!(
            FlagsValue::parse(" +\\Seen\t-\\Flagged +$a +\\seen").unwrap(),
            FlagsValue::Change {
                add: flags(&["\\Seen", "$a"]),
                remove: flags(&["\\Flagged"])
            }
        );
        let long = "+$x ".repeat(600);
        for bad in [
            "+\\Seen \\Flagged",
            "+\\Seen -\\seen",
            "+",
            "-\\Recent",
            "+(x",
            long.as_str(),
        ] {
            assert!(
                matches!(FlagsValue::parse(bad), Err(FsError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // leap day 2000
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }
}
