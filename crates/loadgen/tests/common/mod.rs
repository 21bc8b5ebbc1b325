//! Test harness: a hyper test server on 127.0.0.1:0, and one-call load runs on a dedicated
//! generator thread (as `rig load` runs them).

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use loadgen::{
    ArrivalProcess, Engine, EngineConfig, HlogWriter, HttpSpec, HttpWorkload, Observer, Report,
    Schedule, ScheduleSpec, Shard, on_dedicated_thread,
};
use rig_http::{Body, DropConnection, Incoming, Request, Response};
use tokio::sync::oneshot;

/// A test server; shuts down when dropped.
pub struct Server {
    pub url: String,
    _stop: oneshot::Sender<()>,
}

/// Serves `handler` on a fresh loopback port.
pub async fn serve<H, Fut>(handler: H) -> Server
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, DropConnection>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(rig_http::serve(listener, handler, async {
        let _ = stopped.await;
    }));
    Server { url, _stop: stop }
}

/// A load to run against a URL.
#[derive(Clone)]
pub struct Load {
    pub phases: String,
    pub arrival: ArrivalProcess,
    pub seed: u64,
    pub shard: Shard,
    pub connections: usize,
    pub max_in_flight: usize,
    pub timeout: Duration,
    pub drain: Duration,
}

impl Load {
    /// `rate` arrivals per second for `seconds`, constant arrivals, 50 connections.
    pub fn hold(rate: f64, seconds: f64) -> Self {
        Self {
            phases: format!("hold rate={rate} for={seconds}s"),
            arrival: ArrivalProcess::Constant,
            seed: 1,
            shard: Shard::WHOLE,
            connections: 50,
            max_in_flight: 10_000,
            timeout: Duration::from_secs(5),
            drain: Duration::from_secs(5),
        }
    }

    pub fn schedule(&self) -> Schedule {
        Schedule::compile(&ScheduleSpec {
            phases: ScheduleSpec::parse_phases(&self.phases).unwrap(),
            arrival: self.arrival,
            seed: self.seed,
        })
        .unwrap()
    }

    /// Runs against `url` with `observer`; returns the report and the observer.
    pub async fn run_observed<O: Observer + 'static>(
        &self,
        url: &str,
        mut observer: O,
    ) -> (Report, O) {
        let load = self.clone();
        let mut spec = HttpSpec::get(url);
        spec.connections = load.connections;
        spec.timeout = load.timeout;
        on_dedicated_thread("test-loadgen", move || async move {
            let workload = Arc::new(HttpWorkload::connect(&spec).await.unwrap());
            let config = EngineConfig {
                max_in_flight: load.max_in_flight,
                drain_timeout: load.drain,
                ..EngineConfig::default()
            };
            let engine = Engine::new(load.schedule(), load.shard, workload, config).unwrap();
            let report = engine.run(&mut observer, std::future::pending()).await;
            (report, observer)
        })
        .await
        .unwrap()
    }

    /// Runs against `url`.
    pub async fn run(&self, url: &str) -> Report {
        self.run_observed(url, ()).await.0
    }

    /// Runs against `url`, also writing an interval log; returns the report and the log.
    pub async fn run_with_hlog(&self, url: &str) -> (Report, Vec<u8>) {
        let (report, writer) = self.run_observed(url, HlogWriter::new(Vec::new())).await;
        (report, writer.finish().unwrap())
    }
}

/// A plain 200 answer.
pub fn ok_reply() -> Result<Response<Body>, DropConnection> {
    Ok(rig_http::text(rig_http::StatusCode::OK, "ok"))
}

/// Nanoseconds to milliseconds, for messages.
pub fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}
