//! cluster: herald as several `herald serve` child processes sharing one database (see
//! `docs/cluster.md`), each run on a dev server of its own.
//!
//! 1. **What coordinating costs.** The same workload (events inserted as fast as the server
//!    takes them, each for [`WEBHOOKS`] webhooks) delivered end to end by one daemon and by
//!    three, in the order 1, 3, 3, 1 (with a reference run in the middle) so that a
//!    drifting machine weighs on both alike; the figures are the median rates of three
//!    against those of one, to the last receipt and to the last delivery record. On one
//!    machine this is the price of coordination (three change streams, leases, heartbeats,
//!    three ledger writers), not scaling. The reference, one daemon with two bare readers
//!    of its feed beside it, tells how much of that price is the feed read three times.
//! 2. **Takeover after `kill -9`.** Three daemons under a steady load; the one owning the
//!    most webhooks is killed, and the time is taken from the kill until every webhook it
//!    owned has received an event inserted after the kill, against `--lease-ttl` plus one
//!    renewal round (a third of it). A survivor judges a lease at most `--lease-ttl` and a
//!    look (a twelfth of it) after its last renewal; the rest is taking the leases and
//!    catching up from their checkpoints.
//! 3. **Duplicates per kill.** In those runs, once every event has reached every webhook and
//!    is recorded `succeeded`: requests beyond the first of each (event, webhook).
//!
//! The receiver tells the webhooks apart by path (`/tally/<run>/<k>`) and counts each
//! event's copies there (by `webhook-id`). The kills run at half the rate three daemons
//! recorded in part 1 (at most 200 events/s), so that what is measured is the takeover,
//! not a backlog. The daemons log JSON at `HERALD_BENCH_CHILD_LOG` (default `info`) into a
//! temporary folder, or into `HERALD_BENCH_CLUSTER_LOGS`, kept, one file per member.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use herald_actors::{partition_of, PARTITIONS};
use mongodb::bson::{doc, Bson, Document};

use super::shared::{event_doc, insert_webhooks, now_ns, webhook_id};
use super::Ctx;
use crate::harness::*;

/// The daemons' `--lease-ttl`.
const LEASE_TTL: Duration = Duration::from_secs(3);
/// Webhooks every event goes to.
const WEBHOOKS: usize = 20;
const EVENT_TYPE: &str = "bench.cluster";

/// One `herald serve` child process.
struct Member {
    id: String,
    child: Child,
    log: PathBuf,
    /// Its API's address, once read from its log.
    listen: Option<String>,
}

impl Member {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address of its `listening` line (JSON logs: `"addr":"127.0.0.1:port"`).
    fn listening(&self) -> Option<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("listening"))
            .find_map(|l| {
                let (_, rest) = l.split_once("\"addr\":\"")?;
                Some(rest.split('"').next()?.to_owned())
            })
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

/// The daemons of one run, on one database.
struct Cluster {
    members: Vec<Member>,
}

