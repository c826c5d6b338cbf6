//! Turning what the protocol layer reports into `StoreError`, and deciding which errors
//! leave a connection unusable.

use std::io;

use super::wire::{short, Code, Status, Tagged, WireError};
use crate::store::StoreError;

/// Converts a failure below the level of a command's answer.
pub fn from_wire(e: WireError) -> StoreError {
    match e {
        WireError::Io(io) => from_io(io),
        WireError::Closed(Some(text)) => {
            StoreError::Connection(format!("server closed the session: {}", short(&text)))
        }
        WireError::Closed(None) => StoreError::Connection("connection lost".into()),
        WireError::Protocol(text) => {
            StoreError::Protocol(format!("unusable response: {}", short(&text)))
        }
        WireError::Invalid(text) => StoreError::Invalid(text),
        WireError::Source(e) => StoreError::Invalid(format!("reading the message to store: {e}")),
        WireError::Broken => StoreError::Connection(WireError::Broken.to_string()),
    }
}

/// How the error of a tagged BAD begins.
pub const BAD_ANSWER: &str = "server said BAD: ";

/// `Ok` for a tagged OK; otherwise the error its status and response code stand for.
pub fn check(tagged: &Tagged) -> Result<(), StoreError> {
    match tagged.status {
        Status::Ok => Ok(()),
        Status::No => Err(from_no(tagged.code.as_ref(), &tagged.text)),
        Status::Bad => Err(StoreError::Protocol(format!(
            "{BAD_ANSWER}{}",
            short(&tagged.text)
        ))),
        Status::Bye | Status::PreAuth => Err(StoreError::Protocol(format!(
            "{:?} as a command's answer: {}",
            tagged.status,
            short(&tagged.text)
        ))),
    }
}

/// How a refusal for a mailbox that does not exist (`NONEXISTENT`, `TRYCREATE`) begins:
/// the command's caller knows which mailbox that was (see `no_such_mailbox`).
const NO_SUCH_MAILBOX: &str = "no such mailbox: ";

/// `NoSuchMailbox(mailbox)` for a refusal that says the mailbox does not exist, where the
/// caller knows it is `mailbox` (a MOVE's target another client deleted: ENOENT, not EIO).
pub fn no_such_mailbox(e: StoreError, mailbox: &crate::store::MailboxId) -> StoreError {
    match e {
        StoreError::Refused(text) if text.starts_with(NO_SUCH_MAILBOX) => {
            tracing::debug!(%mailbox, %text, "refused: no such mailbox");
            StoreError::NoSuchMailbox(mailbox.clone())
        }
        e => e,
    }
}

/// A tagged NO, by its response code ([RFC 5530](https://www.rfc-editor.org/rfc/rfc5530),
/// [RFC 3516 §4.2](https://www.rfc-editor.org/rfc/rfc3516#section-4.2)).
fn from_no(code: Option<&Code>, text: &str) -> StoreError {
    let text = short(text);
    match code {
        Some(Code::OverQuota | Code::Limit) => StoreError::OverQuota(text),
        Some(Code::Cannot) => StoreError::Invalid(text),
        Some(Code::AlreadyExists) => StoreError::AlreadyExists(text),
        Some(Code::NonExistent | Code::TryCreate) => {
            StoreError::Refused(format!("{NO_SUCH_MAILBOX}{text}"))
        }
        Some(Code::Unavailable) => StoreError::Refused(format!(
            "the server is temporarily unavailable (UNAVAILABLE): {text}"
        )),
        Some(Code::ServerBug) => {
            StoreError::Refused(format!("the server failed internally (SERVERBUG): {text}"))
        }
        Some(Code::UnknownCte) => StoreError::Unsupported(format!(
            "the server cannot decode this part's transfer encoding: {text}"
        )),
        _ => StoreError::Refused(text),
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
        | StoreError::NotEmpty(_)
        | StoreError::OverQuota(_)
        | StoreError::Offline(_)
        | StoreError::NoSpaceHere(_) => true,
        StoreError::Protocol(_)
        | StoreError::Connection(_)
        | StoreError::Untrusted(_)
        | StoreError::Timeout(_)
        | StoreError::Interrupted => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::imap::wire::{parse_response, Response};

    fn answer(line: &str) -> Result<(), StoreError> {
        match parse_response(line.as_bytes()).unwrap() {
            Response::Tagged(t) => check(&t),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deadline_becomes_timeout_and_drops_the_connection() {
        let e = from_wire(WireError::Io(io::Error::new(
            io::ErrorKind::WouldBlock,
            "x",
        )));
        assert!(matches!(e, StoreError::Timeout(_)));
        assert!(!connection_survives(&e));
    }

    #[test]
    fn response_codes_choose_the_error() {
        assert!(answer("a OK done\r\n").is_ok());
        assert!(matches!(
            answer("a NO [CANNOT] Invalid mailbox name\r\n"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            answer("a NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n"),
            Err(StoreError::OverQuota(_))
        ));
        assert!(matches!(
            answer("a NO [LIMIT] Too many\r\n"),
            Err(StoreError::OverQuota(_))
        ));
        assert!(matches!(
            answer("a NO [UNAVAILABLE] Backend down, try later\r\n"),
            Err(StoreError::Refused(m)) if m.contains("temporarily unavailable") && m.contains("Backend down")
        ));
        assert!(matches!(
            answer("a NO [ALREADYEXISTS] Mailbox already exists\r\n"),
            Err(StoreError::AlreadyExists(_))
        ));
        assert!(matches!(
            answer("a NO [TRYCREATE] Mailbox doesn't exist: Nope\r\n"),
            Err(StoreError::Refused(m)) if m.contains("no such mailbox")
        ));
        assert!(matches!(
            answer("b5 NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding\r\n"),
            Err(StoreError::Unsupported(_))
        ));
        assert!(matches!(
            answer("a NO [SERVERBUG] Internal error occurred. Refer to server log for more information.\r\n"),
            Err(StoreError::Refused(m)) if m.contains("failed internally") && m.contains("Internal error")
        ));
        assert!(matches!(
            answer("a NO Something else\r\n"),
            Err(StoreError::Refused(_))
        ));
        assert!(matches!(
            answer("a BAD Error in IMAP command APPEND: Invalid internal date\r\n"),
            Err(StoreError::Protocol(_))
        ));
    }

    #[test]
    fn a_bye_says_why_the_connection_closed() {
        let e = from_wire(WireError::Closed(Some(
            "Selected mailbox was deleted".into(),
        )));
        assert!(
            matches!(e, StoreError::Connection(ref m) if m.contains("deleted")),
            "{e}"
        );
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
