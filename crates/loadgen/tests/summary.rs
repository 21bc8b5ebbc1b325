//! The JSON summary is a contract: real output validates against the schema in the repo,
//! and the schema rejects documents that break it. The text summary names what matters.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Load, serve};
use loadgen::{SUMMARY_JSON_SCHEMA, Summary};
use rig_http::StatusCode;

fn validator() -> (boon::Schemas, boon::SchemaIndex) {
    let schema: serde_json::Value = serde_json::from_str(SUMMARY_JSON_SCHEMA).unwrap();
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("summary.schema.json", schema)
        .unwrap();
    let index = compiler
        .compile("summary.schema.json", &mut schemas)
        .unwrap();
    (schemas, index)
}

/// A summary from a real run (two phases, every outcome but dropped) validates against
/// `schema/summary.schema.json`; removing a required field or mistyping one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn summary_json_matches_its_schema() {
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = Arc::clone(&seen);
    let server = serve(move |_req| {
        let n = seen2.fetch_add(1, Ordering::Relaxed);
        async move {
            let status = [200, 200, 404, 503][(n % 4) as usize];
            if n % 10 == 9 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(rig_http::text(StatusCode::from_u16(status).unwrap(), "x"))
        }
    })
    .await;
    let mut load = Load::hold(0.0, 0.0);
    load.phases = "ramp from=50 to=150 for=1s; hold rate=100 for=1s".into();
    load.timeout = Duration::from_millis(200);
    let schedule = load.schedule();
    let report = load.run(&server.url).await;
    let summary = Summary::new(&report, &schedule, Duration::from_millis(1));
    let json = serde_json::to_value(&summary).unwrap();
    if std::env::var_os("PRINT_SUMMARY").is_some() {
        println!("{}", serde_json::to_string_pretty(&json).unwrap());
        println!("{}", summary.to_text());
    }
    let (schemas, index) = validator();
    if let Err(err) = schemas.validate(&json, index) {
        panic!("summary does not match its schema: {err:#}");
    }
    assert!(json["totals"]["unknown"].as_u64().unwrap() > 0);

    let mut missing = json.clone();
    missing.as_object_mut().unwrap().remove("totals");
    assert!(schemas.validate(&missing, index).is_err());
    let mut mistyped = json.clone();
    mistyped["phases"][0]["counts"]["ok"] = serde_json::json!("many");
    assert!(schemas.validate(&mistyped, index).is_err());
    let mut extra = json.clone();
    extra["self_check"]["surprise"] = serde_json::json!(1);
    assert!(schemas.validate(&extra, index).is_err());
}

/// The text summary has a row per phase, the four latency views and the self-check line.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn text_summary_names_what_matters() {
    let server = serve(|_req| async { common::ok_reply() }).await;
    let mut load = Load::hold(0.0, 0.0);
    load.phases = "hold rate=100 for=500ms; spike rate=100 peak=400 spike=100ms for=500ms".into();
    let schedule = load.schedule();
    let report = load.run(&server.url).await;
    let text = Summary::new(&report, &schedule, Duration::from_millis(1)).to_text();
    for needle in [
        "0-hold",
        "1-spike",
        "latency (completion - intended, all)",
        "service time",
        "generator lag",
        "connection wait",
        "status codes: 200: ",
        "self-check",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}
