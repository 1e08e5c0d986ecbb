//! Endpoint health is per endpoint, not per daemon: with two daemons on one database, the
//! one that does not run a failing endpoint shows the same failing health in
//! `GET /v1/webhooks/{id}` as the one that does, and when the owner stops (SIGTERM) and
//! another daemon takes the endpoint over, or the owner starts again, the failing streak
//! goes on from where it was: no second `webhook.endpoint.failing` is published.

use std::time::Duration;

use herald::config::Config;
use mongodb::bson::{doc, Document};
use serde_json::Value;

use crate::api_client::Api;
use crate::fixtures::*;
use crate::support::Receiver;

const KEY: &str = "health-cluster-key";
const DEADLINE: Duration = Duration::from_secs(60);
const BAD: &str = "wh_00000000000e0031";
const FAILING_AFTER: u32 = 5;

fn settings(member_id: &'static str) -> impl FnOnce(&mut Config) {
    move |c| {
        c.member_id = Some(member_id.to_owned());
        c.retry_max_attempts = 1_000;
        c.retry_max_ms = 100;
        c.endpoint_failing_after = FAILING_AFTER;
    }
}

async fn health(api: &Api) -> Value {
    let response = api.get(&format!("/v1/webhooks/{BAD}")).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.body["health"].clone()
}

/// Polls both daemons until `check` holds for the pair of answers; returns them.
async fn until_both(
    apis: [&Api; 2],
    what: &str,
    check: impl Fn(&Value, &Value) -> bool,
) -> (Value, Value) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (a, b) = (health(apis[0]).await, health(apis[1]).await);
        if check(&a, &b) {
            return (a, b);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; health: {a} / {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls one daemon until `check` holds; returns its answer.
async fn until_one(api: &Api, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    until_both([api, api], what, |h, _| check(h)).await.0
}

fn failing(h: &Value) -> bool {
    h["state"] == "failing"
}

fn failures(h: &Value) -> u64 {
    h["consecutive_failures"].as_u64().unwrap_or(0)
}

/// This daemon runs the endpoint: it knows what the endpoint holds.
fn runs_it(h: &Value) -> bool {
    h["queued"].is_u64()
}

async fn failing_alerts(db: &mongodb::Database) -> Vec<Document> {
    use futures::TryStreamExt;
    db.collection::<Document>("events")
        .find(doc! {"event_type": "webhook.endpoint.failing"})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_daemon_shows_the_same_failing_endpoint_and_a_takeover_does_not_alert_again() {
    let (uri, name, db) = database("health_cluster").await;
    let bad = Receiver::start().await;
    bad.respond_with(503);
    insert_webhook(&db, webhook(BAD, &bad.url, &["batch.completed"])).await;
    let (a, api_a) = crate::daemon::start_with_key(&uri, &name, KEY, settings("health-a")).await;
    for i in 0..3 {
        insert_event(&db, &format!("evt_health_cluster_{i}"), "batch.completed").await;
    }
    until_one(&api_a, "a failing endpoint", |h| {
        failing(h) && failures(h) >= u64::from(FAILING_AFTER) * 2
    })
    .await;

    // A second daemon joins: whichever of the two runs the endpoint, the other shows the
    // health it kept — failing, the same streak.
    let (b, api_b) = crate::daemon::start_with_key(&uri, &name, KEY, settings("health-b")).await;
    let (seen_a, seen_b) = until_both([&api_a, &api_b], "one owner, both failing", |a, b| {
        failing(a) && failing(b) && runs_it(a) != runs_it(b)
    })
    .await;
    assert_eq!(seen_a["failing_since"], seen_b["failing_since"]);
    assert!(seen_a["failing_since"].is_string(), "{seen_a}");
    let failing_since = seen_a["failing_since"].clone();
    let shown = if runs_it(&seen_a) { &seen_b } else { &seen_a };
    assert!(shown["queued"].is_null(), "{shown}");
    assert_eq!(shown["last_failure"]["status_code"], 503, "{shown}");
    assert_eq!(shown["window_seconds"], 3600, "{shown}");
    assert_eq!(shown["success_rate"], 0.0, "{shown}");
    // The kept health follows the owner's within a few seconds.
    let owner_failures = failures(if runs_it(&seen_a) { &seen_a } else { &seen_b });
    until_both([&api_a, &api_b], "the kept streak to follow", |a, b| {
        failures(a).min(failures(b)) > owner_failures
    })
    .await;

    // The owner stops (SIGTERM): the other daemon takes the endpoint over and goes on
    // with the same streak.
    let mut daemons = [Some(a), Some(b)];
    let owner = usize::from(!runs_it(&seen_a));
    daemons[owner].take().unwrap().stop().await.unwrap();
    let survivor = [&api_a, &api_b][1 - owner];
    let before = failures(&health(survivor).await);
    let attempts = bad.count();
    let taken = until_one(survivor, "the endpoint taken over and failing on", |h| {
        runs_it(h) && failing(h) && failures(h) >= before + u64::from(FAILING_AFTER) * 2
    })
    .await;
    assert_eq!(taken["failing_since"], failing_since, "{taken}");
    assert!(
        bad.count() >= attempts + FAILING_AFTER as usize * 2,
        "the new owner made attempts"
    );

    // The stopped daemon starts again (a new life, a new member id): it takes its share
    // back, and the streak goes on there too.
    let (again, api_again) = crate::daemon::start_with_key(
        &uri,
        &name,
        KEY,
        settings(["health-a-2", "health-b-2"][owner]),
    )
    .await;
    let before = failures(&health(survivor).await);
    let (seen, _) = until_both([&api_again, survivor], "the streak going on", |x, y| {
        failing(x) && failing(y) && failures(x).min(failures(y)) >= before + 5
    })
    .await;
    assert_eq!(seen["failing_since"], failing_since, "{seen}");

    let alerts = failing_alerts(&db).await;
    assert_eq!(
        alerts.len(),
        1,
        "one failing alert for one failing streak, however many daemons ran it: {alerts:?}"
    );
    again.stop().await.unwrap();
    daemons[1 - owner].take().unwrap().stop().await.unwrap();
}
