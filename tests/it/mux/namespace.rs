//! A namespaced connection's Mux-derived events carry its namespace, so they reach that
//! tenant's webhooks (and the operator's), never another tenant's.

use serde_json::json;

use super::{deliver, insert_objects, mux_event, object, object_events, story, DEADLINE, SECRET_A};
use crate::support::Receiver;

#[tokio::test]
async fn a_namespaced_connections_events_carry_its_namespace() {
    let s = story("mux_namespace").await;
    let tenant = Receiver::start().await;
    let other_tenant = Receiver::start().await;
    for (receiver, namespace) in [(&tenant, "ns_media"), (&other_tenant, "ns_other")] {
        let created = s
            .api
            .post(
                "/v1/webhooks",
                json!({"url": receiver.url, "event_types": ["object.deleted"], "namespace_id": namespace}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
    }
    let connection = s
        .api
        .post(
            "/v1/connections",
            json!({"provider": "mux", "bucket_id": "bkt_ns", "webhook_secret": SECRET_A,
                   "namespace_id": "ns_media"}),
        )
        .await;
    assert_eq!(connection.status, 201, "{}", connection.body);
    assert_eq!(connection.body["namespace_id"], "ns_media");
    let id = connection.body["connection_id"]
        .as_str()
        .unwrap()
        .to_owned();
    insert_objects(&s.db, vec![object("obj_ns1", "bkt_ns", &id, "asset_ns")]).await;

    let body = mux_event("video.asset.deleted", "evt-ns-1", json!({"id": "asset_ns"}));
    let answer = deliver(&s.api, &id, SECRET_A, body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let events = object_events(&s.db).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].get_str("namespace_id").unwrap(), "ns_media");
    let got = tenant.wait_for(1, DEADLINE).await;
    assert_eq!(got[0].json()["namespace_id"], "ns_media");
    // The operator's webhook (no namespace) hears it too; the other tenant does not.
    s.receiver.wait_for(1, DEADLINE).await;
    super::quiet_period().await;
    assert_eq!(other_tenant.count(), 0);
    s.daemon.stop().await.unwrap();
}
