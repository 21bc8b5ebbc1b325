//! Phase 1: everything is checked before anything starts, then the run directory is made and
//! holds the resolved profile.

use std::path::{Path, PathBuf};

use anyhow::Context;
use evidence::StoreUrl;
use loadgen::CheckoutRun;

use super::profile::{self, Loaded};
use super::{RunOptions, artifacts};
use crate::exit::BadInput;

/// A checked run, its directory made.
#[derive(Debug)]
pub struct Prepared {
    pub loaded: Loaded,
    /// The chaos timeline expanded from the seed.
    pub plan: chaos::Plan,
    pub run_dir: PathBuf,
    /// The run directory's name: the `run_id` label of every series.
    pub run_id: String,
    /// Where the system's stores are.
    pub store: StoreUrl,
}

impl Prepared {
    pub fn profile(&self) -> &profile::Profile {
        &self.loaded.profile
    }

    /// The chaos journal, `chaos.jsonl`.
    pub fn journal_path(&self) -> PathBuf {
        self.run_dir.join("chaos.jsonl")
    }

    /// The client history, `history.db`.
    pub fn history_path(&self) -> PathBuf {
        self.run_dir.join("history.db")
    }
}

/// Loads the profile with its overrides, checks the workload, expands the chaos plan and
/// parses the store URL (bad input is `BadInput`, exit 2, and nothing is created); then
/// creates the run directory and writes `profile.toml`.
pub fn prepare(options: &RunOptions) -> anyhow::Result<Prepared> {
    let loaded = profile::load(
        &options.profile,
        &options.sets,
        options.seed,
        &options.defects,
    )?;
    let profile = &loaded.profile;
    let placeholder = vec!["http://127.0.0.1:1".to_string(); 2];
    CheckoutRun::new(profile.workload.clone(), placeholder)
        .check()
        .map_err(|err| BadInput(format!("{}: [workload] {err}", options.profile.display())))?;
    let plan = profile
        .chaos
        .expand(profile.run.seed)
        .map_err(|err| BadInput(format!("{}: {err}", options.profile.display())))?;
    let parsed_store = options
        .store
        .as_deref()
        .map(StoreUrl::parse)
        .transpose()
        .map_err(|err| BadInput(format!("--store: {err}")))?;
    let run_dir = match &options.out {
        Some(dir) => dir.clone(),
        None => {
            PathBuf::from("runs").join(format!("{}-{}", artifacts::utc_stamp(), profile.run.name))
        }
    };
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("creating the run directory {}", run_dir.display()))?;
    std::fs::write(run_dir.join("profile.toml"), &loaded.resolved)
        .context("writing profile.toml")?;
    let run_id = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| profile.run.name.clone());
    let store = match parsed_store {
        // An external system's stores are where its services put them; a system this run
        // starts gets a schema of its own per run.
        Some(url) if options.external.is_some() => url,
        Some(url) => url.with_namespace(&namespace(&run_id)),
        None => StoreUrl::Sqlite {
            dir: run_dir.join("stores"),
        },
    };
    announce(profile, &run_dir, &store);
    Ok(Prepared {
        loaded,
        plan,
        run_dir,
        run_id,
        store,
    })
}

/// A PostgreSQL schema prefix from the run id.
fn namespace(run_id: &str) -> String {
    let clean: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let tail: String = clean.chars().rev().take(40).collect();
    format!("run_{}", tail.chars().rev().collect::<String>())
}

fn announce(profile: &profile::Profile, run_dir: &Path, store: &StoreUrl) {
    eprintln!(
        "rig run: {} (seed {}) -> {}; store {store}",
        profile.run.name,
        profile.run.seed,
        run_dir.display()
    );
    for defect in &profile.target.defects {
        eprintln!(
            "  !!! DEFECT {defect} IS ON: the system is broken on purpose (the {} invariant should catch it)",
            defect.caught_by()
        );
    }
}
