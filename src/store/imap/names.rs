//! Mailbox names between the wire and the user: modified UTF-7, the hierarchy delimiter,
//! INBOX's case rule, and what a new name may not contain
//! ([RFC 3501 §5.1](https://www.rfc-editor.org/rfc/rfc3501#section-5.1)).
//!
//! The filesystem core sees only decoded paths and opaque identifiers; this is where one
//! becomes the other.

use std::collections::HashMap;

use super::utf7;
use crate::store::{MailboxPath, StoreError, StoreResult};

/// The inbox's name; the server matches it case-insensitively, also as the first level of
/// a hierarchical name ([RFC 3501 §5.1](https://www.rfc-editor.org/rfc/rfc3501#section-5.1)).
pub const INBOX: &str = "INBOX";

/// The personal namespace's prefix with its delimiter, as NAMESPACE gives it (`""` on
/// Dovecot, `INBOX.` on Cyrus and Courier: [RFC 2342 §5](https://www.rfc-editor.org/rfc/rfc2342#section-5)).
/// Personal mailboxes are shown without it: `INBOX.Archive.2023` is `Archive/2023`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefix(pub String);

impl Prefix {
    /// `wire` without the prefix, if it has it (compared without case, as `INBOX` is) and is
    /// more than the prefix.
    fn strip<'a>(&self, wire: &'a str) -> Option<&'a str> {
        let n = self.0.len();
        if n == 0 || wire.len() <= n || !wire.is_char_boundary(n) {
            return None;
        }
        wire[..n].eq_ignore_ascii_case(&self.0).then(|| &wire[n..])
    }

    /// True if the prefix puts every personal mailbox under INBOX (`INBOX.`), so that INBOX
    /// can have no children of its own.
    fn under_inbox(&self) -> bool {
        self.0.len() > INBOX.len()
            && self
                .0
                .get(..INBOX.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(INBOX))
    }
}

/// The decoded path of a wire name: the personal namespace's prefix dropped, split on the
/// delimiter, each level decoded from modified UTF-7 (a level that is not valid modified
/// UTF-7 is kept as sent, and logged), and a first level that is the inbox in any case
/// spelled `INBOX`.
pub fn path_of(wire: &str, delimiter: Option<char>, prefix: &Prefix) -> MailboxPath {
    if wire.eq_ignore_ascii_case(INBOX) {
        return vec![INBOX.to_string()];
    }
    let personal = prefix.strip(wire).unwrap_or(wire);
    let levels: Vec<&str> = match delimiter {
        Some(d) => personal.split(d).collect(),
        None => vec![personal],
    };
    levels
        .iter()
        .enumerate()
        .map(|(i, level)| {
            if i == 0 && level.eq_ignore_ascii_case(INBOX) {
                return INBOX.to_string();
            }
            utf7::decode(level).unwrap_or_else(|e| {
                tracing::warn!(name = wire, error = %e, "mailbox name is not valid modified UTF-7; showing it as sent");
                level.to_string()
            })
        })
        .collect()
}

/// Checks one level of a name the user gives a new mailbox.
fn check_new_level(level: &str, delimiter: Option<char>) -> StoreResult<()> {
    if level.is_empty() || level.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{level:?} cannot be a mailbox name"
        )));
    }
    if delimiter.is_some_and(|d| level.contains(d)) || level.contains(['*', '%']) {
        return Err(StoreError::Invalid(format!(
            "{level:?} contains the hierarchy delimiter or a LIST wildcard"
        )));
    }
    Ok(())
}

