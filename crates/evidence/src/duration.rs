//! The one duration grammar of a profile, the command line and the records: a number (with
//! an optional fraction) and a unit, `ns`, `us` (or `µs`), `ms`, `s`, `m` or `h` — `"500us"`,
//! `"1.5s"`, `"2m"`. The same units are valid in `[workload]`, `[[chaos]]`, `[run]` and
//! `[thresholds]`. A bare number is refused because "60" could mean seconds or milliseconds.

use std::time::Duration;

/// The longest duration accepted anywhere (a week): keeps nanosecond arithmetic far from
/// overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What to write instead of a refused duration.
pub const DURATION_FIX: &str =
    "write a number with a unit (ns, us, ms, s, m or h), e.g. 500ms, 30s, 2m or 1h";

/// Why a duration was refused (the caller names the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} {problem}; {DURATION_FIX}")]
pub struct DurationError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it, e.g. "has no unit".
    pub problem: String,
}

/// Parses `<number><unit>`. Zero is a duration (`at = "0s"`); callers that need a positive
/// one say so with [`parse_positive`].
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let refuse = |problem: &str| DurationError {
        text: text.to_string(),
        problem: problem.to_string(),
    };
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(refuse("is negative"));
    }
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale_ns = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        "" => return Err(refuse("has no unit")),
        other => return Err(refuse(&format!("has an unknown unit {other:?}"))),
    };
    let value: f64 = number.parse().map_err(|_| refuse("is not a duration"))?;
    let nanos = value * scale_ns;
    if !nanos.is_finite() || nanos < 0.0 {
        return Err(refuse("is not a duration"));
    }
    if nanos > MAX_DURATION.as_nanos() as f64 {
        return Err(refuse("is longer than the 7-day limit"));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// [`parse_duration`] for a field that needs a duration greater than zero.
pub fn parse_positive(text: &str) -> Result<Duration, DurationError> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(DurationError {
            text: text.to_string(),
            problem: "must be greater than zero".into(),
        });
    }
    Ok(duration)
}

/// Formats a duration the way [`parse_duration`] reads it, choosing a readable unit.
pub fn format_duration(duration: Duration) -> String {
    let ns = duration.as_nanos();
    let (value, unit) = if ns.is_multiple_of(3_600_000_000_000) && ns > 0 {
        (ns as f64 / 3600e9, "h")
    } else if ns.is_multiple_of(60_000_000_000) && ns > 0 {
        (ns as f64 / 60e9, "m")
    } else if ns >= 1_000_000_000 || ns == 0 {
        (ns as f64 / 1e9, "s")
    } else if ns >= 1_000_000 {
        (ns as f64 / 1e6, "ms")
    } else if ns >= 1_000 {
        (ns as f64 / 1e3, "us")
    } else {
        (ns as f64, "ns")
    };
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every unit parses, fractions work, zero is a duration, and formatting reads back.
    #[test]
    fn parses_units_and_round_trips() {
        let cases = [
            ("250ns", Duration::from_nanos(250)),
            ("100us", Duration::from_micros(100)),
            ("100µs", Duration::from_micros(100)),
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            ("60s", Duration::from_secs(60)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            let got = parse_duration(text).unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(parse_duration(&format_duration(got)).unwrap(), want);
        }
        assert_eq!(format_duration(Duration::from_secs(60)), "1m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    /// Missing and unknown units, negatives, junk and week-long values are refused with the fix.
    #[test]
    fn refuses_bad_durations() {
        for (text, problem) in [
            ("60", "has no unit"),
            ("60x", "unknown unit"),
            ("-1s", "is negative"),
            ("abc", "unknown unit"),
            ("s", "not a duration"),
            ("", "has no unit"),
            ("9999h", "7-day limit"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.problem.contains(problem), "{text}: {err}");
            assert!(err.to_string().contains("e.g. 500ms"), "{err}");
        }
        assert!(
            parse_positive("0s")
                .unwrap_err()
                .problem
                .contains("greater than zero")
        );
        assert_eq!(parse_positive("1us"), Ok(Duration::from_micros(1)));
    }
}
