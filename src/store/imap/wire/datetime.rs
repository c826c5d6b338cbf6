//! INTERNALDATE's `date-time`: `"dd-Mon-yyyy hh:mm:ss +zzzz"`
//! ([RFC 3501 §9](https://www.rfc-editor.org/rfc/rfc3501#section-9)), read from FETCH answers
//! and written for APPEND.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01: (year, month 1-12, day 1-31).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses `dd-Mon-yyyy hh:mm:ss +zzzz` (the day may be space-padded). A time before 1970
/// is 1970-01-01; anything malformed is `None`.
pub fn parse_date_time(text: &str) -> Option<SystemTime> {
    let text = text.trim_start();
    let (date, rest) = text.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let mut d = date.split('-');
    let day: u32 = d.next()?.parse().ok()?;
    let month_name = d.next()?;
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month_name))? as u32
        + 1;
    // Four digits, as RFC 3501 has it; a longer year would overflow the seconds below.
    let year: i64 = d.next()?.parse().ok().filter(|y| (1..=9999).contains(y))?;
    if d.next().is_some() || !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    let mut t = time.split(':');
    let mut field = |max: i64| -> Option<i64> {
        let v: i64 = t.next()?.parse().ok()?;
        (0..=max).contains(&v).then_some(v)
    };
    let (h, m, s) = (field(23)?, field(59)?, field(60)?);
    let zone = zone.as_bytes();
    if t.next().is_some() || zone.len() != 5 || !zone[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sign = match zone[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = |d: &[u8]| i64::from(d[0] - b'0') * 10 + i64::from(d[1] - b'0');
    let (zh, zm) = (digits(&zone[1..3]), digits(&zone[3..5]));
    let offset = sign * (zh * 3600 + zm * 60);
    let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s - offset;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// `dd-Mon-yyyy hh:mm:ss +0000` in UTC, without the quotes.
pub fn format_date_time(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{day:02}-{}-{year:04} {:02}:{:02}:{:02} +0000",
        MONTHS[month as usize - 1],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn dovecot_dates_parse_with_their_zone() {
        assert_eq!(
            parse_date_time("04-Dec-2026 14:17:41 +0000"),
            Some(at(1_796_393_861))
        );
        assert_eq!(
            parse_date_time(" 1-Mar-2023 10:00:00 +0100"),
            Some(at(1_677_661_200))
        );
        assert_eq!(
            parse_date_time("29-Feb-2000 01:30:00 +0130"),
            Some(at(951_782_400))
        );
        assert_eq!(parse_date_time("31-Dec-1969 23:00:00 +0000"), Some(at(0)));
    }

    #[test]
    fn malformed_dates_are_none() {
        for bad in [
            "",
            "yesterday",
            "30-Feb-2023 10:00:00 +0000",
            "01-Foo-2023 10:00:00 +0000",
            "01-Mar-2023 24:00:00 +0000",
            "01-Mar-2023 10:00 +0000",
            "01-Mar-2023 10:00:00 0000",
            "01-Mar-2023 10:00:00 +00000",
            "01-Mar-2023-1 10:00:00 +0000",
            "01-Mar-2023 10:00:00 +\u{e9}12",
            // Years past four digits overflowed the seconds in a debug build.
            "01-Jan-300000000000 00:00:00 +0000",
            "01-Jan-9223372036854775807 00:00:00 +0000",
            "01-Jan-0 00:00:00 +0000",
        ] {
            assert_eq!(parse_date_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for secs in [0, 951_782_400, 1_677_661_200, 1_796_393_861, 4_102_444_799] {
            let text = format_date_time(at(secs));
            assert_eq!(parse_date_time(&text), Some(at(secs)), "{text}");
        }
        assert_eq!(
            format_date_time(at(1_677_661_200)),
            "01-Mar-2023 09:00:00 +0000"
        );
    }
}
