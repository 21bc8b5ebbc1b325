//! The run directory's documents: `summary.json` (schema: `schema/run-summary.schema.json`),
//! `summary.txt`, `verdict.json`, `junit.xml`, `report.html`; and the text printed at the end.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use evidence::{Access, Db, RegionId, StoreName, StoreUrl};
use serde_json::{Value, json};

use super::outcome::Outcome;
use super::{html, junit};

/// Identifies the JSON format of `summary.json` (its JSON Schema:
/// `crates/rig/schema/run-summary.schema.json`); bump on incompatible changes.
pub const RUN_SUMMARY_SCHEMA: &str = "rig-run-summary/1";

/// `20261124T120000Z`.
pub fn utc_stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let text = evidence::time::rfc3339(secs * 1_000_000);
    // 2026-11-24T12:00:00.000000Z -> 20261124T120000Z
    let (date, time) = text.split_once('T').unwrap_or((&text, ""));
    format!(
        "{}T{}Z",
        date.replace('-', ""),
        time.get(..8).unwrap_or("").replace(':', "")
    )
}

/// Per-second series read back from the stores, for the report.
#[derive(Debug, Default, serde::Serialize)]
pub struct StoreSeries {
    /// Orders in a pending state at the end of each second since load start.
    pub pending: Vec<i64>,
    /// Provider calls started in each second.
    pub provider_calls: Vec<i64>,
    /// Charge calls (first tries, retries) per region.
    pub charge_calls: Vec<(String, i64, i64)>,
}

/// Reads the series the report plots from the stores (bounded: one number per second).
pub async fn store_series(
    store: &StoreUrl,
    start_us: i64,
    seconds: usize,
) -> anyhow::Result<StoreSeries> {
    let mut series = StoreSeries {
        pending: vec![0; seconds],
        provider_calls: vec![0; seconds],
        charge_calls: Vec::new(),
    };
    let slot = |at_us: i64| -> Option<usize> {
        let s = (at_us - start_us).div_euclid(1_000_000);
        (s >= 0 && (s as usize) < seconds).then_some(s as usize)
    };
    for region in RegionId::ALL {
        let db = match Db::open_with(store, StoreName::Region(region), Access::ReadOnly).await {
            Ok(db) => db,
            Err(evidence::StoreError::Missing { .. }) => continue,
            Err(err) => return Err(err.into()),
        };
        let mut delta = vec![0i64; seconds + 1];
        let transitions = evidence::queries::payment_transitions(&db).await?;
        let pending = |s: &str| {
            matches!(
                s,
                "payment_authorizing" | "payment_pending" | "needs_reconciliation"
            )
        };
        for t in transitions {
            let at = t.at_us;
            let change = i64::from(pending(&t.to_state))
                - i64::from(t.from_state.as_deref().is_some_and(pending));
            let s = slot(at).unwrap_or(if at < start_us { 0 } else { seconds });
            delta[s] += change;
        }
        let mut level = 0;
        for (i, d) in delta.iter().take(seconds).enumerate() {
            level += d;
            series.pending[i] += level;
        }
        for started_at_us in evidence::queries::attempt_starts(&db).await? {
            if let Some(s) = slot(started_at_us) {
                series.provider_calls[s] += 1;
            }
        }
        let (first, retries) = evidence::queries::charge_tries(&db).await?;
        series
            .charge_calls
            .push((region.as_str().to_string(), first, retries));
        db.close().await;
    }
    Ok(series)
}

/// When each window was applied and healed, by entry, from the journal's records.
fn applied_windows(journal: &[chaos::Record]) -> BTreeMap<usize, (f64, Option<f64>)> {
    let mut applied: BTreeMap<usize, (f64, Option<f64>)> = BTreeMap::new();
    for record in journal {
        let Some(step) = &record.step else {
            if record.event == chaos::Event::Healed {
                // The final heal closes whatever was still on.
                for (_, end) in applied.values_mut() {
                    end.get_or_insert(record.elapsed_seconds);
                }
            }
            continue;
        };
        match (record.event, step.action.as_str()) {
            (chaos::Event::Applied, "start") => {
                applied.insert(step.entry, (record.elapsed_seconds, None));
            }
            (chaos::Event::Applied | chaos::Event::Healed, "stop") => {
                if let Some((_, end)) = applied.get_mut(&step.entry) {
                    end.get_or_insert(record.elapsed_seconds);
                }
            }
            _ => {}
        }
    }
    applied
}

