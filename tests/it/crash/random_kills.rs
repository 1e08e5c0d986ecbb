//! kill -9 at random points under load, with retries pending at every kill: every
//! matching event reaches every healthy endpoint, no more often than herald was started,
//! and every delivery ends final.

use std::collections::HashSet;
use std::time::Duration;

use mongodb::bson::{doc, Document};

use super::distinct_ids;
use crate::daemon::{test_config, ChildDaemon};
use crate::fixtures::*;
use crate::support::Receiver;

/// Kills per run of [`kill_9_at_random_points_under_load_with_retries_pending`].
const RANDOM_KILLS: usize = 12;
/// Events that run streams; each goes to four endpoints (one of which fails some requests).
const RANDOM_EVENTS: usize = 600;

/// The seed of the random kill schedule: `HERALD_CRASH_SEED` to replay a failed run, else
/// the clock.
fn crash_seed() -> u64 {
    std::env::var("HERALD_CRASH_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

#[tokio::test]
async fn kill_9_at_random_points_under_load_with_retries_pending() {
    use rand::{Rng, SeedableRng};

    let seed = crash_seed();
    println!("kill -9 schedule seed: {seed} (replay with HERALD_CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let (uri, name, db) = database("crashrandom").await;
    // Three healthy receivers, one of them subscribed to one event type only, and one that
    // answers 500 to half of its requests, so retries are pending at every kill and a few
    // deliveries run out of attempts.
    let healthy = [
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    ];
    let flaky = Receiver::start().await;
    let pattern: Vec<u16> = (0..20 * RANDOM_EVENTS)
        .map(|_| if rng.random_bool(0.5) { 500 } else { 200 })
        .collect();
    flaky.script(pattern);
    let subscriptions: [(&str, &Receiver, &[&str]); 4] = [
        ("wh_00000000000c0a01", &healthy[0], &["*"]),
        ("wh_00000000000c0a02", &healthy[1], &["batch.completed"]),
        ("wh_00000000000c0a03", &healthy[2], &["*"]),
        ("wh_00000000000c0a04", &flaky, &["*"]),
    ];
    for (id, receiver, types) in subscriptions {
        insert_webhook(&db, webhook(id, &receiver.url, types)).await;
    }
    let mut config = test_config(&uri, &name, &healthy[0].ca_pem_path);
    config.retry_initial_ms = 50;
    config.retry_max_ms = 400;
    config.retry_max_attempts = 6;
    let log = tempfile::NamedTempFile::new().unwrap();
    let fail = |what: String| -> ! {
        let log = std::fs::read_to_string(log.path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{what}\nseed: HERALD_CRASH_SEED={seed}\nlast herald log lines:\n{}",
            tail.join("\n")
        );
    };

    let mut daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;

    // Two event types, alternating, in batches of 20 every 400 ms: about 12 s of traffic.
    let event_type = |i: usize| {
        if i % 2 == 0 {
            "batch.completed"
        } else {
            "batch.started"
        }
    };
    let producer = {
        let db = db.clone();
        tokio::spawn(async move {
            for batch in 0..(RANDOM_EVENTS / 20) {
                let events: Vec<Document> = (0..20)
                    .map(|i| {
                        let n = batch * 20 + i;
                        event(&format!("evt_rnd_{n:04}"), event_type(n))
                    })
                    .collect();
                db.collection::<Document>("events")
                    .insert_many(events)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        })
    };

    // Kill at random points: sometimes just after start-up (while pending retries are being
    // re-loaded), sometimes in full flow.
    let mut schedule = Vec::new();
    for _ in 0..RANDOM_KILLS {
        let delay = Duration::from_millis(rng.random_range(0..1_500));
        schedule.push(delay.as_millis());
        tokio::time::sleep(delay).await;
        daemon.kill();
        daemon = ChildDaemon::spawn(&config, log.path());
        daemon.wait_ready().await;
    }
    println!("killed {RANDOM_KILLS} times, after {schedule:?} ms of uptime");
    producer.await.unwrap();

    // Settle: every (event, matching webhook) has its document, none pending.
    let matching = |webhook: usize, i: usize| webhook != 1 || event_type(i) == "batch.completed";
    let expected_docs: usize = (0..RANDOM_EVENTS)
        .map(|i| (0..4).filter(|&w| matching(w, i)).count())
        .sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let docs = loop {
        // Only this test's events: herald's own alerts (an endpoint failing, recovered) are
        // delivered too.
        let docs = deliveries(&db, doc! {"event_id": {"$regex": "^evt_rnd_"}}).await;
        let pending = docs
            .iter()
            .filter(|d| d.get_str("status") == Ok("pending"))
            .count();
        if docs.len() == expected_docs && pending == 0 {
            break docs;
        }
        if std::time::Instant::now() > deadline {
            // Pending is only acceptable with a retry still to come.
            let now = mongodb::bson::DateTime::now();
            let stuck: Vec<String> = docs
                .iter()
                .filter(|d| d.get_str("status") == Ok("pending"))
                .filter(|d| {
                    d.get_datetime("next_attempt_at")
                        .map_or(true, |t| *t <= now)
                })
                .map(|d| format!("{d}"))
                .take(5)
                .collect();
            fail(format!(
                "not settled after 60 s: {} of {expected_docs} delivery documents, {pending} \
                 pending, of which stuck without a future next_attempt_at: {stuck:?}",
                docs.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Healthy endpoints: every matching event arrived (always with a 200), and no event more
    // often than herald was started.
    let lives = RANDOM_KILLS + 1;
    let mut healthy_duplicates = Vec::new();
    for (w, receiver) in healthy.iter().enumerate() {
        let mut copies: std::collections::HashMap<String, usize> = Default::default();
        for r in receiver.requests() {
            let id = header(&r, "webhook-id").unwrap();
            if id.starts_with("evt_rnd_") {
                *copies.entry(id.to_owned()).or_default() += 1;
            }
        }
        let wanted: Vec<String> = (0..RANDOM_EVENTS)
            .filter(|&i| matching(w, i))
            .map(|i| format!("evt_rnd_{i:04}"))
            .collect();
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|id| !copies.contains_key(*id))
            .collect();
        if !missing.is_empty() {
            fail(format!(
                "healthy endpoint {w}: {} events never arrived (first: {:?})",
                missing.len(),
                &missing[..missing.len().min(10)]
            ));
        }
        if copies.len() != wanted.len() {
            fail(format!(
                "healthy endpoint {w} got events it does not subscribe to"
            ));
        }
        if let Some((id, n)) = copies.iter().find(|(_, n)| **n > lives) {
            fail(format!(
                "{id} reached endpoint {w} {n} times, more than the {lives} lives of herald"
            ));
        }
        healthy_duplicates.push(copies.values().sum::<usize>() - wanted.len());
    }

    // Every document is final: succeeded (healthy ones all are), or failed after its retries.
    let mut failed = 0;
    let mut flaky_ids: HashSet<String> = distinct_ids(&flaky);
    flaky_ids.retain(|id| id.starts_with("evt_rnd_"));
    for d in &docs {
        let id = d.get_str("_id").unwrap();
        let webhook = d.get_str("webhook_id").unwrap();
        let status = d.get_str("status").unwrap();
        let attempts = d.get_i64("attempts").unwrap_or_default();
        let is_flaky = webhook == "wh_00000000000c0a04";
        match status {
            "succeeded" => {
                let code = d.get_i32("last_status_code").unwrap_or_default();
                if !(200..300).contains(&code) {
                    fail(format!("{id} succeeded with last status {code}: {d}"));
                }
                if is_flaky && !flaky_ids.contains(d.get_str("event_id").unwrap()) {
                    fail(format!("{id} is succeeded but never reached its receiver"));
                }
            }
            "failed" if is_flaky && attempts >= i64::from(config.retry_max_attempts) => failed += 1,
            _ => fail(format!(
                "{id} ended {status} after {attempts} attempts: {d}"
            )),
        }
    }
    let flaky_requests = flaky
        .requests()
        .iter()
        .filter(|r| header(r, "webhook-id").is_some_and(|id| id.starts_with("evt_rnd_")))
        .count();
    let duplicates: usize = healthy_duplicates.iter().sum();
    println!(
        "kill -9 x{RANDOM_KILLS} during {RANDOM_EVENTS} events to 4 endpoints ({expected_docs} \
         deliveries): duplicates at the healthy endpoints {healthy_duplicates:?} (total \
         {duplicates}, {:.1} per kill per endpoint); flaky endpoint: {flaky_requests} requests \
         for {} distinct events, {failed} deliveries failed after {} attempts",
        duplicates as f64 / (RANDOM_KILLS * healthy.len()) as f64,
        flaky_ids.len(),
        config.retry_max_attempts,
    );

    assert_eq!(
        daemon.terminate(),
        Some(0),
        "herald did not exit cleanly on SIGTERM"
    );
}
