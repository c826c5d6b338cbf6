//! `fetch_parts` in as few commands and round trips as possible: messages that want the same
//! items share one `UID FETCH set (...)` of `BODY.PEEK[s]<o.n>`, `BINARY.PEEK[s]<o.n>` and
//! `BINARY.SIZE[s]` items ([RFC 3501 §6.4.5](https://www.rfc-editor.org/rfc/rfc3501#section-6.4.5),
//! [RFC 3516 §4.2](https://www.rfc-editor.org/rfc/rfc3516#section-4.2)), and the commands of
//! different groups are pipelined: sent together, answered in one round trip.
//!
//! An answer is matched to what was asked by its UID and its item's name, section and
//! origin; two items of one command that the answer could not tell apart (the same section
//! and offset with different lengths) go in separate commands.
//!
//! Where the server cannot decode a part, decoded items are made here from the stored bytes
//! (see [`stored_items`] and [`decode_here`]), with the decoder the filesystem core uses.

use super::connection::MAX_RESPONSE_BYTES;
use super::uid_set;
use super::wire::{Command, SectionKind, Untagged};
use crate::store::{
    BodyPart, MessageStructure, PartItem, PartValue, Section, StoreError, StoreResult, Transfer,
    TransferEncoding, Uid,
};

/// Room for the response around each item's bytes.
const ITEM_OVERHEAD: u64 = 4096;

/// One command: these items of these messages.
struct Group {
    uids: Vec<Uid>,
    items: Vec<PartItem>,
}

/// The commands that answer one `fetch_parts` call.
pub struct Plan {
    groups: Vec<Group>,
}

/// How an answer names an item: the kind, the section and the origin it echoes back.
#[derive(PartialEq, Eq)]
enum AnswerKey {
    Size(String),
    Bytes(SectionKind, String, Option<u64>),
}

fn answer_key(item: &PartItem) -> AnswerKey {
    match item {
        PartItem::DecodedSize(section) => AnswerKey::Size(section.to_string()),
        PartItem::Bytes {
            section,
            transfer,
            range,
        } => AnswerKey::Bytes(
            kind(*transfer),
            section.to_string(),
            range.map(|r| r.offset),
        ),
    }
}

fn kind(transfer: Transfer) -> SectionKind {
    match transfer {
        Transfer::Encoded => SectionKind::Body,
        Transfer::Decoded => SectionKind::Binary,
    }
}

/// The FETCH item that asks for `item` (never setting `\Seen`).
fn fetch_item(item: &PartItem) -> String {
    match item {
        PartItem::DecodedSize(section) => format!("BINARY.SIZE[{section}]"),
        PartItem::Bytes {
            section,
            transfer,
            range,
        } => {
            let name = match transfer {
                Transfer::Encoded => "BODY.PEEK",
                Transfer::Decoded => "BINARY.PEEK",
            };
            let partial = range.map_or(String::new(), |r| format!("<{}.{}>", r.offset, r.len));
            format!("{name}[{section}]{partial}")
        }
    }
}

fn is_decoded(item: &PartItem) -> bool {
    matches!(
        item,
        PartItem::DecodedSize(_)
            | PartItem::Bytes {
                transfer: Transfer::Decoded,
                ..
            }
    )
}

/// What to ask instead of `wanted` to decode here: each decoded item becomes its whole
/// section as stored; the rest stays.
pub fn stored_items(wanted: &[(Uid, Vec<PartItem>)]) -> Vec<(Uid, Vec<PartItem>)> {
    wanted
        .iter()
        .map(|(uid, items)| {
            let stored = items
                .iter()
                .map(|item| match item {
                    PartItem::DecodedSize(section)
                    | PartItem::Bytes {
                        section,
                        transfer: Transfer::Decoded,
                        ..
                    } => whole(section),
                    other => other.clone(),
                })
                .collect();
            (*uid, stored)
        })
        .collect()
}

fn whole(section: &Section) -> PartItem {
    PartItem::Bytes {
        section: section.clone(),
        transfer: Transfer::Encoded,
        range: None,
    }
}

