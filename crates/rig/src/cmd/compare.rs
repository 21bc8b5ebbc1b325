//! `rig compare RUN_A RUN_B`: two runs side by side — the parameters that differ, goodput,
//! latency percentiles, retry amplification, thresholds and verdicts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use crate::exit::{BadInput, Verdict};

/// Two runs side by side (e.g. one retry budget against another).
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The first run directory.
    pub run_a: PathBuf,
    /// The second run directory.
    pub run_b: PathBuf,
}

fn summary(dir: &Path) -> anyhow::Result<Value> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|err| {
        BadInput(format!(
            "{}: cannot read it ({err}); fix: give directories `rig run` wrote",
            path.display()
        ))
    })?;
    Ok(serde_json::from_str(&text)
        .map_err(|err| BadInput(format!("{}: not valid JSON ({err})", path.display())))?)
}

/// Every leaf of a JSON value, by dotted path.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

fn ms(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |s| format!("{:.1} ms", s * 1e3))
}

fn row(out: &mut String, label: &str, a: String, b: String) {
    out.push_str(&format!("{label:<34} {a:>22} {b:>22}\n"));
}

/// The comparison table.
pub fn render(a: &Value, b: &Value) -> String {
    let mut out = String::new();
    let name = |s: &Value| s["run_id"].as_str().unwrap_or("?").to_string();
    row(&mut out, "", name(a), name(b));
    row(
        &mut out,
        "verdict",
        a["verdict"].as_str().unwrap_or("?").into(),
        b["verdict"].as_str().unwrap_or("?").into(),
    );
    out.push_str("\nparameters that differ\n");
    let (mut pa, mut pb) = (BTreeMap::new(), BTreeMap::new());
    flatten("target", &a["parameters"], &mut pa);
    flatten("target", &b["parameters"], &mut pb);
    flatten("seed", &a["seed"], &mut pa);
    flatten("seed", &b["seed"], &mut pb);
    let keys: std::collections::BTreeSet<_> = pa.keys().chain(pb.keys()).cloned().collect();
    let mut differ = 0;
    for key in keys {
        let (va, vb) = (
            pa.get(&key).cloned().unwrap_or("-".into()),
            pb.get(&key).cloned().unwrap_or("-".into()),
        );
        if va != vb {
            differ += 1;
            row(&mut out, &format!("  {key}"), va, vb);
        }
    }
    if differ == 0 {
        out.push_str("  (none)\n");
    }
    out.push_str("\nload\n");
    let t = |s: &Value, k: &str| s["load"]["totals"][k].clone();
    for key in [
        "scheduled",
        "ok",
        "failed",
        "rejected",
        "unknown",
        "dropped",
    ] {
        row(
            &mut out,
            &format!("  {}", if key == "ok" { "confirmed" } else { key }),
            t(a, key).to_string(),
            t(b, key).to_string(),
        );
    }
    let f = |s: &Value, k: &str| t(s, k).as_f64().map_or("-".into(), |v| format!("{v:.1}/s"));
    row(
        &mut out,
        "  achieved",
        f(a, "achieved_rate"),
        f(b, "achieved_rate"),
    );
    row(
        &mut out,
        "  goodput (confirmed)",
        f(a, "goodput"),
        f(b, "goodput"),
    );
    for p in ["p50", "p90", "p99", "p99_9", "max"] {
        row(
            &mut out,
            &format!("  latency {}", p.replace("p99_9", "p99.9")),
            ms(&a["load"]["latency_seconds"][p]),
            ms(&b["load"]["latency_seconds"][p]),
        );
    }
    out.push_str("\nprovider charge calls\n");
    let r = |s: &Value, k: &str| s["retries"][k].to_string();
    row(
        &mut out,
        "  first tries",
        r(a, "first_tries"),
        r(b, "first_tries"),
    );
    row(&mut out, "  retries", r(a, "retries"), r(b, "retries"));
    let amp = |s: &Value| {
        s["retries"]["amplification"]
            .as_f64()
            .map_or("-".into(), |v| format!("{v:.3}x"))
    };
    row(&mut out, "  retry amplification", amp(a), amp(b));
    out.push_str("\ninvariants\n");
    let verdicts = |s: &Value| -> BTreeMap<String, String> {
        s["invariants"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                (
                    v["invariant"].as_str().unwrap_or("?").to_string(),
                    format!(
                        "{} ({})",
                        v["status"].as_str().unwrap_or("?"),
                        v["violations"]
                    ),
                )
            })
            .collect()
    };
    let (va, vb) = (verdicts(a), verdicts(b));
    for key in va
        .keys()
        .chain(vb.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        row(
            &mut out,
            &format!("  {key}"),
            va.get(key).cloned().unwrap_or("-".into()),
            vb.get(key).cloned().unwrap_or("-".into()),
        );
    }
    let thresholds = |s: &Value| -> BTreeMap<String, String> {
        s["thresholds"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    format!(
                        "{} {}",
                        t["key"].as_str().unwrap_or("?"),
                        t["expression"].as_str().unwrap_or("")
                    ),
                    format!(
                        "{} ({})",
                        if t["passed"].as_bool() == Some(true) {
                            "ok"
                        } else {
                            "FAIL"
                        },
                        t["value"]
                            .as_f64()
                            .map_or("-".into(), |v| format!("{v:.3}"))
                    ),
                )
            })
            .collect()
    };
    let (ta, tb) = (thresholds(a), thresholds(b));
    if !ta.is_empty() || !tb.is_empty() {
        out.push_str("\nthresholds\n");
        for key in ta
            .keys()
            .chain(tb.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            row(
                &mut out,
                &format!("  {key}"),
                ta.get(key).cloned().unwrap_or("-".into()),
                tb.get(key).cloned().unwrap_or("-".into()),
            );
        }
    }
    out
}

pub async fn run(args: CompareArgs) -> anyhow::Result<Verdict> {
    let a = summary(&args.run_a)?;
    let b = summary(&args.run_b)?;
    print!("{}", render(&a, &b));
    Ok(Verdict::Pass)
}
