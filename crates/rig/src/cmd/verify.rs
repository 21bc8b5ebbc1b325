//! `rig verify`: the verifier against existing records: a run directory, or stores kept
//! elsewhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use evidence::StoreUrl;
use verifier::{HistorySource, Options, Sources, Status};

use crate::exit::{BadInput, Verdict};

/// Verify business invariants against existing durable records: no duplicate charge, money
/// conservation, client agreement, single final outcome, no oversell, bounded pending age,
/// effectively-once outbox, admission control.
///
/// Give a run directory (`rig verify runs/...`: its stores, client history, chaos journal
/// and profile), or the records' places with --store, --history and --journal. The bounds
/// come from the run's profile (or --profile); what the system recorded of them is a claim,
/// and a difference is a violation. Without a profile, the system's record is the bound. Reads only
/// records, never a live system, and writes nothing into a run directory. A run that was
/// interrupted or killed is said to be so first; what it left open then (pending orders,
/// unpublished events) is unknown, not a violation. Exit 0 when nothing failed (invariants
/// that lack evidence say `unknown` and why), 1 when an invariant failed, 3 when the
/// evidence could not be read or the run was interrupted (the verdict is partial).
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A run directory written by `rig run` (its stores, history.db and chaos.jsonl).
    #[arg(value_name = "RUN_DIR")]
    run_dir: Option<PathBuf>,
    /// The stores: sqlite://DIR or postgres://... (as given to `rig serve` / `rig run`).
    /// With a RUN_DIR whose stores are on PostgreSQL: the server, and the run's namespace
    /// is applied.
    #[arg(
        long,
        value_name = "URL",
        env = "RIG_STORE",
        required_unless_present = "run_dir"
    )]
    store: Option<String>,
    #[command(flatten)]
    history: HistoryArgs,
    /// A profile whose [target] table gives the bounds to judge by (a run directory's own
    /// profile.toml is used without this). Without one, the bounds are what the system
    /// recorded in its stores.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
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
    /// A confirmation event must reach the event sink within this many milliseconds of its
    /// customer being told confirmed. Default: the profile's [verify] event_age_ms, else
    /// what its outbox settings imply (12000 at the defaults).
    #[arg(long, value_name = "MS")]
    event_age_ms: Option<f64>,
}

/// What a run directory says about its records and how it ended.
pub(crate) struct RunDir {
    pub(crate) store: StoreUrl,
    pub(crate) history: Option<HistorySource>,
    pub(crate) journal: Option<PathBuf>,
    /// The run was interrupted or killed: at about this wall-clock µs.
    interrupted_at_us: Option<i64>,
    /// What the run asked of the system it started (its profile's `[target]`); `None` for
    /// a run that drove an external system.
    pub(crate) asked: Option<evidence::RunParams>,
    /// The event-age bound its profile implies.
    event_age_ms: f64,
    /// Its catalog's prices.
    prices: BTreeMap<String, i64>,
    /// False for a black-box run given no admission limits.
    admission_bounds: bool,
}

/// What a profile (read as `rig run` reads one) sets for judging.
struct Judging {
    /// The bounds its `[target]` table asks for.
    asked: evidence::RunParams,
    event_age_ms: f64,
    prices: BTreeMap<String, i64>,
    /// A black-box system's bounds (with `[verify]`'s admission limits) and whether any
    /// admission limit was given.
    black_box: (evidence::RunParams, bool),
}

fn asked_by(profile: &Path) -> anyhow::Result<Judging> {
    let loaded = crate::run::profile::load(profile, &[], None, &[])?;
    Ok(Judging {
        asked: loaded.profile.target.run_params(),
        event_age_ms: loaded.profile.event_age_ms(),
        prices: loaded.profile.prices(),
        black_box: loaded.profile.black_box_bounds(),
    })
}

