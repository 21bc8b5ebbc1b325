//! Chaos heals even after the rig's own crash: a `rig run` killed with SIGKILL during a
//! fault window leaves its toxics on a standalone Toxiproxy, named as the rig's and that
//! run's; `rig chaos --heal` removes them, and the next `rig run` on the same Toxiproxy finds
//! them, heals them first, journals it and says so (or, with `--refuse-leftovers`, stops).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{KillOnDrop, http_get, profile, rig_within, standalone_toxiproxy, text};
use serde_json::Value;
use target_system::testkit::TempDir;

/// A long blackhole partition between the regions from the first second.
const CUT: &str = r#"chaos=[{name = "cut", at = "1s", for = "40s", kind = "partition", between = ["a", "b"], mode = "blackhole"}]"#;

/// The toxics on each proxy of the Toxiproxy at `addr`, by name.
fn toxics(addr: &str) -> Vec<(String, String)> {
    let proxies: Value = serde_json::from_str(&http_get(addr, "/proxies")).unwrap();
    let mut found = Vec::new();
    for (proxy, state) in proxies.as_object().unwrap() {
        for toxic in state["toxics"].as_array().unwrap() {
            found.push((proxy.clone(), toxic["name"].as_str().unwrap().to_string()));
        }
    }
    found.sort();
    found
}

/// Starts `rig run` with the cut on the Toxiproxy at `addr`, waits (at most 120 s) until it
/// says the fault is on, and kills it with SIGKILL.
fn run_killed_in_the_fault(addr: &str, out: &Path) {
    let child = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args([
            "run",
            &profile("quickstart.toml"),
            "--out",
            out.to_str().unwrap(),
            "--toxiproxy",
            &format!("http://{addr}"),
            "--set",
            r#"workload.phases=[{kind = "hold", rate = 20, for = "50s"}]"#,
            "--set",
            CUT,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rig run starts");
    let mut child = KillOnDrop(Some(child));
    let stderr = child.0.as_mut().unwrap().stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.contains("chaos: fault on: partition \"cut\"") => break,
            Ok(line) => seen.push_str(&format!("{line}\n")),
            Err(_) => panic!("the fault never came on:\n{seen}"),
        }
    }
    // SIGKILL: no heal runs.
    drop(child);
}

#[test]
fn faults_a_killed_run_left_are_healed_by_the_next_run_and_by_chaos_heal() {
    let dir = TempDir::new("leftovers");
    let (_toxiproxy, addr) = standalone_toxiproxy();
    let url = format!("http://{addr}");

    // A killed run leaves its blackhole toxics, each named rig.<its run id>.<type>_<stream>.
    let first = dir.path().join("first");
    run_killed_in_the_fault(&addr, &first);
    let left = toxics(&addr);
    let run_id = first.file_name().unwrap().to_str().unwrap();
    assert_eq!(left.len(), 4, "{left:?}");
    for (proxy, name) in &left {
        assert!(["a_to_b", "b_to_a"].contains(&proxy.as_str()), "{left:?}");
        assert!(
            name.starts_with(&format!("rig.{run_id}.timeout_")),
            "{left:?}"
        );
    }

    // `rig chaos --heal` removes them and says so.
    let healed = rig_within(
        &["chaos", "--heal", "--toxiproxy", &url],
        Duration::from_secs(60),
    );
    let said = format!("{}{}", text(&healed.stdout), text(&healed.stderr));
    assert_eq!(healed.status.code(), Some(0), "{said}");
    assert!(
        said.contains("healed: 4 rig-made toxic(s) removed"),
        "{said}"
    );
    assert!(
        said.contains(&format!("rig.{run_id}.timeout_upstream")),
        "{said}"
    );
    assert!(toxics(&addr).is_empty());
    let again = rig_within(
        &["chaos", "--heal", "--toxiproxy", &url],
        Duration::from_secs(60),
    );
    assert!(text(&again.stdout).contains("healed: 0 rig-made toxic(s)"));

    // Killed again: a run told to refuse leftovers stops, naming them, and changes nothing.
    let second = dir.path().join("second");
    run_killed_in_the_fault(&addr, &second);
    assert_eq!(toxics(&addr).len(), 4);
    let short = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "run".to_string(),
            profile("quickstart.toml"),
            "--out".to_string(),
            out.to_str().unwrap().to_string(),
            "--toxiproxy".to_string(),
            url.clone(),
            "--set".to_string(),
            r#"workload.phases=[{kind = "hold", rate = 40, for = "6s"}]"#.to_string(),
            "--set".to_string(),
            "chaos=[]".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rig_within(&args, Duration::from_secs(240))
    };
    let refused = short(&dir.path().join("refused"), &["--refuse-leftovers"]);
    let said = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{said}");
    assert!(said.contains("faults an earlier run left"), "{said}");
    assert!(said.contains("rig chaos --heal"), "{said}");
    assert_eq!(toxics(&addr).len(), 4, "refusing changes nothing");

    // The next run heals them first, says so and journals it, then runs clean.
    let next = dir.path().join("next");
    let run = short(&next, &[]);
    let said = text(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{said}");
    assert!(
        said.contains("healed the faults an earlier run left on Toxiproxy"),
        "{said}"
    );
    let journal = std::fs::read_to_string(next.join("chaos.jsonl")).unwrap();
    let second_id = second.file_name().unwrap().to_str().unwrap();
    assert!(
        journal.contains("healed the faults an earlier run left")
            && journal.contains(&format!("rig.{second_id}.timeout_upstream")),
        "{journal}"
    );
    assert!(toxics(&addr).is_empty());
}

