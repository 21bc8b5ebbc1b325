//! The chaos timeline of a profile: `[[chaos]]` entries, validated once, with errors that
//! name the entry and the field.
//!
//! ```toml
//! [[chaos]]                  # regions a and b cannot reach each other for 30 s
//! at = "60s"
//! for = "30s"
//! kind = "partition"
//! between = ["a", "b"]
//! mode = "blackhole"         # or "refuse"; default blackhole
//! direction = "both"         # or "a_to_b" / "b_to_a"; default both
//!
//! [[chaos]]                  # the payment provider throttles
//! at = "2m"
//! for = "1m"
//! kind = "provider"
//! rate_limit_per_sec = 50    # also: max_concurrency, latency_ms, error_rate,
//!                            # commit_then_drop_rate, outage, and for the Stripe face's
//!                            # webhooks webhook_delay_ms, webhook_drop_rate,
//!                            # webhook_duplicate_rate; provider = "NAME" to pick one
//!
//! [[chaos]]                  # the rig's event sink answers slowly: the outbox relay backs up
//! at = "3m"
//! for = "20s"
//! kind = "sink"
//! latency_ms = 500           # also: error_rate, outage
//!
//! [[chaos]]                  # a slow link to the provider
//! at = "4m"
//! for = "30s"
//! at_jitter = "10s"          # start somewhere in [4m, 4m10s], drawn from the run seed
//! kind = "link"
//! proxy = "a_to_provider"
//! toxic = "latency"          # latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data
//! stream = "downstream"      # default downstream
//! latency_ms = 200
//! jitter_ms = 50
//!
//! [[chaos]]                  # region a's process is killed (SIGKILL) and restarted 3 s later
//! at = "5m"
//! for = "3s"                 # how long it stays down; leave it out to restart at once
//! kind = "crash"
//! target = "a"               # "a", "b" or "provider"
//!
//! [[chaos]]                  # region b's process is frozen (SIGSTOP), then continued
//! at = "6m"
//! for = "5s"
//! kind = "pause"
//! target = "b"
//!
//! [[chaos]]                  # region b's wall clock runs 30 s ahead (monotonic time is not
//! at = "6m30s"               # shifted); "-30s" puts it behind
//! for = "20s"
//! kind = "clock"
//! target = "b"               # "a" or "b"
//! offset = "+30s"
//!
//! [[chaos]]                  # an operator pauses region a's payments for 20 s (resumed at
//! at = "6m40s"               # the end and in every heal)
//! for = "20s"
//! kind = "operator"
//! action = "pause_payments"
//! target = "a"
//!
//! [[chaos]]                  # an operator resolves region b's 20 oldest pending orders, each
//! at = "6m50s"               # on the provider's record, audited
//! kind = "operator"
//! action = "resolve_pending"
//! target = "b"
//! count = 20                 # default 10
//! operator = "playbook"      # default "playbook"
//! note = "after the brownout" # goes in the audit trail
//!
//! [[chaos]]                  # a system the rig did not start: commands crash and restore it
//! at = "7m"
//! for = "10s"
//! kind = "exec"
//! run = ["docker", "kill", "region-a"]    # when the window starts (no shell: an argv)
//! heal = ["docker", "start", "region-a"]  # when it ends, and in every heal
//! timeout = "30s"            # each command's limit; default 30s
//! ```
//!
//! Process faults (`crash`, `pause`, `clock`) act on the processes a run started itself; a
//! system the rig did not start has none.
//!
//! Link attributes use unit-suffixed names (`latency_ms`, `jitter_ms`, `rate_kb_per_sec`,
//! `delay_ms`, `timeout_ms`, `average_size_bytes`, `size_variation_bytes`, `delay_us`, `bytes`)
//! and map one-to-one to Toxiproxy's attributes.

mod parse;
mod plan;

