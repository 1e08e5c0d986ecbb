//! The load of a story and what arrived: endpoints (a webhook and its receiver), a
//! producer of events, and counts of what each receiver got how often.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Database;
use tokio_util::sync::CancellationToken;

use super::EVENT_TYPE;
use crate::fixtures::{event, insert_webhook, webhook};
use crate::support::Receiver;

/// One webhook of a story and the receiver behind it.
pub struct Endpoint {
    pub webhook_id: String,
    pub receiver: Receiver,
}

impl Endpoint {
    /// A receiver and a webhook `id` for it, subscribed to [`EVENT_TYPE`], written straight
    /// into `webhooks`; `tweak` may change the document first (a rate limit, say).
    pub async fn start(db: &Database, id: &str, tweak: impl FnOnce(&mut Document)) -> Self {
        let receiver = Receiver::start().await;
        let mut hook = webhook(id, &receiver.url, &[EVENT_TYPE]);
        tweak(&mut hook);
        insert_webhook(db, hook).await;
        Self {
            webhook_id: id.to_owned(),
            receiver,
        }
    }

    /// `n` plain endpoints with ids `wh_<stem><nn>`.
    pub async fn start_many(db: &Database, stem: &str, n: usize) -> Vec<Self> {
        let mut endpoints = Vec::with_capacity(n);
        for i in 0..n {
            endpoints.push(Self::start(db, &format!("wh_{stem}{i:02}"), |_| {}).await);
        }
        endpoints
    }

    /// How often each of the story's events (ids starting `evt_<prefix>_`) arrived here.
    pub fn tally(&self, prefix: &str) -> Tally {
        Tally::of(&self.receiver, prefix)
    }
}

/// How often each event of a story reached one receiver (by `webhook-id`).
pub struct Tally {
    copies: HashMap<String, usize>,
}

impl Tally {
    pub fn of(receiver: &Receiver, prefix: &str) -> Self {
        let wanted = format!("evt_{prefix}_");
        let mut copies: HashMap<String, usize> = HashMap::new();
        for request in receiver.requests() {
            if let Some(id) = request.header("webhook-id") {
                if id.starts_with(&wanted) {
                    *copies.entry(id.to_owned()).or_default() += 1;
                }
            }
        }
        Self { copies }
    }

    pub fn distinct(&self) -> usize {
        self.copies.len()
    }

    pub fn total(&self) -> usize {
        self.copies.values().sum()
    }

    /// Requests beyond the first of each event.
    pub fn duplicates(&self) -> usize {
        self.total() - self.distinct()
    }

    /// The events that arrived at least once.
    pub fn events(&self) -> HashSet<String> {
        self.copies.keys().cloned().collect()
    }

    pub fn has(&self, event_id: &str) -> bool {
        self.copies.contains_key(event_id)
    }

    pub fn missing<'a>(&self, expected: &'a [String]) -> Vec<&'a str> {
        expected
            .iter()
            .filter(|id| !self.has(id))
            .map(String::as_str)
            .collect()
    }

    /// How many events arrived how many times, for those that came more than once.
    pub fn copies_histogram(&self) -> std::collections::BTreeMap<usize, usize> {
        let mut by_count = std::collections::BTreeMap::new();
        for n in self.copies.values().filter(|n| **n > 1) {
            *by_count.entry(*n).or_default() += 1;
        }
        by_count
    }

    /// A few of the events that arrived more than once, with their counts (for messages).
    pub fn some_duplicated(&self) -> Vec<(&str, usize)> {
        let mut twice: Vec<(&str, usize)> = self
            .copies
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, n)| (id.as_str(), *n))
            .collect();
        twice.sort();
        twice.truncate(10);
        twice
    }
}

/// `evt_<prefix>_<n>`: the id of a story's `n`th event.
pub fn event_id(prefix: &str, n: usize) -> String {
    format!("evt_{prefix}_{n:05}")
}

