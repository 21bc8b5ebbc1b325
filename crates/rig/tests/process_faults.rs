//! Process faults in `rig run`: the provider and the regions are child processes, a `crash`
//! is a real SIGKILL and a restart, a `pause` a real SIGSTOP and SIGCONT; the system
//! recovers from its stores alone and passes; no child outlives the run, even when the rig
//! itself is killed while a child is frozen.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{KillOnDrop, profile, rig_within, text};
use serde_json::Value;
use target_system::testkit::TempDir;

/// The crash-recovery profile cut to seconds: region a killed for 2 s and again with a
/// restart at once, the provider killed for 1 s, region b frozen for 2 s.
const SHORT_CRASHES: [&str; 4] = [
    "--set",
    r#"workload.phases=[{kind = "hold", rate = 30, for = "12s"}]"#,
    "--set",
    r#"chaos=[{name = "a down", at = "2s", for = "2s", kind = "crash", target = "a"}, {name = "provider down", at = "5s", for = "1s", kind = "crash", target = "provider"}, {name = "b frozen", at = "7s", for = "2s", kind = "pause", target = "b"}, {name = "a again", at = "10s", kind = "crash", target = "a"}]"#,
];

/// The process actions the journal recorded, per target (`a`, `b`, `provider`): the first
/// word of each (`SIGKILL`, `start`, `SIGSTOP`, `SIGCONT`).
fn process_actions(journal: &Path) -> BTreeMap<String, Vec<String>> {
    let mut actions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Not written yet is empty; a line being written is left for the next read.
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    for line in text.lines() {
        let Ok(record) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        for call in record["calls"].as_array().into_iter().flatten() {
            if let Some(target) = call["target"]
                .as_str()
                .and_then(|t| t.strip_prefix("process:"))
            {
                let op = call["op"].as_str().unwrap_or_default();
                actions
                    .entry(target.to_string())
                    .or_default()
                    .push(op.split_whitespace().next().unwrap_or_default().to_string());
            }
        }
    }
    actions
}

/// The live processes started with `--parent-pid PARENT` (zombies are not alive).
fn children_of(parent: u32) -> Vec<u32> {
    let marker = format!("--parent-pid\0{parent}\0");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(&marker) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The state is the first field after the parenthesised command name.
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        if matches!(state, Some(Some(s)) if s != 'Z' && s != 'X') {
            found.push(pid);
        }
    }
    found
}

fn run_crashes(out: &Path, store: Option<&str>) -> std::process::Output {
    let mut args = vec!["run", profile("crash-recovery.toml").leak() as &str];
    args.extend(["--out", out.to_str().unwrap()]);
    if let Some(store) = store {
        args.extend(["--store", store]);
    }
    args.extend(SHORT_CRASHES);
    rig_within(&args, Duration::from_secs(240))
}

fn assert_recovered(out: &Path, output: &std::process::Output) {
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(all.contains("overall: PASS"), "{all}");
    let actions = process_actions(&out.join("chaos.jsonl"));
    let of = |name: &str| actions.get(name).cloned().unwrap_or_default();
    assert_eq!(
        of("a"),
        ["SIGKILL", "start", "SIGKILL", "start"],
        "region a killed and started twice: {actions:?}"
    );
    assert_eq!(of("provider"), ["SIGKILL", "start"], "{actions:?}");
    assert_eq!(of("b"), ["SIGSTOP", "SIGCONT"], "{actions:?}");
    for log in ["provider.log", "region-a.log", "region-b.log"] {
        assert!(out.join("logs").join(log).exists(), "logs/{log}");
    }
}

/// Region a killed twice (once restarted at once), the provider killed once and region b
/// frozen, under payment traffic on SQLite: each kill and restart is journaled, the
/// restarted processes recover from their stores, and every invariant passes.
#[test]
fn crashed_and_frozen_processes_recover_and_pass() {
    let dir = TempDir::new("crash-recovery");
    let out = dir.path().join("run");
    let output = run_crashes(&out, None);
    assert_recovered(&out, &output);
}

/// The same on PostgreSQL stores: the restarted processes find their schemas again.
#[test]
fn crashed_and_frozen_processes_recover_and_pass_on_postgres() {
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("CI=true but TEST_DATABASE_URL is not set");
        }
        eprintln!("skipping: TEST_DATABASE_URL is not set");
        return;
    };
    let dir = TempDir::new("crash-recovery-pg");
    // The run's schemas are named after its directory: a name no other test uses.
    let out = dir.path().join("crash-recovery-pg");
    let output = run_crashes(&out, Some(&url));
    assert_recovered(&out, &output);
}

