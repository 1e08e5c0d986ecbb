//! A dead endpoint with 200,000 pending deliveries: herald's memory stays bounded (its
//! endpoint pages pending deliveries from MongoDB instead of holding them all) and a healthy
//! endpoint keeps getting new events.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_actors::{Event, Payload};
use mongodb::bson::{doc, DateTime, Document};

use crate::daemon::{free_port, test_config, ChildDaemon};
use crate::fixtures::*;
use crate::support::mongo::{PYTHON_ENV, URI_ENV};
use crate::support::{Receiver, Response};

const DEAD: &str = "wh_00000000000dead0";
const HEALTHY: &str = "wh_0000000000000a11";

/// The backlog of the dead endpoint (`HERALD_BACKLOG_PENDING` overrides it for a quicker
/// run: on the dev server, inserting 200,000 and herald's index builds over them at start
/// take minutes on a busy 2-core machine).
const PENDING: usize = 200_000;

/// Deliveries an endpoint may hold (`--max-held-per-endpoint`): the default, or a tenth of
/// a smaller backlog, so that paging is what keeps memory bounded whatever the override
/// (with a backlog below the default, nothing would need paging and the test could not
/// fail).
fn max_held(pending: usize) -> usize {
    (pending / 10).clamp(100, 10_000)
}

/// The peak RSS tells held-whole from paged only for a large backlog: below this many,
/// holding all of them stays under [`RSS_BOUND_KIB`], and the held figure alone decides.
const RSS_MEANINGFUL_FROM: usize = 150_000;

fn pending_count() -> usize {
    std::env::var("HERALD_BACKLOG_PENDING")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(PENDING)
}
/// New events published while herald works through it; each goes to both webhooks.
const NEW_EVENTS: usize = 1_000;

/// Peak RSS herald may reach. Holding every delivery costs about 0.55 KiB each beyond the
/// body (27 MiB for 50,000 in BENCHMARKS.md), so keeping all 200,000 in memory would add
/// more than 100 MiB to an idle daemon's ~40 MiB; bounded, herald holds at most
/// `max_held_per_endpoint` (10,000) of them plus one cursor batch. 128 MiB leaves room for
/// allocator slack, TLS and driver buffers, yet fails if the backlog is held whole.
const RSS_BOUND_KIB: u64 = 128 * 1024;

/// A SecantusDB of this test's own: in memory, and without the TTL sweeper, which decodes
/// every document of every collection each minute holding the GIL (seconds of stall with
/// 200,000 deliveries; mongod's uses the index). Test setup only, as in the load bench.
/// With `HERALD_TEST_MONGODB_URI` set, that server is used instead.
struct OwnServer {
    child: Option<std::process::Child>,
    uri: String,
}

