//! The one `fuser::Filesystem` implementation: open a span, call the core, turn the result
//! into a reply. No decisions are made here.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::call::{Calls, Serving};
use crate::fs::{Attr, AttrReply, Fs, FsError, Kind, Level};
use crate::readers::Readers;

/// How long a close that stores a file may take in all.
const STORING_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// Directory entries asked of the core at a time while filling one reply.
const READDIR_BATCH: usize = 64;

/// The FUSE adapter around the filesystem core.
pub struct FuseAdapter {
    fs: Arc<Fs>,
    calls: Arc<Calls>,
    /// How long one call may take in all (`--timeout`).
    limit: Duration,
    readers: Readers,
}

impl FuseAdapter {
    /// Wraps the core; every call that may ask the server must end within `limit`, and
    /// ends at once when its caller is signalled.
    pub fn new(fs: Arc<Fs>, limit: Duration, readers: Readers) -> Self {
        let calls = Arc::new(Calls::default());
        calls.watch();
        FuseAdapter {
            fs,
            calls,
            limit,
            readers,
        }
    }

    /// Serves `req` as the current call of this thread until the guard drops.
    fn serve(&self, req: &Request) -> Serving {
        self.calls.serve(Some(req.pid()), self.limit)
    }

    /// Like `serve`, for a request that reads mail (a lookup, a directory, a file): a
    /// background prefetch gives way to it. Others (`getfattr` polling a prefetch's
    /// progress, `df`) do not hold it up.
    fn serve_reader(&self, req: &Request) -> Serving {
        self.fs.note_foreground();
        self.serve(req)
    }

    /// Like `serve`, for a close that stores a new file: sending a large file may take
    /// longer than `limit` in all (the store's own deadline applies to a stalled server),
    /// but a signalled caller still ends it.
    fn serve_storing(&self, req: &Request) -> Serving {
        self.calls.serve(Some(req.pid()), STORING_LIMIT)
    }
}

/// The kernel's file type for a node kind.
fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Directory => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
    }
}

fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.mtime,
        mtime: attr.mtime,
        ctime: attr.ctime,
        crtime: attr.mtime,
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// Logs an error at its level and returns its errno.
fn errno(op: &str, e: &FsError) -> Errno {
    let (code, level) = e.errno_and_level();
    match level {
        Level::Debug => tracing::debug!(op, error = %e, "failed"),
        Level::Warn => tracing::warn!(op, error = %e, "failed"),
    }
    Errno::from_i32(code)
}

/// `errno` for reading a directory. There is no open to fail first, and the C library
/// takes ENOENT from getdents(2) for the end of a directory removed while open: `ls` of a
/// message or mailbox that is gone would list nothing and succeed. It gets ESTALE, as a
/// directory removed on an NFS server does.
fn dir_errno(op: &str, e: &FsError) -> Errno {
    match errno(op, e) {
        e if e == Errno::ENOENT => Errno::ESTALE,
        e => e,
    }
}

/// Runs a call of the core, turning a panic (a bug) into EIO for this one request. fuser
/// does not catch it: the request would never be answered, and its caller (`ls`, a file
/// manager) would wait until killed.
fn guarded<T>(call: impl FnOnce() -> Result<T, FsError>) -> Result<T, FsError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(FsError::Internal(what))
    })
}

fn entry(op: &str, reply: ReplyEntry, result: Result<AttrReply, FsError>) {
    match result {
        Ok(r) => reply.entry_with_ttls(&r.ttl, &r.entry_ttl, &file_attr(&r.attr), Generation(0)),
        Err(e) => reply.error(errno(op, &e)),
    }
}

fn empty(op: &str, reply: ReplyEmpty, result: Result<(), FsError>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(op, &e)),
    }
}

