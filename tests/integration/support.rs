//! Shared test machinery: start the `imapfs` binary on a fresh Dovecot, wait for the mount,
//! tear everything down (also when a test fails or hangs), and look at the server directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use fixture::proxy::{Proxy, ProxyOptions};
pub use fixture::{Dovecot, DovecotOptions, ImapServer};

/// Longest a single test's mount may live before the watchdog kills imapfs, so that a hang
/// becomes a failure instead of a stuck suite.
const WATCHDOG: Duration = Duration::from_secs(240);

/// The imapfs binary cargo built for these tests, or the one `IMAPFS_BIN` names (to run
/// the same tests against another build, e.g. to check that a test catches a known bug).
pub fn imapfs_bin() -> String {
    std::env::var("IMAPFS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_imapfs").to_string())
}

/// The sample message called `name` (`fixture::sample_messages`).
pub fn sample(name: &str) -> fixture::Sample {
    fixture::sample_messages()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sample {name}"))
}

/// A Dovecot with the sample corpus appended (one APPEND each, in order).
pub fn dovecot_with_samples() -> Dovecot {
    let dovecot = Dovecot::start(DovecotOptions::default()).expect("start dovecot");
    let mut session = dovecot.client("alice").expect("login");
    fixture::append_samples(&mut session, &fixture::sample_messages()).expect("append samples");
    let _ = session.logout();
    let mut session = dovecot.client("alice").expect("login");
    fixture::settle_special_parents(&mut session, &fixture::sample_messages())
        .expect("special-use parents");
    let _ = session.logout();
    dovecot
}

/// True if `path` is a mount point in this mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    let wanted = path.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
}

/// A running `imapfs -f` and its mount point; unmounts and stops it on drop.
pub struct Mount {
    pub path: PathBuf,
    /// Where new files wait for APPEND (and stay if it fails).
    #[allow(dead_code)] // used by the write-path tests
    pub spool: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
    child: Child,
    done: Arc<AtomicBool>,
}

/// How to start a mount.
pub struct MountSpec<'a> {
    pub source: String,
    pub password: String,
    pub ca_file: Option<PathBuf>,
    pub args: Vec<&'a str>,
}

