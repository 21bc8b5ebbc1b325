//! One Prometheus endpoint for a whole run (`--metrics-addr`): the reference system's
//! registries, the load generator's, the chaos fault gauge and `rig_run_info`, merged into
//! one exposition so a single scrape job sees the run. Every series carries `run_id`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chaos::{Actuator, Call, Desired, Plan};
use prometheus::{IntGaugeVec, Opts, Registry};
use rig_http::{Incoming, Method, Request, StatusCode};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The registries an exporter serves; components add theirs as they start.
#[derive(Debug, Clone, Default)]
pub struct Registries(Arc<Mutex<Vec<Registry>>>);

impl Registries {
    pub fn add(&self, registry: Registry) {
        self.0.lock().expect("registry list").push(registry);
    }

    /// The exposition text of every registry.
    pub fn render(&self) -> Vec<u8> {
        let registries = self.0.lock().expect("registry list").clone();
        let refs: Vec<&Registry> = registries.iter().collect();
        target_system::metrics::render_all(&refs).1
    }
}

/// A running `/metrics` endpoint.
pub struct Exporter {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Exporter {
    /// Serves `GET /metrics` (and `/healthz`) on `addr` until [`Exporter::shutdown`].
    pub async fn start(addr: &str, registries: Registries) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics-addr {addr}: cannot listen there"))?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(rig_http::serve(
            listener,
            move |req: Request<Incoming>| {
                let registries = registries.clone();
                async move {
                    Ok(match (req.method(), req.uri().path()) {
                        (&Method::GET, "/metrics") => rig_http::reply::with_type(
                            StatusCode::OK,
                            "text/plain; version=0.0.4; charset=utf-8",
                            registries.render().into(),
                        ),
                        (&Method::GET, "/healthz") => rig_http::reply::text(StatusCode::OK, "ok\n"),
                        _ => rig_http::reply::text(
                            StatusCode::NOT_FOUND,
                            "rig serves GET /metrics and GET /healthz here\n",
                        ),
                    })
                }
            },
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
        Ok(Self { addr, stop, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// `rig_run_info{run_id, profile, ...parameters} 1`: join it `on(run_id)` to label any
/// series with the setting under comparison.
pub fn run_info(labels: &[(&str, String)]) -> Registry {
    let registry = Registry::new();
    let names: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
    let info = IntGaugeVec::new(
        Opts::new(
            "rig_run_info",
            "The run and the parameters it was started with; always 1.",
        ),
        &names,
    )
    .expect("valid info metric");
    let values: Vec<&str> = labels.iter().map(|(_, v)| v.as_str()).collect();
    info.with_label_values(&values).set(1);
    registry
        .register(Box::new(info))
        .expect("metric registered once");
    registry
}

/// Wraps the chaos targets so `rig_chaos_fault_active{fault,target}` follows every applied
/// and healed state: 1 while a fault is applied (read back by the inner actuator), else 0.
pub struct FaultGauge<A> {
    inner: A,
    gauge: IntGaugeVec,
    active: Mutex<BTreeSet<(String, String)>>,
}

impl<A: Actuator> FaultGauge<A> {
    /// Registers the gauge in `registry`; every (fault, target) the plan can produce is
    /// exported as 0 from the start, so a dashboard sees the fault's absence too.
    pub fn new(inner: A, registry: &Registry, plan: &Plan) -> Self {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "rig_chaos_fault_active",
                "1 while a fault is applied to a target (proxy or provider), else 0.",
            ),
            &["fault", "target"],
        )
        .expect("valid gauge");
        registry
            .register(Box::new(gauge.clone()))
            .expect("metric registered once");
        let providers = inner.provider_names();
        for window in &plan.windows {
            if let Ok(desired) = plan.desired(&BTreeSet::from([window.entry]), &providers) {
                for (fault, target) in faults_of(&desired) {
                    gauge.with_label_values(&[&fault, &target]).set(0);
                }
            }
        }
        Self {
            inner,
            gauge,
            active: Mutex::new(BTreeSet::new()),
        }
    }

    fn show(&self, now: BTreeSet<(String, String)>) {
        let mut active = self.active.lock().expect("fault set");
        for (fault, target) in active.difference(&now) {
            self.gauge.with_label_values(&[fault, target]).set(0);
        }
        for (fault, target) in &now {
            self.gauge.with_label_values(&[fault, target]).set(1);
        }
        *active = now;
    }
}

/// The (fault, target) pairs a desired state holds: `down` for a disabled proxy, the toxic
/// type for each toxic, `provider_<field>` for each provider fault.
pub fn faults_of(desired: &Desired) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (proxy, state) in &desired.proxies {
        if !state.enabled {
            out.insert(("down".to_string(), proxy.clone()));
        }
        for toxic in &state.toxics {
            out.insert((toxic.toxic.type_name().to_string(), proxy.clone()));
        }
    }
    for (provider, faults) in &desired.providers {
        for field in faults.fields_set() {
            out.insert((format!("provider_{field}"), provider.clone()));
        }
    }
    out
}

impl<A: Actuator> Actuator for FaultGauge<A> {
    fn provider_names(&self) -> Vec<String> {
        self.inner.provider_names()
    }

    async fn preflight(&self, plan: &Plan, log: &mut Vec<Call>) -> Result<(), String> {
        self.inner.preflight(plan, log).await
    }

    async fn apply(&self, desired: &Desired, log: &mut Vec<Call>) -> Result<(), String> {
        self.inner.apply(desired, log).await?;
        self.show(faults_of(desired));
        Ok(())
    }

    async fn heal(&self, log: &mut Vec<Call>) -> Result<(), String> {
        let healed = self.inner.heal(log).await;
        if healed.is_ok() {
            self.show(BTreeSet::new());
        }
        healed
    }
}

/// `--metrics-linger`: how long the endpoint stays up after the last value (`0` for not at all).
pub fn parse_linger(text: &str) -> Result<std::time::Duration, String> {
    if matches!(text.trim(), "0" | "0s") {
        return Ok(std::time::Duration::ZERO);
    }
    loadgen::parse_duration("--metrics-linger", text).map_err(|err| err.to_string())
}
