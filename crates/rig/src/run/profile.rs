//! The run profile: one TOML file with `[run]`, `[target]`, `[workload]`, `[[chaos]]`,
//! `[thresholds]` and `[verify]`. Unknown keys are refused by name; `--set a.b=c` overrides
//! any key before validation; the resolved profile (every parameter, the seed) is what the
//! run directory keeps.

use std::collections::BTreeMap;
use std::path::Path;

use loadgen::checkout::CheckoutSpec;
use serde::{Deserialize, Serialize};
use target_system::{Defect, TargetConfig};
use toml::{Table, Value};

use crate::exit::BadInput;
use crate::overrides;

/// `[run]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Names the run directory and the report.
    pub name: String,
    /// What the profile rehearses, for the report.
    #[serde(default)]
    pub description: Option<String>,
    /// Seeds everything: the system, the customers, the chaos timeline's jitter.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Longest wait after the load for pending orders to resolve, outboxes to publish and held
    /// intents to be delivered.
    #[serde(default = "default_drain")]
    pub drain: String,
}

fn default_seed() -> u64 {
    1
}

fn default_drain() -> String {
    "60s".to_string()
}

/// `[verify]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifySection {
    /// Client-side p99 bound for shed (429/503) answers, in milliseconds.
    pub shed_p99_ms: f64,
    /// Share of the best phase's goodput a heavier phase must keep.
    pub goodput_fraction: f64,
    /// Counterexamples kept per invariant.
    pub max_dossiers: usize,
    /// A confirmation event must reach the event sink within this many milliseconds of its
    /// customer being told confirmed. Default: fifty outbox polls plus one delivery timeout
    /// (12 000 at the default outbox settings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_age_ms: Option<f64>,
    /// Black-box mode (a system the rig did not configure): the limits admission-control
    /// judges its provider calls by. Without them only shed latency and goodput are judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_max_in_flight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget_min_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget_ttl_seconds: Option<u64>,
}

impl Default for VerifySection {
    fn default() -> Self {
        Self {
            shed_p99_ms: 100.0,
            goodput_fraction: 0.8,
            max_dossiers: 5,
            event_age_ms: None,
            provider_max_in_flight: None,
            retry_budget_ratio: None,
            retry_budget_min_per_sec: None,
            retry_budget_ttl_seconds: None,
        }
    }
}

impl Profile {
    /// The bounds a black-box system is judged by: the profile's `[target]` (the service
    /// levels it states), with `[verify]`'s admission limits; and whether any admission
    /// limit was given.
    pub fn black_box_bounds(&self) -> (evidence::RunParams, bool) {
        let mut params = self.target.run_params();
        let v = &self.verify;
        if let Some(n) = v.provider_max_in_flight {
            params.provider_max_in_flight = n;
        }
        if let Some(x) = v.retry_budget_ratio {
            params.retry_budget_ratio = x;
        }
        if let Some(x) = v.retry_budget_min_per_sec {
            params.retry_budget_min_per_sec = x;
        }
        if let Some(n) = v.retry_budget_ttl_seconds {
            params.retry_budget_ttl_seconds = n;
        }
        let given = v.provider_max_in_flight.is_some() || v.retry_budget_ratio.is_some();
        (params, given)
    }

    /// Unit prices in cents per sku, from `[target]`'s catalog.
    pub fn prices(&self) -> std::collections::BTreeMap<String, i64> {
        self.target
            .catalog
            .iter()
            .map(|item| (item.sku.clone(), item.price_cents))
            .collect()
    }

    /// The event-age bound: `[verify] event_age_ms`, else what the outbox settings imply.
    pub fn event_age_ms(&self) -> f64 {
        let outbox = &self.target.outbox;
        self.verify.event_age_ms.unwrap_or_else(|| {
            verifier::default_event_age_ms(outbox.poll_interval_ms, outbox.delivery_timeout_ms)
        })
    }
}

/// A whole profile, validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub run: RunSection,
    #[serde(default)]
    pub target: TargetConfig,
    pub workload: CheckoutSpec,
    #[serde(default)]
    pub chaos: chaos::Timeline,
    /// k6-style: `"checkout.p99" = "< 800ms"`, `rejected_rate = "< 0.3"`.
    #[serde(default)]
    pub thresholds: BTreeMap<String, String>,
    #[serde(default)]
    pub verify: VerifySection,
}

