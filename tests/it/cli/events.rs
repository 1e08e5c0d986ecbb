//! `herald events publish`: the event is delivered signed, once per id, and an id is
//! generated when none is given.

use std::time::Duration;

use super::setup;
use crate::fixtures::{assert_signed, header, SECRET};

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
async fn a_file_of_events_is_published_in_batches_and_each_refusal_named() {
    let s = setup("cli_publish_file").await;
    s.cli(&[
        "webhooks",
        "create",
        "--url",
        &s.receiver.url,
        "--event-type",
        "object.created",
    ])
    .await
    .ok();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let line = |id: &str, event_type: &str| {
        format!(r#"{{"event_type": "{event_type}", "event_id": "{id}", "data": {{}}}}"#)
    };
    std::fs::write(
        &file,
        [
            line("evt_file_1", "object.created"),
            String::new(),
            line("evt_file_2", "object.created"),
        ]
        .join("\n"),
    )
    .unwrap();
    let path = file.display().to_string();
    let published = s.cli(&["events", "publish", "--file", &path]).await.ok();
    assert!(
        published.stdout.contains("published evt_file_1")
            && published.stdout.contains("published evt_file_2"),
        "{}",
        published.stdout
    );
    let requests = s.receiver.wait_for(2, Duration::from_secs(30)).await;
    let mut ids: Vec<_> = requests
        .iter()
        .map(|r| header(r, "webhook-id").unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["evt_file_1", "evt_file_2"]);

    // A refused event is named with its line; the others are published; the command fails.
    std::fs::write(
        &file,
        [
            line("evt_file_3", "object.created"),
            String::new(),
            line("evt_file_4", "no.such.type"),
        ]
        .join("\n"),
    )
    .unwrap();
    let stderr = s
        .cli(&["events", "publish", "--file", &path])
        .await
        .failed();
    assert!(
        stderr.contains("1 of 2 events were refused")
            && stderr.contains("line 3: evt_file_4 refused"),
        "{stderr}"
    );
    let requests = s.receiver.wait_for(3, Duration::from_secs(30)).await;
    assert_eq!(header(&requests[2], "webhook-id"), Some("evt_file_3"));
    s.daemon.stop().await.unwrap();
}
