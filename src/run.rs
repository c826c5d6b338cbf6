//! Putting it together: get the secret, log in, mount, detach, and unmount on a signal.

use std::io::{BufRead, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use crate::cache::dir::{self as cache_dir, CacheDir};
use crate::cache::disk::DiskCache;
use crate::cache::memory::MemoryCache;
use crate::cache::tiered::TieredCache;
use crate::cli::{AuthMethod, CompressWhen, DeleteMode, Options, Security};
use crate::fs::{DeleteMode as FsDelete, Fs, FsConfig, FsParts, Invalidation};
use crate::fuse::FuseAdapter;
use crate::mount::{self, KernelMount, MountPointError};
use crate::notify;
use crate::readers::Readers;
use crate::secret;
use crate::store::cached::CachedStore;
use crate::store::imap::connection::ConnectConfig;
use crate::store::imap::watch::WatchSettings;
use crate::store::imap::{Auth, Compression, ImapStore, Transport};
use crate::store::{MailStore, StoreError, StoreEvent};

/// FUSE threads serving requests; the IMAP pool is separate (`--connections`).
const FUSE_THREADS: usize = 8;

/// Why imapfs could not start; each is printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Mountpoint(#[from] MountPointError),
    #[error("{0}")]
    Secret(String),
    #[error("cannot log in as {user} at {server}: {error}")]
    Login {
        user: String,
        server: String,
        error: StoreError,
    },
    #[error("cannot mount at {0}: {1}")]
    Mount(String, std::io::Error),
    #[error("{0}")]
    Daemon(String),
}

mod prefetch;
pub use self::prefetch::prefetch;

/// The IMAP store, logged in once (or not, when the mount starts offline: then why).
struct Connected {
    imap: ImapStore,
    offline: Option<StoreError>,
}

/// Where the disk cache is, unless `--no-disk-cache`.
fn cache_path(opts: &Options) -> Option<PathBuf> {
    if opts.no_disk_cache {
        return None;
    }
    opts.cache_dir
        .clone()
        .or_else(|| cache_dir::default_path(&opts.source.user, &opts.source.host, opts.source.port))
}

/// Whether an unreachable server still allows a mount: a disk cache with an index is there.
fn may_start_offline(opts: &Options, error: &StoreError) -> bool {
    error.is_unreachable()
        && cache_path(opts)
            .and_then(|p| std::fs::metadata(p.join("index.redb")).ok())
            .is_some_and(|m| m.len() > 0)
}

/// Logs in once with the options' credentials; the store keeps them for reconnecting.
/// With a disk cache, an unreachable server (or `--offline`) still gives a store, which
/// starts offline.
fn connect(opts: &Options) -> Result<Connected, RunError> {
    let imap = unconnected_store(opts)?;
    if opts.offline {
        return Ok(Connected {
            imap,
            offline: None,
        });
    }
    match imap.log_in() {
        Ok(()) => Ok(Connected {
            imap,
            offline: None,
        }),
        Err(error) if may_start_offline(opts, &error) => {
            tracing::warn!(%error, "the server cannot be reached; mounting from the disk cache");
            Ok(Connected {
                imap,
                offline: Some(error),
            })
        }
        Err(error) => Err(login_error(opts, error)),
    }
}

