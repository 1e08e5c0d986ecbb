//! Operating herald, as an operator relies on it: `GET /metrics` shows deliveries succeed
//! and fail as they happen; pausing a webhook holds everything sent to it and resuming
//! delivers all of it; the ledger is bounded by TTL indexes with the configured expiry.
//!
//! Metrics are process-wide (every in-process daemon of this test binary shares one
//! recorder), so the metric story runs herald as a child process of its own and compares
//! its scrapes before and after: every figure it checks moved by this story alone.

use std::collections::BTreeMap;
use std::time::Duration;

use herald::config::Config;
use mongodb::bson::{doc, Document};
use mongodb::{Database, IndexModel};
use serde_json::{json, Value};

use crate::api_client::{assert_error, Api};
use crate::daemon::InProcess;
use crate::fixtures::*;
use crate::support::{self, Receiver};

const KEY: &str = "operations-test-key";

/// Generous: SecantusDB and the receivers share a small machine with other tests.
const DEADLINE: Duration = Duration::from_secs(30);

const DAY: u64 = 86_400;

async fn start(uri: &str, name: &str, tweak: impl FnOnce(&mut Config)) -> (InProcess, Api) {
    crate::daemon::start_with_key(uri, name, KEY, tweak).await
}

/// One scrape: every sample by name and sorted labels (`name{a="1",b="2"}` → value).
pub(crate) async fn scrape(api: &Api) -> BTreeMap<String, f64> {
    // No API key: Prometheus scrapers carry none.
    let response = api.anonymous().get("/metrics").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let content_type = response.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = match &response.body {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => panic!("metrics are not text: {other}"),
    };
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((normalise(series), value.parse().ok()?))
        })
        .collect()
}

/// `name{b="2",a="1"}` → `name{a="1",b="2"}`, so lookups do not depend on label order.
fn normalise(series: &str) -> String {
    match series.split_once('{') {
        None => series.to_owned(),
        Some((name, labels)) => {
            let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
            labels.sort_unstable();
            format!("{name}{{{}}}", labels.join(","))
        }
    }
}

pub(crate) fn sample(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    metrics.get(&normalise(series)).copied().unwrap_or(0.0)
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, series: &str) -> f64 {
    sample(after, series) - sample(before, series)
}

async fn wait_for_count(db: &Database, filter: Document, n: usize, what: &str) {
    support::eventually(DEADLINE, what, || {
        let filter = filter.clone();
        async move { deliveries(db, filter).await.len() == n }
    })
    .await;
}

