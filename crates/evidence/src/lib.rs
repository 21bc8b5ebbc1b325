//! The evidence contract: what a run leaves behind and what `rig verify` reads. Every crate
//! that writes or reads a durable record goes through here; this crate depends on no other
//! crate of the workspace.
//!
//! # Layout
//! - [`store`]: store URLs ([`StoreUrl`]) and [`Db`] (SQLite or PostgreSQL through sqlx), the
//!   migrations of the provider and region stores, and the schema version a build knows
//!   (a store written by a newer one is refused by name).
//! - [`history`]: the client history's schema and how to open one for reading.
//! - [`rows`]: the rows the verifier reads, one struct per table.
//! - [`queries`]: named queries for readers outside the system (drain, report series).
//! - [`reads`]: the verifier's statements, by name.
//! - [`run_params`]: [`RunParams`], the bounds the system says it ran with.
//! - [`order_state`]: the order state machine, one enum and the pure [`transition`].
//! - [`ids`]: [`RegionId`] and [`owner_of`].
//! - [`journal`]: the chaos journal's [`journal::Record`].
//! - [`time`]: the records' time axis (`*_at_us`) and RFC 3339.
//! - [`duration`]: the one duration grammar of profiles and flags.
//! - [`seed`]: the one seeded random number generator.
//! - [`trace`]: correlation ids: the W3C `traceparent` and the request id every record carries.
//! - [`word`]: [`Word`], a column value from a small vocabulary, shared instead of allocated;
//!   [`Key`], an order id kept inline.

pub mod duration;
pub mod history;
pub mod ids;
pub mod journal;
pub mod order_state;
pub mod queries;
pub mod reads;
pub mod rows;
pub mod run_params;
pub mod seed;
pub mod store;
pub mod time;
pub mod trace;
pub mod word;

pub use history::HistorySource;
pub use ids::{RegionId, owner_of};
pub use order_state::{OrderState, transition};
pub use run_params::{RunParams, RunParamsError};
pub use store::{Access, Db, Dialect, StoreError, StoreName, StoreUrl};
pub use word::{Key, Word};
