//! Work done ahead of a walk (`grep -r`, `find`): while the reader goes through one batch
//! of messages, the next two batches (their structures, or their whole bodies) are fetched
//! on threads of their own, so the reader finds them ready, or on their way, instead of
//! waiting for a round trip and the transfer after every batch. A reader of something on
//! its way waits for that fetch rather than sending its own ([`Coming`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;

use parking_lot::lock_api::ArcMutexGuard;
use parking_lot::{Mutex, RawMutex};

use super::inodes::MessageRef;
use crate::store::{MailboxId, Uid, UidValidity};

/// When the batch after the frontier is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// At the reader's next message.
    Now,
    /// When the reader gets to this message.
    At(Uid),
    /// Not before the reader catches up with the frontier again.
    Taken,
}

/// How far ahead of its reader a walk is served.
#[derive(Debug, Clone, Copy)]
struct Frontier {
    validity: UidValidity,
    due: Due,
    /// The last message asked for.
    last: Uid,
    /// The first message of the last batch sent: when the reader gets there, the batch
    /// after the next is due (the walk is served two batches ahead).
    last_sent: Option<Uid>,
}

/// The batches sent ahead of walks of one kind, and the thread that runs them.
pub struct Ahead<J> {
    frontiers: Mutex<HashMap<MailboxId, Frontier>>,
    worker: Mutex<Option<SyncSender<J>>>,
}

impl<J> Default for Ahead<J> {
    fn default() -> Self {
        Ahead {
            frontiers: Mutex::new(HashMap::new()),
            worker: Mutex::new(None),
        }
    }
}

impl<J: Send + 'static> Ahead<J> {
    /// Starts `threads` threads called `name` that run the batches sent with `run` (until
    /// this is dropped); with two, two batches are fetched at once (on two connections,
    /// so a server that compresses each on one core serves them twice as fast). Until
    /// then, or with none, nothing is sent ahead, and walks fetch as they go.
    pub fn start(
        &self,
        name: &str,
        threads: usize,
        run: impl Fn(J) + Send + Sync + 'static,
    ) -> std::io::Result<()> {
        let mut worker = self.worker.lock();
        if worker.is_some() || threads == 0 {
            return Ok(());
        }
        // As many batches waiting as there are threads: nothing piles up when the reader
        // stops.
        let (tx, rx) = mpsc::sync_channel::<J>(threads);
        let rx = Arc::new(Mutex::new(rx));
        let run = Arc::new(run);
        for _ in 0..threads {
            let (rx, run) = (Arc::clone(&rx), Arc::clone(&run));
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || loop {
                    let job = rx.lock().recv();
                    match job {
                        Ok(job) => run(job),
                        Err(_) => return,
                    }
                })?;
        }
        *worker = Some(tx);
        Ok(())
    }

    /// The reader is at `message`, and what it fetched for itself ends at `last`: the
    /// batch after that is due at once.
    pub fn fetched_to(&self, message: &MessageRef, last: Uid) {
        self.frontiers.lock().insert(
            message.mailbox.clone(),
            Frontier {
                validity: message.validity,
                due: Due::Now,
                last,
                last_sent: None,
            },
        );
    }

    /// If a batch is due now that the reader is at `message`: the last message asked for,
    /// after which it starts (see [`send_due`](Self::send_due)).
    fn due(&self, message: &MessageRef) -> Option<Uid> {
        if self.worker.lock().is_none() {
            return None;
        }
        let mut frontiers = self.frontiers.lock();
        let frontier = frontiers.get_mut(&message.mailbox)?;
        let due = match frontier.due {
            Due::Now => true,
            Due::At(at) => message.uid >= at,
            Due::Taken => false,
        };
        if !due || frontier.validity != message.validity {
            return None;
        }
        frontier.due = Due::Taken;
        Some(frontier.last)
    }

    /// If a batch is due now that the reader is at `message`, makes it with `batch_after`
    /// (given the last message asked for) and sends it. For an empty batch (`None`)
    /// nothing is sent: the reader fetches for itself when it gets past what is held.
    pub fn send_due(
        &self,
        message: &MessageRef,
        batch_after: impl FnOnce(&MessageRef) -> Option<(Uid, Uid, J)>,
    ) {
        let Some(last) = self.due(message) else {
            return;
        };
        let after = MessageRef {
            uid: last,
            ..message.clone()
        };
        if let Some((first, end, job)) = batch_after(&after) {
            self.send(&message.mailbox, first, end, job);
        }
    }

    /// Hands `job`, the batch of messages `first..=last` of `mailbox`, to the threads; the
    /// batch after it is due when the reader gets to the first message of the batch sent
    /// before it (at once, if there was none). While the threads are busy and as many
    /// batches wait already, nothing is sent and the batch is due again at the reader's next
    /// message.
    fn send(&self, mailbox: &MailboxId, first: Uid, last: Uid, job: J) {
        let sent = self
            .worker
            .lock()
            .as_ref()
            .is_some_and(|tx| tx.try_send(job).is_ok());
        if let Some(frontier) = self.frontiers.lock().get_mut(mailbox) {
            if sent {
                frontier.due = frontier.last_sent.map_or(Due::Now, Due::At);
                frontier.last_sent = Some(first);
                frontier.last = last;
            } else {
                frontier.due = Due::Now;
            }
        }
    }
}

