//! The search query language: what a name under `.search` means. Users type what notmuch
//! and Gmail taught them (`from:alice invoice -is:read`); `parse` turns it into a
//! `SearchKey` that a store sends as `UID SEARCH` (or evaluates itself), or says what is
//! wrong at which position. Nothing here knows IMAP syntax except the check of `imap:` raw
//! keys, which must not be able to break out of the command they are put into.

use std::fmt;

use crate::store::{Flag, Uid};

/// A calendar date (the day of a message's internal date, as IMAP's `SINCE`/`BEFORE`/`ON`
/// compare it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SearchDate {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl SearchDate {
    /// The date `days` days from the Unix epoch (negative: before it).
    pub fn from_days(days: i64) -> SearchDate {
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        SearchDate { year, month, day }
    }

    /// Days from the Unix epoch to this date.
    pub fn days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// A valid date, or `None`.
    pub fn new(year: i32, month: u32, day: u32) -> Option<SearchDate> {
        let date = SearchDate { year, month, day };
        ((1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month)).then_some(date)
    }

    /// This date moved back by `months` calendar months, the day clamped to the month's end.
    fn months_back(self, months: u32) -> SearchDate {
        let index = i64::from(self.year) * 12 + i64::from(self.month) - 1 - i64::from(months);
        let year = index.div_euclid(12) as i32;
        let month = index.rem_euclid(12) as u32 + 1;
        let day = self.day.min(days_in_month(year, month));
        SearchDate { year, month, day }
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl fmt::Display for SearchDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A header a search key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address {
    From,
    To,
    Cc,
    Bcc,
}

/// A UID range; `last: None` is `*`, the highest UID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UidRange {
    pub first: Uid,
    pub last: Option<Uid>,
}

/// What a search asks for, in domain terms. Strings are what the user typed (any Unicode);
/// a store quotes them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SearchKey {
    /// Every key must match.
    And(Vec<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    Not(Box<SearchKey>),
    /// The header or the body contains the text (IMAP `TEXT`).
    Text(String),
    /// The body contains the text.
    Body(String),
    Subject(String),
    Address(Address, String),
    /// A named header field contains the text (an empty text: the field is present).
    Header(String, String),
    /// The internal date is on or after the day.
    Since(SearchDate),
    /// The internal date is before the day.
    Before(SearchDate),
    /// The internal date is on the day.
    On(SearchDate),
    /// The message has the flag or keyword.
    Flag(Flag),
    /// RFC822.SIZE larger than this many octets.
    Larger(u64),
    /// RFC822.SIZE smaller than this many octets.
    Smaller(u64),
    Uid(UidRange),
    /// Raw IMAP search keys, checked by `check_raw_imap`: atoms, quoted strings and balanced
    /// parentheses, ASCII, no line ends and no literals.
    Raw(String),
    /// A Gmail query for `X-GM-RAW` (servers with `X-GM-EXT-1`).
    Gmail(String),
}

impl SearchKey {
    /// Whether a value in the key is not ASCII (the store then says `CHARSET UTF-8`).
    pub fn needs_utf8(&self) -> bool {
        match self {
            SearchKey::And(keys) => keys.iter().any(SearchKey::needs_utf8),
            SearchKey::Or(a, b) => a.needs_utf8() || b.needs_utf8(),
            SearchKey::Not(k) => k.needs_utf8(),
            SearchKey::Text(s)
            | SearchKey::Body(s)
            | SearchKey::Subject(s)
            | SearchKey::Address(_, s)
            | SearchKey::Header(_, s)
            | SearchKey::Gmail(s) => !s.is_ascii(),
            _ => false,
        }
    }
}

/// What is wrong with a query, and where (a character position, counted from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.position, self.message)
    }
}

impl std::error::Error for QueryError {}

/// The keys a query may use, for error messages.
const KEYS: &str = "from: to: cc: bcc: subject: body: header: since: before: on: is: tag: \
                    larger: smaller: uid: imap: gmail:";

/// Parses `query`; relative dates (`7d`, `2w`, `3m`, `1y`) count back from `today`.
pub fn parse(query: &str, today: SearchDate) -> Result<SearchKey, QueryError> {
    let mut parser = Parser {
        chars: query.chars().collect(),
        at: 0,
        today,
    };
    parser.skip_space();
    if parser.at == parser.chars.len() {
        return Err(parser.error_at(0, "the query is empty"));
    }
    let key = parser.conjunction(0)?;
    parser.skip_space();
    if parser.at < parser.chars.len() {
        return Err(parser.error("a ')' without its '('"));
    }
    Ok(key)
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    today: SearchDate,
}

