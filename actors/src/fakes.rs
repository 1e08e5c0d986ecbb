//! In-memory implementations of the [ports](crate::ports), for unit tests and benchmarks.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;

use crate::delivery::{
    AttemptLogEntry, AttemptResponse, AttemptResult, DeliveryRecord, DeliveryStatus,
    PendingDelivery,
};
use crate::endpoint::delivery_id;
use crate::partition::PartitionCheckpoint;
use crate::ports::{Ledger, LedgerError, OutboundRequest, PendingStream, Transport};

/// A transport whose answers are scripted per URL; every request is recorded, with
/// whether it went through a connection pool of the endpoint's own
/// ([`Transport::isolated`]) or the shared one.
#[derive(Default, Clone)]
pub struct ScriptedTransport {
    inner: Arc<Mutex<ScriptedInner>>,
    isolated: bool,
}

#[derive(Default)]
struct ScriptedInner {
    scripts: HashMap<String, Vec<Answer>>,
    defaults: HashMap<String, Answer>,
    sent: Vec<OutboundRequest>,
    /// For each of `sent`: whether it went through an isolated pool.
    isolated: Vec<bool>,
    /// For each of `sent`: when it was sent.
    sent_at: Vec<Moment>,
}

/// A moment as the engine's two clocks read it. The engine keeps due times on the wall
/// clock and waits for them with tokio's timers (paused in tests, where the wall clock
/// hardly moves): a wait it arms is the due time less the wall-clock time at arming.
#[derive(Debug, Clone, Copy)]
pub struct Moment {
    /// tokio's clock (the paused one in a test on paused time).
    pub timer: tokio::time::Instant,
    pub wall: SystemTime,
}

