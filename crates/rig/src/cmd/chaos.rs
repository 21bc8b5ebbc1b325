//! `rig chaos`: apply a profile's `[[chaos]]` timeline to an external Toxiproxy (and, for
//! provider faults, to the provider's admin API), journal every step, and heal at the end,
//! on error and on Ctrl-C. `rig chaos --heal` removes what a killed rig left behind.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use crate::exit::{BadInput, Verdict};

/// Replay a chaos timeline now; the clock starts when the command starts. Faults an earlier,
/// killed run left on the Toxiproxy or the providers are healed first (and journaled).
///
/// `rig chaos --heal --toxiproxy URL [--provider URL] [--earlier-journal FILE]` instead
/// removes every toxic the rig made (named `rig.<run>.<type>_<stream>`), clears each
/// provider's faults, enables the proxies the killed run's journal shows it disabled, and
/// says what it did: for after a rig was killed mid-run.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Toxiproxy API URL (the real Toxiproxy or `rig toxiproxy`), e.g. http://127.0.0.1:8474.
    #[arg(long, value_name = "URL")]
    toxiproxy: String,
    /// Profile whose `[[chaos]]` entries are applied (its other keys are ignored).
    #[arg(long, value_name = "PROFILE", required_unless_present = "heal")]
    timeline: Option<PathBuf>,
    /// Remove every rig-made toxic and clear the providers' faults, then exit.
    #[arg(long, conflicts_with = "timeline")]
    heal: bool,
    /// With --heal: the journal of the run that was killed (`chaos.jsonl`, in its run
    /// directory for `rig run`); proxies it disabled and never enabled again are enabled.
    /// Without it a disabled proxy is left as it is: nothing on it says who disabled it.
    #[arg(long, value_name = "FILE", requires = "heal")]
    earlier_journal: Option<PathBuf>,
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

/// The providers of `--provider`, by name.
fn providers_of(specs: &[String]) -> anyhow::Result<BTreeMap<String, chaos::ProviderAdmin>> {
    let mut providers = BTreeMap::new();
    for spec in specs {
        let (name, url) = spec.split_once('=').unwrap_or(("provider", spec.as_str()));
        let admin = chaos::ProviderAdmin::new(name, url).map_err(chaos_error)?;
        if providers.insert(name.to_string(), admin).is_some() {
            return Err(BadInput(format!(
                "--provider {spec}: the name {name:?} is given twice; write NAME=URL with distinct names"
            ))
            .into());
        }
    }
    Ok(providers)
}

/// `--heal`: every rig-made toxic removed, every provider's faults cleared, each said.
async fn heal(args: &ChaosArgs) -> anyhow::Result<Verdict> {
    let toxiproxy = chaos::ToxiproxyControl::new(&args.toxiproxy).map_err(chaos_error)?;
    let providers = providers_of(&args.providers)?;
    let mut log = Vec::new();
    let unreachable = |what: String| anyhow::anyhow!(what);
    let found = toxiproxy
        .rig_made(&mut log)
        .await
        .map_err(|e| unreachable(format!("Toxiproxy at {}: {e}", toxiproxy.url())))?;
    // The journal first: bad input changes nothing.
    let ours = match &args.earlier_journal {
        None => Default::default(),
        Some(given) => {
            // A run directory stands for its journal.
            let path = if given.is_dir() {
                given.join("chaos.jsonl")
            } else {
                given.clone()
            };
            chaos::left_disabled(&chaos::read_journal(&path).map_err(|err| {
                BadInput(format!(
                    "--earlier-journal {}: {err}; give the chaos.jsonl of the killed run (or its run directory)",
                    given.display()
                ))
            })?)
        }
    };
    let (enable, others): (Vec<String>, Vec<String>) = found
        .disabled
        .iter()
        .cloned()
        .partition(|p| ours.contains(p));
    let ours = chaos::Leftovers {
        toxics: found.toxics.clone(),
        disabled: enable,
    };
    for (proxy, toxic) in &ours.toxics {
        eprintln!("removing toxic {toxic} from proxy {proxy}");
    }
    for proxy in &ours.disabled {
        eprintln!(
            "enabling proxy {proxy} (the earlier run's journal disabled it and never enabled it again)"
        );
    }
    toxiproxy
        .clear(&ours, &mut log)
        .await
        .map_err(|e| unreachable(format!("Toxiproxy at {}: {e}", toxiproxy.url())))?;
    let hint = if args.earlier_journal.is_some() {
        "the earlier run's journal did not disable it"
    } else {
        "nothing on it says who disabled it; give --earlier-journal RUN_DIR/chaos.jsonl"
    };
    for proxy in &others {
        eprintln!(
            "proxy {proxy} is disabled (left as it is: {hint}; or enable it with POST /proxies/{proxy} {{\"enabled\": true}})"
        );
    }
    let mut cleared = 0;
    for (name, admin) in &providers {
        let faults = admin
            .read(&mut log)
            .await
            .map_err(|e| unreachable(format!("provider {name}: {e}")))?;
        if faults.is_clear() {
            continue;
        }
        eprintln!(
            "clearing provider {name}'s faults: {}",
            faults.fields_set().join(", ")
        );
        admin
            .clear(&mut log)
            .await
            .map_err(|e| unreachable(format!("provider {name}: {e}")))?;
        cleared += 1;
    }
    println!(
        "healed: {} rig-made toxic(s) removed from {}, {} proxy(ies) enabled, {cleared} provider(s) cleared",
        ours.toxics.len(),
        toxiproxy.url(),
        ours.disabled.len()
    );
    Ok(Verdict::Pass)
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<Verdict> {
    if args.heal {
        return heal(&args).await;
    }
    let Some(timeline_path) = args.timeline.clone() else {
        return Err(BadInput("give --timeline PROFILE (or --heal)".into()).into());
    };
    let timeline = chaos::Timeline::from_profile_file(&timeline_path).map_err(chaos_error)?;
    if timeline.is_empty() {
        return Err(BadInput(format!(
            "{} has no [[chaos]] entries; add one, e.g. [[chaos]] at = \"10s\" for = \"30s\" \
             kind = \"partition\" between = [\"a\", \"b\"]",
            timeline_path.display()
        ))
        .into());
    }
    let seed = match args.seed {
        Some(seed) => seed,
        None => profile_seed(&timeline_path)?.unwrap_or(1),
    };
    let plan = timeline.expand(seed).map_err(chaos_error)?;
    let providers = providers_of(&args.providers)?;
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
