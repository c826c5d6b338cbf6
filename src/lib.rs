//! imapfs: mount an IMAP account as a directory tree of mailboxes, messages and MIME parts.

pub mod cache;
pub mod call;
pub mod cli;
pub mod config;
pub mod fs;
pub mod fuse;
pub mod mime;
pub mod mount;
pub mod notify;
pub mod readers;
pub mod run;
pub mod search;
pub mod secret;
pub mod store;
