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
        if let Err(work) = topology
            .drain(prepared.loaded.drain, started.interrupt.clone())
            .await
        {
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

/// After the drain: `GET /v1/orders/{id}` at the customer's entry region for every order
/// whose customer does not know how it ended, recorded in the history as `final_poll`
/// requests (the witness of what such a customer would see now).
async fn final_polls(
    prepared: &Prepared,
    region_urls: &[String],
    interrupt: &tokio::sync::watch::Receiver<bool>,
) {
    use loadgen::checkout::answer::{AnswerBody, classify};
    use loadgen::checkout::history::final_poll;
    let sink = loadgen::HistorySink::Sqlite {
        path: prepared.history_path(),
    };
    let open = match final_poll::open_orders(&sink, MAX_FINAL_POLLS).await {
        Ok(open) => open,
        Err(err) => {
            eprintln!("rig run: no final polls: {err}");
            return;
        }
    };
    if open.is_empty() {
        return;
    }
    let http = rig_http::HttpClient::new(Duration::from_millis(500), 4);
    let until = tokio::time::Instant::now() + FINAL_POLL_TIME;
    let mut polls = Vec::with_capacity(open.len());
    let mut answers: std::collections::BTreeMap<&'static str, u64> = Default::default();
    let asked = open.len();
    for order in open {
        if tokio::time::Instant::now() >= until || *interrupt.borrow() {
            break;
        }
        let base = match order.entry_region.as_str() {
            "b" if region_urls.len() > 1 => &region_urls[1],
            _ => &region_urls[0],
        };
        let sent_at_us = evidence::time::now_us();
        let result = http
            .send(
                rig_http::Method::GET,
                &format!(
                    "{}/v1/orders/{}",
                    base.trim_end_matches('/'),
                    order.order_id
                ),
                &[],
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
        *answers.entry(answer).or_default() += 1;
        polls.push(final_poll::FinalPoll {
            order,
            sent_at_us,
            finished_at_us,
            http_status,
            answer,
        });
    }
    let said: Vec<String> = answers.iter().map(|(a, n)| format!("{n} {a}")).collect();
    eprintln!(
        "rig run: asked the system again about {} of {asked} orders whose customers did not know how they ended: {}",
        polls.len(),
        said.join(", ")
    );
    if let Err(err) = final_poll::record(&sink, &polls).await {
        eprintln!("rig run: {err}");
    }
}

/// The verdict and the thresholds.
pub struct Judgement {
    pub report: verifier::Report,
    pub thresholds: Vec<Judged>,
    pub summary: Summary,
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
        asked: (!prepared.external).then(|| profile.target.run_params()),
        // An interrupted run had no drain: what it left open is unknown, not a violation.
        interrupted_at_us: driven.interrupted().then_some(drained.end_at_us),
        event_age_ms: profile.event_age_ms(),
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
    Ok(Judgement {
        report,
        thresholds,
        summary,
    })
}
