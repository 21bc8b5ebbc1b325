//! Who arrives: every customer is a pure function of the run seed and its arrival index, so
//! the same seed gives the same customers (entry region, cart, customer id, double-click) in
//! every run and on every shard, and a different seed gives different ones.

use std::time::Duration;

use serde::Serialize;

use crate::SeededRng;
use crate::checkout::spec::Plan;

/// One customer, drawn by [`CustomerModel::customer`].
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    /// Index into the targets (0 = region `a`, 1 = region `b`).
    pub region: usize,
    /// The `n` of `c-<n>`.
    pub customer: u64,
    /// (sku index, quantity), distinct skus, in the order they were picked.
    pub items: Vec<(usize, u32)>,
    /// `Some(gap)` when this customer clicks twice, the second click `gap` after the first.
    pub double_click: Option<Duration>,
    /// Seeds this customer's backoff jitter (drawn as the journey unfolds).
    pub jitter_seed: u64,
}

/// Everything a draw needs: the skus and their popularity, the mix, the seed.
#[derive(Debug, Clone)]
pub struct CustomerModel {
    /// Mixed from the run seed once; each customer's generator is mixed from it and the index.
    base: u64,
    skus: Vec<String>,
    /// Cumulative popularity weights of `skus` (last = total).
    cumulative: Vec<f64>,
    /// Cumulative entry-region weights (last = 1).
    regions: Vec<f64>,
    items_min: u32,
    items_max: u32,
    qty_max: u32,
    customers: u64,
    double_click_fraction: f64,
    double_click_gap_max: Duration,
}

