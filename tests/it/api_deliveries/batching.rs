//! Publishing many events at once: concurrent `POST /v1/events` share writes (group
//! commit) yet each publisher gets its own answer, and `POST /v1/events/batch` answers each
//! event as `POST /v1/events` would have. Whatever is batched, every event is delivered
//! once; a duplicate id answers as it always did; a database that is down is a 503, not a
//! hang.

use std::collections::HashMap;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

use super::{publish, quiet_period, start, DEADLINE, TYPE, WH_A};
use crate::api_client::assert_error;
use crate::daemon::test_config;
use crate::fixtures::*;
use crate::support::{Receiver, TestMongo};

/// How often each `webhook-id` reached the receiver.
fn deliveries_per_event(receiver: &Receiver) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in receiver.requests() {
        if let Some(id) = header(&request, "webhook-id") {
            *counts.entry(id.to_owned()).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn sixteen_concurrent_publishers_each_get_their_own_event_delivered_once() {
    let (uri, name, db) = database("api_group_commit").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |_| {}).await;
    let api = std::sync::Arc::new(api);

    // 16 publishers, 12 events each, all in flight together: half name their event, half
    // let herald name it. Each must get back its own id, whatever it was written with.
    let publishers: Vec<_> = (0..16)
        .map(|p| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..12 {
                    let mut body = json!({"event_type": TYPE, "data": {"publisher": p, "i": i}});
                    let named = (p + i) % 2 == 0;
                    if named {
                        body["event_id"] = json!(format!("evt_gc_{p:02}_{i:02}"));
                    }
                    let response = api.post("/v1/events", body).await;
                    assert_eq!(response.status, 202, "{}", response.body);
                    let id = response.body["event_id"].as_str().unwrap().to_owned();
                    if named {
                        assert_eq!(id, format!("evt_gc_{p:02}_{i:02}"));
                    }
                    ids.push((id, p, i));
                }
                ids
            })
        })
        .collect();
    let mut published = Vec::new();
    for publisher in publishers {
        published.extend(publisher.await.unwrap());
    }
    assert_eq!(published.len(), 192);

    // Every event arrives once, carrying the data its own publisher sent.
    let got = receiver.wait_for(192, DEADLINE).await;
    quiet_period().await;
    let counts = deliveries_per_event(&receiver);
    let by_id: HashMap<String, Value> = got
        .iter()
        .map(|r| (header(r, "webhook-id").unwrap().to_owned(), body_json(r)))
        .collect();
    for (id, p, i) in &published {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "{id}: {}",
            receiver.describe(&got)
        );
        assert_eq!(by_id[id]["data"], json!({"publisher": p, "i": i}), "{id}");
    }
    assert_eq!(counts.len(), 192);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_batch_answers_each_event_as_a_publish_of_its_own_would() {
    let (uri, name, db) = database("api_batch").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |_| {}).await;

    let earlier = publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_b_earlier", "data": {"v": 1}}),
    )
    .await;
    assert_eq!(earlier, "evt_b_earlier");

    let unknown_type =
        json!({"event_type": "no.such.type", "event_id": "evt_b_bad_type", "data": {}});
    let bad_id = json!({"event_type": TYPE, "event_id": "has space", "data": {}});
    let not_an_object = json!(["event_type", TYPE]);
    let unknown_field = json!({"event_type": TYPE, "data": {}, "colour": "red"});
    let events = json!([
        {"event_type": TYPE, "event_id": "evt_b_1", "data": {"v": 1}},
        {"event_type": TYPE, "event_id": "evt_b_earlier", "data": {"v": 2}},
        unknown_type,
        {"event_type": TYPE, "event_id": "evt_b_2", "data": {"v": 1}},
        bad_id,
        {"event_type": TYPE, "event_id": "evt_b_2", "data": {"v": 2}},
        not_an_object,
        {"event_type": TYPE, "data": {"v": "named by herald"}},
        unknown_field,
    ]);
    let response = api
        .post("/v1/events/batch", json!({ "events": events }))
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let results = response.body["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 9, "{}", response.body);

    // The valid ones, duplicates (of an earlier publish and within the batch) included:
    // 202 with their id, as POST /v1/events answers.
    for (i, id) in [
        (0, "evt_b_1"),
        (1, "evt_b_earlier"),
        (3, "evt_b_2"),
        (5, "evt_b_2"),
    ] {
        assert_eq!(results[i]["status"], 202, "{i}: {}", results[i]);
        assert_eq!(results[i]["event_id"], id, "{i}");
        assert!(results[i].get("error").is_none(), "{}", results[i]);
    }
    let generated = results[7]["event_id"].as_str().unwrap().to_owned();
    assert_eq!(results[7]["status"], 202);
    assert!(
        generated.starts_with("evt_") && generated.len() == 28,
        "{generated}"
    );

    // The invalid ones: the status and error POST /v1/events gives the same body.
    for (i, body) in [
        (2, unknown_type),
        (4, bad_id),
        (6, not_an_object),
        (8, unknown_field),
    ] {
        let alone = api.post("/v1/events", body).await;
        assert_error(&alone, results[i]["status"].as_u64().unwrap() as u16);
        assert_eq!(results[i]["error"], alone.body["error"], "{i}");
    }
    assert_eq!(results[2]["event_id"], "evt_b_bad_type");
    assert_eq!(results[4]["event_id"], "has space");
    assert_eq!(results[6]["event_id"], Value::Null);
    assert_eq!(results[4]["status"], 422);

    // Four new events, each delivered once; the earlier publication of evt_b_earlier stands.
    let got = receiver.wait_for(4, DEADLINE).await;
    quiet_period().await;
    let counts = deliveries_per_event(&receiver);
    for id in ["evt_b_earlier", "evt_b_1", "evt_b_2", generated.as_str()] {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "{id}: {}",
            receiver.describe(&got)
        );
    }
    assert_eq!(counts.len(), 4, "{}", receiver.describe(&got));
    let earlier = got
        .iter()
        .find(|r| header(r, "webhook-id") == Some("evt_b_earlier"))
        .unwrap();
    assert_eq!(body_json(earlier)["data"], json!({"v": 1}));
    let stored = db
        .collection::<Document>("events")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(stored, 4);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_batch_that_is_not_one_is_refused_whole_and_publishes_nothing() {
    let (uri, name, db) = database("api_batch_refused").await;
    let (daemon, api) = start(&uri, &name, |_| {}).await;

    let event =
        |i: usize| json!({"event_type": TYPE, "event_id": format!("evt_many_{i}"), "data": {}});
    let too_many = api
        .post(
            "/v1/events/batch",
            json!({"events": (0..1_001).map(event).collect::<Vec<_>>()}),
        )
        .await;
    let message = assert_error(&too_many, 422);
    assert!(message.contains("1000"), "{message}");

    assert_error(
        &api.post("/v1/events/batch", json!({"events": []})).await,
        422,
    );
    assert_error(
        &api.post("/v1/events/batch", json!({"events": {}})).await,
        422,
    );
    assert_error(&api.post("/v1/events/batch", json!([event(1)])).await, 422);
    assert_error(
        &api.post(
            "/v1/events/batch",
            json!({"events": [event(1)], "extra": 1}),
        )
        .await,
        422,
    );
    let malformed = api
        .raw(
            "POST",
            "/v1/events/batch",
            "{\"events\": [",
            &[("content-type", "application/json")],
        )
        .await;
    assert_error(&malformed, 400);
    let wrong_method = api.get("/v1/events/batch").await;
    assert_error(&wrong_method, 405);

    // Exactly the limit is one request, one answer per event.
    let thousand = api
        .post(
            "/v1/events/batch",
            json!({"events": (0..1_000).map(event).collect::<Vec<_>>()}),
        )
        .await;
    assert_eq!(thousand.status, 200, "{}", thousand.body);
    let results = thousand.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1_000);
    assert!(
        results.iter().all(|r| r["status"] == 202),
        "{}",
        thousand.body
    );
    let stored = db
        .collection::<Document>("events")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(stored, 1_000);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn with_the_database_down_publishing_answers_503_rather_than_hanging() {
    let mut mongo = TestMongo::spawn().await;
    let receiver = Receiver::start().await;
    let name = "publish_outage";
    let db = mongo.client().await.database(name);
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    // Server selection gives up after two seconds, as in the outage story.
    let uri = format!("{}&serverSelectionTimeoutMS=2000", mongo.uri);
    let mut config = test_config(&uri, name, crate::support::test_ca_pem_path());
    config.retry_initial_ms = 200;
    let key = config.api_key.clone();
    let daemon = crate::daemon::InProcess::start(config).await;
    let api = crate::api_client::Api::new(daemon.listen, key.as_deref());
    publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_up_1", "data": {}}),
    )
    .await;

    mongo.stop().await;
    // Several at once, so that they share a write that fails: each is answered.
    let single = |i: usize| {
        api.post(
            "/v1/events",
            json!({"event_type": TYPE, "event_id": format!("evt_down_{i}"), "data": {}}),
        )
    };
    let answers = tokio::time::timeout(Duration::from_secs(120), async {
        futures::future::join_all((0..8).map(single)).await
    })
    .await
    .expect("every publish is answered while MongoDB is down");
    for answer in &answers {
        assert_error(answer, 503);
        assert_eq!(answer.body["error"]["code"], "store_unavailable");
    }
    let batch = tokio::time::timeout(
        Duration::from_secs(120),
        api.post(
            "/v1/events/batch",
            json!({"events": [{"event_type": TYPE, "event_id": "evt_down_b", "data": {}}]}),
        ),
    )
    .await
    .expect("the batch is answered while MongoDB is down");
    assert_error(&batch, 503);

    // Back up: publishing again (the same ids) works, and each event arrives once.
    mongo.restart().await;
    let mut published = false;
    for _ in 0..120 {
        let response = single(0).await;
        if response.status == 202 {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(published, "publishing never recovered");
    publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_down_1", "data": {}}),
    )
    .await;
    let got = receiver.wait_for(3, Duration::from_secs(60)).await;
    quiet_period().await;
    let counts = deliveries_per_event(&receiver);
    for id in ["evt_up_1", "evt_down_0", "evt_down_1"] {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "{id}: {}",
            receiver.describe(&got)
        );
    }
    daemon.stop().await.unwrap();
}
