//! One daemon killed with `kill -9` five times under load and started again each time (a
//! cluster of one; each new process waits out the dead one's lease, then takes over): every
//! event reaches every endpoint, and because a replayed event whose delivery is already
//! recorded is not sent again, the duplicates stay a few per cent of the deliveries. (Before issue 18: 2.2 duplicates per delivery over ten kills.)

use std::time::Duration;

use super::*;
use crate::daemon::test_config;
use crate::fixtures::database;
use mongodb::bson::Document;
use mongodb::Database;

/// At most this many events: the producer runs until the last kill has been taken over,
/// which on a loaded machine may take longer than 4,000 events at 100 a second.
const MAX_EVENTS: usize = 100_000;
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
    let producer = Producer::start(&db, PREFIX, MAX_EVENTS, 10, Duration::from_millis(100));
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
        // Ordinary work: the ledger is not catching up on the take-over's burst. On a loaded
        // machine it may be seconds behind after a take-over, and a kill then costs what the
        // take-over costs, which is not what this measures.
        crate::support::eventually(
            Duration::from_secs(120),
            &format!("the daemon keeping up before kill {}", kill + 1),
            || keeping_up(&db, &endpoints),
        )
        .await;
        cluster.kill(0);
        cluster.restart(0).await;
        cluster.wait_settled(&db).await;
        delivered = endpoints[0].tally(PREFIX).distinct();
    }
    // Ordinary work after the last take-over too, then the producer stops.
    let threshold = delivered + 100;
    crate::support::eventually(
        Duration::from_secs(120),
        "100 more events delivered after the last kill",
        || {
            let n = endpoints[0].tally(PREFIX).distinct();
            async move { n >= threshold }
        },
    )
    .await;
    let events = producer.stop().await;
    let deliveries = events.len() * endpoints.len();
    wait_all_arrived(&db, &endpoints, PREFIX, &events, Duration::from_secs(180)).await;
    wait_all_succeeded(&db, PREFIX, deliveries, Duration::from_secs(120)).await;

    let duplicates: usize = report_duplicates(
        &format!("kill -9 x{KILLS} of one daemon"),
        &endpoints,
        PREFIX,
    )
    .iter()
    .sum();
    assert!(
        duplicates * 20 <= deliveries,
        "{duplicates} duplicate requests for {deliveries} deliveries over {KILLS} kills: more \
         than 5%"
    );
    cluster.stop_all().await;
}

/// Whether the ledger has recorded all but ~0.3 s of what the endpoints received: what a
/// kill replays is what was sent and not yet recorded.
async fn keeping_up(db: &Database, endpoints: &[Endpoint]) -> bool {
    const LAG: usize = 30;
    let received: usize = endpoints.iter().map(|e| e.tally(PREFIX).distinct()).sum();
    // The story's database holds only its deliveries; the estimate is the collection's
    // count, read without a scan (this is polled while the server is busy).
    let recorded = db
        .collection::<Document>("deliveries")
        .estimated_document_count()
        .await
        .unwrap_or(0) as usize;
    recorded + LAG * endpoints.len() >= received
}
