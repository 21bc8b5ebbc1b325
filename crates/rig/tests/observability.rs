//! Metrics, METRICS.md and the dashboards kept in step with a live run: a shortened
//! quickstart serves `/metrics`; its exposition must pass `promtool check metrics`, export
//! every name METRICS.md lists (and nothing unlisted), label every series with the run id,
//! and export every metric the dashboards query. A second test has a real Prometheus scrape
//! a run and answers the dashboards' key queries from its HTTP API.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use target_system::testkit::TempDir;

mod common;

use common::{KillOnDrop, http_get, try_http_get};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A quickstart cut to seconds, with a proxy fault and a provider fault.
const SHORT_QUICKSTART: [&str; 4] = [
    "--set",
    r#"workload.phases=[{kind = "hold", rate = 40, for = "6s"}]"#,
    "--set",
    r#"chaos=[{name = "spike", at = "1s", for = "2s", kind = "provider", latency_ms = 1500}, {name = "partition", at = "3s", for = "2s", kind = "partition", between = ["a", "b"], mode = "blackhole"}]"#,
];

/// A tool the test needs: its path, or a printed reason to skip (a failure under CI=true).
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let reason = format!("{name} is not installed (Debian package `prometheus`)");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{reason}; CI must have it");
        }
        eprintln!("skipping: {reason}");
    }
    found
}

/// `rig run` as a child whose stderr lines arrive on a channel (and are kept for messages).
struct LiveRun {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: String,
}

impl LiveRun {
    fn start(out: &Path, metrics_addr: &str, linger: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rig"))
            .arg("run")
            .arg(repo().join("profiles/quickstart.toml"))
            .arg("--out")
            .arg(out)
            .args(["--metrics-addr", metrics_addr, "--metrics-linger", linger])
            .args(SHORT_QUICKSTART)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rig runs");
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: String::new(),
        }
    }

    /// The first stderr line containing `needle` (panics with everything seen if the run
    /// ends or two minutes pass first).
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no {needle:?} from rig run; its stderr:\n{}", self.seen),
            }
        }
    }

    /// Ctrl-C (ends the linger), then the exit code and stdout.
    fn interrupt(mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        let status = self.child.wait().expect("rig exits");
        (status.code(), stdout)
    }

    /// Waits for the exit (the linger ends by itself).
    fn finish(mut self) -> (Option<i32>, String) {
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        for line in self.lines.iter() {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        let status = self.child.wait().expect("rig exits");
        (status.code(), format!("{stdout}{}", self.seen))
    }
}

