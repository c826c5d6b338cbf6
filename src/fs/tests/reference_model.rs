//! A reference model, as mountpoint-s3 tests its core: random sequences of local operations
//! (list, read, flag, move, delete, append) and remote changes by another client (add,
//! remove, flag, recreate a mailbox), checked after every step against a `BTreeMap` of
//! mailbox -> UID -> (message, flags).
//!
//! Listings may be stale by design, so the invariants are the ones a user can rely on:
//! - a read returns exactly the bytes of the message its directory names, or ENOENT/ESTALE;
//!   a message the mount listed and that still exists reads successfully;
//! - a listing only shows names that existed in that mailbox; after an expired listing
//!   (`Harness::expire_listings` moves the clock past `LISTING_FRESH`) the names are
//!   exactly the model's and the flags read back through xattrs are the model's;
//! - a local change that succeeds changed exactly the message the directory named.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::*;

const MAILBOXES: [&str; 3] = ["INBOX", "Archive", "Trash"];
const TRASH: usize = 2;
const FLAGS: &str = "user.imap.flags";
const FLAG_SETS: [&[&str]; 5] = [
    &[],
    &["\\Seen"],
    &["\\Seen", "\\Flagged"],
    &["$label1"],
    &["\\Answered", "$x", "\\Draft"],
];

#[derive(Debug, Clone, Copy)]
enum File {
    Message,
    Body,
    Attachment,
}

#[derive(Debug, Clone)]
enum Step {
    /// `ls` of a mailbox (the listing may be reused if it is fresh).
    List {
        mailbox: usize,
    },
    /// `ls` of a mailbox once its listing has expired; then `getfattr` of every message.
    Relist {
        mailbox: usize,
    },
    Read {
        mailbox: usize,
        pick: usize,
        file: File,
    },
    SetFlags {
        mailbox: usize,
        pick: usize,
        flags: usize,
    },
    /// `mv` to the next mailbox (`to` is 1 or 2 places on).
    Move {
        mailbox: usize,
        pick: usize,
        to: usize,
    },
    /// `rm -r` of a message directory.
    Delete {
        mailbox: usize,
        pick: usize,
    },
    /// `cp message.eml mailbox/`.
    Append {
        mailbox: usize,
    },
    RemoteAdd {
        mailbox: usize,
    },
    RemoteRemove {
        mailbox: usize,
        pick: usize,
    },
    RemoteFlags {
        mailbox: usize,
        pick: usize,
        flags: usize,
    },
    RemoteRecreate {
        mailbox: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let mailbox = || 0..MAILBOXES.len();
    let pick = || 0..8usize;
    let flags = || 0..FLAG_SETS.len();
    let file = prop_oneof![
        Just(File::Message),
        Just(File::Body),
        Just(File::Attachment)
    ];
    prop_oneof![
        3 => mailbox().prop_map(|mailbox| Step::List { mailbox }),
        2 => mailbox().prop_map(|mailbox| Step::Relist { mailbox }),
        6 => (mailbox(), pick(), file)
            .prop_map(|(mailbox, pick, file)| Step::Read { mailbox, pick, file }),
        2 => (mailbox(), pick(), flags())
            .prop_map(|(mailbox, pick, flags)| Step::SetFlags { mailbox, pick, flags }),
        2 => (mailbox(), pick(), 1..MAILBOXES.len())
            .prop_map(|(mailbox, pick, to)| Step::Move { mailbox, pick, to }),
        2 => (mailbox(), pick()).prop_map(|(mailbox, pick)| Step::Delete { mailbox, pick }),
        1 => mailbox().prop_map(|mailbox| Step::Append { mailbox }),
        3 => mailbox().prop_map(|mailbox| Step::RemoteAdd { mailbox }),
        2 => (mailbox(), pick()).prop_map(|(mailbox, pick)| Step::RemoteRemove { mailbox, pick }),
        2 => (mailbox(), pick(), flags())
            .prop_map(|(mailbox, pick, flags)| Step::RemoteFlags { mailbox, pick, flags }),
        1 => mailbox().prop_map(|mailbox| Step::RemoteRecreate { mailbox }),
    ]
}

#[derive(Debug, Clone)]
struct ModelMessage {
    /// Index into `Model::samples`; the message's subject is `m<serial>`.
    serial: usize,
    flags: BTreeSet<String>,
}

#[derive(Debug)]
struct ModelMailbox {
    validity: UidValidity,
    next_uid: u32,
    messages: BTreeMap<u32, ModelMessage>,
}

/// What the account holds, and every name each mailbox ever had.
#[derive(Debug, Default)]
struct Model {
    mailboxes: Vec<ModelMailbox>,
    samples: Vec<Sample>,
    ever: BTreeSet<(usize, String)>,
}

impl Model {
    fn new_sample(&mut self) -> usize {
        let serial = self.samples.len();
        self.samples.push(Sample::numbered(serial as u32));
        serial
    }

