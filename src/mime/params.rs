//! MIME parameter values: RFC 2231 extended and continued parameters, and part file names.

use super::decode::{hex_value, text_to_utf8};
use super::header::decode_header;
use crate::store::PartHeader;

/// The value of parameter `name` in `params`, decoded to text.
///
/// Parameter names are compared case-insensitively. Looked for, in this order:
/// 1. RFC 2231 continuations `name*0`, `name*0*`, `name*1*`, ...
///    ([RFC 2231 §3](https://www.rfc-editor.org/rfc/rfc2231#section-3)), assembled in index
///    order up to the first missing index; `*`-marked segments are percent-decoded and the
///    first segment may carry `charset'language'`
///    ([§4](https://www.rfc-editor.org/rfc/rfc2231#section-4)).
/// 2. An extended value `name*=charset'language'percent-encoded`.
/// 3. The plain `name=value`, with any RFC 2047 encoded-words in it decoded (mailers wrongly
///    send those inside quoted strings) and raw 8-bit bytes read as UTF-8.
///
/// The extended forms come first because a mailer that sends both means the plain one as an
/// ASCII fallback for old readers.
pub fn param_value(params: &[(String, String)], name: &str) -> Option<String> {
    continued_value(params, name)
        .or_else(|| extended_value(params, name))
        .or_else(|| {
            params
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| decode_header(value.as_bytes()))
        })
}

/// The RFC 2231 §4 `name*` form.
fn extended_value(params: &[(String, String)], name: &str) -> Option<String> {
    let (_, value) = params.iter().find(|(key, _)| {
        key.strip_suffix('*')
            .is_some_and(|base| base.eq_ignore_ascii_case(name))
    })?;
    let (charset, encoded) = split_charset(value);
    Some(to_text(charset, &percent_decode(encoded)))
}

