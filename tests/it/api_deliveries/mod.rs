//! The HTTP API for publishing events and for deliveries, as its users rely on it: an
//! event published with `POST /v1/events` reaches every subscribed receiver once, however
//! often it is published; deliveries can be listed, read with their attempt log, retried
//! one by one and recovered in bulk after an outage; bad input gets a 4xx naming the field.
//!
//! Each story runs herald in-process against SecantusDB and real HTTPS receivers, and
//! talks to it over real HTTP. Webhooks are written straight into MongoDB (a documented
//! way to register them) before herald starts, so none of these stories depends on the
//! webhook routes.

use std::collections::BTreeSet;
use std::time::Duration;

use herald::config::Config;
use mongodb::bson::{doc, Document};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};

use crate::api_client::{assert_error, Api, ApiResponse};
use crate::daemon::{test_config, InProcess};
use crate::fixtures::*;
use crate::support::{self, Receiver};

/// A built-in event type of the catalog.
const TYPE: &str = "collection.documents.written";

const WH_A: &str = "wh_00000000000000d1";
const WH_B: &str = "wh_00000000000000d2";

/// Generous: SecantusDB and the receivers share a small machine with other tests.
const DEADLINE: Duration = Duration::from_secs(30);

/// Gives herald a moment to (not) do more than expected.
async fn quiet_period() {
    tokio::time::sleep(Duration::from_millis(800)).await;
}

/// Starts herald on database `name` (webhooks already inserted), `tweak`ing the test
/// configuration first; returns it with an API client holding its key.
async fn start(uri: &str, name: &str, tweak: impl FnOnce(&mut Config)) -> (InProcess, Api) {
    let mut config = test_config(uri, name, support::test_ca_pem_path());
    tweak(&mut config);
    let key = config.api_key.clone();
    let daemon = InProcess::start(config).await;
    let api = Api::new(daemon.listen, key.as_deref());
    (daemon, api)
}

/// Publishes and expects 202; returns the event id.
async fn publish(api: &Api, body: Value) -> String {
    let response = api.post("/v1/events", body).await;
    assert_eq!(response.status, 202, "publish: {}", response.body);
    response.body["event_id"]
        .as_str()
        .expect("event_id in the answer")
        .to_owned()
}

fn delivery_id(event_id: &str, webhook_id: &str) -> String {
    format!("{event_id}:{webhook_id}")
}

