//! Grafana annotations for a run's chaos: `rig run --grafana-url URL` posts each fault
//! window of the run's chaos journal as one region annotation (`POST /api/annotations`),
//! tagged `rig`, `chaos`, the run id and the fault kind, so any dashboard with a tag-filtered
//! annotation query shades the faults over its panels.
//!
//! A window opens when a `[[chaos]]` entry's `start` step is `applied` and closes when its
//! `stop` step is applied or everything is `healed`; one applied but never closed (the run
//! died before healing) ends at the journal's last record. Times are the records'
//! `wall_time`, in epoch milliseconds as Grafana wants them; what the fault was comes from
//! the `planned` record.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use chaos::{Event, PartitionDirection, Record};
use rig_http::{HttpClient, Method};
use serde_json::{Value, json};

/// Per annotation request, connection included.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of an error answer's body an error message quotes.
const ERROR_BODY_CHARS: usize = 300;

/// One fault window as an annotation shows it.
#[derive(Debug, Clone, PartialEq)]
struct FaultWindow {
    /// `partition`, `provider` or `link`.
    kind: String,
    start_ms: i64,
    end_ms: i64,
    /// `<fault> on <target> (<details>)`.
    text: String,
}

/// Posts one region annotation per fault window of the chaos journal at `journal` to the
/// Grafana at `grafana_url` (with `Authorization: Bearer <token>` when a token is given) and
/// returns how many were posted. Errors name the URL and Grafana's status and answer.
pub async fn annotate_chaos(
    grafana_url: &str,
    token: Option<&str>,
    run_id: &str,
    journal: &Path,
) -> anyhow::Result<usize> {
    let base = grafana_url.trim_end_matches('/');
    if !base.starts_with("http://") {
        bail!(
            "--grafana-url {grafana_url}: only plain http:// URLs are supported; fix: give \
             Grafana's HTTP address, e.g. http://grafana:3000 (in the cluster, or through \
             kubectl port-forward)"
        );
    }
    // Its errors name the journal's path.
    let records = chaos::read_journal(journal)?;
    let windows =
        fault_windows(&records).with_context(|| format!("chaos journal {}", journal.display()))?;
    let url = format!("{base}/api/annotations");
    let client = HttpClient::new(CONNECT_TIMEOUT, 1);
    let authorization = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("accept", "application/json")];
    if let Some(value) = &authorization {
        headers.push(("authorization", value.as_str()));
    }
    for (posted, window) in windows.iter().enumerate() {
        let body = json!({
            "time": window.start_ms,
            "timeEnd": window.end_ms,
            "tags": ["rig", "chaos", run_id, window.kind],
            "text": window.text,
        });
        let so_far = if posted == 0 {
            String::new()
        } else {
            format!(" ({posted} of {} annotations were posted)", windows.len())
        };
        let response = client
            .send(
                Method::POST,
                &url,
                &headers,
                Some(serde_json::to_vec(&body)?.into()),
                POST_TIMEOUT,
            )
            .await
            .map_err(|err| anyhow!("POST {url}: {err}{so_far}"))?;
        if !response.status.is_success() {
            let answer: String = String::from_utf8_lossy(&response.body)
                .chars()
                .take(ERROR_BODY_CHARS)
                .collect();
            bail!(
                "POST {url}: Grafana answered HTTP {}: {}{so_far}",
                response.status,
                answer.trim()
            );
        }
    }
    Ok(windows.len())
}

