//! `rig load URL`: generic open-loop HTTP load, wrk2-style (latency from the intended send
//! time). Parses and checks the flags, runs the engine on a thread of its own, prints the
//! text summary on stdout, progress on stderr, and writes the `.hlog` / JSON files asked for.
//! `rig load --workload checkout --target URL[,URL]` runs the checkout workload instead
//! (`checkout` below), with the same schedule flags and outputs plus the client history.

mod checkout;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use loadgen::{
    ArrivalProcess, Engine, EngineConfig, HlogWriter, HttpSpec, HttpWorkload, LoadgenError,
    Schedule, ScheduleSpec, Shard, Summary, on_dedicated_thread, parse_duration,
};

use crate::exit::{BadInput, Verdict};
use crate::observe::{HlogSink, ProgressLine, ProgressMode};

/// Open-loop load: arrivals leave at their scheduled times whatever the target does.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Target URL, http://host[:port][/path]; loopback only unless --allow-remote.
    pub url: Option<String>,
    /// Arrivals per second (one `hold` phase, with --duration).
    #[arg(long, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Length of the run, e.g. 30s, 2m (with --rate).
    #[arg(long)]
    pub duration: Option<String>,
    /// Phases instead of --rate/--duration, `;`-separated: `hold rate=R for=D`,
    /// `ramp from=R to=R for=D`, `step from=R to=R steps=N for=D`,
    /// `spike rate=R peak=R spike=D for=D`.
    #[arg(long)]
    pub phases: Option<String>,
    /// How arrivals are spaced [default: constant].
    #[arg(long, value_enum)]
    pub arrival: Option<Arrival>,
    /// Keep-alive connections (each carries one request at a time) [default: 50;
    /// checkout: at most this many per target, default 512].
    #[arg(long)]
    pub connections: Option<usize>,
    /// Most arrivals in flight; arrivals beyond it are dropped and counted, never delayed
    /// [default: 10000].
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Per-request timeout (generic: also how long the end of the run waits for
    /// stragglers) [default: 10s; checkout: 5s].
    #[arg(long)]
    pub timeout: Option<String>,
    /// HTTP method [default: GET].
    #[arg(long)]
    pub method: Option<String>,
    /// Request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body from a file.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Write an HdrHistogram interval log (one line per tag per second, values in ns).
    #[arg(long)]
    pub hlog: Option<PathBuf>,
    /// Write the JSON summary (schema: crates/loadgen/schema/summary.schema.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Serve live Prometheus metrics (rig_loadgen_*, labelled run_id and shard) at
    /// http://ADDR/metrics; after the run they stay up for --metrics-linger.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// The run_id label of the metrics (shards of one run share it) [default: the run tag
    /// for checkout, else "load"].
    #[arg(long, value_name = "NAME")]
    pub run_id: Option<String>,
    /// With --metrics-addr: keep serving this long after the run (two scrape intervals).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = crate::metrics::parse_linger)]
    pub metrics_linger: std::time::Duration,
    /// Seed of every random choice (Poisson arrivals, checkout customers); all shards must
    /// share it [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Send only slice i of N of the schedule (0-based), e.g. 0/2 and 1/2 on two machines.
    #[arg(long, default_value = "0/1")]
    pub shard: String,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Generator lag p99 above this means the generator, not the target, was the bottleneck.
    #[arg(long, default_value = "1ms")]
    pub lag_bound: String,
    /// Progress on stderr: live line on a terminal, a plain line every 5 s otherwise.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// What each arrival does.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Http)]
    pub workload: WorkloadKind,
    #[command(flatten)]
    pub checkout: checkout::CheckoutArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arrival {
    Constant,
    Poisson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadKind {
    Http,
    Checkout,
}

/// Library errors the user can fix are bad input (exit 2); the rest could not complete.
fn user_error(err: LoadgenError) -> anyhow::Error {
    if err.is_bad_input() {
        BadInput(err.to_string()).into()
    } else {
        err.into()
    }
}

fn bad(message: String) -> anyhow::Error {
    BadInput(message).into()
}

/// Everything checked before anything is sent.
struct Plan {
    schedule: Schedule,
    shard: Shard,
    http: HttpSpec,
    config: EngineConfig,
    lag_bound: Duration,
}

fn plan(args: &LoadArgs) -> anyhow::Result<Plan> {
    let example = "e.g. rig load http://127.0.0.1:8080/ --rate 100 --duration 30s";
    args.checkout.refuse_in_generic_mode()?;
    let url = args.url.clone().ok_or_else(|| {
        bad(format!(
            "URL is missing; fix: give the target URL, {example}"
        ))
    })?;
    let arrival = arrival(args.arrival.unwrap_or(Arrival::Constant));
    let seed = args.seed.unwrap_or(1);
    let phases = phases(args, example)?.ok_or_else(|| {
        bad(format!(
            "--rate and --duration (or --phases) are needed; fix: {example}"
        ))
    })?;
    let spec = ScheduleSpec {
        phases,
        arrival,
        seed,
    };
    let schedule = Schedule::compile(&spec).map_err(user_error)?;
    let shard = Shard::parse(&args.shard).map_err(user_error)?;
    let timeout = parse_duration("--timeout", args.timeout.as_deref().unwrap_or("10s"))
        .map_err(user_error)?;
    let lag_bound = parse_duration("--lag-bound", &args.lag_bound).map_err(user_error)?;
    let body = match (&args.body, &args.body_file) {
        (Some(text), _) => text.clone().into_bytes().into(),
        (None, Some(path)) => std::fs::read(path)
            .map_err(|err| {
                bad(format!(
                    "--body-file = {}: cannot read it ({err}); fix: give a readable file",
                    path.display()
                ))
            })?
            .into(),
        (None, None) => Default::default(),
    };
    let http = HttpSpec {
        url,
        method: args.method.clone().unwrap_or_else(|| "GET".into()),
        headers: args.headers.clone(),
        body,
        timeout,
        connect_timeout: Duration::from_secs(3),
        connections: args.connections.unwrap_or(50),
        allow_remote: args.allow_remote,
    };
    let config = EngineConfig {
        max_in_flight: args.max_in_flight.unwrap_or(10_000),
        drain_timeout: timeout,
        ..EngineConfig::default()
    };
    Ok(Plan {
        schedule,
        shard,
        http,
        config,
        lag_bound,
    })
}

fn arrival(arrival: Arrival) -> ArrivalProcess {
    match arrival {
        Arrival::Constant => ArrivalProcess::Constant,
        Arrival::Poisson => ArrivalProcess::Poisson,
    }
}

/// The phases the schedule flags give: `--phases`, or `--rate` with `--duration`; `None`
/// when neither is given.
fn phases(args: &LoadArgs, example: &str) -> anyhow::Result<Option<Vec<loadgen::PhaseSpec>>> {
    match (&args.phases, args.rate, &args.duration) {
        (Some(text), None, None) => Ok(Some(ScheduleSpec::parse_phases(text).map_err(user_error)?)),
        (None, Some(rate), Some(duration)) => {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(bad(format!(
                    "--rate = {rate}: a rate must be above 0 arrivals per second; fix: {example}"
                )));
            }
            let duration = parse_duration("--duration", duration).map_err(user_error)?;
            Ok(Some(
                ScheduleSpec::hold(rate, duration, ArrivalProcess::Constant, 0).phases,
            ))
        }
        (Some(_), _, _) => Err(bad(
            "--phases and --rate/--duration both given; fix: use one or the other".into(),
        )),
        (None, None, None) => Ok(None),
        (None, _, _) => Err(bad(format!(
            "--rate and --duration (or --phases) are needed together; fix: {example}"
        ))),
    }
}

fn create(flag: &str, path: &PathBuf) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(path).map_err(|err| {
        bad(format!(
            "{flag} = {}: cannot create the file ({err}); fix: give a writable path",
            path.display()
        ))
    })
}