/// The IMAP store the options describe, with the secret obtained, not connected yet.
fn unconnected_store(opts: &Options) -> Result<ImapStore, RunError> {
    let (command, env_var, what) = match opts.auth {
        AuthMethod::XOAuth2 | AuthMethod::OAuthBearer => (
            opts.oauth2_token_command.as_deref(),
            "IMAPFS_OAUTH2_TOKEN",
            "OAuth2 token",
        ),
        AuthMethod::Login | AuthMethod::Plain => (
            opts.password_command.as_deref(),
            "IMAPFS_PASSWORD",
            "password",
        ),
    };
    let prompt = format!("{what} for {}: ", opts.source);
    let secret =
        secret::obtain(command, env_var, &prompt).map_err(|e| RunError::Secret(e.to_string()))?;
    if opts.insecure {
        tracing::warn!("--insecure: the server's certificate and host name are NOT verified; anyone on the path can read your mail and password");
    }
    let config = ConnectConfig {
        host: opts.source.host.clone(),
        port: opts.source.port,
        transport: match opts.source.security {
            Security::Tls => Transport::Tls,
            Security::StartTls => Transport::StartTls,
        },
        user: opts.source.user.clone(),
        secret,
        auth: match opts.auth {
            AuthMethod::Login => Auth::Login,
            AuthMethod::Plain => Auth::Plain,
            AuthMethod::XOAuth2 => Auth::XOAuth2,
            AuthMethod::OAuthBearer => Auth::OAuthBearer,
        },
        ca_file: opts.ca_file.clone(),
        insecure: opts.insecure,
        allow_plaintext: opts.allow_plaintext,
        timeout: opts.timeout,
        tls: Default::default(),
        plaintext_warned: Default::default(),
        compress: match (opts.no_compress, opts.compress) {
            (true, _) | (_, CompressWhen::Never) => Compression::Never,
            (false, CompressWhen::Always) => Compression::Always,
            (false, CompressWhen::Auto) => Compression::Auto,
        },
    };
    let imap = ImapStore::unconnected(config, opts.connections);
    if opts.no_watch {
        tracing::info!("--no-watch: changes made elsewhere show when a directory is read again");
        return Ok(imap);
    }
    if opts.offline {
        // --offline never contacts the server, the watcher included.
        return Ok(imap);
    }
    Ok(imap.with_watch(WatchSettings {
        poll_interval: opts.poll_interval,
        keepalive: opts.keepalive,
    }))
}

fn login_error(opts: &Options, error: StoreError) -> RunError {
    RunError::Login {
        user: opts.source.user.clone(),
        server: opts.source.server(),
        error,
    }
}

/// What a mount reads from: the store, the cache of content in front of it, and what
/// writes out what the disk cache still holds in memory (called once the mount is gone:
/// threads such as the watcher's may keep the store alive past the session, so dropping
/// it is not enough).
type Backends = (
    Arc<dyn MailStore>,
    Arc<dyn crate::cache::ContentCache>,
    Option<Box<dyn FnOnce()>>,
);

/// The disk cache at `path`: its directory (locked) and its content store; why not.
fn open_disk_cache(
    opts: &Options,
    path: &std::path::Path,
) -> Result<(Arc<CacheDir>, Arc<DiskCache>), String> {
    let dir = Arc::new(CacheDir::open(path).map_err(|e| e.to_string())?);
    check_cache_account(path, opts)?;
    let disk = DiskCache::new(Arc::clone(&dir), opts.disk_cache_size)
        .map_err(|e| format!("the disk cache {}: {e}", path.display()))?;
    Ok((dir, Arc::new(disk)))
}

/// The cache directory says whose it is (`account`: the user and host, written at its
/// first use): another account's (an explicit `--cache-dir` given to two accounts) is never
/// used, so that its mailboxes are never shown offline under this one, nor its changes made
/// offline sent to this server. The port may differ (the same server through a tunnel, or
/// STARTTLS on 143 and TLS on 993).
fn check_cache_account(path: &std::path::Path, opts: &Options) -> Result<(), String> {
    let ours = format!("{}@{}", opts.source.user, opts.source.host);
    let file = path.join("account");
    match std::fs::read_to_string(&file) {
        Ok(theirs) if theirs.trim() == ours => Ok(()),
        Ok(theirs) => Err(format!(
            "the disk cache {} belongs to {}, not {ours}; give each account its own --cache-dir",
            path.display(),
            theirs.trim()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&file, format!("{ours}\n"))
                .map_err(|e| format!("the disk cache {}: {e}", path.display()))
        }
        Err(e) => Err(format!("the disk cache {}: {e}", path.display())),
    }
}

