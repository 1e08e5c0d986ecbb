//! The ledger writer batches delivery records into the [`Ledger`].
//!
//! Endpoint actors send the records of ended attempts here, one message per turn of the
//! actor, and move on. Records are written in batches of up to `ledger_batch_max`, one
//! batch at a time so that a delivery's records reach the ledger in the order they were
//! made; while a batch is being written the next one fills up, so batches grow with load
//! and the store sees few, large writes. When a batch is durable the router is told which
//! feed sequence numbers it retires.
//!
//! A failed write is retried with backoff, never dropped: until it succeeds the checkpoint
//! cannot pass those events, and the feed window eventually stops taking new ones.
//!
//! Alerts (an endpoint failing or recovered, a delivery exhausted) pass through here too:
//! one task publishes them through [`Ledger::alert`] in the order they were raised,
//! retrying each with backoff. They wait in a bounded queue; should the store be gone for so
//! long that it fills up, further alerts are dropped and logged (the deliveries themselves
//! are never dropped).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;
use tracing::{error, warn};

use crate::config::EngineConfig;
use crate::delivery::DeliveryRecord;
use crate::health::Alert;
use crate::metrics::EngineMetrics;
use crate::ports::{Ledger, LedgerError};

pub enum Msg {
    /// Deliveries' new states, in the order they were made (an endpoint sends what one
    /// turn of its actor produced); `retire` lists the feed sequence numbers they settle.
    Write {
        records: Vec<DeliveryRecord>,
        retire: Vec<u64>,
    },
    /// The flush timer fired.
    Flush,
    /// A batch write ended.
    Written(Result<(), LedgerError>),
    /// Retry the failed batch.
    RetryWrite,
    /// Reply once every record received so far is durable.
    Sync(RpcReplyPort<()>),
    /// Reply once every record received before this message is durable; unlike `Sync`,
    /// records that arrive later do not delay the reply (an endpoint reading the ledger
    /// back waits for its own earlier writes, even under a steady stream of others).
    Barrier(RpcReplyPort<()>),
    /// Publish an operational alert.
    Alert(Box<Alert>),
}

/// Alerts waiting to be published, at most.
const ALERT_QUEUE: usize = 10_000;

pub struct LedgerWriter {
    pub config: Arc<EngineConfig>,
    pub ledger: Arc<dyn Ledger>,
    pub metrics: EngineMetrics,
    /// Records received and not yet durable, shared with the endpoints: they stop reading
    /// spilled deliveries back while it is high, so a backlog drained faster than the
    /// store takes its records cannot pile them up here.
    pub unwritten: Arc<std::sync::atomic::AtomicUsize>,
}

pub struct Args {
    /// Told the feed sequence numbers each durable batch retires (the router's
    /// bookkeeping, handed in by the router so that the writer never names it).
    pub on_durable: OnDurable,
}

/// Receives the feed sequence numbers a durable batch retires.
pub type OnDurable = Box<dyn Fn(Vec<u64>) + Send + Sync>;

/// A batch being written, kept until the ledger confirms it.
struct InFlightBatch {
    records: Arc<Vec<DeliveryRecord>>,
    retire: Vec<u64>,
}

pub struct State {
    on_durable: OnDurable,
    /// Records received and not yet taken into a batch. A queue: a batch is taken from its
    /// front, and under a backlog the rest stays where it is (with a `Vec`, taking 1,000
    /// records moved all the others, and draining a backlog cost its square).
    buffer: VecDeque<DeliveryRecord>,
    /// Feed sequence numbers to retire, each with the count of records received up to and
    /// including those of its `Write`: they retire with the batch that makes that many
    /// durable (every record of theirs, and all received before them).
    retire: VecDeque<(u64, Vec<u64>)>,
    writing: Option<InFlightBatch>,
    timer_armed: bool,
    consecutive_failures: u32,
    waiters: Vec<RpcReplyPort<()>>,
    /// Records received, and records durable (batches are written in arrival order, so
    /// the first `durable` received are).
    received: u64,
    durable: u64,
    /// `Barrier` replies waiting for `durable` to reach their count.
    barriers: Vec<(u64, RpcReplyPort<()>)>,
    /// The alert publisher's queue.
    alerts: mpsc::Sender<Alert>,
}