/// `summary.json`.
pub fn summary_json(o: &Outcome<'_>, series: &StoreSeries, journal: &[chaos::Record]) -> Value {
    let applied = applied_windows(journal);
    let windows: Vec<Value> = o
        .plan
        .windows
        .iter()
        .map(|w| {
            let (ran, start, end) = match applied.get(&w.entry) {
                None => ("never", None, None),
                Some((start, end)) => {
                    // Healed within half a second of the planned end: as planned.
                    let whole = end.is_some_and(|e| e + 0.5 >= w.end.as_secs_f64());
                    (if whole { "whole" } else { "cut" }, Some(*start), *end)
                }
            };
            json!({
                "entry": w.entry,
                "name": w.name,
                "kind": w.fault.kind(),
                "start_seconds": w.start.as_secs_f64(),
                "end_seconds": w.end.as_secs_f64(),
                "ran": ran,
                "applied_start_seconds": start,
                "applied_end_seconds": end,
            })
        })
        .collect();
    let (first, retries) = series
        .charge_calls
        .iter()
        .fold((0i64, 0i64), |(f, r), (_, f2, r2)| (f + f2, r + r2));
    json!({
        "schema": RUN_SUMMARY_SCHEMA,
        "run_id": o.run_id,
        "profile": o.profile.run.name,
        "description": o.profile.run.description,
        "seed": o.profile.run.seed,
        "verdict": o.verdict(),
        "exit_code": o.exit_code(),
        "incomplete": o.incomplete,
        "drain_left": o.drain_left,
        "store": o.store.to_string(),
        "store_kind": match o.store {
            StoreUrl::Sqlite { .. } => "sqlite",
            StoreUrl::Postgres { .. } => "postgres",
        },
        "store_namespace": match o.store {
            StoreUrl::Postgres { namespace, .. } => namespace.clone(),
            StoreUrl::Sqlite { .. } => None,
        },
        "system": o.system.as_str(),
        "parameters": o.profile.target,
        "defects": o.profile.target.defects,
        "invariants": o.verdict.verdicts.iter().map(|v| json!({
            "invariant": v.invariant,
            "status": v.status,
            "violations": v.violations,
            "summary": v.summary,
        })).collect::<Vec<_>>(),
        "thresholds": o.thresholds,
        "retries": {
            "first_tries": first,
            "retries": retries,
            "amplification": if first > 0 { (first + retries) as f64 / first as f64 } else { 1.0 },
            "by_region": series.charge_calls.iter().map(|(r, f, n)| json!({"region": r, "first_tries": f, "retries": n})).collect::<Vec<_>>(),
        },
        "chaos": {"seed": o.plan.seed, "windows": windows},
        "orders": o.orders,
        "series": series,
        "load": o.summary,
        "client": {
            "history": o.checkout.history,
            "requests": o.checkout.requests.summaries(),
        },
    })
}

/// Writes every document of the run directory.
pub async fn write_all(dir: &Path, o: &Outcome<'_>) -> anyhow::Result<()> {
    let start_us = (o.summary.started_at_unix_seconds * 1e6) as i64;
    let seconds = o.summary.timeline.len().max(1) + 120;
    let series = store_series(o.store, start_us, seconds)
        .await
        .unwrap_or_else(|err| {
            eprintln!("rig run: the report's store series are missing: {err:#}");
            StoreSeries::default()
        });
    let journal = chaos::read_journal(&dir.join("chaos.jsonl")).unwrap_or_else(|err| {
        eprintln!("rig run: the report cannot tell which chaos windows ran: {err}");
        Vec::new()
    });
    let summary = summary_json(o, &series, &journal);
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("writing {}", dir.join(name).display()))
    };
    write("summary.json", &serde_json::to_string_pretty(&summary)?)?;
    write("verdict.json", &serde_json::to_string_pretty(o.verdict)?)?;
    write("summary.txt", &text(o))?;
    write("junit.xml", &junit::render(o))?;
    write(
        "report.html",
        &html::render(&summary, &serde_json::to_value(o.verdict)?),
    )?;
    Ok(())
}

/// What `rig run` prints: the load, the client, the thresholds, the verdict.
pub fn text(o: &Outcome<'_>) -> String {
    let mut out = String::new();
    out.push_str(&o.summary.to_text());
    out.push_str(&o.checkout.to_text());
    if !o.thresholds.is_empty() {
        out.push_str("thresholds:\n");
        for t in o.thresholds {
            out.push_str(&format!(
                "  {:<4} {} {} (measured {})\n",
                if t.passed { "ok" } else { "FAIL" },
                t.key,
                t.expression,
                t.measured()
            ));
        }
    }
    out.push_str(&o.verdict.table());
    out.push_str(&format!(
        "run {}: {}\n",
        o.run_id,
        o.verdict().to_uppercase()
    ));
    if !o.incomplete.is_empty() {
        out.push_str(&format!("incomplete: {}\n", o.incomplete.join("; ")));
    }
    out
}

/// `report.html` from a run's `summary.json` and `verdict.json` (also `rig report RUN_DIR`).
pub fn render_html(summary: &Value, verdict: &Value) -> String {
    html::render(summary, verdict)
}