/// The `delivery_id`s of one page.
fn ids(response: &ApiResponse) -> Vec<String> {
    response.body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {}", response.body))
        .iter()
        .map(|d| d["delivery_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every delivery id a listing with `query` yields, walking all pages of `limit`.
async fn walk(api: &Api, query: &str, limit: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/v1/deliveries?limit={limit}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let page_ids = ids(&page);
        assert!(page_ids.len() <= limit, "{path} gave {}", page_ids.len());
        all.extend(page_ids);
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
    panic!("pagination of {query:?} never ended");
}

#[tokio::test]
async fn a_published_event_reaches_the_receiver_with_its_id_and_fields() {
    let (uri, name, db) = database("api_publish").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |_| {}).await;

    let id = publish(
        &api,
        json!({
            "event_type": TYPE,
            "event_id": "evt_api_publish_1",
            "occurred_at": "2026-01-02T03:04:05.678+02:00",
            "namespace_id": "ns_1",
            "task_id": "task_42",
            "subject": {"type": "collection", "id": "col_1"},
            "data": {"collection_id": "col_1", "document_ids": ["d1", "d2"], "score": 0.5, "n": 7},
            "cache_scope": {"scope": "collection", "collection_id": "col_1"},
        }),
    )
    .await;
    assert_eq!(id, "evt_api_publish_1");

    let got = receiver.wait_for(1, DEADLINE).await;
    let request = &got[0];
    assert_signed(request);
    assert_eq!(header(request, "webhook-id"), Some("evt_api_publish_1"));
    assert_eq!(header(request, "x-mixpeek-secret"), Some("shared-secret"));
    let body = body_json(request);
    assert_eq!(body["event_id"], "evt_api_publish_1");
    assert_eq!(body["event_type"], TYPE);
    // Stored as a BSON date, sent back in UTC.
    assert_eq!(body["occurred_at"], "2026-01-02T01:04:05.678Z");
    assert_eq!(body["namespace_id"], "ns_1");
    assert_eq!(body["task_id"], "task_42");
    assert_eq!(
        body["subject"],
        json!({"type": "collection", "id": "col_1"})
    );
    assert_eq!(
        body["data"],
        json!({"collection_id": "col_1", "document_ids": ["d1", "d2"], "score": 0.5, "n": 7})
    );
    assert_eq!(
        body["cache_scope"],
        json!({"scope": "collection", "collection_id": "col_1"})
    );

    // The outbox document has the contract's shape.
    let stored = db
        .collection::<Document>("events")
        .find_one(doc! {"_id": "evt_api_publish_1"})
        .await
        .unwrap()
        .expect("the event is in the outbox");
    assert!(stored.get_datetime("occurred_at").is_ok(), "{stored}");
    assert_eq!(stored.get_str("task_id").unwrap(), "task_42");

    // The delivery carries the task id too.
    let d = wait_for_status(&db, &delivery_id(&id, WH_A), "succeeded").await;
    assert_eq!(d.get_str("task_id").unwrap(), "task_42");

    // Without an id, herald makes one up (`evt_` + 24 hex) and says which.
    let generated = publish(&api, json!({"event_type": TYPE, "data": {}})).await;
    assert!(
        generated.len() == 28
            && generated.starts_with("evt_")
            && generated[4..].chars().all(|c| c.is_ascii_hexdigit()),
        "{generated}"
    );
    let got = receiver.wait_for(2, DEADLINE).await;
    let body = body_json(&got[1]);
    assert_eq!(body["event_id"], generated);
    assert_eq!(body["data"], json!({}));
    assert!(body["occurred_at"].as_str().unwrap().ends_with('Z'));
    assert!(body.get("task_id").is_none());
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn publishing_the_same_event_id_again_delivers_it_once() {
    let (uri, name, db) = database("api_idempotent").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |_| {}).await;

    let first = publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_once", "data": {"version": 1}}),
    )
    .await;
    let again = publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_once", "data": {"version": 2}}),
    )
    .await;
    assert_eq!(first, "evt_once");
    assert_eq!(again, "evt_once");

    // Two clients racing with the same id: both told 202, one event.
    let body = json!({"event_type": TYPE, "event_id": "evt_race", "data": {}});
    let (a, b) = tokio::join!(
        api.post("/v1/events", body.clone()),
        api.post("/v1/events", body)
    );
    assert_eq!((a.status, b.status), (202, 202), "{} / {}", a.body, b.body);
    assert_eq!(a.body["event_id"], "evt_race");
    assert_eq!(b.body["event_id"], "evt_race");

    receiver.wait_for(2, DEADLINE).await;
    wait_for_status(&db, &delivery_id("evt_once", WH_A), "succeeded").await;
    wait_for_status(&db, &delivery_id("evt_race", WH_A), "succeeded").await;
    quiet_period().await;
    let requests = receiver.requests();
    let per_id = |id: &str| {
        requests
            .iter()
            .filter(|r| header(r, "webhook-id") == Some(id))
            .count()
    };
    assert_eq!(per_id("evt_once"), 1, "{}", receiver.describe(&requests));
    assert_eq!(per_id("evt_race"), 1, "{}", receiver.describe(&requests));
    // The first publication stands.
    let once = requests
        .iter()
        .find(|r| header(r, "webhook-id") == Some("evt_once"))
        .unwrap();
    assert_eq!(body_json(once)["data"], json!({"version": 1}));
    let stored = db
        .collection::<Document>("events")
        .count_documents(doc! {"_id": "evt_once"})
        .await
        .unwrap();
    assert_eq!(stored, 1);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn deliveries_are_listed_filtered_and_paged() {
    let (uri, name, db) = database("api_list").await;
    let healthy = Receiver::start().await;
    let broken = Receiver::start().await;
    broken.respond_with(500);
    insert_webhook(&db, webhook(WH_A, &healthy.url, &[TYPE])).await;
    insert_webhook(&db, webhook(WH_B, &broken.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |c| c.retry_max_attempts = 2).await;

    publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_l1", "task_id": "task_l", "data": {}}),
    )
    .await;
    publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_l2", "data": {}}),
    )
    .await;
    publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_l3", "data": {}}),
    )
    .await;
    for event in ["evt_l1", "evt_l2", "evt_l3"] {
        wait_for_status(&db, &delivery_id(event, WH_A), "succeeded").await;
        wait_for_status(&db, &delivery_id(event, WH_B), "failed").await;
    }

    // Everything, in id order, on one page.
    let all = api.get("/v1/deliveries").await;
    assert_eq!(all.status, 200, "{}", all.body);
    let mut expected: Vec<String> = ["evt_l1", "evt_l2", "evt_l3"]
        .iter()
        .flat_map(|e| [delivery_id(e, WH_A), delivery_id(e, WH_B)])
        .collect();
    expected.sort();
    assert_eq!(ids(&all), expected);
    assert_eq!(all.body["next_cursor"], Value::Null);

    // A summary: the ledger's fields, never the stored payload or the attempt log.
    let failed = all.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["delivery_id"] == delivery_id("evt_l1", WH_B))
        .unwrap()
        .clone();
    assert_eq!(failed["event_id"], "evt_l1");
    assert_eq!(failed["webhook_id"], WH_B);
    assert_eq!(failed["event_type"], TYPE);
    assert_eq!(failed["task_id"], "task_l");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["attempts"], 2);
    assert_eq!(failed["last_status_code"], 500);
    assert_eq!(failed["next_attempt_at"], Value::Null);
    assert!(failed["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(failed["completed_at"].as_str().unwrap().ends_with('Z'));
    assert!(failed.get("payload").is_none() && failed.get("attempt_log").is_none());

    // Each filter.
    let only = |ids: &[String], webhook: &str| ids.iter().all(|i| i.ends_with(webhook));
    let failed = ids(&api.get("/v1/deliveries?status=failed").await);
    assert_eq!(failed.len(), 3);
    assert!(only(&failed, WH_B), "{failed:?}");
    let succeeded = ids(&api.get("/v1/deliveries?status=succeeded").await);
    assert_eq!(succeeded.len(), 3);
    assert!(only(&succeeded, WH_A), "{succeeded:?}");
    assert!(ids(&api.get("/v1/deliveries?status=pending").await).is_empty());
    let of_a = ids(&api.get(&format!("/v1/deliveries?webhook_id={WH_A}")).await);
    assert_eq!(of_a, succeeded);
    let of_l2 = ids(&api.get("/v1/deliveries?event_id=evt_l2").await);
    assert_eq!(
        of_l2,
        vec![delivery_id("evt_l2", WH_A), delivery_id("evt_l2", WH_B)]
    );
    let of_task = ids(&api.get("/v1/deliveries?task_id=task_l").await);
    assert_eq!(
        of_task,
        vec![delivery_id("evt_l1", WH_A), delivery_id("evt_l1", WH_B)]
    );
    let none = ids(&api
        .get(&format!("/v1/deliveries?status=failed&webhook_id={WH_A}"))
        .await);
    assert!(none.is_empty(), "{none:?}");

    // Pages: every delivery exactly once, whatever the page size.
    for limit in [1, 2, 4, 500] {
        assert_eq!(walk(&api, "", limit).await, expected, "limit {limit}");
    }
    assert_eq!(walk(&api, "status=failed", 2).await, failed);
    let first = api.get("/v1/deliveries?limit=4").await;
    assert_eq!(ids(&first).len(), 4);
    assert!(first.body["next_cursor"].is_string());

    // Odd but legal values simply match nothing.
    for odd in [
        "webhook_id=%00",
        "event_id=%E2%9C%93",
        "task_id=",
        "cursor=",
    ] {
        let response = api.get(&format!("/v1/deliveries?{odd}")).await;
        assert_eq!(response.status, 200, "{odd}: {}", response.body);
    }
    assert_error(&api.get("/v1/deliveries/%00").await, 404);

    // Bad filters.
    for bad in [
        "status=bogus",
        "status=",
        "limit=0",
        "limit=501",
        "limit=ten",
        "cursor=!!!",
        "colour=red",
    ] {
        let response = api.get(&format!("/v1/deliveries?{bad}")).await;
        let message = assert_error(&response, 400);
        let param = bad.split('=').next().unwrap();
        assert!(message.contains(param), "{bad}: {message}");
    }
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_delivery_is_read_with_its_attempt_log() {
    let (uri, name, db) = database("api_get").await;
    let receiver = Receiver::start().await;
    receiver.script([500, 200]);
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |_| {}).await;

    let event = publish(&api, json!({"event_type": TYPE, "data": {"k": "v"}})).await;
    let id = delivery_id(&event, WH_A);
    wait_for_status(&db, &id, "succeeded").await;

    let response = api.get(&format!("/v1/deliveries/{id}")).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let d = &response.body;
    assert_eq!(d["delivery_id"], id);
    assert_eq!(d["event_id"], event);
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["last_status_code"], 200);
    assert!(d["completed_at"].is_string());
    // The stored payload (kept because the first attempt failed) stays inside.
    assert!(d.get("payload").is_none(), "{d}");
    let log = d["attempt_log"].as_array().expect("attempt_log");
    assert_eq!(log.len(), 2, "{d}");
    assert_eq!(log[0]["status_code"], 500);
    assert_eq!(log[1]["status_code"], 200);
    for entry in log {
        assert!(entry["at"].as_str().unwrap().ends_with('Z'), "{entry}");
        assert!(entry["duration_ms"].is_u64(), "{entry}");
    }

    // A client that escapes the `:` finds it too.
    let escaped = api
        .get(&format!("/v1/deliveries/{}", id.replace(':', "%3A")))
        .await;
    assert_eq!(escaped.status, 200, "{}", escaped.body);
    assert_eq!(escaped.body["delivery_id"], id);

    let missing = api.get("/v1/deliveries/evt_nope:wh_nope").await;
    assert!(assert_error(&missing, 404).contains("evt_nope:wh_nope"));
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_failed_delivery_is_retried_once_more_on_request() {
    let (uri, name, db) = database("api_retry").await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |c| c.retry_max_attempts = 2).await;

    let fixed = publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_r1", "data": {}}),
    )
    .await;
    let still_broken = publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_r2", "data": {}}),
    )
    .await;
    let fixed = delivery_id(&fixed, WH_A);
    let still_broken = delivery_id(&still_broken, WH_A);
    for id in [&fixed, &still_broken] {
        let d = wait_for_status(&db, id, "failed").await;
        assert_eq!(d.get_i64("attempts").unwrap(), 2);
    }
    assert_eq!(receiver.count(), 4);

    // The endpoint is still broken: the retry is one more attempt, not a new schedule.
    let response = api
        .post(&format!("/v1/deliveries/{still_broken}/retry"), json!({}))
        .await;
    assert_eq!(response.status, 202, "{}", response.body);
    assert_eq!(
        response.body,
        json!({"delivery_id": still_broken, "status": "pending"})
    );
    let d = wait_for_status(&db, &still_broken, "failed").await;
    assert_eq!(d.get_i64("attempts").unwrap(), 3);
    quiet_period().await;
    assert_eq!(receiver.count(), 5);
    let d = delivery(&db, &still_broken).await.unwrap();
    assert_eq!(d.get_i64("attempts").unwrap(), 3);
    assert_eq!(d.get_str("status").unwrap(), "failed");

    // Fixed now. Two operators click "retry" at once: it is queued, and attempted, once.
    receiver.respond_with(200);
    let path = format!("/v1/deliveries/{fixed}/retry");
    let (a, b) = tokio::join!(api.post(&path, json!({})), api.post(&path, json!({})));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "{} / {}", a.body, b.body);
    let d = wait_for_status(&db, &fixed, "succeeded").await;
    assert_eq!(d.get_i64("attempts").unwrap(), 3);
    assert_eq!(d.get_array("attempt_log").unwrap().len(), 3);
    quiet_period().await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 6, "{}", receiver.describe(&requests));
    // The retry sent the very same bytes, signed afresh.
    let of_fixed: Vec<_> = requests
        .iter()
        .filter(|r| header(r, "webhook-id") == Some("evt_r1"))
        .collect();
    assert_eq!(of_fixed.len(), 3);
    assert_eq!(of_fixed[0].body, of_fixed[2].body);
    assert_signed(of_fixed[2]);

    let via_api = api.get(&format!("/v1/deliveries/{fixed}")).await;
    assert_eq!(via_api.body["status"], "succeeded");
    assert_eq!(via_api.body["attempts"], 3);
    assert!(via_api.body["completed_at"].is_string());

    // Delivered already: nothing to retry.
    let again = api.post(&path, json!({})).await;
    assert!(assert_error(&again, 409).contains("succeeded"));
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn retry_refuses_what_it_cannot_requeue() {
    let (uri, name, db) = database("api_retry_refused").await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let other = Receiver::start().await;
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let mut disabled = webhook(WH_B, &other.url, &[TYPE]);
    disabled.insert("enabled", false);
    insert_webhook(&db, disabled).await;
    // Slow retries: after its first attempt the delivery stays pending for this story.
    let (daemon, api) = start(&uri, &name, |c| {
        c.retry_initial_ms = 60_000;
        c.retry_max_ms = 60_000;
        c.retry_max_attempts = 15;
    })
    .await;

    let event = publish(&api, json!({"event_type": TYPE, "data": {}})).await;
    let pending = delivery_id(&event, WH_A);
    wait_for_status(&db, &pending, "pending").await;
    let response = api
        .post(&format!("/v1/deliveries/{pending}/retry"), json!({}))
        .await;
    assert!(assert_error(&response, 409).contains("queued"));

    let unknown = api
        .post("/v1/deliveries/evt_nope:wh_nope/retry", json!({}))
        .await;
    assert_error(&unknown, 404);

    // Failed deliveries written by an older herald, or by hand.
    let deliveries = db.collection::<Document>("deliveries");
    let failed = |event: &str, webhook: &str, payload: bool| {
        let mut d = doc! {
            "_id": delivery_id(event, webhook), "event_id": event, "webhook_id": webhook,
            "event_type": TYPE, "status": "failed", "attempts": 15i64, "attempt_log": [],
            "next_attempt_at": mongodb::bson::Bson::Null, "last_status_code": 500,
            "created_at": mongodb::bson::DateTime::now(),
            "completed_at": mongodb::bson::DateTime::now(),
        };
        if payload {
            d.insert(
                "payload",
                json!({"event_id": event, "event_type": TYPE, "data": {}}).to_string(),
            );
        }
        d
    };
    deliveries
        .insert_many([
            failed("evt_no_payload", WH_A, false),
            failed("evt_disabled", WH_B, true),
            failed("evt_orphan", "wh_00000000000000ff", true),
        ])
        .await
        .unwrap();
    let cases = [
        (delivery_id("evt_no_payload", WH_A), "payload"),
        (delivery_id("evt_disabled", WH_B), "disabled"),
        (
            delivery_id("evt_orphan", "wh_00000000000000ff"),
            "no longer exists",
        ),
    ];
    for (id, why) in cases {
        let response = api
            .post(&format!("/v1/deliveries/{id}/retry"), json!({}))
            .await;
        let message = assert_error(&response, 409);
        assert!(message.contains(why), "{id}: {message}");
        // Refused means untouched.
        let d = delivery(&db, &id).await.unwrap();
        assert_eq!(d.get_str("status").unwrap(), "failed", "{id}");
    }
    // Recovering a disabled webhook is refused the same way.
    let response = api
        .post(
            &format!("/v1/webhooks/{WH_B}/recover"),
            json!({"since": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert!(assert_error(&response, 409).contains("disabled"));
    assert_eq!(other.count(), 0);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn recover_requeues_a_webhooks_failed_deliveries_since_a_time() {
    let (uri, name, db) = database("api_recover").await;
    let a = Receiver::start().await;
    let b = Receiver::start().await;
    a.respond_with(500);
    b.respond_with(500);
    insert_webhook(&db, webhook(WH_A, &a.url, &[TYPE])).await;
    insert_webhook(&db, webhook(WH_B, &b.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |c| c.retry_max_attempts = 2).await;

    // One failure before the outage window...
    publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_old", "data": {}}),
    )
    .await;
    for webhook in [WH_A, WH_B] {
        wait_for_status(&db, &delivery_id("evt_old", webhook), "failed").await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(20)).await;
    // ...and three during it.
    let during = ["evt_out_1", "evt_out_2", "evt_out_3"];
    for event in during {
        publish(
            &api,
            json!({"event_type": TYPE, "event_id": event, "data": {}}),
        )
        .await;
    }
    for event in during {
        for webhook in [WH_A, WH_B] {
            wait_for_status(&db, &delivery_id(event, webhook), "failed").await;
        }
    }
    let b_requests = b.count();

    // A's endpoint is back: recover what failed since the outage began.
    a.respond_with(200);
    let response = api
        .post(
            &format!("/v1/webhooks/{WH_A}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(response.status, 202, "{}", response.body);
    assert_eq!(response.body, json!({"recovered": 3}));
    for event in during {
        let d = wait_for_status(&db, &delivery_id(event, WH_A), "succeeded").await;
        assert_eq!(d.get_i64("attempts").unwrap(), 3);
    }
    quiet_period().await;
    // Before `since`: untouched. The other webhook: untouched.
    let old = delivery(&db, &delivery_id("evt_old", WH_A)).await.unwrap();
    assert_eq!(old.get_str("status").unwrap(), "failed");
    for event in during.iter().chain(["evt_old"].iter()) {
        let d = delivery(&db, &delivery_id(event, WH_B)).await.unwrap();
        assert_eq!(d.get_str("status").unwrap(), "failed", "{event}");
        assert_eq!(d.get_i64("attempts").unwrap(), 2, "{event}");
    }
    assert_eq!(b.count(), b_requests);
    let delivered: BTreeSet<String> = a
        .requests()
        .iter()
        .skip(8)
        .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
        .collect();
    assert_eq!(
        delivered,
        during
            .iter()
            .map(|e| e.to_string())
            .collect::<BTreeSet<_>>()
    );

    // Nothing failed since then any more; a future `since` finds nothing either.
    let again = api
        .post(
            &format!("/v1/webhooks/{WH_A}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(again.body, json!({"recovered": 0}));
    let future = api
        .post(
            &format!("/v1/webhooks/{WH_A}/recover"),
            json!({"since": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(future.status, 202, "{}", future.body);
    assert_eq!(future.body, json!({"recovered": 0}));

    // Going further back picks up the older one.
    let older = api
        .post(
            &format!("/v1/webhooks/{WH_A}/recover"),
            json!({"since": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(older.body, json!({"recovered": 1}));
    wait_for_status(&db, &delivery_id("evt_old", WH_A), "succeeded").await;
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_a_4xx_naming_the_field() {
    let (uri, name, db) = database("api_publish_errors").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |_| {}).await;

    let deep = (0..40).fold(json!(1), |inner, _| json!({ "x": inner }));
    // (body, status, what the message must name)
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"data": {}}), 422, "event_type"),
        (
            json!({"event_type": "no.such.event", "data": {}}),
            422,
            "event_type",
        ),
        (json!({"event_type": "", "data": {}}), 422, "event_type"),
        (json!({"event_type": 5, "data": {}}), 422, "event_type"),
        (json!({"event_type": TYPE}), 422, "data"),
        (json!({"event_type": TYPE, "data": "text"}), 422, "data"),
        (json!({"event_type": TYPE, "data": [1, 2]}), 422, "data"),
        (json!({"event_type": TYPE, "data": null}), 422, "data"),
        (
            json!({"event_type": TYPE, "data": {}, "colour": "red"}),
            422,
            "colour",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "event_id": "has space"}),
            422,
            "event_id",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "event_id": ""}),
            422,
            "event_id",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "event_id": "x".repeat(201)}),
            422,
            "event_id",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "event_id": 12}),
            422,
            "event_id",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "occurred_at": "yesterday"}),
            422,
            "occurred_at",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "occurred_at": 1_767_225_600}),
            422,
            "occurred_at",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "subject": {"type": "object"}}),
            422,
            "subject",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "subject": "obj_1"}),
            422,
            "subject",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "cache_scope": {"scope": "everything"}}),
            422,
            "cache_scope",
        ),
        (
            json!({"event_type": TYPE, "data": {}, "cache_scope": {"scope": "key", "keys": "k"}}),
            422,
            "cache_scope.keys",
        ),
        (
            json!({"event_type": TYPE, "data": {"$set": 1}}),
            422,
            "data.$set",
        ),
        (
            json!({"event_type": TYPE, "data": {"n": u64::MAX}}),
            422,
            "data.n",
        ),
        (json!({"event_type": TYPE, "data": deep}), 422, "data"),
        (
            json!({"event_type": TYPE, "data": {}, "task_id": ["t"]}),
            422,
            "task_id",
        ),
        (json!(["not", "an", "object"]), 422, "body"),
        // serde would read a struct from an array of its fields; herald does not.
        (json!([TYPE, {}]), 422, "body"),
    ];
    for (body, status, field) in cases {
        let response = api.post("/v1/events", body.clone()).await;
        let message = assert_error(&response, status);
        assert!(message.contains(field), "{body}: {message}");
    }
    for raw in ["{\"event_type\": ", "not json", ""] {
        let response = api
            .raw(
                "POST",
                "/v1/events",
                raw,
                &[("content-type", "application/json")],
            )
            .await;
        assert_error(&response, 400);
    }
    let wrong_method = api.get("/v1/events").await;
    assert_error(&wrong_method, 405);
    assert_eq!(
        wrong_method
            .headers
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    assert_error(&api.delete("/v1/deliveries").await, 405);
    assert_error(&api.get("/v1/deliveries/evt_1:wh_1/retry").await, 405);
    assert_error(&api.get(&format!("/v1/webhooks/{WH_A}/recover")).await, 405);
    // Nothing refused reached the outbox.
    let published = db
        .collection::<Document>("events")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(published, 0);

    // recover: `since` is required and must be RFC 3339; the webhook must exist.
    let recover = format!("/v1/webhooks/{WH_A}/recover");
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "since"),
        (json!({"since": "last tuesday"}), "since"),
        (json!({"since": "2026-01-01"}), "since"),
        (json!({"since": 1_767_225_600}), "since"),
        (json!({"since": null}), "since"),
        (
            json!({"since": "2026-01-01T00:00:00Z", "until": "x"}),
            "until",
        ),
    ];
    for (body, field) in cases {
        let response = api.post(&recover, body.clone()).await;
        let message = assert_error(&response, 422);
        assert!(message.contains(field), "{body}: {message}");
    }
    let empty = api.raw("POST", &recover, "", &[]).await;
    assert!(assert_error(&empty, 422).contains("since"));
    let malformed = api
        .raw(
            "POST",
            &recover,
            "{since",
            &[("content-type", "application/json")],
        )
        .await;
    assert_error(&malformed, 400);
    let unknown = api
        .post(
            "/v1/webhooks/wh_00000000000000ff/recover",
            json!({"since": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert!(assert_error(&unknown, 404).contains("wh_00000000000000ff"));
    assert_eq!(receiver.count(), 0);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn with_an_api_key_these_routes_refuse_anonymous_callers() {
    let (uri, name, db) = database("api_deliveries_auth").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |c| {
        c.api_key = Some("k_deliveries_test_key".into())
    })
    .await;
    let anonymous = api.anonymous();
    let wrong = Api::new(daemon.listen, Some("k_wrong"));
    let publish_body = json!({"event_type": TYPE, "event_id": "evt_auth", "data": {}});
    let since = json!({"since": "2020-01-01T00:00:00Z"});
    let recover = format!("/v1/webhooks/{WH_A}/recover");

    for client in [&anonymous, &wrong] {
        assert_error(&client.post("/v1/events", publish_body.clone()).await, 401);
        assert_error(&client.get("/v1/deliveries").await, 401);
        assert_error(&client.get("/v1/deliveries/evt_auth:wh_1").await, 401);
        assert_error(
            &client
                .post("/v1/deliveries/evt_auth:wh_1/retry", json!({}))
                .await,
            401,
        );
        assert_error(&client.post(&recover, since.clone()).await, 401);
    }
    let published = db
        .collection::<Document>("events")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(published, 0, "a refused publish wrote nothing");

    // With the key, the same calls go through.
    assert_eq!(publish(&api, publish_body).await, "evt_auth");
    receiver.wait_for(1, DEADLINE).await;
    let id = delivery_id("evt_auth", WH_A);
    wait_for_status(&db, &id, "succeeded").await;
    assert_eq!(ids(&api.get("/v1/deliveries").await), vec![id.clone()]);
    assert_eq!(api.get(&format!("/v1/deliveries/{id}")).await.status, 200);
    assert_error(
        &api.post(&format!("/v1/deliveries/{id}/retry"), json!({}))
            .await,
        409,
    );
    assert_eq!(api.post(&recover, since).await.status, 202);
    daemon.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Generated input: whatever arrives, the answer is never a 5xx.

/// Keys, including the kinds MongoDB is picky about.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[a-z_]{1,8}",
        2 => "\\PC{0,8}",
        1 => Just("$set".to_owned()),
        1 => Just("a.b".to_owned()),
        1 => Just("nul\u{0}key".to_owned()),
        1 => Just(String::new()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<i32>().prop_map(|n| json!(n)),
        "[a-z0-9 ]{0,8}".prop_map(Value::String),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,16}".prop_map(Value::String),
        "[\\x00-\\x7f]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An optional field: mostly absent or plausible, sometimes anything at all.
fn field(plausible: BoxedStrategy<Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => Just(None),
        6 => plausible.prop_map(Some),
        1 => json_value().prop_map(Some),
    ]
}

/// A required field: mostly plausible, sometimes missing or anything at all.
fn required(plausible: BoxedStrategy<Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        16 => plausible.prop_map(Some),
        1 => json_value().prop_map(Some),
    ]
}

fn rfc3339_ish() -> BoxedStrategy<Value> {
    prop_oneof![
        (-62_135_596_800i64..253_402_300_799i64).prop_map(|s| {
            let t = chrono::DateTime::from_timestamp(s, 0).unwrap_or_default();
            json!(t.to_rfc3339())
        }),
        Just(json!("2026-01-01T00:00:00Z")),
        Just(json!("2026-12-31T23:59:60+14:00")),
        "[0-9T:.Z+-]{0,30}".prop_map(|s| json!(s)),
    ]
    .boxed()
}

/// Bodies for `POST /v1/events`: mostly objects built from its fields (each sometimes
/// wrong), plus arbitrary JSON and arbitrary bytes.
fn publish_body() -> impl Strategy<Value = Vec<u8>> {
    let event_type = prop_oneof![
        6 => Just(json!(TYPE)),
        2 => Just(json!("object.created")),
        1 => Just(json!("no.such.type")),
        1 => Just(json!("")),
    ]
    .boxed();
    let data = prop_oneof![
        prop::collection::btree_map(key(), json_value(), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        Just(json!({"collection_id": "c1", "document_ids": ["d1"]})),
    ]
    .boxed();
    let event_id = prop_oneof![
        8 => "[A-Za-z0-9_.:-]{1,40}".prop_map(|s| json!(s)),
        2 => "\\PC{0,20}".prop_map(|s| json!(s)),
        1 => Just(json!("x".repeat(201))),
    ]
    .boxed();
    let text = "\\PC{0,12}".prop_map(|s| json!(s)).boxed();
    let subject = ("\\PC{0,8}", "\\PC{0,8}")
        .prop_map(|(t, i)| json!({"type": t, "id": i}))
        .boxed();
    let cache_scope = (
        prop_oneof![
            Just("collection"),
            Just("namespace"),
            Just("key"),
            Just("all")
        ],
        prop::option::of("\\PC{0,8}"),
        prop::option::of(prop::collection::vec("\\PC{0,8}", 0..4)),
    )
        .prop_map(|(scope, id, keys)| {
            let mut v = json!({"scope": scope});
            if let Some(id) = id {
                v["collection_id"] = json!(id);
            }
            if let Some(keys) = keys {
                v["keys"] = json!(keys);
            }
            v
        })
        .boxed();
    let object = (
        (required(event_type), required(data), field(event_id)),
        (
            field(rfc3339_ish()),
            field(text.clone()),
            field(text),
            field(subject),
            field(cache_scope),
        ),
        prop::option::weighted(0.15, (key(), json_value())),
    )
        .prop_map(
            |(
                (event_type, data, event_id),
                (occurred_at, namespace, task, subject, scope),
                extra,
            )| {
                let mut body = serde_json::Map::new();
                let named = [
                    ("event_type", event_type),
                    ("data", data),
                    ("event_id", event_id),
                    ("occurred_at", occurred_at),
                    ("namespace_id", namespace),
                    ("task_id", task),
                    ("subject", subject),
                    ("cache_scope", scope),
                ];
                for (name, value) in named {
                    if let Some(value) = value {
                        body.insert(name.to_owned(), value);
                    }
                }
                if let Some((k, v)) = extra {
                    body.insert(k, v);
                }
                Value::Object(body).to_string().into_bytes()
            },
        );
    prop_oneof![
        12 => object,
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..48),
        1 => "\\PC{0,48}".prop_map(String::into_bytes),
    ]
}

/// Query strings for `GET /v1/deliveries`: known and unknown parameters with plausible and
/// arbitrary values, form-encoded — plus raw strings of URL-legal characters.
fn deliveries_query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("status".to_owned()),
        Just("webhook_id".to_owned()),
        Just("event_id".to_owned()),
        Just("task_id".to_owned()),
        Just("limit".to_owned()),
        Just("cursor".to_owned()),
        "\\PC{0,6}",
    ];
    let value = prop_oneof![
        Just("pending".to_owned()),
        Just("failed".to_owned()),
        Just("succeeded".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        (0i64..600).prop_map(|n| n.to_string()),
        "[A-Za-z0-9_-]{0,24}",
        "\\PC{0,16}",
    ];
    let pairs = prop::collection::vec((name, value), 0..5).prop_map(|pairs| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            query.append_pair(&k, &v);
        }
        query.finish()
    });
    prop_oneof![
        4 => pairs,
        1 => "[A-Za-z0-9=&%_.+-]{0,40}",
    ]
}

