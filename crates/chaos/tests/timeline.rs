//! The executor runs a plan at its offsets on the load clock, journals every step, and heals
//! on every way out: normal end, failure, abort guard and Ctrl-C.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chaos::journal::Call;
use chaos::{
    AbortReason, Actuator, ChaosError, Desired, Event, Journal, LoadClock, Plan, ProviderAdmin,
    Targets, Timeline, ToxiproxyControl, execute, read_journal,
};
use common::{Toxi, echo_server, fake_provider, temp_path};
use rig_http::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

const PROFILE: &str = r#"
[[chaos]]
at = "10s"
for = "5s"
kind = "partition"
between = ["a", "b"]
mode = "refuse"

[[chaos]]
at = "12s"
for = "8s"
kind = "provider"
latency_ms = 300
"#;

fn plan(text: &str) -> Plan {
    Timeline::from_profile_str(text, Path::new("profile.toml"))
        .unwrap()
        .expand(7)
        .unwrap()
}

/// Records when each desired state was applied, on the test's (paused) clock.
struct Recorder {
    start: Instant,
    applied: Mutex<Vec<(Duration, Desired)>>,
    heals: AtomicUsize,
    fail_on_apply: Option<usize>,
}

impl Recorder {
    fn new(start: Instant, fail_on_apply: Option<usize>) -> Self {
        Self {
            start,
            applied: Mutex::new(Vec::new()),
            heals: AtomicUsize::new(0),
            fail_on_apply,
        }
    }

    fn offsets(&self) -> Vec<u64> {
        self.applied
            .lock()
            .unwrap()
            .iter()
            .map(|(at, _)| at.as_millis() as u64)
            .collect()
    }
}

impl Actuator for Recorder {
    fn provider_names(&self) -> Vec<String> {
        vec!["main".to_string()]
    }

    async fn preflight(&self, _plan: &Plan, _log: &mut Vec<Call>) -> Result<(), String> {
        Ok(())
    }

    async fn apply(&self, desired: &Desired, _log: &mut Vec<Call>) -> Result<(), String> {
        let mut applied = self.applied.lock().unwrap();
        applied.push((self.start.elapsed(), desired.clone()));
        if Some(applied.len()) == self.fail_on_apply {
            return Err("the target said no".to_string());
        }
        Ok(())
    }

