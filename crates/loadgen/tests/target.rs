//! Bad targets are refused before any load is sent, quickly, with the field and the fix:
//! unreachable URLs, non-loopback hosts without `allow_remote`, https, bad headers.

use std::time::Duration;

use loadgen::{HttpSpec, HttpWorkload, LoadgenError};

async fn connect(spec: HttpSpec) -> Result<HttpWorkload, LoadgenError> {
    tokio::time::timeout(Duration::from_secs(10), HttpWorkload::connect(&spec))
        .await
        .expect("connect must not hang")
}

/// A loopback port nobody listens on is `Unreachable` (bad input), found before the run.
#[tokio::test]
async fn unreachable_url_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = connect(HttpSpec::get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(err, LoadgenError::Unreachable { .. }), "{err}");
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("fix:"), "{err}");
}

/// A non-loopback address is refused without a single packet unless remote load is allowed
/// (the TEST-NET address below is never contacted: the check comes before connecting).
#[tokio::test]
async fn remote_target_needs_allow_remote() {
    let err = connect(HttpSpec::get("http://192.0.2.7:8080/"))
        .await
        .unwrap_err();
    assert!(matches!(err, LoadgenError::NotLoopback { .. }), "{err}");
    assert!(err.to_string().contains("--allow-remote"), "{err}");
    assert!(err.is_bad_input());
}

/// Names that resolve to loopback are accepted (localhost) and connect.
#[tokio::test]
async fn localhost_is_loopback() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = tokio::spawn(async move {
        let mut kept = Vec::new();
        while kept.len() < 2 {
            kept.push(listener.accept().await.unwrap());
        }
        kept
    });
    let mut spec = HttpSpec::get(&format!("http://localhost:{port}/x?y=1"));
    spec.connections = 2;
    let workload = connect(spec).await.unwrap();
    assert_eq!(accept.await.unwrap().len(), 2);
    let described = loadgen::Workload::describe(&workload);
    assert_eq!(described["connections"], 2);
}

/// Malformed input names its field: scheme, method, header, connection count.
#[tokio::test]
async fn malformed_specs_name_the_field() {
    let mut cases = Vec::new();
    cases.push((HttpSpec::get("https://127.0.0.1:1/"), "url"));
    cases.push((HttpSpec::get("127.0.0.1:1"), "url"));
    cases.push((HttpSpec::get("ftp://127.0.0.1/"), "url"));
    let mut bad_method = HttpSpec::get("http://127.0.0.1:1/");
    bad_method.method = "GE T".into();
    cases.push((bad_method, "--method"));
    let mut bad_header = HttpSpec::get("http://127.0.0.1:1/");
    bad_header.headers = vec!["NoColonHere".into()];
    cases.push((bad_header, "--header"));
    let mut framing_header = HttpSpec::get("http://127.0.0.1:1/");
    framing_header.headers = vec!["Transfer-Encoding: chunked".into()];
    cases.push((framing_header, "--header"));
    let mut no_connections = HttpSpec::get("http://127.0.0.1:1/");
    no_connections.connections = 0;
    cases.push((no_connections, "--connections"));
    for (spec, field) in cases {
        let err = connect(spec.clone()).await.unwrap_err();
        assert!(err.is_bad_input(), "{spec:?}: {err}");
        assert!(err.to_string().starts_with(field), "{spec:?}: {err}");
    }
}

/// Method, headers and body are sent as configured on every request (the server checks
/// each one and answers 400 otherwise), and the body size is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn method_headers_and_body_are_sent() {
    use loadgen::Outcome;
    use rig_http::{Method, StatusCode};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/orders?x=1", listener.local_addr().unwrap());
    tokio::spawn(rig_http::serve(
        listener,
        |req: rig_http::Request<rig_http::Incoming>| async move {
            let fine = req.method() == Method::POST
                && req.uri().path() == "/orders"
                && req.uri().query() == Some("x=1")
                && req.headers().get("x-run").is_some_and(|v| v == "rig")
                && req
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v == "application/json");
            let body = rig_http::read_body(req.into_body(), 1024).await.unwrap();
            let status = if fine && body.as_ref() == b"{\"a\":1}" {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            Ok(rig_http::text(status, "12345"))
        },
        std::future::pending::<()>(),
    ));
    let mut spec = HttpSpec::get(&url);
    spec.method = "POST".into();
    spec.headers = vec!["X-Run: rig".into(), "Content-Type: application/json".into()];
    spec.body = bytes::Bytes::from_static(b"{\"a\":1}");
    spec.connections = 2;
    let report = run_for_200ms(spec, 20).await;
    assert_eq!(report.count(Outcome::Ok), 20, "{:?}", report.status_codes);
    assert_eq!(report.bytes, 20 * 5);
}

