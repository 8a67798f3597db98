//! Calendar dates as people write them and as the store keeps them
//! (`YYYY-MM-DD`). Which day it is today is the clock's to say
//! (`Clock::today`); this module only reads, writes and counts dates.

use time::{Date, Month};

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
}
