//! The data plane of the embedded Toxiproxy-compatible server.
//!
//! # Layout
//! - [`collection`]: the set of named proxies and every operation the HTTP API offers on it
//!   (create, populate, update, enable/disable, toxics, reset), with Toxiproxy's errors.
//! - [`listener`]: one proxy's accept loop; it owns the listening socket and its connections.
//! - [`link`]: one direction of one connection (plain copy, or the toxic path).
//! - [`chain`]: the toxics of one link with their per-link state.

pub(crate) mod chain;
pub(crate) mod collection;
pub(crate) mod link;
pub(crate) mod listener;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::toxics::{CloseMode, ToxicSpec};
use link::Conn;

/// A toxic as the proxy holds it; `version` changes on every create or update, so links can
/// tell a toxic they already run from a new or changed one.
#[derive(Debug, Clone)]
pub(crate) struct ToxicEntry {
    pub spec: ToxicSpec,
    pub version: u64,
}

/// What a proxy's connections share: the toxic set and the registry of live connections.
///
/// Both locks are taken only when a connection opens or closes and when toxics change,
/// never per chunk.
#[derive(Debug)]
pub(crate) struct Shared {
    pub name: String,
    pub seed: u64,
    toxics: Mutex<Arc<Vec<ToxicEntry>>>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_conn: AtomicU64,
    next_version: AtomicU64,
}

impl Shared {
    pub(crate) fn new(name: &str, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            seed,
            toxics: Mutex::new(Arc::new(Vec::new())),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            next_version: AtomicU64::new(1),
        })
    }

    /// The current toxics (upstream ones first, each stream in the order they were added).
    pub(crate) fn toxics(&self) -> Arc<Vec<ToxicEntry>> {
        self.toxics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the toxic set, then tells every live connection to pick it up.
    pub(crate) fn update_toxics<R>(&self, change: impl FnOnce(&mut Vec<ToxicEntry>) -> R) -> R {
        let result = {
            let mut guard = self.toxics.lock().unwrap_or_else(PoisonError::into_inner);
            let mut next = guard.as_ref().clone();
            let result = change(&mut next);
            next.sort_by_key(|e| e.spec.stream);
            *guard = Arc::new(next);
            result
        };
        // After the store: a connection registered later reads the new set itself.
        for conn in self.live_connections() {
            conn.poke();
        }
        result
    }

    pub(crate) fn next_version(&self) -> u64 {
        self.next_version.fetch_add(1, Ordering::Relaxed)
    }

    fn register(&self) -> Arc<Conn> {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(id));
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, conn.clone());
        conn
    }

    fn deregister(&self, id: u64) {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    fn live_connections(&self) -> Vec<Arc<Conn>> {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn close_all(&self, mode: CloseMode) {
        for conn in self.live_connections() {
            conn.request_close(mode);
        }
    }
}
