//! Durations as profiles write them: `"60s"`, `"1.5s"`, `"500ms"`, `"2m"`, `"1h"`.

use std::time::Duration;

/// Parses a duration with a unit (`ms`, `s`, `m`, `h`). A bare number is refused because
/// "60" could mean seconds or milliseconds; the error says what to write instead.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit_seconds = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => {
            return Err(format!(
                "{text:?} has no unit; write e.g. \"60s\", \"500ms\", \"2m\" or \"1h\""
            ));
        }
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?}; use ms, s, m or h (e.g. \"60s\")"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. \"60s\" or \"500ms\""))?;
    Duration::try_from_secs_f64(value * unit_seconds)
        .map_err(|_| format!("{text:?} is out of range"))
}

/// Formats a duration back the way a profile would write it (for messages and the journal).
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every unit parses; numbers without a unit and unknown units are refused with a fix.
    #[test]
    fn parses_units_and_refuses_bare_numbers() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("60").unwrap_err().contains("no unit"));
        assert!(parse_duration("60x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
        assert_eq!(format_duration(Duration::from_secs(60)), "60s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }
}
