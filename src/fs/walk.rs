//! Telling a walk from random access: when messages of a mailbox are visited one after
//! another in listing order (`find`, `grep -r`), the next ones are worth fetching in the
//! same request. One detector serves both the structure and the body read-ahead.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::store::{MailboxId, Uid};

/// Which kind of visit is being followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Walk {
    /// Message directories opened or looked into (their BODYSTRUCTUREs).
    Structures,
    /// Whole messages read from their first byte (message.eml).
    Bodies,
    /// Text bodies rendered for their size (`ls -lR`, `rsync` stat'ing every file).
    TextSizes,
}

/// The last message visited, per mailbox and kind of walk.
#[derive(Default)]
pub struct WalkDetector {
    last: Mutex<HashMap<(Walk, MailboxId), Uid>>,
}

impl WalkDetector {
    /// Records a visit of `uid` and says whether it continues a walk: whether the message
    /// visited before it is the one that `previous_in_listing` (the UID listed just before
    /// `uid`) names.
    pub fn visit(
        &self,
        walk: Walk,
        mailbox: &MailboxId,
        uid: Uid,
        previous_in_listing: Option<Uid>,
    ) -> bool {
        let before = self.last.lock().insert((walk, mailbox.clone()), uid);
        previous_in_listing.is_some() && before == previous_in_listing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_in_listing_order_are_a_walk_and_jumps_are_not() {
        let detector = WalkDetector::default();
        let inbox = MailboxId::new("INBOX");
        assert!(!detector.visit(Walk::Structures, &inbox, Uid(1), None));
        assert!(detector.visit(Walk::Structures, &inbox, Uid(2), Some(Uid(1))));
        assert!(detector.visit(Walk::Structures, &inbox, Uid(5), Some(Uid(2))));
        assert!(!detector.visit(Walk::Structures, &inbox, Uid(9), Some(Uid(8))));
        // Each kind of walk and each mailbox is followed on its own.
        assert!(!detector.visit(Walk::Bodies, &inbox, Uid(10), Some(Uid(9))));
        let other = MailboxId::new("Other");
        assert!(!detector.visit(Walk::Structures, &other, Uid(10), Some(Uid(9))));
    }
}