/// A raw HTTP/1.1 server: answers each request head on a connection with the next of
/// `replies` (cycling), written in small pieces so the client sees partial reads, and
/// closes the connection after a reply that ends with `close`.
async fn raw_server(replies: &'static [(&'static str, bool)]) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/raw", listener.local_addr().unwrap());
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let next = std::sync::Arc::clone(&next);
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    pending.drain(..end + 4);
                    let (reply, close) =
                        replies[next.fetch_add(1, Ordering::Relaxed) % replies.len()];
                    for piece in reply.as_bytes().chunks(7) {
                        if stream.write_all(piece).await.is_err() {
                            return;
                        }
                        stream.flush().await.unwrap();
                        tokio::task::yield_now().await;
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// Runs `arrivals` evenly spread over 200 ms against `spec`.
async fn run_for_200ms(spec: HttpSpec, arrivals: u32) -> loadgen::Report {
    use loadgen::{Engine, EngineConfig, Schedule, ScheduleSpec, Shard};
    use std::sync::Arc;

    let schedule = Schedule::compile(&ScheduleSpec::hold(
        f64::from(arrivals) * 5.0,
        Duration::from_millis(200),
        loadgen::ArrivalProcess::Constant,
        0,
    ))
    .unwrap();
    loadgen::on_dedicated_thread("test-raw", move || async move {
        let workload = Arc::new(HttpWorkload::connect(&spec).await.unwrap());
        Engine::new(schedule, Shard::WHOLE, workload, EngineConfig::default())
            .unwrap()
            .run(&mut (), std::future::pending())
            .await
    })
    .await
    .unwrap()
}

/// Responses are read by their HTTP/1.1 framing, however they arrive: chunked (with an
/// extension and a trailer), after an interim 100, by Content-Length, until the close of an
/// HTTP/1.0 connection, and with `Connection: close`. Every request gets its answer, the
/// body bytes are counted exactly, and closed connections are reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn responses_are_read_by_their_framing() {
    use loadgen::Outcome;

    static REPLIES: &[(&str, bool)] = &[
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: 1\r\n\r\n",
            false,
        ),
        (
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc",
            false,
        ),
        ("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", false),
        ("HTTP/1.0 200 OK\r\n\r\nuntil-close", true),
        (
            "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno",
            true,
        ),
    ];
    let mut spec = HttpSpec::get(&raw_server(REPLIES).await);
    spec.connections = 1;
    spec.timeout = Duration::from_secs(5);
    let report = run_for_200ms(spec, 50).await;
    assert_eq!(report.count(Outcome::Unknown), 0, "{:?}", report.errors);
    assert_eq!(report.count(Outcome::Ok), 30, "{:?}", report.status_codes);
    assert_eq!(report.count(Outcome::Rejected), 10);
    assert_eq!(report.count(Outcome::Failed), 10);
    assert_eq!(report.bytes, 10 * (11 + 3 + 11 + 2));
}

/// A HEAD response announces a length but carries no body: the client must not wait for
/// one (it would time out, and the next answer would be misread).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn head_responses_have_no_body() {
    use loadgen::Outcome;

    static REPLIES: &[(&str, bool)] = &[("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", false)];
    let mut spec = HttpSpec::get(&raw_server(REPLIES).await);
    spec.method = "HEAD".into();
    spec.connections = 1;
    spec.timeout = Duration::from_secs(5);
    let report = run_for_200ms(spec, 20).await;
    assert_eq!(report.count(Outcome::Ok), 20, "{:?}", report.errors);
    assert_eq!(report.bytes, 0);
}