pub async fn run(args: LoadArgs) -> anyhow::Result<Verdict> {
    if args.workload == WorkloadKind::Checkout {
        return checkout::run(args).await;
    }
    let Plan {
        schedule,
        shard,
        http,
        config,
        lag_bound,
    } = plan(&args)?;
    // Files are opened before the run so a bad path costs nothing.
    let hlog = match &args.hlog {
        Some(path) => Some(
            HlogWriter::new(std::io::BufWriter::new(create("--hlog", path)?))
                .with_comment(&format!("rig load {} (shard {shard})", http.url)),
        ),
        None => None,
    };
    let json_file = match &args.json {
        Some(path) => Some(create("--json", path)?),
        None => None,
    };
    let progress = ProgressLine::new(args.progress);
    eprintln!(
        "rig load: {} {} - {} phase(s) over {}, {} arrivals, seed {}, shard {shard}, {} connections; Ctrl-C stops early",
        http.method,
        http.url,
        schedule.phases().len(),
        loadgen::format_duration(schedule.duration()),
        schedule.spec().arrival.as_str(),
        schedule.spec().seed,
        http.connections,
    );

    let metrics =
        LiveMetrics::start(&args, args.run_id.as_deref().unwrap_or("load"), shard).await?;
    let load_metrics = metrics.load.clone();
    let engine_schedule = schedule.clone();
    let outcome = on_dedicated_thread("rig-load", move || async move {
        let workload = Arc::new(HttpWorkload::connect(&http).await?);
        let engine = Engine::new(engine_schedule, shard, workload, config)?;
        let mut observer = ((progress, HlogSink(hlog)), load_metrics);
        let report = engine.run(&mut observer, ctrl_c()).await;
        Ok::<_, LoadgenError>((report, observer.0.1.0))
    })
    .await
    .map_err(user_error)?;
    let (report, hlog) = outcome.map_err(user_error)?;
    metrics.finish(args.metrics_linger).await;

    if let Some(writer) = hlog {
        writer.finish().map_err(user_error)?;
    }
    let summary = Summary::new(&report, &schedule, lag_bound);
    write_json(json_file, args.json.as_ref(), &summary)?;
    print!("{}", summary.to_text());
    Ok(Verdict::Pass)
}

