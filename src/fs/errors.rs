//! Filesystem errors and the one place where each becomes an errno and a log level.

use crate::store::StoreError;

/// Why a filesystem operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotADirectory,
    #[error("is a directory")]
    IsADirectory,
    #[error("the mount is read-only")]
    ReadOnly,
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("directory not empty")]
    NotEmpty,
    #[error("no such attribute")]
    NoAttribute,
    #[error("buffer too small")]
    Range,
    #[error("attribute not supported")]
    NotSupported,
    #[error("already exists")]
    Exists,
    #[error("name too long: {0}")]
    NameTooLong(String),
    /// A rename that moving tools do as a copy and a removal instead (EXDEV).
    #[error("cannot be moved in one step: {0}")]
    CrossDevice(String),
    #[error("stale handle")]
    BadHandle,
    #[error("no space left: {0}")]
    NoSpace(String),
    #[error("{0}")]
    Spool(String),
    /// A bug: the call panicked (the panic is logged).
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// How loudly an error is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Warn,
}

impl FsError {
    /// Whether it means the server cannot be reached (rather than refusing a request).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, FsError::Store(e) if e.is_unreachable())
    }

    /// The errno reported to the kernel, and the level to log at. Exhaustive on purpose:
    /// a new error kind must decide its errno here.
    pub fn errno_and_level(&self) -> (i32, Level) {
        match self {
            FsError::NotFound => (libc::ENOENT, Level::Debug),
            FsError::NotADirectory => (libc::ENOTDIR, Level::Debug),
            FsError::IsADirectory => (libc::EISDIR, Level::Debug),
            FsError::ReadOnly => (libc::EROFS, Level::Debug),
            FsError::NotPermitted(_) => (libc::EPERM, Level::Warn),
            FsError::Invalid(_) => (libc::EINVAL, Level::Warn),
            FsError::NotEmpty => (libc::ENOTEMPTY, Level::Debug),
            FsError::NoAttribute => (libc::ENODATA, Level::Debug),
            FsError::Range => (libc::ERANGE, Level::Debug),
            FsError::BadHandle => (libc::EBADF, Level::Warn),
            FsError::NoSpace(_) => (libc::ENOSPC, Level::Warn),
            FsError::Spool(_) => (libc::EIO, Level::Warn),
            FsError::Internal(_) => (libc::EIO, Level::Warn),
            FsError::NotSupported => (libc::ENOTSUP, Level::Debug),
            FsError::Exists => (libc::EEXIST, Level::Debug),
            FsError::NameTooLong(_) => (libc::ENAMETOOLONG, Level::Debug),
            FsError::CrossDevice(_) => (libc::EXDEV, Level::Debug),
            FsError::Store(e) => match e {
                StoreError::NoSuchMailbox(_) | StoreError::NoSuchMessage { .. } => {
                    (libc::ENOENT, Level::Debug)
                }
                StoreError::UidValidityChanged { .. } => (libc::ESTALE, Level::Warn),
                StoreError::Refused(_) => (libc::EIO, Level::Warn),
                StoreError::Protocol(_) => (libc::EIO, Level::Warn),
                StoreError::Connection(_) => (libc::EIO, Level::Warn),
                StoreError::Untrusted(_) => (libc::EIO, Level::Warn),
                StoreError::Timeout(_) => (libc::ETIMEDOUT, Level::Warn),
                StoreError::Invalid(_) => (libc::EINVAL, Level::Warn),
                StoreError::Unsupported(_) => (libc::EPERM, Level::Warn),
                StoreError::OverQuota(_) => (libc::ENOSPC, Level::Warn),
                StoreError::AlreadyExists(_) => (libc::EEXIST, Level::Debug),
                StoreError::NotEmpty(_) => (libc::ENOTEMPTY, Level::Debug),
                StoreError::Interrupted => (libc::EINTR, Level::Debug),
                // A change while the server cannot be reached: the mount is read-only
                // until it can.
                StoreError::Offline(_) => (libc::EROFS, Level::Warn),
                StoreError::NoSpaceHere(_) => (libc::ENOSPC, Level::Warn),
            },
        }
    }
}

/// The result type of the filesystem core.
pub type FsResult<T> = Result<T, FsError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MailboxId, Uid};

    #[test]
    fn errnos_match_the_readme_table() {
        assert_eq!(FsError::NotFound.errno_and_level().0, libc::ENOENT);
        assert_eq!(FsError::ReadOnly.errno_and_level().0, libc::EROFS);
        let gone = FsError::Store(StoreError::NoSuchMessage {
            mailbox: MailboxId::new("INBOX"),
            uid: Uid(1),
        });
        assert_eq!(gone.errno_and_level(), (libc::ENOENT, Level::Debug));
        let quota = FsError::Store(StoreError::OverQuota("full".into()));
        assert_eq!(quota.errno_and_level().0, libc::ENOSPC);
        let timeout = FsError::Store(StoreError::Timeout("x".into()));
        assert_eq!(timeout.errno_and_level(), (libc::ETIMEDOUT, Level::Warn));
    }
}
