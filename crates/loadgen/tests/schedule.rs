//! The schedule as data: counts per phase, Poisson rates, seeds, shards, and the errors
//! bad input gets. No sockets and no clock: a schedule is a pure function of its spec.

use std::time::Duration;

use loadgen::{ArrivalProcess, PhaseSpec, Schedule, ScheduleSpec, Shard};

fn spec(text: &str, arrival: ArrivalProcess, seed: u64) -> ScheduleSpec {
    ScheduleSpec {
        phases: ScheduleSpec::parse_phases(text).unwrap(),
        arrival,
        seed,
    }
}

fn per_phase(schedule: &Schedule, shard: Shard) -> Vec<u64> {
    let mut counts = vec![0u64; schedule.phases().len()];
    for a in schedule.arrivals(shard) {
        counts[a.phase] += 1;
    }
    counts
}

/// Every phase kind gets its expected arrival count within ±1 (constant arrivals), and
/// arrivals are in order and inside their phase's time span.
#[test]
fn constant_counts_per_phase_within_one() {
    let s = Schedule::compile(&spec(
        "ramp from=0 to=1000 for=10s; hold rate=333.3 for=7s; \
         step from=100 to=700 steps=4 for=8s; spike rate=50 peak=2500 spike=1.5s for=9s; \
         ramp from=900 to=10 for=3s",
        ArrivalProcess::Constant,
        1,
    ))
    .unwrap();
    // Expected by hand: 5000, 2333.1, (100+300+500+700)*2 = 3200, 50*7.5 + 2500*1.5 = 4125, 1365.
    let expected = [5000.0, 2333.1, 3200.0, 4125.0, 1365.0];
    let counts = per_phase(&s, Shard::WHOLE);
    for (i, (got, want)) in counts.iter().zip(expected).enumerate() {
        assert!(
            (*got as f64 - want).abs() <= 1.0,
            "phase {i}: {got} arrivals, expected {want}"
        );
        assert!((s.phases()[i].expected_arrivals - want).abs() < 1e-6);
    }
    let mut last = Duration::ZERO;
    for a in s.arrivals(Shard::WHOLE) {
        let p = &s.phases()[a.phase];
        assert!(a.intended >= last, "arrivals out of order at {}", a.index);
        assert!(a.intended >= p.start && a.intended <= p.start + p.duration);
        last = a.intended;
    }
}

/// A ramp sends fewer arrivals in its first half than in its second (the shape is real),
/// and a spike packs its peak into the middle.
#[test]
fn ramp_and_spike_have_their_shape() {
    let s = Schedule::compile(&spec(
        "ramp from=0 to=1000 for=10s; spike rate=10 peak=1000 spike=1s for=9s",
        ArrivalProcess::Constant,
        1,
    ))
    .unwrap();
    let arrivals: Vec<_> = s.arrivals(Shard::WHOLE).collect();
    let early = arrivals
        .iter()
        .filter(|a| a.intended < Duration::from_secs(5))
        .count();
    assert!(
        (1249..=1251).contains(&early),
        "first half of the ramp: {early}"
    );
    let in_spike = arrivals
        .iter()
        .filter(|a| a.intended >= Duration::from_secs(14) && a.intended < Duration::from_secs(15))
        .count();
    assert!((999..=1001).contains(&in_spike), "spike second: {in_spike}");
}

/// Poisson arrivals hit the mean rate within 2 % for a fixed seed, and the same seed gives
/// exactly the same arrivals.
#[test]
fn poisson_mean_rate_within_two_percent() {
    let s = Schedule::compile(&spec("hold rate=2000 for=60s", ArrivalProcess::Poisson, 7)).unwrap();
    let arrivals: Vec<_> = s.arrivals(Shard::WHOLE).collect();
    let rate = arrivals.len() as f64 / 60.0;
    assert!((rate - 2000.0).abs() / 2000.0 < 0.02, "rate {rate}");
    // Gaps are exponential: their coefficient of variation is 1 (a constant process has 0).
    let gaps: Vec<f64> = arrivals
        .windows(2)
        .map(|w| (w[1].intended - w[0].intended).as_secs_f64())
        .collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    let cv = var.sqrt() / mean;
    assert!((cv - 1.0).abs() < 0.05, "coefficient of variation {cv}");
    let again: Vec<_> = s.arrivals(Shard::WHOLE).collect();
    assert_eq!(arrivals, again);
}