#[tokio::test]
async fn metrics_count_deliveries_that_succeed_and_fail_by_event_type() {
    let (uri, name, db) = database("ops_metrics").await;
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.respond_with(500);
    // An event type of this story alone: other stories in this process deliver too.
    let event_type = format!("ops.metrics.{}", &name[name.len().saturating_sub(8)..]);
    insert_webhook(
        &db,
        webhook("wh_0000000000000a01", &ok.url, &[event_type.as_str()]),
    )
    .await;
    insert_webhook(
        &db,
        webhook("wh_0000000000000a02", &failing.url, &[event_type.as_str()]),
    )
    .await;
    let mut config = crate::daemon::test_config(&uri, &name, &ok.ca_pem_path);
    config.retry_max_attempts = 2;
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut command = crate::daemon::ChildDaemon::command(&config);
    command.args(["--api-key", KEY]);
    let mut herald = crate::daemon::ChildDaemon::spawn_command(command, log.path());
    herald.wait_ready().await;
    let api = Api::new(herald.listen(), Some(KEY));
    let events = db.collection::<Document>("events");

    let before = scrape(&api).await;
    let events_before = events.count_documents(doc! {}).await.unwrap();
    for i in 0..3 {
        insert_event(&db, &format!("evt_ops_metrics_{i}"), &event_type).await;
    }
    wait_for_count(
        &db,
        doc! {"webhook_id": "wh_0000000000000a01", "status": "succeeded"},
        3,
        "3 succeeded deliveries",
    )
    .await;
    wait_for_count(
        &db,
        doc! {"webhook_id": "wh_0000000000000a02", "status": "failed"},
        3,
        "3 failed deliveries",
    )
    .await;
    let after = scrape(&api).await;
    let events_after = events.count_documents(doc! {}).await.unwrap();

    // This daemon's figures moved by this story alone.
    let outcome = |outcome: &str| {
        format!("herald_deliveries_total{{outcome=\"{outcome}\",event_type=\"{event_type}\"}}")
    };
    assert_eq!(delta(&before, &after, &outcome("succeeded")), 3.0);
    assert_eq!(delta(&before, &after, &outcome("failed")), 3.0);
    // Each failed delivery was first retried once (two attempts in all).
    assert_eq!(delta(&before, &after, &outcome("retrying")), 3.0);
    let exactly = |series: &str, n: f64| {
        assert_eq!(delta(&before, &after, series), n, "{series}");
    };
    exactly("herald_attempts_total{result=\"2xx\"}", 3.0);
    exactly("herald_attempts_total{result=\"5xx\"}", 6.0);
    exactly("herald_attempt_duration_seconds_count", 9.0);
    // Our three events, and any herald published itself meanwhile (an exhausted delivery
    // is announced as an event).
    let routed = delta(&before, &after, "herald_events_routed_total");
    assert!(
        routed >= 3.0 && routed <= (events_after - events_before) as f64,
        "{routed} events routed, {} inserted",
        events_after - events_before
    );
    assert_eq!(sample(&after, "herald_endpoint_actors"), 2.0);
    assert!(after.contains_key("herald_attempts_in_flight"));
    assert!(after.contains_key("herald_change_stream_lag_seconds"));
    assert!(after.contains_key("herald_ledger_batch_size_count"));
    // Every record handed to the ledger is counted once durable: each of the six
    // deliveries' last records at least (the failing ones' retries add theirs).
    let handed = delta(&before, &after, "herald_ledger_batch_size_sum");
    assert!(handed >= 6.0, "{handed} records handed to the ledger");
    support::eventually(DEADLINE, "every handed record counted as written", || {
        let (api, before) = (&api, &before);
        async move {
            let now = scrape(api).await;
            delta(before, &now, "herald_ledger_records_written_total") == handed
        }
    })
    .await;
    // What goes through the ledger ahead of an attempt, for operators to see a spill.
    assert!(after.contains_key("herald_deliveries_recorded_ahead_total"));
    assert!(after.contains_key("herald_deliveries_read_back_total"));
    // The cluster as this daemon, alone, sees it: itself, owning every partition.
    let labelled = |name: &str| {
        after
            .iter()
            .find(|(k, _)| k.starts_with(&format!("{name}{{member=")))
            .map(|(_, v)| *v)
    };
    assert_eq!(labelled("herald_partitions_owned"), Some(64.0));
    assert_eq!(labelled("herald_cluster_members"), Some(1.0));
    assert!(labelled("herald_feed_checkpoint_age_seconds").is_some());
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("herald_attempt_duration_seconds_bucket{le=\"0.005\"}")),
        "the attempt latency is a histogram with buckets"
    );
    assert_eq!(ok.count(), 3);
    assert_eq!(failing.count(), 6);
    assert_eq!(herald.terminate(), Some(0), "{}", herald.log_text());
}

