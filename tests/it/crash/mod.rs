//! herald killed with SIGKILL mid-stream loses nothing: restarted, it resumes from its
//! checkpoint and re-loads pending retries. Stopped with SIGTERM, it lets in-flight
//! attempts finish and records them, so a restart sends nothing again.

use std::collections::HashSet;
use std::time::Duration;

use mongodb::bson::{doc, Document};

use crate::daemon::{test_config, ChildDaemon};
use crate::fixtures::*;
use crate::support::Receiver;

const EVENTS: usize = 1_000;

fn distinct_ids(receiver: &Receiver) -> HashSet<String> {
    receiver
        .requests()
        .iter()
        .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn kill_9_in_the_middle_of_1000_deliveries_loses_none() {
    let (uri, name, db) = database("crash").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook("wh_0000000000000c01", &receiver.url, &["*"])).await;
    let config = test_config(&uri, &name, &receiver.ca_pem_path);
    let log = tempfile::NamedTempFile::new().unwrap();

    let mut daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;

    let producer = {
        let db = db.clone();
        tokio::spawn(async move {
            for batch in 0..(EVENTS / 50) {
                let events: Vec<Document> = (0..50)
                    .map(|i| {
                        event(
                            &format!("evt_crash_{:04}", batch * 50 + i),
                            "batch.completed",
                        )
                    })
                    .collect();
                db.collection::<Document>("events")
                    .insert_many(events)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Kill it twice while deliveries are flowing.
    for threshold in [150, 500] {
        crate::support::eventually(Duration::from_secs(60), "deliveries under way", || {
            let n = receiver.count();
            async move { n >= threshold }
        })
        .await;
        daemon.kill();
        daemon = ChildDaemon::spawn(&config, log.path());
        daemon.wait_ready().await;
    }
    producer.await.unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let ids = distinct_ids(&receiver);
        if ids.len() == EVENTS {
            break;
        }
        if std::time::Instant::now() > deadline {
            let missing: Vec<String> = (0..EVENTS)
                .map(|i| format!("evt_crash_{i:04}"))
                .filter(|id| !ids.contains(id))
                .collect();
            let log = std::fs::read_to_string(log.path()).unwrap_or_default();
            panic!(
                "{} events never arrived (first: {:?})\nherald log:\n{log}",
                missing.len(),
                &missing[..missing.len().min(10)]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let duplicates = receiver.count() - EVENTS;
    println!("kill -9 twice: {EVENTS} events delivered, {duplicates} duplicate deliveries");

    // Every delivery is recorded as succeeded.
    crate::support::eventually(
        Duration::from_secs(30),
        "1000 succeeded delivery documents",
        || {
            let db = db.clone();
            async move { deliveries(&db, doc! {"status": "succeeded"}).await.len() == EVENTS }
        },
    )
    .await;

    // A clean stop exits 0.
    assert_eq!(
        daemon.terminate(),
        Some(0),
        "herald did not exit cleanly on SIGTERM"
    );
}

#[tokio::test]
async fn sigterm_lets_in_flight_attempts_finish_records_them_and_a_restart_resends_nothing() {
    const EVENTS: usize = 5;
    let (uri, name, db) = database("sigterm").await;
    let receiver = Receiver::start().await;
    // Slow: each answer comes three seconds after the request arrived.
    receiver.respond_with_response(crate::support::Response::ok().delay(Duration::from_secs(3)));
    insert_webhook(&db, webhook("wh_0000000000000c05", &receiver.url, &["*"])).await;
    let mut config = test_config(&uri, &name, &receiver.ca_pem_path);
    // The attempts outlast neither their timeout nor the shutdown grace (10 s by default).
    config.attempt_timeout_ms = 10_000;
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;

    let events: Vec<Document> = (0..EVENTS)
        .map(|i| event(&format!("evt_term_{i}"), "batch.completed"))
        .collect();
    db.collection::<Document>("events")
        .insert_many(events)
        .await
        .unwrap();
    // An attempt has reached the receiver and waits for its answer: SIGTERM now. (Herald
    // may hold the others back while a new endpoint's first attempts are out.)
    receiver.wait_for(1, Duration::from_secs(30)).await;
    let terminated_at = mongodb::bson::DateTime::now();
    assert_eq!(daemon.sigterm().await, Some(0), "{}", daemon.log_text());
    assert!(
        crate::support::without_colours(&daemon.log_text()).contains("draining in-flight attempts"),
        "{}",
        daemon.log_text()
    );

    // What was in flight was drained and recorded before herald exited: succeeded, its
    // answer after the SIGTERM. The rest were not attempted yet.
    let in_flight_at_stop = distinct_ids(&receiver);
    assert!(!in_flight_at_stop.is_empty());
    let recorded = deliveries(&db, doc! {}).await;
    for event_id in &in_flight_at_stop {
        let id = format!("{event_id}:wh_0000000000000c05");
        let d = delivery(&db, &id).await.unwrap_or_else(|| {
            panic!(
                "{id} was not recorded before exit; recorded: {recorded:?}\nherald log:\n{}",
                crate::support::without_colours(&daemon.log_text()),
            )
        });
        assert_eq!(d.get_str("status").unwrap(), "succeeded", "{d}");
        assert_eq!(d.get_i64("attempts").unwrap(), 1, "{d}");
        let attempt = d.get_array("attempt_log").unwrap()[0]
            .as_document()
            .unwrap()
            .clone();
        let ended = attempt.get_datetime("at").unwrap().timestamp_millis()
            + attempt.get_i64("duration_ms").unwrap();
        assert!(
            ended >= terminated_at.timestamp_millis(),
            "{id} was answered before the SIGTERM at {terminated_at}, not in flight: {attempt}"
        );
    }

    // Restarted: every event arrives (the new one last, so the feed has caught up), and
    // each exactly once: nothing drained was sent again.
    receiver.respond_with(200);
    let daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;
    insert_event(&db, "evt_term_after_restart", "batch.completed").await;
    crate::support::eventually(
        Duration::from_secs(30),
        "every event is delivered after the restart",
        || {
            let got = distinct_ids(&receiver).len() == EVENTS + 1;
            async move { got }
        },
    )
    .await;
    let ids: Vec<String> = receiver
        .requests()
        .iter()
        .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
        .collect();
    assert_eq!(
        ids.len(),
        EVENTS + 1,
        "sent again after a clean restart: {ids:?}"
    );
    drop(daemon);
}

/// The resume token of the change that inserted `event_id` into `events`, and of every
/// change after it in the database, collected in the background from a change stream
/// opened now (before the insert).
async fn positions_from(
    db: &mongodb::Database,
    event_id: &str,
) -> std::sync::Arc<std::sync::Mutex<Vec<mongodb::bson::Bson>>> {
    use futures::StreamExt;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut stream = db.watch().await.unwrap();
    let (collected, event_id) = (seen.clone(), event_id.to_owned());
    tokio::spawn(async move {
        let mut reached = false;
        while let Some(Ok(change)) = stream.next().await {
            reached |= change
                .document_key
                .as_ref()
                .is_some_and(|key| key.get_str("_id") == Ok(event_id.as_str()));
            if reached {
                collected
                    .lock()
                    .unwrap()
                    .push(mongodb::bson::to_bson(&change.id).unwrap());
            }
        }
    });
    seen
}

/// The resume token of herald's stored checkpoint.
async fn checkpoint_token(db: &mongodb::Database) -> Option<mongodb::bson::Bson> {
    let state = db
        .collection::<Document>("herald_state")
        .find_one(doc! {"_id": "feed"})
        .await
        .unwrap()?;
    let mongodb::bson::Bson::Binary(bytes) = state.get("token")? else {
        return None;
    };
    mongodb::bson::from_slice::<Document>(&bytes.bytes)
        .ok()?
        .get("token")
        .cloned()
}

#[tokio::test]
async fn pending_retries_survive_a_kill() {
    let (uri, name, db) = database("crashretry").await;
    let receiver = Receiver::start().await;
    receiver.respond_with(503);
    insert_webhook(&db, webhook("wh_0000000000000c02", &receiver.url, &["*"])).await;
    let mut config = test_config(&uri, &name, &receiver.ca_pem_path);
    config.retry_initial_ms = 1_000;
    config.retry_max_ms = 1_000;
    config.retry_max_attempts = 50;
    let log = tempfile::NamedTempFile::new().unwrap();

    let mut daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;
    // The change stream as herald sees it, from just before the event: the positions the
    // checkpoint may hold once it has passed the event.
    let passed = positions_from(&db, "evt_crash_retry").await;
    insert_event(&db, "evt_crash_retry", "batch.completed").await;
    wait_for_status(&db, "evt_crash_retry:wh_0000000000000c02", "pending").await;
    // Killed only once the checkpoint is past the event: after the restart the change
    // stream resumes beyond it, so the retry can only come from the ledger's pending record.
    crate::support::eventually(
        Duration::from_secs(30),
        "the checkpoint has passed the event",
        || {
            let db = db.clone();
            let passed = passed.clone();
            async move {
                checkpoint_token(&db)
                    .await
                    .is_some_and(|token| passed.lock().unwrap().contains(&token))
            }
        },
    )
    .await;
    daemon.kill();

    receiver.respond_with(200);
    let daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;
    let d = wait_for_status(&db, "evt_crash_retry:wh_0000000000000c02", "succeeded").await;
    assert!(d.get_i64("attempts").unwrap() >= 2);
    let last = receiver.requests().pop().unwrap();
    assert_eq!(header(&last, "webhook-id"), Some("evt_crash_retry"));
    assert_signed(&last);
}

#[tokio::test]
async fn a_checkpoint_pruned_from_the_change_stream_history_falls_back_to_scanning_events() {
    // A server of the test's own with a tiny oplog, so the history can really be lost.
    let mongo = crate::support::TestMongo::spawn_with_config("[oplog]\nmax_entries = 20\n").await;
    let client = mongo.client().await;
    let db = client.database("historypruned");
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook("wh_0000000000000c04", &receiver.url, &["*"])).await;
    let config = test_config(&mongo.uri, "historypruned", &receiver.ca_pem_path);

    // A first run leaves a checkpoint at its last event.
    let daemon = crate::daemon::InProcess::start(config.clone()).await;
    insert_event(&db, "evt_before_stop", "batch.completed").await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    wait_for_status(&db, "evt_before_stop:wh_0000000000000c04", "succeeded").await;
    daemon.stop().await.unwrap();
    let checkpoint = checkpoint_token(&db).await.expect("a checkpoint");

    // While herald is down: the event it must not miss, then enough writes for the oplog
    // to drop the checkpoint's position.
    // (The scan finds events by their `occurred_at`: one without it is not recovered, as
    // herald warns when it falls back.)
    let mut missed = event("evt_missed_while_down", "batch.completed");
    missed.insert("occurred_at", mongodb::bson::DateTime::now());
    db.collection::<Document>("events")
        .insert_one(missed)
        .await
        .unwrap();
    let filler = db.collection::<Document>("filler");
    for i in 0..60 {
        filler.insert_one(doc! {"_id": i}).await.unwrap();
    }
    client
        .database("admin")
        .run_command(doc! {"secantusAdmin.pruneOplog": 1})
        .await
        .unwrap();
    // The real condition: resuming from the checkpoint is refused as history lost.
    let token: mongodb::change_stream::event::ResumeToken =
        mongodb::bson::from_bson(checkpoint).unwrap();
    let Err(refused) = db.watch().resume_after(token).await else {
        panic!("the checkpoint's position was not pruned");
    };
    assert!(
        matches!(&*refused.kind, mongodb::error::ErrorKind::Command(c) if c.code == 286),
        "{refused}"
    );

    // Restarted, herald scans `events` from the checkpoint's time and delivers the missed
    // event (the one before the stop may come again: a replay, never a loss).
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = ChildDaemon::spawn(&config, log.path());
    child.wait_ready().await;
    let delivered = |id: &'static str| {
        let receiver = &receiver;
        move || {
            let got = receiver
                .requests()
                .iter()
                .any(|r| header(r, "webhook-id") == Some(id));
            async move { got }
        }
    };
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !delivered("evt_missed_while_down")().await {
        assert!(
            std::time::Instant::now() < until,
            "the event written while herald was down never arrived\nherald log:\n{}",
            crate::support::without_colours(&child.log_text())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = crate::support::without_colours(&child.log_text());
    assert!(
        text.contains("falling back to scanning"),
        "herald did not report the lost history:\n{text}"
    );
    // And the feed goes on from now.
    insert_event(&db, "evt_after_recovery", "batch.completed").await;
    crate::support::eventually(
        Duration::from_secs(30),
        "an event after the recovery is delivered",
        delivered("evt_after_recovery"),
    )
    .await;
    assert_eq!(child.terminate(), Some(0), "{}", child.log_text());
}

/// A checkpoint whose token this server cannot even parse (FailedToParse, code 9), as a
/// checkpoint written by another server version might be: handled like a lost history.
#[tokio::test]
async fn an_unreadable_checkpoint_token_falls_back_to_scanning_events() {
    let (uri, name, db) = database("historylost").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook("wh_0000000000000c03", &receiver.url, &["*"])).await;

    // A checkpoint this server cannot resume from, taken ten minutes ago.
    let at = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() - 10 * 60_000,
    );
    let stale = mongodb::bson::to_vec(&doc! {"token": {"_data": "00"}, "at": at}).unwrap();
    db.collection::<Document>("herald_state")
        .insert_one(doc! {"_id": "feed", "token": mongodb::bson::Binary {
            subtype: mongodb::bson::spec::BinarySubtype::Generic,
            bytes: stale,
        }})
        .await
        .unwrap();
    // Written while herald was down: one after the checkpoint, one long before it.
    let mut missed = event("evt_missed_while_down", "batch.completed");
    missed.insert("occurred_at", mongodb::bson::DateTime::now());
    let mut ancient = event("evt_long_before", "batch.completed");
    ancient.insert(
        "occurred_at",
        mongodb::bson::DateTime::from_millis(at.timestamp_millis() - 3_600_000),
    );
    db.collection::<Document>("events")
        .insert_many([missed, ancient])
        .await
        .unwrap();

    let daemon =
        crate::daemon::InProcess::start(test_config(&uri, &name, &receiver.ca_pem_path)).await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(header(&got[0], "webhook-id"), Some("evt_missed_while_down"));

    // And the feed goes on from now.
    insert_event(&db, "evt_after_recovery", "batch.completed").await;
    receiver.wait_for(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids: Vec<_> = receiver
        .requests()
        .iter()
        .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
        .collect();
    assert_eq!(ids, ["evt_missed_while_down", "evt_after_recovery"]);
    daemon.stop().await.unwrap();
}

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
