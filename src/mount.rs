//! The mount point and the mount itself: what is already there (a live or dead imapfs, a
//! full directory), and a mount that shows as type `fuse.imapfs` with SOURCE as given.
//!
//! `mount -a` knows a line of fstab is mounted when /proc/self/mountinfo has its target
//! with the same source and type; so the mount is made with SOURCE as its source and the
//! type `fuse.imapfs`. fusermount3 does that from `fsname=` and `subtype=`, but as root the
//! FUSE library calls mount(2) with the type `fuse` itself; so as root the mount is made
//! here ([`mount_as_root`]) and handed to the library as a descriptor.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The filesystem type of every imapfs mount, as /proc/mounts shows it.
pub const FS_TYPE: &str = "fuse.imapfs";

/// Why the mount point cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MountPointError {
    #[error("mountpoint {0}: {1}")]
    Unusable(String, String),
    #[error(
        "{0} is already an imapfs mount (of {1}); unmount it first (umount {0}) or mount elsewhere"
    )]
    AlreadyMounted(String, String),
    #[error(
        "{0} is not empty; imapfs would hide what is in it. Mount on an empty directory, or add -o nonempty to mount over it anyway"
    )]
    NotEmpty(String),
    #[error(
        "{path}: Transport endpoint is not connected: the {fstype} filesystem of {origin} mounted there has died. Clear it with `fusermount3 -u {path}` (as root: `umount -l {path}`), then mount again"
    )]
    Stale {
        path: String,
        fstype: String,
        origin: String,
    },
}

/// One line of /proc/self/mountinfo, the fields imapfs looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub target: PathBuf,
    pub fstype: String,
    pub source: String,
}

impl MountEntry {
    /// Whether imapfs made this mount (this version, or an older one whose type was `fuse`
    /// and whose source was `imapfs:USER@HOST:PORT`).
    pub fn is_imapfs(&self) -> bool {
        self.fstype == FS_TYPE || (self.fstype == "fuse" && self.source.starts_with("imapfs:"))
    }
}

/// Parses /proc/self/mountinfo text ([proc(5)](https://man7.org/linux/man-pages/man5/proc.5.html)):
/// the mount point is field 5; after the `-` separator come the type and the source.
/// Spaces, tabs, newlines and backslashes are written as octal escapes (`\040`).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let target = fields.get(4)?;
            let dash = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(dash + 1)?;
            let source = fields.get(dash + 2)?;
            Some(MountEntry {
                target: PathBuf::from(crate::cli::unescape_octal(target)),
                fstype: crate::cli::unescape_octal(fstype),
                source: crate::cli::unescape_octal(source),
            })
        })
        .collect()
}

/// The mounts of this process's namespace.
pub fn mounts() -> Vec<MountEntry> {
    parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// The topmost mount at `path` (the last one listed there), if any.
fn mounted_at(path: &Path) -> Option<MountEntry> {
    mounts().into_iter().rev().find(|m| m.target == path)
}

/// `path` made absolute without looking into its last component (which may be a dead
/// mount, where every look at it fails with ENOTCONN); a symbolic link there (`~/mail ->
/// /data/mail`) is read, not followed, so the mount's own path comes out.
fn absolute(path: &Path) -> PathBuf {
    let mut path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // As many links as the kernel follows (ELOOP past them).
    for _ in 0..40 {
        let resolved = match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => parent
                .canonicalize()
                .map(|p| p.join(name))
                .unwrap_or_else(|_| path.clone()),
            _ => return path,
        };
        let is_link =
            std::fs::symlink_metadata(&resolved).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            return resolved;
        }
        match std::fs::read_link(&resolved) {
            Ok(target) => {
                path = match resolved.parent() {
                    Some(parent) => parent.join(target),
                    None => target,
                };
                path = std::path::absolute(&path).unwrap_or(path);
            }
            Err(_) => return resolved,
        }
    }
    path
}

/// Checks the mount point before anything is mounted: a directory; not a live imapfs mount;
/// empty unless `nonempty`. A dead imapfs mount (ENOTCONN) is cleared, with a warning; a
/// dead mount of another filesystem is an error that says how to clear it.
pub fn check_mountpoint(path: &Path, nonempty: bool) -> Result<(), MountPointError> {
    let shown = path.display().to_string();
    let unusable = |why: String| MountPointError::Unusable(shown.clone(), why);
    let meta = match std::fs::metadata(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            clear_stale(path)?;
            std::fs::metadata(path).map_err(|e| unusable(e.to_string()))?
        }
        other => other.map_err(|e| unusable(e.to_string()))?,
    };
    if !meta.is_dir() {
        return Err(unusable("not a directory".into()));
    }
    if let Some(entry) = mounted_at(&absolute(path)).filter(MountEntry::is_imapfs) {
        return Err(MountPointError::AlreadyMounted(shown, entry.source));
    }
    if !nonempty {
        let mut entries = std::fs::read_dir(path).map_err(|e| unusable(e.to_string()))?;
        if entries.next().is_some() {
            return Err(MountPointError::NotEmpty(shown));
        }
    }
    Ok(())
}

