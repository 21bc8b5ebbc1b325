//! Windows that act when they start and undo it when they end (`exec` commands, `operator`
//! steps), reconciled towards the set active at each step. A window leaves the applied set
//! only when its end succeeded: a failed (or cancelled) end is tried again by the next heal.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::journal::Call;

/// What a window does when it starts and when it ends.
pub(crate) trait Undoable: Sync {
    type Spec: Clone + Send + Sync;

    fn start(
        &self,
        entry: usize,
        spec: &Self::Spec,
        log: &mut Vec<Call>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    fn end(
        &self,
        entry: usize,
        spec: &Self::Spec,
        log: &mut Vec<Call>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// The windows started and not ended yet, by entry.
pub(crate) type Applied<S> = Arc<Mutex<BTreeMap<usize, S>>>;

/// Ends each applied window no longer `active`, then starts each that became active.
pub(crate) async fn reconcile<U: Undoable>(
    actor: &U,
    applied: &Applied<U::Spec>,
    active: &BTreeMap<usize, U::Spec>,
    log: &mut Vec<Call>,
) -> Result<(), String> {
    let mut applied = applied.lock().await;
    let ended: Vec<usize> = applied
        .keys()
        .filter(|entry| !active.contains_key(entry))
        .copied()
        .collect();
    let mut problems = Vec::new();
    for entry in ended {
        let Some(spec) = applied.get(&entry).cloned() else {
            continue;
        };
        match actor.end(entry, &spec, log).await {
            Ok(()) => {
                applied.remove(&entry);
            }
            Err(err) => problems.push(err),
        }
    }
    for (entry, spec) in active {
        if applied.contains_key(entry) {
            continue;
        }
        applied.insert(*entry, spec.clone());
        if let Err(err) = actor.start(*entry, spec, log).await {
            problems.push(err);
        }
    }
    joined(problems)
}

/// Ends every window still applied.
pub(crate) async fn heal<U: Undoable>(
    actor: &U,
    applied: &Applied<U::Spec>,
    log: &mut Vec<Call>,
) -> Result<(), String> {
    let mut applied = applied.lock().await;
    let mut problems = Vec::new();
    for (entry, spec) in applied.clone() {
        match actor.end(entry, &spec, log).await {
            Ok(()) => {
                applied.remove(&entry);
            }
            Err(err) => problems.push(err),
        }
    }
    joined(problems)
}

fn joined(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
