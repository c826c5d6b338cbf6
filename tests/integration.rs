//! Tests against a real Dovecot through a real FUSE mount of the `imapfs` binary.
//!
//! Every test starts its own server (clean state) and its own mount, and checks the server's
//! state afterwards with an independent IMAP client.

mod integration {
    pub mod fake_server;
    pub mod support;

    mod bodies;
    mod compress;
    mod deadlines;
    mod disconnected;
    mod disk_cache;
    mod errors;
    mod fallbacks;
    mod faults;
    mod hostile;
    mod linux_tool;
    mod live;
    mod live_faults;
    mod read_path;
    mod reliability;
    mod search;
    mod servers;
    mod soak;
    mod tools;
    mod wire;
    mod write_path;
}
