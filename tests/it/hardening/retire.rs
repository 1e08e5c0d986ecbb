//! A webhook deleted while deliveries wait for it: they are retired — `failed` with
//! `last_error: "webhook deleted"`, completed (so they expire with the failed ones), their
//! payload dropped — instead of staying `pending` forever.

use std::time::Duration;

use mongodb::bson::{doc, Bson, Document};

use crate::daemon::start_with_key;
use crate::fixtures::*;
use crate::support::eventually;

#[tokio::test]
async fn pending_deliveries_of_a_deleted_webhook_are_retired() {
    let (uri, name, db) = database("retire").await;
    let (daemon, api) = start_with_key(&uri, &name, "retire-key", |_| {}).await;
    // A webhook whose endpoint never answers 2xx: its deliveries wait to retry. Paused,
    // so they stay pending for as long as the story needs.
    let created = api
        .post(
            "/v1/webhooks",
            serde_json::json!({"url": "https://127.0.0.1:9/nowhere", "event_types": ["object.created"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["webhook_id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.post(&format!("/v1/webhooks/{id}/pause"), serde_json::json!({}))
            .await
            .status,
        200
    );
    for i in 0..3 {
        insert_event(&db, &format!("evt_retire_{i}"), "object.created").await;
    }
    let pending = || {
        let db = db.clone();
        let id = id.clone();
        async move {
            deliveries(&db, doc! {"webhook_id": &id, "status": "pending"})
                .await
                .len()
        }
    };
    eventually(
        Duration::from_secs(30),
        "three deliveries pending",
        || async { pending().await == 3 },
    )
    .await;

    assert_eq!(api.delete(&format!("/v1/webhooks/{id}")).await.status, 204);
    eventually(
        Duration::from_secs(30),
        "the deliveries retired",
        || async {
            deliveries(&db, doc! {"webhook_id": &id, "status": "failed"})
                .await
                .len()
                == 3
        },
    )
    .await;
    for delivery in deliveries(&db, doc! {"webhook_id": &id}).await {
        assert_eq!(delivery.get_str("last_error").unwrap(), "webhook deleted");
        assert!(
            matches!(delivery.get("completed_at"), Some(Bson::DateTime(_))),
            "{delivery}"
        );
        assert!(
            delivery.get("payload").is_none(),
            "payload kept: {delivery}"
        );
    }
    // The failed-retention TTL index covers them.
    let indexes: Vec<Document> = indexes(&db, "deliveries")
        .await
        .iter()
        .map(|m| mongodb::bson::to_document(m).unwrap())
        .collect();
    assert!(
        indexes
            .iter()
            .any(|i| i.to_string().contains("\"status\": \"failed\"")),
        "{indexes:?}"
    );
    daemon.stop().await.unwrap();
}
