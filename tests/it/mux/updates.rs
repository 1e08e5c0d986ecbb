//! A `video.asset.updated` re-checks the asset against the connection's metadata filters:
//! still matching, its objects take the new metadata (`object.updated`); no longer
//! matching, they are removed (`object.deleted`); the same metadata again changes nothing.

use std::collections::BTreeSet;

use mongodb::bson::{doc, Document};
use serde_json::json;

use super::{
    connect, deliver, insert_objects, mux_event, object, object_ids, quiet_period, story, DEADLINE,
    SECRET_A,
};

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
