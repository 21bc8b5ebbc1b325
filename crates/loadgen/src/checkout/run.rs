//! One checkout run, programmatically: [`CheckoutRun`] checks the spec, connects to the
//! targets, learns the skus if none are given, starts the history writer, runs the engine
//! and waits until every history row is written. `rig load --workload checkout` and
//! `rig run` both call it.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use serde::Deserialize;
use tokio::time::Instant;

use super::client::Pool;
use super::customer::CustomerModel;
use super::history::{Anchor, HistorySink, HistoryStats, HistoryWriter, RequestStats, RowContext};
use super::shared::Shared;
use super::spec::{CheckoutSpec, Plan, REGIONS};
use super::workload::CheckoutWorkload;
use crate::duration::ms;
use crate::{Engine, EngineConfig, LoadgenError, Observer, Report, Schedule, Shard};

/// A checkout run to start: the spec, the targets (entry regions `a`, `b` in order), where
/// the history goes, which shard.
#[derive(Debug, Clone)]
pub struct CheckoutRun {
    spec: CheckoutSpec,
    targets: Vec<String>,
    history: Option<HistorySink>,
    shard: Shard,
}

/// What a checkout run measured and wrote.
#[derive(Debug, Clone)]
pub struct CheckoutReport {
    /// The engine's report: one `checkout` operation per customer, outcomes as the client
    /// saw them (confirmed = ok). Its `run.workload` describes the mix and holds the
    /// request statistics and the history's counts.
    pub report: Report,
    pub schedule: Schedule,
    pub history: HistoryStats,
    pub requests: RequestStats,
}

impl CheckoutRun {
    pub fn new(spec: CheckoutSpec, targets: Vec<String>) -> Self {
        Self {
            spec,
            targets,
            history: None,
            shard: Shard::WHOLE,
        }
    }

    /// Writes the client history to `sink` (without one, rows are only counted).
    pub fn history(mut self, sink: HistorySink) -> Self {
        self.history = Some(sink);
        self
    }

    pub fn shard(mut self, shard: Shard) -> Self {
        self.shard = shard;
        self
    }

    /// Checks the spec and compiles the schedule without touching the network.
    pub fn check(&self) -> Result<(Plan, Schedule), LoadgenError> {
        let plan = self.spec.validate(self.targets.len())?;
        let schedule = Schedule::compile(&plan.schedule)?;
        Ok((plan, schedule))
    }

    /// Runs to the end of the schedule (or until `shutdown` completes), drains, and waits
    /// for the history. Errors are things that stop the run from starting (bad spec,
    /// unreachable target, history that cannot be opened); request failures are outcomes.
    /// Run it on a thread of its own ([`crate::on_dedicated_thread`]) so pacing does not
    /// compete with the target or the caller.
    pub async fn run(
        self,
        observer: &mut dyn Observer,
        shutdown: impl Future<Output = ()>,
    ) -> Result<CheckoutReport, LoadgenError> {
        let (plan, schedule) = self.check()?;
        let history = HistoryWriter::open(self.history.clone(), self.shard).await?;
        let mut pools = Vec::with_capacity(self.targets.len());
        for url in &self.targets {
            pools.push(
                Pool::open(
                    url,
                    plan.connections,
                    plan.connect_timeout,
                    self.spec.allow_remote,
                )
                .await?,
            );
        }
        let skus = if self.spec.skus.is_empty() {
            fetch_skus(&pools[0], plan.request_timeout).await?
        } else {
            self.spec.skus.clone()
        };
        let model = Arc::new(CustomerModel::new(&plan, skus));
        let context = RowContext {
            run_tag: plan.run_tag.clone(),
            phases: schedule.phases().iter().map(|p| p.name.clone()).collect(),
            model: Arc::clone(&model),
            anchor: Anchor::now(),
        };
        let (writer, history) = history.start(context.clone());
        let description = self.describe(&plan, &pools, &model);
        let config = EngineConfig {
            max_in_flight: plan.max_in_flight,
            drain_timeout: plan.drain_timeout(),
            ..EngineConfig::default()
        };
        let workload = Arc::new(CheckoutWorkload {
            shared: Shared {
                plan,
                pools,
                model,
                context,
                history,
            },
            description: description.clone(),
        });
        let engine = Engine::new(schedule.clone(), self.shard, Arc::clone(&workload), config)?;
        let mut report = engine.run(observer, shutdown).await;
        // The writer ends once every lane (aborted ones included) has let go of the workload.
        drop(engine);
        drop(workload);
        let (history, requests) = writer.finish().await?;
        let mut description = description;
        description["requests"] = serde_json::to_value(requests.summaries()).unwrap_or_default();
        description["history"] = serde_json::to_value(&history).unwrap_or_default();
        report.run.workload = description;
        Ok(CheckoutReport {
            report,
            schedule,
            history,
            requests,
        })
    }

