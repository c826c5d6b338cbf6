//! Names reserved in mailbox directories (and the root) for directories imapfs makes up
//! rather than the server: `.search`, where search results are to live. A reserved name is
//! never taken for a message or a mailbox created elsewhere; a real mailbox of the same
//! name, already known, wins.

/// The directory of server-side searches.
pub const SEARCH: &str = ".search";

/// Whether `name` is reserved for a virtual directory.
pub fn is_reserved(name: &str) -> bool {
    name == SEARCH
}