impl CustomerModel {
    /// The model for `plan` over `skus` (most popular first; at least one).
    pub fn new(plan: &Plan, skus: Vec<String>) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=skus.len())
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(plan.sku_zipf_exponent);
                total
            })
            .collect();
        let mut sum = 0.0;
        let regions = plan
            .region_weights
            .iter()
            .map(|w| {
                sum += w;
                sum
            })
            .collect();
        Self {
            base: SeededRng::for_stream(plan.schedule.seed, "checkout-customers").next_u64(),
            skus,
            cumulative,
            regions,
            items_min: plan.items_min,
            items_max: plan.items_max,
            qty_max: plan.qty_max,
            customers: plan.customers,
            double_click_fraction: plan.double_click_fraction,
            double_click_gap_max: plan.double_click_gap_max,
        }
    }

    /// The skus, most popular first.
    pub fn skus(&self) -> &[String] {
        &self.skus
    }

    /// The generator of arrival `index`: independent of every other arrival's (SplitMix
    /// outputs for distinct inputs), so no two customers share a stream.
    fn rng(&self, index: u64) -> SeededRng {
        SeededRng::new(SeededRng::new(self.base ^ index).next_u64())
    }

    /// Customer number `index` of the schedule. The draws happen in a fixed order, so adding
    /// a knob later cannot reshuffle earlier ones without a visible change here.
    pub fn customer(&self, index: u64) -> Customer {
        let mut rng = self.rng(index);
        let u = rng.next_open01();
        let region = self
            .regions
            .iter()
            .position(|c| u < *c)
            .unwrap_or(self.regions.len() - 1);
        let customer = rng.next_u64() % self.customers;
        let most = (self.items_max as usize).min(self.skus.len()) as u32;
        let least = self.items_min.min(most);
        let lines = least + (rng.next_u64() % u64::from(most - least + 1)) as u32;
        let mut items: Vec<(usize, u32)> = Vec::with_capacity(lines as usize);
        for _ in 0..lines {
            let sku = self.pick_sku(&mut rng, &items);
            let qty = 1 + (rng.next_u64() % u64::from(self.qty_max)) as u32;
            items.push((sku, qty));
        }
        let clicks_twice = rng.next_open01() < self.double_click_fraction;
        let gap_ns = self.double_click_gap_max.as_nanos() as f64 * rng.next_open01();
        Customer {
            region,
            customer,
            items,
            double_click: clicks_twice.then(|| Duration::from_nanos(gap_ns as u64)),
            jitter_seed: rng.next_u64(),
        }
    }

    /// A sku not yet in `taken`, by popularity: a draw on the cumulative weights, redrawn
    /// when it hits a taken one; after a few misses (a cart holding most of the popular
    /// skus) the most popular free sku.
    fn pick_sku(&self, rng: &mut SeededRng, taken: &[(usize, u32)]) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        for _ in 0..16 {
            let u = rng.next_open01() * total;
            let sku = self.cumulative.partition_point(|c| *c <= u);
            let sku = sku.min(self.skus.len() - 1);
            if !taken.iter().any(|(t, _)| *t == sku) {
                return sku;
            }
        }
        (0..self.skus.len())
            .find(|s| !taken.iter().any(|(t, _)| t == s))
            .unwrap_or(0)
    }

    /// The checkout body of `customer` for `order_id`, as the region contract spells it.
    /// The customer's cart as JSON, `[{"sku","qty"}]`: what the history keeps of it.
    pub fn cart(&self, customer: &Customer) -> String {
        let lines: Vec<serde_json::Value> = customer
            .items
            .iter()
            .map(|(sku, qty)| serde_json::json!({"sku": self.skus[*sku], "qty": qty}))
            .collect();
        serde_json::Value::Array(lines).to_string()
    }

    pub fn body(&self, order_id: &str, customer: &Customer) -> Vec<u8> {
        #[derive(Serialize)]
        struct Line<'a> {
            sku: &'a str,
            qty: u32,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            order_id: &'a str,
            customer_id: &'a str,
            items: Vec<Line<'a>>,
        }
        let customer_id = customer_id(customer.customer);
        let body = Body {
            order_id,
            customer_id: &customer_id,
            items: customer
                .items
                .iter()
                .map(|(sku, qty)| Line {
                    sku: &self.skus[*sku],
                    qty: *qty,
                })
                .collect(),
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// `c-<n>`.
pub fn customer_id(n: u64) -> String {
    format!("c-{n}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScheduleSpec;
    use crate::checkout::spec::CheckoutSpec;

    fn model(seed: u64, tweak: impl Fn(&mut CheckoutSpec)) -> CustomerModel {
        let mut spec = CheckoutSpec {
            phases: ScheduleSpec::parse_phases("hold rate=10 for=1s").unwrap(),
            seed,
            double_click_fraction: 0.2,
            ..CheckoutSpec::default()
        };
        tweak(&mut spec);
        let skus = (1..=6).map(|i| format!("sku-{i}")).collect();
        CustomerModel::new(&spec.validate(2).unwrap(), skus)
    }

    fn customers(model: &CustomerModel) -> Vec<Customer> {
        (0..500).map(|i| model.customer(i)).collect()
    }

    /// The seed matters: the same seed draws the same 500 customers, another seed draws
    /// different ones (regions, carts, double-clicks alike).
    #[test]
    fn same_seed_same_customers_other_seed_others() {
        let a = customers(&model(7, |_| {}));
        assert_eq!(a, customers(&model(7, |_| {})));
        let b = customers(&model(8, |_| {}));
        assert_ne!(a, b);
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(differ > 450, "only {differ} of 500 customers differ");
        // Neighbouring arrivals do not share a stream (no shifted copies).
        assert_ne!(a[0].items, a[1].items);
    }

    /// Draws follow the mix: region weights 3:1, ~20 % double-clicks, carts within bounds
    /// with distinct skus, and Zipf popularity (the first sku far more often than the last).
    #[test]
    fn draws_follow_the_mix() {
        let model = model(1, |s| s.region_weights = vec![3.0, 1.0]);
        let all: Vec<Customer> = (0..20_000).map(|i| model.customer(i)).collect();
        let in_a = all.iter().filter(|c| c.region == 0).count() as f64 / 20_000.0;
        assert!((in_a - 0.75).abs() < 0.02, "region a share {in_a}");
        let doubles = all.iter().filter(|c| c.double_click.is_some()).count() as f64 / 20_000.0;
        assert!((doubles - 0.2).abs() < 0.02, "double-click share {doubles}");
        let mut per_sku = [0u32; 6];
        for c in &all {
            assert!((1..=3).contains(&c.items.len()));
            let mut skus: Vec<usize> = c.items.iter().map(|(s, _)| *s).collect();
            skus.sort_unstable();
            skus.dedup();
            assert_eq!(skus.len(), c.items.len(), "distinct skus: {c:?}");
            assert!(c.items.iter().all(|(_, q)| (1..=2).contains(q)));
            assert!(
                c.double_click
                    .is_none_or(|g| g <= Duration::from_millis(10))
            );
            for (s, _) in &c.items {
                per_sku[*s] += 1;
            }
        }
        assert!(per_sku[0] > 2 * per_sku[5], "zipf: {per_sku:?}");
        let uniform = super::tests::model(1, |s| s.sku_zipf_exponent = 0.0);
        let mut flat = [0u32; 6];
        for i in 0..20_000 {
            for (s, _) in uniform.customer(i).items {
                flat[s] += 1;
            }
        }
        let (lo, hi) = (flat.iter().min().unwrap(), flat.iter().max().unwrap());
        assert!(f64::from(*hi) / f64::from(*lo) < 1.15, "uniform: {flat:?}");
    }

    /// The body is the region contract's shape, with the customer's own lines.
    #[test]
    fn body_has_the_contract_shape() {
        let model = model(3, |_| {});
        let customer = model.customer(42);
        let body: serde_json::Value =
            serde_json::from_slice(&model.body("t-42", &customer)).unwrap();
        assert_eq!(body["order_id"], "t-42");
        assert_eq!(body["customer_id"], customer_id(customer.customer));
        assert_eq!(
            body["items"].as_array().unwrap().len(),
            customer.items.len()
        );
        assert!(
            body["items"][0]["sku"]
                .as_str()
                .unwrap()
                .starts_with("sku-")
        );
    }
}
