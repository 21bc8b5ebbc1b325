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

use crate::exit::{Verbosity, Verdict};
use crate::metrics::parse_linger;
use crate::run::{External, RunOptions};

/// Run a profile end to end: the reference system, open-loop checkout load and a chaos
/// timeline on one clock, then a verdict from the durable records.
///
/// Writes runs/<UTC time>-<name>/ (or --out, which must be new or empty): profile.toml
/// (resolved), summary.json, summary.txt, verdict.json, report.html, junit.xml,
/// latency.hlog, history.db, chaos.jsonl, rig.log (the system's log lines), stores/. An
/// INCOMPLETE marker stays there until every document is written, so a killed run is
/// recognisable.
///
/// Checked before anything starts (exit 2, nothing written): the profile and overrides, the
/// chaos timeline against the topology and the load, a used --out, stores holding records.
///
/// Exit 0 pass, 1 an invariant or threshold failed, 2 bad input, 3 could not complete.
/// Ctrl-C, SIGTERM and SIGHUP stop the load, heal every fault, verify what exists, mark the
/// run partial in every document, and exit 3.
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
    /// Also print the system's log lines on stderr (they always go to rig.log in the run
    /// directory).
    #[arg(short, long)]
    verbose: bool,
    /// Let --store already hold records (of earlier runs, or of the external system's life
    /// before this run): they are then judged together with this run's. Without it such
    /// stores are refused (exit 2).
    #[arg(long)]
    append_to_stores: bool,
    /// Keep [[chaos]] windows that end after the load. The timeline stops (healing
    /// everything) when the load ends, so such a window is cut short or never runs; without
    /// this flag the profile is refused (exit 2).
    #[arg(long)]
    allow_chaos_after_load: bool,
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
        append_to_stores: args.append_to_stores,
        verbosity: if args.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Quiet
        },
        allow_chaos_after_load: args.allow_chaos_after_load,
        grafana_url: args.grafana_url,
        grafana_token: args.grafana_token,
    };
    crate::run::execute(&options).await
}