/// The seed matters: another seed gives another Poisson schedule (same mean rate).
#[test]
fn different_seed_gives_different_schedule() {
    let times = |seed| {
        let s = Schedule::compile(&spec(
            "hold rate=100 for=10s",
            ArrivalProcess::Poisson,
            seed,
        ))
        .unwrap();
        s.arrivals(Shard::WHOLE)
            .map(|a| a.intended)
            .collect::<Vec<_>>()
    };
    assert_eq!(times(1), times(1));
    assert_ne!(times(1), times(2));
}

/// Shards are disjoint, deterministic, each about 1/N, and together exactly the whole.
#[test]
fn shards_partition_the_schedule() {
    let s = Schedule::compile(&spec(
        "ramp to=500 for=4s; hold rate=500 for=4s",
        ArrivalProcess::Poisson,
        3,
    ))
    .unwrap();
    let whole: Vec<_> = s.arrivals(Shard::WHOLE).collect();
    let mut union = Vec::new();
    for i in 0..3 {
        let shard = Shard::new(i, 3).unwrap();
        let part: Vec<_> = s.arrivals(shard).collect();
        assert_eq!(part, s.arrivals(shard).collect::<Vec<_>>());
        let share = part.len() as f64 / whole.len() as f64;
        assert!((share - 1.0 / 3.0).abs() < 0.01, "shard {i} has {share}");
        union.extend(part);
    }
    union.sort_by_key(|a| a.index);
    assert_eq!(union, whole);
}

/// Bad phases are refused with the field, the value and a fix: rate <= 0, missing or bad
/// durations, unknown kinds and keys, impossible spikes and staircases.
#[test]
fn bad_phases_name_the_field_and_the_fix() {
    let cases = [
        ("hold rate=0 for=10s", "phases[0].rate"),
        ("hold rate=-5 for=10s", "phases[0].rate"),
        ("hold rate=100 for=10", "--phases[0]"),
        ("hold rate=100", "--phases[0]"),
        ("hold rate=100 for=10s rat=3", "--phases[0]"),
        ("hover rate=100 for=10s", "--phases[0]"),
        (
            "spike rate=10 peak=100 spike=20s for=10s",
            "phases[0].spike",
        ),
        ("step from=1 to=5 steps=1 for=10s", "phases[0].steps"),
        ("ramp from=0 to=0 for=10s", "phases[0].to"),
        ("hold rate=1e12 for=1s", "phases[0].rate"),
    ];
    for (text, field) in cases {
        let err = ScheduleSpec::parse_phases(text)
            .and_then(|phases| {
                Schedule::compile(&ScheduleSpec {
                    phases,
                    arrival: ArrivalProcess::Constant,
                    seed: 0,
                })
            })
            .expect_err(text);
        let message = err.to_string();
        assert!(err.is_bad_input(), "{text}: {message}");
        assert!(message.contains(field), "{text}: {message}");
        assert!(message.contains("fix:"), "{text}: {message}");
    }
}

/// The text form of a phase reads back to the same phase (reports print it).
#[test]
fn phase_text_round_trips() {
    let phases = ScheduleSpec::parse_phases(
        "hold rate=10 for=1m; ramp from=1 to=2 for=500ms; step from=1 to=9 steps=3 for=3s; \
         spike rate=5 peak=50 spike=2s for=10s",
    )
    .unwrap();
    for phase in &phases {
        assert_eq!(&PhaseSpec::parse("p", &phase.to_text()).unwrap(), phase);
    }
}

/// Profiles deserialise the same phases from TOML-like data, refusing unknown fields.
#[test]
fn spec_deserialises_with_unknown_fields_refused() {
    let ok: ScheduleSpec = serde_json::from_value(serde_json::json!({
        "phases": [{"kind": "hold", "rate": 10.0, "for": "5s"}],
        "arrival": "poisson",
        "seed": 9
    }))
    .unwrap();
    assert_eq!(ok.arrival, ArrivalProcess::Poisson);
    let bad = serde_json::from_value::<ScheduleSpec>(serde_json::json!({
        "phases": [{"kind": "hold", "rate": 10.0, "for": "5s", "burst": 3}]
    }));
    assert!(bad.unwrap_err().to_string().contains("burst"));
}
