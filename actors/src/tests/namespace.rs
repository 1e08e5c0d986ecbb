//! Namespaces: a namespaced webhook receives only the events of its namespace; a webhook
//! without one (the operator's) receives every event, namespaced or not.

use std::time::Duration;

use bytes::Bytes;

use super::{config, delivered, pos, quiet_for, settle_webhooks, start, until, webhook};
use crate::event::{Event, Payload};
use crate::webhook::WebhookSpec;

fn event_in(id: &str, namespace: Option<&str>) -> Event {
    Event::from_payload(&Payload {
        event_id: id.into(),
        event_type: "object.created".into(),
        occurred_at: "2026-01-01T00:00:00Z".into(),
        namespace_id: namespace.map(str::to_owned),
        task_id: None,
        subject: None,
        data: serde_json::json!({"n": id}),
        cache_scope: None,
    })
}

fn in_namespace(id: &str, namespace: &str) -> WebhookSpec {
    WebhookSpec {
        namespace_id: Some(namespace.into()),
        ..webhook(id, &["*"])
    }
}

#[tokio::test(start_paused = true)]
async fn a_namespaced_webhook_gets_only_its_namespace_and_the_operators_gets_all() {
    let (engine, transport, ledger) = start(config()).await;
    let handle = engine.handle();
    handle
        .upsert_webhook(in_namespace("alpha", "ns_a"))
        .unwrap();
    handle.upsert_webhook(in_namespace("beta", "ns_b")).unwrap();
    handle.upsert_webhook(webhook("operator", &["*"])).unwrap();
    settle_webhooks(&handle).await;

    let events = [
        ("evt_a", Some("ns_a")),
        ("evt_b", Some("ns_b")),
        ("evt_none", None),
        // A prefix of a namespace is another namespace.
        ("evt_ns", Some("ns_")),
    ];
    for (i, (id, namespace)) in events.iter().enumerate() {
        handle
            .submit(
                event_in(id, *namespace),
                Some(pos(Bytes::from(format!("t{i}")))),
            )
            .await
            .unwrap();
    }
    until("the operator's webhook got all four", || {
        delivered(&ledger, "operator") == 4
    })
    .await;
    until("one each for the namespaced webhooks", || {
        delivered(&ledger, "alpha") == 1 && delivered(&ledger, "beta") == 1
    })
    .await;
    quiet_for(Duration::from_millis(200)).await;
    assert!(ledger.delivery("evt_a:alpha").is_some());
    assert!(ledger.delivery("evt_b:beta").is_some());
    assert!(ledger.delivery("evt_b:alpha").is_none());
    assert!(ledger.delivery("evt_none:alpha").is_none());
    assert!(ledger.delivery("evt_ns:beta").is_none());
    assert_eq!(transport.sent().len(), 6);
}

#[test]
fn the_namespace_check_is_exact() {
    let spec = in_namespace("a", "ns_a");
    assert!(spec.accepts_namespace(Some("ns_a")));
    assert!(!spec.accepts_namespace(Some("ns_A")));
    assert!(!spec.accepts_namespace(Some("ns_a2")));
    assert!(!spec.accepts_namespace(None));
    let operator = webhook("op", &["*"]);
    assert!(operator.accepts_namespace(None));
    assert!(operator.accepts_namespace(Some("anything")));
}
