//! Upgrade in place: webhooks and connections written before namespaces existed (no
//! `namespace_id`) keep working — they are the operator's, receive every event, and are
//! invisible to namespaced keys.

use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use serde_json::json;

use super::{ids, make_key, OPERATOR};
use crate::api_client::assert_error;
use crate::daemon::start_with_key;
use crate::fixtures::database;
use crate::support::Receiver;

#[tokio::test]
async fn a_database_written_before_namespaces_still_serves() {
    let (uri, name, db) = database("tenancy_upgrade").await;
    let receiver = Receiver::start().await;
    // As the previous version wrote them.
    db.collection::<Document>("webhooks")
        .insert_one(doc! {
            "_id": "wh_00000000000000aa", "url": &receiver.url, "event_types": ["*"],
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "headers": {},
            "enabled": true, "created_at": DateTime::now(), "updated_at": DateTime::now(),
        })
        .await
        .unwrap();
    db.collection::<Document>("connections")
        .insert_one(doc! {
            "_id": "conn_00000000000000bb", "provider": "mux", "bucket_id": "b1",
            "webhook_secret": "mux-secret", "metadata_filters": [], "created_at": DateTime::now(),
        })
        .await
        .unwrap();
    let (daemon, operator) = start_with_key(&uri, &name, OPERATOR, |_| {}).await;

    db.collection::<Document>("events")
        .insert_one(doc! {"_id": "evt_up_1", "event_type": "batch.completed", "namespace_id": "ns_x", "data": {}})
        .await
        .unwrap();
    db.collection::<Document>("events")
        .insert_one(doc! {"_id": "evt_up_2", "event_type": "batch.completed", "data": {}})
        .await
        .unwrap();
    receiver.wait_for(2, Duration::from_secs(30)).await;

    let hook = operator.get("/v1/webhooks/wh_00000000000000aa").await;
    assert_eq!(hook.status, 200, "{}", hook.body);
    assert_eq!(hook.body["namespace_id"], serde_json::Value::Null);
    let connection = operator.get("/v1/connections/conn_00000000000000bb").await;
    assert_eq!(connection.status, 200, "{}", connection.body);
    assert_eq!(connection.body["namespace_id"], serde_json::Value::Null);

    let (_, tenant) = make_key(&operator, daemon.listen, Some("ns_x"), "admin").await;
    assert_error(&tenant.get("/v1/webhooks/wh_00000000000000aa").await, 404);
    assert_error(
        &tenant.get("/v1/connections/conn_00000000000000bb").await,
        404,
    );
    assert!(ids(&tenant.get("/v1/webhooks").await.body, "webhook_id").is_empty());
    // The operator's webhook stays the operator's to change.
    let patched = operator
        .patch("/v1/webhooks/wh_00000000000000aa", json!({"name": "kept"}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    daemon.stop().await.unwrap();
}