/// The store and content cache a mount uses: with the disk cache, the IMAP store behind
/// `CachedStore` and memory in front of disk; without it (or when another imapfs uses it),
/// the IMAP store and memory alone.
fn stores(opts: &Options, connected: Connected, memory: MemoryCache) -> Result<Backends, RunError> {
    let Connected { imap, offline } = connected;
    let starting_offline = opts.offline || offline.is_some();
    let opened = cache_path(opts).map(|path| open_disk_cache(opts, &path));
    match opened {
        Some(Ok((dir, disk))) => {
            tracing::info!(dir = %dir.path().display(), "disk cache");
            let cached =
                CachedStore::new(Arc::new(imap), dir, Some(Arc::clone(&disk)), opts.offline);
            if starting_offline && !cached.has_data() {
                return Err(login_error(
                    opts,
                    offline.unwrap_or_else(|| {
                        StoreError::Offline("--offline, and the disk cache holds nothing".into())
                    }),
                ));
            }
            if let Some(why) = &offline {
                cached.start_offline(why);
            }
            let cached = Arc::new(cached);
            let cache = Arc::new(TieredCache::new(memory, Arc::clone(&disk)));
            let kept = Arc::clone(&cached);
            let flush = Box::new(move || {
                kept.flush();
                disk.flush();
            });
            Ok((cached, cache, Some(flush)))
        }
        Some(Err(why)) if starting_offline => Err(RunError::Daemon(why)),
        Some(Err(why)) => {
            tracing::warn!("{why}; this mount runs without a disk cache");
            Ok((Arc::new(imap), Arc::new(memory), None))
        }
        None => Ok((Arc::new(imap), Arc::new(memory), None)),
    }
}

fn fuse_config(opts: &Options) -> fuser::Config {
    use fuser::MountOption as M;
    let mut mount_options = vec![
        M::FSName(mount_name(opts)),
        M::Subtype("imapfs".into()),
        M::NoSuid,
        M::NoDev,
        M::NoExec,
        M::NoAtime,
    ];
    if opts.read_only {
        mount_options.push(M::RO);
    }
    let mut config = fuser::Config::default();
    config.mount_options = mount_options;
    config.acl = if opts.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    config.n_threads = Some(FUSE_THREADS);
    // One /dev/fuse descriptor per worker: no thundering herd of idle workers per request.
    config.clone_fd = true;
    config
}

/// The mount's source in /proc/mounts: SOURCE as given, so that `mount -a` sees an fstab
/// line as mounted and `umount SOURCE` finds it.
fn mount_name(opts: &Options) -> String {
    if opts.mount_name.is_empty() {
        format!("imaps://{}", opts.source)
    } else {
        opts.mount_name.clone()
    }
}

/// How the mount was made, which says how to take it down.
enum Mounted {
    /// By fusermount3 through the FUSE library (a user's mount).
    Library(fuser::SessionUnmounter),
    /// By mount(2) here (as root).
    Kernel(PathBuf),
}

impl Mounted {
    fn unmount(&mut self) -> std::io::Result<()> {
        match self {
            Mounted::Library(unmounter) => unmounter.unmount(),
            Mounted::Kernel(path) => mount::unmount_as_root(path),
        }
    }
}

/// Mounts the filesystem and starts the FUSE session on it.
fn start_session(
    opts: &Options,
    adapter: FuseAdapter,
) -> Result<(fuser::Session<FuseAdapter>, Mounted), RunError> {
    let shown = opts.mountpoint.display().to_string();
    let config = fuse_config(opts);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let mut session = fuser::Session::new(adapter, &opts.mountpoint, &config)
            .map_err(|e| RunError::Mount(shown, e))?;
        let unmounter = session.unmount_callable();
        return Ok((session, Mounted::Library(unmounter)));
    }
    let mountpoint = opts
        .mountpoint
        .canonicalize()
        .map_err(|e| RunError::Mount(shown.clone(), e))?;
    let name = mount_name(opts);
    let fd = mount::mount_as_root(&KernelMount {
        source: &name,
        mountpoint: &mountpoint,
        read_only: opts.read_only,
        allow_other: opts.allow_other,
    })
    .map_err(|e| RunError::Mount(shown.clone(), e))?;
    let acl = config.acl;
    match fuser::Session::from_fd(adapter, fd, acl, config) {
        Ok(session) => Ok((session, Mounted::Kernel(mountpoint))),
        Err(e) => {
            let _ = mount::unmount_as_root(&mountpoint);
            Err(RunError::Mount(shown, e))
        }
    }
}

