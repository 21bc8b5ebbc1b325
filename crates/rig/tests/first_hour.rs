//! What a new user hits in the first hour, through the binary: an earlier run is never
//! changed by a later one, a timeline that cannot run is refused before anything starts,
//! signals end a run the way Ctrl-C does, and a killed run is recognisable afterwards.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{rig_within, text};
use evidence::RegionId;
use serde_json::{Value, json};
use target_system::testkit::TempDir;
use target_system::testkit::harness::{Harness, order_owned_by, quiet_config};

fn quickstart() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../profiles/quickstart.toml")
        .display()
        .to_string()
}

/// Every file under `dir` (recursively) with a hash of its bytes.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path, evidence::seed::fnv1a64(&bytes));
            }
        }
    }
    out
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A run directory is written once: `--out` at an earlier run's directory is refused with
/// exit 2 and every file of it is byte-for-byte unchanged; stores that already hold records
/// are refused unless `--append-to-stores` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_run_is_never_changed() {
    let dir = TempDir::new("first-hour-written-once");
    let earlier = dir.path().join("earlier");
    std::fs::create_dir_all(earlier.join("stores")).unwrap();
    for (name, bytes) in [
        (
            "profile.toml",
            b"[run]\nname = \"storm\"\nseed = 7\n".to_vec(),
        ),
        ("latency.hlog", vec![0x1c, 0x84, 0x93, 0x14, 0, 1, 2, 3]),
        ("chaos.jsonl", b"{\"seq\":0}\n".to_vec()),
        ("stores/region_a.db", vec![7; 4096]),
    ] {
        std::fs::write(earlier.join(name), bytes).unwrap();
    }
    let before = fingerprint(&earlier);
    let out = rig_within(
        &["run", &quickstart(), "--out", earlier.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("already holds files"), "{all}");
    assert_eq!(
        fingerprint(&earlier),
        before,
        "the earlier run is untouched"
    );

    // Stores holding another run's orders.
    let h = Harness::start(
        target_system::testkit::sqlite("first-hour-stores"),
        quiet_config(),
    )
    .await;
    let order = order_owned_by(RegionId::A, "fh-0");
    let answer = h
        .checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}]))
        .await;
    assert_eq!(answer.status, 201);
    let Harness { system, stores, .. } = h;
    system.shutdown().await.unwrap();
    let store = stores.url.to_string();
    let new_out = dir.path().join("new");
    let out = rig_within(
        &[
            "run",
            &quickstart(),
            "--out",
            new_out.to_str().unwrap(),
            "--store",
            &store,
        ],
        Duration::from_secs(60),
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("already holds records (provider: 1 provider requests, region_a: 1 orders)")
            && all.contains("--append-to-stores"),
        "{all}"
    );
    assert!(!new_out.exists(), "nothing was created");
}

