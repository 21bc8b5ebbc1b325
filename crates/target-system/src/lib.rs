//! The reference checkout system under test: a simulated payment provider and two region
//! services over durable stores, embodying the checkout ADR (one customer intent creates at
//! most one successful charge and one clear order outcome).
//!
//! # Layout
//! - [`config`]: one struct with every parameter ([`TargetConfig`]).
//! - [`order_state`]: the order state machine, one enum and a pure transition function.
//! - [`store`]: SQLite / PostgreSQL stores through sqlx, one code path, per-dialect migrations.
//! - [`provider`]: the simulated payment provider (idempotent charges, ledger, faults).
//! - [`region`]: a region service (checkout, orders, carts, inventory, payment, outbox,
//!   repair worker).
//! - [`system`]: starts a whole system (provider + regions) on bound listeners.
//! - [`clock`]: wall-clock timestamps for records, seeded draws, stable hashing.
//! - [`metrics`]: Prometheus registries and helpers.
//! - [`testkit`]: stores for tests (SQLite in a temporary directory, PostgreSQL in a fresh
//!   namespace from `TEST_DATABASE_URL`).

pub mod clock;
pub mod config;
pub mod defects;
pub mod metrics;
pub mod order_state;
pub mod provider;
pub mod region;
pub mod store;
pub mod system;
pub mod testkit;

pub use config::TargetConfig;
pub use defects::Defect;
pub use order_state::{OrderState, transition};
pub use provider::Provider;
pub use region::{Region, RegionId};
pub use store::{Access, Db, StoreError, StoreName, StoreUrl};
