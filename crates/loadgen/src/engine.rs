//! The open-loop engine: walks a schedule, admits each arrival at its intended time whatever
//! happened to earlier ones, and never waits for a response before the next admission.
//!
//! Admitted arrivals go into one FIFO queue served by the workload's lanes (for HTTP, one
//! lane per keep-alive connection); a free lane takes the next arrival. Bounded by
//! construction: at most `max_in_flight` arrivals are queued or running; an arrival due
//! while the cap is reached is counted `dropped` (with its intended time), never queued for
//! later. After the schedule, in-flight arrivals get `drain_timeout` to finish; the rest are
//! aborted and counted `unknown`. So every run ends by itself.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::observer::{IntervalView, Observer, Progress};
use crate::pacer::Pacer;
use crate::recorder::Recorder;
use crate::report::{Report, RunMeta};
use crate::{Completion, Dispatch, LoadgenError, Outcome, Schedule, Shard, Workload};

/// How the engine bounds and reports a run.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Most arrivals queued or running at once; beyond it arrivals are dropped (and counted).
    pub max_in_flight: usize,
    /// How long arrivals still running after the schedule may take before being aborted.
    pub drain_timeout: Duration,
    /// Length of an interval: one `.hlog` line per tag and one progress report each.
    pub interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 10_000,
            drain_timeout: Duration::from_secs(10),
            interval: Duration::from_secs(1),
        }
    }
}

/// How many arrivals may be admitted back to back (when catching up) before the dispatcher
/// yields, so lanes keep being served.
const BURST_BEFORE_YIELD: u32 = 64;

struct State {
    recorder: Recorder,
    queue: VecDeque<Dispatch>,
    /// What each lane is performing.
    running: Vec<Option<Dispatch>>,
    /// Queued + running.
    in_flight: usize,
    /// Lanes waiting for work, in the order they became idle, with their wakers.
    idle: VecDeque<usize>,
    wakers: Vec<Option<Waker>>,
    /// No more arrivals will be admitted.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the drain when nothing is in flight any more.
    drained: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not lose the measurements gathered so far.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One run of a workload over (a shard of) a schedule.
#[derive(Debug)]
pub struct Engine<W> {
    schedule: Schedule,
    shard: Shard,
    workload: Arc<W>,
    config: EngineConfig,
}

impl<W: Workload> Engine<W> {
    /// Checks the configuration; the schedule is already valid by construction.
    pub fn new(
        schedule: Schedule,
        shard: Shard,
        workload: Arc<W>,
        config: EngineConfig,
    ) -> Result<Self, LoadgenError> {
        if config.max_in_flight == 0 {
            return Err(LoadgenError::invalid(
                "--max-in-flight",
                0,
                "no arrival could ever start",
                "set it to at least 1 (the default is 10000)",
            ));
        }
        if config.interval < Duration::from_millis(10) {
            return Err(LoadgenError::invalid(
                "interval",
                crate::duration::format_duration(config.interval),
                "intervals shorter than 10ms make the interval log mostly overhead",
                "use 1s",
            ));
        }
        if workload.lanes() == 0 {
            return Err(LoadgenError::invalid(
                "lanes",
                0,
                "the workload has no lane to perform arrivals on",
                "give it at least one (e.g. --connections 1)",
            ));
        }
        Ok(Self {
            schedule,
            shard,
            workload,
            config,
        })
    }