impl Moment {
    pub fn now() -> Self {
        Self {
            timer: tokio::time::Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// Time passed since `earlier` on the timer clock plus on the wall clock. A timer armed
    /// after `earlier` for a due time `d` after `earlier.wall` has fired by a moment whose
    /// `since(earlier)` is at least `d`, however the work in between was split between
    /// the clocks; on paused time the timer clock's share is all but the whole.
    pub fn since(&self, earlier: &Moment) -> Duration {
        self.timer.saturating_duration_since(earlier.timer)
            + self.wall.duration_since(earlier.wall).unwrap_or_default()
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16),
    StatusRetryAfter(u16, Duration),
    /// Never answers (the engine's timeout ends it).
    Hang,
    /// Answers 200 after this long.
    Slow(Duration),
    Fail(crate::delivery::DeliveryError),
}

impl ScriptedTransport {
    /// Answers for `url`, in order; afterwards the default (200 unless set).
    pub fn script(&self, url: &str, answers: Vec<Answer>) {
        self.inner
            .lock()
            .unwrap()
            .scripts
            .insert(url.to_owned(), answers);
    }

    pub fn set_default(&self, url: &str, answer: Answer) {
        self.inner
            .lock()
            .unwrap()
            .defaults
            .insert(url.to_owned(), answer);
    }

    /// Every request sent so far.
    pub fn sent(&self) -> Vec<OutboundRequest> {
        self.inner.lock().unwrap().sent.clone()
    }

    /// Requests to `url` sent through an isolated pool (`true`) or the shared one.
    pub fn sent_through(&self, url: &str, isolated: bool) -> usize {
        let inner = self.inner.lock().unwrap();
        inner
            .sent
            .iter()
            .zip(&inner.isolated)
            .filter(|(r, own)| &*r.url == url && **own == isolated)
            .count()
    }

    /// When each request to `url` was sent, in order.
    pub fn sent_at(&self, url: &str) -> Vec<Moment> {
        let inner = self.inner.lock().unwrap();
        inner
            .sent
            .iter()
            .zip(&inner.sent_at)
            .filter(|(r, _)| &*r.url == url)
            .map(|(_, at)| *at)
            .collect()
    }

    pub fn sent_to(&self, url: &str) -> usize {
        self.inner
            .lock()
            .unwrap()
            .sent
            .iter()
            .filter(|r| &*r.url == url)
            .count()
    }
}

impl Transport for ScriptedTransport {
    fn send(&self, request: OutboundRequest) -> BoxFuture<'static, AttemptResult> {
        let answer = {
            let mut inner = self.inner.lock().unwrap();
            let url = request.url.to_string();
            inner.sent.push(request);
            inner.isolated.push(self.isolated);
            inner.sent_at.push(Moment::now());
            match inner.scripts.get_mut(&url).filter(|s| !s.is_empty()) {
                Some(script) => script.remove(0),
                None => inner
                    .defaults
                    .get(&url)
                    .cloned()
                    .unwrap_or(Answer::Status(200)),
            }
        };
        async move {
            match answer {
                Answer::Status(status) => Ok(AttemptResponse {
                    status,
                    retry_after: None,
                }),
                Answer::StatusRetryAfter(status, wait) => Ok(AttemptResponse {
                    status,
                    retry_after: Some(wait),
                }),
                Answer::Hang => futures::future::pending().await,
                Answer::Slow(wait) => {
                    tokio::time::sleep(wait).await;
                    Ok(AttemptResponse {
                        status: 200,
                        retry_after: None,
                    })
                }
                Answer::Fail(error) => Err(error),
            }
        }
        .boxed()
    }

    /// The same script and record, marked as another pool.
    fn isolated(&self) -> Option<Arc<dyn Transport>> {
        Some(Arc::new(Self {
            inner: Arc::clone(&self.inner),
            isolated: true,
        }))
    }
}

/// A pending delivery as the ledger hands it back.
fn pending_of(d: &StoredDelivery, next_attempt_at: SystemTime) -> PendingDelivery {
    PendingDelivery {
        event_id: d.record.event_id.clone(),
        webhook_id: d.record.webhook_id.clone(),
        event_type: d.record.event_type.clone(),
        task_id: d.record.task_id.clone(),
        attempts: d.record.attempts,
        next_attempt_at,
        created_at: d.record.created_at,
        payload: d.payload.clone().unwrap_or_default(),
    }
}

/// A ledger in memory: the latest state of every delivery plus every checkpoint written.
#[derive(Default, Clone)]
pub struct MemoryLedger {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Default)]
struct MemoryInner {
    /// Boxed: a map of tens of thousands grows by moving its entries, and a record is a few
    /// hundred bytes (the engine bench's ledger spent more on that than on its records).
    deliveries: HashMap<String, Box<StoredDelivery>>,
    /// Every checkpoint written, in order, by partition.
    checkpoints: Vec<(u16, Bytes)>,
    /// Every quiet mark stored, in order, with (when auditing) the deliveries recorded
    /// when it was.
    marks: Vec<(
        crate::partition::QuietMark,
        std::collections::HashSet<String>,
    )>,
    /// Per partition, the lowest epoch whose checkpoints are still accepted.
    epochs: HashMap<u16, u64>,
    writes: usize,
    /// Sweeps begun (`pending_for` calls).
    sweeps: usize,
    /// When auditing: per checkpoint written, the deliveries recorded at that moment.
    audit: Option<Vec<(u16, Bytes, std::collections::HashSet<String>)>>,
    alerts: Vec<crate::health::Alert>,
    /// Checkpoint writes still to refuse (a store outage).
    failing_checkpoints: usize,
    /// Kept endpoint health, by webhook.
    health: HashMap<String, crate::health::StoredHealth>,
    /// Writes of kept health, in order (webhook id).
    health_saves: Vec<String>,
    /// Reads of kept health still to refuse.
    failing_health_loads: usize,
    /// When set, each write waits for a permit of it before it is applied (a store that
    /// takes its time; the test gives the permits).
    write_gate: Option<Arc<tokio::sync::Semaphore>>,
    /// When set, each sweep waits for a permit of it before it reads.
    sweep_gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl MemoryInner {
    /// When auditing, the ids of the deliveries recorded now.
    fn recorded_if_auditing(&self) -> Option<std::collections::HashSet<String>> {
        self.audit
            .is_some()
            .then(|| self.deliveries.keys().cloned().collect())
    }
}

/// A delivery as the memory ledger keeps it.
#[derive(Debug, Clone)]
pub struct StoredDelivery {
    pub record: DeliveryRecord,
    /// Every attempt, accumulated over records.
    pub attempt_log: Vec<crate::delivery::AttemptLogEntry>,
    pub payload: Option<Bytes>,
}

impl MemoryLedger {
    /// A ledger that also remembers, for every checkpoint and quiet mark written, which
    /// deliveries were recorded at that moment (to test that neither ever passes an
    /// unrecorded one).
    pub fn auditing_checkpoints() -> Self {
        let ledger = Self::default();
        ledger.inner.lock().unwrap().audit = Some(Vec::new());
        ledger
    }