pub(crate) fn read_run_dir(dir: &Path, server: Option<&str>) -> anyhow::Result<RunDir> {
    if !dir.join("profile.toml").exists() {
        return Err(BadInput(format!(
            "{}: not a run directory (no profile.toml); give a directory `rig run` wrote, or \
             --store URL",
            dir.display()
        ))
        .into());
    }
    let summary: Option<serde_json::Value> = std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let kind = summary.as_ref().and_then(|s| s["store_kind"].as_str());
    let store = match (kind, server) {
        // The run's PostgreSQL stores: on the server given, in the run's namespace.
        (Some("postgres"), Some(url)) => {
            let url = StoreUrl::parse(url).map_err(|err| BadInput(format!("--store: {err}")))?;
            match summary.as_ref().and_then(|s| s["store_namespace"].as_str()) {
                Some(namespace) => url.with_namespace(namespace),
                None => url,
            }
        }
        (Some("postgres"), None) => {
            return Err(BadInput(format!(
                "{}: its stores are on PostgreSQL ({}); give the server with --store postgres://... (the run's namespace is applied)",
                dir.display(),
                summary
                    .as_ref()
                    .and_then(|s| s["store"].as_str())
                    .unwrap_or("?")
            ))
            .into());
        }
        (_, Some(url)) => {
            StoreUrl::parse(url).map_err(|err| BadInput(format!("--store: {err}")))?
        }
        // SQLite: the run directory's own stores, wherever it was moved to.
        (_, None) if dir.join("stores").exists() => StoreUrl::Sqlite {
            dir: dir.join("stores"),
        },
        (_, None) => match summary.as_ref().and_then(|s| s["store"].as_str()) {
            Some(url) => {
                StoreUrl::parse(url).map_err(|err| BadInput(format!("summary.json: {err}")))?
            }
            None => StoreUrl::Sqlite {
                dir: dir.join("stores"),
            },
        },
    };
    let history = Some(dir.join("history.db"))
        .filter(|p| p.exists())
        .map(HistorySource::Sqlite);
    let journal = Some(dir.join("chaos.jsonl")).filter(|p| p.exists());
    let interrupted_at_us = if let Some(note) = crate::run::incomplete(dir) {
        let at = last_written_us(dir);
        eprintln!(
            "rig verify: {} is an incomplete run: {note}its records end at about {}; what was \
             open then is judged unknown, not a violation",
            dir.display(),
            evidence::time::rfc3339(at)
        );
        Some(at)
    } else if summary.as_ref().and_then(|s| s["verdict"].as_str()) == Some("partial") {
        let verdict: Option<serde_json::Value> = std::fs::read_to_string(dir.join("verdict.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        let at = verdict
            .and_then(|v| v["end_at_us"].as_i64())
            .unwrap_or_else(|| last_written_us(dir));
        eprintln!(
            "rig verify: {} is a partial run (it was interrupted at {}); what was open then is \
             judged unknown, not a violation",
            dir.display(),
            evidence::time::rfc3339(at)
        );
        Some(at)
    } else {
        None
    };
    let system = summary.as_ref().and_then(|s| s["system"].as_str());
    let external = matches!(system, Some("external" | "black-box"));
    let blackbox = system == Some("black-box");
    let judging = asked_by(&dir.join("profile.toml"))?;
    Ok(RunDir {
        store,
        history,
        journal,
        interrupted_at_us,
        // A black-box run is judged by its profile (the rig configured what it could); an
        // external system with readable stores by what it recorded.
        asked: match (external, blackbox) {
            (_, true) => Some(judging.black_box.0),
            (true, false) => None,
            (false, false) => Some(judging.asked),
        },
        admission_bounds: !blackbox || judging.black_box.1,
        event_age_ms: judging.event_age_ms,
        prices: judging.prices,
    })
}

/// When the run last wrote a record: the newest modification time in the run directory
/// and its stores (a killed run's records end there).
fn last_written_us(dir: &Path) -> i64 {
    let files = std::fs::read_dir(dir)
        .into_iter()
        .chain(std::fs::read_dir(dir.join("stores")))
        .flatten()
        .flatten();
    files
        .filter_map(|entry| entry.metadata().ok()?.modified().ok())
        .map(evidence::time::system_time_us)
        .max()
        .unwrap_or_else(evidence::time::now_us)
}

/// Where the client history is, for records kept outside a run directory.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The client history: a SQLite file, or a postgres://... URL (see --history-schema).
    #[arg(long, value_name = "FILE|URL")]
    history: Option<String>,
    /// The PostgreSQL schema holding the history tables.
    #[arg(long, value_name = "NAME", default_value = "history")]
    history_schema: String,
}

impl HistoryArgs {
    /// The history given: a SQLite file (`sqlite://` optional) or a PostgreSQL URL with the
    /// schema holding the history tables.
    pub(crate) fn source(&self) -> Option<HistorySource> {
        match self.history.as_deref() {
            Some(h) if h.starts_with("postgres://") || h.starts_with("postgresql://") => {
                Some(HistorySource::Postgres {
                    url: h.to_string(),
                    schema: self.history_schema.clone(),
                })
            }
            Some(h) => Some(HistorySource::Sqlite(PathBuf::from(
                h.strip_prefix("sqlite://").unwrap_or(h),
            ))),
            None => None,
        }
    }
}

/// The records to read: a run directory's, with what the flags give instead or besides.
pub(crate) fn sources_of(
    run_dir: Option<&RunDir>,
    store: Option<&str>,
    history: &HistoryArgs,
    journal: Option<&PathBuf>,
) -> anyhow::Result<Sources> {
    let store = match (store, run_dir) {
        (_, Some(dir)) => dir.store.clone(),
        (Some(url), None) => {
            StoreUrl::parse(url).map_err(|err| BadInput(format!("--store: {err}")))?
        }
        (None, None) => {
            return Err(BadInput(
                "give a RUN_DIR or --store URL (and --history FILE for the customers' side)".into(),
            )
            .into());
        }
    };
    Ok(Sources {
        store,
        history: history
            .source()
            .or_else(|| run_dir.and_then(|d| d.history.clone())),
        journal: journal
            .cloned()
            .or_else(|| run_dir.and_then(|d| d.journal.clone())),
    })
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<Verdict> {
    let from_dir = match &args.run_dir {
        Some(dir) => Some(read_run_dir(dir, args.store.as_deref())?),
        None => None,
    };
    let sources = sources_of(
        from_dir.as_ref(),
        args.store.as_deref(),
        &args.history,
        args.journal.as_ref(),
    )?;
    if args.shed_p99_ms.is_nan() || args.shed_p99_ms <= 0.0 {
        return Err(BadInput(format!(
            "--shed-p99-ms {}: use a positive number of milliseconds",
            args.shed_p99_ms
        ))
        .into());
    }
    if let Some(ms) = args.event_age_ms
        && !(ms.is_finite() && ms > 0.0)
    {
        return Err(BadInput(format!(
            "--event-age-ms {ms}: use a positive number of milliseconds"
        ))
        .into());
    }
    let profile = args.profile.as_deref().map(asked_by).transpose()?;
    let options = Options {
        max_dossiers: args.dossiers,
        shed_p99_ms: args.shed_p99_ms,
        interrupted_at_us: from_dir.as_ref().and_then(|d| d.interrupted_at_us),
        asked: match &profile {
            Some(judging) => Some(judging.asked.clone()),
            None => from_dir.as_ref().and_then(|d| d.asked.clone()),
        },
        event_age_ms: match (args.event_age_ms, &profile, &from_dir) {
            (Some(ms), _, _) => ms,
            (None, Some(judging), _) => judging.event_age_ms,
            (None, None, Some(dir)) => dir.event_age_ms,
            (None, None, None) => Options::default().event_age_ms,
        },
        admission_bounds: from_dir.as_ref().is_none_or(|d| d.admission_bounds),
        prices: match (&profile, &from_dir) {
            (Some(judging), _) => judging.prices.clone(),
            (None, Some(dir)) => dir.prices.clone(),
            (None, None) => BTreeMap::new(),
        },
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
    // A violation stands even in an interrupted run.
    let failed = report.verdicts.iter().any(|v| v.status == Status::Fail);
    match report.status {
        Status::Fail => Ok(Verdict::Fail),
        Status::Pass | Status::Unknown => Ok(Verdict::Pass),
        Status::Partial if failed => Ok(Verdict::Fail),
        Status::Partial => anyhow::bail!(
            "{}; the verdict above is partial",
            report
                .partial
                .as_deref()
                .unwrap_or("the run was interrupted")
        ),
    }
}
