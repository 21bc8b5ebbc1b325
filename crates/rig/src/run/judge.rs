//! Phases 4 and 5: the bounded drain, then the verdict from the durable records and the
//! profile's thresholds on the load's measurements.

use std::time::Duration;

use anyhow::Context;
use loadgen::Summary;

use super::thresholds::{self, Judged};
use super::{Driven, Prepared, Started};

/// How the drain ended.
#[derive(Debug)]
pub struct Drained {
    /// The work the system still had when the drain's bound ran out (None: all done, or
    /// no drain after Ctrl-C).
    pub left: Option<String>,
    /// When the evidence ends (wall-clock µs).
    pub end_at_us: i64,
}

/// Lets the system finish its open work (bounded by `run.drain`, cut short by Ctrl-C),
/// asks it once more about every order whose customer does not know how it ended (the
/// answers go to the history), then stops it.
pub async fn drain(prepared: &Prepared, started: &mut Started) -> Drained {
    let mut left = None;
    if !started.interrupted()
        && let Some(topology) = &started.topology
    {
        let drained = if topology.black_box {
            let orders = drain_over_http(prepared, &topology.region_urls, &started.interrupt).await;
            match orders {
                Ok(()) => events_delivered(prepared, topology, &started.interrupt).await,
                Err(left) => Err(left),
            }
        } else {
            topology
                .drain(prepared.loaded.drain, started.interrupt.clone())
                .await
        };
        if let Err(work) = drained {
            eprintln!("rig run: the drain ended with work left: {work}");
            left = Some(work);
        }
        if !started.interrupted() {
            final_polls(prepared, &topology.region_urls, &started.interrupt).await;
        }
    }
    let end_at_us = evidence::time::now_us();
    started.stop().await;
    Drained { left, end_at_us }
}

/// Final polls asked at most (a long soak's unknown customers beyond it are noted).
const MAX_FINAL_POLLS: usize = 20_000;
/// How long the final polls may take in all.
const FINAL_POLL_TIME: Duration = Duration::from_secs(30);