/// A term before its meaning: a key (if `key:` was written) and a value.
struct Word {
    start: usize,
    key: Option<String>,
    value: String,
    /// Where the value starts (for error positions).
    value_at: usize,
    /// The whole value was a quoted string.
    quoted: bool,
}

impl Parser {
    fn error(&self, message: impl Into<String>) -> QueryError {
        self.error_at(self.at, message)
    }

    fn error_at(&self, at: usize, message: impl Into<String>) -> QueryError {
        QueryError {
            position: at + 1,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    /// Terms side by side, all of which must match; up to the end or a `)` at `depth` > 0.
    fn conjunction(&mut self, depth: usize) -> Result<SearchKey, QueryError> {
        let mut keys = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                None => break,
                Some(')') if depth > 0 => break,
                Some(')') => return Err(self.error("a ')' without its '('")),
                Some(_) => keys.push(self.disjunction(depth)?),
            }
        }
        Ok(match keys.len() {
            1 => keys.pop().expect("one key"),
            _ => SearchKey::And(keys),
        })
    }

    /// `a OR b OR c`.
    fn disjunction(&mut self, depth: usize) -> Result<SearchKey, QueryError> {
        let mut key = self.unary(depth)?;
        loop {
            let save = self.at;
            self.skip_space();
            if self.at_or_keyword() {
                let or_at = self.at;
                self.at += 2;
                self.skip_space();
                match self.peek() {
                    None => return Err(self.error_at(or_at, "nothing after OR")),
                    Some(')') => return Err(self.error_at(or_at, "nothing after OR")),
                    _ => {}
                }
                let right = self.unary(depth)?;
                key = SearchKey::Or(Box::new(key), Box::new(right));
            } else {
                self.at = save;
                return Ok(key);
            }
        }
    }

    /// Whether the input at the cursor is the word `OR` on its own.
    fn at_or_keyword(&self) -> bool {
        self.chars.get(self.at) == Some(&'O')
            && self.chars.get(self.at + 1) == Some(&'R')
            && self
                .chars
                .get(self.at + 2)
                .is_none_or(|c| c.is_whitespace() || *c == '(')
    }

    /// `-term`, `(...)` or a term.
    fn unary(&mut self, depth: usize) -> Result<SearchKey, QueryError> {
        self.skip_space();
        let start = self.at;
        match self.peek() {
            Some('-') => {
                self.at += 1;
                match self.peek() {
                    None => Err(self.error_at(start, "nothing after '-'")),
                    Some(c) if c.is_whitespace() || c == ')' => {
                        Err(self.error_at(start, "nothing after '-'"))
                    }
                    _ => Ok(SearchKey::Not(Box::new(self.unary(depth)?))),
                }
            }
            Some('(') => {
                self.at += 1;
                self.skip_space();
                if self.peek() == Some(')') {
                    return Err(self.error_at(start, "empty parentheses"));
                }
                let inner = self.conjunction(depth + 1)?;
                if self.peek() != Some(')') {
                    return Err(self.error_at(start, "a '(' without its ')'"));
                }
                self.at += 1;
                Ok(inner)
            }
            Some(_) if self.at_or_keyword() => {
                Err(self.error_at(start, "OR needs a term on each side"))
            }
            Some(_) => {
                let word = self.word()?;
                self.meaning(word)
            }
            None => Err(self.error("a term is missing")),
        }
    }

    /// A quoted string at the cursor (which is on the `"`), unescaped.
    fn quoted(&mut self) -> Result<String, QueryError> {
        let start = self.at;
        self.at += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error_at(start, "a '\"' without its closing '\"'")),
                Some('"') => {
                    self.at += 1;
                    return Ok(text);
                }
                Some('\\') if matches!(self.chars.get(self.at + 1), Some('"' | '\\')) => {
                    text.push(self.chars[self.at + 1]);
                    self.at += 2;
                }
                Some(c) => {
                    text.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// Characters up to a space, a parenthesis or the end.
    fn bare(&mut self) -> String {
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == '(' || c == ')' {
                break;
            }
            if c == '"' {
                break;
            }
            text.push(c);
            self.at += 1;
        }
        text
    }

