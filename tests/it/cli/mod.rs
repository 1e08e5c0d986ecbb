//! The command-line client, as an operator uses it: the real `herald` binary against a
//! running herald (in-process) — managing webhooks, publishing events, replaying failed
//! deliveries, keeping webhooks in a file with `herald apply`, and failing with one clear
//! line when something is wrong.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mongodb::Database;
use serde_json::{json, Value};

use crate::api_client::Api;
use crate::daemon::{free_port, test_config, InProcess};
use crate::fixtures::{self, assert_signed, header, SECRET};
use crate::support::Receiver;

const KEY: &str = "cli-test-key";

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "herald failed: {self:#?}");
        self
    }

    /// The stdout as JSON (`--json`).
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Asserts a failure: non-zero exit and exactly one line `herald: …` on stderr, which
    /// is returned.
    #[track_caller]
    fn failed(self) -> String {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "expected a failure: {self:#?}"
        );
        let stderr = self.stderr.trim_end();
        assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
        assert!(stderr.starts_with("herald: "), "{stderr:?}");
        stderr.to_owned()
    }
}

/// Runs `herald <args>` with no HERALD_* variables but `env`.
async fn herald_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .args(args)
        .env_remove("HERALD_URL")
        .env_remove("HERALD_API_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the CLI finishes within 60 s")
        .expect("run herald");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn herald(args: &[&str]) -> Run {
    herald_with_env(args, &[]).await
}

/// herald with an API key on a fresh database, and a receiver.
struct Setup {
    daemon: InProcess,
    db: Database,
    api: Api,
    url: String,
    receiver: Receiver,
}

async fn setup(prefix: &str) -> Setup {
    let (uri, name, db) = fixtures::database(prefix).await;
    let receiver = Receiver::start().await;
    let mut config = test_config(&uri, &name, &receiver.ca_pem_path);
    config.api_key = Some(KEY.to_owned());
    let daemon = InProcess::start(config).await;
    let api = Api::new(daemon.listen, Some(KEY));
    let url = format!("http://{}", daemon.listen);
    Setup {
        daemon,
        db,
        api,
        url,
        receiver,
    }
}

impl Setup {
    /// `herald <group> <command> <args> --url … --api-key …` (connection flags last).
    async fn cli(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--api-key", KEY]);
        // `webhooks create` uses --url for the endpoint; the daemon is --server there.
        let flag = if args.starts_with(&["webhooks", "create"]) {
            "--server"
        } else {
            "--url"
        };
        all.extend_from_slice(&[flag, &self.url]);
        herald(&all).await
    }

