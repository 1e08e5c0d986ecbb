//! No endpoint holds the feed: beside an endpoint limited to 2 requests a second, an
//! unlimited one gets every event at its own pace, even when the slow one's backlog is far
//! larger than the window of events in flight. What the slow one cannot send soon is
//! recorded `pending` in `deliveries` and stops counting against the window. (Before issue
//! 18, the unlimited endpoint stalled once the window filled and then got 2 events a
//! second, the slow one's pace.)

use std::time::Duration;

use mongodb::bson::doc;

use super::*;
use crate::daemon::test_config;
use crate::fixtures::{database, deliveries};

const EVENTS: usize = 3_000;
/// `--max-events-in-flight`: much smaller than the slow endpoint's backlog.
const WINDOW: usize = 200;
const PREFIX: &str = "neighbour";

#[tokio::test]
async fn a_rate_limited_endpoint_does_not_slow_its_unlimited_neighbour() {
    let (uri, name, db) = database("cluster_neighbour").await;
    let fast = Endpoint::start(&db, "wh_000000000c1a0601", |_| {}).await;
    let slow = Endpoint::start(&db, "wh_000000000c1a0602", |hook| {
        hook.insert("rate_limit_per_second", 2);
    })
    .await;
    let config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    let cluster =
        Cluster::start(&config, 1, &["--max-events-in-flight", &WINDOW.to_string()]).await;
    cluster.wait_settled(&db).await;

    let started = tokio::time::Instant::now();
    let events = Producer::start(&db, PREFIX, EVENTS, 500, Duration::ZERO)
        .finish()
        .await;
    wait_all_arrived(
        &db,
        std::slice::from_ref(&fast),
        PREFIX,
        &events,
        Duration::from_secs(180),
    )
    .await;
    let slow_received = slow.tally(PREFIX).distinct();
    println!(
        "{EVENTS} events: the unlimited endpoint had them all after {:.1} s; the 2/s one had \
         received {slow_received}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        slow_received + WINDOW < EVENTS,
        "the slow endpoint was never more than a window behind ({slow_received} of {EVENTS}): \
         the story did not test what it means to"
    );

    // Every event the slow endpoint has not received is recorded pending, with its payload
    // (inspectable through the API, sent when its turn comes).
    wait_accounted_for(&db, &slow, PREFIX, &events, Duration::from_secs(120)).await;
    let pending = deliveries(
        &db,
        doc! {"webhook_id": &slow.webhook_id, "status": "pending"},
    )
    .await
    .len();
    println!("the slow endpoint's pending deliveries: {pending}");
}
