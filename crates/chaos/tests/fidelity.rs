//! Fidelity of the embedded proxy's toxics, measured through real sockets on 127.0.0.1.
//! Bounds are wide enough for a loaded 2-core machine but tight enough to catch a toxic that
//! does nothing or does too much.

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use common::{Toxi, echo_server, http_round_trip, http_server, read_until_closed, source_server};
use rig_http::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Generous upper bound for things that must happen "at once"; never used to wait for them.
const PROMPTLY: Duration = Duration::from_secs(5);

async fn echo_once(stream: &mut TcpStream, payload: &[u8]) -> Duration {
    let started = Instant::now();
    stream.write_all(payload).await.unwrap();
    let mut got = vec![0u8; payload.len()];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(got, payload);
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// A 100 ms latency toxic adds 100 ± 15 ms to each round trip (median of several).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_adds_its_delay_per_round_trip() {
    let toxi = Toxi::start(1).await;
    let listen = toxi.proxy("echo", echo_server().await).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let mut baseline = Vec::new();
    for _ in 0..5 {
        baseline.push(echo_once(&mut stream, b"ping").await);
    }
    let baseline = median(baseline);
    toxi.add_toxic(
        "echo",
        json!({"type": "latency", "attributes": {"latency": 100}}),
    )
    .await;
    let mut added = Vec::new();
    for _ in 0..7 {
        let rtt = echo_once(&mut stream, b"ping").await;
        assert!(
            rtt >= Duration::from_millis(100),
            "a round trip took only {rtt:?}"
        );
        added.push(rtt.saturating_sub(baseline));
    }
    let added = median(added);
    assert!(
        added >= Duration::from_millis(85) && added <= Duration::from_millis(115),
        "median added latency {added:?}"
    );
}

/// A bandwidth toxic of 100 KB/s delivers 150 KB in 1.5 s ± 15 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_caps_throughput() {
    let toxi = Toxi::start(1).await;
    let listen = toxi.proxy("source", source_server(150_000).await).await;
    toxi.add_toxic(
        "source",
        json!({"type": "bandwidth", "attributes": {"rate": 100}}),
    )
    .await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let (got, err) = read_until_closed(&mut stream).await;
    let elapsed = started.elapsed();
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got.len(), 150_000);
    let rate = 150_000.0 / elapsed.as_secs_f64();
    assert!(
        (85_000.0..=115_000.0).contains(&rate),
        "measured {rate:.0} B/s over {elapsed:?}"
    );
}

/// `timeout` 0 swallows data without closing; removing it closes the connection, and the
/// swallowed bytes never arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_zero_blackholes_and_removal_closes() {
    let toxi = Toxi::start(1).await;
    let listen = toxi.proxy("echo", echo_server().await).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    echo_once(&mut stream, b"before").await;
    toxi.add_toxic(
        "echo",
        json!({"type": "timeout", "stream": "upstream", "attributes": {"timeout": 0}}),
    )
    .await;
    stream.write_all(b"lost").await.unwrap();
    let mut buf = [0u8; 16];
    // Absence check: nothing may come back while the black hole is on.
    let silent = timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
    assert!(
        silent.is_err(),
        "data came through a black hole: {silent:?}"
    );
    toxi.remove_toxic("echo", "timeout_upstream").await;
    let (got, _) = timeout(PROMPTLY, read_until_closed(&mut stream))
        .await
        .expect("removing the timeout toxic must close the connection");
    assert!(got.is_empty(), "swallowed bytes arrived after all: {got:?}");
}

/// Disabling a proxy (the `refuse` partition) closes open connections and refuses new ones;
/// enabling it again accepts connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_closes_existing_connections() {
    let toxi = Toxi::start(1).await;
    let listen = toxi.proxy("echo", echo_server().await).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    echo_once(&mut stream, b"hi").await;
    let (status, body) = toxi
        .call(
            Method::PATCH,
            "/proxies/echo",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["enabled"], false);
    let (got, _) = timeout(PROMPTLY, read_until_closed(&mut stream))
        .await
        .expect("the open connection must be closed");
    assert!(got.is_empty());
    let refused = TcpStream::connect(listen).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::ConnectionRefused);
    toxi.call(
        Method::PATCH,
        "/proxies/echo",
        Some(json!({"enabled": true})),
    )
    .await;
    let mut again = TcpStream::connect(listen).await.unwrap();
    echo_once(&mut again, b"back").await;
}

/// `reset_peer` answers the first data with a TCP reset, also on a connection opened before
/// the toxic was added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_resets() {
    let toxi = Toxi::start(1).await;
    let listen = toxi.proxy("echo", echo_server().await).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    echo_once(&mut stream, b"hi").await;
    toxi.add_toxic(
        "echo",
        json!({"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 0}}),
    )
    .await;
    stream.write_all(b"boom").await.unwrap();
    let (got, err) = timeout(PROMPTLY, read_until_closed(&mut stream))
        .await
        .unwrap();
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::ConnectionReset));
}

