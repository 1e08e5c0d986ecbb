//! Traces: the routing span and one span per attempt under it, through the [`Tracer`]
//! port; without a tracer the producer's trace context is passed on unchanged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::{config, event, pos, settle_webhooks, start, until, webhook};
use crate::delivery::{AttemptResult, DeliveryStatus};
use crate::event::Event;
use crate::fakes::Answer;
use crate::ports::{AttemptSpan, AttemptTrace, RoutingSpan, Tracer};
use crate::trace::TraceParent;

const PRODUCER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A span the recording tracer saw end.
#[derive(Debug, Clone, PartialEq)]
enum Ended {
    Routing {
        event_id: String,
        parent: Option<TraceParent>,
        span: TraceParent,
        endpoints: usize,
    },
    Attempt {
        webhook_id: String,
        attempt: u32,
        parent: Option<TraceParent>,
        span: TraceParent,
        status: Option<u16>,
    },
}

/// Makes up span ids (a counter) in the parent's trace and records every span that ends.
#[derive(Debug, Default, Clone)]
struct Recording {
    ended: Arc<Mutex<Vec<Ended>>>,
    next_id: Arc<Mutex<u8>>,
}

impl Recording {
    fn child_of(&self, parent: Option<TraceParent>) -> TraceParent {
        let mut next = self.next_id.lock().unwrap();
        *next += 1;
        TraceParent {
            trace_id: parent.map_or([9; 16], |p| p.trace_id),
            parent_id: [*next; 8],
            flags: 1,
        }
    }

    fn ended(&self) -> Vec<Ended> {
        self.ended.lock().unwrap().clone()
    }
}

/// A started span: what it will record when it ends.
struct Started {
    record: Ended,
    ended: Arc<Mutex<Vec<Ended>>>,
}

impl Started {
    fn span(&self) -> TraceParent {
        match &self.record {
            Ended::Routing { span, .. } | Ended::Attempt { span, .. } => *span,
        }
    }
}

impl RoutingSpan for Started {
    fn context(&self) -> Option<TraceParent> {
        Some(self.span())
    }
    fn end(self: Box<Self>, sent: usize) {
        let mut record = self.record;
        if let Ended::Routing { endpoints, .. } = &mut record {
            *endpoints = sent;
        }
        self.ended.lock().unwrap().push(record);
    }
}

impl AttemptSpan for Started {
    fn context(&self) -> Option<TraceParent> {
        Some(self.span())
    }
    fn end(self: Box<Self>, result: &AttemptResult, _elapsed: Duration) {
        let mut record = self.record;
        if let Ended::Attempt { status, .. } = &mut record {
            *status = result.as_ref().ok().map(|r| r.status);
        }
        self.ended.lock().unwrap().push(record);
    }
}

impl Tracer for Recording {
    fn routing(&self, event: &Event) -> Box<dyn RoutingSpan> {
        Box::new(Started {
            record: Ended::Routing {
                event_id: event.id.to_string(),
                parent: event.trace,
                span: self.child_of(event.trace),
                endpoints: 0,
            },
            ended: self.ended.clone(),
        })
    }

    fn attempt(&self, attempt: AttemptTrace<'_>) -> Box<dyn AttemptSpan> {
        Box::new(Started {
            record: Ended::Attempt {
                webhook_id: attempt.webhook_id.to_owned(),
                attempt: attempt.attempt,
                parent: attempt.parent,
                span: self.child_of(attempt.parent),
                status: None,
            },
            ended: self.ended.clone(),
        })
    }
}

fn traced(id: &str) -> Event {
    event(id, "object.created").with_trace(Some(TraceParent::parse(PRODUCER).unwrap()))
}

#[tokio::test(start_paused = true)]
async fn attempts_are_spans_under_the_routing_span_and_carry_their_own_context() {
    let tracer = Recording::default();
    let (engine, transport, ledger) = start(crate::config::EngineConfig {
        tracer: Some(Arc::new(tracer.clone())),
        ..config()
    })
    .await;
    let handle = engine.handle();
    handle
        .upsert_webhook(webhook("a", &["object.created"]))
        .unwrap();
    handle
        .upsert_webhook(webhook("b", &["object.created"]))
        .unwrap();
    settle_webhooks(&handle).await;
    transport.script("https://b.example/hook", vec![Answer::Status(503)]);

    handle
        .submit(traced("evt_1"), Some(pos(Bytes::from("t1"))))
        .await
        .unwrap();
    until("both delivered", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 2
    })
    .await;
    // An event no endpoint takes leaves no span.
    handle
        .submit(
            event("evt_2", "batch.completed"),
            Some(pos(Bytes::from("t2"))),
        )
        .await
        .unwrap();
    until("the checkpoint past the unsubscribed event", || {
        ledger.everywhere_at(b"t2".as_ref())
    })
    .await;

    let producer = TraceParent::parse(PRODUCER).unwrap();
    let ended = tracer.ended();
    let routed: Vec<_> = ended
        .iter()
        .filter_map(|e| match e {
            Ended::Routing { event_id, .. } => Some(event_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(routed, ["evt_1"]);
    let routing = ended
        .iter()
        .find_map(|e| match e {
            Ended::Routing {
                event_id,
                parent,
                span,
                endpoints,
            } => {
                assert_eq!(event_id, "evt_1");
                assert_eq!(*parent, Some(producer), "the producer's span is its parent");
                assert_eq!(*endpoints, 2);
                Some(*span)
            }
            _ => None,
        })
        .expect("a routing span");
    assert_eq!(routing.trace_id, producer.trace_id);

    let mut attempts: Vec<(String, u32, Option<u16>, TraceParent)> = ended
        .iter()
        .filter_map(|e| match e {
            Ended::Attempt {
                webhook_id,
                attempt,
                parent,
                span,
                status,
            } => {
                assert_eq!(*parent, Some(routing), "every attempt is under the routing");
                Some((webhook_id.clone(), *attempt, *status, *span))
            }
            _ => None,
        })
        .collect();
    attempts.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    let summary: Vec<_> = attempts
        .iter()
        .map(|(w, n, s, _)| (w.as_str(), *n, *s))
        .collect();
    assert_eq!(
        summary,
        [
            ("a", 1, Some(200)),
            ("b", 1, Some(503)),
            ("b", 2, Some(200))
        ]
    );

    // Each request carried its own attempt's context.
    let mut headers: Vec<_> = transport.sent().iter().filter_map(|r| r.trace).collect();
    let mut spans: Vec<_> = attempts.iter().map(|a| a.3).collect();
    headers.sort_by_key(|t| t.parent_id);
    spans.sort_by_key(|t| t.parent_id);
    assert_eq!(headers, spans);
}

#[tokio::test(start_paused = true)]
async fn without_a_tracer_the_producers_context_is_sent_unchanged() {
    let (engine, transport, ledger) = start(config()).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;

    handle
        .submit(traced("evt_1"), Some(pos(Bytes::from("t1"))))
        .await
        .unwrap();
    handle
        .submit(
            event("evt_2", "object.created"),
            Some(pos(Bytes::from("t2"))),
        )
        .await
        .unwrap();
    until("both delivered", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 2
    })
    .await;

    let mut sent: Vec<_> = transport
        .sent()
        .iter()
        .map(|r| (r.msg_id.to_string(), r.trace.map(|t| t.to_string())))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            ("evt_1".to_owned(), Some(PRODUCER.to_owned())),
            ("evt_2".to_owned(), None)
        ]
    );
}
