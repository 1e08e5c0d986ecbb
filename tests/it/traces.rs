//! Traces (issue 21, contract §7): with `--otlp-endpoint`, a collector receives the span of
//! each event's routing and one span per attempt under it, in the producer's trace when the
//! event carries `trace_context.traceparent`; the receiver gets a `traceparent` header in
//! the same trace. Without an endpoint nothing is exported, and the producer's
//! `traceparent` reaches the receiver unchanged.

use std::time::Duration;

use herald::telemetry::OtlpTarget;
use mongodb::bson::{doc, Document};
use serde_json::json;

use crate::daemon::{start_with_key, test_config, InProcess};
use crate::fixtures::*;
use crate::support::otlp_collector::{CollectedSpan, Collector};
use crate::support::{Receiver, RecordedRequest};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";
const PRODUCER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The collector's spans arrive in batches, every few seconds.
const EXPORTED: Duration = Duration::from_secs(30);

fn traced_event(id: &str, traceparent: &str) -> Document {
    let mut event = event(id, "object.created");
    event.insert("trace_context", doc! {"traceparent": traceparent});
    event
}

async fn insert(db: &mongodb::Database, event: Document) {
    db.collection::<Document>("events")
        .insert_one(event)
        .await
        .unwrap();
}

/// The `traceparent` a receiver got, split: (trace id, parent span id, flags).
fn traceparent(request: &RecordedRequest) -> (String, String, String) {
    let value = header(request, "traceparent").expect("a traceparent header");
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

fn attempts_of<'a>(spans: &'a [CollectedSpan], webhook_id: &str) -> Vec<&'a CollectedSpan> {
    let mut attempts: Vec<_> = spans
        .iter()
        .filter(|s| {
            s.name == "herald.attempt" && s.str_attr("herald.webhook.id") == Some(webhook_id)
        })
        .collect();
    attempts.sort_by_key(|s| s.int_attr("herald.attempt"));
    attempts
}

