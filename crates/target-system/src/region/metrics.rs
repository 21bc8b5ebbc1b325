//! The region's Prometheus metrics (`rig_region_*`, labelled `region`); label values known
//! up front are exported as 0 from the start.

use prometheus::{Gauge, HistogramVec, IntCounterVec, IntGauge, Registry};

use crate::metrics;
use evidence::RegionId;

#[derive(Debug)]
pub(super) struct RegionMetrics {
    pub(super) registry: Registry,
    pub(super) checkouts: IntCounterVec,
    pub(super) checkout_duration: HistogramVec,
    pub(super) checkouts_in_flight: IntGauge,
    pub(super) provider_calls: IntCounterVec,
    pub(super) provider_call_duration: HistogramVec,
    pub(super) transitions: IntCounterVec,
    pub(super) repair_actions: IntCounterVec,
    pub(super) outbox_published: IntCounterVec,
    pub(super) consumer_deliveries: IntCounterVec,
    pub(super) sink_deliveries: IntCounterVec,
    pub(super) admission_decisions: IntCounterVec,
    pub(super) retries: IntCounterVec,
    pub(super) retry_budget_available: Gauge,
    pub(super) provider_in_flight: IntGauge,
    pub(super) breaker_open: IntGauge,
    pub(super) forwards: IntCounterVec,
    pub(super) orders_open: IntGauge,
    pub(super) oldest_open_age: Gauge,
    pub(super) outbox_unpublished: IntGauge,
    pub(super) outbox_lag: Gauge,
}

impl RegionMetrics {
    pub(super) fn new(region: RegionId) -> Self {
        let metrics = Self::register(region);
        // Label values known up front are exported as 0 from the start: a dashboard's rate
        // of something that has not happened yet is 0, not a gap.
        let known: [(&IntCounterVec, &[&str]); 6] = [
            (
                &metrics.admission_decisions,
                &[
                    "admitted",
                    "rate_limited",
                    "pushback",
                    "queue_timeout",
                    "parked",
                    "rejected_degraded",
                ],
            ),
            (&metrics.retries, &["allowed", "denied"]),
            (&metrics.repair_actions, &["wait"]),
            (&metrics.consumer_deliveries, &["applied", "duplicate"]),
            (
                &metrics.sink_deliveries,
                &["delivered", "refused", "unreachable"],
            ),
            (&metrics.forwards, &["forwarded", "held", "delivered"]),
        ];
        for (counter, values) in known {
            for value in values {
                counter.with_label_values(&[value]);
            }
        }
        metrics
    }

    fn register(region: RegionId) -> Self {
        let registry = metrics::registry(&[("region", region.as_str())]);
        Self {
            checkouts: metrics::counter_vec(
                &registry,
                "rig_region_checkouts_total",
                "Checkout requests answered, by outcome.",
                &["outcome"],
            ),
            checkout_duration: metrics::histogram_vec(
                &registry,
                "rig_region_checkout_duration_seconds",
                "Time to answer a checkout request, by outcome.",
                &["outcome"],
            ),
            checkouts_in_flight: metrics::int_gauge(
                &registry,
                "rig_region_checkouts_in_flight",
                "Checkouts being processed by this region right now.",
            ),
            provider_calls: metrics::counter_vec(
                &registry,
                "rig_region_provider_calls_total",
                "Calls to the payment provider, by operation and outcome.",
                &["op", "outcome"],
            ),
            provider_call_duration: metrics::histogram_vec(
                &registry,
                "rig_region_provider_call_duration_seconds",
                "Duration of calls to the payment provider, by operation.",
                &["op"],
            ),
            transitions: metrics::counter_vec(
                &registry,
                "rig_region_order_transitions_total",
                "Order state transitions made by this region, by target state.",
                &["to"],
            ),
            repair_actions: metrics::counter_vec(
                &registry,
                "rig_region_repair_actions_total",
                "Decisions of the repair worker, by action.",
                &["action"],
            ),
            outbox_published: metrics::counter_vec(
                &registry,
                "rig_region_outbox_events_published_total",
                "Outbox events delivered and marked published, by event type.",
                &["event_type"],
            ),
            consumer_deliveries: metrics::counter_vec(
                &registry,
                "rig_region_consumer_deliveries_total",
                "Deliveries seen by the confirmation consumer: applied or duplicate.",
                &["result"],
            ),
            sink_deliveries: metrics::counter_vec(
                &registry,
                "rig_region_sink_deliveries_total",
                "Outbox events the relay sent to the event sink: delivered, refused (an error answer) or unreachable (no answer).",
                &["result"],
            ),
            admission_decisions: metrics::counter_vec(
                &registry,
                "rig_region_admission_decisions_total",
                "Admission decisions for new checkouts: admitted, shed (by reason), parked, rejected.",
                &["decision"],
            ),
            retries: metrics::counter_vec(
                &registry,
                "rig_region_payment_retries_total",
                "Provider charge retries asked of the retry budget: allowed or denied.",
                &["result"],
            ),
            retry_budget_available: metrics::gauge(
                &registry,
                "rig_region_retry_budget_available",
                "Retries the retry budget would allow right now.",
            ),
            provider_in_flight: metrics::int_gauge(
                &registry,
                "rig_region_provider_calls_in_flight",
                "Charge calls to the provider in flight from this region.",
            ),
            breaker_open: metrics::int_gauge(
                &registry,
                "rig_region_breaker_open",
                "1 while the provider breaker is open or half-open (payment-degraded mode), else 0.",
            ),
            forwards: metrics::counter_vec(
                &registry,
                "rig_region_forwards_total",
                "Checkouts for orders owned by the peer region: forwarded, held (owner unreachable), delivered later.",
                &["result"],
            ),
            orders_open: metrics::int_gauge(
                &registry,
                "rig_region_orders_pending",
                "Orders owned by this region not yet in a final state (confirmed or failed safely).",
            ),
            oldest_open_age: metrics::gauge(
                &registry,
                "rig_region_oldest_pending_age_seconds",
                "Age of the oldest order not yet in a final state (0 when none).",
            ),
            outbox_unpublished: metrics::int_gauge(
                &registry,
                "rig_region_outbox_unpublished",
                "Outbox events written but not yet delivered.",
            ),
            outbox_lag: metrics::gauge(
                &registry,
                "rig_region_outbox_lag_seconds",
                "Age of the oldest undelivered outbox event (0 when none).",
            ),
            registry,
        }
    }
}
