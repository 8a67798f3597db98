//! Calendar dates as people write them and as the store keeps them
//! (`YYYY-MM-DD`), and instants as the Caf's staff read them (local time in
//! [`LOCAL_ZONE`]). Which day it is today is the clock's to say
//! (`Clock::today`); this module only reads, writes and counts dates.
//!
//! Every date a person types — a console filter, a form, a command-line
//! option — goes through [`parse_day`] or [`parse_instant`], so that the
//! same spellings are accepted everywhere: `AAAA-MM-JJ` and `JJ/MM/AAAA`.

use std::sync::OnceLock;

use time::{Date, Month};

use crate::clock::Millis;

/// The zone of the people who read the console: times are shown in it, and
/// a day typed as a period's bound starts at its midnight there. The zone's
/// rules come from the time-zone database bundled in the binary (`jiff`),
/// so a host without `tzdata` shows the same times.
pub const LOCAL_ZONE: &str = "Europe/Paris";

fn local_zone() -> &'static jiff::tz::TimeZone {
    static ZONE: OnceLock<jiff::tz::TimeZone> = OnceLock::new();
    // The database is in the binary: the zone is always there (a test checks it).
    ZONE.get_or_init(|| jiff::tz::TimeZone::get(LOCAL_ZONE).unwrap_or(jiff::tz::TimeZone::UTC))
}

/// A value typed where a date was expected and that is not one. It names
/// no field: the caller does, in the words of its own form or command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "« {value} » n'est pas une date (JJ/MM/AAAA ou AAAA-MM-JJ) / `{value}` is not a date (DD/MM/YYYY or YYYY-MM-DD)"
)]
pub struct NotADate {
    pub value: String,
}

/// A day as a person types it: `AAAA-MM-JJ` (`2026-12-05`) or the French
/// `JJ/MM/AAAA` (`05/12/2026`, also `5/12/2026`); surrounding spaces are
/// ignored, nothing else is (a time after the day is refused, not dropped).
pub fn parse_day(text: &str) -> Result<Date, NotADate> {
    let t = text.trim();
    parse_iso(t).or_else(|| parse_french(t)).ok_or_else(|| NotADate { value: text.trim().to_string() })
}

/// `JJ/MM/AAAA`, the day and the month on one or two digits.
fn parse_french(t: &str) -> Option<Date> {
    let mut parts = t.split('/');
    let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
    let digits =
        |p: &str, min: usize, max: usize| (min..=max).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || !digits(d, 1, 2) || !digits(m, 1, 2) || !digits(y, 4, 4) {
        return None;
    }
    ymd(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// An instant as typed for a period's bound: an RFC 3339 time (exact), a
/// local time `JJ/MM/AAAA HH:MM[:SS]` as the console shows them, or a day
/// (either spelling of [`parse_day`]) meaning its midnight in [`LOCAL_ZONE`].
/// A local time that occurs twice (the autumn change) is the first one; one
/// that does not occur (the spring change) is moved forward by the gap.
pub fn parse_instant(text: &str) -> Option<Millis> {
    let t = text.trim();
    if let Ok(at) = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
        return i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok();
    }
    let (day, clock) = match t.split_once(' ') {
        Some((day, clock)) => (parse_day(day).ok()?, parse_clock(clock.trim())?),
        None => (parse_day(t).ok()?, (0, 0, 0)),
    };
    let date = jiff::civil::Date::new(day.year().try_into().ok()?, u8::from(day.month()) as i8, day.day() as i8);
    let local = date.ok()?.at(clock.0, clock.1, clock.2, 0);
    let zoned = local_zone().to_ambiguous_zoned(local).compatible().ok()?;
    Some(zoned.timestamp().as_millisecond())
}

/// `HH:MM` or `HH:MM:SS`, 24-hour.
fn parse_clock(t: &str) -> Option<(i8, i8, i8)> {
    let parts: Vec<&str> = t.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let n = |i: usize| parts.get(i).map_or(Some(0), |p| p.parse::<i8>().ok());
    let (h, m, s) = (n(0)?, n(1)?, n(2)?);
    (h < 24 && m < 60 && s < 60).then_some((h, m, s))
}

/// An instant as the console shows it: local time in [`LOCAL_ZONE`],
/// `JJ/MM/AAAA HH:MM:SS` (`05/12/2026 17:25:37`).
pub fn format_local(ms: Millis) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(at) => at.to_zoned(local_zone().clone()).strftime("%d/%m/%Y %H:%M:%S").to_string(),
        Err(_) => ms.to_string(),
    }
}

/// An RFC 3339 time (as records carry them) shown as [`format_local`];
/// `None` when `text` is not one.
pub fn format_local_rfc3339(text: &str) -> Option<String> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(format_local(i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()?))
}

