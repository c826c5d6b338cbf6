//! The reference client: mbsync (isync 1.4) pulling the whole mailbox into a fresh local
//! Maildir, with and without COMPRESS=DEFLATE.

use crate::process::{run_timed, Timed};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One mbsync set-up: its configuration, local Maildir and sync state, all under `dir`.
pub struct Mbsync {
    config: PathBuf,
    maildir: PathBuf,
    state: PathBuf,
    debug_log: PathBuf,
}

/// Where mbsync connects and how.
pub struct Account<'a> {
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
    /// PEM file mbsync trusts. isync 1.4 checks only DNS names against `Host`, so this holds
    /// the server's own certificate too (an exact match is trusted without a name check).
    pub trust_file: &'a Path,
    /// Whether mbsync may use COMPRESS=DEFLATE (it does whenever the server offers it).
    pub compress: bool,
}

impl Mbsync {
    /// Writes the configuration into `dir` (created).
    pub fn new(dir: &Path, account: &Account<'_>) -> io::Result<Mbsync> {
        fs::create_dir_all(dir)?;
        let mbsync = Mbsync {
            config: dir.join("mbsyncrc"),
            maildir: dir.join("maildir"),
            state: dir.join("state"),
            debug_log: dir.join("debug.log"),
        };
        for value in [account.user, account.password] {
            if value.contains(['"', '\\', '\n', '\r']) || value.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "user and password must be non-empty without quotes or line breaks",
                ));
            }
        }
        let disable = if account.compress {
            ""
        } else {
            "DisableExtension COMPRESS=DEFLATE\n"
        };
        let text = format!(
            "# Written by imapfs-bench.\n\
             IMAPAccount bench\n\
             Host 127.0.0.1\n\
             Port {port}\n\
             User \"{user}\"\n\
             Pass \"{password}\"\n\
             SSLType IMAPS\n\
             CertificateFile {trust}\n\
             AuthMechs LOGIN\n\
             {disable}\n\
             IMAPStore remote\n\
             Account bench\n\n\
             MaildirStore local\n\
             Path {maildir}/\n\
             Inbox {maildir}/INBOX\n\
             SubFolders Verbatim\n\n\
             Channel bench\n\
             Far :remote:INBOX\n\
             Near :local:INBOX\n\
             Sync Pull\n\
             Create Near\n\
             SyncState {state}/\n",
            port = account.port,
            user = account.user,
            password = account.password,
            trust = account.trust_file.display(),
            maildir = mbsync.maildir.display(),
            state = mbsync.state.display(),
        );
        fs::write(&mbsync.config, text)?;
        fs::set_permissions(&mbsync.config, fs::Permissions::from_mode(0o600))?;
        Ok(mbsync)
    }

    /// The synced mailbox (`cur/`, `new/`, `tmp/` inside).
    pub fn inbox(&self) -> PathBuf {
        self.maildir.join("INBOX")
    }

    fn reset(&self) -> io::Result<()> {
        for dir in [&self.maildir, &self.state] {
            match fs::remove_dir_all(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            fs::create_dir_all(dir)?;
        }
        Ok(())
    }

    /// A full sync into an empty Maildir; returns its wall and CPU time. Checks that
    /// `expected` messages arrived.
    pub fn full_sync(&self, expected: usize) -> io::Result<Timed> {
        self.reset()?;
        let mut cmd = Command::new("mbsync");
        cmd.arg("-q").arg("-c").arg(&self.config).arg("bench");
        let timed = run_timed(&mut cmd, "mbsync", Stdio::null(), &[0])?;
        let got = self.message_count()?;
        if got != expected {
            return Err(io::Error::other(format!(
                "mbsync synced {got} messages, expected {expected}"
            )));
        }
        Ok(timed)
    }

    /// A full sync with network debugging on (`-Dn`), untimed, counting the commands sent.
    pub fn count_commands(&self, expected: usize) -> io::Result<u64> {
        self.reset()?;
        let log = fs::File::create(&self.debug_log)?;
        let mut cmd = Command::new("mbsync");
        cmd.arg("-Dn").arg("-c").arg(&self.config).arg("bench");
        run_timed(&mut cmd, "mbsync -Dn", Stdio::from(log), &[0])?;
        let got = self.message_count()?;
        if got != expected {
            return Err(io::Error::other(format!(
                "mbsync -Dn synced {got} messages, expected {expected}"
            )));
        }
        let text = fs::read_to_string(&self.debug_log)?;
        let _ = fs::remove_file(&self.debug_log);
        Ok(count_debug_commands(&text))
    }

    /// Messages in the local copy (`cur/` and `new/`).
    pub fn message_count(&self) -> io::Result<usize> {
        let mut count = 0;
        for sub in ["cur", "new"] {
            match fs::read_dir(self.inbox().join(sub)) {
                Ok(entries) => count += entries.count(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(count)
    }
}

/// Distinct command tags in an `mbsync -Dn` log, whose command lines read
/// `>>> TAG COMMAND ...` (after an optional `(N in progress) ` prefix).
pub fn count_debug_commands(log: &str) -> u64 {
    let mut tags: Vec<u64> = log
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(">>> ")? + 4..];
            rest.split(' ').next()?.parse().ok()
        })
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags.len() as u64
}

/// `mbsync --version`, e.g. `isync 1.4.4`.
pub fn version() -> String {
    Command::new("mbsync")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "mbsync (version unknown)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_commands_are_counted_once_per_tag() {
        let log = "Logging in...\n\
                   >>> 1 LOGIN <user> <pass>\n\
                   1 OK [CAPABILITY IMAP4rev1] Logged in\n\
                   >>> 2 COMPRESS DEFLATE\n\
                   >>> 5 UID FETCH 1:500 (UID FLAGS)\n\
                   (1 in progress) >>> 6 UID FETCH 1 (BODY.PEEK[])\n\
                   >>> 6 UID FETCH 1 (BODY.PEEK[])\n\
                   * 1 FETCH (UID 1 FLAGS (\\Seen))\n";
        assert_eq!(count_debug_commands(log), 4);
    }
}
