//! `rig load` and `rig report --merge` as a user runs them: a real process against a real
//! loopback server; bad input exits 2 at once with the field and the fix.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

mod common;

use common::text;

/// Runs `rig ARGS` within `limit`.
fn rig(args: &[&str], limit: Duration) -> Output {
    common::rig_within(args, limit)
}

/// A fresh directory for this test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rig-load-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A closed loopback port: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Every kind of bad input exits 2 within seconds, naming the field and the fix: rate <= 0,
/// bad durations and phases, bad shards, unknown flags, missing URL, non-loopback target
/// without --allow-remote, unreachable URL, unknown hlog files.
#[test]
fn bad_input_exits_2_with_the_field_and_the_fix() {
    let closed = format!("http://127.0.0.1:{}/", closed_port());
    let local = "http://127.0.0.1:9/";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["load", local, "--rate", "0", "--duration", "1s"],
            "--rate",
        ),
        (
            vec!["load", local, "--rate", "-5", "--duration", "1s"],
            "--rate",
        ),
        (
            vec!["load", local, "--rate", "10", "--duration", "10"],
            "--duration",
        ),
        (
            vec!["load", local, "--rate", "10", "--duration", "0s"],
            "--duration",
        ),
        (
            vec!["load", local, "--phases", "hold rate=10"],
            "--phases[0]",
        ),
        (
            vec!["load", local, "--phases", "hold rate=0 for=1s"],
            "phases[0].rate",
        ),
        (
            vec![
                "load",
                local,
                "--rate",
                "10",
                "--duration",
                "1s",
                "--shard",
                "2/2",
            ],
            "--shard",
        ),
        (
            vec!["load", local, "--rate", "10", "--duration", "1s", "--bogus"],
            "--bogus",
        ),
        (vec!["load", "--rate", "10", "--duration", "1s"], "URL"),
        (vec!["load", local, "--rate", "10"], "--duration"),
        (
            vec![
                "load",
                "http://192.0.2.1:80/",
                "--rate",
                "10",
                "--duration",
                "1s",
            ],
            "--allow-remote",
        ),
        (
            vec!["load", &closed, "--rate", "10", "--duration", "1s"],
            "could not connect",
        ),
        (
            vec![
                "load",
                local,
                "--rate",
                "10",
                "--duration",
                "1s",
                "--timeout",
                "soon",
            ],
            "--timeout",
        ),
        (vec!["report", "--merge", "/nonexistent/a.hlog"], "--merge"),
    ];
    for (args, needle) in cases {
        let out = rig(&args, Duration::from_secs(15));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        let clap_usage = stderr.contains("Usage:");
        assert!(clap_usage || stderr.contains("fix"), "{args:?}: {stderr}");
    }
}

/// Two shards of a run write interval logs and JSON; `rig report --merge` adds the logs up
/// to exactly the arrivals of the whole schedule, and the JSON is the documented summary.
#[test]
fn sharded_load_then_merge() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    runtime.spawn(rig_http::serve(
        listener,
        |_req| async { Ok(rig_http::text(rig_http::StatusCode::OK, "ok")) },
        std::future::pending::<()>(),
    ));
    let dir = scratch("merge");
    let path = |name: &str| dir.join(name).display().to_string();
    for shard in ["0/2", "1/2"] {
        let i = &shard[..1];
        let hlog = path(&format!("{i}.hlog"));
        let json = path(&format!("{i}.json"));
        let out = rig(
            &[
                "load",
                &url,
                "--rate",
                "300",
                "--duration",
                "1s",
                "--shard",
                shard,
                "--arrival",
                "poisson",
                "--seed",
                "4",
                "--hlog",
                &hlog,
                "--json",
                &json,
                "--progress",
                "plain",
            ],
            Duration::from_secs(30),
        );
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(stdout.contains("0-hold"), "{stdout}");
        assert!(stdout.contains("self-check"), "{stdout}");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(summary["schema"], "rig-loadgen-summary/1");
        assert_eq!(summary["run"]["shard"]["count"], 2);
        assert!(
            text(&out.stderr).contains("started"),
            "progress line on stderr"
        );
    }
    let out = rig(
        &["report", "--merge", &path("0.hlog"), &path("1.hlog")],
        Duration::from_secs(15),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The unsharded Poisson schedule for seed 4: count it the same way the shards do.
    let whole: u64 = ["0.json", "1.json"]
        .iter()
        .map(|name| {
            let summary: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path(name)).unwrap()).unwrap();
            summary["totals"]["scheduled"].as_u64().unwrap()
        })
        .sum();
    assert!(whole > 200, "{whole}");
    assert!(
        stdout.contains(&format!("totals: ok {whole}, failed 0")),
        "{stdout}"
    );
    assert!(stdout.contains("merged 2 interval log(s)"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rig report` of a directory that is not a run directory exits 2 naming the file and the fix.
#[test]
fn report_of_a_non_run_directory_exits_2() {
    let out = rig(&["report", "runs/does-not-exist"], Duration::from_secs(15));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("summary.json") && err.contains("fix"), "{err}");
}
