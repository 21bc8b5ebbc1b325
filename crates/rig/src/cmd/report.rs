//! `rig report`: `RUN_DIR` re-renders a run's `report.html` from its `summary.json` and
//! `verdict.json` and prints its `summary.txt`; `--merge A.hlog B.hlog ...` adds up interval
//! logs (e.g. of `rig load --shard i/N` runs) per tag, exactly, and prints the merged counts
//! and percentiles; with `--json FILE` it also writes them as JSON (schema:
//! `schema/hlog-merge.schema.json`).

use std::path::{Path, PathBuf};

use clap::Args;
use loadgen::summary::Percentiles;
use loadgen::{MergedLog, Outcome};
use serde::Serialize;

use crate::exit::{BadInput, Verdict};

/// Re-render a run's report, or merge `.hlog` files.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run directory to re-render (report.html from summary.json and verdict.json).
    pub run_dir: Option<PathBuf>,
    /// Merge these interval logs and print merged percentiles per tag.
    #[arg(long, num_args = 1.., value_name = "HLOG")]
    pub merge: Vec<PathBuf>,
    /// With --merge: also write the merged counts and percentiles (seconds) per tag as JSON
    /// to FILE (schema: crates/rig/schema/hlog-merge.schema.json).
    #[arg(long, value_name = "FILE", requires = "merge")]
    pub json: Option<PathBuf>,
}

/// Identifies the JSON format of `rig report --merge --json`; bump on incompatible changes.
pub const MERGE_SCHEMA: &str = "rig-hlog-merge/1";

/// `rig report --merge --json`: what was merged and the merged histograms, per tag.
#[derive(Debug, Serialize)]
struct MergeJson<'a> {
    schema: &'static str,
    /// The logs, in the order given.
    sources: Vec<String>,
    /// Interval lines read, over every log.
    intervals: u64,
    /// One entry per tag, untagged (`tag: null`, every started arrival) first.
    tags: Vec<TagJson<'a>>,
    /// Arrivals by outcome, from the `latency/...` and `dropped/...` tags.
    totals: OutcomeTotals,
}

#[derive(Debug, Serialize)]
struct TagJson<'a> {
    tag: Option<&'a str>,
    /// Count, then min, mean, p50, p90, p99, p99_9, p99_99, max in seconds (null if empty).
    #[serde(flatten)]
    seconds: Percentiles,
}

#[derive(Debug, Serialize)]
struct OutcomeTotals {
    ok: u64,
    failed: u64,
    rejected: u64,
    unknown: u64,
    dropped: u64,
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
    // Created before the logs are read, so a bad path costs nothing.
    let json_file = match &args.json {
        Some(path) => Some(std::fs::File::create(path).map_err(|err| {
            BadInput(format!(
                "--json {}: cannot create the file ({err}); fix: give a writable path",
                path.display()
            ))
        })?),
        None => None,
    };
    let mut merged = MergedLog::new();
    for path in &args.merge {
        let bytes = read_log(path)?;
        merged
            .add_log(&path.display().to_string(), &bytes)
            .map_err(|err| BadInput(err.to_string()))?;
    }
    print!("{}", render(&merged));
    if let (Some(file), Some(path)) = (json_file, &args.json) {
        write_json(file, path, &to_json(&merged, &args.merge))?;
    }
    Ok(Verdict::Pass)
}

/// Reads one interval log, refusing a file larger than [`MAX_LOG_BYTES`] before reading it.
fn read_log(path: &Path) -> Result<Vec<u8>, BadInput> {
    let shown = path.display();
    crate::read_at_most(path, MAX_LOG_BYTES)
        .map_err(|err| {
            BadInput(format!(
                "--merge {shown}: cannot read it ({err}); fix: give existing .hlog files"
            ))
        })?
        .ok_or_else(|| {
            BadInput(format!(
                "--merge {shown}: larger than {} MiB; fix: merge the .hlog files of shorter runs \
                 (one interval line per second and tag is a few hundred bytes)",
                MAX_LOG_BYTES >> 20
            ))
        })
}

/// Largest `.hlog` file `--merge` reads: a day of one-second intervals with a dozen tags
/// is well under it.
pub const MAX_LOG_BYTES: u64 = 512 << 20;

fn to_json<'a>(merged: &'a MergedLog, sources: &[PathBuf]) -> MergeJson<'a> {
    let [ok, failed, rejected, unknown, dropped] = outcome_totals(merged);
    MergeJson {
        schema: MERGE_SCHEMA,
        sources: sources.iter().map(|p| p.display().to_string()).collect(),
        intervals: merged.intervals,
        // `None` sorts first in the BTreeMap, so the untagged line leads.
        tags: merged
            .tags
            .iter()
            .map(|(tag, h)| TagJson {
                tag: tag.as_deref(),
                seconds: Percentiles::of(h),
            })
            .collect(),
        totals: OutcomeTotals {
            ok,
            failed,
            rejected,
            unknown,
            dropped,
        },
    }
}

fn write_json(file: std::fs::File, path: &Path, value: &MergeJson<'_>) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut out, value)?;
    std::io::Write::write_all(&mut out, b"\n")
        .and_then(|()| std::io::Write::flush(&mut out))
        .map_err(|err| anyhow::anyhow!("--json {}: cannot write it ({err})", path.display()))
}

/// Arrivals by outcome (indexed like [`Outcome::ALL`]), from the tags
/// `latency/<phase>/<op>/<outcome>` and `dropped/<phase>/<op>`.
fn outcome_totals(merged: &MergedLog) -> [u64; 5] {
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
    totals
}

/// Re-renders `report.html` and prints `summary.txt`; the verdict is the run's.
fn rerender(dir: &std::path::Path) -> anyhow::Result<Verdict> {
    if let Some(note) = crate::run::incomplete(dir) {
        anyhow::bail!(
            "{} is an incomplete run: {note}its summary and verdict were never written; judge \
             what it recorded with `rig verify {}`",
            dir.display(),
            dir.display()
        );
    }
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
        crate::run::artifacts::render_html(&summary, &verdict),
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
    let parts: Vec<String> = Outcome::ALL
        .iter()
        .zip(outcome_totals(merged))
        .map(|(o, n)| format!("{} {n}", o.as_str()))
        .collect();
    out.push_str(&format!("\ntotals: {}\n", parts.join(", ")));
    out
}
