//! The records' time axis: wall-clock microseconds since the Unix epoch (`*_at_us`), so rows
//! from different stores and processes join on one axis, and their RFC 3339 spelling (UTC).
//! Durations inside a process use `tokio::time::Instant`, never these.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    system_time_us(SystemTime::now())
}

/// A [`SystemTime`] in microseconds since the Unix epoch (0 before it).
pub fn system_time_us(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Microseconds since the epoch as RFC 3339 UTC with microseconds,
/// e.g. `2023-11-14T22:13:20.123456Z`.
pub fn rfc3339(at_us: i64) -> String {
    let (date, secs) = split(at_us);
    format!("{date}T{secs}.{:06}Z", at_us.rem_euclid(1_000_000))
}

/// A wall time as RFC 3339 UTC with milliseconds, e.g. `2025-12-31T23:59:59.000Z` (the chaos
/// journal's `wall_time`).
pub fn rfc3339_ms(time: SystemTime) -> String {
    let at_us = system_time_us(time);
    let (date, secs) = split(at_us);
    format!("{date}T{secs}.{:03}Z", at_us.rem_euclid(1_000_000) / 1_000)
}

/// `YYYY-MM-DD` and `HH:MM:SS` of a microsecond time.
fn split(at_us: i64) -> (String, String) {
    let secs = at_us.div_euclid(1_000_000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!(
            "{:02}:{:02}:{:02}",
            rest / 3_600,
            rest % 3_600 / 60,
            rest % 60
        ),
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Parses RFC 3339 UTC (`...Z`, any fraction) back to microseconds since the epoch.
pub fn parse_rfc3339_us(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut hms = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    let micros = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction
            .chars()
            .chain(std::iter::repeat('0'))
            .take(6)
            .collect();
        digits.parse::<i64>().ok()?
    };
    // Days from civil (the inverse of `civil_from_days`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hour * 3_600 + minute * 60 + second) * 1_000_000) + micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Known instants format as RFC 3339, leap days included, and parse back.
    #[test]
    fn formats_and_parses_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(rfc3339_ms(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_millis(951_782_400_123);
        assert_eq!(rfc3339_ms(leap), "2000-02-29T00:00:00.123Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_767_225_599);
        assert_eq!(rfc3339_ms(later), "2025-12-31T23:59:59.000Z");
        for us in [0, 951_782_400_000_000, 1_700_000_000_123_456] {
            assert_eq!(parse_rfc3339_us(&rfc3339(us)), Some(us));
        }
        assert_eq!(
            parse_rfc3339_us("2000-02-29T00:00:00.123Z"),
            Some(951_782_400_123_000)
        );
        assert_eq!(parse_rfc3339_us("yesterday"), None);
    }
}
