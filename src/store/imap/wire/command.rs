//! A command as its parts, before a tag is put in front
//! ([RFC 3501 §2.2.1](https://www.rfc-editor.org/rfc/rfc3501#section-2.2.1)).

use std::borrow::Cow;
use std::io::Read;

use crate::store::imap::quote::{Arg, Form};

/// One space-separated part of a command. No space follows a part of syntax that ends
/// with `(` or comes before one that starts with `)`, so lists can be built in parts.
pub enum Part<'a> {
    /// Syntax that this crate builds itself: command names, atoms, numbers, UID sets, item
    /// lists. It must not hold CR, LF or NUL (checked again when sent).
    Syntax(Cow<'a, str>),
    /// A string from [`crate::store::imap::quote::string`]: quoted, or a literal.
    Arg(&'a Arg),
    /// `len` bytes read from `source` and written in chunks as a synchronizing literal, or a
    /// `literal8` when `binary` ([RFC 3516 §4.4](https://www.rfc-editor.org/rfc/rfc3516#section-4.4)).
    Stream {
        source: &'a mut (dyn Read + Send),
        len: u64,
        binary: bool,
    },
}

/// A command to send.
pub struct Command<'a> {
    pub(super) parts: Vec<Part<'a>>,
}

impl<'a> Command<'a> {
    /// A command starting with `name` (`"UID FETCH"`, `"LOGIN"`...).
    pub fn new(name: &'a str) -> Self {
        Command {
            parts: vec![Part::Syntax(Cow::Borrowed(name))],
        }
    }

    /// Adds syntax built by this crate (see [`Part::Syntax`]).
    pub fn syntax(mut self, text: impl Into<Cow<'a, str>>) -> Self {
        self.parts.push(Part::Syntax(text.into()));
        self
    }

    /// Adds a string argument.
    pub fn arg(mut self, arg: &'a Arg) -> Self {
        self.parts.push(Part::Arg(arg));
        self
    }

    /// Adds a streamed literal (see [`Part::Stream`]).
    pub fn stream(mut self, source: &'a mut (dyn Read + Send), len: u64, binary: bool) -> Self {
        self.parts.push(Part::Stream {
            source,
            len,
            binary,
        });
        self
    }

    /// The command as the log shows it, after `tag`: syntax as sent, string arguments
    /// quoted as sent, literals as `{n}` (their bytes never), and every argument of LOGIN
    /// and AUTHENTICATE as `***`, since those are user names, passwords and tokens.
    pub fn redacted(&self, tag: &str) -> String {
        let secret = matches!(
            self.name().to_ascii_uppercase().as_str(),
            "LOGIN" | "AUTHENTICATE"
        );
        let mut out = String::from(tag);
        for part in &self.parts {
            out.push(' ');
            match part {
                Part::Syntax(s) => out.push_str(s),
                Part::Arg(_) if secret => out.push_str("***"),
                Part::Arg(arg) => match arg.form() {
                    Form::Quoted(q) => out.push_str(q),
                    Form::Literal(bytes) => out.push_str(&format!("{{{}}}", bytes.len())),
                },
                Part::Stream { len, binary, .. } => {
                    let tilde = if *binary { "~" } else { "" };
                    out.push_str(&format!("{tilde}{{{len}}}"));
                }
            }
        }
        out
    }

    /// The command's name, for logs (never its arguments, which may be secrets).
    pub fn name(&self) -> &str {
        match self.parts.first() {
            Some(Part::Syntax(name)) => name,
            _ => "?",
        }
    }
}
