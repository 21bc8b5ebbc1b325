//! `rig serve`: the reference checkout system standalone (all-in-one, or one component).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use evidence::{RegionId, StoreError, StoreUrl};
use target_system::system::{ProviderPlan, RegionPlan, System, SystemError};
use target_system::{Defect, TargetConfig};
use tokio::net::TcpListener;

use crate::exit::{BadInput, Verdict};
use crate::target_config;

/// Run the reference checkout system: a simulated payment provider and two regions over
/// durable stores. Ctrl-C shuts it down cleanly.
///
/// All-in-one (the default) listens on loopback: region a 127.0.0.1:8081, region b
/// 127.0.0.1:8082, provider 127.0.0.1:8090, the provider's Stripe-compatible face
/// 127.0.0.1:8093. With --role provider or --role region one
/// component runs on --listen (docker-compose runs one per container).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file with the parameters: a profile (its [target] table is used) or a file that
    /// is itself the target table. Defaults apply to everything left out.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the durable records live: sqlite://DIR (a file per store) or postgres://...
    #[arg(
        long,
        value_name = "URL",
        default_value = "sqlite://rig-data",
        env = "RIG_STORE"
    )]
    store: String,
    /// PostgreSQL only: prefix every store's schema with NAME_ (a run's stores are
    /// `<run>_region_a`, ...), so several systems share one database.
    #[arg(long, value_name = "NAME")]
    namespace: Option<String>,
    /// Which part to run.
    #[arg(long, value_enum, default_value_t = Role::All)]
    role: Role,
    /// The region to run with --role region.
    #[arg(long, value_parser = parse_region)]
    region: Option<RegionId>,
    /// Listen address for --role provider or --role region.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Provider base URL for --role region (e.g. http://provider:8090 or a proxy).
    #[arg(long, value_name = "URL")]
    provider_url: Option<String>,
    /// Peer region base URL for --role region; without it the region owns every order.
    #[arg(long, value_name = "URL")]
    peer_url: Option<String>,
    /// Event sink base URL for --role region: the outbox relay delivers each confirmation
    /// event there (POST /v1/events) before marking it published. Without it events go to
    /// the region's own consumer only.
    #[arg(long, value_name = "URL")]
    sink_url: Option<String>,
    /// All-in-one: provider listen address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    listen_provider: SocketAddr,
    /// The provider's Stripe-compatible face (its own listener; a Stripe SDK's API host).
    /// All-in-one default 127.0.0.1:8093; --role provider serves it only when given.
    #[arg(long, value_name = "ADDR")]
    listen_stripe: Option<SocketAddr>,
    /// All-in-one: region a listen address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    listen_a: SocketAddr,
    /// All-in-one: region b listen address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8082")]
    listen_b: SocketAddr,
    /// Override a parameter, e.g. --set target.payment.deadline_ms=1500 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Deliberately break one mechanism, to prove the verifier catches it (repeatable):
    /// fresh-key-per-retry, confirm-on-timeout, no-retry-budget, no-admission-control,
    /// local-confirm-in-partition, no-consumer-dedup, oversell, no-repair, event-after-commit,
    /// reply-before-commit, wall-clock-durations.
    #[arg(long = "defect", value_name = "NAME", value_parser = parse_defect)]
    defects: Vec<Defect>,
    /// --role provider: one more listener per caller, NAME=ADDR (repeatable, e.g.
    /// --caller a=127.0.0.1:18091). The request log attributes each request to the caller
    /// whose listener it came in on, which the caller cannot choose.
    #[arg(long = "caller", value_name = "NAME=ADDR")]
    callers: Vec<String>,
    /// Exit when process PID exits (a `rig run` starting its system as child processes
    /// passes its own pid, so no child outlives it).
    #[arg(long, value_name = "PID", hide = true)]
    parent_pid: Option<u32>,
    /// Listen with SO_REUSEPORT: a `rig run` holds each of its children's ports (bound, not
    /// listening) for the whole run, so no other process takes one while a child is down.
    #[arg(long, hide = true)]
    reuse_port: bool,
    /// --role region: shift this process's wall clock by MS milliseconds from the start
    /// (negative: behind). The records it writes carry the shifted time; its timeouts and
    /// durations use the monotonic clock. `POST /admin/clock {"offset_ms": N}` changes it
    /// while it runs.
    #[arg(long, value_name = "MS", allow_hyphen_values = true)]
    clock_offset_ms: Option<i64>,
    /// The run_id label on every metric these services export (dashboards select runs by
    /// it); e.g. the name of the stack or of the experiment.
    #[arg(long, value_name = "NAME", default_value = "serve", env = "RIG_RUN_ID")]
    run_id: String,
}