fn write_json(
    file: Option<std::fs::File>,
    path: Option<&PathBuf>,
    summary: &Summary,
) -> anyhow::Result<()> {
    if let Some(mut file) = file {
        let path = path.map(|p| p.display().to_string());
        serde_json::to_writer_pretty(&mut file, summary)
            .context("could not encode the JSON summary")?;
        writeln!(file).with_context(|| format!("could not write {path:?}"))?;
    }
    Ok(())
}

/// `--metrics-addr`: the load generator's metrics and, when asked for, their endpoint.
pub(crate) struct LiveMetrics {
    /// None without --metrics-addr: nothing to feed, nothing for the generator to do.
    pub(crate) load: Option<loadgen::LoadMetrics>,
    exporter: Option<crate::metrics::Exporter>,
}

impl LiveMetrics {
    pub(crate) async fn start(
        args: &LoadArgs,
        run_id: &str,
        shard: loadgen::Shard,
    ) -> anyhow::Result<Self> {
        let shard = shard.to_string();
        let (load, exporter) = match &args.metrics_addr {
            Some(addr) => {
                let load = loadgen::LoadMetrics::new(&[("run_id", run_id), ("shard", &shard)]);
                let registries = crate::metrics::Registries::default();
                registries.add(load.registry().clone());
                let exporter = crate::metrics::Exporter::start(addr, registries)
                    .await
                    .map_err(|err| bad(format!("{err:#}")))?;
                eprintln!("rig load: metrics at http://{}/metrics", exporter.addr());
                (Some(load), Some(exporter))
            }
            None => (None, None),
        };
        Ok(Self { load, exporter })
    }

    /// Keeps the endpoint up for `linger` (Ctrl-C ends it early), then stops it.
    pub(crate) async fn finish(self, linger: std::time::Duration) {
        if let Some(exporter) = self.exporter {
            if !linger.is_zero() {
                eprintln!(
                    "rig load: serving the final metrics for {} more (--metrics-linger; Ctrl-C ends it)",
                    loadgen::format_duration(linger)
                );
                tokio::select! {
                    _ = tokio::time::sleep(linger) => {}
                    _ = ctrl_c() => {}
                }
            }
            exporter.shutdown().await;
        }
    }
}

/// Completes on Ctrl-C (never, where signals cannot be handled: the run goes to its end).
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
