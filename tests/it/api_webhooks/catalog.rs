//! The event-type catalog: built-in and configured types, and only those can be
//! subscribed to.

use std::collections::HashSet;

use herald::config::EventTypeDef;
use serde_json::json;

use super::{create, setup};
use crate::api_client::assert_error;

#[tokio::test]
async fn the_catalog_lists_built_in_and_configured_event_types() {
    let s = setup("api_wh_catalog", |config| {
        config.event_types = vec![
            EventTypeDef {
                event_type: "report.generated".into(),
                description: "A report finished rendering".into(),
                payload_fields: vec!["report_id".into(), "url".into()],
            },
            EventTypeDef {
                event_type: "object.created".into(),
                description: "An asset landed in a bucket".into(),
                payload_fields: vec!["bucket_id".into(), "object_id".into()],
            },
        ];
    })
    .await;
    let response = s.api.get("/v1/webhooks/events").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let results = response.body["results"].as_array().unwrap();
    let entry = |name: &str| {
        results
            .iter()
            .find(|e| e["event_type"] == name)
            .unwrap_or_else(|| panic!("{name} missing from the catalog"))
    };
    for (name, fields) in [
        (
            "collection.documents.written",
            &["collection_id", "document_ids", "index_signature"][..],
        ),
        (
            "object.updated",
            &["bucket_id", "object_id", "metadata"][..],
        ),
        ("object.deleted", &["bucket_id", "object_id"][..]),
        (
            "batch.completed",
            &["batch_id", "collection_ids", "counts"][..],
        ),
        (
            "cluster.completed",
            &["cluster_id", "run_id", "artifact_uris"][..],
        ),
        (
            "taxonomy.materialized",
            &["taxonomy_id", "collection_id", "updated_document_count"][..],
        ),
        ("report.generated", &["report_id", "url"][..]),
    ] {
        assert_eq!(entry(name)["payload_fields"], json!(fields), "{name}");
        assert!(!entry(name)["description"].as_str().unwrap().is_empty());
    }
    for name in [
        "webhook.endpoint.failing",
        "webhook.endpoint.recovered",
        "delivery.exhausted",
    ] {
        assert!(!entry(name)["description"].as_str().unwrap().is_empty());
    }
    // The operator's definition of a built-in type wins.
    assert_eq!(
        entry("object.created")["description"],
        "An asset landed in a bucket"
    );
    let names: Vec<&str> = results
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.iter().collect::<HashSet<_>>().len(),
        names.len(),
        "listed once each"
    );

    // Configured types can be subscribed to; unknown ones cannot.
    create(
        &s.api,
        json!({"url": "https://hooks.example.com/r", "event_types": ["report.generated"]}),
    )
    .await;
    let message = assert_error(
        &s.api
            .post(
                "/v1/webhooks",
                json!({"url": "https://hooks.example.com/r", "event_types": ["report.exploded"]}),
            )
            .await,
        422,
    );
    assert!(message.contains("event_types"), "{message}");
    s.daemon.stop().await.unwrap();
}
