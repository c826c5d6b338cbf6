//! Turning the imap crate's errors into `StoreError`, and deciding which leave a connection
//! unusable.

use std::io;

use crate::store::StoreError;

/// Converts an imap crate error; response codes such as `[OVERQUOTA]` become their own kind.
pub fn from_imap(e: imap::Error) -> StoreError {
    match e {
        imap::Error::Io(io) => from_io(io),
        imap::Error::TlsHandshake(e) => {
            StoreError::Connection(format!("TLS handshake failed: {e}"))
        }
        imap::Error::Tls(e) => StoreError::Connection(format!("TLS error: {e}")),
        imap::Error::No(no) => {
            let code = no.code.as_ref().map(|c| format!("{c:?}"));
            from_no(code.as_deref(), no.information)
        }
        imap::Error::Bad(bad) => {
            StoreError::Protocol(format!("server said BAD: {}", bad.information))
        }
        imap::Error::Bye(bye) => {
            StoreError::Connection(format!("server closed the session: {}", bye.information))
        }
        imap::Error::ConnectionLost => StoreError::Connection("connection lost".into()),
        imap::Error::Parse(p) => {
            StoreError::Protocol(format!("unparsable response: {}", short(&p.to_string())))
        }
        imap::Error::Validate(v) => StoreError::Invalid(v.to_string()),
        imap::Error::Append => StoreError::Refused("APPEND failed".into()),
        imap::Error::Unexpected(r) => {
            StoreError::Protocol(format!("unexpected response: {}", short(&format!("{r:?}"))))
        }
        imap::Error::MissingStatusResponse => {
            StoreError::Protocol("missing status response".into())
        }
        imap::Error::TagMismatch(t) => StoreError::Protocol(format!("tag mismatch: {t:?}")),
        imap::Error::StartTlsNotAvailable => StoreError::Unsupported("STARTTLS".into()),
        imap::Error::TlsNotConfigured => StoreError::Connection("TLS is not configured".into()),
        other => StoreError::Protocol(short(&other.to_string())),
    }
}

/// A tagged NO, by its RFC 5530 response code: from the parsed code, or from the text when
/// the parser left an unknown code in it.
fn from_no(code: Option<&str>, information: String) -> StoreError {
    let code = code.unwrap_or_default().to_ascii_uppercase();
    let text = information.to_ascii_uppercase();
    let has = |name: &str| code.contains(name) || text.starts_with(&format!("[{name}"));
    if has("OVERQUOTA") || has("LIMIT") {
        StoreError::OverQuota(information)
    } else if has("CANNOT") {
        StoreError::Invalid(information)
    } else if has("ALREADYEXISTS") {
        StoreError::AlreadyExists(information)
    } else if has("NONEXISTENT") || has("TRYCREATE") {
        StoreError::Refused(format!("no such mailbox: {information}"))
    } else {
        StoreError::Refused(information)
    }
}

/// Converts an I/O error: a passed deadline is a timeout, anything else a broken connection.
pub fn from_io(e: io::Error) -> StoreError {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            StoreError::Timeout("no answer from the server before the deadline".into())
        }
        _ => StoreError::Connection(e.to_string()),
    }
}

/// Whether a connection that produced `e` can be reused. After a timeout, a broken stream or a
/// response we could not parse, the protocol state is unknown, so the connection is dropped.
pub fn connection_survives(e: &StoreError) -> bool {
    match e {
        StoreError::Refused(_)
        | StoreError::NoSuchMailbox(_)
        | StoreError::NoSuchMessage { .. }
        | StoreError::UidValidityChanged { .. }
        | StoreError::Invalid(_)
        | StoreError::Unsupported(_)
        | StoreError::AlreadyExists(_)
        | StoreError::OverQuota(_) => true,
        StoreError::Protocol(_)
        | StoreError::Connection(_)
        | StoreError::Timeout(_)
        | StoreError::Interrupted => false,
    }
}

/// Keeps server text in logs short (a hostile server can send megabytes).
fn short(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_becomes_timeout_and_drops_the_connection() {
        let e = from_imap(imap::Error::Io(io::Error::new(
            io::ErrorKind::WouldBlock,
            "x",
        )));
        assert!(matches!(e, StoreError::Timeout(_)));
        assert!(!connection_survives(&e));
    }

    #[test]
    fn response_codes_choose_the_error() {
        let no = |text: &str| from_no(None, text.into());
        assert!(matches!(
            no("[CANNOT] Invalid mailbox name"),
            StoreError::Invalid(_)
        ));
        assert!(matches!(
            no("[OVERQUOTA] Quota exceeded"),
            StoreError::OverQuota(_)
        ));
        assert!(matches!(
            no("[ALREADYEXISTS] Mailbox exists"),
            StoreError::AlreadyExists(_)
        ));
        assert!(matches!(no("Something else"), StoreError::Refused(_)));
    }

    #[test]
    fn refusal_keeps_the_connection() {
        let e = StoreError::Refused("no".into());
        assert!(connection_survives(&e));
    }

    #[test]
    fn long_server_text_is_cut() {
        let s = "é".repeat(500);
        let out = short(&s);
        assert!(out.len() <= 203 + 3);
        assert!(out.ends_with("..."));
    }
}