/// Families in an exposition: name -> type.
fn families(exposition: &str) -> Vec<(String, String)> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// Every `rig_...` identifier in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("rig_") {
        let start = i + pos;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_')
        };
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            out.insert(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

/// Every PromQL string in a dashboard: panel targets' `expr`, annotation and templating
/// queries (string or `{query: ...}`).
fn dashboard_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) => out.push(s.clone()),
                    ("definition", Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = repo().join("dashboards");
    let mut out: Vec<(PathBuf, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Arrivals started, from the run's summary.json.
fn started_in_summary(run_dir: &Path) -> f64 {
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    let started = summary["load"]["totals"]["started"]
        .as_f64()
        .expect("started");
    assert!(started > 100.0, "the run sent load: {summary}");
    started
}

/// The names METRICS.md's table lists.
fn documented() -> BTreeSet<String> {
    std::fs::read_to_string(repo().join("METRICS.md"))
        .expect("METRICS.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

/// The histogram base name of a `_bucket`/`_sum`/`_count` series, else the name.
fn base_name(name: &str, histograms: &BTreeSet<String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && histograms.contains(base)
        {
            return base.to_string();
        }
    }
    name.to_string()
}

#[test]
fn live_run_exports_what_metrics_md_and_the_dashboards_name() {
    let dir = TempDir::new("observability-live");
    let out = dir.path().join("run");
    let mut run = LiveRun::start(&out, "127.0.0.1:0", "2m");
    let line = run.wait_for("metrics at http://");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.strip_suffix("/metrics"))
        .expect("the address")
        .to_string();
    run.wait_for("serving the final metrics");
    let exposition = http_get(&addr, "/metrics");
    let (code, stdout) = run.interrupt();
    assert_eq!(code, Some(0), "{stdout}");
    let run_id = "run";

    // Every documented name is exported, and nothing undocumented.
    let fams = families(&exposition);
    let exported: BTreeSet<String> = fams.iter().map(|(n, _)| n.clone()).collect();
    let histograms: BTreeSet<String> = fams
        .iter()
        .filter(|(_, t)| t == "histogram")
        .map(|(n, _)| n.clone())
        .collect();
    let listed = documented();
    assert!(listed.len() >= 25, "METRICS.md lists {listed:?}");
    let missing: Vec<_> = listed.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "documented but not exported: {missing:?}"
    );
    let unlisted: Vec<_> = exported.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "exported but not in METRICS.md: {unlisted:?}"
    );
    println!(
        "a shortened quickstart exports {} metric families",
        exported.len()
    );
    let series = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    println!("and {series} series");

    // Every series carries this run's id.
    for line in exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(
            line.contains(&format!("run_id=\"{run_id}\"")),
            "a series without run_id={run_id}: {line}"
        );
    }
    // The run's faults show up in the fault gauge (both healed by now).
    assert!(
        exposition.contains("rig_chaos_fault_active{fault=\"provider_latency_ms\"")
            && exposition.contains("target=\"provider\""),
        "{exposition}"
    );
    assert!(exposition.contains("fault=\"timeout\""), "{exposition}");
    // The live counters end where the run's report does.
    let started: f64 = exposition
        .lines()
        .find(|l| l.starts_with("rig_loadgen_arrivals_started_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("arrivals started");
    assert_eq!(started, started_in_summary(&out));

    // promtool's lint is clean.
    if let Some(promtool) = tool("promtool") {
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(exposition.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // Every metric a dashboard queries is exported.
    let boards = dashboards();
    assert!(boards.len() >= 3, "dashboards: {boards:?}");
    let mut uids = BTreeSet::new();
    for (path, board) in &boards {
        assert!(
            board.get("id").is_none_or(Value::is_null),
            "{}: id must be absent",
            path.display()
        );
        let uid = board["uid"].as_str().expect("a fixed uid").to_string();
        assert!(uids.insert(uid.clone()), "uid {uid} used twice");
        let mut queries = Vec::new();
        dashboard_queries(board, &mut queries);
        let names: BTreeSet<String> = queries
            .iter()
            .flat_map(|q| metric_names(q))
            .map(|n| base_name(&n, &histograms))
            .collect();
        assert!(
            !names.is_empty(),
            "{}: no rig_ metric queried",
            path.display()
        );
        let unknown: Vec<_> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{} queries metrics the code does not export: {unknown:?}",
            path.display()
        );
    }
}

#[test]
fn prometheus_scrapes_a_run_and_answers_the_dashboard_queries() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let free_port = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (rig_port, prom_port) = (free_port(), free_port());
    let dir = TempDir::new("observability-prometheus");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: rig\n    static_configs:\n      - targets: ['127.0.0.1:{rig_port}']\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let prom_addr = format!("127.0.0.1:{prom_port}");
    let server = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prometheus starts");
    let guard = KillOnDrop(Some(server));
    // Start the run only once Prometheus scrapes: `up` has a sample after its first
    // (failed, nothing listens yet) scrape of the rig target.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready =
            try_http_get(&prom_addr, "/api/v1/query?query=up").is_some_and(|(status, body)| {
                status.contains(" 200 ") && body.contains("\"job\":\"rig\"")
            });
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not start scraping within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = dir.path().join("run");
    let run = LiveRun::start(&out, &format!("127.0.0.1:{rig_port}"), "4s");
    let (code, all) = run.finish();
    assert_eq!(code, Some(0), "{all}");

    // The key series of every dashboard have data for this run.
    let query = |promql: &str| -> Value {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let body = http_get(&prom_addr, &format!("/api/v1/query?query={encoded}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{promql}: {e}: {body}"))
    };
    let series_of = |promql: &str| -> Vec<Value> {
        let answer = query(promql);
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    for promql in [
        r#"rig_run_info{run_id="run",profile="quickstart"}"#,
        r#"max_over_time(rig_loadgen_target_rate_per_second{run_id="run"}[5m])"#,
        r#"sum by (outcome) (rig_loadgen_arrivals_total{run_id="run"})"#,
        r#"histogram_quantile(0.99, sum by (le) (rig_loadgen_latency_seconds_bucket{run_id="run"}))"#,
        r#"sum by (decision) (rig_region_admission_decisions_total{run_id="run"})"#,
        r#"max_over_time(rig_chaos_fault_active{run_id="run"}[5m])"#,
        r#"rig_region_oldest_pending_age_seconds{run_id="run"}"#,
        r#"sum(rig_provider_requests_total{run_id="run"})"#,
    ] {
        let series = series_of(promql);
        assert!(!series.is_empty(), "no data for {promql}");
    }
    let total: f64 = series_of(r#"sum(rig_loadgen_arrivals_total{run_id="run"})"#)[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert_eq!(
        total,
        started_in_summary(&out),
        "Prometheus saw every arrival the run reports"
    );
    let faults = series_of(r#"max_over_time(rig_chaos_fault_active{run_id="run"}[5m]) == 1"#);
    assert!(
        faults.len() >= 2,
        "both faults were seen active at some scrape: {faults:?}"
    );
    drop(guard);
}
