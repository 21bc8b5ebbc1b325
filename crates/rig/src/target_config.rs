//! Loads the reference system's parameters from an optional file plus `--set target.*`.

use std::path::Path;

use target_system::TargetConfig;
use toml::{Table, Value};

use crate::exit::BadInput;
use crate::overrides;

/// Reads `[target]` from `file` (a profile, or a file that is itself the target table),
/// applies `--set target.x=y` overrides, deserialises and validates.
pub fn load(file: Option<&Path>, sets: &[String]) -> Result<TargetConfig, BadInput> {
    let mut doc = Table::new();
    let origin = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|err| {
                BadInput(format!(
                    "--config {}: cannot read it: {err}",
                    path.display()
                ))
            })?;
            let parsed: Table = toml::from_str(&text)
                .map_err(|err| BadInput(format!("{}: not valid TOML: {err}", path.display())))?;
            let target = match parsed.get("target") {
                Some(Value::Table(target)) => target.clone(),
                Some(other) => {
                    return Err(BadInput(format!(
                        "{}: `target` is a {}, expected a [target] table",
                        path.display(),
                        other.type_str()
                    )));
                }
                None => parsed,
            };
            doc.insert("target".into(), Value::Table(target));
            format!("{} [target]", path.display())
        }
        None => "[target]".to_string(),
    };
    let parsed_sets = sets
        .iter()
        .map(|s| overrides::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(bad) = parsed_sets.iter().find(|o| o.path[0] != "target") {
        return Err(BadInput(format!(
            "--set {}: this command only takes target.* keys (e.g. --set target.repair.max_pending_age_seconds=60)",
            bad.text
        )));
    }
    overrides::apply(&mut doc, &parsed_sets)?;
    let target = doc.remove("target").unwrap_or(Value::Table(Table::new()));
    let config: TargetConfig = target
        .try_into()
        .map_err(|err: toml::de::Error| BadInput(format!("{origin}: {}", err.message())))?;
    config
        .validate()
        .map_err(|err| BadInput(format!("{origin}: {err}")))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--set` reaches nested parameters and unknown keys are refused by name.
    #[test]
    fn sets_and_unknown_keys() {
        let config = load(None, &["target.retry_budget_typo=1".into()]).unwrap_err();
        assert!(config.0.contains("retry_budget_typo"), "{}", config.0);
        let config = load(None, &["target.payment.deadline_ms=1500".into()]).unwrap();
        assert_eq!(config.payment.deadline_ms, 1500);
        let invalid = load(None, &["target.payment.deadline_ms=0".into()]).unwrap_err();
        assert!(
            invalid.0.contains("target.payment.deadline_ms = 0"),
            "{}",
            invalid.0
        );
        let wrong_prefix = load(None, &["run.seed=1".into()]).unwrap_err();
        assert!(wrong_prefix.0.contains("target.*"), "{}", wrong_prefix.0);
    }
}