/// The part at `section` of a message whose body is `body`
/// ([RFC 3501 §6.4.5](https://www.rfc-editor.org/rfc/rfc3501#section-6.4.5)): a multipart's
/// children are numbered from 1, a single part is part 1, and the parts of an encapsulated
/// message are numbered under the `message/rfc822` part's own number.
fn part_at<'a>(body: &'a BodyPart, section: &Section) -> Option<&'a BodyPart> {
    let mut current = body;
    let mut path = section.0.as_slice();
    loop {
        let (&n, rest) = path.split_first()?;
        current = match current {
            BodyPart::Multipart { children, .. } => children.get((n as usize).checked_sub(1)?)?,
            single if n == 1 => single,
            _ => return None,
        };
        if rest.is_empty() {
            return Some(current);
        }
        path = rest;
        if let BodyPart::Message { body, .. } = current {
            current = body;
        } else if !matches!(current, BodyPart::Multipart { .. }) {
            return None;
        }
    }
}

/// The Content-Transfer-Encoding of the part at `section` (none for a multipart).
fn encoding_at(body: &BodyPart, section: &Section) -> TransferEncoding {
    match part_at(body, section) {
        Some(BodyPart::Leaf { encoding, .. } | BodyPart::Message { encoding, .. }) => {
            encoding.clone()
        }
        _ => TransferEncoding::Binary,
    }
}

/// The answers to `wanted` made from the answers to [`stored_items`] and the messages'
/// structures: decoded bytes and sizes from the stored bytes, decoded here.
pub fn decode_here(
    wanted: &[(Uid, Vec<PartItem>)],
    structures: &[MessageStructure],
    stored: Vec<(Uid, PartItem, PartValue)>,
) -> Vec<(Uid, PartItem, PartValue)> {
    let find = |uid: Uid, item: &PartItem| {
        stored
            .iter()
            .find(|(u, i, _)| *u == uid && i == item)
            .map(|(_, _, v)| v)
    };
    let mut out = Vec::new();
    for (uid, items) in wanted {
        let Some(structure) = structures.iter().find(|s| s.uid == *uid) else {
            continue;
        };
        for item in items {
            let value = match item {
                PartItem::DecodedSize(section)
                | PartItem::Bytes {
                    section,
                    transfer: Transfer::Decoded,
                    ..
                } => {
                    let Some(PartValue::Bytes(raw)) = find(*uid, &whole(section)) else {
                        continue;
                    };
                    item.answer_from_stored(raw, &encoding_at(&structure.body, section))
                }
                other => match find(*uid, other) {
                    Some(value) => value.clone(),
                    None => continue,
                },
            };
            out.push((*uid, item.clone(), value));
        }
    }
    out
}

/// The most an answer for `item` may take.
fn item_budget(item: &PartItem) -> u64 {
    match item {
        PartItem::DecodedSize(_) => ITEM_OVERHEAD,
        PartItem::Bytes { range: Some(r), .. } => r.len.saturating_add(ITEM_OVERHEAD),
        PartItem::Bytes { range: None, .. } => MAX_RESPONSE_BYTES,
    }
}

impl Plan {
    /// Groups the messages by the items they want; decoded items need BINARY.
    pub fn new(wanted: &[(Uid, Vec<PartItem>)], binary: bool) -> StoreResult<Plan> {
        let mut by_items: Vec<(Vec<PartItem>, Vec<Uid>)> = Vec::new();
        for (uid, items) in wanted {
            let mut items: Vec<PartItem> = items.clone();
            items.sort_by_cached_key(fetch_item);
            items.dedup();
            if items.is_empty() {
                continue;
            }
            if items.iter().any(is_decoded) && !binary {
                return Err(StoreError::Unsupported(
                    "decoded fetches need the server's BINARY extension".into(),
                ));
            }
            match by_items.iter_mut().find(|(i, _)| *i == items) {
                Some((_, uids)) if !uids.contains(uid) => uids.push(*uid),
                Some(_) => {}
                None => by_items.push((items, vec![*uid])),
            }
        }
        let mut groups = Vec::new();
        for (items, uids) in by_items {
            // Items one answer cannot tell apart go in separate commands.
            let mut commands: Vec<Vec<PartItem>> = Vec::new();
            for item in items {
                let key = answer_key(&item);
                match commands
                    .iter_mut()
                    .find(|c| c.iter().all(|other| answer_key(other) != key))
                {
                    Some(command) => command.push(item),
                    None => commands.push(vec![item]),
                }
            }
            groups.extend(commands.into_iter().map(|items| Group {
                uids: uids.clone(),
                items,
            }));
        }
        Ok(Plan { groups })
    }

