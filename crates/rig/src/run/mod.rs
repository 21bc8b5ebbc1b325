//! `rig run` as a library: one run from profile to verdict, in phases that tests can call
//! without spawning the binary.
//!
//! 1. [`prepare`]: load and check everything (profile, overrides, workload, chaos plan, store
//!    URL) before anything starts; create the run directory and write `profile.toml`.
//! 2. [`start`]: metrics (every series labelled `run_id`), Ctrl-C, and the system under test
//!    on loopback behind a Toxiproxy-compatible proxy (or the external system).
//! 3. [`drive`]: the checkout load and the chaos timeline on one clock; chaos always heals.
//! 4. [`drain`]: let the system finish its work (bounded, cut short by Ctrl-C), then stop it.
//! 5. [`judge`]: the verifier over the durable records, and the profile's thresholds.
//! 6. [`write`]: the run directory's documents, the console verdict, Grafana annotations.
//!
//! # Layout
//! - `prepare.rs`, `start.rs`, `drive.rs`, `judge.rs` (drain and judge), `write.rs`: the
//!   phases.
//! - [`profile`]: the profile (`[run]`, `[target]`, `[workload]`, `[[chaos]]`,
//!   `[thresholds]`, `[verify]`).
//! - [`topology`]: the system under test and its proxies, and the bounded drain.
//! - [`thresholds`]: k6-style bounds on the load's measurements.
//! - [`outcome`], [`artifacts`], `html.rs`, `junit.rs`: what a run produced and its documents.

pub mod artifacts;
pub mod children;
mod drive;
mod html;
mod judge;
mod junit;
pub mod outcome;
pub(crate) mod prepare;
pub mod profile;
mod start;
pub mod thresholds;
pub mod topology;
mod write;

use std::path::PathBuf;
use std::time::Duration;

use target_system::Defect;
use tokio::sync::watch;

use anyhow::Context as _;

use crate::exit::{Verbosity, Verdict};

pub use drive::{Driven, INTERRUPTED, drive};
pub use judge::{Drained, Judgement, drain, judge};
pub use prepare::{INCOMPLETE, Prepared, prepare};
pub use start::{Started, start};
pub use write::write;

/// What the command line asks of a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The profile file.
    pub profile: PathBuf,
    /// `--set KEY=VALUE` overrides, in order.
    pub sets: Vec<String>,
    /// `--store URL` (default: `sqlite://<run dir>/stores`).
    pub store: Option<String>,
    /// `--toxiproxy URL` instead of the embedded proxy server.
    pub toxiproxy: Option<String>,
    /// `--out DIR` (default: `runs/<UTC time>-<name>`).
    pub out: Option<PathBuf>,
    /// `--seed N` (overrides `run.seed`).
    pub seed: Option<u64>,
    /// `--defect NAME`, repeatable.
    pub defects: Vec<Defect>,
    /// `--metrics-addr ADDR` and how long to keep serving after the verdict.
    pub metrics_addr: Option<String>,
    pub metrics_linger: Duration,
    /// `--regions URL,URL --provider URL`: drive an already-running system.
    pub external: Option<External>,
    /// `--append-to-stores`: `--store` may already hold records of other runs.
    pub append_to_stores: bool,
    /// `--allow-chaos-after-load`: keep `[[chaos]]` windows that end after the load (they are
    /// cut short, or never run, when the load ends).
    pub allow_chaos_after_load: bool,
    /// `-v`: the components' log lines on stderr too (they always go to `rig.log`).
    pub verbosity: Verbosity,
    /// `--grafana-url URL` (and its token): post chaos windows as annotations.
    pub grafana_url: Option<String>,
    pub grafana_token: Option<String>,
    /// `--refuse-leftovers`: an earlier run's faults stop the run instead of being healed.
    pub refuse_leftovers: bool,
}

/// An already-running system: its entry regions (a, then b), and either its own provider
/// (stores readable at `--store`) or, in black-box mode, the rig's provider and event sink
/// reached through the addresses it was configured with.
#[derive(Debug, Clone)]
pub struct External {
    pub regions: Vec<String>,
    /// `--provider URL`: the system's own provider. `None`: black-box mode.
    pub provider: Option<String>,
    /// Black-box: where region a's and region b's payment calls go (the rig listens there,
    /// through its proxies `a_to_provider` and `b_to_provider`).
    pub provider_listen: [String; 2],
    /// Black-box: where region a's and region b's confirmation events go (`a_to_sink`,
    /// `b_to_sink`).
    pub sink_listen: [String; 2],
    /// Black-box: where the provider's Stripe-compatible face listens (its callers are told
    /// apart by their secret keys).
    pub stripe_listen: String,
}

/// What kind of system a run judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKind {
    /// The reference system, started by the run.
    Reference,
    /// A system the run did not start, whose stores (and provider) it reads.
    External,
    /// A system the run did not start and cannot read: judged from the witnesses alone
    /// (it pays through the rig's provider and delivers events to the rig's sink).
    BlackBox,
}

impl SystemKind {
    /// As `summary.json` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reference => "reference",
            Self::External => "external",
            Self::BlackBox => "black-box",
        }
    }

    fn of(external: Option<&External>) -> Self {
        match external {
            None => Self::Reference,
            Some(e) if e.provider.is_some() => Self::External,
            Some(_) => Self::BlackBox,
        }
    }
}

/// Runs every phase in order. Exit-code semantics: `Ok(Pass|Fail)` is the verdict; an
/// error is bad input (`BadInput`, exit 2) or a run that could not complete (exit 3, also
/// after Ctrl-C, when the verdict printed is partial).
pub async fn execute(options: &RunOptions) -> anyhow::Result<Verdict> {
    let prepared = prepare(options).await?;
    let log = prepared.run_dir.join("rig.log");
    crate::exit::log_to_file(&log, options.verbosity)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut started = start(&prepared, options).await?;
    let mut driven = match drive(&prepared, &mut started, options.refuse_leftovers).await {
        Ok(driven) => driven,
        Err(err) => {
            started.stop().await;
            return Err(err);
        }
    };
    let drained = drain(&prepared, &mut started).await;
    // Interrupted during the drain: what is still open then is the interruption's doing.
    if started.interrupted() && !driven.interrupted() {
        driven.incomplete.push(INTERRUPTED.into());
    }
    let judgement = judge(&prepared, &driven, &drained).await?;
    write(&prepared, options, started, &driven, drained, judgement).await
}

/// The note of a run directory's `INCOMPLETE` marker: the run never finished writing it
/// (it was killed, or is still running). `None` for a finished run.
pub fn incomplete(run_dir: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(run_dir.join(INCOMPLETE)).ok()
}

/// Completes once `rx` turns true.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