/// Keys being fetched, each with the gate its fetcher holds until the result is kept.
pub struct Coming<K> {
    gates: Mutex<HashMap<K, Arc<Mutex<()>>>>,
}

impl<K> Default for Coming<K> {
    fn default() -> Self {
        Coming {
            gates: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> Coming<K> {
    /// Whether `key` is on its way.
    pub fn contains(&self, key: &K) -> bool {
        self.gates.lock().contains_key(key)
    }

    /// Waits until the fetch of `key` under way, if any, is over, as long as the current
    /// call may wait; says whether there was one.
    pub fn wait(&self, key: &K) -> Result<bool, crate::store::StoreError> {
        let gate = self.gates.lock().get(key).cloned();
        match gate {
            Some(gate) => {
                drop(crate::call::lock_within(&gate)?);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Claims those of `keys` that nobody fetches: until the claim is dropped (after the
    /// result is kept), readers of them wait for it.
    pub fn claim(&self, keys: impl IntoIterator<Item = K>) -> Claim<'_, K> {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock_arc();
        let mut gates = self.gates.lock();
        let keys = keys
            .into_iter()
            .filter(|k| !gates.contains_key(k))
            .collect::<Vec<_>>();
        for k in &keys {
            gates.insert(k.clone(), Arc::clone(&gate));
        }
        Claim {
            coming: self,
            keys,
            _held: held,
        }
    }
}

/// Keys claimed by one fetch; dropping it lets their readers go on.
pub struct Claim<'a, K: Hash + Eq> {
    coming: &'a Coming<K>,
    keys: Vec<K>,
    _held: ArcMutexGuard<RawMutex, ()>,
}

impl<K: Hash + Eq> Claim<'_, K> {
    /// The keys this claim holds (those nobody else fetched), in the order given.
    pub fn keys(&self) -> &[K] {
        &self.keys
    }
}

impl<K: Hash + Eq> Drop for Claim<'_, K> {
    fn drop(&mut self) {
        let mut gates = self.coming.gates.lock();
        for k in &self.keys {
            gates.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn inbox(uid: u32) -> MessageRef {
        MessageRef {
            mailbox: MailboxId::new("INBOX"),
            validity: UidValidity(7),
            uid: Uid(uid),
        }
    }

    #[test]
    fn the_walk_is_served_two_batches_ahead_of_its_reader() {
        let ahead = Ahead::<u32>::default();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        ahead
            .start("test-ahead", 2, move |job| tx.lock().send(job).unwrap())
            .unwrap();
        let inbox_id = MailboxId::new("INBOX");
        // Nothing is due before the reader fetched anything itself.
        assert_eq!(ahead.due(&inbox(1)), None);
        ahead.fetched_to(&inbox(1), Uid(64));
        assert_eq!(ahead.due(&inbox(1)), Some(Uid(64)));
        assert_eq!(ahead.due(&inbox(2)), None, "taken until sent");
        ahead.send(&inbox_id, Uid(65), Uid(128), 1);
        // The second batch ahead goes at once...
        assert_eq!(ahead.due(&inbox(2)), Some(Uid(128)));
        ahead.send(&inbox_id, Uid(129), Uid(192), 2);
        let wait = Duration::from_secs(10);
        let mut got = [
            rx.recv_timeout(wait).unwrap(),
            rx.recv_timeout(wait).unwrap(),
        ];
        got.sort();
        assert_eq!(got, [1, 2]);
        // ... and the third when the reader gets to the first.
        assert_eq!(ahead.due(&inbox(64)), None, "the reader is not there yet");
        assert_eq!(ahead.due(&inbox(65)), Some(Uid(192)));
        ahead.send(&inbox_id, Uid(193), Uid(256), 3);
        assert_eq!(ahead.due(&inbox(128)), None);
        assert_eq!(ahead.due(&inbox(129)), Some(Uid(256)));
        // Another UIDVALIDITY is another mailbox's walk.
        ahead.fetched_to(&inbox(200), Uid(263));
        let other = MessageRef {
            validity: UidValidity(8),
            ..inbox(200)
        };
        assert_eq!(ahead.due(&other), None);
    }

    #[test]
    fn with_no_thread_nothing_is_due() {
        let ahead = Ahead::<u32>::default();
        ahead.start("test-ahead", 0, |_| {}).unwrap();
        ahead.fetched_to(&inbox(1), Uid(64));
        assert_eq!(ahead.due(&inbox(1)), None, "the walk fetches as it goes");
    }

    #[test]
    fn a_batch_the_threads_cannot_take_is_due_again() {
        let ahead = Ahead::<u32>::default();
        let (took, taken) = mpsc::channel::<u32>();
        let (release, blocked) = mpsc::channel::<()>();
        let (took, blocked) = (Mutex::new(took), Mutex::new(blocked));
        ahead
            .start("test-ahead", 1, move |job| {
                took.lock().send(job).unwrap();
                let _ = blocked.lock().recv();
            })
            .unwrap();
        let inbox_id = MailboxId::new("INBOX");
        ahead.fetched_to(&inbox(1), Uid(1));
        assert_eq!(ahead.due(&inbox(2)), Some(Uid(1)));
        ahead.send(&inbox_id, Uid(2), Uid(2), 0);
        assert_eq!(taken.recv_timeout(Duration::from_secs(10)), Ok(0));
        // The thread holds the first; the second waits behind it...
        assert_eq!(ahead.due(&inbox(3)), Some(Uid(2)));
        ahead.send(&inbox_id, Uid(3), Uid(3), 1);
        // ... and the third does not fit: it is due again at the next message.
        assert_eq!(ahead.due(&inbox(4)), Some(Uid(3)));
        ahead.send(&inbox_id, Uid(4), Uid(4), 2);
        assert_eq!(ahead.due(&inbox(5)), Some(Uid(3)));
        for _ in 0..2 {
            let _ = release.send(());
        }
    }

    #[test]
    fn a_reader_waits_for_what_is_claimed_and_claims_skip_what_is_coming() {
        let coming = Arc::new(Coming::<u32>::default());
        let claim = coming.claim([1, 2, 3]);
        assert_eq!(claim.keys(), [1, 2, 3]);
        let second = coming.claim([3, 4]);
        assert_eq!(second.keys(), [4], "3 is on its way already");
        drop(second);
        assert!(!coming.contains(&4));
        let waiter = {
            let coming = Arc::clone(&coming);
            std::thread::spawn(move || coming.wait(&2).unwrap())
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished(), "waits while the fetch is under way");
        drop(claim);
        assert!(waiter.join().unwrap(), "there was a fetch to wait for");
        assert!(!coming.wait(&2).unwrap(), "nothing on its way any more");
    }
}
