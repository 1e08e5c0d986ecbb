//! Cluster mode (issue 18): several `herald serve` processes on one database share the
//! webhooks. 64 partitions (a webhook's is the first 8 bytes of SHA-256 of its id, big-endian,
//! mod 64) are owned through leases in `herald_partitions`; only a partition's owner delivers
//! to its webhooks, so each event reaches each endpoint once cluster-wide, a killed daemon's
//! share moves to the survivors after `--lease-ttl`, and a stopped one hands its share over.
//!
//! Every story runs herald as child processes ([`Cluster`]) with a 3-second lease, so that
//! takeovers happen within seconds, and counts at real HTTPS receivers what arrived how
//! often ([`Tally`]). Each daemon of a story has one log file (its restarts append to it);
//! when a story fails, the end of each is printed and the files are kept.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Database;
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use crate::api_client::Api;
use crate::daemon::ChildDaemon;
use crate::fixtures::{event, insert_webhook, webhook};
use crate::support::Receiver;

mod disable_mid_burst;
mod kill_loop;
mod kill_one;
mod rate_limit;
mod rolling_restart;
mod slow_neighbour;
mod steady_state;
mod stop_and_continue;

/// The `--lease-ttl` of every story: short, so a takeover is a matter of seconds.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// The number of partitions the design fixes.
pub const PARTITIONS: usize = 64;
/// The event type every story's webhooks subscribe to.
pub const EVENT_TYPE: &str = "batch.completed";
const API_KEY: &str = "cluster-story-key";
/// Log lines of each daemon printed when a story fails.
const LOG_TAIL_LINES: usize = 120;

/// The partition of a webhook, computed here independently of herald's code.
pub fn partition_of(webhook_id: &str) -> i32 {
    let digest = sha2::Sha256::digest(webhook_id.as_bytes());
    let first = u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"));
    (first % PARTITIONS as u64) as i32
}

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
            panic!(
                "not every event arrived within {within:?}:\n  {}",
                report.join("\n  ")
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
                    d.get_str("status") == Ok("pending") && d.get("payload").is_some()
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
                        if d.get("payload").is_some() {
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
    println!(
        "{story}: {delivered} deliveries, duplicates per endpoint {duplicates:?} (total {total}, \
         {:.2}% of deliveries)",
        100.0 * total as f64 / delivered.max(1) as f64
    );
    duplicates
}

/// One partition's lease as `herald_partitions` holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub partition: i32,
    pub owner: Option<String>,
    pub epoch: i64,
    /// The feed position its checkpoint stands for, as (seconds, increment).
    pub checkpoint_time: Option<(u32, u32)>,
}

fn integer(value: Option<&Bson>) -> Option<i64> {
    match value? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        _ => None,
    }
}

/// Every lease, by partition.
pub async fn leases(db: &Database) -> Vec<Lease> {
    let docs: Vec<Document> = db
        .collection::<Document>("herald_partitions")
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    docs.iter()
        .filter_map(|d| {
            Some(Lease {
                partition: i32::try_from(integer(d.get("_id"))?).ok()?,
                owner: d.get_str("owner").ok().map(str::to_owned),
                epoch: integer(d.get("epoch")).unwrap_or_default(),
                checkpoint_time: d
                    .get_timestamp("checkpoint_time")
                    .ok()
                    .map(|t| (t.time, t.increment)),
            })
        })
        .collect()
}

/// The member holding the lease of `webhook_id`'s partition.
pub async fn owner_of(db: &Database, webhook_id: &str) -> Option<String> {
    let partition = partition_of(webhook_id);
    leases(db)
        .await
        .into_iter()
        .find(|l| l.partition == partition)
        .and_then(|l| l.owner)
}

/// The members' own view: `partitions` of every `herald_members` document, by member id.
pub async fn members_partitions(db: &Database) -> BTreeMap<String, Vec<i64>> {
    let docs: Vec<Document> = db
        .collection::<Document>("herald_members")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    docs.iter()
        .map(|d| {
            let id = d.get_str("_id").unwrap_or_default().to_owned();
            let partitions = d
                .get_array("partitions")
                .map(|a| a.iter().filter_map(|p| integer(Some(p))).collect())
                .unwrap_or_default();
            (id, partitions)
        })
        .collect()
}

/// Whether `lists` claim every partition exactly once: no partition owned by two members,
/// none by nobody.
pub fn each_partition_once<'a>(lists: impl IntoIterator<Item = &'a Vec<i64>>) -> bool {
    let mut claims = vec![0usize; PARTITIONS];
    for partition in lists.into_iter().flatten() {
        match usize::try_from(*partition)
            .ok()
            .and_then(|p| claims.get_mut(p))
        {
            Some(n) => *n += 1,
            None => return false,
        }
    }
    claims.iter().all(|n| *n == 1)
}

/// One running `herald serve` of a [`Cluster`] and its log.
struct Member {
    /// `a`, `b`, ...: the member's name across restarts.
    name: char,
    /// Starts so far; each life has a member id of its own, as the default id
    /// (`<host>-<pid>-<hex>`) would.
    life: usize,
    daemon: Option<ChildDaemon>,
    log: PathBuf,
}

impl Member {
    fn id(&self) -> String {
        format!("herald-{}-{}", self.name, self.life)
    }
}

