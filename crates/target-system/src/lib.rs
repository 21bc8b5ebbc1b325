//! The reference checkout system under test: a simulated payment provider and two region
//! services over durable stores, embodying the checkout ADR (one customer intent creates at
//! most one successful charge and one clear order outcome). The records it writes, and the
//! stores they live in, are the evidence contract's (`evidence`).
//!
//! # Layout
//! - [`config`]: one struct with every parameter ([`TargetConfig`]).
//! - [`provider`]: the simulated payment provider (idempotent charges, ledger, faults).
//! - [`region`]: a region service (checkout, orders, carts, inventory, payment, outbox,
//!   repair worker).
//! - [`sink`]: the rig's event sink (the consumer the outbox relay delivers to).
//! - [`system`]: starts a whole system (provider + regions) on bound listeners.
//! - [`clock`]: identifiers for the records the system creates.
//! - [`trace`]: the trace context of the work in progress (W3C `traceparent`, request ids).
//! - [`metrics`]: Prometheus registries and helpers.
//! - [`testkit`]: stores for tests (SQLite in a temporary directory, PostgreSQL in a fresh
//!   namespace from `TEST_DATABASE_URL`).

pub mod clock;
pub mod config;
pub mod defects;
pub mod fuzzing;
pub mod metrics;
pub mod provider;
pub mod region;
pub mod sink;
pub mod system;
pub mod testkit;
pub mod trace;

pub use config::TargetConfig;
pub use defects::Defect;
pub use provider::Provider;
pub use region::Region;
