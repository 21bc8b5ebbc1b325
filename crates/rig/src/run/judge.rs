//! Phases 4 and 5: the bounded drain, then the verdict from the durable records and the
//! profile's thresholds on the load's measurements.

use std::time::Duration;

use anyhow::Context;
use loadgen::Summary;

use super::thresholds::{self, Judged};
use super::{Driven, Prepared, Started};

/// How the drain ended.
#[derive(Debug)]
pub struct Drained {
    /// The work the system still had when the drain's bound ran out (None: all done, or
    /// no drain after Ctrl-C).
    pub left: Option<String>,
    /// When the evidence ends (wall-clock µs).
    pub end_at_us: i64,
}

/// Lets the system finish its open work (bounded by `run.drain`, cut short by Ctrl-C),
/// then stops it.
pub async fn drain(prepared: &Prepared, started: &mut Started) -> Drained {
    let mut left = None;
    if !started.interrupted()
        && let Some(topology) = &started.topology
        && let Err(work) = topology
            .drain(prepared.loaded.drain, started.interrupt.clone())
            .await
    {
        eprintln!("rig run: the drain ended with work left: {work}");
        left = Some(work);
    }
    let end_at_us = evidence::time::now_us();
    started.stop().await;
    Drained { left, end_at_us }
}

/// The verdict and the thresholds.
pub struct Judgement {
    pub report: verifier::Report,
    pub thresholds: Vec<Judged>,
    pub summary: Summary,
}

/// Runs the verifier over the run's stores, history and journal, and judges the thresholds.
pub async fn judge(
    prepared: &Prepared,
    driven: &Driven,
    drained: &Drained,
) -> anyhow::Result<Judgement> {
    let profile = prepared.profile();
    let sources = verifier::Sources {
        store: prepared.store.clone(),
        history: Some(verifier::HistorySource::Sqlite(prepared.history_path())),
        journal: Some(prepared.journal_path()),
    };
    let options = verifier::Options {
        end_at_us: Some(drained.end_at_us),
        max_dossiers: profile.verify.max_dossiers,
        shed_p99_ms: profile.verify.shed_p99_ms,
        goodput_fraction: profile.verify.goodput_fraction,
        // The bounds are what this run asked of the system it started; an external system
        // was configured elsewhere, and its own record is all there is.
        asked: (!prepared.external).then(|| profile.target.run_params()),
        // An interrupted run had no drain: what it left open is unknown, not a violation.
        interrupted_at_us: (!driven.incomplete.is_empty()).then_some(drained.end_at_us),
    };
    let report = verifier::verify(&sources, &options)
        .await
        .context("the evidence could not be read; verdict unknown")?;
    let checkout = &driven.checkout;
    let summary = Summary::new(
        &checkout.report,
        &checkout.schedule,
        Duration::from_millis(1),
    );
    let thresholds = profile
        .thresholds
        .iter()
        .filter_map(|(k, e)| thresholds::Threshold::parse(k, e).ok())
        .map(|t| t.judge(&checkout.report))
        .collect();
    Ok(Judgement {
        report,
        thresholds,
        summary,
    })
}
