//! imapfs as a Linux tool, on a real Dovecot and real mounts: installed by
//! `scripts/install.sh` and mounted by `mount -a` from an fstab, accounts from a config file,
//! a mount left behind by `kill -9`, `df` with a quota, systemd readiness, plaintext/TLS
//! mismatches, failing fast while the server is down, and what the log shows.

use std::os::fd::IntoRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::support::*;

/// Generous bounds for a loaded two-core machine.
const MOUNT_WITHIN: Duration = Duration::from_secs(30);

/// A disk cache home of its own for each imapfs a test starts (under cargo's scratch
/// directory, never the user's `~/.cache`), so that no run finds an earlier one's cache.
fn fresh_cache_home() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("linux-tool-cache")
        .join(format!("{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `program` with `args` under `timeout 60`, with `env` added.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg(program)
        .args(args)
        .env("XDG_CACHE_HOME", fresh_cache_home())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The mounts at `path`, as (type, source), from /proc/self/mountinfo.
fn mounts_at(path: &Path) -> Vec<(String, String)> {
    imapfs::mount::mounts()
        .into_iter()
        .filter(|m| m.target == path)
        .map(|m| (m.fstype, m.source))
        .collect()
}

/// Waits (bounded) until `check` holds.
fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Detaches whatever is mounted at a path when dropped (a test that fails half-way must not
/// leave mounts behind), and kills a foreground imapfs it holds.
struct Cleanup {
    path: PathBuf,
    child: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        while is_mounted(&self.path) {
            let c = std::ffi::CString::new(self.path.to_string_lossy().as_bytes()).unwrap();
            // SAFETY: umount2 with a valid C string; lazy so a busy or dead mount still goes.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                break;
            }
        }
    }
}

/// A file holding `password`, readable by its owner alone.
fn password_file(dir: &Path, password: &str) -> PathBuf {
    let path = dir.join("password");
    std::fs::write(&path, password).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Starts `imapfs -f ARGS` and waits for its mount at `mnt`; its stderr is piped.
fn foreground(args: &[&str], env: &[(&str, &str)], mnt: &Path) -> Cleanup {
    let mut child = Command::new(imapfs_bin())
        .arg("-f")
        .args(args)
        .env("XDG_CACHE_HOME", fresh_cache_home())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imapfs");
    let deadline = Instant::now() + MOUNT_WITHIN;
    while !is_mounted(mnt) {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut err).ok();
            panic!("imapfs exited with {status} before mounting: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "no mount within {MOUNT_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Cleanup {
        path: mnt.to_path_buf(),
        child: Some(child),
    }
}

// ---- install, fstab, mount -a ------------------------------------------------------------

/// `scripts/install.sh` into a temporary PREFIX, with its mount helper where mount(8) looks
/// (/sbin); `--uninstall` when dropped, so nothing stays behind on the system.
struct Installed {
    prefix: PathBuf,
    _dir: tempfile::TempDir,
    /// One install at a time: there is one /sbin.
    _alone: std::sync::MutexGuard<'static, ()>,
}

static ONE_INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const HELPER: &str = "/sbin/mount.fuse.imapfs";

fn install_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install.sh")
}

impl Installed {
    fn new() -> Installed {
        let alone = ONE_INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        // A helper link left dangling by an earlier run that was killed is ours to replace;
        // anything else there is not, and this test would not be testing this build.
        if let Ok(target) = std::fs::read_link(HELPER) {
            if !target.exists() {
                std::fs::remove_file(HELPER).unwrap();
            }
        }
        assert!(
            std::fs::symlink_metadata(HELPER).is_err(),
            "{HELPER} exists (another imapfs is installed); remove it to run this test"
        );
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("usr");
        let out = Command::new("bash")
            .arg(install_script())
            .env("PREFIX", &prefix)
            .env("SBINDIR", "/sbin")
            .env("IMAPFS_BIN", imapfs_bin())
            .output()
            .unwrap();
        assert!(out.status.success(), "install.sh: {}", text(&out.stderr));
        Installed {
            prefix,
            _dir: dir,
            _alone: alone,
        }
    }

    fn uninstall(&self) -> Output {
        Command::new("bash")
            .arg(install_script())
            .arg("--uninstall")
            .env("PREFIX", &self.prefix)
            .env("SBINDIR", "/sbin")
            .output()
            .unwrap()
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = self.uninstall();
    }
}

#[test]
fn install_puts_binary_man_page_completions_and_helper_in_place_and_uninstall_removes_them() {
    let installed = Installed::new();
    let prefix = &installed.prefix;
    let files = [
        "bin/imapfs",
        "share/man/man1/imapfs.1",
        "share/bash-completion/completions/imapfs",
        "share/zsh/site-functions/_imapfs",
        "share/fish/vendor_completions.d/imapfs.fish",
    ];
    for file in files {
        assert!(prefix.join(file).is_file(), "{file} not installed");
    }
    assert_eq!(
        std::fs::read_link(HELPER).unwrap(),
        prefix.join("bin/imapfs")
    );
    // The man page renders, with every option in it.
    let man_page = prefix.join("share/man/man1/imapfs.1");
    let out = run(
        "man",
        &["-l", "-P", "cat", man_page.to_str().unwrap()],
        &[("MANWIDTH", "100")],
    );
    assert!(out.status.success(), "man -l: {}", text(&out.stderr));
    let page = text(&out.stdout);
    for needle in [
        "NAME",
        "imapfs - Mount an IMAP account",
        "--password-command",
        "--cache-size",
        "--nonempty",
        "config.toml",
    ] {
        assert!(page.contains(needle), "the man page lacks {needle}: {page}");
    }
    for (file, needle) in [
        ("share/bash-completion/completions/imapfs", "--cache-size"),
        ("share/zsh/site-functions/_imapfs", "--cache-size"),
        ("share/fish/vendor_completions.d/imapfs.fish", "cache-size"),
    ] {
        let script = std::fs::read_to_string(prefix.join(file)).unwrap();
        assert!(script.contains(needle), "{file} lacks {needle}");
    }
    let out = installed.uninstall();
    assert!(out.status.success(), "uninstall: {}", text(&out.stderr));
    assert!(std::fs::symlink_metadata(HELPER).is_err(), "{HELPER} left");
    assert!(!prefix.exists(), "uninstall left {}", prefix.display());
}

#[test]
fn mount_a_twice_from_an_fstab_gives_one_mount_and_umount_source_unmounts_it() {
    let installed = Installed::new();
    let dovecot = dovecot_with_samples();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mail box");
    std::fs::create_dir(&mnt).unwrap();
    let cleanup = Cleanup {
        path: mnt.clone(),
        child: None,
    };
    let password = password_file(dir.path(), dovecot.password("alice"));
    let source = dovecot.source("alice");
    // Spaces as \040, as fstab writes them; options mount and systemd use, which imapfs
    // accepts and ignores.
    let escape = |p: &Path| p.to_string_lossy().replace(' ', "\\040");
    let fstab = dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# imapfs\n{source} {} fuse.imapfs \
             ca_file={},password_command=cat\\040{},spool_dir={},_netdev,nofail,users,\
             x-systemd.automount,x-systemd.mount-timeout=30,defaults,exec,suid,dev,auto,noatime 0 0\n",
            escape(&mnt),
            escape(dovecot.ca_file()),
            escape(&password),
            escape(&dir.path().join("spool")),
        ),
    )
    .unwrap();
    let fstab = fstab.to_str().unwrap();
    for round in 1..=2 {
        let out = run("mount", &["-T", fstab, "-a"], &[]);
        assert!(
            out.status.success(),
            "mount -a, round {round}: {}",
            text(&out.stderr)
        );
        assert_eq!(
            mounts_at(&mnt),
            [("fuse.imapfs".to_owned(), source.clone())],
            "round {round}"
        );
    }
    // Mounted by mount(8) through the helper, detached and ready when mount returned.
    let inbox = std::fs::read_dir(mnt.join("INBOX")).unwrap().count();
    assert!(inbox > 5, "INBOX shows {inbox} entries");
    let out = run("findmnt", &["-n", "-o", "TARGET,FSTYPE", &source], &[]);
    assert!(text(&out.stdout).contains("fuse.imapfs"), "{out:?}");
    // A second imapfs on the same directory is refused, not stacked.
    let out = run_imapfs(
        &[
            "-f",
            "--ca-file",
            dovecot.ca_file().to_str().unwrap(),
            &source,
            mnt.to_str().unwrap(),
        ],
        Some(dovecot.password("alice")),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already an imapfs mount"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(mounts_at(&mnt).len(), 1);
    let out = run("umount", &[&source], &[]);
    assert!(out.status.success(), "umount SOURCE: {}", text(&out.stderr));
    assert!(mounts_at(&mnt).is_empty());
    drop(cleanup);
    drop(installed);
}

// ---- mount points ------------------------------------------------------------------------

#[test]
fn a_non_empty_directory_is_refused_unless_nonempty_is_given() {
    let dovecot = dovecot_with_samples();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::write(mnt.join("keep.txt"), b"mine").unwrap();
    let ca = dovecot.ca_file().to_str().unwrap().to_owned();
    let source = dovecot.source("alice");
    let started = Instant::now();
    let out = run_imapfs(
        &["-f", "--ca-file", &ca, &source, mnt.to_str().unwrap()],
        Some(dovecot.password("alice")),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("is not empty") && err.contains("-o nonempty"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!is_mounted(&mnt));
    let password = password_file(dir.path(), dovecot.password("alice"));
    let command = format!("cat {}", password.display());
    let mount = foreground(
        &[
            "-o",
            "nonempty",
            "--ca-file",
            &ca,
            "--password-command",
            &command,
            &source,
            mnt.to_str().unwrap(),
        ],
        &[],
        &mnt,
    );
    assert!(mnt.join("INBOX").is_dir());
    drop(mount);
    assert_eq!(std::fs::read(mnt.join("keep.txt")).unwrap(), b"mine");
}

/// `kill -9` leaves the mount point saying "Transport endpoint is not connected". The next
/// mount clears it (it was an imapfs) and settles the spool: a message whose APPEND failed
/// is stored, once; a file that was still being written is kept and listed as pending.
#[test]
fn after_kill_9_the_next_mount_clears_the_dead_mount_and_settles_the_spool() {
    let mut dovecot = dovecot_with_samples();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let spool = dir.path().join("spool");
    std::fs::create_dir(&mnt).unwrap();
    let password = password_file(dir.path(), dovecot.password("alice"));
    let command = format!("cat {}", password.display());
    let ca = dovecot.ca_file().to_str().unwrap().to_owned();
    let source = dovecot.source("alice");
    // Without the disk cache: with it, a file closed while the server is down is queued
    // as a disconnected change and its close succeeds (disconnected.rs tests that path).
    let args = [
        "-v",
        "--no-disk-cache",
        "--ca-file",
        &ca,
        "--password-command",
        &command,
        "--spool-dir",
        spool.to_str().unwrap(),
        "--timeout",
        "5",
        &source,
        mnt.to_str().unwrap(),
    ];
    let mut first = foreground(&args, &[], &mnt);
    assert!(std::fs::read_dir(mnt.join("INBOX")).unwrap().count() > 5);

    // One file closed while the server is down: its APPEND fails and it stays in the spool
    // with its note. Another still open for writing when imapfs dies.
    // The writer is a process of its own: every process this one forks meanwhile (other
    // tests run in parallel) would close a copy of an fd opened here at its exec, and each
    // close is a FUSE FLUSH, which stores the file.
    let half_path = mnt.join("INBOX/half-written.txt");
    // (A shell's redirection of a builtin dups and closes the file too, so the script
    // only opens it once, as its standard output.)
    let mut half = Command::new("sh")
        .arg("-c")
        .arg("exec 1>\"$1\"; printf 'the first half'; exec sleep 600")
        .arg("sh")
        .arg(&half_path)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + MOUNT_WITHIN;
    while std::fs::metadata(&half_path).map_or(0, |m| m.len()) < 14 {
        assert!(Instant::now() < deadline, "the writer did not write");
        std::thread::sleep(Duration::from_millis(20));
    }
    let down = std::fs::File::create(mnt.join("INBOX/while-down.txt")).unwrap();
    std::io::Write::write_all(
        &mut &down,
        &b"closed while the server was down\n".repeat(20),
    )
    .unwrap();
    dovecot.stop();
    let failed = close(down);
    assert!(failed.is_err(), "storing succeeded with the server stopped");
    let mut child = first.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    half.kill().unwrap();
    half.wait().unwrap();
    let dead = std::fs::metadata(&mnt).unwrap_err();
    assert_eq!(dead.raw_os_error(), Some(libc::ENOTCONN), "{dead}");
    let spooled: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        spooled.len(),
        3,
        "two spool files and one note: {spooled:?}"
    );
    dovecot.restart().unwrap();

    let log = dir.path().join("second.log");
    let mut args = args.to_vec();
    args.extend(["--log-file", log.to_str().unwrap()]);
    let second = foreground(&args, &[], &mnt);
    assert_eq!(
        mounts_at(&mnt).len(),
        1,
        "the dead mount is gone, one live mount"
    );
    // The file whose APPEND failed is stored, once; the half-written one is pending.
    let mut client = dovecot.client("alice").unwrap();
    let mut stored_once = || {
        server_mailbox(&mut client, "INBOX")
            .values()
            .filter(|(_, raw)| raw.windows(14).any(|w| w == b"while-down.txt"))
            .count()
    };
    let deadline = Instant::now() + MOUNT_WITHIN;
    let mut stored = stored_once();
    while stored == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        stored = stored_once();
    }
    assert_eq!(stored, 1, "the spooled file is stored exactly once");
    let out = run(
        "getfattr",
        &[
            "--only-values",
            "-n",
            "user.imapfs.pending",
            mnt.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "getfattr: {}", text(&out.stderr));
    let pending = text(&out.stdout);
    assert_eq!(pending.lines().count(), 1, "{pending}");
    assert!(
        pending.contains("half-written.txt") && pending.contains("while it was written"),
        "{pending}"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("died and left its mount behind"), "{log}");
    assert!(log.contains("still in the spool"), "{log}");
    drop(second);
    assert_eq!(stored_once(), 1);
}

/// A dead FUSE mount of another filesystem: made here with mount(2) on a /dev/fuse
/// descriptor that is closed at once, so the mount point answers ENOTCONN.
fn dead_foreign_mount(mnt: &Path) {
    use std::ffi::CString;
    // SAFETY: open/mount/close with valid NUL-terminated strings; the descriptor is closed
    // once, here.
    unsafe {
        let fd = libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR);
        assert!(fd >= 0, "open /dev/fuse");
        let target = CString::new(mnt.to_str().unwrap()).unwrap();
        let data = CString::new(format!("fd={fd},rootmode=40000,user_id=0,group_id=0")).unwrap();
        let done = libc::mount(
            c"me@example.org:/srv".as_ptr(),
            target.as_ptr(),
            c"fuse.sshfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        );
        assert_eq!(done, 0, "mount: {}", std::io::Error::last_os_error());
        libc::close(fd);
    }
}

#[test]
fn a_dead_mount_of_another_filesystem_is_left_alone_with_how_to_clear_it() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    dead_foreign_mount(&mnt);
    let cleanup = Cleanup {
        path: mnt.clone(),
        child: None,
    };
    let dead = std::fs::metadata(&mnt).unwrap_err();
    assert_eq!(dead.raw_os_error(), Some(libc::ENOTCONN), "{dead}");
    let ca = dovecot.ca_file().to_str().unwrap().to_owned();
    let out = run_imapfs(
        &[
            "-f",
            "--ca-file",
            &ca,
            &dovecot.source("alice"),
            mnt.to_str().unwrap(),
        ],
        Some("alice-pass"),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("Transport endpoint is not connected")
            && err.contains("fuse.sshfs")
            && err.contains(&format!("fusermount3 -u {}", mnt.display())),
        "{err}"
    );
    assert_eq!(
        mounts_at(&mnt),
        [("fuse.sshfs".to_owned(), "me@example.org:/srv".to_owned())],
        "left alone"
    );
    drop(cleanup);
}

// ---- config file -------------------------------------------------------------------------

fn write_config(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let config = dir.join("xdg").join("imapfs");
    std::fs::create_dir_all(&config).unwrap();
    let path = config.join("config.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn a_config_account_mounts_by_name_and_bad_accounts_are_clear_errors() {
    let dovecot = dovecot_with_samples();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let xdg = dir.path().join("xdg");
    let env = [("XDG_CONFIG_HOME", xdg.to_str().unwrap())];
    let account = |extra: &str| {
        format!(
            "[accounts.work]\nsource = \"{}\"\nca_file = \"{}\"\nspool_dir = \"{}\"\n{extra}",
            dovecot.source("alice"),
            dovecot.ca_file().display(),
            dir.path().join("spool").display(),
        )
    };
    let password = password_file(dir.path(), dovecot.password("alice"));
    write_config(
        dir.path(),
        &account(&format!(
            "password_command = \"cat {}\"\nread_only = true\n",
            password.display()
        )),
        0o644,
    );
    // Mounted by name, detached; the account's options apply (read-only).
    let out = run(&imapfs_bin(), &["work", mnt.to_str().unwrap()], &env);
    let cleanup = Cleanup {
        path: mnt.clone(),
        child: None,
    };
    assert!(out.status.success(), "imapfs work: {}", text(&out.stderr));
    assert_eq!(
        mounts_at(&mnt),
        [("fuse.imapfs".to_owned(), "work".to_owned())]
    );
    assert!(mnt.join("INBOX").is_dir());
    let refused = std::fs::create_dir(mnt.join("New mailbox")).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EROFS));
    let out = run("umount", &["work"], &[]);
    assert!(out.status.success(), "umount work: {}", text(&out.stderr));
    drop(cleanup);

    // An unknown account.
    let out = run(&imapfs_bin(), &["play", mnt.to_str().unwrap()], &env);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("'play'") && err.contains("config.toml") && err.contains("work"),
        "{err}"
    );
    // A password in a file others can read.
    let secret = dovecot.password("alice");
    let file = write_config(
        dir.path(),
        &account(&format!("password = \"{secret}\"\n")),
        0o644,
    );
    let out = run(&imapfs_bin(), &["work", mnt.to_str().unwrap()], &env);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&file.display().to_string())
            && err.contains("0644")
            && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains(secret), "{err}");
    assert!(!is_mounted(&mnt));
    // The same file, private: its password is used.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mount = foreground(&["work", mnt.to_str().unwrap()], &env, &mnt);
    assert!(std::fs::read_dir(mnt.join("INBOX")).unwrap().count() > 5);
    drop(mount);
}

