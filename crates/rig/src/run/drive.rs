//! Phase 3: the checkout load and the chaos timeline on one clock. The load runs on a thread
//! of its own; the chaos executor on this runtime, cancelled when the load ends or on Ctrl-C,
//! and always healing what it applied.

use std::time::Duration;

use anyhow::Context;
use loadgen::checkout::CheckoutReport;
use loadgen::{CheckoutRun, HistorySink, on_dedicated_thread};
use tokio::sync::watch;

use super::{Prepared, Started, stopped};
use crate::observe::{HlogSink, ProgressLine, ProgressMode};

/// What the load and the chaos did.
pub struct Driven {
    pub checkout: CheckoutReport,
    /// Why the run is incomplete ([`INTERRUPTED`], a chaos step failed); empty when
    /// complete.
    pub incomplete: Vec<String>,
}

/// How `incomplete` says the run was interrupted (Ctrl-C, SIGTERM, SIGHUP).
pub const INTERRUPTED: &str = "interrupted";

impl Driven {
    /// The run was stopped by a signal (not merely incomplete, as after a failed chaos step).
    pub fn interrupted(&self) -> bool {
        self.incomplete.iter().any(|i| i == INTERRUPTED)
    }
}

/// Runs the load and the chaos timeline to their end (or Ctrl-C) and finishes
/// `latency.hlog`. On an error the caller stops the system.
pub async fn drive(
    prepared: &Prepared,
    started: &mut Started,
    refuse_leftovers: bool,
) -> anyhow::Result<Driven> {
    let profile = prepared.profile();
    let load_metrics = started
        .load_metrics
        .take()
        .context("the load was already driven")?;
    let topology = started.topology()?;
    let clock = chaos::LoadClock::starting_now();
    let mut journal = chaos::Journal::open(&prepared.journal_path(), clock)
        .context("opening the chaos journal")?;
    // Faults on and healed, printed between the progress lines as they happen.
    let mut records = journal.observe();
    if let Some(note) = &topology.leftovers {
        journal
            .append(
                chaos::Event::Healed,
                chaos::Detail {
                    message: Some(note.clone()),
                    ..chaos::Detail::default()
                },
            )
            .await
            .context("journaling the healed leftovers")?;
    }
    let events = tokio::spawn(async move {
        while let Some(record) = records.recv().await {
            if let Some(event) = crate::observe::chaos_event(&record) {
                crate::observe::event_line(record.elapsed_seconds, &event);
            }
        }
    });
    let mut workload = profile.workload.clone();
    if topology.black_box && workload.skus.is_empty() {
        // A system the rig cannot read sells what the profile's catalog lists.
        workload.skus = profile
            .target
            .catalog
            .iter()
            .map(|i| i.sku.clone())
            .collect();
    }
    let checkout =
        CheckoutRun::new(workload, topology.region_urls.clone()).history(HistorySink::Sqlite {
            path: prepared.history_path(),
        });
    let hlog = loadgen::HlogWriter::new(std::io::BufWriter::new(
        std::fs::File::create(prepared.run_dir.join("latency.hlog"))
            .context("creating latency.hlog")?,
    ))
    .with_comment(&format!("rig run {}", prepared.run_id));
    let (load_done_tx, load_done) = watch::channel(false);
    let load_stop = stopped(started.interrupt.clone());
    let load = on_dedicated_thread("rig-run-load", move || async move {
        let progress = ProgressLine::new(ProgressMode::Auto);
        let mut observer = ((progress, HlogSink(Some(hlog))), load_metrics);
        let report = checkout.run(&mut observer, load_stop).await;
        let _ = load_done_tx.send(true);
        let ((_, HlogSink(hlog)), _) = observer;
        report.map(|r| (r, hlog))
    });
    // The run's toxics are named after it, so the next run can tell what a crash left.
    let mut targets = topology.chaos_targets()?;
    targets.toxiproxy = targets
        .toxiproxy
        .map(|control| control.for_run(&prepared.run_id));
    targets.refuse_leftovers = refuse_leftovers;
    let chaos_targets =
        crate::metrics::FaultGauge::new(targets, &started.chaos_registry, &prepared.plan);
    let chaos_cancel = {
        let mut interrupt = started.interrupt.clone();
        let mut load_done = load_done.clone();
        async move {
            tokio::select! {
                _ = interrupt.wait_for(|i| *i) => chaos::AbortReason("interrupted (Ctrl-C, SIGTERM or SIGHUP)".into()),
                _ = load_done.wait_for(|d| *d) => chaos::AbortReason("the load ended before the timeline".into()),
            }
        }
    };
    let modes = tokio::spawn(watch_modes(
        topology.region_urls.clone(),
        clock,
        load_done.clone(),
    ));
    let chaos_run = chaos::execute(&prepared.plan, &chaos_targets, &journal, chaos_cancel);
    let (load, chaos_outcome) = tokio::join!(load, chaos_run);
    let _ = modes.await;
    drop(journal);
    let _ = events.await;
    let (checkout, hlog) = match load {
        Ok(Ok(done)) => done,
        Ok(Err(err)) => return Err(anyhow::Error::new(err).context("the load could not run")),
        Err(err) => anyhow::bail!("the load generator stopped: {err}"),
    };
    if let Some(writer) = hlog {
        writer.finish().context("finishing latency.hlog")?;
    }
    let mut incomplete: Vec<String> = Vec::new();
    match &chaos_outcome {
        Ok(outcome)
            if outcome
                .aborted
                .as_ref()
                .is_some_and(|r| r.0.starts_with("interrupted")) =>
        {
            incomplete.push(INTERRUPTED.into())
        }
        Ok(_) => {}
        Err(err) => incomplete.push(format!("chaos step failed (healed): {err}")),
    }
    if started.interrupted() && incomplete.is_empty() {
        incomplete.push(INTERRUPTED.into());
    }
    Ok(Driven {
        checkout,
        incomplete,
    })
}

/// Prints each region's payment-mode changes (normal, degraded by the breaker, paused by an
/// operator) as progress events, from its `GET /admin/state`, until the load ends. A system
/// without that endpoint is simply not watched.
async fn watch_modes(
    regions: Vec<String>,
    clock: chaos::LoadClock,
    mut load_done: watch::Receiver<bool>,
) {
    let http = rig_http::HttpClient::new(Duration::from_millis(200), 2);
    let mut modes: Vec<Option<String>> = vec![None; regions.len()];
    loop {
        for (i, url) in regions.iter().enumerate() {
            let answer = http
                .send(
                    rig_http::Method::GET,
                    &format!("{}/admin/state", url.trim_end_matches('/')),
                    &[],
                    None,
                    Duration::from_millis(400),
                )
                .await;
            let Ok(answer) = answer else { continue };
            let Some(state) = answer.json::<serde_json::Value>() else {
                continue;
            };
            let (Some(mode), region) = (state["mode"].as_str(), state["region"].as_str()) else {
                continue;
            };
            if modes[i].as_deref() != Some(mode) {
                // The first reading is only news when it is not normal.
                if modes[i].is_some() || mode != "normal" {
                    crate::observe::event_line(
                        clock.elapsed_seconds(),
                        &format!("region {}: payment mode {mode}", region.unwrap_or("?")),
                    );
                }
                modes[i] = Some(mode.to_string());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = load_done.wait_for(|d| *d) => return,
        }
    }
}