/// A black-box system's drain: its stores cannot be read, so it is asked over HTTP. Every
/// order whose customer does not know how it ended is polled at its entry region until
/// none answers pending (or the drain's bound, or Ctrl-C).
async fn drain_over_http(
    prepared: &Prepared,
    region_urls: &[String],
    interrupt: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + prepared.loaded.drain;
    let mut last_report = tokio::time::Instant::now();
    loop {
        let polls = ask_open(prepared, region_urls, interrupt).await?;
        let open = polls
            .iter()
            .filter(|p| !matches!(p.answer, "confirmed" | "failed" | "invalid"))
            .count();
        if open == 0 {
            return Ok(());
        }
        let left = format!("{open} orders not yet final when asked over HTTP");
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(left);
        }
        if *interrupt.borrow() {
            return Err(format!("interrupted with {left}"));
        }
        if now.duration_since(last_report) >= Duration::from_secs(5) {
            eprintln!("rig run: draining: {left}");
            last_report = now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A black-box system's events: waits (at most the event-age bound, or until Ctrl-C) until
/// the sink has a confirmation for as many orders as customers were told confirmed; what
/// is missing then is for the verifier to judge.
async fn events_delivered(
    prepared: &Prepared,
    topology: &super::topology::Topology,
    interrupt: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let told = {
        let db = evidence::HistorySource::Sqlite(prepared.history_path())
            .open_read_only()
            .await?;
        let told: Result<i64, _> = sqlx::query_scalar(evidence::reads::CUSTOMERS_TOLD_CONFIRMED)
            .fetch_one(&db.pool)
            .await;
        db.close().await;
        told.map_err(|err| err.to_string())?
    };
    let bound = Duration::from_secs_f64(prepared.profile().event_age_ms() / 1_000.0);
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let seen = topology
            .sink_confirmed_orders()
            .await
            .map_err(|err| err.to_string())?;
        if seen >= told {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline || *interrupt.borrow() {
            return Err(format!(
                "the sink has confirmations for {seen} of the {told} orders customers were told are confirmed"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// After the drain: `GET /v1/orders/{id}` at the customer's entry region for every order
/// whose customer does not know how it ended, recorded in the history as `final_poll`
/// requests (the witness of what such a customer would see now).
async fn final_polls(
    prepared: &Prepared,
    region_urls: &[String],
    interrupt: &tokio::sync::watch::Receiver<bool>,
) {
    use loadgen::checkout::history::final_poll;
    let polls = match ask_open(prepared, region_urls, interrupt).await {
        Ok(polls) => polls,
        Err(err) => {
            eprintln!("rig run: no final polls: {err}");
            return;
        }
    };
    if polls.is_empty() {
        return;
    }
    let mut answers: std::collections::BTreeMap<&'static str, u64> = Default::default();
    for poll in &polls {
        *answers.entry(poll.answer).or_default() += 1;
    }
    let said: Vec<String> = answers.iter().map(|(a, n)| format!("{n} {a}")).collect();
    eprintln!(
        "rig run: asked the system again about {} orders whose customers did not know how they ended: {}",
        polls.len(),
        said.join(", ")
    );
    let sink = loadgen::HistorySink::Sqlite {
        path: prepared.history_path(),
    };
    if let Err(err) = final_poll::record(&sink, &polls).await {
        eprintln!("rig run: {err}");
    }
}

/// Asks each region, over HTTP, about every order whose customer does not know how it
/// ended (at most [`MAX_FINAL_POLLS`], within [`FINAL_POLL_TIME`]).
async fn ask_open(
    prepared: &Prepared,
    region_urls: &[String],
    interrupt: &tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<loadgen::checkout::history::final_poll::FinalPoll>, String> {
    use loadgen::checkout::answer::{AnswerBody, classify};
    use loadgen::checkout::history::final_poll;
    let sink = loadgen::HistorySink::Sqlite {
        path: prepared.history_path(),
    };
    let open = final_poll::open_orders(&sink, MAX_FINAL_POLLS)
        .await
        .map_err(|err| err.to_string())?;
    let http = rig_http::HttpClient::new(Duration::from_millis(500), 4);
    let until = tokio::time::Instant::now() + FINAL_POLL_TIME;
    let mut polls = Vec::with_capacity(open.len());
    for order in open {
        if tokio::time::Instant::now() >= until || *interrupt.borrow() {
            break;
        }
        let base = match order.entry_region.as_str() {
            "b" if region_urls.len() > 1 => &region_urls[1],
            _ => &region_urls[0],
        };
        let sent_at_us = evidence::time::now_us();
        let span = order.span();
        let headers: Vec<(&str, &str)> = span
            .as_ref()
            .map(|(header, _)| vec![(evidence::trace::TRACEPARENT, header.as_str())])
            .unwrap_or_default();
        let result = http
            .send(
                rig_http::Method::GET,
                &format!(
                    "{}/v1/orders/{}",
                    base.trim_end_matches('/'),
                    order.order_id
                ),
                &headers,
                None,
                Duration::from_secs(2),
            )
            .await;
        let finished_at_us = evidence::time::now_us();
        let (http_status, answer) = match &result {
            Ok(response) => {
                let body: Option<AnswerBody> = response.json();
                let status = response.status.as_u16();
                (
                    Some(i64::from(status)),
                    classify(status, body.as_ref()).as_str(),
                )
            }
            Err(rig_http::ClientError::Timeout { .. }) => (None, "timeout"),
            Err(rig_http::ClientError::Connect { .. }) => (None, "connect_error"),
            Err(_) => (None, "error"),
        };
        polls.push(final_poll::FinalPoll {
            order,
            sent_at_us,
            finished_at_us,
            http_status,
            answer,
        });
    }
    Ok(polls)
}

/// The verdict and the thresholds.
pub struct Judgement {
    pub report: verifier::Report,
    pub thresholds: Vec<Judged>,
    pub summary: Summary,
    /// The report's orders section (`None`: it could not be read, which is said).
    pub orders: Option<verifier::orders::Orders>,
}

/// The orders section: pending times, and the ten slowest and ten longest-pending orders,
/// each explained.
async fn orders_section(
    sources: &verifier::Sources,
    asked: Option<&evidence::RunParams>,
) -> anyhow::Result<Option<verifier::orders::Orders>> {
    let stores = verifier::Stores::open(sources, asked).await?;
    let (faults, load_start_us) = match &sources.journal {
        Some(path) => (
            verifier::journal::fault_windows(path)?,
            verifier::journal::load_start_us(path),
        ),
        None => (Vec::new(), None),
    };
    Ok(verifier::orders::orders(&stores, &faults, load_start_us, 10).await?)
}

/// Runs the verifier over the run's stores, history and journal, and judges the thresholds.
pub async fn judge(
    prepared: &Prepared,
    driven: &Driven,
    drained: &Drained,
) -> anyhow::Result<Judgement> {
    let profile = prepared.profile();
    let sources = verifier::Sources {
        store: prepared.store.clone(),
        history: Some(verifier::HistorySource::Sqlite(prepared.history_path())),
        journal: Some(prepared.journal_path()),
    };
    let options = verifier::Options {
        end_at_us: Some(drained.end_at_us),
        max_dossiers: profile.verify.max_dossiers,
        shed_p99_ms: profile.verify.shed_p99_ms,
        goodput_fraction: profile.verify.goodput_fraction,
        // The bounds are what this run asked of the system it started; an external system
        // was configured elsewhere, and its own record is all there is.
        // A black-box system is judged by the profile alone.
        asked: match prepared.system {
            super::SystemKind::Reference => Some(profile.target.run_params()),
            super::SystemKind::External => None,
            super::SystemKind::BlackBox => Some(profile.black_box_bounds().0),
        },
        admission_bounds: prepared.system != super::SystemKind::BlackBox
            || profile.black_box_bounds().1,
        // An interrupted run had no drain: what it left open is unknown, not a violation.
        interrupted_at_us: driven.interrupted().then_some(drained.end_at_us),
        event_age_ms: profile.event_age_ms(),
        prices: profile.prices(),
    };
    let report = verifier::verify(&sources, &options)
        .await
        .context("the evidence could not be read; verdict unknown")?;
    let checkout = &driven.checkout;
    let summary = Summary::new(
        &checkout.report,
        &checkout.schedule,
        Duration::from_millis(1),
    );
    let thresholds = profile
        .thresholds
        .iter()
        .filter_map(|(k, e)| thresholds::Threshold::parse(k, e).ok())
        .map(|t| t.judge(&checkout.report))
        .collect();
    let orders = orders_section(&sources, options.asked.as_ref())
        .await
        .unwrap_or_else(|err| {
            eprintln!("rig run: the report's orders section is missing: {err:#}");
            None
        });
    Ok(Judgement {
        report,
        thresholds,
        summary,
        orders,
    })
}