/// The feed window in use: an event counts from when it is read until its delivery's
/// record is durable.
#[tokio::test]
async fn the_events_in_flight_gauge_counts_an_event_until_its_delivery_is_recorded() {
    let (uri, name, db) = database("ops_in_flight").await;
    let receiver = Receiver::start().await;
    // The first attempt hangs until it times out; the retry succeeds.
    receiver.script([support::Response::hang()]);
    const WH: &str = "wh_0000000000000a03";
    insert_webhook(
        &db,
        webhook(WH, &receiver.url, &["collection.documents.written"]),
    )
    .await;
    let mut config = crate::daemon::test_config(&uri, &name, &receiver.ca_pem_path);
    // Long enough for the scrapes to see the event held.
    config.attempt_timeout_ms = 10_000;
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut herald = crate::daemon::ChildDaemon::spawn_command(
        crate::daemon::ChildDaemon::command(&config),
        log.path(),
    );
    herald.wait_ready().await;
    let api = Api::new(herald.listen(), None);
    assert_eq!(sample(&scrape(&api).await, "herald_events_in_flight"), 0.0);

    insert_event(&db, "evt_ops_in_flight", "collection.documents.written").await;
    // The attempt has reached the receiver, which holds it until it times out: the event
    // is in flight all that while.
    receiver.wait_for(1, DEADLINE).await;
    assert_eq!(sample(&scrape(&api).await, "herald_events_in_flight"), 1.0);
    // The attempt times out and its record (pending, a retry due) settles the event.
    support::eventually(DEADLINE, "the event no longer in flight", || {
        let api = &api;
        async move { sample(&scrape(api).await, "herald_events_in_flight") == 0.0 }
    })
    .await;
    wait_for_count(
        &db,
        doc! {"webhook_id": WH, "status": "succeeded"},
        1,
        "the retry",
    )
    .await;
    assert_eq!(sample(&scrape(&api).await, "herald_events_in_flight"), 0.0);
    assert_eq!(herald.terminate(), Some(0), "{}", herald.log_text());
}

#[tokio::test]
async fn a_paused_webhook_holds_every_delivery_and_resuming_delivers_them_all() {
    let (uri, name, db) = database("ops_pause").await;
    let receiver = Receiver::start().await;
    const WH: &str = "wh_0000000000000b01";
    let mut hook = webhook(WH, &receiver.url, &["collection.documents.written"]);
    hook.insert("rate_limit_per_second", 10);
    insert_webhook(&db, hook).await;
    let (herald, api) = start(&uri, &name, |_| {}).await;

    let paused = api
        .post(&format!("/v1/webhooks/{WH}/pause"), json!({}))
        .await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!(paused.body["paused"], true);
    assert_eq!(paused.body["webhook_id"], WH);
    assert_eq!(
        api.get(&format!("/v1/webhooks/{WH}")).await.body["paused"],
        true
    );

    let before = scrape(&api).await;
    for i in 0..5 {
        let published = api
            .post(
                "/v1/events",
                json!({"event_id": format!("evt_ops_pause_{i}"),
                       "event_type": "collection.documents.written",
                       "data": {"collection_id": "col_1"}}),
            )
            .await;
        assert_eq!(published.status, 202, "{}", published.body);
    }
    // Held, and visible as pending without an attempt.
    wait_for_count(
        &db,
        doc! {"webhook_id": WH, "status": "pending", "attempts": 0},
        5,
        "5 held deliveries",
    )
    .await;
    let listed = api
        .get(&format!("/v1/deliveries?status=pending&webhook_id={WH}"))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["results"].as_array().unwrap().len(), 5);
    // Each was recorded ahead of any attempt, and operators can see it. (At least: under
    // `cargo test` other stories' daemons share this process's recorder.)
    let ahead = delta(
        &before,
        &scrape(&api).await,
        "herald_deliveries_recorded_ahead_total",
    );
    assert!(ahead >= 5.0, "{ahead} deliveries counted as recorded ahead");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.count(), 0, "a paused webhook was sent something");

    // Pausing twice is harmless.
    let again = api
        .post(&format!("/v1/webhooks/{WH}/pause"), json!({}))
        .await;
    assert_eq!(again.status, 200);

    let resumed = api
        .send("POST", &format!("/v1/webhooks/{WH}/resume"), None)
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    assert_eq!(resumed.body["paused"], false);
    let requests = receiver.wait_for(5, DEADLINE).await;
    wait_for_count(
        &db,
        doc! {"webhook_id": WH, "status": "succeeded", "attempts": 1},
        5,
        "5 deliveries after resume",
    )
    .await;
    let mut ids: Vec<String> = requests
        .iter()
        .map(|r| r.json()["event_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        (0..5)
            .map(|i| format!("evt_ops_pause_{i}"))
            .collect::<Vec<_>>()
    );
    for request in &requests {
        assert_signed(request);
    }
    // At the rate limit (10/s, evenly spaced): five requests span about 0.4 s.
    let span = requests.last().unwrap().at - requests.first().unwrap().at;
    assert!(
        span >= Duration::from_millis(300),
        "the backlog went out faster than its rate limit: {span:?}"
    );
    herald.stop().await.unwrap();
}

