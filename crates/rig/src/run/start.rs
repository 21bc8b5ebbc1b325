//! Phase 2: the run's metrics and their endpoint, Ctrl-C, and the system under test (started
//! on loopback behind the proxies, or an external one reached).

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use super::profile::Profile;
use super::topology::{RunFiles, Topology};
use super::{External, Prepared, RunOptions};
use crate::exit::BadInput;
use crate::metrics::{Exporter, Registries};

/// A run whose system is up.
pub struct Started {
    /// Every registry the run's `/metrics` serves.
    pub registries: Registries,
    /// The chaos layer's fault gauge lives here.
    pub chaos_registry: prometheus::Registry,
    /// The load generator's live metrics (moved into the load when it starts).
    pub load_metrics: Option<loadgen::LoadMetrics>,
    pub exporter: Option<Exporter>,
    /// Turns true on Ctrl-C.
    pub interrupt: watch::Receiver<bool>,
    /// The system under test (taken when it is stopped).
    pub topology: Option<Topology>,
}

impl Started {
    pub fn interrupted(&self) -> bool {
        *self.interrupt.borrow()
    }

    pub fn topology(&self) -> anyhow::Result<&Topology> {
        self.topology
            .as_ref()
            .context("the system under test was already stopped")
    }

    /// Stops the system under test (flushing its logs) and the embedded proxy server; the
    /// metrics endpoint keeps the system's processes' last values.
    pub async fn stop(&mut self) {
        if let Some(topology) = self.topology.take() {
            self.registries.freeze_remote().await;
            topology.shutdown().await;
        }
    }
}

/// Sets up metrics (every series carries `run_id`) and their endpoint, listens for Ctrl-C,
/// then starts the system under test or reaches the external one.
pub async fn start(prepared: &Prepared, options: &RunOptions) -> anyhow::Result<Started> {
    let profile = prepared.profile();
    let run_id = prepared.run_id.as_str();
    target_system::metrics::set_common_labels(&[("run_id", run_id)]);
    let registries = Registries::default();
    registries.add(crate::metrics::run_info(&run_info_labels(run_id, profile)));
    let chaos_registry = target_system::metrics::registry(&[]);
    registries.add(chaos_registry.clone());
    let load_metrics = loadgen::LoadMetrics::new(&[("run_id", run_id), ("shard", "0/1")]);
    registries.add(load_metrics.registry().clone());
    let exporter = match &options.metrics_addr {
        Some(addr) => {
            let exporter = Exporter::start(addr, registries.clone())
                .await
                .map_err(|err| BadInput(format!("{err:#}")))?;
            eprintln!("rig run: metrics at http://{}/metrics", exporter.addr());
            Some(exporter)
        }
        None => None,
    };

    // Ctrl-C, SIGTERM (timeout, docker stop, Kubernetes, CI cancellation) and SIGHUP: stop
    // the load, heal the chaos, verify what exists, mark the run partial.
    let (interrupt_tx, interrupt) = watch::channel(false);
    tokio::spawn(async move {
        let signal = interrupted().await;
        eprintln!(
            "rig run: {signal}; stopping the load and healing every fault (a second signal exits at once)"
        );
        let _ = interrupt_tx.send(true);
        let again = interrupted().await;
        eprintln!(
            "rig run: {again} again; exiting without healing: faults on an external Toxiproxy or provider may remain"
        );
        std::process::exit(i32::from(crate::exit::COULD_NOT_COMPLETE));
    });

    let toxiproxy = options.toxiproxy.as_deref();
    let proxies = super::topology::ProxySetup {
        toxiproxy,
        seed: profile.run.seed,
        refuse_leftovers: options.refuse_leftovers,
    };
    let topology = match &options.external {
        Some(External {
            regions,
            provider: Some(provider),
            ..
        }) => Topology::external(regions, provider, toxiproxy, &prepared.store)
            .await
            .context("the external system could not be reached")?,
        Some(external) => Topology::black_box(
            Arc::new(profile.target.clone()),
            &external.regions,
            &external.provider_listen,
            &external.sink_listen,
            &external.stripe_listen,
            &prepared.store,
            &proxies,
        )
        .await
        .context("the rig's provider and sink for the black-box system could not start")?,
        None => Topology::start(
            &prepared.store,
            &proxies,
            &RunFiles {
                profile: &prepared.run_dir.join("profile.toml"),
                run_id,
                logs: &prepared.run_dir.join("logs"),
            },
        )
        .await
        .context("the system under test could not start")?,
    };
    for registry in topology.registries() {
        registries.add(registry);
    }
    for url in topology.metrics_urls().await {
        registries.add_remote(url);
    }
    Ok(Started {
        registries,
        chaos_registry,
        load_metrics: Some(load_metrics),
        exporter,
        interrupt,
        topology: Some(topology),
    })
}

/// Waits for Ctrl-C, SIGTERM or SIGHUP; names the one that came. Never returns where no
/// signal can be listened for.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return "interrupted (Ctrl-C)";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted (Ctrl-C)",
        _ = term.recv() => "terminated (SIGTERM)",
        _ = hup.recv() => "hung up (SIGHUP)",
    }
}

/// `rig_run_info` labels: the run, the profile and the settings runs are compared by.
fn run_info_labels<'a>(run_id: &str, profile: &'a Profile) -> Vec<(&'a str, String)> {
    let target = &profile.target;
    let defects: Vec<&str> = target.defects.iter().map(|d| d.as_str()).collect();
    vec![
        ("run_id", run_id.to_string()),
        ("profile", profile.run.name.clone()),
        ("seed", profile.run.seed.to_string()),
        ("retry_budget_ratio", target.retry_budget.ratio.to_string()),
        (
            "retry_budget_min_per_second",
            target.retry_budget.min_per_sec.to_string(),
        ),
        (
            "client_max_attempts",
            profile.workload.retry.max_attempts.to_string(),
        ),
        (
            "admission_max_in_flight",
            target.admission.provider_max_in_flight.to_string(),
        ),
        ("defects", defects.join("+")),
    ]
}
