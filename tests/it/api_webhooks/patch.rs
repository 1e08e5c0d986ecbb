//! Patching a webhook: disabling, re-enabling for other types, new headers, removing
//! the rate limit and name, a new URL — each shows on the next deliveries.

use std::time::Duration;

use serde_json::{json, Value};

use super::{
    assert_stops_receiving, create, missed_by, new_event_id, path, publish_until_received, setup,
    stored, wait_delivered,
};
use crate::fixtures::*;
use crate::support::Receiver;

#[tokio::test]
async fn patching_a_webhook_changes_what_it_receives() {
    let s = setup("api_wh_patch", |_| {}).await;
    let target = Receiver::start().await;
    let control = Receiver::start().await;
    let created = create(
        &s.api,
        json!({"url": target.url, "event_types": ["batch.completed"], "name": "target",
               "headers": {"X-Mixpeek-Secret": "shared-secret"}, "rate_limit_per_second": 100}),
    )
    .await;
    create(&s.api, json!({"url": control.url, "event_types": ["*"]})).await;
    let id = created["webhook_id"].as_str().unwrap();
    publish_until_received(&s.db, &target, "batch.completed").await;

    // GET shows it as created, header values redacted.
    let read = s.api.get(&path(&created)).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["name"], "target");
    assert_eq!(
        read.body["headers"],
        json!({"X-Mixpeek-Secret": "********"})
    );
    assert_eq!(read.body["rate_limit_per_second"], 100);

    // Disabled: deliveries stop.
    let patched = s
        .api
        .patch(&path(&created), json!({"enabled": false}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["enabled"], false);
    assert_eq!(patched.body["event_types"], json!(["batch.completed"]));
    assert_eq!(
        patched.body["headers"],
        json!({"X-Mixpeek-Secret": "********"})
    );
    assert!(patched.body.get("secret").is_none());
    assert!(patched.body["updated_at"].as_str() > created["updated_at"].as_str());
    assert!(!stored(&s.db, id)
        .await
        .unwrap()
        .get_bool("enabled")
        .unwrap());
    assert_stops_receiving(&s.db, &target, &control, "batch.completed").await;

    // Re-enabled for another type: that type arrives, the old one no longer does.
    let patched = s
        .api
        .patch(
            &path(&created),
            json!({"enabled": true, "event_types": ["cluster.completed"]}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["event_types"], json!(["cluster.completed"]));
    let request = publish_until_received(&s.db, &target, "cluster.completed").await;
    assert_eq!(body_json(&request)["event_type"], "cluster.completed");
    assert_eq!(header(&request, "x-mixpeek-secret"), Some("shared-secret"));
    assert!(missed_by(&s.db, &target, &control, "batch.completed").await);

    // New headers replace the old ones on the next deliveries.
    let patched = s
        .api
        .patch(&path(&created), json!({"headers": {"X-Other": "v2"}}))
        .await;
    assert_eq!(patched.body["headers"], json!({"X-Other": "********"}));
    crate::support::eventually(
        Duration::from_secs(30),
        "deliveries carry the new header",
        || {
            let db = s.db.clone();
            let target = &target;
            async move {
                let id = new_event_id("headers");
                insert_event(&db, &id, "cluster.completed").await;
                wait_delivered(target, &id, Duration::from_secs(2))
                    .await
                    .is_some_and(|r| {
                        header(&r, "x-other") == Some("v2")
                            && header(&r, "x-mixpeek-secret").is_none()
                    })
            }
        },
    )
    .await;

    // null removes the rate limit and the name; the rest stays.
    let patched = s
        .api
        .patch(
            &path(&created),
            json!({"rate_limit_per_second": null, "name": null}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["rate_limit_per_second"], Value::Null);
    assert_eq!(patched.body["name"], Value::Null);
    assert_eq!(patched.body["url"], target.url.as_str());
    let document = stored(&s.db, id).await.unwrap();
    assert!(!document.contains_key("rate_limit_per_second"));
    assert!(!document.contains_key("name"));
    assert_eq!(
        document.get_str("secret").unwrap(),
        created["secret"].as_str().unwrap(),
        "PATCH never touches the secret"
    );

    // A new URL and name are validated and kept.
    let patched = s
        .api
        .patch(
            &path(&created),
            json!({"url": "https://hooks.example.com/moved", "name": "moved"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let read = s.api.get(&path(&created)).await;
    assert_eq!(read.body["url"], "https://hooks.example.com/moved");
    assert_eq!(read.body["name"], "moved");
    // GET adds the endpoint's health to what PATCH answers.
    let mut read = read.body;
    assert!(read["health"].is_object(), "{read}");
    read.as_object_mut().unwrap().remove("health");
    assert_eq!(read, patched.body);
    s.daemon.stop().await.unwrap();
}