/// `limit_data` lets exactly N bytes through, then the connection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_data_closes_after_n_bytes() {
    let toxi = Toxi::start(1).await;
    let listen = toxi.proxy("echo", echo_server().await).await;
    toxi.add_toxic(
        "echo",
        json!({"type": "limit_data", "attributes": {"bytes": 10}}),
    )
    .await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let payload: Vec<u8> = (0..100u8).collect();
    stream.write_all(&payload).await.unwrap();
    let (got, _) = timeout(PROMPTLY, read_until_closed(&mut stream))
        .await
        .unwrap();
    assert_eq!(got, &payload[..10]);
}

/// A toxic added while an HTTP keep-alive connection is open applies to its next request,
/// and no new connection is made for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxic_reaches_open_keep_alive_connection() {
    let toxi = Toxi::start(1).await;
    let (upstream, accepted) = http_server().await;
    let listen = toxi.proxy("http", upstream).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    http_round_trip(&mut stream).await;
    toxi.add_toxic(
        "http",
        json!({"type": "latency", "attributes": {"latency": 100}}),
    )
    .await;
    let started = Instant::now();
    http_round_trip(&mut stream).await;
    let slow = started.elapsed();
    assert!(
        slow >= Duration::from_millis(100),
        "the open connection escaped the toxic: {slow:?}"
    );
    toxi.remove_toxic("http", "latency_downstream").await;
    http_round_trip(&mut stream).await;
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Toxicity is rolled per connection from the server seed: the same seed picks the same
/// connections, another seed picks others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_decides_which_connections_get_a_toxic() {
    async fn pattern(seed: u64) -> Vec<bool> {
        let toxi = Toxi::start(seed).await;
        let listen = toxi.proxy("echo", echo_server().await).await;
        toxi.add_toxic(
            "echo",
            json!({"type": "limit_data", "toxicity": 0.5, "attributes": {"bytes": 1}}),
        )
        .await;
        let mut hits = Vec::new();
        for _ in 0..24 {
            let mut stream = TcpStream::connect(listen).await.unwrap();
            stream.write_all(b"hello").await.unwrap();
            stream.shutdown().await.unwrap();
            let (got, _) = timeout(PROMPTLY, read_until_closed(&mut stream))
                .await
                .unwrap();
            hits.push(got.len() == 1);
        }
        hits
    }
    let first = pattern(11).await;
    assert!(first.contains(&true) && first.contains(&false), "{first:?}");
    assert_eq!(first, pattern(11).await);
    assert_ne!(first, pattern(12).await);
}

/// With no toxic, bulk data passes byte-exact in both directions (the plain-copy path), and
/// a slicer toxic delivers the same bytes in many small pieces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_copy_and_slicer_keep_bytes_intact() {
    let toxi = Toxi::start(1).await;
    let listen = toxi.proxy("echo", echo_server().await).await;
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let (mut r, mut w) = stream.split();
    let sent = payload.clone();
    let (_, got) = tokio::join!(
        async move {
            w.write_all(&sent).await.unwrap();
            w.shutdown().await.unwrap();
        },
        async move {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            got
        }
    );
    assert_eq!(got, payload);
    toxi.add_toxic(
        "echo",
        json!({"type": "slicer", "attributes": {"average_size": 10, "size_variation": 5, "delay": 10}}),
    )
    .await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    stream.write_all(&payload[..2000]).await.unwrap();
    let mut got = vec![0u8; 2000];
    timeout(PROMPTLY, stream.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, &payload[..2000]);
}

/// `slow_close` delays the end of stream by its delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_close_delays_the_close() {
    let toxi = Toxi::start(1).await;
    let listen = toxi.proxy("source", source_server(10).await).await;
    toxi.add_toxic(
        "source",
        json!({"type": "slow_close", "attributes": {"delay": 300}}),
    )
    .await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let (got, _) = timeout(PROMPTLY, read_until_closed(&mut stream))
        .await
        .unwrap();
    assert_eq!(got.len(), 10);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

/// `timeout` with a non-zero timeout closes an idle connection once the timeout has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_closes_after_its_timeout() {
    let toxi = Toxi::start(1).await;
    let listen = toxi.proxy("echo", echo_server().await).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    echo_once(&mut stream, b"hi").await;
    let started = Instant::now();
    toxi.add_toxic(
        "echo",
        json!({"type": "timeout", "attributes": {"timeout": 200}}),
    )
    .await;
    let (got, _) = timeout(PROMPTLY, read_until_closed(&mut stream))
        .await
        .unwrap();
    assert!(got.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}
