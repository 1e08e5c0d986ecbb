//! A daemon frozen (SIGSTOP: a long GC pause, a suspended VM) for longer than its lease
//! while events flow, then thawed (SIGCONT). The others take its partitions over with a
//! new epoch; when it wakes, still believing it owns them, its writes under the old epoch
//! are refused (fencing): no lease goes back, no checkpoint moves backwards, no partition
//! ends up with two owners, and it starts no attempt until a renewal shows which leases it
//! still holds. What an endpoint can get twice is what the frozen daemon had sent before it
//! froze and not yet recorded (as after a crash: its ledger writer's buffer can hold more
//! than an in-flight window when the database is slow); of what was first sent after the
//! freeze, at most the attempts it had in flight (64 per endpoint).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::Database;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::daemon::test_config;
use crate::fixtures::database;

const DAEMONS: usize = 3;
const EVENTS: usize = 1_500;
const PREFIX: &str = "frozen";
/// `--max-in-flight-per-endpoint`'s default: the attempts a frozen owner can have under way
/// to one endpoint, so the most it can send again when it wakes.
const IN_FLIGHT_PER_ENDPOINT: usize = 64;

#[tokio::test]
async fn a_daemon_frozen_past_its_lease_is_fenced_off_and_sends_little_twice() {
    let (uri, name, db) = database("cluster_frozen").await;
    let endpoints = Endpoint::start_many(&db, "000000000c1a04", 3).await;
    let config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    let cluster = Cluster::start(&config, DAEMONS, &[]).await;
    cluster.wait_settled(&db).await;
    let frozen_id = owner_of(&db, &endpoints[0].webhook_id)
        .await
        .expect("the first endpoint's partition has an owner");
    let frozen = cluster
        .index_of(&frozen_id)
        .unwrap_or_else(|| panic!("{frozen_id} is not one of the running daemons"));
    let watch = LeaseWatch::start(&db);

    // About 30 s of traffic: 10 events every 200 ms.
    let producer = Producer::start(&db, PREFIX, EVENTS, 10, Duration::from_millis(200));
    crate::support::eventually(Duration::from_secs(120), "deliveries under way", || {
        let n = endpoints[0].tally(PREFIX).distinct();
        async move { n >= 100 }
    })
    .await;
    let held: BTreeMap<i32, i64> = leases(&db)
        .await
        .into_iter()
        .filter(|l| l.owner.as_deref() == Some(frozen_id.as_str()))
        .map(|l| (l.partition, l.epoch))
        .collect();
    cluster.freeze(frozen);
    let frozen_at = tokio::time::Instant::now();

    // The others notice its beats have stopped and take every one of its partitions, each
    // with a higher epoch.
    crate::support::eventually(
        Duration::from_secs(120),
        "the frozen daemon's partitions are taken over under new epochs",
        || {
            let (db, held, frozen_id) = (db.clone(), held.clone(), frozen_id.clone());
            async move {
                let now = leases(&db).await;
                held.iter().all(|(partition, epoch)| {
                    now.iter().any(|l| {
                        l.partition == *partition
                            && l.owner.as_ref().is_some_and(|o| *o != frozen_id)
                            && l.epoch > *epoch
                    })
                })
            }
        },
    )
    .await;
    println!(
        "{frozen_id} frozen; its {} partitions taken over after {:.1} s (lease TTL {LEASE_TTL:?})",
        held.len(),
        frozen_at.elapsed().as_secs_f64()
    );
    // Frozen three lease periods in all, then thawed while events still flow.
    tokio::time::sleep_until(frozen_at + 3 * LEASE_TTL).await;
    cluster.thaw(frozen);
    assert!(
        producer.produced() < EVENTS,
        "the load was over before the thaw; the woken daemon had nothing to race for"
    );

    let events = producer.finish().await;
    wait_all_arrived(&db, &endpoints, PREFIX, &events, Duration::from_secs(180)).await;
    wait_all_succeeded(
        &db,
        PREFIX,
        EVENTS * endpoints.len(),
        Duration::from_secs(120),
    )
    .await;
    cluster.wait_settled(&db).await;

    report_duplicates("SIGSTOP past the lease, SIGCONT", &endpoints, PREFIX);
    for endpoint in &endpoints {
        let (before, after) = duplicated_around(&endpoint.receiver.requests(), frozen_at);
        println!(
            "{}: duplicated events first sent before the freeze: {}; after it: {}",
            endpoint.webhook_id,
            before.len(),
            after.len()
        );
        assert!(
            after.len() <= IN_FLIGHT_PER_ENDPOINT,
            "{} got {} events twice that were first sent after the freeze, more than could \
             have been in flight, e.g. {:?}",
            endpoint.webhook_id,
            after.len(),
            &after[..after.len().min(10)]
        );
    }

    // Fencing, as seen in `herald_partitions` all along: no epoch went back, no checkpoint
    // moved backwards, no lease changed hands without a new epoch.
    let violations = watch.stop().await;
    assert!(
        violations.is_empty(),
        "stale lease or checkpoint writes got through:\n  {}",
        violations.join("\n  ")
    );

    // Each partition has one owner, in the members' own records and in the API of the two
    // that were never frozen.
    let running = cluster.running();
    crate::support::eventually(
        Duration::from_secs(60),
        "each partition is claimed by exactly one member in herald_members",
        || {
            let (db, running) = (db.clone(), running.clone());
            async move {
                let claims = members_partitions(&db).await;
                each_partition_once(
                    claims
                        .iter()
                        .filter(|(id, _)| running.contains(id))
                        .map(|(_, partitions)| partitions),
                )
            }
        },
    )
    .await;
    for i in (0..DAEMONS).filter(|i| *i != frozen) {
        let api = cluster.api(i);
        let (api, running) = (&api, running.as_slice());
        crate::support::eventually(
            Duration::from_secs(60),
            &format!("{} reports each partition owned once", cluster.member_id(i)),
            || async move { cluster_view_is_consistent(api, running).await },
        )
        .await;
    }
}