impl Cluster {
    /// Starts one daemon per member id, each a random part of a lease round after the one
    /// before, and waits until each answers `/readyz`. Logs go to `logs/<member id>.log`.
    ///
    /// Not all at once: daemons started together keep their lease rounds in step (the
    /// rounds have the same period), so each sees the others' renewals in the round they
    /// are written, and a take-over is as quick as it can be, every time. Daemons that
    /// have run a while, or were started one by one, are out of step, and a survivor sees
    /// a dead member's last renewal up to a round later (BENCHMARKS.md, "8c30c01 →
    /// f7d4cf6"). The offsets make the bench's take-over the one a user gets.
    async fn start(ctx: &Ctx, uri: &str, database: &str, ids: &[String], logs: &Path) -> Self {
        let mut members = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                let round = LEASE_TTL / 3;
                tokio::time::sleep(round.mul_f64(rand::random::<f64>())).await;
            }
            let log = logs.join(format!("{id}.log"));
            let file = std::fs::File::create(&log).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_herald"))
                .arg("serve")
                .args(["--mongodb-uri", uri])
                .args(["--database", database])
                .args(["--listen", "127.0.0.1:0"])
                .arg("--ca-file")
                .arg(&ctx.receiver.ca)
                .args(["--allow-private-networks", "127.0.0.0/8"])
                .args(["--lease-ttl", &format!("{}ms", LEASE_TTL.as_millis())])
                .args(["--member-id", id])
                .args(["--log-format", "json"])
                .env(
                    "HERALD_LOG",
                    std::env::var("HERALD_BENCH_CHILD_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(file)
                .spawn()
                .expect("spawn herald serve");
            members.push(Member {
                id: id.clone(),
                child,
                log,
                listen: None,
            });
        }
        let mut cluster = Self { members };
        let until = Instant::now() + Duration::from_secs(120);
        for member in &mut cluster.members {
            loop {
                if member.listen.is_none() {
                    member.listen = member.listening();
                }
                if let Some(addr) = &member.listen {
                    if http_get(&format!("http://{addr}/readyz"))
                        .await
                        .is_some_and(|(status, _)| status == 200)
                    {
                        break;
                    }
                }
                assert!(
                    !member.exited() && Instant::now() < until,
                    "{} never became ready:\n{}",
                    member.id,
                    member.log_text()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        cluster
    }

    /// Waits until the partitions are shared out and stay so: every lease held by a member,
    /// each member holding some, and no lease changing hands for a whole lease TTL.
    async fn wait_settled(&self, db: &mongodb::Database) {
        let until = Instant::now() + Duration::from_secs(120);
        let mut stable: Option<(Instant, Vec<Option<String>>)> = None;
        loop {
            let owners = owners(db).await;
            let shared_out = owners.len() == usize::from(PARTITIONS)
                && owners
                    .iter()
                    .all(|o| o.as_ref().is_some_and(|o| self.has(o)))
                && self
                    .members
                    .iter()
                    .all(|m| owners.iter().any(|o| o.as_ref() == Some(&m.id)));
            stable = match stable {
                Some((since, before)) if shared_out && before == owners => {
                    if since.elapsed() >= LEASE_TTL {
                        return;
                    }
                    Some((since, before))
                }
                _ if shared_out => Some((Instant::now(), owners.clone())),
                _ => None,
            };
            assert!(
                Instant::now() < until,
                "the partitions never settled over {:?}: {:?}",
                self.ids(),
                held(&owners)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn has(&self, id: &str) -> bool {
        self.members.iter().any(|m| m.id == id)
    }

    fn ids(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.id.as_str()).collect()
    }

    /// CPU seconds the running daemons have used.
    fn cpu_seconds(&self) -> f64 {
        self.members
            .iter()
            .map(|m| process_cpu_seconds(m.child.id()))
            .sum()
    }

    /// The largest peak RSS among the running daemons, MiB.
    fn peak_rss_mib(&self) -> f64 {
        self.members
            .iter()
            .map(|m| process_peak_rss_mib(m.child.id()))
            .fold(0.0, f64::max)
    }

    /// The sum over the running daemons of a `/metrics` series (all its label sets).
    async fn metric(&self, name: &str) -> f64 {
        let mut sum = 0.0;
        for member in &self.members {
            let Some(addr) = &member.listen else { continue };
            let Some((_, body)) = http_get(&format!("http://{addr}/metrics")).await else {
                continue;
            };
            sum += body
                .lines()
                .filter_map(|l| {
                    let rest = l.strip_prefix(name)?;
                    let value = match rest.strip_prefix('{') {
                        Some(labelled) => labelled.split_once('}')?.1,
                        None => rest,
                    };
                    // `name_sum` must not be read as `name`.
                    value
                        .starts_with(' ')
                        .then(|| value.trim().parse::<f64>().ok())?
                })
                .sum::<f64>();
        }
        sum
    }

    /// `kill -9` member `id`.
    fn kill(&mut self, id: &str) {
        let at = self
            .members
            .iter()
            .position(|m| m.id == id)
            .unwrap_or_else(|| panic!("{id} is not running"));
        let mut member = self.members.remove(at);
        let _ = member.child.kill();
        let _ = member.child.wait();
    }

    /// SIGTERM every daemon and waits for them to exit (SIGKILL after 30 s).
    async fn stop(mut self) {
        for member in &self.members {
            let _ = Command::new("kill")
                .args(["-TERM", &member.child.id().to_string()])
                .status();
        }
        let until = Instant::now() + Duration::from_secs(30);
        for member in &mut self.members {
            while !member.exited() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.child.kill();
            let _ = member.child.wait();
        }
    }
}

/// Status and body of a plain-HTTP GET to a daemon, or `None` when nothing answers.
async fn http_get(url: &str) -> Option<(u16, String)> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let response = client.get(url.parse().ok()?).await.ok()?;
    let status = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .ok()?
        .to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The owner of every partition, as `herald_partitions` holds them (by partition).
async fn owners(db: &mongodb::Database) -> Vec<Option<String>> {
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
        .map(|d| match d.get("owner") {
            Some(Bson::String(owner)) => Some(owner.clone()),
            _ => None,
        })
        .collect()
}

/// How many partitions each owner holds, for messages.
fn held(owners: &[Option<String>]) -> BTreeMap<String, usize> {
    let mut held = BTreeMap::new();
    for owner in owners {
        *held
            .entry(owner.clone().unwrap_or_else(|| "(nobody)".into()))
            .or_default() += 1;
    }
    held
}

/// The receiver's paths of one run's webhooks, by webhook index.
fn paths(run: &str) -> Vec<String> {
    (0..WEBHOOKS)
        .map(|k| format!("/tally/{run}/{k:02}"))
        .collect()
}

/// (requests, distinct (event, webhook)) the receiver has counted for `paths`.
async fn counted(ctx: &Ctx, paths: &[String]) -> (u64, u64) {
    let tally = ctx.receiver.tally().await;
    paths
        .iter()
        .filter_map(|p| tally.get(p))
        .fold((0, 0), |(r, d), t| (r + t.requests, d + t.distinct))
}

/// A fresh dev server with `WEBHOOKS` webhooks on the receiver's `/tally/<run>/…` paths.
async fn prepare(ctx: &Ctx, run: &str) -> (Database, mongodb::Database, Vec<String>) {
    let server = Database::start().await;
    let client = mongodb::Client::with_uri_str(&server.uri).await.unwrap();
    let db = client.database(&format!("bench_cluster_{run}"));
    let paths = paths(run);
    let urls: Vec<String> = paths.iter().map(|p| ctx.receiver.url(p)).collect();
    insert_webhooks(&db, &urls, EVENT_TYPE).await;
    (server, db, paths)
}

/// Where the daemons' logs go: `HERALD_BENCH_CLUSTER_LOGS` (kept), or a temporary folder.
fn logs_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var("HERALD_BENCH_CLUSTER_LOGS") {
        Ok(dir) => {
            std::fs::create_dir_all(&dir).unwrap();
            (PathBuf::from(dir), None)
        }
        Err(_) => {
            let dir = tempfile::Builder::new()
                .prefix("herald-bench-cluster-")
                .tempdir()
                .unwrap();
            (dir.path().to_owned(), Some(dir))
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 0 {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// What delivers in a rate run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    One,
    Three,
    /// One daemon, and two bare readers of its feed (herald's change stream, drained by
    /// this process): what reading the feed three times costs the server, without leases,
    /// heartbeats or a second ledger writer. The reference for what coordination adds.
    OneAndReaders,
}

impl Setup {
    fn daemons(self) -> usize {
        match self {
            Self::One | Self::OneAndReaders => 1,
            Self::Three => 3,
        }
    }

    fn readers(self) -> usize {
        match self {
            Self::OneAndReaders => 2,
            Self::One | Self::Three => 0,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::One => "1 daemon",
            Self::Three => "3 daemons",
            Self::OneAndReaders => "1 daemon + 2 feed readers",
        }
    }
}

/// The rate runs, in order: symmetric, so that a machine drifting one way through the
/// runs weighs on one daemon and three alike.
const ORDER: [Setup; 5] = [
    Setup::One,
    Setup::Three,
    Setup::OneAndReaders,
    Setup::Three,
    Setup::One,
];

/// One delivery-rate run.
struct RateRun {
    setup: Setup,
    /// Deliveries/s, insert of the first event to the last receipt.
    received: f64,
    /// The same, to the last delivery record durable.
    recorded: f64,
    /// CPU seconds per 1,000 deliveries, insert to the last record: the daemons together,
    /// the dev server.
    herald_cpu: f64,
    server_cpu: f64,
    /// Ledger writes (batches) the daemons made.
    ledger_writes: f64,
    /// Requests beyond one per (event, webhook).
    duplicates: u64,
    peak_rss_mib: f64,
}

/// `n` events for every webhook, inserted in batches of 500 as fast as the server takes
/// them, delivered as `setup` says.
async fn rate_run(ctx: &Ctx, setup: Setup, n: usize, run: usize, logs: &Path) -> RateRun {
    let name = format!("rate{run}");
    let (server, db, paths) = prepare(ctx, &name).await;
    let ids: Vec<String> = (0..setup.daemons())
        .map(|i| format!("bench-{name}-{i}"))
        .collect();
    let cluster = Cluster::start(ctx, &server.uri, db.name(), &ids, logs).await;
    cluster.wait_settled(&db).await;
    let mut readers = Vec::new();
    for _ in 0..setup.readers() {
        let mut stream = db
            .watch()
            .pipeline(herald::store::events::feed_pipeline())
            .await
            .unwrap();
        readers.push(tokio::spawn(async move {
            while let Some(change) = stream.next().await {
                change.unwrap();
            }
        }));
    }
    ctx.receiver.reset().await;
    let deliveries = (n * WEBHOOKS) as u64;
    let label = format!("cluster, {}", setup.label());
    let bar = progress(deliveries, &label);
    let ledger_writes = cluster.metric("herald_ledger_batch_size_count").await;
    let herald_cpu = cluster.cpu_seconds();
    let server_busy = ServerBusy::start(&server);
    let started = Instant::now();
    let events = db.collection::<Document>("events");
    let inserter = tokio::spawn(async move {
        for batch in (0..n).collect::<Vec<_>>().chunks(500) {
            let docs: Vec<Document> = batch
                .iter()
                .map(|&i| event_doc(i, EVENT_TYPE, None))
                .collect();
            events.insert_many(docs).await.unwrap();
        }
    });
    let until = Instant::now() + Duration::from_secs(600);
    let duplicates = loop {
        let (requests, distinct) = counted(ctx, &paths).await;
        bar.set_position(distinct.min(deliveries));
        if distinct >= deliveries {
            break requests - distinct;
        }
        assert!(
            Instant::now() < until,
            "{label}: {distinct} of {deliveries} deliveries arrived before the deadline"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let received = started.elapsed();
    // Counting by status would scan on the dev server; the records are all `succeeded`
    // (one attempt each, no duplicates to speak of), so their number says it.
    let records = db.collection::<Document>("deliveries");
    while records.estimated_document_count().await.unwrap() < deliveries {
        assert!(
            Instant::now() < until,
            "{label}: the deliveries were never all recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recorded = started.elapsed();
    let herald_cpu = cluster.cpu_seconds() - herald_cpu;
    let server_cpu = server_busy.cpu_seconds();
    bar.finish_and_clear();
    inserter.await.unwrap();
    let ledger_writes = cluster.metric("herald_ledger_batch_size_count").await - ledger_writes;
    let peak_rss_mib = cluster.peak_rss_mib();
    for reader in readers {
        reader.abort();
    }
    cluster.stop().await;
    let per_1000 = |cpu: f64| cpu / deliveries as f64 * 1000.0;
    RateRun {
        setup,
        received: deliveries as f64 / received.as_secs_f64(),
        recorded: deliveries as f64 / recorded.as_secs_f64(),
        herald_cpu: per_1000(herald_cpu),
        server_cpu: per_1000(server_cpu),
        ledger_writes,
        duplicates,
        peak_rss_mib,
    }
}

/// One kill run.
struct KillRun {
    /// Kill to the first receipt of a post-kill event at the last of the victim's webhooks.
    takeover: Duration,
    /// The same, at the first of them.
    first: Duration,
    /// The same at the last of the other webhooks, whose owners lived: what the survivors'
    /// own feed lag and catch-up take under this load, beside the takeover. `None` when one
    /// of them had not yet received such an event when the orphaned ones all had.
    others: Option<Duration>,
    /// The victim's last heartbeat (its member document's `heartbeat_at`; the daemons run on
    /// this machine's clock) to the first receipt of a post-kill event at the last of its
    /// webhooks: the takeover without the luck of where the kill fell in the victim's round
    /// (a lease period, a look, the take and the catch-up). `None` if it could not be read.
    since_beat: Option<Duration>,
    /// The victim's webhooks, of [`WEBHOOKS`].
    orphaned: usize,
    deliveries: u64,
    duplicates: u64,
    /// Of which to the victim's webhooks.
    duplicates_orphaned: u64,
}

/// Three daemons under `rate` events/s; `kill -9` the one owning the most webhooks.
async fn kill_run(ctx: &Ctx, rate: f64, kill: usize, logs: &Path) -> KillRun {
    let name = format!("kill{kill}");
    let (server, db, paths) = prepare(ctx, &name).await;
    let ids: Vec<String> = (0..3).map(|i| format!("bench-{name}-{i}")).collect();
    let mut cluster = Cluster::start(ctx, &server.uri, db.name(), &ids, logs).await;
    cluster.wait_settled(&db).await;
    ctx.receiver.reset().await;

    // The load: every 50 ms a batch, each event stamped with when its write was sent.
    let produced = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let producer = {
        let (events, produced, stop) = (
            db.collection::<Document>("events"),
            produced.clone(),
            stop.clone(),
        );
        let per_tick = (rate / 20.0).round().max(1.0) as usize;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(50));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            while !stop.is_cancelled() {
                ticker.tick().await;
                let first = produced.load(Ordering::SeqCst);
                let sent = now_ns();
                let docs: Vec<Document> = (first..first + per_tick)
                    .map(|i| event_doc(i, EVENT_TYPE, Some(sent)))
                    .collect();
                events.insert_many(docs).await.unwrap();
                produced.store(first + per_tick, Ordering::SeqCst);
            }
        })
    };
    tokio::time::sleep(LEASE_TTL).await;

    // The victim: the member owning the most webhooks.
    let owners = owners(&db).await;
    let owner_of = |k: usize| owners[usize::from(partition_of(&webhook_id(k)))].clone();
    let mut by_member: HashMap<String, Vec<usize>> = HashMap::new();
    for k in 0..WEBHOOKS {
        if let Some(owner) = owner_of(k) {
            by_member.entry(owner).or_default().push(k);
        }
    }
    let (victim, orphaned) = by_member
        .into_iter()
        .max_by_key(|(id, ks)| (ks.len(), id.clone()))
        .expect("the webhooks have owners");
    let killed_at = now_ns();
    cluster.kill(&victim);
    let last_beat: Option<u64> = db
        .collection::<Document>("herald_members")
        .find_one(doc! {"_id": &victim})
        .await
        .ok()
        .flatten()
        .and_then(|d| d.get_datetime("heartbeat_at").ok().copied())
        .and_then(|at| u64::try_from(at.timestamp_millis()).ok())
        .map(|ms| ms * 1_000_000);

    let until = Instant::now() + Duration::from_secs(120);
    let (resumed, others): (Vec<u64>, Vec<u64>) = loop {
        let resumed = ctx.receiver.resumed(killed_at).await;
        let times: Vec<u64> = orphaned
            .iter()
            .filter_map(|&k| resumed.get(&paths[k]).copied())
            .collect();
        if times.len() == orphaned.len() {
            let others = (0..WEBHOOKS)
                .filter(|k| !orphaned.contains(k))
                .filter_map(|k| resumed.get(&paths[k]).copied())
                .collect();
            break (times, others);
        }
        assert!(
            Instant::now() < until,
            "{name}: {} of the {} webhooks of {victim} received again within 120 s",
            times.len(),
            orphaned.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let since_kill = |t: u64| Duration::from_nanos(t.saturating_sub(killed_at));
    let takeover = since_kill(*resumed.iter().max().unwrap());
    let first = since_kill(*resumed.iter().min().unwrap());
    let since_beat = last_beat
        .map(|beat| Duration::from_nanos(resumed.iter().max().unwrap().saturating_sub(beat)));
    let others = (others.len() == WEBHOOKS - orphaned.len())
        .then(|| others.iter().max().map(|t| since_kill(*t)))
        .flatten();

    // A little more load after the takeover, then everything must arrive and be recorded.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    producer.await.unwrap();
    let n = produced.load(Ordering::SeqCst) as u64;
    let deliveries = n * WEBHOOKS as u64;
    let until = Instant::now() + Duration::from_secs(180);
    while counted(ctx, &paths).await.1 < deliveries {
        assert!(
            Instant::now() < until,
            "{name}: not every event reached every webhook"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let records = db.collection::<Document>("deliveries");
    loop {
        let all = records.estimated_document_count().await.unwrap();
        let unsettled = records
            .count_documents(doc! {"status": {"$ne": "succeeded"}})
            .await
            .unwrap();
        if all >= deliveries && unsettled == 0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "{name}: {all} of {deliveries} deliveries recorded, {unsettled} not succeeded"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let tally = ctx.receiver.tally().await;
    let extra = |k: &usize| tally.get(&paths[*k]).map_or(0, |t| t.requests - t.distinct);
    let duplicates = (0..WEBHOOKS).map(|k| extra(&k)).sum();
    let duplicates_orphaned = orphaned.iter().map(extra).sum();
    cluster.stop().await;
    drop(server);
    KillRun {
        takeover,
        first,
        others,
        since_beat,
        orphaned: orphaned.len(),
        deliveries,
        duplicates,
        duplicates_orphaned,
    }
}

/// A duration in seconds for a note, or "n/a".
fn seconds(d: Option<Duration>) -> String {
    d.map_or_else(|| "n/a".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// Values joined for a note, each with `decimals` digits.
fn listed(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn cluster(ctx: &Ctx) -> Vec<Outcome> {
    // 500 × 20 deliveries a run with --quick: the dev server records them at 25–90 events/s, and
    // the scenario makes six such runs.
    let n = ctx.n(500, 2_000);
    let (logs, _kept) = logs_dir();
    let mut out = Vec::new();

    // 1. One daemon against three.
    let mut runs = Vec::new();
    for (run, &setup) in ORDER.iter().enumerate() {
        let r = rate_run(ctx, setup, n, run, &logs).await;
        eprintln!(
            "  {}: {:.0} deliveries/s received, {:.0}/s recorded; CPU s per 1,000: herald \
             {:.3}, server {:.3}; {:.0} ledger writes; {} duplicates",
            setup.label(),
            r.received,
            r.recorded,
            r.herald_cpu,
            r.server_cpu,
            r.ledger_writes,
            r.duplicates
        );
        runs.push(r);
    }
    let of = |setup: Setup, f: fn(&RateRun) -> f64| -> Vec<f64> {
        runs.iter().filter(|r| r.setup == setup).map(f).collect()
    };
    let per_event = |deliveries: f64| deliveries / WEBHOOKS as f64;
    let (one, three) = (
        of(Setup::One, |r| r.received),
        of(Setup::Three, |r| r.received),
    );
    let (one_rec, three_rec, readers_rec) = (
        of(Setup::One, |r| r.recorded),
        of(Setup::Three, |r| r.recorded),
        of(Setup::OneAndReaders, |r| r.recorded),
    );
    let cpu = |setup: Setup| {
        format!(
            "herald {}, server {}",
            listed(&of(setup, |r| r.herald_cpu), 3),
            listed(&of(setup, |r| r.server_cpu), 3)
        )
    };
    let peak_rss_mib = runs.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
    let duplicates: u64 = runs.iter().map(|r| r.duplicates).sum();

    let mut row = Outcome::new(
        "cluster",
        &format!("events/s insert → receiver ({WEBHOOKS} webhooks), 3 daemons vs 1"),
        per_event(median(&three)),
    )
    .against(per_event(median(&one)), 0.9);
    row.cpu_s_per_1000 = Some(median(&of(Setup::Three, |r| r.herald_cpu)));
    row.peak_rss_mib = peak_rss_mib;
    out.push(row.note(format!(
        "{n} events × {WEBHOOKS} webhooks inserted at once, until the last receipt; runs in \
         the order {:?}, each on a fresh server, medians; deliveries/s, 1 daemon: {}; 3 \
         daemons: {}; every event fits in the feed window, so this is a burst that runs ahead \
         of the records (next row); duplicates in all these runs: {duplicates}; CPU column: \
         the 3 daemons together, per 1,000 deliveries; RSS: the largest daemon",
        ORDER.map(Setup::daemons),
        listed(&one, 0),
        listed(&three, 0),
    )));

    let mut row = Outcome::new(
        "cluster",
        &format!("events/s insert → delivery recorded ({WEBHOOKS} webhooks), 3 daemons vs 1"),
        per_event(median(&three_rec)),
    )
    .against(per_event(median(&one_rec)), 0.9);
    row.cpu_s_per_1000 = Some(median(&of(Setup::Three, |r| r.herald_cpu)));
    row.peak_rss_mib = peak_rss_mib;
    out.push(row.note(format!(
        "until the last delivery record is durable: what the cluster sustains; deliveries/s, \
         1 daemon: {}; 3 daemons: {}; 1 daemon with 2 bare readers of its feed beside it \
         (the feed read three times, no coordination): {} — 3 daemons are {:.0} % of that; \
         CPU s per 1,000 deliveries, 1 daemon: {}; 3 daemons: {}; 1 daemon + readers: {}; \
         ledger writes per run, 1 daemon: {}; 3 daemons: {}",
        listed(&one_rec, 0),
        listed(&three_rec, 0),
        listed(&readers_rec, 0),
        100.0 * median(&three_rec) / median(&readers_rec),
        cpu(Setup::One),
        cpu(Setup::Three),
        cpu(Setup::OneAndReaders),
        listed(&of(Setup::One, |r| r.ledger_writes), 0),
        listed(&of(Setup::Three, |r| r.ledger_writes), 0),
    )));

    // 2 and 3. Kills under a steady load: half of what three daemons sustained above (at
    // most 200 events/s), so that what is measured is the takeover, not a backlog.
    let load = (per_event(median(&three_rec)) / 2.0)
        .clamp(5.0, 200.0)
        .round();
    let kills = ctx.n(1, 3);
    let mut killed = Vec::new();
    for kill in 0..kills {
        let k = kill_run(ctx, load, kill, &logs).await;
        eprintln!(
            "  kill {kill}: {} webhooks orphaned, received again after {:.2}–{:.2} s (the \
             others by {}; since the victim's last heartbeat {}); {} duplicates ({} to them) \
             of {} deliveries",
            k.orphaned,
            k.first.as_secs_f64(),
            k.takeover.as_secs_f64(),
            seconds(k.others),
            seconds(k.since_beat),
            k.duplicates,
            k.duplicates_orphaned,
            k.deliveries
        );
        killed.push(k);
    }
    let bound = LEASE_TTL + LEASE_TTL / 3;
    let takeovers: Vec<f64> = killed.iter().map(|k| k.takeover.as_secs_f64()).collect();
    let takeover = median(&takeovers);
    let mut row = Outcome::new(
        "cluster",
        "takeover after kill -9, s (every orphaned webhook receives again)",
        takeover,
    )
    .goal(
        &format!("≤ lease TTL + one round ({:.1} s)", bound.as_secs_f64()),
        takeover <= bound.as_secs_f64(),
    );
    row.ceiling = Some(bound.as_secs_f64());
    row.ratio = Some(takeover / bound.as_secs_f64());
    let firsts: Vec<f64> = killed.iter().map(|k| k.first.as_secs_f64()).collect();
    let orphaned: Vec<f64> = killed.iter().map(|k| k.orphaned as f64).collect();
    out.push(row.note(format!(
        "--lease-ttl {} s, 3 daemons, {load:.0} events/s × {WEBHOOKS} webhooks; the owner of \
         the most webhooks killed; kill → the last of its webhooks receiving an event inserted \
         after the kill, per kill, s: {} (the first of them: {}; the other webhooks, whose \
         owners lived, by {}; the last of the victim's, since its last heartbeat: {}); \
         webhooks orphaned: {}",
        LEASE_TTL.as_secs(),
        listed(&takeovers, 2),
        listed(&firsts, 2),
        killed
            .iter()
            .map(|k| seconds(k.others))
            .collect::<Vec<_>>()
            .join(", "),
        killed
            .iter()
            .map(|k| seconds(k.since_beat))
            .collect::<Vec<_>>()
            .join(", "),
        listed(&orphaned, 0),
    )));
    let duplicates: Vec<f64> = killed.iter().map(|k| k.duplicates as f64).collect();
    let deliveries: Vec<f64> = killed.iter().map(|k| k.deliveries as f64).collect();
    let to_orphaned: Vec<f64> = killed
        .iter()
        .map(|k| k.duplicates_orphaned as f64)
        .collect();
    let share = median(
        &killed
            .iter()
            .map(|k| k.duplicates as f64 / k.deliveries as f64)
            .collect::<Vec<_>>(),
    );
    let mut row = Outcome::new(
        "cluster",
        "duplicate requests per kill -9",
        median(&duplicates),
    )
    .goal("≤ 5 % of deliveries", share <= 0.05);
    row.ceiling = Some(median(&deliveries));
    row.ratio = Some(share);
    out.push(row.note(format!(
        "requests beyond the first of each (event, webhook), counted once every delivery is \
         recorded succeeded; per kill: {} of {} deliveries ({} to the killed daemon's \
         webhooks); ceiling column: the run's deliveries; ratio: duplicates / deliveries",
        listed(&duplicates, 0),
        listed(&deliveries, 0),
        listed(&to_orphaned, 0),
    )));
    out
}
