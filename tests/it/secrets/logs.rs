//! No secret ever appears in the daemon's log (debug level, JSON), in a read answer or in
//! an error: not the plaintext, not the stored (sealed) form, not the key.

use std::path::Path;
use std::time::{Duration, Instant};

use herald::config::Config;
use herald::secrets::SecretBox;
use mongodb::bson::doc;
use serde_json::json;

use super::{
    assert_no_secret, asset_deleted, create_webhook, distinctive, key_hex, keyed, mux_deliver,
    new_whsec, publish_until, raw, sealed_values, signed_with, API_KEY, DEADLINE,
};
use crate::api_client::Api;
use crate::daemon::ChildDaemon;
use crate::fixtures::*;
use crate::support::Receiver;

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