// ---- df ----------------------------------------------------------------------------------

/// `df -B1 --output=size,used,avail MNT` as numbers.
fn df(mnt: &Path) -> (u64, u64, u64) {
    let out = run(
        "df",
        &["-B1", "--output=size,used,avail", mnt.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "df: {}", text(&out.stderr));
    let out = text(&out.stdout);
    let numbers: Vec<u64> = out
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (numbers[0], numbers[1], numbers[2])
}

#[test]
fn df_shows_the_dovecot_quota_and_without_one_is_far_from_full() {
    const QUOTA: u64 = 50 << 20;
    let dovecot = Dovecot::start(DovecotOptions {
        quota_bytes: Some(QUOTA),
        ..DovecotOptions::default()
    })
    .unwrap();
    let mut session = dovecot.client("alice").unwrap();
    fixture::append_samples(&mut session, &fixture::sample_messages()).unwrap();
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let (size, used, avail) = df(&mount.path);
    assert_eq!(size, QUOTA, "size is the quota");
    assert!(used > 0 && used < QUOTA, "used {used}");
    assert_eq!(size - used, avail);
    drop(mount);

    let plain = dovecot_with_samples();
    let mount = MountSpec::new(&plain, "alice").mount();
    let (size, used, avail) = df(&mount.path);
    assert!(avail >= 1 << 50, "avail {avail}");
    assert!(used < size / 1000, "used {used} of {size}");
}

// ---- systemd readiness -------------------------------------------------------------------

#[test]
fn ready_is_sent_to_notify_socket_once_the_mount_is_up() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let dovecot = dovecot_with_samples();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let name = format!("imapfs-test-notify-{}", std::process::id());
    let socket =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    socket.set_read_timeout(Some(MOUNT_WITHIN)).unwrap();
    let password = password_file(dir.path(), dovecot.password("alice"));
    let command = format!("cat {}", password.display());
    let child = Command::new(imapfs_bin())
        .args(["-f", "--ca-file", dovecot.ca_file().to_str().unwrap()])
        .args(["--password-command", &command, &dovecot.source("alice")])
        .arg(&mnt)
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .env("XDG_CACHE_HOME", fresh_cache_home())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cleanup = Cleanup {
        path: mnt.clone(),
        child: Some(child),
    };
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within the deadline");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(is_mounted(&mnt), "READY=1 came before the mount");
    assert!(mnt.join("INBOX").is_dir());
    drop(cleanup);
}