/// A loaded profile and its resolved text.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub profile: Profile,
    /// The profile as run: every parameter, defaults filled in, the seed.
    pub resolved: String,
    pub drain: std::time::Duration,
}

/// Reads `path`, applies `--set` overrides, the seed and the defects, validates.
pub fn load(
    path: &Path,
    sets: &[String],
    seed: Option<u64>,
    defects: &[Defect],
) -> Result<Loaded, BadInput> {
    let where_ = path.display().to_string();
    let text = read_bounded(path)?;
    load_text(&where_, &text, sets, seed, defects)
}

/// Largest profile read: a profile is a page of settings; a bigger file is not one.
pub const MAX_PROFILE_BYTES: u64 = 1024 * 1024;

/// Reads a profile, refusing a file larger than [`MAX_PROFILE_BYTES`] before reading it.
fn read_bounded(path: &Path) -> Result<String, BadInput> {
    let where_ = path.display();
    let cannot = |err: &dyn std::fmt::Display| BadInput(format!("{where_}: cannot read it: {err}"));
    let bytes = crate::read_at_most(path, MAX_PROFILE_BYTES)
        .map_err(|err| cannot(&err))?
        .ok_or_else(|| {
            BadInput(format!(
                "{where_}: larger than {} KiB, which no profile needs; give a profile file (TOML)",
                MAX_PROFILE_BYTES / 1024
            ))
        })?;
    String::from_utf8(bytes).map_err(|err| cannot(&err))
}

/// [`load`] on a profile's text; `where_` names it in errors.
pub fn load_text(
    where_: &str,
    text: &str,
    sets: &[String],
    seed: Option<u64>,
    defects: &[Defect],
) -> Result<Loaded, BadInput> {
    let mut table: Table =
        toml::from_str(text).map_err(|err| BadInput(format!("{where_}: not valid TOML: {err}")))?;
    let parsed = sets
        .iter()
        .map(|s| overrides::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    overrides::apply(&mut table, &parsed)?;
    if let Some(seed) = seed {
        run_table(&mut table)?.insert("seed".into(), Value::Integer(seed as i64));
    }
    // One seed for everything, unless a section sets its own.
    let run_seed = run_table(&mut table)?
        .get("seed")
        .and_then(Value::as_integer)
        .unwrap_or(1);
    for section in ["target", "workload"] {
        let entry = table
            .entry(section)
            .or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(t) = entry {
            t.entry("seed").or_insert(Value::Integer(run_seed));
        }
    }
    // The file on its own first: its errors carry line and column.
    check_phase_types(text).map_err(|err| BadInput(format!("{where_}: {err}")))?;
    if let Err(err) = toml::from_str::<Profile>(text) {
        return Err(BadInput(format!("{where_}: {}", err.to_string().trim())));
    }
    let context = if parsed.is_empty() {
        where_.to_string()
    } else {
        format!("{where_} (with --set)")
    };
    let mut profile = Profile::deserialize(Value::Table(table.clone()))
        .map_err(|err| BadInput(format!("{context}: {}", err.to_string().trim())))?;
    profile.target.defects.extend(defects.iter().copied());
    profile
        .target
        .validate()
        .map_err(|err| BadInput(format!("{context}: {err}")))?;
    if profile.run.name.is_empty()
        || !profile
            .run
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(BadInput(format!(
            "{context}: run.name = {:?}: use letters, digits and - _ . (it names the run directory)",
            profile.run.name
        )));
    }
    let v = &profile.verify;
    let bad_verify = [
        (
            "shed_p99_ms",
            Some(v.shed_p99_ms),
            "a positive number of milliseconds",
        ),
        (
            "event_age_ms",
            v.event_age_ms,
            "a positive number of milliseconds",
        ),
    ]
    .into_iter()
    .find(|(_, value, _)| value.is_some_and(|x| !(x.is_finite() && x > 0.0)));
    if let Some((key, value, fix)) = bad_verify {
        return Err(BadInput(format!(
            "{context}: verify.{key} = {}: use {fix}",
            value.unwrap_or_default()
        )));
    }
    if !(0.0..=1.0).contains(&v.goodput_fraction) {
        return Err(BadInput(format!(
            "{context}: verify.goodput_fraction = {}: use a share between 0 and 1",
            v.goodput_fraction
        )));
    }
    let drain = loadgen::parse_duration("run.drain", &profile.run.drain)
        .map_err(|err| BadInput(format!("{context}: {err}")))?;
    for (key, expression) in &profile.thresholds {
        super::thresholds::Threshold::parse(key, expression)
            .map_err(|err| BadInput(format!("{context}: {err}")))?;
    }
    let resolved = resolve(&table, &profile)?;
    Ok(Loaded {
        profile,
        resolved,
        drain,
    })
}

