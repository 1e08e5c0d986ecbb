//! Mux event types herald does not handle are acknowledged (so Mux stops retrying) and
//! change nothing.

use serde_json::json;

use super::{
    all, connect, deliver, insert_objects, mux_event, object, object_events, quiet_period, story,
    SECRET_A,
};

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