/// Inserts a story's events in the background, `batch` at a time with `pause` between
/// batches, until `max` are in or it is stopped: a steady load during which daemons are
/// killed, stopped and restarted.
pub struct Producer {
    prefix: String,
    produced: Arc<AtomicUsize>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Producer {
    pub fn start(db: &Database, prefix: &str, max: usize, batch: usize, pause: Duration) -> Self {
        let produced = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let task = {
            let (db, prefix) = (db.clone(), prefix.to_owned());
            let (produced, stop) = (produced.clone(), stop.clone());
            tokio::spawn(async move {
                let events = db.collection::<Document>("events");
                let mut next = 0;
                while next < max && !stop.is_cancelled() {
                    let end = (next + batch).min(max);
                    let docs: Vec<Document> = (next..end)
                        .map(|n| event(&event_id(&prefix, n), EVENT_TYPE))
                        .collect();
                    events.insert_many(docs).await.expect("insert events");
                    next = end;
                    produced.store(next, Ordering::SeqCst);
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            })
        };
        Self {
            prefix: prefix.to_owned(),
            produced,
            stop,
            task,
        }
    }

    /// Events inserted so far.
    pub fn produced(&self) -> usize {
        self.produced.load(Ordering::SeqCst)
    }

    /// Waits until all `max` events are in; returns their ids.
    pub async fn finish(self) -> Vec<String> {
        self.join().await
    }

    /// Stops after the batch under way; returns the ids of the events inserted.
    pub async fn stop(self) -> Vec<String> {
        self.stop.cancel();
        self.join().await
    }

    async fn join(self) -> Vec<String> {
        self.task.await.expect("the producer ran");
        (0..self.produced.load(Ordering::SeqCst))
            .map(|n| event_id(&self.prefix, n))
            .collect()
    }
}

/// Waits until every one of `expected` has reached every endpoint at least once; panics
/// naming what is missing where if `within` passes first.
pub async fn wait_all_arrived(
    db: &Database,
    endpoints: &[Endpoint],
    prefix: &str,
    expected: &[String],
    within: Duration,
) {
    let until = tokio::time::Instant::now() + within;
    loop {
        let missing: Vec<(&str, Vec<&str>)> = endpoints
            .iter()
            .map(|e| (e.webhook_id.as_str(), e.tally(prefix).missing(expected)))
            .filter(|(_, missing)| !missing.is_empty())
            .collect();
        if missing.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= until {
            let report: Vec<String> = missing
                .iter()
                .map(|(id, m)| {
                    format!(
                        "{id}: {} of {} missing (first: {:?})",
                        m.len(),
                        expected.len(),
                        &m[..m.len().min(5)]
                    )
                })
                .collect();
            // What the ledger says of the first few: recorded (and how), or not at all.
            let mut records = Vec::new();
            for (webhook, m) in &missing {
                for event in m.iter().take(3) {
                    let id = format!("{event}:{webhook}");
                    let found = db
                        .collection::<mongodb::bson::Document>("deliveries")
                        .find_one(mongodb::bson::doc! {"_id": &id})
                        .projection(mongodb::bson::doc! {"payload": 0})
                        .await
                        .ok()
                        .flatten();
                    records.push(format!("{id}: {found:?}"));
                }
            }
            panic!(
                "not every event arrived within {within:?}:\n  {}\nrecords:\n  {}",
                report.join("\n  "),
                records.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every delivery of the story's events is recorded `succeeded` (`docs` of
/// them: events × endpoints): nothing is in flight or due any more, so what the receivers
/// counted is final.
pub async fn wait_all_succeeded(db: &Database, prefix: &str, docs: usize, within: Duration) {
    let filter = doc! {"event_id": {"$regex": format!("^evt_{prefix}_")}};
    let until = tokio::time::Instant::now() + within;
    loop {
        let recorded: Vec<Document> = db
            .collection::<Document>("deliveries")
            .find(filter.clone())
            .projection(doc! {"status": 1})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
        for d in &recorded {
            *by_status
                .entry(d.get_str("status").unwrap_or("(none)").to_owned())
                .or_default() += 1;
        }
        if by_status.get("succeeded") == Some(&docs) && recorded.len() == docs {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{docs} deliveries were never all recorded succeeded; by status: {by_status:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until every one of `expected` is accounted for at `endpoint`: received, or
/// recorded `pending` in `deliveries` with the payload to send (inspectable, and sent when
/// its turn comes). Panics with what is missing, and how those are recorded, if `within`
/// passes first.
pub async fn wait_accounted_for(
    db: &Database,
    endpoint: &Endpoint,
    prefix: &str,
    expected: &[String],
    within: Duration,
) {
    let until = tokio::time::Instant::now() + within;
    loop {
        // Records first, then the receiver: a delivery that completes in between has
        // arrived by the time the receiver is read.
        let records: HashMap<String, Document> = crate::fixtures::deliveries(
            db,
            doc! {"webhook_id": &endpoint.webhook_id, "event_id": {"$regex": format!("^evt_{prefix}_")}},
        )
        .await
        .into_iter()
        .filter_map(|d| Some((d.get_str("event_id").ok()?.to_owned(), d)))
        .collect();
        let arrived = endpoint.tally(prefix);
        let missing: Vec<&String> = expected
            .iter()
            .filter(|id| !arrived.has(id))
            .filter(|id| {
                !records.get(*id).is_some_and(|d| {
                    d.get_str("status") == Ok("pending") && d.get("payload_id").is_some()
                })
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= until {
            let mut how: BTreeMap<String, usize> = BTreeMap::new();
            for id in &missing {
                let recorded = records.get(*id).map_or("no record".to_owned(), |d| {
                    format!(
                        "{} ({})",
                        d.get_str("status").unwrap_or("no status"),
                        if d.get("payload_id").is_some() {
                            "payload"
                        } else {
                            "no payload"
                        }
                    )
                });
                *how.entry(recorded).or_default() += 1;
            }
            panic!(
                "{}: {} of {} events neither arrived nor are recorded pending within {within:?} \
                 (first: {:?}); recorded as: {how:?}",
                endpoint.webhook_id,
                missing.len(),
                expected.len(),
                &missing[..missing.len().min(5)]
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Prints and returns the duplicates each endpoint received: requests beyond the first of
/// each event.
pub fn report_duplicates(story: &str, endpoints: &[Endpoint], prefix: &str) -> Vec<usize> {
    let duplicates: Vec<usize> = endpoints
        .iter()
        .map(|e| e.tally(prefix).duplicates())
        .collect();
    let delivered: usize = endpoints.iter().map(|e| e.tally(prefix).distinct()).sum();
    let total: usize = duplicates.iter().sum();
    for endpoint in endpoints {
        // How often the duplicated events came: twice is one crash; more is a pattern.
        let by_count = endpoint.tally(prefix).copies_histogram();
        println!("{story}: events received n times (n: events): {by_count:?}");
    }
    println!(
        "{story}: {delivered} deliveries, duplicates per endpoint {duplicates:?} (total {total}, \
         {:.2}% of deliveries)",
        100.0 * total as f64 / delivered.max(1) as f64
    );
    duplicates
}