    fn describe(&self, plan: &Plan, pools: &[Pool], model: &CustomerModel) -> serde_json::Value {
        let mut spec = self.spec.clone();
        spec.run_tag = Some(plan.run_tag.clone());
        spec.skus = model.skus().to_vec();
        spec.phases.clear();
        serde_json::json!({
            "kind": "checkout",
            "targets": pools
                .iter()
                .zip(REGIONS)
                .map(|(p, region)| serde_json::json!({"region": region, "url": p.url}))
                .collect::<Vec<_>>(),
            "spec": spec,
            "history_location": self.history.as_ref().map(HistorySink::describe),
        })
    }
}

/// The skus the first target sells, from `GET /admin/state` (`inventory[].sku`).
async fn fetch_skus(pool: &Pool, timeout: Duration) -> Result<Vec<String>, LoadgenError> {
    #[derive(Deserialize)]
    struct State {
        inventory: Vec<Line>,
    }
    #[derive(Deserialize)]
    struct Line {
        sku: String,
    }
    let fail = |problem: String| {
        LoadgenError::invalid(
            "workload.skus",
            "[]",
            format!("no skus given, and {}/admin/state {problem}", pool.url),
            "list them: skus = [\"sku-1\", \"sku-2\"] (or --skus sku-1,sku-2)",
        )
    };
    let reply = pool
        .send(
            Method::GET,
            "/admin/state",
            None,
            None,
            None,
            Instant::now() + timeout,
        )
        .await
        .map_err(|failure| fail(format!("did not answer ({failure:?})")))?;
    if reply.status != 200 {
        return Err(fail(format!("answered {}", reply.status)));
    }
    let state: State = serde_json::from_slice(&reply.raw)
        .map_err(|err| fail(format!("has no inventory list ({err})")))?;
    let skus: Vec<String> = state.inventory.into_iter().map(|l| l.sku).collect();
    if skus.is_empty() {
        return Err(fail("lists no inventory".into()));
    }
    Ok(skus)
}

impl CheckoutReport {
    /// The checkout-specific part of the text summary: what customers were told, the
    /// requests behind it, and where the history went.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let h = &self.history;
        let _ = writeln!(
            w,
            "customers: {} ({})",
            h.arrivals,
            h.outcomes
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (op, summary) in self.requests.summaries() {
            let kinds = summary
                .kinds
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(w, "{op} requests: {} ({kinds})", summary.requests);
            for (answer, p) in &summary.service_seconds {
                let at = |v: Option<f64>| v.map_or("-".into(), |s| ms((s * 1e9) as u64));
                let _ = writeln!(
                    w,
                    "  {answer:<14} {:>9}  p50 {:>9}  p99 {:>9}  max {:>9}",
                    p.count,
                    at(p.p50),
                    at(p.p99),
                    at(p.max)
                );
            }
        }
        match (&h.location, &h.error) {
            (Some(location), None) => {
                let _ = writeln!(
                    w,
                    "history: {location}: {} arrival rows, {} request rows{}",
                    h.arrivals_written,
                    h.requests_written,
                    if h.lost > 0 {
                        format!(", {} arrivals LOST", h.lost)
                    } else {
                        String::new()
                    }
                );
            }
            (Some(location), Some(error)) => {
                let _ = writeln!(
                    w,
                    "history: {location}: INCOMPLETE, {} arrivals lost: {error}",
                    h.lost
                );
            }
            (None, _) => {
                let _ = writeln!(w, "history: not kept (--history FILE keeps it)");
            }
        }
        out
    }
}