    async fn webhook(&self, id: &str) -> Value {
        let answer = self.api.get(&format!("/v1/webhooks/{id}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    async fn webhooks(&self) -> Vec<Value> {
        let answer = self.api.get("/v1/webhooks?limit=500").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["results"].as_array().unwrap().clone()
    }

    async fn by_name(&self, name: &str) -> Option<Value> {
        self.webhooks()
            .await
            .into_iter()
            .find(|w| w["name"] == name)
    }
}

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

#[tokio::test]
async fn an_event_published_from_the_cli_is_delivered_signed_and_only_once() {
    let s = setup("cli_publish").await;
    let created = s
        .cli(&[
            "webhooks",
            "create",
            "--url",
            &s.receiver.url,
            "--event-type",
            "object.created",
            "--secret",
            SECRET,
            "--header",
            "X-Mixpeek-Secret=shared-secret",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(created["secret"], SECRET);

    let data = r#"{"bucket_id": "bkt_1", "object_id": "obj_1", "metadata": {"k": "v"}}"#;
    let args = [
        "events",
        "publish",
        "--type",
        "object.created",
        "--data",
        data,
        "--event-id",
        "evt_cli_1",
    ];
    let published = s.cli(&args).await.ok();
    assert!(
        published.stdout.contains("published evt_cli_1"),
        "{}",
        published.stdout
    );
    let requests = s.receiver.wait_for(1, Duration::from_secs(30)).await;
    let request = &requests[0];
    assert_signed(request);
    assert_eq!(header(request, "webhook-id"), Some("evt_cli_1"));
    assert_eq!(header(request, "X-Mixpeek-Secret"), Some("shared-secret"));
    let body = request.json();
    assert_eq!(body["event_type"], "object.created");
    assert_eq!(body["data"]["object_id"], "obj_1");

    // The same id again is accepted and not delivered again: a later event arrives, and
    // nothing between.
    let again = s.cli(&[&args[..], &["--json"]].concat()).await.ok().json();
    assert_eq!(again["event_id"], "evt_cli_1");
    s.cli(&[
        "events",
        "publish",
        "--type",
        "object.created",
        "--data",
        "{}",
        "--event-id",
        "evt_cli_2",
    ])
    .await
    .ok();
    let requests = s.receiver.wait_for(2, Duration::from_secs(30)).await;
    let ids: Vec<_> = requests
        .iter()
        .map(|r| header(r, "webhook-id").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids, ["evt_cli_1", "evt_cli_2"]);

    // Without --event-id one is generated and printed.
    let generated = s
        .cli(&[
            "events",
            "publish",
            "--type",
            "object.created",
            "--data",
            "{}",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert!(generated["event_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn failed_deliveries_are_found_inspected_and_replayed() {
    let s = setup("cli_deliveries").await;
    s.receiver.respond_with(500);
    let created = s
        .cli(&[
            "webhooks",
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
    let webhook_id = created["webhook_id"].as_str().unwrap().to_owned();
    s.cli(&[
        "events",
        "publish",
        "--type",
        "object.created",
        "--data",
        "{}",
        "--event-id",
        "evt_f1",
    ])
    .await
    .ok();
    let delivery_id = format!("evt_f1:{webhook_id}");
    fixtures::wait_for_status(&s.db, &delivery_id, "failed").await;

    // list: the failed delivery, as a table and as JSON.
    let list = s
        .cli(&[
            "deliveries",
            "list",
            "--status",
            "failed",
            "--webhook-id",
            &webhook_id,
        ])
        .await
        .ok();
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with(&delivery_id))
        .unwrap_or_else(|| panic!("no row for {delivery_id}: {}", list.stdout));
    assert!(row.contains("failed") && row.contains("500"), "{row}");
    let listed = s
        .cli(&["deliveries", "list", "--event-id", "evt_f1", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(listed["results"][0]["delivery_id"], delivery_id.as_str());
    let none = s
        .cli(&["deliveries", "list", "--status", "succeeded", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(none["results"], json!([]));

    // get: the attempt log, one row per attempt (the test config allows 5).
    let shown = s.cli(&["deliveries", "get", &delivery_id]).await.ok();
    let attempts = shown
        .stdout
        .lines()
        .filter(|l| l.contains(" 500 ") || l.trim_end().ends_with(" 500"))
        .count();
    assert!(attempts >= 5, "{}", shown.stdout);
    let got = s
        .cli(&["deliveries", "get", &delivery_id, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(got["attempt_log"].as_array().unwrap().len(), 5);

    // retry once the receiver is healthy: delivered.
    s.receiver.respond_with(200);
    let before = s.receiver.count();
    let retried = s.cli(&["deliveries", "retry", &delivery_id]).await.ok();
    assert!(
        retried.stdout.contains("retry queued"),
        "{}",
        retried.stdout
    );
    fixtures::wait_for_status(&s.db, &delivery_id, "succeeded").await;
    assert_eq!(s.receiver.count(), before + 1);

    // Retrying a delivery that succeeded is refused by the API: one line, non-zero.
    let refused = s.cli(&["deliveries", "retry", &delivery_id]).await.failed();
    assert!(
        refused.contains("already succeeded") && refused.contains("409"),
        "{refused}"
    );
    let unknown = s
        .cli(&["deliveries", "get", "evt_nope:wh_nope"])
        .await
        .failed();
    assert!(unknown.contains("404"), "{unknown}");

    // recover: every failed delivery of the webhook since a time.
    s.receiver.respond_with(500);
    s.cli(&[
        "events",
        "publish",
        "--type",
        "object.created",
        "--data",
        "{}",
        "--event-id",
        "evt_f2",
    ])
    .await
    .ok();
    let second = format!("evt_f2:{webhook_id}");
    fixtures::wait_for_status(&s.db, &second, "failed").await;
    s.receiver.respond_with(200);
    let recovered = s
        .cli(&[
            "deliveries",
            "recover",
            &webhook_id,
            "--since",
            "2000-01-01T00:00:00Z",
        ])
        .await
        .ok();
    assert!(
        recovered.stdout.contains("re-queued 1"),
        "{}",
        recovered.stdout
    );
    fixtures::wait_for_status(&s.db, &second, "succeeded").await;
    s.daemon.stop().await.unwrap();
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write the apply file");
}

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

#[tokio::test]
async fn failures_are_one_line_on_stderr_with_a_non_zero_exit() {
    let s = setup("cli_errors").await;
    let dir = tempfile::tempdir().unwrap();

    // Bad --data JSON: refused before anything is sent.
    let bad_data = s
        .cli(&[
            "events",
            "publish",
            "--type",
            "object.created",
            "--data",
            "{nope",
        ])
        .await
        .failed();
    assert!(bad_data.contains("--data is not valid JSON"), "{bad_data}");

    // Nothing listening at --url: said so.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let refused = herald(&["webhooks", "list", "--url", &nowhere])
        .await
        .failed();
    assert!(
        refused.contains("cannot connect") && refused.contains(&nowhere),
        "{refused}"
    );

    // A wrong key: the API's 401, surfaced.
    let unauthorized = herald(&["webhooks", "list", "--url", &s.url, "--api-key", "wrong"])
        .await
        .failed();
    assert!(
        unauthorized.contains("401") && unauthorized.contains("API key"),
        "{unauthorized}"
    );
    let no_key = herald(&["deliveries", "list", "--url", &s.url])
        .await
        .failed();
    assert!(no_key.contains("401"), "{no_key}");

    // The API's validation message names the field.
    let plaintext = s
        .cli(&[
            "webhooks",
            "create",
            "--url",
            "http://hooks.example.com/h",
            "--event-type",
            "object.created",
        ])
        .await
        .failed();
    assert!(
        plaintext.contains("url") && plaintext.contains("HTTPS"),
        "{plaintext}"
    );
    let unknown_type = s
        .cli(&[
            "events",
            "publish",
            "--type",
            "no.such.type",
            "--data",
            "{}",
        ])
        .await
        .failed();
    assert!(
        unknown_type.contains("event_type") && unknown_type.contains("422"),
        "{unknown_type}"
    );

    // Invalid apply files: nothing sent, one line naming the problem.
    let cases = [
        ("[[webhooks]\nname = \"a\"\n", "line 1"),
        (
            "[[webhooks]]\nname = \"a\"\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\nsecret = \"x\"\n",
            "unknown field `secret`",
        ),
        ("[[webhooks]]\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\n", "missing field `name`"),
        (
            "[[webhooks]]\nname = \"a\"\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\n[[webhooks]]\nname = \"a\"\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\n",
            "already used",
        ),
        (
            "[[webhooks]]\nname = \"a\"\nurl = \"https://h.example.com\"\nevent_types = [\"object.craeted\"]\n",
            "not in the daemon's event catalog",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.toml"));
        write(&file, text);
        let error = s
            .cli(&["apply", "-f", file.to_str().unwrap()])
            .await
            .failed();
        assert!(error.contains(expected), "{text:?}: {error}");
        assert!(error.contains(&format!("bad{i}.toml")), "{error}");
    }
    let missing = s
        .cli(&["apply", "-f", "/nonexistent/webhooks.toml"])
        .await
        .failed();
    assert!(missing.contains("cannot read"), "{missing}");
    assert!(
        s.webhooks().await.is_empty(),
        "a bad file changed something"
    );

    // Usage errors come from clap (exit 2), not one of ours, but still fail.
    let usage = herald(&["webhooks", "create", "--event-type", "x"]).await;
    assert_eq!(usage.code, Some(2));
    s.daemon.stop().await.unwrap();
}