    /// Runs the schedule to its end (or until `shutdown` completes), drains, and reports.
    /// `observer` sees every interval as it closes.
    pub async fn run(
        &self,
        observer: &mut dyn Observer,
        shutdown: impl Future<Output = ()>,
    ) -> Report {
        let lanes = self.workload.lanes().min(self.config.max_in_flight);
        let pacer = Pacer::new();
        let started_at = SystemTime::now();
        let start = Instant::now();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                recorder: Recorder::new(start, self.schedule.phases()),
                queue: VecDeque::new(),
                running: vec![None; lanes],
                in_flight: 0,
                idle: VecDeque::with_capacity(lanes),
                wakers: vec![None; lanes],
                closed: false,
            }),
            drained: Notify::new(),
        });
        let lane_tasks: Vec<JoinHandle<()>> = (0..lanes)
            .map(|index| {
                let lane = self.workload.lane(index);
                tokio::spawn(run_lane(
                    Arc::clone(&self.workload),
                    Arc::clone(&shared),
                    index,
                    lane,
                ))
            })
            .collect();
        let mut clock = IntervalClock::new(start, self.config.interval, started_at);
        let mut arrivals = self.schedule.arrivals(self.shard).peekable();
        tokio::pin!(shutdown);
        let mut stopped_at = None;

        while let Some(next) = arrivals.peek() {
            let due = start + next.intended;
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    stopped_at = Some(start.elapsed());
                    break;
                }
                () = pacer.wait_until(due.min(clock.next_tick)) => {}
            }
            let mut now = Instant::now();
            if now >= clock.next_tick {
                self.close_interval(&shared, &mut clock, observer, now, false);
            }
            let mut burst = 0;
            while let Some(arrival) = arrivals.next_if(|a| start + a.intended <= now) {
                self.admit(
                    &shared,
                    Dispatch {
                        arrival,
                        intended_at: start + arrival.intended,
                        started_at: now,
                    },
                );
                burst += 1;
                if burst % BURST_BEFORE_YIELD == 0 {
                    tokio::task::yield_now().await;
                }
                now = Instant::now();
            }
        }

        let idle: Vec<Waker> = {
            let mut state = shared.lock();
            state.closed = true;
            state.idle.clear();
            state.wakers.iter_mut().filter_map(Option::take).collect()
        };
        // Idle lanes see the schedule is over (and the queue empty) and end.
        idle.into_iter().for_each(Waker::wake);
        let aborted = self
            .drain(
                &shared,
                &mut clock,
                observer,
                &mut shutdown,
                stopped_at.is_some(),
            )
            .await;
        for task in &lane_tasks {
            task.abort();
        }
        let now = Instant::now();
        self.close_interval(&shared, &mut clock, observer, now, true);
        let meta = RunMeta {
            started_at,
            schedule_duration: self.schedule.duration(),
            elapsed: now - start,
            last_start: Duration::ZERO,
            seed: self.schedule.spec().seed,
            arrival: self.schedule.spec().arrival,
            shard: self.shard,
            max_in_flight: self.config.max_in_flight,
            peak_in_flight: 0,
            stopped_early: stopped_at.is_some(),
            stopped_at,
            aborted_at_drain: aborted,
            workload: self.workload.describe(),
        };
        // Aborted lanes may still hold the shared state for a moment: take the recorder out.
        let mut state = shared.lock();
        let recorder = std::mem::replace(
            &mut state.recorder,
            Recorder::new(start, self.schedule.phases()),
        );
        drop(state);
        recorder.finish(meta)
    }

    /// Queues one arrival for the next free lane, or counts it dropped at the cap.
    fn admit(&self, shared: &Shared, dispatch: Dispatch) {
        let mut state = shared.lock();
        if state.in_flight >= self.config.max_in_flight {
            state.recorder.dropped(&dispatch, self.workload.op());
            drop(state);
            self.workload.not_started(&dispatch, Outcome::Dropped);
            return;
        }
        state.in_flight += 1;
        let in_flight = state.in_flight;
        state.recorder.started(&dispatch, in_flight);
        state.queue.push_back(dispatch);
        // The lane idle the longest takes it, so work spreads over every connection.
        let waker = state
            .idle
            .pop_front()
            .and_then(|lane| state.wakers[lane].take());
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Waits for in-flight arrivals (closing intervals meanwhile); at the drain deadline
    /// counts what is left (queued or running) as aborted and returns how many.
    async fn drain(
        &self,
        shared: &Shared,
        clock: &mut IntervalClock,
        observer: &mut dyn Observer,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        mut shutdown_done: bool,
    ) -> u64 {
        let mut deadline = Instant::now() + self.config.drain_timeout;
        loop {
            let drained = shared.drained.notified();
            if shared.lock().in_flight == 0 {
                return 0;
            }
            tokio::select! {
                biased;
                () = shutdown.as_mut(), if !shutdown_done => {
                    shutdown_done = true;
                    deadline = Instant::now();
                }
                () = drained => {}
                () = tokio::time::sleep_until(deadline.min(clock.next_tick)) => {}
            }
            let now = Instant::now();
            if now >= clock.next_tick {
                self.close_interval(shared, clock, observer, now, false);
            }
            if now >= deadline {
                break;
            }
        }
        let mut guard = shared.lock();
        let state = &mut *guard;
        // Stop the lanes from taking more: whatever is left now is counted here, once.
        state.in_flight = 0;
        let now = Instant::now();
        let queued: Vec<Dispatch> = state.queue.drain(..).collect();
        let left: Vec<Dispatch> = state
            .running
            .iter_mut()
            .filter_map(Option::take)
            .chain(queued.iter().copied())
            .collect();
        for dispatch in &left {
            let completion = Completion {
                op: self.workload.op(),
                outcome: Outcome::Unknown,
                sent_at: dispatch.started_at,
                finished_at: now,
                status: None,
                error: Some("aborted"),
                bytes: 0,
            };
            state.recorder.completed(dispatch, &completion);
        }
        drop(guard);
        for dispatch in &queued {
            self.workload.not_started(dispatch, Outcome::Unknown);
        }
        left.len() as u64
    }

    /// Hands the interval that ends at `now` to the observer and folds it into the totals.
    fn close_interval(
        &self,
        shared: &Shared,
        clock: &mut IntervalClock,
        observer: &mut dyn Observer,
        now: Instant,
        last: bool,
    ) {
        let mut guard = shared.lock();
        let state = &mut *guard;
        let start = clock.interval_start - clock.run_start;
        let length = now.saturating_duration_since(clock.interval_start);
        if last && length.is_zero() && clock.index > 0 {
            return;
        }
        let elapsed = now - clock.run_start;
        let (counts, started) = state.recorder.counts();
        let (phase, target_rate) = match self.schedule.rate_at(elapsed) {
            Some((phase, rate)) => (
                Some(self.schedule.phases()[phase].name.clone()),
                rate / f64::from(self.shard.count),
            ),
            None => (None, 0.0),
        };
        let view = IntervalView {
            index: clock.index,
            run_started_at: clock.run_started_at,
            start,
            length,
            histograms: state.recorder.interval_histograms(),
            point: state.recorder.interval_point(start, length),
            progress: Progress {
                elapsed,
                schedule_duration: self.schedule.duration(),
                phase,
                target_rate,
                started,
                counts,
                in_flight: state.in_flight,
                last,
            },
        };
        observer.on_interval(&view);
        state.recorder.roll(start, length);
        clock.index += 1;
        clock.interval_start = now;
        clock.next_tick += clock.interval;
        if clock.next_tick <= now {
            // Fell more than an interval behind: restart the grid rather than fire in a burst.
            clock.next_tick = now + clock.interval;
        }
    }
}