/// Where all-in-one serves the provider's Stripe-compatible face.
const DEFAULT_STRIPE: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8093,
));

fn parse_defect(text: &str) -> Result<Defect, String> {
    Defect::parse(text).ok_or_else(|| {
        format!(
            "unknown defect {text:?}; the defects are: {}",
            Defect::names()
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    All,
    Provider,
    Region,
}

fn parse_region(text: &str) -> Result<RegionId, String> {
    RegionId::parse(text).ok_or_else(|| format!("{text:?} is not a region; use a or b"))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<Verdict> {
    if let Some(parent) = args.parent_pid {
        die_with_parent(parent)?;
    }
    if args.clock_offset_ms.is_some() && args.role != Role::Region {
        return Err(BadInput(
            "--clock-offset-ms shifts one region's clock; use it with --role region".into(),
        )
        .into());
    }
    let mut config = target_config::load(args.config.as_deref(), &args.sets)?;
    config.defects.extend(args.defects.iter().copied());
    let config = Arc::new(config);
    let mut store =
        StoreUrl::parse(&args.store).map_err(|err| BadInput(format!("--store: {err}")))?;
    if let Some(namespace) = &args.namespace {
        store = store.with_namespace(namespace);
    }
    target_system::metrics::set_common_labels(&[("run_id", &args.run_id)]);
    let system = match args.role {
        Role::All => {
            if args.listen.is_some() || args.region.is_some() {
                return Err(BadInput(
                    "--listen and --region are for --role provider|region; all-in-one uses --listen-provider, --listen-a, --listen-b".into(),
                )
                .into());
            }
            let provider = bind(args.listen_provider, "--listen-provider", args.reuse_port).await?;
            let stripe_addr = args.listen_stripe.unwrap_or(DEFAULT_STRIPE);
            let stripe = bind(stripe_addr, "--listen-stripe", args.reuse_port).await?;
            let a = bind(args.listen_a, "--listen-a", args.reuse_port).await?;
            let b = bind(args.listen_b, "--listen-b", args.reuse_port).await?;
            // Each region pays through a listener of its own (loopback, any free port), so
            // the provider's request log attributes its calls, as in a run.
            let mut callers = Vec::new();
            for name in ["a", "b"] {
                let any = SocketAddr::from(([127, 0, 0, 1], 0));
                callers.push((name.to_string(), bind(any, "--role all", false).await?));
            }
            let plan = ProviderPlan {
                listener: provider,
                callers,
                stripe: Some(stripe),
            };
            System::start_all_with(config.clone(), &store, plan, a, b).await
        }
        Role::Provider => {
            let listener = bind(
                args.listen.unwrap_or(args.listen_provider),
                "--listen",
                args.reuse_port,
            )
            .await?;
            let mut callers = Vec::new();
            for caller in &args.callers {
                let (name, addr) = caller
                    .split_once('=')
                    .and_then(|(name, addr)| Some((name, addr.parse::<SocketAddr>().ok()?)))
                    .filter(|(name, _)| !name.is_empty())
                    .ok_or_else(|| {
                        BadInput(format!(
                            "--caller {caller:?}: write NAME=ADDR, e.g. --caller a=127.0.0.1:18091"
                        ))
                    })?;
                callers.push((
                    name.to_string(),
                    bind(addr, "--caller", args.reuse_port).await?,
                ));
            }
            let stripe = match args.listen_stripe {
                Some(addr) => Some(bind(addr, "--listen-stripe", args.reuse_port).await?),
                None => None,
            };
            let plan = ProviderPlan {
                listener,
                callers,
                stripe,
            };
            System::start(config.clone(), &store, Some(plan), vec![]).await
        }
        Role::Region => {
            // One region per process: its clock is its own to shift.
            target_system::clock::own_process();
            if let Some(offset_ms) = args.clock_offset_ms {
                target_system::clock::set_offset_ms(offset_ms).map_err(|m| BadInput(m.into()))?;
            }
            let id = args
                .region
                .ok_or_else(|| BadInput("--role region needs --region a|b".into()))?;
            let provider_url = args.provider_url.clone().ok_or_else(|| {
                BadInput("--role region needs --provider-url (e.g. http://127.0.0.1:8090)".into())
            })?;
            let default_listen = if id == RegionId::A {
                args.listen_a
            } else {
                args.listen_b
            };
            let listener = bind(
                args.listen.unwrap_or(default_listen),
                "--listen",
                args.reuse_port,
            )
            .await?;
            let plan = RegionPlan {
                id,
                listener,
                provider_url,
                peer_url: args.peer_url.clone(),
                sink_url: args.sink_url.clone(),
            };
            System::start(config.clone(), &store, None, vec![plan]).await
        }
    };
    let system = system.map_err(|err| match err {
        SystemError::Store(StoreError::BadUrl { .. }) => {
            anyhow::Error::new(BadInput(err.to_string()))
        }
        other => anyhow::Error::new(other).context("the reference system could not start"),
    })?;
    print_banner(&system, &store, &config);
    let signal = stop_signal().await?;
    eprintln!("rig serve: {signal}; shutting down (finishing open requests)");
    system.shutdown().await.context("shutdown")?;
    eprintln!("rig serve: stopped");
    Ok(Verdict::Pass)
}

/// Waits for Ctrl-C or SIGTERM (docker stop, Kubernetes, a `rig run` ending its children).
async fn stop_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("could not listen for SIGTERM")?;
    Ok(tokio::select! {
        interrupted = tokio::signal::ctrl_c() => {
            interrupted.context("could not listen for Ctrl-C")?;
            "interrupted (Ctrl-C)"
        }
        _ = term.recv() => "terminated (SIGTERM)",
    })
}

/// Has the kernel kill this process when its parent dies (SIGKILL, so even a stopped
/// process goes), and exits at once if `parent` is already gone.
fn die_with_parent(parent: u32) -> anyhow::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .context("asking to be killed with the parent process")?;
    if std::os::unix::process::parent_id() != parent {
        anyhow::bail!("the process that started this one (pid {parent}) is gone");
    }
    Ok(())
}

async fn bind(addr: SocketAddr, flag: &str, reuse_port: bool) -> Result<TcpListener, BadInput> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if reuse_port {
            socket.set_reuseport(true)?;
        }
        socket.bind(addr)?;
        socket.listen(1024)
    };
    listen().map_err(|err| {
        BadInput(format!(
            "{flag} {addr}: cannot listen there ({err}); pick a free address, e.g. {flag} 127.0.0.1:0"
        ))
    })
}

