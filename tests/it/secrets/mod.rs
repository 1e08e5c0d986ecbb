//! Secrets at rest and in logs, as an operator running herald with `--secret-key` relies on
//! them: webhook secrets (current and rotated-out), header values (`X-Mixpeek-Secret`) and
//! Mux connection secrets are unreadable in MongoDB, yet receivers get the plaintext header
//! and signatures that verify with the plaintext secret, and Mux's signatures still verify;
//! values an operator wrote into MongoDB in plaintext keep working; and no secret ever shows
//! up in the daemon's log (debug level, JSON), in a list or read answer, or in an error.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use herald::config::Config;
use herald::secrets::SecretBox;
use herald_actors::signing::{verify_header, SigningKey};
use hmac::{Hmac, Mac};
use mongodb::bson::{doc, Document};
use mongodb::Database;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::api_client::{Api, ApiResponse};
use crate::daemon::{test_config, ChildDaemon, InProcess};
use crate::fixtures::*;
use crate::support::{Receiver, RecordedRequest};

const API_KEY: &str = "secrets-test-api-key";
/// The `--secret-key` of these stories, and the same 32 bytes as 64 hex characters.
const KEY: [u8; 32] = [
    0x1f, 0x2e, 0x3d, 0x4c, 0x5b, 0x6a, 0x79, 0x88, 0x97, 0xa6, 0xb5, 0xc4, 0xd3, 0xe2, 0xf1, 0x00,
    0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
];
const DEADLINE: Duration = Duration::from_secs(30);

fn key_hex() -> String {
    KEY.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh `whsec_` secret, distinctive enough to search for.
fn new_whsec() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// A distinctive plaintext credential.
fn distinctive(tag: &str) -> String {
    format!("{tag}-{:016x}", rand::random::<u64>())
}

/// What to search for to know a secret did not leak: the whole value and, for `whsec_`
/// secrets, the base64 key material alone.
fn needles(secret: &str) -> Vec<String> {
    let mut needles = vec![secret.to_owned()];
    if let Some(body) = secret.strip_prefix("whsec_") {
        needles.push(body.to_owned());
    }
    needles
}

/// Panics if any of `secrets` occurs in `haystack` (named `what` in the message).
fn assert_no_secret<S: AsRef<str>>(what: &str, haystack: &str, secrets: &[S]) {
    for secret in secrets {
        for needle in needles(secret.as_ref()) {
            assert!(
                !haystack.contains(&needle),
                "{what} contains the secret {needle:?}"
            );
        }
    }
}

/// The raw document, as MongoDB holds it.
async fn raw(db: &Database, collection: &str, id: &str) -> Document {
    db.collection::<Document>(collection)
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no {collection} document {id}"))
}

/// Every string the document holds, serialized: what someone reading the database sees.
fn dump(document: &Document) -> String {
    format!("{document} {}", serde_json::to_string(document).unwrap())
}

fn sealed_str<'a>(document: &'a Document, path: &[&str]) -> &'a str {
    let mut current = document;
    for key in &path[..path.len() - 1] {
        current = current.get_document(key).unwrap();
    }
    let value = current.get_str(path[path.len() - 1]).unwrap();
    assert!(
        SecretBox::is_sealed(value),
        "{path:?} is not stored encrypted"
    );
    value
}