    fn dir_name(&self, uid: u32, serial: usize) -> String {
        self.samples[serial].dir_name(Uid(uid))
    }

    /// Puts a message in `mailbox` under its next UID.
    fn insert(&mut self, mailbox: usize, message: ModelMessage) -> u32 {
        let m = &mut self.mailboxes[mailbox];
        let uid = m.next_uid;
        m.next_uid += 1;
        let name = self.dir_name(uid, message.serial);
        self.mailboxes[mailbox].messages.insert(uid, message);
        self.ever.insert((mailbox, name));
        uid
    }

    fn names(&self, mailbox: usize) -> BTreeSet<String> {
        self.mailboxes[mailbox]
            .messages
            .iter()
            .map(|(uid, m)| self.dir_name(*uid, m.serial))
            .collect()
    }

    fn has(&self, mailbox: usize, name: &str) -> bool {
        self.names(mailbox).contains(name)
    }
}

/// The serial in a directory name `<uid> m<serial>`.
fn serial_of(name: &str) -> usize {
    name.rsplit_once(" m")
        .and_then(|(_, serial)| serial.parse().ok())
        .unwrap_or_else(|| panic!("{name:?} is not a model message"))
}

fn tolerated(e: &FsError) -> bool {
    matches!(e.errno_and_level().0, libc::ENOENT | libc::ESTALE)
}

/// One test case: the account, the mount, the model, and what the mount last listed.
struct Run {
    h: Harness,
    model: Model,
    dirs: Vec<u64>,
    seen: Vec<Vec<String>>,
}

/// The message a directory inode stands for, according to the mount.
struct Identity {
    mailbox: usize,
    validity: UidValidity,
    uid: u32,
}

impl Run {
    fn new() -> Run {
        let h = Harness::new();
        h.store.add_mailbox("Archive", Some('/'), true, None);
        h.store
            .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
        let mut model = Model {
            mailboxes: MAILBOXES
                .iter()
                .map(|m| ModelMailbox {
                    validity: h.store.uid_validity(m),
                    next_uid: 1,
                    messages: BTreeMap::new(),
                })
                .collect(),
            ..Model::default()
        };
        for mailbox in [0, 0, 1] {
            let serial = model.new_sample();
            h.store
                .add_message(MAILBOXES[mailbox], &model.samples[serial].raw, &[], date());
            model.insert(
                mailbox,
                ModelMessage {
                    serial,
                    flags: BTreeSet::new(),
                },
            );
        }
        let dirs = MAILBOXES.iter().map(|m| h.ino(m).unwrap()).collect();
        Run {
            h,
            model,
            dirs,
            seen: vec![Vec::new(); MAILBOXES.len()],
        }
    }

    /// A message name to act on: one the mount listed, else one the model has (as if the
    /// user typed a name another client just created).
    fn pick_name(&self, mailbox: usize, pick: usize) -> Option<String> {
        let candidates: Vec<String> = self.seen[mailbox]
            .iter()
            .cloned()
            .chain(self.model.names(mailbox))
            .collect();
        (!candidates.is_empty()).then(|| candidates[pick % candidates.len()].clone())
    }

    fn pick_uid(&self, mailbox: usize, pick: usize) -> Option<u32> {
        let uids: Vec<u32> = self.model.mailboxes[mailbox]
            .messages
            .keys()
            .copied()
            .collect();
        (!uids.is_empty()).then(|| uids[pick % uids.len()])
    }

