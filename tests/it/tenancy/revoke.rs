//! A revoked key is refused at once by every daemon sharing the database.

use serde_json::json;

use super::{make_key, setup, OPERATOR};
use crate::api_client::{assert_error, Api};
use crate::daemon::start_with_key;

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_on_a_second_daemon() {
    let s = setup("tenancy_revoke").await;
    let (second, _) = start_with_key(&s.uri, &s.name, OPERATOR, |_| {}).await;
    let (key_id, _) = make_key(&s.operator, s.daemon.listen, Some("ns_r"), "read").await;
    // Listed by every daemon, never with the key or its hash.
    let listed = Api::new(second.listen, Some(OPERATOR))
        .get("/v1/keys")
        .await;
    assert_eq!(listed.status, 200);
    let entry = &listed.body["results"][0];
    assert_eq!(entry["key_id"], key_id.as_str());
    assert!(
        entry.get("key").is_none() && entry.get("hash").is_none(),
        "{entry}"
    );

    let created = s
        .operator
        .post("/v1/keys", json!({"role": "admin", "namespace_id": "ns_r"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let secret_key = created.body["key"].as_str().unwrap().to_owned();
    let on_second = Api::new(second.listen, Some(&secret_key));
    let on_first = Api::new(s.daemon.listen, Some(&secret_key));
    assert_eq!(on_second.get("/v1/webhooks").await.status, 200);
    assert_eq!(on_first.get("/v1/webhooks").await.status, 200);

    // Revoked through the first daemon; the very next request to the second is refused.
    let revoke = s
        .operator
        .delete(&format!(
            "/v1/keys/{}",
            created.body["key_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(revoke.status, 204, "{}", revoke.body);
    let refused = on_second.get("/v1/webhooks").await;
    assert!(assert_error(&refused, 401).contains("revoked"));
    assert_error(&on_first.get("/v1/webhooks").await, 401);
    // Revoking again is still 204; an unknown key is 404.
    let again = s
        .operator
        .delete(&format!(
            "/v1/keys/{}",
            created.body["key_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(again.status, 204);
    assert_error(
        &s.operator.delete("/v1/keys/key_0000000000000000").await,
        404,
    );
    let listed = s.operator.get("/v1/keys").await;
    let revoked = listed.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == created.body["key_id"])
        .unwrap()
        .clone();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    // It was used, so its last use is recorded.
    assert!(revoked["last_used_at"].is_string(), "{revoked}");
    second.stop().await.unwrap();
    s.daemon.stop().await.unwrap();
}
