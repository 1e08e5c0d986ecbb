//! With an API key configured, every webhook route refuses callers without it.

use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

use super::{create, path, setup, stored};
use crate::api_client::assert_error;

#[tokio::test]
async fn with_an_api_key_every_webhook_route_requires_it() {
    let s = setup("api_wh_auth", |config| {
        config.api_key = Some("correct-horse-battery".into());
    })
    .await;
    let keyed = &s.api;
    let anonymous = keyed.anonymous();
    let existing = create(
        keyed,
        json!({"url": "https://hooks.example.com/h", "event_types": ["*"]}),
    )
    .await;
    let one = path(&existing);
    let rotate = format!("{one}/rotate-secret");
    let body = json!({"url": "https://hooks.example.com/h", "event_types": ["*"]});
    let routes: Vec<(&str, &str, Option<Value>)> = vec![
        ("POST", "/v1/webhooks", Some(body.clone())),
        ("GET", "/v1/webhooks", None),
        ("GET", "/v1/webhooks/events", None),
        ("GET", &one, None),
        ("PATCH", &one, Some(json!({"enabled": false}))),
        ("POST", &rotate, Some(json!({}))),
        ("DELETE", &one, None),
    ];
    for (method, route, body) in &routes {
        let none = anonymous.send(method, route, body.clone()).await;
        assert_error(&none, 401);
        let wrong = anonymous
            .raw(
                method,
                route,
                body.as_ref().map(Value::to_string).unwrap_or_default(),
                &[("authorization", "Bearer correct-horse-batterx")],
            )
            .await;
        assert_error(&wrong, 401);
        let bare = anonymous
            .raw(
                method,
                route,
                "",
                &[("authorization", "correct-horse-battery")],
            )
            .await;
        assert_error(&bare, 401);
    }
    // Nothing was created or changed without the key.
    let document = stored(&s.db, existing["webhook_id"].as_str().unwrap())
        .await
        .unwrap();
    assert!(document.get_bool("enabled").unwrap());
    assert_eq!(
        document.get_str("secret").unwrap(),
        existing["secret"].as_str().unwrap()
    );
    assert_eq!(
        s.db.collection::<Document>("webhooks")
            .count_documents(doc! {})
            .await
            .unwrap(),
        1
    );

    // With the key, each works.
    for ((method, route, body), expected) in routes.iter().zip([201, 200, 200, 200, 200, 200, 204])
    {
        let response = keyed.send(method, route, body.clone()).await;
        assert_eq!(
            response.status, expected,
            "{method} {route}: {}",
            response.body
        );
    }
    // Health stays open.
    assert_eq!(anonymous.get("/healthz").await.status, 200);
    s.daemon.stop().await.unwrap();
}