#[tokio::test]
async fn pause_and_resume_refuse_unknown_webhooks_and_callers_without_the_key() {
    let (uri, name, _db) = database("ops_pause_errors").await;
    let (herald, api) = start(&uri, &name, |_| {}).await;
    for action in ["pause", "resume"] {
        let path = format!("/v1/webhooks/wh_00000000000000ff/{action}");
        let message = assert_error(&api.post(&path, json!({})).await, 404);
        assert!(message.contains("wh_00000000000000ff"), "{message}");
        assert_error(&api.anonymous().post(&path, json!({})).await, 401);
        assert_error(
            &api.post(&format!("/v1/webhooks/%ff/{action}"), json!({}))
                .await,
            400,
        );
        let huge = vec![b' '; herald::api::MAX_BODY_BYTES + 1];
        assert_error(&api.raw("POST", &path, huge, &[]).await, 413);
        let answer = api.get(&path).await;
        assert_error(&answer, 405);
        assert_eq!(answer.headers["allow"], "POST");
    }
    herald.stop().await.unwrap();
}

async fn ttl_indexes(db: &Database, collection: &str) -> BTreeMap<String, IndexModel> {
    indexes(db, collection)
        .await
        .into_iter()
        .filter(|m| m.options.as_ref().is_some_and(|o| o.expire_after.is_some()))
        .map(|m| (m.options.as_ref().unwrap().name.clone().unwrap(), m))
        .collect()
}

fn expiry_days(model: &IndexModel) -> u64 {
    model
        .options
        .as_ref()
        .unwrap()
        .expire_after
        .unwrap()
        .as_secs()
        / DAY
}

fn partial(model: &IndexModel) -> Option<Document> {
    model
        .options
        .as_ref()
        .unwrap()
        .partial_filter_expression
        .clone()
}

#[tokio::test]
async fn ttl_indexes_expire_deliveries_by_status_with_the_configured_retention() {
    let (uri, name, db) = database("ops_ttl").await;
    let (herald, _api) = start(&uri, &name, |c| {
        c.retention_succeeded_days = 3;
        c.retention_failed_days = 45;
    })
    .await;

    let deliveries = ttl_indexes(&db, "deliveries").await;
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    let succeeded = &deliveries["herald_ttl_succeeded"];
    assert_eq!(succeeded.keys, doc! {"completed_at": 1});
    assert_eq!(expiry_days(succeeded), 3);
    assert_eq!(partial(succeeded), Some(doc! {"status": "succeeded"}));
    let failed = &deliveries["herald_ttl_failed"];
    assert_eq!(failed.keys, doc! {"completed_at": 1});
    assert_eq!(expiry_days(failed), 45);
    assert_eq!(partial(failed), Some(doc! {"status": "failed"}));
    let inbound = ttl_indexes(&db, "inbound_events").await;
    let inbound = &inbound["herald_ttl_inbound_events"];
    assert_eq!(inbound.keys, doc! {"received_at": 1});
    assert_eq!(expiry_days(inbound), 45);
    herald.stop().await.unwrap();

    // The operator changes a retention flag: the next start applies it, in place.
    let (herald, _api) = start(&uri, &name, |c| {
        c.retention_succeeded_days = 5;
        c.retention_failed_days = 45;
    })
    .await;
    let deliveries = ttl_indexes(&db, "deliveries").await;
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    assert_eq!(expiry_days(&deliveries["herald_ttl_succeeded"]), 5);
    assert_eq!(
        partial(&deliveries["herald_ttl_succeeded"]),
        Some(doc! {"status": "succeeded"})
    );
    assert_eq!(expiry_days(&deliveries["herald_ttl_failed"]), 45);
    herald.stop().await.unwrap();
}