/// The wire name for `path`. Levels that name existing mailboxes (`known`, from the last
/// LIST: path to wire name) keep the server's spelling; new levels are checked and encoded,
/// and a new top level gets the personal namespace's prefix.
pub fn wire_for(
    path: &[String],
    delimiter: Option<char>,
    prefix: &Prefix,
    known: &HashMap<MailboxPath, String>,
) -> StoreResult<String> {
    if path.is_empty() {
        return Err(StoreError::Invalid("empty mailbox path".into()));
    }
    if let Some(wire) = known.get(path) {
        return Ok(wire.clone());
    }
    if path.len() > 1 && path[0].eq_ignore_ascii_case(INBOX) && prefix.under_inbox() {
        return Err(StoreError::Invalid(format!(
            "this server keeps every mailbox under {INBOX} (prefix {:?}); they are shown at the top, so create it there",
            prefix.0
        )));
    }
    let known_prefix = (1..path.len())
        .rev()
        .find_map(|len| known.get(&path[..len]).map(|wire| (len, wire.clone())));
    let (start, mut wire) = known_prefix.unwrap_or((0, String::new()));
    if start == 0 && !path[0].eq_ignore_ascii_case(INBOX) {
        wire.push_str(&prefix.0);
    }
    if path.len() > 1 && delimiter.is_none() {
        return Err(StoreError::Invalid(
            "the server has no mailbox hierarchy".into(),
        ));
    }
    for (i, level) in path.iter().enumerate().skip(start) {
        if i > 0 {
            wire.extend(delimiter);
        }
        if i == 0 && level.eq_ignore_ascii_case(INBOX) {
            wire.push_str(INBOX);
            continue;
        }
        check_new_level(level, delimiter)?;
        wire.push_str(&utf7::encode(level));
    }
    Ok(wire)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(levels: &[&str]) -> MailboxPath {
        levels.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn wire_names_become_decoded_paths() {
        let none = Prefix::default();
        assert_eq!(path_of("Re&AOc-us", Some('/'), &none), path(&["Reçus"]));
        assert_eq!(
            path_of("inbox/Sub", Some('/'), &none),
            path(&["INBOX", "Sub"])
        );
        assert_eq!(path_of("a.b", Some('.'), &none), path(&["a", "b"]));
        assert_eq!(path_of("a.b", None, &none), path(&["a.b"]));
        // Not modified UTF-7: shown as sent.
        assert_eq!(path_of("&Jjo", Some('/'), &none), path(&["&Jjo"]));
    }

    /// A prefix whose fifth byte is inside a character (`Entrée.`) is not under INBOX, and
    /// asking must not split the character.
    #[test]
    fn a_non_ascii_prefix_is_not_under_inbox() {
        assert!(!Prefix("Entrée.".into()).under_inbox());
        assert!(!Prefix("Inbé.".into()).under_inbox());
        assert!(Prefix("INBOX.".into()).under_inbox());
        assert!(Prefix("inbox/".into()).under_inbox());
    }

    #[test]
    fn the_personal_prefix_is_not_shown() {
        let cyrus = Prefix("INBOX.".into());
        assert_eq!(path_of("INBOX", Some('.'), &cyrus), path(&["INBOX"]));
        assert_eq!(path_of("inbox", Some('.'), &cyrus), path(&["INBOX"]));
        assert_eq!(
            path_of("INBOX.Archive.2023", Some('.'), &cyrus),
            path(&["Archive", "2023"])
        );
        assert_eq!(
            path_of("Inbox.Re&AOc-us", Some('.'), &cyrus),
            path(&["Reçus"])
        );
        // Outside the personal namespace (another user's, shared): shown whole.
        assert_eq!(
            path_of("user.bob.x", Some('.'), &cyrus),
            path(&["user", "bob", "x"])
        );
        let known = HashMap::from([
            (path(&["INBOX"]), "INBOX".to_string()),
            (path(&["Archive"]), "INBOX.Archive".to_string()),
        ]);
        assert_eq!(
            wire_for(&path(&["Reçus"]), Some('.'), &cyrus, &known).unwrap(),
            "INBOX.Re&AOc-us"
        );
        assert_eq!(
            wire_for(&path(&["Archive", "2024"]), Some('.'), &cyrus, &known).unwrap(),
            "INBOX.Archive.2024"
        );
        assert_eq!(
            wire_for(&path(&["INBOX"]), Some('.'), &cyrus, &known).unwrap(),
            "INBOX"
        );
        assert!(matches!(
            wire_for(&path(&["INBOX", "x"]), Some('.'), &cyrus, &known),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            wire_for(&path(&["v1.2"]), Some('.'), &cyrus, &known),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn new_names_are_encoded_and_known_levels_keep_their_spelling() {
        let none = Prefix::default();
        let mut known = HashMap::new();
        known.insert(path(&["&Jjo"]), "&Jjo".to_string());
        assert_eq!(
            wire_for(&path(&["Reçus"]), Some('/'), &none, &known).unwrap(),
            "Re&AOc-us"
        );
        assert_eq!(
            wire_for(&path(&["&Jjo", "x"]), Some('/'), &none, &known).unwrap(),
            "&Jjo/x"
        );
        assert_eq!(
            wire_for(&path(&["&new"]), Some('/'), &none, &known).unwrap(),
            "&-new"
        );
        assert_eq!(
            wire_for(&path(&["inbox", "a"]), Some('.'), &none, &known).unwrap(),
            "INBOX.a"
        );
    }

    #[test]
    fn names_the_server_cannot_hold_are_invalid() {
        let known = HashMap::new();
        for bad in [
            path(&["a/b"]),
            path(&["a*"]),
            path(&["%"]),
            path(&[""]),
            path(&["x\ny"]),
        ] {
            assert!(
                matches!(
                    wire_for(&bad, Some('/'), &Prefix::default(), &known),
                    Err(StoreError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            wire_for(&path(&["a", "b"]), None, &Prefix::default(), &known),
            Err(StoreError::Invalid(_))
        ));
        assert!(wire_for(&[], Some('/'), &Prefix::default(), &known).is_err());
    }
}
