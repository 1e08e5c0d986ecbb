//! API request bodies (src/api): the JSON reader every route shares (`ApiRequest::json`)
//! and the validation of each route that takes a body — webhooks create, patch and
//! rotate-secret, events publish, connections create, recover — everything those routes do
//! before touching MongoDB. Any input is a value or a 4xx `ApiError`, never a panic and
//! never a 5xx. The path-id decoder and pagination cursors, also caller-controlled, too.

#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use herald::api::catalog::Catalog;
use herald::api::request::{cursor, path_id};
use herald::api::{connections, deliveries, events, webhooks, ApiError, ApiRequest};
use libfuzzer_sys::fuzz_target;

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::new(&[]))
}

fn client_error<T>(result: Result<T, ApiError>) {
    if let Err(e) = result {
        assert!(
            e.status.is_client_error(),
            "a body must be refused with a 4xx, got {} {}: {}",
            e.status,
            e.code,
            e.message
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let (parts, ()) = hyper::Request::new(()).into_parts();
    let req = ApiRequest {
        parts,
        query: HashMap::new(),
        body: Bytes::copy_from_slice(data),
    };
    client_error(req.json::<serde_json::Value>());
    client_error(webhooks::create_document(catalog(), &req));
    client_error(webhooks::patch_update(catalog(), &req));
    client_error(webhooks::rotation_secret(&req));
    client_error(events::publish_document(catalog(), &req));
    client_error(connections::validate_create(&req));
    client_error(deliveries::recover_since(&req));

    // Path segments and cursors are caller-controlled text too.
    if let Ok(text) = std::str::from_utf8(data) {
        client_error(path_id(text));
        client_error(cursor::decode(text));
    }
});
