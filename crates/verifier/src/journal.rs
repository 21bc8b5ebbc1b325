//! Fault windows from the chaos journal (JSON Lines written by the chaos layer): each window
//! opens when a step's `start` is applied and closes when its `stop` is applied or when
//! everything is healed.

use std::path::Path;

use evidence::journal::{Event, parse_journal};

use crate::VerifyError;
use crate::report::FaultWindow;

/// Reads the journal's fault windows, oldest first.
pub fn fault_windows(path: &Path) -> Result<Vec<FaultWindow>, VerifyError> {
    let text = std::fs::read_to_string(path).map_err(|err| VerifyError::Read {
        what: "chaos journal",
        reason: format!("{}: {err}", path.display()),
    })?;
    let mut open: Vec<(usize, FaultWindow)> = Vec::new();
    // Each entry's target process, from the plan the journal opens with.
    let mut targets = std::collections::BTreeMap::new();
    let mut closed = Vec::new();
    let records = parse_journal(&text).map_err(|err| VerifyError::Read {
        what: "chaos journal",
        reason: format!("{}: {err}", path.display()),
    })?;
    for record in records {
        let at_us = record.wall_time_us().unwrap_or_default();
        if let Some(plan) = &record.plan {
            for window in plan["windows"].as_array().into_iter().flatten() {
                if let (Some(entry), Some(target)) =
                    (window["entry"].as_u64(), window["target"].as_str())
                {
                    targets.insert(entry as usize, target.to_string());
                }
            }
        }
        match (record.event, record.step) {
            (Event::Applied, Some(step)) if step.action == "start" => open.push((
                step.entry,
                FaultWindow {
                    kind: step.kind,
                    name: step.name,
                    target: targets.get(&step.entry).cloned(),
                    start_us: at_us,
                    end_us: None,
                },
            )),
            (Event::Applied | Event::Healed, Some(step)) if step.action == "stop" => {
                if let Some(i) = open.iter().position(|(entry, _)| *entry == step.entry) {
                    let (_, mut window) = open.remove(i);
                    window.end_us = Some(at_us);
                    closed.push(window);
                }
            }
            (Event::Healed, None) => {
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

/// When the load started (the journal's clock starts with it), from its first record:
/// wall time minus elapsed time. `None` for an unreadable or empty journal.
pub fn load_start_us(path: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    let first = parse_journal(text.lines().next()?)
        .ok()?
        .into_iter()
        .next()?;
    Some(first.wall_time_us()? - (first.elapsed_seconds * 1e6) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

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
