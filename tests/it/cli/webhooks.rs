//! `herald webhooks`: created, listed (as a table, as JSON, filtered, paged), read,
//! rotated and deleted from the command line.

use super::setup;

#[tokio::test]
async fn webhooks_are_created_listed_read_rotated_and_deleted_from_the_command_line() {
    let s = setup("cli_webhooks").await;
    let created = s
        .cli(&[
            "webhooks",
            "create",
            "--url",
            &s.receiver.url,
            "--event-type",
            "object.created",
            "--event-type",
            "object.deleted",
            "--name",
            "cli-hook",
            "--header",
            "X-Mixpeek-Secret=shh",
            "--rate-limit",
            "50",
            "--json",
        ])
        .await
        .ok()
        .json();
    let id = created["webhook_id"]
        .as_str()
        .expect("webhook_id")
        .to_owned();
    assert!(id.starts_with("wh_") && id.len() == 19, "{id}");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(created["rate_limit_per_second"], 50);

    // Human output of create shows the id and the secret.
    let table = s
        .cli(&[
            "webhooks",
            "create",
            "--url",
            &s.receiver.url,
            "--event-type",
            "*",
            "--disabled",
        ])
        .await
        .ok();
    assert!(table.stdout.contains("whsec_"), "{}", table.stdout);
    assert!(table.stdout.contains("webhook_id"), "{}", table.stdout);

    // The table lists both, one row each, with name, URL and event types.
    let list = s.cli(&["webhooks", "list"]).await.ok();
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("no row for {id}: {}", list.stdout));
    for expected in [
        "cli-hook",
        &s.receiver.url,
        "object.created, object.deleted",
        "50",
    ] {
        assert!(row.contains(expected), "{expected:?} missing from {row:?}");
    }
    assert!(list
        .stdout
        .lines()
        .next()
        .unwrap()
        .starts_with("WEBHOOK ID"));
    assert_eq!(list.stdout.lines().count(), 3, "{}", list.stdout);

    // --json for scripts; filters reach the API.
    let listed = s.cli(&["webhooks", "list", "--json"]).await.ok().json();
    assert_eq!(listed["results"].as_array().unwrap().len(), 2);
    let enabled = s
        .cli(&["webhooks", "list", "--enabled", "true", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(enabled["results"].as_array().unwrap().len(), 1);
    assert_eq!(enabled["results"][0]["webhook_id"], id.as_str());
    let typed = s
        .cli(&[
            "webhooks",
            "list",
            "--event-type",
            "batch.completed",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(
        typed["results"].as_array().unwrap().len(),
        1,
        "only the * webhook"
    );

    // Pages: --limit gives one page and a hint; --all follows the cursors.
    let page = s.cli(&["webhooks", "list", "--limit", "1"]).await.ok();
    assert_eq!(page.stdout.lines().count(), 2, "{}", page.stdout);
    assert!(page.stderr.contains("--cursor"), "{}", page.stderr);
    let all = s
        .cli(&["webhooks", "list", "--limit", "1", "--all", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(all["results"].as_array().unwrap().len(), 2);

    // get: the webhook, header values redacted.
    let shown = s.cli(&["webhooks", "get", &id]).await.ok();
    assert!(shown.stdout.contains(&s.receiver.url), "{}", shown.stdout);
    assert!(
        !shown.stdout.contains("shh"),
        "header value shown: {}",
        shown.stdout
    );
    let got = s.cli(&["webhooks", "get", &id, "--json"]).await.ok().json();
    assert_eq!(got["name"], "cli-hook");

    // rotate-secret: a new secret.
    let rotated = s
        .cli(&["webhooks", "rotate-secret", &id, "--json"])
        .await
        .ok()
        .json();
    let new_secret = rotated["secret"].as_str().expect("secret");
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);

    // delete: gone, and deleting again is fine (idempotent).
    let deleted = s.cli(&["webhooks", "delete", &id]).await.ok();
    assert!(deleted.stdout.contains(&format!("deleted {id}")));
    s.cli(&["webhooks", "delete", &id]).await.ok();
    let missing = s.cli(&["webhooks", "get", &id]).await.failed();
    assert!(
        missing.contains("does not exist") && missing.contains("404"),
        "{missing}"
    );

    // The catalog.
    let catalog = s.cli(&["webhooks", "event-types"]).await.ok();
    assert!(
        catalog.stdout.contains("object.created"),
        "{}",
        catalog.stdout
    );
    s.daemon.stop().await.unwrap();
}