pub use plan::{Action, Plan, Step, Window};

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ChaosError;
use crate::provider::ProviderFaults;
use crate::toxics::{ToxicJson, ToxicSpec};
use parse::parse_entry;

/// The regions a partition can separate.
pub const REGIONS: [&str; 2] = ["a", "b"];

/// The processes a `crash` or `pause` (and, for a region, `clock`) can target in a run that starts its system.
pub const PROCESSES: [&str; 3] = ["a", "b", "provider"];

/// The name the event sink's fault API goes by among the targets' fault APIs (it takes the
/// provider's fault JSON: latency, errors, outage).
pub const SINK: &str = "sink";

/// How a partition cuts the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionMode {
    /// Silent loss: connections stay open but every byte disappears (a `timeout` toxic with
    /// timeout 0 on both streams). Only read timeouts notice.
    Blackhole,
    /// Fail fast: the proxy is disabled, so connects are refused and open connections close.
    Refuse,
}

/// Which cross-region proxies a partition acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionDirection {
    Both,
    AToB,
    BToA,
}

impl PartitionDirection {
    /// The proxies (named after the direction connections are opened in).
    pub fn proxies(self) -> &'static [&'static str] {
        match self {
            Self::Both => &["a_to_b", "b_to_a"],
            Self::AToB => &["a_to_b"],
            Self::BToA => &["b_to_a"],
        }
    }
}

/// What an entry does while it is active.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    Partition {
        mode: PartitionMode,
        direction: PartitionDirection,
    },
    Provider {
        /// `None`: every provider the run knows.
        provider: Option<String>,
        faults: ProviderFaults,
    },
    Link {
        proxy: String,
        #[serde(serialize_with = "toxic_as_json")]
        toxic: ToxicSpec,
    },
    /// The rig's event sink: latency, errors or an outage.
    Sink { faults: ProviderFaults },
    /// A process killed with SIGKILL when the window starts and started again when it ends.
    Crash { target: String },
    /// A process stopped with SIGSTOP for the window and continued with SIGCONT.
    Pause { target: String },
    /// A region's wall clock shifted by `offset_ms` for the window (its monotonic clock is
    /// untouched): the records it writes carry the shifted time.
    Clock { target: String, offset_ms: i64 },
    /// An operator's playbook step on a region's admin API.
    Operator {
        target: String,
        #[serde(flatten)]
        action: crate::operator::OperatorAction,
    },
    /// Commands run when the window starts (`run`) and when it ends or is healed (`heal`),
    /// each within `timeout`; their exit status and output are journaled.
    Exec {
        run: Vec<String>,
        heal: Vec<String>,
        #[serde(with = "duration_secs")]
        timeout: Duration,
    },
}

/// A duration as seconds in the expanded plan's JSON.
mod duration_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

fn toxic_as_json<S: serde::Serializer>(toxic: &ToxicSpec, s: S) -> Result<S::Ok, S::Error> {
    ToxicJson::serialize(&toxic.to_json(), s)
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Partition { .. } => "partition",
            Self::Provider { .. } => "provider",
            Self::Link { .. } => "link",
            Self::Sink { .. } => "sink",
            Self::Crash { .. } => "crash",
            Self::Pause { .. } => "pause",
            Self::Clock { .. } => "clock",
            Self::Exec { .. } => "exec",
            Self::Operator { .. } => "operator",
        }
    }
}

/// One validated `[[chaos]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Position in the profile's `[[chaos]]` array (as in error messages: `chaos[INDEX]`).
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(serialize_with = "seconds")]
    pub at: Duration,
    #[serde(rename = "for", serialize_with = "seconds")]
    pub duration: Duration,
    #[serde(serialize_with = "seconds")]
    pub at_jitter: Duration,
    #[serde(flatten)]
    pub fault: Fault,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A profile's chaos timeline (possibly empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timeline {
    pub entries: Vec<Entry>,
}

