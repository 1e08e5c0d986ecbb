//! Generated input: whatever arrives at publish, list or recover, the answer is never a
//! 5xx.

use std::collections::BTreeSet;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};

use super::{start, TYPE, WH_A};
use crate::api_client::ApiResponse;
use crate::fixtures::*;
use crate::support::Receiver;

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