/// `$XDG_STATE_HOME/imapfs/spool/<user>@<host>:<port>`, else under `~/.local/state`: one
/// spool per account, since what waits there is stored into the account whose mount finds
/// it (a shared one sent one account's file into another's at the next mount).
fn default_spool_dir(source: &crate::cli::Source) -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("imapfs-{}", unsafe { libc::getuid() }))
        });
    let shared = state.join("imapfs").join("spool");
    // Private: the accounts' names are those of its directories.
    let _ =
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&shared);
    warn_of_shared_spool(&shared);
    account_spool(&shared, source)
}

/// The spool directory made (private) if missing, and written to once: one that cannot be
/// used fails the mount at once, not every new file later with EIO (the reason only in a
/// log that a mount without `-f` or `--log-file` drops).
fn check_spool_dir(dir: &std::path::Path) -> Result<(), RunError> {
    let unusable = |e: std::io::Error| {
        RunError::Daemon(format!(
            "the spool directory {} cannot be used: {e}; give one that can with --spool-dir",
            dir.display()
        ))
    };
    if !dir.is_dir() {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(unusable)?;
    }
    let probe = dir.join(format!(".imapfs-probe-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(unusable)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The spool of `source`'s account under the directory all accounts' spools are in.
fn account_spool(shared: &std::path::Path, source: &crate::cli::Source) -> PathBuf {
    shared.join(cache_dir::account_name(
        &source.user,
        &source.host,
        source.port,
    ))
}

/// Files an earlier imapfs left in the spool all accounts shared: whose they are cannot be
/// told, so none is stored; the log names them, to be copied into their mailbox by hand.
fn warn_of_shared_spool(shared: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(shared) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.to_string_lossy();
        let file = entry.file_type().is_ok_and(|t| t.is_file());
        if file && !name.ends_with(".sending") && !name.ends_with(".stored") {
            tracing::warn!(path = %path.display(), "an earlier imapfs left this file in the spool every account shared, not stored: which account it belongs to cannot be told, so it is not stored; copy it into its mailbox");
        }
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and so in every thread started later), so
/// that one thread can wait for them with `sigwait`.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-set manipulation on a local, zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Gives freed heap memory back to the system. glibc keeps freed chunks for reuse, so
/// after a large listing is replaced or the kernel forgets thousands of inodes, resident
/// memory would stay high without this.
fn release_memory() {
    // SAFETY: malloc_trim only releases free memory at the top of the heaps.
    unsafe { libc::malloc_trim(0) };
}

/// Eight FUSE workers would each get a glibc malloc arena; freed chunks in them stay
/// resident, so memory would grow well past --cache-size. One arena keeps RSS close to what
/// is really held. Must run before any other thread exists.
fn tune_allocator() {
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

/// Keeps the password and the mail out of core dumps and away from other processes of the
/// same user (ptrace, /proc/<pid>/mem), as ssh-agent and gpg-agent do.
fn refuse_core_dumps() {
    // SAFETY: prctl with PR_SET_DUMPABLE and a constant argument only changes this
    // process's dumpable flag.
    let done = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if done != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not keep the password out of core dumps");
    }
}

/// Hands the core's invalidations to the kernel, on a thread of its own: the kernel must
/// not be told from inside a request handler for a related node. What queued up while the
/// kernel was being told goes out once each (a burst of reports repeats the directory).
fn spawn_invalidator(notifier: fuser::Notifier) -> mpsc::Sender<Invalidation> {
    let (tx, rx) = mpsc::channel::<Invalidation>();
    std::thread::spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let mut sent = std::collections::HashSet::new();
            for invalidation in batch {
                if sent.insert(invalidation.clone()) {
                    invalidate(&notifier, &invalidation);
                }
            }
        }
    });
    tx
}

/// Tells the kernel one invalidation.
fn invalidate(notifier: &fuser::Notifier, invalidation: &Invalidation) {
    let result = match invalidation {
        Invalidation::Entry { parent, name } => {
            notifier.inval_entry(fuser::INodeNo(*parent), std::ffi::OsStr::new(name))
        }
        Invalidation::Deleted {
            parent,
            child,
            name,
        } => notifier.delete(
            fuser::INodeNo(*parent),
            fuser::INodeNo(*child),
            std::ffi::OsStr::new(name),
        ),
        Invalidation::Inode { ino } => notifier.inval_inode(fuser::INodeNo(*ino), 0, 0),
    };
    // ENOENT: the kernel had already dropped it.
    if let Err(e) = result {
        tracing::debug!(?invalidation, error = %e, "kernel invalidation not applied");
    }
}

