//! The region's request bodies and their validation. Every refusal names the field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::TargetConfig;

/// One line of an order or a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub sku: String,
    pub qty: i64,
}

/// A validated checkout request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckoutRequest {
    pub order_id: String,
    pub customer_id: String,
    /// Sorted by sku, no duplicates: the canonical form (and the lock order for reservations).
    pub items: Vec<LineItem>,
}

impl CheckoutRequest {
    /// What a repeated `Idempotency-Key` must match for the request to be "the same".
    pub fn fingerprint(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Σ price × qty, or the sku that is not for sale here.
    pub fn amount_cents(&self, config: &TargetConfig) -> Result<i64, Invalid> {
        let mut total: i64 = 0;
        for (i, item) in self.items.iter().enumerate() {
            let price = config.price_cents(&item.sku).ok_or_else(|| {
                Invalid::new(
                    &format!("items[{i}].sku"),
                    &format!(
                        "unknown sku {:?}; see GET /admin/state for what can be bought",
                        item.sku
                    ),
                )
            })?;
            total = price
                .checked_mul(item.qty)
                .and_then(|line| total.checked_add(line))
                .ok_or_else(|| Invalid::new("items", "the order total overflows"))?;
        }
        Ok(total)
    }
}

/// A refused request: the field at fault and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: &str, message: &str) -> Self {
        Self {
            field: field.to_string(),
            message: message.to_string(),
        }
    }
}

/// Parses and validates a checkout body against the header key and the limits.
pub fn parse_checkout(
    key: Option<&str>,
    body: &[u8],
    config: &TargetConfig,
) -> Result<CheckoutRequest, Invalid> {
    let limits = &config.checkout;
    let key = key.filter(|k| !k.is_empty()).ok_or_else(|| {
        Invalid::new(
            "Idempotency-Key",
            "send the header Idempotency-Key: <order_id> so a retry cannot create a second order",
        )
    })?;
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        Invalid::new(
            "body",
            &format!("malformed JSON ({err}); send {{\"order_id\",\"customer_id\",\"items\":[{{\"sku\",\"qty\"}}]}}"),
        )
    })?;
    let object = value
        .as_object()
        .ok_or_else(|| Invalid::new("body", "send a JSON object"))?;
    if let Some(unknown) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "order_id" | "customer_id" | "items"))
    {
        return Err(Invalid::new(
            unknown,
            "unknown field; the fields are order_id, customer_id, items",
        ));
    }
    let order_id = id_field(object.get("order_id"), "order_id", limits.max_id_len)?;
    let customer_id = id_field(object.get("customer_id"), "customer_id", limits.max_id_len)?;
    if key != order_id {
        return Err(Invalid::new(
            "Idempotency-Key",
            &format!("Idempotency-Key {key:?} must equal order_id {order_id:?}"),
        ));
    }
    let items = parse_items(object.get("items"), config)?;
    Ok(CheckoutRequest {
        order_id,
        customer_id,
        items,
    })
}

/// Validates `items`: 1..=max_items lines, known skus, 1..=max_qty each, no repeated sku.
pub fn parse_items(value: Option<&Value>, config: &TargetConfig) -> Result<Vec<LineItem>, Invalid> {
    let limits = &config.checkout;
    let array = value
        .ok_or_else(|| Invalid::new("items", "missing; send a list of {\"sku\",\"qty\"}"))?
        .as_array()
        .ok_or_else(|| Invalid::new("items", "must be a list of {\"sku\",\"qty\"}"))?;
    if array.is_empty() || array.len() > limits.max_items {
        return Err(Invalid::new(
            "items",
            &format!("has {} lines; send 1 to {}", array.len(), limits.max_items),
        ));
    }
    let mut items = Vec::with_capacity(array.len());
    for (i, entry) in array.iter().enumerate() {
        let object = entry
            .as_object()
            .ok_or_else(|| Invalid::new(&format!("items[{i}]"), "must be {\"sku\",\"qty\"}"))?;
        if let Some(unknown) = object.keys().find(|k| !matches!(k.as_str(), "sku" | "qty")) {
            return Err(Invalid::new(
                &format!("items[{i}].{unknown}"),
                "unknown field; a line has sku and qty",
            ));
        }
        let sku = object
            .get("sku")
            .and_then(Value::as_str)
            .ok_or_else(|| Invalid::new(&format!("items[{i}].sku"), "missing or not a string"))?;
        if config.price_cents(sku).is_none() {
            return Err(Invalid::new(
                &format!("items[{i}].sku"),
                &format!("unknown sku {sku:?}; see GET /admin/state for what can be bought"),
            ));
        }
        let qty = object
            .get("qty")
            .and_then(Value::as_i64)
            .ok_or_else(|| Invalid::new(&format!("items[{i}].qty"), "missing or not an integer"))?;
        if qty <= 0 || qty > limits.max_qty {
            return Err(Invalid::new(
                &format!("items[{i}].qty"),
                &format!("qty = {qty}; use 1 to {}", limits.max_qty),
            ));
        }
        items.push(LineItem {
            sku: sku.to_string(),
            qty,
        });
    }
    items.sort_by(|a, b| a.sku.cmp(&b.sku));
    if let Some(pair) = items.windows(2).find(|pair| pair[0].sku == pair[1].sku) {
        return Err(Invalid::new(
            "items",
            &format!(
                "sku {:?} appears twice; put the total qty on one line",
                pair[0].sku
            ),
        ));
    }
    Ok(items)
}