impl<'a> MountSpec<'a> {
    /// Mount `user`'s account of `dovecot` over implicit TLS.
    pub fn new(dovecot: &Dovecot, user: &str) -> MountSpec<'a> {
        MountSpec {
            source: dovecot.source(user),
            password: dovecot.password(user).to_string(),
            ca_file: Some(dovecot.ca_file().to_path_buf()),
            args: Vec::new(),
        }
    }

    /// Mount `user`'s account of any test server (Dovecot, Cyrus, Courier) over implicit TLS.
    pub fn on(server: &dyn ImapServer, user: &str) -> MountSpec<'a> {
        MountSpec {
            source: server.source(user),
            password: server.password(user).to_string(),
            ca_file: Some(server.ca_path()),
            args: Vec::new(),
        }
    }

    /// The same account through `proxy` (which must forward to the IMAPS port).
    pub fn via_proxy(mut self, proxy: &Proxy) -> Self {
        let user = self
            .source
            .split("://")
            .nth(1)
            .unwrap()
            .split('@')
            .next()
            .unwrap()
            .to_string();
        self.source = format!("imaps://{user}@127.0.0.1:{}", proxy.port());
        self
    }

    /// Extra command-line arguments.
    pub fn args(mut self, args: &[&'a str]) -> Self {
        self.args.extend_from_slice(args);
        self
    }

    /// Starts imapfs in the foreground and waits until the mount is up.
    pub fn mount(self) -> Mount {
        let dir = tempfile::Builder::new()
            .prefix("imapfs-t")
            .tempdir()
            .unwrap();
        let path = dir.path().join("mnt");
        let spool = dir.path().join("spool");
        let log = dir.path().join("imapfs.log");
        std::fs::create_dir(&path).unwrap();
        let mut cmd = Command::new(imapfs_bin());
        cmd.arg("-f")
            .arg("--spool-dir")
            .arg(&spool)
            .arg("--log-file")
            .arg(&log)
            .env("IMAPFS_PASSWORD", &self.password)
            .env("IMAPFS_LOG", "imapfs=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(ca) = &self.ca_file {
            cmd.arg("--ca-file").arg(ca);
        }
        // Each mount has a disk cache of its own unless the test says otherwise, so no test
        // sees another's (or an earlier run's) cache.
        if !self
            .args
            .iter()
            .any(|a| a.starts_with("--cache-dir") || *a == "--no-disk-cache")
        {
            cmd.arg("--cache-dir").arg(dir.path().join("cache"));
        }
        cmd.args(&self.args).arg(&self.source).arg(&path);
        let mut child = cmd.spawn().expect("spawn imapfs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(&path) {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                use std::io::Read;
                child.stderr.take().unwrap().read_to_string(&mut err).ok();
                panic!("imapfs exited with {status} before mounting: {err}");
            }
            assert!(Instant::now() < deadline, "mount did not appear in 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let done = Arc::new(AtomicBool::new(false));
        let watched = Arc::clone(&done);
        let pid = child.id() as i32;
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < WATCHDOG {
                if watched.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            eprintln!("watchdog: imapfs (pid {pid}) ran past {WATCHDOG:?}; killing it");
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        Mount {
            path,
            spool,
            log,
            _dir: dir,
            child,
            done,
        }
    }
}

impl Mount {
    /// `path` inside the mount.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// The imapfs process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The imapfs log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for imapfs to exit; returns whether it exited cleanly.
    pub fn terminate(mut self) -> bool {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait_for_exit(Duration::from_secs(10))
            .is_some_and(|status| status.success())
    }

    /// Waits up to `limit` for imapfs to exit; its exit status, or None if it still runs.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The directory of the message whose name ends with `subject` in `mailbox_dir`; for a
    /// file stored there, whose message directory is not listed, `UID NAME` by its
    /// `user.imap.uid`.
    pub fn message_dir(&self, mailbox_dir: &str, subject: &str) -> PathBuf {
        let dir = self.join(mailbox_dir);
        let wanted = if subject.is_empty() {
            "(no subject)"
        } else {
            subject
        };
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                name.split_once(' ').map(|(_, s)| s) == Some(wanted)
            })
            .or_else(|| {
                let file = dir.join(wanted);
                let uid = uid_xattr(&file).filter(|_| file.is_file())?;
                Some(dir.join(format!("{uid} {wanted}")))
            })
            .unwrap_or_else(|| panic!("no message {wanted:?} in {}", dir.display()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if is_mounted(&self.path) {
            let c = std::ffi::CString::new(self.path.to_string_lossy().as_bytes()).unwrap();
            // SAFETY: umount2 with a valid C string; lazy so a busy mount still goes.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs imapfs to completion (for start-up errors), with a deadline.
pub fn run_imapfs(args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg("30")
        .arg(imapfs_bin())
        .args(args)
        .stdin(Stdio::null());
    cmd.env_remove("IMAPFS_PASSWORD");
    if let Some(p) = password {
        cmd.env("IMAPFS_PASSWORD", p);
    }
    // A disk cache of its own, so that no earlier cache lets it mount offline.
    let cache = tempfile::tempdir().unwrap();
    cmd.env("XDG_CACHE_HOME", cache.path());
    cmd.output().expect("run imapfs")
}

/// Runs a shell command with a deadline; returns its output.
pub fn sh(script: &str) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh")
}

/// One of the mount's own counters (`name=` in `user.imapfs.stats` on the root).
pub fn counter(mount: &Mount, name: &str) -> u64 {
    let out = sh(&format!(
        "getfattr --only-values -n user.imapfs.stats '{}'",
        mount.path.display()
    ));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {text:?}"))
}

/// `commands=` and `bytes_received=` of the mount's counters.
pub fn stats(mount: &Mount) -> (u64, u64) {
    (counter(mount, "commands"), counter(mount, "bytes_received"))
}

/// An independent IMAP session as `user`.
pub type Session = fixture::TlsSession;

/// The independent view of one mailbox: UID -> (flags, exact bytes).
pub fn server_mailbox(
    session: &mut Session,
    wire_mailbox: &str,
) -> BTreeMap<u32, (Vec<String>, Vec<u8>)> {
    session.examine(wire_mailbox).expect("examine");
    let mut out = BTreeMap::new();
    let fetches = session
        .uid_fetch("1:*", "(UID FLAGS BODY.PEEK[])")
        .expect("fetch");
    for f in fetches.iter() {
        let flags = f
            .flags()
            .iter()
            .map(|fl| fl.to_string())
            .filter(|fl| fl != "\\Recent")
            .collect();
        out.insert(
            f.uid.unwrap(),
            (flags, f.body().unwrap_or_default().to_vec()),
        );
    }
    out
}

/// Flags of every message in `wire_mailbox`, without `\Recent`.
pub fn server_flags(session: &mut Session, wire_mailbox: &str) -> BTreeMap<u32, Vec<String>> {
    server_mailbox(session, wire_mailbox)
        .into_iter()
        .map(|(uid, (flags, _))| (uid, flags))
        .collect()
}

/// Wire names of every mailbox.
pub fn server_mailboxes(session: &mut Session) -> Vec<String> {
    let mut names: Vec<String> = session
        .list(Some(""), Some("*"))
        .expect("list")
        .iter()
        .map(|n| n.name().to_string())
        .collect();
    names.sort();
    names
}

/// `BINARY.PEEK[section]` of `uid` in `mailbox` (a wire name), fetched by an independent
/// client that can read a `literal8`: Python's imaplib, over the plain port.
pub fn binary_peek(dovecot: &Dovecot, mailbox: &str, uid: u32, section: &str) -> Vec<u8> {
    const SCRIPT: &str = r#"
import imaplib, sys
port, user, password, mailbox, uid, section = sys.argv[1:7]
m = imaplib.IMAP4("127.0.0.1", int(port))
m.login(user, password)
typ, _ = m.select('"%s"' % mailbox.replace("\\", "\\\\").replace('"', '\\"'), readonly=True)
assert typ == "OK", typ
typ, data = m.uid("FETCH", uid, "(BINARY.PEEK[%s])" % section)
assert typ == "OK" and isinstance(data[0], tuple), data
sys.stdout.buffer.write(data[0][1])
"#;
    let out = std::process::Command::new("timeout")
        .args(["30", "python3", "-c", SCRIPT])
        .arg(dovecot.imap_port().to_string())
        .args(["alice", dovecot.password("alice"), mailbox])
        .arg(uid.to_string())
        .arg(section)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python imaplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every file under `dir`, recursively.
pub fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A file named `name` anywhere under `dir`.
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut files = Vec::new();
    all_files(dir, &mut files);
    files
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == name))
}

/// The `user.imap.uid` attribute of `path`, if it has one.
fn uid_xattr(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut buf = [0u8; 32];
    // SAFETY: valid C strings; the buffer has its length.
    let n = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            c"user.imap.uid".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}
