//! The history writer: a thread of its own with a current-thread runtime, fed through a
//! bounded channel (customers that finished) and a capped side buffer (arrivals that never
//! reached a lane, customers cut short by the drain). It gathers records for a moment and
//! writes each batch in one transaction; without a sink it only counts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::sql;
use super::stats::{HistoryStats, RequestStats};
use super::{ArrivalRow, HistorySink, Record, RowContext};
use crate::checkout::answer::ClientOutcome;
use crate::{Dispatch, LoadgenError, Outcome, Shard};

/// Customers' records queued for the writer at most (each is one arrival and its requests).
const CHANNEL_RECORDS: usize = 16_384;
/// Records the writer takes per pass (one transaction).
const BATCH_RECORDS: usize = 1_024;
/// Arrivals that never reached a lane held for the writer at most; beyond it they are
/// counted as lost rows (the writer would have to be stuck for this to happen).
const SIDE_CAP: usize = 262_144;
/// The writer's pass interval when nothing arrives through the channel.
const TICK: Duration = Duration::from_millis(100);
/// After the first record of a pass, how long the writer lets more gather before writing:
/// one transaction per record would spend the writer on transaction overhead and thread
/// hand-offs (measured: 8k records/s took half a core). Short enough that one batch is a
/// short burst of work: the writer shares the machine (often a core) with the generator,
/// and a long burst shows as generator lag. The channel holds 80 ms of records at 50k/s.
const LINGER: Duration = Duration::from_millis(10);

enum Side {
    NotStarted(Dispatch, Outcome),
    Aborted(Record),
}

/// The lanes' end of the history: cheap to share, never blocks the dispatcher.
pub struct HistoryTx {
    tx: mpsc::Sender<Record>,
    side: Arc<Mutex<VecDeque<Side>>>,
    lost: Arc<AtomicU64>,
}

impl std::fmt::Debug for HistoryTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryTx").finish_non_exhaustive()
    }
}

impl HistoryTx {
    /// Room for one record: waits while the writer is behind (bounded memory).
    pub async fn reserve(&self) -> Option<mpsc::Permit<'_, Record>> {
        self.tx.reserve().await.ok()
    }

    /// An arrival the engine never gave to a lane.
    pub fn not_started(&self, dispatch: &Dispatch, outcome: Outcome) {
        self.push_side(Side::NotStarted(*dispatch, outcome));
    }

    /// A customer cut short (its lane aborted at the end of the drain): written as far as
    /// it got.
    pub fn aborted(&self, record: Record) {
        self.push_side(Side::Aborted(record));
    }

    fn push_side(&self, item: Side) {
        let mut side = self.side.lock().unwrap_or_else(|p| p.into_inner());
        if side.len() >= SIDE_CAP {
            self.lost.fetch_add(1, Ordering::Relaxed);
        } else {
            side.push_back(item);
        }
    }
}

/// The writer, running on its own thread until every [`HistoryTx`] is dropped.
pub struct HistoryWriter {
    done: oneshot::Receiver<(HistoryStats, RequestStats)>,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryWriter").finish_non_exhaustive()
    }
}

/// A history opened (tables created, emptiness checked) whose writer waits for the
/// [`RowContext`], which needs the targets' skus: so a bad history is refused before any
/// request goes out. Dropping it closes the history unused.
pub struct OpenHistory {
    context: oneshot::Sender<RowContext>,
    done: oneshot::Receiver<(HistoryStats, RequestStats)>,
    tx: mpsc::Sender<Record>,
    side: Arc<Mutex<VecDeque<Side>>>,
    lost: Arc<AtomicU64>,
}

impl std::fmt::Debug for OpenHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenHistory").finish_non_exhaustive()
    }
}

impl OpenHistory {
    /// Starts writing: returns the writer and the lanes' end.
    pub fn start(self, context: RowContext) -> (HistoryWriter, HistoryTx) {
        let _ = self.context.send(context);
        (
            HistoryWriter { done: self.done },
            HistoryTx {
                tx: self.tx,
                side: self.side,
                lost: self.lost,
            },
        )
    }
}

