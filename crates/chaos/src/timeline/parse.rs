//! Parsing one `[[chaos]]` table into an [`Entry`]: every key type-checked first so the error
//! names the field, then the fields of the entry's kind validated with a fix in the message.

use std::time::Duration;

use serde::Deserialize;

use super::{Entry, Fault, PROCESSES, PartitionDirection, PartitionMode, REGIONS};
use crate::ChaosError;
use crate::operator::OperatorAction;
use crate::provider::ProviderFaults;
use crate::toxics::{
    Bandwidth, Latency, LimitData, ResetPeer, Slicer, SlowClose, Stream, Timeout, Toxic, ToxicSpec,
};
use evidence::duration::parse_duration;

/// The raw shape of an entry: every field any kind may use; which ones are allowed is
/// checked per kind afterwards so the message can say which kind takes what.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    at: String,
    #[serde(rename = "for")]
    duration: Option<String>,
    at_jitter: Option<String>,
    kind: String,
    name: Option<String>,
    // partition
    between: Option<Vec<String>>,
    mode: Option<String>,
    direction: Option<String>,
    // provider
    provider: Option<String>,
    rate_limit_per_sec: Option<f64>,
    max_concurrency: Option<u64>,
    latency_ms: Option<u64>,
    error_rate: Option<f64>,
    commit_then_drop_rate: Option<f64>,
    outage: Option<bool>,
    webhook_delay_ms: Option<u64>,
    webhook_drop_rate: Option<f64>,
    webhook_duplicate_rate: Option<f64>,
    // link
    proxy: Option<String>,
    toxic: Option<String>,
    stream: Option<String>,
    toxicity: Option<f64>,
    jitter_ms: Option<u64>,
    rate_kb_per_sec: Option<u64>,
    delay_ms: Option<u64>,
    timeout_ms: Option<u64>,
    average_size_bytes: Option<u64>,
    size_variation_bytes: Option<u64>,
    delay_us: Option<u64>,
    bytes: Option<u64>,
    // crash, pause, clock
    target: Option<String>,
    restart_after: Option<String>,
    // clock
    offset: Option<String>,
    // operator
    action: Option<String>,
    count: Option<u64>,
    operator: Option<String>,
    note: Option<String>,
    // exec
    run: Option<Vec<String>>,
    heal: Option<Vec<String>>,
    timeout: Option<String>,
}

const PARTITION_FIELDS: &[&str] = &["between", "mode", "direction"];
const PROVIDER_FIELDS: &[&str] = &[
    "provider",
    "rate_limit_per_sec",
    "max_concurrency",
    "latency_ms",
    "error_rate",
    "commit_then_drop_rate",
    "outage",
    "webhook_delay_ms",
    "webhook_drop_rate",
    "webhook_duplicate_rate",
];
const SINK_FIELDS: &[&str] = &["latency_ms", "error_rate", "outage"];
const LINK_FIELDS: &[&str] = &["proxy", "toxic", "stream", "toxicity"];
const CRASH_FIELDS: &[&str] = &["target", "restart_after"];
const PAUSE_FIELDS: &[&str] = &["target"];
const CLOCK_FIELDS: &[&str] = &["target", "offset"];
const OPERATOR_FIELDS: &[&str] = &["target", "action", "count", "operator", "note"];
/// How many pending orders a `resolve_pending` step resolves unless `count` says otherwise.
const RESOLVE_COUNT: u64 = 10;
/// The largest clock shift a `clock` window may ask for.
const MAX_CLOCK_OFFSET: Duration = Duration::from_secs(24 * 3600);
const EXEC_FIELDS: &[&str] = &["run", "heal", "timeout"];
/// How long an exec command may take unless `timeout` says otherwise.
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a crashed process stays down when neither `for` nor `restart_after` is given:
/// it is started again at once (the smallest step the timeline has, so the kill and the
/// restart are two steps).
const RESTART_AT_ONCE: Duration = Duration::from_millis(1);

