//! Per-endpoint state is per endpoint, not per process: with three daemons, an endpoint
//! limited to 5 requests a second gets no more than 5 in any second (one owner sends), and a
//! retry asked of a daemon that does not own the endpoint reaches it (through MongoDB: the
//! owner is nudged and reads the re-queued delivery back).

use std::time::{Duration, Instant};

use super::*;
use crate::daemon::test_config;
use crate::fixtures::{database, insert_event, most_in_one_second, wait_for_status};

const LIMITED_EVENTS: usize = 40;
const PREFIX: &str = "limited";

#[tokio::test]
async fn three_daemons_keep_an_endpoints_rate_limit_and_retry_through_any_daemon() {
    let (uri, name, db) = database("cluster_rate").await;
    let limited = Endpoint::start(&db, "wh_000000000c1a0501", |hook| {
        hook.insert("rate_limit_per_second", 5);
    })
    .await;
    // Subscribed to another type: it only gets the event that is made to fail.
    let failing = Endpoint::start(&db, "wh_000000000c1a0502", |hook| {
        hook.insert("event_types", vec!["batch.failed"]);
    })
    .await;
    failing.receiver.respond_with(500);
    let mut config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    config.retry_max_attempts = 2;
    let cluster = Cluster::start(&config, 3, &[]).await;
    cluster.wait_settled(&db).await;

    // The limit, cluster-wide.
    let events = Producer::start(&db, PREFIX, LIMITED_EVENTS, LIMITED_EVENTS, Duration::ZERO)
        .finish()
        .await;
    wait_all_arrived(
        &db,
        std::slice::from_ref(&limited),
        PREFIX,
        &events,
        Duration::from_secs(120),
    )
    .await;
    let got = limited.receiver.requests();
    let times: Vec<Instant> = got.iter().map(|r| r.at).collect();
    // No one-second window holds more than the limit (one extra for window edges, as with
    // one daemon).
    let most = most_in_one_second(&times);
    assert!(most <= 6, "{most} requests within one second at 5/s");
    let span = times.last().unwrap().duration_since(times[0]);
    assert!(
        span >= Duration::from_secs(6),
        "{LIMITED_EVENTS} requests at 5/s took only {span:?}"
    );
    let tally = limited.tally(PREFIX);
    assert_eq!(
        tally.total(),
        LIMITED_EVENTS,
        "sent twice: {:?}",
        tally.some_duplicated()
    );

    // A delivery fails (both attempts answered 500), the receiver recovers, and the retry
    // goes to a daemon that does not own the endpoint.
    insert_event(&db, "evt_cluster_retry", "batch.failed").await;
    let delivery_id = format!("evt_cluster_retry:{}", failing.webhook_id);
    wait_for_status(&db, &delivery_id, "failed").await;
    failing.receiver.respond_with(200);
    let owner = owner_of(&db, &failing.webhook_id)
        .await
        .expect("the failing endpoint's partition has an owner");
    let other = (0..3)
        .find(|&i| cluster.member_id(i) != owner)
        .expect("three daemons, one owner");
    println!(
        "{} is owned by {owner}; retrying through {}",
        failing.webhook_id,
        cluster.member_id(other)
    );
    let response = cluster
        .api(other)
        .post(
            &format!("/v1/deliveries/{delivery_id}/retry"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(response.status, 202, "{}", response.body);

    let d = wait_for_status(&db, &delivery_id, "succeeded").await;
    assert_eq!(d.get_i64("attempts").unwrap(), 3, "{d}");
    let requests = failing.receiver.wait_for(3, Duration::from_secs(60)).await;
    assert_eq!(
        requests.len(),
        3,
        "{}",
        failing.receiver.describe(&requests)
    );
    assert!(requests
        .iter()
        .all(|r| r.header("webhook-id") == Some("evt_cluster_retry")));
}
