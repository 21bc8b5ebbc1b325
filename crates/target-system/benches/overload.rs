//! Goodput under overload: confirmed checkouts/s at 1x, 2x and 4x the provider's capacity,
//! offered open-loop (sends on schedule, whatever the answers), each on a fresh system, in one
//! run. Not a test: it prints the figures and the ratios goodput(kx) / goodput(1x).
//!
//! cargo bench -p target-system --bench overload -- [--capacity 100] [--seconds 10]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use evidence::owner_of;
use evidence::{RegionId, StoreUrl};
use rig_http::{HttpClient, Method};
use target_system::TargetConfig;
use target_system::system::System;
use target_system::testkit::TempDir;
use tokio::net::TcpListener;
use tokio::time::{Instant, MissedTickBehavior};

#[derive(Default)]
struct Counts {
    confirmed: AtomicU64,
    pending: AtomicU64,
    shed: AtomicU64,
    other: AtomicU64,
}

async fn run(capacity: u32, multiple: u32, seconds: u64) -> (f64, [u64; 4]) {
    let dir = TempDir::new("overload");
    let store = StoreUrl::Sqlite {
        dir: dir.path().join("stores"),
    };
    let mut config = TargetConfig::default();
    config.provider.rate_limit_per_sec = Some(capacity);
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
    let url = format!("{}/v1/checkout", system.region_url(RegionId::A).unwrap());
    let client = HttpClient::new(Duration::from_secs(2), 512);
    let counts = Arc::new(Counts::default());
    let rate = f64::from(capacity * multiple);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        ticks.tick().await;
        n += 1;
        let order = (n..)
            .map(|i| format!("ovl-{multiple}-{i}"))
            .find(|id| owner_of(id) == RegionId::A)
            .unwrap();
        n += 1;
        let (client, url, counts) = (client.clone(), url.clone(), counts.clone());
        tasks.spawn(async move {
            let body = format!(
                r#"{{"order_id":"{order}","customer_id":"c","items":[{{"sku":"sku-1","qty":1}}]}}"#
            );
            let result = client
                .send(
                    Method::POST,
                    &url,
                    &[("idempotency-key", order.as_str())],
                    Some(Bytes::from(body)),
                    Duration::from_secs(5),
                )
                .await;
            let slot = match result.map(|r| r.status.as_u16()) {
                Ok(201) => &counts.confirmed,
                Ok(202) => &counts.pending,
                Ok(429) | Ok(503) => &counts.shed,
                _ => &counts.other,
            };
            slot.fetch_add(1, Ordering::Relaxed);
        });
        while tasks.try_join_next().is_some() {}
    }
    let offered_for = started.elapsed().as_secs_f64();
    while tasks.join_next().await.is_some() {}
    system.shutdown().await.expect("shutdown");
    let c = [
        &counts.confirmed,
        &counts.pending,
        &counts.shed,
        &counts.other,
    ]
    .map(|a| a.load(Ordering::Relaxed));
    (c[0] as f64 / offered_for, c)
}

#[tokio::main]
async fn main() {
    let mut capacity = 100u32;
    let mut seconds = 10u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--capacity" => {
                capacity = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--capacity N")
            }
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--seconds N")
            }
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    println!(
        "provider capacity {capacity} charges/s; each load offered open-loop for {seconds} s on a fresh system"
    );
    println!(
        "{:>8} {:>12} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "offered", "goodput/s", "confirmed", "pending", "shed", "other", "vs 1x"
    );
    let mut base = None;
    for multiple in [1, 2, 4] {
        let (goodput, [confirmed, pending, shed, other]) = run(capacity, multiple, seconds).await;
        let base_goodput = *base.get_or_insert(goodput);
        println!(
            "{:>7}x {goodput:>12.1} {confirmed:>10} {pending:>10} {shed:>10} {other:>8} {:>10.2}",
            multiple,
            goodput / base_goodput
        );
    }
}
