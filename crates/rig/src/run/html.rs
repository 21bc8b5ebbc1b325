//! `report.html`: one self-contained page (inline SVG, no scripts, no network) rendered from
//! `summary.json` and `verdict.json`, so `rig report RUN_DIR` can re-render it: offered vs
//! achieved rate, latency percentiles, outcomes, pending orders and provider calls over time,
//! each with the chaos windows shaded; the thresholds; the verdict table with dossiers.

use serde_json::Value;

const WIDTH: f64 = 920.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 32.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#7f7f7f",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line of (seconds, value) points.
struct Line<'a> {
    name: &'a str,
    points: Vec<(f64, f64)>,
}

/// A fault window as it ran, in seconds since load start.
struct Window {
    label: String,
    start: f64,
    end: f64,
    /// Cut short (the load ended, or the run was interrupted): shaded apart.
    cut: bool,
}

/// The smallest round step (1, 2 or 5 times a power of ten) of at least `v`.
fn nice_step(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if v <= step * magnitude * (1.0 + 1e-9) {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// Round ticks from 0 covering `max`, about four of them: the step and the axis end.
fn ticks(max: f64) -> (f64, f64) {
    let step = nice_step(max / 4.0);
    let end = (max / step).ceil().max(1.0) * step;
    (step, end)
}

/// The part of a line inside `[0, x_max]`, with the crossing point interpolated.
fn clip(points: &[(f64, f64)], x_max: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len());
    for (i, &(s, v)) in points.iter().enumerate() {
        if (0.0..=x_max).contains(&s) {
            out.push((s, v));
        } else if s > x_max
            && let Some(&(s0, v0)) = i.checked_sub(1).and_then(|j| points.get(j))
            && s0 < x_max
        {
            let t = (x_max - s0) / (s - s0);
            out.push((x_max, v0 + (v - v0) * t));
        }
    }
    out
}

fn chart(title: &str, unit: &str, x_max: f64, lines: &[Line<'_>], windows: &[Window]) -> String {
    let (x_step, x_max) = ticks(x_max.max(1.0));
    let lines: Vec<Line<'_>> = lines
        .iter()
        .map(|l| Line {
            name: l.name,
            points: clip(&l.points, x_max),
        })
        .collect();
    let (y_step, y_max) = ticks(
        lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |s: f64| LEFT + s / x_max * plot_w;
    let y = |v: f64| TOP + plot_h - v / y_max * plot_h;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{t}\">\n<text x=\"{LEFT}\" y=\"16\" class=\"title\">{t}</text>\n",
        t = escape(title)
    );
    for w in windows.iter().filter(|w| w.start < x_max) {
        let (x0, x1) = (x(w.start.max(0.0)), x(w.end.min(x_max)));
        let (class, label) = if w.cut {
            ("faultcut", format!("{} (cut short)", w.label))
        } else {
            ("fault", w.label.clone())
        };
        svg.push_str(&format!(
            "<rect x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{plot_h}\" class=\"{class}\"><title>{}</title></rect>\n<text x=\"{:.1}\" y=\"{:.1}\" class=\"faultlabel\">{}</text>\n",
            (x1 - x0).max(1.0),
            escape(&label),
            x0 + 2.0,
            TOP + 10.0,
            escape(&label)
        ));
    }
    let mut v = 0.0;
    while v <= y_max * (1.0 + 1e-9) {
        let yy = y(v);
        svg.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" class=\"grid\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>\n",
            LEFT + plot_w,
            LEFT - 4.0,
            yy + 4.0,
            format_tick(v)
        ));
        v += y_step;
    }
    let mut s = 0.0;
    while s <= x_max * (1.0 + 1e-9) {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}s</text>\n",
            x(s),
            HEIGHT - 12.0,
            format_tick(s)
        ));
        s += x_step;
    }
    svg.push_str(&format!(
        "<text x=\"12\" y=\"{:.1}\" class=\"tick\" transform=\"rotate(-90 12 {:.1})\">{}</text>\n",
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(unit)
    ));
    for (i, line) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        if !line.points.is_empty() {
            let path: Vec<String> = line
                .points
                .iter()
                .map(|(s, v)| format!("{:.1},{:.1}", x(*s), y(*v)))
                .collect();
            svg.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\" points=\"{}\"/>\n",
                path.join(" ")
            ));
        }
        let ly = TOP + 12.0 + i as f64 * 16.0;
        svg.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"3\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"legend\">{}</text>\n",
            WIDTH - RIGHT + 10.0,
            ly - 4.0,
            WIDTH - RIGHT + 26.0,
            ly,
            escape(line.name)
        ));
    }
    svg.push_str(&format!(
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" class=\"frame\"/>\n</svg>\n"
    ));
    svg
}

