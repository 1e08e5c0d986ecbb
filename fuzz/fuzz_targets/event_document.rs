//! Event documents from MongoDB (src/store/events.rs): arbitrary bytes read as BSON, and
//! when they are a document, turned into an event the way the outbox feed does — as an
//! `events` document, an `objects` document, and inside an insert change-stream event for
//! either collection — and also read as a whole change-stream event. A malformed document
//! is a `BadEvent`, never a panic.

#![no_main]

use bson::{doc, Bson, DateTime, Document};
use herald::store::events::{event_from_change, payload_from_event, payload_from_object};
use herald_actors::Event;
use libfuzzer_sys::fuzz_target;
use mongodb::change_stream::event::ChangeStreamEvent;

fuzz_target!(|data: &[u8]| {
    // The bytes as a whole change-stream event (what the driver hands the feed).
    if let Ok(change) = bson::from_slice::<ChangeStreamEvent<Document>>(data) {
        if let Some(Ok(event)) = event_from_change(&change) {
            check(&event);
        }
    }

    let Ok(document) = Document::from_reader(&mut &data[..]) else {
        return;
    };
    // A stand-in insert time from the input itself, so odd dates are reached too.
    let inserted_at = DateTime::from_millis(
        data.iter()
            .take(8)
            .fold(0i64, |acc, b| acc.wrapping_shl(8) | i64::from(*b)),
    );
    for payload in [
        payload_from_event(&document, inserted_at),
        payload_from_object(&document, inserted_at),
    ]
    .into_iter()
    .flatten()
    {
        check(&Event::from_payload(&payload));
    }

    // The document as the full document of an insert into each collection.
    for coll in ["events", "objects", "webhooks"] {
        let change = doc! {
            "_id": {"_data": "00"},
            "operationType": "insert",
            "ns": {"db": "herald", "coll": coll},
            "documentKey": {"_id": document.get("_id").cloned().unwrap_or(Bson::Null)},
            "fullDocument": document.clone(),
            "wallTime": inserted_at,
        };
        let change: ChangeStreamEvent<Document> =
            bson::from_document(change).expect("a change-stream event document");
        if let Some(Ok(event)) = event_from_change(&change) {
            check(&event);
        }
    }
});

/// What the feed submits is the JSON body every receiver gets.
fn check(event: &Event) {
    let body: serde_json::Value =
        serde_json::from_slice(&event.body).expect("an event body is JSON");
    assert!(body.get("event_id").is_some_and(|v| v.is_string()));
    assert!(body.get("event_type").is_some_and(|v| v.is_string()));
}
