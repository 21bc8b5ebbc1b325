//! `rig explain`: one order's story after the fact, from a run directory or stores kept
//! elsewhere.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use verifier::Stores;
use verifier::explain::{ExplainError, Explanation};

use crate::exit::{BadInput, Verdict};

/// Explain one order after the fact: its customer's requests and answers, each region's
/// transitions, forward-outbox entries, payment attempts and outbox events, the provider's
/// requests and charges, the event sink's deliveries and the fault windows it lived
/// through, on one timeline (seconds since the load started, and the wall time), then a
/// paragraph in plain words. Reads records only. Exit 0, or 2 when no record names the
/// order.
///
/// Examples: `rig explain rmxbvggg7-1384 runs/2026-12-06T13-22-06Z-quickstart`,
/// `rig explain --arrival 42 runs/...`, `rig explain --trace 4bf92f35...4736 runs/...`,
/// `rig explain ORDER --store postgres://... --history history.db --json`.
///
/// Every line shows the request id its record carries (`[req ...]`): the customer's request
/// it was written for, the same on the client's request, the regions' records and the
/// provider's log. The header shows the customer's W3C trace id.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The order id (as the customer sent it: `<run tag>-<arrival index>`); or leave it out
    /// and give --arrival or --trace.
    #[arg(value_name = "ORDER_ID", required_unless_present_any = ["arrival", "trace"])]
    order: Option<String>,
    /// A run directory written by `rig run`.
    #[arg(value_name = "RUN_DIR")]
    run_dir: Option<PathBuf>,
    /// Select the order by its arrival index in the load schedule (from 0), from the client
    /// history.
    #[arg(long, value_name = "N", conflicts_with = "trace")]
    arrival: Option<i64>,
    /// Select the order by its customer's W3C trace id (32 hex digits, or a whole
    /// `traceparent` header as a log shows it).
    #[arg(long, value_name = "TRACE_ID")]
    trace: Option<String>,
    /// The stores: sqlite://DIR or postgres://... (with a RUN_DIR on PostgreSQL: the
    /// server; the run's namespace is applied).
    #[arg(long, value_name = "URL", env = "RIG_STORE")]
    store: Option<String>,
    #[command(flatten)]
    history: super::verify::HistoryArgs,
    /// The chaos journal (JSON Lines): the fault windows the order lived through.
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Print the timeline as JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: ExplainArgs) -> anyhow::Result<Verdict> {
    // `rig explain --arrival 3 RUN_DIR`: the one positional is the run directory.
    let selector = args
        .arrival
        .map(|a| format!("--arrival {a}"))
        .or_else(|| args.trace.as_ref().map(|t| format!("--trace {t}")));
    let (order, run_dir) = match (&args.order, &args.run_dir, &selector) {
        (Some(only), None, Some(_)) => (None, Some(PathBuf::from(only))),
        (Some(order), Some(_), Some(selector)) => {
            return Err(BadInput(format!(
                "both an order id ({order}) and {selector}: give one of them"
            ))
            .into());
        }
        _ => (args.order.clone(), args.run_dir.clone()),
    };
    let from_dir = match &run_dir {
        Some(dir) => Some(super::verify::read_run_dir(dir, args.store.as_deref())?),
        None => None,
    };
    let sources = super::verify::sources_of(
        from_dir.as_ref(),
        args.store.as_deref(),
        &args.history,
        args.journal.as_ref(),
    )?;
    // The bounds do not matter here; a run's profile (or the system's record) gives them.
    let asked = from_dir.as_ref().and_then(|d| d.asked.clone());
    let stores = Stores::open(&sources, asked.as_ref())
        .await
        .context("the records could not be read")?;
    let (faults, load_start_us) = match &sources.journal {
        Some(path) => (
            verifier::journal::fault_windows(path)?,
            verifier::journal::load_start_us(path),
        ),
        None => (Vec::new(), None),
    };
    let order_id = match (order, args.arrival, &args.trace) {
        (_, Some(arrival), _) => verifier::explain::order_of_arrival(&stores, arrival)
            .await
            .map_err(explain_error)?,
        (_, None, Some(trace)) => verifier::explain::order_of_trace(&stores, trace)
            .await
            .map_err(explain_error)?,
        (Some(order), None, None) => order,
        (None, None, None) => {
            return Err(
                BadInput("give an ORDER_ID, --arrival N or --trace TRACE_ID".into()).into(),
            );
        }
    };
    let explanation = verifier::explain::explain(&stores, &order_id, &faults, load_start_us)
        .await
        .map_err(explain_error)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&explanation)?);
    } else {
        print!("{}", render(&explanation));
    }
    Ok(Verdict::Pass)
}

fn explain_error(err: ExplainError) -> anyhow::Error {
    match err {
        ExplainError::NotFound(message) => BadInput(message).into(),
        ExplainError::Verify(err) => {
            anyhow::Error::new(err).context("the records could not be read")
        }
    }
}

/// The timeline as text: one line per event, then the summary.
pub fn render(e: &Explanation) -> String {
    let mut out = format!(
        "order {}{}{}\n",
        e.order_id,
        e.arrival_id
            .map(|a| format!(", arrival {a}"))
            .unwrap_or_default(),
        e.customer_id
            .as_deref()
            .map(|c| format!(", customer {c}"))
            .unwrap_or_default()
    );
    if let Some(trace) = &e.trace_id {
        out.push_str(&format!("trace {trace}\n"));
    }
    let actor_width = e.lines.iter().map(|l| l.actor.len()).max().unwrap_or(0);
    for line in &e.lines {
        let since = line
            .since_start_seconds
            .map_or_else(|| "        ".to_string(), |s| format!("{s:>8.3}s"));
        // The request id, and the trace id only where it is not the customer's.
        let mut ids = String::new();
        if let Some(trace) = line
            .trace_id
            .as_deref()
            .filter(|t| Some(*t) != e.trace_id.as_deref())
        {
            ids.push_str(&format!("  [trace {trace}]"));
        }
        if let Some(request) = &line.request_id {
            ids.push_str(&format!("  [req {request}]"));
        }
        out.push_str(&format!(
            "{since}  {}  {:<actor_width$}  {}{ids}\n",
            evidence::time::rfc3339(line.at_us),
            line.actor,
            line.what
        ));
    }
    out.push_str(&format!("\n{}\n", e.summary));
    out
}
