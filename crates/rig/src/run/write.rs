//! Phase 6: the run directory's documents, the verdict on the console, Grafana annotations,
//! and the metrics endpoint kept up for a last scrape.

use super::outcome::Outcome;
use super::{Drained, Driven, Judgement, Prepared, RunOptions, Started, artifacts};
use crate::exit::Verdict;

/// Writes every document of the run directory, prints the verdict, and maps it to the
/// command's outcome (an incomplete run is an error: exit 3, verdict partial).
pub async fn write(
    prepared: &Prepared,
    options: &RunOptions,
    started: Started,
    driven: &Driven,
    drained: Drained,
    judgement: Judgement,
) -> anyhow::Result<Verdict> {
    let outcome = Outcome {
        run_id: &prepared.run_id,
        profile: prepared.profile(),
        summary: &judgement.summary,
        checkout: &driven.checkout,
        verdict: &judgement.report,
        thresholds: &judgement.thresholds,
        plan: &prepared.plan,
        incomplete: &driven.incomplete,
        store: &prepared.store,
        drain_left: drained.left,
        system: prepared.system,
        orders: judgement.orders.as_ref(),
    };
    artifacts::write_all(&prepared.run_dir, &outcome).await?;
    // Every document is written: the run is no longer incomplete (an interrupted run says
    // `partial` in them instead).
    let marker = prepared.run_dir.join(super::prepare::INCOMPLETE);
    if let Err(err) = std::fs::remove_file(&marker) {
        eprintln!("rig run: could not remove {}: {err}", marker.display());
    }
    print!("{}", artifacts::text(&outcome));
    eprintln!("rig run: run directory {}", prepared.run_dir.display());
    if let Some(url) = &options.grafana_url {
        match crate::grafana::annotate_chaos(
            url,
            options.grafana_token.as_deref(),
            &prepared.run_id,
            &prepared.journal_path(),
        )
        .await
        {
            Ok(n) => eprintln!("rig run: posted {n} chaos annotation(s) to {url}"),
            Err(err) => eprintln!("rig run: Grafana annotations not posted: {err:#}"),
        }
    }
    if let Some(exporter) = started.exporter {
        let linger = options.metrics_linger;
        if !linger.is_zero() && !*started.interrupt.borrow() {
            eprintln!(
                "rig run: serving the final metrics for {} more (--metrics-linger; Ctrl-C ends it)",
                loadgen::format_duration(linger)
            );
            let mut interrupt = started.interrupt.clone();
            tokio::select! {
                _ = tokio::time::sleep(linger) => {}
                _ = interrupt.wait_for(|i| *i) => {}
            }
        }
        exporter.shutdown().await;
    }
    if !driven.incomplete.is_empty() {
        anyhow::bail!(
            "the run did not complete ({}); the verdict above is partial",
            driven.incomplete.join("; ")
        );
    }
    let failed = judgement.report.status == verifier::Status::Fail
        || judgement.thresholds.iter().any(|t| !t.passed);
    Ok(if failed { Verdict::Fail } else { Verdict::Pass })
}
