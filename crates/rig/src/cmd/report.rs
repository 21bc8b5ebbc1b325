//! `rig report`: `RUN_DIR` re-renders a run's `report.html` from its `summary.json` and
//! `verdict.json` and prints its `summary.txt`; `--merge A.hlog B.hlog ...` adds up interval
//! logs (e.g. of `rig load --shard i/N` runs) per tag, exactly, and prints the merged counts
//! and percentiles.

use std::path::PathBuf;

use clap::Args;
use loadgen::{MergedLog, Outcome};

use crate::exit::{BadInput, Verdict};

/// Re-render a run's report, or merge `.hlog` files.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run directory to re-render (report.html from summary.json and verdict.json).
    pub run_dir: Option<PathBuf>,
    /// Merge these interval logs and print merged percentiles per tag.
    #[arg(long, num_args = 1.., value_name = "HLOG")]
    pub merge: Vec<PathBuf>,
}

pub async fn run(args: ReportArgs) -> anyhow::Result<Verdict> {
    if args.merge.is_empty() {
        let Some(dir) = args.run_dir else {
            return Err(BadInput(
                "give a run directory (rig report runs/...) or --merge FILES".into(),
            )
            .into());
        };
        return rerender(&dir);
    }
    if args.run_dir.is_some() {
        return Err(BadInput(
            "give either RUN_DIR or --merge FILES, not both; fix: drop one".into(),
        )
        .into());
    }
    let mut merged = MergedLog::new();
    for path in &args.merge {
        let bytes = std::fs::read(path).map_err(|err| {
            BadInput(format!(
                "--merge {}: cannot read it ({err}); fix: give existing .hlog files",
                path.display()
            ))
        })?;
        merged
            .add_log(&path.display().to_string(), &bytes)
            .map_err(|err| BadInput(err.to_string()))?;
    }
    print!("{}", render(&merged));
    Ok(Verdict::Pass)
}

/// Re-renders `report.html` and prints `summary.txt`; the verdict is the run's.
fn rerender(dir: &std::path::Path) -> anyhow::Result<Verdict> {
    let read = |name: &str| -> anyhow::Result<serde_json::Value> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|err| {
            BadInput(format!(
                "{}: cannot read it ({err}); fix: give a directory `rig run` wrote",
                path.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|err| BadInput(format!("{}: not valid JSON ({err})", path.display())).into())
    };
    let summary = read("summary.json")?;
    let verdict = read("verdict.json")?;
    std::fs::write(
        dir.join("report.html"),
        crate::cmd::run::render_html(&summary, &verdict),
    )?;
    if let Ok(text) = std::fs::read_to_string(dir.join("summary.txt")) {
        print!("{text}");
    }
    eprintln!("rig report: wrote {}", dir.join("report.html").display());
    Ok(match summary["verdict"].as_str() {
        Some("pass") => Verdict::Pass,
        _ => Verdict::Fail,
    })
}

fn render(merged: &MergedLog) -> String {
    let mut out = format!(
        "merged {} interval log(s), {} interval lines (values: completion - intended, ms)\n\n",
        merged.logs, merged.intervals
    );
    out.push_str(&format!(
        "{:<36} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "tag", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    ));
    for (tag, h) in &merged.tags {
        let at = |q: f64| {
            if h.is_empty() {
                "-".to_string()
            } else {
                format!("{:.3}", h.value_at_quantile(q) as f64 / 1e6)
            }
        };
        let max = if h.is_empty() {
            "-".to_string()
        } else {
            format!("{:.3}", h.max() as f64 / 1e6)
        };
        out.push_str(&format!(
            "{:<36} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            tag.as_deref().unwrap_or("(all started arrivals)"),
            h.len(),
            at(0.5),
            at(0.9),
            at(0.99),
            at(0.999),
            at(0.9999),
            max
        ));
    }
    // Outcome totals from the tags `latency/<phase>/<op>/<outcome>` and `dropped/<phase>/<op>`.
    let mut totals = [0u64; 5];
    for (tag, h) in &merged.tags {
        let Some(tag) = tag else { continue };
        let outcome = if tag.starts_with("dropped/") {
            Some(Outcome::Dropped)
        } else if tag.starts_with("latency/") {
            Outcome::ALL
                .into_iter()
                .find(|o| tag.ends_with(&format!("/{}", o.as_str())))
        } else {
            None
        };
        if let Some(outcome) = outcome {
            totals[outcome as usize] += h.len();
        }
    }
    let parts: Vec<String> = Outcome::ALL
        .iter()
        .zip(totals)
        .map(|(o, n)| format!("{} {n}", o.as_str()))
        .collect();
    out.push_str(&format!("\ntotals: {}\n", parts.join(", ")));
    out
}