    async fn heal(&self, _log: &mut Vec<Call>) -> Result<(), String> {
        self.heals.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn events(path: &Path) -> Vec<Event> {
    read_journal(path)
        .unwrap()
        .iter()
        .map(|r| r.event)
        .collect()
}

/// On paused time, every step is applied exactly at its offset from load start, the desired
/// state follows the windows, each step is journaled with its time, and the run ends healed.
#[tokio::test(start_paused = true)]
async fn steps_run_at_their_offsets() {
    let clock = LoadClock::starting_now();
    let path = temp_path("offsets");
    let journal = Journal::open(&path, clock).unwrap();
    let recorder = Recorder::new(clock.start, None);
    let plan = plan(PROFILE);
    let outcome = execute(&plan, &recorder, &journal, std::future::pending())
        .await
        .unwrap();
    assert!(outcome.completed);
    assert_eq!(outcome.steps_applied, 4);
    assert_eq!(recorder.offsets(), vec![10_000, 12_000, 15_000, 20_000]);
    let applied = recorder.applied.lock().unwrap();
    assert!(!applied[0].1.proxies["a_to_b"].enabled);
    assert_eq!(applied[1].1.providers["main"].latency_ms, Some(300));
    assert!(
        applied[2].1.proxies["a_to_b"].enabled,
        "the partition ended at 15s"
    );
    assert!(applied[3].1.providers["main"].is_clear());
    assert_eq!(recorder.heals.load(Ordering::SeqCst), 1);
    let records = read_journal(&path).unwrap();
    let kinds: Vec<Event> = records.iter().map(|r| r.event).collect();
    use Event::*;
    assert_eq!(
        kinds,
        vec![
            Planned, Requested, Applied, Requested, Applied, Requested, Applied, Requested,
            Applied, Healed
        ]
    );
    let applied_at: Vec<f64> = records
        .iter()
        .filter(|r| r.event == Applied)
        .map(|r| r.elapsed_seconds)
        .collect();
    assert_eq!(applied_at, vec![10.0, 12.0, 15.0, 20.0]);
    assert!(records.iter().all(|r| r.wall_time.ends_with('Z')));
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    let _ = std::fs::remove_file(&path);
}

/// An abort guard firing mid-run stops the timeline, is journaled, and heals.
#[tokio::test(start_paused = true)]
async fn abort_guard_heals() {
    let clock = LoadClock::starting_now();
    let path = temp_path("abort");
    let journal = Journal::open(&path, clock).unwrap();
    let recorder = Recorder::new(clock.start, None);
    let guard = async {
        tokio::time::sleep(Duration::from_secs(13)).await;
        AbortReason("abort guard: error rate above 50%".to_string())
    };
    let outcome = execute(&plan(PROFILE), &recorder, &journal, guard)
        .await
        .unwrap();
    assert!(!outcome.completed);
    assert_eq!(
        outcome.aborted.unwrap().0,
        "abort guard: error rate above 50%"
    );
    assert_eq!(recorder.offsets(), vec![10_000, 12_000]);
    assert_eq!(recorder.heals.load(Ordering::SeqCst), 1);
    let records = read_journal(&path).unwrap();
    let aborted = records.iter().find(|r| r.event == Event::Aborted).unwrap();
    assert_eq!(aborted.elapsed_seconds, 13.0);
    assert_eq!(records.last().unwrap().event, Event::Healed);
    let _ = std::fs::remove_file(&path);
}

/// A step that cannot be applied is journaled as failed, the run heals, and the error says
/// which step.
#[tokio::test(start_paused = true)]
async fn failed_step_heals() {
    let clock = LoadClock::starting_now();
    let path = temp_path("fail");
    let journal = Journal::open(&path, clock).unwrap();
    let recorder = Recorder::new(clock.start, Some(2));
    let err = execute(&plan(PROFILE), &recorder, &journal, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChaosError::StepFailed { at_seconds, .. } if at_seconds == 12.0),
        "{err}"
    );
    assert_eq!(recorder.heals.load(Ordering::SeqCst), 1);
    let tail: Vec<Event> = events(&path).into_iter().rev().take(2).collect();
    assert_eq!(tail, vec![Event::Healed, Event::Failed]);
    let _ = std::fs::remove_file(&path);
}

/// Against real targets (the embedded Toxiproxy and a provider admin API over HTTP): the
/// faults are really in place after `applied`, and a Ctrl-C (the cancel future) heals both:
/// `/reset`, provider faults cleared, and read back clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_heals_real_targets() {
    let toxi = Toxi::start(1).await;
    let echo = echo_server().await;
    toxi.proxy("a_to_b", echo).await;
    toxi.proxy("b_to_a", echo).await;
    let provider = fake_provider().await;
    let timeline = r#"
        [[chaos]]
        at = "0s"
        for = "1h"
        kind = "partition"
        between = ["a", "b"]
        [[chaos]]
        at = "0s"
        for = "1h"
        kind = "provider"
        outage = true
        [[chaos]]
        at = "0s"
        for = "1h"
        kind = "link"
        proxy = "b_to_a"
        toxic = "reset_peer"
        stream = "downstream"
        timeout_ms = 50
    "#;
    let targets = Targets {
        toxiproxy: Some(ToxiproxyControl::new(&toxi.url()).unwrap()),
        providers: BTreeMap::from([(
            "main".to_string(),
            ProviderAdmin::new("main", &provider.url).unwrap(),
        )]),
        processes: None,
        ..Default::default()
    };
    let path = temp_path("interrupt");
    let mut journal = Journal::open(&path, LoadClock::starting_now()).unwrap();
    let mut records = journal.observe();
    let (ctrl_c, pressed) = tokio::sync::oneshot::channel::<()>();
    let plan = plan(timeline);
    let run = execute(&plan, &targets, &journal, async move {
        let _ = pressed.await;
        AbortReason("interrupted (Ctrl-C)".to_string())
    });
    let watch = async move {
        while let Some(record) = records.recv().await {
            if record.event == Event::Applied {
                break;
            }
        }
        let (_, proxies) = toxi.call(Method::GET, "/proxies", None).await;
        // Each named `rig.<run>.<type>_<stream>`: the rig's, and this run's.
        let names = |p: &str| -> Vec<String> {
            proxies[p]["toxics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let name = t["name"].as_str().unwrap();
                    assert!(name.starts_with("rig."), "{name}");
                    name.rsplit('.').next().unwrap().to_string()
                })
                .collect()
        };
        assert_eq!(
            names("a_to_b"),
            vec!["timeout_upstream", "timeout_downstream"]
        );
        assert_eq!(
            names("b_to_a"),
            vec![
                "timeout_upstream",
                "timeout_downstream",
                "reset_peer_downstream"
            ]
        );
        assert_eq!(provider.faults.lock().unwrap()["outage"], true);
        let _ = ctrl_c.send(());
        (toxi, provider)
    };
    let (outcome, (toxi, provider)) = tokio::join!(run, watch);
    let outcome = outcome.unwrap();
    assert_eq!(outcome.aborted.unwrap().0, "interrupted (Ctrl-C)");
    let (_, proxies) = toxi.call(Method::GET, "/proxies", None).await;
    for name in ["a_to_b", "b_to_a"] {
        assert_eq!(proxies[name]["toxics"], json!([]), "{name}");
        assert_eq!(proxies[name]["enabled"], true, "{name}");
    }
    assert_eq!(*provider.faults.lock().unwrap(), json!({}));
    let records = read_journal(&path).unwrap();
    let healed = records.last().unwrap();
    assert_eq!(healed.event, Event::Healed);
    assert!(healed.calls.iter().any(|c| c.op == "reset"));
    assert!(
        healed
            .calls
            .iter()
            .any(|c| c.op == "clear_faults" && c.status == Some(200))
    );
    assert!(records.iter().any(|r| r.event == Event::Aborted));
    let applied = records.iter().find(|r| r.event == Event::Applied).unwrap();
    let statuses: Vec<Option<u16>> = applied
        .calls
        .iter()
        .filter(|c| c.via == "http")
        .map(|c| c.status)
        .collect();
    assert!(statuses.contains(&Some(200)), "{statuses:?}");
    let plan_json: &Value = records[0].plan.as_ref().unwrap();
    assert_eq!(plan_json["seed"], 7);
    let _ = std::fs::remove_file(&path);
}

