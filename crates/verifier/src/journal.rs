//! Fault windows from the chaos journal (JSON Lines written by the chaos layer): each window
//! opens when a step's `start` is applied and closes when its `stop` is applied or when
//! everything is healed.

use std::path::Path;

use serde::Deserialize;

use crate::VerifyError;
use crate::report::FaultWindow;

#[derive(Debug, Deserialize)]
struct Record {
    event: String,
    #[serde(default)]
    wall_time: String,
    #[serde(default)]
    wall_time_us: Option<i64>,
    #[serde(default)]
    step: Option<Step>,
}

#[derive(Debug, Deserialize)]
struct Step {
    entry: usize,
    action: String,
    kind: String,
    #[serde(default)]
    name: Option<String>,
}

/// Reads the journal's fault windows, oldest first.
pub fn fault_windows(path: &Path) -> Result<Vec<FaultWindow>, VerifyError> {
    let text = std::fs::read_to_string(path).map_err(|err| VerifyError::Read {
        what: "chaos journal",
        reason: format!("{}: {err}", path.display()),
    })?;
    let mut open: Vec<(usize, FaultWindow)> = Vec::new();
    let mut closed = Vec::new();
    for (line_no, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record: Record = serde_json::from_str(line).map_err(|err| VerifyError::Read {
            what: "chaos journal",
            reason: format!("{} line {}: {err}", path.display(), line_no + 1),
        })?;
        let at_us = record
            .wall_time_us
            .or_else(|| parse_rfc3339_us(&record.wall_time))
            .unwrap_or_default();
        match (record.event.as_str(), record.step) {
            ("applied", Some(step)) if step.action == "start" => open.push((
                step.entry,
                FaultWindow {
                    kind: step.kind,
                    name: step.name,
                    start_us: at_us,
                    end_us: None,
                },
            )),
            ("applied" | "healed", Some(step)) if step.action == "stop" => {
                if let Some(i) = open.iter().position(|(entry, _)| *entry == step.entry) {
                    let (_, mut window) = open.remove(i);
                    window.end_us = Some(at_us);
                    closed.push(window);
                }
            }
            ("healed", None) => {
                for (_, mut window) in open.drain(..) {
                    window.end_us = Some(at_us);
                    closed.push(window);
                }
            }
            _ => {}
        }
    }
    closed.extend(open.into_iter().map(|(_, w)| w));
    closed.sort_by_key(|w| w.start_us);
    Ok(closed)
}

/// `2026-11-24T12:00:01.250Z` (optionally with micro- or nanoseconds) to Unix microseconds.
pub fn parse_rfc3339_us(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut hms = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    let micros = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction
            .chars()
            .chain(std::iter::repeat('0'))
            .take(6)
            .collect();
        digits.parse::<i64>().ok()?
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hour * 3_600 + minute * 60 + second) * 1_000_000) + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wall times parse to Unix microseconds.
    #[test]
    fn parses_wall_times() {
        assert_eq!(parse_rfc3339_us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_us("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123_000)
        );
        assert_eq!(
            parse_rfc3339_us("2000-02-29T00:00:00.000001Z"),
            Some(951_782_400_000_001)
        );
        assert_eq!(parse_rfc3339_us("nonsense"), None);
    }

    /// Start/stop pairs become windows; a final heal closes what is still open.
    #[test]
    fn windows_from_records() {
        let dir = std::env::temp_dir().join(format!("rig-journal-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chaos.jsonl");
        std::fs::write(
            &path,
            [
                r#"{"seq":0,"event":"planned","elapsed_seconds":0,"wall_time":"2026-01-01T00:00:00.000Z"}"#,
                r#"{"seq":1,"event":"applied","elapsed_seconds":1,"wall_time":"2026-01-01T00:00:01.000Z","step":{"step":0,"entry":0,"action":"start","kind":"partition","at_seconds":1}}"#,
                r#"{"seq":2,"event":"applied","elapsed_seconds":3,"wall_time":"2026-01-01T00:00:03.000Z","step":{"step":1,"entry":0,"action":"stop","kind":"partition","at_seconds":3}}"#,
                r#"{"seq":3,"event":"applied","elapsed_seconds":4,"wall_time":"2026-01-01T00:00:04.000Z","step":{"step":2,"entry":1,"action":"start","kind":"provider","at_seconds":4}}"#,
                r#"{"seq":4,"event":"healed","elapsed_seconds":6,"wall_time":"2026-01-01T00:00:06.000Z"}"#,
            ]
            .join("\n"),
        )
        .unwrap();
        let windows = fault_windows(&path).unwrap();
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].kind, "partition");
        assert_eq!(windows[0].end_us.unwrap() - windows[0].start_us, 2_000_000);
        assert_eq!(windows[1].end_us.unwrap() - windows[1].start_us, 2_000_000);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
