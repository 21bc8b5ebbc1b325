//! Sustained confirmed checkouts per second against the reference system on one store.
//!
//! Not a test: it prints a figure. Closed loop on purpose (it looks for the ceiling, not
//! latency under a fixed rate): `--concurrency` clients each send a checkout for a fresh order
//! id to the order's owner region and send the next as soon as the answer arrives.
//!
//! cargo bench -p target-system --bench checkout -- --store sqlite://DIR|postgres://... \
//!     [--seconds 10] [--concurrency 64] [--warmup-seconds 2]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use evidence::StoreUrl;
use evidence::owner_of;
use rig_http::{HttpClient, Method};
use target_system::TargetConfig;
use target_system::system::System;
use tokio::net::TcpListener;

struct Args {
    store: String,
    seconds: u64,
    warmup_seconds: u64,
    concurrency: usize,
}

fn args() -> Args {
    let mut args = Args {
        store: String::new(),
        seconds: 10,
        warmup_seconds: 2,
        concurrency: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--store" => args.store = value(),
            "--seconds" => args.seconds = value().parse().expect("--seconds N"),
            "--warmup-seconds" => {
                args.warmup_seconds = value().parse().expect("--warmup-seconds N")
            }
            "--concurrency" => args.concurrency = value().parse().expect("--concurrency N"),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        !args.store.is_empty(),
        "give --store sqlite://DIR or postgres://..."
    );
    args
}

#[tokio::main]
async fn main() {
    let args = args();
    let store = StoreUrl::parse(&args.store).expect("store URL");
    let store = store.with_namespace(&format!("bench_{}", std::process::id()));
    let mut config = TargetConfig::default();
    config.provider.latency_ms = 1;
    config.provider.latency_jitter_ms = 1;
    let bind = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let system = System::start_all(
        Arc::new(config),
        &store,
        bind().await,
        bind().await,
        bind().await,
    )
    .await
    .expect("system starts");
    let urls = [
        system.region_url(evidence::RegionId::A).unwrap(),
        system.region_url(evidence::RegionId::B).unwrap(),
    ];
    let client = HttpClient::new(Duration::from_secs(2), args.concurrency);
    let confirmed = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (client, urls) = (client.clone(), urls.clone());
        let (confirmed, other, stop) = (confirmed.clone(), other.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let order = format!("bench-{}-{worker}-{n}", std::process::id());
                let owner = owner_of(&order);
                let url = &urls[usize::from(owner == evidence::RegionId::B)];
                let body = format!(
                    r#"{{"order_id":"{order}","customer_id":"c{worker}","items":[{{"sku":"sku-1","qty":1}}]}}"#
                );
                let result = client
                    .send(
                        Method::POST,
                        &format!("{url}/v1/checkout"),
                        &[("idempotency-key", order.as_str())],
                        Some(Bytes::from(body)),
                        Duration::from_secs(10),
                    )
                    .await;
                match result {
                    Ok(r) if r.status == 201 => confirmed.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.warmup_seconds)).await;
    let (c0, o0, t0) = (
        confirmed.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let (c1, o1, elapsed) = (
        confirmed.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
        t0.elapsed(),
    );
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let rate = (c1 - c0) as f64 / elapsed.as_secs_f64();
    println!(
        "confirmed_checkouts_per_sec={rate:.0} store={} concurrency={} seconds={:.1} not_confirmed={}",
        store.to_string().split(' ').next().unwrap_or_default(),
        args.concurrency,
        elapsed.as_secs_f64(),
        o1 - o0
    );
    system.shutdown().await.expect("shutdown");
}
