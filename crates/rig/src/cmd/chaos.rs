//! `rig chaos`: apply a profile's `[[chaos]]` timeline to an external Toxiproxy (and, for
//! provider faults, to the provider's admin API), journal every step, and heal at the end,
//! on error and on Ctrl-C.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use crate::exit::{BadInput, Verdict};

/// Replay a chaos timeline now; the clock starts when the command starts.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Toxiproxy API URL (the real Toxiproxy or `rig toxiproxy`), e.g. http://127.0.0.1:8474.
    #[arg(long, value_name = "URL")]
    toxiproxy: String,
    /// Profile whose `[[chaos]]` entries are applied (its other keys are ignored).
    #[arg(long, value_name = "PROFILE")]
    timeline: PathBuf,
    /// Provider admin API for `kind = "provider"` faults, as NAME=URL or URL (named
    /// `provider`); repeat for several providers.
    #[arg(long = "provider", value_name = "[NAME=]URL")]
    providers: Vec<String>,
    /// Seed for the timeline's `at_jitter` (default: the profile's `seed`, else 1).
    #[arg(long)]
    seed: Option<u64>,
    /// Journal file (JSON Lines, appended, fsync'd per record).
    #[arg(long, value_name = "FILE", default_value = "chaos.jsonl")]
    journal: PathBuf,
}

fn chaos_error(err: chaos::ChaosError) -> anyhow::Error {
    if err.is_bad_input() {
        BadInput(err.to_string()).into()
    } else {
        err.into()
    }
}

/// The profile's top-level `seed`, if it has one.
fn profile_seed(path: &std::path::Path) -> anyhow::Result<Option<u64>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BadInput(format!("--timeline {}: {e}", path.display())))?;
    let table: toml::Table = text.parse().map_err(|e| {
        BadInput(format!(
            "--timeline {}: not valid TOML: {e}",
            path.display()
        ))
    })?;
    match table.get("seed") {
        None => Ok(None),
        Some(toml::Value::Integer(n)) if *n >= 0 => Ok(Some(*n as u64)),
        Some(other) => Err(BadInput(format!(
            "{}: seed = {other} must be a whole number from 0 up",
            path.display()
        ))
        .into()),
    }
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<Verdict> {
    let timeline = chaos::Timeline::from_profile_file(&args.timeline).map_err(chaos_error)?;
    if timeline.is_empty() {
        return Err(BadInput(format!(
            "{} has no [[chaos]] entries; add one, e.g. [[chaos]] at = \"10s\" for = \"30s\" \
             kind = \"partition\" between = [\"a\", \"b\"]",
            args.timeline.display()
        ))
        .into());
    }
    let seed = match args.seed {
        Some(seed) => seed,
        None => profile_seed(&args.timeline)?.unwrap_or(1),
    };
    let plan = timeline.expand(seed).map_err(chaos_error)?;
    let mut providers = BTreeMap::new();
    for spec in &args.providers {
        let (name, url) = spec.split_once('=').unwrap_or(("provider", spec.as_str()));
        let admin = chaos::ProviderAdmin::new(name, url).map_err(chaos_error)?;
        if providers.insert(name.to_string(), admin).is_some() {
            return Err(BadInput(format!(
                "--provider {spec}: the name {name:?} is given twice; write NAME=URL with distinct names"
            ))
            .into());
        }
    }
    let targets = chaos::Targets {
        toxiproxy: Some(chaos::ToxiproxyControl::new(&args.toxiproxy).map_err(chaos_error)?),
        providers,
        processes: None,
        ..Default::default()
    };
    let mut journal = chaos::Journal::open(&args.journal, chaos::LoadClock::starting_now())
        .map_err(chaos_error)?;
    let mut records = journal.observe();
    let printer = tokio::spawn(async move {
        while let Some(record) = records.recv().await {
            eprintln!("{}", describe(&record));
        }
    });
    eprintln!(
        "chaos: {} steps over {:.1}s (seed {seed}); journal {}",
        plan.steps.len(),
        plan.end().as_secs_f64(),
        args.journal.display()
    );
    let cancel = async {
        let _ = tokio::signal::ctrl_c().await;
        chaos::AbortReason("interrupted (Ctrl-C)".to_string())
    };
    let outcome = chaos::execute(&plan, &targets, &journal, cancel).await;
    drop(journal);
    let _ = printer.await;
    let outcome = outcome.map_err(chaos_error)?;
    if let Some(reason) = outcome.aborted {
        anyhow::bail!(
            "{} after {} of {} steps; every fault was healed (journal {})",
            reason.0,
            outcome.steps_applied,
            plan.steps.len(),
            args.journal.display()
        );
    }
    println!(
        "chaos timeline complete: {} steps applied, every fault healed; journal {}",
        outcome.steps_applied,
        args.journal.display()
    );
    Ok(Verdict::Pass)
}

/// One progress line per journal record.
fn describe(record: &chaos::Record) -> String {
    let what = match &record.step {
        Some(step) => format!(
            "step {} {} {} (chaos[{}]{})",
            step.step,
            step.kind,
            step.action,
            step.entry,
            step.name
                .as_deref()
                .map(|n| format!(" {n}"))
                .unwrap_or_default()
        ),
        None => String::new(),
    };
    let message = record.message.as_deref().unwrap_or("");
    format!(
        "[{:>9.3}s] {:<9} {what} {message}",
        record.elapsed_seconds,
        format!("{:?}", record.event).to_lowercase()
    )
}
