//! Runs a [`Plan`] on the load clock against real targets (or any [`Actuator`]), journaling
//! every step, and always ends with a heal: after the last step, after a failure, after an
//! abort guard fires and after Ctrl-C (both arrive through the `cancel` future).
//!
//! Each step reconciles the targets towards the desired state of that instant and reads it
//! back: the processes, the proxies, every provider the first step and afterwards each one
//! a step has put a fault on (a provider without faults is not required to answer, as when
//! an `exec` window has taken its system down), then the `exec` commands. The heal runs
//! the `exec` heal commands, brings every process back, resets Toxiproxy, clears every
//! provider with faults and confirms nothing is left; a provider no step put a fault on
//! gets one try (its failure is in the calls, not an error).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::ChaosError;
use crate::desired::{Desired, ProcessDesired, ProcessState};
use crate::exec::ExecRunner;
use crate::journal::{Call, Detail, Event, Journal, StepRef};
use crate::provider::{ProviderAdmin, ProviderFaults};
use crate::timeline::{Action, Plan, Step};
use crate::toxiproxy::ToxiproxyControl;

/// Attempts to clear a provider's faults during the heal.
const PROVIDER_HEAL_ATTEMPTS: u32 = 3;

/// Something that can put the targets into a desired state and heal them.
pub trait Actuator: Sync {
    /// Provider names known to the run (entries without `provider` act on all of them).
    fn provider_names(&self) -> Vec<String>;

    /// Checks that every proxy and provider the plan uses exists; changes nothing.
    fn preflight(
        &self,
        plan: &Plan,
        log: &mut Vec<Call>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Brings every target to `desired` and confirms it by reading back.
    fn apply(
        &self,
        desired: &Desired,
        log: &mut Vec<Call>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Removes every fault and confirms nothing is left.
    fn heal(&self, log: &mut Vec<Call>) -> impl Future<Output = Result<(), String>> + Send;

    /// Before the first step: finds the faults an earlier run left (a rig killed mid-run
    /// cannot heal) and heals them, saying what they were (`Ok(None)`: nothing was left), or
    /// refuses to start when told to.
    fn leftovers(
        &self,
        plan: &Plan,
        log: &mut Vec<Call>,
    ) -> impl Future<Output = Result<Option<String>, String>> + Send {
        let _ = (plan, log);
        async { Ok(None) }
    }
}

/// A boxed future, for the object-safe [`ProcessControl`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The processes a run started (regions, provider), which `crash` and `pause` act on with
/// real signals.
pub trait ProcessControl: Send + Sync + std::fmt::Debug {
    /// The processes by target name (`a`, `b`, `provider`).
    fn names(&self) -> Vec<String>;

    /// Brings process `name` to `desired`: kills it (SIGKILL), starts it again and waits
    /// until it answers, stops it (SIGSTOP) or continues it (SIGCONT), and shifts its wall
    /// clock (a process started again starts with the shift; a frozen one is told when it
    /// is continued). Nothing is done when it is already there. Every signal, start and
    /// clock change is logged in `log`.
    fn set<'a>(
        &'a self,
        name: &'a str,
        desired: ProcessDesired,
        log: &'a mut Vec<Call>,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// The real targets: a Toxiproxy API, the providers' admin APIs by name, and the processes
/// the run started.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub toxiproxy: Option<ToxiproxyControl>,
    pub providers: BTreeMap<String, ProviderAdmin>,
    pub processes: Option<Arc<dyn ProcessControl>>,
    /// The `exec` windows' commands (started and healed).
    pub execs: ExecRunner,
    /// The regions' admin APIs for `operator` steps.
    pub operators: crate::operator::OperatorRunner,
    /// The providers some step put a fault on and no step has cleared since: the only
    /// ones a step must reach (an `exec` window may have taken the others down with their
    /// system) and a heal must clear.
    pub touched: Touched,
    /// Refuse to start when an earlier run left faults (instead of healing them).
    pub refuse_leftovers: bool,
}

/// Provider names with faults possibly set on them. Until the first step every provider
/// counts (an earlier run killed mid-way may have left faults): the first step clears and
/// reads back each of them.
#[derive(Debug, Clone, Default)]
pub struct Touched(Arc<std::sync::Mutex<Option<BTreeSet<String>>>>);

impl Touched {
    fn contains(&self, name: &str) -> bool {
        self.0
            .lock()
            .is_ok_and(|set| set.as_ref().is_none_or(|set| set.contains(name)))
    }

    /// Before the first step: every provider counts.
    fn begin<'a>(&self, names: impl Iterator<Item = &'a String>) {
        if let Ok(mut set) = self.0.lock()
            && set.is_none()
        {
            *set = Some(names.cloned().collect());
        }
    }

    fn set(&self, name: &str, touched: bool) {
        if let Ok(mut set) = self.0.lock() {
            let set = set.get_or_insert_with(BTreeSet::new);
            if touched {
                set.insert(name.to_string());
            } else {
                set.remove(name);
            }
        }
    }
}

impl Actuator for Targets {
    fn provider_names(&self) -> Vec<String> {
        self.providers.keys().cloned().collect()
    }

