//! The load observers `rig load` and `rig run` share: the progress line on stderr and the
//! `.hlog` interval log; and events (a fault on, a fault healed) printed between progress
//! lines in the same format.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::ValueEnum;
use loadgen::{HlogWriter, IntervalView, Observer};

/// How progress is shown: live on a terminal, plain lines otherwise, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    Auto,
    Live,
    Plain,
    Off,
}

/// The optional interval log as an observer.
pub struct HlogSink(pub Option<HlogWriter<std::io::BufWriter<std::fs::File>>>);

impl Observer for HlogSink {
    fn on_interval(&mut self, interval: &IntervalView<'_>) {
        if let Some(writer) = &mut self.0 {
            writer.on_interval(interval);
        }
    }
}

/// Progress on stderr: redrawn every interval on a terminal, a plain line every few
/// seconds otherwise (logs and CI), and always the last one.
pub struct ProgressLine {
    live: bool,
    off: bool,
    every: Duration,
    printed_at: Option<Duration>,
}

impl ProgressLine {
    pub fn new(mode: ProgressMode) -> Self {
        Self {
            live: match mode {
                ProgressMode::Auto => std::io::stderr().is_terminal(),
                ProgressMode::Live => true,
                ProgressMode::Plain | ProgressMode::Off => false,
            },
            off: mode == ProgressMode::Off,
            every: Duration::from_secs(5),
            printed_at: None,
        }
    }
}

impl Observer for ProgressLine {
    fn on_interval(&mut self, interval: &IntervalView<'_>) {
        if self.off {
            return;
        }
        let p = &interval.progress;
        let due = self
            .printed_at
            .is_none_or(|at| p.elapsed.saturating_sub(at) >= self.every);
        if !self.live && !due && !p.last {
            return;
        }
        self.printed_at = Some(p.elapsed);
        let c = &p.counts;
        let p99 = interval
            .point
            .latency_p99_seconds
            .map_or("-".to_string(), |s| format!("{:.2}ms", s * 1e3));
        let line = format!(
            "{:>7.1}s/{} {:<8} target {:>9.1}/s  started {}  ok {}  failed {}  rejected {}  unknown {}  dropped {}  in flight {}  p99 {p99}",
            p.elapsed.as_secs_f64(),
            loadgen::format_duration(p.schedule_duration),
            p.phase.as_deref().unwrap_or("drain"),
            p.target_rate,
            p.started,
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            p.in_flight,
        );
        let mut err = std::io::stderr().lock();
        if self.live {
            let _ = write!(err, "\r\x1b[2K{line}");
            if p.last {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

/// Prints an event between progress lines: on a terminal it first clears the live line
/// (which the next interval redraws), elsewhere it is a plain line.
pub fn event_line(elapsed_seconds: f64, what: &str) {
    let line = format!("{elapsed_seconds:>7.1}s {what}");
    let mut err = std::io::stderr().lock();
    if err.is_terminal() {
        let _ = writeln!(err, "\r\x1b[2K{line}");
    } else {
        let _ = writeln!(err, "{line}");
    }
    let _ = err.flush();
}

/// The progress event for a chaos journal record, if it is one a person should see.
pub fn chaos_event(record: &chaos::Record) -> Option<String> {
    use chaos::Event;
    let step = record.step.as_ref();
    let name = step.map(|s| match &s.name {
        Some(name) => format!("{} {name:?} (chaos[{}])", s.kind, s.entry),
        None => format!("{} (chaos[{}])", s.kind, s.entry),
    });
    let message = record.message.as_deref().unwrap_or("");
    Some(
        match (record.event, step.map(|s| s.action.as_str()), name) {
            (Event::Applied, Some("start"), Some(name)) => format!("chaos: fault on: {name}"),
            (Event::Applied | Event::Healed, Some("stop"), Some(name)) => {
                format!("chaos: fault healed: {name}")
            }
            (Event::Failed, _, name) => format!(
                "chaos: FAILED {}: {message}",
                name.unwrap_or_else(|| "step".into())
            ),
            (Event::Aborted, _, _) => format!("chaos: timeline stopped: {message}"),
            // What an earlier, killed run left, healed before the first step.
            (Event::Healed, None, _) if message.starts_with("healed the faults") => {
                format!("chaos: {message}")
            }
            (Event::Healed, None, _) => "chaos: every fault healed".to_string(),
            _ => return None,
        },
    )
}