/// A round tick value, without trailing zeros: `0`, `2.5`, `0.02`, `250`.
fn format_tick(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The page, from `summary.json` and `verdict.json`.
pub fn render(summary: &Value, verdict: &Value) -> String {
    let load = &summary["load"];
    let timeline = load["timeline"].as_array().cloned().unwrap_or_default();
    let load_end = timeline
        .last()
        .map(|p| num(&p["start_seconds"]) + num(&p["length_seconds"]))
        .unwrap_or(1.0);
    // One time axis for every chart: the load, and the drain while records still moved.
    let last_activity = ["pending", "provider_calls"]
        .iter()
        .filter_map(|k| summary["series"][*k].as_array())
        .filter_map(|v| v.iter().rposition(|n| num(n) > 0.0))
        .max()
        .map_or(0.0, |i| i as f64 + 2.0);
    let x_max = load_end.max(last_activity);
    let windows: Vec<Window> = summary["chaos"]["windows"]
        .as_array()
        .map(|ws| {
            ws.iter()
                // Only windows that ran are drawn, as they ran (a summary without the
                // field, from an older rig, is drawn as planned).
                .filter(|w| w["ran"].as_str() != Some("never"))
                .map(|w| Window {
                    label: w["name"].as_str().map_or_else(
                        || w["kind"].as_str().unwrap_or("fault").to_string(),
                        str::to_string,
                    ),
                    start: w["applied_start_seconds"]
                        .as_f64()
                        .unwrap_or_else(|| num(&w["start_seconds"])),
                    end: w["applied_end_seconds"]
                        .as_f64()
                        .unwrap_or_else(|| num(&w["end_seconds"])),
                    cut: w["ran"].as_str() == Some("cut"),
                })
                .collect()
        })
        .unwrap_or_default();
    let per_second = |key: &str| -> Vec<(f64, f64)> {
        timeline
            .iter()
            .map(|p| {
                let len = num(&p["length_seconds"]).max(1e-9);
                (num(&p["start_seconds"]) + len / 2.0, num(&p[key]) / len)
            })
            .collect()
    };
    let mut offered = Vec::new();
    for phase in load["schedule"]["phases"]
        .as_array()
        .or(load["phases"].as_array())
        .into_iter()
        .flatten()
    {
        let start = num(&phase["start_seconds"]);
        let end = start + num(&phase["duration_seconds"]);
        offered.push((start, num(&phase["rate_start"])));
        offered.push((end, num(&phase["rate_end"])));
    }
    let ms = |key: &str| -> Vec<(f64, f64)> {
        timeline
            .iter()
            .filter(|p| !p[key].is_null())
            .map(|p| {
                (
                    num(&p["start_seconds"]) + num(&p["length_seconds"]) / 2.0,
                    num(&p[key]) * 1e3,
                )
            })
            .collect()
    };
    let series = |key: &str| -> Vec<(f64, f64)> {
        summary["series"][key]
            .as_array()
            .map(|v| {
                v.iter()
                    .enumerate()
                    .map(|(i, n)| (i as f64 + 0.5, num(n)))
                    .filter(|(s, _)| *s <= x_max)
                    .collect()
            })
            .unwrap_or_default()
    };
    let charts = [
        chart(
            "Arrivals per second: offered (schedule) vs started",
            "per second",
            x_max,
            &[
                Line {
                    name: "offered",
                    points: offered,
                },
                Line {
                    name: "started",
                    points: per_second("started"),
                },
                Line {
                    name: "confirmed",
                    points: per_second("ok"),
                },
            ],
            &windows,
        ),
        chart(
            "Customer latency from the intended start (per second)",
            "milliseconds",
            x_max,
            &[
                Line {
                    name: "p50",
                    points: ms("latency_p50_seconds"),
                },
                Line {
                    name: "p99",
                    points: ms("latency_p99_seconds"),
                },
                Line {
                    name: "max",
                    points: ms("latency_max_seconds"),
                },
            ],
            &windows,
        ),
        chart(
            "Client-seen outcomes per second",
            "per second",
            x_max,
            &[
                Line {
                    name: "confirmed",
                    points: per_second("ok"),
                },
                Line {
                    name: "failed",
                    points: per_second("failed"),
                },
                Line {
                    name: "rejected",
                    points: per_second("rejected"),
                },
                Line {
                    name: "unknown",
                    points: per_second("unknown"),
                },
                Line {
                    name: "dropped",
                    points: per_second("dropped"),
                },
            ],
            &windows,
        ),
        chart(
            "Orders pending and provider calls (from the durable records)",
            "count",
            x_max,
            &[
                Line {
                    name: "orders pending",
                    points: series("pending"),
                },
                Line {
                    name: "provider calls/s",
                    points: series("provider_calls"),
                },
            ],
            &windows,
        ),
    ];
    let verdict_word = summary["verdict"].as_str().unwrap_or("unknown");
    let mut html = String::new();
    html.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rig run {id}</title>\n<style>{CSS}</style></head><body>\n\
         <h1>rig run <code>{id}</code> <span class=\"badge {verdict_word}\">{}</span></h1>\n<p>{}</p>\n<p class=\"meta\">profile <b>{}</b>, seed {}, store <code>{}</code>{}</p>\n",
        verdict_word.to_uppercase(),
        escape(summary["description"].as_str().unwrap_or("")),
        escape(summary["profile"].as_str().unwrap_or("")),
        summary["seed"],
        escape(summary["store"].as_str().unwrap_or("")),
        defects_note(summary),
        id = escape(summary["run_id"].as_str().unwrap_or("")),
    ));
    html.push_str(&key_figures(summary));
    html.push_str("<h2>Over time</h2>\n<p class=\"meta\">Shaded: chaos windows (from the expanded timeline).</p>\n");
    for c in &charts {
        html.push_str(c);
    }
    html.push_str(&thresholds_table(summary));
    html.push_str(&verdict_table(verdict));
    html.push_str(&orders_section(&summary["orders"]));
    html.push_str(&format!(
        "<h2>Parameters</h2>\n<details><summary>the reference system as it ran</summary><pre>{}</pre></details>\n</body></html>\n",
        escape(&serde_json::to_string_pretty(&summary["parameters"]).unwrap_or_default())
    ));
    html
}

