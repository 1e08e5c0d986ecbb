//! A webhook changed while its deliveries are under way: deliveries queued behind a rate
//! limit, or waiting for a retry timer, make their next attempt with the webhook as it is
//! now — its URL, headers, signing secret and rate limit — not as it was when the event
//! arrived. Disabled, it records what it held as pending, and delivers it when enabled again.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herald_actors::signing::{verify_header, SigningKey};
use mongodb::bson::{doc, Document};

use crate::daemon::{test_config, InProcess};
use crate::fixtures::*;
use crate::support::{eventually, Receiver, RecordedRequest};

const WH: &str = "wh_00000000000c4a01";
const NEW_SECRET: &str = "whsec_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

/// Whether `request` is signed by `secret` (by it alone) and carries `shared` as its
/// `X-Mixpeek-Secret`.
fn carries(request: &RecordedRequest, secret: &str, shared: &str) -> bool {
    let key = SigningKey::parse(secret).unwrap();
    let id = header(request, "webhook-id").unwrap();
    let ts: i64 = header(request, "webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let signature = header(request, "webhook-signature").unwrap();
    !signature.contains(' ')
        && verify_header(&key, id, ts, &request.body, signature)
        && header(request, "x-mixpeek-secret") == Some(shared)
}

/// The new URL, header value, secret and (optionally) rate limit, written straight into
/// MongoDB as an operator might.
async fn change_webhook(db: &mongodb::Database, url: &str, rate_limit: Option<i32>) {
    let mut set = doc! {
        "url": url,
        "headers": {"X-Mixpeek-Secret": "new-shared-secret"},
        "secret": NEW_SECRET,
    };
    let update = match rate_limit {
        Some(limit) => {
            set.insert("rate_limit_per_second", limit);
            doc! {"$set": set}
        }
        None => doc! {"$set": set, "$unset": {"rate_limit_per_second": ""}},
    };
    db.collection::<Document>("webhooks")
        .update_one(doc! {"_id": WH}, update)
        .await
        .unwrap();
}

fn ids(requests: &[RecordedRequest]) -> Vec<String> {
    requests
        .iter()
        .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn deliveries_queued_behind_a_rate_limit_go_out_with_the_changed_webhook() {
    const EVENTS: usize = 8;
    let (uri, name, db) = database("change_queued").await;
    let old = Receiver::start().await;
    let new = Receiver::start().await;
    let mut hook = webhook(WH, &old.url, &["batch.completed"]);
    hook.insert("rate_limit_per_second", 1);
    insert_webhook(&db, hook).await;
    let daemon = InProcess::start(test_config(&uri, &name, &old.ca_pem_path)).await;

    let events: Vec<Document> = (0..EVENTS)
        .map(|i| event(&format!("evt_queued_{i}"), "batch.completed"))
        .collect();
    db.collection::<Document>("events")
        .insert_many(events)
        .await
        .unwrap();
    // One a second: the rest wait in the endpoint's queue while the webhook changes.
    old.wait_for(1, Duration::from_secs(20)).await;
    change_webhook(&db, &new.url, None).await;

    eventually(
        Duration::from_secs(60),
        "every event delivered, to one URL or the other",
        || {
            let delivered: HashSet<String> = ids(&old.requests())
                .into_iter()
                .chain(ids(&new.requests()))
                .collect();
            async move { delivered.len() == EVENTS }
        },
    )
    .await;
    let at_old = old.requests();
    let at_new = new.requests();
    assert!(
        !at_new.is_empty(),
        "no queued delivery went to the new URL ({} went to the old one)",
        at_old.len()
    );
    // Each event once: the change neither lost nor repeated a queued delivery.
    assert_eq!(at_old.len() + at_new.len(), EVENTS);
    for request in &at_new {
        assert!(
            carries(request, NEW_SECRET, "new-shared-secret"),
            "a delivery to the new URL went out with the old secret or header: {:?}",
            request.headers
        );
    }
    // Once the change was applied, the old URL got nothing more.
    let first_new = at_new.iter().map(|r| r.at).min().unwrap();
    assert!(at_old.iter().all(|r| r.at < first_new));
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn deliveries_waiting_to_retry_make_their_next_attempt_with_the_changed_webhook() {
    // Enough that, without the new limit, their retries (due within a few seconds) could
    // not help crowding some second: twelve in at most six seconds.
    const EVENTS: usize = 12;
    let (uri, name, db) = database("change_retry").await;
    let old = Receiver::start().await;
    old.respond_with(503);
    let new = Receiver::start().await;
    insert_webhook(&db, webhook(WH, &old.url, &["batch.completed"])).await;
    let mut config = test_config(&uri, &name, &old.ca_pem_path);
    // Retries a few seconds out, so most are still waiting when the webhook changes.
    config.retry_initial_ms = 3_000;
    config.retry_max_ms = 3_000;
    config.retry_max_attempts = 10;
    let daemon = InProcess::start(config).await;

    let events: Vec<Document> = (0..EVENTS)
        .map(|i| event(&format!("evt_retry_{i}"), "batch.completed"))
        .collect();
    db.collection::<Document>("events")
        .insert_many(events)
        .await
        .unwrap();
    for i in 0..EVENTS {
        wait_for_status(&db, &format!("evt_retry_{i}:{WH}"), "pending").await;
    }
    // The new URL, header, secret, and a limit of one a second.
    change_webhook(&db, &new.url, Some(1)).await;

    let got = new.wait_for(EVENTS, Duration::from_secs(60)).await;
    let mut delivered = ids(&got);
    delivered.sort();
    let mut expected: Vec<String> = (0..EVENTS).map(|i| format!("evt_retry_{i}")).collect();
    expected.sort();
    assert_eq!(delivered, expected);
    for request in &got {
        assert!(
            carries(request, NEW_SECRET, "new-shared-secret"),
            "a retry went out with the old secret or header: {:?}",
            request.headers
        );
    }
    // The retries honoured the new limit: no one-second window holds more than one
    // (one extra for window edges). Without it they would crowd: each is due within three
    // seconds of its last failure.
    let times: Vec<Instant> = got.iter().map(|r| r.at).collect();
    let most = most_in_one_second(&times);
    assert!(most <= 2, "{most} retries within one second");
    // Each delivery's log shows the old endpoint's answer, then the new one's.
    for i in 0..EVENTS {
        let d = wait_for_status(&db, &format!("evt_retry_{i}:{WH}"), "succeeded").await;
        let codes: Vec<i32> = d
            .get_array("attempt_log")
            .unwrap()
            .iter()
            .filter_map(|a| a.as_document().unwrap().get_i32("status_code").ok())
            .collect();
        assert_eq!(codes.first(), Some(&503), "{d}");
        assert_eq!(codes.last(), Some(&200), "{d}");
    }
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_webhook_disabled_while_deliveries_are_queued_records_them_and_delivers_them_when_enabled(
) {
    const EVENTS: usize = 12;
    let (uri, name, db) = database("change_disabled").await;
    let receiver = Receiver::start().await;
    let mut hook = webhook(WH, &receiver.url, &["batch.completed"]);
    hook.insert("rate_limit_per_second", 1);
    insert_webhook(&db, hook).await;
    let daemon = InProcess::start(test_config(&uri, &name, &receiver.ca_pem_path)).await;

    let events: Vec<Document> = (0..EVENTS)
        .map(|i| event(&format!("evt_disabled_{i}"), "batch.completed"))
        .collect();
    db.collection::<Document>("events")
        .insert_many(events)
        .await
        .unwrap();
    // One a second: the rest wait in the endpoint's queue when the webhook is disabled.
    receiver.wait_for(1, Duration::from_secs(20)).await;
    db.collection::<Document>("webhooks")
        .update_one(doc! {"_id": WH}, doc! {"$set": {"enabled": false}})
        .await
        .unwrap();

    // Every event it was handed is accounted for: delivered, or recorded pending with the
    // payload to send.
    eventually(
        Duration::from_secs(30),
        "every event delivered or recorded pending",
        || {
            let db = db.clone();
            let delivered: HashSet<String> = ids(&receiver.requests()).into_iter().collect();
            async move {
                let pending = deliveries(&db, doc! {"status": "pending"}).await;
                let accounted = pending
                    .iter()
                    .filter(|d| d.get("payload_id").is_some())
                    .filter_map(|d| d.get_str("event_id").ok().map(str::to_owned))
                    .chain(delivered)
                    .collect::<HashSet<_>>();
                accounted.len() == EVENTS
            }
        },
    )
    .await;
    let pending_at_disable = deliveries(&db, doc! {"status": "pending"}).await.len();
    assert!(pending_at_disable > 0, "nothing was queued when disabled");

    // Enabled again (no limit now): what was held goes out.
    db.collection::<Document>("webhooks")
        .update_one(
            doc! {"_id": WH},
            doc! {"$set": {"enabled": true}, "$unset": {"rate_limit_per_second": ""}},
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "every event delivered once enabled again",
        || {
            let delivered: HashSet<String> = ids(&receiver.requests()).into_iter().collect();
            async move { delivered.len() == EVENTS }
        },
    )
    .await;
    daemon.stop().await.unwrap();
}