    /// Every checkpoint written (partition, position), with the delivery ids recorded when
    /// it was (auditing only).
    pub fn audited_checkpoints(&self) -> Vec<(u16, Bytes, std::collections::HashSet<String>)> {
        self.inner.lock().unwrap().audit.clone().unwrap_or_default()
    }

    pub fn delivery(&self, id: &str) -> Option<StoredDelivery> {
        let inner = self.inner.lock().unwrap();
        inner.deliveries.get(id).map(|d| StoredDelivery::clone(d))
    }

    pub fn deliveries(&self) -> Vec<StoredDelivery> {
        self.inner
            .lock()
            .unwrap()
            .deliveries
            .values()
            .map(|d| StoredDelivery::clone(d))
            .collect()
    }

    pub fn count_with(&self, status: DeliveryStatus) -> usize {
        let inner = self.inner.lock().unwrap();
        inner
            .deliveries
            .values()
            .filter(|d| d.record.status == status)
            .count()
    }

    /// Every quiet mark stored, in order, with the delivery ids recorded when it was
    /// (empty unless auditing).
    pub fn quiet_marks(
        &self,
    ) -> Vec<(
        crate::partition::QuietMark,
        std::collections::HashSet<String>,
    )> {
        self.inner.lock().unwrap().marks.clone()
    }

    /// Every checkpoint written, in order: (partition, position).
    pub fn checkpoints(&self) -> Vec<(u16, Bytes)> {
        self.inner.lock().unwrap().checkpoints.clone()
    }