    fn identity(&self, dir: u64) -> Result<Identity, TestCaseError> {
        let get = |name: &str| {
            let value = self.h.fs.getxattr(dir, OsStr::new(name));
            String::from_utf8(value.expect("identity xattrs of a message directory"))
                .expect("UTF-8 xattr")
        };
        let path = get("user.imap.mailbox");
        let mailbox = MAILBOXES
            .iter()
            .position(|m| *m == path)
            .ok_or_else(|| TestCaseError::fail(format!("unknown mailbox {path:?}")))?;
        Ok(Identity {
            mailbox,
            validity: UidValidity(get("user.imap.uidvalidity").parse().unwrap()),
            uid: get("user.imap.uid").parse().unwrap(),
        })
    }

    /// After a local change succeeded on the directory `name` whose inode stood for `id`:
    /// the change must have hit exactly that message, which the model must still hold.
    fn changed_message(&self, id: &Identity, name: &str) -> Result<ModelMessage, TestCaseError> {
        let mailbox = &self.model.mailboxes[id.mailbox];
        prop_assert_eq!(
            id.validity,
            mailbox.validity,
            "{} changed under an old UIDVALIDITY",
            name
        );
        let message = mailbox.messages.get(&id.uid).cloned();
        let message = message.ok_or_else(|| {
            TestCaseError::fail(format!(
                "{name}: a change succeeded on a message that is gone"
            ))
        })?;
        prop_assert_eq!(
            message.serial,
            serial_of(name),
            "{} changed another message",
            name
        );
        Ok(message)
    }

    fn apply(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::List { mailbox } => self.list(mailbox, false),
            Step::Relist { mailbox } => self.list(mailbox, true),
            Step::Read {
                mailbox,
                pick,
                file,
            } => self.read(mailbox, pick, file),
            Step::SetFlags {
                mailbox,
                pick,
                flags,
            } => self.set_flags(mailbox, pick, flags),
            Step::Move { mailbox, pick, to } => self.move_message(mailbox, pick, to),
            Step::Delete { mailbox, pick } => self.delete(mailbox, pick),
            Step::Append { mailbox } => self.append(mailbox),
            Step::RemoteAdd { mailbox } => {
                let serial = self.model.new_sample();
                let raw = &self.model.samples[serial].raw;
                let uid = self
                    .h
                    .store
                    .add_message(MAILBOXES[mailbox], raw, &[], date());
                let flags = BTreeSet::new();
                let expected = self.model.insert(mailbox, ModelMessage { serial, flags });
                prop_assert_eq!(uid, Uid(expected));
                Ok(())
            }
            Step::RemoteRemove { mailbox, pick } => {
                if let Some(uid) = self.pick_uid(mailbox, pick) {
                    self.h.store.remove_message(MAILBOXES[mailbox], Uid(uid));
                    self.model.mailboxes[mailbox].messages.remove(&uid);
                }
                Ok(())
            }
            Step::RemoteFlags {
                mailbox,
                pick,
                flags,
            } => {
                if let Some(uid) = self.pick_uid(mailbox, pick) {
                    let set = FLAG_SETS[flags];
                    self.h.store.set_flags(MAILBOXES[mailbox], Uid(uid), set);
                    let message = self.model.mailboxes[mailbox].messages.get_mut(&uid);
                    message.expect("picked from the model").flags =
                        set.iter().map(|f| f.to_string()).collect();
                }
                Ok(())
            }
            Step::RemoteRecreate { mailbox } => {
                self.h.store.recreate_mailbox(MAILBOXES[mailbox]);
                let m = &mut self.model.mailboxes[mailbox];
                m.validity = self.h.store.uid_validity(MAILBOXES[mailbox]);
                m.next_uid = 1;
                m.messages.clear();
                Ok(())
            }
        }
    }