/// The RFC 2231 §3 `name*0`, `name*1*`, ... form.
fn continued_value(params: &[(String, String)], name: &str) -> Option<String> {
    // (index, is extended, value)
    let mut segments: Vec<(u32, bool, &str)> = params
        .iter()
        .filter_map(|(key, value)| {
            let (base, rest) = key.split_once('*')?;
            if !base.eq_ignore_ascii_case(name) {
                return None;
            }
            let (digits, extended) = match rest.strip_suffix('*') {
                Some(digits) => (digits, true),
                None => (rest, false),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((digits.parse().ok()?, extended, value.as_str()))
        })
        .collect();
    segments.sort_by_key(|&(index, _, _)| index);
    segments.dedup_by_key(|&mut (index, _, _)| index);
    if segments.first().map(|&(index, _, _)| index) != Some(0) {
        return None;
    }
    let mut charset = None;
    let mut bytes = Vec::new();
    for (position, &(index, extended, value)) in segments.iter().enumerate() {
        if usize::try_from(index).ok() != Some(position) {
            break; // RFC 2231 §3: a gap ends the value.
        }
        if !extended {
            bytes.extend_from_slice(value.as_bytes());
        } else if index == 0 {
            let (first_charset, encoded) = split_charset(value);
            charset = first_charset;
            bytes.extend_from_slice(&percent_decode(encoded));
        } else {
            bytes.extend_from_slice(&percent_decode(value));
        }
    }
    Some(to_text(charset, &bytes))
}

/// Split `charset'language'rest` into the charset (if non-empty) and the rest. A value without
/// the two quotes is all rest.
fn split_charset(value: &str) -> (Option<&str>, &str) {
    let mut pieces = value.splitn(3, '\'');
    match (pieces.next(), pieces.next(), pieces.next()) {
        (Some(charset), Some(_language), Some(rest)) => {
            (Some(charset).filter(|c| !c.is_empty()), rest)
        }
        _ => (None, value),
    }
}

/// `%XX` to bytes; a malformed `%` is kept as written.
fn percent_decode(encoded: &str) -> Vec<u8> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = (bytes.get(i + 1).copied().and_then(hex_value))
                .zip(bytes.get(i + 2).copied().and_then(hex_value));
            if let Some((h, l)) = hex {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Bytes in `charset` (unknown or none: UTF-8 if valid, else windows-1252) to a string.
fn to_text(charset: Option<&str>, bytes: &[u8]) -> String {
    String::from_utf8_lossy(&text_to_utf8(charset, bytes)).into_owned()
}

/// The file name a part carries, decoded but not yet sanitised: the Content-Disposition
/// `filename` parameter, else the Content-Type `name` parameter
/// ([RFC 2183 §2.3](https://www.rfc-editor.org/rfc/rfc2183#section-2.3)). A name that is empty
/// or all whitespace counts as none.
pub fn part_file_name(header: &PartHeader) -> Option<String> {
    let usable = |name: String| Some(name).filter(|n| !n.trim().is_empty());
    param_value(&header.disposition_params, "filename")
        .and_then(usable)
        .or_else(|| param_value(&header.params, "name").and_then(usable))
}

/// True if the part is an attachment: `Content-Disposition: attachment`
/// ([RFC 2183 §2.2](https://www.rfc-editor.org/rfc/rfc2183#section-2.2)). A file name alone
/// does not make one: `inline; filename=notes.txt` is meant to be shown in the message.
pub fn is_attachment(header: &PartHeader) -> bool {
    header
        .disposition
        .as_deref()
        .is_some_and(|d| d.trim().eq_ignore_ascii_case("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn plain_value_case_insensitive_name() {
        let p = params(&[("NAME", "report.pdf")]);
        assert_eq!(param_value(&p, "name").as_deref(), Some("report.pdf"));
        assert_eq!(param_value(&p, "filename"), None);
    }

    #[test]
    fn rfc2231_extended_value() {
        let p = params(&[("filename*", "utf-8''%E2%82%AC.pdf")]);
        assert_eq!(param_value(&p, "filename").as_deref(), Some("€.pdf"));
        let p = params(&[("FILENAME*", "iso-8859-1'fr'caf%E9.txt")]);
        assert_eq!(param_value(&p, "filename").as_deref(), Some("café.txt"));
    }

    #[test]
    fn rfc2231_extended_beats_plain_fallback() {
        let p = params(&[
            ("filename", "EUR.pdf"),
            ("filename*", "utf-8''%E2%82%AC.pdf"),
        ]);
        assert_eq!(param_value(&p, "filename").as_deref(), Some("€.pdf"));
    }

    #[test]
    fn rfc2231_continuations_out_of_order_and_mixed() {
        let p = params(&[
            ("filename*1*", "%82%AC%20"),
            ("filename*0*", "utf-8''long%E2"),
            ("Filename*2", "name.pdf"),
        ]);
        assert_eq!(
            param_value(&p, "filename").as_deref(),
            Some("long€ name.pdf")
        );
    }

    #[test]
    fn rfc2231_plain_continuations() {
        // RFC 2231 §3 example.
        let p = params(&[
            ("url*0", "ftp://"),
            ("url*1", "cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"),
        ]);
        assert_eq!(
            param_value(&p, "url").as_deref(),
            Some("ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar")
        );
    }

    #[test]
    fn rfc2231_gap_ends_value() {
        let p = params(&[("name*0", "a"), ("name*1", "b"), ("name*3", "d")]);
        assert_eq!(param_value(&p, "name").as_deref(), Some("ab"));
    }

    #[test]
    fn rfc2231_malformed_percent_is_kept() {
        let p = params(&[("filename*", "utf-8''100%.txt%4")]);
        assert_eq!(param_value(&p, "filename").as_deref(), Some("100%.txt%4"));
    }

    #[test]
    fn rfc2047_inside_plain_value() {
        let p = params(&[("name", "=?UTF-8?B?0J7RgtGH0LXRgi5wZGY=?=")]);
        assert_eq!(param_value(&p, "name").as_deref(), Some("Отчет.pdf"));
        let p = params(&[("filename", "=?iso-8859-1?Q?r=E9sum=E9?= 2024.doc")]);
        assert_eq!(
            param_value(&p, "filename").as_deref(),
            Some("résumé 2024.doc")
        );
    }

    #[test]
    fn file_name_prefers_disposition_then_content_type() {
        let mut header = PartHeader {
            media_type: "application".into(),
            subtype: "pdf".into(),
            params: params(&[("name", "from-type.pdf")]),
            disposition: Some("attachment".into()),
            disposition_params: params(&[("filename", "from-disposition.pdf")]),
        };
        assert_eq!(
            part_file_name(&header).as_deref(),
            Some("from-disposition.pdf")
        );
        header.disposition_params = params(&[("filename", "  ")]);
        assert_eq!(part_file_name(&header).as_deref(), Some("from-type.pdf"));
        header.params.clear();
        assert_eq!(part_file_name(&header), None);
    }

    #[test]
    fn attachment_by_disposition_only() {
        let mut header = PartHeader {
            media_type: "text".into(),
            subtype: "plain".into(),
            ..PartHeader::default()
        };
        assert!(!is_attachment(&header));
        header.disposition = Some("inline".into());
        assert!(!is_attachment(&header));
        header.disposition = Some("ATTACHMENT".into());
        assert!(is_attachment(&header));
        // A name is no disposition: inline or unsaid, the part is shown in the message.
        header.disposition = Some("inline".into());
        header.disposition_params = params(&[("filename", "notes.txt")]);
        assert!(!is_attachment(&header));
        header.disposition = None;
        header.params = params(&[("name", "notes.txt")]);
        assert!(!is_attachment(&header));
    }
}
