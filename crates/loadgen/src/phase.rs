//! What a user writes: phases (`hold`, `ramp`, `step`, `spike`) and the arrival process.
//! Profiles deserialise these from TOML; `rig load --phases` parses the same fields from a
//! short text form. Validation happens once, in [`crate::Schedule::compile`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::LoadgenError;
use crate::duration::HumanDuration;

/// The highest rate accepted (arrivals per second): far above what one machine can send,
/// low enough that a typo cannot make a schedule of astronomically many arrivals.
pub const MAX_RATE: f64 = 10_000_000.0;

/// One phase of a load profile. Rates are arrivals per second; `for` is the phase length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum PhaseSpec {
    /// A constant rate.
    Hold {
        rate: f64,
        #[serde(rename = "for")]
        duration: HumanDuration,
    },
    /// A linear ramp from `from` (default 0) to `to`.
    Ramp {
        #[serde(default)]
        from: f64,
        to: f64,
        #[serde(rename = "for")]
        duration: HumanDuration,
    },
    /// A staircase of `steps` equal-length holds, from `from` to `to` inclusive.
    Step {
        from: f64,
        to: f64,
        steps: u32,
        #[serde(rename = "for")]
        duration: HumanDuration,
    },
    /// A base `rate` with a burst at `peak` lasting `spike`, centred in the phase.
    Spike {
        rate: f64,
        peak: f64,
        spike: HumanDuration,
        #[serde(rename = "for")]
        duration: HumanDuration,
    },
}

impl PhaseSpec {
    /// `hold`, `ramp`, `step` or `spike`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hold { .. } => "hold",
            Self::Ramp { .. } => "ramp",
            Self::Step { .. } => "step",
            Self::Spike { .. } => "spike",
        }
    }

    /// The phase length.
    pub fn duration(&self) -> Duration {
        match self {
            Self::Hold { duration, .. }
            | Self::Ramp { duration, .. }
            | Self::Step { duration, .. }
            | Self::Spike { duration, .. } => duration.0,
        }
    }

    /// Parses the text form: `KIND key=value ...`, e.g. `ramp from=0 to=1000 for=30s`.
    /// `field` names the phase in errors (e.g. `--phases[1]`).
    pub fn parse(field: &str, text: &str) -> Result<Self, LoadgenError> {
        let fix = "write a phase as `hold rate=R for=D`, `ramp from=R to=R for=D`, \
                   `step from=R to=R steps=N for=D` or `spike rate=R peak=R spike=D for=D`";
        let mut words = text.split_whitespace();
        let Some(kind) = words.next() else {
            return Err(LoadgenError::invalid(field, text, "empty phase", fix));
        };
        let mut map = serde_json::Map::new();
        map.insert("kind".into(), kind.into());
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                return Err(LoadgenError::invalid(
                    field,
                    text,
                    format!("{word:?} is not key=value"),
                    fix,
                ));
            };
            // Durations stay text; numbers become JSON numbers (whole ones as integers, so
            // `steps=3` fits an integer field).
            let is_duration = key == "for" || key == "spike";
            let value = match (value.parse::<i64>(), value.parse::<f64>()) {
                (Ok(whole), _) if !is_duration => serde_json::json!(whole),
                (_, Ok(number)) if !is_duration => serde_json::json!(number),
                _ => serde_json::Value::String(value.to_string()),
            };
            if map.insert(key.to_string(), value).is_some() {
                return Err(LoadgenError::invalid(
                    field,
                    text,
                    format!("`{key}` is given twice"),
                    fix,
                ));
            }
        }
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|err| LoadgenError::invalid(field, text, err.to_string(), fix))
    }

    /// The text form [`PhaseSpec::parse`] reads.
    pub fn to_text(&self) -> String {
        let d = |h: &HumanDuration| crate::duration::format_duration(h.0);
        match self {
            Self::Hold { rate, duration } => format!("hold rate={rate} for={}", d(duration)),
            Self::Ramp { from, to, duration } => {
                format!("ramp from={from} to={to} for={}", d(duration))
            }
            Self::Step {
                from,
                to,
                steps,
                duration,
            } => format!("step from={from} to={to} steps={steps} for={}", d(duration)),
            Self::Spike {
                rate,
                peak,
                spike,
                duration,
            } => format!(
                "spike rate={rate} peak={peak} spike={} for={}",
                d(spike),
                d(duration)
            ),
        }
    }
}

/// How arrivals are spaced within the rate curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalProcess {
    /// Evenly spaced: arrival k is sent when the cumulative rate reaches k.
    #[default]
    Constant,
    /// A (non-homogeneous) Poisson process with the phase's rate: seeded exponential gaps.
    Poisson,
}

impl ArrivalProcess {
    /// `constant` or `poisson`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Poisson => "poisson",
        }
    }
}

/// A whole load profile: phases in order, the arrival process, the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub phases: Vec<PhaseSpec>,
    #[serde(default)]
    pub arrival: ArrivalProcess,
    #[serde(default)]
    pub seed: u64,
}

impl ScheduleSpec {
    /// One `hold` phase: what `rig load --rate R --duration D` means.
    pub fn hold(rate: f64, duration: Duration, arrival: ArrivalProcess, seed: u64) -> Self {
        Self {
            phases: vec![PhaseSpec::Hold {
                rate,
                duration: HumanDuration(duration),
            }],
            arrival,
            seed,
        }
    }

    /// Parses `;`-separated phases in the text form of [`PhaseSpec::parse`].
    pub fn parse_phases(text: &str) -> Result<Vec<PhaseSpec>, LoadgenError> {
        let phases: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if phases.is_empty() {
            return Err(LoadgenError::invalid(
                "--phases",
                text,
                "no phases",
                "give at least one phase, e.g. --phases 'ramp to=100 for=10s; hold rate=100 for=1m'",
            ));
        }
        phases
            .iter()
            .enumerate()
            .map(|(i, p)| PhaseSpec::parse(&format!("--phases[{i}]"), p))
            .collect()
    }
}
