//! Managing connections needs the API key; Mux's inbound route needs none, its signature
//! (any one of several `v1` values) is enough.

use serde_json::json;

use super::{
    all, connect, deliver_with, insert_objects, mux_event, mux_signature, now, object, story,
    SECRET_A,
};
use crate::api_client::assert_error;

#[tokio::test]
async fn connections_need_the_api_key_and_the_inbound_route_does_not() {
    let s = story("mux_auth").await;
    let a = connect(&s.api, "bkt_a", SECRET_A, None).await;
    let anonymous = s.api.anonymous();
    let conn = format!("/v1/connections/{a}");
    let body = json!({"provider": "mux", "bucket_id": "b", "webhook_secret": "s"});
    assert_error(&anonymous.post("/v1/connections", body).await, 401);
    assert_error(&anonymous.get("/v1/connections").await, 401);
    assert_error(&anonymous.get(&conn).await, 401);
    assert_error(&anonymous.delete(&conn).await, 401);
    assert_eq!(all(&s.db, "connections").await.len(), 1);

    // Mux sends no Authorization header; its signature is enough — any one of several
    // `v1` values (as during a secret rotation).
    insert_objects(&s.db, vec![object("obj_1", "bkt_a", &a, "asset_1")]).await;
    let body = mux_event(
        "video.asset.deleted",
        "evt-auth-1",
        json!({"id": "asset_1"}),
    );
    let t = now();
    let valid = mux_signature(SECRET_A, t, &body);
    let other = mux_signature("an-older-secret", t, &body);
    let v1 = |header: &str| header.split_once(",v1=").unwrap().1.to_owned();
    let header = format!("t={t},v1={},v1={}", v1(&other), v1(&valid));
    let response = deliver_with(&s.api, &a, body, Some(&header)).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["objects_affected"], 1);
    s.daemon.stop().await.unwrap();
}
