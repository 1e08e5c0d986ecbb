//! Reading deliveries: listed, filtered and paged (every delivery exactly once), and one
//! delivery read with its attempt log.

use serde_json::{json, Value};

use super::{delivery_id, ids, publish, start, TYPE, WH_A, WH_B};
use crate::api_client::{assert_error, Api};
use crate::fixtures::*;
use crate::support::Receiver;

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
