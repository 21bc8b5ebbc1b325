//! The system under test for one run: provider and two regions on loopback, every hop
//! between them through a named proxy (`a_to_b`, `b_to_a`, `a_to_provider`,
//! `b_to_provider`, `a_to_sink`, `b_to_sink`) of a Toxiproxy-compatible server, so faults
//! hit real sockets; and the rig's event sink, which the regions' outbox relays deliver to.
//!
//! ```text
//! load ──► region a ──(a_to_b)──► region b        load ──► region b ──(b_to_a)──► region a
//! region a ──(a_to_provider)──► provider :a       region b ──(b_to_provider)──► provider :b
//! region a ──(a_to_sink)──► sink :a               region b ──(b_to_sink)──► sink :b
//! ```
//!
//! The provider and the sink each listen once per calling region (`:a`, `:b`), and each
//! proxy leads to its region's listener: their logs attribute every request to a region by
//! the socket it came in on, which the region cannot choose.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use evidence::store::{Access, Db, StoreName};
use evidence::{RegionId, StoreUrl};
use target_system::TargetConfig;
use target_system::system::{ProviderPlan, System};

use super::children::{Children, Spec};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The proxies every run's topology has, named after the direction connections are
/// opened in; the `[[chaos]]` entries may name these.
pub const PROXIES: [&str; 6] = [
    "a_to_b",
    "b_to_a",
    "a_to_provider",
    "b_to_provider",
    "a_to_sink",
    "b_to_sink",
];
/// The fault APIs a run that starts its system knows: the provider (the `provider` key of
/// a provider fault) and the event sink (`kind = "sink"`).
pub const PROVIDERS: [&str; 2] = ["provider", chaos::SINK];
/// The fault APIs of a run that drives an external system: its events do not reach the
/// rig's sink.
pub const EXTERNAL_PROVIDERS: [&str; 1] = ["provider"];
/// The proxies of a black-box run: the rig sits between each region and its provider and
/// sink, not between the regions.
pub const BLACK_BOX_PROXIES: [&str; 4] =
    ["a_to_provider", "b_to_provider", "a_to_sink", "b_to_sink"];

/// The rig's event sink while a run lasts.
struct RunningSink {
    sink: target_system::sink::Sink,
    /// Its unattributed listener (the fault API).
    url: String,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// The run's files the system's processes need: the resolved profile (their parameters),
/// the run id (their metrics' `run_id`) and the folder their output goes to.
pub struct RunFiles<'a> {
    pub profile: &'a Path,
    pub run_id: &'a str,
    pub logs: &'a Path,
}

pub struct Topology {
    /// The part of the system this run serves in its own process: the provider of a
    /// black-box run (None otherwise).
    system: Option<System>,
    /// The processes this run started (the reference system's provider and regions).
    children: Option<Arc<Children>>,
    /// Their ports, held for the whole run (see [`reserve_port`]).
    _ports: Vec<tokio::net::TcpSocket>,
    /// The region stores, for the drain.
    region_dbs: Vec<(RegionId, Db)>,
    embedded: Option<chaos::EmbeddedToxiproxy>,
    /// The Toxiproxy the proxy faults go to (None: an external system without one).
    control: Option<chaos::ToxiproxyControl>,
    /// Where the load enters: region a, region b (direct, not proxied).
    pub region_urls: Vec<String>,
    /// The provider's own address (its fault API).
    pub provider_url: String,
    /// The event sink (None: an external system's events do not reach the rig).
    sink: Option<RunningSink>,
    /// A system whose stores the rig cannot read: its drain polls over HTTP.
    pub black_box: bool,
    /// What an earlier run left on the Toxiproxy and this run healed first (for the journal).
    pub leftovers: Option<String>,
}

async fn bind() -> anyhow::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback port")
}

/// A loopback port held for a child process for the whole run: bound with SO_REUSEPORT and
/// not listening, so the child (`rig serve --reuse-port`) can listen on it, again after a
/// crash, while no other process (nor an outgoing connection's source port) can take it.
/// While the child is down nothing listens: connections are refused, as after a real crash.
fn reserve_port() -> anyhow::Result<(String, tokio::net::TcpSocket)> {
    let socket = tokio::net::TcpSocket::new_v4().context("a loopback socket")?;
    socket.set_reuseport(true).context("SO_REUSEPORT")?;
    socket
        .bind("127.0.0.1:0".parse().expect("a loopback address"))
        .context("reserving a loopback port")?;
    let addr = socket.local_addr()?.to_string();
    Ok((addr, socket))
}