    /// The checkpoints of one partition, in the order written.
    pub fn checkpoints_of(&self, partition: u16) -> Vec<Bytes> {
        let inner = self.inner.lock().unwrap();
        inner
            .checkpoints
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Whether every partition's latest checkpoint is `checkpoint` (the whole feed is
    /// settled up to there).
    pub fn everywhere_at(&self, checkpoint: &[u8]) -> bool {
        (0..crate::partition::PARTITIONS)
            .all(|p| self.checkpoints_of(p).last().map(|c| c.as_ref()) == Some(checkpoint))
    }

    /// Refuses checkpoints of `partition` with an epoch below `epoch` from now on (another
    /// daemon has taken the lease).
    pub fn fence(&self, partition: u16, epoch: u64) {
        self.inner.lock().unwrap().epochs.insert(partition, epoch);
    }

    /// Batch writes so far.
    pub fn writes(&self) -> usize {
        self.inner.lock().unwrap().writes
    }

    /// Sweeps over pending deliveries begun so far.
    pub fn sweeps(&self) -> usize {
        self.inner.lock().unwrap().sweeps
    }

    /// Puts pending deliveries in the ledger directly, as a previous run of the daemon left
    /// them (each with its payload).
    pub fn insert_pending(&self, deliveries: impl IntoIterator<Item = PendingDelivery>) {
        let mut inner = self.inner.lock().unwrap();
        for p in deliveries {
            let record = DeliveryRecord {
                delivery_id: delivery_id(&p.event_id, &p.webhook_id),
                event_id: p.event_id,
                webhook_id: p.webhook_id,
                event_type: p.event_type,
                task_id: p.task_id,
                status: DeliveryStatus::Pending,
                attempts: p.attempts,
                next_attempt_at: Some(p.next_attempt_at),
                last_status_code: None,
                last_error: None,
                new_attempts: Vec::new(),
                first_write: true,
                created_at: p.created_at,
                completed_at: None,
                payload: Some(p.payload.clone()),
            };
            inner.deliveries.insert(
                record.delivery_id.clone(),
                Box::new(StoredDelivery {
                    record,
                    attempt_log: Vec::new(),
                    payload: Some(p.payload),
                }),
            );
        }
    }

    /// Refuses the next `n` checkpoint writes.
    pub fn fail_checkpoints(&self, n: usize) {
        self.inner.lock().unwrap().failing_checkpoints = n;
    }

    /// Keeps `health` for `webhook_id`, as a daemon that ran its endpoint before would have.
    pub fn keep_health(&self, webhook_id: &str, health: crate::health::StoredHealth) {
        self.inner
            .lock()
            .unwrap()
            .health
            .insert(webhook_id.to_owned(), health);
    }

    /// The health kept for `webhook_id`.
    pub fn kept_health(&self, webhook_id: &str) -> Option<crate::health::StoredHealth> {
        self.inner.lock().unwrap().health.get(webhook_id).cloned()
    }

    /// How many times the health of `webhook_id` was written.
    pub fn health_saves(&self, webhook_id: &str) -> usize {
        let inner = self.inner.lock().unwrap();
        inner
            .health_saves
            .iter()
            .filter(|id| *id == webhook_id)
            .count()
    }

    /// Refuses the next `n` reads of kept health (a store outage).
    pub fn fail_health_loads(&self, n: usize) {
        self.inner.lock().unwrap().failing_health_loads = n;
    }

    /// Alerts published so far, in order.
    pub fn alerts(&self) -> Vec<crate::health::Alert> {
        self.inner.lock().unwrap().alerts.clone()
    }

    /// Applies one batch of records.
    fn apply(&self, batch: &[DeliveryRecord]) {
        let mut inner = self.inner.lock().unwrap();
        inner.writes += 1;
        for record in batch.iter() {
            match inner.deliveries.entry(record.delivery_id.clone()) {
                Entry::Vacant(vacant) => {
                    vacant.insert(Box::new(StoredDelivery {
                        record: record.clone(),
                        attempt_log: record.new_attempts.clone(),
                        payload: record.payload.clone(),
                    }));
                }
                Entry::Occupied(mut occupied) => {
                    let entry = occupied.get_mut();
                    entry
                        .attempt_log
                        .extend(record.new_attempts.iter().cloned());
                    if record.payload.is_some() {
                        entry.payload = record.payload.clone();
                    }
                    entry.record = record.clone();
                }
            }
        }
    }

    /// From now on each write waits for a permit of the returned semaphore (it has none)
    /// before it is applied, in the order the writes came.
    pub fn hold_writes(&self) -> Arc<tokio::sync::Semaphore> {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        self.inner.lock().unwrap().write_gate = Some(gate.clone());
        gate
    }

    /// From now on each sweep (`pending_for`) waits for a permit of the returned semaphore
    /// (it has none) before it reads: a test can look at what an endpoint holds before
    /// anything it recorded comes back from the ledger.
    pub fn hold_sweeps(&self) -> Arc<tokio::sync::Semaphore> {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        self.inner.lock().unwrap().sweep_gate = Some(gate.clone());
        gate
    }

    /// The pending deliveries of `webhook_id` due before `due_before`, oldest first.
    fn due_for(&self, webhook_id: &str, due_before: SystemTime) -> Vec<PendingDelivery> {
        // A snapshot, as a server-side cursor that materialises its result would give.
        let mut inner = self.inner.lock().unwrap();
        let mut due: Vec<(SystemTime, String, PendingDelivery)> = inner
            .deliveries
            .values()
            .filter(|d| d.record.webhook_id == webhook_id)
            .filter(|d| d.record.status == DeliveryStatus::Pending)
            .filter_map(|d| {
                let at = d.record.next_attempt_at.filter(|t| *t < due_before)?;
                Some((at, d.record.delivery_id.clone(), pending_of(d, at)))
            })
            .collect();
        inner.sweeps += 1;
        drop(inner);
        due.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        due.into_iter().map(|(_, _, p)| p).collect()
    }
}

impl Ledger for MemoryLedger {
    fn write(
        &self,
        batch: Arc<Vec<DeliveryRecord>>,
    ) -> BoxFuture<'static, Result<(), LedgerError>> {
        let gate = self.inner.lock().unwrap().write_gate.clone();
        if let Some(gate) = gate {
            let ledger = self.clone();
            return async move {
                gate.acquire().await.expect("the gate stays open").forget();
                ledger.apply(&batch);
                Ok(())
            }
            .boxed();
        }
        self.apply(&batch);
        futures::future::ready(Ok(())).boxed()
    }