/// One HTTP/1.1 POST with a JSON body to the Toxiproxy at `addr`; returns the status line.
fn post(addr: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

/// Which proxies of the Toxiproxy at `addr` are disabled.
fn disabled(addr: &str) -> Vec<String> {
    let proxies: Value = serde_json::from_str(&http_get(addr, "/proxies")).unwrap();
    let mut names: Vec<String> = proxies
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, p)| p["enabled"] == false)
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    names
}

/// A `refuse` partition disables proxies, and a disabled proxy carries no name: `rig chaos
/// --heal` leaves it, saying why, until given the killed run's journal, which shows the
/// run disabled it; then it enables exactly those, not a proxy someone else disabled.
#[test]
fn a_killed_refuse_partition_is_healed_from_its_journal() {
    let dir = TempDir::new("leftovers-journal");
    let (_toxiproxy, addr) = standalone_toxiproxy();
    let url = format!("http://{addr}");
    let populate = r#"[{"name":"a_to_b","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"},
        {"name":"b_to_a","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"},
        {"name":"someone else's","listen":"127.0.0.1:0","upstream":"127.0.0.1:9","enabled":false}]"#;
    assert!(post(&addr, "/populate", populate).contains(" 201 "));
    let timeline = dir.path().join("cut.toml");
    std::fs::write(
        &timeline,
        "[[chaos]]\nname = \"cut\"\nat = \"0s\"\nfor = \"120s\"\nkind = \"partition\"\n\
         between = [\"a\", \"b\"]\nmode = \"refuse\"\n",
    )
    .unwrap();
    let journal = dir.path().join("chaos.jsonl");
    let child = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(["chaos", "--toxiproxy", &url, "--timeline"])
        .arg(&timeline)
        .arg("--journal")
        .arg(&journal)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rig chaos starts");
    let mut child = KillOnDrop(Some(child));
    let stderr = child.0.as_mut().unwrap().stderr.take().unwrap();
    let mut seen = String::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        seen.push_str(&format!("{line}\n"));
        if line.contains("applied") && line.contains("partition start") {
            break;
        }
    }
    assert!(
        seen.contains("partition start"),
        "the fault never came on:\n{seen}"
    );
    drop(child); // SIGKILL: no heal runs.
    assert_eq!(disabled(&addr), ["a_to_b", "b_to_a", "someone else's"]);

    let heal = |extra: &[&str]| {
        let mut args = vec!["chaos", "--heal", "--toxiproxy", url.as_str()];
        args.extend_from_slice(extra);
        let out = rig_within(&args, Duration::from_secs(60));
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{said}");
        said
    };
    let said = heal(&[]);
    assert!(
        said.contains("proxy a_to_b is disabled (left as it is"),
        "{said}"
    );
    assert!(said.contains("--earlier-journal"), "{said}");
    assert_eq!(
        disabled(&addr).len(),
        3,
        "without the journal nothing is enabled"
    );

    let said = heal(&["--earlier-journal", dir.path().to_str().unwrap()]);
    assert!(said.contains("enabling proxy a_to_b"), "{said}");
    assert!(said.contains("2 proxy(ies) enabled"), "{said}");
    assert!(
        said.contains("proxy someone else's is disabled (left as it is: the earlier run's journal did not disable it"),
        "{said}"
    );
    assert_eq!(disabled(&addr), ["someone else's"]);
}