/// Every encrypted string in the document, however deep.
fn sealed_values(document: &Document) -> Vec<String> {
    fn walk(value: &mongodb::bson::Bson, out: &mut Vec<String>) {
        match value {
            mongodb::bson::Bson::String(s) if SecretBox::is_sealed(s) => out.push(s.clone()),
            mongodb::bson::Bson::Document(d) => d.values().for_each(|v| walk(v, out)),
            mongodb::bson::Bson::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    document.values().for_each(|v| walk(v, &mut out));
    out
}

/// Creates a webhook through the API, expecting 201.
async fn create_webhook(api: &Api, body: Value) -> Value {
    let response = api.post("/v1/webhooks", body).await;
    assert_eq!(response.status, 201, "create failed: {}", response.body);
    response.body
}

/// Publishes `object.created` events through the API until `receiver` gets one that
/// satisfies `accept` (a change made through the API reaches the engine a moment later),
/// and returns that request.
async fn publish_until(
    api: &Api,
    receiver: &Receiver,
    accept: impl Fn(&RecordedRequest) -> bool,
) -> RecordedRequest {
    let until = Instant::now() + DEADLINE;
    loop {
        let event_id = format!("evt_secrets_{:016x}", rand::random::<u64>());
        let published = api
            .post(
                "/v1/events",
                json!({"event_type": "object.created", "event_id": event_id,
                       "data": {"bucket_id": "bkt_1", "object_id": "obj_1"}}),
            )
            .await;
        assert_eq!(published.status, 202, "{}", published.body);
        let wait_until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < wait_until {
            if let Some(request) = receiver
                .requests()
                .into_iter()
                .find(|r| header(r, "webhook-id") == Some(event_id.as_str()))
            {
                if accept(&request) {
                    return request;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            Instant::now() < until,
            "{} never got an acceptable delivery",
            receiver.url
        );
    }
}

/// Whether the request's `webhook-signature` verifies with `secret`, as a receiver
/// following Standard Webhooks checks it.
fn signed_with(request: &RecordedRequest, secret: &str) -> bool {
    let key = SigningKey::parse(secret).unwrap();
    let id = header(request, "webhook-id").unwrap();
    let ts: i64 = header(request, "webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let signature = header(request, "webhook-signature").unwrap();
    verify_header(&key, id, ts, &request.body, signature)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `Mux-Signature` as Mux computes it, written here independently of herald's code.
fn mux_signature(secret: &str, body: &[u8]) -> String {
    let t = now_secs();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

fn asset_deleted(asset_id: &str) -> Vec<u8> {
    json!({
        "type": "video.asset.deleted",
        "id": format!("mux_evt_{:016x}", rand::random::<u64>()),
        "created_at": "2024-05-01T12:00:00.000000Z",
        "object": {"type": "asset", "id": asset_id},
        "data": {"id": asset_id, "passthrough": "p"},
    })
    .to_string()
    .into_bytes()
}

/// POSTs a Mux event to the connection's inbound route, signed with `secret`.
async fn mux_deliver(api: &Api, connection_id: &str, secret: &str, body: Vec<u8>) -> ApiResponse {
    let signature = mux_signature(secret, &body);
    api.anonymous()
        .raw(
            "POST",
            &format!("/v1/webhooks/mux/{connection_id}"),
            body,
            &[
                ("content-type", "application/json"),
                ("mux-signature", &signature),
            ],
        )
        .await
}

async fn insert_synced_object(db: &Database, object_id: &str, connection_id: &str, asset: &str) {
    db.collection::<Document>("objects")
        .insert_one(doc! {
            "_id": object_id, "bucket_id": "bkt_1", "connection_id": connection_id,
            "source": {"provider": "mux", "asset_id": asset}, "metadata": {},
        })
        .await
        .unwrap();
}

async fn keyed(prefix: &str, ca: &Path) -> (Database, Config) {
    let (uri, name, db) = database(prefix).await;
    let mut config = test_config(&uri, &name, ca);
    config.api_key = Some(API_KEY.into());
    config.secret_key = Some(KEY);
    (db, config)
}

#[tokio::test]
async fn with_a_key_secrets_are_unreadable_in_mongodb_yet_receivers_and_mux_get_the_real_ones() {
    let receiver = Receiver::start().await;
    let (db, config) = keyed("secrets_at_rest", &receiver.ca_pem_path).await;
    let daemon = InProcess::start(config).await;
    let api = Api::new(daemon.listen, Some(API_KEY));
    let secrets = SecretBox::new(Some(KEY));

    // A webhook with a secret and a shared-secret header, created through the API.
    let secret = new_whsec();
    let shared = distinctive("mixpeek-shared");
    let created = create_webhook(
        &api,
        json!({"url": receiver.url, "event_types": ["object.created"], "secret": secret,
               "headers": {"X-Mixpeek-Secret": shared, "X-Tenant": "t1"}}),
    )
    .await;
    // Create answers with the secret, once, in plaintext.
    assert_eq!(created["secret"], secret.as_str());
    let id = created["webhook_id"].as_str().unwrap().to_owned();

    // In MongoDB: neither plaintext, anywhere in the document; each value opens with the key.
    let stored = raw(&db, "webhooks", &id).await;
    assert_no_secret("the webhook document", &dump(&stored), &[&secret, &shared]);
    assert_eq!(
        secrets.open(sealed_str(&stored, &["secret"])).unwrap(),
        secret
    );
    assert_eq!(
        secrets
            .open(sealed_str(&stored, &["headers", "X-Mixpeek-Secret"]))
            .unwrap(),
        shared
    );
    assert_eq!(
        secrets
            .open(sealed_str(&stored, &["headers", "X-Tenant"]))
            .unwrap(),
        "t1"
    );

    // The receiver gets the plaintext header and a signature made with the plaintext secret.
    let request = publish_until(&api, &receiver, |_| true).await;
    assert_eq!(header(&request, "x-mixpeek-secret"), Some(shared.as_str()));
    assert_eq!(header(&request, "x-tenant"), Some("t1"));
    assert!(signed_with(&request, &secret), "signature does not verify");

    // A PATCH of the headers is stored encrypted too, and delivered in plaintext.
    let patched_shared = distinctive("mixpeek-patched");
    let patched = api
        .patch(
            &format!("/v1/webhooks/{id}"),
            json!({"headers": {"X-Mixpeek-Secret": patched_shared}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_no_secret(
        "the PATCH answer",
        &patched.body.to_string(),
        &[&patched_shared],
    );
    let stored = raw(&db, "webhooks", &id).await;
    assert_no_secret("the patched document", &dump(&stored), &[&patched_shared]);
    sealed_str(&stored, &["headers", "X-Mixpeek-Secret"]);
    let request = publish_until(&api, &receiver, |r| {
        header(r, "x-mixpeek-secret") == Some(patched_shared.as_str())
    })
    .await;
    assert!(signed_with(&request, &secret));

    // Rotation: the new secret and the rotated-out one are both stored encrypted, and
    // deliveries carry a signature for each.
    let rotated = new_whsec();
    let answer = api
        .post(
            &format!("/v1/webhooks/{id}/rotate-secret"),
            json!({"secret": rotated}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["secret"], rotated.as_str());
    let stored = raw(&db, "webhooks", &id).await;
    assert_no_secret("the rotated document", &dump(&stored), &[&secret, &rotated]);
    let previous = stored.get_array("previous_secrets").unwrap();
    assert_eq!(previous.len(), 1);
    let previous = previous[0].as_document().unwrap();
    assert_eq!(
        secrets.open(sealed_str(previous, &["secret"])).unwrap(),
        secret
    );
    let request = publish_until(&api, &receiver, |r| signed_with(r, &rotated)).await;
    assert!(
        signed_with(&request, &secret),
        "the old secret stopped signing"
    );

    // Reads never return the secret, sealed or not, nor header values.
    for path in [format!("/v1/webhooks/{id}"), "/v1/webhooks".to_owned()] {
        let read = api.get(&path).await;
        assert_eq!(read.status, 200, "{}", read.body);
        let text = read.body.to_string();
        assert_no_secret(&path, &text, &[&secret, &rotated, &patched_shared]);
        assert!(
            !text.contains("enc:v1:"),
            "{path} shows a stored value: {text}"
        );
    }

    // A Mux connection: its secret is stored encrypted, and Mux's signature still verifies.
    let mux_secret = distinctive("mux-signing");
    let response = api
        .post(
            "/v1/connections",
            json!({"provider": "mux", "bucket_id": "bkt_1", "webhook_secret": mux_secret}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let connection_id = response.body["connection_id"].as_str().unwrap().to_owned();
    let stored = raw(&db, "connections", &connection_id).await;
    assert_no_secret("the connection document", &dump(&stored), &[&mux_secret]);
    let sealed = sealed_str(&stored, &["webhook_secret"]).to_owned();
    assert_eq!(secrets.open(&sealed).unwrap(), mux_secret);

    insert_synced_object(&db, "obj_mux_1", &connection_id, "asset_1").await;
    // Signed with what MongoDB holds: refused, and nothing changes.
    let forged = mux_deliver(&api, &connection_id, &sealed, asset_deleted("asset_1")).await;
    assert_eq!(forged.status, 401, "{}", forged.body);
    let genuine = mux_deliver(&api, &connection_id, &mux_secret, asset_deleted("asset_1")).await;
    assert_eq!(genuine.status, 200, "{}", genuine.body);
    assert_eq!(genuine.body["objects_affected"], 1, "{}", genuine.body);
    for path in [
        format!("/v1/connections/{connection_id}"),
        "/v1/connections".to_owned(),
    ] {
        let read = api.get(&path).await;
        assert_eq!(read.status, 200);
        assert_no_secret(&path, &read.body.to_string(), &[&mux_secret]);
        assert!(!read.body.to_string().contains("enc:v1:"));
    }
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn plaintext_written_directly_into_mongodb_keeps_working_with_a_key_and_a_foreign_key_disables_only_its_webhook(
) {
    let receiver = Receiver::start().await;
    let foreign_receiver = Receiver::start().await;
    let (db, config) = keyed("secrets_plaintext", &receiver.ca_pem_path).await;
    // The contract's document, by hand, in plaintext (`SECRET`, `X-Mixpeek-Secret:
    // shared-secret`).
    insert_webhook(
        &db,
        webhook("wh_00000000000000a1", &receiver.url, &["object.created"]),
    )
    .await;
    // One sealed under some other key: herald cannot open it.
    let other = SecretBox::new(Some([0x42; 32]));
    let mut foreign = webhook(
        "wh_00000000000000a2",
        &foreign_receiver.url,
        &["object.created"],
    );
    foreign.insert("secret", other.seal(SECRET));
    insert_webhook(&db, foreign).await;
    // A connection by hand, with a plaintext secret.
    db.collection::<Document>("connections")
        .insert_one(doc! {"_id": "conn_00000000000000a1", "provider": "mux",
        "bucket_id": "bkt_1", "webhook_secret": "by-hand-mux-secret", "metadata_filters": []})
        .await
        .unwrap();
    insert_synced_object(&db, "obj_by_hand", "conn_00000000000000a1", "asset_h").await;

    let daemon = InProcess::start(config).await;
    let api = Api::new(daemon.listen, Some(API_KEY));
    let request = publish_until(&api, &receiver, |_| true).await;
    assert_eq!(header(&request, "x-mixpeek-secret"), Some("shared-secret"));
    assert_signed(&request);
    // The webhook herald cannot decrypt gets nothing; the daemon carries on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(foreign_receiver.count(), 0);
    let response = mux_deliver(
        &api,
        "conn_00000000000000a1",
        "by-hand-mux-secret",
        asset_deleted("asset_h"),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["objects_affected"], 1);

    // Neither document was rewritten by reading it.
    let stored = raw(&db, "webhooks", "wh_00000000000000a1").await;
    assert_eq!(stored.get_str("secret").unwrap(), SECRET);
    daemon.stop().await.unwrap();
}

/// herald as a child process with `--secret-key`, JSON logs at debug level into `log`.
fn spawn_logging(config: &Config, log: &Path) -> ChildDaemon {
    let config = Config {
        retry_max_ms: 100,
        retry_max_attempts: 3,
        ..config.clone()
    };
    let mut command = ChildDaemon::command(&config);
    command
        .args(["--api-key", API_KEY])
        .args(["--log-format", "json"])
        // Through the environment, as an operator would keep it out of `ps`.
        .env("HERALD_SECRET_KEY", key_hex())
        .env("HERALD_LOG", "debug");
    ChildDaemon::spawn_command(command, log)
}

/// Waits until the API lists a delivery of `webhook_id` with `status`.
async fn wait_delivery_status(api: &Api, webhook_id: &str, status: &str, seen: &mut Vec<String>) {
    let path = format!("/v1/deliveries?webhook_id={webhook_id}&status={status}");
    let until = Instant::now() + DEADLINE;
    loop {
        let list = api.get(&path).await;
        assert_eq!(list.status, 200, "{}", list.body);
        seen.push(list.body.to_string());
        if !list.body["results"].as_array().unwrap().is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "no {status} delivery for {webhook_id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn no_secret_ever_appears_in_the_log_in_reads_or_in_errors() {
    let good = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.respond_with(500);
    let (db, config) = keyed("secrets_logs", &good.ca_pem_path).await;
    // A webhook sealed under another key, with a secret of its own: its failure is logged
    // by id, never with its value.
    let foreign_secret = new_whsec();
    let foreign_header = distinctive("foreign-header");
    let mut foreign = webhook("wh_00000000000000f1", &good.url, &["object.created"]);
    let other = SecretBox::new(Some([0x24; 32]));
    foreign.insert("secret", other.seal(&foreign_secret));
    foreign.insert(
        "headers",
        doc! {"X-Mixpeek-Secret": other.seal(&foreign_header)},
    );
    insert_webhook(&db, foreign.clone()).await;

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("herald.log");
    let mut daemon = spawn_logging(&config, &log);
    daemon.wait_ready().await;
    let api = Api::new(daemon.listen(), Some(API_KEY));
    // Every answer the test sees, searched at the end.
    let mut answers: Vec<String> = Vec::new();

    let secret_ok = new_whsec();
    let header_ok = distinctive("header-ok");
    let secret_failing = new_whsec();
    let header_failing = distinctive("header-failing");
    let ok = create_webhook(
        &api,
        json!({"url": good.url, "event_types": ["object.created"], "secret": secret_ok,
               "headers": {"X-Mixpeek-Secret": header_ok}}),
    )
    .await;
    let ok_id = ok["webhook_id"].as_str().unwrap().to_owned();
    let failing_hook = create_webhook(
        &api,
        json!({"url": failing.url, "event_types": ["object.created"], "secret": secret_failing,
               "headers": {"X-Mixpeek-Secret": header_failing}}),
    )
    .await;
    let failing_id = failing_hook["webhook_id"].as_str().unwrap().to_owned();

    // Deliveries that succeed and deliveries that fail (500 until retries run out).
    let request = publish_until(&api, &good, |r| {
        header(r, "webhook-signature").is_some_and(|_| signed_with(r, &secret_ok))
    })
    .await;
    assert_eq!(
        header(&request, "x-mixpeek-secret"),
        Some(header_ok.as_str())
    );
    // The failing webhook may have reached the engine a moment after the other one.
    publish_until(&api, &failing, |_| true).await;
    wait_delivery_status(&api, &ok_id, "succeeded", &mut answers).await;
    wait_delivery_status(&api, &failing_id, "failed", &mut answers).await;
    assert!(failing.count() > 0);
    assert_eq!(
        failing.requests()[0].header("x-mixpeek-secret"),
        Some(header_failing.as_str())
    );

    // Rotations: one to a given secret, one generated (its answer is the only place the
    // generated secret may appear).
    let secret_rotated = new_whsec();
    let rotated = api
        .post(
            &format!("/v1/webhooks/{ok_id}/rotate-secret"),
            json!({"secret": secret_rotated}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let generated = api
        .send(
            "POST",
            &format!("/v1/webhooks/{failing_id}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(generated.status, 200, "{}", generated.body);
    let secret_generated = generated.body["secret"].as_str().unwrap().to_owned();
    publish_until(&api, &good, |r| signed_with(r, &secret_rotated)).await;

    // A Mux connection: a forged request and a genuine one.
    let mux_secret = distinctive("mux-secret");
    let connection = api
        .post(
            "/v1/connections",
            json!({"provider": "mux", "bucket_id": "bkt_1", "webhook_secret": mux_secret}),
        )
        .await;
    assert_eq!(connection.status, 201, "{}", connection.body);
    answers.push(connection.body.to_string());
    let connection_id = connection.body["connection_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = mux_deliver(&api, &connection_id, "not-the-secret", asset_deleted("a1")).await;
    assert_eq!(forged.status, 401);
    answers.push(forged.body.to_string());
    let genuine = mux_deliver(&api, &connection_id, &mux_secret, asset_deleted("a1")).await;
    assert_eq!(genuine.status, 200, "{}", genuine.body);
    answers.push(genuine.body.to_string());

    // Bad requests that carry secrets: every one a 4xx that does not repeat them.
    let ok_path = format!("/v1/webhooks/{ok_id}");
    let bad_patches = [
        json!({"secret": secret_ok}),
        json!({"headers": {"X-Mixpeek-Secret": format!("{header_ok}\n")}}),
        json!({"headers": {"bad header": header_ok}}),
        json!({"headers": format!("X-Mixpeek-Secret: {header_ok}")}),
        json!({"headers": {"X-Mixpeek-Secret": header_ok}, "enabled": secret_ok}),
        json!({"headers": {"X-Mixpeek-Secret": ["list", header_ok]}}),
        json!({"headers": {"X-Mixpeek-Secret": header_ok, "Webhook-Signature": secret_ok}}),
        json!({"url": secret_ok, "headers": {"X-Mixpeek-Secret": header_ok}}),
    ];
    for body in bad_patches {
        let response = api.patch(&ok_path, body.clone()).await;
        assert!(
            (400..500).contains(&response.status),
            "{body} → {} {}",
            response.status,
            response.body
        );
        answers.push(response.body.to_string());
    }
    let bad_creates = [
        json!({"url": good.url, "event_types": ["object.created"], "secret": format!("not-{secret_ok}")}),
        json!({"url": good.url, "event_types": ["object.created"], "secret": "whsec_c2hvcnQ="}),
        json!({"url": "http://plain.example/h", "event_types": ["*"], "secret": secret_ok,
               "headers": {"X-Mixpeek-Secret": header_ok}}),
        json!({"url": good.url, "event_types": ["object.created"], "secret": [secret_ok]}),
    ];
    for body in bad_creates {
        let response = api.post("/v1/webhooks", body.clone()).await;
        assert!(
            (400..500).contains(&response.status),
            "{body} → {} {}",
            response.status,
            response.body
        );
        answers.push(response.body.to_string());
    }
    let raw_bodies = [
        // Truncated JSON.
        format!(r#"{{"headers": {{"X-Mixpeek-Secret": "{header_ok}""#),
        // Not an object.
        format!(r#"["{secret_ok}"]"#),
    ];
    for body in raw_bodies {
        let response = api
            .raw(
                "PATCH",
                &ok_path,
                body,
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(response.status / 100, 4, "{}", response.body);
        answers.push(response.body.to_string());
    }
    for (path, body) in [
        (
            format!("/v1/webhooks/{ok_id}/rotate-secret"),
            json!({"secret": format!("{secret_ok}!")}),
        ),
        (
            format!("/v1/webhooks/{ok_id}/rotate-secret"),
            json!({"secret": 7, "extra": secret_ok}),
        ),
        (
            "/v1/connections".to_owned(),
            json!({"provider": "mux", "bucket_id": "b", "webhook_secret": [mux_secret]}),
        ),
        (
            "/v1/connections".to_owned(),
            json!({"provider": "mux", "bucket_id": 5, "webhook_secret": mux_secret}),
        ),
    ] {
        let response = api.post(&path, body.clone()).await;
        assert_eq!(response.status / 100, 4, "{body}: {}", response.body);
        answers.push(response.body.to_string());
    }

    // Reads: lists and single documents of everything.
    for path in [
        "/v1/webhooks".to_owned(),
        format!("/v1/webhooks/{ok_id}"),
        format!("/v1/webhooks/{failing_id}"),
        "/v1/webhooks/wh_00000000000000f1".to_owned(),
        "/v1/connections".to_owned(),
        format!("/v1/connections/{connection_id}"),
        format!("/v1/deliveries?webhook_id={ok_id}"),
        format!("/v1/deliveries?webhook_id={failing_id}"),
    ] {
        let response = api.get(&path).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        assert!(!response.body.to_string().contains("enc:v1:"), "{path}");
        answers.push(response.body.to_string());
    }
    let failed = api
        .get(&format!(
            "/v1/deliveries?webhook_id={failing_id}&status=failed"
        ))
        .await;
    let delivery_id = failed.body["results"][0]["delivery_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = api
        .get(&format!(
            "/v1/deliveries/{}",
            delivery_id.replace(':', "%3A")
        ))
        .await;
    assert_eq!(one.status, 200, "{}", one.body);
    answers.push(one.body.to_string());
    let retry = api
        .post(
            &format!("/v1/deliveries/{}/retry", delivery_id.replace(':', "%3A")),
            json!({}),
        )
        .await;
    answers.push(retry.body.to_string());

    // Stop cleanly so that every log line is written.
    assert_eq!(daemon.terminate(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();

    let mut all_secrets = vec![
        secret_ok.clone(),
        header_ok.clone(),
        secret_failing.clone(),
        header_failing.clone(),
        secret_rotated.clone(),
        secret_generated.clone(),
        mux_secret.clone(),
        foreign_secret.clone(),
        foreign_header.clone(),
        key_hex(),
    ];
    // The stored (sealed) forms too: they are not for logs or answers either.
    for (collection, id) in [
        ("webhooks", ok_id.as_str()),
        ("webhooks", failing_id.as_str()),
        ("webhooks", "wh_00000000000000f1"),
        ("connections", connection_id.as_str()),
    ] {
        let stored = raw(&db, collection, id).await;
        let sealed = sealed_values(&stored);
        assert!(
            !sealed.is_empty(),
            "{collection} {id} holds nothing encrypted"
        );
        all_secrets.extend(sealed);
    }
    for (i, answer) in answers.iter().enumerate() {
        assert_no_secret(&format!("answer #{i} ({answer})"), answer, &all_secrets);
    }

    // The log is really at debug level, and it says which webhook it could not read.
    assert!(text.lines().count() > 10, "log too short:\n{text}");
    assert!(
        text.lines().any(|l| l.contains("\"level\":\"DEBUG\"")),
        "no debug lines in the log"
    );
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("wh_00000000000000f1") && l.contains("does not decrypt"))
        .collect();
    assert!(
        !refused.is_empty(),
        "the webhook sealed under another key was not reported:\n{text}"
    );
    assert_no_secret("the log", &text, &all_secrets);
    for stored in [
        foreign.get_str("secret").unwrap().to_owned(),
        foreign
            .get_document("headers")
            .unwrap()
            .get_str("X-Mixpeek-Secret")
            .unwrap()
            .to_owned(),
    ] {
        assert!(!text.contains(&stored), "the log shows a stored value");
    }
}