impl Topology {
    /// Starts the proxy server (unless `toxiproxy` is given), creates the six proxies and
    /// the event sink, then the provider and both regions as child processes
    /// (`rig serve --role ...`) wired through the proxies, each on a loopback port picked
    /// here. `run` names the run's files: the resolved profile the children read their
    /// parameters from, and the folder their output goes to.
    pub async fn start(
        store: &StoreUrl,
        proxies: &ProxySetup<'_>,
        run: &RunFiles<'_>,
    ) -> anyhow::Result<Self> {
        let mut ports = Vec::new();
        let mut reserve = || -> anyhow::Result<String> {
            let (addr, socket) = reserve_port()?;
            ports.push(socket);
            Ok(addr)
        };
        let (provider, provider_a, provider_b) = (reserve()?, reserve()?, reserve()?);
        let (a_addr, b_addr) = (reserve()?, reserve()?);
        let (sink_own, sink_a, sink_b) = (bind().await?, bind().await?, bind().await?);
        let addr = |l: &TcpListener| l.local_addr().map(|a| a.to_string());
        let (embedded, control, leftovers) = proxy_server(proxies).await?;
        let url = control.url().to_string();
        let proxy = |name: &str, upstream: String| chaos::ProxyConfig {
            name: name.to_string(),
            listen: "127.0.0.1:0".to_string(),
            upstream,
            enabled: Some(true),
        };
        let mut log = Vec::new();
        let created = control
            .populate(
                &[
                    proxy("a_to_b", b_addr.clone()),
                    proxy("b_to_a", a_addr.clone()),
                    proxy("a_to_provider", provider_a.clone()),
                    proxy("b_to_provider", provider_b.clone()),
                    proxy("a_to_sink", addr(&sink_a)?),
                    proxy("b_to_sink", addr(&sink_b)?),
                ],
                &mut log,
            )
            .await
            .map_err(|err| anyhow::anyhow!("creating the proxies on {url}: {err}"))?;
        let listen: BTreeMap<String, String> = created
            .into_iter()
            .map(|p| (p.name, format!("http://{}", p.listen)))
            .collect();
        let hop = |name: &str| {
            listen
                .get(name)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("the proxy {name} was not created on {url}"))
        };
        let sink = start_sink(store, proxies.seed, [sink_own, sink_a, sink_b]).await?;
        let serve = |role: &[&str]| -> Vec<OsString> {
            let mut args: Vec<OsString> = ["serve", "--config"].map(OsString::from).to_vec();
            args.push(run.profile.as_os_str().to_owned());
            args.extend(["--run-id", run.run_id, "--reuse-port"].map(OsString::from));
            if let Some(namespace) = store.namespace() {
                args.extend(["--namespace", namespace].map(OsString::from));
            }
            args.extend(role.iter().map(OsString::from));
            args
        };
        let region = |id: &str, listen: &str, to: &str| -> anyhow::Result<Spec> {
            Ok(Spec {
                name: id.to_string(),
                args: serve(&[
                    "--role",
                    "region",
                    "--region",
                    id,
                    "--listen",
                    listen,
                    "--provider-url",
                    &hop(&format!("{id}_to_provider"))?,
                    "--peer-url",
                    &hop(&format!("{id}_to_{to}"))?,
                    "--sink-url",
                    &hop(&format!("{id}_to_sink"))?,
                ]),
                url: format!("http://{listen}"),
            })
        };
        let specs = vec![
            Spec {
                name: "provider".to_string(),
                args: serve(&[
                    "--role",
                    "provider",
                    "--listen",
                    &provider,
                    "--caller",
                    &format!("a={provider_a}"),
                    "--caller",
                    &format!("b={provider_b}"),
                ]),
                url: format!("http://{provider}"),
            },
            region("a", &a_addr, "b")?,
            region("b", &b_addr, "a")?,
        ];
        let children = Children::start(specs, run.logs, store)
            .await
            .context("starting the system's processes")?;
        let region_dbs = open_region_stores(store).await?;
        Ok(Self {
            system: None,
            children: Some(Arc::new(children)),
            _ports: ports,
            region_dbs,
            embedded,
            control: Some(control),
            region_urls: vec![format!("http://{a_addr}"), format!("http://{b_addr}")],
            provider_url: format!("http://{provider}"),
            sink: Some(sink),
            black_box: false,
            leftovers,
        })
    }

    /// A system the rig did not start and cannot read (black-box): the load enters at
    /// `regions` (a, then b); the rig runs its provider and event sink, each reached by
    /// region a at `provider_listen[0]` / `sink_listen[0]` and by region b at the second
    /// address, which are its proxies `a_to_provider`, `b_to_provider`, `a_to_sink` and
    /// `b_to_sink` (on the embedded Toxiproxy-compatible server unless `toxiproxy`). The
    /// provider's Stripe-compatible face listens at `stripe_listen` (no proxy: its callers
    /// are told apart by their secret keys).
    pub async fn black_box(
        config: Arc<TargetConfig>,
        regions: &[String],
        provider_listen: &[String; 2],
        sink_listen: &[String; 2],
        stripe_listen: &str,
        store: &StoreUrl,
        proxies: &ProxySetup<'_>,
    ) -> anyhow::Result<Self> {
        let (provider, provider_a, provider_b) = (bind().await?, bind().await?, bind().await?);
        let (sink_own, sink_a, sink_b) = (bind().await?, bind().await?, bind().await?);
        let addr = |l: &TcpListener| l.local_addr().map(|a| a.to_string());
        let provider_addr = addr(&provider)?;
        let (embedded, control, leftovers) = proxy_server(proxies).await?;
        let proxy = |name: &str, listen: &str, upstream: String| chaos::ProxyConfig {
            name: name.to_string(),
            listen: listen.to_string(),
            upstream,
            enabled: Some(true),
        };
        let mut log = Vec::new();
        control
            .populate(
                &[
                    proxy("a_to_provider", &provider_listen[0], addr(&provider_a)?),
                    proxy("b_to_provider", &provider_listen[1], addr(&provider_b)?),
                    proxy("a_to_sink", &sink_listen[0], addr(&sink_a)?),
                    proxy("b_to_sink", &sink_listen[1], addr(&sink_b)?),
                ],
                &mut log,
            )
            .await
            .map_err(|err| anyhow::anyhow!("creating the proxies: {err}"))?;
        let sink = start_sink(store, proxies.seed, [sink_own, sink_a, sink_b]).await?;
        let stripe = TcpListener::bind(stripe_listen)
            .await
            .with_context(|| format!("--stripe-listen {stripe_listen}"))?;
        let provider = ProviderPlan {
            stripe: Some(stripe),
            ..per_region(provider, provider_a, provider_b)
        };
        let system = System::start(config, store, Some(provider), Vec::new()).await?;
        Ok(Self {
            system: Some(system),
            children: None,
            _ports: Vec::new(),
            region_dbs: Vec::new(),
            embedded,
            control: Some(control),
            region_urls: regions.to_vec(),
            provider_url: format!("http://{provider_addr}"),
            sink: Some(sink),
            black_box: true,
            leftovers,
        })
    }

    /// An already-running system (e.g. the compose stack): the load enters at `regions`
    /// (a, then b), provider faults go to `provider`, proxy faults to the Toxiproxy at
    /// `toxiproxy` (its proxies `a_to_b`, `b_to_a`, `a_to_provider`, `b_to_provider` must
    /// exist), and the drain reads the region stores at `store`. Nothing is started.
    pub async fn external(
        regions: &[String],
        provider: &str,
        toxiproxy: Option<&str>,
        store: &StoreUrl,
    ) -> anyhow::Result<Self> {
        let control = toxiproxy
            .map(|url| chaos::ToxiproxyControl::new(url).context("the Toxiproxy URL"))
            .transpose()?;
        let region_dbs = open_region_stores(store).await?;
        Ok(Self {
            system: None,
            children: None,
            _ports: Vec::new(),
            region_dbs,
            embedded: None,
            control,
            region_urls: regions.to_vec(),
            provider_url: provider.trim_end_matches('/').to_string(),
            sink: None,
            black_box: false,
            leftovers: None,
        })
    }

    /// How many distinct orders the event sink has accepted a confirmation for (0 without
    /// a sink).
    pub async fn sink_confirmed_orders(&self) -> Result<i64, sqlx::Error> {
        let Some(sink) = &self.sink else {
            return Ok(0);
        };
        sqlx::query_scalar(evidence::reads::SINK_CONFIRMED_ORDERS)
            .fetch_one(&sink.sink.db().pool)
            .await
    }

    /// Every metrics registry this process serves for the system (the provider of a
    /// black-box run, the event sink; an external system's services serve their own).
    pub fn registries(&self) -> Vec<prometheus::Registry> {
        self.system
            .iter()
            .flat_map(|system| system.provider.iter().map(|(p, _)| p.registry().clone()))
            .chain(self.sink.iter().map(|s| s.sink.registry().clone()))
            .collect()
    }

    /// The `/metrics` URLs of the processes this run started, merged into its own.
    pub async fn metrics_urls(&self) -> Vec<String> {
        match &self.children {
            Some(children) => children.metrics_urls().await,
            None => Vec::new(),
        }
    }

    /// What the chaos timeline acts on.
    pub fn chaos_targets(&self) -> anyhow::Result<chaos::Targets> {
        let mut providers = BTreeMap::new();
        providers.insert(
            PROVIDERS[0].to_string(),
            chaos::ProviderAdmin::new(PROVIDERS[0], &self.provider_url)
                .context("the provider's admin URL")?,
        );
        if let Some(sink) = &self.sink {
            providers.insert(
                chaos::SINK.to_string(),
                chaos::ProviderAdmin::new(chaos::SINK, &sink.url)
                    .context("the event sink's admin URL")?,
            );
        }
        Ok(chaos::Targets {
            toxiproxy: self.control.clone(),
            providers,
            processes: self
                .children
                .clone()
                .map(|c| c as Arc<dyn chaos::ProcessControl>),
            // Operator steps go to each region's admin API (where the load enters).
            operators: chaos::OperatorRunner::new(
                ["a", "b"]
                    .into_iter()
                    .map(str::to_string)
                    .zip(self.region_urls.iter().cloned())
                    .collect(),
            ),
            ..Default::default()
        })
    }

    /// Waits (at most `limit`, or until `interrupt`) until nothing is left in flight: no
    /// order pending, no event unpublished, no intent held for another region. Returns what
    /// was left when it gave up.
    pub async fn drain(
        &self,
        limit: Duration,
        mut interrupt: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last_report = tokio::time::Instant::now();
        loop {
            let left = self.work_left().await;
            if left.is_empty() {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(left);
            }
            if now.duration_since(last_report) >= Duration::from_secs(5) {
                eprintln!("rig run: draining: {left}");
                last_report = now;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = interrupt.wait_for(|i| *i) => return Err(format!("interrupted with {left}")),
            }
        }
    }

    async fn work_left(&self) -> String {
        let mut parts = Vec::new();
        for (id, db) in &self.region_dbs {
            let counts = async {
                let backlog = evidence::queries::backlog(db).await?;
                let held = evidence::queries::held_intents(db).await?;
                Ok::<_, sqlx::Error>([
                    (backlog.open_orders, "orders pending"),
                    (backlog.unpublished_events, "events unpublished"),
                    (held, "intents held"),
                ])
            };
            match counts.await {
                Ok(counts) => parts.extend(
                    counts
                        .iter()
                        .filter(|(n, _)| *n > 0)
                        .map(|(n, what)| format!("region {}: {n} {what}", id.as_str())),
                ),
                Err(err) => parts.push(format!("region {}: {err}", id.as_str())),
            }
        }
        parts.join(", ")
    }

    /// Stops the system (flushing its logs), then the event sink and the embedded proxy
    /// server.
    pub async fn shutdown(self) {
        if let Some(system) = self.system
            && let Err(err) = system.shutdown().await
        {
            eprintln!("rig run: the system did not stop cleanly: {err}");
        }
        if let Some(children) = &self.children {
            children.shutdown().await;
        }
        for (_, db) in &self.region_dbs {
            db.close().await;
        }
        if let Some(sink) = self.sink {
            let _ = sink.stop.send(true);
            for task in sink.tasks {
                if let Ok(Err(err)) = task.await {
                    eprintln!("rig run: the event sink did not stop cleanly: {err}");
                }
            }
            sink.sink.db().close().await;
        }
        if let Some(server) = self.embedded {
            let _ = server.shutdown().await;
        }
    }
}

