//! `kind = "exec"`: commands for a system the rig did not start (the Chaos Toolkit's process
//! action), e.g. `docker kill region-a` when the window starts and `docker start region-a`
//! when it ends. Each command is a program and its arguments (no shell), run with a timeout,
//! its input closed; its exit status and output are journaled. A window whose `run` command
//! was started gets its `heal` command in every heal, even if `run` failed.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::desired::ExecSpec;
use crate::journal::Call;
use crate::windows;

/// How much of a command's output the journal keeps (per stream).
const OUTPUT_KEPT: usize = 1_000;

/// The `exec` windows whose `run` command was started and not healed yet.
#[derive(Debug, Clone, Default)]
pub struct ExecRunner {
    applied: Arc<Mutex<BTreeMap<usize, ExecSpec>>>,
}

impl ExecRunner {
    /// Runs `run` for each window that became active and `heal` for each that ended.
    pub async fn reconcile(
        &self,
        active: &BTreeMap<usize, ExecSpec>,
        log: &mut Vec<Call>,
    ) -> Result<(), String> {
        windows::reconcile(self, &self.applied, active, log).await
    }

    /// Runs the `heal` command of every window still applied.
    pub async fn heal(&self, log: &mut Vec<Call>) -> Result<(), String> {
        windows::heal(self, &self.applied, log).await
    }
}

impl windows::Undoable for ExecRunner {
    type Spec = ExecSpec;

    async fn start(
        &self,
        entry: usize,
        spec: &ExecSpec,
        log: &mut Vec<Call>,
    ) -> Result<(), String> {
        run_command(entry, "run", &spec.run, spec.timeout, log).await
    }

    async fn end(&self, entry: usize, spec: &ExecSpec, log: &mut Vec<Call>) -> Result<(), String> {
        heal_one(entry, spec, log).await
    }
}

async fn heal_one(entry: usize, spec: &ExecSpec, log: &mut Vec<Call>) -> Result<(), String> {
    if spec.heal.is_empty() {
        return Ok(());
    }
    run_command(entry, "heal", &spec.heal, spec.timeout, log).await
}

/// Runs `argv` within `timeout` (killed after it), journaling its exit status and output.
async fn run_command(
    entry: usize,
    what: &str,
    argv: &[String],
    timeout: Duration,
    log: &mut Vec<Call>,
) -> Result<(), String> {
    let shown = argv.join(" ");
    let target = format!("exec:chaos[{entry}]");
    let mut call = |op: String, error: Option<String>| {
        log.push(Call {
            target: target.clone(),
            op,
            via: "exec".to_string(),
            status: None,
            error: error.clone(),
        });
        error.map_or(Ok(()), Err)
    };
    let Some((program, args)) = argv.split_first() else {
        return call(
            format!("{what}: no command"),
            Some("no command".to_string()),
        );
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(err) => {
            let message = format!(
                "chaos[{entry}].{what}: could not start {program:?} ({err}); give a program on the PATH or its full path"
            );
            return call(format!("{what} {shown}"), Some(message));
        }
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => {
            let message = format!(
                "chaos[{entry}].{what} `{shown}` did not finish within {} s (killed); raise chaos[{entry}].timeout if it needs longer",
                timeout.as_secs_f64()
            );
            call(format!("{what} {shown}"), Some(message))
        }
        Ok(Err(err)) => {
            let message = format!("chaos[{entry}].{what} `{shown}`: {err}");
            call(format!("{what} {shown}"), Some(message))
        }
        Ok(Ok(output)) => {
            let stdout = kept(&output.stdout);
            let stderr = kept(&output.stderr);
            let op = format!(
                "{what} {shown}: {}; stdout {stdout:?}; stderr {stderr:?}",
                output.status
            );
            let error = (!output.status.success()).then(|| {
                format!(
                    "chaos[{entry}].{what} `{shown}` failed ({}): {}",
                    output.status,
                    if stderr.is_empty() { &stdout } else { &stderr }
                )
            });
            call(op, error)
        }
    }
}

/// A stream's output, trimmed, at most [`OUTPUT_KEPT`] bytes (cut on a char boundary).
fn kept(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.len() <= OUTPUT_KEPT {
        return text.to_string();
    }
    let mut end = OUTPUT_KEPT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}