/// The fault windows of a journal, in the order they opened.
fn fault_windows(records: &[Record]) -> anyhow::Result<Vec<FaultWindow>> {
    let planned: Vec<Value> = records
        .iter()
        .find(|r| r.event == Event::Planned)
        .and_then(|r| r.plan.as_ref())
        .and_then(|plan| plan.get("windows"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let text_of = |entry: usize, kind: &str| {
        let window = planned
            .iter()
            .find(|w| w.get("entry").and_then(Value::as_u64) == Some(entry as u64));
        describe(entry, kind, window)
    };
    let mut open: Vec<(usize, FaultWindow)> = Vec::new();
    let mut closed: Vec<FaultWindow> = Vec::new();
    let mut last_ms = None;
    for record in records {
        let at_ms = record
            .wall_time_us()
            .map(|us| us.div_euclid(1000))
            .ok_or_else(|| {
                anyhow!(
                    "record {}: wall_time {:?} is not an RFC 3339 UTC time",
                    record.seq,
                    record.wall_time
                )
            })?;
        last_ms = Some(at_ms);
        match (record.event, record.step.as_ref()) {
            (Event::Applied, Some(step)) if step.action == "start" => {
                open.push((
                    step.entry,
                    FaultWindow {
                        kind: step.kind.clone(),
                        start_ms: at_ms,
                        end_ms: at_ms,
                        text: text_of(step.entry, &step.kind),
                    },
                ));
            }
            (Event::Applied | Event::Healed, Some(step)) if step.action == "stop" => {
                let entry = step.entry;
                if let Some(i) = open.iter().position(|(e, _)| *e == entry) {
                    let (_, mut window) = open.remove(i);
                    window.end_ms = at_ms;
                    closed.push(window);
                }
            }
            (Event::Healed, None) => {
                for (_, mut window) in open.drain(..) {
                    window.end_ms = at_ms;
                    closed.push(window);
                }
            }
            _ => {}
        }
    }
    for (_, mut window) in open {
        window.end_ms = last_ms.unwrap_or(window.start_ms);
        closed.push(window);
    }
    closed.sort_by_key(|w| w.start_ms);
    Ok(closed)
}

/// `<fault> on <target> (<details>)` from the planned window of `entry`: e.g.
/// `partition on a_to_b, b_to_a (chaos[0], mode=blackhole, direction=both)`.
fn describe(entry: usize, kind: &str, window: Option<&Value>) -> String {
    let Some(window) = window else {
        return format!("{kind} on an unknown target (chaos[{entry}], not in the planned record)");
    };
    let fault = match window.get("name").and_then(Value::as_str) {
        Some(name) => format!("{kind} {name:?}"),
        None => kind.to_string(),
    };
    let mut details = vec![format!("chaos[{entry}]")];
    let target = match kind {
        "partition" => {
            let direction = window.get("direction").cloned().unwrap_or(Value::Null);
            pairs(window, &["mode", "direction"], &mut details);
            serde_json::from_value::<PartitionDirection>(direction)
                .map(|d| d.proxies().join(", "))
                .unwrap_or_else(|_| "an unknown direction".to_string())
        }
        "provider" => {
            if let Some(faults) = window.get("faults") {
                let keys: Vec<&str> = faults
                    .as_object()
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                pairs(faults, &keys, &mut details);
            }
            match window.get("provider").and_then(Value::as_str) {
                Some(name) => format!("provider {name}"),
                None => "every provider".to_string(),
            }
        }
        "link" => {
            if let Some(toxic) = window.get("toxic") {
                pairs(toxic, &["type", "stream", "toxicity"], &mut details);
                if let Some(attributes) = toxic.get("attributes") {
                    let keys: Vec<&str> = attributes
                        .as_object()
                        .map(|o| o.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    pairs(attributes, &keys, &mut details);
                }
            }
            window
                .get("proxy")
                .and_then(Value::as_str)
                .unwrap_or("an unknown proxy")
                .to_string()
        }
        _ => "an unknown target".to_string(),
    };
    format!("{fault} on {target} ({})", details.join(", "))
}

/// Appends `key=value` for each of `keys` present in `object` (strings unquoted; maps
/// from the plan list their keys alphabetically).
fn pairs(object: &Value, keys: &[&str], out: &mut Vec<String>) {
    for key in keys {
        match object.get(*key) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => out.push(format!("{key}={text}")),
            Some(other) => out.push(format!("{key}={other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use chaos::journal::{Call, StepRef};
    use chaos::{Event, Record, Timeline};
    use rig_http::{Request, StatusCode};

    use super::*;

    /// What the capturing Grafana saw: path, Authorization header, JSON body.
    type Captured = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

    /// A Grafana stand-in on 127.0.0.1:0 that records every request and answers `status`.
    async fn grafana(status: StatusCode, answer: Value) -> (String, Captured) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let captured: Captured = Arc::default();
        let seen = captured.clone();
        tokio::spawn(rig_http::serve(
            listener,
            move |req: Request<rig_http::Incoming>| {
                let (seen, answer) = (seen.clone(), answer.clone());
                async move {
                    let path = req.uri().path().to_string();
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = rig_http::read_body(req.into_body(), 64 * 1024)
                        .await
                        .unwrap();
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    seen.lock().unwrap().push((path, auth, body));
                    Ok(rig_http::json(status, &answer))
                }
            },
            std::future::pending::<()>(),
        ));
        (url, captured)
    }

    /// The plan of a three-entry timeline, as the executor journals it.
    fn plan() -> Value {
        let timeline = Timeline::from_profile_str(
            r#"
            [[chaos]]
            at = "1s"
            for = "2s"
            kind = "partition"
            between = ["a", "b"]
            mode = "blackhole"

            [[chaos]]
            at = "2s"
            for = "5s"
            kind = "provider"
            name = "slow provider"
            latency_ms = 250
            error_rate = 0.1

            [[chaos]]
            at = "4s"
            for = "10s"
            kind = "link"
            proxy = "a_to_provider"
            toxic = "latency"
            latency_ms = 200
            jitter_ms = 50
            "#,
            Path::new("profile.toml"),
        )
        .unwrap();
        serde_json::to_value(timeline.expand(1).unwrap()).unwrap()
    }

    /// A record at `2026-03-01T10:00:SS.mmmZ` (`ms` after 10:00:00), about `entry`'s step.
    fn record(seq: u64, event: Event, ms: u64, step: Option<(usize, &str, &str)>) -> Record {
        Record {
            seq,
            event,
            elapsed_seconds: ms as f64 / 1000.0,
            wall_time: format!("2026-03-01T10:00:{:02}.{:03}Z", ms / 1000, ms % 1000),
            step: step.map(|(entry, action, kind)| StepRef {
                step: seq as usize,
                entry,
                action: action.to_string(),
                kind: kind.to_string(),
                at_seconds: ms as f64 / 1000.0,
                name: None,
            }),
            calls: vec![Call {
                target: "toxiproxy".into(),
                op: "reconcile".into(),
                via: "http".into(),
                status: Some(200),
                error: None,
            }],
            message: None,
            plan: (event == Event::Planned).then(plan),
        }
    }

    /// Epoch milliseconds of 2026-03-01T10:00:00Z.
    const T0_MS: i64 = 1_772_359_200_000;

    fn write_journal(name: &str, records: &[Record]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rig-grafana-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chaos.jsonl");
        let lines: Vec<String> = records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    /// A journal where the partition is stopped by its own step and the provider fault by
    /// the final heal: two annotations with the applied times, the tags, what each fault
    /// was, and the bearer token; the requested-but-failed link step gives none.
    #[tokio::test]
    async fn posts_one_region_per_fault_window_with_token() {
        let journal = write_journal(
            "healed",
            &[
                record(0, Event::Planned, 0, None),
                record(1, Event::Requested, 1_000, Some((0, "start", "partition"))),
                record(2, Event::Applied, 1_020, Some((0, "start", "partition"))),
                record(3, Event::Applied, 2_010, Some((1, "start", "provider"))),
                record(4, Event::Applied, 3_005, Some((0, "stop", "partition"))),
                record(5, Event::Requested, 4_000, Some((2, "start", "link"))),
                record(6, Event::Failed, 4_050, Some((2, "start", "link"))),
                record(7, Event::Healed, 4_300, None),
            ],
        );
        let (url, captured) = grafana(StatusCode::OK, json!({"id": 1})).await;
        let posted = annotate_chaos(&format!("{url}/"), Some("s3cret"), "run-42", &journal)
            .await
            .unwrap();
        assert_eq!(posted, 2);
        let seen = captured.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for (path, auth, _) in &seen {
            assert_eq!(path, "/api/annotations");
            assert_eq!(auth.as_deref(), Some("Bearer s3cret"));
        }
        assert_eq!(
            seen[0].2,
            json!({
                "time": T0_MS + 1_020,
                "timeEnd": T0_MS + 3_005,
                "tags": ["rig", "chaos", "run-42", "partition"],
                "text": "partition on a_to_b, b_to_a (chaos[0], mode=blackhole, direction=both)",
            })
        );
        assert_eq!(
            seen[1].2,
            json!({
                "time": T0_MS + 2_010,
                "timeEnd": T0_MS + 4_300,
                "tags": ["rig", "chaos", "run-42", "provider"],
                "text": "provider \"slow provider\" on every provider \
                         (chaos[1], error_rate=0.1, latency_ms=250)",
            })
        );
        std::fs::remove_dir_all(journal.parent().unwrap()).unwrap();
    }

    /// A run that died before healing: the link fault applied but never stopped ends at the
    /// journal's last record, and without a token no Authorization header is sent.
    #[tokio::test]
    async fn unhealed_fault_ends_at_the_last_record() {
        let journal = write_journal(
            "unhealed",
            &[
                record(0, Event::Planned, 0, None),
                record(1, Event::Applied, 4_001, Some((2, "start", "link"))),
                record(2, Event::Requested, 14_000, Some((2, "stop", "link"))),
                record(3, Event::Aborted, 14_250, None),
            ],
        );
        let (url, captured) = grafana(StatusCode::OK, json!({"id": 7})).await;
        let posted = annotate_chaos(&url, None, "run-43", &journal)
            .await
            .unwrap();
        assert_eq!(posted, 1);
        let seen = captured.lock().unwrap().clone();
        assert_eq!(seen[0].1, None, "no token, no Authorization header");
        let body = &seen[0].2;
        assert_eq!(body["time"], json!(T0_MS + 4_001));
        assert_eq!(body["timeEnd"], json!(T0_MS + 14_250));
        assert_eq!(body["tags"], json!(["rig", "chaos", "run-43", "link"]));
        assert_eq!(
            body["text"],
            "link on a_to_provider (chaos[2], type=latency, stream=downstream, toxicity=1.0, \
             jitter=50, latency=200)"
        );
        std::fs::remove_dir_all(journal.parent().unwrap()).unwrap();
    }

    /// Grafana refusing (401) is an error naming the URL, the status and Grafana's answer;
    /// an https URL is refused before anything is sent.
    #[tokio::test]
    async fn errors_name_the_url_and_the_answer() {
        let journal = write_journal(
            "refused",
            &[
                record(0, Event::Planned, 0, None),
                record(1, Event::Applied, 1_000, Some((0, "start", "partition"))),
                record(2, Event::Healed, 3_000, None),
            ],
        );
        let (url, captured) = grafana(
            StatusCode::UNAUTHORIZED,
            json!({"message": "invalid API key"}),
        )
        .await;
        let err = annotate_chaos(&url, Some("wrong"), "run-44", &journal)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{url}/api/annotations")), "{err}");
        assert!(
            err.contains("401") && err.contains("invalid API key"),
            "{err}"
        );
        assert!(
            !err.contains("wrong"),
            "the token stays out of messages: {err}"
        );
        assert_eq!(captured.lock().unwrap().len(), 1);
        let err = annotate_chaos("https://grafana.example", None, "run-44", &journal)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--grafana-url") && err.contains("fix"),
            "{err}"
        );
        std::fs::remove_dir_all(journal.parent().unwrap()).unwrap();
    }
}
