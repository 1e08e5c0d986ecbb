//! Bad requests to the publish, delivery and recover routes: a 4xx naming the field, and
//! nothing refused reaches the outbox.

use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

use super::{start, TYPE, WH_A};
use crate::api_client::assert_error;
use crate::fixtures::*;
use crate::support::Receiver;

#[tokio::test]
async fn bad_requests_get_a_4xx_naming_the_field() {
    let (uri, name, db) = database("api_publish_errors").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |_| {}).await;

    let deep = (0..40).fold(json!(1), |inner, _| json!({ "x": inner }));
    // (body, status, what the message must name)
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"data": {}}), 422, "event_type"),
        (
            json!({"event_type": "no.such.event", "data": {}}),
            422,
            "event_type",
        ),
        (json!({"event_type": "", "data": {}}), 422, "event_type"),
        (json!({"event_type": 5, "data": {}}), 422, "event_type"),
        (json!({"event_type": TYPE}), 422, "data"),
        (json!({"event_type": TYPE, "data": "text"}), 422, "data"),
        (json!({"event_type": TYPE, "data": [1, 2]}), 422, "data"),
        (json!({"event_type": TYPE, "data": null}), 422, "data"),
        (
            json!({"event_type": TYPE, "data": {}, "colour": "red"}),
            422,
            "colour",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "event_id": "has space"}),
            422,
            "event_id",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "event_id": ""}),
            422,
            "event_id",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "event_id": "x".repeat(201)}),
            422,
            "event_id",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "event_id": 12}),
            422,
            "event_id",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "occurred_at": "yesterday"}),
            422,
            "occurred_at",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "occurred_at": 1_767_225_600}),
            422,
            "occurred_at",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "subject": {"type": "object"}}),
            422,
            "subject",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "subject": "obj_1"}),
            422,
            "subject",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "cache_scope": {"scope": "everything"}}),
            422,
            "cache_scope",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "cache_scope": {"scope": "key", "keys": "k"}}),
            422,
            "cache_scope.keys",
        ),
        (
            json!({"event_type": TYPE, "data": {"$set": 1}}),
            422,
            "data.$set",
        ),
        (json!({"event_type": TYPE, "data": deep}), 422, "data"),
        (
            json!({"event_type": TYPE, "data": {}, "task_id": ["t"]}),
            422,
            "task_id",
        ),
        (json!(["not", "an", "object"]), 422, "body"),
        // serde would read a struct from an array of its fields; herald does not.
        (json!([TYPE, {}]), 422, "body"),
    ];
    // (A number beyond the 64-bit integer range is valid JSON, kept as a double: not here.)
    for (body, status, field) in cases {
        let response = api.post("/v1/events", body.clone()).await;
        let message = assert_error(&response, status);
        assert!(message.contains(field), "{body}: {message}");
    }
    for raw in ["{\"event_type\": ", "not json", ""] {
        let response = api
            .raw(
                "POST",
                "/v1/events",
                raw,
                &[("content-type", "application/json")],
            )
            .await;
        assert_error(&response, 400);
    }
    let wrong_method = api.get("/v1/events").await;
    assert_error(&wrong_method, 405);
    assert_eq!(
        wrong_method
            .headers
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    assert_error(&api.delete("/v1/deliveries").await, 405);
    assert_error(&api.get("/v1/deliveries/evt_1:wh_1/retry").await, 405);
    assert_error(&api.get(&format!("/v1/webhooks/{WH_A}/recover")).await, 405);
    // Nothing refused reached the outbox.
    let published = db
        .collection::<Document>("events")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(published, 0);

    // recover: `since` is required and must be RFC 3339; the webhook must exist.
    let recover = format!("/v1/webhooks/{WH_A}/recover");
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "since"),
        (json!({"since": "last tuesday"}), "since"),
        (json!({"since": "2026-01-01"}), "since"),
        (json!({"since": 1_767_225_600}), "since"),
        (json!({"since": null}), "since"),
        (
            json!({"since": "2026-01-01T00:00:00Z", "until": "x"}),
            "until",
        ),
    ];
    for (body, field) in cases {
        let response = api.post(&recover, body.clone()).await;
        let message = assert_error(&response, 422);
        assert!(message.contains(field), "{body}: {message}");
    }
    let empty = api.raw("POST", &recover, "", &[]).await;
    assert!(assert_error(&empty, 422).contains("since"));
    let malformed = api
        .raw(
            "POST",
            &recover,
            "{since",
            &[("content-type", "application/json")],
        )
        .await;
    assert_error(&malformed, 400);
    let unknown = api
        .post(
            "/v1/webhooks/wh_00000000000000ff/recover",
            json!({"since": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert!(assert_error(&unknown, 404).contains("wh_00000000000000ff"));
    assert_eq!(receiver.count(), 0);
    daemon.stop().await.unwrap();
}
