//! `--set a.b=c` overrides applied to a TOML document before it is deserialised, so a
//! profile, a config file and the command line all go through one validation.

use toml::{Table, Value};

use crate::exit::BadInput;

/// One `--set key.path=value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub path: Vec<String>,
    pub value: Value,
    pub text: String,
}

/// Parses `key.path=value`; the value is TOML (`3`, `0.5`, `true`, `"x"`, `[1, 2]`) and
/// falls back to a plain string.
pub fn parse(text: &str) -> Result<Override, BadInput> {
    let Some((key, raw)) = text.split_once('=') else {
        return Err(BadInput(format!(
            "--set {text:?}: expected key=value, e.g. --set target.payment.deadline_ms=1500"
        )));
    };
    let path: Vec<String> = key
        .trim()
        .split('.')
        .map(|p| p.trim().to_string())
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(BadInput(format!(
            "--set {text:?}: the key {key:?} has an empty part; use dotted names like target.repair.batch"
        )));
    }
    let raw = raw.trim();
    let value = toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()));
    Ok(Override {
        path,
        value,
        text: text.to_string(),
    })
}

/// Applies overrides to `doc`, creating tables as needed.
pub fn apply(doc: &mut Table, overrides: &[Override]) -> Result<(), BadInput> {
    for o in overrides {
        let (last, parents) = o.path.split_last().expect("parse refuses empty keys");
        let mut table = &mut *doc;
        for (depth, part) in parents.iter().enumerate() {
            let entry = table
                .entry(part.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            table = match entry {
                Value::Table(inner) => inner,
                other => {
                    return Err(BadInput(format!(
                        "--set {}: {} is a {} value, not a table",
                        o.text,
                        o.path[..=depth].join("."),
                        other.type_str()
                    )));
                }
            };
        }
        table.insert(last.clone(), o.value.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values parse as TOML where they can, as strings otherwise; nested tables are created.
    #[test]
    fn applies_typed_values() {
        let mut doc = Table::new();
        let sets = [
            "target.payment.deadline_ms=1500",
            "target.seed = 9",
            "target.payment.currency=EUR",
            "x.y=[1, 2]",
        ]
        .map(|s| parse(s).unwrap());
        apply(&mut doc, &sets).unwrap();
        assert_eq!(
            doc["target"]["payment"]["deadline_ms"].as_integer(),
            Some(1500)
        );
        assert_eq!(doc["target"]["seed"].as_integer(), Some(9));
        assert_eq!(doc["target"]["payment"]["currency"].as_str(), Some("EUR"));
        assert_eq!(doc["x"]["y"].as_array().map(Vec::len), Some(2));
    }

    /// Malformed overrides are refused with the fix.
    #[test]
    fn refuses_malformed() {
        assert!(parse("nokey").unwrap_err().0.contains("key=value"));
        assert!(parse("a..b=1").unwrap_err().0.contains("empty part"));
        let mut doc = Table::new();
        apply(&mut doc, &[parse("a=1").unwrap()]).unwrap();
        let err = apply(&mut doc, &[parse("a.b=2").unwrap()]).unwrap_err();
        assert!(err.0.contains("not a table"), "{}", err.0);
    }
}