fn defects_note(summary: &Value) -> String {
    match summary["defects"].as_array() {
        Some(d) if !d.is_empty() => format!(
            " &middot; <span class=\"defect\">defects on: {}</span>",
            escape(
                &d.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        ),
        _ => String::new(),
    }
}

fn key_figures(summary: &Value) -> String {
    let totals = &summary["load"]["totals"];
    let lat = &summary["load"]["latency_seconds"];
    let ms = |v: &Value| {
        v.as_f64()
            .map_or("-".to_string(), |s| format!("{:.1} ms", s * 1e3))
    };
    format!(
        "<table class=\"figures\"><tr><th>arrivals</th><th>achieved/s</th><th>confirmed/s</th><th>confirmed</th><th>failed</th><th>rejected</th><th>unknown</th><th>dropped</th><th>p50</th><th>p99</th><th>retry amplification</th></tr>\
         <tr><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td></tr></table>\n",
        totals["scheduled"],
        num(&totals["achieved_rate"]),
        num(&totals["goodput"]),
        totals["ok"],
        totals["failed"],
        totals["rejected"],
        totals["unknown"],
        totals["dropped"],
        ms(&lat["p50"]),
        ms(&lat["p99"]),
        num(&summary["retries"]["amplification"]),
    )
}

fn thresholds_table(summary: &Value) -> String {
    let Some(rows) = summary["thresholds"].as_array().filter(|r| !r.is_empty()) else {
        return String::new();
    };
    let mut out = String::from(
        "<h2>Thresholds</h2>\n<table><tr><th>metric</th><th>bound</th><th>measured</th><th></th></tr>\n",
    );
    for t in rows {
        let passed = t["passed"].as_bool().unwrap_or(false);
        out.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>\n",
            escape(t["key"].as_str().unwrap_or("")),
            escape(t["expression"].as_str().unwrap_or("")),
            t["value"].as_f64().map_or("nothing".to_string(), |v| {
                match t["unit"].as_str().unwrap_or("") {
                    "s" => format!("{v:.3} s"),
                    unit => format!("{v:.4}{unit}"),
                }
            }),
            if passed { "pass" } else { "fail" },
            if passed { "ok" } else { "FAIL" }
        ));
    }
    out.push_str("</table>\n");
    out
}