/// `GET /v1/cluster` answers, every lease has a running owner, and the members' partition
/// lists claim each partition once.
async fn cluster_view_is_consistent(api: &crate::api_client::Api, running: &[String]) -> bool {
    let response = api.get("/v1/cluster").await;
    if response.status != 200 {
        return false;
    }
    let body = &response.body;
    let leases = body["leases"].as_array().cloned().unwrap_or_default();
    let owned = leases.len() == PARTITIONS
        && leases.iter().all(|l| {
            l["owner"]
                .as_str()
                .is_some_and(|o| running.iter().any(|r| r == o))
        });
    let claims: Vec<Vec<i64>> = body["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|m| {
            m["member_id"]
                .as_str()
                .is_some_and(|id| running.iter().any(|r| r == id))
        })
        .map(|m| {
            m["partitions"]
                .as_array()
                .map(|ps| ps.iter().filter_map(serde_json::Value::as_i64).collect())
                .unwrap_or_default()
        })
        .collect();
    owned && each_partition_once(&claims)
}

/// Watches `herald_partitions` in the background (every 100 ms) for writes a fenced-off
/// owner must not get through: an epoch going back, a checkpoint going back, a lease
/// changing owner without a new epoch.
struct LeaseWatch {
    violations: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseWatch {
    fn start(db: &Database) -> Self {
        let violations = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = {
            let (db, violations, stop) = (db.clone(), violations.clone(), stop.clone());
            tokio::spawn(async move {
                let mut last: BTreeMap<i32, Lease> = BTreeMap::new();
                while !stop.is_cancelled() {
                    for now in leases(&db).await {
                        if let Some(before) = last.get(&now.partition) {
                            if let Some(v) = regression(before, &now) {
                                violations.lock().unwrap().push(v);
                            }
                        }
                        last.insert(now.partition, now);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Self {
            violations,
            stop,
            task,
        }
    }

    /// Stops watching; returns what it saw go wrong.
    async fn stop(self) -> Vec<String> {
        self.stop.cancel();
        self.task.await.expect("the lease watch ran");
        let violations = self.violations.lock().unwrap().clone();
        violations
    }
}

/// What is wrong with a lease having gone from `before` to `now`, if anything.
fn regression(before: &Lease, now: &Lease) -> Option<String> {
    let p = now.partition;
    if now.epoch < before.epoch {
        return Some(format!(
            "partition {p}: epoch went back from {} to {} ({before:?} -> {now:?})",
            before.epoch, now.epoch
        ));
    }
    if let (Some(was), Some(is)) = (before.checkpoint_time, now.checkpoint_time) {
        if is < was {
            return Some(format!(
                "partition {p}: checkpoint went back from {was:?} to {is:?} ({before:?} -> \
                 {now:?})"
            ));
        }
    }
    if let (Some(was), Some(is)) = (&before.owner, &now.owner) {
        if was != is && now.epoch == before.epoch {
            return Some(format!(
                "partition {p}: passed from {was} to {is} under the same epoch {}",
                now.epoch
            ));
        }
    }
    None
}

/// The events of the story `requests` holds more than once, split by when their first copy
/// arrived: before `frozen_at` (sent by the frozen daemon before it froze) or after.
fn duplicated_around(
    requests: &[crate::support::RecordedRequest],
    frozen_at: tokio::time::Instant,
) -> (Vec<String>, Vec<String>) {
    let wanted = format!("evt_{PREFIX}_");
    let mut seen: BTreeMap<String, (std::time::Instant, usize)> = BTreeMap::new();
    for request in requests {
        let Some(id) = request
            .header("webhook-id")
            .filter(|id| id.starts_with(&wanted))
        else {
            continue;
        };
        let entry = seen.entry(id.to_owned()).or_insert((request.at, 0));
        entry.0 = entry.0.min(request.at);
        entry.1 += 1;
    }
    let frozen_at = frozen_at.into_std();
    seen.into_iter()
        .filter(|(_, (_, copies))| *copies > 1)
        .map(|(id, (first, _))| (id, first))
        .fold(
            (Vec::new(), Vec::new()),
            |(mut before, mut after), (id, first)| {
                if first < frozen_at {
                    before.push(id);
                } else {
                    after.push(id);
                }
                (before, after)
            },
        )
}
