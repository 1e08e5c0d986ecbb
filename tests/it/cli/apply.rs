//! `herald apply`: the webhooks come to match a file — planned with --dry-run, created,
//! updated, kept or pruned — and a second run changes nothing.

use std::time::Duration;

use serde_json::json;

use super::{setup, write};
use crate::fixtures::header;
use crate::support::Receiver;

fn apply_file(receiver: &Receiver, b_types: &str) -> String {
    format!(
        r#"
[[webhooks]]
name = "search-cache"
url = "{a}"
event_types = ["collection.documents.written", "object.created"]
headers = {{ X-Mixpeek-Secret = "shh" }}
rate_limit_per_second = 20

[[webhooks]]
name = "audit"
url = "{b}"
event_types = {b_types}
enabled = true
"#,
        a = receiver.url_with_path("/search"),
        b = receiver.url_with_path("/audit"),
    )
}

#[tokio::test]
async fn apply_makes_the_webhooks_match_the_file_and_changes_nothing_the_second_time() {
    let s = setup("cli_apply").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("webhooks.toml");
    let f = file.to_str().unwrap();
    write(&file, &apply_file(&s.receiver, r#"["object.deleted"]"#));

    // --dry-run prints the plan and creates nothing.
    let plan = s.cli(&["apply", "-f", f, "--dry-run"]).await.ok();
    for expected in [
        "+ create search-cache",
        "+ create audit",
        "Plan: 2 to create",
        "Dry run",
    ] {
        assert!(
            plan.stdout.contains(expected),
            "{expected:?}: {}",
            plan.stdout
        );
    }
    assert!(
        !plan.stdout.contains("shh"),
        "header value printed: {}",
        plan.stdout
    );
    assert!(s.webhooks().await.is_empty());

    // apply creates both, as the file says, and prints each secret once.
    let applied = s.cli(&["apply", "-f", f]).await.ok();
    assert!(
        applied.stdout.contains("created search-cache"),
        "{}",
        applied.stdout
    );
    assert!(
        applied.stdout.contains("created audit"),
        "{}",
        applied.stdout
    );
    assert!(applied.stdout.contains("whsec_"), "{}", applied.stdout);
    let search = s
        .by_name("search-cache")
        .await
        .expect("search-cache created");
    assert_eq!(search["rate_limit_per_second"], 20);
    assert_eq!(
        search["event_types"],
        json!(["collection.documents.written", "object.created"])
    );
    assert_eq!(search["headers"].as_object().unwrap().len(), 1);
    let audit = s.by_name("audit").await.expect("audit created");
    let search_id = search["webhook_id"].as_str().unwrap().to_owned();
    let audit_id = audit["webhook_id"].as_str().unwrap().to_owned();
    // The header value was sent: a delivery carries it.
    s.api
        .post(
            "/v1/events",
            json!({"event_type": "object.created", "event_id": "evt_apply", "data": {}}),
        )
        .await;
    let requests = s.receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(header(&requests[0], "X-Mixpeek-Secret"), Some("shh"));

    // apply again: no changes, and nothing was written.
    let again = s.cli(&["apply", "-f", f]).await.ok();
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    let json = s.cli(&["apply", "-f", f, "--json"]).await.ok().json();
    assert_eq!(json["changed"], false);
    assert_eq!(json["unchanged"].as_array().unwrap().len(), 2);
    assert_eq!(
        s.webhook(&search_id).await["updated_at"],
        search["updated_at"]
    );
    assert_eq!(
        s.webhook(&audit_id).await["updated_at"],
        audit["updated_at"]
    );

    // Editing one webhook updates only that one; the dry run first shows the diff.
    write(
        &file,
        &apply_file(&s.receiver, r#"["object.deleted", "object.updated"]"#),
    );
    let plan = s.cli(&["apply", "-f", f, "--dry-run"]).await.ok();
    assert!(plan.stdout.contains("~ update audit"), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("event_types: object.deleted → object.deleted, object.updated"),
        "{}",
        plan.stdout
    );
    assert_eq!(
        s.webhook(&audit_id).await["updated_at"],
        audit["updated_at"]
    );
    let applied = s.cli(&["apply", "-f", f]).await.ok();
    assert!(
        applied.stdout.contains("updated audit"),
        "{}",
        applied.stdout
    );
    assert!(
        !applied.stdout.contains("search-cache"),
        "{}",
        applied.stdout
    );
    let audit_now = s.webhook(&audit_id).await;
    assert_eq!(
        audit_now["event_types"],
        json!(["object.deleted", "object.updated"])
    );
    assert_ne!(audit_now["updated_at"], audit["updated_at"]);
    assert_eq!(
        s.webhook(&search_id).await["updated_at"],
        search["updated_at"]
    );

    // Webhooks not in the file are kept, unless --prune — and unnamed ones always.
    let extra = s
        .api
        .post(
            "/v1/webhooks",
            json!({"url": s.receiver.url, "event_types": ["*"], "name": "extra"}),
        )
        .await;
    assert_eq!(extra.status, 201);
    let unnamed = s
        .api
        .post(
            "/v1/webhooks",
            json!({"url": s.receiver.url, "event_types": ["*"]}),
        )
        .await;
    assert_eq!(unnamed.status, 201);
    let kept = s.cli(&["apply", "-f", f]).await.ok();
    assert!(kept.stdout.contains("No changes"), "{}", kept.stdout);
    assert!(
        kept.stderr.contains("extra") && kept.stderr.contains("--prune"),
        "{}",
        kept.stderr
    );
    let plan = s
        .cli(&["apply", "-f", f, "--prune", "--dry-run"])
        .await
        .ok();
    assert!(plan.stdout.contains("- delete extra"), "{}", plan.stdout);
    assert!(s.by_name("extra").await.is_some());
    let pruned = s.cli(&["apply", "-f", f, "--prune"]).await.ok();
    assert!(pruned.stdout.contains("deleted extra"), "{}", pruned.stdout);
    assert!(s.by_name("extra").await.is_none());
    let left = s.webhooks().await;
    assert_eq!(
        left.len(),
        3,
        "search-cache, audit and the unnamed one: {left:?}"
    );
    assert!(left
        .iter()
        .any(|w| w["webhook_id"] == unnamed.body["webhook_id"]));
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn apply_resends_header_values_it_cannot_read_only_when_forced() {
    let s = setup("cli_apply_headers").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("webhooks.toml");
    let f = file.to_str().unwrap();
    let text = |value: &str| {
        format!(
            "[[webhooks]]\nname = \"h\"\nurl = \"{}\"\nevent_types = [\"object.created\"]\nheaders = {{ X-Mixpeek-Secret = \"{value}\" }}\n",
            s.receiver.url
        )
    };
    write(&file, &text("first"));
    s.cli(&["apply", "-f", f]).await.ok();
    let id = s.by_name("h").await.unwrap()["webhook_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let updated_at = s.webhook(&id).await["updated_at"].clone();

    // Only the value changed: the API redacts values, so apply cannot see the difference.
    write(&file, &text("second"));
    let unchanged = s.cli(&["apply", "-f", f]).await.ok();
    assert!(
        unchanged.stdout.contains("No changes"),
        "{}",
        unchanged.stdout
    );
    assert_eq!(s.webhook(&id).await["updated_at"], updated_at);

    // --force-headers re-sends them; the next delivery carries the new value.
    let forced = s.cli(&["apply", "-f", f, "--force-headers"]).await.ok();
    assert!(forced.stdout.contains("updated h"), "{}", forced.stdout);
    assert!(
        !forced.stdout.contains("second"),
        "value printed: {}",
        forced.stdout
    );
    s.cli(&[
        "events",
        "publish",
        "--type",
        "object.created",
        "--data",
        "{}",
        "--event-id",
        "evt_h",
    ])
    .await
    .ok();
    let requests = s.receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(header(&requests[0], "X-Mixpeek-Secret"), Some("second"));
    s.daemon.stop().await.unwrap();
}
