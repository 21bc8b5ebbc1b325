//! The system's processes in a run: the provider and each region run as child processes
//! (`rig serve --role ...`) on loopback ports the run picked, so a `crash` is a real
//! SIGKILL (in-flight requests cut, nothing flushed, memory lost), a `pause` a real
//! SIGSTOP (sockets open, nothing answers), and a `clock` fault shifts one region process's
//! wall clock (started with `--clock-offset-ms`, changed with `POST /admin/clock`).
//!
//! No child outlives the run: each is killed by the kernel when the rig dies
//! (`PR_SET_PDEATHSIG`, set by the child on `--parent-pid`, which kills even a stopped
//! process), killed when its handle is dropped, and stopped with SIGTERM at the end. Each
//! runs in a process group of its own, so a Ctrl-C at the terminal reaches the rig alone,
//! which drains, heals and stops them in order. Their output goes to `logs/<name>.log` in
//! the run directory (appended across restarts).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chaos::{BoxFuture, Call, ProcessControl, ProcessDesired, ProcessState};
use evidence::StoreUrl;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rig_http::{HttpClient, Method, StatusCode};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// How long a started process has to answer `/healthz` (stores opened, migrations run).
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a child has to finish its open requests after SIGTERM before SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// The environment variable naming the `rig` executable to start children from (the
/// running executable when unset, which is `rig` itself).
pub const RIG_EXE_ENV: &str = "RIG_EXE";

/// One process of the system: how to start it and where it answers.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The chaos target name: `a`, `b` or `provider`.
    pub name: String,
    /// The arguments after the executable (`serve --role ...`).
    pub args: Vec<OsString>,
    /// Its own base URL (`/healthz`, `/metrics`).
    pub url: String,
}

#[derive(Debug)]
struct Proc {
    spec: Spec,
    child: Option<Child>,
    paused: bool,
    /// How many times it was started.
    starts: u32,
    /// The wall-clock shift it should have, and the one it was last given (ms).
    clock_wanted_ms: i64,
    clock_ms: i64,
}

/// The running children, by target name.
#[derive(Debug)]
pub struct Children {
    /// The target names, in start order.
    names: Vec<String>,
    /// The stores' URL, handed to each child as `RIG_STORE`.
    store: String,
    exe: PathBuf,
    logs: PathBuf,
    client: HttpClient,
    procs: Mutex<BTreeMap<String, Proc>>,
}

impl Children {
    /// Starts every process in order (each answering before the next starts: the provider
    /// before the regions that call it).
    pub async fn start(specs: Vec<Spec>, logs: &Path, store: &StoreUrl) -> anyhow::Result<Self> {
        // This very executable (a rebuild while the run goes on cannot change what a
        // restarted child runs), unless RIG_EXE names another.
        let exe = match std::env::var_os(RIG_EXE_ENV) {
            Some(path) => PathBuf::from(path),
            None => PathBuf::from("/proc/self/exe"),
        };
        std::fs::create_dir_all(logs)
            .map_err(|err| anyhow::anyhow!("creating {}: {err}", logs.display()))?;
        let children = Self {
            names: specs.iter().map(|s| s.name.clone()).collect(),
            store: store.to_url(),
            exe,
            logs: logs.to_path_buf(),
            client: HttpClient::new(Duration::from_millis(500), 1),
            procs: Mutex::new(BTreeMap::new()),
        };
        {
            let mut procs = children.procs.lock().await;
            for spec in specs {
                let mut proc = Proc {
                    spec,
                    child: None,
                    paused: false,
                    starts: 0,
                    clock_wanted_ms: 0,
                    clock_ms: 0,
                };
                children
                    .launch(&mut proc)
                    .await
                    .map_err(anyhow::Error::msg)?;
                procs.insert(proc.spec.name.clone(), proc);
            }
        }
        Ok(children)
    }

    /// Every child's `/metrics` URL.
    pub async fn metrics_urls(&self) -> Vec<String> {
        self.procs
            .lock()
            .await
            .values()
            .map(|p| format!("{}/metrics", p.spec.url))
            .collect()
    }

