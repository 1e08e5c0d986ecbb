//! Inbound Mux webhooks, as a platform syncing Mux assets into buckets relies on them: a
//! connection is created through the API with its signing secret (which never comes back);
//! Mux's signed `video.asset.deleted` / `video.asset.updated` remove or update exactly that
//! asset's objects in that connection, once per Mux event id however often (and however
//! concurrently) Mux delivers it, and subscribers hear `object.deleted` / `object.updated`;
//! anything not signed by that connection's secret, stale, unreadable or too large changes
//! nothing.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use mongodb::bson::{doc, Document};
use mongodb::Database;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::api_client::{assert_error, Api, ApiResponse};
use crate::daemon::{test_config, InProcess};
use crate::fixtures::*;
use crate::support::Receiver;

const API_KEY: &str = "test-api-key";
const SECRET_A: &str = "mux-secret-for-connection-a";
const SECRET_B: &str = "mux-secret-for-connection-b";
const WEBHOOK: &str = "wh_00000000000000d1";
const DEADLINE: Duration = Duration::from_secs(20);

/// herald with an API key, a receiver subscribed to `object.deleted` and `object.updated`.
struct Story {
    db: Database,
    receiver: Receiver,
    api: Api,
    daemon: InProcess,
}

async fn story(prefix: &str) -> Story {
    let (uri, name, db) = database(prefix).await;
    let receiver = Receiver::start().await;
    insert_webhook(
        &db,
        webhook(
            WEBHOOK,
            &receiver.url,
            &["object.deleted", "object.updated"],
        ),
    )
    .await;
    let mut config = test_config(&uri, &name, &receiver.ca_pem_path);
    config.api_key = Some(API_KEY.into());
    let daemon = InProcess::start(config).await;
    let api = Api::new(daemon.listen, Some(API_KEY));
    Story {
        db,
        receiver,
        api,
        daemon,
    }
}

/// Creates a Mux connection, expecting 201; returns its id.
async fn connect(api: &Api, bucket_id: &str, secret: &str, filters: Option<Value>) -> String {
    let mut body = json!({"provider": "mux", "bucket_id": bucket_id, "webhook_secret": secret});
    if let Some(filters) = filters {
        body["metadata_filters"] = filters;
    }
    let response = api.post("/v1/connections", body).await;
    assert_eq!(response.status, 201, "create failed: {}", response.body);
    response.body["connection_id"].as_str().unwrap().to_owned()
}

/// An object synced from Mux.
fn object(id: &str, bucket_id: &str, connection_id: &str, asset_id: &str) -> Document {
    doc! {
        "_id": id,
        "bucket_id": bucket_id,
        "connection_id": connection_id,
        "source": {"provider": "mux", "asset_id": asset_id},
        "metadata": {"passthrough": "old", "meta": {"title": "old title"}},
    }
}

async fn insert_objects(db: &Database, objects: Vec<Document>) {
    db.collection::<Document>("objects")
        .insert_many(objects)
        .await
        .unwrap();
}