fn print_banner(system: &System, store: &StoreUrl, config: &TargetConfig) {
    println!("rig serve: reference checkout system, store {store}");
    if let Some(url) = system.provider_url() {
        println!("  provider  {url}   (POST /v1/charges, /admin/faults)");
    }
    if let Some(url) = system.stripe_url() {
        let keys: Vec<String> = config
            .provider
            .stripe_keys
            .iter()
            .map(|(caller, key)| format!("{caller}={key}"))
            .collect();
        println!(
            "  stripe    {url}   (Stripe API: /v1/payment_intents, /v1/refunds; secret keys {})",
            keys.join(", ")
        );
    }
    for (region, addr) in &system.regions {
        println!(
            "  region {}  http://{addr}   (POST /v1/checkout, GET /v1/orders/ID, /admin/state)",
            region.id()
        );
    }
    let p = &config.payment;
    let r = &config.repair;
    let b = &config.retry_budget;
    let a = &config.admission;
    let br = &config.breaker;
    let rate = a
        .checkout_rate_limit_per_sec
        .map_or("none".to_string(), |r| r.to_string());
    println!(
        "  parameters: seed={} payment.deadline_ms={} payment.per_try_timeout_ms={} payment.max_attempts={} \
         retry_budget.ratio={} retry_budget.min_per_sec={} retry_budget.ttl_seconds={} \
         admission.provider_max_in_flight={} admission.queue_timeout_ms={} admission.checkout_rate_limit_per_sec={rate} \
         breaker.failure_ratio={} breaker.degraded_mode={} repair.max_pending_age_seconds={} \
         (all of them: GET /admin/state)",
        config.seed,
        p.deadline_ms,
        p.per_try_timeout_ms,
        p.max_attempts,
        b.ratio,
        b.min_per_sec,
        b.ttl_seconds,
        a.provider_max_in_flight,
        a.queue_timeout_ms,
        br.failure_ratio,
        format!("{:?}", br.degraded_mode).to_lowercase(),
        r.max_pending_age_seconds,
    );
    for defect in &config.defects {
        println!(
            "  !!! DEFECT {defect} IS ON: this system is broken on purpose (the {} invariant should catch it)",
            defect.caught_by()
        );
    }
    if let Some((_, addr)) = system.regions.first() {
        println!(
            "  try: curl -si -X POST http://{addr}/v1/checkout -H 'Idempotency-Key: order-1' \
             -d '{{\"order_id\":\"order-1\",\"customer_id\":\"c-1\",\"items\":[{{\"sku\":\"sku-1\",\"qty\":1}}]}}'"
        );
    }
    println!("  Ctrl-C stops.");
}