    fn list(&mut self, mailbox: usize, expired: bool) -> Result<(), TestCaseError> {
        if expired {
            self.h.expire_listings();
        }
        let names = self.h.names(self.dirs[mailbox]).expect("listing a mailbox");
        let unique: BTreeSet<String> = names.iter().cloned().collect();
        prop_assert_eq!(unique.len(), names.len(), "duplicate names: {:?}", names);
        for name in &names {
            prop_assert!(
                self.model.ever.contains(&(mailbox, name.clone())),
                "{} listed {:?}, which never was there",
                MAILBOXES[mailbox],
                name
            );
        }
        self.seen[mailbox] = names;
        if !expired {
            return Ok(());
        }
        prop_assert_eq!(
            &unique,
            &self.model.names(mailbox),
            "{}",
            MAILBOXES[mailbox]
        );
        for (uid, message) in &self.model.mailboxes[mailbox].messages {
            let name = self.model.dir_name(*uid, message.serial);
            let dir = self.h.fs.lookup(self.dirs[mailbox], OsStr::new(&name));
            let dir = dir.expect("a listed message resolves").attr.ino;
            let flags = self.h.fs.getxattr(dir, OsStr::new(FLAGS)).unwrap();
            let flags: BTreeSet<String> = String::from_utf8(flags)
                .unwrap()
                .split_whitespace()
                .map(str::to_string)
                .collect();
            prop_assert_eq!(&flags, &message.flags, "flags of {}", name);
        }
        Ok(())
    }

    fn read(&mut self, mailbox: usize, pick: usize, file: File) -> Result<(), TestCaseError> {
        let Some(name) = self.pick_name(mailbox, pick) else {
            return Ok(());
        };
        let sample = &self.model.samples[serial_of(&name)];
        let (file, expected) = match file {
            File::Message => ("message.eml", &sample.raw[..]),
            File::Body => ("body.txt", sample.body.as_bytes()),
            File::Attachment => (sample.attachment_name.as_str(), &sample.attachment[..]),
        };
        let path = format!("{}/{name}/{file}", MAILBOXES[mailbox]);
        match self.h.read_path(&path) {
            Ok(bytes) => prop_assert!(bytes == expected, "{} read other bytes", path),
            Err(e) => {
                prop_assert!(tolerated(&e), "{}: {:?}", path, e);
                let live = self.seen[mailbox].contains(&name) && self.model.has(mailbox, &name);
                prop_assert!(!live, "{} was listed and still exists, yet {:?}", path, e);
            }
        }
        Ok(())
    }

    /// Looks up a picked message directory; `None` if there is none or it is gone.
    fn lookup_message(
        &self,
        mailbox: usize,
        pick: usize,
    ) -> Result<Option<(String, u64, Identity)>, TestCaseError> {
        let Some(name) = self.pick_name(mailbox, pick) else {
            return Ok(None);
        };
        match self.h.fs.lookup(self.dirs[mailbox], OsStr::new(&name)) {
            Ok(reply) => {
                let id = self.identity(reply.attr.ino)?;
                prop_assert_eq!(id.mailbox, mailbox, "{} resolved elsewhere", name);
                Ok(Some((name, reply.attr.ino, id)))
            }
            Err(e) => {
                prop_assert!(tolerated(&e), "lookup of {}: {:?}", name, e);
                Ok(None)
            }
        }
    }

    fn set_flags(
        &mut self,
        mailbox: usize,
        pick: usize,
        flags: usize,
    ) -> Result<(), TestCaseError> {
        let Some((name, dir, id)) = self.lookup_message(mailbox, pick)? else {
            return Ok(());
        };
        let value = FLAG_SETS[flags].join(" ");
        match self.h.fs.setxattr(dir, OsStr::new(FLAGS), value.as_bytes()) {
            // The server is silent about a STORE to a UID that is gone.
            Ok(()) => {
                let m = &self.model.mailboxes[id.mailbox];
                prop_assert_eq!(
                    m.validity,
                    id.validity,
                    "flags set under an old UIDVALIDITY"
                );
                if m.messages.contains_key(&id.uid) {
                    self.changed_message(&id, &name)?;
                    let message = self.model.mailboxes[id.mailbox].messages.get_mut(&id.uid);
                    message.expect("checked above").flags =
                        FLAG_SETS[flags].iter().map(|f| f.to_string()).collect();
                }
            }
            Err(e) => prop_assert!(tolerated(&e), "setxattr on {}: {:?}", name, e),
        }
        Ok(())
    }

