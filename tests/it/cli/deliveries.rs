//! `herald deliveries`: failed deliveries are listed, inspected with their attempt log,
//! retried and recovered.

use serde_json::json;

use super::setup;
use crate::fixtures;

#[tokio::test]
async fn failed_deliveries_are_found_inspected_and_replayed() {
    let s = setup("cli_deliveries").await;
    s.receiver.respond_with(500);
    let created = s
        .cli(&[
            "webhooks",
            "create",
            "--url",
            &s.receiver.url,
            "--event-type",
            "object.created",
            "--json",
        ])
        .await
        .ok()
        .json();
    let webhook_id = created["webhook_id"].as_str().unwrap().to_owned();
    s.cli(&[
        "events",
        "publish",
        "--type",
        "object.created",
        "--data",
        "{}",
        "--event-id",
        "evt_f1",
    ])
    .await
    .ok();
    let delivery_id = format!("evt_f1:{webhook_id}");
    fixtures::wait_for_status(&s.db, &delivery_id, "failed").await;

    // list: the failed delivery, as a table and as JSON.
    let list = s
        .cli(&[
            "deliveries",
            "list",
            "--status",
            "failed",
            "--webhook-id",
            &webhook_id,
        ])
        .await
        .ok();
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with(&delivery_id))
        .unwrap_or_else(|| panic!("no row for {delivery_id}: {}", list.stdout));
    assert!(row.contains("failed") && row.contains("500"), "{row}");
    let listed = s
        .cli(&["deliveries", "list", "--event-id", "evt_f1", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(listed["results"][0]["delivery_id"], delivery_id.as_str());
    let none = s
        .cli(&["deliveries", "list", "--status", "succeeded", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(none["results"], json!([]));

    // get: the attempt log, one row per attempt (the test config allows 5).
    let shown = s.cli(&["deliveries", "get", &delivery_id]).await.ok();
    let attempts = shown
        .stdout
        .lines()
        .filter(|l| l.contains(" 500 ") || l.trim_end().ends_with(" 500"))
        .count();
    assert!(attempts >= 5, "{}", shown.stdout);
    let got = s
        .cli(&["deliveries", "get", &delivery_id, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(got["attempt_log"].as_array().unwrap().len(), 5);

    // retry once the receiver is healthy: delivered.
    s.receiver.respond_with(200);
    let before = s.receiver.count();
    let retried = s.cli(&["deliveries", "retry", &delivery_id]).await.ok();
    assert!(
        retried.stdout.contains("retry queued"),
        "{}",
        retried.stdout
    );
    fixtures::wait_for_status(&s.db, &delivery_id, "succeeded").await;
    assert_eq!(s.receiver.count(), before + 1);

    // Retrying a delivery that succeeded is refused by the API: one line, non-zero.
    let refused = s.cli(&["deliveries", "retry", &delivery_id]).await.failed();
    assert!(
        refused.contains("already succeeded") && refused.contains("409"),
        "{refused}"
    );
    let unknown = s
        .cli(&["deliveries", "get", "evt_nope:wh_nope"])
        .await
        .failed();
    assert!(unknown.contains("404"), "{unknown}");

    // recover: every failed delivery of the webhook since a time.
    s.receiver.respond_with(500);
    s.cli(&[
        "events",
        "publish",
        "--type",
        "object.created",
        "--data",
        "{}",
        "--event-id",
        "evt_f2",
    ])
    .await
    .ok();
    let second = format!("evt_f2:{webhook_id}");
    fixtures::wait_for_status(&s.db, &second, "failed").await;
    s.receiver.respond_with(200);
    let recovered = s
        .cli(&[
            "deliveries",
            "recover",
            &webhook_id,
            "--since",
            "2000-01-01T00:00:00Z",
        ])
        .await
        .ok();
    assert!(
        recovered.stdout.contains("re-queued 1"),
        "{}",
        recovered.stdout
    );
    fixtures::wait_for_status(&s.db, &second, "succeeded").await;
    s.daemon.stop().await.unwrap();
}
