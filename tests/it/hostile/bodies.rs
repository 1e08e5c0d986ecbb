//! Every route refuses hostile bodies — over 1 MiB, nested 100,000 levels deep, not
//! UTF-8, not a JSON object, of another content type — with a 4xx and the contract's error
//! body (a route that reads no body answers exactly as without one), and herald stays
//! healthy.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald::api::{MAX_BODY_BYTES, ROUTES};
use herald::inbound::signature;
use serde_json::Value;

use super::{assert_healthy, path_for, routes, setup, upload, Framing, BODY_ROUTES, MUX_SECRET};
use crate::api_client::{Api, ApiResponse};

/// How deep the nested JSON goes.
const DEPTH: usize = 100_000;

/// What a hostile body is, and so what a route that reads its body must answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Over [`MAX_BODY_BYTES`]: 413 on every route, whether it reads a body or not.
    Oversized,
    /// Not parseable as JSON (not UTF-8, truncated, another format): 400.
    Malformed,
    /// Nested 100,000 levels deep: 400 (over the parser's depth limit) or 422 (refused at a
    /// shallower level, e.g. an unknown field or a field of another type), never a stack
    /// overflow.
    Deep,
    /// Well-formed JSON that is not an object: 400 or 422.
    NotAnObject,
}

struct Case {
    name: &'static str,
    body: Bytes,
    content_type: &'static str,
    kind: Kind,
}