    fn checkpoint(
        &self,
        checkpoints: Vec<PartitionCheckpoint>,
    ) -> BoxFuture<'static, Result<Vec<u16>, LedgerError>> {
        let mut inner = self.inner.lock().unwrap();
        if inner.failing_checkpoints > 0 {
            inner.failing_checkpoints -= 1;
            return futures::future::ready(Err(LedgerError::Store("store unavailable".into())))
                .boxed();
        }
        let mut fenced = Vec::new();
        for checkpoint in checkpoints {
            let lowest = inner
                .epochs
                .get(&checkpoint.partition)
                .copied()
                .unwrap_or(0);
            if checkpoint.epoch < lowest {
                fenced.push(checkpoint.partition);
                continue;
            }
            let bytes = checkpoint.position.checkpoint;
            let recorded = inner.recorded_if_auditing();
            if let (Some(audit), Some(recorded)) = (inner.audit.as_mut(), recorded) {
                audit.push((checkpoint.partition, bytes.clone(), recorded));
            }
            inner.checkpoints.push((checkpoint.partition, bytes));
        }
        futures::future::ready(Ok(fenced)).boxed()
    }

    fn mark_quiet(
        &self,
        mark: crate::partition::QuietMark,
    ) -> BoxFuture<'static, Result<(), LedgerError>> {
        let mut inner = self.inner.lock().unwrap();
        let recorded = inner.recorded_if_auditing().unwrap_or_default();
        inner.marks.push((mark, recorded));
        futures::future::ready(Ok(())).boxed()
    }

    fn recorded(
        &self,
        delivery_ids: Vec<String>,
    ) -> BoxFuture<'static, Result<std::collections::HashSet<String>, LedgerError>> {
        let inner = self.inner.lock().unwrap();
        let found = delivery_ids
            .into_iter()
            .filter(|id| inner.deliveries.contains_key(id))
            .collect();
        futures::future::ready(Ok(found)).boxed()
    }

    fn alert(&self, alert: crate::health::Alert) -> BoxFuture<'static, Result<(), LedgerError>> {
        self.inner.lock().unwrap().alerts.push(alert);
        futures::future::ready(Ok(())).boxed()
    }

    fn pending_for(
        &self,
        webhook_id: &str,
        due_before: SystemTime,
        _batch_size: usize,
    ) -> BoxFuture<'static, Result<PendingStream, LedgerError>> {
        let stream = |due: Vec<PendingDelivery>| -> PendingStream {
            futures::StreamExt::boxed(futures::stream::iter(due.into_iter().map(Ok)))
        };
        let gate = self.inner.lock().unwrap().sweep_gate.clone();
        let Some(gate) = gate else {
            return futures::future::ready(Ok(stream(self.due_for(webhook_id, due_before))))
                .boxed();
        };
        let (ledger, webhook_id) = (self.clone(), webhook_id.to_owned());
        async move {
            gate.acquire().await.expect("the gate stays open").forget();
            Ok(stream(ledger.due_for(&webhook_id, due_before)))
        }
        .boxed()
    }

    fn with_pending(
        &self,
        webhook_ids: Vec<Arc<str>>,
    ) -> BoxFuture<'static, Result<HashSet<String>, LedgerError>> {
        let asked: HashSet<&str> = webhook_ids.iter().map(|id| &**id).collect();
        let inner = self.inner.lock().unwrap();
        let found = inner
            .deliveries
            .values()
            .filter(|d| d.record.status == DeliveryStatus::Pending)
            .filter(|d| asked.contains(d.record.webhook_id.as_str()))
            .map(|d| d.record.webhook_id.to_string())
            .collect();
        futures::future::ready(Ok(found)).boxed()
    }

    fn next_due_for(
        &self,
        webhook_id: &str,
        after: SystemTime,
    ) -> BoxFuture<'static, Result<Option<SystemTime>, LedgerError>> {
        let inner = self.inner.lock().unwrap();
        let next = inner
            .deliveries
            .values()
            .filter(|d| d.record.webhook_id == webhook_id)
            .filter(|d| d.record.status == DeliveryStatus::Pending)
            .filter_map(|d| d.record.next_attempt_at)
            .filter(|t| *t >= after)
            .min();
        futures::future::ready(Ok(next)).boxed()
    }

    fn save_health(
        &self,
        webhook_id: &str,
        health: crate::health::StoredHealth,
    ) -> BoxFuture<'static, Result<(), LedgerError>> {
        let mut inner = self.inner.lock().unwrap();
        inner.health_saves.push(webhook_id.to_owned());
        match inner.health.entry(webhook_id.to_owned()) {
            Entry::Occupied(mut kept) => {
                if kept.get().updated_at <= health.updated_at {
                    kept.insert(health);
                }
            }
            Entry::Vacant(vacant) => {
                vacant.insert(health);
            }
        }
        futures::future::ready(Ok(())).boxed()
    }

    fn load_health(
        &self,
        webhook_id: &str,
    ) -> BoxFuture<'static, Result<Option<crate::health::StoredHealth>, LedgerError>> {
        let mut inner = self.inner.lock().unwrap();
        if inner.failing_health_loads > 0 {
            inner.failing_health_loads -= 1;
            return futures::future::ready(Err(LedgerError::Store("store unavailable".into())))
                .boxed();
        }
        futures::future::ready(Ok(inner.health.get(webhook_id).cloned())).boxed()
    }
}

/// The first and only record of a delivery whose first attempt answered 200.
pub fn succeeded_record(event_id: &str, webhook_id: &str, event_type: &str) -> DeliveryRecord {
    let now = SystemTime::now();
    DeliveryRecord {
        delivery_id: delivery_id(event_id, webhook_id),
        event_id: event_id.to_owned(),
        webhook_id: webhook_id.to_owned(),
        event_type: event_type.to_owned(),
        task_id: None,
        status: DeliveryStatus::Succeeded,
        attempts: 1,
        next_attempt_at: None,
        last_status_code: Some(200),
        last_error: None,
        new_attempts: vec![AttemptLogEntry {
            at: now,
            status_code: Some(200),
            error: None,
            duration_ms: 1,
        }],
        first_write: true,
        created_at: now,
        completed_at: Some(now),
        payload: None,
    }
}
