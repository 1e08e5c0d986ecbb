//! The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`.
//!
//! The document is checked in (`src/api/openapi.json`) and compiled into the binary, so
//! what is served is exactly what is reviewed. It describes every route of
//! [`super::ROUTES`] — methods, path and query parameters, request bodies, answers and the
//! error shape with each status a route can give — and a test (`tests/it/openapi.rs`) fails
//! when the router and the document disagree. Edit the JSON by hand when a route changes.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use super::Body;

/// The checked-in document, byte for byte.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json`: the document, as checked in, with `content-type: application/json`.
pub fn serve() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(DOCUMENT.as_bytes())));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Every `(METHOD, path)` operation the document describes, in document order.
pub fn operations(document: &serde_json::Value) -> Vec<(String, String)> {
    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut out = Vec::new();
    if let Some(paths) = document["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                if item.get(*method).is_some() {
                    out.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn document() -> serde_json::Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    }

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let documented: BTreeSet<(String, String)> = operations(&document()).into_iter().collect();
        let routed: BTreeSet<(String, String)> = super::super::ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, routed);
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = DOCUMENT;
        let mut rest = text;
        while let Some(at) = rest.find("\"$ref\": \"#/") {
            rest = &rest[at + "\"$ref\": \"#/".len()..];
            let end = rest.find('"').unwrap();
            let pointer = format!("/{}", &rest[..end]);
            assert!(doc.pointer(&pointer).is_some(), "dangling $ref {pointer}");
        }
    }

    #[test]
    fn served_with_the_exact_bytes() {
        let response = serve();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[hyper::header::CONTENT_TYPE],
            "application/json"
        );
    }
}