#[test]
fn generated_requests_never_get_a_5xx() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The receiver stays up (and healthy) throughout, so generated `recover` calls find
    // little to re-queue and the budget goes to generated input.
    let (daemon, api, db, receiver) = runtime.block_on(async {
        let (uri, name, db) = database("api_generated").await;
        let receiver = Receiver::start().await;
        insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
        let (daemon, api) = start(&uri, &name, |_| {}).await;
        (daemon, api, db, receiver)
    });
    let started = std::time::Instant::now();
    let config = ProptestConfig {
        cases: 1_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };

    let check = |what: &str, response: ApiResponse| -> Result<(), TestCaseError> {
        prop_assert!(
            response.status < 500,
            "{what}: {} {}",
            response.status,
            response.body
        );
        if response.status >= 400 {
            prop_assert!(
                response.body["error"]["code"].is_string()
                    && response.body["error"]["message"].is_string(),
                "{what}: not an error body: {}",
                response.body
            );
        }
        Ok(())
    };

    let accepted = std::cell::RefCell::new(BTreeSet::new());
    let mut runner = TestRunner::new(config.clone());
    runner
        .run(&publish_body(), |body| {
            let shown = String::from_utf8_lossy(&body).into_owned();
            let response = runtime.block_on(api.raw(
                "POST",
                "/v1/events",
                body,
                &[("content-type", "application/json")],
            ));
            if response.status == 202 {
                let id = response.body["event_id"].as_str();
                prop_assert!(id.is_some(), "{shown}: {}", response.body);
                accepted.borrow_mut().extend(id.map(str::to_owned));
            }
            check(&format!("POST /v1/events {shown}"), response)
        })
        .unwrap();
    // The generator must exercise the insert path, not only the refusals.
    let accepted: Vec<String> = accepted.into_inner().into_iter().collect();
    assert!(
        accepted.len() >= 50,
        "only {} generated bodies were valid",
        accepted.len()
    );

    let mut runner = TestRunner::new(ProptestConfig {
        cases: 500,
        ..config
    });
    runner
        .run(&deliveries_query(), |query| {
            let path = format!("/v1/deliveries?{query}");
            let response = runtime.block_on(api.get(&path));
            check(&format!("GET {path}"), response)
        })
        .unwrap();

    let recover = format!("/v1/webhooks/{WH_A}/recover");
    let since = prop_oneof![
        rfc3339_ish().prop_map(|since| json!({ "since": since }).to_string().into_bytes()),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ];
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&since, |body| {
            let shown = String::from_utf8_lossy(&body).into_owned();
            let response = runtime.block_on(api.raw("POST", &recover, body, &[]));
            check(&format!("POST {recover} {shown}"), response)
        })
        .unwrap();

    eprintln!(
        "generated requests: {} distinct events accepted, {:?} in all",
        accepted.len(),
        started.elapsed()
    );
    runtime.block_on(async {
        // Every accepted event is in the outbox.
        let stored = db
            .collection::<Document>("events")
            .count_documents(doc! {"_id": {"$in": &accepted}})
            .await
            .unwrap();
        assert_eq!(stored, accepted.len() as u64);
        daemon.stop().await.unwrap();
        drop((api, db, receiver));
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
}