    /// One term: `word`, `"phrase"`, `key:value` or `key:"value"`.
    fn word(&mut self) -> Result<Word, QueryError> {
        let start = self.at;
        if self.peek() == Some('"') {
            let value = self.quoted()?;
            return Ok(Word {
                start,
                key: None,
                value,
                value_at: start + 1,
                quoted: true,
            });
        }
        let text = self.bare();
        let key_end = text
            .find(':')
            .filter(|&i| i > 0 && text[..i].chars().all(|c| c.is_ascii_alphabetic()));
        let Some(colon) = key_end else {
            if self.peek() == Some('"') {
                return Err(self.error("a '\"' inside a word; quote the whole phrase"));
            }
            return Ok(Word {
                start,
                key: None,
                value: text,
                value_at: start,
                quoted: false,
            });
        };
        let key = text[..colon].to_ascii_lowercase();
        let mut value = text[colon + 1..].to_string();
        let mut value_at = start + colon + 1;
        let mut quoted = false;
        if self.peek() == Some('"') {
            // `key:"value"`, or `header:Name:"value"`.
            let rest = self.quoted()?;
            if key == "header" || value.is_empty() {
                quoted = value.is_empty();
                if quoted {
                    value_at += 1;
                }
                value.push_str(&rest);
            } else {
                return Err(self.error("a '\"' inside a value; quote the whole value"));
            }
            if key == "header" && !value.contains(':') {
                return Err(self.error_at(start, "header: needs NAME:VALUE"));
            }
        }
        Ok(Word {
            start,
            key: Some(key),
            value,
            value_at,
            quoted,
        })
    }

    /// What a term asks for.
    fn meaning(&self, word: Word) -> Result<SearchKey, QueryError> {
        let Word {
            start,
            key,
            value,
            value_at,
            quoted,
        } = word;
        let Some(key) = key else {
            if value.is_empty() {
                return Err(self.error_at(start, "an empty phrase"));
            }
            return Ok(SearchKey::Text(value));
        };
        let fail = |message: String| Err(self.error_at(value_at, message));
        if value.is_empty() && !(quoted && key == "header") {
            return Err(self.error_at(start, format!("{key}: needs a value")));
        }
        Ok(match key.as_str() {
            "from" => SearchKey::Address(Address::From, value),
            "to" => SearchKey::Address(Address::To, value),
            "cc" => SearchKey::Address(Address::Cc, value),
            "bcc" => SearchKey::Address(Address::Bcc, value),
            "subject" => SearchKey::Subject(value),
            "body" => SearchKey::Body(value),
            "header" => {
                let Some((name, text)) = value.split_once(':') else {
                    return fail("header: needs NAME:VALUE".into());
                };
                let valid_name = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b':' && b != b'"');
                if !valid_name {
                    return fail(format!("{name:?} is not a header field name"));
                }
                SearchKey::Header(name.to_string(), text.to_string())
            }
            "since" | "before" | "on" => {
                let Some(date) = self.date(&value) else {
                    return fail(format!(
                        "{value:?} is not a date (YYYY-MM-DD, or 7d, 2w, 3m, 1y back from today)"
                    ));
                };
                match key.as_str() {
                    "since" => SearchKey::Since(date),
                    "before" => SearchKey::Before(date),
                    _ => SearchKey::On(date),
                }
            }
            "is" => {
                let (flag, set) = match value.to_ascii_lowercase().as_str() {
                    "unread" => ("\\Seen", false),
                    "read" | "seen" => ("\\Seen", true),
                    "flagged" | "starred" => ("\\Flagged", true),
                    "answered" | "replied" => ("\\Answered", true),
                    "draft" => ("\\Draft", true),
                    "deleted" => ("\\Deleted", true),
                    _ => {
                        return fail(format!(
                        "is:{value} is unknown (unread, read, flagged, answered, draft, deleted)"
                    ))
                    }
                };
                let flag = SearchKey::Flag(Flag::parse(flag).expect("a system flag"));
                if set {
                    flag
                } else {
                    SearchKey::Not(Box::new(flag))
                }
            }
            "tag" => match Flag::parse(&value) {
                Ok(flag) if !value.starts_with('\\') => SearchKey::Flag(flag),
                _ => return fail(format!("{value:?} is not a keyword")),
            },
            "larger" | "smaller" => {
                let Some(size) = size(&value) else {
                    return fail(format!(
                        "{value:?} is not a size (bytes, or with K, M or G)"
                    ));
                };
                if key == "larger" {
                    SearchKey::Larger(size)
                } else {
                    SearchKey::Smaller(size)
                }
            }
            "uid" => match uid_range(&value) {
                Some(range) => SearchKey::Uid(range),
                None => return fail(format!("{value:?} is not a UID or UID range (N, N:M, N:*)")),
            },
            "imap" => match check_raw_imap(&value) {
                Ok(()) => SearchKey::Raw(value),
                Err((at, why)) => return Err(self.error_at(value_at + at, why)),
            },
            "gmail" => SearchKey::Gmail(value),
            _ => {
                return Err(
                    self.error_at(start, format!("unknown key {key}: (the keys are {KEYS})"))
                )
            }
        })
    }

    /// `YYYY-MM-DD`, or a span back from today: `7d`, `2w`, `3m`, `1y`.
    fn date(&self, text: &str) -> Option<SearchDate> {
        if let Some(unit) = text.chars().last().filter(|c| c.is_ascii_alphabetic()) {
            let count: u32 = text[..text.len() - 1].parse().ok()?;
            if count > 100_000 {
                return None;
            }
            let date = match unit.to_ascii_lowercase() {
                'd' => SearchDate::from_days(self.today.days() - i64::from(count)),
                'w' => SearchDate::from_days(self.today.days() - 7 * i64::from(count)),
                'm' => self.today.months_back(count),
                'y' => self.today.months_back(count.checked_mul(12)?),
                _ => return None,
            };
            // An IMAP date has a year of four digits (`since:5000y` is before year 1).
            return (1..=9999).contains(&date.year).then_some(date);
        }
        let mut parts = text.splitn(3, '-');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        let all_digits = [y, m, d]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_digit()));
        if !all_digits {
            return None;
        }
        SearchDate::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
    }
}

