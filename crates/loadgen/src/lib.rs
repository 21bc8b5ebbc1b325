//! Open-loop load generator.
//!
//! A load profile compiles to a [`Schedule`]: data that says when every arrival is due. The
//! [`Engine`] starts each arrival at its intended time whatever happened to earlier ones
//! (it never waits for a response before the next start), hands it to a [`Workload`], and
//! measures latency from the *intended* time, so a stalled target cannot hide its stall
//! (no coordinated omission). Everything lands in HdrHistograms per phase × operation ×
//! outcome, written each second to an HdrHistogram interval log and summarised at the end.
//!
//! The library never prints or exits: progress goes to an [`Observer`] the caller passes in.
//!
//! # Layout
//! - [`phase`]: what users write: [`PhaseSpec`] (`hold`, `ramp`, `step`, `spike`),
//!   [`ArrivalProcess`], [`ScheduleSpec`].
//! - [`schedule`]: [`Schedule::compile`] validates and compiles; [`Schedule::arrivals`]
//!   yields [`Arrival`]s lazily, for one [`Shard`].
//! - [`shard`]: `--shard i/N`, a deterministic 1/N slice.
//! - [`workload`]: the [`Workload`] trait and its [`Dispatch`] / [`Completion`] / [`Outcome`].
//! - [`http`]: the generic HTTP workload: one HTTP/1.1 keep-alive connection per lane, the
//!   request encoded once and responses parsed with `httparse`.
//! - [`checkout`]: the checkout workload: customers with retries, double-clicks and polls
//!   ([`CheckoutSpec`], [`CheckoutRun`]), and the client history they leave
//!   ([`HistorySink`], schema in the module docs).
//! - [`engine`]: the open-loop [`Engine`]: admission at intended times, the in-flight
//!   cap, lanes that perform arrivals, the drain.
//! - [`thread`]: [`on_dedicated_thread`] gives the engine a runtime (and a core) of its own.
//! - `pacer`: sub-millisecond waits, so arrivals are not released in 1 ms bursts.
//! - `recorder` / [`report`]: histograms while running; the [`Report`] and its [`SelfCheck`].
//! - [`observer`]: [`Observer`] of each closed interval (progress, interval log).
//! - [`hlog`]: `.hlog` writing ([`HlogWriter`]) and exact merging ([`MergedLog`]).
//! - [`summary`]: the JSON [`Summary`] (schema in `schema/summary.schema.json`) and its text.
//! - [`duration`], [`rng`]: durations as people write them; the seeded [`SeededRng`].

pub mod checkout;
pub mod duration;
pub mod engine;
mod error;
pub mod fuzzing;
pub mod hlog;
pub mod http;
pub mod metrics;
pub mod observer;
mod pacer;
pub mod phase;
mod recorder;
pub mod report;
pub mod schedule;
pub mod shard;
pub mod summary;
pub mod thread;
pub mod workload;

pub use checkout::{CheckoutReport, CheckoutRun, CheckoutSpec, HistorySink};
pub use duration::{format_duration, parse_duration};
pub use engine::{Engine, EngineConfig};
pub use error::LoadgenError;
pub use evidence::seed::SeededRng;
pub use hlog::{HlogWriter, MergedLog};
pub use http::{HttpSpec, HttpWorkload, classify_status};
pub use metrics::LoadMetrics;
pub use observer::{IntervalView, Observer, Progress};
pub use phase::{ArrivalProcess, PhaseSpec, ScheduleSpec};
pub use report::new_histogram;
pub use report::{Report, SelfCheck};
pub use schedule::{Arrival, Schedule};
pub use shard::Shard;
pub use summary::{SUMMARY_SCHEMA, Summary};
pub use thread::on_dedicated_thread;
pub use workload::{Completion, Dispatch, Outcome, Workload};

/// The JSON Schema of [`Summary`], as shipped in `schema/summary.schema.json`.
pub const SUMMARY_JSON_SCHEMA: &str = include_str!("../schema/summary.schema.json");
