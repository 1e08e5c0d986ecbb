//! Two tenants, each with its own key, cannot see or change each other's webhooks,
//! deliveries or connections: 404, never 403; lists show only their own; a read key gets
//! 403 on every write.

use std::time::Duration;

use serde_json::json;

use super::{create_webhook, ids, make_key, setup};
use crate::api_client::assert_error;
use crate::support::{eventually, Receiver};

#[tokio::test]
async fn two_namespaces_cannot_see_each_others_objects() {
    let s = setup("tenancy_isolation").await;
    let listen = s.daemon.listen;
    let (_, alpha) = make_key(&s.operator, listen, Some("ns_alpha"), "admin").await;
    let (_, beta) = make_key(&s.operator, listen, Some("ns_beta"), "admin").await;
    let receiver_a = Receiver::start().await;
    let receiver_b = Receiver::start().await;

    // Created without a namespace_id, each lands in its key's namespace.
    let hook_a = create_webhook(&alpha, json!({"url": receiver_a.url, "event_types": ["*"]})).await;
    let hook_b = create_webhook(&beta, json!({"url": receiver_b.url, "event_types": ["*"]})).await;
    assert_eq!(hook_a["namespace_id"], "ns_alpha");
    assert_eq!(hook_b["namespace_id"], "ns_beta");
    let a_path = format!("/v1/webhooks/{}", hook_a["webhook_id"].as_str().unwrap());
    let b_path = format!("/v1/webhooks/{}", hook_b["webhook_id"].as_str().unwrap());

    // Each sees its own, and the other's answers 404 for every route.
    assert_eq!(alpha.get(&a_path).await.status, 200);
    for (method, path, body) in [
        ("GET", b_path.clone(), None),
        ("PATCH", b_path.clone(), Some(json!({"enabled": false}))),
        ("POST", format!("{b_path}/pause"), Some(json!({}))),
        ("POST", format!("{b_path}/rotate-secret"), Some(json!({}))),
        ("POST", format!("{b_path}/recover"), Some(json!({}))),
        ("DELETE", b_path.clone(), None),
    ] {
        let answer = alpha.send(method, &path, body).await;
        assert_error(&answer, 404);
    }
    assert_eq!(
        ids(&alpha.get("/v1/webhooks").await.body, "webhook_id"),
        [hook_a["webhook_id"].as_str().unwrap()]
    );
    // The other tenant's webhook is untouched.
    let b_now = beta.get(&b_path).await;
    assert_eq!(b_now.status, 200);
    assert_eq!(b_now.body["enabled"], true);
    assert_eq!(b_now.body["paused"], false);
    // The operator sees both.
    assert_eq!(
        ids(&s.operator.get("/v1/webhooks").await.body, "webhook_id").len(),
        2
    );
    assert_eq!(
        ids(
            &s.operator
                .get("/v1/webhooks?namespace_id=ns_beta")
                .await
                .body,
            "webhook_id"
        ),
        [hook_b["webhook_id"].as_str().unwrap()]
    );

    // Deliveries follow their webhook's namespace.
    for (api, ns) in [(&alpha, "ns_alpha"), (&beta, "ns_beta")] {
        let published = api
            .post(
                "/v1/events",
                json!({"event_type": "batch.completed", "data": {"n": ns}}),
            )
            .await;
        assert_eq!(published.status, 202, "{}", published.body);
    }
    receiver_a.wait_for(1, Duration::from_secs(30)).await;
    receiver_b.wait_for(1, Duration::from_secs(30)).await;
    eventually(
        Duration::from_secs(30),
        "both deliveries are recorded",
        || async { ids(&s.operator.get("/v1/deliveries").await.body, "delivery_id").len() == 2 },
    )
    .await;
    let mine = alpha.get("/v1/deliveries").await;
    let mine = ids(&mine.body, "delivery_id");
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert!(mine[0].ends_with(hook_a["webhook_id"].as_str().unwrap()));
    let theirs = ids(&beta.get("/v1/deliveries").await.body, "delivery_id");
    let theirs_path = format!("/v1/deliveries/{}", theirs[0].replace(':', "%3A"));
    assert_error(&alpha.get(&theirs_path).await, 404);
    assert_error(
        &alpha.post(&format!("{theirs_path}/retry"), json!({})).await,
        404,
    );
    assert_eq!(beta.get(&theirs_path).await.status, 200);
    // Filtering by the other tenant's webhook finds nothing.
    let filtered = alpha
        .get(&format!(
            "/v1/deliveries?webhook_id={}",
            hook_b["webhook_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(filtered.status, 200);
    assert!(ids(&filtered.body, "delivery_id").is_empty());

    // Connections too.
    let connection = beta
        .post(
            "/v1/connections",
            json!({"provider": "mux", "bucket_id": "b1", "webhook_secret": "mux-secret"}),
        )
        .await;
    assert_eq!(connection.status, 201, "{}", connection.body);
    assert_eq!(connection.body["namespace_id"], "ns_beta");
    let c_path = format!(
        "/v1/connections/{}",
        connection.body["connection_id"].as_str().unwrap()
    );
    assert_error(&alpha.get(&c_path).await, 404);
    assert_error(&alpha.delete(&c_path).await, 404);
    assert!(ids(&alpha.get("/v1/connections").await.body, "connection_id").is_empty());
    assert_eq!(beta.get(&c_path).await.status, 200);

    // A body naming the other namespace is refused, naming the field.
    let across = alpha
        .post(
            "/v1/webhooks",
            json!({"url": receiver_a.url, "event_types": ["*"], "namespace_id": "ns_beta"}),
        )
        .await;
    assert!(assert_error(&across, 400).contains("namespace_id"));
    let listed_across = alpha.get("/v1/webhooks?namespace_id=ns_beta").await;
    assert!(assert_error(&listed_across, 400).contains("namespace_id"));

    // An event published with alpha's key cannot claim beta's namespace.
    let claimed = alpha
        .post(
            "/v1/events",
            json!({"event_type": "batch.completed", "data": {}, "namespace_id": "ns_beta"}),
        )
        .await;
    assert!(assert_error(&claimed, 400).contains("namespace_id"));

    // Names are unique within a namespace: both tenants may use the same one.
    for api in [&alpha, &beta] {
        let named = api
            .post(
                "/v1/webhooks",
                json!({"url": receiver_a.url, "event_types": ["*"], "name": "search-cache"}),
            )
            .await;
        assert_eq!(named.status, 201, "{}", named.body);
    }
    let again = alpha
        .post(
            "/v1/webhooks",
            json!({"url": receiver_a.url, "event_types": ["*"], "name": "search-cache"}),
        )
        .await;
    assert_error(&again, 409);

    // Keys: each admin sees only its namespace's keys; the cluster view is the operator's.
    let keys = alpha.get("/v1/keys").await;
    assert_eq!(keys.status, 200, "{}", keys.body);
    assert!(keys.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["namespace_id"] == "ns_alpha"));
    assert_error(&alpha.get("/v1/cluster").await, 403);
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_read_key_reads_and_every_write_is_403() {
    let s = setup("tenancy_read_key").await;
    let listen = s.daemon.listen;
    let (_, admin) = make_key(&s.operator, listen, Some("ns_r"), "admin").await;
    let (_, reader) = make_key(&s.operator, listen, Some("ns_r"), "read").await;
    let receiver = Receiver::start().await;
    let hook = create_webhook(&admin, json!({"url": receiver.url, "event_types": ["*"]})).await;
    let one = format!("/v1/webhooks/{}", hook["webhook_id"].as_str().unwrap());

    assert_eq!(reader.get(&one).await.status, 200);
    assert_eq!(reader.get("/v1/webhooks").await.status, 200);
    assert_eq!(reader.get("/v1/deliveries").await.status, 200);
    assert_eq!(reader.get("/v1/audit").await.status, 200);
    let body = json!({"url": receiver.url, "event_types": ["*"]});
    for (method, path, body) in [
        ("POST", "/v1/webhooks".to_owned(), Some(body)),
        ("PATCH", one.clone(), Some(json!({"enabled": false}))),
        ("DELETE", one.clone(), None),
        ("POST", format!("{one}/pause"), Some(json!({}))),
        ("POST", format!("{one}/rotate-secret"), Some(json!({}))),
        (
            "POST",
            "/v1/events".to_owned(),
            Some(json!({"event_type": "batch.completed", "data": {}})),
        ),
        (
            "POST",
            "/v1/connections".to_owned(),
            Some(json!({"provider": "mux", "bucket_id": "b", "webhook_secret": "s"})),
        ),
        ("POST", "/v1/keys".to_owned(), Some(json!({"role": "read"}))),
    ] {
        let answer = reader.send(method, &path, body).await;
        assert_error(&answer, 403);
    }
    // Managing keys needs an admin key, even to list them.
    assert_error(&reader.get("/v1/keys").await, 403);
    // Nothing changed.
    let now = admin.get(&one).await;
    assert_eq!(now.body["enabled"], true);
    assert_eq!(
        ids(&admin.get("/v1/webhooks").await.body, "webhook_id").len(),
        1
    );
    s.daemon.stop().await.unwrap();
}
