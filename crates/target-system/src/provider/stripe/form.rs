//! Stripe's request encoding: `application/x-www-form-urlencoded` pairs whose keys nest with
//! brackets (`metadata[order_id]=o-1`, `payment_method_data[card][number]=4242...`,
//! `expand[0]=latest_charge`, `expand[]=latest_charge`), decoded into [`Params`]. The same
//! decoding serves query strings (`GET /v1/payment_intents?limit=3`).
//!
//! Bounded: at most [`MAX_PAIRS`] pairs, [`MAX_DEPTH`] levels of brackets and
//! [`MAX_VALUE_CHARS`] characters per value.

use std::collections::BTreeMap;

use serde_json::Value;

pub const MAX_PAIRS: usize = 256;
pub const MAX_DEPTH: usize = 5;
pub const MAX_VALUE_CHARS: usize = 5_000;

/// One parameter: a text value, or a map of nested parameters (arrays are maps with the
/// indices as keys, as Stripe encodes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Map(BTreeMap<String, Param>),
}

/// Why a body could not be decoded: the message, and the parameter it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    pub message: String,
    pub param: Option<String>,
}

/// The decoded parameters of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, Param>);

impl Params {
    /// Decodes `text` (a form body or a query string).
    pub fn parse(text: &str) -> Result<Self, FormError> {
        let mut root = BTreeMap::new();
        for (n, pair) in text.split('&').filter(|p| !p.is_empty()).enumerate() {
            if n == MAX_PAIRS {
                return Err(FormError {
                    message: format!("more than {MAX_PAIRS} parameters in one request"),
                    param: None,
                });
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = rig_http::percent_decode(key);
            let value = rig_http::percent_decode(value);
            let path = split_key(&key)?;
            if value.chars().count() > MAX_VALUE_CHARS {
                return Err(FormError {
                    message: format!("{key} is longer than {MAX_VALUE_CHARS} characters"),
                    param: Some(key.clone()),
                });
            }
            insert(&mut root, &path, value, &key)?;
        }
        Ok(Self(root))
    }

    /// A top-level text value.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.0.get(name) {
            Some(Param::Text(text)) => Some(text),
            _ => None,
        }
    }

    /// A nested text value (`path = ["metadata", "order_id"]`).
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        let (first, rest) = path.split_first()?;
        let mut at = self.0.get(*first)?;
        for name in rest {
            match at {
                Param::Map(map) => at = map.get(*name)?,
                Param::Text(_) => return None,
            }
        }
        match at {
            Param::Text(text) => Some(text),
            Param::Map(_) => None,
        }
    }

    /// A top-level map of text values (`metadata`), if it is one.
    pub fn text_map(&self, name: &str) -> Result<BTreeMap<String, String>, FormError> {
        match self.0.get(name) {
            None => Ok(BTreeMap::new()),
            // `metadata=` (empty) clears it.
            Some(Param::Text(text)) if text.is_empty() => Ok(BTreeMap::new()),
            Some(Param::Map(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Param::Text(text) => Ok((k.clone(), text.clone())),
                    Param::Map(_) => Err(FormError {
                        message: format!("{name}[{k}] must be a string"),
                        param: Some(format!("{name}[{k}]")),
                    }),
                })
                .collect(),
            Some(Param::Text(_)) => Err(FormError {
                message: format!("{name} must be a map, e.g. {name}[key]=value"),
                param: Some(name.to_string()),
            }),
        }
    }

    /// The names given at the top level.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The parameters as JSON with sorted keys: equal for equal requests however their
    /// pairs were ordered (what an idempotency key's first request is compared by).
    pub fn canonical(&self) -> String {
        fn value(param: &Param) -> Value {
            match param {
                Param::Text(text) => Value::String(text.clone()),
                Param::Map(map) => {
                    Value::Object(map.iter().map(|(k, v)| (k.clone(), value(v))).collect())
                }
            }
        }
        Value::Object(self.0.iter().map(|(k, v)| (k.clone(), value(v))).collect()).to_string()
    }
}