fn cases() -> Vec<Case> {
    let case = |name, body: Vec<u8>, content_type, kind| Case {
        name,
        body: Bytes::from(body),
        content_type,
        kind,
    };
    let json = "application/json";
    // `{"<field>": <100,000 levels>}`, for fields that routes read as free JSON.
    let deep_in = |field: &str, open: &str, leaf: &str, close: &str| {
        let mut body = format!("{{\"{field}\":").into_bytes();
        body.extend(open.repeat(DEPTH).into_bytes());
        body.extend(leaf.as_bytes());
        body.extend(close.repeat(DEPTH).into_bytes());
        body.push(b'}');
        body
    };
    let mut oversized_object = b"{\"name\":\"".to_vec();
    oversized_object.extend(std::iter::repeat_n(b'x', MAX_BODY_BYTES));
    oversized_object.extend(b"\"}");
    vec![
        case(
            "a JSON object over 1 MiB",
            oversized_object,
            json,
            Kind::Oversized,
        ),
        case(
            "1 MiB + 1 bytes of zeros",
            vec![0; MAX_BODY_BYTES + 1],
            "application/octet-stream",
            Kind::Oversized,
        ),
        case(
            "arrays nested 100,000 deep, never closed",
            "[".repeat(DEPTH).into_bytes(),
            json,
            Kind::Malformed,
        ),
        // Well-formed JSON, and not an object: refused as such (422), without recursing.
        case(
            "closed arrays nested 100,000 deep",
            ["[".repeat(DEPTH), "]".repeat(DEPTH)].concat().into_bytes(),
            json,
            Kind::NotAnObject,
        ),
        case(
            "objects nested 100,000 deep",
            deep_in("x", "{\"a\":", "1", "}"),
            json,
            Kind::Deep,
        ),
        case(
            "data nested 100,000 deep",
            deep_in("data", "{\"a\":", "1", "}"),
            json,
            Kind::Deep,
        ),
        case(
            "event_types nested 100,000 deep",
            deep_in("event_types", "[", "", "]"),
            json,
            Kind::Deep,
        ),
        case(
            "metadata_filters nested 100,000 deep",
            deep_in("metadata_filters", "{\"a\":", "null", "}"),
            json,
            Kind::Deep,
        ),
        case(
            "bytes that are not UTF-8",
            vec![0xff, 0xfe, 0xfd, 0x80, 0xc3, 0x28],
            json,
            Kind::Malformed,
        ),
        case(
            "an object whose strings are not UTF-8",
            b"{\"\xff\xfe\":\"\xc3\x28\",\"\xed\xa0\x80\":1}".to_vec(),
            json,
            Kind::Malformed,
        ),
        case("a lone surrogate escape", br#"{"\ud800":1}"#.to_vec(), json, Kind::Malformed),
        case("a truncated object", br#"{"event_ty"#.to_vec(), json, Kind::Malformed),
        case("a NUL byte", b"{\0}".to_vec(), json, Kind::Malformed),
        case("an array", br#"["https://example.com/", ["*"]]"#.to_vec(), json, Kind::NotAnObject),
        case("a string", br#""{\"url\":1}""#.to_vec(), json, Kind::NotAnObject),
        case("a number", b"12345678901234567890123456789".to_vec(), json, Kind::NotAnObject),
        case("null", b"null".to_vec(), json, Kind::NotAnObject),
        case("true", b" true ".to_vec(), json, Kind::NotAnObject),
        case(
            "a form-encoded body",
            b"url=https%3A%2F%2Fexample.com%2F&event_types=*".to_vec(),
            "application/x-www-form-urlencoded",
            Kind::Malformed,
        ),
        case(
            "a multipart body",
            b"--b\r\ncontent-disposition: form-data; name=\"url\"\r\n\r\nhttps://example.com/\r\n--b--\r\n"
                .to_vec(),
            "multipart/form-data; boundary=b",
            Kind::Malformed,
        ),
        case("plain text", b"hello, herald".to_vec(), "text/plain", Kind::Malformed),
        case(
            "XML",
            b"<?xml version=\"1.0\"?><webhook url=\"https://example.com/\"/>".to_vec(),
            "application/xml",
            Kind::Malformed,
        ),
    ]
}

fn is_mux(pattern: &str) -> bool {
    pattern.starts_with("/v1/webhooks/mux/")
}

/// The headers of one request: its content type and, on the Mux route, a valid signature
/// of exactly these bytes.
fn headers_for(pattern: &str, body: &[u8], content_type: &str) -> Vec<(String, String)> {
    let mut headers = vec![("content-type".to_owned(), content_type.to_owned())];
    if is_mux(pattern) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        headers.push((
            "mux-signature".to_owned(),
            signature::sign(MUX_SECRET, now.as_secs(), body),
        ));
    }
    headers
}

async fn send(
    api: &Api,
    method: &str,
    path: &str,
    body: Bytes,
    headers: &[(String, String)],
) -> ApiResponse {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    api.raw(method, path, body, &headers).await
}

/// A 4xx with the contract's error body.
fn assert_error_shape(response: &ApiResponse, what: &str) {
    assert!(
        (400..500).contains(&response.status),
        "{what}: expected a 4xx, got {} {}",
        response.status,
        response.body
    );
    let error = &response.body["error"];
    assert!(
        error["code"].is_string() && error["message"].is_string(),
        "{what}: a {} without the {{\"error\": {{\"code\", \"message\"}}}} body: {}",
        response.status,
        response.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_hostile_bodies_with_a_4xx_and_herald_stays_healthy() {
    let (daemon, api, ids) = setup().await;
    let cases = cases();
    let mut checked = 0;
    for (method, pattern) in routes() {
        let path = path_for(pattern, &ids);
        let reads_body = BODY_ROUTES.contains(&(method, pattern));
        for case in &cases {
            let what = format!("{method} {path} with {}", case.name);
            // A route that reads no body answers as it does without one.
            let baseline = if reads_body || case.kind == Kind::Oversized {
                None
            } else {
                let headers = headers_for(pattern, b"", "application/json");
                Some(send(&api, method, &path, Bytes::new(), &headers).await)
            };
            let headers = headers_for(pattern, &case.body, case.content_type);
            let response = if case.kind == Kind::Oversized {
                // herald answers before the upload ends; hyper's client would report the
                // broken pipe instead of the answer, so this one goes over a raw socket.
                let (status, body) =
                    upload(daemon.listen, method, &path, &case.body, Framing::Length).await;
                ApiResponse {
                    status,
                    headers: hyper::HeaderMap::new(),
                    body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
                }
            } else {
                send(&api, method, &path, case.body.clone(), &headers).await
            };
            assert!(
                response.status < 500,
                "{what}: {} {}",
                response.status,
                response.body
            );
            // The inbound provider routes take at most 256 KiB (`--inbound-max-body-bytes`):
            // a larger body of any kind is refused as too large before it is read.
            let inbound_limit = herald::config::Config::default().inbound_max_body_bytes;
            if pattern.starts_with("/v1/webhooks/mux/") && case.body.len() > inbound_limit {
                assert_error_shape(&response, &what);
                assert_eq!(response.status, 413, "{what}: {}", response.body);
                checked += 1;
                continue;
            }
            match (case.kind, baseline) {
                (Kind::Oversized, _)
                    if pattern == "/v1/events/batch"
                        && case.body.len() <= herald::api::events_batch::MAX_BODY_BYTES =>
                {
                    // A batch may be larger than one request: this one is read, and refused
                    // for what it is.
                    assert_error_shape(&response, &what);
                    assert!(
                        (400..500).contains(&response.status),
                        "{what}: {} {}",
                        response.status,
                        response.body
                    );
                }
                (Kind::Oversized, _) => {
                    assert_error_shape(&response, &what);
                    assert_eq!(response.status, 413, "{what}: {}", response.body);
                }
                (_, Some(baseline)) => {
                    assert_eq!(
                        response.status, baseline.status,
                        "{what}: a route that reads no body must answer as without one ({})",
                        baseline.body
                    );
                    if response.status >= 400 {
                        assert_error_shape(&response, &what);
                    }
                }
                (Kind::Malformed, None) => {
                    assert_error_shape(&response, &what);
                    assert_eq!(response.status, 400, "{what}: {}", response.body);
                }
                (Kind::NotAnObject | Kind::Deep, None) => {
                    assert_error_shape(&response, &what);
                    assert!(
                        [400, 422].contains(&response.status),
                        "{what}: {} {}",
                        response.status,
                        response.body
                    );
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROUTES.len() * cases.len());
    assert_healthy(&api).await;
}
