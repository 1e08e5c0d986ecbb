//! Generated request bodies for create and patch: whatever arrives, the answer is a 2xx
//! or a 4xx with an error body, never a 5xx.

use std::time::Instant;

use serde_json::json;

use super::{create, path, setup};
use crate::api_client::Api;

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