/// Applies the store's events to the core on a thread of their own.
fn forward_store_events(store: &dyn MailStore, fs: &Arc<Fs>) {
    let (tx, rx) = mpsc::channel::<StoreEvent>();
    let fs = Arc::downgrade(fs);
    std::thread::spawn(move || {
        for event in rx {
            match fs.upgrade() {
                Some(fs) => fs.apply_store_event(event),
                None => return,
            }
        }
    });
    let tx = parking_lot::Mutex::new(tx);
    store.watch(Arc::new(move |event| {
        let _ = tx.lock().send(event);
    }));
}

/// Mounts and serves until unmounted or signalled. `ready` is told once the mount is up.
/// The core's settings from the options.
fn fs_config(opts: &Options) -> FsConfig {
    FsConfig {
        uid: opts.uid.unwrap_or_else(|| unsafe { libc::getuid() }),
        gid: opts.gid.unwrap_or_else(|| unsafe { libc::getgid() }),
        read_only: opts.read_only,
        cache_bytes: opts.cache_size,
        delete: match opts.delete {
            DeleteMode::Trash => FsDelete::Trash,
            DeleteMode::Expunge => FsDelete::Expunge,
            DeleteMode::Off => FsDelete::Off,
        },
        spool_dir: opts
            .spool_dir
            .clone()
            .unwrap_or_else(|| default_spool_dir(&opts.source)),
        trash: opts.trash.clone(),
        hide_virtual_folders: opts.hide_virtual_folders,
        connections: opts.connections,
    }
}

fn serve(opts: &Options, connected: Connected, ready: impl FnOnce()) -> Result<(), RunError> {
    let signals = block_signals();
    let config = fs_config(opts);
    let memory = MemoryCache::new(config.cache_bytes / 4 * 3);
    let (store, cache, flush_disk_cache) = stores(opts, connected, memory)?;
    let parts = FsParts {
        release_memory: Some(Arc::new(release_memory)),
        cache,
        ..FsParts::defaults(&config)
    };
    let fs = Arc::new(Fs::with_parts(Arc::clone(&store), config, parts));
    fs.enable_background_work();
    fs.check_kept_dirs();
    forward_store_events(store.as_ref(), &fs);
    let mountpoint = opts.mountpoint.display().to_string();
    let readers = Readers::new(FUSE_THREADS, fs.request_counts());
    let adapter = FuseAdapter::new(Arc::clone(&fs), opts.timeout, readers.clone());
    let (session, mut unmounter) = start_session(opts, adapter)?;
    fs.send_invalidations_to(spawn_invalidator(session.notifier()));
    // What an earlier imapfs left in the spool is settled in the background.
    let recovering = Arc::clone(&fs);
    let link = Arc::clone(&store);
    let opts_offline = opts.offline;
    std::thread::spawn(move || {
        // Changes made offline are replayed first, and the store counts as offline until
        // they are: waited for (a while), so that the spool is settled with the server.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while matches!(link.link_state(), crate::store::LinkState::Offline { .. })
            && !opts_offline
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        recovering.recover_spool();
    });
    tracing::info!(mountpoint = %mountpoint, source = %mount_name(opts), "mounted");
    ready();
    notify::notify("READY=1");

    let (done_tx, done_rx) = mpsc::channel::<&'static str>();
    let session_done = done_tx.clone();
    let loop_thread = std::thread::spawn(move || {
        let result = session.run();
        let _ = session_done.send("unmounted");
        result
    });
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: `signals` is a valid set; sigwait only writes the signal number.
        if unsafe { libc::sigwait(&signals, &mut sig) } == 0 {
            let _ = done_tx.send("signal");
        }
    });
    let why = done_rx.recv().unwrap_or("unmounted");
    if why == "signal" {
        tracing::info!(mountpoint = %mountpoint, "signal received; unmounting");
        notify::notify("STOPPING=1");
        if let Err(e) = unmounter.unmount() {
            tracing::warn!(error = %e, "unmount failed");
        }
        readers.stop();
    }
    let ended = loop_thread.join();
    if let Some(flush) = flush_disk_cache {
        flush();
    }
    match ended {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "FUSE session ended with an error");
            Ok(())
        }
        Err(_) => Err(RunError::Daemon("the FUSE session thread panicked".into())),
    }
}

