//! `herald keys` and `herald audit`: an operator makes a tenant's key, the tenant uses it,
//! the operator revokes it and reads in the audit trail who did what.

use super::{herald, setup};

#[tokio::test]
async fn an_operator_makes_lists_and_revokes_a_key_and_reads_the_audit_trail() {
    let s = setup("cli_keys").await;
    // The key is stdout's only line; the note about keeping it is on stderr.
    let created = s
        .cli(&["keys", "create", "--role", "admin", "--namespace", "ns_cli"])
        .await
        .ok();
    let key = created.stdout.trim().to_owned();
    assert!(key.starts_with("hk_") && !key.contains(' '), "{created:#?}");
    assert!(created.stderr.contains("not shown again"), "{created:#?}");

    // The tenant uses it: its webhook lands in its namespace.
    let made = herald(&[
        "webhooks",
        "create",
        "--url",
        &s.receiver.url,
        "--event-type",
        "*",
        "--server",
        &s.url,
        "--api-key",
        &key,
        "--json",
    ])
    .await
    .ok()
    .json();
    assert_eq!(made["namespace_id"], "ns_cli", "{made}");

    let of_namespace = s
        .cli(&["webhooks", "list", "--namespace", "ns_cli", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(of_namespace["results"][0]["webhook_id"], made["webhook_id"]);
    let of_another = s
        .cli(&["webhooks", "list", "--namespace", "ns_else", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(of_another["results"], serde_json::json!([]));

    let listed = s.cli(&["keys", "list", "--json"]).await.ok().json();
    let entry = &listed["results"][0];
    let key_id = entry["key_id"].as_str().unwrap().to_owned();
    assert_eq!(entry["namespace_id"], "ns_cli");
    assert!(!listed.to_string().contains(&key), "the list shows the key");
    let table = s.cli(&["keys", "list"]).await.ok().stdout;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "KEY",
            "ID",
            "PREFIX",
            "ROLE",
            "NAMESPACE",
            "CREATED",
            "LAST",
            "USED",
            "REVOKED"
        ],
        "{table}"
    );
    assert!(
        table.contains(&key_id) && table.contains("ns_cli"),
        "{table}"
    );

    let revoked = s.cli(&["keys", "revoke", &key_id]).await.ok();
    assert_eq!(revoked.stdout.trim(), format!("revoked {key_id}"));
    let refused = herald(&["webhooks", "list", "--url", &s.url, "--api-key", &key])
        .await
        .failed();
    assert!(
        refused.contains("revoked") && refused.contains("401"),
        "{refused}"
    );
    let unknown = s
        .cli(&["keys", "revoke", "key_0000000000000000"])
        .await
        .failed();
    assert!(unknown.contains("404"), "{unknown}");

    // The audit trail: the key's creation by the operator, the tenant's webhook, the revoke.
    let trail = s.cli(&["audit", "--json"]).await.ok().json();
    let actions: Vec<(&str, &str)> = trail["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["key_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("key.create", "operator"),
            ("webhook.create", key_id.as_str()),
            ("key.revoke", "operator")
        ]
    );
    let by_key = s
        .cli(&["audit", "--key-id", &key_id, "--action", "webhook.create"])
        .await
        .ok()
        .stdout;
    let lines: Vec<&str> = by_key.lines().collect();
    assert_eq!(lines.len(), 2, "{by_key}");
    assert!(
        lines[1].contains("webhook.create") && lines[1].contains("ns_cli"),
        "{by_key}"
    );
    let bad = s.cli(&["audit", "--since", "last week"]).await.failed();
    assert!(bad.contains("since"), "{bad}");
}