/// "witnesses: client carts, run profile; claims: reservations" for one verdict.
fn judged_from(v: &Value) -> String {
    let list = |key: &str| -> String {
        let items: Vec<&str> = v[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    format!(
        "witnesses: {}; claims: {}",
        list("witnesses"),
        list("claims")
    )
}

fn verdict_table(report: &Value) -> String {
    let mut out = String::from(
        "<h2>Verdict</h2>\n<table><tr><th>invariant</th><th>verdict</th><th>checked</th><th>violations</th><th>summary</th></tr>\n",
    );
    let verdicts = report["verdicts"].as_array().cloned().unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    for v in &verdicts {
        let status = text(&v["status"]);
        let summary = if status == "unknown" {
            format!("unknown: {}", text(&v["reason"]))
        } else {
            text(&v["summary"])
        };
        out.push_str(&format!(
            "<tr><td><b>{}</b><br><span class=\"statement\">{}</span><br><span class=\"statement\">{}</span></td><td class=\"{status}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&text(&v["invariant"])),
            escape(&text(&v["statement"])),
            escape(&judged_from(v)),
            status.to_uppercase(),
            v["checked"],
            v["violations"],
            escape(&summary),
        ));
    }
    out.push_str("</table>\n");
    for v in &verdicts {
        let dossiers = v["dossiers"].as_array().cloned().unwrap_or_default();
        if dossiers.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "<h3>{} — counterexamples</h3>\n",
            escape(&text(&v["invariant"]))
        ));
        for d in &dossiers {
            let faults: Vec<String> = d["fault_windows"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|w| {
                    w["name"]
                        .as_str()
                        .or(w["kind"].as_str())
                        .unwrap_or("fault")
                        .to_string()
                })
                .collect();
            let faults = if faults.is_empty() {
                String::new()
            } else {
                format!(
                    " <span class=\"meta\">(during: {})</span>",
                    escape(&faults.join(", "))
                )
            };
            // The order's story (as `rig explain` prints it), then the rows that prove it.
            let timeline =
                serde_json::from_value::<verifier::explain::Explanation>(d["timeline"].clone())
                    .map(|e| format!("<pre>{}</pre>", escape(&crate::cmd::explain::render(&e))))
                    .unwrap_or_default();
            out.push_str(&format!(
                "<details><summary><code>{}</code> {}{faults}</summary>{timeline}<pre>{}</pre></details>\n",
                escape(d["order_id"].as_str().unwrap_or("-")),
                escape(&text(&d["narrative"])),
                escape(&serde_json::to_string_pretty(&d["rows"]).unwrap_or_default())
            ));
        }
    }
    out
}

