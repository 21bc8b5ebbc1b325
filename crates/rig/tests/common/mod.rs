//! Helpers shared by the `rig` integration tests: the binary as a child process that can
//! neither hang a test nor outlive it, and a plain HTTP GET.

// Each test file uses some of these.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A quickstart cut to seconds: the same faults, shorter.
pub const SHORT_QUICKSTART: [&str; 4] = [
    "--set",
    r#"workload.phases=[{kind = "hold", rate = 40, for = "9s"}]"#,
    "--set",
    r#"chaos=[{name = "spike", at = "2s", for = "3s", kind = "provider", latency_ms = 1500}, {name = "partition", at = "6s", for = "2s", kind = "partition", between = ["a", "b"], mode = "blackhole"}]"#,
];

/// A read-only SQLite database on one connection (so what is attached to it stays), with
/// each of `attached` (name, file) attached read-only.
pub async fn sqlite_read_only(
    path: &std::path::Path,
    attached: &[(&str, &std::path::Path)],
) -> sqlx::SqlitePool {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .unwrap();
    for (name, file) in attached {
        // The schema name cannot be bound; it is one of the test's own literals.
        let sql = format!("ATTACH DATABASE $1 AS {name}");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(format!("file:{}?mode=ro", file.display()))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool
}

/// The path of a shipped profile, e.g. `profile("quickstart.toml")`.
pub fn profile(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../profiles")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Runs `rig ARGS`, failing the test if it has not exited within `limit` (nothing hangs).
pub fn rig_within(args: &[&str], limit: Duration) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rig"));
    command.args(args);
    output_within(command, limit)
}

/// Runs `command` to its end with its output captured, failing the test if it has not
/// exited within `limit`.
pub fn output_within(mut command: Command, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{command:?} does not start: {err}"));
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("it ran"),
        Err(_) => panic!("{command:?} (pid {id}) did not exit within {limit:?}"),
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Kills the child if the test fails before it stops it, so no server outlives a test.
pub struct KillOnDrop(pub Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain HTTP/1.0 GET: the status line and the body (None if it cannot connect).
pub fn try_http_get(addr: &str, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Some((
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    ))
}

/// A GET that must answer 200; the body.
pub fn http_get(addr: &str, path: &str) -> String {
    let (status, body) =
        try_http_get(addr, path).unwrap_or_else(|| panic!("GET http://{addr}{path}: no answer"));
    assert!(status.contains(" 200 "), "GET {path}: {status}: {body}");
    body
}

/// Fails the test unless `summary` (a run's `summary.json`) follows its schema.
pub fn assert_summary_schema(summary: &serde_json::Value) {
    assert_schema(
        "run-summary.schema.json",
        include_str!("../../schema/run-summary.schema.json"),
        summary,
    );
}

/// `verdict.json` matches its schema (dossiers, their fault windows and timelines included).
pub fn assert_verdict_schema(verdict: &serde_json::Value) {
    assert_schema("verdict.schema.json", verifier::VERDICT_SCHEMA, verdict);
}

fn assert_schema(name: &str, schema: &str, value: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_str(schema).unwrap();
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.add_resource(name, schema).unwrap();
    let index = compiler.compile(name, &mut schemas).unwrap();
    schemas
        .validate(value, index)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// `rig toxiproxy` on a free loopback port: the child (killed on drop) and its address.
pub fn standalone_toxiproxy() -> (KillOnDrop, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(["toxiproxy", "--listen", "127.0.0.1:0", "--seed", "7"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rig toxiproxy starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("its first line");
    // "toxiproxy-compatible API on http://127.0.0.1:PORT (seed 7); ..."
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (KillOnDrop(Some(child)), address)
}