    fn move_message(
        &mut self,
        mailbox: usize,
        pick: usize,
        to: usize,
    ) -> Result<(), TestCaseError> {
        let to = (mailbox + to) % MAILBOXES.len();
        let Some((name, _, id)) = self.lookup_message(mailbox, pick)? else {
            return Ok(());
        };
        let n = OsStr::new(&name);
        match self
            .h
            .fs
            .rename(self.dirs[mailbox], n, self.dirs[to], n, false, false)
        {
            Ok(()) => {
                let message = self.changed_message(&id, &name)?;
                self.model.mailboxes[mailbox].messages.remove(&id.uid);
                self.model.insert(to, message);
                // The name `mv` used resolves in the target until its next listing.
                let path = format!("{}/{name}/message.eml", MAILBOXES[to]);
                let bytes = self.h.read_path(&path);
                let sample = &self.model.samples[serial_of(&name)];
                prop_assert!(bytes.ok().as_deref() == Some(&sample.raw[..]), "{}", path);
                // The user may go on using that name.
                self.seen[to].push(name);
            }
            Err(e) => prop_assert!(tolerated(&e), "mv of {}: {:?}", name, e),
        }
        Ok(())
    }

    fn delete(&mut self, mailbox: usize, pick: usize) -> Result<(), TestCaseError> {
        let Some((name, dir, id)) = self.lookup_message(mailbox, pick)? else {
            return Ok(());
        };
        let files = match self.h.names(dir) {
            Ok(files) => files,
            Err(e) => {
                prop_assert!(tolerated(&e), "ls {}: {:?}", name, e);
                return Ok(());
            }
        };
        for file in files {
            if let Err(e) = self.h.fs.unlink(dir, OsStr::new(&file)) {
                prop_assert!(tolerated(&e), "rm {}/{}: {:?}", name, file, e);
                return Ok(());
            }
        }
        match self.h.fs.rmdir(self.dirs[mailbox], OsStr::new(&name)) {
            Ok(()) => {
                let message = self.changed_message(&id, &name)?;
                self.model.mailboxes[mailbox].messages.remove(&id.uid);
                if mailbox != TRASH {
                    self.model.insert(TRASH, message);
                }
            }
            Err(e) => {
                prop_assert!(tolerated(&e), "rmdir {}: {:?}", name, e);
                let files = self.h.names(dir);
                prop_assert!(
                    files.map_or(true, |f| !f.is_empty()),
                    "a failed rmdir left {} looking empty",
                    name
                );
            }
        }
        Ok(())
    }

    fn append(&mut self, mailbox: usize) -> Result<(), TestCaseError> {
        let serial = self.model.new_sample();
        let raw = self.model.samples[serial].raw.clone();
        let file = format!("new-{serial}.eml");
        let (attr, fh) = self
            .h
            .fs
            .create(self.dirs[mailbox], OsStr::new(&file))
            .expect("create");
        let ino = attr.attr.ino;
        let (head, tail) = raw.split_at(raw.len() / 2);
        self.h.fs.write(ino, fh, 0, head).expect("write");
        self.h
            .fs
            .write(ino, fh, head.len() as u64, tail)
            .expect("write");
        self.h.fs.flush(ino, fh).expect("flush appends");
        self.h.fs.release(ino, fh).expect("release");
        let flags = BTreeSet::new();
        self.model.insert(mailbox, ModelMessage { serial, flags });
        Ok(())
    }
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut run = Run::new();
    for step in steps {
        run.apply(step)?;
    }
    for mailbox in 0..MAILBOXES.len() {
        run.list(mailbox, true)?;
    }
    let appended = run.h.count(Op::Append);
    let appends = steps
        .iter()
        .filter(|s| matches!(s, Step::Append { .. }))
        .count() as u64;
    prop_assert_eq!(appended, appends, "one APPEND per new file");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MODEL_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_mount_agrees_with_the_model(steps in prop::collection::vec(step(), 1..30)) {
        run(&steps)?;
    }
}