/// Runs the short crash timeline with `defect` on: exit 1, and the invariants that failed
/// with the orders their dossiers name, each checked to be an order a customer placed and
/// was told a final outcome of (confirmed, for a lost event).
fn crashes_with_defect(defect: &str) -> BTreeMap<String, Vec<String>> {
    let dir = TempDir::new(&format!("crash-{defect}"));
    let out = dir.path().join("run");
    let mut args = vec![
        "run",
        profile("crash-recovery.toml").leak() as &str,
        "--out",
        out.to_str().unwrap(),
        "--defect",
        defect,
        // What the defect loses never settles: a short drain.
        "--set",
        r#"run.drain="15s""#,
    ];
    args.extend(SHORT_CRASHES);
    let output = rig_within(&args, Duration::from_secs(240));
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{all}");
    let verdict: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("verdict.json")).unwrap()).unwrap();
    // Dossiers with crash windows (their target named) and timelines match the schema.
    common::assert_verdict_schema(&verdict);
    let mut failed = BTreeMap::new();
    for v in verdict["verdicts"].as_array().unwrap() {
        if v["status"] != "fail" {
            continue;
        }
        let named: Vec<String> = v["dossiers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["order_id"].as_str().map(str::to_string))
            .collect();
        failed.insert(v["invariant"].as_str().unwrap().to_string(), named);
    }
    // Each order the defect's invariant names is one a customer placed and was told about.
    let caught = if defect == "event-after-commit" {
        "outbox-effectively-once"
    } else {
        "client-agrees"
    };
    let named = failed.get(caught).cloned().unwrap_or_default();
    assert!(!named.is_empty(), "{caught} names an order: {all}");
    let history = out.join("history.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for order in &named {
        let told: Option<String> = runtime.block_on(async {
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .connect(&format!("sqlite://{}?mode=ro", history.display()))
                .await
                .unwrap();
            let told =
                sqlx::query_scalar("SELECT outcome FROM history_arrivals WHERE order_id = $1")
                    .bind(order)
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
            pool.close().await;
            told
        });
        // A lost event belongs to a confirmed order; a lost answer to any final one.
        let told_final = if defect == "event-after-commit" {
            told.as_deref() == Some("confirmed")
        } else {
            matches!(told.as_deref(), Some("confirmed" | "failed"))
        };
        assert!(told_final, "{order}: the customer was told {told:?}");
    }
    failed
}

/// With `--defect event-after-commit` the confirmation event is written after the state
/// change, by a publisher that flushes once a second: each kill of region a loses the
/// events it held, and outbox-effectively-once (alone) fails, naming orders customers were
/// told are confirmed.
#[test]
fn event_after_commit_loses_events_to_a_crash() {
    let failed = crashes_with_defect("event-after-commit");
    assert_eq!(
        failed.keys().collect::<Vec<_>>(),
        ["outbox-effectively-once"],
        "{failed:?}"
    );
}

/// With `--defect reply-before-commit` the owner answers before it writes the payment's
/// outcome (a write-behind flushed once a second): a kill of region a loses outcomes its
/// customers were told (confirmed or failed), and client-agrees fails naming them.
#[test]
fn reply_before_commit_loses_answers_to_a_crash() {
    let failed = crashes_with_defect("reply-before-commit");
    assert!(failed.contains_key("client-agrees"), "{failed:?}");
}