fn id_field(value: Option<&Value>, field: &str, max_len: usize) -> Result<String, Invalid> {
    let text = value
        .ok_or_else(|| Invalid::new(field, "missing"))?
        .as_str()
        .ok_or_else(|| Invalid::new(field, "must be a string"))?;
    if text.is_empty() || text.len() > max_len {
        return Err(Invalid::new(
            field,
            &format!("must be 1 to {max_len} characters"),
        ));
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(Invalid::new(
            field,
            "use only letters, digits and - _ . : (it appears in URLs and keys)",
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(key: Option<&str>, body: &str) -> Result<CheckoutRequest, Invalid> {
        parse_checkout(key, body.as_bytes(), &TargetConfig::default())
    }

    /// A good body parses into canonical (sku-sorted) form with the right total.
    #[test]
    fn parses_canonical_form() {
        let req = parse(
            Some("o-1"),
            r#"{"order_id":"o-1","customer_id":"c-1","items":[{"sku":"sku-2","qty":1},{"sku":"sku-1","qty":2}]}"#,
        )
        .unwrap();
        assert_eq!(req.items[0].sku, "sku-1");
        assert_eq!(
            req.amount_cents(&TargetConfig::default()).unwrap(),
            2 * 1_200 + 2_500
        );
        let reordered = parse(
            Some("o-1"),
            r#"{"order_id":"o-1","customer_id":"c-1","items":[{"sku":"sku-1","qty":2},{"sku":"sku-2","qty":1}]}"#,
        )
        .unwrap();
        assert_eq!(req.fingerprint(), reordered.fingerprint());
    }

    /// Each kind of bad input is refused with the field that is wrong.
    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                None,
                r#"{"order_id":"o","customer_id":"c","items":[{"sku":"sku-1","qty":1}]}"#,
                "Idempotency-Key",
            ),
            (
                Some("x"),
                r#"{"order_id":"o","customer_id":"c","items":[{"sku":"sku-1","qty":1}]}"#,
                "Idempotency-Key",
            ),
            (
                Some("o"),
                r#"{"order_id":"o","customer_id":"c","items":[{"sku":"nope","qty":1}]}"#,
                "items[0].sku",
            ),
            (
                Some("o"),
                r#"{"order_id":"o","customer_id":"c","items":[{"sku":"sku-1","qty":0}]}"#,
                "items[0].qty",
            ),
            (
                Some("o"),
                r#"{"order_id":"o","customer_id":"c","items":[{"sku":"sku-1","qty":-3}]}"#,
                "items[0].qty",
            ),
            (
                Some("o"),
                r#"{"order_id":"o","customer_id":"c","items":[]}"#,
                "items",
            ),
            (
                Some("o"),
                r#"{"order_id":"o","items":[{"sku":"sku-1","qty":1}]}"#,
                "customer_id",
            ),
            (
                Some("o"),
                r#"{"order_id":"o","customer_id":"c","items":[{"sku":"sku-1","qty":1}],"x":1}"#,
                "x",
            ),
            (
                Some("o"),
                r#"{"order_id":"o","customer_id":"c","items":[{"sku":"sku-1","qty":1},{"sku":"sku-1","qty":1}]}"#,
                "items",
            ),
            (Some("o"), r#"{"order_id":"o""#, "body"),
            (
                Some("o/1"),
                r#"{"order_id":"o/1","customer_id":"c","items":[{"sku":"sku-1","qty":1}]}"#,
                "order_id",
            ),
        ];
        for (key, body, field) in cases {
            let err = parse(key, body).unwrap_err();
            assert_eq!(err.field, field, "{body}: {}", err.message);
        }
    }
}
