//! A slowloris receiver is cut off by the attempt timeout and rescheduled, and the healthy
//! endpoint next door is done before the first trickling attempt times out.

use std::time::Duration;

use mongodb::bson::Document;

use super::{assert_every_attempt_errored, attempt_log, delivery_id, scene, HEALTHY};
use crate::fixtures::*;
use crate::support::chaos_receiver::{Behaviour, ChaosReceiver};

/// When an attempt ended, in ms since the epoch by herald's clock (its `at` plus its
/// `duration_ms`).
fn attempt_end(attempt: &Document) -> i64 {
    attempt.get_datetime("at").unwrap().timestamp_millis() + attempt.get_i64("duration_ms").unwrap()
}

#[tokio::test]
async fn a_slowloris_receiver_is_cut_off_by_the_attempt_timeout_and_rescheduled() {
    const CHAOS: &str = "wh_00000000000ca011";
    // One response byte a second: the whole 38-byte response would take 38 s.
    let chaos = ChaosReceiver::start(Behaviour::Trickle {
        every: Duration::from_secs(1),
    })
    .await;
    let scene = scene("slowloris", &[(CHAOS, &chaos.url)], |c| {
        c.attempt_timeout_ms = 3_000;
        // Long backoff, so the pending state after the first attempt can be observed.
        c.retry_initial_ms = 60_000;
        c.retry_max_ms = 60_000;
    })
    .await;

    scene.publish("slow", 10).await;
    scene.healthy_unaffected(10).await;

    let mut trickle_ends = Vec::new();
    for i in 0..10 {
        let id = delivery_id(&format!("evt_slow_{i}"), CHAOS);
        let d = scene
            .delivery_when(&id, "pending after one attempt", |d| {
                d.get_i64("attempts") == Ok(1)
            })
            .await;
        assert_eq!(d.get_str("status").unwrap(), "pending", "{d}");
        let next = d.get_datetime("next_attempt_at").expect("next_attempt_at");
        let attempted = attempt_log(&d)[0].get_datetime("at").unwrap().to_owned();
        assert!(
            *next > attempted,
            "next attempt {next} is not after {attempted}"
        );
        assert_every_attempt_errored(&d, &["timed out after 3000 ms"]);
        let took = attempt_log(&d)[0].get_i64("duration_ms").unwrap();
        assert!(took >= 2_900, "the trickling attempt lasted {took} ms");
        trickle_ends.push(attempt_end(&attempt_log(&d)[0]));
    }
    // Every healthy delivery had ended before the first trickling attempt timed out.
    let healthy_last = deliveries(
        &scene.db,
        mongodb::bson::doc! {"webhook_id": HEALTHY, "status": "succeeded"},
    )
    .await
    .iter()
    .map(|d| attempt_end(&attempt_log(d)[0]))
    .max()
    .unwrap();
    let first_timeout = trickle_ends.into_iter().min().unwrap();
    assert!(
        healthy_last < first_timeout,
        "the healthy endpoint's last delivery ended {} ms after the first trickling attempt \
         timed out",
        healthy_last - first_timeout
    );
    scene.daemon.stop().await.unwrap();
}
