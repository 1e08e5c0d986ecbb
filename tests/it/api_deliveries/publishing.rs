//! Publishing with `POST /v1/events`: the event reaches the receiver with its id and
//! fields, and publishing the same id again delivers it once.

use mongodb::bson::{doc, Document};
use serde_json::json;

use super::{delivery_id, publish, quiet_period, start, DEADLINE, TYPE, WH_A};
use crate::fixtures::*;
use crate::support::Receiver;

#[tokio::test]
async fn a_published_event_reaches_the_receiver_with_its_id_and_fields() {
    let (uri, name, db) = database("api_publish").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |_| {}).await;

    let id = publish(
        &api,
        json!({
            "event_type": TYPE,
            "event_id": "evt_api_publish_1",
            "occurred_at": "2026-01-02T03:04:05.678+02:00",
            "namespace_id": "ns_1",
            "task_id": "task_42",
            "subject": {"type": "collection", "id": "col_1"},
            "data": {"collection_id": "col_1", "document_ids": ["d1", "d2"], "score": 0.5, "n": 7},
            "cache_scope": {"scope": "collection", "collection_id": "col_1"},
        }),
    )
    .await;
    assert_eq!(id, "evt_api_publish_1");

    let got = receiver.wait_for(1, DEADLINE).await;
    let request = &got[0];
    assert_signed(request);
    assert_eq!(header(request, "webhook-id"), Some("evt_api_publish_1"));
    assert_eq!(header(request, "x-mixpeek-secret"), Some("shared-secret"));
    let body = body_json(request);
    assert_eq!(body["event_id"], "evt_api_publish_1");
    assert_eq!(body["event_type"], TYPE);
    // Stored as a BSON date, sent back in UTC.
    assert_eq!(body["occurred_at"], "2026-01-02T01:04:05.678Z");
    assert_eq!(body["namespace_id"], "ns_1");
    assert_eq!(body["task_id"], "task_42");
    assert_eq!(
        body["subject"],
        json!({"type": "collection", "id": "col_1"})
    );
    assert_eq!(
        body["data"],
        json!({"collection_id": "col_1", "document_ids": ["d1", "d2"], "score": 0.5, "n": 7})
    );
    assert_eq!(
        body["cache_scope"],
        json!({"scope": "collection", "collection_id": "col_1"})
    );

    // The outbox document has the contract's shape.
    let stored = db
        .collection::<Document>("events")
        .find_one(doc! {"_id": "evt_api_publish_1"})
        .await
        .unwrap()
        .expect("the event is in the outbox");
    assert!(stored.get_datetime("occurred_at").is_ok(), "{stored}");
    assert_eq!(stored.get_str("task_id").unwrap(), "task_42");

    // The delivery carries the task id too.
    let d = wait_for_status(&db, &delivery_id(&id, WH_A), "succeeded").await;
    assert_eq!(d.get_str("task_id").unwrap(), "task_42");

    // Without an id, herald makes one up (`evt_` + 24 hex) and says which.
    let generated = publish(&api, json!({"event_type": TYPE, "data": {}})).await;
    assert!(
        generated.len() == 28
            && generated.starts_with("evt_")
            && generated[4..].chars().all(|c| c.is_ascii_hexdigit()),
        "{generated}"
    );
    let got = receiver.wait_for(2, DEADLINE).await;
    let body = body_json(&got[1]);
    assert_eq!(body["event_id"], generated);
    assert_eq!(body["data"], json!({}));
    assert!(body["occurred_at"].as_str().unwrap().ends_with('Z'));
    assert!(body.get("task_id").is_none());
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn publishing_the_same_event_id_again_delivers_it_once() {
    let (uri, name, db) = database("api_idempotent").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |_| {}).await;

    let first = publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_once", "data": {"version": 1}}),
    )
    .await;
    let again = publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_once", "data": {"version": 2}}),
    )
    .await;
    assert_eq!(first, "evt_once");
    assert_eq!(again, "evt_once");

    // Two clients racing with the same id: both told 202, one event.
    let body = json!({"event_type": TYPE, "event_id": "evt_race", "data": {}});
    let (a, b) = tokio::join!(
        api.post("/v1/events", body.clone()),
        api.post("/v1/events", body)
    );
    assert_eq!((a.status, b.status), (202, 202), "{} / {}", a.body, b.body);
    assert_eq!(a.body["event_id"], "evt_race");
    assert_eq!(b.body["event_id"], "evt_race");

    receiver.wait_for(2, DEADLINE).await;
    wait_for_status(&db, &delivery_id("evt_once", WH_A), "succeeded").await;
    wait_for_status(&db, &delivery_id("evt_race", WH_A), "succeeded").await;
    quiet_period().await;
    let requests = receiver.requests();
    let per_id = |id: &str| {
        requests
            .iter()
            .filter(|r| header(r, "webhook-id") == Some(id))
            .count()
    };
    assert_eq!(per_id("evt_once"), 1, "{}", receiver.describe(&requests));
    assert_eq!(per_id("evt_race"), 1, "{}", receiver.describe(&requests));
    // The first publication stands.
    let once = requests
        .iter()
        .find(|r| header(r, "webhook-id") == Some("evt_once"))
        .unwrap();
    assert_eq!(body_json(once)["data"], json!({"version": 1}));
    let stored = db
        .collection::<Document>("events")
        .count_documents(doc! {"_id": "evt_once"})
        .await
        .unwrap();
    assert_eq!(stored, 1);
    daemon.stop().await.unwrap();
}
