//! The state the targets should be in at one moment of the timeline: per proxy, enabled or not
//! and the exact set of toxics; per provider, the fault set. Reconciling towards it (rather
//! than replaying add/remove commands) makes overlapping faults and retries safe.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::provider::ProviderFaults;
use crate::toxics::{ToxicJson, ToxicSpec};

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyDesired {
    pub enabled: bool,
    pub toxics: Vec<ToxicSpec>,
}

impl Default for ProxyDesired {
    fn default() -> Self {
        Self {
            enabled: true,
            toxics: Vec::new(),
        }
    }
}

/// What a process the run started should be doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    #[default]
    Running,
    /// Killed (SIGKILL) and not started again yet.
    Down,
    /// Stopped (SIGSTOP): its sockets stay open and nothing answers.
    Paused,
}

/// What a process should be doing, and how far its wall clock is shifted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcessDesired {
    pub state: ProcessState,
    /// Milliseconds added to its wall clock (0: the true time).
    #[serde(skip_serializing_if = "is_zero")]
    pub clock_offset_ms: i64,
}

fn is_zero(ms: &i64) -> bool {
    *ms == 0
}

impl ProcessDesired {
    pub const RUNNING: Self = Self {
        state: ProcessState::Running,
        clock_offset_ms: 0,
    };
}

/// Desired state of every target a timeline touches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub proxies: BTreeMap<String, ProxyDesired>,
    pub providers: BTreeMap<String, ProviderFaults>,
    /// Every process a window of the plan acts on, by target name.
    pub processes: BTreeMap<String, ProcessDesired>,
    /// The `exec` windows active now, by entry index.
    pub execs: BTreeMap<usize, ExecSpec>,
    /// The `operator` windows active now, by entry index.
    pub operators: BTreeMap<usize, crate::operator::OperatorSpec>,
}

/// The commands of an active `exec` window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecSpec {
    pub run: Vec<String>,
    pub heal: Vec<String>,
    #[serde(skip)]
    pub timeout: std::time::Duration,
}

#[derive(Serialize)]
struct ProxySummary {
    enabled: bool,
    toxics: Vec<ToxicJson>,
}

impl Desired {
    /// A JSON summary for messages and the journal.
    pub fn to_json(&self) -> serde_json::Value {
        let proxies: BTreeMap<_, _> = self
            .proxies
            .iter()
            .map(|(name, p)| {
                let summary = ProxySummary {
                    enabled: p.enabled,
                    toxics: p.toxics.iter().map(ToxicSpec::to_json).collect(),
                };
                (name.clone(), summary)
            })
            .collect();
        serde_json::json!({
            "proxies": proxies,
            "providers": self.providers,
            "processes": self.processes,
            "execs": self.execs,
            "operators": self.operators,
        })
    }
}
