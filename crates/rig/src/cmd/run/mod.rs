//! `rig run`: one command from profile to verdict. Starts the stores, a Toxiproxy-compatible
//! proxy (embedded unless `--toxiproxy`), the reference system on loopback wired through the
//! proxies, then runs the checkout load and the chaos timeline on one clock, drains, verifies
//! the durable records and the client history, judges the thresholds, and writes the run
//! directory. Exit 0 pass, 1 an invariant or threshold failed, 2 bad input, 3 the run could
//! not complete (Ctrl-C included: chaos healed, what exists verified, verdict marked partial).

mod artifacts;
mod html;
mod junit;
pub mod profile;
pub mod thresholds;
mod topology;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use loadgen::{CheckoutRun, HistorySink, Summary, on_dedicated_thread};
use target_system::{Defect, StoreUrl};
use tokio::sync::watch;

use crate::exit::{BadInput, Verdict};

/// Run a profile end to end: the reference system, open-loop checkout load and a chaos
/// timeline on one clock, then a verdict from the durable records.
///
/// Writes runs/<UTC time>-<name>/ (or --out): profile.toml (resolved), summary.json,
/// summary.txt, verdict.json, report.html, junit.xml, latency.hlog, history.db, chaos.jsonl,
/// stores/. Exit 0 pass, 1 an invariant or threshold failed, 2 bad input, 3 could not
/// complete (Ctrl-C heals chaos, verifies what exists, marks the verdict partial).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The profile (TOML): [run], [target], [workload], [[chaos]], [thresholds], [verify].
    profile: PathBuf,
    /// Override any profile key, e.g. --set target.retry_budget.ratio=1.0 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Stores: sqlite://DIR or postgres://... (default: sqlite://<run dir>/stores).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Use this Toxiproxy (e.g. http://127.0.0.1:8474) instead of the embedded one.
    #[arg(long, value_name = "URL")]
    toxiproxy: Option<String>,
    /// The run directory (default: runs/<UTC time>-<name>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Seed for everything (overrides run.seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Break one mechanism on purpose (repeatable); see `rig serve --help`.
    #[arg(long = "defect", value_name = "NAME", value_parser = parse_defect)]
    defects: Vec<Defect>,
    /// Serve the run's Prometheus metrics (system, load, chaos, rig_run_info; every series
    /// labelled run_id) at http://ADDR/metrics, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// With --metrics-addr: keep serving this long after the verdict, so the last values
    /// are scraped (at least two scrape intervals).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_linger)]
    metrics_linger: Duration,
    /// Drive an already-running system instead of starting one: the entry regions' base
    /// URLs, a then b (comma-separated). Needs --provider and --store (the stores those
    /// services write); proxy faults need --toxiproxy with the proxies a_to_b, b_to_a,
    /// a_to_provider and b_to_provider.
    #[arg(long, value_name = "URL,URL", value_delimiter = ',', requires_all = ["provider", "store"])]
    regions: Vec<String>,
    /// With --regions: the provider's base URL (its fault admin API).
    #[arg(long, value_name = "URL", requires = "regions")]
    provider: Option<String>,
    /// Post each chaos window to Grafana as an annotation tagged rig, chaos and the run id.
    #[arg(long, value_name = "URL")]
    grafana_url: Option<String>,
    /// Grafana service-account token for --grafana-url.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "RIG_GRAFANA_TOKEN",
        hide_env_values = true
    )]
    grafana_token: Option<String>,
}

pub(crate) fn parse_linger(text: &str) -> Result<Duration, String> {
    if matches!(text.trim(), "0" | "0s") {
        return Ok(Duration::ZERO);
    }
    loadgen::parse_duration("--metrics-linger", text).map_err(|err| err.to_string())
}

fn parse_defect(text: &str) -> Result<Defect, String> {
    Defect::parse(text).ok_or_else(|| {
        format!(
            "unknown defect {text:?}; the defects are: {}",
            Defect::names()
        )
    })
}

