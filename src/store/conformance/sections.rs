//! Reading every message both ways: structures, and the bytes of the whole message and of
//! every section its structure has (and a few it has not), whole and in ranges.

use std::collections::HashMap;

use super::{compare_listing, Pair, Report};
use crate::store::{
    BodyPart, ByteRange, MailStore, MailboxId, MessageStructure, PartItem, PartValue, Section,
    Transfer, Uid, UidValidity,
};

/// Messages whose BODYSTRUCTURE today's IMAP store cannot read, with why. Their bytes are
/// still compared; their structure is not, and that they still fail is checked, so that an
/// entry that no longer applies is noticed.
const REAL_STORE_CANNOT_READ: &[(&str, &str)] = &[];

/// Messages whose decoded parts (BINARY) the memory store does not yet give as Dovecot
/// 2.3.19 does. Checked both ways, so that a fix in the memory store is noticed.
const MEMORY_BINARY_DIFFERS: &[(&str, &str)] = &[
    (
        "bodies/no-mime-version-qp.eml",
        "Dovecot's BINARY decodes quoted-printable in a message without MIME-Version; the \
         memory store gives the part as stored",
    ),
    (
        "stress nul-bytes",
        "Dovecot's BINARY gives NUL bytes back as they are stored; the memory store gives \
         0x80 for each, as Dovecot's BODY does",
    ),
];

/// Why the IMAP store cannot read the structure of the message called `name`, if it cannot.
fn cannot_read(name: &str) -> Option<&'static str> {
    REAL_STORE_CANNOT_READ
        .iter()
        .find_map(|(n, why)| (*n == name).then_some(*why))
}

/// Every section number of a message with this structure that names a part, in the order
/// a walk meets them: `BODY[1]` of a single-part message is its body, the parts of a
/// multipart are numbered from 1 under its own number, and a message/rfc822 part's own
/// number is the encapsulated message, under which its body is numbered as a message's
/// ([RFC 3501 §6.4.5](https://www.rfc-editor.org/rfc/rfc3501#section-6.4.5)). Also, in
/// `absent`, a number just past each multipart's last part and just under each leaf,
/// which name nothing.
fn sections(body: &BodyPart, present: &mut Vec<Section>, absent: &mut Vec<Section>) {
    message_body(body, &Section::whole(), present, absent);
}

/// The sections of a message's body whose message is numbered `number`.
fn message_body(
    body: &BodyPart,
    number: &Section,
    present: &mut Vec<Section>,
    absent: &mut Vec<Section>,
) {
    match body {
        BodyPart::Multipart { children, .. } => {
            for (i, child) in (1..).zip(children) {
                part(child, number.child(i), present, absent);
            }
            absent.push(number.child(children.len() as u32 + 1));
        }
        single => part(single, number.child(1), present, absent),
    }
}

/// The sections of a body part numbered `number`, itself included.
fn part(body: &BodyPart, number: Section, present: &mut Vec<Section>, absent: &mut Vec<Section>) {
    present.push(number.clone());
    match body {
        BodyPart::Leaf { .. } => absent.push(number.child(1)),
        BodyPart::Multipart { children, .. } => {
            for (i, child) in (1..).zip(children) {
                part(child, number.child(i), present, absent);
            }
            absent.push(number.child(children.len() as u32 + 1));
        }
        BodyPart::Message { body, .. } => message_body(body, &number, present, absent),
    }
}

/// Whether `section` of a message with this structure is a leaf (not a multipart, not a
/// message/rfc822), i.e. one whose decoded form means something.
fn is_leaf(body: &BodyPart, section: &Section) -> bool {
    fn in_message(body: &BodyPart, rest: &[u32]) -> Option<bool> {
        match body {
            BodyPart::Multipart { children, .. } => {
                let (&first, rest) = rest.split_first()?;
                in_part(children.get(first.checked_sub(1)? as usize)?, rest)
            }
            single => match rest.split_first()? {
                (1, rest) => in_part(single, rest),
                _ => None,
            },
        }
    }
    fn in_part(body: &BodyPart, rest: &[u32]) -> Option<bool> {
        if rest.is_empty() {
            return Some(matches!(body, BodyPart::Leaf { .. }));
        }
        match body {
            BodyPart::Leaf { .. } => None,
            BodyPart::Multipart { children, .. } => {
                let (&first, rest) = rest.split_first()?;
                in_part(children.get(first.checked_sub(1)? as usize)?, rest)
            }
            BodyPart::Message { body, .. } => in_message(body, rest),
        }
    }
    in_message(body, &section.0).unwrap_or(false)
}

/// The ranges asked of a section `len` bytes long: its start, a long run from near the
/// start, across its end, at its end, and well past it.
fn ranges(len: u64) -> Vec<ByteRange> {
    let range = |offset, len| ByteRange { offset, len };
    vec![
        range(0, 10),
        range(5, 100_000),
        range(len.saturating_sub(3), 10),
        range(len, 10),
        range(len + 100, 10),
    ]
}