impl OwnServer {
    async fn start() -> Self {
        if let Some(uri) = std::env::var(URI_ENV).ok().filter(|u| !u.is_empty()) {
            return Self { child: None, uri };
        }
        let python = std::env::var_os(PYTHON_ENV)
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
            });
        let dir = tempfile::tempdir().unwrap();
        // Empty: keeps a developer's `./secantusd.toml` out.
        let config = dir.path().join("secantusd.toml");
        std::fs::write(&config, "").unwrap();
        let port = free_port();
        // Without its TTL sweeper (and its full garbage collections): see the launcher.
        let launcher =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/secantus_quiet.py");
        let child = std::process::Command::new(&python)
            .arg(launcher)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--storage-path", ":memory:", "--log-level", "WARNING"])
            .arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
        let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
        let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
        crate::support::eventually(Duration::from_secs(60), "SecantusDB answers", || {
            let client = client.clone();
            async move {
                client
                    .database("admin")
                    .run_command(doc! {"ping": 1})
                    .await
                    .is_ok()
            }
        })
        .await;
        // The config file is read at start; the directory can go.
        drop(dir);
        Self {
            child: Some(child),
            uri,
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `VmHWM` (peak) or `VmRSS` of a process, in KiB.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A body like the platform's `collection.documents.written` (about 400 bytes).
fn body(i: usize) -> String {
    let payload = Payload {
        event_id: format!("evt_backlog_{i:07}"),
        event_type: "collection.documents.written".into(),
        occurred_at: "2026-11-26T00:00:00.000Z".into(),
        namespace_id: Some("ns_backlog".into()),
        task_id: None,
        subject: None,
        data: serde_json::json!({
            "collection_id": "col_backlog",
            "document_ids": (0..8).map(|d| format!("doc_{i:07}_{d}")).collect::<Vec<_>>(),
            "index_signature": "5f1e7c0a9b3d2e4f6a8c",
        }),
        cache_scope: None,
    };
    String::from_utf8(Event::from_payload(&payload).body.to_vec()).unwrap()
}

/// A pending delivery as herald's ledger writes it (see `src/store/deliveries.rs`).
fn pending_delivery(i: usize, now: DateTime) -> Document {
    let event_id = format!("evt_backlog_{i:07}");
    doc! {
        "_id": format!("{event_id}:{DEAD}"),
        "event_id": &event_id,
        "webhook_id": DEAD,
        "event_type": "collection.documents.written",
        "status": "pending",
        "attempts": 0_i64,
        "next_attempt_at": now,
        "last_status_code": mongodb::bson::Bson::Null,
        "last_error": mongodb::bson::Bson::Null,
        "completed_at": mongodb::bson::Bson::Null,
        "attempt_log": [],
        "created_at": now,
        "updated_at": now,
        "payload": body(i),
    }
}

#[tokio::test]
async fn a_dead_endpoint_with_200000_pending_deliveries_keeps_herald_bounded_and_its_neighbour_served(
) {
    let pending = pending_count();
    let server = OwnServer::start().await;
    let uri = server.uri.clone();
    let name = crate::support::unique_db("backlog");
    let db = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&name);
    // Dead: 503 after 50 ms, for every attempt (a failing endpoint is probed two at a time).
    let dead = Receiver::start().await;
    dead.respond_with_response(Response::status(503).delay(Duration::from_millis(50)));
    let healthy = Receiver::start().await;
    insert_webhook(&db, webhook(DEAD, &dead.url, &["*"])).await;
    insert_webhook(&db, webhook(HEALTHY, &healthy.url, &["*"])).await;

    // The backlog, as a previous run left it, written the way herald's ledger writes it.
    let started = Instant::now();
    let now = DateTime::now();
    let deliveries = db.collection::<Document>("deliveries");
    for first in (0..pending).step_by(1_000) {
        let docs: Vec<Document> = (first..(first + 1_000).min(pending))
            .map(|i| pending_delivery(i, now))
            .collect();
        deliveries.insert_many(docs).await.unwrap();
    }
    let inserted = started.elapsed();
    println!(
        "inserted {pending} pending deliveries in {:.1} s",
        inserted.as_secs_f64()
    );

    let config = test_config(&uri, &name, &dead.ca_pem_path);
    let log = tempfile::NamedTempFile::new().unwrap();
    let cap = max_held(pending);
    let mut command = ChildDaemon::command(&config);
    command.args(["--max-held-per-endpoint", &cap.to_string()]);
    let mut daemon = ChildDaemon::spawn_command(command, log.path());
    let pid = daemon.child.id();
    // Sample the resident set while it runs (VmHWM at the end gives the peak anyway).
    let stop = Arc::new(AtomicBool::new(false));
    let most_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, most_rss) = (stop.clone(), most_rss.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = status_kib(pid, "VmRSS:") {
                    most_rss.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Start-up builds the indexes over the backlog first: on the dev server that takes a
    // while, so wait longer than `wait_ready` does.
    daemon.wait_ready_within(Duration::from_secs(180)).await;
    // What the dead endpoint holds in memory (queued, in flight, waiting to retry), as
    // its webhook's health reports it, sampled throughout.
    let most_held = Arc::new(AtomicU64::new(0));
    let held_sampler = {
        let (stop, most_held) = (stop.clone(), most_held.clone());
        let api = crate::api_client::Api::new(daemon.listen(), None);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let read = api.get(&format!("/v1/webhooks/{DEAD}")).await;
                let health = &read.body["health"];
                let held = ["queued", "in_flight", "scheduled"]
                    .iter()
                    .filter_map(|k| health[*k].as_u64())
                    .sum::<u64>();
                most_held.fetch_max(held, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let ready = started.elapsed() - inserted;
    println!("herald ready {:.1} s after start", ready.as_secs_f64());

    // New events, 100 a second, while the dead endpoint's backlog is paged in.
    let publishing = Instant::now();
    let events = db.collection::<Document>("events");
    for batch in 0..(NEW_EVENTS / 10) {
        let docs: Vec<Document> = (0..10)
            .map(|i| event(&format!("evt_new_{:05}", batch * 10 + i), "batch.completed"))
            .collect();
        events.insert_many(docs).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let published = publishing.elapsed();
    crate::support::eventually(
        Duration::from_secs(120),
        "the healthy endpoint has every new event",
        || {
            let ids: HashSet<String> = healthy
                .requests()
                .iter()
                .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
                .collect();
            async move { ids.len() >= NEW_EVENTS }
        },
    )
    .await;
    let served = publishing.elapsed();
    println!(
        "healthy endpoint: {NEW_EVENTS} events published in {:.1} s, all received after {:.1} s ({:.0}/s)",
        published.as_secs_f64(),
        served.as_secs_f64(),
        NEW_EVENTS as f64 / served.as_secs_f64()
    );

    // The dead endpoint is being worked through: backlog deliveries reach it (page by page).
    crate::support::eventually(
        Duration::from_secs(120),
        "backlog deliveries are attempted",
        || {
            let attempted = dead
                .requests()
                .iter()
                .filter(|r| {
                    header(r, "webhook-id").is_some_and(|id| id.starts_with("evt_backlog_"))
                })
                .count();
            async move { attempted >= 20 }
        },
    )
    .await;
    let backlog_attempts = dead
        .requests()
        .iter()
        .filter(|r| header(r, "webhook-id").is_some_and(|id| id.starts_with("evt_backlog_")))
        .count();

    // Those deliveries exist only in the ledger: each was read back before its first
    // attempt, and operators see it counted.
    let backlog_attempted: HashSet<String> = dead
        .requests()
        .iter()
        .filter_map(|r| header(r, "webhook-id"))
        .filter(|id| id.starts_with("evt_backlog_"))
        .map(str::to_owned)
        .collect();
    let metrics =
        crate::operations::scrape(&crate::api_client::Api::new(daemon.listen(), None)).await;
    let read_back = crate::operations::sample(&metrics, "herald_deliveries_read_back_total");
    assert!(
        read_back >= backlog_attempted.len() as f64,
        "{read_back} deliveries counted as read back, {} backlog deliveries attempted",
        backlog_attempted.len()
    );

    let peak = status_kib(pid, "VmHWM:").expect("the child's /proc status");
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    held_sampler.await.unwrap();
    let most_held = most_held.load(Ordering::Relaxed) as usize;
    println!("the dead endpoint held at most {most_held} deliveries (cap {cap})");
    assert!(
        most_held > 0,
        "the dead endpoint's health never showed a held delivery"
    );
    assert!(
        most_held <= cap,
        "the dead endpoint held {most_held} deliveries, over its cap of {cap}, with {pending} pending"
    );
    println!(
        "herald peak RSS (VmHWM) {:.1} MiB (largest VmRSS sample {:.1} MiB) with {pending} pending \
         deliveries; {backlog_attempts} backlog attempts to the dead endpoint so far",
        peak as f64 / 1024.0,
        most_rss.load(Ordering::Relaxed) as f64 / 1024.0
    );
    assert!(
        pending < RSS_MEANINGFUL_FROM || peak <= RSS_BOUND_KIB,
        "herald's peak RSS {:.1} MiB exceeds {} MiB",
        peak as f64 / 1024.0,
        RSS_BOUND_KIB / 1024
    );

    // Nothing of the backlog was lost and none of it was delivered: the collection holds
    // the backlog plus one delivery per new event and webhook (the dead endpoint's were
    // spilled: recorded as pending). Counted from the collection's metadata: an exact count
    // scans 200,000 documents on the dev server.
    crate::support::eventually(
        Duration::from_secs(60),
        "every delivery is in the ledger",
        || {
            let deliveries = deliveries.clone();
            async move {
                deliveries.estimated_document_count().await.unwrap() as usize
                    >= pending + 2 * NEW_EVENTS
            }
        },
    )
    .await;
    let delivered = deliveries
        .count_documents(doc! {"status": "succeeded", "webhook_id": DEAD})
        .await
        .unwrap();
    assert_eq!(delivered, 0);
    assert_eq!(daemon.terminate(), Some(0), "herald did not stop cleanly");
}
