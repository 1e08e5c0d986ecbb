//! Nothing handed out vanishes: a webhook disabled (through a daemon that does not own it)
//! while a burst is queued for it keeps every event it was handed — delivered, or recorded
//! `pending` with its payload — and gets them all once enabled again. (Before issue 18,
//! 4,519 of 5,000 such events were neither delivered nor recorded anywhere.)

use std::time::Duration;

use mongodb::bson::doc;

use super::*;
use crate::daemon::test_config;
use crate::fixtures::{database, deliveries};

const EVENTS: usize = 2_000;
const PREFIX: &str = "disabled";
/// The attempts one endpoint can have under way when it is disabled: recorded pending, they
/// may be sent again once it is enabled.
const IN_FLIGHT_PER_ENDPOINT: usize = 64;

#[tokio::test]
async fn a_webhook_disabled_mid_burst_loses_none_of_its_events() {
    let (uri, name, db) = database("cluster_disable").await;
    // Limited, so that most of the burst is still queued for it when it is disabled.
    let queued = Endpoint::start(&db, "wh_000000000c1a0701", |hook| {
        hook.insert("rate_limit_per_second", 20);
    })
    .await;
    let neighbour = Endpoint::start(&db, "wh_000000000c1a0702", |_| {}).await;
    let config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    let cluster = Cluster::start(&config, 2, &[]).await;
    cluster.wait_settled(&db).await;

    let events = Producer::start(&db, PREFIX, EVENTS, 500, Duration::ZERO)
        .finish()
        .await;
    // The neighbour has every event: each has been routed, to the limited webhook too.
    wait_all_arrived(
        &db,
        std::slice::from_ref(&neighbour),
        PREFIX,
        &events,
        Duration::from_secs(180),
    )
    .await;
    let before = queued.tally(PREFIX).distinct();
    assert!(
        before < EVENTS,
        "the limited webhook already had every event: nothing was queued to disable"
    );

    let owner = owner_of(&db, &queued.webhook_id)
        .await
        .expect("the webhook's partition has an owner");
    let other = cluster
        .running()
        .iter()
        .position(|id| *id != owner)
        .expect("two daemons, one owner");
    let api = cluster.api(other);
    let path = format!("/v1/webhooks/{}", queued.webhook_id);
    let response = api
        .patch(&path, serde_json::json!({"enabled": false}))
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    println!(
        "disabled through {} (owner {owner}) after {before} of {EVENTS} deliveries",
        cluster.member_id(other)
    );

    // Every event it was handed is accounted for: delivered, or recorded pending with the
    // payload to send.
    wait_accounted_for(&db, &queued, PREFIX, &events, Duration::from_secs(120)).await;
    let pending = deliveries(
        &db,
        doc! {"webhook_id": &queued.webhook_id, "status": "pending"},
    )
    .await
    .len();
    println!("recorded pending while disabled: {pending}");

    // Enabled again (and unlimited, to be quick): everything held goes out.
    let response = api
        .patch(
            &path,
            serde_json::json!({"enabled": true, "rate_limit_per_second": null}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    wait_all_arrived(
        &db,
        std::slice::from_ref(&queued),
        PREFIX,
        &events,
        Duration::from_secs(180),
    )
    .await;
    let duplicates = report_duplicates(
        "disabled mid-burst, enabled again",
        std::slice::from_ref(&queued),
        PREFIX,
    )[0];
    assert!(
        duplicates <= IN_FLIGHT_PER_ENDPOINT,
        "{duplicates} events sent twice, more than were in flight at the disable: {:?}",
        queued.tally(PREFIX).some_duplicated()
    );
}