pub async fn run(args: RunArgs) -> anyhow::Result<Verdict> {
    let loaded = profile::load(&args.profile, &args.sets, args.seed, &args.defects)?;
    let profile = &loaded.profile;
    // Everything is checked before anything starts.
    let placeholder = vec!["http://127.0.0.1:1".to_string(); 2];
    CheckoutRun::new(profile.workload.clone(), placeholder)
        .check()
        .map_err(|err| BadInput(format!("{}: [workload] {err}", args.profile.display())))?;
    let plan = profile
        .chaos
        .expand(profile.run.seed)
        .map_err(|err| BadInput(format!("{}: {err}", args.profile.display())))?;
    let run_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => {
            PathBuf::from("runs").join(format!("{}-{}", artifacts::utc_stamp(), profile.run.name))
        }
    };
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("creating the run directory {}", run_dir.display()))?;
    std::fs::write(run_dir.join("profile.toml"), &loaded.resolved)
        .context("writing profile.toml")?;
    let run_id = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| profile.run.name.clone());
    let store = match &args.store {
        // An external system's stores are where its services put them; a system this run
        // starts gets a schema of its own per run.
        Some(url) if args.provider.is_some() => {
            StoreUrl::parse(url).map_err(|err| BadInput(format!("--store: {err}")))?
        }
        Some(url) => StoreUrl::parse(url)
            .map_err(|err| BadInput(format!("--store: {err}")))?
            .with_namespace(&namespace(&run_id)),
        None => StoreUrl::Sqlite {
            dir: run_dir.join("stores"),
        },
    };
    announce(profile, &run_dir, &store);

    // Metrics: every series carries run_id; one endpoint serves them all.
    target_system::metrics::set_common_labels(&[("run_id", &run_id)]);
    let registries = crate::metrics::Registries::default();
    registries.add(crate::metrics::run_info(&run_info_labels(&run_id, profile)));
    let chaos_registry = target_system::metrics::registry(&[]);
    registries.add(chaos_registry.clone());
    let load_metrics = loadgen::LoadMetrics::new(&[("run_id", &run_id), ("shard", "0/1")]);
    registries.add(load_metrics.registry().clone());
    let exporter = match &args.metrics_addr {
        Some(addr) => {
            let exporter = crate::metrics::Exporter::start(addr, registries.clone())
                .await
                .map_err(|err| BadInput(format!("{err:#}")))?;
            eprintln!("rig run: metrics at http://{}/metrics", exporter.addr());
            Some(exporter)
        }
        None => None,
    };

    // Ctrl-C: stop the load, heal the chaos, verify what exists.
    let (interrupt_tx, interrupt) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("rig run: interrupted; stopping the load and healing every fault");
            let _ = interrupt_tx.send(true);
        }
    });

    let config = Arc::new(profile.target.clone());
    let topology = match &args.provider {
        Some(provider) => {
            topology::Topology::external(&args.regions, provider, args.toxiproxy.as_deref(), &store)
                .await
                .context("the external system could not be reached")?
        }
        None => {
            topology::Topology::start(config, &store, args.toxiproxy.as_deref(), profile.run.seed)
                .await
                .context("the system under test could not start")?
        }
    };
    for registry in topology.registries() {
        registries.add(registry);
    }
    let journal_path = run_dir.join("chaos.jsonl");
    let clock = chaos::LoadClock::starting_now();
    let journal =
        chaos::Journal::open(&journal_path, clock).context("opening the chaos journal")?;

    // Load and chaos on one clock.
    let history_path = run_dir.join("history.db");
    let checkout = CheckoutRun::new(profile.workload.clone(), topology.region_urls.clone())
        .history(HistorySink::Sqlite {
            path: history_path.clone(),
        });
    let hlog = loadgen::HlogWriter::new(std::io::BufWriter::new(
        std::fs::File::create(run_dir.join("latency.hlog")).context("creating latency.hlog")?,
    ))
    .with_comment(&format!("rig run {run_id}"));
    let (load_done_tx, load_done) = watch::channel(false);
    let load_stop = stopped(interrupt.clone());
    let load = on_dedicated_thread("rig-run-load", move || async move {
        let mut observer = (
            (
                crate::cmd::load::ProgressLine::new(crate::cmd::load::ProgressMode::Auto),
                crate::cmd::load::HlogSink(Some(hlog)),
            ),
            load_metrics,
        );
        let report = checkout.run(&mut observer, load_stop).await;
        let _ = load_done_tx.send(true);
        report.map(|r| (r, observer.0.1.0))
    });
    let chaos_targets =
        crate::metrics::FaultGauge::new(topology.chaos_targets()?, &chaos_registry, &plan);
    let chaos_cancel = {
        let mut interrupt = interrupt.clone();
        let mut load_done = load_done.clone();
        async move {
            tokio::select! {
                _ = interrupt.wait_for(|i| *i) => chaos::AbortReason("interrupted (Ctrl-C)".into()),
                _ = load_done.wait_for(|d| *d) => chaos::AbortReason("the load ended before the timeline".into()),
            }
        }
    };
    let chaos_run = chaos::execute(&plan, &chaos_targets, &journal, chaos_cancel);
    let (load, chaos_outcome) = tokio::join!(load, chaos_run);
    drop(journal);
    let mut incomplete: Vec<String> = Vec::new();
    let (checkout_report, hlog) = match load {
        Ok(Ok(done)) => done,
        Ok(Err(err)) => {
            topology.shutdown().await;
            return Err(anyhow::Error::new(err).context("the load could not run"));
        }
        Err(err) => {
            topology.shutdown().await;
            return Err(anyhow::anyhow!("the load generator stopped: {err}"));
        }
    };
    if let Some(writer) = hlog {
        writer.finish().context("finishing latency.hlog")?;
    }
    match &chaos_outcome {
        Ok(outcome)
            if outcome
                .aborted
                .as_ref()
                .is_some_and(|r| r.0.starts_with("interrupted")) =>
        {
            incomplete.push("interrupted".into())
        }
        Ok(_) => {}
        Err(err) => incomplete.push(format!("chaos step failed (healed): {err}")),
    }
    if *interrupt.borrow() && incomplete.is_empty() {
        incomplete.push("interrupted".into());
    }

    // Drain: bounded, and cut short by Ctrl-C.
    let drained = if *interrupt.borrow() {
        None
    } else {
        Some(topology.drain(loaded.drain, interrupt.clone()).await)
    };
    if let Some(Err(left)) = &drained {
        eprintln!("rig run: the drain ended with work left: {left}");
    }
    let end_at_us = target_system::clock::now_us();
    topology.shutdown().await;

    // Verdict.
    let sources = verifier::Sources {
        store: store.clone(),
        history: Some(verifier::HistorySource::Sqlite(history_path)),
        journal: Some(journal_path.clone()),
    };
    let options = verifier::Options {
        end_at_us: Some(end_at_us),
        max_dossiers: profile.verify.max_dossiers,
        shed_p99_ms: profile.verify.shed_p99_ms,
        goodput_fraction: profile.verify.goodput_fraction,
    };
    let report = verifier::verify(&sources, &options)
        .await
        .context("the evidence could not be read; verdict unknown")?;
    let summary = Summary::new(
        &checkout_report.report,
        &checkout_report.schedule,
        Duration::from_millis(1),
    );
    let judged: Vec<thresholds::Judged> = profile
        .thresholds
        .iter()
        .filter_map(|(k, e)| thresholds::Threshold::parse(k, e).ok())
        .map(|t| t.judge(&checkout_report.report))
        .collect();
    let outcome = artifacts::Outcome {
        run_id: &run_id,
        profile,
        summary: &summary,
        checkout: &checkout_report,
        verdict: &report,
        thresholds: &judged,
        plan: &plan,
        incomplete: &incomplete,
        store: &store,
        drain_left: drained.as_ref().and_then(|d| d.as_ref().err().cloned()),
    };
    artifacts::write_all(&run_dir, &outcome).await?;
    print!("{}", artifacts::text(&outcome));
    eprintln!("rig run: run directory {}", run_dir.display());
    if let Some(url) = &args.grafana_url {
        match crate::grafana::annotate_chaos(
            url,
            args.grafana_token.as_deref(),
            &run_id,
            &journal_path,
        )
        .await
        {
            Ok(n) => eprintln!("rig run: posted {n} chaos annotation(s) to {url}"),
            Err(err) => eprintln!("rig run: Grafana annotations not posted: {err:#}"),
        }
    }
    if let Some(exporter) = exporter {
        if !args.metrics_linger.is_zero() && !*interrupt.borrow() {
            eprintln!(
                "rig run: serving the final metrics for {} more (--metrics-linger; Ctrl-C ends it)",
                loadgen::format_duration(args.metrics_linger)
            );
            let mut interrupt = interrupt.clone();
            tokio::select! {
                _ = tokio::time::sleep(args.metrics_linger) => {}
                _ = interrupt.wait_for(|i| *i) => {}
            }
        }
        exporter.shutdown().await;
    }
    if !incomplete.is_empty() {
        anyhow::bail!(
            "the run did not complete ({}); the verdict above is partial",
            incomplete.join("; ")
        );
    }
    let failed = report.status == verifier::Status::Fail || judged.iter().any(|t| !t.passed);
    Ok(if failed { Verdict::Fail } else { Verdict::Pass })
}

