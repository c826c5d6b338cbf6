//! The soak: everything at once on a busy machine (listing, hashing every message, reading
//! a message's old path right after moving it, grep, mv and setfattr), then the server must
//! be exactly what the operations imply, and no read may ever have given wrong, short or
//! empty bytes for a message that exists.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hint::black_box;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::faults::{
    list, read, run, small_body, small_message, within, Imapfs, LISTING_FRESH, OP_LIMIT,
};
use super::support::*;

const SOAK_TIME: Duration = Duration::from_secs(30);
const SOAK_MESSAGES: usize = 32;
const SOAK_FLAGS: [&str; 4] = ["\\Seen", "\\Flagged", "\\Answered", "$soak"];
/// Messages no worker changes, in each mailbox: they make every listing and every
/// structure read-ahead take longer, widening the windows in which a move can race them.
const FILLERS: usize = 200;

fn is_filler(name: &str) -> bool {
    name.contains(" Filler ")
}

pub(super) fn soak_subject(i: usize) -> String {
    format!("Soak {i:02}")
}

pub(super) fn soak_token(i: usize) -> String {
    format!("tok{i:02}x")
}

/// Which message a directory name is for.
fn soak_index(name: &str) -> Option<usize> {
    name.split_once(" Soak ")?.1.parse().ok()
}

