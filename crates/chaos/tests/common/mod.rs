//! Test harness: small upstream servers, the embedded Toxiproxy, a fake provider admin API,
//! all on 127.0.0.1:0 and all stopping with the test's runtime.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chaos::{EmbeddedToxiproxy, ServerOptions};
use rig_http::{HttpClient, Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Echoes every byte back, on every connection.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Sends `bytes` bytes to each client as fast as it can, then closes.
pub async fn source_server(bytes: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = socket.write_all(&vec![7u8; bytes]).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

/// A minimal HTTP/1.1 keep-alive server answering `ok` to every request; counts connections.
pub async fn http_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = find(&pending, b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if socket.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends one GET on an open keep-alive connection and reads the whole `ok` response.
pub async fn http_round_trip(stream: &mut TcpStream) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"\r\n\r\nok") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed mid-response");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Reads until EOF or an error; returns the bytes and whether it ended with an error.
pub async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Option<std::io::Error>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) => return (got, Some(err)),
        }
    }
}

/// The embedded Toxiproxy on 127.0.0.1:0 with a plain HTTP client for its API.
pub struct Toxi {
    pub server: EmbeddedToxiproxy,
    pub http: HttpClient,
}

impl Toxi {
    pub async fn start(seed: u64) -> Self {
        let server = EmbeddedToxiproxy::start(
            "127.0.0.1:0",
            ServerOptions {
                seed,
                proxies: vec![],
            },
        )
        .await
        .unwrap();
        Self {
            server,
            http: HttpClient::new(Duration::from_secs(2), 4),
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Calls the API; returns status and JSON body (Null when empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| Bytes::from(serde_json::to_vec(&b).unwrap()));
        let response = self
            .http
            .send(
                method,
                &format!("{}{path}", self.url()),
                &[],
                body,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        (response.status, value)
    }

    /// Creates a proxy on a free loopback port to `upstream`; returns its listen address.
    pub async fn proxy(&self, name: &str, upstream: SocketAddr) -> SocketAddr {
        let (status, body) = self
            .call(
                Method::POST,
                "/proxies",
                Some(json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream.to_string()})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["listen"].as_str().unwrap().parse().unwrap()
    }

    pub async fn add_toxic(&self, proxy: &str, toxic: Value) {
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/proxies/{proxy}/toxics"),
                Some(toxic),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) {
        let (status, body) = self
            .call(
                Method::DELETE,
                &format!("/proxies/{proxy}/toxics/{toxic}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
}

/// A fake of the provider's fault admin API: POST replaces, DELETE clears, GET reads back.
pub struct FakeProvider {
    pub url: String,
    pub faults: Arc<Mutex<Value>>,
    pub posts: Arc<AtomicUsize>,
}

pub async fn fake_provider() -> FakeProvider {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let faults = Arc::new(Mutex::new(json!({})));
    let posts = Arc::new(AtomicUsize::new(0));
    let (state, counter) = (faults.clone(), posts.clone());
    let handler = move |request: rig_http::Request<rig_http::Incoming>| {
        let state = state.clone();
        let counter = counter.clone();
        async move {
            if request.uri().path() != "/admin/faults" {
                return Ok(rig_http::text(StatusCode::NOT_FOUND, "no"));
            }
            let method = request.method().clone();
            let body = rig_http::read_body(request.into_body(), 65536)
                .await
                .unwrap_or_default();
            let reply = match method {
                Method::POST => {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let value: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
                    *state.lock().unwrap() = value.clone();
                    rig_http::json(StatusCode::OK, &value)
                }
                Method::DELETE => {
                    *state.lock().unwrap() = json!({});
                    rig_http::json(StatusCode::OK, &json!({}))
                }
                _ => {
                    // Unset faults read back as null, as the real provider does.
                    let mut value = state.lock().unwrap().clone();
                    for key in [
                        "rate_limit_per_sec",
                        "max_concurrency",
                        "latency_ms",
                        "error_rate",
                        "commit_then_drop_rate",
                        "outage",
                    ] {
                        if value.get(key).is_none() {
                            value[key] = Value::Null;
                        }
                    }
                    rig_http::json(StatusCode::OK, &value)
                }
            };
            Ok(reply)
        }
    };
    tokio::spawn(rig_http::serve(listener, handler, std::future::pending()));
    FakeProvider { url, faults, posts }
}

/// A unique temporary file path for a journal.
pub fn temp_path(name: &str) -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!(
        "chaos-test-{}-{name}-{n}.jsonl",
        std::process::id()
    ))
}
