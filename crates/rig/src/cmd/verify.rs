//! `rig verify`: the verifier against existing records.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use evidence::StoreUrl;
use verifier::{HistorySource, Options, Sources, Status};

use crate::exit::{BadInput, Verdict};

/// Verify business invariants against existing durable records: no duplicate charge, money
/// conservation, client agreement, single final outcome, no oversell, bounded pending age,
/// effectively-once outbox, admission control.
///
/// Reads only the stores, the client history and the chaos journal, never a live system.
/// Prints a verdict table; exit 0 when nothing failed (invariants that lack evidence say
/// `unknown` and why), 1 when an invariant failed, 3 when the evidence could not be read.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The stores: sqlite://DIR or postgres://... (as given to `rig serve` / `rig run`).
    #[arg(long, value_name = "URL", env = "RIG_STORE")]
    store: String,
    /// The client history: a SQLite file, or a postgres://... URL (see --history-schema).
    #[arg(long, value_name = "FILE|URL")]
    history: Option<String>,
    /// The PostgreSQL schema holding the history tables.
    #[arg(long, value_name = "NAME", default_value = "history")]
    history_schema: String,
    /// The chaos journal (JSON Lines), to show fault windows beside each counterexample.
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Also write the verdict as JSON (schema: crates/verifier/schema/verdict.schema.json).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Counterexamples kept per invariant.
    #[arg(long, value_name = "N", default_value_t = 5)]
    dossiers: usize,
    /// Client-side p99 bound for shed (429/503) answers, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100.0)]
    shed_p99_ms: f64,
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<Verdict> {
    let store = StoreUrl::parse(&args.store).map_err(|err| BadInput(format!("--store: {err}")))?;
    let history = args.history.as_deref().map(|h| {
        if h.starts_with("postgres://") || h.starts_with("postgresql://") {
            HistorySource::Postgres {
                url: h.to_string(),
                schema: args.history_schema.clone(),
            }
        } else {
            HistorySource::Sqlite(PathBuf::from(h.strip_prefix("sqlite://").unwrap_or(h)))
        }
    });
    if args.shed_p99_ms.is_nan() || args.shed_p99_ms <= 0.0 {
        return Err(BadInput(format!(
            "--shed-p99-ms {}: use a positive number of milliseconds",
            args.shed_p99_ms
        ))
        .into());
    }
    let sources = Sources {
        store,
        history,
        journal: args.journal.clone(),
    };
    let options = Options {
        max_dossiers: args.dossiers,
        shed_p99_ms: args.shed_p99_ms,
        ..Options::default()
    };
    let report = verifier::verify(&sources, &options)
        .await
        .context("the evidence could not be read; verdict unknown")?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(match report.status {
        Status::Fail => Verdict::Fail,
        Status::Pass | Status::Unknown => Verdict::Pass,
    })
}