/// A `[[chaos]]` entry on a proxy the topology lacks, or a window after the load, exits 2
/// at once naming the entry and the fix, with nothing written.
#[test]
fn a_timeline_that_cannot_run_is_refused_at_once() {
    let dir = TempDir::new("first-hour-timeline");
    let out = dir.path().join("run");
    let cases = [
        (
            r#"chaos=[{name = "cut", at = "5s", for = "5s", kind = "link", proxy = "a_to_c", toxic = "latency", latency_ms = 100}]"#,
            "chaos[0] (\"cut\"): proxy = \"a_to_c\" is not part of the run's topology; use one of a_to_b, b_to_a, a_to_provider, b_to_provider",
        ),
        (
            r#"chaos=[{name = "late", at = "35s", for = "10s", kind = "provider", outage = true}]"#,
            "chaos[0] (\"late\"): the window 35s..45s ends after the load, which lasts 40s",
        ),
    ];
    for (set, message) in cases {
        let started = Instant::now();
        let output = rig_within(
            &[
                "run",
                &quickstart(),
                "--set",
                set,
                "--out",
                out.to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        let took = started.elapsed();
        let all = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{all}");
        assert!(all.contains(message), "{all}");
        assert!(!out.exists(), "nothing written");
        eprintln!("refused in {took:?}");
        assert!(took < Duration::from_secs(1), "refused in {took:?}");
    }
}

/// Starts a shortened run whose partition is applied at 1 s and lasts long, and waits
/// until the journal says it is applied.
fn start_long_run(out: &Path) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(["run", &quickstart(), "--out", out.to_str().unwrap()])
        .args([
            "--set",
            r#"workload.phases=[{kind = "hold", rate = 30, for = "60s"}]"#,
            "--set",
            r#"chaos=[{name = "long partition", at = "1s", for = "50s", kind = "partition", between = ["a", "b"], mode = "refuse"}]"#,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let journal = out.join("chaos.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    // Polling a file another process writes: the journal is the run's own signal.
    while !std::fs::read_to_string(&journal).is_ok_and(|j| j.contains("\"applied\"")) {
        assert!(Instant::now() < deadline, "the partition was never applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// SIGTERM ends a run like Ctrl-C: the load stops, every fault is healed, what exists is
/// verified, and every document says partial (summary, verdict, junit, console, report);
/// stderr, a pipe here, holds no escape byte; `rig verify` on the directory says partial.
#[test]
fn sigterm_heals_and_every_file_says_partial() {
    let dir = TempDir::new("first-hour-sigterm");
    let out = dir.path().join("run");
    let child = start_long_run(&out);
    signal(&child, "-TERM");
    let output = child.wait_with_output().unwrap();
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stderr.contains("terminated (SIGTERM)"), "{stderr}");
    assert!(!output.stderr.contains(&0x1b), "no escape bytes: {stderr}");
    assert!(stderr.contains("chaos: fault on: partition"), "{stderr}");
    assert!(
        stdout.contains("overall: PARTIAL: the run was interrupted at"),
        "{stdout}"
    );
    assert!(!stdout.contains("overall: PASS"), "{stdout}");
    let journal = std::fs::read_to_string(out.join("chaos.jsonl")).unwrap();
    assert!(
        journal.lines().last().unwrap().contains("\"healed\""),
        "the journal ends healed"
    );
    assert_eq!(json_file(&out.join("summary.json"))["verdict"], "partial");
    assert_eq!(json_file(&out.join("verdict.json"))["status"], "partial");
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(
        junit.contains("name=\"complete\">\n      <failure"),
        "{junit}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.to_lowercase().contains("partial"),
        "the report says partial"
    );
    assert_lines_inside_their_plots(&html);
    assert!(
        !out.join(rig::run::INCOMPLETE).exists(),
        "every document was written"
    );

    let verify = rig_within(&["verify", out.to_str().unwrap()], Duration::from_secs(120));
    let all = format!("{}{}", text(&verify.stdout), text(&verify.stderr));
    assert_eq!(verify.status.code(), Some(3), "{all}");
    assert!(all.contains("is a partial run"), "{all}");
}

/// Every point of every chart line lies inside its plot area (the report's charts are
/// 920 x 230 with the plot from x 60 to 770 and y 28 to 198), even when the schedule is
/// longer than what ran.
fn assert_lines_inside_their_plots(html: &str) {
    let mut lines = 0;
    for chunk in html.split("<polyline").skip(1) {
        let points = chunk
            .split("points=\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .expect("a polyline has points");
        for point in points.split_whitespace() {
            let (x, y) = point.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!(
                (60.0..=770.05).contains(&x) && (27.95..=198.05).contains(&y),
                "point {point} outside the plot"
            );
        }
        lines += 1;
    }
    assert!(lines >= 4, "the report has its charts");
}

/// A SIGKILLed run leaves its INCOMPLETE marker: `rig report` says the run is incomplete
/// (exit 3) and `rig verify` says so first and judges what was open at the kill as
/// unknown, not as violations.
#[test]
fn a_killed_run_is_recognisable() {
    let dir = TempDir::new("first-hour-sigkill");
    let out = dir.path().join("run");
    let child = start_long_run(&out);
    signal(&child, "-KILL");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), None, "killed by a signal");
    assert!(out.join(rig::run::INCOMPLETE).exists());

    let report = rig_within(&["report", out.to_str().unwrap()], Duration::from_secs(60));
    let all = text(&report.stderr);
    assert_eq!(report.status.code(), Some(3), "{all}");
    assert!(all.contains("is an incomplete run"), "{all}");

    let verify = rig_within(&["verify", out.to_str().unwrap()], Duration::from_secs(120));
    let stdout = text(&verify.stdout);
    let stderr = text(&verify.stderr);
    assert!(
        stderr.starts_with("rig verify:") && stderr.contains("is an incomplete run"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("still payment_pending") && !stdout.contains("was never published"),
        "what the kill left open is not a violation: {stdout}"
    );
    assert!(stdout.contains("overall: PARTIAL"), "{stdout}");
    assert!(
        matches!(verify.status.code(), Some(1 | 3)),
        "{stdout}{stderr}"
    );
}

/// Runs `rig ARGS`, which must refuse them with exit 2; its stderr.
fn refused(args: &[&str]) -> String {
    let output = rig_within(args, Duration::from_secs(60));
    let all = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{all}");
    all
}

/// More bad input, each exit 2 with the fix and nothing written: a phase key of the wrong
/// type is named by its own line and path, an `--out` that is a file, a busy
/// `--metrics-addr`, a profile or an interval log past its size bound.
#[test]
fn bad_input_names_the_key_and_leaves_nothing() {
    let dir = TempDir::new("first-hour-bad-input");
    let profile = dir.path().join("typo.toml");
    std::fs::write(
        &profile,
        "[run]\nname = \"typo\"\n\n[workload]\narrival = \"poisson\"\n\n[[workload.phases]]\nkind = \"hold\"\nfor = \"5s\"\nrate = \"80\"\n\n[[workload.phases]]\nkind = \"hold\"\nrate = 5\nfor = \"5 minutes\"\n",
    )
    .unwrap();
    let out = dir.path().join("run");
    let run = [
        "run",
        profile.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let all = refused(&run);
    assert!(
        all.contains("line 10: workload.phases[0].rate: expected a number (arrivals per second); got the string \"80\""),
        "{all}"
    );
    std::fs::write(
        &profile,
        std::fs::read_to_string(&profile)
            .unwrap()
            .replace("rate = \"80\"", "rate = 80"),
    )
    .unwrap();
    let all = refused(&run);
    assert!(
        all.contains("line 15: workload.phases[1].for: expected a duration")
            && all.contains("\"5 minutes\""),
        "{all}"
    );
    assert!(!out.exists());

    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let all = refused(&["run", &quickstart(), "--out", file.to_str().unwrap()]);
    assert!(all.contains("not a directory"), "{all}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let all = refused(&[
        "run",
        &quickstart(),
        "--out",
        out.to_str().unwrap(),
        "--metrics-addr",
        &addr,
    ]);
    assert!(
        all.contains("--metrics-addr") && all.contains("cannot listen there"),
        "{all}"
    );
    assert!(!out.exists(), "nothing written for a busy address");

    // Files past the input bounds are refused by their size, unread: a profile over 1 MiB,
    // an interval log over 512 MiB (sparse, so the test writes nothing).
    let huge = dir.path().join("huge.toml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1024 * 1024 + 1)
        .unwrap();
    let all = refused(&[
        "run",
        huge.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(all.contains("larger than 1024 KiB"), "{all}");
    assert!(!out.exists());
    let log = dir.path().join("huge.hlog");
    std::fs::File::create(&log)
        .unwrap()
        .set_len((512 << 20) + 1)
        .unwrap();
    let all = refused(&["report", "--merge", log.to_str().unwrap()]);
    assert!(all.contains("larger than 512 MiB"), "{all}");
}
