//! Interval logs: what we write is read back by the hdrhistogram crate's own reader, and
//! logs of sharded runs merge to exactly the counts of the unsharded run.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use common::{Load, ok_reply, serve};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use loadgen::{ArrivalProcess, HlogWriter, MergedLog, Outcome, Shard, new_histogram};

/// Histograms written with tags, offsets and lengths come back equal through the crate's
/// `IntervalLogIterator` + `Deserializer` (so the payload is V2 + DEFLATE, base64, as the
/// Java tools expect), with StartTime/BaseTime and the max column in milliseconds.
#[test]
fn hlog_round_trips_through_the_crate_reader() {
    let mut a = new_histogram();
    let mut b = new_histogram();
    for v in [1u64, 900, 45_000, 2_500_000, 700_000_000] {
        a.record(v).unwrap();
    }
    for v in 0..10_000u64 {
        b.record(v * 997).unwrap();
    }
    let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let mut writer = HlogWriter::new(Vec::new()).with_comment("rig load test");
    writer.write_header(start).unwrap();
    writer
        .write_interval(Duration::ZERO, Duration::from_secs(1), None, &a)
        .unwrap();
    writer
        .write_interval(
            Duration::from_millis(1000),
            Duration::from_millis(1500),
            Some("latency/0-hold/http/ok"),
            &b,
        )
        .unwrap();
    assert!(
        writer
            .write_interval(Duration::ZERO, Duration::ZERO, Some("bad tag"), &a)
            .is_err()
    );
    let bytes = writer.finish().unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with("#[Histogram log format version 1.3]\n"),
        "{text}"
    );
    assert!(text.contains("\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\""));
    // V2 + DEFLATE payloads start with the compressed cookie 0x1c849304 ("HISTFAA" in base64).
    assert!(text.contains(",HISTFAA"), "{text}");

    let mut entries = IntervalLogIterator::new(&bytes).map(Result::unwrap);
    assert_eq!(
        entries.next(),
        Some(LogEntry::StartTime(Duration::from_millis(
            1_700_000_000_123
        )))
    );
    assert_eq!(
        entries.next(),
        Some(LogEntry::BaseTime(Duration::from_millis(1_700_000_000_123)))
    );
    let mut deserializer = Deserializer::new();
    let mut decoded = Vec::new();
    for entry in entries {
        let LogEntry::Interval(interval) = entry else {
            panic!("unexpected {entry:?}")
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .unwrap();
        let h: Histogram<u64> = deserializer.deserialize(&mut raw.as_slice()).unwrap();
        decoded.push((
            interval.tag().map(|t| t.as_str().to_string()),
            interval.start_timestamp(),
            interval.duration(),
            interval.max(),
            h,
        ));
    }
    assert_eq!(decoded.len(), 2);
    assert_eq!(decoded[0].0, None);
    assert_eq!(decoded[0].4, a);
    // The max column has 3 decimals of milliseconds, as the Java writer prints it.
    assert!((decoded[0].3 - a.max() as f64 / 1e6).abs() < 0.001);
    assert_eq!(decoded[1].0.as_deref(), Some("latency/0-hold/http/ok"));
    assert_eq!(decoded[1].1, Duration::from_secs(1));
    assert_eq!(decoded[1].2, Duration::from_millis(1500));
    assert_eq!(decoded[1].4, b);
}

/// Runs the same Poisson ramp+hold unsharded and as shards 0/2 and 1/2 at the same time:
/// merging the two shard logs gives exactly the unsharded counts for every tag (outcomes,
/// drops, per-phase lag/wait/service), and those equal the reports' own counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn sharded_runs_merge_to_the_unsharded_counts() {
    let server = serve(|_req| async { ok_reply() }).await;
    let mut whole = Load::hold(0.0, 0.0);
    whole.phases = "ramp from=0 to=400 for=1s; hold rate=400 for=1s".into();
    whole.arrival = ArrivalProcess::Poisson;
    whole.seed = 11;
    let mut first = whole.clone();
    first.shard = Shard::new(0, 2).unwrap();
    let mut second = whole.clone();
    second.shard = Shard::new(1, 2).unwrap();
    let ((report, log), (report0, log0), (report1, log1)) = tokio::join!(
        whole.run_with_hlog(&server.url),
        first.run_with_hlog(&server.url),
        second.run_with_hlog(&server.url)
    );

    let mut unsharded = MergedLog::new();
    unsharded.add_log("whole", &log).unwrap();
    let mut merged = MergedLog::new();
    merged.add_log("shard 0", &log0).unwrap();
    merged.add_log("shard 1", &log1).unwrap();
    assert_eq!(merged.logs, 2);

    let counts = |m: &MergedLog| -> BTreeMap<Option<String>, u64> {
        m.tags.iter().map(|(t, h)| (t.clone(), h.len())).collect()
    };
    assert_eq!(counts(&merged), counts(&unsharded));
    assert_eq!(unsharded.count(None), report.started());
    assert_eq!(report0.started() + report1.started(), report.started());
    let ok = report.count(Outcome::Ok);
    assert!(ok > 500, "only {ok} ok");
    assert_eq!(
        merged.count(Some("latency/0-ramp/http/ok")) + merged.count(Some("latency/1-hold/http/ok")),
        ok
    );
    assert_eq!(merged.count(Some("lag/1-hold")), report.phases[1].started);
}

/// Garbage is refused with the source named, not half-read.
#[test]
fn unreadable_logs_are_refused() {
    let mut merged = MergedLog::new();
    let err = merged.add_log("x.hlog", b"hello\n").unwrap_err();
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("x.hlog"), "{err}");
    let err = merged
        .add_log("y.hlog", b"#[Histogram log format version 1.3]\n")
        .unwrap_err();
    assert!(err.to_string().contains("no interval lines"), "{err}");
}