/// The daemons of one story: child processes on one database, each with its own log.
pub struct Cluster {
    config: herald::config::Config,
    /// Flags every daemon gets besides the config's (e.g. `--max-events-in-flight`).
    extra_args: Vec<String>,
    members: Vec<Member>,
    /// Where the logs are; kept when the story fails.
    logs: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Starts `n` daemons at once (as a deployment of `n` replicas would) with `config`'s
    /// settings, `--lease-ttl 3s` and `extra_args`, and waits until each is ready.
    pub async fn start(config: &herald::config::Config, n: usize, extra_args: &[&str]) -> Self {
        let logs = tempfile::Builder::new()
            .prefix("herald-cluster-")
            .tempdir()
            .unwrap();
        let members = (b'a'..)
            .take(n)
            .map(|name| Member {
                name: char::from(name),
                life: 0,
                daemon: None,
                log: logs.path().join(format!("herald-{}.log", char::from(name))),
            })
            .collect();
        let mut cluster = Self {
            config: config.clone(),
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
            members,
            logs: Some(logs),
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        for member in &cluster.members {
            member.daemon.as_ref().unwrap().wait_ready().await;
        }
        cluster
    }

    /// Starts member `i`'s next life (not waiting for it).
    fn spawn(&mut self, i: usize) {
        let member = &mut self.members[i];
        assert!(member.daemon.is_none(), "member {i} is running");
        member.life += 1;
        let mut command = ChildDaemon::command(&self.config);
        command
            .args(["--lease-ttl", &format!("{}s", LEASE_TTL.as_secs())])
            .args(["--member-id", &member.id()])
            .args(["--api-key", API_KEY])
            .args(&self.extra_args);
        member.daemon = Some(ChildDaemon::spawn_command(command, &member.log));
    }

    fn daemon(&self, i: usize) -> &ChildDaemon {
        self.members[i]
            .daemon
            .as_ref()
            .unwrap_or_else(|| panic!("member {i} is not running"))
    }

    fn daemon_mut(&mut self, i: usize) -> &mut ChildDaemon {
        self.members[i]
            .daemon
            .as_mut()
            .unwrap_or_else(|| panic!("member {i} is not running"))
    }

    /// The member id of member `i`'s current (or last) life.
    pub fn member_id(&self, i: usize) -> String {
        self.members[i].id()
    }

    /// The member ids of the daemons running now.
    pub fn running(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.daemon.is_some())
            .map(Member::id)
            .collect()
    }

    /// Which member runs as `member_id` now.
    pub fn index_of(&self, member_id: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.daemon.is_some() && m.id() == member_id)
    }

    /// A client for member `i`'s API.
    pub fn api(&self, i: usize) -> Api {
        Api::new(self.daemon(i).listen(), Some(API_KEY))
    }

    /// `kill -9` member `i`.
    pub fn kill(&mut self, i: usize) {
        self.daemon_mut(i).kill();
        self.members[i].daemon = None;
    }

    /// SIGTERM member `i` and wait for it to exit (receivers keep answering meanwhile);
    /// returns its exit code.
    pub async fn sigterm(&mut self, i: usize) -> Option<i32> {
        let code = self.daemon_mut(i).sigterm().await;
        self.members[i].daemon = None;
        code
    }

    /// Starts member `i` again, with a new member id, and waits until it is ready.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.daemon(i).wait_ready().await;
    }

    /// SIGSTOP member `i`: it stands still, holding its connections and leases.
    pub fn freeze(&self, i: usize) {
        self.daemon(i).signal("STOP");
    }

    /// SIGCONT member `i`.
    pub fn thaw(&self, i: usize) {
        self.daemon(i).signal("CONT");
    }

    /// SIGTERMs every running daemon, one after the other; each must exit 0.
    pub async fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].daemon.is_some() {
                let id = self.member_id(i);
                assert_eq!(
                    self.sigterm(i).await,
                    Some(0),
                    "{id} did not exit cleanly on SIGTERM"
                );
            }
        }
    }

    /// Waits until the running daemons have shared the partitions out and keep them: every
    /// lease held by a running member, each running member holding some, and no lease
    /// changing hands for a whole lease TTL.
    pub async fn wait_settled(&self, db: &Database) {
        let running = self.running();
        let until = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut stable: Option<(tokio::time::Instant, Vec<Option<String>>)> = None;
        loop {
            let owners: Vec<Option<String>> =
                leases(db).await.into_iter().map(|l| l.owner).collect();
            let shared_out = owners.len() == PARTITIONS
                && owners
                    .iter()
                    .all(|o| o.as_ref().is_some_and(|o| running.contains(o)))
                && running
                    .iter()
                    .all(|m| owners.iter().any(|o| o.as_ref() == Some(m)));
            stable = match stable {
                Some((since, before)) if shared_out && before == owners => {
                    if since.elapsed() >= LEASE_TTL {
                        return;
                    }
                    Some((since, before))
                }
                _ if shared_out => Some((tokio::time::Instant::now(), owners.clone())),
                _ => None,
            };
            if tokio::time::Instant::now() >= until {
                let mut held: BTreeMap<String, usize> = BTreeMap::new();
                for owner in &owners {
                    *held
                        .entry(owner.clone().unwrap_or_else(|| "(nobody)".into()))
                        .or_default() += 1;
                }
                panic!(
                    "the partitions never settled over the running members {running:?}: {} \
                     leases, held {held:?}",
                    owners.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Cluster {
    /// On failure: prints the end of each daemon's log and keeps the files.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for member in &self.members {
            let log = std::fs::read_to_string(&member.log).unwrap_or_default();
            let log = crate::support::without_colours(&log);
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "---- herald-{} ({} lives; last {} lines of {}) ----\n{}",
                member.name,
                member.life,
                tail.len(),
                member.log.display(),
                tail.join("\n")
            );
        }
        if let Some(logs) = self.logs.take() {
            eprintln!("herald logs kept in {}", logs.keep().display());
        }
    }
}
