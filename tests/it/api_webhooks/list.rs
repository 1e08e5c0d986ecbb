//! Listing webhooks: cursors page through every webhook exactly once, and filters by
//! event type and enabled combine with them.

use std::collections::{BTreeSet, HashSet};

use serde_json::{json, Value};

use super::{create, setup};
use crate::api_client::Api;

/// Pages through `query` with `limit`, returning each page's ids.
async fn pages(api: &Api, query: &str, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("/v1/webhooks?limit={limit}{query}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = api.get(&url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let ids: Vec<String> = page.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["webhook_id"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.len() <= limit);
        pages.push(ids);
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert_eq!(page.body["next_cursor"], Value::Null);
                return pages;
            }
        }
        assert!(pages.len() < 100, "pagination does not end");
    }
}

#[tokio::test]
async fn listing_pages_through_every_webhook_exactly_once() {
    let s = setup("api_wh_pages", |_| {}).await;
    let mut ids = BTreeSet::new();
    for i in 0..7 {
        let created = create(
            &s.api,
            json!({"url": format!("https://hooks.example.com/{i}"), "event_types": ["*"]}),
        )
        .await;
        ids.insert(created["webhook_id"].as_str().unwrap().to_owned());
    }

    let all = pages(&s.api, "", 3).await;
    assert_eq!(
        all.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3, 1],
        "{all:?}"
    );
    let seen: Vec<String> = all.concat();
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), ids);
    // Sorted by id, so seen in order, once each.
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

    // A webhook created between two pages shifts nothing: no duplicates, none missed.
    let first = s.api.get("/v1/webhooks?limit=3").await;
    let mut seen: Vec<String> = first.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["webhook_id"].as_str().unwrap().to_owned())
        .collect();
    let extra = create(
        &s.api,
        json!({"url": "https://hooks.example.com/extra", "event_types": ["*"]}),
    )
    .await;
    let extra = extra["webhook_id"].as_str().unwrap().to_owned();
    let mut cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    loop {
        let page = s
            .api
            .get(&format!("/v1/webhooks?limit=3&cursor={cursor}"))
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        for w in page.body["results"].as_array().unwrap() {
            seen.push(w["webhook_id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates: {seen:?}");
    for id in &ids {
        assert!(unique.contains(id), "{id} missed");
    }
    // The new one is seen exactly when it sorts after the page already read.
    assert_eq!(unique.contains(&extra), extra > seen[2]);

    // 8 webhooks in pages of 4: the last full page already says there is no next one.
    assert_eq!(
        pages(&s.api, "", 4)
            .await
            .iter()
            .map(Vec::len)
            .collect::<Vec<_>>(),
        [4, 4]
    );
    // Without a limit, the default page holds them all.
    let everything = s.api.get("/v1/webhooks").await;
    assert_eq!(everything.body["results"].as_array().unwrap().len(), 8);
    assert_eq!(everything.body["next_cursor"], Value::Null);
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn lists_filter_by_event_type_and_enabled() {
    let s = setup("api_wh_filters", |_| {}).await;
    let mut make = Vec::new();
    for (name, types, enabled) in [
        ("objects", json!(["object.created"]), true),
        ("batches-off", json!(["batch.completed"]), false),
        ("everything", json!(["*"]), true),
        ("both", json!(["object.created", "batch.completed"]), true),
        (
            "everything-and-alerts",
            json!(["*", "delivery.exhausted"]),
            true,
        ),
    ] {
        let created = create(
            &s.api,
            json!({"url": "https://hooks.example.com/h", "event_types": types,
                   "name": name, "enabled": enabled}),
        )
        .await;
        make.push(created);
    }
    let names = |response: &crate::api_client::ApiResponse| -> BTreeSet<String> {
        assert_eq!(response.status, 200, "{}", response.body);
        response.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    let subscribed = s.api.get("/v1/webhooks?event_type=object.created").await;
    assert_eq!(
        names(&subscribed),
        set(&["objects", "everything", "both", "everything-and-alerts"])
    );
    // herald's operational events go only to the webhooks that name them.
    let alerts = s
        .api
        .get("/v1/webhooks?event_type=delivery.exhausted")
        .await;
    assert_eq!(names(&alerts), set(&["everything-and-alerts"]));
    let enabled_batches = s
        .api
        .get("/v1/webhooks?event_type=batch.completed&enabled=true")
        .await;
    assert_eq!(
        names(&enabled_batches),
        set(&["everything", "both", "everything-and-alerts"])
    );
    let disabled = s.api.get("/v1/webhooks?enabled=false").await;
    assert_eq!(names(&disabled), set(&["batches-off"]));
    let only_star = s.api.get("/v1/webhooks?event_type=cluster.completed").await;
    assert_eq!(
        names(&only_star),
        set(&["everything", "everything-and-alerts"])
    );

    // Filters and cursors combine.
    let walked: Vec<String> = pages(&s.api, "&event_type=object.created", 1)
        .await
        .concat();
    assert_eq!(walked.len(), 4);
    let expected: BTreeSet<String> = make
        .iter()
        .filter(|w| w["name"] != "batches-off")
        .map(|w| w["webhook_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(walked.into_iter().collect::<BTreeSet<_>>(), expected);
    s.daemon.stop().await.unwrap();
}