impl RawEntry {
    /// The kind-specific fields that are present.
    fn present(&self) -> Vec<&'static str> {
        let fields: [(&'static str, bool); 35] = [
            ("between", self.between.is_some()),
            ("mode", self.mode.is_some()),
            ("direction", self.direction.is_some()),
            ("provider", self.provider.is_some()),
            ("rate_limit_per_sec", self.rate_limit_per_sec.is_some()),
            ("max_concurrency", self.max_concurrency.is_some()),
            ("latency_ms", self.latency_ms.is_some()),
            ("error_rate", self.error_rate.is_some()),
            (
                "commit_then_drop_rate",
                self.commit_then_drop_rate.is_some(),
            ),
            ("outage", self.outage.is_some()),
            ("webhook_delay_ms", self.webhook_delay_ms.is_some()),
            ("webhook_drop_rate", self.webhook_drop_rate.is_some()),
            (
                "webhook_duplicate_rate",
                self.webhook_duplicate_rate.is_some(),
            ),
            ("proxy", self.proxy.is_some()),
            ("toxic", self.toxic.is_some()),
            ("stream", self.stream.is_some()),
            ("toxicity", self.toxicity.is_some()),
            ("jitter_ms", self.jitter_ms.is_some()),
            ("rate_kb_per_sec", self.rate_kb_per_sec.is_some()),
            ("delay_ms", self.delay_ms.is_some()),
            ("timeout_ms", self.timeout_ms.is_some()),
            ("average_size_bytes", self.average_size_bytes.is_some()),
            ("size_variation_bytes", self.size_variation_bytes.is_some()),
            ("delay_us", self.delay_us.is_some()),
            ("bytes", self.bytes.is_some()),
            ("target", self.target.is_some()),
            ("restart_after", self.restart_after.is_some()),
            ("offset", self.offset.is_some()),
            ("action", self.action.is_some()),
            ("count", self.count.is_some()),
            ("operator", self.operator.is_some()),
            ("note", self.note.is_some()),
            ("run", self.run.is_some()),
            ("heal", self.heal.is_some()),
            ("timeout", self.timeout.is_some()),
        ];
        fields
            .iter()
            .filter(|(_, set)| *set)
            .map(|(f, _)| *f)
            .collect()
    }
}

/// Builds `chaos[i].field: message` errors.
struct At(usize);

impl At {
    fn err(&self, field: &str, message: impl Into<String>) -> ChaosError {
        let location = if field.is_empty() {
            format!("chaos[{}]", self.0)
        } else {
            format!("chaos[{}].{field}", self.0)
        };
        ChaosError::Timeline {
            location,
            message: message.into(),
        }
    }

