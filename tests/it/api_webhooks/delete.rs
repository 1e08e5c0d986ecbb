//! A webhook created through the API receives what it subscribed to, signed with the
//! secret create returned, until it is deleted; deleting is idempotent.

use herald_actors::signing::{verify_header, SigningKey};
use serde_json::{json, Value};

use super::{
    assert_stops_receiving, create, missed_by, path, publish_until_received, setup, stored,
};
use crate::api_client::assert_error;
use crate::fixtures::*;
use crate::support::Receiver;

#[tokio::test]
async fn a_webhook_created_through_the_api_receives_events_until_it_is_deleted() {
    let s = setup("api_wh_deliver", |_| {}).await;
    let target = Receiver::start().await;
    let control = Receiver::start().await;
    let created = create(
        &s.api,
        json!({"url": target.url, "event_types": ["object.created"],
               "headers": {"X-Mixpeek-Secret": "shared-secret"}}),
    )
    .await;
    create(&s.api, json!({"url": control.url, "event_types": ["*"]})).await;

    let request = publish_until_received(&s.db, &target, "object.created").await;
    let key = SigningKey::parse(created["secret"].as_str().unwrap()).unwrap();
    let id = header(&request, "webhook-id").unwrap();
    let ts: i64 = header(&request, "webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let signature = header(&request, "webhook-signature").unwrap();
    assert!(
        verify_header(&key, id, ts, &request.body, signature),
        "the signature does not verify with the secret create returned"
    );
    assert_eq!(header(&request, "x-mixpeek-secret"), Some("shared-secret"));
    assert_eq!(body_json(&request)["event_type"], "object.created");
    // Only subscribed types arrive.
    assert!(missed_by(&s.db, &target, &control, "batch.completed").await);

    let deleted = s.api.delete(&path(&created)).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(deleted.body, Value::Null);
    assert!(stored(&s.db, created["webhook_id"].as_str().unwrap())
        .await
        .is_none());
    assert_stops_receiving(&s.db, &target, &control, "object.created").await;

    // Deleting is idempotent; the webhook is gone.
    assert_eq!(s.api.delete(&path(&created)).await.status, 204);
    assert_eq!(
        s.api
            .delete("/v1/webhooks/wh_ffffffffffffffff")
            .await
            .status,
        204
    );
    assert_error(&s.api.get(&path(&created)).await, 404);
    s.daemon.stop().await.unwrap();
}
