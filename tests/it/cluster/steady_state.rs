//! Three daemons on one database, nobody killed: each event reaches each endpoint exactly
//! once, cluster-wide (today's single-owner assumption sent every event once per daemon).

use std::time::Duration;

use super::*;
use crate::daemon::test_config;
use crate::fixtures::database;

const EVENTS: usize = 600;
const PREFIX: &str = "steady";

#[tokio::test]
async fn three_daemons_deliver_each_event_once_to_each_endpoint() {
    let (uri, name, db) = database("cluster_steady").await;
    let endpoints = Endpoint::start_many(&db, "000000000c1a01", 4).await;
    let config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    let mut cluster = Cluster::start(&config, 3, &[]).await;
    cluster.wait_settled(&db).await;

    let events = Producer::start(&db, PREFIX, EVENTS, 30, Duration::from_millis(200))
        .finish()
        .await;
    wait_all_arrived(&db, &endpoints, PREFIX, &events, Duration::from_secs(180)).await;
    wait_all_succeeded(
        &db,
        PREFIX,
        EVENTS * endpoints.len(),
        Duration::from_secs(120),
    )
    .await;

    report_duplicates("3 daemons, steady state", &endpoints, PREFIX);
    for endpoint in &endpoints {
        let tally = endpoint.tally(PREFIX);
        assert_eq!(
            (tally.distinct(), tally.total()),
            (EVENTS, EVENTS),
            "{} got {} requests for {} distinct events, e.g. {:?}",
            endpoint.webhook_id,
            tally.total(),
            tally.distinct(),
            tally.some_duplicated()
        );
    }
    cluster.stop_all().await;
}