/// `rig_run_info` labels: the run, the profile and the settings runs are compared by.
fn run_info_labels<'a>(run_id: &str, profile: &'a profile::Profile) -> Vec<(&'a str, String)> {
    let target = &profile.target;
    vec![
        ("run_id", run_id.to_string()),
        ("profile", profile.run.name.clone()),
        ("seed", profile.run.seed.to_string()),
        ("retry_budget_ratio", target.retry_budget.ratio.to_string()),
        (
            "retry_budget_min_per_second",
            target.retry_budget.min_per_sec.to_string(),
        ),
        (
            "client_max_attempts",
            profile.workload.retry.max_attempts.to_string(),
        ),
        (
            "admission_max_in_flight",
            target.admission.provider_max_in_flight.to_string(),
        ),
        (
            "defects",
            target
                .defects
                .iter()
                .map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join("+"),
        ),
    ]
}

/// A PostgreSQL schema prefix from the run id.
fn namespace(run_id: &str) -> String {
    let clean: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "run_{}",
        clean
            .chars()
            .rev()
            .take(40)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    )
}

fn announce(profile: &profile::Profile, run_dir: &std::path::Path, store: &StoreUrl) {
    eprintln!(
        "rig run: {} (seed {}) -> {}; store {store}",
        profile.run.name,
        profile.run.seed,
        run_dir.display()
    );
    for defect in &profile.target.defects {
        eprintln!(
            "  !!! DEFECT {defect} IS ON: the system is broken on purpose (the {} invariant should catch it)",
            defect.caught_by()
        );
    }
}

/// `report.html` from a run's `summary.json` and `verdict.json`.
pub fn render_html(summary: &serde_json::Value, verdict: &serde_json::Value) -> String {
    html::render(summary, verdict)
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