/// Both regions' stores, read-only (the drain reads their backlog).
async fn open_region_stores(store: &StoreUrl) -> anyhow::Result<Vec<(RegionId, Db)>> {
    let mut region_dbs = Vec::new();
    for id in [RegionId::A, RegionId::B] {
        let db = Db::open_with(store, StoreName::Region(id), Access::ReadOnly)
            .await
            .with_context(|| {
                format!(
                    "opening region {}'s store at {} (read-only)",
                    id.as_str(),
                    store.describe(StoreName::Region(id))
                )
            })?;
        region_dbs.push((id, db));
    }
    Ok(region_dbs)
}

/// Where a run's proxies are made: a Toxiproxy at `toxiproxy` (else an embedded server
/// seeded with `seed`), and whether faults an earlier run left there stop the run.
#[derive(Debug, Clone, Copy)]
pub struct ProxySetup<'a> {
    pub toxiproxy: Option<&'a str>,
    pub seed: u64,
    pub refuse_leftovers: bool,
}

/// The embedded Toxiproxy-compatible server (unless `toxiproxy` names one) and a client of
/// whichever it is. On a Toxiproxy of its own the rig first looks for what an earlier run
/// left (a rig killed mid-run cannot heal): every rig-made toxic, and any of the run's
/// proxies left disabled. They are healed and said (the note, for the journal), or, with
/// `refuse_leftovers`, the run stops; creating the proxies afresh would otherwise wipe them
/// without a word.
async fn proxy_server(
    setup: &ProxySetup<'_>,
) -> anyhow::Result<(
    Option<chaos::EmbeddedToxiproxy>,
    chaos::ToxiproxyControl,
    Option<String>,
)> {
    let embedded = match setup.toxiproxy {
        Some(_) => None,
        None => Some(
            chaos::EmbeddedToxiproxy::start(
                "127.0.0.1:0",
                chaos::ServerOptions {
                    seed: setup.seed,
                    proxies: Vec::new(),
                },
            )
            .await
            .context("starting the embedded Toxiproxy-compatible server")?,
        ),
    };
    let url = match (&embedded, setup.toxiproxy) {
        (Some(server), _) => server.url(),
        (_, Some(url)) => url.to_string(),
        (None, None) => unreachable!("the embedded server starts when no URL is given"),
    };
    let control = chaos::ToxiproxyControl::new(&url).context("the Toxiproxy URL")?;
    if embedded.is_some() {
        return Ok((embedded, control, None));
    }
    let mut log = Vec::new();
    let mut left = control
        .rig_made(&mut log)
        .await
        .map_err(|err| anyhow::anyhow!("reading the proxies on {url}: {err}"))?;
    left.disabled.retain(|p| PROXIES.contains(&p.as_str()));
    if left.is_empty() {
        return Ok((embedded, control, None));
    }
    let what = left.describe();
    if setup.refuse_leftovers {
        anyhow::bail!(
            "Toxiproxy at {url} has faults an earlier run left ({what}); heal them with `rig chaos --heal --toxiproxy {url}`, or run without --refuse-leftovers to heal them first"
        );
    }
    control
        .clear(&left, &mut log)
        .await
        .map_err(|err| anyhow::anyhow!("healing what an earlier run left on {url}: {err}"))?;
    let note = format!("healed the faults an earlier run left on Toxiproxy {url}: {what}");
    eprintln!("rig run: {note}");
    Ok((embedded, control, Some(note)))
}