    async fn preflight(&self, plan: &Plan, log: &mut Vec<Call>) -> Result<(), String> {
        let proxies = plan.proxies();
        if !proxies.is_empty() {
            let Some(toxiproxy) = &self.toxiproxy else {
                return Err(
                    "the timeline acts on proxies but no Toxiproxy URL was given".to_string(),
                );
            };
            let existing = toxiproxy.proxies(log).await?;
            let missing: Vec<_> = proxies
                .iter()
                .filter(|p| !existing.contains_key(*p))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "Toxiproxy at {} has no proxy named {}; create it (POST /proxies or /populate) \
                     or fix the timeline",
                    toxiproxy.url(),
                    missing.join(", ")
                ));
            }
        }
        let known = self
            .processes
            .as_ref()
            .map(|p| p.names())
            .unwrap_or_default();
        if let Some(unknown) = plan.processes().into_iter().find(|p| !known.contains(p)) {
            return Err(format!(
                "the timeline acts on process {unknown:?} but the run controls {}",
                if known.is_empty() {
                    "no process".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
        let regions = self.operators.regions();
        if let Some(region) = plan
            .operator_regions()
            .into_iter()
            .find(|r| !regions.contains(r))
        {
            return Err(format!(
                "the timeline has an operator step on region {region:?} but the run knows the admin API of {}",
                if regions.is_empty() {
                    "no region".to_string()
                } else {
                    regions.join(", ")
                }
            ));
        }
        if plan.uses_providers() && self.providers.is_empty() {
            return Err(
                "the timeline has provider faults but no provider admin URL was given".to_string(),
            );
        }
        let unknown: Vec<_> = plan
            .named_providers()
            .into_iter()
            .filter(|p| !self.providers.contains_key(p))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "the timeline names provider {} but the run only knows {}",
                unknown.join(", "),
                self.provider_names().join(", ")
            ));
        }
        Ok(())
    }

    async fn apply(&self, desired: &Desired, log: &mut Vec<Call>) -> Result<(), String> {
        // Processes first: a provider started again comes back without its faults, which
        // the reconcile below then puts back.
        if let Some(processes) = &self.processes {
            for (name, process) in &desired.processes {
                processes
                    .set(name, *process, log)
                    .await
                    .map_err(|err| format!("process {name}: {err}"))?;
            }
        }
        if let Some(toxiproxy) = &self.toxiproxy {
            toxiproxy.reconcile(&desired.proxies, log).await?;
        }
        self.touched.begin(self.providers.keys());
        for (name, faults) in &desired.providers {
            // A provider that is down or frozen cannot be told; it is told when it is back.
            let reachable = desired
                .processes
                .get(name)
                .is_none_or(|process| process.state == ProcessState::Running);
            let needed = *faults != ProviderFaults::default() || self.touched.contains(name);
            if let Some(admin) = self.providers.get(name)
                && reachable
                && needed
            {
                // Marked before the call: a half-applied change is healed too.
                self.touched.set(name, true);
                admin.reconcile(faults, log).await?;
                self.touched.set(name, *faults != ProviderFaults::default());
            }
        }
        // Commands last: a window's `run` may take the system (and its provider) down.
        self.execs.reconcile(&desired.execs, log).await?;
        self.operators.reconcile(&desired.operators, log).await?;
        Ok(())
    }

    async fn leftovers(&self, plan: &Plan, log: &mut Vec<Call>) -> Result<Option<String>, String> {
        let mut found = Vec::new();
        let mut toxics = None;
        if let Some(toxiproxy) = &self.toxiproxy {
            let used: Vec<String> = plan.proxies().into_iter().collect();
            let left = toxiproxy.leftovers(&used, log).await?;
            if !left.is_empty() {
                found.push(format!(
                    "on Toxiproxy {}: {}",
                    toxiproxy.url(),
                    left.describe()
                ));
                toxics = Some((toxiproxy, left));
            }
        }
        let mut faulty = Vec::new();
        for (name, admin) in &self.providers {
            let faults = admin.read(log).await?;
            if !faults.is_clear() {
                found.push(format!(
                    "on provider {name}: faults {}",
                    faults.fields_set().join(", ")
                ));
                faulty.push(admin);
            }
        }
        if found.is_empty() {
            return Ok(None);
        }
        let what = found.join("; ");
        if self.refuse_leftovers {
            return Err(format!(
                "an earlier run left faults ({what}); heal them with `rig chaos --heal`, or start \
                 without refusing leftovers to heal them first"
            ));
        }
        if let Some((toxiproxy, left)) = toxics {
            toxiproxy.clear(&left, log).await?;
        }
        for admin in faulty {
            admin.clear(log).await?;
        }
        Ok(Some(format!(
            "healed the faults an earlier run left: {what}"
        )))
    }

    async fn heal(&self, log: &mut Vec<Call>) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Err(err) = self.execs.heal(log).await {
            problems.push(format!("exec: {err}"));
        }
        if let Err(err) = self.operators.heal(log).await {
            problems.push(format!("operator: {err}"));
        }
        // Processes first: a provider that is down or frozen cannot clear its faults.
        if let Some(processes) = &self.processes {
            for name in processes.names() {
                if let Err(err) = processes.set(&name, ProcessDesired::RUNNING, log).await {
                    problems.push(format!("process {name}: {err}"));
                }
            }
        }
        if let Some(toxiproxy) = &self.toxiproxy
            && let Err(err) = toxiproxy.heal(log).await
        {
            problems.push(format!("toxiproxy: {err}"));
        }
        for (name, admin) in &self.providers {
            if self.touched.contains(name) {
                match heal_provider(admin, log).await {
                    Ok(()) => self.touched.set(name, false),
                    Err(err) => problems.push(format!("provider {}: {err}", admin.name())),
                }
            } else {
                // No step left a fault on it (one left by an earlier run is cleared too,
                // when it answers): one try, and a provider that is not there is no fault.
                let _ = admin.reconcile(&ProviderFaults::default(), log).await;
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

async fn heal_provider(admin: &ProviderAdmin, log: &mut Vec<Call>) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..PROVIDER_HEAL_ATTEMPTS {
        if attempt > 0 {
            // A struggling provider may need a moment; this is a retry backoff.
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        match admin.reconcile(&Default::default(), log).await {
            Ok(()) => return Ok(()),
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// Why a run stopped early: Ctrl-C, or an abort guard of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbortReason(pub String);

/// How a timeline run ended (errors are returned as [`ChaosError`], after healing).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Every step was applied.
    pub completed: bool,
    /// Set when `cancel` fired.
    pub aborted: Option<AbortReason>,
    /// Steps applied before the end.
    pub steps_applied: usize,
}

fn step_ref(plan: &Plan, step: &Step) -> StepRef {
    let window = plan.window(step.entry);
    StepRef {
        step: step.index,
        entry: step.entry,
        action: step.action.as_str().to_string(),
        kind: window.map_or("", |w| w.fault.kind()).to_string(),
        at_seconds: step.at.as_secs_f64(),
        name: window.and_then(|w| w.name.clone()),
    }
}

/// Executes `plan` on the journal's load clock. `cancel` is the caller's abort: Ctrl-C or an
/// abort guard; whatever happens, the targets are healed before this returns.
pub async fn execute<A: Actuator>(
    plan: &Plan,
    actuator: &A,
    journal: &Journal,
    cancel: impl Future<Output = AbortReason>,
) -> Result<Outcome, ChaosError> {
    tokio::pin!(cancel);
    let clock = journal.clock();
    let providers = actuator.provider_names();
    journal
        .append(
            Event::Planned,
            Detail {
                plan: serde_json::to_value(plan).ok(),
                message: Some(format!("{} steps, seed {}", plan.steps.len(), plan.seed)),
                ..Detail::default()
            },
        )
        .await?;
    let mut aborted = None;
    let mut failure: Option<ChaosError> = None;
    let mut steps_applied = 0;
    let mut log = Vec::new();
    let preflight = tokio::select! {
        biased;
        reason = &mut cancel => Err(Err(reason)),
        checked = actuator.preflight(plan, &mut log) => checked.map_err(Ok),
    };
    // What an earlier run left (it was killed and could not heal): healed and said, first.
    let preflight = match preflight {
        Ok(()) => match actuator.leftovers(plan, &mut log).await {
            Ok(None) => Ok(()),
            Ok(Some(note)) => {
                journal
                    .append(
                        Event::Healed,
                        Detail {
                            calls: std::mem::take(&mut log),
                            message: Some(note),
                            ..Detail::default()
                        },
                    )
                    .await?;
                Ok(())
            }
            Err(message) => Err(Ok(message)),
        },
        other => other,
    };
    match preflight {
        Ok(()) => {}
        Err(Ok(message)) => {
            journal
                .append(
                    Event::Failed,
                    Detail {
                        calls: std::mem::take(&mut log),
                        message: Some(format!("preflight: {message}")),
                        ..Detail::default()
                    },
                )
                .await?;
            failure = Some(ChaosError::Preflight(message));
        }
        Err(Err(reason)) => aborted = Some(reason),
    }
    let mut active = BTreeSet::new();
    if failure.is_none() && aborted.is_none() {
        'run: for (at, group) in plan.groups() {
            tokio::select! {
                biased;
                reason = &mut cancel => { aborted = Some(reason); break 'run; }
                () = tokio::time::sleep_until(clock.start + at) => {}
            }
            for step in &group {
                match step.action {
                    Action::Start => active.insert(step.entry),
                    Action::Stop => active.remove(&step.entry),
                };
                journal
                    .append(
                        Event::Requested,
                        Detail {
                            step: Some(step_ref(plan, step)),
                            ..Detail::default()
                        },
                    )
                    .await?;
            }
            let result = match plan.desired(&active, &providers) {
                Ok(desired) => {
                    log.clear();
                    tokio::select! {
                        biased;
                        reason = &mut cancel => { aborted = Some(reason); break 'run; }
                        applied = actuator.apply(&desired, &mut log) => applied,
                    }
                }
                Err(message) => Err(message),
            };
            let calls = std::mem::take(&mut log);
            match result {
                Ok(()) => {
                    for (i, step) in group.iter().enumerate() {
                        let (calls, message) = if i == 0 {
                            (calls.clone(), None)
                        } else {
                            (
                                Vec::new(),
                                Some(format!("applied with step {}", group[0].index)),
                            )
                        };
                        journal
                            .append(
                                Event::Applied,
                                Detail {
                                    step: Some(step_ref(plan, step)),
                                    calls,
                                    message,
                                    ..Detail::default()
                                },
                            )
                            .await?;
                        steps_applied += 1;
                    }
                }
                Err(message) => {
                    journal
                        .append(
                            Event::Failed,
                            Detail {
                                step: group.first().map(|s| step_ref(plan, s)),
                                calls,
                                message: Some(message.clone()),
                                ..Detail::default()
                            },
                        )
                        .await?;
                    failure = Some(ChaosError::StepFailed {
                        at_seconds: at.as_secs_f64(),
                        message,
                    });
                    break 'run;
                }
            }
        }
    }
    if let Some(reason) = &aborted {
        journal
            .append(
                Event::Aborted,
                Detail {
                    calls: std::mem::take(&mut log),
                    message: Some(reason.0.clone()),
                    ..Detail::default()
                },
            )
            .await?;
    }
    let healed = heal(actuator, journal).await;
    if let Some(err) = failure {
        return Err(match healed {
            Ok(()) => err,
            Err(heal_err) => with_note(err, &format!("the heal afterwards failed too: {heal_err}")),
        });
    }
    healed?;
    Ok(Outcome {
        completed: aborted.is_none(),
        aborted,
        steps_applied,
    })
}

/// Keeps the first error's kind (so the exit code stays right) and adds what happened next.
fn with_note(err: ChaosError, note: &str) -> ChaosError {
    match err {
        ChaosError::Preflight(message) => ChaosError::Preflight(format!("{message}; {note}")),
        ChaosError::StepFailed {
            at_seconds,
            message,
        } => ChaosError::StepFailed {
            at_seconds,
            message: format!("{message}; {note}"),
        },
        other => ChaosError::HealIncomplete(format!("{other}; {note}")),
    }
}

/// Removes every fault from the targets, confirms it, and journals the result (`healed`, or
/// `failed` with what is left).
pub async fn heal<A: Actuator>(actuator: &A, journal: &Journal) -> Result<(), ChaosError> {
    let mut log = Vec::new();
    let result = actuator.heal(&mut log).await;
    match result {
        Ok(()) => {
            journal
                .append(
                    Event::Healed,
                    Detail {
                        calls: log,
                        message: Some("no fault left (read back)".to_string()),
                        ..Detail::default()
                    },
                )
                .await?;
            Ok(())
        }
        Err(message) => {
            journal
                .append(
                    Event::Failed,
                    Detail {
                        calls: log,
                        message: Some(format!("heal: {message}")),
                        ..Detail::default()
                    },
                )
                .await?;
            Err(ChaosError::HealIncomplete(message))
        }
    }
}
