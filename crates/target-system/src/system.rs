//! Starts a whole reference system (or one part of it) on already-bound listeners.
//!
//! ```text
//! spawn provider; spawn region a (provider = P, peer = B); spawn region b (provider = P, peer = A)
//! ```
//! Each region's provider and peer URLs are explicit, so a run can route every hop through a
//! proxy and a test can route through a forwarder it controls.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::TargetConfig;
use crate::provider::Provider;
use crate::region::{Region, RegionWiring};
use evidence::RegionId;
use evidence::store::{Db, StoreError, StoreName, StoreUrl};

/// Why a system could not start.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// One region to start: its listener and how it reaches the provider and its peer.
#[derive(Debug)]
pub struct RegionPlan {
    pub id: RegionId,
    pub listener: TcpListener,
    pub provider_url: String,
    pub peer_url: Option<String>,
    /// Where the outbox relay delivers events (None: no sink).
    pub sink_url: Option<String>,
}

/// The provider to start: its own listener (unattributed requests, the fault admin API)
/// and one listener per caller, whose requests the request log attributes to that caller.
#[derive(Debug)]
pub struct ProviderPlan {
    pub listener: TcpListener,
    pub callers: Vec<(String, TcpListener)>,
    /// The Stripe-compatible face's listener, if it is served (its callers are told apart
    /// by their secret keys).
    pub stripe: Option<TcpListener>,
}

impl From<TcpListener> for ProviderPlan {
    fn from(listener: TcpListener) -> Self {
        Self {
            listener,
            callers: Vec::new(),
            stripe: None,
        }
    }
}

/// A running system. Dropping it without [`System::shutdown`] leaves tasks running until
/// the runtime ends.
#[derive(Debug)]
pub struct System {
    pub provider: Option<(Provider, SocketAddr)>,
    /// Where the provider's Stripe-compatible face listens, if it is served.
    pub stripe: Option<SocketAddr>,
    pub regions: Vec<(Region, SocketAddr)>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl System {
    /// Opens the stores and serves the parts given: the provider if `provider` is `Some`,
    /// and each planned region.
    pub async fn start(
        config: Arc<TargetConfig>,
        store: &StoreUrl,
        provider: Option<ProviderPlan>,
        regions: Vec<RegionPlan>,
    ) -> Result<Self, SystemError> {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut stripe = None;
        let provider = match provider {
            Some(plan) => {
                let db = Db::open(store, StoreName::Provider).await?;
                let provider = Provider::open(&config, db).await?;
                let addr = local_addr(&plan.listener)?;
                if let Some(listener) = plan.stripe {
                    stripe = Some(local_addr(&listener)?);
                    let serving = provider.clone();
                    let stop = stopped(stop_rx.clone());
                    tasks.push(tokio::spawn(async move {
                        serving.serve_stripe(listener, stop).await
                    }));
                }
                let listeners = std::iter::once((None, plan.listener))
                    .chain(plan.callers.into_iter().map(|(c, l)| (Some(c), l)));
                for (caller, listener) in listeners {
                    let serving = provider.clone();
                    let stop = stopped(stop_rx.clone());
                    tasks.push(tokio::spawn(async move {
                        serving.serve_for(listener, caller, stop).await
                    }));
                }
                Some((provider, addr))
            }
            None => None,
        };
        let mut running = Vec::new();
        for plan in regions {
            let db = Db::open(store, StoreName::Region(plan.id)).await?;
            let wiring = RegionWiring {
                id: plan.id,
                provider_url: plan.provider_url,
                peer_url: plan.peer_url,
                sink_url: plan.sink_url,
            };
            let region = Region::open(config.clone(), wiring, db).await?;
            let addr = local_addr(&plan.listener)?;
            let serving = region.clone();
            let stop = stopped(stop_rx.clone());
            let listener = plan.listener;
            tasks.push(tokio::spawn(
                async move { serving.serve(listener, stop).await },
            ));
            running.push((region, addr));
        }
        Ok(Self {
            provider,
            stripe,
            regions: running,
            stop,
            tasks,
        })
    }

    /// Provider and both regions on the given listeners, wired directly to each other.
    pub async fn start_all(
        config: Arc<TargetConfig>,
        store: &StoreUrl,
        provider: TcpListener,
        region_a: TcpListener,
        region_b: TcpListener,
    ) -> Result<Self, SystemError> {
        Self::start_all_with(config, store, provider.into(), region_a, region_b).await
    }

    /// [`System::start_all`] with a whole provider plan (e.g. with the Stripe face). A region
    /// pays through the plan's caller listener named after it (`a`, `b`) if there is one, so
    /// the provider's request log attributes its calls; else through the main listener.
    pub async fn start_all_with(
        config: Arc<TargetConfig>,
        store: &StoreUrl,
        provider: ProviderPlan,
        region_a: TcpListener,
        region_b: TcpListener,
    ) -> Result<Self, SystemError> {
        let pay = |region: &str| -> Result<String, SystemError> {
            let listener = provider
                .callers
                .iter()
                .find(|(caller, _)| caller == region)
                .map_or(&provider.listener, |(_, listener)| listener);
            Ok(format!("http://{}", local_addr(listener)?))
        };
        let (pay_a, pay_b) = (pay("a")?, pay("b")?);
        let url_a = format!("http://{}", local_addr(&region_a)?);
        let url_b = format!("http://{}", local_addr(&region_b)?);
        let plans = vec![
            RegionPlan {
                id: RegionId::A,
                listener: region_a,
                provider_url: pay_a,
                peer_url: Some(url_b),
                sink_url: None,
            },
            RegionPlan {
                id: RegionId::B,
                listener: region_b,
                provider_url: pay_b,
                peer_url: Some(url_a),
                sink_url: None,
            },
        ];
        Self::start(config, store, Some(provider), plans).await
    }

    /// The region `id`, if it runs here.
    pub fn region(&self, id: RegionId) -> Option<&Region> {
        self.regions
            .iter()
            .find(|(r, _)| r.id() == id)
            .map(|(r, _)| r)
    }

    /// `http://addr` of region `id`.
    pub fn region_url(&self, id: RegionId) -> Option<String> {
        self.regions
            .iter()
            .find(|(r, _)| r.id() == id)
            .map(|(_, addr)| format!("http://{addr}"))
    }

    /// `http://addr` of the provider's Stripe-compatible face, if it is served.
    pub fn stripe_url(&self) -> Option<String> {
        self.stripe.map(|addr| format!("http://{addr}"))
    }

    /// `http://addr` of the provider.
    pub fn provider_url(&self) -> Option<String> {
        self.provider
            .as_ref()
            .map(|(_, addr)| format!("http://{addr}"))
    }

    /// Stops accepting, lets open requests finish (bounded), stops workers, flushes logs.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        let mut first_error = None;
        for task in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    first_error.get_or_insert(err);
                }
                Err(join) => {
                    first_error.get_or_insert(std::io::Error::other(join.to_string()));
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Completes when the system is asked to stop (for tasks that live alongside it).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        stopped(self.stop.subscribe())
    }
}

fn local_addr(listener: &TcpListener) -> std::io::Result<SocketAddr> {
    listener.local_addr()
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