/// Every document of `collection`, sorted by `_id`.
async fn all(db: &Database, collection: &str) -> Vec<Document> {
    db.collection::<Document>(collection)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn object_ids(db: &Database) -> BTreeSet<String> {
    all(db, "objects")
        .await
        .iter()
        .map(|d| d.get_str("_id").unwrap().to_owned())
        .collect()
}

/// The outbox documents herald wrote for objects (not the ones tests insert).
async fn object_events(db: &Database) -> Vec<Document> {
    db.collection::<Document>("events")
        .find(doc! {"event_type": {"$in": ["object.deleted", "object.updated"]}})
        .sort(doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// What a test can observe of herald's data.
async fn snapshot(db: &Database) -> (Vec<Document>, Vec<Document>, Vec<Document>) {
    (
        all(db, "objects").await,
        object_events(db).await,
        all(db, "inbound_events").await,
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `Mux-Signature` as Mux computes it, written here independently of herald's code.
fn mux_signature(secret: &str, t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// A Mux event about an asset, as Mux sends it.
fn mux_event(event_type: &str, event_id: &str, asset: Value) -> Vec<u8> {
    json!({
        "type": event_type,
        "id": event_id,
        "created_at": "2024-05-01T12:00:00.000000Z",
        "object": {"type": "asset", "id": asset["id"]},
        "environment": {"name": "Production", "id": "env1"},
        "data": asset,
    })
    .to_string()
    .into_bytes()
}

fn inbound_path(connection_id: &str) -> String {
    format!("/v1/webhooks/mux/{connection_id}")
}

/// POSTs `body` to the connection's inbound route with this `Mux-Signature` (if any),
/// without an API key, as Mux would.
async fn deliver_with(
    api: &Api,
    connection_id: &str,
    body: Vec<u8>,
    signature: Option<&str>,
) -> ApiResponse {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(signature) = signature {
        headers.push(("mux-signature", signature));
    }
    api.anonymous()
        .raw("POST", &inbound_path(connection_id), body, &headers)
        .await
}

/// POSTs `body` signed with `secret` now.
async fn deliver(api: &Api, connection_id: &str, secret: &str, body: Vec<u8>) -> ApiResponse {
    let signature = mux_signature(secret, now(), &body);
    deliver_with(api, connection_id, body, Some(&signature)).await
}

/// Gives herald a moment to (not) publish more than expected.
async fn quiet_period() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

#[tokio::test]
async fn a_signed_asset_deletion_removes_exactly_that_assets_objects_and_tells_subscribers() {
    let s = story("mux_delete").await;
    let a = connect(&s.api, "bkt_a", SECRET_A, None).await;
    let b = connect(&s.api, "bkt_b", SECRET_B, None).await;
    insert_objects(
        &s.db,
        vec![
            object("obj_a1", "bkt_a", &a, "asset_1"),
            object("obj_a2", "bkt_a", &a, "asset_1"),
            object("obj_a3", "bkt_a", &a, "asset_2"),
            // Same asset id, another connection: not ours to delete.
            object("obj_b1", "bkt_b", &b, "asset_1"),
            doc! {"_id": "obj_plain", "bucket_id": "bkt_a", "metadata": {}},
        ],
    )
    .await;

    let body = mux_event(
        "video.asset.deleted",
        "evt-del-1",
        json!({"id": "asset_1", "status": "deleted"}),
    );
    let response = deliver(&s.api, &a, SECRET_A, body).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.body,
        json!({"handled": true, "action": "deleted", "objects_affected": 2})
    );
    assert_eq!(
        object_ids(&s.db).await,
        BTreeSet::from(["obj_a3", "obj_b1", "obj_plain"].map(String::from))
    );

    let requests = s.receiver.wait_for(2, DEADLINE).await;
    quiet_period().await;
    assert_eq!(s.receiver.count(), 2, "{}", s.receiver.describe(&requests));
    let mut seen = BTreeSet::new();
    for request in s.receiver.requests() {
        assert_signed(&request);
        let body = request.json();
        assert_eq!(body["event_type"], "object.deleted");
        assert_eq!(body["data"]["bucket_id"], "bkt_a");
        assert_eq!(body["data"]["asset_id"], "asset_1");
        assert_eq!(body["data"]["connection_id"], a.as_str());
        assert_eq!(body["subject"]["type"], "object");
        assert_eq!(body["subject"]["id"], body["data"]["object_id"]);
        seen.insert(body["data"]["object_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, BTreeSet::from(["obj_a1", "obj_a2"].map(String::from)));

    // Recorded once, with what happened.
    let records = all(&s.db, "inbound_events").await;
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.get_str("connection_id").unwrap(), a);
    assert_eq!(record.get_str("provider").unwrap(), "mux");
    assert_eq!(record.get_str("type").unwrap(), "video.asset.deleted");
    assert!(record.get_datetime("received_at").is_ok());
    assert_eq!(
        record
            .get_document("outcome")
            .unwrap()
            .get_str("action")
            .unwrap(),
        "deleted"
    );
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn an_updated_asset_is_re_checked_against_the_connection_filters() {
    let s = story("mux_update").await;
    let filters = json!({"passthrough": "bkt_a", "meta.external_id": "tenant-1"});
    let a = connect(&s.api, "bkt_a", SECRET_A, Some(filters)).await;
    insert_objects(
        &s.db,
        vec![
            object("obj_keep1", "bkt_a", &a, "asset_keep"),
            object("obj_keep2", "bkt_a", &a, "asset_keep"),
            object("obj_drop", "bkt_a", &a, "asset_drop"),
        ],
    )
    .await;

    // Still matching: the objects take the new metadata, subscribers hear object.updated.
    let asset = json!({"id": "asset_keep", "status": "ready", "passthrough": "bkt_a",
                       "meta": {"title": "New title", "external_id": "tenant-1"},
                       "tracks": [{"type": "video", "max_width": 1920}]});
    let response = deliver(
        &s.api,
        &a,
        SECRET_A,
        mux_event("video.asset.updated", "evt-upd-1", asset),
    )
    .await;
    assert_eq!(
        response.body,
        json!({"handled": true, "action": "updated", "objects_affected": 2})
    );
    let expected_metadata =
        json!({"passthrough": "bkt_a", "meta": {"title": "New title", "external_id": "tenant-1"}});
    for id in ["obj_keep1", "obj_keep2"] {
        let stored =
            s.db.collection::<Document>("objects")
                .find_one(doc! {"_id": id})
                .await
                .unwrap()
                .expect("still there");
        let metadata =
            mongodb::bson::Bson::Document(stored.get_document("metadata").unwrap().clone())
                .into_relaxed_extjson();
        assert_eq!(metadata, expected_metadata, "{id}");
    }
    let requests = s.receiver.wait_for(2, DEADLINE).await;
    for request in &requests {
        let body = request.json();
        assert_eq!(body["event_type"], "object.updated");
        assert_eq!(body["data"]["metadata"], expected_metadata);
        assert_eq!(body["data"]["asset_id"], "asset_keep");
    }

    // No longer matching (the passthrough moved elsewhere): its objects are removed.
    s.receiver.clear();
    let asset = json!({"id": "asset_drop", "passthrough": "bkt_other",
                       "meta": {"external_id": "tenant-1"}});
    let response = deliver(
        &s.api,
        &a,
        SECRET_A,
        mux_event("video.asset.updated", "evt-upd-2", asset),
    )
    .await;
    assert_eq!(
        response.body,
        json!({"handled": true, "action": "deleted", "objects_affected": 1})
    );
    assert_eq!(
        object_ids(&s.db).await,
        BTreeSet::from(["obj_keep1", "obj_keep2"].map(String::from))
    );
    let requests = s.receiver.wait_for(1, DEADLINE).await;
    let body = requests[0].json();
    assert_eq!(body["event_type"], "object.deleted");
    assert_eq!(body["data"]["object_id"], "obj_drop");

    // The same metadata again is no change: nothing written, nobody told.
    s.receiver.clear();
    let asset = json!({"id": "asset_keep", "status": "ready", "passthrough": "bkt_a",
                       "meta": {"title": "New title", "external_id": "tenant-1"}});
    let response = deliver(
        &s.api,
        &a,
        SECRET_A,
        mux_event("video.asset.updated", "evt-upd-3", asset),
    )
    .await;
    assert_eq!(
        response.body,
        json!({"handled": true, "action": "updated", "objects_affected": 0})
    );
    quiet_period().await;
    assert_eq!(s.receiver.count(), 0);
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn the_same_mux_event_is_applied_once_however_often_and_concurrently_it_arrives() {
    let s = story("mux_once").await;
    let a = connect(&s.api, "bkt_a", SECRET_A, None).await;
    insert_objects(
        &s.db,
        (1..=3)
            .map(|i| object(&format!("obj_{i}"), "bkt_a", &a, "asset_1"))
            .chain([object("obj_other", "bkt_a", &a, "asset_2")])
            .collect(),
    )
    .await;
    let body = mux_event("video.asset.deleted", "evt-dup-1", json!({"id": "asset_1"}));
    let expected = json!({"handled": true, "action": "deleted", "objects_affected": 3});

    // Ten at once, as a retrying provider behind a slow network might.
    let responses =
        futures::future::join_all((0..10).map(|_| deliver(&s.api, &a, SECRET_A, body.clone())))
            .await;
    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.body, expected);
    }
    s.receiver.wait_for(3, DEADLINE).await;
    let after_first = snapshot(&s.db).await;
    assert_eq!(after_first.1.len(), 3, "one object.deleted per object");
    assert_eq!(after_first.2.len(), 1, "one inbound record");

    // Redelivered later, even re-signed with a fresh timestamp: the first outcome, no change.
    let response = deliver(&s.api, &a, SECRET_A, body.clone()).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, expected);
    // An object re-synced for that asset afterwards is not touched by the old event.
    insert_objects(&s.db, vec![object("obj_resynced", "bkt_a", &a, "asset_1")]).await;
    let before = snapshot(&s.db).await;
    let response = deliver(&s.api, &a, SECRET_A, body).await;
    assert_eq!(response.body, expected);
    assert_eq!(snapshot(&s.db).await, before);

    quiet_period().await;
    let deleted: Vec<_> = s
        .receiver
        .requests()
        .into_iter()
        .filter(|r| r.json()["event_type"] == "object.deleted")
        .collect();
    assert_eq!(deleted.len(), 3, "{}", s.receiver.describe(&deleted));
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn event_types_herald_does_not_handle_are_acknowledged_and_change_nothing() {
    let s = story("mux_ignored").await;
    let a = connect(&s.api, "bkt_a", SECRET_A, None).await;
    insert_objects(&s.db, vec![object("obj_1", "bkt_a", &a, "asset_1")]).await;
    let objects_before = all(&s.db, "objects").await;
    for (i, event_type) in [
        "video.asset.ready",
        "video.asset.created",
        "video.live_stream.idle",
    ]
    .into_iter()
    .enumerate()
    {
        let body = mux_event(
            event_type,
            &format!("evt-other-{i}"),
            json!({"id": "asset_1"}),
        );
        let response = deliver(&s.api, &a, SECRET_A, body).await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.body, json!({"handled": false}));
    }
    quiet_period().await;
    assert_eq!(all(&s.db, "objects").await, objects_before);
    assert!(object_events(&s.db).await.is_empty());
    assert_eq!(s.receiver.count(), 0);
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn requests_not_signed_by_the_connection_or_unreadable_change_nothing() {
    let s = story("mux_refused").await;
    let a = connect(&s.api, "bkt_a", SECRET_A, None).await;
    let _b = connect(&s.api, "bkt_b", SECRET_B, None).await;
    insert_objects(&s.db, vec![object("obj_1", "bkt_a", &a, "asset_1")]).await;
    let before = snapshot(&s.db).await;
    let body = mux_event("video.asset.deleted", "evt-bad-1", json!({"id": "asset_1"}));
    let t = now();
    let good = mux_signature(SECRET_A, t, &body);
    let v1 = good.split_once(",v1=").unwrap().1.to_owned();

    let unauthorized: Vec<(&str, Option<String>, Vec<u8>)> = vec![
        ("unsigned", None, body.clone()),
        (
            "wrong signature",
            Some(format!("t={t},v1={}", "0".repeat(64))),
            body.clone(),
        ),
        (
            "another connection's secret",
            Some(mux_signature(SECRET_B, t, &body)),
            body.clone(),
        ),
        (
            "stale",
            Some(mux_signature(SECRET_A, t - 301, &body)),
            body.clone(),
        ),
        (
            "from the future",
            Some(mux_signature(SECRET_A, t + 301, &body)),
            body.clone(),
        ),
        ("tampered body", Some(good.clone()), {
            let mut tampered = body.clone();
            tampered.extend_from_slice(b" ");
            tampered
        }),
        ("t=abc", Some(format!("t=abc,v1={v1}")), body.clone()),
        ("no v1", Some(format!("t={t}")), body.clone()),
        ("no t", Some(format!("v1={v1}")), body.clone()),
        (
            "non-hex v1",
            Some(format!("t={t},v1={}", "z".repeat(64))),
            body.clone(),
        ),
        ("empty", Some(String::new()), body.clone()),
    ];
    for (case, signature, payload) in unauthorized {
        let response = deliver_with(&s.api, &a, payload, signature.as_deref()).await;
        let message = assert_error(&response, 401);
        assert_eq!(
            response.body["error"]["code"], "invalid_signature",
            "{case}"
        );
        assert!(!message.contains(SECRET_A), "{case}: {message}");
    }

    // Correctly signed but not JSON, or JSON Mux would never send: 400.
    let response = deliver(&s.api, &a, SECRET_A, b"{not json".to_vec()).await;
    assert_error(&response, 400);
    let no_id = json!({"type": "video.asset.deleted", "data": {"id": "asset_1"}});
    let response = deliver(&s.api, &a, SECRET_A, no_id.to_string().into_bytes()).await;
    let message = assert_error(&response, 400);
    assert!(message.starts_with("id"), "{message}");

    // Over 1 MiB: 413, signed or not.
    let huge = vec![b' '; (1 << 20) + 1];
    let response = deliver(&s.api, &a, SECRET_A, huge).await;
    assert_error(&response, 413);

    // Unknown connections: 404, whatever the signature.
    for unknown in [
        "conn_0000000000000000",
        "not a connection",
        "x".repeat(300).as_str(),
    ] {
        let path_safe = unknown.replace(' ', "%20");
        let response = deliver(&s.api, &path_safe, SECRET_A, body.clone()).await;
        assert_error(&response, 404);
    }

    quiet_period().await;
    assert_eq!(snapshot(&s.db).await, before);
    assert_eq!(s.receiver.count(), 0);

    // After all that, the genuine request still works.
    let response = deliver(&s.api, &a, SECRET_A, body).await;
    assert_eq!(response.body["objects_affected"], 1);
    s.daemon.stop().await.unwrap();
}

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
    let indexes: Vec<_> =
        s.db.collection::<Document>("objects")
            .list_indexes()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
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