/// The provider on its own listener and one per region (each region's proxy leads to its
/// own, so the request log attributes every call to a region).
fn per_region(own: TcpListener, a: TcpListener, b: TcpListener) -> ProviderPlan {
    ProviderPlan {
        listener: own,
        callers: vec![("a".to_string(), a), ("b".to_string(), b)],
        stripe: None,
    }
}

/// Opens the sink's store and serves it on its own listener (unattributed: the fault API)
/// and on one per region, a then b (the listener that region's proxy leads to).
async fn start_sink(
    store: &StoreUrl,
    seed: u64,
    [own, a, b]: [TcpListener; 3],
) -> anyhow::Result<RunningSink> {
    let url = format!(
        "http://{}",
        own.local_addr().context("the sink's listener")?
    );
    let listeners = [(None, own), (Some("a"), a), (Some("b"), b)];
    let db = Db::open(store, StoreName::Sink).await.with_context(|| {
        format!(
            "opening the event sink's store at {}",
            store.describe(StoreName::Sink)
        )
    })?;
    let sink = target_system::sink::Sink::open(db, seed);
    let (stop, stop_rx) = watch::channel(false);
    let tasks = listeners
        .into_iter()
        .map(|(caller, listener)| {
            let serving = sink.clone();
            let caller = caller.map(str::to_string);
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                serving.serve_for(listener, caller, stopped).await
            })
        })
        .collect();
    Ok(RunningSink {
        sink,
        url,
        stop,
        tasks,
    })
}