/// A timeline naming a process the run does not have is refused before anything starts,
/// naming the entry, the field and the processes there are.
#[test]
fn an_unknown_process_target_is_refused() {
    let dir = TempDir::new("crash-unknown");
    let out = dir.path().join("run");
    let output = rig_within(
        &[
            "run",
            &profile("quickstart.toml"),
            "--out",
            out.to_str().unwrap(),
            "--set",
            r#"chaos=[{at = "1s", for = "1s", kind = "crash", target = "c"}]"#,
        ],
        Duration::from_secs(30),
    );
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(all.contains("chaos[0].target"), "{all}");
    assert!(all.contains(r#""a", "b", "provider""#), "{all}");
    assert!(!out.exists(), "nothing is created for bad input");
}

/// `rig run` killed with SIGKILL while region b is frozen: no child process survives it
/// (the frozen one included), and the run directory's stores reopen and verify.
#[test]
fn a_killed_run_leaves_no_child_and_its_stores_verify() {
    let dir = TempDir::new("crash-sigkill");
    let out = dir.path().join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args([
            "run",
            &profile("crash-recovery.toml"),
            "--out",
            out.to_str().unwrap(),
            "--set",
            r#"workload.phases=[{kind = "hold", rate = 20, for = "60s"}]"#,
            "--set",
            r#"chaos=[{name = "b frozen", at = "1s", for = "50s", kind = "pause", target = "b"}]"#,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rig starts");
    let rig_pid = child.id();
    let mut guard = KillOnDrop(Some(child));
    // Wait (bounded) until the journal shows region b frozen.
    let journal = out.join("chaos.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !process_actions(&journal)
        .get("b")
        .is_some_and(|ops| ops.contains(&"SIGSTOP".to_string()))
    {
        assert!(Instant::now() < deadline, "region b was never frozen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let children = children_of(rig_pid);
    assert_eq!(children.len(), 3, "provider, a and b run: {children:?}");
    let mut rig = guard.0.take().unwrap();
    rig.kill().expect("SIGKILL to rig run");
    rig.wait().unwrap();
    // The kernel kills each child with its parent; wait (bounded) until none is alive.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !children_of(rig_pid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "children outlived the run: {:?}",
            children_of(rig_pid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let verified = rig_within(&["verify", out.to_str().unwrap()], Duration::from_secs(120));
    let all = format!("{}{}", text(&verified.stdout), text(&verified.stderr));
    assert!(
        // 3: a partial verdict (the run was killed), judged from the records it left.
        matches!(verified.status.code(), Some(0 | 1 | 3)),
        "a verdict from the killed run's stores: {all}"
    );
    assert!(all.contains("overall:"), "{all}");
    assert!(all.contains("incomplete run"), "{all}");
}

/// Kills the process whose pid a file names, when the test ends (a server an `exec` heal
/// started in the background belongs to no one else).
struct KillPidFile(std::path::PathBuf);

impl Drop for KillPidFile {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A free loopback port below the ephemeral range (32768 and up on Linux), so no outgoing
/// connection takes it as its source port while the outside system is down; tests in
/// other processes start elsewhere (the pid picks the first candidate).
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 1_000) as u16 * 10;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `kind = "exec"` against a system the rig did not start: a `rig serve` started outside
/// the run is killed by the window's `run` command and started again by its `heal`
/// command; both exit statuses and outputs are journaled, the run comes to a verdict, and
/// the restarted system answers on its ports with its stores.
#[test]
fn exec_commands_crash_and_restart_an_outside_system() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("exec-outside");
    let stores = format!("sqlite://{}", dir.path().join("stores").display());
    let (p, a, b, s) = (free_port(), free_port(), free_port(), free_port());
    let serve_args = format!(
        "serve --store {stores} --listen-provider 127.0.0.1:{p} --listen-a 127.0.0.1:{a} --listen-b 127.0.0.1:{b} --listen-stripe 127.0.0.1:{s} --run-id outside"
    );
    let mut first = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(serve_args.split(' '))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rig serve starts");
    let stdout = first.stdout.take().unwrap();
    let first_pid = first.id();
    let mut first = KillOnDrop(Some(first));
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.contains("Ctrl-C stops") {
            break;
        }
    }
    let pid_file = dir.path().join("restarted.pid");
    let _restarted = KillPidFile(pid_file.clone());
    let log = dir.path().join("restarted.log");
    let heal = format!(
        "exec {} {serve_args} > {} 2>&1 & echo $! > {}",
        env!("CARGO_BIN_EXE_rig"),
        log.display(),
        pid_file.display()
    );
    let chaos = format!(
        r#"chaos=[{{name = "system killed", at = "2s", for = "2s", kind = "exec", run = ["kill", "-KILL", "{first_pid}"], heal = ["sh", "-c", "{heal}"], timeout = "10s"}}]"#
    );
    let out = dir.path().join("run");
    let regions = format!("http://127.0.0.1:{a},http://127.0.0.1:{b}");
    let provider = format!("http://127.0.0.1:{p}");
    let output = rig_within(
        &[
            "run",
            &profile("quickstart.toml"),
            "--out",
            out.to_str().unwrap(),
            "--regions",
            &regions,
            "--provider",
            &provider,
            "--store",
            &stores,
            "--set",
            r#"workload.phases=[{kind = "hold", rate = 20, for = "8s"}]"#,
            "--set",
            &chaos,
        ],
        Duration::from_secs(240),
    );
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "a verdict, the chaos applied and healed: {all}"
    );
    // The first system died of the window's SIGKILL.
    let status = first.0.take().unwrap().wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );
    let journal = std::fs::read_to_string(out.join("chaos.jsonl")).unwrap();
    let ops: Vec<String> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|r| r["calls"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["target"] == "exec:chaos[0]")
        .map(|c| c["op"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ops.len(), 2, "one run, one heal: {ops:?}");
    assert!(
        ops[0].starts_with(&format!("run kill -KILL {first_pid}: exit status: 0")),
        "{ops:?}"
    );
    assert!(
        ops[1].starts_with("heal sh -c") && ops[1].contains("exit status: 0"),
        "{ops:?}"
    );
    // The restarted system answers (bounded wait: it opens its stores first).
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::try_http_get(&format!("127.0.0.1:{a}"), "/healthz").is_none() {
        assert!(
            Instant::now() < deadline,
            "the restarted system never answered: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