/// One lane: takes the next queued arrival, performs it, records it, until the schedule is
/// over and the queue is empty.
async fn run_lane<W: Workload>(
    workload: Arc<W>,
    shared: Arc<Shared>,
    index: usize,
    mut lane: W::Lane,
) {
    let mut finished: Option<(Dispatch, Completion)> = None;
    loop {
        let next = poll_fn(|cx| {
            let mut guard = shared.lock();
            let state = &mut *guard;
            // Recording the last arrival and taking the next share one lock.
            if let Some((dispatch, completion)) = finished.take()
                && state.running[index].take().is_some()
            {
                state.in_flight -= 1;
                state.recorder.completed(&dispatch, &completion);
                if state.closed && state.in_flight == 0 {
                    shared.drained.notify_one();
                }
            }
            if let Some(dispatch) = state.queue.pop_front() {
                state.running[index] = Some(dispatch);
                return Poll::Ready(Some(dispatch));
            }
            if state.closed {
                return Poll::Ready(None);
            }
            // Idle: leave a waker for `admit` (once in the idle line, however often polled).
            match &mut state.wakers[index] {
                Some(waker) => waker.clone_from(cx.waker()),
                slot @ None => {
                    *slot = Some(cx.waker().clone());
                    state.idle.push_back(index);
                }
            }
            Poll::Pending
        })
        .await;
        let Some(dispatch) = next else { return };
        let completion = workload.perform(&mut lane, dispatch).await;
        finished = Some((dispatch, completion));
    }
}

/// Interval bookkeeping: the grid of ticks and the current interval's start.
struct IntervalClock {
    run_start: Instant,
    run_started_at: SystemTime,
    interval: Duration,
    interval_start: Instant,
    next_tick: Instant,
    index: u64,
}

impl IntervalClock {
    fn new(run_start: Instant, interval: Duration, run_started_at: SystemTime) -> Self {
        Self {
            run_start,
            run_started_at,
            interval,
            interval_start: run_start,
            next_tick: run_start + interval,
            index: 0,
        }
    }
}