/// `a[b][c]` → `["a", "b", "c"]`; `a[]` → `["a", ""]` (append).
fn split_key(key: &str) -> Result<Vec<String>, FormError> {
    let bad = |why: &str| FormError {
        message: format!("parameter name {key:?} {why}"),
        param: Some(key.to_string()),
    };
    let (base, mut rest) = match key.find('[') {
        Some(at) => (&key[..at], &key[at..]),
        None => (key, ""),
    };
    if base.is_empty() {
        return Err(bad("is empty"));
    }
    let mut path = vec![base.to_string()];
    while !rest.is_empty() {
        let Some(inner) = rest.strip_prefix('[') else {
            return Err(bad("has text after a closing bracket"));
        };
        let Some(end) = inner.find(']') else {
            return Err(bad("has an unclosed bracket"));
        };
        path.push(inner[..end].to_string());
        rest = &inner[end + 1..];
        if path.len() > MAX_DEPTH {
            return Err(bad(&format!("nests deeper than {MAX_DEPTH} levels")));
        }
    }
    Ok(path)
}

fn insert(
    map: &mut BTreeMap<String, Param>,
    path: &[String],
    value: String,
    key: &str,
) -> Result<(), FormError> {
    let conflict = || FormError {
        message: format!("{key} is given both as a value and as a map"),
        param: Some(key.to_string()),
    };
    let (first, rest) = path.split_first().expect("a key has a name");
    // `a[]` appends: the next index.
    let name = if first.is_empty() {
        map.len().to_string()
    } else {
        first.clone()
    };
    if rest.is_empty() {
        if matches!(map.get(&name), Some(Param::Map(_))) {
            return Err(conflict());
        }
        map.insert(name, Param::Text(value));
        return Ok(());
    }
    let entry = map
        .entry(name)
        .or_insert_with(|| Param::Map(BTreeMap::new()));
    match entry {
        Param::Map(inner) => insert(inner, rest, value, key),
        Param::Text(_) => Err(conflict()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bracketed keys nest, `+` and `%20` are spaces, arrays take indices or appends, and
    /// the canonical form ignores the pairs' order.
    #[test]
    fn bracketed_pairs_nest_and_compare_by_content() {
        let p = Params::parse(
            "amount=1200&currency=usd&metadata[order_id]=o%2D1&metadata[note]=a+b%20c\
             &payment_method_data[card][number]=4242&expand[]=x&expand[]=y",
        )
        .unwrap();
        assert_eq!(p.text("amount"), Some("1200"));
        assert_eq!(p.text_at(&["metadata", "order_id"]), Some("o-1"));
        assert_eq!(p.text_at(&["metadata", "note"]), Some("a b c"));
        assert_eq!(
            p.text_at(&["payment_method_data", "card", "number"]),
            Some("4242")
        );
        assert_eq!(p.text_at(&["expand", "1"]), Some("y"));
        assert_eq!(p.text_map("metadata").unwrap().len(), 2);
        let q = Params::parse("metadata[note]=a%20b+c&currency=usd&amount=1200&metadata[order_id]=o-1&payment_method_data[card][number]=4242&expand[0]=x&expand[1]=y").unwrap();
        assert_eq!(p.canonical(), q.canonical());
        assert_ne!(
            p.canonical(),
            Params::parse("amount=1300").unwrap().canonical()
        );
    }

    /// Malformed names, conflicts and oversized input are errors naming the parameter.
    #[test]
    fn malformed_input_is_refused_with_the_parameter() {
        for (body, param) in [
            ("a[b=1", "a[b"),
            ("a[b]x=1", "a[b]x"),
            ("=1", ""),
            ("a=1&a[b]=2", "a[b]"),
            ("a[b]=2&a=1", "a"),
            ("a[1][2][3][4][5]=1", "a[1][2][3][4][5]"),
        ] {
            let err = Params::parse(body).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{body}: {err:?}");
        }
        let many = vec!["a=1"; MAX_PAIRS + 1].join("&");
        assert!(Params::parse(&many).is_err());
        let long = format!("a={}", "x".repeat(MAX_VALUE_CHARS + 1));
        assert!(Params::parse(&long).is_err());
        assert!(
            Params::parse("metadata=x")
                .unwrap()
                .text_map("metadata")
                .is_err()
        );
        assert!(Params::parse("").unwrap().names().next().is_none());
    }
}
