//! Alerts follow their webhook's namespace: a tenant's failing endpoint is reported to that
//! tenant's operational webhooks and the operator's, never to another tenant's.

use std::time::Duration;

use mongodb::bson::{doc, Document};
use serde_json::json;

use super::{create_webhook, make_key, OPERATOR};
use crate::daemon::start_with_key;
use crate::fixtures::database;
use crate::support::{eventually, Receiver};

#[tokio::test]
async fn a_tenants_failing_endpoint_is_reported_only_to_that_tenant_and_the_operator() {
    let (uri, name, db) = database("tenancy_alerts").await;
    let (daemon, operator) =
        start_with_key(&uri, &name, OPERATOR, |c| c.endpoint_failing_after = 2).await;
    let (_, alpha) = make_key(&operator, daemon.listen, Some("ns_alpha"), "admin").await;
    let (_, beta) = make_key(&operator, daemon.listen, Some("ns_beta"), "admin").await;
    let failing = Receiver::start().await;
    failing.respond_with(500);
    let alpha_ops = Receiver::start().await;
    let beta_ops = Receiver::start().await;
    let operator_ops = Receiver::start().await;
    let ops = json!(["webhook.endpoint.failing"]);
    create_webhook(
        &alpha,
        json!({"url": failing.url, "event_types": ["batch.completed"]}),
    )
    .await;
    create_webhook(&alpha, json!({"url": alpha_ops.url, "event_types": ops})).await;
    create_webhook(&beta, json!({"url": beta_ops.url, "event_types": ops})).await;
    create_webhook(
        &operator,
        json!({"url": operator_ops.url, "event_types": ops}),
    )
    .await;

    let published = alpha
        .post(
            "/v1/events",
            json!({"event_type": "batch.completed", "data": {}}),
        )
        .await;
    assert_eq!(published.status, 202, "{}", published.body);
    let deadline = Duration::from_secs(30);
    let alert = alpha_ops.wait_for(1, deadline).await[0].json();
    assert_eq!(alert["event_type"], "webhook.endpoint.failing");
    assert_eq!(alert["namespace_id"], "ns_alpha");
    operator_ops.wait_for(1, deadline).await;
    eventually(deadline, "the alert's deliveries are recorded", || async {
        db.collection::<Document>("deliveries")
            .count_documents(doc! {"event_type": "webhook.endpoint.failing"})
            .await
            .unwrap()
            >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(beta_ops.count(), 0, "another tenant heard of the alert");
    daemon.stop().await.unwrap();
}