/// One bytes item.
fn bytes(section: &Section, transfer: Transfer, range: Option<ByteRange>) -> PartItem {
    PartItem::Bytes {
        section: section.clone(),
        transfer,
        range,
    }
}

/// Both stores' answers to the same `fetch_parts`, keyed by UID and item.
type Answers = HashMap<(Uid, PartItem), PartValue>;

fn fetch_both(
    pair: &Pair,
    mailbox: &MailboxId,
    validity: (UidValidity, UidValidity),
    wanted: &[(Uid, Vec<PartItem>)],
) -> (Answers, Answers) {
    let collect = |answers: Vec<(Uid, PartItem, PartValue)>| -> Answers {
        answers
            .into_iter()
            .map(|(uid, item, value)| ((uid, item), value))
            .collect()
    };
    let real = pair.on_dovecot(
        &format!("fetch_parts in {mailbox}"),
        pair.real.fetch_parts(mailbox, validity.0, wanted),
    );
    let memory = pair
        .memory
        .fetch_parts(mailbox, validity.1, wanted)
        .unwrap_or_else(|e| panic!("memory fetch_parts in {mailbox}: {e}"));
    (collect(real), collect(memory))
}

/// Compares the answers for every item wanted; an item one side left out is `None`.
fn compare_answers(
    pair: &Pair,
    report: &mut Report,
    mailbox: &MailboxId,
    wanted: &[(Uid, Vec<PartItem>)],
    (real, memory): &(Answers, Answers),
) {
    for (uid, items) in wanted {
        for item in items {
            let key = (*uid, item.clone());
            let (r, m) = (real.get(&key), memory.get(&key));
            if r != m {
                report.disagreements.push(format!(
                    "{mailbox} {} {item:?}: {}",
                    pair.name(mailbox, *uid),
                    describe_difference(r, m)
                ));
            }
        }
    }
}

/// Where two answers part, in a few readable bytes.
fn describe_difference(real: Option<&PartValue>, memory: Option<&PartValue>) -> String {
    match (real, memory) {
        (Some(PartValue::Bytes(r)), Some(PartValue::Bytes(m))) => {
            let at = r.iter().zip(m).take_while(|(a, b)| a == b).count();
            let around = |b: &[u8]| {
                let start = at.saturating_sub(20);
                String::from_utf8_lossy(&b[start..(at + 40).min(b.len())]).into_owned()
            };
            format!(
                "Dovecot has {} bytes, memory {}; first difference at {at}: Dovecot {:?}, memory {:?}",
                r.len(),
                m.len(),
                around(r),
                around(m)
            )
        }
        (r, m) => format!("Dovecot {r:?}, memory {m:?}"),
    }
}

