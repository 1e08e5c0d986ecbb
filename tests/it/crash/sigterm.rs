//! Stopped with SIGTERM, herald lets in-flight attempts finish and records them, so a
//! restart sends nothing again.

use std::time::Duration;

use mongodb::bson::{doc, Document};

use super::distinct_ids;
use crate::daemon::{test_config, ChildDaemon};
use crate::fixtures::*;
use crate::support::Receiver;

#[tokio::test]
async fn sigterm_lets_in_flight_attempts_finish_records_them_and_a_restart_resends_nothing() {
    const EVENTS: usize = 5;
    let (uri, name, db) = database("sigterm").await;
    let receiver = Receiver::start().await;
    // Slow: each answer comes three seconds after the request arrived.
    receiver.respond_with_response(crate::support::Response::ok().delay(Duration::from_secs(3)));
    insert_webhook(&db, webhook("wh_0000000000000c05", &receiver.url, &["*"])).await;
    let mut config = test_config(&uri, &name, &receiver.ca_pem_path);
    // The attempts outlast neither their timeout nor the shutdown grace (10 s by default).
    config.attempt_timeout_ms = 10_000;
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;

    let events: Vec<Document> = (0..EVENTS)
        .map(|i| event(&format!("evt_term_{i}"), "batch.completed"))
        .collect();
    db.collection::<Document>("events")
        .insert_many(events)
        .await
        .unwrap();
    // An attempt has reached the receiver and waits for its answer: SIGTERM now. (Herald
    // may hold the others back while a new endpoint's first attempts are out.)
    receiver.wait_for(1, Duration::from_secs(30)).await;
    let terminated_at = mongodb::bson::DateTime::now();
    assert_eq!(daemon.sigterm().await, Some(0), "{}", daemon.log_text());
    assert!(
        crate::support::without_colours(&daemon.log_text()).contains("draining in-flight attempts"),
        "{}",
        daemon.log_text()
    );

    // What was in flight was drained and recorded before herald exited: succeeded, its
    // answer after the SIGTERM. The rest were not attempted yet.
    let in_flight_at_stop = distinct_ids(&receiver);
    assert!(!in_flight_at_stop.is_empty());
    let recorded = deliveries(&db, doc! {}).await;
    for event_id in &in_flight_at_stop {
        let id = format!("{event_id}:wh_0000000000000c05");
        let d = delivery(&db, &id).await.unwrap_or_else(|| {
            panic!(
                "{id} was not recorded before exit; recorded: {recorded:?}\nherald log:\n{}",
                crate::support::without_colours(&daemon.log_text()),
            )
        });
        assert_eq!(d.get_str("status").unwrap(), "succeeded", "{d}");
        assert_eq!(d.get_i64("attempts").unwrap(), 1, "{d}");
        let attempt = d.get_array("attempt_log").unwrap()[0]
            .as_document()
            .unwrap()
            .clone();
        let ended = attempt.get_datetime("at").unwrap().timestamp_millis()
            + attempt.get_i64("duration_ms").unwrap();
        assert!(
            ended >= terminated_at.timestamp_millis(),
            "{id} was answered before the SIGTERM at {terminated_at}, not in flight: {attempt}"
        );
    }

    // Restarted: every event arrives (the new one last, so the feed has caught up), and
    // each exactly once: nothing drained was sent again.
    receiver.respond_with(200);
    let daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;
    insert_event(&db, "evt_term_after_restart", "batch.completed").await;
    crate::support::eventually(
        Duration::from_secs(30),
        "every event is delivered after the restart",
        || {
            let got = distinct_ids(&receiver).len() == EVENTS + 1;
            async move { got }
        },
    )
    .await;
    let ids: Vec<String> = receiver
        .requests()
        .iter()
        .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
        .collect();
    assert_eq!(
        ids.len(),
        EVENTS + 1,
        "sent again after a clean restart: {ids:?}"
    );
    drop(daemon);
}
