//! Bad credentials and bad tenancy input: 4xx JSON errors that name the field, never a 5xx.

use serde_json::json;

use super::{make_key, setup};
use crate::api_client::assert_error;

#[tokio::test]
async fn bad_keys_namespaces_and_times_are_4xx_naming_the_field() {
    let s = setup("tenancy_bad_input").await;
    let listen = s.daemon.listen;
    let anonymous = s.operator.anonymous();

    // Keys: wrong prefix, well-formed but unknown, no scheme; Bearer in any case works.
    for header in [
        "Bearer sk_0123456789abcdef0123456789abcdef0123456789abcdef",
        "Bearer hk_0123456789abcdef0123456789abcdef0123456789abcdef",
        "Bearer hk_short",
        "Token operator-bootstrap-key",
    ] {
        let answer = anonymous
            .raw("GET", "/v1/webhooks", "", &[("authorization", header)])
            .await;
        assert!(
            assert_error(&answer, 401).contains("Authorization"),
            "{header}"
        );
    }
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let header = format!("{scheme} {}", super::OPERATOR);
        let answer = anonymous
            .raw("GET", "/v1/webhooks", "", &[("authorization", &header)])
            .await;
        assert_eq!(answer.status, 200, "{scheme}: {}", answer.body);
    }

    // Namespace ids: odd characters, huge, empty, wrong type; in bodies and in queries.
    let huge = "n".repeat(10_000);
    for namespace in [
        json!("a b"),
        json!("ns/../x"),
        json!("{\"$ne\":1}"),
        json!(huge),
        json!(""),
        json!(7),
    ] {
        for (path, body) in [
            (
                "/v1/webhooks",
                json!({"url": "https://hooks.example.com/h", "event_types": ["*"], "namespace_id": namespace}),
            ),
            (
                "/v1/connections",
                json!({"provider": "mux", "bucket_id": "b", "webhook_secret": "s", "namespace_id": namespace}),
            ),
            (
                "/v1/keys",
                json!({"role": "read", "namespace_id": namespace}),
            ),
        ] {
            let answer = s.operator.post(path, body).await;
            assert!(
                (400..500).contains(&answer.status),
                "{path} {namespace}: {} {}",
                answer.status,
                answer.body
            );
            assert!(
                assert_error(&answer, answer.status).contains("namespace_id"),
                "{path}: {}",
                answer.body
            );
        }
    }
    for query in [
        "namespace_id=a%20b",
        &format!("namespace_id={}", "n".repeat(100)),
    ] {
        for path in [
            "/v1/webhooks",
            "/v1/deliveries",
            "/v1/connections",
            "/v1/audit",
            "/v1/keys",
        ] {
            let answer = s.operator.get(&format!("{path}?{query}")).await;
            assert!(
                assert_error(&answer, 400).contains("namespace_id"),
                "{path}?{query}"
            );
        }
    }
    // A key's role must be one of the two.
    let role = s.operator.post("/v1/keys", json!({"role": "owner"})).await;
    assert!(assert_error(&role, 422).contains("role"));
    let missing = s.operator.post("/v1/keys", json!({})).await;
    assert!(assert_error(&missing, 422).contains("role"));

    // Audit times.
    for (param, value) in [
        ("since", "yesterday"),
        ("until", "2026-13-01T00:00:00Z"),
        ("since", ""),
    ] {
        let answer = s.operator.get(&format!("/v1/audit?{param}={value}")).await;
        assert!(
            assert_error(&answer, 400).contains(param),
            "{param}={value}"
        );
    }
    let unknown = s.operator.get("/v1/audit?actor=me").await;
    assert!(assert_error(&unknown, 400).contains("actor"));

    // A revoked key.
    let (key_id, holder) = make_key(&s.operator, listen, None, "admin").await;
    assert_eq!(holder.get("/v1/webhooks").await.status, 200);
    assert_eq!(
        s.operator
            .delete(&format!("/v1/keys/{key_id}"))
            .await
            .status,
        204
    );
    let revoked = holder.get("/v1/webhooks").await;
    assert!(assert_error(&revoked, 401).contains("revoked"));
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn without_an_operator_key_a_presented_key_is_still_checked() {
    let (uri, name, _db) = crate::fixtures::database("tenancy_keyless").await;
    let config = crate::daemon::test_config(&uri, &name, crate::support::test_ca_pem_path());
    let daemon = crate::daemon::InProcess::start(config).await;
    let open = crate::api_client::Api::new(daemon.listen, None);
    // No key: the operator's, as before keys existed.
    assert_eq!(open.get("/v1/webhooks").await.status, 200);
    let (key_id, reader) = make_key(&open, daemon.listen, Some("ns_k"), "read").await;
    assert_eq!(reader.get("/v1/webhooks").await.status, 200);
    let write = reader
        .post(
            "/v1/webhooks",
            json!({"url": "https://hooks.example.com/h", "event_types": ["*"]}),
        )
        .await;
    assert_error(&write, 403);
    let unknown = crate::api_client::Api::new(
        daemon.listen,
        Some("hk_0123456789abcdef0123456789abcdef0123456789abcdef"),
    );
    assert_error(&unknown.get("/v1/webhooks").await, 401);
    assert_eq!(open.delete(&format!("/v1/keys/{key_id}")).await.status, 204);
    assert!(assert_error(&reader.get("/v1/webhooks").await, 401).contains("revoked"));
    // The keyless write was audited with no key.
    let trail = open.get("/v1/audit?action=key.revoke").await;
    assert_eq!(trail.body["results"][0]["key_id"], serde_json::Value::Null);
    daemon.stop().await.unwrap();
}