/// Compares one mailbox's listing, structures and every section of every message.
pub(super) fn compare_mailbox(pair: &Pair, report: &mut Report, mailbox: &MailboxId) {
    let (real, memory) = compare_listing(pair, report, mailbox);
    let validity = (real.uid_validity, memory.uid_validity);
    let uids: Vec<Uid> = real.messages.iter().map(|m| m.uid).collect();
    report.messages += uids.len();
    let (readable, unreadable): (Vec<Uid>, Vec<Uid>) = uids
        .iter()
        .partition(|&&uid| cannot_read(&pair.name(mailbox, uid)).is_none());
    let real_structures = pair.on_dovecot(
        &format!("body_structures in {mailbox}"),
        pair.real.body_structures(mailbox, validity.0, &readable),
    );
    let memory_structures = pair
        .memory
        .body_structures(mailbox, validity.1, &uids)
        .expect("memory BODYSTRUCTURE");
    let memory_by_uid: HashMap<Uid, &MessageStructure> =
        memory_structures.iter().map(|s| (s.uid, s)).collect();
    for r in &real_structures {
        let what = format!("{mailbox} {} structure and size", pair.name(mailbox, r.uid));
        report.check(&what, &Some(r), &memory_by_uid.get(&r.uid).copied());
    }
    report.check(
        &format!("{mailbox} structures answered"),
        &uids.len(),
        &memory_structures.len(),
    );
    // Where the IMAP store cannot read Dovecot's answer, the bytes are still compared,
    // section by section as the memory store numbers them.
    let mut structures: Vec<&MessageStructure> = real_structures.iter().collect();
    for uid in unreadable {
        let name = pair.name(mailbox, uid);
        if pair
            .real
            .body_structures(mailbox, validity.0, &[uid])
            .is_ok()
        {
            report.disagreements.push(format!(
                "{name}: the IMAP store now reads its BODYSTRUCTURE; take it out of \
                 REAL_STORE_CANNOT_READ so that its structure is compared"
            ));
        }
        structures.extend(memory_by_uid.get(&uid).copied());
    }

    // The whole message and every section, whole; sections that name nothing too.
    let mut whole: Vec<(Uid, Vec<PartItem>)> = Vec::new();
    let mut leaves: Vec<(Uid, Vec<Section>)> = Vec::new();
    for structure in structures {
        let (mut present, mut absent) = (Vec::new(), Vec::new());
        sections(&structure.body, &mut present, &mut absent);
        report.sections += present.len();
        report.absent_sections += absent.len();
        let mut items = vec![bytes(&Section::whole(), Transfer::Encoded, None)];
        items.extend(
            present
                .iter()
                .chain(&absent)
                .map(|s| bytes(s, Transfer::Encoded, None)),
        );
        whole.push((structure.uid, items));
        let leaf_sections = present
            .into_iter()
            .filter(|s| is_leaf(&structure.body, s))
            .collect();
        leaves.push((structure.uid, leaf_sections));
    }
    let answers = fetch_both(pair, mailbox, validity, &whole);
    compare_answers(pair, report, mailbox, &whole, &answers);

    // Ranges of each, sized by Dovecot's answer.
    let mut ranged: Vec<(Uid, Vec<PartItem>)> = Vec::new();
    for (uid, items) in &whole {
        let mut asked = Vec::new();
        for item in items {
            let PartItem::Bytes { section, .. } = item else {
                continue;
            };
            let Some(PartValue::Bytes(full)) = answers.0.get(&(*uid, item.clone())) else {
                continue;
            };
            for range in ranges(full.len() as u64) {
                asked.push(bytes(section, Transfer::Encoded, Some(range)));
            }
        }
        report.ranges += asked.len();
        ranged.push((*uid, asked));
    }
    let answers = fetch_both(pair, mailbox, validity, &ranged);
    compare_answers(pair, report, mailbox, &ranged, &answers);

    // Decoded bytes and sizes of every leaf, once the IMAP store can ask for them.
    if pair.real.capabilities().binary {
        let decoded: Vec<(Uid, Vec<PartItem>)> = leaves
            .into_iter()
            .map(|(uid, sections)| {
                let items: Vec<PartItem> = sections
                    .iter()
                    .flat_map(|s| {
                        [
                            bytes(s, Transfer::Decoded, None),
                            PartItem::DecodedSize(s.clone()),
                        ]
                    })
                    .collect();
                (uid, items)
            })
            .collect();
        report.decoded += decoded.iter().map(|(_, items)| items.len()).sum::<usize>();
        let answers = fetch_both(pair, mailbox, validity, &decoded);
        let mut differences = Report::default();
        compare_answers(pair, &mut differences, mailbox, &decoded, &answers);
        for (name, why) in MEMORY_BINARY_DIFFERS {
            if !decoded
                .iter()
                .any(|(uid, _)| pair.name(mailbox, *uid) == *name)
            {
                continue;
            }
            let before = differences.disagreements.len();
            differences
                .disagreements
                .retain(|d| !d.contains(&format!(" {name} ")));
            if differences.disagreements.len() == before {
                report.disagreements.push(format!(
                    "{name}: the memory store now decodes as Dovecot does; take it out of \
                     MEMORY_BINARY_DIFFERS ({why})"
                ));
            }
        }
        report.disagreements.extend(differences.disagreements);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbering the comparison relies on, on a structure small enough to check by hand.
    #[test]
    fn sections_are_numbered_as_rfc_3501_numbers_them() {
        use crate::store::{PartHeader, TransferEncoding};
        let leaf = || BodyPart::Leaf {
            header: PartHeader::default(),
            encoding: TransferEncoding::SevenBit,
            octets: 0,
        };
        let message = |body: BodyPart| BodyPart::Message {
            header: PartHeader::default(),
            encoding: TransferEncoding::SevenBit,
            octets: 0,
            subject: None,
            body: Box::new(body),
        };
        let multipart = |children: Vec<BodyPart>| BodyPart::Multipart {
            header: PartHeader::default(),
            children,
        };
        let root = multipart(vec![
            leaf(),
            message(multipart(vec![leaf(), leaf()])),
            message(leaf()),
        ]);
        let numbers = |body: &BodyPart| {
            let (mut present, mut absent) = (Vec::new(), Vec::new());
            sections(body, &mut present, &mut absent);
            let show =
                |list: Vec<Section>| list.iter().map(ToString::to_string).collect::<Vec<_>>();
            (show(present), show(absent))
        };
        let (present, absent) = numbers(&root);
        assert_eq!(present, ["1", "2", "2.1", "2.2", "3", "3.1"]);
        assert_eq!(absent, ["1.1", "2.1.1", "2.2.1", "2.3", "3.1.1", "4"]);
        let leaves: Vec<bool> = ["1", "2", "2.1", "3", "3.1", "4", "1.1"]
            .iter()
            .map(|s| Section(s.split('.').map(|n| n.parse().unwrap()).collect()))
            .map(|s| is_leaf(&root, &s))
            .collect();
        assert_eq!(leaves, [true, false, true, false, true, false, false]);
        // A single-part message's body is part 1; a top-level message/rfc822 nests under it.
        assert_eq!(numbers(&leaf()), (vec!["1".into()], vec!["1.1".into()]));
        let (present, _) = numbers(&message(multipart(vec![leaf()])));
        assert_eq!(present, ["1", "1.1"]);
    }
}
