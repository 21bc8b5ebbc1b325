//! `rig run`: one command from profile to verdict. Starts the stores, a Toxiproxy-compatible
//! proxy (embedded unless `--toxiproxy`), the reference system on loopback wired through the
//! proxies, then runs the checkout load and the chaos timeline on one clock, drains, verifies
//! the durable records and the client history, judges the thresholds, and writes the run
//! directory. Exit 0 pass, 1 an invariant or threshold failed, 2 bad input, 3 the run could
//! not complete (Ctrl-C included: chaos healed, what exists verified, verdict marked partial).
//! The run itself is the library's [`crate::run`]; this is its command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use target_system::Defect;

use crate::exit::Verdict;
use crate::metrics::parse_linger;
use crate::run::{External, RunOptions};

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

fn parse_defect(text: &str) -> Result<Defect, String> {
    Defect::parse(text).ok_or_else(|| {
        format!(
            "unknown defect {text:?}; the defects are: {}",
            Defect::names()
        )
    })
}

pub async fn run(args: RunArgs) -> anyhow::Result<Verdict> {
    let external = match args.provider {
        Some(provider) => Some(External {
            regions: args.regions,
            provider,
        }),
        None => None,
    };
    let options = RunOptions {
        profile: args.profile,
        sets: args.sets,
        store: args.store,
        toxiproxy: args.toxiproxy,
        out: args.out,
        seed: args.seed,
        defects: args.defects,
        metrics_addr: args.metrics_addr,
        metrics_linger: args.metrics_linger,
        external,
        grafana_url: args.grafana_url,
        grafana_token: args.grafana_token,
    };
    crate::run::execute(&options).await
}
