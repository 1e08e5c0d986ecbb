//! A signed `video.asset.deleted` removes exactly that asset's objects in that connection,
//! and subscribers hear `object.deleted` for each.

use std::collections::BTreeSet;

use mongodb::bson::doc;
use serde_json::json;

use super::{
    all, connect, deliver, insert_objects, mux_event, object, object_ids, quiet_period, story,
    DEADLINE, SECRET_A, SECRET_B,
};
use crate::fixtures::*;

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
