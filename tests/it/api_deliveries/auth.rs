//! With an API key configured, the publish and delivery routes refuse anonymous callers.

use mongodb::bson::{doc, Document};
use serde_json::json;

use super::{delivery_id, ids, publish, start, DEADLINE, TYPE, WH_A};
use crate::api_client::{assert_error, Api};
use crate::fixtures::*;
use crate::support::Receiver;

#[tokio::test]
async fn with_an_api_key_these_routes_refuse_anonymous_callers() {
    let (uri, name, db) = database("api_deliveries_auth").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |c| {
        c.api_key = Some("k_deliveries_test_key".into())
    })
    .await;
    let anonymous = api.anonymous();
    let wrong = Api::new(daemon.listen, Some("k_wrong"));
    let publish_body = json!({"event_type": TYPE, "event_id": "evt_auth", "data": {}});
    let since = json!({"since": "2020-01-01T00:00:00Z"});
    let recover = format!("/v1/webhooks/{WH_A}/recover");

    for client in [&anonymous, &wrong] {
        assert_error(&client.post("/v1/events", publish_body.clone()).await, 401);
        assert_error(&client.get("/v1/deliveries").await, 401);
        assert_error(&client.get("/v1/deliveries/evt_auth:wh_1").await, 401);
        assert_error(
            &client
                .post("/v1/deliveries/evt_auth:wh_1/retry", json!({}))
                .await,
            401,
        );
        assert_error(&client.post(&recover, since.clone()).await, 401);
    }
    let published = db
        .collection::<Document>("events")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(published, 0, "a refused publish wrote nothing");

    // With the key, the same calls go through.
    assert_eq!(publish(&api, publish_body).await, "evt_auth");
    receiver.wait_for(1, DEADLINE).await;
    let id = delivery_id("evt_auth", WH_A);
    wait_for_status(&db, &id, "succeeded").await;
    assert_eq!(ids(&api.get("/v1/deliveries").await), vec![id.clone()]);
    assert_eq!(api.get(&format!("/v1/deliveries/{id}")).await.status, 200);
    assert_error(
        &api.post(&format!("/v1/deliveries/{id}/retry"), json!({}))
            .await,
        409,
    );
    assert_eq!(api.post(&recover, since).await.status, 202);
    daemon.stop().await.unwrap();
}