    /// Stops every child: continues a paused one, asks with SIGTERM, and kills what has not
    /// exited within [`STOP_WITHIN`]. Says which exited on their own during the run.
    pub async fn shutdown(&self) {
        let mut procs = self.procs.lock().await;
        // In reverse start order: the regions before the provider they call.
        for name in self.names.iter().rev() {
            let Some(proc) = procs.get_mut(name) else {
                continue;
            };
            let Some(mut child) = proc.child.take() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!(
                    "rig run: {} had exited on its own ({status}); see {}",
                    describe(&proc.spec.name),
                    self.log_path(&proc.spec.name).display()
                );
                continue;
            }
            if let Some(pid) = child.id().map(pid_of) {
                if proc.paused {
                    let _ = kill(pid, Signal::SIGCONT);
                }
                let _ = kill(pid, Signal::SIGTERM);
            }
            match tokio::time::timeout(STOP_WITHIN, child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => eprintln!(
                    "rig run: {} stopped with {status}; see {}",
                    describe(&proc.spec.name),
                    self.log_path(&proc.spec.name).display()
                ),
                _ => {
                    eprintln!(
                        "rig run: {} did not stop within {} s of SIGTERM; killing it",
                        describe(&proc.spec.name),
                        STOP_WITHIN.as_secs()
                    );
                    let _ = child.kill().await;
                }
            }
        }
    }

    fn log_path(&self, name: &str) -> PathBuf {
        match name {
            "provider" => self.logs.join("provider.log"),
            region => self.logs.join(format!("region-{region}.log")),
        }
    }

    /// Starts `proc` and waits until it answers `/healthz`.
    async fn launch(&self, proc: &mut Proc) -> Result<(String, u32), String> {
        let name = proc.spec.name.clone();
        let log_path = self.log_path(&name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|err| format!("opening {}: {err}", log_path.display()))?;
        let err_log = log
            .try_clone()
            .map_err(|err| format!("opening {}: {err}", log_path.display()))?;
        let started = Instant::now();
        let mut command = Command::new(&self.exe);
        command.args(&proc.spec.args);
        if proc.clock_wanted_ms != 0 {
            // Started inside a clock window: with the shift from its first record on.
            command.arg(format!("--clock-offset-ms={}", proc.clock_wanted_ms));
        }
        let mut child = command
            .env("RIG_STORE", &self.store)
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| {
                format!(
                    "starting {} from {}: {err} (set {RIG_EXE_ENV} to the rig executable)",
                    describe(&name),
                    self.exe.display()
                )
            })?;
        let pid = child.id().unwrap_or_default();
        proc.starts += 1;
        let health = format!("{}/healthz", proc.spec.url);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before it answered; its output:\n{}",
                    describe(&name),
                    tail(&log_path)
                ));
            }
            let answered = self
                .client
                .send(Method::GET, &health, &[], None, Duration::from_millis(500))
                .await
                .is_ok_and(|r| r.status == StatusCode::OK);
            if answered {
                break;
            }
            if started.elapsed() > READY_WITHIN {
                let _ = child.kill().await;
                return Err(format!(
                    "{} did not answer {health} within {} s; its output:\n{}",
                    describe(&name),
                    READY_WITHIN.as_secs(),
                    tail(&log_path)
                ));
            }
            // Readiness polling of a process just started: it answers once its stores are
            // open.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proc.child = Some(child);
        proc.paused = false;
        proc.clock_ms = proc.clock_wanted_ms;
        Ok((
            format!(
                "start pid {pid}{} (answering after {} ms)",
                match proc.clock_ms {
                    0 => String::new(),
                    ms => format!(" with its clock shifted {ms:+} ms"),
                },
                started.elapsed().as_millis()
            ),
            pid,
        ))
    }

    async fn set_state(
        &self,
        name: &str,
        desired: ProcessDesired,
        log: &mut Vec<Call>,
    ) -> Result<(), String> {
        let state = desired.state;
        let mut procs = self.procs.lock().await;
        let proc = procs.get_mut(name).ok_or_else(|| {
            format!(
                "the run has no process {name:?}; it has {}",
                self.names.join(", ")
            )
        })?;
        proc.clock_wanted_ms = desired.clock_offset_ms;
        let target = format!("process:{name}");
        let mut call = |op: String, via: &str, error: Option<String>| {
            log.push(Call {
                target: target.clone(),
                op,
                via: via.to_string(),
                status: None,
                error,
            });
        };
        // A child that died without being told to is noted, then handled as down.
        if let Some(child) = proc.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            call(
                format!("found exited on its own ({status})"),
                "wait",
                Some("exited without a crash fault".to_string()),
            );
            proc.child = None;
            proc.paused = false;
        }
        let pid = proc.child.as_ref().and_then(Child::id);
        match (state, pid) {
            (ProcessState::Down, Some(pid)) => {
                let mut child = proc.child.take().expect("a running child");
                child
                    .start_kill()
                    .map_err(|err| format!("SIGKILL to pid {pid}: {err}"))?;
                let status = child
                    .wait()
                    .await
                    .map_err(|err| format!("waiting for pid {pid}: {err}"))?;
                proc.paused = false;
                call(format!("SIGKILL pid {pid} ({status})"), "signal", None);
            }
            (ProcessState::Running | ProcessState::Paused, None) => {
                let (op, _) = self.launch(proc).await?;
                call(op, "spawn", None);
            }
            (ProcessState::Running, Some(pid)) if proc.paused => {
                kill(pid_of(pid), Signal::SIGCONT)
                    .map_err(|err| format!("SIGCONT to pid {pid}: {err}"))?;
                proc.paused = false;
                call(format!("SIGCONT pid {pid}"), "signal", None);
            }
            _ => {}
        }
        if state == ProcessState::Paused
            && !proc.paused
            && let Some(pid) = proc.child.as_ref().and_then(Child::id)
        {
            kill(pid_of(pid), Signal::SIGSTOP)
                .map_err(|err| format!("SIGSTOP to pid {pid}: {err}"))?;
            proc.paused = true;
            call(format!("SIGSTOP pid {pid}"), "signal", None);
        }
        // A running process is told its new clock now; a frozen one when it is continued,
        // a down one when it starts.
        if proc.child.is_some() && !proc.paused && proc.clock_ms != proc.clock_wanted_ms {
            let ms = proc.clock_wanted_ms;
            let url = format!("{}/admin/clock", proc.spec.url);
            let body = serde_json::json!({ "offset_ms": ms }).to_string();
            let answer = self
                .client
                .send(
                    Method::POST,
                    &url,
                    &[("content-type", "application/json")],
                    Some(body.into()),
                    Duration::from_secs(5),
                )
                .await
                .map_err(|err| format!("POST {url}: {err}"))?;
            let told: Option<i64> = serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| v.get("offset_ms").and_then(serde_json::Value::as_i64));
            if answer.status != StatusCode::OK || told != Some(ms) {
                return Err(format!(
                    "POST {url} {{\"offset_ms\":{ms}}} answered {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                ));
            }
            proc.clock_ms = ms;
            log.push(Call {
                target,
                op: format!("clock offset {ms:+} ms (read back)"),
                via: "http".to_string(),
                status: Some(answer.status.as_u16()),
                error: None,
            });
        }
        Ok(())
    }
}

impl ProcessControl for Children {
    fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    fn set<'a>(
        &'a self,
        name: &'a str,
        desired: ProcessDesired,
        log: &'a mut Vec<Call>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.set_state(name, desired, log))
    }
}

fn pid_of(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

fn describe(name: &str) -> String {
    match name {
        "provider" => "the provider process".to_string(),
        region => format!("region {region}'s process"),
    }
}

/// The last lines of a child's log, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(15);
    lines[from..].join("\n")
}