// ---- plaintext / TLS mismatch ------------------------------------------------------------

#[test]
fn a_plaintext_tls_mismatch_fails_within_a_second_either_way() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ca = dovecot.ca_file().to_str().unwrap().to_owned();
    for (source, says) in [
        (
            format!("imap://alice@127.0.0.1:{}", dovecot.imaps_port()),
            "speaks TLS",
        ),
        (
            format!("imaps://alice@127.0.0.1:{}", dovecot.imap_port()),
            "speaks plain IMAP",
        ),
    ] {
        let started = Instant::now();
        let out = run_imapfs(
            &["-f", "--ca-file", &ca, &source, mnt.to_str().unwrap()],
            Some("alice-pass"),
        );
        let took = started.elapsed();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{source}: {err}");
        assert!(err.contains(says), "{source}: {err}");
        assert!(took < Duration::from_secs(1), "{source}: took {took:?}");
        eprintln!("{source}: failed in {took:?}");
    }
}

/// The names in a directory, or the first error opening or reading it.
fn list(dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect()
}

/// Closes `file` and returns what close(2) said (std ignores it; imapfs stores a new file
/// at its close and reports a failed APPEND there).
fn close(file: std::fs::File) -> std::io::Result<()> {
    // SAFETY: the descriptor is owned and closed exactly once here.
    if unsafe { libc::close(file.into_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

// ---- server down -------------------------------------------------------------------------

#[test]
fn while_the_server_is_down_uncached_operations_fail_at_once() {
    let mut dovecot = dovecot_with_samples();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["--timeout", "10"])
        .mount();
    // Selectable mailboxes of the sample account (Archive only holds 2023).
    let mailboxes = ["INBOX", "Drafts", "Junk", "Sent", "Trash"];
    let root = list(&mount.path).unwrap();
    for name in mailboxes {
        assert!(root.iter().any(|n| n == name), "{name} not in {root:?}");
    }
    dovecot.stop();
    // Each mailbox is listed for the first time: nothing is cached. The first failure finds
    // the server gone; every later one must not wait for a reconnect backoff.
    let mut times = Vec::new();
    for name in mailboxes {
        let started = Instant::now();
        let listed = list(&mount.path.join(name));
        times.push(started.elapsed());
        let err = match listed {
            Ok(names) => panic!(
                "{name} listed with the server stopped: {names:?}\n{}",
                mount.log()
            ),
            Err(e) => e,
        };
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{name}: {err}");
    }
    eprintln!("listings with the server down took {times:?}");
    for (name, took) in mailboxes.iter().zip(&times).skip(1) {
        assert!(*took < Duration::from_secs(1), "{name}: {took:?}");
    }
    let started = Instant::now();
    df(&mount.path);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "df took {:?}",
        started.elapsed()
    );
    // Back: the mount recovers by itself (within the 5 s backoff cap).
    dovecot.restart().unwrap();
    wait_until("INBOX listed again", MOUNT_WITHIN, || {
        list(&mount.join("INBOX")).is_ok()
    });
    let log = mount.log();
    assert_eq!(
        log.matches("the server is unreachable;").count(),
        1,
        "logged once: {log}"
    );
    assert!(log.contains("reachable again"), "{log}");
}

// ---- logs --------------------------------------------------------------------------------

/// Reads what a child wrote to its piped stderr once it has exited.
fn stderr_of(mut cleanup: Cleanup) -> String {
    let child = cleanup.child.take().unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    text(&out.stderr)
}

#[test]
fn the_log_has_no_colour_off_a_terminal_and_vv_shows_commands_but_never_the_password() {
    const PASSWORD: &str = "Pw-91ab44-staple";
    let dovecot = Dovecot::start(DovecotOptions {
        users: vec![("alice".into(), PASSWORD.into())],
        ..DovecotOptions::default()
    })
    .unwrap();
    let mut session = dovecot.client("alice").unwrap();
    fixture::append_samples(&mut session, &fixture::sample_messages()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ca = dovecot.ca_file().to_str().unwrap().to_owned();
    let source = dovecot.source("alice");
    let mount_with = |verbosity: &[&str], auth: &str| {
        let mut args: Vec<&str> = verbosity.to_vec();
        args.extend([
            "--auth",
            auth,
            "--ca-file",
            &ca,
            &source,
            mnt.to_str().unwrap(),
        ]);
        let mount = foreground(&args, &[("IMAPFS_PASSWORD", PASSWORD)], &mnt);
        std::fs::read_dir(mnt.join("INBOX")).unwrap().count();
        stderr_of(mount)
    };
    let quiet = mount_with(&[], "login");
    assert!(!quiet.contains("INFO") && !quiet.contains("C: "), "{quiet}");
    let v = mount_with(&["-v"], "login");
    assert!(v.contains("logged in") && !v.contains("C: "), "{v}");
    for auth in ["login", "plain"] {
        let vv = mount_with(&["-vv"], auth);
        assert!(!vv.contains('\x1b'), "colour codes off a terminal: {vv:?}");
        assert!(vv.contains("UID FETCH 1:*") && vv.contains("C: i"), "{vv}");
        assert!(!vv.contains(PASSWORD), "the password is in the log");
        let sasl = base64_of(format!("\0alice\0{PASSWORD}").as_bytes());
        assert!(!vv.contains(&sasl), "the SASL response is in the log");
        if auth == "login" {
            assert!(vv.contains("LOGIN *** ***"), "{vv}");
        } else {
            assert!(vv.contains("AUTHENTICATE PLAIN"), "{vv}");
        }
    }
    // IMAPFS_LOG filters as RUST_LOG does; --log-file is private.
    let log = dir.path().join("imapfs.log");
    let mount = foreground(
        &[
            "--log-file",
            log.to_str().unwrap(),
            "--ca-file",
            &ca,
            &source,
            mnt.to_str().unwrap(),
        ],
        &[
            ("IMAPFS_PASSWORD", PASSWORD),
            ("IMAPFS_LOG", "imapfs::imap=debug"),
        ],
        &mnt,
    );
    std::fs::read_dir(mnt.join("INBOX")).unwrap().count();
    drop(mount);
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("C: i") && !logged.contains("logged in"),
        "{logged}"
    );
    assert!(!logged.contains('\x1b'));
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
