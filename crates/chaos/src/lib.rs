//! The chaos layer of the Checkout Chaos Rig: faults on a timeline, reproducible from a seed,
//! always rolled back, and journaled next to the load.
//!
//! It talks to the network through a Toxiproxy-compatible API (the real Toxiproxy, or the
//! embedded server in this crate) and to the simulated payment provider through its
//! `/admin/faults` HTTP API. It knows nothing of checkout.
//!
//! # Layout
//! - [`server`]: the embedded Toxiproxy-compatible server ([`serve`], [`EmbeddedToxiproxy`]);
//!   its HTTP API is in `api`, its data plane (proxies, links, toxic chains) in `proxy`.
//! - [`toxics`]: the seven toxics, one file each, with attributes and units.
//! - [`toxiproxy`]: [`ToxiproxyControl`], the Toxiproxy client (the `toxiproxy_rust` crate on
//!   a blocking thread), with per-proxy desired-state reconcile and read-back.
//! - [`provider`]: [`ProviderAdmin`] and [`ProviderFaults`], the provider's fault API.
//! - [`timeline`]: `[[chaos]]` entries ([`Timeline`]), validated, expanded from a seed into a
//!   [`Plan`].
//! - [`desired`]: the state every target should be in at one instant.
//! - [`executor`]: [`execute`] a plan on the load clock; [`heal`] always runs at the end.
//! - [`journal`]: the append-only JSONL [`Journal`] (fsync per record).
//!
//! Its seeded generator, its duration grammar and the journal's record type are the evidence
//! contract's (`evidence::seed`, `evidence::duration`, `evidence::journal`).

mod api;
pub mod desired;
mod error;
pub mod exec;
pub mod executor;
pub mod fuzzing;
pub mod journal;
mod operator;
pub mod provider;
mod proxy;
pub mod server;
pub mod timeline;
pub mod toxics;
pub mod toxiproxy;
mod windows;

pub use api::VERSION as TOXIPROXY_API_VERSION;
pub use desired::{Desired, ExecSpec, ProcessDesired, ProcessState, ProxyDesired};
pub use error::ChaosError;
pub use exec::ExecRunner;
pub use executor::{
    AbortReason, Actuator, BoxFuture, Outcome, ProcessControl, Targets, execute, heal,
};
pub use journal::{Call, Detail, Event, Journal, LoadClock, Record, left_disabled, read_journal};
pub use operator::{OperatorAction, OperatorRunner, OperatorSpec};
pub use provider::{ProviderAdmin, ProviderFaults};
pub use proxy::collection::{ProxyConfig, ProxyJson};
pub use server::{EmbeddedToxiproxy, ServerOptions, ToxiproxyServer, serve};
pub use timeline::{
    Entry, Fault, PROCESSES, PartitionDirection, PartitionMode, Plan, SINK, Timeline,
};
pub use toxics::{Stream, Toxic, ToxicJson, ToxicSpec};
pub use toxiproxy::{Leftovers, ProxyState, TOXIC_PREFIX, ToxiproxyControl, run_marker};
