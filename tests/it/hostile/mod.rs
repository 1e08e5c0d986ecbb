//! Hostile input on every route (issue 6 §7): bodies over the 1 MiB limit (announced and
//! chunked), JSON nested 100,000 levels deep, invalid UTF-8, JSON that is not an object,
//! and bodies of another content type. Every answer is a 4xx with the contract's
//! `{"error": {"code", "message"}}` body — or, on a route that reads no body, exactly its
//! answer without one — never a 5xx, never a panic, and `/healthz` still answers 200 after.
//!
//! The routes come from `herald::api::ROUTES`, so a new route is covered as soon as it is
//! routed (a new kind of path parameter makes [`path_for`] fail until it gets an id). The
//! inbound Mux route gets every body correctly signed, so it is the body that is judged,
//! not the signature.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald::api::{MAX_BODY_BYTES, ROUTES};
use herald::inbound::signature;
use mongodb::bson::{doc, DateTime, Document};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api_client::{Api, ApiResponse};
use crate::daemon::{test_config, InProcess};
use crate::fixtures::database;

const API_KEY: &str = "hostile-api-key";
const MUX_SECRET: &str = "hostile-mux-secret";
/// How deep the nested JSON goes.
const DEPTH: usize = 100_000;

/// Routes that read a JSON object from their body; every other route ignores its body.
/// Each must be in `ROUTES` (checked), so this list cannot silently go stale.
const BODY_ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/webhooks"),
    ("PATCH", "/v1/webhooks/{webhook_id}"),
    ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"),
    ("POST", "/v1/webhooks/{webhook_id}/recover"),
    ("POST", "/v1/events"),
    ("POST", "/v1/connections"),
    ("POST", "/v1/webhooks/mux/{connection_id}"),
];

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

/// The ids path parameters are filled with: one webhook, one delivery and one connection
/// that exist.
struct Ids {
    webhook: String,
    delivery: String,
    connection: String,
}

