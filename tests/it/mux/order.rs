//! Mux may deliver `video.asset.updated` events out of order (a retry of an older one after
//! a newer one): they are applied in the order Mux made them (the event's `created_at`),
//! so an older update arriving late changes nothing — not the metadata, not the objects,
//! and no event is published for it.

use mongodb::bson::{doc, Bson, Document};
use serde_json::{json, Value};

use super::{connect, insert_objects, object, object_events, quiet_period, story, SECRET_A};
use crate::fixtures::mux_signature;

/// A signed `video.asset.updated` of `asset_keep` made by Mux at `created_at`.
async fn update(
    s: &super::Story,
    connection: &str,
    id: &str,
    created_at: &str,
    title: &str,
) -> Value {
    let body = json!({
        "type": "video.asset.updated",
        "id": id,
        "created_at": created_at,
        "object": {"type": "asset", "id": "asset_keep"},
        "data": {"id": "asset_keep", "status": "ready", "passthrough": "p",
                 "meta": {"title": title}},
    })
    .to_string()
    .into_bytes();
    let signature = mux_signature(SECRET_A, super::now(), &body);
    let response = super::deliver_with(&s.api, connection, body, Some(&signature)).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.body
}

async fn title(db: &mongodb::Database) -> Value {
    let stored = db
        .collection::<Document>("objects")
        .find_one(doc! {"_id": "obj_keep"})
        .await
        .unwrap()
        .expect("the object is still there");
    Bson::Document(stored.get_document("metadata").unwrap().clone()).into_relaxed_extjson()["meta"]
        ["title"]
        .clone()
}

#[tokio::test]
async fn an_older_update_after_a_newer_one_changes_nothing() {
    let s = story("mux_order").await;
    let a = connect(&s.api, "bkt_a", SECRET_A, None).await;
    insert_objects(&s.db, vec![object("obj_keep", "bkt_a", &a, "asset_keep")]).await;

    // The newer change arrives first and is applied.
    let newer = update(&s, &a, "evt-newer", "2024-05-01T12:00:05.000000Z", "newer").await;
    assert_eq!(newer["action"], "updated", "{newer}");
    assert_eq!(title(&s.db).await, "newer");
    quiet_period().await;
    let events_before = object_events(&s.db).await.len();

    // Mux retries an older one: answered 200 (Mux stops retrying), applied to nothing.
    let older = update(&s, &a, "evt-older", "2024-05-01T12:00:01.000000Z", "older").await;
    assert_eq!(
        older,
        json!({"handled": true, "action": "stale", "objects_affected": 0})
    );
    assert_eq!(title(&s.db).await, "newer");
    quiet_period().await;
    assert_eq!(
        object_events(&s.db).await.len(),
        events_before,
        "no event for a stale update"
    );

    // A later change still applies.
    let latest = update(
        &s,
        &a,
        "evt-latest",
        "2024-05-01T12:00:09.000000Z",
        "latest",
    )
    .await;
    assert_eq!(latest["action"], "updated", "{latest}");
    assert_eq!(title(&s.db).await, "latest");
    s.daemon.stop().await.unwrap();
}