/// Runs imapfs with parsed options. Without `--foreground` it forks after logging in; the
/// parent returns once the child's mount is ready (or with the child's error).
pub fn run(mut opts: Options) -> Result<(), RunError> {
    tune_allocator();
    refuse_core_dumps();
    // The daemon leaves the directory it was started from (so that it never keeps a
    // filesystem busy): every path it uses later is made absolute first.
    for path in [
        Some(&mut opts.mountpoint),
        opts.ca_file.as_mut(),
        opts.log_file.as_mut(),
        opts.spool_dir.as_mut(),
        opts.cache_dir.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(absolute) = std::path::absolute(&*path) {
            *path = absolute;
        }
    }
    mount::check_mountpoint(&opts.mountpoint, opts.nonempty)?;
    // Resolved once (the default one is made, and its shared parent looked at, here), so
    // that the mount's settings name the same directory.
    let spool = fs_config(&opts).spool_dir;
    if !opts.read_only {
        check_spool_dir(&spool)?;
    }
    opts.spool_dir = Some(spool);
    let store = connect(&opts)?;
    if opts.foreground {
        return serve(&opts, store, || {});
    }
    let mut fds = [0; 2];
    // SAFETY: pipe writes two new descriptors into `fds`.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(RunError::Daemon(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    // SAFETY: both descriptors were just created by pipe and are owned only here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (nothing above starts one), so fork is sound.
    match unsafe { libc::fork() } {
        -1 => Err(RunError::Daemon(
            std::io::Error::last_os_error().to_string(),
        )),
        0 => {
            drop(read_end);
            let mut status = std::fs::File::from(write_end);
            // SAFETY: setsid in the child, detaching from the terminal's session.
            unsafe { libc::setsid() };
            let result = serve(&opts, store, || {
                let _ = status.write_all(b"ready\n");
                detach_stdio();
                // Not to keep the directory it was started from busy (`umount` of that
                // filesystem would say "target is busy").
                let _ = std::env::set_current_dir("/");
            });
            if let Err(e) = &result {
                let _ = writeln!(status, "{e}");
            }
            std::process::exit(if result.is_ok() { 0 } else { 1 });
        }
        _child => {
            drop(write_end);
            drop(store);
            // One line: "ready", or the child's error. The child keeps its end open while
            // it serves, so read only up to the first newline.
            let mut answer = String::new();
            let _ = std::io::BufReader::new(std::fs::File::from(read_end)).read_line(&mut answer);
            if answer.starts_with("ready") {
                Ok(())
            } else if answer.trim().is_empty() {
                Err(RunError::Daemon(
                    "the background process ended before mounting".into(),
                ))
            } else {
                Err(RunError::Daemon(answer.trim().to_string()))
            }
        }
    }
}

/// Points stdin, stdout and stderr at /dev/null once detached (logs go to --log-file).
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors; `null` stays open until after.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each account has a spool of its own: a file one account's mount left there is never
    /// found by another's (it was stored into the other account).
    #[test]
    fn every_account_has_a_spool_of_its_own() {
        let shared = std::path::Path::new("/state/imapfs/spool");
        let alice = crate::cli::parse_source("imaps://alice@mail.example:993").unwrap();
        let bob = crate::cli::parse_source("imaps://bob@mail.example:993").unwrap();
        let odd = crate::cli::parse_source("imaps://a%2Fb@mail.example:993").unwrap();
        assert_eq!(
            account_spool(shared, &alice),
            shared.join("alice@mail.example:993")
        );
        assert_ne!(account_spool(shared, &alice), account_spool(shared, &bob));
        assert_eq!(account_spool(shared, &odd).parent(), Some(shared));
    }
}
