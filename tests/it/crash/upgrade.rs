//! Upgrading in place: a database last written by a version with one feed checkpoint
//! (`herald_state`, `_id: "feed"`) is taken over by this one with no loss and no manual
//! step — every partition starts from that checkpoint — and a lease or checkpoint edited by
//! hand into nonsense costs neither a crash nor an event. Deliveries stored or indexed as
//! earlier versions did are sent, shown and replayed as before.

use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::IndexModel;

use crate::daemon::{test_config, ChildDaemon, InProcess};
use crate::fixtures::*;
use crate::support::Receiver;

/// The checkpoint as the previous version stored it: BSON `{token, at}` in `token`.
fn legacy_checkpoint(token: &Bson) -> Document {
    let bytes =
        mongodb::bson::to_vec(&doc! {"token": token.clone(), "at": mongodb::bson::DateTime::now()})
            .unwrap();
    doc! {"_id": "feed", "token": mongodb::bson::Binary {
        subtype: mongodb::bson::spec::BinarySubtype::Generic,
        bytes,
    }}
}

#[tokio::test]
async fn a_database_with_the_old_single_checkpoint_resumes_from_it() {
    let (uri, name, db) = database("upgrade").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook("wh_00000000000e0001", &receiver.url, &["*"])).await;
    // What the old version had delivered and checkpointed: `evt_before`. What it had not
    // read when it stopped: `evt_after`.
    let mut stream = db.collection::<Document>("events").watch().await.unwrap();
    insert_event(&db, "evt_before", "batch.completed").await;
    let change = stream.next().await.unwrap().unwrap();
    let token = mongodb::bson::to_bson(&change.id).unwrap();
    db.collection::<Document>("herald_state")
        .insert_one(legacy_checkpoint(&token))
        .await
        .unwrap();
    insert_event(&db, "evt_after", "batch.completed").await;

    let daemon = InProcess::start(test_config(&uri, &name, &receiver.ca_pem_path)).await;
    let got = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(header(&got[0], "webhook-id"), Some("evt_after"));
    // Every partition started from the old checkpoint and moves on from there.
    let leases: Vec<Document> = db
        .collection::<Document>("herald_partitions")
        .find(doc! {})
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(leases.len(), 64);
    assert!(leases
        .iter()
        .all(|l| l.get_binary_generic("checkpoint").is_ok()));
    // And the old one was not delivered again.
    insert_event(&db, "evt_later", "batch.completed").await;
    receiver.wait_for(2, Duration::from_secs(30)).await;
    let ids: Vec<_> = receiver
        .requests()
        .iter()
        .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
        .collect();
    assert_eq!(ids, ["evt_after", "evt_later"]);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn leases_edited_into_nonsense_lose_no_event_and_crash_nothing() {
    let (uri, name, db) = database("nonsense").await;
    let receiver = Receiver::start().await;
    let id = "wh_00000000000e0002";
    insert_webhook(&db, webhook(id, &receiver.url, &["*"])).await;
    let config = test_config(&uri, &name, &receiver.ca_pem_path);
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;
    insert_event(&db, "evt_first", "batch.completed").await;
    receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(daemon.terminate(), Some(0));

    // While herald is down: its webhook's lease gets a checkpoint that is not one, an epoch
    // that is not a number and an owner that is not a member; another lease loses its
    // fields altogether. Then an event it must not miss.
    let partition = i32::from(herald_actors::partition_of(id));
    let leases = db.collection::<Document>("herald_partitions");
    leases
        .update_one(
            doc! {"_id": partition},
            doc! {"$set": {"checkpoint": "garbage", "epoch": "seven", "owner": 42}},
        )
        .await
        .unwrap();
    let other = (partition + 1) % 64;
    leases
        .replace_one(doc! {"_id": other}, doc! {"note": "emptied by hand"})
        .await
        .unwrap();
    insert_event(&db, "evt_while_down", "batch.completed").await;

    let mut daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while !receiver
        .requests()
        .iter()
        .any(|r| header(r, "webhook-id") == Some("evt_while_down"))
    {
        assert!(
            std::time::Instant::now() < until,
            "the event written while herald was down never arrived\nherald log:\n{}",
            crate::support::without_colours(&daemon.log_text())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    insert_event(&db, "evt_after", "batch.completed").await;
    crate::support::eventually(Duration::from_secs(30), "an event after it arrives", || {
        let got = receiver
            .requests()
            .iter()
            .any(|r| header(r, "webhook-id") == Some("evt_after"));
        async move { got }
    })
    .await;
    // The nonsense lease was taken over (a number epoch again, this daemon its owner).
    let lease = leases
        .find_one(doc! {"_id": partition})
        .await
        .unwrap()
        .unwrap();
    assert!(lease.get_i64("epoch").is_ok(), "{lease}");
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log_text());
}

#[tokio::test]
async fn deliveries_with_their_payload_inline_are_sent_shown_retried_and_recovered_as_before() {
    let (uri, name, db) = database("upgrade_inline").await;
    let receiver = Receiver::start().await;
    let wh = "wh_00000000000e0003";
    insert_webhook(&db, webhook(wh, &receiver.url, &["*"])).await;
    // As the version before `payloads` wrote them: each delivery with its body inline.
    let body = |event: &str| {
        serde_json::json!({"event_id": event, "event_type": "batch.completed",
            "occurred_at": "2026-12-01T00:00:00Z", "data": {"n": event}})
        .to_string()
    };
    let now = mongodb::bson::DateTime::now();
    let old = |event: &str, status: &str| {
        let failed = status == "failed";
        doc! {
            "_id": format!("{event}:{wh}"), "event_id": event, "webhook_id": wh,
            "event_type": "batch.completed", "status": status,
            "attempts": if failed { 5i64 } else { 1i64 },
            "attempt_log": [{"at": now, "status_code": 500, "duration_ms": 3i64}],
            "next_attempt_at": if failed { Bson::Null } else { Bson::DateTime(now) },
            "last_status_code": 500, "last_error": Bson::Null,
            "created_at": now, "updated_at": now,
            "completed_at": if failed { Bson::DateTime(now) } else { Bson::Null },
            "payload": body(event),
        }
    };
    db.collection::<Document>("deliveries")
        .insert_many([
            old("evt_old_pending", "pending"),
            old("evt_old_failed", "failed"),
            old("evt_old_recovered", "failed"),
        ])
        .await
        .unwrap();

    let (daemon, api) = crate::daemon::start_with_key(&uri, &name, "upgrade-key", |_| {}).await;
    // The pending one is sent at once, with the bytes the old version kept.
    let got = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got[0].body_text(), body("evt_old_pending"));
    assert_signed(&got[0]);
    let sent = wait_for_status(&db, &format!("evt_old_pending:{wh}"), "succeeded").await;
    assert_eq!(sent.get_i64("attempts"), Ok(2));

    // A failed one is shown as before, with its log and without its body.
    let id = format!("evt_old_failed:{wh}");
    let shown = api.get(&format!("/v1/deliveries/{id}")).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.body["status"], "failed");
    assert_eq!(shown.body["attempts"], 5);
    assert_eq!(shown.body["attempt_log"].as_array().map(Vec::len), Some(1));
    assert!(shown.body.get("payload").is_none());
    // Retried one by one, and recovered in bulk, with their own bytes.
    let retried = api
        .post(&format!("/v1/deliveries/{id}/retry"), serde_json::json!({}))
        .await;
    assert_eq!(retried.status, 202, "{}", retried.body);
    wait_for_status(&db, &id, "succeeded").await;
    let recovered = api
        .post(
            &format!("/v1/webhooks/{wh}/recover"),
            serde_json::json!({"since": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(recovered.status, 202, "{}", recovered.body);
    assert_eq!(recovered.body["recovered"], 1);
    wait_for_status(&db, &format!("evt_old_recovered:{wh}"), "succeeded").await;
    let bodies: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| {
            assert_signed(r);
            r.body_text()
        })
        .collect();
    assert_eq!(
        bodies,
        [
            body("evt_old_pending"),
            body("evt_old_failed"),
            body("evt_old_recovered")
        ]
    );
    // They keep their bodies where they were: nothing was moved or copied.
    let stored = db
        .collection::<Document>("payloads")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(stored, 0);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn pending_deliveries_indexed_as_before_are_sent_and_only_pending_ones_stay_indexed() {
    let (uri, name, db) = database("upgrade_pending_index").await;
    let receiver = Receiver::start().await;
    let wh = "wh_00000000000e0004";
    insert_webhook(&db, webhook(wh, &receiver.url, &["*"])).await;
    let deliveries = db.collection::<Document>("deliveries");
    // The index the version before kept, over every delivery.
    let before = doc! {"status": 1, "webhook_id": 1, "next_attempt_at": 1, "_id": 1};
    deliveries
        .create_index(IndexModel::builder().keys(before).build())
        .await
        .unwrap();
    // What it left: deliveries that succeeded, and one pending and due, its body stored once
    // in `payloads`.
    let now = mongodb::bson::DateTime::now();
    let body =
        serde_json::json!({"event_id": "evt_before_pending", "event_type": "batch.completed",
        "occurred_at": "2026-12-01T00:00:00Z", "data": {"n": 1}})
        .to_string();
    db.collection::<Document>("payloads")
        .insert_one(doc! {"_id": "evt_before_pending", "body": &body,
        "size": body.len() as i64, "created_at": now, "touched_at": now})
        .await
        .unwrap();
    let record = |event: &str, pending: bool| {
        let mut d = doc! {
            "_id": format!("{event}:{wh}"), "event_id": event, "webhook_id": wh,
            "event_type": "batch.completed",
            "status": if pending { "pending" } else { "succeeded" }, "attempts": 1i64,
            "attempt_log": [{"at": now, "status_code": if pending { 500 } else { 200 },
                "duration_ms": 3i64}],
            "next_attempt_at": if pending { Bson::DateTime(now) } else { Bson::Null },
            "last_status_code": if pending { 500 } else { 200 }, "last_error": Bson::Null,
            "created_at": now, "updated_at": now,
            "completed_at": if pending { Bson::Null } else { Bson::DateTime(now) },
        };
        if pending {
            d.insert("payload_id", event);
        }
        d
    };
    let mut old: Vec<Document> = (0..50)
        .map(|i| record(&format!("evt_before_{i:03}"), false))
        .collect();
    old.push(record("evt_before_pending", true));
    deliveries.insert_many(old).await.unwrap();

    let daemon = InProcess::start(test_config(&uri, &name, &receiver.ca_pem_path)).await;
    // The pending one is found and sent, with the bytes stored for it.
    let got = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got[0].body_text(), body);
    assert_signed(&got[0]);
    let sent = wait_for_status(&db, &format!("evt_before_pending:{wh}"), "succeeded").await;
    assert_eq!(sent.get_i64("attempts"), Ok(2));

    // The index over every delivery is gone; the one in its place holds pending ones only.
    let indexes = indexes(&db, "deliveries").await;
    let named = |name: &str| {
        indexes
            .iter()
            .find(|m| m.options.as_ref().and_then(|o| o.name.as_deref()) == Some(name))
    };
    assert!(
        named("status_1_webhook_id_1_next_attempt_at_1__id_1").is_none(),
        "{indexes:?}"
    );
    let pending = named(herald::store::PENDING_DUE).expect("the pending deliveries' index");
    assert_eq!(
        pending
            .options
            .as_ref()
            .and_then(|o| o.partial_filter_expression.clone()),
        Some(doc! {"status": "pending"})
    );
    // A webhook's due deliveries are read from it.
    let plan = db
        .run_command(doc! {"explain": {
            "find": "deliveries",
            "filter": {"status": "pending", "webhook_id": wh, "next_attempt_at": {"$lt": now}},
            "sort": {"next_attempt_at": 1, "_id": 1},
        }})
        .await
        .unwrap();
    assert!(
        plan.to_string().contains(herald::store::PENDING_DUE),
        "{plan}"
    );
    daemon.stop().await.unwrap();
}