impl fuser::Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // `ls -l` of a 10,000-message mailbox then costs one request per page, not per entry.
        // Not READDIRPLUS_AUTO: with it, the kernel asks for names alone after the first
        // page, and a walk (`grep -r`, `find`) then looks every message up once more.
        let wanted = InitFlags::FUSE_DO_READDIRPLUS;
        if let Err(missing) = config.add_capabilities(wanted) {
            tracing::debug!(?missing, "kernel lacks READDIRPLUS");
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _turn = self.readers.turn();
        let _call = self.serve_reader(req);
        let _span = tracing::debug_span!("lookup", parent = parent.0, ?name).entered();
        entry("lookup", reply, guarded(|| self.fs.lookup(parent.0, name)));
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let _span = tracing::debug_span!("readlink", ino = ino.0).entered();
        match guarded(|| self.fs.readlink(ino.0)) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno("readlink", &e)),
        }
    }

    /// No turn (`readers.rs`): `fuser` calls this once per node of a BATCH_FORGET, and a
    /// thread may park at the end of a turn, which must be the end of a request. Forgetting
    /// never waits, so the thread that does it simply reads on.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    /// Under a call like every request that may ask the server (a text body's size is
    /// found by rendering it): bounded by `--timeout`, and EINTR when its caller is signalled.
    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let _span = tracing::debug_span!("getattr", ino = ino.0).entered();
        match guarded(|| self.fs.getattr(ino.0)) {
            Ok(r) => reply.attr(&r.ttl, &file_attr(&r.attr)),
            Err(e) => reply.error(errno("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let _span = tracing::debug_span!("setattr", ino = ino.0).entered();
        let changes = mode.is_some()
            || uid.is_some()
            || gid.is_some()
            || size.is_some()
            || atime.is_some()
            || mtime.is_some();
        let mtime = mtime.map(|t| match t {
            TimeOrNow::SpecificTime(t) => before_1970_mended(t),
            TimeOrNow::Now => SystemTime::now(),
        });
        match guarded(|| {
            self.fs
                .setattr(ino.0, fh.map(|f| f.0), changes, size, mtime)
        }) {
            Ok(r) => reply.attr(&r.ttl, &file_attr(&r.attr)),
            Err(e) => reply.error(errno("setattr", &e)),
        }
    }

    /// ENOSYS, once: the kernel then never opens or closes a directory here (two requests
    /// fewer for every directory a walk enters), and keeps what it reads of one
    /// (`FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE`). READDIR takes its snapshots itself, and
    /// directories the kernel must not keep are invalidated once read (see
    /// `Fs::readdir`).
    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _turn = self.readers.turn();
        reply.error(Errno::ENOSYS);
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _turn = self.readers.turn();
        let _call = self.serve_reader(req);
        let _span = tracing::debug_span!("readdir", ino = ino.0, offset).entered();
        let mut next = offset;
        loop {
            let batch = match guarded(|| self.fs.readdir(ino.0, next, READDIR_BATCH)) {
                Ok(batch) => batch,
                Err(e) => return reply.error(dir_errno("readdir", &e)),
            };
            let Some((last, _)) = batch.last() else { break };
            let (last, end) = (*last, batch.len() < READDIR_BATCH);
            for (off, e) in batch {
                if reply.add(INodeNo(e.ino), off, file_type(e.kind), &e.name) {
                    return reply.ok();
                }
            }
            // The kernel asks once more, past the end: that ends the snapshot.
            if end {
                break;
            }
            next = last;
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _turn = self.readers.turn();
        let _call = self.serve_reader(req);
        let _span = tracing::debug_span!("readdirplus", ino = ino.0, offset).entered();
        let mut next = offset;
        loop {
            let batch = match guarded(|| self.fs.readdirplus(ino.0, next, READDIR_BATCH)) {
                Ok(batch) => batch,
                Err(e) => return reply.error(dir_errno("readdirplus", &e)),
            };
            let Some((last, _, _)) = batch.last() else {
                break;
            };
            let (last, end) = (*last, batch.len() < READDIR_BATCH);
            let mut entries = batch.into_iter();
            while let Some((off, e, r)) = entries.next() {
                let attr = file_attr(&r.attr);
                // One TTL serves both here: the shorter one is the safe one.
                let ttl = r.ttl.min(r.entry_ttl);
                if reply.add(INodeNo(e.ino), off, &e.name, &ttl, &attr, Generation(0)) {
                    // The reply is full: the kernel never sees this entry or the rest, so
                    // their lookups were never made.
                    for (_, e, _) in std::iter::once((off, e, r)).chain(entries) {
                        if e.name != "." && e.name != ".." {
                            self.fs.forget(e.ino, 1);
                        }
                    }
                    return reply.ok();
                }
            }
            if end {
                break;
            }
            next = last;
        }
        reply.ok();
    }

    /// On a read-only mount, ENOSYS, once: the kernel then opens every file itself, with
    /// `FOPEN_KEEP_CACHE`, and sends neither OPEN nor RELEASE (nor, after `flush`'s ENOSYS,
    /// FLUSH): reading a file the kernel holds costs no request at all. What OPEN does on a
    /// writable mount is not needed there:
    /// - refusing writes: the kernel refuses them on a read-only mount;
    /// - a text body's exact size, and direct I/O where a size is an estimate: an estimate
    ///   comes with no attribute lifetime, so a read that reaches it asks for the
    ///   attributes again (`getattr` renders a text body and gives its exact size), and a
    ///   read that ends before it (a part decoding to less than its estimate, without
    ///   BINARY) makes the kernel shrink the file to where the read ended.
    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _turn = self.readers.turn();
        if self.fs.read_only() {
            return reply.error(Errno::ENOSYS);
        }
        let _call = self.serve_reader(req);
        let _span = tracing::debug_span!("open", ino = ino.0).entered();
        let write =
            !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY) || flags.0 & libc::O_TRUNC != 0;
        let truncate = flags.0 & libc::O_TRUNC != 0;
        match guarded(|| self.fs.open_with(ino.0, write, truncate)) {
            Ok(o) => {
                let mut f = FopenFlags::empty();
                if o.direct_io {
                    f |= FopenFlags::FOPEN_DIRECT_IO;
                }
                if o.keep_cache {
                    f |= FopenFlags::FOPEN_KEEP_CACHE;
                }
                if o.no_flush {
                    f |= FopenFlags::FOPEN_NOFLUSH;
                }
                reply.opened(FileHandle(o.fh), f);
            }
            Err(e) => reply.error(errno("open", &e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _turn = self.readers.turn();
        let _call = self.serve_reader(req);
        let _span = tracing::debug_span!("read", ino = ino.0, offset, size).entered();
        match guarded(|| self.fs.read(ino.0, fh.0, offset, size)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno("read", &e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let _span = tracing::debug_span!("write", ino = ino.0, offset).entered();
        match guarded(|| self.fs.write(ino.0, fh.0, offset, data)) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno("write", &e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _turn = self.readers.turn();
        // Once, on a read-only mount (see `open`): closing there stores nothing.
        if self.fs.read_only() {
            return reply.error(Errno::ENOSYS);
        }
        let _call = self.serve_storing(req);
        let _span = tracing::debug_span!("flush", ino = ino.0).entered();
        empty("flush", reply, guarded(|| self.fs.flush(ino.0, fh.0)));
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _turn = self.readers.turn();
        let _call = self.serve_storing(req);
        let _span = tracing::debug_span!("release", ino = ino.0).entered();
        empty("release", reply, guarded(|| self.fs.release(ino.0, fh.0)));
    }

    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let s = self.fs.statfs();
        let block = crate::fs::STATFS_BLOCK as u32;
        reply.statfs(
            s.blocks,
            s.free_blocks,
            s.free_blocks,
            s.files,
            s.free_files,
            block,
            255,
            block,
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let _span = tracing::debug_span!("mkdir", parent = parent.0, ?name).entered();
        entry("mkdir", reply, guarded(|| self.fs.mkdir(parent.0, name)));
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let _span = tracing::debug_span!("rmdir", parent = parent.0, ?name).entered();
        empty("rmdir", reply, guarded(|| self.fs.rmdir(parent.0, name)));
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let _span = tracing::debug_span!("unlink", parent = parent.0, ?name).entered();
        empty("unlink", reply, guarded(|| self.fs.unlink(parent.0, name)));
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let _span = tracing::debug_span!(
            "rename",
            parent = parent.0,
            ?name,
            newparent = newparent.0,
            ?newname
        )
        .entered();
        empty(
            "rename",
            reply,
            guarded(|| {
                self.fs.rename(
                    parent.0,
                    name,
                    newparent.0,
                    newname,
                    flags.contains(RenameFlags::RENAME_NOREPLACE),
                    flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT),
                )
            }),
        );
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let _span = tracing::debug_span!("mknod", parent = parent.0, ?name, mode).entered();
        entry(
            "mknod",
            reply,
            guarded(|| self.fs.mknod(parent.0, name, mode)),
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let _span = tracing::debug_span!("create", parent = parent.0, ?name).entered();
        match guarded(|| self.fs.create(parent.0, name)) {
            Ok((r, fh)) => reply.created(
                &r.ttl,
                &file_attr(&r.attr),
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(errno("create", &e)),
        }
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let _span = tracing::debug_span!("getxattr", ino = ino.0, ?name).entered();
        xattr_reply(
            reply,
            size,
            guarded(|| self.fs.getxattr(ino.0, name)),
            "getxattr",
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _turn = self.readers.turn();
        let _span = tracing::debug_span!("listxattr", ino = ino.0).entered();
        xattr_reply(
            reply,
            size,
            guarded(|| self.fs.listxattr(ino.0)),
            "listxattr",
        );
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let _span = tracing::debug_span!("setxattr", ino = ino.0, ?name).entered();
        empty(
            "setxattr",
            reply,
            guarded(|| self.fs.setxattr(ino.0, name, value)),
        );
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _turn = self.readers.turn();
        let _call = self.serve(req);
        let _span = tracing::debug_span!("removexattr", ino = ino.0, ?name).entered();
        empty(
            "removexattr",
            reply,
            guarded(|| self.fs.removexattr(ino.0, name)),
        );
    }
}

/// The xattr size protocol: size 0 asks for the length; a small buffer is ERANGE.
fn xattr_reply(reply: ReplyXattr, size: u32, result: Result<Vec<u8>, FsError>, op: &str) {
    match result {
        Ok(value) if size == 0 => reply.size(value.len() as u32),
        Ok(value) if value.len() <= size as usize => reply.data(&value),
        Ok(_) => reply.error(Errno::from_i32(libc::ERANGE)),
        Err(e) => reply.error(errno(op, &e)),
    }
}

/// A time before 1970 as the kernel sent it. fuser 0.18 takes the kernel's `(-S, n)` (S
/// seconds before the epoch, then n nanoseconds forward) for S seconds and n nanoseconds
/// before it (its `system_time_from_time`): `touch -d '1960-01-01 00:00:00.25'` arrives half
/// a second early. Whole seconds are right either way.
fn before_1970_mended(t: SystemTime) -> SystemTime {
    match UNIX_EPOCH.duration_since(t) {
        Ok(d) if d.subsec_nanos() > 0 => {
            UNIX_EPOCH - Duration::from_secs(d.as_secs())
                + Duration::from_nanos(d.subsec_nanos().into())
        }
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_before_1970_arrive_as_sent() {
        use super::*;
        // What fuser 0.18 makes of the kernel's (-315619200, 250000000).
        let from_fuser = UNIX_EPOCH - Duration::new(315_619_200, 250_000_000);
        assert_eq!(
            before_1970_mended(from_fuser),
            UNIX_EPOCH - Duration::new(315_619_199, 750_000_000)
        );
        let whole = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(before_1970_mended(whole), whole);
        let later = UNIX_EPOCH + Duration::new(5, 1);
        assert_eq!(before_1970_mended(later), later);
    }

    use super::*;

    /// A core call that panics is EIO for its request, with the panic's words kept.
    #[test]
    fn a_panicking_call_is_eio_not_an_unanswered_request() {
        let failed = guarded(|| -> Result<(), FsError> { panic!("index out of bounds") });
        let Err(e) = failed else {
            panic!("a panic came back as success")
        };
        assert_eq!(e.errno_and_level().0, libc::EIO);
        assert!(e.to_string().contains("index out of bounds"), "{e}");
        let owned = guarded(|| -> Result<(), FsError> { panic!("{} words", 2) });
        assert!(owned.unwrap_err().to_string().contains("2 words"));
        assert_eq!(guarded(|| Ok(7)).unwrap(), 7);
    }
}
