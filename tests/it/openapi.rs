//! The OpenAPI document: it is OpenAPI 3.1, it describes exactly the routes the router
//! has, a running herald serves it byte for byte, and what herald answers on each route is
//! a status the document lists for it.

use std::collections::BTreeSet;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::api_client::Api;
use crate::daemon::{test_config, InProcess};
use crate::fixtures;
use crate::support;

const KEY: &str = "openapi-test-key";

fn document() -> Value {
    serde_json::from_str(herald::api::openapi::DOCUMENT).expect("the checked-in document is JSON")
}

fn operations() -> BTreeSet<(String, String)> {
    herald::api::openapi::operations(&document())
        .into_iter()
        .collect()
}

async fn start() -> (InProcess, mongodb::Database) {
    let (uri, name, db) = fixtures::database("openapi").await;
    let mut config = test_config(&uri, &name, support::test_ca_pem_path());
    config.api_key = Some(KEY.to_owned());
    (InProcess::start(config).await, db)
}

#[test]
fn the_document_is_openapi_3_1_with_the_error_schema() {
    let doc = document();
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1."),
        "openapi: {}",
        doc["openapi"]
    );
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], json!(["error"]));
    assert_eq!(
        error["properties"]["error"]["required"],
        json!(["code", "message"])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
}

#[test]
fn every_route_of_the_router_is_documented_and_every_documented_route_exists() {
    let routed: BTreeSet<(String, String)> = herald::api::ROUTES
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    let documented = operations();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from openapi.json: {undocumented:?}; documented but not routed: {unrouted:?}"
    );
}

#[test]
fn every_operation_documents_its_parameters_and_error_answers() {
    let doc = document();
    for (method, path) in operations() {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let what = format!("{method} {path}");
        let responses = op["responses"].as_object().expect("responses");
        // Each `{param}` of the path is declared (directly or by reference).
        let declared: Vec<String> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| match p["$ref"].as_str() {
                        Some(r) => doc
                            .pointer(r.trim_start_matches('#'))
                            .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
                            .unwrap_or_default(),
                        None => p["name"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(|c| c == '{' || c == '}');
            assert!(
                declared.iter().any(|d| d == name),
                "{what}: path parameter {name} is not declared"
            );
        }
        let public = op.get("security") == Some(&json!([]));
        if path.starts_with("/v1/") && !public {
            assert!(responses.contains_key("401"), "{what}: no 401");
            // Everything but the catalog (built in memory at start) reads MongoDB.
            if path != "/v1/webhooks/events" {
                assert!(responses.contains_key("503"), "{what}: no 503");
            }
        }
        if op.get("requestBody").is_some() && !path.contains("/retry") {
            for status in ["400", "413"] {
                assert!(responses.contains_key(status), "{what}: no {status}");
            }
        }
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{what}: no success answer"
        );
    }
}

/// Every answer through a running herald — happy or not — is documented for its route.
#[tokio::test]
async fn herald_serves_the_document_and_answers_only_documented_statuses() {
    let (herald, _db) = start().await;

    // Served byte for byte, without an API key.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .get(
            format!("http://{}/openapi.json", herald.listen)
                .parse()
                .unwrap(),
        )
        .await
        .expect("herald answers");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "content type"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes.as_ref(), herald::api::openapi::DOCUMENT.as_bytes());

    // Each operation with made-up ids and an empty object body, with and without the key.
    let doc = document();
    let api = Api::new(herald.listen, Some(KEY));
    let anonymous = api.anonymous();
    for (method, path) in operations() {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let documented: BTreeSet<u16> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|s| s.parse().ok())
            .collect();
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "zz_missing" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let body = matches!(method.as_str(), "POST" | "PATCH").then(|| json!({}));
        for (who, client) in [("with the key", &api), ("without a key", &anonymous)] {
            let answer = client.send(&method, &concrete, body.clone()).await;
            assert!(
                documented.contains(&answer.status),
                "{method} {concrete} {who} answered {} which the document does not list ({documented:?}); body: {}",
                answer.status,
                answer.body
            );
            if answer.status >= 400 {
                crate::api_client::assert_error(&answer, answer.status);
            }
        }
    }

    // A method a path does not have: 405 with Allow, the documented error shape.
    let answer = api.send("PUT", "/v1/webhooks", Some(json!({}))).await;
    crate::api_client::assert_error(&answer, 405);
    assert!(answer.headers.contains_key("allow"));
    assert!(doc["components"]["responses"]["MethodNotAllowed"].is_object());
    herald.stop().await.unwrap();
}