/// Where the server has one soak message: mailbox, UID and flags.
type ServerCopy = (&'static str, u32, BTreeSet<String>);

/// What the test's own successful operations imply about the server.
struct SoakModel {
    mailbox: Vec<&'static str>,
    flags: Vec<BTreeSet<String>>,
    /// Messages a mover or flagger is working on (one change per message at a time).
    busy: Vec<bool>,
}

/// A tiny deterministic random source per worker.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

struct Soak {
    root: PathBuf,
    model: Mutex<SoakModel>,
    problems: Mutex<Vec<String>>,
    /// message.eml reads that returned the exact bytes.
    exact_reads: AtomicU64,
    /// Reads of a message's old path right after it was moved.
    reads_after_mv: AtomicU64,
    end: Instant,
}

impl Soak {
    fn problem(&self, p: String) {
        self.problems.lock().unwrap().push(p);
    }

    fn running(&self) -> bool {
        Instant::now() < self.end
    }

    /// The directory of message `i` in `mailbox`, from a fresh readdir; a failed readdir is
    /// a problem.
    fn find(&self, mailbox: &str, i: usize) -> Option<PathBuf> {
        let listed = fs::read_dir(self.root.join(mailbox)).and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.path()))
                .collect::<io::Result<Vec<_>>>()
        });
        match listed {
            Ok(paths) => paths
                .into_iter()
                .find(|p| soak_index(&p.file_name().unwrap().to_string_lossy()) == Some(i)),
            Err(e) => {
                self.problem(format!("ls {mailbox}: {e}"));
                None
            }
        }
    }

    /// Claims a message no one else is changing.
    fn claim(&self, rng: &mut Rng) -> Option<(usize, &'static str)> {
        let mut model = self.model.lock().unwrap();
        let i = rng.below(SOAK_MESSAGES);
        if model.busy[i] {
            return None;
        }
        model.busy[i] = true;
        Some((i, model.mailbox[i]))
    }

    /// Reads `dir/file` and checks it: the exact bytes of the message the directory names,
    /// or ENOENT (it moved away); never different, short or empty bytes.
    fn check_file(&self, dir: &Path, file: &str, what: &str) {
        let Some(i) = soak_index(&dir.file_name().unwrap().to_string_lossy()) else {
            return;
        };
        let (subject, token) = (soak_subject(i), soak_token(i));
        let want = match file {
            "message.eml" => small_message(&subject, &token),
            _ => small_body(&subject, &token),
        };
        let path = dir.join(file);
        match fs::read(&path) {
            Ok(got) if got == want => {
                if file == "message.eml" {
                    self.exact_reads.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(got) => self.problem(format!(
                "{what}: {}: wrong content {:?}",
                path.display(),
                String::from_utf8_lossy(&got)
            )),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => self.problem(format!("{what}: {}: {e}", path.display())),
        }
    }

    fn lister(&self) {
        while self.running() {
            for mailbox in ["A", "B"] {
                let Ok(entries) = fs::read_dir(self.root.join(mailbox)) else {
                    self.problem(format!("ls {mailbox} failed"));
                    continue;
                };
                let mut seen = BTreeSet::new();
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().to_string();
                    match soak_index(&name) {
                        Some(i) if seen.insert(i) => {}
                        None if is_filler(&name) => {}
                        _ => self.problem(format!("ls {mailbox}: unexpected {name:?}")),
                    }
                    if let Err(e) = entry.metadata() {
                        if e.raw_os_error() != Some(libc::ENOENT) {
                            self.problem(format!("stat {name}: {e}"));
                        }
                    }
                }
            }
        }
    }

    /// Hashes every message.eml of both mailboxes, again and again (as `sha256sum */*`).
    fn hasher(&self) {
        while self.running() {
            for mailbox in ["A", "B"] {
                let Ok(entries) = fs::read_dir(self.root.join(mailbox)) else {
                    continue;
                };
                for entry in entries.flatten() {
                    self.check_file(&entry.path(), "message.eml", "hasher");
                }
            }
        }
    }

    fn reader(&self, mut rng: Rng) {
        while self.running() {
            let mailbox = ["A", "B"][rng.below(2)];
            let Ok(entries) = fs::read_dir(self.root.join(mailbox)) else {
                continue;
            };
            let dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            if dirs.is_empty() {
                continue;
            }
            let dir = &dirs[rng.below(dirs.len())];
            self.check_file(dir, "message.eml", "reader");
            self.check_file(dir, "body.txt", "reader");
        }
    }

    fn grepper(&self, mut rng: Rng) {
        while self.running() {
            let i = rng.below(SOAK_MESSAGES);
            let (a, b) = (self.root.join("A"), self.root.join("B"));
            let out = run(&[
                "grep",
                "-rl",
                &soak_token(i),
                a.to_str().unwrap(),
                b.to_str().unwrap(),
            ]);
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if !line.contains(&format!(" {}/", soak_subject(i))) {
                    self.problem(format!("grep {}: matched {line}", soak_token(i)));
                }
            }
            for line in String::from_utf8_lossy(&out.stderr).lines() {
                if !line.ends_with("No such file or directory") {
                    self.problem(format!("grep: {line}"));
                }
            }
        }
    }

    /// Moves messages between the mailboxes; right after each move, reads and stats the old
    /// path, as a reader that listed just before the move would.
    fn mover(&self, mut rng: Rng) {
        while self.running() {
            let Some((i, from)) = self.claim(&mut rng) else {
                continue;
            };
            let to = if from == "A" { "B" } else { "A" };
            let moved = match self.find(from, i) {
                None => {
                    self.problem(format!("mover: {} not listed in {from}", soak_subject(i)));
                    false
                }
                Some(dir) => {
                    let target = self.root.join(to);
                    let out = run(&["mv", dir.to_str().unwrap(), target.to_str().unwrap()]);
                    if !out.status.success() {
                        self.problem(format!(
                            "mv {}: {}",
                            dir.display(),
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    } else {
                        // The first few milliseconds after a move are when a stale view shows.
                        let size = small_message(&soak_subject(i), &soak_token(i)).len() as u64;
                        for pause in [0, 1, 3] {
                            std::thread::sleep(Duration::from_millis(pause));
                            self.reads_after_mv.fetch_add(1, Ordering::Relaxed);
                            match fs::metadata(dir.join("message.eml")) {
                                Ok(m) if m.len() != size => self.problem(format!(
                                    "after mv: stat {}/message.eml: size {}, not {size}",
                                    dir.display(),
                                    m.len()
                                )),
                                _ => {}
                            }
                            self.check_file(&dir, "message.eml", "after mv");
                        }
                    }
                    out.status.success()
                }
            };
            let mut model = self.model.lock().unwrap();
            if moved {
                model.mailbox[i] = to;
            }
            model.busy[i] = false;
        }
    }

    fn flagger(&self, mut rng: Rng) {
        while self.running() {
            let Some((i, mailbox)) = self.claim(&mut rng) else {
                continue;
            };
            let flags: BTreeSet<String> = SOAK_FLAGS
                .iter()
                .filter(|_| rng.below(2) == 1)
                .map(|f| f.to_string())
                .collect();
            let value = flags.iter().cloned().collect::<Vec<_>>().join(" ");
            let set = match self.find(mailbox, i) {
                None => {
                    self.problem(format!(
                        "flagger: {} not listed in {mailbox}",
                        soak_subject(i)
                    ));
                    false
                }
                Some(dir) => {
                    let out = run(&[
                        "setfattr",
                        "-n",
                        "user.imap.flags",
                        "-v",
                        &value,
                        dir.to_str().unwrap(),
                    ]);
                    if !out.status.success() {
                        self.problem(format!(
                            "setfattr {}: {}",
                            dir.display(),
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                    out.status.success()
                }
            };
            let mut model = self.model.lock().unwrap();
            if set {
                model.flags[i] = flags;
            }
            model.busy[i] = false;
        }
    }
}

/// Keeps every CPU busy until `stop`: the races this soak looks for show on a loaded machine.
fn load_the_machine(stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    (0..cpus)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..100_000 {
                        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
                    }
                }
            })
        })
        .collect()
}