/// The types of every `[[workload.phases]]` key, with the key's own line: serde reports a
/// phase's type errors at its table header and under its field names (`duration` for
/// `for`), because a phase is a tagged enum.
fn check_phase_types(text: &str) -> Result<(), String> {
    use toml::de::{DeTable, DeValue};
    let Ok(doc) = DeTable::parse(text) else {
        return Ok(()); // the TOML error itself is reported next, with its position
    };
    let phases = doc
        .get_ref()
        .get("workload")
        .and_then(|w| match w.get_ref() {
            DeValue::Table(t) => t.get("phases"),
            _ => None,
        });
    let Some(phases) = phases else {
        return Ok(());
    };
    let DeValue::Array(phases) = phases.get_ref() else {
        return Ok(());
    };
    let line = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
    for (i, phase) in phases.iter().enumerate() {
        let DeValue::Table(phase) = phase.get_ref() else {
            continue;
        };
        for (key, value) in phase.iter() {
            let key: &str = key.get_ref();
            let expected = match key {
                "kind" => "a string (hold, ramp, step or spike)",
                "rate" | "from" | "to" | "peak" => "a number (arrivals per second)",
                "steps" => "a whole number",
                "for" | "spike" => "a duration such as \"30s\" or \"5m\"",
                _ => continue,
            };
            let problem = match (key, value.get_ref()) {
                ("kind", DeValue::String(_)) => None,
                ("rate" | "from" | "to" | "peak", DeValue::Integer(_) | DeValue::Float(_)) => None,
                ("steps", DeValue::Integer(_)) => None,
                ("for" | "spike", DeValue::String(d)) => evidence::duration::parse_positive(d)
                    .err()
                    .map(|err| format!("{:?} {}", err.text, err.problem)),
                (_, other) => Some(format!("got {}", describe(other))),
            };
            if let Some(problem) = problem {
                return Err(format!(
                    "line {}: workload.phases[{i}].{key}: expected {expected}; {problem}",
                    line(value.span().start)
                ));
            }
        }
    }
    Ok(())
}

/// A TOML value as an error message names it: `the string "80"`, `the number 80`.
fn describe(value: &toml::de::DeValue<'_>) -> String {
    use toml::de::DeValue;
    match value {
        DeValue::String(s) => format!("the string {s:?}"),
        DeValue::Integer(i) => format!("the number {i}"),
        DeValue::Float(f) => format!("the number {f}"),
        DeValue::Boolean(b) => format!("the boolean {b}"),
        DeValue::Datetime(d) => format!("the date {d}"),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

fn run_table(table: &mut Table) -> Result<&mut Table, BadInput> {
    match table
        .entry("run")
        .or_insert_with(|| Value::Table(Table::new()))
    {
        Value::Table(t) => Ok(t),
        other => Err(BadInput(format!(
            "run is a {}, expected a [run] table",
            other.type_str()
        ))),
    }
}

/// The profile with every default filled in (`[target]`, `[workload]`, `[verify]`), and the
/// defects in force.
fn resolve(input: &Table, profile: &Profile) -> Result<String, BadInput> {
    let mut out = input.clone();
    let as_value = |v: Result<Value, toml::ser::Error>| {
        v.map_err(|e| BadInput(format!("cannot write the resolved profile: {e}")))
    };
    out.insert("run".into(), as_value(Value::try_from(&profile.run))?);
    out.insert("target".into(), as_value(Value::try_from(&profile.target))?);
    out.insert(
        "workload".into(),
        as_value(Value::try_from(&profile.workload))?,
    );
    out.insert("verify".into(), as_value(Value::try_from(&profile.verify))?);
    toml::to_string_pretty(&out)
        .map_err(|e| BadInput(format!("cannot write the resolved profile: {e}")))
}
