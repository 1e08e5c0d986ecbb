//! Only a request signed with the connection's own secret, fresh and readable, changes
//! anything: unsigned, forged, stale, tampered, unreadable, oversized or misaddressed
//! requests are refused and leave herald's data as it was.

use serde_json::json;

use super::{
    connect, deliver, deliver_with, insert_objects, mux_event, mux_signature, now, object,
    quiet_period, snapshot, story, SECRET_A, SECRET_B,
};
use crate::api_client::assert_error;

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
            Some(mux_signature(SECRET_A, t - 3_600, &body)),
            body.clone(),
        ),
        (
            "from the future",
            Some(mux_signature(SECRET_A, t + 3_600, &body)),
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
