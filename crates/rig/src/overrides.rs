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

/// Applies overrides to `doc`, creating tables as needed. A numeric part indexes an
/// existing array of tables from 0: `workload.phases.0.for=5m` changes the first phase,
/// `chaos.2.at=30s` the third `[[chaos]]` window.
pub fn apply(doc: &mut Table, overrides: &[Override]) -> Result<(), BadInput> {
    for o in overrides {
        let (last, parents) = o.path.split_last().expect("parse refuses empty keys");
        let mut table = &mut *doc;
        let mut depth = 0;
        while depth < parents.len() {
            let entry = table
                .entry(parents[depth].clone())
                .or_insert_with(|| Value::Table(Table::new()));
            let entry = match entry {
                Value::Array(items) => {
                    // The next part indexes the array.
                    depth += 1;
                    let index = o.path[depth].as_str();
                    let slot = element(items, index, o, depth)?;
                    if depth == parents.len() {
                        return Err(BadInput(format!(
                            "--set {}: set one key of the element, e.g. {}.at=30s",
                            o.text,
                            o.path.join(".")
                        )));
                    }
                    slot
                }
                other => other,
            };
            table = match entry {
                Value::Table(inner) => inner,
                other => return Err(not_table(o, depth, other.type_str())),
            };
            depth += 1;
        }
        table.insert(last.clone(), o.value.clone());
    }
    Ok(())
}

/// The element of an array that a numeric key part names.
fn element<'a>(
    items: &'a mut [Value],
    index: &str,
    o: &Override,
    depth: usize,
) -> Result<&'a mut Value, BadInput> {
    let count = items.len();
    index
        .parse::<usize>()
        .ok()
        .and_then(|i| items.get_mut(i))
        .ok_or_else(|| {
            BadInput(format!(
                "--set {}: {} is an array of {count}; index it from 0 to {}, e.g. {}.0.{}",
                o.text,
                o.path[..depth].join("."),
                count.saturating_sub(1),
                o.path[..depth].join("."),
                o.path.last().map_or("key", String::as_str),
            ))
        })
}

fn not_table(o: &Override, depth: usize, kind: &str) -> BadInput {
    BadInput(format!(
        "--set {}: {} is a {kind} value, not a table",
        o.text,
        o.path[..=depth].join(".")
    ))
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

    /// A numeric part indexes an array of tables; an index out of range, or one that is not
    /// a number, is refused naming the array's length.
    #[test]
    fn indexes_arrays_of_tables() {
        let mut doc: Table = toml::from_str(
            "[[workload.phases]]\nrate = 5\n[[workload.phases]]\nrate = 6\n[[chaos]]\nat = \"1s\"\n",
        )
        .unwrap();
        let sets = ["workload.phases.1.rate=9", "chaos.0.at=\"2s\""].map(|s| parse(s).unwrap());
        apply(&mut doc, &sets).unwrap();
        assert_eq!(doc["workload"]["phases"][0]["rate"].as_integer(), Some(5));
        assert_eq!(doc["workload"]["phases"][1]["rate"].as_integer(), Some(9));
        assert_eq!(doc["chaos"][0]["at"].as_str(), Some("2s"));
        for (set, says) in [
            (
                "workload.phases.2.rate=1",
                "an array of 2; index it from 0 to 1",
            ),
            ("workload.phases.x.rate=1", "an array of 2"),
            ("chaos.at=1", "an array of 1"),
            ("chaos.0=1", "set one key of the element"),
        ] {
            let err = apply(&mut doc, &[parse(set).unwrap()]).unwrap_err();
            assert!(err.0.contains(says), "{set}: {}", err.0);
        }
    }
}
