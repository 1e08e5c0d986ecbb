//! With no `--api-key` on loopback, a web page open in a browser on the same host cannot
//! drive the API: its cross-site `text/plain` POST (a "simple" request, sent without a
//! preflight) is refused and creates nothing; a DNS-rebound name in `Host` is refused; a
//! `Sec-Fetch-Site: cross-site` read too. Same-origin JSON (the web UI) and the CLI work.

use std::time::Duration;

use serde_json::json;

use super::{exchange, request};
use crate::daemon::{test_config, InProcess};
use crate::fixtures::database;

const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_browser_cannot_drive_the_keyless_api_and_the_cli_still_can() {
    let (uri, name, _db) = database("browser").await;
    let config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    assert!(config.api_key.is_none());
    let daemon = InProcess::start(config).await;
    let addr = daemon.listen;
    let host = format!("host: {addr}");
    let body = json!({"url": "https://evil.example/collect", "event_types": ["*"],
                      "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
    .to_string();

    // The page's form-like POST: cross-site, text/plain.
    let cross_site = request(
        "POST",
        "/v1/webhooks",
        &[
            &host,
            "origin: https://evil.example",
            "sec-fetch-site: cross-site",
            "content-type: text/plain;charset=UTF-8",
        ],
        &body,
    );
    let (status, answer) = exchange(addr, &cross_site, WITHIN).await.unwrap();
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("\"cross_site\""), "{answer}");
    // Without Origin or Sec-Fetch-Site (an old browser), the content type alone refuses it.
    let plain = request(
        "POST",
        "/v1/webhooks",
        &[&host, "content-type: text/plain"],
        &body,
    );
    let (status, answer) = exchange(addr, &plain, WITHIN).await.unwrap();
    assert_eq!(status, 415, "{answer}");
    assert!(answer.contains("\"unsupported_media_type\""), "{answer}");

    // DNS rebinding: the page's own name, resolving to 127.0.0.1, in Host.
    let rebound = request("GET", "/v1/webhooks", &["host: evil.example:8080"], "");
    let (status, answer) = exchange(addr, &rebound, WITHIN).await.unwrap();
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("\"forbidden_host\""), "{answer}");
    let read = request(
        "GET",
        "/v1/webhooks",
        &[&host, "sec-fetch-site: same-site"],
        "",
    );
    assert_eq!(exchange(addr, &read, WITHIN).await.unwrap().0, 403);

    // Nothing was created.
    let list = request("GET", "/v1/webhooks", &[&host], "");
    let (status, answer) = exchange(addr, &list, WITHIN).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let listed: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(listed["results"], json!([]), "{answer}");

    // The daemon's own pages (same origin, JSON) may write.
    let same_origin = request(
        "POST",
        "/v1/webhooks",
        &[
            &host,
            &format!("origin: http://{addr}"),
            "sec-fetch-site: same-origin",
            "content-type: application/json",
        ],
        &json!({"url": "https://hooks.example.com/ui", "event_types": ["*"], "enabled": false})
            .to_string(),
    );
    let (status, answer) = exchange(addr, &same_origin, WITHIN).await.unwrap();
    assert_eq!(status, 201, "{answer}");

    // Public routes are not the API's: probes and providers pass whatever their Host.
    let probe = request("GET", "/healthz", &["host: herald.internal"], "");
    assert_eq!(exchange(addr, &probe, WITHIN).await.unwrap().0, 200);

    // The CLI, keyless: create, list and delete.
    let url = format!("http://{addr}");
    let cli = |args: Vec<String>| async move {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(&args)
            .env_remove("HERALD_URL")
            .env_remove("HERALD_API_KEY")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "herald {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap_or_default()
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let created = cli(s(&[
        "webhooks",
        "create",
        "--url",
        "https://hooks.example.com/cli",
        "--event-type",
        "*",
        "--disabled",
        "--server",
        &url,
        "--json",
    ]))
    .await;
    let id = created["webhook_id"].as_str().expect("created").to_owned();
    let listed = cli(s(&["webhooks", "list", "--url", &url, "--json"])).await;
    assert!(listed.to_string().contains(&id), "{listed}");
    cli(s(&["webhooks", "delete", &id, "--url", &url, "--json"])).await;
    daemon.stop().await.unwrap();
}