impl Actor for LedgerWriter {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Args,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(State {
            on_durable: args.on_durable,
            buffer: VecDeque::new(),
            retire: VecDeque::new(),
            writing: None,
            timer_armed: false,
            consecutive_failures: 0,
            waiters: Vec::new(),
            received: 0,
            durable: 0,
            barriers: Vec::new(),
            alerts: spawn_alert_publisher(self.ledger.clone()),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Write { records, retire } => {
                state.received += records.len() as u64;
                self.unwritten
                    .fetch_add(records.len(), std::sync::atomic::Ordering::Relaxed);
                state.buffer.extend(records);
                if !retire.is_empty() {
                    state.retire.push_back((state.received, retire));
                }
                if state.buffer.len() >= self.config.ledger_batch_max {
                    self.start_write(&myself, state);
                } else if !state.timer_armed && state.writing.is_none() {
                    state.timer_armed = true;
                    myself.send_after(self.config.ledger_flush_interval, || Msg::Flush);
                }
            }
            Msg::Flush => {
                state.timer_armed = false;
                self.start_write(&myself, state);
            }
            Msg::Written(Ok(())) => {
                state.consecutive_failures = 0;
                if let Some(batch) = state.writing.take() {
                    state.durable += batch.records.len() as u64;
                    self.metrics
                        .ledger_records_written
                        .increment(batch.records.len() as u64);
                    self.unwritten
                        .fetch_sub(batch.records.len(), std::sync::atomic::Ordering::Relaxed);
                    let durable = state.durable;
                    let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut state.barriers)
                        .into_iter()
                        .partition(|(target, _)| *target <= durable);
                    state.barriers = waiting;
                    for (_, reply) in done {
                        let _ = reply.send(());
                    }
                    if !batch.retire.is_empty() {
                        (state.on_durable)(batch.retire);
                    }
                }
                // Whatever accumulated meanwhile goes next, without waiting for the timer.
                self.start_write(&myself, state);
            }
            Msg::Written(Err(error)) => {
                self.metrics.ledger_write_errors.increment(1);
                state.consecutive_failures += 1;
                let wait = backoff(state.consecutive_failures);
                warn!(%error, retry_in_ms = wait.as_millis() as u64, "ledger write failed, retrying");
                myself.send_after(wait, || Msg::RetryWrite);
            }
            Msg::RetryWrite => {
                if let Some(batch) = &state.writing {
                    self.spawn_write(&myself, batch.records.clone());
                }
            }
            Msg::Sync(reply) => {
                state.waiters.push(reply);
                self.start_write(&myself, state);
            }
            Msg::Barrier(reply) => {
                if state.durable >= state.received {
                    let _ = reply.send(());
                } else {
                    state.barriers.push((state.received, reply));
                    self.start_write(&myself, state);
                }
            }
            Msg::Alert(alert) => {
                if let Err(e) = state.alerts.try_send(*alert) {
                    error!(alert = ?e.into_inner(), "alert queue full, alert dropped");
                }
            }
        }
        if state.writing.is_none() && state.buffer.is_empty() {
            state.waiters.drain(..).for_each(|reply| {
                let _ = reply.send(());
            });
        }
        Ok(())
    }
}

impl LedgerWriter {
    /// Writes the buffered records, unless a write is already under way.
    fn start_write(&self, myself: &ActorRef<Msg>, state: &mut State) {
        if state.writing.is_some() || state.buffer.is_empty() {
            return;
        }
        let take = state.buffer.len().min(self.config.ledger_batch_max);
        let records: Vec<DeliveryRecord> = state.buffer.drain(..take).collect();
        // Sequence numbers retire with the batch that carries the last of their records.
        // Under a steady load the buffer never empties, so they must not wait for that.
        // No batch is in flight here, so every record taken before this one is durable.
        let taken = state.durable + take as u64;
        let mut retire = Vec::new();
        while state.retire.front().is_some_and(|(upto, _)| *upto <= taken) {
            if let Some((_, seqs)) = state.retire.pop_front() {
                retire.extend(seqs);
            }
        }
        self.metrics.ledger_batch_size.record(records.len() as f64);
        let records = Arc::new(records);
        self.spawn_write(myself, records.clone());
        state.writing = Some(InFlightBatch { records, retire });
    }