/// `1234`, `10K`, `2M`, `1G` (powers of 1024).
fn size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.chars().last()? {
        c if c.is_ascii_digit() => (text, 1),
        c => (
            &text[..text.len() - c.len_utf8()],
            match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return None,
            },
        ),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let size = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    // IMAP's LARGER and SMALLER take a number (RFC 3501: up to 2^32 - 1).
    (size <= u64::from(u32::MAX)).then_some(size)
}

/// `N`, `N:M` or `N:*`.
fn uid_range(text: &str) -> Option<UidRange> {
    let number = |s: &str| -> Option<Uid> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u32>().ok().filter(|&n| n > 0).map(Uid)
    };
    match text.split_once(':') {
        None => {
            let n = number(text)?;
            Some(UidRange {
                first: n,
                last: Some(n),
            })
        }
        Some((a, "*")) => Some(UidRange {
            first: number(a)?,
            last: None,
        }),
        Some((a, b)) => Some(UidRange {
            first: number(a)?,
            last: Some(number(b)?),
        }),
    }
}

/// Checks raw IMAP search keys: atoms, quoted strings and balanced parentheses, all ASCII,
/// no control characters (so no line end), no literal (`{`). What passes cannot end the
/// command it is put into or start another. The error is a byte position and a reason.
pub fn check_raw_imap(raw: &str) -> Result<(), (usize, String)> {
    let bytes = raw.as_bytes();
    let mut open = Vec::new();
    let mut i = 0;
    let mut any = false;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' => {}
            b'(' => open.push(i),
            b')' => {
                if open.pop().is_none() {
                    return Err((i, "a ')' without its '('".into()));
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err((start, "a '\"' without its closing '\"'".into())),
                        Some(b'"') => break,
                        Some(b'\\') if matches!(bytes.get(i + 1), Some(b'"' | b'\\')) => i += 1,
                        Some(b'\\') => return Err((i, "a '\\' that escapes nothing".into())),
                        Some(c) if !c.is_ascii() || c.is_ascii_control() => {
                            return Err((i, "raw IMAP takes ASCII text only".into()))
                        }
                        Some(_) => {}
                    }
                    i += 1;
                }
                any = true;
            }
            b'{' => return Err((i, "raw IMAP may not hold a literal ('{')".into())),
            c if !c.is_ascii() => {
                return Err((
                    i,
                    "raw IMAP takes ASCII only (use the other keys for non-ASCII text)".into(),
                ))
            }
            c if c.is_ascii_control() => {
                return Err((i, "raw IMAP may not hold control characters".into()))
            }
            b'%' | b']' => return Err((i, format!("{:?} is not allowed here", b as char))),
            _ => any = true,
        }
        i += 1;
    }
    if let Some(&at) = open.last() {
        return Err((at, "a '(' without its ')'".into()));
    }
    if !any {
        return Err((0, "imap: needs search keys".into()));
    }
    Ok(())
}

pub mod local;

#[cfg(test)]
mod tests;