/// A timeline naming a proxy the Toxiproxy does not have fails before changing anything,
/// with a message naming the proxy and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_proxy_fails_preflight() {
    let toxi = Toxi::start(1).await;
    let targets = Targets {
        toxiproxy: Some(ToxiproxyControl::new(&toxi.url()).unwrap()),
        providers: BTreeMap::new(),
        processes: None,
        ..Default::default()
    };
    let path = temp_path("preflight");
    let journal = Journal::open(&path, LoadClock::starting_now()).unwrap();
    let plan = plan(
        "[[chaos]]\nat=\"0s\"\nfor=\"1s\"\nkind=\"link\"\nproxy=\"a_to_provider\"\ntoxic=\"latency\"\nlatency_ms=5\n",
    );
    let err = execute(&plan, &targets, &journal, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("a_to_provider"), "{err}");
    assert_eq!(
        events(&path),
        vec![Event::Planned, Event::Failed, Event::Healed]
    );
    let _ = std::fs::remove_file(&path);
}

/// What a killed run left is healed before the first step, and said: a rig-made toxic of
/// another run on a proxy the timeline uses, a disabled proxy it uses and a provider fault
/// are removed and journaled (`healed`, naming each); a toxic someone else made, and a
/// rig-made one on a proxy this timeline does not touch (another timeline may own it), are
/// left alone. With `refuse_leftovers` no step runs: the run fails, naming them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_killed_run_are_healed_first() {
    let toxi = Toxi::start(1).await;
    let echo = echo_server().await;
    for proxy in ["a_to_b", "b_to_a", "other"] {
        toxi.proxy(proxy, echo).await;
    }
    let left = |proxy: &str, name: &str| {
        let toxi = &toxi;
        let (proxy, name) = (proxy.to_string(), name.to_string());
        async move {
            toxi.add_toxic(
                &proxy,
                json!({"name": name, "type": "timeout", "stream": "upstream", "attributes": {"timeout": 0}}),
            )
            .await;
        }
    };
    let provider = fake_provider().await;
    // The first step is far off: the run is stopped once the leftovers are seen to.
    let timeline = "[[chaos]]\nat=\"1h\"\nfor=\"1s\"\nkind=\"partition\"\nbetween=[\"a\",\"b\"]\nmode=\"blackhole\"\n";
    for refuse in [true, false] {
        left("a_to_b", "rig.killed-run.timeout_upstream").await;
        left("b_to_a", "someone_elses").await;
        left("other", "rig.killed-run.timeout_upstream").await;
        toxi.call(
            Method::POST,
            "/proxies/b_to_a",
            Some(json!({"enabled": false})),
        )
        .await;
        let (status, _) = provider_fault(&provider.url).await;
        assert!(status.is_success());
        let targets = Targets {
            toxiproxy: Some(
                ToxiproxyControl::new(&toxi.url())
                    .unwrap()
                    .for_run("this-run"),
            ),
            providers: BTreeMap::from([(
                "main".to_string(),
                ProviderAdmin::new("main", &provider.url).unwrap(),
            )]),
            refuse_leftovers: refuse,
            ..Default::default()
        };
        let path = temp_path("leftovers");
        let mut journal = Journal::open(&path, LoadClock::starting_now()).unwrap();
        let mut records = journal.observe();
        let plan = plan(timeline);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let cancel = async move {
            let _ = stopped.await;
            AbortReason("checked".to_string())
        };
        // Watch the state right after the leftovers are handled (before the heal at the end).
        let watch = async {
            let mut seen = None;
            while let Some(record) = records.recv().await {
                if matches!(record.event, Event::Healed | Event::Failed) {
                    let (_, proxies) = toxi.call(Method::GET, "/proxies", None).await;
                    seen = Some((record, proxies));
                    break;
                }
            }
            let _ = stop.send(());
            seen
        };
        let (outcome, seen) = tokio::join!(execute(&plan, &targets, &journal, cancel), watch);
        let (record, proxies) = seen.expect("a record about the leftovers");
        let message = record.message.clone().unwrap_or_default();
        let toxic_names = |p: &str| -> Vec<String> {
            proxies[p]["toxics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert!(
            message.contains("rig.killed-run.timeout_upstream on a_to_b"),
            "{message}"
        );
        assert!(message.contains("proxy b_to_a disabled"), "{message}");
        assert!(message.contains("on provider main"), "{message}");
        assert!(
            !message.contains("someone_elses") && !message.contains("on other"),
            "{message}"
        );
        if refuse {
            assert_eq!(record.event, Event::Failed);
            let err = outcome.unwrap_err();
            assert!(err.to_string().contains("earlier run left"), "{err}");
        } else {
            assert_eq!(record.event, Event::Healed);
            assert!(
                message.starts_with("healed the faults an earlier run left"),
                "{message}"
            );
            outcome.unwrap();
            assert!(toxic_names("a_to_b").is_empty(), "{proxies}");
            assert_eq!(proxies["b_to_a"]["enabled"], true);
            assert_eq!(toxic_names("b_to_a"), vec!["someone_elses"]);
            assert_eq!(
                toxic_names("other"),
                vec!["rig.killed-run.timeout_upstream"]
            );
        }
        drop(journal);
        let _ = std::fs::remove_file(&path);
        // The end-of-run heal (/reset) cleared the rest: start the next round afresh.
        toxi.call(Method::POST, "/reset", None).await;
    }
}

/// Sets a provider fault on the fake provider, as an earlier run would have.
async fn provider_fault(url: &str) -> (rig_http::StatusCode, bytes::Bytes) {
    let http = rig_http::HttpClient::new(Duration::from_secs(2), 1);
    let response = http
        .send(
            Method::POST,
            &format!("{url}/admin/faults"),
            &[("content-type", "application/json")],
            Some(bytes::Bytes::from_static(br#"{"outage": true}"#)),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    (response.status, response.body)
}
