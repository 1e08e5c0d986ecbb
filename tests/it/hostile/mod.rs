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

use std::time::Duration;

use herald::api::ROUTES;
use mongodb::bson::{doc, DateTime, Document};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api_client::Api;
use crate::daemon::{test_config, InProcess};
use crate::fixtures::{complete_response, database};

mod bodies;
mod chunked;
mod keep_alive;
mod mux_signature;

const API_KEY: &str = "hostile-api-key";
const MUX_SECRET: &str = "hostile-mux-secret";

/// Routes that read a JSON object from their body; every other route ignores its body.
/// Each must be in `ROUTES` (checked), so this list cannot silently go stale.
const BODY_ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/webhooks"),
    ("PATCH", "/v1/webhooks/{webhook_id}"),
    ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"),
    ("POST", "/v1/webhooks/{webhook_id}/recover"),
    ("POST", "/v1/events"),
    ("POST", "/v1/events/batch"),
    ("POST", "/v1/connections"),
    ("POST", "/v1/webhooks/mux/{connection_id}"),
    ("POST", "/v1/keys"),
];

/// The ids path parameters are filled with: one webhook, one delivery, one connection and
/// one API key that exist.
struct Ids {
    webhook: String,
    delivery: String,
    connection: String,
    key: String,
}

/// `pattern` with its `{…}` parameters replaced by existing ids.
fn path_for(pattern: &str, ids: &Ids) -> String {
    let path = pattern
        .replace("{webhook_id}", &ids.webhook)
        .replace("{delivery_id}", &ids.delivery)
        .replace("{connection_id}", &ids.connection)
        .replace("{key_id}", &ids.key)
        // The inspector's assets (a stale version: a 404 that reads no body either).
        .replace("{version}", "000000000000")
        .replace("{asset}", "app.js");
    assert!(
        !path.contains('{'),
        "{pattern}: a new path parameter; give tests/it/hostile/mod.rs an id for it"
    );
    path
}

/// herald with an API key, one webhook, one (succeeded) delivery, one Mux connection and one
/// API key made through the API.
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
    let key = api.post("/v1/keys", json!({"role": "read"})).await;
    assert_eq!(key.status, 201, "{}", key.body);
    let key = key.body["key_id"].as_str().unwrap().to_owned();
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
        key,
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
