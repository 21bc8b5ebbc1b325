//! Phase 1: everything is checked before anything starts, then the run directory is made and
//! holds the resolved profile.
//!
//! A run directory belongs to one run: an `--out` that already holds anything is refused
//! (exit 2) before anything is opened or written, and so are stores that already hold
//! records, unless `--append-to-stores` says that is meant. The chaos timeline is checked
//! against the topology (every proxy and provider it names exists) and against the load
//! (every window ends while the load runs).

use std::path::{Path, PathBuf};

use anyhow::Context;
use evidence::StoreUrl;
use loadgen::CheckoutRun;

use super::profile::{self, Loaded};
use super::{RunOptions, artifacts, topology};
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
    /// What the run judges: the reference system it starts; an external one (`--regions
    /// --provider --store`: the profile's `[target]` configured nothing, so the bounds are
    /// what that system recorded); or a black-box one (`--regions` alone: judged from the
    /// witnesses by the profile's bounds).
    pub system: super::SystemKind,
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
/// checks it against the topology and the load, parses the store URL and refuses a run
/// directory or stores that hold an earlier run (bad input is `BadInput`, exit 2, and
/// nothing is created); then creates the run directory and writes `profile.toml`.
pub async fn prepare(options: &RunOptions) -> anyhow::Result<Prepared> {
    let loaded = profile::load(
        &options.profile,
        &options.sets,
        options.seed,
        &options.defects,
    )?;
    let profile = &loaded.profile;
    let where_ = options.profile.display();
    let system = super::SystemKind::of(options.external.as_ref());
    let plan = check_plan(
        profile,
        &where_.to_string(),
        system,
        options.allow_chaos_after_load,
    )?;
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
    refuse_used_dir(&run_dir)?;
    let run_id = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| profile.run.name.clone());
    let store = match parsed_store {
        // An external system's stores are where its services put them; a system this run
        // starts gets a schema of its own per run.
        Some(url) if system == super::SystemKind::External => url,
        Some(url) => url.with_namespace(&namespace(&run_id)),
        None => StoreUrl::Sqlite {
            dir: run_dir.join("stores"),
        },
    };
    if options.store.is_some() && !options.append_to_stores {
        refuse_used_stores(&store).await?;
    }
    if let Some(external) = options
        .external
        .as_ref()
        .filter(|_| system == super::SystemKind::BlackBox)
    {
        let flags = ["--provider-listen", "--sink-listen"];
        for (flag, addrs) in flags
            .iter()
            .zip([&external.provider_listen, &external.sink_listen])
        {
            for addr in addrs {
                std::net::TcpListener::bind(addr.as_str()).map_err(|err| {
                    BadInput(format!(
                        "{flag} {addr}: cannot listen there ({err}); give free loopback addresses, e.g. {flag} a=127.0.0.1:18091,b=127.0.0.1:18092"
                    ))
                })?;
            }
        }
        let addr = &external.stripe_listen;
        std::net::TcpListener::bind(addr.as_str()).map_err(|err| {
            BadInput(format!(
                "--stripe-listen {addr}: cannot listen there ({err}); give a free loopback address, e.g. --stripe-listen 127.0.0.1:18097"
            ))
        })?;
    }
    if let Some(addr) = &options.metrics_addr {
        // Bound again by the exporter when the run starts; checked here so that a busy
        // address leaves nothing behind.
        std::net::TcpListener::bind(addr.as_str()).map_err(|err| {
            BadInput(format!(
                "--metrics-addr {addr}: cannot listen there ({err}); give a free address, e.g. 127.0.0.1:9464"
            ))
        })?;
    }
    std::fs::create_dir_all(&run_dir).map_err(|err| {
        BadInput(format!(
            "--out {}: cannot create the run directory ({err}); give a new directory in a writable place",
            run_dir.display()
        ))
    })?;
    std::fs::write(run_dir.join(INCOMPLETE), incomplete_note(&run_id))
        .context("writing the run's INCOMPLETE marker")?;
    std::fs::write(run_dir.join("profile.toml"), &loaded.resolved)
        .context("writing profile.toml")?;
    announce(profile, &run_dir, &store);
    Ok(Prepared {
        loaded,
        plan,
        run_dir,
        run_id,
        store,
        system,
    })
}

/// Checks a loaded profile's workload and chaos timeline against the topology of `system`
/// and the load's length; returns the expanded timeline.
pub(crate) fn check_plan(
    profile: &profile::Profile,
    where_: &str,
    system: super::SystemKind,
    allow_chaos_after_load: bool,
) -> Result<chaos::Plan, BadInput> {
    let placeholder = vec!["http://127.0.0.1:1".to_string(); 2];
    let (_, schedule) = CheckoutRun::new(profile.workload.clone(), placeholder)
        .check()
        .map_err(|err| BadInput(format!("{where_}: [workload] {err}")))?;
    let plan = profile
        .chaos
        .expand(profile.run.seed)
        .map_err(|err| BadInput(format!("{where_}: {err}")))?;
    let (proxies, fault_apis, processes): (&[&str], &[&str], &[&str]) = match system {
        super::SystemKind::Reference => {
            (&topology::PROXIES, &topology::PROVIDERS, &chaos::PROCESSES)
        }
        super::SystemKind::External => (&topology::PROXIES, &topology::EXTERNAL_PROVIDERS, &[]),
        super::SystemKind::BlackBox => (&topology::BLACK_BOX_PROXIES, &topology::PROVIDERS, &[]),
    };
    plan.check_targets(proxies, fault_apis, processes)
        .map_err(|err| BadInput(format!("{where_}: {err}")))?;
    if !allow_chaos_after_load {
        plan.check_within(schedule.duration()).map_err(|err| {
            BadInput(format!(
                "{where_}: {err}; or keep it as it is with --allow-chaos-after-load"
            ))
        })?;
    }
    Ok(plan)
}

/// The file that marks a run directory whose run has not finished writing it: written
/// first, removed last, so a killed run is recognisable.
pub const INCOMPLETE: &str = "INCOMPLETE";

fn incomplete_note(run_id: &str) -> String {
    format!(
        "run {run_id} started at {} (process {}) and has not finished: if no rig process is \
         running it, the run was killed and its records end where it stopped.\n",
        evidence::time::rfc3339(evidence::time::now_us()),
        std::process::id()
    )
}

/// A run directory is written once: one that exists and holds anything is an earlier run's.
fn refuse_used_dir(dir: &Path) -> Result<(), BadInput> {
    let shown = dir.display();
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(BadInput(format!(
                "--out {shown}: the directory already holds files (an earlier run?); a run \
                 directory is written once: give a new --out, or leave it out for runs/<time>-<name>"
            ))),
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if dir.exists() => Err(BadInput(format!(
            "--out {shown}: not a directory; give the path of a new directory"
        ))),
        Err(err) => Err(BadInput(format!(
            "--out {shown}: cannot be used ({err}); give a new directory in a writable place"
        ))),
    }
}

/// Stores that already hold records belong to an earlier run (or another system's life):
/// judging them with this run's would mix the two.
async fn refuse_used_stores(store: &StoreUrl) -> Result<(), BadInput> {
    let held = evidence::queries::records_held(store)
        .await
        .map_err(|err| BadInput(format!("--store {store}: {err}")))?;
    if held.is_empty() {
        return Ok(());
    }
    Err(BadInput(format!(
        "--store {store} already holds records ({}): they would be judged with this run's; \
         give fresh stores (a new directory, database or schema), or --append-to-stores if \
         that is meant",
        held.join(", ")
    )))
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
