//! Which daemon the CLI talks to: the URL and key come from flags at the command or the
//! group level, or from the environment, and a flag beats the environment.

use serde_json::json;

use super::{herald, herald_with_env, setup, KEY};
use crate::daemon::free_port;

#[tokio::test]
async fn the_daemon_url_and_key_come_from_flags_at_either_level_or_the_environment() {
    let s = setup("cli_connect").await;
    let env = [("HERALD_URL", s.url.as_str()), ("HERALD_API_KEY", KEY)];
    let run = herald_with_env(&["webhooks", "list", "--json"], &env)
        .await
        .ok();
    assert_eq!(run.json()["results"], json!([]));
    // Group-level flags (before the subcommand) — the way to give the daemon's URL to
    // `webhooks create`, whose own --url is the endpoint.
    let created = herald(&[
        "webhooks",
        "--url",
        &s.url,
        "--api-key",
        KEY,
        "create",
        "--url",
        &s.receiver.url,
        "--event-type",
        "object.created",
        "--json",
    ])
    .await
    .ok()
    .json();
    assert!(created["webhook_id"].is_string());
    // A flag beats the environment.
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let env = [
        ("HERALD_URL", unreachable.as_str()),
        ("HERALD_API_KEY", "wrong"),
    ];
    let run = herald_with_env(
        &[
            "webhooks",
            "list",
            "--url",
            &s.url,
            "--api-key",
            KEY,
            "--json",
        ],
        &env,
    )
    .await
    .ok();
    assert_eq!(run.json()["results"].as_array().unwrap().len(), 1);
    s.daemon.stop().await.unwrap();
}
