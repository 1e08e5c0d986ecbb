//! Bad requests to the webhook routes: each gets a 4xx that says what is wrong, and
//! changes nothing.

use serde_json::{json, Value};

use super::{create, path, setup};
use crate::api_client::assert_error;
use crate::fixtures::*;

#[tokio::test]
async fn every_bad_request_gets_a_4xx_that_says_what_is_wrong() {
    let s = setup("api_wh_errors", |_| {}).await;
    let api = &s.api;
    let valid = || json!({"url": "https://hooks.example.com/h", "event_types": ["object.created"]});
    let with = |key: &str, value: Value| {
        let mut body = valid();
        body[key] = value;
        body
    };
    let refused = |status: u16, needle: &'static str| {
        move |response: crate::api_client::ApiResponse| {
            let message = assert_error(&response, status);
            assert!(
                message.contains(needle),
                "expected {needle:?} in {message:?}"
            );
        }
    };

    // 422, naming the field.
    let plaintext = api
        .post(
            "/v1/webhooks",
            with("url", json!("http://hooks.example.com/h")),
        )
        .await;
    refused(422, "HTTPS")(plaintext);
    for (body, field) in [
        (with("url", json!("not a url")), "url"),
        (with("url", json!("/relative/path")), "url"),
        (with("url", json!("https://")), "url"),
        (
            with("event_types", json!(["object.exploded"])),
            "event_types",
        ),
        (with("event_types", json!([])), "event_types"),
        (
            with("event_types", json!(["*", "object.created"])),
            "event_types",
        ),
        (
            with("headers", json!({"bad header": "v"})),
            "headers.bad header",
        ),
        (
            with("headers", json!({"X-Ok": "line\nbreak"})),
            "headers.X-Ok",
        ),
        (
            with("headers", json!({"Webhook-Signature": "v1,forged"})),
            "headers.Webhook-Signature",
        ),
        (
            with("headers", json!({"Host": "evil.example"})),
            "headers.Host",
        ),
        (with("headers", json!({"X-A": 5})), "headers.X-A"),
        (with("headers", json!({"$set": "v"})), "headers.$set"),
        (
            with(
                "headers",
                Value::Object((0..51).map(|i| (format!("X-{i}"), json!("v"))).collect()),
            ),
            "headers",
        ),
        (with("secret", json!("hunter2")), "secret"),
        (with("name", json!("x".repeat(201))), "name"),
        (with("name", json!("")), "name"),
        (
            with("rate_limit_per_second", json!(0)),
            "rate_limit_per_second",
        ),
        (
            with("rate_limit_per_second", json!(10_001)),
            "rate_limit_per_second",
        ),
        (
            with("rate_limit_per_second", json!(2.5)),
            "rate_limit_per_second",
        ),
        (with("enabled", json!("yes")), "enabled"),
        (with("url", json!(5)), "url"),
        (with("event_types", json!("object.created")), "event_types"),
        (with("unknown_field", json!(1)), "unknown_field"),
        (json!({"url": "https://hooks.example.com/h"}), "event_types"),
        (json!([1, 2]), "body"),
        (json!("https://hooks.example.com/h"), "body"),
        (json!(null), "body"),
    ] {
        refused(422, field)(api.post("/v1/webhooks", body).await);
    }

    // 400: not JSON at all.
    let json = [("content-type", "application/json")];
    refused(400, "JSON")(api.raw("POST", "/v1/webhooks", "{\"url\": ", &json).await);
    refused(400, "JSON")(api.raw("POST", "/v1/webhooks", "", &json).await);
    // 413: over 1 MiB.
    let huge = format!(
        "{{\"url\": \"https://h.example/\", \"event_types\": [\"*\"], \"name\": \"{}\"}}",
        "x".repeat(1 << 20)
    );
    assert_error(&api.raw("POST", "/v1/webhooks", huge, &json).await, 413);

    // 400: bad list parameters.
    for query in [
        "cursor=not-a-cursor!",
        "limit=100000",
        "limit=0",
        "limit=-1",
        "limit=ten",
        "enabled=maybe",
    ] {
        let response = api.get(&format!("/v1/webhooks?{query}")).await;
        let message = assert_error(&response, 400);
        let name = query.split('=').next().unwrap();
        assert!(message.contains(name), "{query}: {message}");
    }

    // 404: unknown ids.
    let unknown = "/v1/webhooks/wh_ffffffffffffffff";
    assert_error(&api.get(unknown).await, 404);
    assert_error(&api.patch(unknown, json!({"enabled": false})).await, 404);
    assert_error(&api.patch(unknown, json!({"name": "free"})).await, 404);

    // 409: names are unique, on create and on change.
    let mut named = valid();
    named["name"] = json!("taken");
    let first = create(api, named.clone()).await;
    refused(409, "name")(api.post("/v1/webhooks", named).await);
    let mut other = valid();
    other["name"] = json!("other");
    let other = create(api, other).await;
    refused(409, "name")(api.patch(&path(&other), json!({"name": "taken"})).await);
    // Keeping one's own name is no conflict.
    assert_eq!(
        api.patch(&path(&first), json!({"name": "taken"}))
            .await
            .status,
        200
    );

    // PATCH validates like create.
    let one = path(&first);
    for (body, status, needle) in [
        (json!({}), 422, "body"),
        (json!({"url": "http://hooks.example.com/h"}), 422, "HTTPS"),
        (json!({"url": null}), 422, "url"),
        (json!({"event_types": ["nope"]}), 422, "event_types"),
        (json!({"event_types": null}), 422, "event_types"),
        (json!({"enabled": null}), 422, "enabled"),
        (json!({"enabled": "no"}), 422, "enabled"),
        (
            json!({"headers": {"Content-Length": "1"}}),
            422,
            "headers.Content-Length",
        ),
        (
            json!({"rate_limit_per_second": -3}),
            422,
            "rate_limit_per_second",
        ),
        (json!({"secret": SECRET}), 422, "secret"),
        (
            json!({"webhook_id": "wh_0000000000000000"}),
            422,
            "webhook_id",
        ),
    ] {
        refused(status, needle)(api.patch(&one, body).await);
    }
    refused(400, "JSON")(api.raw("PATCH", &one, "{nope", &json).await);
    // None of it changed the webhook.
    let read = api.get(&one).await;
    assert_eq!(read.body["url"], "https://hooks.example.com/h");
    assert_eq!(read.body["event_types"], json!(["object.created"]));
    assert_eq!(read.body["enabled"], true);

    // 405: wrong methods, with Allow.
    for (method, route) in [
        ("PUT", "/v1/webhooks".to_owned()),
        ("DELETE", "/v1/webhooks".to_owned()),
        ("POST", one.clone()),
        ("PUT", one.clone()),
        ("GET", format!("{one}/rotate-secret")),
        ("POST", "/v1/webhooks/events".to_owned()),
    ] {
        let response = api.raw(method, &route, "", &[]).await;
        assert_error(&response, 405);
        assert!(response.headers.contains_key("allow"), "{method} {route}");
    }
    // Only the two valid webhooks exist.
    let all = api.get("/v1/webhooks").await;
    assert_eq!(all.body["results"].as_array().unwrap().len(), 2);
    s.daemon.stop().await.unwrap();
}
