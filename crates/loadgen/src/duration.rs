//! Durations as people write them (`500ms`, `30s`, `2m`, `1.5h`; the grammar is the evidence
//! contract's) and as reports print them.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::LoadgenError;

pub use evidence::duration::{MAX_DURATION, format_duration};

/// Parses a positive duration in the one grammar of the workspace
/// ([`evidence::duration`]); `field` names the input in the error.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, LoadgenError> {
    evidence::duration::parse_positive(text).map_err(|err| {
        LoadgenError::invalid(field, text, err.problem, evidence::duration::DURATION_FIX)
    })
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
