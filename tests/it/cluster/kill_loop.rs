//! One daemon killed with `kill -9` five times under load and started again each time (a
//! cluster of one; each new process waits out the dead one's lease, then takes over): every
//! event reaches every endpoint, and because a replayed event whose delivery is already
//! recorded succeeded is not sent again, the duplicates stay a few per cent of the
//! deliveries. (Before issue 18: 2.2 duplicates per delivery over ten kills.)

use std::time::Duration;

use super::*;
use crate::daemon::test_config;
use crate::fixtures::database;

const EVENTS: usize = 1_000;
const KILLS: usize = 5;
const PREFIX: &str = "killloop";

#[tokio::test]
async fn five_kills_of_a_daemon_under_load_lose_nothing_and_duplicate_little() {
    let (uri, name, db) = database("cluster_killloop").await;
    let endpoints = Endpoint::start_many(&db, "000000000c1a08", 3).await;
    let config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    let mut cluster = Cluster::start(&config, 1, &[]).await;
    cluster.wait_settled(&db).await;

    // 50 events every 100 ms, faster than they go out: each kill finds a backlog and
    // attempts in flight. (With the single global checkpoint of before issue 18, this loop
    // sent 2.15 duplicates per delivery.)
    let producer = Producer::start(&db, PREFIX, EVENTS, 50, Duration::from_millis(100));
    // Killed as deliveries pass 100, 250, 400, 550 and 700 of the first endpoint's events.
    for kill in 0..KILLS {
        let threshold = 100 + 150 * kill;
        crate::support::eventually(
            Duration::from_secs(120),
            &format!("{threshold} events delivered before kill {}", kill + 1),
            || {
                let n = endpoints[0].tally(PREFIX).distinct();
                async move { n >= threshold }
            },
        )
        .await;
        cluster.kill(0);
        cluster.restart(0).await;
    }
    let events = producer.finish().await;
    wait_all_arrived(&endpoints, PREFIX, &events, Duration::from_secs(180)).await;
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
