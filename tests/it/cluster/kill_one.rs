//! `kill -9` one of three daemons under load: the survivors take over its partitions once
//! its lease has run out, resume from their checkpoints and re-load its pending retries, so
//! every event still reaches every endpoint; the duplicates are the attempts it had in
//! flight or had not yet recorded, a few per cent of the deliveries at most.

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::daemon::test_config;
use crate::fixtures::database;

const EVENTS: usize = 1_000;
const PREFIX: &str = "killone";

#[tokio::test]
async fn killing_one_of_three_daemons_loses_nothing_and_its_endpoints_resume() {
    let (uri, name, db) = database("cluster_kill").await;
    let endpoints = Endpoint::start_many(&db, "000000000c1a02", 4).await;
    let config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    let mut cluster = Cluster::start(&config, 3, &[]).await;
    cluster.wait_settled(&db).await;

    // The victim owns the first endpoint (and perhaps others): those are the endpoints
    // whose deliveries must move.
    let victim_id = owner_of(&db, &endpoints[0].webhook_id)
        .await
        .expect("the first endpoint's partition has an owner");
    let victim = cluster
        .index_of(&victim_id)
        .unwrap_or_else(|| panic!("{victim_id} is not one of the running daemons"));
    let mut orphaned = Vec::new();
    for endpoint in &endpoints {
        if owner_of(&db, &endpoint.webhook_id).await.as_deref() == Some(victim_id.as_str()) {
            orphaned.push(endpoint);
        }
    }

    // About 15 s of traffic: 20 events every 300 ms.
    let producer = Producer::start(&db, PREFIX, EVENTS, 20, Duration::from_millis(300));
    crate::support::eventually(Duration::from_secs(120), "deliveries under way", || {
        let n = endpoints[0].tally(PREFIX).distinct();
        async move { n >= EVENTS / 5 }
    })
    .await;
    let before_kill: Vec<HashSet<String>> =
        orphaned.iter().map(|e| e.tally(PREFIX).events()).collect();
    cluster.kill(victim);
    let killed_at = tokio::time::Instant::now();
    assert!(
        producer.produced() < EVENTS,
        "the load was over before the kill; nothing was left to take over"
    );

    // The victim's endpoints receive events they had not got before the kill: a survivor
    // has taken their partitions over.
    for (endpoint, before) in orphaned.iter().zip(&before_kill) {
        crate::support::eventually(
            Duration::from_secs(120),
            &format!("{} receives again after the kill", endpoint.webhook_id),
            || {
                let resumed = !endpoint.tally(PREFIX).events().is_subset(before);
                async move { resumed }
            },
        )
        .await;
    }
    println!(
        "{victim_id} killed; its {} endpoint(s) received again {:.1} s later (lease TTL {:?})",
        orphaned.len(),
        killed_at.elapsed().as_secs_f64(),
        LEASE_TTL
    );

    let events = producer.finish().await;
    wait_all_arrived(&db, &endpoints, PREFIX, &events, Duration::from_secs(180)).await;
    wait_all_succeeded(
        &db,
        PREFIX,
        EVENTS * endpoints.len(),
        Duration::from_secs(120),
    )
    .await;
    cluster.wait_settled(&db).await;

    let duplicates: usize = report_duplicates("kill -9 one of 3 daemons", &endpoints, PREFIX)
        .iter()
        .sum();
    let deliveries = EVENTS * endpoints.len();
    assert!(
        duplicates * 20 <= deliveries,
        "{duplicates} duplicate requests for {deliveries} deliveries: more than 5%"
    );
    cluster.stop_all().await;
}