    fn only(&self, raw: &RawEntry, kind: &str, allowed: &[&str]) -> Result<(), ChaosError> {
        match raw.present().into_iter().find(|f| !allowed.contains(f)) {
            Some(field) => Err(self.err(
                field,
                format!(
                    "is not a field of kind = \"{kind}\"; it takes {}",
                    allowed.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    fn fraction(&self, field: &str, value: Option<f64>) -> Result<(), ChaosError> {
        match value {
            Some(v) if !(0.0..=1.0).contains(&v) => Err(self.err(
                field,
                format!("{v} is not a fraction; use a value from 0 to 1"),
            )),
            _ => Ok(()),
        }
    }
}

pub(super) fn parse_entry(index: usize, item: &toml::Value) -> Result<Entry, ChaosError> {
    let at = At(index);
    let table = item.as_table().ok_or_else(|| {
        at.err(
            "",
            "must be a table: write it as [[chaos]] with key = value lines",
        )
    })?;
    // Check each key's type first so the message names the field (serde's would not).
    for (key, value) in table {
        check_type(key, value).map_err(|message| at.err(key, message))?;
    }
    let raw: RawEntry = toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| at.err("", e.message().to_string()))?;
    let duration_of =
        |field: &str, text: &str| parse_duration(text).map_err(|e| at.err(field, e.to_string()));
    let start = duration_of("at", &raw.at)?;
    let duration = match (raw.kind.as_str(), &raw.duration, &raw.restart_after) {
        ("crash", Some(_), Some(_)) => {
            return Err(at.err(
                "restart_after",
                "says the same as `for` (how long the process stays down); give one of them",
            ));
        }
        ("crash", None, None) => RESTART_AT_ONCE,
        ("crash", None, Some(text)) => duration_of("restart_after", text)?.max(RESTART_AT_ONCE),
        ("crash", Some(text), None) => duration_of("for", text)?.max(RESTART_AT_ONCE),
        // A one-off operator action: a window of one step.
        ("operator", None, _) if raw.action.as_deref() != Some("pause_payments") => RESTART_AT_ONCE,
        (_, Some(text), _) => {
            let duration = duration_of("for", text)?;
            if duration.is_zero() {
                return Err(at.err("for", "must be longer than 0s (e.g. \"30s\")"));
            }
            duration
        }
        (_, None, _) => {
            return Err(at.err(
                "for",
                "is required: how long the fault lasts (e.g. for = \"30s\")",
            ));
        }
    };
    let at_jitter = match &raw.at_jitter {
        Some(text) => duration_of("at_jitter", text)?,
        None => Duration::ZERO,
    };
    let fault = match raw.kind.as_str() {
        "partition" => partition(&at, &raw)?,
        "provider" => provider(&at, &raw)?,
        "link" => link(&at, &raw)?,
        "sink" => sink(&at, &raw)?,
        "crash" => Fault::Crash {
            target: process_target(&at, &raw, "crash", CRASH_FIELDS)?,
        },
        "pause" => Fault::Pause {
            target: process_target(&at, &raw, "pause", PAUSE_FIELDS)?,
        },
        "clock" => clock(&at, &raw)?,
        "operator" => operator(&at, &raw)?,
        "exec" => exec(&at, &raw)?,
        other => {
            return Err(at.err(
                "kind",
                format!(
                    "{other:?} is not a fault kind; use \"partition\", \"provider\", \"link\", \"sink\", \"crash\", \"pause\", \"clock\", \"operator\" or \"exec\""
                ),
            ));
        }
    };
    Ok(Entry {
        index,
        name: raw.name,
        at: start,
        duration,
        at_jitter,
        fault,
    })
}

/// The type each known key must have; unknown keys are left to `deny_unknown_fields`.
fn check_type(key: &str, value: &toml::Value) -> Result<(), String> {
    fn is<T: serde::de::DeserializeOwned>(value: &toml::Value) -> Result<(), String> {
        value
            .clone()
            .try_into::<T>()
            .map(|_| ())
            .map_err(|e| e.message().to_string())
    }
    match key {
        "at" | "for" | "at_jitter" | "kind" | "name" | "mode" | "direction" | "provider"
        | "proxy" | "toxic" | "stream" | "target" | "restart_after" | "timeout" | "offset"
        | "action" | "operator" | "note" => is::<String>(value),
        "run" | "heal" => is::<Vec<String>>(value),
        "between" => is::<Vec<String>>(value),
        "rate_limit_per_sec"
        | "error_rate"
        | "commit_then_drop_rate"
        | "toxicity"
        | "webhook_drop_rate"
        | "webhook_duplicate_rate" => is::<f64>(value),
        "outage" => is::<bool>(value),
        "max_concurrency"
        | "webhook_delay_ms"
        | "latency_ms"
        | "jitter_ms"
        | "rate_kb_per_sec"
        | "delay_ms"
        | "timeout_ms"
        | "average_size_bytes"
        | "size_variation_bytes"
        | "delay_us"
        | "count"
        | "bytes" => is::<u64>(value),
        _ => Ok(()),
    }
}

/// Commands for a system the rig did not start (the Chaos Toolkit's process action).
fn exec(at: &At, raw: &RawEntry) -> Result<Fault, ChaosError> {
    at.only(raw, "exec", EXEC_FIELDS)?;
    let run = raw.run.clone().unwrap_or_default();
    if run.first().is_none_or(|program| program.trim().is_empty()) {
        return Err(at.err(
            "run",
            "is required: the command to run when the window starts, as a list, e.g. run = [\"docker\", \"kill\", \"region-a\"]",
        ));
    }
    let heal = raw.heal.clone().unwrap_or_default();
    if heal
        .first()
        .is_some_and(|program| program.trim().is_empty())
    {
        return Err(at.err(
            "heal",
            "names no program; give the command that undoes `run`, e.g. heal = [\"docker\", \"start\", \"region-a\"], or leave it out",
        ));
    }
    let timeout = match &raw.timeout {
        Some(text) => parse_duration(text).map_err(|e| at.err("timeout", e.to_string()))?,
        None => EXEC_TIMEOUT,
    };
    if timeout.is_zero() || timeout > Duration::from_secs(600) {
        return Err(at.err(
            "timeout",
            "must be from 1ms to 10m: how long each command may take",
        ));
    }
    Ok(Fault::Exec { run, heal, timeout })
}

/// An operator's playbook step on a region's admin API.
fn operator(at: &At, raw: &RawEntry) -> Result<Fault, ChaosError> {
    at.only(raw, "operator", OPERATOR_FIELDS)?;
    let names = REGIONS.map(|r| format!("{r:?}")).join(", ");
    let target = raw.target.as_ref().ok_or_else(|| {
        at.err(
            "target",
            format!("is required: the region whose admin API the operator uses, one of {names}"),
        )
    })?;
    if !REGIONS.contains(&target.as_str()) {
        return Err(at.err(
            "target",
            format!("{target:?} is not a region; use one of {names}"),
        ));
    }
    let action = match raw.action.as_deref() {
        Some("pause_payments") => {
            for field in ["count", "operator", "note"] {
                if raw.present().contains(&field) {
                    return Err(at.err(
                        field,
                        "is for action = \"resolve_pending\"; pause_payments takes target and for",
                    ));
                }
            }
            OperatorAction::PausePayments
        }
        Some("resolve_pending") => {
            let count = raw.count.unwrap_or(RESOLVE_COUNT);
            if count == 0 || count > 10_000 {
                return Err(at.err(
                    "count",
                    format!("{count}: resolve from 1 to 10000 of the oldest pending orders"),
                ));
            }
            OperatorAction::ResolvePending {
                count,
                operator: raw.operator.clone().unwrap_or_else(|| "playbook".into()),
                note: raw
                    .note
                    .clone()
                    .unwrap_or_else(|| "the timeline's operator step".into()),
            }
        }
        other => {
            return Err(at.err(
                "action",
                format!(
                    "{other:?} is not an operator action; use \"pause_payments\" (with for) or \"resolve_pending\" (with count)"
                ),
            ));
        }
    };
    Ok(Fault::Operator {
        target: target.clone(),
        action,
    })
}

/// A region's wall clock shifted by `offset` ("+30s", "-30s"; monotonic time untouched).
fn clock(at: &At, raw: &RawEntry) -> Result<Fault, ChaosError> {
    at.only(raw, "clock", CLOCK_FIELDS)?;
    let names = REGIONS.map(|r| format!("{r:?}")).join(", ");
    let target = raw.target.as_ref().ok_or_else(|| {
        at.err(
            "target",
            format!("is required: the region whose clock is shifted, one of {names}"),
        )
    })?;
    if !REGIONS.contains(&target.as_str()) {
        return Err(at.err(
            "target",
            format!("{target:?} is not a region; a clock fault shifts a region's wall clock, use one of {names}"),
        ));
    }
    let text = raw.offset.as_deref().ok_or_else(|| {
        at.err(
            "offset",
            "is required: how far the clock is shifted, e.g. offset = \"+30s\" or \"-30s\"",
        )
    })?;
    let offset_ms = parse_offset_ms(text).map_err(|problem| at.err("offset", problem))?;
    Ok(Fault::Clock {
        target: target.clone(),
        offset_ms,
    })
}

/// `"+30s"`, `"-1.5m"`, `"250ms"` (no sign: ahead) as signed milliseconds; zero and shifts
/// beyond a day are refused.
fn parse_offset_ms(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    let (sign, magnitude) = match trimmed.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    let fix = "write a signed duration such as \"+30s\" (ahead) or \"-30s\" (behind)";
    let duration = parse_duration(magnitude).map_err(|err| format!("{err}; {fix}"))?;
    if duration.is_zero() {
        return Err(format!("{text:?} shifts nothing; {fix}"));
    }
    if duration > MAX_CLOCK_OFFSET {
        return Err(format!("{text:?} is more than a day; {fix}"));
    }
    Ok(sign * i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

/// The process a `crash` or `pause` acts on.
fn process_target(
    at: &At,
    raw: &RawEntry,
    kind: &str,
    allowed: &[&str],
) -> Result<String, ChaosError> {
    at.only(raw, kind, allowed)?;
    let names = PROCESSES.map(|p| format!("{p:?}")).join(", ");
    let target = raw.target.as_ref().ok_or_else(|| {
        at.err(
            "target",
            format!("is required: the process to {kind}, one of {names}"),
        )
    })?;
    if !PROCESSES.contains(&target.as_str()) {
        return Err(at.err(
            "target",
            format!("{target:?} is not a process of the run; use one of {names}"),
        ));
    }
    Ok(target.clone())
}

fn partition(at: &At, raw: &RawEntry) -> Result<Fault, ChaosError> {
    at.only(raw, "partition", PARTITION_FIELDS)?;
    let between = raw
        .between
        .as_ref()
        .ok_or_else(|| at.err("between", "is required: write between = [\"a\", \"b\"]"))?;
    let mut sorted = between.clone();
    sorted.sort();
    if sorted != REGIONS {
        return Err(at.err(
            "between",
            format!("{between:?} must name the two regions: between = [\"a\", \"b\"]"),
        ));
    }
    let mode = match raw.mode.as_deref().unwrap_or("blackhole") {
        "blackhole" => PartitionMode::Blackhole,
        "refuse" => PartitionMode::Refuse,
        other => {
            return Err(at.err(
                "mode",
                format!("{other:?} is not a mode; use \"blackhole\" or \"refuse\""),
            ));
        }
    };
    let direction = match raw.direction.as_deref().unwrap_or("both") {
        "both" => PartitionDirection::Both,
        "a_to_b" => PartitionDirection::AToB,
        "b_to_a" => PartitionDirection::BToA,
        other => {
            return Err(at.err(
                "direction",
                format!("{other:?} is not a direction; use \"both\", \"a_to_b\" or \"b_to_a\""),
            ));
        }
    };
    Ok(Fault::Partition { mode, direction })
}

fn provider(at: &At, raw: &RawEntry) -> Result<Fault, ChaosError> {
    at.only(raw, "provider", PROVIDER_FIELDS)?;
    let faults = ProviderFaults {
        rate_limit_per_sec: raw.rate_limit_per_sec,
        max_concurrency: raw.max_concurrency,
        latency_ms: raw.latency_ms,
        error_rate: raw.error_rate,
        commit_then_drop_rate: raw.commit_then_drop_rate,
        outage: raw.outage,
        webhook_delay_ms: raw.webhook_delay_ms,
        webhook_drop_rate: raw.webhook_drop_rate,
        webhook_duplicate_rate: raw.webhook_duplicate_rate,
    };
    if let Some(rate) = faults.rate_limit_per_sec
        && !(rate > 0.0 && rate.is_finite())
    {
        return Err(at.err(
            "rate_limit_per_sec",
            format!("{rate} must be above 0 (requests per second)"),
        ));
    }
    if faults.max_concurrency == Some(0) {
        return Err(at.err(
            "max_concurrency",
            "must be at least 1; for a full outage write outage = true",
        ));
    }
    at.fraction("error_rate", faults.error_rate)?;
    at.fraction("commit_then_drop_rate", faults.commit_then_drop_rate)?;
    at.fraction("webhook_drop_rate", faults.webhook_drop_rate)?;
    at.fraction("webhook_duplicate_rate", faults.webhook_duplicate_rate)?;
    if faults.is_clear() {
        return Err(at.err(
            "",
            "a provider fault needs at least one of rate_limit_per_sec, max_concurrency, \
             latency_ms, error_rate, commit_then_drop_rate, outage = true, webhook_delay_ms, \
             webhook_drop_rate, webhook_duplicate_rate",
        ));
    }
    if raw.provider.as_deref() == Some("") {
        return Err(at.err(
            "provider",
            "must not be empty; leave it out to mean every provider",
        ));
    }
    if raw.provider.as_deref() == Some(super::SINK) {
        return Err(at.err(
            "provider",
            "\"sink\" is the event sink, not a provider: write kind = \"sink\"",
        ));
    }
    Ok(Fault::Provider {
        provider: raw.provider.clone(),
        faults,
    })
}

fn sink(at: &At, raw: &RawEntry) -> Result<Fault, ChaosError> {
    at.only(raw, "sink", SINK_FIELDS)?;
    let faults = ProviderFaults {
        latency_ms: raw.latency_ms,
        error_rate: raw.error_rate,
        outage: raw.outage,
        ..ProviderFaults::default()
    };
    at.fraction("error_rate", faults.error_rate)?;
    if faults.is_clear() {
        return Err(at.err(
            "",
            "a sink fault needs at least one of latency_ms, error_rate, outage = true",
        ));
    }
    Ok(Fault::Sink { faults })
}

fn link(at: &At, raw: &RawEntry) -> Result<Fault, ChaosError> {
    let proxy = raw.proxy.clone().filter(|p| !p.is_empty()).ok_or_else(|| {
        at.err(
            "proxy",
            "is required: the Toxiproxy proxy to act on, e.g. \"a_to_provider\"",
        )
    })?;
    let toxic_name = raw.toxic.as_deref().ok_or_else(|| {
        at.err("toxic", "is required: latency, bandwidth, slow_close, timeout, reset_peer, slicer or limit_data")
    })?;
    let require = |field: &str, value: Option<u64>| {
        value.ok_or_else(|| at.err(field, format!("is required for toxic = \"{toxic_name}\"")))
    };
    let (toxic, attributes): (Toxic, &[&str]) = match toxic_name {
        "latency" => (
            Toxic::Latency(Latency {
                latency: require("latency_ms", raw.latency_ms)?,
                jitter: raw.jitter_ms.unwrap_or(0),
            }),
            &["latency_ms", "jitter_ms"],
        ),
        "bandwidth" => (
            Toxic::Bandwidth(Bandwidth {
                rate: require("rate_kb_per_sec", raw.rate_kb_per_sec)?,
            }),
            &["rate_kb_per_sec"],
        ),
        "slow_close" => (
            Toxic::SlowClose(SlowClose {
                delay: require("delay_ms", raw.delay_ms)?,
            }),
            &["delay_ms"],
        ),
        "timeout" => (
            Toxic::Timeout(Timeout {
                timeout: require("timeout_ms", raw.timeout_ms)?,
            }),
            &["timeout_ms"],
        ),
        "reset_peer" => (
            Toxic::ResetPeer(ResetPeer {
                timeout: raw.timeout_ms.unwrap_or(0),
            }),
            &["timeout_ms"],
        ),
        "slicer" => (
            Toxic::Slicer(Slicer {
                average_size: require("average_size_bytes", raw.average_size_bytes)?,
                size_variation: raw.size_variation_bytes.unwrap_or(0),
                delay: raw.delay_us.unwrap_or(0),
            }),
            &["average_size_bytes", "size_variation_bytes", "delay_us"],
        ),
        "limit_data" => (
            Toxic::LimitData(LimitData {
                bytes: require("bytes", raw.bytes)?,
            }),
            &["bytes"],
        ),
        other => {
            return Err(at.err(
                "toxic",
                format!(
                    "{other:?} is not a toxic; use latency, bandwidth, slow_close, timeout, \
                     reset_peer, slicer or limit_data"
                ),
            ));
        }
    };
    let allowed: Vec<&str> = LINK_FIELDS.iter().chain(attributes).copied().collect();
    at.only(
        raw,
        &format!("link\" with toxic = \"{toxic_name}"),
        &allowed,
    )?;
    let stream = match raw.stream.as_deref() {
        None => Stream::Downstream,
        Some(text) => Stream::parse(text).ok_or_else(|| {
            at.err(
                "stream",
                format!("{text:?} is not a stream; use \"upstream\" or \"downstream\""),
            )
        })?,
    };
    let toxicity = raw.toxicity.unwrap_or(1.0);
    at.fraction("toxicity", Some(toxicity))?;
    let mut spec = ToxicSpec::new(stream, toxic);
    spec.toxicity = toxicity as f32;
    Ok(Fault::Link { proxy, toxic: spec })
}
