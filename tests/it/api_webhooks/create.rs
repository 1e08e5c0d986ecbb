//! Creating a webhook: what the answer holds, the contract's document it stores, and
//! that reading it back never shows a secret.

use herald_actors::signing::SigningKey;
use serde_json::{json, Value};

use super::{create, path, setup, stored};
use crate::fixtures::*;

#[tokio::test]
async fn creating_a_webhook_answers_its_id_and_secret_and_stores_the_contract_document() {
    let s = setup("api_wh_create", |_| {}).await;

    let created = create(
        &s.api,
        json!({
            "url": "https://hooks.example.com/herald",
            "event_types": ["collection.documents.written", "object.created"],
            "name": "search-cache",
            "headers": {"X-Mixpeek-Secret": "shared-secret"},
        }),
    )
    .await;
    let id = created["webhook_id"].as_str().unwrap();
    assert!(id.starts_with("wh_") && id.len() == 19, "{id}");
    assert!(id[3..]
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    SigningKey::parse(secret).expect("the generated secret is usable");
    assert_eq!(created["url"], "https://hooks.example.com/herald");
    assert_eq!(
        created["event_types"],
        json!(["collection.documents.written", "object.created"])
    );
    assert_eq!(created["name"], "search-cache");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["rate_limit_per_second"], Value::Null);
    assert_eq!(created["headers"]["X-Mixpeek-Secret"], "********");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(created["created_at"], created["updated_at"]);

    // The document is the contract's, readable by anything else that uses the collection.
    let document = stored(&s.db, id).await.expect("stored");
    assert_eq!(
        document.get_str("url").unwrap(),
        "https://hooks.example.com/herald"
    );
    assert_eq!(document.get_str("secret").unwrap(), secret);
    assert_eq!(
        document
            .get_document("headers")
            .unwrap()
            .get_str("X-Mixpeek-Secret")
            .unwrap(),
        "shared-secret"
    );
    assert!(document.get_bool("enabled").unwrap());
    assert!(!document.contains_key("rate_limit_per_second"));
    assert_eq!(document.get_str("name").unwrap(), "search-cache");
    assert!(document.get_datetime("created_at").is_ok());
    assert!(document.get_datetime("updated_at").is_ok());

    // Everything given is kept, the secret included.
    let given = create(
        &s.api,
        json!({
            "url": "https://hooks.example.com/other",
            "event_types": ["*"],
            "secret": SECRET,
            "enabled": false,
            "rate_limit_per_second": 20,
        }),
    )
    .await;
    assert_eq!(given["secret"], SECRET);
    assert_eq!(given["enabled"], false);
    assert_eq!(given["rate_limit_per_second"], 20);
    assert_eq!(given["name"], Value::Null);
    assert_eq!(given["headers"], json!({}));
    assert_ne!(given["webhook_id"], created["webhook_id"]);
    let document = stored(&s.db, given["webhook_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(document.get_i32("rate_limit_per_second").unwrap(), 20);
    assert!(!document.get_bool("enabled").unwrap());
    assert!(!document.contains_key("name"));

    // Reading it back never shows the secret.
    let read = s.api.get(&path(&created)).await;
    assert_eq!(read.status, 200);
    assert!(read.body.get("secret").is_none());
    assert!(!read.body.to_string().contains(secret));
    assert!(!read.body.to_string().contains("shared-secret"));

    // Webhooks written straight into MongoDB are served too, whatever their id.
    insert_webhook(
        &s.db,
        webhook("hand made/1", "https://hooks.example.com/hand", &["*"]),
    )
    .await;
    let hand = s.api.get("/v1/webhooks/hand%20made%2F1").await;
    assert_eq!(hand.status, 200, "{}", hand.body);
    assert_eq!(hand.body["webhook_id"], "hand made/1");
    assert_eq!(hand.body["headers"]["X-Mixpeek-Secret"], "********");
    assert_eq!(hand.body["enabled"], true);
    assert_eq!(hand.body["updated_at"], Value::Null);
    assert!(!hand.body.to_string().contains(SECRET));
    let all = s.api.get("/v1/webhooks").await;
    assert_eq!(all.body["results"].as_array().unwrap().len(), 3);
    s.daemon.stop().await.unwrap();
}
