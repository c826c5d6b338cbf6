//! The one place where strings from users, file names, xattrs and the server's own names
//! become IMAP arguments.
//!
//! Every such string goes through [`string`]: CR, LF and NUL are refused (they would end the
//! command line and let a name smuggle in a command), 7-bit values of reasonable length are
//! sent as quoted strings with `"` and `\` escaped, and 8-bit or very long values as literals
//! ([RFC 3501 §4.3](https://www.rfc-editor.org/rfc/rfc3501#section-4.3)). Flags cannot be
//! quoted in IMAP; [`flag_list`] checks each is still an atom.

use crate::store::{Flag, MailboxId, StoreError, StoreResult};

/// Longer values go as literals, keeping command lines short
/// ([RFC 2683 §3.2.1.5](https://www.rfc-editor.org/rfc/rfc2683#section-3.2.1.5)).
pub const MAX_QUOTED: usize = 1024;

/// A string argument, checked and in the form it goes on the wire. Only [`string`] makes one.
#[derive(Clone, PartialEq, Eq)]
pub struct Arg(Form);

/// How an [`Arg`] is sent.
#[derive(Clone, PartialEq, Eq)]
pub enum Form {
    /// A quoted string, quotes and escapes included.
    Quoted(String),
    /// The bytes of a literal.
    Literal(Vec<u8>),
}

impl Arg {
    /// How this argument is sent.
    pub fn form(&self) -> &Form {
        &self.0
    }
}

/// Arguments may be passwords: their Debug never shows the value.
impl std::fmt::Debug for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Form::Quoted(q) => write!(f, "Quoted({} bytes)", q.len()),
            Form::Literal(l) => write!(f, "Literal({} bytes)", l.len()),
        }
    }
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

/// THE quoting function: `value` as an IMAP string argument (`what` names it in errors).
pub fn string(value: &str, what: &str) -> StoreResult<Arg> {
    validate(value, what)?;
    if !value.is_ascii() || value.len() > MAX_QUOTED {
        return Ok(Arg(Form::Literal(value.as_bytes().to_vec())));
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(Arg(Form::Quoted(out)))
}

/// A mailbox name as an argument (its wire form: modified UTF-7 for names imapfs makes;
/// whatever the server listed for the others, 8-bit names going as literals).
pub fn mailbox(name: &MailboxId) -> StoreResult<Arg> {
    string(name.as_str(), "mailbox name")
}

/// `(\Seen $label)`: flags are atoms, never quoted, so each is checked to be one again here
/// ([RFC 3501 §2.3.2](https://www.rfc-editor.org/rfc/rfc3501#section-2.3.2)).
pub fn flag_list(flags: &[Flag]) -> StoreResult<String> {
    let atom = |c: char| {
        c.is_ascii_graphic() && !matches!(c, '(' | ')' | '{' | '}' | '"' | '%' | '*' | ']')
    };
    let mut out = String::from("(");
    for (i, flag) in flags.iter().enumerate() {
        let text = flag.as_str();
        let body = text.strip_prefix('\\').unwrap_or(text);
        if body.is_empty() || !body.chars().all(atom) || body.contains('\\') {
            return Err(StoreError::Invalid(format!("{text:?} is not a flag")));
        }
        if i > 0 {
            out.push(' ');
        }
        out.push_str(text);
    }
    out.push(')');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(value: &str) -> String {
        match string(value, "x").unwrap().0 {
            Form::Quoted(q) => q,
            Form::Literal(l) => panic!("literal {l:?}"),
        }
    }

    #[test]
    fn line_breaks_and_nul_are_refused() {
        for bad in ["x\r\nA1 DELETE INBOX", "a\nb", "a\rb", "a\0b", ""] {
            assert!(
                matches!(string(bad, "name"), Err(StoreError::Invalid(_))),
                "{bad:?}"
            );
            assert!(mailbox(&MailboxId::new(bad)).is_err());
        }
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("{5}"), "\"{5}\"");
        assert_eq!(quoted("INBOX\" \"x"), r#""INBOX\" \"x""#);
    }

    #[test]
    fn eight_bit_and_long_values_become_literals() {
        // Form has no Debug (it may hold a password), hence `assert!`.
        assert!(string("Reçus", "x").unwrap().0 == Form::Literal("Reçus".as_bytes().to_vec()));
        let long = "m".repeat(MAX_QUOTED + 1);
        assert!(string(&long, "x").unwrap().0 == Form::Literal(long.into_bytes()));
        let at_limit = "m".repeat(MAX_QUOTED);
        assert_eq!(quoted(&at_limit).len(), MAX_QUOTED + 2);
    }

    #[test]
    fn passwords_do_not_show_in_debug() {
        let arg = string("hunter2", "password").unwrap();
        assert!(!format!("{arg:?}").contains("hunter2"));
    }

    #[test]
    fn flag_lists_are_atoms_in_parentheses() {
        let flags = Flag::parse_list("\\Seen $label").unwrap();
        assert_eq!(flag_list(&flags).unwrap(), "(\\Seen $label)");
        assert_eq!(flag_list(&[]).unwrap(), "()");
    }
}