/// A mount point whose filesystem died: unmounted (lazily) if it was an imapfs, else
/// left as it is, with an error that says how to clear it.
fn clear_stale(path: &Path) -> Result<(), MountPointError> {
    let absolute = absolute(path);
    let shown = path.display().to_string();
    let entry = mounted_at(&absolute);
    match entry {
        Some(entry) if entry.is_imapfs() => {
            tracing::warn!(mountpoint = %shown, source = %entry.source,
                "an earlier imapfs died and left its mount behind; clearing it");
            unmount_lazily(&absolute).map_err(|e| {
                MountPointError::Unusable(
                    shown.clone(),
                    format!(
                        "a dead imapfs mount is in the way and could not be cleared ({e}); \
                         run `fusermount3 -u {shown}`"
                    ),
                )
            })
        }
        Some(entry) => Err(MountPointError::Stale {
            path: shown,
            fstype: entry.fstype,
            origin: entry.source,
        }),
        None => Err(MountPointError::Stale {
            path: shown,
            fstype: "FUSE".into(),
            origin: "an unknown source".into(),
        }),
    }
}

/// Detaches the mount at `path`: umount2(MNT_DETACH) as root, else `fusermount3 -u -z`.
fn unmount_lazily(path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: umount2 with a valid NUL-terminated path.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let output = Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg("--")
        .arg(path)
        .output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}

/// What the kernel mount is made with.
pub struct KernelMount<'a> {
    /// SOURCE as given: the mount's source in /proc/mounts.
    pub source: &'a str,
    pub mountpoint: &'a Path,
    pub read_only: bool,
    pub allow_other: bool,
}

/// Mounts `/dev/fuse` at the mount point as type `fuse.imapfs` with mount(2), as
/// fusermount3 would: nosuid, nodev, noexec, noatime, owned by the calling user. Returns
/// the FUSE descriptor. Only root may do this; others go through fusermount3.
pub fn mount_as_root(spec: &KernelMount<'_>) -> io::Result<OwnedFd> {
    let device = c"/dev/fuse";
    // SAFETY: open with a valid path and flags; the descriptor is owned below.
    let raw = unsafe { libc::open(device.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mode = std::fs::metadata(spec.mountpoint)?.permissions().mode();
    // SAFETY: getuid and getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!(
        "fd={},rootmode={:o},user_id={uid},group_id={gid}",
        fd.as_raw_fd(),
        mode & libc::S_IFMT
    );
    if spec.allow_other {
        data.push_str(",allow_other");
    }
    let mut flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOATIME;
    if spec.read_only {
        flags |= libc::MS_RDONLY;
    }
    let source = CString::new(spec.source)?;
    let target = CString::new(spec.mountpoint.as_os_str().as_bytes())?;
    let fstype = CString::new(FS_TYPE)?;
    let data = CString::new(data)?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let done = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Unmounts what [`mount_as_root`] mounted; lazily if it is busy.
pub fn unmount_as_root(mountpoint: &Path) -> io::Result<()> {
    let target = CString::new(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: umount2 with a valid NUL-terminated path.
    if unsafe { libc::umount2(target.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EBUSY) {
        // SAFETY: as above.
        if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
    }
    // Already gone (`umount` by hand) is fine too.
    match error.raw_os_error() {
        Some(libc::EINVAL | libc::ENOENT) => Ok(()),
        _ => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
95 22 0:52 / /home/a/mail rw,nosuid,nodev,relatime shared:50 - fuse.imapfs imaps://alice@imap.example.com rw,user_id=1000,group_id=1000
96 22 0:53 / /tmp/with\\040space rw,nosuid shared:51 - fuse imapfs:bob@h:993 rw,user_id=0
97 22 0:54 / /mnt/s rw - fuse.sshfs me@host:/x rw
98 22 0:55 / /mnt/acct rw master:3 - fuse.imapfs work rw
";

    /// A mount point named through a symbolic link (`~/mail -> /data/mail`) is the link's
    /// target, as the kernel records the mount: a bug hunt found a dead mount there not
    /// cleared, and a live one not seen.
    #[test]
    fn a_mount_point_through_a_link_is_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("mnt")).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::os::unix::fs::symlink(root.join("mnt"), root.join("mail")).unwrap();
        std::os::unix::fs::symlink("../mnt", root.join("sub/rel")).unwrap();
        std::os::unix::fs::symlink("rel", root.join("sub/chain")).unwrap();
        for name in ["mnt", "mail", "sub/rel", "sub/chain"] {
            assert_eq!(absolute(&root.join(name)), root.join("mnt"), "{name}");
        }
        // A loop ends (the kernel says ELOOP when it is used).
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let _ = absolute(&root.join("loop"));
    }

    #[test]
    fn mountinfo_fields_with_optional_fields_and_escapes() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 5);
        assert_eq!(
            mounts[1],
            MountEntry {
                target: "/home/a/mail".into(),
                fstype: "fuse.imapfs".into(),
                source: "imaps://alice@imap.example.com".into(),
            }
        );
        assert_eq!(mounts[2].target, PathBuf::from("/tmp/with space"));
        assert_eq!(mounts[4].source, "work");
        let imapfs: Vec<bool> = mounts.iter().map(MountEntry::is_imapfs).collect();
        assert_eq!(imapfs, [false, true, true, false, true]);
    }

    #[test]
    fn a_non_empty_directory_is_refused_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        check_mountpoint(dir.path(), false).unwrap();
        std::fs::write(dir.path().join("x"), b"").unwrap();
        let e = check_mountpoint(dir.path(), false).unwrap_err().to_string();
        assert!(e.contains("not empty") && e.contains("-o nonempty"), "{e}");
        check_mountpoint(dir.path(), true).unwrap();
        let e = check_mountpoint(&dir.path().join("x"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
        let e = check_mountpoint(&dir.path().join("nope"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("No such file"), "{e}");
    }
}