    fn spawn_write(&self, myself: &ActorRef<Msg>, records: Arc<Vec<DeliveryRecord>>) {
        let write = self.ledger.write(records);
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = write.await;
            let _ = myself.cast(Msg::Written(result));
        });
    }
}

/// Publishes alerts one at a time, in order, each retried until the ledger takes it. Ends
/// when the writer (the only sender) stops.
fn spawn_alert_publisher(ledger: Arc<dyn Ledger>) -> mpsc::Sender<Alert> {
    let (tx, mut rx) = mpsc::channel::<Alert>(ALERT_QUEUE);
    tokio::spawn(async move {
        while let Some(alert) = rx.recv().await {
            let mut failures = 0;
            while let Err(error) = ledger.alert(alert.clone()).await {
                failures += 1;
                let wait = backoff(failures);
                warn!(%error, event_type = alert.event_type(), retry_in_ms = wait.as_millis() as u64,
                    "publishing an alert failed, retrying");
                tokio::time::sleep(wait).await;
            }
        }
    });
    tx
}

/// 50 ms doubling to 5 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << failures.min(7)).min(5_000))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::fakes::{succeeded_record, MemoryLedger};

    fn records(first: usize, n: usize) -> Vec<DeliveryRecord> {
        (first..first + n)
            .map(|i| succeeded_record(&format!("evt_{i}"), "wh_1", "t"))
            .collect()
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < until, "never: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Under a steady load the buffer never empties between batches. A feed sequence
    /// number must retire once the batch carrying its records is durable, not wait for the
    /// buffer to run dry: the feed window and the checkpoint wait on it.
    #[tokio::test]
    async fn sequence_numbers_retire_with_their_records_while_the_buffer_never_empties() {
        // Each write waits for a permit: the test decides when each batch becomes durable.
        let ledger = MemoryLedger::default();
        let gate = ledger.hold_writes();
        let retired = Arc::new(Mutex::new(Vec::<u64>::new()));
        let on_durable: OnDurable = {
            let retired = retired.clone();
            Box::new(move |seqs| retired.lock().unwrap().extend(seqs))
        };
        let config = EngineConfig {
            ledger_batch_max: 2,
            ..EngineConfig::default()
        };
        let (writer, _) = Actor::spawn(
            None,
            LedgerWriter {
                config: Arc::new(config),
                ledger: Arc::new(ledger.clone()),
                metrics: EngineMetrics::new(),
                unwritten: Arc::default(),
            },
            Args { on_durable },
        )
        .await
        .unwrap();
        let write = |first, n, seq| {
            writer
                .cast(Msg::Write {
                    records: records(first, n),
                    retire: vec![seq],
                })
                .unwrap()
        };
        // Batch 1 takes records 0–1 at once (a full batch) and waits at the gate; record 2
        // stays behind.
        write(0, 3, 1);
        write(3, 2, 2);
        // Batch 1 durable; batch 2 (records 2–3) carries the last of sequence 1's records.
        gate.add_permits(1);
        wait_until("batch 1 durable", || ledger.writes() == 1).await;
        write(5, 2, 3);
        gate.add_permits(1);
        wait_until("batch 2 durable", || ledger.writes() == 2).await;
        wait_until("sequence 1 retired", || !retired.lock().unwrap().is_empty()).await;
        // Records 4–6 are still buffered or being written: 2 and 3 wait for theirs.
        assert_eq!(*retired.lock().unwrap(), vec![1]);
        gate.add_permits(2);
        wait_until("every sequence retired", || {
            retired.lock().unwrap().len() == 3
        })
        .await;
        assert_eq!(*retired.lock().unwrap(), vec![1, 2, 3]);
        assert_eq!(ledger.deliveries().len(), 7);
        writer.stop(None);
    }
}