/// `pattern` with its `{…}` parameters replaced by existing ids.
fn path_for(pattern: &str, ids: &Ids) -> String {
    let path = pattern
        .replace("{webhook_id}", &ids.webhook)
        .replace("{delivery_id}", &ids.delivery)
        .replace("{connection_id}", &ids.connection);
    assert!(
        !path.contains('{'),
        "{pattern}: a new path parameter; give tests/it/hostile.rs an id for it"
    );
    path
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

/// herald with an API key, one webhook, one (succeeded) delivery and one Mux connection.
async fn setup() -> (InProcess, Api, Ids) {
    let (uri, name, db) = database("hostile").await;
    let mut config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    config.api_key = Some(API_KEY.into());
    let daemon = InProcess::start(config).await;
    let api = Api::new(daemon.listen, Some(API_KEY));

    let webhook = api
        .post(
            "/v1/webhooks",
            json!({"url": "https://127.0.0.1:9/hostile", "event_types": ["*"], "enabled": false}),
        )
        .await;
    assert_eq!(webhook.status, 201, "{}", webhook.body);
    let webhook = webhook.body["webhook_id"].as_str().unwrap().to_owned();
    let connection = api
        .post(
            "/v1/connections",
            json!({"provider": "mux", "bucket_id": "bkt_hostile", "webhook_secret": MUX_SECRET}),
        )
        .await;
    assert_eq!(connection.status, 201, "{}", connection.body);
    let connection = connection.body["connection_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let delivery = format!("evt_hostile:{webhook}");
    let now = DateTime::now();
    db.collection::<Document>("deliveries")
        .insert_one(doc! {
            "_id": &delivery,
            "event_id": "evt_hostile",
            "webhook_id": &webhook,
            "event_type": "object.created",
            "status": "succeeded",
            "attempts": 1,
            "attempt_log": [{"at": now, "status_code": 200, "duration_ms": 3}],
            "created_at": now,
            "completed_at": now,
        })
        .await
        .unwrap();
    let ids = Ids {
        webhook,
        delivery,
        connection,
    };
    (daemon, api, ids)
}

/// Every route in the table, deletes last (so the ids stay valid for the others).
fn routes() -> Vec<(&'static str, &'static str)> {
    for route in BODY_ROUTES {
        assert!(
            ROUTES.contains(route),
            "{route:?} is not in ROUTES any more"
        );
    }
    let mut routes = ROUTES.to_vec();
    routes.sort_by_key(|(method, _)| *method == "DELETE");
    routes
}

/// The daemon still answers, and still does its job.
async fn assert_healthy(api: &Api) {
    let health = api.get("/healthz").await;
    assert_eq!(
        health.status, 200,
        "/healthz after hostile input: {}",
        health.body
    );
    let created = api
        .post(
            "/v1/webhooks",
            json!({"url": "https://127.0.0.1:9/after", "event_types": ["*"], "enabled": false}),
        )
        .await;
    assert_eq!(
        created.status, 201,
        "create after hostile input: {}",
        created.body
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
            match (case.kind, baseline) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_over_the_limit_are_cut_off_with_413_on_every_route() {
    let (daemon, api, ids) = setup().await;
    for (method, pattern) in routes() {
        let path = path_for(pattern, &ids);
        let body = vec![b'['; 4 * MAX_BODY_BYTES];
        let (status, body) = upload(daemon.listen, method, &path, &body, Framing::Chunked).await;
        let what = format!("{method} {path} with a chunked body over 1 MiB");
        assert_eq!(status, 413, "{what}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{what}: {body}"
        );
    }
    assert_healthy(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mux_signature_headers_are_401_and_change_nothing() {
    let (_daemon, api, ids) = setup().await;
    let path = format!("/v1/webhooks/mux/{}", ids.connection);
    let body = br#"{"type":"video.asset.deleted","id":"e1","data":{"id":"asset_1"}}"#;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = signature::sign(MUX_SECRET, now, body);
    let v1 = good.split_once(",v1=").unwrap().1.to_owned();
    let many = vec![format!("v1={v1}"); 1_000].join(",");
    let long = format!("t={now},{}", "x".repeat(60_000));
    let headers: Vec<(&str, Vec<u8>)> = vec![
        ("none", Vec::new()),
        ("not UTF-8", b"t=1,v1=\xff\xfe".to_vec()),
        ("garbage", b"garbage".to_vec()),
        (
            "a stale timestamp",
            signature::sign(MUX_SECRET, now - 3_600, body).into(),
        ),
        (
            "a far-future timestamp",
            signature::sign(MUX_SECRET, u64::MAX / 2, body).into(),
        ),
        (
            "a huge timestamp",
            format!("t={},v1={v1}", "9".repeat(400)).into(),
        ),
        ("1,000 signatures", format!("t={now},{many}").into()),
        ("60 kB of one part", long.into()),
        (
            "another secret",
            signature::sign("not the secret", now, body).into(),
        ),
        ("only separators", b",,,=,=,,".to_vec()),
    ];
    for (name, value) in headers {
        let mut builder = hyper::Request::post(format!("http://{}{path}", _daemon.listen))
            .header("content-type", "application/json");
        if !value.is_empty() {
            builder = builder.header(
                "mux-signature",
                hyper::header::HeaderValue::from_bytes(&value).unwrap(),
            );
        }
        let (status, answer) = send_request(builder, Bytes::from_static(body)).await;
        let what = format!("a Mux-Signature with {name}");
        // A header over hyper's limits may be refused by hyper itself (431, no JSON body).
        if status == 431 {
            continue;
        }
        assert_eq!(status, 401, "{what}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        assert_eq!(
            answer["error"]["code"], "invalid_signature",
            "{what}: {answer}"
        );
    }
    assert_healthy(&api).await;
}

/// Sends one request with a plain hyper client; the status and the body as text.
async fn send_request(builder: hyper::http::request::Builder, body: Bytes) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let response = client
        .request(builder.body(Full::new(body)).unwrap())
        .await
        .expect("herald answers");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// How [`upload`] frames its body.
#[derive(Clone, Copy, PartialEq)]
enum Framing {
    /// `content-length`: herald can refuse it from the head alone.
    Length,
    /// `transfer-encoding: chunked` in 64 KiB chunks: herald must count as it reads.
    Chunked,
}

/// Sends `body` over a raw connection while reading the answer; the status and the
/// response body. herald must answer (413) without reading more than 1 MiB, whatever the
/// client is still sending — so the write side may break, and that is not an error.
async fn upload(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    framing: Framing,
) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let framing_header = match framing {
        Framing::Length => format!("content-length: {}", body.len()),
        Framing::Chunked => "transfer-encoding: chunked".to_owned(),
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {API_KEY}\r\n\
         content-type: application/json\r\n{framing_header}\r\n\r\n"
    );
    let body = body.to_vec();
    let upload = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        match framing {
            Framing::Length => writer.write_all(&body).await?,
            Framing::Chunked => {
                for chunk in body.chunks(64 * 1024) {
                    writer
                        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .await?;
                    writer.write_all(chunk).await?;
                    writer.write_all(b"\r\n").await?;
                }
                writer.write_all(b"0\r\n\r\n").await?;
            }
        }
        std::io::Result::Ok(writer)
    });
    // Read until the head and its `content-length` body have arrived (herald answers
    // before the upload ends, so the connection need not close on its own).
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = reader.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if let Some(complete) = complete_response(&answer) {
                return complete;
            }
        }
        complete_response(&answer).unwrap_or_else(|| {
            panic!(
                "{method} {path}: no complete answer: {:?}",
                String::from_utf8_lossy(&answer)
            )
        })
    };
    let result = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within 30 s"));
    upload.abort();
    result
}

/// The status and body of a complete HTTP/1.1 response with a `content-length`, if `raw`
/// holds one.
fn complete_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (body.len() >= length).then(|| (status, body[..length].to_owned()))
}
