//! The checkout workload: every arrival is a customer of the checkout system, behaving like
//! the one in the duplicate-checkout incident ("checkout timed out, I clicked again"), and
//! every customer lands in the **client history**: what it was told, request by request.
//!
//! A customer (a pure function of the run seed and its arrival index) picks an entry
//! region by weight, a cart (lines, Zipf-popular skus, quantities) and gets the order id
//! `<run_tag>-<arrival index>`. It sends `POST /v1/checkout` with that id as
//! `Idempotency-Key`; on a timeout, connection error, 5xx or shed answer (`429`/`503`) it
//! sends the same request again (same key, same body) after a full-jitter backoff, never
//! sooner than `Retry-After-Ms` / `Retry-After`; a configured share of customers clicks
//! twice (a concurrent duplicate); after a `202` it polls `GET /v1/orders/{id}` with a
//! growing interval until the order is final or the poll budget is spent.
//!
//! What the customer saw decides its outcome (the verifier relies on exactly this):
//! `confirmed` if any answer said `order_confirmed`; else `failed` if any said
//! `failed_safely`; else `rejected` only if every request was answered `429`/`503`; else
//! `unknown` (timeouts, connection errors, 5xx, a `202` never resolved, `422`). `dropped`
//! when the engine never started it. The engine counts the same classes (confirmed = ok),
//! so the summary's totals are the history's outcome counts.
//!
//! # History schema
//! One row per arrival (`history_arrivals`) and per request (`history_requests`), in a
//! SQLite file or PostgreSQL tables; timestamps are wall-clock microseconds since the Unix
//! epoch, as in the stores, so the verifier can join them. The schema is the evidence
//! contract's (`evidence::history`).
//!
//! # Layout
//! - [`spec`]: [`CheckoutSpec`], a profile's `[workload]` table, checked into a [`Plan`].
//! - [`customer`]: the seeded [`CustomerModel`]: region, cart, customer id, double-click.
//! - [`answer`]: [`Answer`] per request and the pure [`ClientOutcome::decide`] rule.
//! - `client`: a lean keep-alive HTTP/1.1 pool per target, shared by every lane.
//! - `journey`: one customer's requests: retries, the double-click, polls.
//! - [`history`]: [`HistorySink`] and the batched writer on its own thread; per-request
//!   statistics ([`RequestStats`]) and what was written ([`HistoryStats`]).
//! - `workload`: the [`CheckoutWorkload`] the engine runs.
//! - `run`: [`CheckoutRun`], one run from spec to [`CheckoutReport`].

pub mod answer;
mod client;
pub mod customer;
pub mod history;
mod journey;
mod run;
mod shared;
pub mod spec;
mod workload;

pub use answer::{Answer, ClientOutcome, RequestKind, RetryAfter};
pub use customer::{Customer, CustomerModel};
pub use history::{HistorySink, HistoryStats, RequestStats};
pub use run::{CheckoutReport, CheckoutRun};
pub use spec::{CheckoutSpec, Plan, PollSpec, RetrySpec};
pub use workload::CheckoutWorkload;
