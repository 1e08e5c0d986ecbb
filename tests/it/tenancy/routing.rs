//! A namespaced webhook receives only the events of its namespace; the operator's webhook
//! (no namespace) receives every event. Events published with a namespaced key carry its
//! namespace.

use std::time::Duration;

use mongodb::bson::{doc, Document};
use serde_json::json;

use super::{create_webhook, make_key, setup};
use crate::support::{eventually, Receiver};

#[tokio::test]
async fn a_namespaced_webhook_gets_its_namespace_and_the_operators_gets_both() {
    let s = setup("tenancy_routing").await;
    let listen = s.daemon.listen;
    let (_, alpha) = make_key(&s.operator, listen, Some("ns_alpha"), "admin").await;
    let only_alpha = Receiver::start().await;
    let only_beta = Receiver::start().await;
    let everything = Receiver::start().await;
    create_webhook(
        &alpha,
        json!({"url": only_alpha.url, "event_types": ["batch.completed"]}),
    )
    .await;
    create_webhook(
        &s.operator,
        json!({"url": only_beta.url, "event_types": ["batch.completed"], "namespace_id": "ns_beta"}),
    )
    .await;
    create_webhook(
        &s.operator,
        json!({"url": everything.url, "event_types": ["batch.completed"]}),
    )
    .await;

    // One event per namespace written straight into the outbox, one through the API with
    // alpha's key (which puts it in ns_alpha), and one without a namespace.
    let events = s.db.collection::<Document>("events");
    events
        .insert_one(doc! {"_id": "evt_ns_b", "event_type": "batch.completed",
        "namespace_id": "ns_beta", "data": {}})
        .await
        .unwrap();
    events
        .insert_one(doc! {"_id": "evt_no_ns", "event_type": "batch.completed", "data": {}})
        .await
        .unwrap();
    let published = alpha
        .post(
            "/v1/events",
            json!({"event_type": "batch.completed", "event_id": "evt_ns_a", "data": {}}),
        )
        .await;
    assert_eq!(published.status, 202, "{}", published.body);

    everything.wait_for(3, Duration::from_secs(30)).await;
    only_alpha.wait_for(1, Duration::from_secs(30)).await;
    only_beta.wait_for(1, Duration::from_secs(30)).await;
    // Give a wrongly routed delivery every chance to show up.
    eventually(
        Duration::from_secs(30),
        "all five deliveries are recorded",
        || async {
            s.db.collection::<Document>("deliveries")
                .count_documents(doc! {"status": "succeeded"})
                .await
                .unwrap()
                >= 5
        },
    )
    .await;
    let got = |r: &Receiver| {
        let mut ids: Vec<String> = r
            .requests()
            .iter()
            .map(|q| q.json()["event_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(got(&only_alpha), ["evt_ns_a"]);
    assert_eq!(got(&only_beta), ["evt_ns_b"]);
    assert_eq!(got(&everything), ["evt_no_ns", "evt_ns_a", "evt_ns_b"]);
    // The payload says whose event it is.
    assert_eq!(only_alpha.requests()[0].json()["namespace_id"], "ns_alpha");
    s.daemon.stop().await.unwrap();
}