/// The orders section: how long customers were told pending, and the slowest and the
/// longest-pending orders, each linked to its timeline.
fn orders_section(orders: &Value) -> String {
    if orders.is_null() {
        return String::new();
    }
    let secs = |v: &Value| format!("{:.1} s", num(v));
    let mut out = format!(
        "<h2>Orders</h2>\n<p class=\"meta\">From the client history: {} customers were told pending at least once ({} never told a final outcome); time from the first pending answer to the first final one: p50 {}, p90 {}, p99 {}, max {}.</p>\n<table><tr>",
        orders["pending_customers"],
        orders["never_told_final"],
        secs(&orders["pending_p50_seconds"]),
        secs(&orders["pending_p90_seconds"]),
        secs(&orders["pending_p99_seconds"]),
        secs(&orders["pending_max_seconds"]),
    );
    let buckets = orders["pending_buckets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for b in &buckets {
        out.push_str(&format!("<th>{}</th>", escape(b[0].as_str().unwrap_or(""))));
    }
    out.push_str("</tr><tr>");
    for b in &buckets {
        out.push_str(&format!("<td>{}</td>", b[1]));
    }
    out.push_str("</tr></table>\n");
    let anchor = |table: &str, i: usize| format!("{table}-{i}");
    let mut stories = String::new();
    for (key, title, figure) in [
        (
            "slowest",
            "The ten slowest customers",
            "intended send to last answer",
        ),
        (
            "longest_pending",
            "The ten longest pending",
            "told pending for",
        ),
    ] {
        let rows = orders[key].as_array().cloned().unwrap_or_default();
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "<h3>{title}</h3>\n<table><tr><th>order</th><th>{figure}</th><th>outcome</th></tr>\n"
        ));
        for (i, r) in rows.iter().enumerate() {
            let id = escape(r["order_id"].as_str().unwrap_or("-"));
            out.push_str(&format!(
                "<tr><td><a href=\"#{}\"><code>{id}</code></a></td><td>{}</td><td>{}</td></tr>\n",
                anchor(key, i),
                secs(&r["seconds"]),
                escape(r["outcome"].as_str().unwrap_or("")),
            ));
            let timeline =
                serde_json::from_value::<verifier::explain::Explanation>(r["timeline"].clone())
                    .map(|e| escape(&crate::cmd::explain::render(&e)))
                    .unwrap_or_else(|_| "no timeline".to_string());
            stories.push_str(&format!(
                "<details id=\"{}\"><summary><code>{id}</code> ({})</summary><pre>{timeline}</pre></details>\n",
                anchor(key, i),
                secs(&r["seconds"]),
            ));
        }
        out.push_str("</table>\n");
    }
    if !stories.is_empty() {
        out.push_str("<h3>Their timelines</h3>\n");
        out.push_str(&stories);
    }
    out
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px}h3{font-size:15px}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left}\
.badge{padding:2px 8px;border-radius:4px;color:#fff;font-size:16px}.badge.pass{background:#2ca02c}.badge.fail{background:#d62728}.badge.partial{background:#ff7f0e}\
td.pass{color:#2ca02c;font-weight:bold}td.fail{color:#d62728;font-weight:bold}td.unknown{color:#ff7f0e;font-weight:bold}\
.meta{color:#666;font-size:13px}.defect{color:#d62728;font-weight:bold}pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto}\
svg{display:block;margin:10px 0}.title{font-size:13px;font-weight:bold}.tick{font-size:11px;fill:#555}.legend{font-size:12px}\
.grid{stroke:#eee}.frame{fill:none;stroke:#999}.fault{fill:#ffcc80;opacity:0.45}.faultcut{fill:#ffcc80;opacity:0.25;stroke:#a65c00;stroke-dasharray:4 3}.faultlabel{font-size:10px;fill:#a65c00}.statement{font-size:11px;color:#555}";