/// Lets a larger profile struct hold `chaos: Timeline` and get the same validation.
impl<'de> Deserialize<'de> for Timeline {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(deserializer)?;
        Timeline::from_value(&value).map_err(serde::de::Error::custom)
    }
}

impl Timeline {
    /// Validates a profile's `[[chaos]]` array (a TOML array of tables).
    pub fn from_value(value: &toml::Value) -> Result<Self, ChaosError> {
        let toml::Value::Array(items) = value else {
            return Err(ChaosError::Timeline {
                location: "chaos".to_string(),
                message: "must be an array of tables: write each entry as [[chaos]]".to_string(),
            });
        };
        let entries = items
            .iter()
            .enumerate()
            .map(|(index, item)| parse_entry(index, item))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Reads a profile's text and takes only its `chaos` key (other keys are not looked at).
    pub fn from_profile_str(text: &str, path: &Path) -> Result<Self, ChaosError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ChaosError::ParseProfile {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
        match table.get("chaos") {
            Some(value) => Self::from_value(value),
            None => Ok(Self::default()),
        }
    }

    /// Reads a whole profile file and takes only its `chaos` key.
    pub fn from_profile_file(path: &Path) -> Result<Self, ChaosError> {
        let text = std::fs::read_to_string(path).map_err(|source| ChaosError::ReadProfile {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_profile_str(&text, path)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Timeline, ChaosError> {
        Timeline::from_profile_str(text, Path::new("profile.toml"))
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    /// Each kind parses into its typed fault with its defaults.
    #[test]
    fn parses_every_kind() {
        let timeline = parse(
            r#"
            seed = 3
            [target]
            anything = "ignored here"
            [[chaos]]
            at = "60s"
            for = "30s"
            kind = "partition"
            between = ["b", "a"]
            [[chaos]]
            at = "1m"
            for = "10s"
            kind = "provider"
            rate_limit_per_sec = 50
            outage = true
            [[chaos]]
            at = "0s"
            for = "500ms"
            at_jitter = "2s"
            kind = "link"
            proxy = "a_to_provider"
            toxic = "latency"
            latency_ms = 100
            "#,
        )
        .unwrap();
        assert_eq!(timeline.entries.len(), 3);
        assert_eq!(
            timeline.entries[0].fault,
            Fault::Partition {
                mode: PartitionMode::Blackhole,
                direction: PartitionDirection::Both
            }
        );
        assert_eq!(timeline.entries[1].at, Duration::from_secs(60));
        let Fault::Link { proxy, toxic } = &timeline.entries[2].fault else {
            panic!("not a link")
        };
        assert_eq!(proxy, "a_to_provider");
        assert_eq!(toxic.name, "latency_downstream");
        assert_eq!(timeline.entries[2].at_jitter, Duration::from_secs(2));
        assert!(parse("seed = 1").unwrap().is_empty());
    }

    /// The Stripe face's webhook faults are provider attributes: they parse into the
    /// provider's fault set alone or with others, and a share outside 0..1 names its field.
    #[test]
    fn webhook_faults_are_provider_attributes() {
        let timeline = parse(
            r#"
            [[chaos]]
            at = "1s"
            for = "5s"
            kind = "provider"
            webhook_delay_ms = 2000
            webhook_drop_rate = 0.25
            webhook_duplicate_rate = 0.5
            "#,
        )
        .unwrap();
        let Fault::Provider { faults, .. } = &timeline.entries[0].fault else {
            panic!("not a provider fault")
        };
        assert_eq!(faults.webhook_delay_ms, Some(2000));
        assert_eq!(faults.webhook_drop_rate, Some(0.25));
        assert_eq!(faults.webhook_duplicate_rate, Some(0.5));
        assert_eq!(
            faults.fields_set(),
            [
                "webhook_delay_ms",
                "webhook_drop_rate",
                "webhook_duplicate_rate"
            ]
        );
        let m =
            message("[[chaos]]\nat=\"1s\"\nfor=\"1s\"\nkind=\"provider\"\nwebhook_drop_rate=1.5");
        assert!(m.starts_with("chaos[0].webhook_drop_rate:"), "{m}");
        let m = message("[[chaos]]\nat=\"1s\"\nfor=\"1s\"\nkind=\"sink\"\nwebhook_delay_ms=1");
        assert!(m.contains("webhook_delay_ms"), "{m}");
    }

    /// Errors name the entry index and the field, and say how to fix it.
    #[test]
    fn errors_name_entry_and_field() {
        let base = "[[chaos]]\nat=\"1s\"\nfor=\"1s\"\nkind=\"partition\"\nbetween=[\"a\",\"b\"]\n";
        let second = |extra: &str| format!("{base}[[chaos]]\n{extra}");
        let m = message(&second(
            "at=\"1s\"\nfor=\"1s\"\nkind=\"partition\"\nbetween=[\"a\",\"b\"]\nmode=\"cut\"",
        ));
        assert!(m.starts_with("chaos[1].mode:"), "{m}");
        let m = message(&second(
            "at=\"1s\"\nfor=\"1s\"\nkind=\"partition\"\nbetween=[\"a\",\"b\"]\nrate_kb_per_sec=1",
        ));
        assert!(m.starts_with("chaos[1].rate_kb_per_sec:"), "{m}");
        let m = message(&second(
            "at=\"1s\"\nfor=\"1s\"\nkind=\"partition\"\nbetwen=[\"a\",\"b\"]",
        ));
        assert!(m.starts_with("chaos[1]") && m.contains("betwen"), "{m}");
        let m = message(&second("at=60\nfor=\"1s\"\nkind=\"provider\"\noutage=true"));
        assert!(m.starts_with("chaos[1].at:"), "{m}");
        let m = message(&second(
            "at=\"60\"\nfor=\"1s\"\nkind=\"provider\"\noutage=true",
        ));
        assert!(
            m.starts_with("chaos[1].at:") && m.contains("no unit"),
            "{m}"
        );
        let m = message(&second(
            "at=\"1s\"\nfor=\"1s\"\nkind=\"provider\"\nerror_rate=2.0",
        ));
        assert!(m.starts_with("chaos[1].error_rate:"), "{m}");
        let m = message(&second(
            "at=\"1s\"\nfor=\"1s\"\nkind=\"link\"\nproxy=\"p\"\ntoxic=\"latency\"",
        ));
        assert!(m.starts_with("chaos[1].latency_ms:"), "{m}");
        let m = message(&second(
            "at=\"1s\"\nfor=\"1s\"\nkind=\"link\"\nproxy=\"p\"\ntoxic=\"latency\"\nlatency_ms=1\nbytes=3",
        ));
        assert!(m.starts_with("chaos[1].bytes:"), "{m}");
        let m = message(&second("at=\"1s\"\nkind=\"provider\"\noutage=true"));
        assert!(m.starts_with("chaos[1]") && m.contains("for"), "{m}");
        let m = message("chaos = 3");
        assert!(m.starts_with("chaos:"), "{m}");
    }

    /// A larger profile struct can embed the timeline and gets the same validation.
    #[test]
    fn embeds_in_a_profile_struct() {
        #[derive(Deserialize)]
        struct Profile {
            #[serde(default)]
            chaos: Timeline,
        }
        let ok: Profile =
            toml::from_str("[[chaos]]\nat=\"1s\"\nfor=\"2s\"\nkind=\"provider\"\nlatency_ms=5\n")
                .unwrap();
        assert_eq!(ok.chaos.entries.len(), 1);
        let bad = toml::from_str::<Profile>("[[chaos]]\nat=\"1s\"\nfor=\"2s\"\nkind=\"nope\"\n");
        assert!(bad.err().unwrap().to_string().contains("chaos[0].kind"));
    }
}