/// A day as people read it: `JJ/MM/AAAA`.
pub fn format_day(date: Date) -> String {
    format!("{:02}/{:02}/{:04}", date.day(), u8::from(date.month()), date.year())
}

/// `YYYY-MM-DD` exactly, as typed on the command line, in a form or an
/// API query, and as stored.
pub fn parse_iso(text: &str) -> Option<Date> {
    Date::parse(text, &time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// `YYYY-MM-DD`.
pub fn format_iso(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// A date as written in a spreadsheet cell: `YYYY-MM-DD` or `DD/MM/YYYY`
/// (also `D/M/YYYY`, `DD-MM-YYYY`, `DD.MM.YYYY`), optionally followed by a
/// time that is ignored.
pub fn parse_written(s: &str) -> Option<Date> {
    let date_part = s.split([' ', 'T']).next().unwrap_or(s);
    let num = |p: &str, min: usize, max: usize| -> Option<u32> {
        if p.len() < min || p.len() > max || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let parts: Vec<&str> = date_part.split(['-', '/', '.']).collect();
    if parts.len() != 3 {
        return None;
    }
    let sep_count = |c: char| date_part.matches(c).count();
    if sep_count('-') == 2 && parts[0].len() == 4 {
        let (y, m, d) = (num(parts[0], 4, 4)?, num(parts[1], 1, 2)?, num(parts[2], 1, 2)?);
        return ymd(y, m, d);
    }
    if [sep_count('/'), sep_count('-'), sep_count('.')].contains(&2) {
        let (d, m, y) = (num(parts[0], 1, 2)?, num(parts[1], 1, 2)?, num(parts[2], 4, 4)?);
        return ymd(y, m, d);
    }
    None
}

fn ymd(y: u32, m: u32, d: u32) -> Option<Date> {
    let month = Month::try_from(u8::try_from(m).ok()?).ok()?;
    Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?).ok()
}

/// An Excel serial day number (the fraction, a time of day, is ignored).
pub fn from_excel_serial(serial: f64, is_1904: bool) -> Option<Date> {
    let first = if is_1904 { 0.0 } else { 1.0 };
    if !serial.is_finite() || serial < first || serial > 3_000_000.0 {
        return None;
    }
    let days = serial.floor() as i64;
    let epoch = if is_1904 {
        Date::from_calendar_date(1904, Month::January, 1).ok()?
    } else if days >= 61 {
        Date::from_calendar_date(1899, Month::December, 30).ok()?
    } else if days == 60 {
        // 1900-02-29, which Excel believes exists.
        return None;
    } else {
        Date::from_calendar_date(1899, Month::December, 31).ok()?
    };
    epoch.checked_add(time::Duration::days(days))
}

/// `date` plus `months`, clamped to the end of the month (31 Jan + 1 = 28/29 Feb).
pub fn add_months(date: Date, months: u32) -> Date {
    let total = date.month() as u32 - 1 + months;
    let year = date.year() + (total / 12) as i32;
    let month = Month::try_from((total % 12 + 1) as u8).unwrap_or(Month::December);
    let last = time::util::days_in_month(month, year);
    Date::from_calendar_date(year, month, date.day().min(last)).unwrap_or(date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn iso_is_exact() {
        assert_eq!(parse_iso("2026-01-05"), Some(date!(2026 - 01 - 05)));
        for bad in ["2026-1-5", "05/01/2026", "2026-02-30", "2026-01-05T00:00:00Z", " 2026-01-05", ""] {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
        assert_eq!(format_iso(date!(2026 - 01 - 05)), "2026-01-05");
        assert_eq!(format_iso(date!(0999 - 12 - 31)), "0999-12-31");
    }

    #[test]
    fn written_dates_day_first_or_iso() {
        for (text, day) in [
            ("2026-01-10", date!(2026 - 01 - 10)),
            ("2026-1-2", date!(2026 - 01 - 02)),
            ("15/03/2026", date!(2026 - 03 - 15)),
            ("1/2/2026", date!(2026 - 02 - 01)),
            ("01.02.2026", date!(2026 - 02 - 01)),
            ("01-02-2026", date!(2026 - 02 - 01)),
            ("2026-02-01 00:00:00", date!(2026 - 02 - 01)),
            ("2026-02-01T08:30", date!(2026 - 02 - 01)),
        ] {
            assert_eq!(parse_written(text), Some(day), "{text}");
        }
        for bad in ["31/02/2026", "2026-13-01", "demain", "10/01/26", "2026/01/10", "1/2-2026", ""] {
            assert_eq!(parse_written(bad), None, "{bad}");
        }
    }

    #[test]
    fn excel_serials() {
        let serial = |s, is_1904| from_excel_serial(s, is_1904).map(format_iso);
        assert_eq!(serial(46032.0, false).as_deref(), Some("2026-01-10"));
        assert_eq!(serial(46032.75, false).as_deref(), Some("2026-01-10"));
        assert_eq!(serial(1.0, false).as_deref(), Some("1900-01-01"));
        assert_eq!(serial(59.0, false).as_deref(), Some("1900-02-28"));
        assert_eq!(serial(60.0, false), None);
        assert_eq!(serial(61.0, false).as_deref(), Some("1900-03-01"));
        assert_eq!(serial(0.0, true).as_deref(), Some("1904-01-01"));
        assert_eq!(serial(44570.0, true).as_deref(), Some("2026-01-10"));
        assert_eq!(serial(f64::NAN, false), None);
        assert_eq!(serial(-3.0, false), None);
    }

    #[test]
    fn month_arithmetic_clamps() {
        assert_eq!(add_months(date!(2024 - 01 - 31), 1), date!(2024 - 02 - 29));
        assert_eq!(add_months(date!(2024 - 02 - 29), 12), date!(2025 - 02 - 28));
        assert_eq!(add_months(date!(2025 - 12 - 10), 1), date!(2026 - 01 - 10));
    }

    #[test]
    fn a_day_typed_either_way() {
        for text in ["2026-12-05", "05/12/2026", "5/12/2026", " 05/12/2026 ", "5/12/2026"] {
            assert_eq!(parse_day(text), Ok(date!(2026 - 12 - 05)), "{text}");
        }
        for bad in ["31/02/2026", "05/12/26", "05-12-2026", "2026/12/05", "05/12/2026 10:00", "12/5", "", "demain"] {
            let e = parse_day(bad).expect_err(bad);
            assert_eq!(e.value, bad.trim());
            assert!(!e.to_string().contains("--"), "the message names no command-line option: {e}");
        }
        assert_eq!(format_day(date!(2026 - 12 - 05)), "05/12/2026");
    }

    #[test]
    fn the_zone_is_paris_with_its_summer_time() {
        // 2026-12-05T16:25:37Z is 17:25:37 in winter (UTC+1); 2026-07-01T10:00Z is 12:00 (UTC+2).
        assert_eq!(format_local(1_796_487_937_000), "05/12/2026 17:25:37");
        assert_eq!(format_local_rfc3339("2026-07-01T10:00:00.000Z").as_deref(), Some("01/07/2026 12:00:00"));
        assert_eq!(format_local_rfc3339("hier"), None);
    }

    #[test]
    fn a_day_bound_is_local_midnight_and_a_time_is_exact() {
        let midnight = 1_796_425_200_000; // 2026-12-04T23:00:00Z
        assert_eq!(parse_instant("2026-12-05"), Some(midnight));
        assert_eq!(parse_instant("05/12/2026"), Some(midnight));
        assert_eq!(parse_instant("05/12/2026 17:25:37"), Some(1_796_487_937_000));
        assert_eq!(parse_instant("05/12/2026 17:25"), Some(1_796_487_900_000));
        assert_eq!(parse_instant("2026-12-05T16:25:37.000Z"), Some(1_796_487_937_000));
        for bad in ["05/12/2026 25:00", "05/12/2026 17h25", "2026-12-05 17:25:37:00", "", "hier"] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn any_day() -> impl Strategy<Value = Date> {
            (1000i32..=9999, 1u8..=12, 1u8..=31).prop_filter_map("a real day", |(y, m, d)| {
                Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()
            })
        }

        proptest! {
            #[test]
            fn both_spellings_of_a_day_read_back(day in any_day()) {
                prop_assert_eq!(parse_day(&format_iso(day)), Ok(day));
                prop_assert_eq!(parse_day(&format_day(day)), Ok(day));
                prop_assert_eq!(parse_day(&format!("{}/{}/{:04}", day.day(), u8::from(day.month()), day.year())), Ok(day));
            }

            #[test]
            fn a_shown_time_reads_back_as_the_same_time(ms in 0i64..4_102_444_800_000) {
                let shown = format_local(ms);
                let read = parse_instant(&shown).expect("a shown time parses");
                // The same second, or its twin an hour apart in the autumn change.
                prop_assert_eq!(format_local(read), shown);
                prop_assert!((ms / 1000 * 1000 - read).abs() <= 3_600_000);
            }

            #[test]
            fn any_text_is_a_day_or_a_clear_refusal(text in "\\PC{0,24}") {
                match parse_day(&text) {
                    Ok(day) => prop_assert!(format_iso(day) == text.trim() || parse_french(text.trim()) == Some(day)),
                    Err(e) => prop_assert_eq!(e.value, text.trim().to_string()),
                }
                let _ = parse_instant(&text);
            }
        }
    }
}
