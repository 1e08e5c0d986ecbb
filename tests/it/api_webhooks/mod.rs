//! The webhook API, as a user relies on it: webhooks created, changed, rotated and deleted
//! through `/v1/webhooks` take effect on deliveries without a restart; lists page through
//! every webhook once; every bad request gets a 4xx naming what is wrong, never a 5xx.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use herald::config::{Config, EventTypeDef};
use herald_actors::signing::{verify_header, SigningKey};
use mongodb::bson::{doc, Document};
use mongodb::Database;
use serde_json::{json, Value};

use crate::api_client::{assert_error, Api};
use crate::daemon::{test_config, InProcess};
use crate::fixtures::*;
use crate::support::{Receiver, RecordedRequest};

/// herald on a fresh database, with its API.
struct Setup {
    db: Database,
    daemon: InProcess,
    api: Api,
}

async fn setup(prefix: &str, configure: impl FnOnce(&mut Config)) -> Setup {
    let (uri, name, db) = database(prefix).await;
    let mut config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    configure(&mut config);
    let key = config.api_key.clone();
    let daemon = InProcess::start(config).await;
    let api = Api::new(daemon.listen, key.as_deref());
    Setup { db, daemon, api }
}

/// Creates a webhook, expecting 201, and returns the answer.
async fn create(api: &Api, body: Value) -> Value {
    let response = api.post("/v1/webhooks", body).await;
    assert_eq!(response.status, 201, "create failed: {}", response.body);
    response.body
}

fn path(webhook: &Value) -> String {
    format!("/v1/webhooks/{}", webhook["webhook_id"].as_str().unwrap())
}

fn new_event_id(tag: &str) -> String {
    format!("evt_{tag}_{:08x}", rand::random::<u32>())
}

/// The request carrying `event_id` that `receiver` got, if any.
fn delivered(receiver: &Receiver, event_id: &str) -> Option<RecordedRequest> {
    receiver
        .requests()
        .into_iter()
        .find(|r| header(r, "webhook-id") == Some(event_id))
}

