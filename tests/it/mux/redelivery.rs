//! Mux redelivers: the same Mux event id is applied once however often, and however
//! concurrently, it arrives; later copies answer with the first outcome and change nothing.

use serde_json::json;

use super::{
    connect, deliver, insert_objects, mux_event, object, quiet_period, snapshot, story, DEADLINE,
    SECRET_A,
};

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
