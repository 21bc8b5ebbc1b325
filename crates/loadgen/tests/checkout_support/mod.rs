//! Test support for the checkout workload: a recording stub region on 127.0.0.1:0 whose
//! answers a test scripts, a one-call run on a dedicated generator thread, and the client
//! history read back from its SQLite file.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use loadgen::{
    CheckoutReport, CheckoutRun, CheckoutSpec, HistorySink, ScheduleSpec, on_dedicated_thread,
};
use rig_http::{Body, DropConnection, Incoming, Request, Response, StatusCode};
use sqlx::Row;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// One request as the stub received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub key: Option<String>,
    pub body: Bytes,
}

/// A stub region; stops when dropped.
pub struct Stub {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    _stop: oneshot::Sender<()>,
}

impl Stub {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub type Reply = Result<Response<Body>, DropConnection>;

/// Serves `answer(request, everything seen so far including it)` on a fresh loopback port.
pub async fn stub<F, Fut>(answer: F) -> Stub
where
    F: Fn(Seen, Vec<Seen>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = Arc::clone(&seen);
    let handler = move |req: Request<Incoming>| {
        let (log, answer) = (Arc::clone(&log), answer.clone());
        async move {
            let at = Instant::now();
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let key = req
                .headers()
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = rig_http::read_body(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            let request = Seen {
                at,
                method,
                path,
                key,
                body,
            };
            let so_far = {
                let mut log = log.lock().unwrap();
                log.push(request.clone());
                log.clone()
            };
            answer(request, so_far).await
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(rig_http::serve(listener, handler, async {
        let _ = stopped.await;
    }));
    Stub {
        url,
        seen,
        _stop: stop,
    }
}

/// A JSON answer with optional extra headers.
pub fn json(status: u16, body: serde_json::Value, headers: &[(&str, &str)]) -> Reply {
    let mut reply = rig_http::json(StatusCode::from_u16(status).unwrap(), &body);
    for (name, value) in headers {
        reply.headers_mut().insert(
            rig_http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    Ok(reply)
}

pub fn confirmed() -> Reply {
    json(201, serde_json::json!({"status": "order_confirmed"}), &[])
}

/// A spec for `phases` with test-friendly defaults: fixed skus (no /admin/state), a fixed
/// run tag, short timeouts.
pub fn spec(phases: &str) -> CheckoutSpec {
    let mut spec = CheckoutSpec {
        phases: ScheduleSpec::parse_phases(phases).unwrap(),
        run_tag: Some("t".into()),
        skus: vec!["sku-1".into(), "sku-2".into(), "sku-3".into()],
        lanes: 64,
        ..CheckoutSpec::default()
    };
    spec.retry.timeout = loadgen::duration::HumanDuration(Duration::from_secs(2));
    spec.give_up_after = loadgen::duration::HumanDuration(Duration::from_secs(20));
    spec
}

/// Runs `spec` against `targets` on a generator thread of its own, history to `history`.
pub async fn run(
    spec: CheckoutSpec,
    targets: Vec<String>,
    history: Option<&Path>,
) -> CheckoutReport {
    let history = history.map(Path::to_path_buf);
    on_dedicated_thread("test-checkout", move || async move {
        let mut run = CheckoutRun::new(spec, targets);
        if let Some(path) = history {
            run = run.history(HistorySink::Sqlite { path });
        }
        run.run(&mut (), std::future::pending()).await
    })
    .await
    .unwrap()
    .expect("the checkout run starts")
}

/// One `history_arrivals` row.
#[derive(Debug, Clone)]
pub struct ArrivalRow {
    pub arrival_id: i64,
    pub order_id: String,
    pub customer_id: String,
    pub entry_region: String,
    pub phase: String,
    pub intended_at_us: i64,
    pub sent_at_us: Option<i64>,
    pub finished_at_us: Option<i64>,
    pub attempts: i64,
    pub polls: i64,
    pub last_status: Option<i64>,
    pub outcome: String,
    pub detail: Option<String>,
}

/// One `history_requests` row.
#[derive(Debug, Clone)]
pub struct RequestRow {
    pub arrival_id: i64,
    pub seq: i64,
    pub kind: String,
    pub region: String,
    pub sent_at_us: i64,
    pub finished_at_us: i64,
    pub http_status: Option<i64>,
    pub answer: String,
    pub retry_after_ms: Option<i64>,
}

/// Both history tables, ordered by arrival (and seq).
pub async fn read_history(path: &Path) -> (Vec<ArrivalRow>, Vec<RequestRow>) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .unwrap();
    let arrivals = sqlx::query(
        "SELECT arrival_id, order_id, customer_id, entry_region, phase, intended_at_us, \
         sent_at_us, finished_at_us, attempts, polls, last_status, outcome, detail \
         FROM history_arrivals ORDER BY arrival_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| ArrivalRow {
        arrival_id: r.get(0),
        order_id: r.get(1),
        customer_id: r.get(2),
        entry_region: r.get(3),
        phase: r.get(4),
        intended_at_us: r.get(5),
        sent_at_us: r.get(6),
        finished_at_us: r.get(7),
        attempts: r.get(8),
        polls: r.get(9),
        last_status: r.get(10),
        outcome: r.get(11),
        detail: r.get(12),
    })
    .collect();
    let requests = sqlx::query(
        "SELECT arrival_id, seq, kind, region, sent_at_us, finished_at_us, http_status, \
         answer, retry_after_ms FROM history_requests ORDER BY arrival_id, seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| RequestRow {
        arrival_id: r.get(0),
        seq: r.get(1),
        kind: r.get(2),
        region: r.get(3),
        sent_at_us: r.get(4),
        finished_at_us: r.get(5),
        http_status: r.get(6),
        answer: r.get(7),
        retry_after_ms: r.get(8),
    })
    .collect();
    pool.close().await;
    (arrivals, requests)
}

/// A fresh history file path in a directory removed when the guard drops.
pub fn history_file(label: &str) -> (target_system::testkit::TempDir, PathBuf) {
    let dir = target_system::testkit::TempDir::new(label);
    let path = dir.path().join("history.db");
    (dir, path)
}
