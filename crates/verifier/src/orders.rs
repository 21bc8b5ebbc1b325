//! The report's orders section, from the client history: how long customers were told
//! `pending` (the distribution), the slowest customers (from the intended send time to the
//! last answer) and the longest-pending ones, each with its order's timeline
//! ([`crate::explain`]) so a reader can pick any of them.

use evidence::reads;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::VerifyError;
use crate::explain::{self, Explanation};
use crate::report::FaultWindow;
use crate::sources::Stores;

/// Upper bounds of the pending-time buckets, in seconds (the last bucket is open).
const BUCKETS: [f64; 7] = [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0];

/// The orders section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Orders {
    /// Customers told `pending` at least once.
    pub pending_customers: u64,
    /// Of them, never told a final outcome.
    pub never_told_final: u64,
    /// Seconds from the first `pending` to the first final answer (or the last answer).
    pub pending_p50_seconds: f64,
    pub pending_p90_seconds: f64,
    pub pending_p99_seconds: f64,
    pub pending_max_seconds: f64,
    /// (`"< 1 s"`, count), ... over the pending times.
    pub pending_buckets: Vec<(String, u64)>,
    /// The slowest customers, slowest first.
    pub slowest: Vec<OrderRef>,
    /// The longest-pending customers, longest first.
    pub longest_pending: Vec<OrderRef>,
}

/// One order in a table, with its story.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderRef {
    pub order_id: String,
    /// The figure the table sorts by, in seconds.
    pub seconds: f64,
    /// What the customer ended with (`confirmed`, `failed`, `unknown`, ...), or for a
    /// pending one whether it was told a final outcome.
    pub outcome: String,
    pub timeline: Option<Explanation>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The section, `None` without a client history (or one without requests). `top` orders per
/// table, each explained.
pub async fn orders(
    stores: &Stores,
    faults: &[FaultWindow],
    load_start_us: Option<i64>,
    top: usize,
) -> Result<Option<Orders>, VerifyError> {
    let Some(history) = &stores.history else {
        return Ok(None);
    };
    if !stores.requests {
        return Ok(None);
    }
    let mut pending: Vec<(f64, String, bool)> = Vec::new();
    let mut rows = sqlx::query(reads::PENDING_SPANS).fetch(&history.pool);
    while let Some(row) = rows.try_next().await? {
        let first: i64 = row.try_get("first_pending")?;
        let final_at: Option<i64> = row.try_get("told_final")?;
        let last: i64 = row.try_get("last_answer")?;
        let told = final_at.is_some();
        let until = final_at.unwrap_or(last);
        let seconds = (until - first).max(0) as f64 / 1e6;
        pending.push((seconds, row.try_get("order_id")?, told));
    }
    drop(rows);
    let mut times: Vec<f64> = pending.iter().map(|p| p.0).collect();
    times.sort_by(f64::total_cmp);
    let mut buckets: Vec<(String, u64)> = Vec::new();
    let mut lower = 0.0;
    for upper in BUCKETS {
        let n = times.iter().filter(|t| **t >= lower && **t < upper).count() as u64;
        buckets.push((format!("{lower:.0}-{upper:.0} s"), n));
        lower = upper;
    }
    buckets.push((
        format!(">= {lower:.0} s"),
        times.iter().filter(|t| **t >= lower).count() as u64,
    ));
    pending.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let never_told_final = pending.iter().filter(|p| !p.2).count() as u64;
    let mut longest_pending = Vec::new();
    for (seconds, order_id, told) in pending.iter().take(top) {
        longest_pending.push(OrderRef {
            timeline: explain::explain(stores, order_id, faults, load_start_us)
                .await
                .ok(),
            order_id: order_id.clone(),
            seconds: *seconds,
            outcome: if *told {
                "told a final outcome".into()
            } else {
                "never told a final outcome".into()
            },
        });
    }
    let slow = sqlx::query(reads::SLOWEST_CUSTOMERS)
        .bind(i64::try_from(top).unwrap_or(i64::MAX))
        .fetch_all(&history.pool)
        .await?;
    let mut slowest = Vec::new();
    for row in &slow {
        let order_id: String = row.try_get("order_id")?;
        let intended: i64 = row.try_get("intended_at_us")?;
        let finished: i64 = row.try_get("finished_at_us")?;
        slowest.push(OrderRef {
            timeline: explain::explain(stores, &order_id, faults, load_start_us)
                .await
                .ok(),
            order_id,
            seconds: (finished - intended) as f64 / 1e6,
            outcome: row.try_get("outcome")?,
        });
    }
    Ok(Some(Orders {
        pending_customers: pending.len() as u64,
        never_told_final,
        pending_p50_seconds: percentile(&times, 0.50),
        pending_p90_seconds: percentile(&times, 0.90),
        pending_p99_seconds: percentile(&times, 0.99),
        pending_max_seconds: times.last().copied().unwrap_or(0.0),
        pending_buckets: buckets,
        slowest,
        longest_pending,
    }))
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_are_nearest_rank() {
        // Proves: the p-th percentile is the smallest value with at least p of the values at
        // or below it (no interpolation, so every figure is a time a customer really saw).
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[3.0], 0.01), 3.0);
    }
}