#[tokio::test]
async fn default_retention_is_a_week_for_successes_and_a_month_for_failures() {
    let (uri, name, db) = database("ops_ttl_default").await;
    let (herald, _api) = start(&uri, &name, |_| {}).await;
    let deliveries = ttl_indexes(&db, "deliveries").await;
    assert_eq!(expiry_days(&deliveries["herald_ttl_succeeded"]), 7);
    assert_eq!(expiry_days(&deliveries["herald_ttl_failed"]), 30);
    // The query indexes are there too.
    let names: Vec<String> = db
        .collection::<Document>("deliveries")
        .list_index_names()
        .await
        .unwrap();
    for expected in [herald::store::PENDING_DUE, "webhook_id_1__id_1"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
    herald.stop().await.unwrap();
}

#[tokio::test]
async fn indexes_an_earlier_version_created_are_dropped_at_start() {
    let (uri, name, db) = database("ops_obsolete_indexes").await;
    let deliveries = db.collection::<Document>("deliveries");
    let old = [
        doc! {"status": 1, "next_attempt_at": 1},
        doc! {"webhook_id": 1, "created_at": -1},
        doc! {"event_id": 1},
        doc! {"status": 1, "webhook_id": 1, "next_attempt_at": 1, "_id": 1},
    ];
    for keys in old {
        deliveries
            .create_index(IndexModel::builder().keys(keys).build())
            .await
            .unwrap();
    }
    let (herald, _api) = start(&uri, &name, |_| {}).await;
    let names = deliveries.list_index_names().await.unwrap();
    for obsolete in herald::store::OBSOLETE_INDEXES {
        assert!(
            !names.iter().any(|n| n == obsolete),
            "{obsolete} still there: {names:?}"
        );
    }
    assert!(names.iter().any(|n| n == "webhook_id_1__id_1"), "{names:?}");
    herald.stop().await.unwrap();
}

/// Sets a delivery's `completed_at` `days` into the past, as if it had finished then.
async fn age(db: &Database, id: &str, days: i64) {
    let then = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() - days * DAY as i64 * 1000,
    );
    db.collection::<Document>("deliveries")
        .update_one(doc! {"_id": id}, doc! {"$set": {"completed_at": then}})
        .await
        .unwrap();
}

#[tokio::test]
async fn the_ttl_monitor_removes_a_succeeded_delivery_past_its_retention_and_keeps_a_failed_one() {
    // A server of the test's own: its TTL monitor is run on demand below.
    let mongo = support::TestMongo::spawn().await;
    let client = mongo.client().await;
    let db = client.database("ops_ttl_expiry");
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.respond_with(500);
    insert_webhook(&db, webhook("wh_0000000000000e01", &ok.url, &["*"])).await;
    insert_webhook(&db, webhook("wh_0000000000000e02", &failing.url, &["*"])).await;
    // The default retention: 7 days for successes, 30 for failures.
    let (herald, _api) = start(&mongo.uri, "ops_ttl_expiry", |c| c.retry_max_attempts = 1).await;

    insert_event(&db, "evt_ttl_1", "batch.completed").await;
    let succeeded = "evt_ttl_1:wh_0000000000000e01";
    let failed = "evt_ttl_1:wh_0000000000000e02";
    wait_for_status(&db, succeeded, "succeeded").await;
    wait_for_status(&db, failed, "failed").await;
    // Both finished eight days ago: past a success's retention, within a failure's.
    age(&db, succeeded, 8).await;
    age(&db, failed, 8).await;
    // One pass of the server's TTL monitor, now rather than at its next minute (SecantusDB
    // sweeps every 60 s, with the same code this command runs). A server without the
    // command (mongod) is waited for: its monitor runs every 60 s.
    let pruned = client
        .database("admin")
        .run_command(doc! {"secantusAdmin.pruneTtl": 1})
        .await
        .is_ok();
    if !pruned {
        support::eventually(
            Duration::from_secs(150),
            "the TTL monitor removes the succeeded delivery",
            || {
                let db = db.clone();
                async move { delivery(&db, succeeded).await.is_none() }
            },
        )
        .await;
    }
    assert!(
        delivery(&db, succeeded).await.is_none(),
        "a succeeded delivery past its 7-day retention was kept"
    );
    assert!(
        delivery(&db, failed).await.is_some(),
        "a failed delivery was removed within its 30-day retention"
    );
    herald.stop().await.unwrap();
}
