//! `rig load --workload checkout --target URL[,URL]`: the checkout workload against a
//! running system. The spec is a `[workload]` table (from `--config FILE`, then
//! `--set workload.x=y`), then the flags on top; the run prints the usual summary plus
//! what customers were told, and writes the client history with `--history`.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use loadgen::{CheckoutRun, CheckoutSpec, HistorySink, Shard, Summary, on_dedicated_thread};
use toml::{Table, Value};

use super::{
    LiveMetrics, LoadArgs, arrival, bad, create, ctrl_c, parse_duration, phases, user_error,
    write_json,
};
use crate::exit::Verdict;
use crate::observe::{HlogSink, ProgressLine};
use crate::overrides;

/// Flags of the checkout workload (refused with `--workload http`).
#[derive(Debug, Args)]
pub struct CheckoutArgs {
    /// Checkout: base URLs of the entry regions, a then b (comma-separated or repeated).
    #[arg(long = "target", value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Checkout: write the client history to a SQLite file (FILE or sqlite://FILE) or to
    /// PostgreSQL (postgres://user@host/db?schema=NAME).
    #[arg(long)]
    pub history: Option<String>,
    /// Checkout: prefix of every order id (`<run-tag>-<arrival index>`) [default: from the
    /// start time].
    #[arg(long)]
    pub run_tag: Option<String>,
    /// Checkout: share of customers who click twice (0 to 1).
    #[arg(long)]
    pub double_click: Option<f64>,
    /// Checkout: customers in progress at once [default: 1000].
    #[arg(long)]
    pub lanes: Option<usize>,
    /// Checkout: skus customers buy, most popular first [default: the first target's
    /// GET /admin/state].
    #[arg(long, value_delimiter = ',')]
    pub skus: Vec<String>,
    /// Checkout: a profile (its [workload] table) or a file that is the table.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Checkout: override a [workload] field, e.g. --set workload.retry.max_attempts=5.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

impl CheckoutArgs {
    /// The generic workload takes none of these.
    pub fn refuse_in_generic_mode(&self) -> anyhow::Result<()> {
        let given = [
            (!self.targets.is_empty(), "--target"),
            (self.history.is_some(), "--history"),
            (self.run_tag.is_some(), "--run-tag"),
            (self.double_click.is_some(), "--double-click"),
            (self.lanes.is_some(), "--lanes"),
            (!self.skus.is_empty(), "--skus"),
            (self.config.is_some(), "--config"),
            (!self.sets.is_empty(), "--set"),
        ];
        match given.iter().find(|(on, _)| *on) {
            Some((_, flag)) => Err(bad(format!(
                "{flag} belongs to the checkout workload; fix: add --workload checkout, or drop {flag}"
            ))),
            None => Ok(()),
        }
    }
}

/// The generic flags the checkout workload has no use for.
fn refuse_generic_flags(args: &LoadArgs) -> anyhow::Result<()> {
    let given = [
        (
            args.url.is_some(),
            "URL",
            "give the regions with --target URL[,URL]",
        ),
        (
            args.method.is_some(),
            "--method",
            "drop it (customers POST checkouts and GET orders)",
        ),
        (!args.headers.is_empty(), "--header", "drop it"),
        (
            args.body.is_some() || args.body_file.is_some(),
            "--body",
            "drop it (carts come from the seed)",
        ),
    ];
    match given.iter().find(|(on, _, _)| *on) {
        Some((_, flag, fix)) => Err(bad(format!(
            "{flag} is not used by --workload checkout; fix: {fix}"
        ))),
        None => Ok(()),
    }
}

/// The `[workload]` table from `--config` and `--set`, then the flags.
fn spec(args: &LoadArgs) -> anyhow::Result<CheckoutSpec> {
    let c = &args.checkout;
    let mut doc = Table::new();
    let origin = match &c.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|err| {
                bad(format!(
                    "--config {}: cannot read it ({err}); fix: give a readable TOML file",
                    path.display()
                ))
            })?;
            let parsed: Table = toml::from_str(&text).map_err(|err| {
                bad(format!(
                    "--config {}: not valid TOML: {err}; fix: correct the file",
                    path.display()
                ))
            })?;
            let table = match parsed.get("workload") {
                Some(Value::Table(table)) => table.clone(),
                Some(other) => {
                    return Err(bad(format!(
                        "--config {}: `workload` is a {}; fix: make it a [workload] table",
                        path.display(),
                        other.type_str()
                    )));
                }
                None => parsed,
            };
            doc.insert("workload".into(), Value::Table(table));
            format!("{} [workload]", path.display())
        }
        None => "[workload]".to_string(),
    };
    let sets = c
        .sets
        .iter()
        .map(|s| overrides::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(other) = sets.iter().find(|o| o.path[0] != "workload") {
        return Err(bad(format!(
            "--set {}: this command only takes workload.* keys; fix: e.g. --set workload.retry.max_attempts=5",
            other.text
        )));
    }
    overrides::apply(&mut doc, &sets)?;
    let table = doc.remove("workload").unwrap_or(Value::Table(Table::new()));
    let mut spec: CheckoutSpec = table.try_into().map_err(|err: toml::de::Error| {
        bad(format!(
            "{origin}: {}; fix: see the [workload] fields in the README",
            err.message().trim()
        ))
    })?;
    let example = "e.g. rig load --workload checkout --target http://127.0.0.1:8081,http://127.0.0.1:8082 --rate 100 --duration 30s";
    if let Some(phases) = phases(args, example)? {
        spec.phases = phases;
    }
    if let Some(a) = args.arrival {
        spec.arrival = arrival(a);
    }
    if let Some(seed) = args.seed {
        spec.seed = seed;
    }
    if let Some(max) = args.max_in_flight {
        spec.max_in_flight = max;
    }
    if let Some(timeout) = &args.timeout {
        spec.retry.timeout = loadgen::duration::HumanDuration(
            parse_duration("--timeout", timeout).map_err(user_error)?,
        );
    }
    if args.allow_remote {
        spec.allow_remote = true;
    }
    if let Some(tag) = &c.run_tag {
        spec.run_tag = Some(tag.clone());
    }
    if let Some(fraction) = c.double_click {
        spec.double_click_fraction = fraction;
    }
    if let Some(lanes) = c.lanes {
        spec.lanes = lanes;
    }
    if let Some(connections) = args.connections {
        spec.connections = connections;
    }
    if !c.skus.is_empty() {
        spec.skus = c.skus.clone();
    }
    Ok(spec)
}

