//! A rolling restart under load: SIGTERM each of three daemons in turn and start it again,
//! as a deploy does. A daemon stopping cleanly drains its attempts, records them, writes its
//! partitions' checkpoints and releases its leases, so the others take over from exactly
//! where it stopped: nothing lost, and not a single duplicate.

use std::time::Duration;

use super::*;
use crate::daemon::test_config;
use crate::fixtures::database;

/// The most events the load inserts; it stops once every daemon has been restarted.
const MAX_EVENTS: usize = 4_000;
const PREFIX: &str = "rolling";

#[tokio::test]
async fn a_rolling_restart_of_three_daemons_loses_nothing_and_sends_nothing_twice() {
    let (uri, name, db) = database("cluster_rolling").await;
    let endpoints = Endpoint::start_many(&db, "000000000c1a03", 3).await;
    let config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    let mut cluster = Cluster::start(&config, 3, &[]).await;
    cluster.wait_settled(&db).await;

    // 10 events every 200 ms until the restarts are done.
    let producer = Producer::start(&db, PREFIX, MAX_EVENTS, 10, Duration::from_millis(200));
    for i in 0..3 {
        // Deliveries are flowing before each stop.
        let seen = endpoints[0].tally(PREFIX).distinct();
        crate::support::eventually(Duration::from_secs(120), "deliveries under way", || {
            let n = endpoints[0].tally(PREFIX).distinct();
            async move { n >= seen + 50 }
        })
        .await;
        let id = cluster.member_id(i);
        assert_eq!(
            cluster.sigterm(i).await,
            Some(0),
            "{id} did not exit cleanly on SIGTERM"
        );
        // Started again at once, as a deploy does; it takes its share back from the two
        // that took over, before the next one stops.
        cluster.restart(i).await;
        cluster.wait_settled(&db).await;
    }
    let events = producer.stop().await;
    assert!(
        events.len() < MAX_EVENTS,
        "the load ended before the last restart; raise MAX_EVENTS"
    );

    wait_all_arrived(&db, &endpoints, PREFIX, &events, Duration::from_secs(180)).await;
    wait_all_succeeded(
        &db,
        PREFIX,
        events.len() * endpoints.len(),
        Duration::from_secs(120),
    )
    .await;
    report_duplicates("rolling restart of 3 daemons", &endpoints, PREFIX);
    for endpoint in &endpoints {
        let tally = endpoint.tally(PREFIX);
        assert_eq!(
            tally.duplicates(),
            0,
            "{} got events twice across clean restarts, e.g. {:?}",
            endpoint.webhook_id,
            tally.some_duplicated()
        );
    }
    cluster.stop_all().await;
}
