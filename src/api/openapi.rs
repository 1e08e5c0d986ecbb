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

use serde_json::{json, Value};

use super::catalog::Catalog;
use super::Body;

/// The checked-in document, byte for byte.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// Marks a schema whose `enum` is the event catalog: the checked-in document lists the
/// built-in types; a daemon with `[[event-types]]` of its own serves its whole catalog.
pub const CATALOG_MARK: &str = "x-herald-event-catalog";

/// `GET /openapi.json`: the document, as checked in, with `content-type: application/json`
/// — byte for byte when the catalog is the built-in one; otherwise with every
/// [`CATALOG_MARK`]ed `enum` listing this daemon's catalog.
pub fn serve(catalog: &Catalog) -> Response<Body> {
    let types: Vec<&str> = catalog.types().map(|t| t.event_type.as_str()).collect();
    let body = match serde_json::from_str::<Value>(DOCUMENT) {
        Ok(mut document) if catalog_enum(&document).is_some_and(|e| e != types) => {
            fill_catalog(&mut document, &types);
            Bytes::from(document.to_string())
        }
        _ => Bytes::from_static(DOCUMENT.as_bytes()),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The `enum` of the first [`CATALOG_MARK`]ed schema.
fn catalog_enum(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::Object(map) => {
            if map.contains_key(CATALOG_MARK) {
                return map
                    .get("enum")
                    .and_then(Value::as_array)
                    .map(|e| e.iter().filter_map(Value::as_str).collect());
            }
            map.values().find_map(catalog_enum)
        }
        Value::Array(items) => items.iter().find_map(catalog_enum),
        _ => None,
    }
}

/// Sets every [`CATALOG_MARK`]ed `enum` to `types`.
fn fill_catalog(value: &mut Value, types: &[&str]) {
    match value {
        Value::Object(map) => {
            if map.contains_key(CATALOG_MARK) {
                map.insert("enum".into(), json!(types));
            }
            map.values_mut().for_each(|v| fill_catalog(v, types));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| fill_catalog(v, types)),
        _ => {}
    }
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
    fn the_catalog_enums_are_the_built_in_catalog() {
        let built_in = Catalog::new(&[]);
        let types: Vec<&str> = built_in.types().map(|t| t.event_type.as_str()).collect();
        assert_eq!(catalog_enum(&document()), Some(types));
    }

    #[test]
    fn a_daemon_with_its_own_event_types_documents_them() {
        let custom = Catalog::new(&[crate::config::EventTypeDef {
            event_type: "report.generated".into(),
            description: String::new(),
            payload_fields: Vec::new(),
        }]);
        let response = serve(&custom);
        let body =
            futures::executor::block_on(http_body_util::BodyExt::collect(response.into_body()))
                .unwrap()
                .to_bytes();
        let served: Value = serde_json::from_slice(&body).unwrap();
        let types = catalog_enum(&served).unwrap();
        assert!(types.contains(&"report.generated") && types.contains(&"object.created"));
    }

    #[test]
    fn served_with_the_exact_bytes() {
        let response = serve(&Catalog::new(&[]));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[hyper::header::CONTENT_TYPE],
            "application/json"
        );
    }
}
