//! Entry points for the fuzz targets (`fuzz/`) and their regression tests: each takes
//! untrusted bytes, and must return without panicking, hanging or allocating without bound
//! whatever the bytes are.

use serde_json::Value;

use crate::TargetConfig;
use crate::region::api::{parse_checkout, parse_items};

/// A region's checkout body: the first line is the `Idempotency-Key` header, the rest the
/// body of `POST /checkout`, validated as the region does; the same body is also read as a
/// cart (`PUT /carts/{id}`), whose items go through the same validation. What is accepted
/// must be within the limits.
pub fn checkout_body(data: &[u8]) {
    let config = TargetConfig::default();
    let limits = &config.checkout;
    let (key, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[][..], data),
    };
    let key = std::str::from_utf8(key).ok();
    if let Ok(request) = parse_checkout(key, body, &config) {
        assert_eq!(Some(request.order_id.as_str()), key);
        assert!(request.order_id.len() <= limits.max_id_len);
        assert!(request.customer_id.len() <= limits.max_id_len);
        check_items(&request.items, &config);
    }
    if let Ok(cart) = serde_json::from_slice::<Value>(body)
        && let Ok(items) = parse_items(cart.get("items"), &config)
    {
        check_items(&items, &config);
    }
}

fn check_items(items: &[crate::region::api::LineItem], config: &TargetConfig) {
    let limits = &config.checkout;
    assert!(!items.is_empty() && items.len() <= limits.max_items);
    for pair in items.windows(2) {
        assert!(pair[0].sku < pair[1].sku, "lines sorted, each sku once");
    }
    for item in items {
        assert!((1..=limits.max_qty).contains(&item.qty));
        assert!(config.price_cents(&item.sku).is_some());
    }
}
