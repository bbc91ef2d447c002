//! Europe/Copenhagen local time without a tz database.
//!
//! Denmark follows the EU rule: CET (UTC+1), and CEST (UTC+2) from the last Sunday of March
//! 01:00 UTC to the last Sunday of October 01:00 UTC. The switch instants are defined in UTC, so
//! mapping an instant to local time is unambiguous (the repeated hour in October is simply two
//! different UTC instants with the same wall-clock reading). Calendar buckets (ISO week,
//! month) and "overdue" compare local *dates*, because caseworkers think in Danish days: a
//! contact at 00:30 local on the 1st belongs to the 1st even though it is still the 31st in UTC.

use time::{Date, Month, OffsetDateTime, Time, UtcOffset, Weekday};

const CET: UtcOffset = match UtcOffset::from_hms(1, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};
const CEST: UtcOffset = match UtcOffset::from_hms(2, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

/// The last Sunday of `month` in `year` (`None` only outside `time`'s range).
fn last_sunday(year: i32, month: Month) -> Option<Date> {
    let last = Date::from_calendar_date(year, month, time::util::days_in_month(month, year)).ok()?;
    Some(if last.weekday() == Weekday::Sunday { last } else { last.prev_occurrence(Weekday::Sunday) })
}

/// The UTC offset in force in Copenhagen at instant `t`.
pub fn offset_at(t: OffsetDateTime) -> UtcOffset {
    let utc = t.to_offset(UtcOffset::UTC);
    let one_am = Time::from_hms(1, 0, 0).unwrap_or(Time::MIDNIGHT);
    let (Some(start), Some(end)) = (last_sunday(utc.year(), Month::March), last_sunday(utc.year(), Month::October))
    else {
        return CET;
    };
    let start = start.with_time(one_am).assume_utc();
    let end = end.with_time(one_am).assume_utc();
    if utc >= start && utc < end { CEST } else { CET }
}

/// `t` as Copenhagen wall-clock time.
pub fn local(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(offset_at(t))
}

/// The Copenhagen calendar date of instant `t`.
pub fn local_date(t: OffsetDateTime) -> Date {
    local(t).date()
}

/// ISO week key, e.g. `2025-W01` (ISO year, which may differ from the calendar year).
pub fn week_key(d: Date) -> String {
    let (year, week, _) = d.to_iso_week_date();
    format!("{year:04}-W{week:02}")
}

/// Month key, e.g. `2025-06`.
pub fn month_key(d: Date) -> String {
    format!("{:04}-{:02}", d.year(), u8::from(d.month()))
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    #[test]
    fn switches_at_one_utc_on_the_last_sundays() {
        // 2025: CEST from 30 March 01:00 UTC to 26 October 01:00 UTC.
        assert_eq!(offset_at(datetime!(2025-03-30 00:59:59 UTC)), CET);
        assert_eq!(offset_at(datetime!(2025-03-30 01:00 UTC)), CEST);
        assert_eq!(offset_at(datetime!(2025-10-26 00:59:59 UTC)), CEST);
        assert_eq!(offset_at(datetime!(2025-10-26 01:00 UTC)), CET);
        // 2026: 29 March and 25 October.
        assert_eq!(last_sunday(2026, Month::March), Some(date!(2026 - 03 - 29)));
        assert_eq!(last_sunday(2026, Month::October), Some(date!(2026 - 10 - 25)));
        // A month whose last day is a Sunday: August 2025 ends on Sunday the 31st.
        assert_eq!(last_sunday(2025, Month::August), Some(date!(2025 - 08 - 31)));
    }

    #[test]
    fn local_dates_roll_at_copenhagen_midnight() {
        assert_eq!(local_date(datetime!(2025-06-30 21:59 UTC)), date!(2025 - 06 - 30));
        assert_eq!(local_date(datetime!(2025-06-30 22:00 UTC)), date!(2025 - 07 - 01));
        assert_eq!(local_date(datetime!(2025-12-31 22:59 UTC)), date!(2025 - 12 - 31));
        assert_eq!(local_date(datetime!(2025-12-31 23:00 UTC)), date!(2026 - 01 - 01));
        assert_eq!(week_key(date!(2026 - 01 - 01)), "2026-W01");
        assert_eq!(week_key(date!(2024 - 12 - 30)), "2025-W01");
        assert_eq!(month_key(date!(2026 - 01 - 01)), "2026-01");
    }
}
