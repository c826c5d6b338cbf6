//! The one place where strings from users, file names and xattrs become IMAP arguments.
//!
//! Everything that reaches the server is checked here: CR, LF and NUL are refused (they would
//! end the command line and let a name smuggle in a command), and the rest is sent as a
//! quoted string ([RFC 3501 §4.3](https://www.rfc-editor.org/rfc/rfc3501#section-4.3)).

use crate::store::{MailboxId, StoreError, StoreResult};

/// Checks a wire mailbox name (already modified UTF-7, so 7-bit) for use as an argument.
///
/// The imap crate quotes mailbox arguments itself for the commands that take them, so this
/// returns the validated name unquoted; `quoted` is for commands built by hand.
pub fn mailbox_arg(name: &MailboxId) -> StoreResult<&str> {
    validate(name.as_str(), "mailbox name")?;
    if !name.as_str().is_ascii() {
        return Err(StoreError::Invalid(format!(
            "mailbox name {:?} is not 7-bit; it must be modified UTF-7 on the wire",
            name.as_str()
        )));
    }
    Ok(name.as_str())
}

/// Refuses empty values and values with CR, LF or NUL, naming what was refused.
pub fn validate(value: &str, what: &str) -> StoreResult<()> {
    if value.is_empty() {
        return Err(StoreError::Invalid(format!("empty {what}")));
    }
    if let Some(c) = value.chars().find(|c| matches!(c, '\r' | '\n' | '\0')) {
        return Err(StoreError::Invalid(format!(
            "{what} contains the forbidden character {c:?}"
        )));
    }
    Ok(())
}

/// A validated value as an IMAP quoted string, with `"` and `\` escaped.
pub fn quoted(value: &str, what: &str) -> StoreResult<String> {
    validate(value, what)?;
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_nul_are_refused() {
        for bad in ["x\r\nA1 DELETE INBOX", "a\nb", "a\0b", ""] {
            assert!(
                matches!(quoted(bad, "name"), Err(StoreError::Invalid(_))),
                "{bad:?}"
            );
            assert!(mailbox_arg(&MailboxId::new(bad)).is_err());
        }
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        assert_eq!(quoted(r#"a"b\c"#, "x").unwrap(), r#""a\"b\\c""#);
        assert_eq!(quoted("{5}", "x").unwrap(), "\"{5}\"");
    }

    #[test]
    fn non_ascii_wire_names_are_refused() {
        assert!(mailbox_arg(&MailboxId::new("Reçus")).is_err());
        assert_eq!(
            mailbox_arg(&MailboxId::new("Re&AOc-us")).unwrap(),
            "Re&AOc-us"
        );
    }
}