    /// True when nothing is to be fetched.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// True if anything is asked for decoded (BINARY).
    pub fn has_decoded(&self) -> bool {
        self.groups.iter().flat_map(|g| &g.items).any(is_decoded)
    }

    /// The most all the answers together may take.
    pub fn budget(&self) -> u64 {
        self.groups
            .iter()
            .map(|g| {
                let each: u64 = g.items.iter().map(item_budget).sum();
                each.saturating_add(ITEM_OVERHEAD)
                    .saturating_mul(g.uids.len() as u64)
            })
            .fold(ITEM_OVERHEAD, u64::saturating_add)
    }

    /// One `UID FETCH` per group.
    pub fn commands(&self) -> Vec<Command<'static>> {
        self.groups
            .iter()
            .map(|g| {
                let items: Vec<String> = g.items.iter().map(fetch_item).collect();
                Command::new("UID FETCH")
                    .syntax(uid_set(&g.uids))
                    .syntax(format!("(UID {})", items.join(" ")))
            })
            .collect()
    }

    /// Matches the answers to what was asked. An item answered NIL, or a UID the server
    /// did not answer for, is left out; bytes beyond a range asked for are an error.
    pub fn answers(&self, untagged: Vec<Untagged>) -> StoreResult<Vec<(Uid, PartItem, PartValue)>> {
        let mut out: Vec<(Uid, PartItem, PartValue)> = Vec::new();
        for response in untagged {
            let Untagged::Fetch(mut fetch) = response else {
                continue;
            };
            let Some(uid) = fetch.uid.map(Uid) else {
                continue;
            };
            for group in self.groups.iter().filter(|g| g.uids.contains(&uid)) {
                for item in &group.items {
                    if out.iter().any(|(u, i, _)| *u == uid && i == item) {
                        continue;
                    }
                    let value = match item {
                        PartItem::DecodedSize(section) => {
                            fetch.binary_size(&section.to_string()).map(PartValue::Size)
                        }
                        PartItem::Bytes {
                            section,
                            transfer,
                            range,
                        } => {
                            let wanted = (kind(*transfer), section.to_string());
                            let origin = range.map(|r| r.offset);
                            let found = fetch.sections.iter().position(|s| {
                                s.kind == wanted.0
                                    && s.section == wanted.1
                                    && (s.origin == origin
                                        // A server may leave `<0>` out of a range from 0.
                                        || (origin == Some(0) && s.origin.is_none()))
                            });
                            let data = found.and_then(|i| fetch.sections[i].data.take());
                            if let (Some(data), Some(r)) = (&data, range) {
                                if data.len() as u64 > r.len {
                                    return Err(StoreError::Protocol(format!(
                                        "the server sent {} bytes of UID {uid} for a range of {}",
                                        data.len(),
                                        r.len
                                    )));
                                }
                            }
                            data.map(PartValue::Bytes)
                        }
                    };
                    if let Some(value) = value {
                        out.push((uid, item.clone(), value));
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::imap::wire::{parse_response, Response};
    use crate::store::ByteRange;

    fn bytes(section: &[u32], transfer: Transfer, range: Option<(u64, u64)>) -> PartItem {
        PartItem::Bytes {
            section: Section(section.to_vec()),
            transfer,
            range: range.map(|(offset, len)| ByteRange { offset, len }),
        }
    }

    fn command_lines(plan: &Plan) -> Vec<String> {
        plan.groups
            .iter()
            .map(|g| {
                let items: Vec<String> = g.items.iter().map(fetch_item).collect();
                format!("UID FETCH {} (UID {})", uid_set(&g.uids), items.join(" "))
            })
            .collect()
    }

    fn untagged(lines: &[&[u8]]) -> Vec<Untagged> {
        lines
            .iter()
            .map(|l| match parse_response(l).unwrap() {
                Response::Untagged(u) => u,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn messages_wanting_the_same_items_share_one_command() {
        let items = vec![
            bytes(&[2], Transfer::Decoded, Some((0, 4096))),
            PartItem::DecodedSize(Section(vec![2])),
        ];
        let wanted: Vec<(Uid, Vec<PartItem>)> = [3, 4, 5, 9]
            .into_iter()
            .map(|u| (Uid(u), items.clone()))
            .chain([(Uid(7), vec![bytes(&[1], Transfer::Encoded, None)])])
            .collect();
        let plan = Plan::new(&wanted, true).unwrap();
        assert_eq!(
            command_lines(&plan),
            [
                "UID FETCH 3:5,9 (UID BINARY.PEEK[2]<0.4096> BINARY.SIZE[2])",
                "UID FETCH 7 (UID BODY.PEEK[1])",
            ]
        );
    }

    #[test]
    fn items_an_answer_cannot_tell_apart_go_in_separate_commands() {
        let wanted = vec![(
            Uid(1),
            vec![
                bytes(&[1], Transfer::Encoded, Some((0, 10))),
                bytes(&[1], Transfer::Encoded, Some((0, 20))),
                bytes(&[1], Transfer::Decoded, Some((0, 10))),
            ],
        )];
        assert_eq!(
            command_lines(&Plan::new(&wanted, true).unwrap()),
            [
                "UID FETCH 1 (UID BINARY.PEEK[1]<0.10> BODY.PEEK[1]<0.10>)",
                "UID FETCH 1 (UID BODY.PEEK[1]<0.20>)",
            ]
        );
    }

    #[test]
    fn decoded_items_need_binary() {
        let wanted = vec![(Uid(1), vec![PartItem::DecodedSize(Section(vec![1]))])];
        assert!(matches!(
            Plan::new(&wanted, false),
            Err(StoreError::Unsupported(_))
        ));
        assert!(Plan::new(&[(Uid(1), vec![])], false).unwrap().is_empty());
    }

    #[test]
    fn answers_are_matched_by_uid_item_and_origin_and_nil_is_left_out() {
        let decoded = bytes(&[1], Transfer::Decoded, Some((2, 5)));
        let size = PartItem::DecodedSize(Section(vec![1]));
        let whole = bytes(&[], Transfer::Encoded, None);
        let wanted = vec![
            (Uid(1), vec![decoded.clone(), size.clone()]),
            (Uid(2), vec![decoded.clone(), size.clone()]),
            (Uid(3), vec![whole.clone()]),
        ];
        let plan = Plan::new(&wanted, true).unwrap();
        let answers = plan
            .answers(untagged(&[
                b"* 1 FETCH (UID 1 BINARY[1]<2> ~{3}\r\na\0b BINARY.SIZE[1] 14)\r\n",
                b"* 2 FETCH (UID 2 BINARY[1]<2> NIL BINARY.SIZE[1] 0)\r\n",
                b"* 1 FETCH (FLAGS (\\Seen))\r\n",
                b"* 9 FETCH (UID 9 BODY[] {1}\r\nx)\r\n",
                b"* 3 FETCH (UID 3 BODY[] {2}\r\nhi)\r\n",
                b"* 3 FETCH (UID 3 BODY[] {3}\r\nbye)\r\n",
            ]))
            .unwrap();
        assert_eq!(
            answers,
            vec![
                (Uid(1), decoded.clone(), PartValue::Bytes(b"a\0b".to_vec())),
                (Uid(1), size.clone(), PartValue::Size(14)),
                (Uid(2), size, PartValue::Size(0)),
                (Uid(3), whole, PartValue::Bytes(b"hi".to_vec())),
            ]
        );
    }

    #[test]
    fn more_bytes_than_the_range_asked_for_is_an_error() {
        let wanted = vec![(Uid(1), vec![bytes(&[1], Transfer::Encoded, Some((0, 2)))])];
        let plan = Plan::new(&wanted, false).unwrap();
        let err = plan
            .answers(untagged(&[
                b"* 1 FETCH (UID 1 BODY[1]<0> {5}\r\nhello)\r\n",
            ]))
            .unwrap_err();
        assert!(matches!(err, StoreError::Protocol(_)), "{err:?}");
    }

    #[test]
    fn budgets_follow_what_is_asked() {
        let ranged = vec![(
            Uid(1),
            vec![bytes(&[1], Transfer::Encoded, Some((0, 1000)))],
        )];
        let small = Plan::new(&ranged, false).unwrap().budget();
        assert!(small < 20_000, "{small}");
        let whole = vec![(Uid(1), vec![bytes(&[], Transfer::Encoded, None)])];
        assert!(Plan::new(&whole, false).unwrap().budget() >= MAX_RESPONSE_BYTES);
    }

    fn leaf(encoding: TransferEncoding) -> BodyPart {
        BodyPart::Leaf {
            header: crate::store::PartHeader::default(),
            encoding,
            octets: 0,
        }
    }

    fn multipart(children: Vec<BodyPart>) -> BodyPart {
        BodyPart::Multipart {
            header: crate::store::PartHeader::default(),
            children,
        }
    }

    #[test]
    fn sections_are_found_as_rfc_3501_numbers_them() {
        let forwarded = BodyPart::Message {
            header: crate::store::PartHeader::default(),
            encoding: TransferEncoding::SevenBit,
            octets: 0,
            subject: None,
            body: Box::new(multipart(vec![
                leaf(TransferEncoding::EightBit),
                leaf(TransferEncoding::QuotedPrintable),
            ])),
        };
        let body = multipart(vec![
            leaf(TransferEncoding::Base64),
            forwarded,
            multipart(vec![leaf(TransferEncoding::Other("x-uu".into()))]),
        ]);
        let at = |s: &[u32]| encoding_at(&body, &Section(s.to_vec()));
        assert_eq!(at(&[1]), TransferEncoding::Base64);
        assert_eq!(at(&[2]), TransferEncoding::SevenBit);
        assert_eq!(at(&[2, 1]), TransferEncoding::EightBit);
        assert_eq!(at(&[2, 2]), TransferEncoding::QuotedPrintable);
        assert_eq!(at(&[3, 1]), TransferEncoding::Other("x-uu".into()));
        assert!(part_at(&body, &Section(vec![4])).is_none());
        assert!(part_at(&body, &Section(vec![1, 1])).is_none());
        assert!(part_at(&body, &Section(vec![0])).is_none());
        let single = leaf(TransferEncoding::QuotedPrintable);
        assert_eq!(
            encoding_at(&single, &Section(vec![1])),
            TransferEncoding::QuotedPrintable
        );
        assert!(part_at(&single, &Section(vec![2])).is_none());
    }

    #[test]
    fn decoded_items_are_made_from_the_stored_bytes() {
        let structure = MessageStructure {
            uid: Uid(4),
            size: 100,
            body: multipart(vec![
                leaf(TransferEncoding::SevenBit),
                leaf(TransferEncoding::Base64),
            ]),
        };
        let two = Section(vec![2]);
        let wanted = vec![
            (
                Uid(4),
                vec![
                    bytes(&[2], Transfer::Decoded, Some((6, 5))),
                    PartItem::DecodedSize(two.clone()),
                    bytes(&[1], Transfer::Encoded, None),
                ],
            ),
            (Uid(5), vec![PartItem::DecodedSize(two.clone())]),
        ];
        let stored_wanted = stored_items(&wanted);
        assert_eq!(
            stored_wanted[0].1,
            vec![
                whole(&two),
                whole(&two),
                bytes(&[1], Transfer::Encoded, None)
            ]
        );
        // Base64 that ends early, as Dovecot refuses to decode it.
        let stored = vec![
            (
                Uid(4),
                whole(&two),
                PartValue::Bytes(b"aGVsbG8gd29ybGQ".to_vec()),
            ),
            (
                Uid(4),
                bytes(&[1], Transfer::Encoded, None),
                PartValue::Bytes(b"text".to_vec()),
            ),
        ];
        let answers = decode_here(&wanted, &[structure], stored);
        let decoded = crate::mime::decode_transfer(&TransferEncoding::Base64, b"aGVsbG8gd29ybGQ");
        assert_eq!(
            answers,
            vec![
                (
                    Uid(4),
                    bytes(&[2], Transfer::Decoded, Some((6, 5))),
                    PartValue::Bytes(decoded[6..11.min(decoded.len())].to_vec())
                ),
                (
                    Uid(4),
                    PartItem::DecodedSize(two),
                    PartValue::Size(decoded.len() as u64)
                ),
                (
                    Uid(4),
                    bytes(&[1], Transfer::Encoded, None),
                    PartValue::Bytes(b"text".to_vec())
                ),
            ]
        );
    }
}
