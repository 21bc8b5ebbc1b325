//! Durations as people write them (`500ms`, `30s`, `2m`, `1.5h`) and as reports print them.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::LoadgenError;

/// The longest duration accepted anywhere (a week): keeps nanosecond arithmetic far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses `<number><unit>` with unit `ns`, `us`, `ms`, `s`, `m` or `h`; `field` names the
/// input in the error. Zero and negative durations are refused: every use needs a positive one.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, LoadgenError> {
    let fix = "write a positive number with a unit, e.g. 500ms, 30s, 2m or 1h";
    let trimmed = text.trim();
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
        "" => {
            return Err(LoadgenError::invalid(
                field,
                text,
                "a duration needs a unit",
                fix,
            ));
        }
        other => {
            return Err(LoadgenError::invalid(
                field,
                text,
                format!("unknown unit {other:?}"),
                fix,
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| LoadgenError::invalid(field, text, "not a number", fix))?;
    let nanos = value * scale_ns;
    if nanos.is_nan() || nanos < 1.0 {
        return Err(LoadgenError::invalid(
            field,
            text,
            "a duration must be greater than zero",
            fix,
        ));
    }
    if nanos > MAX_DURATION.as_nanos() as f64 {
        return Err(LoadgenError::invalid(
            field,
            text,
            "longer than the 7-day limit",
            "split the run into shorter runs",
        ));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// Formats a duration the way [`parse_duration`] reads it, choosing a readable unit.
pub fn format_duration(duration: Duration) -> String {
    let ns = duration.as_nanos();
    let (value, unit) = if ns.is_multiple_of(3_600_000_000_000) && ns > 0 {
        (ns as f64 / 3600e9, "h")
    } else if ns.is_multiple_of(60_000_000_000) && ns > 0 {
        (ns as f64 / 60e9, "m")
    } else if ns >= 1_000_000_000 {
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

/// A nanosecond value (as recorded in histograms) in milliseconds, for text reports.
pub fn ms(nanos: u64) -> String {
    let ms = nanos as f64 / 1e6;
    if ms >= 100.0 {
        format!("{ms:.0}ms")
    } else if ms >= 1.0 {
        format!("{ms:.2}ms")
    } else {
        format!("{ms:.3}ms")
    }
}

/// A [`Duration`] that (de)serialises as text such as `"30s"`: the form profiles use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration("duration", &text)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every unit parses, fractions work, and formatting reads back to the same value.
    #[test]
    fn parses_units_and_round_trips() {
        let cases = [
            ("250ns", Duration::from_nanos(250)),
            ("100us", Duration::from_micros(100)),
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
        ];
        for (text, want) in cases {
            let got = parse_duration("d", text).unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(parse_duration("d", &format_duration(got)).unwrap(), want);
        }
    }

    /// Missing units, zero, negatives and junk are refused with the field named.
    #[test]
    fn refuses_bad_durations() {
        for text in ["30", "0s", "-1s", "abc", "3 parsecs", "", "9999h"] {
            let err = parse_duration("phases[0].for", text).unwrap_err();
            assert!(err.is_bad_input());
            assert!(err.to_string().contains("phases[0].for"), "{err}");
        }
    }
}
