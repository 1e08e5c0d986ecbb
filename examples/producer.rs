//! Writes demo events into herald's outbox, the way an engine would: plain inserts into the
//! `events` collection (CONTRACT §2). herald picks them up from its change stream.
//!
//! ```text
//! cargo run --example producer -- --count 5 \
//!     [--mongodb-uri mongodb://127.0.0.1:27017/?directConnection=true] [--database herald] \
//!     [--event-type collection.documents.written] [--collection-id col_demo] [--interval-ms 0]
//!     [--trace]
//! ```
//!
//! With `--trace`, each event carries a W3C `trace_context: {traceparent}` (CONTRACT §7), as
//! a producer that traces its own work would write it: herald sends it on as the
//! `traceparent` header, and with `--otlp-endpoint` its spans join that trace.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::Client;

/// Events per `insert_many` when no interval is asked for.
const BATCH: usize = 500;

#[derive(Debug, Parser)]
#[command(about = "Insert demo events into herald's `events` collection")]
struct Args {
    #[arg(
        long,
        env = "HERALD_MONGODB_URI",
        default_value = "mongodb://127.0.0.1:27017/?directConnection=true"
    )]
    mongodb_uri: String,
    #[arg(long, env = "HERALD_DATABASE", default_value = "herald")]
    database: String,
    /// How many events to insert.
    #[arg(long, default_value_t = 5)]
    count: usize,
    #[arg(long, default_value = "collection.documents.written")]
    event_type: String,
    /// The collection the events say was written (also the cache scope).
    #[arg(long, default_value = "col_demo")]
    collection_id: String,
    /// Pause between events (one insert each); 0 inserts in batches.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Give each event a trace context of its own (a random trace and span id, sampled).
    #[arg(long)]
    trace: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::with_uri_str(&args.mongodb_uri)
        .await
        .with_context(|| format!("bad --mongodb-uri {}", args.mongodb_uri))?;
    let events = client
        .database(&args.database)
        .collection::<Document>("events");

    let chunk = if args.interval_ms > 0 { 1 } else { BATCH };
    let mut written = 0;
    while written < args.count {
        let n = chunk.min(args.count - written);
        let batch: Vec<Document> = (0..n).map(|_| event(&args)).collect();
        events.insert_many(&batch).await.with_context(|| {
            format!(
                "insert into {}.events at {}",
                args.database, args.mongodb_uri
            )
        })?;
        for event in &batch {
            println!("{}", event.get_str("_id").unwrap_or_default());
        }
        written += n;
        if args.interval_ms > 0 && written < args.count {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
    }
    eprintln!(
        "inserted {written} {} event(s) into {}.events",
        args.event_type, args.database
    );
    Ok(())
}

/// One outbox document, shaped per CONTRACT §2.
fn event(args: &Args) -> Document {
    let document_ids: Vec<String> = (0..1 + rand::random_range(0..3))
        .map(|_| format!("doc_{}", random_hex(6)))
        .collect();
    let mut event = doc! {
        "_id": format!("evt_{}", random_hex(12)),
        "event_type": &args.event_type,
        "occurred_at": DateTime::now(),
        "data": {
            "collection_id": &args.collection_id,
            "document_ids": document_ids,
            "index_signature": random_hex(8),
        },
        "cache_scope": { "scope": "collection", "collection_id": &args.collection_id },
    };
    if args.trace {
        let traceparent = format!("00-{}-{}-01", random_hex(16), random_hex(8));
        event.insert("trace_context", doc! { "traceparent": traceparent });
    }
    event
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}
