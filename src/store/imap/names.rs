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

/// The decoded path of a wire name: split on the delimiter, each level decoded from
/// modified UTF-7 (a level that is not valid modified UTF-7 is kept as sent, and logged),
/// and a first level that is the inbox in any case spelled `INBOX`.
pub fn path_of(wire: &str, delimiter: Option<char>) -> MailboxPath {
    let levels: Vec<&str> = match delimiter {
        Some(d) => wire.split(d).collect(),
        None => vec![wire],
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
/// LIST: path to wire name) keep the server's spelling; new levels are checked and encoded.
pub fn wire_for(
    path: &[String],
    delimiter: Option<char>,
    known: &HashMap<MailboxPath, String>,
) -> StoreResult<String> {
    if path.is_empty() {
        return Err(StoreError::Invalid("empty mailbox path".into()));
    }
    if let Some(wire) = known.get(path) {
        return Ok(wire.clone());
    }
    let known_prefix = (1..path.len())
        .rev()
        .find_map(|len| known.get(&path[..len]).map(|wire| (len, wire.clone())));
    let (start, mut wire) = known_prefix.unwrap_or((0, String::new()));
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
        assert_eq!(path_of("Re&AOc-us", Some('/')), path(&["Reçus"]));
        assert_eq!(path_of("inbox/Sub", Some('/')), path(&["INBOX", "Sub"]));
        assert_eq!(path_of("a.b", Some('.')), path(&["a", "b"]));
        assert_eq!(path_of("a.b", None), path(&["a.b"]));
        // Not modified UTF-7: shown as sent.
        assert_eq!(path_of("&Jjo", Some('/')), path(&["&Jjo"]));
    }

    #[test]
    fn new_names_are_encoded_and_known_levels_keep_their_spelling() {
        let mut known = HashMap::new();
        known.insert(path(&["&Jjo"]), "&Jjo".to_string());
        assert_eq!(
            wire_for(&path(&["Reçus"]), Some('/'), &known).unwrap(),
            "Re&AOc-us"
        );
        assert_eq!(
            wire_for(&path(&["&Jjo", "x"]), Some('/'), &known).unwrap(),
            "&Jjo/x"
        );
        assert_eq!(
            wire_for(&path(&["&new"]), Some('/'), &known).unwrap(),
            "&-new"
        );
        assert_eq!(
            wire_for(&path(&["inbox", "a"]), Some('.'), &known).unwrap(),
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
                    wire_for(&bad, Some('/'), &known),
                    Err(StoreError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            wire_for(&path(&["a", "b"]), None, &known),
            Err(StoreError::Invalid(_))
        ));
        assert!(wire_for(&[], Some('/'), &known).is_err());
    }
}
