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
    /// Override any profile key, e.g. --set target.retry_budget.ratio=1.0 (repeatable); a
    /// number indexes an array of tables from 0: --set workload.phases.0.for=5m.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Stores: sqlite://DIR or postgres://... (default: sqlite://<run dir>/stores).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Use this Toxiproxy (e.g. http://127.0.0.1:8474) instead of the embedded one.
    #[arg(long, value_name = "URL")]
    toxiproxy: Option<String>,
    /// Refuse to start when an earlier run left faults on the Toxiproxy or the providers (a
    /// rig killed mid-run cannot heal). By default they are healed first, journaled and
    /// reported; `rig chaos --heal` heals them on its own.
    #[arg(long)]
    refuse_leftovers: bool,
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
    /// URLs, a then b (comma-separated), speaking the checkout contract.
    ///
    /// Alone, this is black-box mode: the rig cannot read the system's stores and judges it
    /// from its witnesses. It runs its own provider and event sink; configure the service's
    /// region a to pay at the first --provider-listen address and deliver its events to the
    /// first --sink-listen address, region b at the second ones (the rig's proxies
    /// a_to_provider, b_to_provider, a_to_sink, b_to_sink listen there, so the profile's
    /// provider, sink and link faults reach it).
    ///
    /// With --provider and --store: a system with its own provider whose stores the rig
    /// reads (e.g. the compose stack); proxy faults need --toxiproxy with the proxies
    /// a_to_b, b_to_a, a_to_provider and b_to_provider.
    #[arg(long, value_name = "URL,URL", value_delimiter = ',', num_args = 1)]
    regions: Vec<String>,
    /// With --regions: the system's own provider's base URL (its fault admin API); needs
    /// --store.
    #[arg(long, value_name = "URL", requires_all = ["regions", "store"])]
    provider: Option<String>,
    /// Black-box mode: where the rig's provider listens for region a and for region b.
    #[arg(
        long,
        value_name = "a=ADDR,b=ADDR",
        default_value = "a=127.0.0.1:18091,b=127.0.0.1:18092",
        value_parser = parse_pair
    )]
    provider_listen: [String; 2],
    /// Black-box mode: where the rig's event sink listens for region a and for region b
    /// (POST /v1/events {"event_id","order_id","type","version"}).
    #[arg(
        long,
        value_name = "a=ADDR,b=ADDR",
        default_value = "a=127.0.0.1:18095,b=127.0.0.1:18096",
        value_parser = parse_pair
    )]
    sink_listen: [String; 2],
    /// Black-box mode: where the rig's provider serves its Stripe-compatible face (set a
    /// Stripe SDK's API host to it; each region pays with its own secret key,
    /// provider.stripe_keys: sk_test_rig_a, sk_test_rig_b by default).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:18097")]
    stripe_listen: String,
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

/// `a=ADDR,b=ADDR`: one loopback address per region.
fn parse_pair(text: &str) -> Result<[String; 2], String> {
    let mut a = None;
    let mut b = None;
    for part in text.split(',') {
        match part.trim().split_once('=') {
            Some(("a", addr)) => a = Some(addr.to_string()),
            Some(("b", addr)) => b = Some(addr.to_string()),
            _ => {
                return Err(format!(
                    "{part:?}: write one address per region, e.g. a=127.0.0.1:18091,b=127.0.0.1:18092"
                ));
            }
        }
    }
    let (Some(a), Some(b)) = (a, b) else {
        return Err("name both regions, e.g. a=127.0.0.1:18091,b=127.0.0.1:18092".to_string());
    };
    for addr in [&a, &b] {
        let ip = addr
            .parse::<std::net::SocketAddr>()
            .map_err(|e| format!("{addr:?}: {e}; write IP:PORT, e.g. 127.0.0.1:18091"))?;
        if !ip.ip().is_loopback() {
            return Err(format!(
                "{addr}: the rig listens on loopback only (use 127.0.0.1 and reach it from containers through the host network)"
            ));
        }
    }
    Ok([a, b])
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
    let external = (!args.regions.is_empty()).then_some(External {
        regions: args.regions,
        provider: args.provider,
        provider_listen: args.provider_listen,
        sink_listen: args.sink_listen,
        stripe_listen: args.stripe_listen,
    });
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
        refuse_leftovers: args.refuse_leftovers,
    };
    crate::run::execute(&options).await
}
