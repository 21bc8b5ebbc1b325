//! One customer, start to end: `POST /v1/checkout` with the order id as `Idempotency-Key`;
//! on a timeout, a broken connection, a 5xx or a shed answer, the same request again (same
//! key, same body) after a full-jitter backoff and never sooner than `Retry-After`; maybe a
//! second, concurrent click; on `202`, polls of `GET /v1/orders/{id}` with a growing
//! interval until the order is final or the poll budget is spent. Every request becomes a
//! history row; the customer's answers decide its outcome ([`ClientOutcome::decide`]).
//!
//! Bounded: at most `max_attempts` checkouts (+1 double-click) and `max_polls` polls, each
//! within the per-request timeout, and nothing at all after `give_up_after`.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use tokio::time::Instant;

use super::answer::{Answer, ClientOutcome, RequestKind, RetryAfter, classify};
use super::client::{Failure, Reply};
use super::customer::Customer;
use super::history::{ArrivalRow, Record, RequestRow};
use super::shared::Shared;
use crate::{Completion, Dispatch, SeededRng};

/// Performs arrival `dispatch` and reports it to the history and the engine.
pub(super) async fn perform(shared: &Shared, dispatch: Dispatch) -> Completion {
    let customer = shared.model.customer(dispatch.arrival.index);
    let order_id = shared.context.order_id(dispatch.arrival.index);
    let body = Bytes::from(shared.model.body(&order_id, &customer));
    let journey = Journey {
        shared,
        dispatch,
        status_path: format!("/v1/orders/{order_id}"),
        trace: shared.context.trace_id(dispatch.arrival.index),
        order_id,
        body,
        cart: shared.model.cart(&customer),
        region: customer.region,
        customer: customer.customer,
        deadline: Instant::now() + shared.plan.give_up_after,
        jitter: Mutex::new(SeededRng::new(customer.jitter_seed)),
        log: Mutex::new(Log::default()),
    };
    let mut guard = AbortGuard {
        journey: &journey,
        armed: true,
    };
    journey.run(&customer).await;
    // Room first, then the record: a lane aborted while waiting here still leaves its
    // record to the guard.
    let permit = shared.history.reserve().await;
    let (record, completion) = journey.finish(None);
    if let Some(permit) = permit {
        permit.send(record);
    }
    guard.armed = false;
    completion
}

/// Writes what a customer got so far if its lane is aborted (end of the drain).
struct AbortGuard<'a> {
    journey: &'a Journey<'a>,
    armed: bool,
}

impl Drop for AbortGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let (record, _) = self
                .journey
                .finish(Some("aborted: the drain timeout ended the run first"));
            self.journey.shared.history.aborted(record);
        }
    }
}

struct Journey<'a> {
    shared: &'a Shared,
    dispatch: Dispatch,
    order_id: String,
    /// The customer's trace: every request sends it, each with a span of its own.
    trace: evidence::trace::TraceId,
    status_path: String,
    body: Bytes,
    /// The items sent, as the history keeps them.
    cart: String,
    region: usize,
    customer: u64,
    deadline: Instant,
    jitter: Mutex<SeededRng>,
    log: Mutex<Log>,
}

