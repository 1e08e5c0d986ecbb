//! Connections are created, read, listed and deleted through `/v1/connections`; their
//! signing secret is stored but never shown, and bad requests get a 422 naming the field.

use std::collections::BTreeSet;

use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

use super::{all, connect, deliver, mux_event, story};
use crate::api_client::assert_error;
use crate::fixtures::indexes;

#[tokio::test]
async fn connections_are_managed_through_the_api_and_their_secret_never_comes_back() {
    let s = story("mux_connections").await;
    let secret = "my-very-secret-mux-signing-secret";
    let response = s
        .api
        .post(
            "/v1/connections",
            json!({"provider": "mux", "bucket_id": "bkt_1", "webhook_secret": secret,
                   "metadata_filters": {"passthrough": "bkt_1", "meta.n": 3, "meta.flag": true,
                                        "meta.gone": null}}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let created = response.body.clone();
    assert!(!created.to_string().contains(secret), "{created}");
    assert!(created.get("webhook_secret").is_none());
    let id = created["connection_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("conn_") && id.len() == 21, "{id}");
    assert!(id[5..].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(created["provider"], "mux");
    assert_eq!(created["bucket_id"], "bkt_1");
    assert_eq!(
        created["metadata_filters"],
        json!({"passthrough": "bkt_1", "meta.n": 3, "meta.flag": true, "meta.gone": null})
    );
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let got = s.api.get(&format!("/v1/connections/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, created);
    assert!(!got.body.to_string().contains(secret));

    // Pagination: every connection once, none with its secret.
    let mut ids = BTreeSet::from([id.clone()]);
    for i in 0..4 {
        ids.insert(connect(&s.api, &format!("bkt_p{i}"), secret, None).await);
    }
    let mut seen = BTreeSet::new();
    let mut path = "/v1/connections?limit=2".to_owned();
    loop {
        let page = s.api.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(!page.body.to_string().contains(secret));
        let results = page.body["results"].as_array().unwrap();
        assert!(results.len() <= 2);
        for c in results {
            assert!(seen.insert(c["connection_id"].as_str().unwrap().to_owned()));
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/connections?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let filtered = s.api.get("/v1/connections?bucket_id=bkt_p2").await;
    assert_eq!(filtered.body["results"].as_array().unwrap().len(), 1);
    assert_error(&s.api.get("/v1/connections?cursor=!!").await, 400);
    assert_error(&s.api.get("/v1/connections?limit=0").await, 400);

    // Stored as given (the secret verifies inbound webhooks), shown never.
    let stored =
        s.db.collection::<Document>("connections")
            .find_one(doc! {"_id": &id})
            .await
            .unwrap()
            .unwrap();
    assert_eq!(stored.get_str("webhook_secret").unwrap(), secret);
    // Creating a connection made sure inbound events find their objects by index.
    let indexes = indexes(&s.db, "objects").await;
    assert!(
        indexes
            .iter()
            .any(|i| i.keys == doc! {"connection_id": 1, "source.asset_id": 1}),
        "{indexes:?}"
    );

    // Delete: 204, idempotent; afterwards 404 on read and on the inbound route.
    assert_eq!(
        s.api.delete(&format!("/v1/connections/{id}")).await.status,
        204
    );
    assert_eq!(
        s.api.delete(&format!("/v1/connections/{id}")).await.status,
        204
    );
    assert_error(&s.api.get(&format!("/v1/connections/{id}")).await, 404);
    let body = mux_event("video.asset.deleted", "evt-x", json!({"id": "asset_1"}));
    assert_error(&deliver(&s.api, &id, secret, body).await, 404);
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn bad_connection_requests_get_a_422_naming_the_field() {
    let s = story("mux_validation").await;
    let good = json!({"provider": "mux", "bucket_id": "bkt_1", "webhook_secret": "s"});
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let cases = [
        (with("provider", json!("stripe")), "provider"),
        (with("provider", json!(5)), "provider"),
        (without("provider"), "provider"),
        (with("bucket_id", json!("")), "bucket_id"),
        (with("bucket_id", json!("  ")), "bucket_id"),
        (without("bucket_id"), "bucket_id"),
        (with("webhook_secret", json!("")), "webhook_secret"),
        (
            with("webhook_secret", json!("x".repeat(513))),
            "webhook_secret",
        ),
        (without("webhook_secret"), "webhook_secret"),
        (
            with("metadata_filters", json!(["passthrough"])),
            "metadata_filters",
        ),
        (
            with("metadata_filters", json!({"meta": {"a": 1}})),
            "metadata_filters.meta",
        ),
        (
            with("metadata_filters", json!({"a.b": [1]})),
            "metadata_filters.a.b",
        ),
        (
            with("metadata_filters", json!({"a..b": 1})),
            "metadata_filters.a..b",
        ),
        (with("surprise", json!(1)), "surprise"),
    ];
    for (body, field) in cases {
        let response = s.api.post("/v1/connections", body.clone()).await;
        let message = assert_error(&response, 422);
        assert!(
            message.contains(field),
            "{body}: {message:?} should name {field}"
        );
        assert!(
            !message.contains(&"x".repeat(513)),
            "the secret is not echoed"
        );
    }
    // 512 bytes is fine.
    let response = s
        .api
        .post(
            "/v1/connections",
            with("webhook_secret", json!("x".repeat(512))),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let response = s
        .api
        .raw(
            "POST",
            "/v1/connections",
            "{nope",
            &[("content-type", "application/json")],
        )
        .await;
    assert_error(&response, 400);
    assert_error(
        &s.api.get("/v1/connections/conn_ffffffffffffffff").await,
        404,
    );
    assert_eq!(all(&s.db, "connections").await.len(), 1);
    s.daemon.stop().await.unwrap();
}
