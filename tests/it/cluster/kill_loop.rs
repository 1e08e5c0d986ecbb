//! One daemon killed with `kill -9` five times under load and started again each time (a
//! cluster of one; each new process waits out the dead one's lease, then takes over): every
//! event reaches every endpoint, and because a replayed event whose delivery is already
//! recorded is not sent again, the duplicates stay a few per cent of the deliveries. (Before issue 18: 2.2 duplicates per delivery over ten kills.)

use std::time::Duration;

use super::*;
use crate::daemon::test_config;
use crate::fixtures::database;

const EVENTS: usize = 4_000;
const KILLS: usize = 5;
const PREFIX: &str = "killloop";

#[tokio::test]
async fn five_kills_of_a_daemon_under_load_lose_nothing_and_duplicate_little() {
    let (uri, name, db) = database("cluster_killloop").await;
    let endpoints = Endpoint::start_many(&db, "000000000c1a08", 3).await;
    let config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    let mut cluster = Cluster::start(&config, 1, &[]).await;
    cluster.wait_settled(&db).await;

    // A steady 100 events a second (300 deliveries), for the whole loop. Each kill comes
    // once the restarted daemon has taken the partitions over and delivered another 100
    // events to the first endpoint: at a moment of ordinary work, not in the burst of its
    // take-over (that burst is what a kill costs most in; BENCHMARKS.md has both).
    let producer = Producer::start(&db, PREFIX, EVENTS, 10, Duration::from_millis(100));
    let mut delivered = 0;
    for kill in 0..KILLS {
        let threshold = delivered + 100;
        crate::support::eventually(
            Duration::from_secs(120),
            &format!("100 more events delivered before kill {}", kill + 1),
            || {
                let n = endpoints[0].tally(PREFIX).distinct();
                async move { n >= threshold }
            },
        )
        .await;
        cluster.kill(0);
        cluster.restart(0).await;
        cluster.wait_settled(&db).await;
        delivered = endpoints[0].tally(PREFIX).distinct();
    }
    let events = producer.finish().await;
    wait_all_arrived(&db, &endpoints, PREFIX, &events, Duration::from_secs(180)).await;
    wait_all_succeeded(
        &db,
        PREFIX,
        EVENTS * endpoints.len(),
        Duration::from_secs(120),
    )
    .await;

    let duplicates: usize = report_duplicates(
        &format!("kill -9 x{KILLS} of one daemon"),
        &endpoints,
        PREFIX,
    )
    .iter()
    .sum();
    let deliveries = EVENTS * endpoints.len();
    assert!(
        duplicates * 20 <= deliveries,
        "{duplicates} duplicate requests for {deliveries} deliveries over {KILLS} kills: more \
         than 5%"
    );
    cluster.stop_all().await;
}