#[test]
fn soak_concurrent_ls_hash_grep_mv_and_setfattr_on_a_busy_machine_end_in_the_implied_state() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    fixture::create_mailbox(&mut client, "A").unwrap();
    fixture::create_mailbox(&mut client, "B").unwrap();
    for i in 0..SOAK_MESSAGES {
        let raw = small_message(&soak_subject(i), &soak_token(i));
        fixture::append(&mut client, "A", &raw, &[]).unwrap();
    }
    for i in 0..FILLERS {
        for mailbox in ["A", "B"] {
            let raw = small_message(&format!("Filler {i}"), &format!("filler{i}"));
            fixture::append(&mut client, mailbox, &raw, &[]).unwrap();
        }
    }
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let process = Imapfs::of(&mount);
    let soak = Arc::new(Soak {
        root: mount.path.clone(),
        model: Mutex::new(SoakModel {
            mailbox: vec!["A"; SOAK_MESSAGES],
            flags: vec![BTreeSet::new(); SOAK_MESSAGES],
            busy: vec![false; SOAK_MESSAGES],
        }),
        problems: Mutex::new(Vec::new()),
        exact_reads: AtomicU64::new(0),
        reads_after_mv: AtomicU64::new(0),
        end: Instant::now() + SOAK_TIME,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let load = load_the_machine(Arc::clone(&stop));
    let mut workers = Vec::new();
    for seed in 1..=13u64 {
        let soak = Arc::clone(&soak);
        let rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        workers.push(std::thread::spawn(move || match seed {
            1 => soak.lister(),
            2..=4 => soak.hasher(),
            5 => soak.reader(rng),
            6 => soak.grepper(rng),
            7..=11 => soak.mover(rng),
            _ => soak.flagger(rng),
        }));
    }
    let (_, took) = within(SOAK_TIME + OP_LIMIT * 2, "the soak", move || {
        for worker in workers {
            worker.join().unwrap();
        }
    });
    stop.store(true, Ordering::Relaxed);
    for spinner in load {
        spinner.join().unwrap();
    }
    assert!(took < SOAK_TIME + OP_LIMIT, "soak overran: {took:?}");
    let problems = soak.problems.lock().unwrap().clone();
    let log = mount.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN "))
        .take(20)
        .collect();
    // The soak did what it is for: many exact reads, many reads of a just-moved message.
    let exact = soak.exact_reads.load(Ordering::Relaxed);
    let after_mv = soak.reads_after_mv.load(Ordering::Relaxed);
    assert!(exact > 1000, "only {exact} exact reads");
    assert!(after_mv > 50, "only {after_mv} reads right after a move");

    // Each message exactly once, where the last successful mv put it, with the flags last set.
    let model = soak.model.lock().unwrap();
    let mut state = Vec::new();
    let mut found: BTreeMap<usize, Vec<ServerCopy>> = BTreeMap::new();
    for mailbox in ["A", "B"] {
        for (uid, (flags, bytes)) in server_mailbox(&mut client, mailbox) {
            if String::from_utf8_lossy(&bytes).contains("Subject: Filler ") {
                continue;
            }
            match (0..SOAK_MESSAGES)
                .find(|&i| bytes == small_message(&soak_subject(i), &soak_token(i)))
            {
                Some(i) => {
                    found
                        .entry(i)
                        .or_default()
                        .push((mailbox, uid, flags.into_iter().collect()))
                }
                None => state.push(format!("unknown message UID {uid} in {mailbox}")),
            }
        }
    }
    for i in 0..SOAK_MESSAGES {
        let places = found.get(&i).cloned().unwrap_or_default();
        let subject = soak_subject(i);
        match places.as_slice() {
            [(mailbox, _, flags)] => {
                if *mailbox != model.mailbox[i] {
                    state.push(format!(
                        "{subject} is in {mailbox}, not {}",
                        model.mailbox[i]
                    ));
                }
                if *flags != model.flags[i] {
                    state.push(format!("{subject} has {flags:?}, not {:?}", model.flags[i]));
                }
            }
            _ => state.push(format!(
                "{subject} is on the server {} times: {places:?}",
                places.len()
            )),
        }
    }
    // The mount agrees with the server.
    std::thread::sleep(LISTING_FRESH);
    for mailbox in ["A", "B"] {
        let shown: BTreeSet<usize> = list(mount.join(mailbox))
            .0
            .unwrap()
            .iter()
            .filter_map(|n| soak_index(n))
            .collect();
        let expected: BTreeSet<usize> = (0..SOAK_MESSAGES)
            .filter(|&i| model.mailbox[i] == mailbox)
            .collect();
        if shown != expected {
            state.push(format!(
                "ls {mailbox} shows {shown:?}, expected {expected:?}"
            ));
        }
        // And every file reads exactly, now that nothing moves any more.
        for name in list(mount.join(mailbox)).0.unwrap() {
            let Some(i) = soak_index(&name) else { continue };
            let (subject, token) = (soak_subject(i), soak_token(i));
            for (file, want) in [
                ("message.eml", small_message(&subject, &token)),
                ("body.txt", small_body(&subject, &token)),
            ] {
                let got = read(mount.join(mailbox).join(&name).join(file)).0;
                if got.as_ref().ok() != Some(&want) {
                    state.push(format!("after the soak, {mailbox}/{name}/{file}: {got:?}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty() && state.is_empty(),
        "{} problems during the soak ({exact} exact reads, {after_mv} reads after mv): \
         {problems:#?}\nfinal state: {state:#?}\nimapfs warnings: {warnings:#?}",
        problems.len()
    );
    process.assert_healthy(&mount);
}
