//! Connection handling: a receiver closing every connection (announced or not) still gets
//! every delivery, and an HTTP/2-only receiver gets every delivery over pooled h2
//! connections.

use std::time::Duration;

use mongodb::bson::Document;

use super::{attempt_log, delivery_id, scene};
use crate::fixtures::*;
use crate::support::chaos_receiver::{Behaviour, ChaosReceiver};

#[tokio::test]
async fn a_receiver_closing_every_connection_still_gets_every_delivery() {
    const ANNOUNCED: &str = "wh_00000000000ca041";
    const SILENT: &str = "wh_00000000000ca042";
    const EVENTS: usize = 60;
    let announced =
        ChaosReceiver::start(Behaviour::CloseAfterEachResponse { announce: true }).await;
    let silent = ChaosReceiver::start(Behaviour::CloseAfterEachResponse { announce: false }).await;
    let scene = scene(
        "connclose",
        &[(ANNOUNCED, &announced.url), (SILENT, &silent.url)],
        |c| c.retry_max_attempts = 15,
    )
    .await;

    // In three waves, so later deliveries meet pooled connections the receiver closed.
    for wave in 0..3 {
        let events: Vec<Document> = (0..EVENTS / 3)
            .map(|i| event(&format!("evt_close_{}", wave * EVENTS / 3 + i), "x.y"))
            .collect();
        scene
            .db
            .collection::<Document>("events")
            .insert_many(events)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    scene.healthy_unaffected(EVENTS).await;

    for (webhook, receiver) in [(ANNOUNCED, &announced), (SILENT, &silent)] {
        let mut attempts = 0;
        for i in 0..EVENTS {
            let id = delivery_id(&format!("evt_close_{i}"), webhook);
            let d = wait_for_status(&scene.db, &id, "succeeded").await;
            attempts += d.get_i64("attempts").unwrap();
        }
        eprintln!(
            "{webhook}: {EVENTS} deliveries took {attempts} attempts over {} connections",
            receiver.connections()
        );
        if webhook == ANNOUNCED {
            // `connection: close` is honoured: never a request on a closed connection.
            assert_eq!(attempts, EVENTS as i64, "announced close cost retries");
        }
        assert_eq!(receiver.connections(), receiver.requests());
    }
    scene.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn an_http2_only_receiver_gets_every_delivery_over_h2() {
    const H2: &str = "wh_00000000000ca051";
    let h2 = ChaosReceiver::start(Behaviour::Http2Only).await;
    let scene = scene("h2only", &[(H2, &h2.url)], |_| {}).await;

    // Two waves: the second finds the first wave's connections pooled.
    let mut connections = Vec::new();
    for wave in 0..2 {
        let prefix = format!("h2w{wave}");
        scene.publish(&prefix, 20).await;
        scene.healthy_unaffected(20 * (wave + 1)).await;
        for i in 0..20 {
            let id = delivery_id(&format!("evt_{prefix}_{i}"), H2);
            let d = wait_for_status(&scene.db, &id, "succeeded").await;
            assert_eq!(d.get_i64("attempts").unwrap(), 1);
            assert_eq!(attempt_log(&d)[0].get_i32("status_code").unwrap(), 200);
        }
        connections.push(h2.connections());
    }
    let versions = h2.versions();
    assert_eq!(versions.len(), 40);
    assert!(
        versions.iter().all(|v| *v == hyper::Version::HTTP_2),
        "{versions:?}"
    );
    eprintln!("h2-only: connections after each wave of 20: {connections:?}");
    // The second wave reused the pooled h2 connections instead of dialling anew.
    assert_eq!(connections[1], connections[0], "{connections:?}");
    scene.daemon.stop().await.unwrap();
}
