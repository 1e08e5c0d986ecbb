//! The audit trail records a create, a patch and a delete with the key that made them,
//! what changed, and no secret.

use futures::TryStreamExt;
use serde_json::{json, Value};

use super::{create_webhook, make_key, setup};
use crate::api_client::assert_error;

#[tokio::test]
async fn the_audit_trail_records_writes_with_their_key_and_no_secret() {
    let s = setup("tenancy_audit").await;
    let listen = s.daemon.listen;
    let (key_id, alpha) = make_key(&s.operator, listen, Some("ns_alpha"), "admin").await;
    let (_, beta) = make_key(&s.operator, listen, Some("ns_beta"), "admin").await;
    let secret = "whsec_dGhpcyBpcyBhIHZlcnkgc2VjcmV0IGtleSE=";
    let hook = create_webhook(
        &alpha,
        json!({
            "url": "https://user:pw@hooks.example.com/in?token=tok123",
            "event_types": ["*"],
            "secret": secret,
            "headers": {"X-Mixpeek-Secret": "header-value-9"},
            "name": "audited",
        }),
    )
    .await;
    let id = hook["webhook_id"].as_str().unwrap();
    let one = format!("/v1/webhooks/{id}");
    let patched = alpha.patch(&one, json!({"rate_limit_per_second": 5})).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let rotated = alpha.post(&format!("{one}/rotate-secret"), json!({})).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(alpha.delete(&one).await.status, 204);
    // A refused write leaves no record.
    assert_error(&alpha.patch(&one, json!({"enabled": false})).await, 404);

    let trail = alpha.get(&format!("/v1/audit?object_id={id}")).await;
    assert_eq!(trail.status, 200, "{}", trail.body);
    let records = trail.body["results"].as_array().unwrap().clone();
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "webhook.create",
            "webhook.update",
            "webhook.rotate_secret",
            "webhook.delete"
        ]
    );
    for record in &records {
        assert_eq!(record["key_id"], key_id.as_str(), "{record}");
        assert_eq!(record["object_type"], "webhook");
        assert_eq!(record["object_id"], id);
        assert_eq!(record["namespace_id"], "ns_alpha");
        assert!(record["at"].as_str().unwrap().ends_with('Z'), "{record}");
    }
    let created = &records[0]["changed_fields"];
    assert_eq!(created["name"], "audited");
    assert_eq!(created["event_types"], json!(["*"]));
    assert_eq!(
        records[1]["changed_fields"],
        json!({"rate_limit_per_second": 5})
    );
    let everything = Value::Array(records.clone()).to_string();
    let rotated_secret = rotated.body["secret"].as_str().unwrap();
    for leaked in [
        secret,
        "dGhpcyBpcyBhIHZlcnkgc2VjcmV0IGtleSE",
        rotated_secret,
        "header-value-9",
        "tok123",
        "pw@",
    ] {
        assert!(
            !everything.contains(leaked),
            "{leaked} in the audit trail: {everything}"
        );
    }
    // Not in the database either.
    let stored: Vec<mongodb::bson::Document> =
        s.db.collection::<mongodb::bson::Document>("audit_log")
            .find(mongodb::bson::doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
    assert_eq!(
        stored.len(),
        6,
        "two keys and four webhook writes: {stored:?}"
    );
    for record in &stored {
        let raw = record.to_string();
        assert!(
            !raw.contains("header-value-9") && !raw.contains("dGhpcyBp") && !raw.contains("hk_"),
            "{raw}"
        );
    }

    // Filters: by key and action; another namespace sees none of it (only the creation of
    // its own key); the operator sees the keys' creation too.
    let by_key = alpha
        .get(&format!("/v1/audit?key_id={key_id}&action=webhook.update"))
        .await;
    assert_eq!(by_key.body["results"].as_array().unwrap().len(), 1);
    let other = beta.get("/v1/audit").await;
    assert_eq!(other.status, 200);
    let seen: Vec<&str> = other.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(seen, ["key.create"], "{}", other.body);
    let keys_made = s
        .operator
        .get("/v1/audit?action=key.create&key_id=operator")
        .await;
    assert_eq!(keys_made.body["results"].as_array().unwrap().len(), 2);
    let since_now = s.operator.get("/v1/audit?since=2999-01-01T00:00:00Z").await;
    assert!(since_now.body["results"].as_array().unwrap().is_empty());
    let until_then = s
        .operator
        .get("/v1/audit?until=2999-01-01T00:00:00Z&limit=2")
        .await;
    assert_eq!(until_then.body["results"].as_array().unwrap().len(), 2);
    assert!(until_then.body["next_cursor"].is_string());
    s.daemon.stop().await.unwrap();
}
