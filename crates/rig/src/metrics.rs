//! One Prometheus endpoint for a whole run (`--metrics-addr`): the reference system's
//! registries, the load generator's, the chaos fault gauge and `rig_run_info`, merged into
//! one exposition so a single scrape job sees the run. Every series carries `run_id`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chaos::{Actuator, Call, Desired, Plan};
use prometheus::{IntGaugeVec, Opts, Registry};
use rig_http::{Incoming, Method, Request, StatusCode};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a scrape waits for a child process's `/metrics`: a paused or crashed child is
/// left out of that scrape rather than holding it up.
const REMOTE_SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// The registries an exporter serves (components add theirs as they start), and the
/// `/metrics` URLs of the run's child processes, scraped on each scrape.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    local: Arc<Mutex<Vec<Registry>>>,
    remote: Arc<Mutex<Vec<Remote>>>,
}

/// A child process's metrics: scraped on each scrape while it runs, its last exposition
/// once the run stopped it (the values the run ended with, for the metrics linger).
#[derive(Debug, Clone)]
enum Remote {
    Live(String),
    Frozen(String),
}

impl Registries {
    pub fn add(&self, registry: Registry) {
        self.local.lock().expect("registry list").push(registry);
    }

    /// A child process's `/metrics` URL, merged into every scrape.
    pub fn add_remote(&self, url: String) {
        self.remote
            .lock()
            .expect("remote list")
            .push(Remote::Live(url));
    }

    /// Scrapes every child once more and keeps what it answered from then on: called
    /// before the children are stopped, so the endpoint keeps serving their final values.
    pub async fn freeze_remote(&self) {
        let remote = self.remote.lock().expect("remote list").clone();
        let texts = scrape(&remote).await;
        let frozen = texts.into_iter().flatten().map(Remote::Frozen).collect();
        *self.remote.lock().expect("remote list") = frozen;
    }

    /// One exposition of every registry and every child that answered: a family's samples
    /// from all of them under one `# HELP` and `# TYPE`.
    pub async fn render(&self) -> Vec<u8> {
        let registries = self.local.lock().expect("registry list").clone();
        let refs: Vec<&Registry> = registries.iter().collect();
        let local = target_system::metrics::render_all(&refs).1;
        let remote = self.remote.lock().expect("remote list").clone();
        if remote.is_empty() {
            return local;
        }
        let mut texts = vec![String::from_utf8_lossy(&local).into_owned()];
        texts.extend(scrape(&remote).await.into_iter().flatten());
        merge_expositions(&texts).into_bytes()
    }
}

/// Each child's exposition (None for one that did not answer: down, frozen, stopped).
async fn scrape(remote: &[Remote]) -> Vec<Option<String>> {
    let client = rig_http::HttpClient::new(REMOTE_SCRAPE_TIMEOUT, 1);
    let scrapes = remote.iter().map(|remote| {
        let client = client.clone();
        async move {
            match remote {
                Remote::Frozen(text) => Some(text.clone()),
                Remote::Live(url) => client
                    .send(Method::GET, url, &[], None, REMOTE_SCRAPE_TIMEOUT)
                    .await
                    .ok()
                    .filter(|r| r.status == StatusCode::OK)
                    .map(|r| String::from_utf8_lossy(&r.body).into_owned()),
            }
        }
    });
    futures_util::future::join_all(scrapes).await
}

/// Prometheus text expositions as one: each family (a `# HELP`/`# TYPE` header and the
/// samples after it) once, in first-seen order, with the samples of every text that has it.
pub fn merge_expositions(texts: &[String]) -> String {
    struct Family {
        header: Vec<String>,
        samples: Vec<String>,
    }
    let mut order: Vec<String> = Vec::new();
    let mut families: std::collections::HashMap<String, Family> = Default::default();
    for text in texts {
        let mut current = String::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let header_of = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
                .and_then(|rest| rest.split_whitespace().next());
            if let Some(name) = header_of {
                let fresh = !families.contains_key(name);
                let family = families.entry(name.to_string()).or_insert_with(|| Family {
                    header: Vec::new(),
                    samples: Vec::new(),
                });
                if fresh {
                    order.push(name.to_string());
                }
                current = name.to_string();
                let kind = &line[..7];
                if !family.header.iter().any(|h| h.starts_with(kind)) {
                    family.header.push(line.to_string());
                }
            } else if line.starts_with('#') {
                continue;
            } else {
                let family = families.entry(current.clone()).or_insert_with(|| {
                    order.push(current.clone());
                    Family {
                        header: Vec::new(),
                        samples: Vec::new(),
                    }
                });
                family.samples.push(line.to_string());
            }
        }
    }
    let mut out = String::new();
    for name in order {
        let family = &families[&name];
        for line in family.header.iter().chain(&family.samples) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
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
                            registries.render().await.into(),
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
    for spec in desired.operators.values() {
        if spec.action == chaos::OperatorAction::PausePayments {
            out.insert(("operator_pause".to_string(), spec.target.clone()));
        }
    }
    for (process, desired) in &desired.processes {
        if desired.clock_offset_ms != 0 {
            out.insert(("clock".to_string(), process.clone()));
        }
        match desired.state {
            chaos::ProcessState::Running => {}
            chaos::ProcessState::Down => {
                out.insert(("crash".to_string(), process.clone()));
            }
            chaos::ProcessState::Paused => {
                out.insert(("pause".to_string(), process.clone()));
            }
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

    async fn leftovers(&self, plan: &Plan, log: &mut Vec<Call>) -> Result<Option<String>, String> {
        self.inner.leftovers(plan, log).await
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Families scraped from several processes become one family each: one `# HELP` and
    /// one `# TYPE`, every process's samples under it, in first-seen order.
    #[test]
    fn expositions_merge_by_family() {
        let a = "# HELP rig_x Things.\n# TYPE rig_x counter\nrig_x{region=\"a\"} 1\n\
                 # HELP rig_h Times.\n# TYPE rig_h histogram\nrig_h_bucket{le=\"1\"} 2\nrig_h_sum 3\nrig_h_count 2\n";
        let b = "# HELP rig_x Things.\n# TYPE rig_x counter\nrig_x{region=\"b\"} 4\n\
                 # HELP rig_y Other.\n# TYPE rig_y gauge\nrig_y 5\n";
        let merged = merge_expositions(&[a.to_string(), b.to_string()]);
        assert_eq!(
            merged,
            "# HELP rig_x Things.\n# TYPE rig_x counter\nrig_x{region=\"a\"} 1\nrig_x{region=\"b\"} 4\n\
             # HELP rig_h Times.\n# TYPE rig_h histogram\nrig_h_bucket{le=\"1\"} 2\nrig_h_sum 3\nrig_h_count 2\n\
             # HELP rig_y Other.\n# TYPE rig_y gauge\nrig_y 5\n"
        );
    }
}