#[tokio::test]
async fn a_delivery_is_traced_in_the_producers_trace_and_the_receiver_joins_it() {
    let (uri, name, db) = database("traces").await;
    let collector = Collector::start().await;
    let steady = Receiver::start().await;
    let flaky = Receiver::start().await;
    flaky.fail_first(1, 503);
    insert_webhook(&db, webhook("wh_00000000000071c1", &steady.url, &["*"])).await;
    insert_webhook(&db, webhook("wh_00000000000071c2", &flaky.url, &["*"])).await;
    let mut config = test_config(&uri, &name, &steady.ca_pem_path);
    config.otlp = Some(OtlpTarget::Endpoint(format!("{}/v1/traces", collector.url)));
    let daemon = InProcess::start(config).await;

    insert(&db, traced_event("evt_traced_1", PRODUCER)).await;
    let steady_got = steady.wait_for(1, Duration::from_secs(20)).await;
    wait_for_status(&db, "evt_traced_1:wh_00000000000071c2", "succeeded").await;
    let flaky_got = flaky.requests();
    assert_eq!(flaky_got.len(), 2);

    let spans = collector
        .wait_for(
            EXPORTED,
            "the routing span and three attempt spans",
            |spans| {
                spans.iter().filter(|s| s.name == "herald.route").count() == 1
                    && spans.iter().filter(|s| s.name == "herald.attempt").count() == 3
            },
        )
        .await;

    // The routing span: a child of the producer's span, in its trace.
    let route = spans.iter().find(|s| s.name == "herald.route").unwrap();
    assert_eq!(route.trace_id, TRACE_ID);
    assert_eq!(route.parent_span_id, PRODUCER_SPAN);
    assert_eq!(route.str_attr("herald.event.id"), Some("evt_traced_1"));
    assert_eq!(route.str_attr("herald.event.type"), Some("object.created"));
    assert_eq!(route.int_attr("herald.endpoints"), Some(2));
    assert_eq!(route.service_name.as_deref(), Some("herald"));

    // Every attempt: a child of the routing span, with what it was and how it went.
    for attempt in spans.iter().filter(|s| s.name == "herald.attempt") {
        assert_eq!(attempt.trace_id, TRACE_ID);
        assert_eq!(attempt.parent_span_id, route.span_id);
        assert_eq!(attempt.str_attr("herald.event.id"), Some("evt_traced_1"));
        assert_eq!(
            attempt.str_attr("herald.event.type"),
            Some("object.created")
        );
        assert!(
            attempt.int_attr("herald.duration_ms").is_some(),
            "{attempt:?}"
        );
        let webhook_id = attempt.str_attr("herald.webhook.id").unwrap();
        assert_eq!(
            attempt.str_attr("herald.delivery.id"),
            Some(format!("evt_traced_1:{webhook_id}").as_str())
        );
    }
    let steady_attempts = attempts_of(&spans, "wh_00000000000071c1");
    assert_eq!(steady_attempts.len(), 1);
    assert_eq!(steady_attempts[0].int_attr("herald.attempt"), Some(1));
    assert_eq!(
        steady_attempts[0].int_attr("http.response.status_code"),
        Some(200)
    );
    assert_ne!(steady_attempts[0].status_code, 2, "a 2xx is no error");

    // The failing-then-succeeding receiver: attempts 1 (an error) and 2.
    let flaky_attempts = attempts_of(&spans, "wh_00000000000071c2");
    let numbered: Vec<_> = flaky_attempts
        .iter()
        .map(|s| {
            (
                s.int_attr("herald.attempt"),
                s.int_attr("http.response.status_code"),
                s.status_code,
            )
        })
        .collect();
    assert_eq!(
        numbered,
        [(Some(1), Some(503), 2), (Some(2), Some(200), 0)],
        "{flaky_attempts:#?}"
    );

    // Each request carried its own attempt's span, in the producer's trace; still signed.
    let (trace, parent, flags) = traceparent(&steady_got[0]);
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE_ID, "01"));
    assert_eq!(parent, steady_attempts[0].span_id);
    for (request, span) in flaky_got.iter().zip(&flaky_attempts) {
        let (trace, parent, _) = traceparent(request);
        assert_eq!(trace, TRACE_ID);
        assert_eq!(parent, span.span_id);
        assert_signed(request);
    }
    assert_signed(&steady_got[0]);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn an_event_without_trace_context_starts_a_trace_of_its_own_and_the_rest_is_flushed_at_shutdown(
) {
    let (uri, name, db) = database("traces_root").await;
    let collector = Collector::start().await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook("wh_00000000000071c3", &receiver.url, &["*"])).await;
    let mut config = test_config(&uri, &name, &receiver.ca_pem_path);
    // A base URL with a trailing slash, as an operator may write it.
    config.otlp = OtlpTarget::resolve(Some(format!("{}/", collector.url))).unwrap();
    assert!(config.otlp.is_some());
    let daemon = InProcess::start(config).await;

    // Invalid trace context is ignored: the event goes out, in a trace of herald's own.
    insert(&db, traced_event("evt_untraced_1", "00-not-a-trace")).await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    wait_for_status(&db, "evt_untraced_1:wh_00000000000071c3", "succeeded").await;
    // Stopping flushes what the batch has not sent yet.
    daemon.stop().await.unwrap();

    let spans = collector
        .wait_for(EXPORTED, "the routing and attempt spans", |spans| {
            spans.len() >= 2
        })
        .await;
    let route = spans.iter().find(|s| s.name == "herald.route").unwrap();
    let attempt = spans.iter().find(|s| s.name == "herald.attempt").unwrap();
    assert!(route.parent_span_id.is_empty(), "a root span: {route:?}");
    assert_ne!(route.trace_id, TRACE_ID);
    assert_eq!(attempt.trace_id, route.trace_id);
    assert_eq!(attempt.parent_span_id, route.span_id);
    let (trace, parent, _) = traceparent(&got[0]);
    assert_eq!(
        (trace, parent),
        (attempt.trace_id.clone(), attempt.span_id.clone())
    );
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_the_producers_traceparent_passes_through() {
    let (uri, name, db) = database("traces_off").await;
    let collector = Collector::start().await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook("wh_00000000000071c4", &receiver.url, &["*"])).await;
    let (daemon, api) = start_with_key(&uri, &name, "trace-key", |_| {}).await;

    // Published through the API, with a trace context.
    let published = api
        .post(
            "/v1/events",
            json!({
                "event_id": "evt_passed_1",
                "event_type": "object.created",
                "data": {"n": 1},
                "trace_context": {"traceparent": PRODUCER},
            }),
        )
        .await;
    assert_eq!(published.status, 202, "{:?}", published.body);
    // Only `traceparent` belongs in it.
    let refused = api
        .post(
            "/v1/events",
            json!({
                "event_type": "object.created",
                "data": {},
                "trace_context": {"traceparent": PRODUCER, "baggage": "k=v"},
            }),
        )
        .await;
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    // Inserted by a producer, with one that does not parse: delivered without it.
    insert(
        &db,
        traced_event("evt_passed_2", "00-4bf92f3577b34da6a3ce929d0e0e4736-zz"),
    )
    .await;

    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    let by_id = |id: &str| {
        got.iter()
            .find(|r| header(r, "webhook-id") == Some(id))
            .unwrap_or_else(|| panic!("{id} not received"))
    };
    assert_eq!(header(by_id("evt_passed_1"), "traceparent"), Some(PRODUCER));
    assert_eq!(header(by_id("evt_passed_2"), "traceparent"), None);
    // Not in the signed body either.
    assert!(body_json(by_id("evt_passed_1"))
        .get("trace_context")
        .is_none());
    got.iter().for_each(assert_signed);

    daemon.stop().await.unwrap();
    // Give any exporter (there must be none) the time of a batch.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(collector.requests(), 0, "nothing is exported");
}
