//! The `toxiproxy_rust` client drives the embedded server end to end, always from a blocking
//! thread, and its panics come back as errors.

mod common;

use std::sync::Arc;

use chaos::toxics::{Latency, Stream, Timeout, Toxic, ToxicSpec};
use chaos::{ProxyConfig, ToxiproxyControl};
use common::{Toxi, echo_server};
use tokio::net::TcpListener;
use toxiproxy_rust::client::Client;
use toxiproxy_rust::proxy::ProxyPack;

/// The crate itself (populate, add toxics, list, remove, reset) works against our server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crate_drives_embedded_server() {
    let toxi = Toxi::start(1).await;
    let upstream = echo_server().await.to_string();
    let api = toxi.server.addr().to_string();
    let seen = tokio::task::spawn_blocking(move || {
        let client = Client::new(api.as_str());
        let proxies = client
            .populate(vec![ProxyPack::new(
                "svc".into(),
                "127.0.0.1:0".into(),
                upstream,
            )])
            .unwrap();
        assert_eq!(proxies.len(), 1);
        let proxy = client.find_proxy("svc").unwrap();
        proxy
            .with_latency("downstream".into(), 100, 10, 1.0)
            .with_timeout("upstream".into(), 0, 1.0)
            .with_limit_data("downstream".into(), 64, 0.5);
        let listed: Vec<String> = proxy
            .toxics()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        proxy.delete_all_toxics().unwrap();
        let after_delete = proxy.toxics().unwrap().len();
        proxy.disable().unwrap();
        let disabled = !client.find_proxy("svc").unwrap().proxy_pack.enabled;
        client.reset().unwrap();
        let all = client.all().unwrap();
        let version = client.version().unwrap();
        (
            listed,
            after_delete,
            disabled,
            all["svc"].proxy_pack.enabled,
            version,
        )
    })
    .await
    .unwrap();
    assert_eq!(
        seen.0,
        vec![
            "timeout_upstream",
            "latency_downstream",
            "limit_data_downstream"
        ]
    );
    assert_eq!(seen.1, 0);
    assert!(seen.2, "disable did not take");
    assert!(seen.3, "reset must re-enable");
    assert!(seen.4.contains("version"));
}

/// `ToxiproxyControl` (toxiproxy_rust on spawn_blocking, plain HTTP for what it lacks):
/// populate, add, list, remove one, reset, with every change visible on read-back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_round_trip() {
    let toxi = Toxi::start(1).await;
    let upstream = echo_server().await.to_string();
    let control = ToxiproxyControl::new(&toxi.url()).unwrap();
    let mut log = Vec::new();
    let created = control
        .populate(
            &[ProxyConfig {
                name: "a_to_b".into(),
                listen: "127.0.0.1:0".into(),
                upstream,
                enabled: None,
            }],
            &mut log,
        )
        .await
        .unwrap();
    assert!(created[0].enabled);
    let latency = ToxicSpec::new(
        Stream::Downstream,
        Toxic::Latency(Latency {
            latency: 20,
            jitter: 0,
        }),
    );
    let hole = ToxicSpec::new(Stream::Upstream, Toxic::Timeout(Timeout { timeout: 0 }));
    let reset = ToxicSpec::new(
        Stream::Downstream,
        Toxic::ResetPeer(chaos::toxics::ResetPeer { timeout: 5 }),
    );
    for spec in [&latency, &hole, &reset] {
        control.add_toxic("a_to_b", spec, &mut log).await.unwrap();
    }
    let proxies = control.proxies(&mut log).await.unwrap();
    let toxics = &proxies["a_to_b"].toxics;
    assert_eq!(toxics.len(), 3);
    assert!(toxics.contains(&latency) && toxics.contains(&hole) && toxics.contains(&reset));
    control
        .remove_toxic("a_to_b", "timeout_upstream", &mut log)
        .await
        .unwrap();
    control
        .set_enabled("a_to_b", false, &mut log)
        .await
        .unwrap();
    let proxies = control.proxies(&mut log).await.unwrap();
    assert_eq!(proxies["a_to_b"].toxics.len(), 2);
    assert!(!proxies["a_to_b"].enabled);
    control.heal(&mut log).await.unwrap();
    assert!(control.proxies(&mut log).await.unwrap()["a_to_b"].is_clean());
    // Calls made through plain HTTP carry their status; crate calls are marked as such.
    assert!(log.iter().any(|c| c.via == "http" && c.status == Some(204)));
    assert!(
        log.iter()
            .any(|c| c.via == "toxiproxy_rust" && c.status.is_none())
    );
}

/// A broken answer makes toxiproxy_rust panic (it `expect`s a readable body); on the
/// blocking thread that panic becomes an error for the caller instead of killing the run.
/// Toxics go over plain HTTP, where a broken connection is an error with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_panic_becomes_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A fake Toxiproxy whose every answer promises 100 bytes and sends 5.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
                    .await;
            });
        }
    });
    let control = Arc::new(ToxiproxyControl::new(&url).unwrap());
    let mut log = Vec::new();
    let err = control.version(&mut log).await.unwrap_err();
    assert!(err.contains("panicked"), "{err}");
    assert!(
        log.last()
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("panicked")
    );
    let spec = ToxicSpec::new(
        Stream::Downstream,
        Toxic::Latency(Latency {
            latency: 1,
            jitter: 0,
        }),
    );
    let err = control.add_toxic("p", &spec, &mut log).await.unwrap_err();
    assert!(!err.contains("panicked"), "{err}");
    server.abort();
}