impl HistoryWriter {
    /// Opens `sink` (creating its tables, refusing one that already holds rows of this
    /// shard) on a new thread; the writer starts with [`OpenHistory::start`].
    pub async fn open(
        sink: Option<HistorySink>,
        shard: Shard,
    ) -> Result<OpenHistory, LoadgenError> {
        let (tx, rx) = mpsc::channel(CHANNEL_RECORDS);
        let side = Arc::new(Mutex::new(VecDeque::new()));
        let lost = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = oneshot::channel();
        let (context_tx, context_rx) = oneshot::channel::<RowContext>();
        let (done_tx, done_rx) = oneshot::channel();
        let writer_side = Arc::clone(&side);
        let writer_lost = Arc::clone(&lost);
        std::thread::Builder::new()
            .name("loadgen-history".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready_tx.send(Err(LoadgenError::Thread(err.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let location = sink.as_ref().map(HistorySink::describe);
                    let sql = match &sink {
                        Some(sink) => match sql::SqlSink::open(sink, shard).await {
                            Ok(sql) => Some(sql),
                            Err(err) => {
                                let _ = ready_tx.send(Err(err));
                                return;
                            }
                        },
                        None => None,
                    };
                    let _ = ready_tx.send(Ok(()));
                    if let Ok(context) = context_rx.await {
                        let mut writer = Writer {
                            rx,
                            side: writer_side,
                            lost: writer_lost,
                            sql,
                            context,
                            history: HistoryStats::new(location),
                            requests: RequestStats::default(),
                        };
                        writer.run().await;
                        // Closed (WAL checkpointed) before `finish` returns, so the file is
                        // whole for whoever reads it next.
                        if let Some(sql) = &writer.sql {
                            sql.close().await;
                        }
                        let _ = done_tx.send((writer.history, writer.requests));
                    } else if let Some(sql) = &sql {
                        sql.close().await;
                    }
                });
            })
            .map_err(|err| LoadgenError::Thread(err.to_string()))?;
        ready_rx.await.map_err(|_| {
            LoadgenError::Thread("the history writer stopped before it was ready".into())
        })??;
        Ok(OpenHistory {
            context: context_tx,
            done: done_rx,
            tx,
            side,
            lost,
        })
    }

    /// Waits until every record is written (after every [`HistoryTx`] is dropped) and
    /// returns what was written and the per-request statistics.
    pub async fn finish(self) -> Result<(HistoryStats, RequestStats), LoadgenError> {
        self.done
            .await
            .map_err(|_| LoadgenError::Thread("the history writer died (a panic?)".into()))
    }
}

struct Writer {
    rx: mpsc::Receiver<Record>,
    side: Arc<Mutex<VecDeque<Side>>>,
    lost: Arc<AtomicU64>,
    sql: Option<sql::SqlSink>,
    context: RowContext,
    history: HistoryStats,
    requests: RequestStats,
}

impl Writer {
    async fn run(&mut self) {
        let mut batch: Vec<Record> = Vec::with_capacity(BATCH_RECORDS);
        loop {
            let mut received = tokio::select! {
                n = self.rx.recv_many(&mut batch, BATCH_RECORDS) => Some(n),
                () = tokio::time::sleep(TICK) => None,
            };
            if received.is_some_and(|n| n > 0) && batch.len() < BATCH_RECORDS {
                // Sleep rather than listen: listening would wake this thread (and cost the
                // sending lane a wake-up call) once per record.
                tokio::time::sleep(LINGER).await;
                while batch.len() < BATCH_RECORDS {
                    match self.rx.try_recv() {
                        Ok(record) => batch.push(record),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            received = Some(0);
                            break;
                        }
                    }
                }
            }
            let side: Vec<Side> = {
                let mut side = self.side.lock().unwrap_or_else(|p| p.into_inner());
                side.drain(..).collect()
            };
            for item in side {
                batch.push(match item {
                    Side::NotStarted(dispatch, outcome) => self.not_started(&dispatch, outcome),
                    Side::Aborted(record) => record,
                });
            }
            if !batch.is_empty() {
                self.write(&batch).await;
                batch.clear();
            }
            // `recv_many` returns 0 only once the channel is closed and empty; every sender
            // (and so every pusher to the side buffer) is gone, and it was drained above.
            if received == Some(0) {
                break;
            }
        }
        self.history.lost += self.lost.load(Ordering::Relaxed);
    }

    fn not_started(&self, dispatch: &Dispatch, outcome: Outcome) -> Record {
        let customer = self.context.model.customer(dispatch.arrival.index);
        let (outcome, detail) = match outcome {
            Outcome::Dropped => (
                ClientOutcome::Dropped,
                "dropped: the in-flight cap was reached",
            ),
            _ => (
                ClientOutcome::Unknown,
                "never started: still queued when the drain timeout ended the run",
            ),
        };
        Record {
            arrival: ArrivalRow {
                index: dispatch.arrival.index,
                phase: dispatch.arrival.phase,
                intended_at: dispatch.intended_at,
                region: customer.region,
                customer: customer.customer,
                sent_at: None,
                finished_at: None,
                attempts: 0,
                polls: 0,
                last_status: None,
                outcome,
                detail: Some(detail.to_string()),
                // Nothing was sent: no cart.
                cart: None,
            },
            requests: Vec::new(),
        }
    }

    async fn write(&mut self, batch: &[Record]) {
        for record in batch {
            self.history.count(record);
            self.requests.record(&record.requests);
        }
        let Some(sql) = &self.sql else { return };
        if self.history.error.is_some() {
            // The sink failed earlier: keep counting (the run goes on), stop retrying it.
            self.history.lost += batch.len() as u64;
            return;
        }
        match sql.write(&self.context, batch).await {
            Ok((arrivals, requests)) => {
                self.history.arrivals_written += arrivals;
                self.history.requests_written += requests;
            }
            Err(err) => {
                self.history.lost += batch.len() as u64;
                self.history.error = Some(err.to_string());
            }
        }
    }
}