/// What happened so far; locked briefly, never across an await.
#[derive(Default)]
struct Log {
    next_seq: u32,
    /// Requests on the wire: (seq, kind, sent at).
    open: Vec<(u32, RequestKind, Instant)>,
    rows: Vec<RequestRow>,
    /// The `failed_safely` reason, when one came.
    reason: Option<String>,
    /// Where a `202` said to look (a path on the entry region).
    status_url: Option<String>,
    /// The latest thing worth telling about a non-final outcome.
    note: Option<String>,
    bytes: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The path of a `status_url` (relative, or absolute on some host: the entry region is
/// asked either way); `None` for anything that is not a plain path.
fn status_path(url: &str) -> Option<String> {
    let path = match url.parse::<hyper::Uri>() {
        Ok(uri) if uri.scheme().is_some() => uri.path_and_query()?.as_str().to_string(),
        Ok(_) => url.to_string(),
        Err(_) => return None,
    };
    path.starts_with('/').then_some(path)
}

fn ms(d: Duration) -> String {
    crate::format_duration(d.max(Duration::from_millis(1)))
}

impl Journey<'_> {
    async fn run(&self, customer: &Customer) {
        let second_click = async {
            if let Some(gap) = customer.double_click {
                tokio::time::sleep(gap).await;
                self.post(RequestKind::DoubleClick).await;
            }
        };
        tokio::join!(self.checkout(), second_click);
        let answers: Vec<Answer> = lock(&self.log).rows.iter().map(|r| r.answer).collect();
        let settled = answers
            .iter()
            .any(|a| matches!(a, Answer::Confirmed | Answer::Failed));
        if !settled && answers.contains(&Answer::Pending) {
            self.poll().await;
        }
    }

    /// The first click and its retries, until an answer that retrying cannot change.
    async fn checkout(&self) {
        let max = self.shared.plan.max_attempts;
        for attempt in 1..=max {
            let kind = if attempt == 1 {
                RequestKind::Checkout
            } else {
                RequestKind::Retry
            };
            let Some((answer, retry_after)) = self.post(kind).await else {
                return;
            };
            if !answer.is_retryable() {
                return;
            }
            if attempt == max {
                self.note(format!("gave up after {max} attempt(s)"));
                return;
            }
            let Some(wait) = self.wait_after(answer, retry_after, Some(self.backoff(attempt)))
            else {
                return;
            };
            if Instant::now() + wait >= self.deadline {
                self.note(format!(
                    "gave up: a retry in {} would pass give_up_after",
                    ms(wait)
                ));
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Polls the order after a `202` until it is final or the budget is spent.
    async fn poll(&self) {
        let plan = &self.shared.plan;
        let mut interval = plan.poll_initial;
        let mut floor = Duration::ZERO;
        for _ in 0..plan.max_polls {
            let wait = interval.max(floor);
            if Instant::now() + wait >= self.deadline {
                self.note(format!(
                    "no final answer: a poll in {} would pass give_up_after",
                    ms(wait)
                ));
                return;
            }
            tokio::time::sleep(wait).await;
            let Some((answer, retry_after)) = self.get_status().await else {
                return;
            };
            if matches!(answer, Answer::Confirmed | Answer::Failed) {
                return;
            }
            match self.wait_after(answer, retry_after, None) {
                Some(wait) => floor = wait,
                None => return,
            }
            interval = interval
                .mul_f64(plan.poll_multiplier)
                .min(plan.poll_max_interval);
        }
        if plan.max_polls > 0 {
            self.note(format!(
                "no final answer within the poll budget ({} polls)",
                plan.max_polls
            ));
        }
    }

    /// How long to wait before asking again: at least `Retry-After` (if any), at least
    /// `backoff`. `None` (with a note) when the answer asks for more than `retry_after_max`
    /// or for something unreadable: the customer stops rather than ask too soon.
    fn wait_after(
        &self,
        answer: Answer,
        retry_after: RetryAfter,
        backoff: Option<Duration>,
    ) -> Option<Duration> {
        let backoff = backoff.unwrap_or_default();
        match retry_after {
            RetryAfter::Unreadable => {
                self.note(format!(
                    "stopped: {} with an unreadable Retry-After",
                    answer.as_str()
                ));
                None
            }
            RetryAfter::Wait(asked) if asked > self.shared.plan.retry_after_max => {
                self.note(format!(
                    "stopped: Retry-After {} is above retry_after_max {}",
                    ms(asked),
                    ms(self.shared.plan.retry_after_max)
                ));
                None
            }
            RetryAfter::Wait(asked) => Some(asked.max(backoff)),
            RetryAfter::Absent => Some(backoff),
        }
    }

    /// Full jitter: uniform in `[0, min(backoff_max, backoff_base * 2^(retry-1))]`.
    fn backoff(&self, retry: u32) -> Duration {
        let plan = &self.shared.plan;
        let cap = plan
            .backoff_base
            .saturating_mul(1u32 << (retry - 1).min(20))
            .min(plan.backoff_max);
        cap.mul_f64(lock(&self.jitter).next_open01())
    }

    /// One checkout `POST` (first, retry or double-click); `None` if past `give_up_after`.
    async fn post(&self, kind: RequestKind) -> Option<(Answer, RetryAfter)> {
        self.send(kind, Method::POST, "/v1/checkout").await
    }

    async fn get_status(&self) -> Option<(Answer, RetryAfter)> {
        let path = lock(&self.log)
            .status_url
            .clone()
            .unwrap_or_else(|| self.status_path.clone());
        self.send(RequestKind::Poll, Method::GET, &path).await
    }

    async fn send(
        &self,
        kind: RequestKind,
        method: Method,
        path: &str,
    ) -> Option<(Answer, RetryAfter)> {
        let sent_at = Instant::now();
        if sent_at >= self.deadline {
            return None;
        }
        let seq = {
            let mut log = lock(&self.log);
            let seq = log.next_seq;
            log.next_seq += 1;
            log.open.push((seq, kind, sent_at));
            seq
        };
        let deadline = (sent_at + self.shared.plan.request_timeout).min(self.deadline);
        let (key, body) = match kind {
            RequestKind::Poll => (None, None),
            _ => (Some(self.order_id.as_str()), Some(&self.body)),
        };
        let traceparent = evidence::trace::TraceParent {
            trace_id: self.trace,
            parent_id: evidence::trace::request_span(self.trace, seq),
            flags: 1,
        }
        .header();
        let result = self.shared.pools[self.region]
            .send(method, path, key, body, Some(&traceparent), deadline)
            .await;
        Some(self.record(seq, kind, sent_at, result))
    }

    /// Turns a request's result into its row and notes what the customer learnt.
    fn record(
        &self,
        seq: u32,
        kind: RequestKind,
        sent_at: Instant,
        result: Result<Reply, Failure>,
    ) -> (Answer, RetryAfter) {
        let finished_at = Instant::now();
        let mut log = lock(&self.log);
        log.open.retain(|(s, _, _)| *s != seq);
        let (answer, status, retry_after) = match result {
            Ok(reply) => {
                let answer = classify(reply.status, reply.body.as_ref());
                log.bytes += reply.raw.len() as u64;
                match answer {
                    Answer::Failed => {
                        log.reason = reply.body.as_ref().and_then(|b| b.reason.clone());
                    }
                    Answer::Pending => {
                        if let Some(path) = reply
                            .body
                            .as_ref()
                            .and_then(|b| b.status_url.as_deref())
                            .and_then(status_path)
                        {
                            log.status_url = Some(path);
                        }
                    }
                    Answer::Confirmed => {}
                    other => {
                        log.note = Some(format!("{} ({})", other.as_str(), reply.status));
                    }
                }
                (answer, Some(reply.status), reply.retry_after)
            }
            Err(failure) => {
                let answer = match failure {
                    Failure::Connect => Answer::ConnectError,
                    Failure::Broken => Answer::Error,
                    Failure::Timeout => Answer::Timeout,
                };
                log.note = Some(match failure {
                    Failure::Connect => "connect_error: no connection".to_string(),
                    Failure::Broken => "error: the connection broke".to_string(),
                    Failure::Timeout => format!(
                        "timeout: no answer within {}",
                        ms(finished_at.saturating_duration_since(sent_at))
                    ),
                });
                (answer, None, RetryAfter::Absent)
            }
        };
        log.rows.push(RequestRow {
            seq,
            kind,
            region: self.region,
            sent_at,
            finished_at,
            http_status: status,
            answer,
            retry_after_ms: retry_after.millis(),
        });
        (answer, retry_after)
    }

    fn note(&self, note: String) {
        lock(&self.log).note = Some(note);
    }

    /// The customer's record and the engine's completion; `aborted` turns requests still
    /// on the wire into timeouts (the client stopped waiting) and says why.
    fn finish(&self, aborted: Option<&str>) -> (Record, Completion) {
        let now = Instant::now();
        let mut log = lock(&self.log);
        let open = std::mem::take(&mut log.open);
        for (seq, kind, sent_at) in open {
            log.rows.push(RequestRow {
                seq,
                kind,
                region: self.region,
                sent_at,
                finished_at: now,
                http_status: None,
                answer: Answer::Timeout,
                retry_after_ms: None,
            });
        }
        let mut rows = std::mem::take(&mut log.rows);
        rows.sort_by_key(|r| r.seq);
        let outcome = ClientOutcome::decide(rows.iter().map(|r| r.answer));
        let last = rows
            .iter()
            .filter(|r| r.http_status.is_some())
            .max_by_key(|r| r.finished_at);
        let last_status = last.and_then(|r| r.http_status);
        let sent_at = rows.iter().map(|r| r.sent_at).min();
        let finished_at = rows.iter().map(|r| r.finished_at).max();
        let pending = rows.iter().any(|r| r.answer == Answer::Pending);
        let detail = match outcome {
            ClientOutcome::Confirmed => None,
            ClientOutcome::Failed => log.reason.clone().or(Some("failed_safely".into())),
            _ if pending && !rows.iter().any(|r| r.kind == RequestKind::Poll) => Some(
                log.note
                    .clone()
                    .unwrap_or_else(|| "accepted (202) but never polled".into()),
            ),
            _ => log.note.clone(),
        };
        let detail = match (aborted, detail) {
            (Some(why), Some(detail)) => Some(format!("{why}; {detail}")),
            (Some(why), None) => Some(why.to_string()),
            (None, detail) => detail,
        };
        let error = match outcome {
            ClientOutcome::Unknown if aborted.is_some() => Some("aborted"),
            ClientOutcome::Unknown if pending => Some("pending"),
            ClientOutcome::Unknown => rows.last().map(|r| match r.answer {
                Answer::Timeout => "timeout",
                Answer::ConnectError => "connect",
                Answer::Conflict => "conflict",
                Answer::Invalid => "invalid",
                Answer::Error if r.http_status.is_none() => "broken",
                _ => "http_error",
            }),
            _ => None,
        };
        let completion = Completion {
            op: "checkout",
            outcome: outcome.engine_outcome(),
            sent_at: sent_at.unwrap_or(self.dispatch.started_at),
            finished_at: finished_at.unwrap_or(now),
            status: last_status,
            error,
            bytes: log.bytes,
        };
        let arrival = ArrivalRow {
            index: self.dispatch.arrival.index,
            phase: self.dispatch.arrival.phase,
            intended_at: self.dispatch.intended_at,
            region: self.region,
            customer: self.customer,
            sent_at,
            finished_at,
            attempts: rows.iter().filter(|r| r.kind != RequestKind::Poll).count() as u32,
            polls: rows.iter().filter(|r| r.kind == RequestKind::Poll).count() as u32,
            last_status,
            outcome,
            detail,
            cart: sent_at.map(|_| self.cart.clone()),
        };
        (
            Record {
                arrival,
                requests: rows,
            },
            completion,
        )
    }
}
