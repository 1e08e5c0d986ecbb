//! Disabling a webhook while its endpoint holds deliveries: nothing it was handed vanishes.

use std::time::Duration;

use super::{config, delivered, event, pos, settle_webhooks, start, until, webhook};
use crate::delivery::DeliveryStatus;
use crate::fakes::Answer;
use crate::webhook::WebhookSpec;

const EVENTS: usize = 50;

/// On real time: the endpoint reads its recorded deliveries back once their due second has
/// passed on the wall clock (see the module doc of `tests`).
#[tokio::test]
async fn a_webhook_disabled_mid_burst_records_what_it_held_and_delivers_it_when_enabled_again() {
    let (engine, transport, ledger) = start(config()).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    // A new endpoint makes one attempt at a time until it has answered: the burst queues.
    transport.set_default(
        "https://a.example/hook",
        Answer::Slow(Duration::from_millis(300)),
    );
    for i in 0..EVENTS {
        handle
            .submit(
                event(&format!("evt_{i}"), "object.created"),
                Some(pos(format!("t{i}"))),
            )
            .await
            .unwrap();
    }
    until("the first attempt under way", || {
        transport.sent_to("https://a.example/hook") == 1
    })
    .await;

    handle
        .upsert_webhook(WebhookSpec {
            enabled: false,
            ..webhook("a", &["*"])
        })
        .unwrap();
    // Every delivery it was handed is recorded (pending, with the payload to send), and the
    // feed moves past the burst.
    until("every delivery recorded", || {
        ledger.deliveries().len() == EVENTS
    })
    .await;
    for stored in ledger.deliveries() {
        assert!(
            stored.payload.is_some(),
            "{} was recorded without its payload",
            stored.record.delivery_id
        );
    }
    let last = format!("t{}", EVENTS - 1);
    until("the checkpoint past the burst", || {
        ledger.everywhere_at(last.as_bytes())
    })
    .await;
    assert!(
        ledger.count_with(DeliveryStatus::Pending) >= EVENTS - 1,
        "all but the attempt under way are pending"
    );

    // Enabled again: what it held goes out.
    transport.set_default("https://a.example/hook", Answer::Status(200));
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    until("every held delivery delivered", || {
        delivered(&ledger, "a") == EVENTS
    })
    .await;
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
}
