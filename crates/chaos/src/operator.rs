//! `kind = "operator"`: an operator's playbook steps on the timeline, through a region's
//! admin API (the checkout contract's `/admin/...`), so a degraded-mode playbook can be
//! rehearsed under load:
//!
//! - `action = "pause_payments"`: `POST /admin/payments/pause` when the window starts,
//!   `.../resume` when it ends and in every heal;
//! - `action = "resolve_pending"`: once, when the window starts, `POST
//!   /admin/orders/resolve-pending {"count","operator","note"}`: the region resolves its
//!   oldest pending orders by hand, each decided on the provider's record and audited.
//!
//! Every call and its answer are journaled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rig_http::{HttpClient, Method};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::journal::Call;
use crate::windows;

/// How long a region may take to answer an operator call (resolving orders looks each one
/// up at the provider).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What an operator step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum OperatorAction {
    /// Payments paused for the window (new ones follow the region's degraded mode).
    PausePayments,
    /// The `count` oldest pending orders resolved by hand when the window starts.
    ResolvePending {
        count: u64,
        operator: String,
        note: String,
    },
}

/// An active operator window: the region and the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorSpec {
    pub target: String,
    #[serde(flatten)]
    pub action: OperatorAction,
}

/// The regions' admin APIs by name, and the operator windows started and not ended yet.
#[derive(Debug, Clone, Default)]
pub struct OperatorRunner {
    /// Region name -> base URL (`http://127.0.0.1:8081`).
    regions: BTreeMap<String, String>,
    applied: Arc<Mutex<BTreeMap<usize, OperatorSpec>>>,
    http: Option<HttpClient>,
}

impl OperatorRunner {
    pub fn new(regions: BTreeMap<String, String>) -> Self {
        Self {
            regions: regions
                .into_iter()
                .map(|(name, url)| (name, url.trim_end_matches('/').to_string()))
                .collect(),
            applied: Arc::default(),
            http: Some(HttpClient::new(Duration::from_secs(2), 2)),
        }
    }

    /// The regions whose admin API this runner can reach.
    pub fn regions(&self) -> Vec<String> {
        self.regions.keys().cloned().collect()
    }

    /// Starts each window that became active and ends each that is no longer.
    pub async fn reconcile(
        &self,
        active: &BTreeMap<usize, OperatorSpec>,
        log: &mut Vec<Call>,
    ) -> Result<(), String> {
        windows::reconcile(self, &self.applied, active, log).await
    }

    /// Ends every window still applied (payments resumed).
    pub async fn heal(&self, log: &mut Vec<Call>) -> Result<(), String> {
        windows::heal(self, &self.applied, log).await
    }

    async fn begin(&self, spec: &OperatorSpec, log: &mut Vec<Call>) -> Result<(), String> {
        match &spec.action {
            OperatorAction::PausePayments => {
                self.post(&spec.target, "/admin/payments/pause", None, log)
                    .await
            }
            OperatorAction::ResolvePending {
                count,
                operator,
                note,
            } => {
                let body = serde_json::json!({"count": count, "operator": operator, "note": note});
                self.post(
                    &spec.target,
                    "/admin/orders/resolve-pending",
                    Some(body.to_string()),
                    log,
                )
                .await
            }
        }
    }

    async fn finish(&self, spec: &OperatorSpec, log: &mut Vec<Call>) -> Result<(), String> {
        match spec.action {
            OperatorAction::PausePayments => {
                self.post(&spec.target, "/admin/payments/resume", None, log)
                    .await
            }
            OperatorAction::ResolvePending { .. } => Ok(()),
        }
    }

    /// One admin call, journaled with its status and the first of its answer.
    async fn post(
        &self,
        region: &str,
        path: &str,
        body: Option<String>,
        log: &mut Vec<Call>,
    ) -> Result<(), String> {
        let (Some(base), Some(http)) = (self.regions.get(region), &self.http) else {
            return Err(format!(
                "no admin API known for region {region:?}; the run knows {}",
                self.regions().join(", ")
            ));
        };
        let url = format!("{base}{path}");
        let answer = http
            .send(
                Method::POST,
                &url,
                &[("content-type", "application/json")],
                body.map(Into::into),
                CALL_TIMEOUT,
            )
            .await;
        let (status, error, said) = match &answer {
            Ok(r) if r.status.is_success() => (Some(r.status.as_u16()), None, text_of(&r.body)),
            Ok(r) => (
                Some(r.status.as_u16()),
                Some(format!(
                    "POST {url} answered {}: {}",
                    r.status,
                    text_of(&r.body)
                )),
                String::new(),
            ),
            Err(err) => (None, Some(format!("POST {url}: {err}")), String::new()),
        };
        log.push(Call {
            target: format!("operator:{region}"),
            op: if said.is_empty() {
                format!("POST {path}")
            } else {
                format!("POST {path}: {said}")
            },
            via: "http".to_string(),
            status,
            error: error.clone(),
        });
        error.map_or(Ok(()), Err)
    }
}

impl windows::Undoable for OperatorRunner {
    type Spec = OperatorSpec;

    async fn start(
        &self,
        _: usize,
        spec: &OperatorSpec,
        log: &mut Vec<Call>,
    ) -> Result<(), String> {
        self.begin(spec, log).await
    }

    async fn end(&self, _: usize, spec: &OperatorSpec, log: &mut Vec<Call>) -> Result<(), String> {
        self.finish(spec, log).await
    }
}

/// The first 500 bytes of an answer, as text.
fn text_of(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned()
}