pub async fn run(args: LoadArgs) -> anyhow::Result<Verdict> {
    refuse_generic_flags(&args)?;
    let spec = spec(&args)?;
    if args.checkout.targets.is_empty() {
        return Err(bad(
            "--target is missing; fix: give the entry regions, e.g. --target http://127.0.0.1:8081,http://127.0.0.1:8082".into(),
        ));
    }
    let shard = Shard::parse(&args.shard).map_err(user_error)?;
    let lag_bound = parse_duration("--lag-bound", &args.lag_bound).map_err(user_error)?;
    let mut checkout = CheckoutRun::new(spec, args.checkout.targets.clone()).shard(shard);
    if let Some(text) = &args.checkout.history {
        checkout = checkout.history(HistorySink::parse(text).map_err(user_error)?);
    }
    // Everything is checked before a file is created or a request sent.
    let (plan, schedule) = checkout.check().map_err(user_error)?;
    let hlog = match &args.hlog {
        Some(path) => Some(
            loadgen::HlogWriter::new(std::io::BufWriter::new(create("--hlog", path)?))
                .with_comment(&format!("rig load --workload checkout (shard {shard})")),
        ),
        None => None,
    };
    let json_file = match &args.json {
        Some(path) => Some(create("--json", path)?),
        None => None,
    };
    eprintln!(
        "rig load: checkout at {} - {} phase(s) over {}, {} arrivals, seed {}, shard {shard}, run tag {}, {} lanes, {:.0} % double-clicks, history {}; Ctrl-C stops early",
        args.checkout.targets.join(", "),
        schedule.phases().len(),
        loadgen::format_duration(schedule.duration()),
        schedule.spec().arrival.as_str(),
        schedule.spec().seed,
        plan.run_tag,
        plan.lanes,
        plan.double_click_fraction * 100.0,
        args.checkout.history.as_deref().unwrap_or("not kept"),
    );
    let progress = ProgressLine::new(args.progress);
    let metrics = LiveMetrics::start(
        &args,
        args.run_id.as_deref().unwrap_or(&plan.run_tag),
        shard,
    )
    .await?;
    let load_metrics = metrics.load.clone();
    let outcome = on_dedicated_thread("rig-load", move || async move {
        let mut observer = ((progress, HlogSink(hlog)), load_metrics);
        let report = checkout.run(&mut observer, ctrl_c()).await?;
        Ok::<_, loadgen::LoadgenError>((report, observer.0.1.0))
    })
    .await
    .map_err(user_error)?;
    let (report, hlog) = outcome.map_err(user_error)?;
    metrics.finish(args.metrics_linger).await;
    if let Some(writer) = hlog {
        writer.finish().map_err(user_error)?;
    }
    let summary = Summary::new(&report.report, &report.schedule, lag_bound);
    write_json(json_file, args.json.as_ref(), &summary)?;
    print!("{}", summary.to_text());
    print!("{}", report.to_text());
    if !report.history.is_complete() {
        return Err(anyhow!(
            "the client history is incomplete ({} arrivals lost{}); the run's record cannot be trusted",
            report.history.lost,
            report
                .history
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    Ok(Verdict::Pass)
}