/// Waits up to `within` for `receiver` to get `event_id`.
async fn wait_delivered(
    receiver: &Receiver,
    event_id: &str,
    within: Duration,
) -> Option<RecordedRequest> {
    let until = Instant::now() + within;
    loop {
        if let Some(request) = delivered(receiver, event_id) {
            return Some(request);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Publishes `event_type` events until `receiver` gets one (a change made through the API
/// reaches the engine through a change stream, a moment later), and returns that request.
async fn publish_until_received(
    db: &Database,
    receiver: &Receiver,
    event_type: &str,
) -> RecordedRequest {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let id = new_event_id("probe");
        insert_event(db, &id, event_type).await;
        if let Some(request) = wait_delivered(receiver, &id, Duration::from_secs(2)).await {
            return request;
        }
        assert!(
            Instant::now() < until,
            "no {event_type} event reached {}",
            receiver.url
        );
    }
}

/// How long an event that reached `control` is given to reach `target` too, before a test
/// concludes that it did not: deliveries of one event to several endpoints start together.
/// Only for negative checks, after `control` proved the event was routed.
const GRACE: Duration = Duration::from_millis(400);

/// Publishes one event and waits (with a generous deadline) until `target` gets it.
async fn reaches(db: &Database, target: &Receiver, event_type: &str) -> bool {
    let id = new_event_id("check");
    insert_event(db, &id, event_type).await;
    wait_delivered(target, &id, Duration::from_secs(20))
        .await
        .is_some()
}

/// Publishes one event and reports whether `target` missed it: `control` (subscribed to
/// everything) gets it first, as proof that herald routed the event, then `target` is given
/// [`GRACE`].
async fn missed_by(db: &Database, target: &Receiver, control: &Receiver, event_type: &str) -> bool {
    let id = new_event_id("check");
    insert_event(db, &id, event_type).await;
    assert!(
        wait_delivered(control, &id, Duration::from_secs(20))
            .await
            .is_some(),
        "the control webhook never got {id}"
    );
    wait_delivered(target, &id, GRACE).await.is_none()
}

/// Waits until a change that stops deliveries to `target` has taken effect, then checks
/// that it holds: the next event reaches `control` but not `target`.
async fn assert_stops_receiving(
    db: &Database,
    target: &Receiver,
    control: &Receiver,
    event_type: &str,
) {
    let until = Instant::now() + Duration::from_secs(30);
    while !missed_by(db, target, control, event_type).await {
        assert!(
            Instant::now() < until,
            "{} kept receiving {event_type}",
            target.url
        );
    }
    assert!(
        missed_by(db, target, control, event_type).await,
        "{} received {event_type} again after it stopped",
        target.url
    );
}

/// Checks every signature of `request` and returns which of `keys` verified each.
fn signature_owners(request: &RecordedRequest, keys: &[&SigningKey]) -> Vec<Vec<usize>> {
    let id = header(request, "webhook-id").unwrap();
    let ts: i64 = header(request, "webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    header(request, "webhook-signature")
        .unwrap()
        .split(' ')
        .map(|signature| {
            keys.iter()
                .enumerate()
                .filter(|(_, key)| key.verify(id, ts, &request.body, signature))
                .map(|(i, _)| i)
                .collect()
        })
        .collect()
}

async fn stored(db: &Database, id: &str) -> Option<Document> {
    db.collection::<Document>("webhooks")
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
}

#[tokio::test]
async fn creating_a_webhook_answers_its_id_and_secret_and_stores_the_contract_document() {
    let s = setup("api_wh_create", |_| {}).await;

    let created = create(
        &s.api,
        json!({
            "url": "https://hooks.example.com/herald",
            "event_types": ["collection.documents.written", "object.created"],
            "name": "search-cache",
            "headers": {"X-Mixpeek-Secret": "shared-secret"},
        }),
    )
    .await;
    let id = created["webhook_id"].as_str().unwrap();
    assert!(id.starts_with("wh_") && id.len() == 19, "{id}");
    assert!(id[3..]
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    SigningKey::parse(secret).expect("the generated secret is usable");
    assert_eq!(created["url"], "https://hooks.example.com/herald");
    assert_eq!(
        created["event_types"],
        json!(["collection.documents.written", "object.created"])
    );
    assert_eq!(created["name"], "search-cache");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["rate_limit_per_second"], Value::Null);
    assert_eq!(created["headers"]["X-Mixpeek-Secret"], "********");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(created["created_at"], created["updated_at"]);

    // The document is the contract's, readable by anything else that uses the collection.
    let document = stored(&s.db, id).await.expect("stored");
    assert_eq!(
        document.get_str("url").unwrap(),
        "https://hooks.example.com/herald"
    );
    assert_eq!(document.get_str("secret").unwrap(), secret);
    assert_eq!(
        document
            .get_document("headers")
            .unwrap()
            .get_str("X-Mixpeek-Secret")
            .unwrap(),
        "shared-secret"
    );
    assert!(document.get_bool("enabled").unwrap());
    assert!(!document.contains_key("rate_limit_per_second"));
    assert_eq!(document.get_str("name").unwrap(), "search-cache");
    assert!(document.get_datetime("created_at").is_ok());
    assert!(document.get_datetime("updated_at").is_ok());

    // Everything given is kept, the secret included.
    let given = create(
        &s.api,
        json!({
            "url": "https://hooks.example.com/other",
            "event_types": ["*"],
            "secret": SECRET,
            "enabled": false,
            "rate_limit_per_second": 20,
        }),
    )
    .await;
    assert_eq!(given["secret"], SECRET);
    assert_eq!(given["enabled"], false);
    assert_eq!(given["rate_limit_per_second"], 20);
    assert_eq!(given["name"], Value::Null);
    assert_eq!(given["headers"], json!({}));
    assert_ne!(given["webhook_id"], created["webhook_id"]);
    let document = stored(&s.db, given["webhook_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(document.get_i32("rate_limit_per_second").unwrap(), 20);
    assert!(!document.get_bool("enabled").unwrap());
    assert!(!document.contains_key("name"));

    // Reading it back never shows the secret.
    let read = s.api.get(&path(&created)).await;
    assert_eq!(read.status, 200);
    assert!(read.body.get("secret").is_none());
    assert!(!read.body.to_string().contains(secret));
    assert!(!read.body.to_string().contains("shared-secret"));

    // Webhooks written straight into MongoDB are served too, whatever their id.
    insert_webhook(
        &s.db,
        webhook("hand made/1", "https://hooks.example.com/hand", &["*"]),
    )
    .await;
    let hand = s.api.get("/v1/webhooks/hand%20made%2F1").await;
    assert_eq!(hand.status, 200, "{}", hand.body);
    assert_eq!(hand.body["webhook_id"], "hand made/1");
    assert_eq!(hand.body["headers"]["X-Mixpeek-Secret"], "********");
    assert_eq!(hand.body["enabled"], true);
    assert_eq!(hand.body["updated_at"], Value::Null);
    assert!(!hand.body.to_string().contains(SECRET));
    let all = s.api.get("/v1/webhooks").await;
    assert_eq!(all.body["results"].as_array().unwrap().len(), 3);
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_webhook_created_through_the_api_receives_events_until_it_is_deleted() {
    let s = setup("api_wh_deliver", |_| {}).await;
    let target = Receiver::start().await;
    let control = Receiver::start().await;
    let created = create(
        &s.api,
        json!({"url": target.url, "event_types": ["object.created"],
               "headers": {"X-Mixpeek-Secret": "shared-secret"}}),
    )
    .await;
    create(&s.api, json!({"url": control.url, "event_types": ["*"]})).await;

    let request = publish_until_received(&s.db, &target, "object.created").await;
    let key = SigningKey::parse(created["secret"].as_str().unwrap()).unwrap();
    let id = header(&request, "webhook-id").unwrap();
    let ts: i64 = header(&request, "webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let signature = header(&request, "webhook-signature").unwrap();
    assert!(
        verify_header(&key, id, ts, &request.body, signature),
        "the signature does not verify with the secret create returned"
    );
    assert_eq!(header(&request, "x-mixpeek-secret"), Some("shared-secret"));
    assert_eq!(body_json(&request)["event_type"], "object.created");
    // Only subscribed types arrive.
    assert!(missed_by(&s.db, &target, &control, "batch.completed").await);

    let deleted = s.api.delete(&path(&created)).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(deleted.body, Value::Null);
    assert!(stored(&s.db, created["webhook_id"].as_str().unwrap())
        .await
        .is_none());
    assert_stops_receiving(&s.db, &target, &control, "object.created").await;

    // Deleting is idempotent; the webhook is gone.
    assert_eq!(s.api.delete(&path(&created)).await.status, 204);
    assert_eq!(
        s.api
            .delete("/v1/webhooks/wh_ffffffffffffffff")
            .await
            .status,
        204
    );
    assert_error(&s.api.get(&path(&created)).await, 404);
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn an_event_published_right_after_the_answer_meets_the_webhook_as_written() {
    let s = setup("api_wh_ryw", |_| {}).await;
    let target = Receiver::start().await;
    let control = Receiver::start().await;
    create(&s.api, json!({"url": control.url, "event_types": ["*"]})).await;
    publish_until_received(&s.db, &control, "batch.completed").await;

    // No waiting between an answer and the next event: the daemon that answered applies
    // the change itself, not only when its webhook watcher next looks.
    let created = create(
        &s.api,
        json!({"url": target.url, "event_types": ["object.created"]}),
    )
    .await;
    assert!(
        reaches(&s.db, &target, "object.created").await,
        "the event right after the create did not reach the new webhook"
    );

    let patched = s
        .api
        .patch(&path(&created), json!({"event_types": ["batch.completed"]}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert!(
        missed_by(&s.db, &target, &control, "object.created").await,
        "the event right after the patch reached the webhook by its old event types"
    );

    let paused = s
        .api
        .post(&format!("{}/pause", path(&created)), json!({}))
        .await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert!(
        missed_by(&s.db, &target, &control, "batch.completed").await,
        "the event right after the pause was delivered"
    );
    let resumed = s
        .api
        .post(&format!("{}/resume", path(&created)), json!({}))
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);

    let deleted = s.api.delete(&path(&created)).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert!(
        missed_by(&s.db, &target, &control, "batch.completed").await,
        "the event right after the delete reached the deleted webhook"
    );
    s.daemon.stop().await.unwrap();
}

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

#[tokio::test]
async fn patching_a_webhook_changes_what_it_receives() {
    let s = setup("api_wh_patch", |_| {}).await;
    let target = Receiver::start().await;
    let control = Receiver::start().await;
    let created = create(
        &s.api,
        json!({"url": target.url, "event_types": ["batch.completed"], "name": "target",
               "headers": {"X-Mixpeek-Secret": "shared-secret"}, "rate_limit_per_second": 100}),
    )
    .await;
    create(&s.api, json!({"url": control.url, "event_types": ["*"]})).await;
    let id = created["webhook_id"].as_str().unwrap();
    publish_until_received(&s.db, &target, "batch.completed").await;

    // GET shows it as created, header values redacted.
    let read = s.api.get(&path(&created)).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["name"], "target");
    assert_eq!(
        read.body["headers"],
        json!({"X-Mixpeek-Secret": "********"})
    );
    assert_eq!(read.body["rate_limit_per_second"], 100);

    // Disabled: deliveries stop.
    let patched = s
        .api
        .patch(&path(&created), json!({"enabled": false}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["enabled"], false);
    assert_eq!(patched.body["event_types"], json!(["batch.completed"]));
    assert_eq!(
        patched.body["headers"],
        json!({"X-Mixpeek-Secret": "********"})
    );
    assert!(patched.body.get("secret").is_none());
    assert!(patched.body["updated_at"].as_str() > created["updated_at"].as_str());
    assert!(!stored(&s.db, id)
        .await
        .unwrap()
        .get_bool("enabled")
        .unwrap());
    assert_stops_receiving(&s.db, &target, &control, "batch.completed").await;

    // Re-enabled for another type: that type arrives, the old one no longer does.
    let patched = s
        .api
        .patch(
            &path(&created),
            json!({"enabled": true, "event_types": ["cluster.completed"]}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["event_types"], json!(["cluster.completed"]));
    let request = publish_until_received(&s.db, &target, "cluster.completed").await;
    assert_eq!(body_json(&request)["event_type"], "cluster.completed");
    assert_eq!(header(&request, "x-mixpeek-secret"), Some("shared-secret"));
    assert!(missed_by(&s.db, &target, &control, "batch.completed").await);

    // New headers replace the old ones on the next deliveries.
    let patched = s
        .api
        .patch(&path(&created), json!({"headers": {"X-Other": "v2"}}))
        .await;
    assert_eq!(patched.body["headers"], json!({"X-Other": "********"}));
    crate::support::eventually(
        Duration::from_secs(30),
        "deliveries carry the new header",
        || {
            let db = s.db.clone();
            let target = &target;
            async move {
                let id = new_event_id("headers");
                insert_event(&db, &id, "cluster.completed").await;
                wait_delivered(target, &id, Duration::from_secs(2))
                    .await
                    .is_some_and(|r| {
                        header(&r, "x-other") == Some("v2")
                            && header(&r, "x-mixpeek-secret").is_none()
                    })
            }
        },
    )
    .await;

    // null removes the rate limit and the name; the rest stays.
    let patched = s
        .api
        .patch(
            &path(&created),
            json!({"rate_limit_per_second": null, "name": null}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["rate_limit_per_second"], Value::Null);
    assert_eq!(patched.body["name"], Value::Null);
    assert_eq!(patched.body["url"], target.url.as_str());
    let document = stored(&s.db, id).await.unwrap();
    assert!(!document.contains_key("rate_limit_per_second"));
    assert!(!document.contains_key("name"));
    assert_eq!(
        document.get_str("secret").unwrap(),
        created["secret"].as_str().unwrap(),
        "PATCH never touches the secret"
    );

    // A new URL and name are validated and kept.
    let patched = s
        .api
        .patch(
            &path(&created),
            json!({"url": "https://hooks.example.com/moved", "name": "moved"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let read = s.api.get(&path(&created)).await;
    assert_eq!(read.body["url"], "https://hooks.example.com/moved");
    assert_eq!(read.body["name"], "moved");
    // GET adds the endpoint's health to what PATCH answers.
    let mut read = read.body;
    assert!(read["health"].is_object(), "{read}");
    read.as_object_mut().unwrap().remove("health");
    assert_eq!(read, patched.body);
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn rotating_the_secret_signs_with_both_secrets_for_a_day() {
    let s = setup("api_wh_rotate", |_| {}).await;
    let receiver = Receiver::start().await;
    let created = create(
        &s.api,
        json!({"url": receiver.url, "event_types": ["object.created"]}),
    )
    .await;
    let old_secret = created["secret"].as_str().unwrap().to_owned();
    let old = SigningKey::parse(&old_secret).unwrap();
    let before = publish_until_received(&s.db, &receiver, "object.created").await;
    assert_eq!(signature_owners(&before, &[&old]), [vec![0]]);

    let rotate = format!("{}/rotate-secret", path(&created));
    let rotated = s.api.raw("POST", &rotate, "", &[]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body["webhook_id"], created["webhook_id"]);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    let new = SigningKey::parse(&new_secret).unwrap();

    // The old secret is kept, expiring in 24 hours.
    let document = stored(&s.db, created["webhook_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(document.get_str("secret").unwrap(), new_secret);
    let previous = document.get_array("previous_secrets").unwrap();
    assert_eq!(previous.len(), 1);
    let entry = previous[0].as_document().unwrap();
    assert_eq!(entry.get_str("secret").unwrap(), old_secret);
    let ttl = entry
        .get_datetime("expires_at")
        .unwrap()
        .to_system_time()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        ttl > Duration::from_secs(23 * 3600) && ttl <= Duration::from_secs(24 * 3600),
        "{ttl:?}"
    );

    // Deliveries now carry two signatures: one by the old secret, one by the new.
    let until = Instant::now() + Duration::from_secs(30);
    let during = loop {
        let request = publish_until_received(&s.db, &receiver, "object.created").await;
        if header(&request, "webhook-signature").unwrap().contains(' ') {
            break request;
        }
        assert!(Instant::now() < until, "never signed with both secrets");
    };
    let mut owners = signature_owners(&during, &[&old, &new]);
    owners.sort();
    assert_eq!(owners, [vec![0], vec![1]]);

    // The secret is not shown elsewhere.
    let read = s.api.get(&path(&created)).await;
    assert!(!read.body.to_string().contains(&new_secret));

    // Rotating again to a given secret keeps both earlier ones for their day.
    let given = s.api.post(&rotate, json!({"secret": SECRET})).await;
    assert_eq!(given.status, 200, "{}", given.body);
    assert_eq!(given.body["secret"], SECRET);
    let document = stored(&s.db, created["webhook_id"].as_str().unwrap())
        .await
        .unwrap();
    let kept: Vec<&str> = document
        .get_array("previous_secrets")
        .unwrap()
        .iter()
        .map(|b| b.as_document().unwrap().get_str("secret").unwrap())
        .collect();
    assert_eq!(kept, [old_secret.as_str(), new_secret.as_str()]);

    // Mistakes are refused, nothing changed.
    let message = assert_error(
        &s.api.post(&rotate, json!({"secret": "hunter2"})).await,
        422,
    );
    assert!(message.starts_with("secret"), "{message}");
    assert_error(&s.api.post(&rotate, json!({"secrett": SECRET})).await, 422);
    assert_error(
        &s.api
            .raw(
                "POST",
                "/v1/webhooks/wh_ffffffffffffffff/rotate-secret",
                "",
                &[],
            )
            .await,
        404,
    );
    assert_eq!(
        stored(&s.db, created["webhook_id"].as_str().unwrap())
            .await
            .unwrap()
            .get_str("secret")
            .unwrap(),
        SECRET
    );
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_previous_secret_signs_until_it_expires_and_never_after() {
    let s = setup("api_wh_expired", |_| {}).await;
    let receiver = Receiver::start().await;
    let current = SigningKey::parse(SECRET).unwrap();
    let expired_secret = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let expiring_secret = "whsec_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    let expired = SigningKey::parse(expired_secret).unwrap();
    let expiring = SigningKey::parse(expiring_secret).unwrap();
    let now = std::time::SystemTime::now();
    // Expiring a few seconds from now: long enough for a first delivery to carry it on a
    // loaded machine, short enough to watch it stop.
    let expires_at = now + Duration::from_secs(5);
    let mut document = webhook("wh_00000000000e0001", &receiver.url, &["object.created"]);
    document.insert(
        "previous_secrets",
        vec![
            doc! {"secret": expired_secret,
            "expires_at": mongodb::bson::DateTime::from_system_time(now - Duration::from_secs(60))},
            doc! {"secret": expiring_secret,
            "expires_at": mongodb::bson::DateTime::from_system_time(expires_at)},
        ],
    );
    insert_webhook(&s.db, document).await;
    let keys = [&current, &expired, &expiring];

    // While one previous secret is live: the current one and that one sign, never the
    // expired one.
    let first = publish_until_received(&s.db, &receiver, "object.created").await;
    let timestamp: u64 = header(&first, "webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let expiry = expires_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if timestamp < expiry {
        let mut owners = signature_owners(&first, &keys);
        owners.sort();
        assert_eq!(owners, [vec![0], vec![2]], "signed at {timestamp}");
    }

    // Once it has expired, with no change to the webhook: the current secret alone.
    let until = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let request = publish_until_received(&s.db, &receiver, "object.created").await;
        let at: u64 = header(&request, "webhook-timestamp")
            .unwrap()
            .parse()
            .unwrap();
        if at > expiry {
            break request;
        }
        assert!(Instant::now() < until, "no delivery after the expiry");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        signature_owners(&after, &keys),
        [vec![0]],
        "an expired previous secret still signs: {:?}",
        header(&after, "webhook-signature")
    );
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn the_catalog_lists_built_in_and_configured_event_types() {
    let s = setup("api_wh_catalog", |config| {
        config.event_types = vec![
            EventTypeDef {
                event_type: "report.generated".into(),
                description: "A report finished rendering".into(),
                payload_fields: vec!["report_id".into(), "url".into()],
            },
            EventTypeDef {
                event_type: "object.created".into(),
                description: "An asset landed in a bucket".into(),
                payload_fields: vec!["bucket_id".into(), "object_id".into()],
            },
        ];
    })
    .await;
    let response = s.api.get("/v1/webhooks/events").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let results = response.body["results"].as_array().unwrap();
    let entry = |name: &str| {
        results
            .iter()
            .find(|e| e["event_type"] == name)
            .unwrap_or_else(|| panic!("{name} missing from the catalog"))
    };
    for (name, fields) in [
        (
            "collection.documents.written",
            &["collection_id", "document_ids", "index_signature"][..],
        ),
        (
            "object.updated",
            &["bucket_id", "object_id", "metadata"][..],
        ),
        ("object.deleted", &["bucket_id", "object_id"][..]),
        (
            "batch.completed",
            &["batch_id", "collection_ids", "counts"][..],
        ),
        (
            "cluster.completed",
            &["cluster_id", "run_id", "artifact_uris"][..],
        ),
        (
            "taxonomy.materialized",
            &["taxonomy_id", "collection_id", "updated_document_count"][..],
        ),
        ("report.generated", &["report_id", "url"][..]),
    ] {
        assert_eq!(entry(name)["payload_fields"], json!(fields), "{name}");
        assert!(!entry(name)["description"].as_str().unwrap().is_empty());
    }
    for name in [
        "webhook.endpoint.failing",
        "webhook.endpoint.recovered",
        "delivery.exhausted",
    ] {
        assert!(!entry(name)["description"].as_str().unwrap().is_empty());
    }
    // The operator's definition of a built-in type wins.
    assert_eq!(
        entry("object.created")["description"],
        "An asset landed in a bucket"
    );
    let names: Vec<&str> = results
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.iter().collect::<HashSet<_>>().len(),
        names.len(),
        "listed once each"
    );

    // Configured types can be subscribed to; unknown ones cannot.
    create(
        &s.api,
        json!({"url": "https://hooks.example.com/r", "event_types": ["report.generated"]}),
    )
    .await;
    let message = assert_error(
        &s.api
            .post(
                "/v1/webhooks",
                json!({"url": "https://hooks.example.com/r", "event_types": ["report.exploded"]}),
            )
            .await,
        422,
    );
    assert!(message.contains("event_types"), "{message}");
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn every_bad_request_gets_a_4xx_that_says_what_is_wrong() {
    let s = setup("api_wh_errors", |_| {}).await;
    let api = &s.api;
    let valid = || json!({"url": "https://hooks.example.com/h", "event_types": ["object.created"]});
    let with = |key: &str, value: Value| {
        let mut body = valid();
        body[key] = value;
        body
    };
    let refused = |status: u16, needle: &'static str| {
        move |response: crate::api_client::ApiResponse| {
            let message = assert_error(&response, status);
            assert!(
                message.contains(needle),
                "expected {needle:?} in {message:?}"
            );
        }
    };

    // 422, naming the field.
    let plaintext = api
        .post(
            "/v1/webhooks",
            with("url", json!("http://hooks.example.com/h")),
        )
        .await;
    refused(422, "HTTPS")(plaintext);
    for (body, field) in [
        (with("url", json!("not a url")), "url"),
        (with("url", json!("/relative/path")), "url"),
        (with("url", json!("https://")), "url"),
        (
            with("event_types", json!(["object.exploded"])),
            "event_types",
        ),
        (with("event_types", json!([])), "event_types"),
        (
            with("event_types", json!(["*", "object.created"])),
            "event_types",
        ),
        (
            with("headers", json!({"bad header": "v"})),
            "headers.bad header",
        ),
        (
            with("headers", json!({"X-Ok": "line\nbreak"})),
            "headers.X-Ok",
        ),
        (
            with("headers", json!({"Webhook-Signature": "v1,forged"})),
            "headers.Webhook-Signature",
        ),
        (
            with("headers", json!({"Host": "evil.example"})),
            "headers.Host",
        ),
        (with("headers", json!({"X-A": 5})), "headers.X-A"),
        (with("headers", json!({"$set": "v"})), "headers.$set"),
        (
            with(
                "headers",
                Value::Object((0..51).map(|i| (format!("X-{i}"), json!("v"))).collect()),
            ),
            "headers",
        ),
        (with("secret", json!("hunter2")), "secret"),
        (with("name", json!("x".repeat(201))), "name"),
        (with("name", json!("")), "name"),
        (
            with("rate_limit_per_second", json!(0)),
            "rate_limit_per_second",
        ),
        (
            with("rate_limit_per_second", json!(10_001)),
            "rate_limit_per_second",
        ),
        (
            with("rate_limit_per_second", json!(2.5)),
            "rate_limit_per_second",
        ),
        (with("enabled", json!("yes")), "enabled"),
        (with("url", json!(5)), "url"),
        (with("event_types", json!("object.created")), "event_types"),
        (with("unknown_field", json!(1)), "unknown_field"),
        (json!({"url": "https://hooks.example.com/h"}), "event_types"),
        (json!([1, 2]), "body"),
        (json!("https://hooks.example.com/h"), "body"),
        (json!(null), "body"),
    ] {
        refused(422, field)(api.post("/v1/webhooks", body).await);
    }

    // 400: not JSON at all.
    refused(400, "JSON")(api.raw("POST", "/v1/webhooks", "{\"url\": ", &[]).await);
    refused(400, "JSON")(api.raw("POST", "/v1/webhooks", "", &[]).await);
    // 413: over 1 MiB.
    let huge = format!(
        "{{\"url\": \"https://h.example/\", \"event_types\": [\"*\"], \"name\": \"{}\"}}",
        "x".repeat(1 << 20)
    );
    assert_error(&api.raw("POST", "/v1/webhooks", huge, &[]).await, 413);

    // 400: bad list parameters.
    for query in [
        "cursor=not-a-cursor!",
        "cursor=",
        "limit=100000",
        "limit=0",
        "limit=-1",
        "limit=ten",
        "enabled=maybe",
    ] {
        let response = api.get(&format!("/v1/webhooks?{query}")).await;
        let message = assert_error(&response, 400);
        let name = query.split('=').next().unwrap();
        assert!(message.contains(name), "{query}: {message}");
    }

    // 404: unknown ids.
    let unknown = "/v1/webhooks/wh_ffffffffffffffff";
    assert_error(&api.get(unknown).await, 404);
    assert_error(&api.patch(unknown, json!({"enabled": false})).await, 404);
    assert_error(&api.patch(unknown, json!({"name": "free"})).await, 404);

    // 409: names are unique, on create and on change.
    let mut named = valid();
    named["name"] = json!("taken");
    let first = create(api, named.clone()).await;
    refused(409, "name")(api.post("/v1/webhooks", named).await);
    let mut other = valid();
    other["name"] = json!("other");
    let other = create(api, other).await;
    refused(409, "name")(api.patch(&path(&other), json!({"name": "taken"})).await);
    // Keeping one's own name is no conflict.
    assert_eq!(
        api.patch(&path(&first), json!({"name": "taken"}))
            .await
            .status,
        200
    );

    // PATCH validates like create.
    let one = path(&first);
    for (body, status, needle) in [
        (json!({}), 422, "body"),
        (json!({"url": "http://hooks.example.com/h"}), 422, "HTTPS"),
        (json!({"url": null}), 422, "url"),
        (json!({"event_types": ["nope"]}), 422, "event_types"),
        (json!({"event_types": null}), 422, "event_types"),
        (json!({"enabled": null}), 422, "enabled"),
        (json!({"enabled": "no"}), 422, "enabled"),
        (
            json!({"headers": {"Content-Length": "1"}}),
            422,
            "headers.Content-Length",
        ),
        (
            json!({"rate_limit_per_second": -3}),
            422,
            "rate_limit_per_second",
        ),
        (json!({"secret": SECRET}), 422, "secret"),
        (
            json!({"webhook_id": "wh_0000000000000000"}),
            422,
            "webhook_id",
        ),
    ] {
        refused(status, needle)(api.patch(&one, body).await);
    }
    refused(400, "JSON")(api.raw("PATCH", &one, "{nope", &[]).await);
    // None of it changed the webhook.
    let read = api.get(&one).await;
    assert_eq!(read.body["url"], "https://hooks.example.com/h");
    assert_eq!(read.body["event_types"], json!(["object.created"]));
    assert_eq!(read.body["enabled"], true);

    // 405: wrong methods, with Allow.
    for (method, route) in [
        ("PUT", "/v1/webhooks".to_owned()),
        ("DELETE", "/v1/webhooks".to_owned()),
        ("POST", one.clone()),
        ("PUT", one.clone()),
        ("GET", format!("{one}/rotate-secret")),
        ("POST", "/v1/webhooks/events".to_owned()),
    ] {
        let response = api.raw(method, &route, "", &[]).await;
        assert_error(&response, 405);
        assert!(response.headers.contains_key("allow"), "{method} {route}");
    }
    // Only the two valid webhooks exist.
    let all = api.get("/v1/webhooks").await;
    assert_eq!(all.body["results"].as_array().unwrap().len(), 2);
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn with_an_api_key_every_webhook_route_requires_it() {
    let s = setup("api_wh_auth", |config| {
        config.api_key = Some("correct-horse-battery".into());
    })
    .await;
    let keyed = &s.api;
    let anonymous = keyed.anonymous();
    let existing = create(
        keyed,
        json!({"url": "https://hooks.example.com/h", "event_types": ["*"]}),
    )
    .await;
    let one = path(&existing);
    let rotate = format!("{one}/rotate-secret");
    let body = json!({"url": "https://hooks.example.com/h", "event_types": ["*"]});
    let routes: Vec<(&str, &str, Option<Value>)> = vec![
        ("POST", "/v1/webhooks", Some(body.clone())),
        ("GET", "/v1/webhooks", None),
        ("GET", "/v1/webhooks/events", None),
        ("GET", &one, None),
        ("PATCH", &one, Some(json!({"enabled": false}))),
        ("POST", &rotate, Some(json!({}))),
        ("DELETE", &one, None),
    ];
    for (method, route, body) in &routes {
        let none = anonymous.send(method, route, body.clone()).await;
        assert_error(&none, 401);
        let wrong = anonymous
            .raw(
                method,
                route,
                body.as_ref().map(Value::to_string).unwrap_or_default(),
                &[("authorization", "Bearer correct-horse-batterx")],
            )
            .await;
        assert_error(&wrong, 401);
        let bare = anonymous
            .raw(
                method,
                route,
                "",
                &[("authorization", "correct-horse-battery")],
            )
            .await;
        assert_error(&bare, 401);
    }
    // Nothing was created or changed without the key.
    let document = stored(&s.db, existing["webhook_id"].as_str().unwrap())
        .await
        .unwrap();
    assert!(document.get_bool("enabled").unwrap());
    assert_eq!(
        document.get_str("secret").unwrap(),
        existing["secret"].as_str().unwrap()
    );
    assert_eq!(
        s.db.collection::<Document>("webhooks")
            .count_documents(doc! {})
            .await
            .unwrap(),
        1
    );

    // With the key, each works.
    for ((method, route, body), expected) in routes.iter().zip([201, 200, 200, 200, 200, 200, 204])
    {
        let response = keyed.send(method, route, body.clone()).await;
        assert_eq!(
            response.status, expected,
            "{method} {route}: {}",
            response.body
        );
    }
    // Health stays open.
    assert_eq!(anonymous.get("/healthz").await.status, 200);
    s.daemon.stop().await.unwrap();
}

/// Random request bodies: arbitrary JSON, objects with the real field names and plausible
/// or random values, and raw bytes.
mod generated {
    use proptest::prelude::*;
    use serde_json::{Map, Number, Value};

    const FIELDS: &[&str] = &[
        "url",
        "event_types",
        "name",
        "headers",
        "secret",
        "enabled",
        "rate_limit_per_second",
    ];

    fn text() -> BoxedStrategy<String> {
        prop_oneof![
            Just("https://hooks.example.com/h".to_owned()),
            Just("http://hooks.example.com/h".to_owned()),
            Just("*".to_owned()),
            Just("object.created".to_owned()),
            Just(String::new()),
            Just(crate::fixtures::SECRET.to_owned()),
            Just("whsec_".to_owned()),
            "https://[a-z0-9.:%@\\[\\]-]{0,30}(/[ -~]{0,20})?",
            "[a-z._*]{0,24}",
            any::<String>(),
        ]
        .boxed()
    }

    fn number() -> BoxedStrategy<Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-5i64..20_000).prop_map(Value::from),
            any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ]
        .boxed()
    }

    pub fn any_json() -> BoxedStrategy<Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number(),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
    }

    fn key() -> BoxedStrategy<String> {
        prop_oneof![
            prop::sample::select(FIELDS).prop_map(str::to_owned),
            "[a-zA-Z_-]{1,12}",
            any::<String>(),
        ]
        .boxed()
    }

    fn header_name() -> BoxedStrategy<String> {
        prop_oneof![
            Just("X-Mixpeek-Secret".to_owned()),
            Just("Content-Type".to_owned()),
            Just("webhook-signature".to_owned()),
            "[A-Za-z0-9-]{1,16}",
            any::<String>(),
        ]
        .boxed()
    }

    fn header_value() -> BoxedStrategy<Value> {
        prop_oneof![
            "[ -~]{0,40}".prop_map(Value::String),
            any::<String>().prop_map(Value::String),
            any_json(),
        ]
        .boxed()
    }

    /// An object with (some of) the real fields, each plausible or random.
    fn typed() -> BoxedStrategy<Value> {
        let url = prop_oneof![text().prop_map(Value::String), any_json()];
        let event_types = prop_oneof![
            prop::collection::vec(
                prop::sample::select(&["*", "object.created", "batch.completed", "nope", ""][..])
                    .prop_map(Value::from),
                0..4
            )
            .prop_map(Value::Array),
            any_json(),
        ];
        let name = prop_oneof![
            "[ -~]{0,220}".prop_map(Value::String),
            any::<String>().prop_map(Value::String),
            any_json(),
        ];
        let headers = prop_oneof![
            prop::collection::btree_map(header_name(), header_value(), 0..55)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            any_json(),
        ];
        let secret = prop_oneof![
            Just(Value::String(crate::fixtures::SECRET.to_owned())),
            text().prop_map(Value::String),
            any_json(),
        ];
        let enabled = prop_oneof![any::<bool>().prop_map(Value::Bool), any_json()];
        let rate = prop_oneof![number(), any_json()];
        let extra = prop::option::of((key(), any_json()));
        (
            prop::option::of(url),
            prop::option::of(event_types),
            prop::option::of(name),
            prop::option::of(headers),
            prop::option::of(secret),
            prop::option::of(enabled),
            prop::option::of(rate),
            extra,
        )
            .prop_map(|(u, e, n, h, s, en, r, extra)| {
                let mut object = Map::new();
                for (field, value) in FIELDS.iter().zip([u, e, n, h, s, en, r]) {
                    if let Some(value) = value {
                        object.insert((*field).to_owned(), value);
                    }
                }
                if let Some((k, v)) = extra {
                    object.insert(k, v);
                }
                Value::Object(object)
            })
            .boxed()
    }

    /// A valid body (every field optional but `url` and `event_types` on create), with at
    /// most one field replaced by something random: the edges of validation.
    fn nearly_valid() -> BoxedStrategy<Value> {
        let valid = (
            prop::sample::select(
                &[
                    "https://hooks.example.com/h",
                    "https://127.0.0.1:8443/hook?x=1",
                    "https://[::1]/h",
                    "https://xn--nxasmq6b.example/",
                ][..],
            ),
            prop::sample::subsequence(
                &["object.created", "object.deleted", "batch.completed"][..],
                1..=3,
            ),
            any::<bool>(),
            prop::option::of("[a-z][a-z0-9-]{0,30}"),
            prop::option::of(prop::collection::btree_map(
                "X-[A-Za-z0-9-]{1,20}",
                "[ -~]{0,40}",
                0..4,
            )),
            prop::option::of(any::<bool>()),
            prop::option::of(1i64..=10_000),
        );
        let mutation = prop::option::of((prop::sample::select(FIELDS), any_json()));
        (valid, mutation)
            .prop_map(
                |((url, types, star, name, headers, enabled, rate), mutation)| {
                    let mut object = Map::new();
                    object.insert("url".into(), Value::from(url));
                    let types: Vec<&str> = if star { vec!["*"] } else { types };
                    object.insert("event_types".into(), Value::from(types));
                    if let Some(name) = name {
                        object.insert("name".into(), Value::from(name));
                    }
                    if let Some(headers) = headers {
                        let headers = headers.into_iter().map(|(k, v)| (k, Value::from(v)));
                        object.insert("headers".into(), Value::Object(headers.collect()));
                    }
                    if let Some(enabled) = enabled {
                        object.insert("enabled".into(), Value::from(enabled));
                    }
                    if let Some(rate) = rate {
                        object.insert("rate_limit_per_second".into(), Value::from(rate));
                    }
                    if let Some((field, value)) = mutation {
                        object.insert(field.to_owned(), value);
                    }
                    Value::Object(object)
                },
            )
            .boxed()
    }

    /// One request body, as bytes.
    pub fn body() -> BoxedStrategy<Vec<u8>> {
        prop_oneof![
            3 => nearly_valid().prop_map(|v| v.to_string().into_bytes()),
            3 => typed().prop_map(|v| v.to_string().into_bytes()),
            2 => prop::collection::btree_map(key(), any_json(), 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect()).to_string().into_bytes()),
            1 => any_json().prop_map(|v| v.to_string().into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..512),
            // Valid-looking JSON cut short.
            1 => (typed(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
                let bytes = v.to_string().into_bytes();
                let cut = i.index(bytes.len() + 1);
                bytes[..cut].to_vec()
            }),
        ]
        .boxed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_bodies_never_get_a_5xx() {
    use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

    let s = setup("api_wh_fuzz", |_| {}).await;
    let target = create(
        &s.api,
        json!({"url": "https://hooks.example.com/h", "event_types": ["*"], "name": "fuzzed"}),
    )
    .await;
    let patch_path = path(&target);
    let fuzzed_path = patch_path.clone();
    let listen = s.daemon.listen;
    let handle = tokio::runtime::Handle::current();
    let started = Instant::now();
    let answers = tokio::task::spawn_blocking(move || {
        let api = Api::new(listen, None);
        let mut runner = TestRunner::new(ProptestConfig {
            cases: 750,
            failure_persistence: None,
            max_shrink_iters: 200,
            ..ProptestConfig::default()
        });
        // (method, status) → how many answers, to show the bodies reach both sides.
        let answers = std::cell::RefCell::new(std::collections::BTreeMap::new());
        let strategy = (generated::body(), generated::body());
        let result = runner.run(&strategy, |(create_body, patch_body)| {
            let send = |method: &'static str, route: &str, body: Vec<u8>| {
                let api = &api;
                let route = route.to_owned();
                async move {
                    let shown = String::from_utf8_lossy(&body).into_owned();
                    let response = api
                        .raw(
                            method,
                            &route,
                            body,
                            &[("content-type", "application/json")],
                        )
                        .await;
                    (method, route, shown, response)
                }
            };
            // Both at once: half the wall time, and a PATCH racing a create is fair game.
            let responses = handle.block_on(async {
                let (post, patch) = futures::join!(
                    send("POST", "/v1/webhooks", create_body),
                    send("PATCH", &patch_path, patch_body)
                );
                [post, patch]
            });
            for (method, route, shown, response) in responses {
                *answers
                    .borrow_mut()
                    .entry((method, response.status))
                    .or_insert(0usize) += 1;
                if !(200..500).contains(&response.status) {
                    return Err(TestCaseError::fail(format!(
                        "{method} {route} {shown:?} → {} {}",
                        response.status, response.body
                    )));
                }
                let error = &response.body["error"];
                if response.status >= 400
                    && !(error["code"].is_string() && error["message"].is_string())
                {
                    return Err(TestCaseError::fail(format!(
                        "{method} {route} {shown:?} → {} without an error body: {}",
                        response.status, response.body
                    )));
                }
            }
            Ok(())
        });
        result
            .map(|()| answers.into_inner())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap();
    let answers = answers.unwrap_or_else(|e| panic!("{e}"));
    let sent: usize = answers.values().sum();
    eprintln!(
        "{sent} generated bodies in {:?}: {answers:?}",
        started.elapsed()
    );
    assert!(sent >= 1_500, "only {sent} bodies sent");
    let count = |method: &str, status: u16| answers.get(&(method, status)).copied().unwrap_or(0);
    for (method, status) in [
        ("POST", 201),
        ("POST", 400),
        ("POST", 422),
        ("PATCH", 200),
        ("PATCH", 422),
    ] {
        assert!(
            count(method, status) > 0,
            "no {method} answered {status}: {answers:?}"
        );
    }
    // Still serving, and the webhook PATCH kept hitting is still well-formed.
    let read = s.api.get(&fuzzed_path).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert!(read.body["url"].as_str().unwrap().starts_with("https://"));
    s.daemon.stop().await.unwrap();
}
