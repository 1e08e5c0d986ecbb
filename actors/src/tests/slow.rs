//! No endpoint holds the feed: what an endpoint cannot send within its horizon (two seconds
//! of its rate limit or of its measured pace; nothing while it fails) is recorded as
//! pending and read back in its turn, while its neighbours get every event at their own pace.
//! A measured pace counts once holding costs someone: the feed window nearly full while
//! another endpoint could take more work, or work waiting for [`HOLD_FEED_FOR`]; until then
//! a burst stays in memory, off the ledger.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::{
    config, delivered, event, held, pos, quiet_for, settle_webhooks, start, successes, until,
    watch_held, webhook,
};
use crate::delivery::DeliveryStatus;
use crate::endpoint::{HOLD_FEED_FOR, HORIZON};
use crate::engine::{Engine, EngineHandle};
use crate::fakes::{Answer, MemoryLedger, Moment, ScriptedTransport};
use crate::webhook::WebhookSpec;

/// Brings `name` (subscribed to `y`) one event and waits until it is delivered: it is
/// idle, and fed lately, so holding the feed would cost it.
async fn feed_one(handle: &EngineHandle, ledger: &MemoryLedger, name: &str) {
    handle
        .submit(event(&format!("evt_{name}"), "y"), Some(pos("start")))
        .await
        .unwrap();
    until("the idle endpoint's event", || delivered(ledger, name) == 1).await;
}

/// Submits `n` events, each with its checkpoint `t<i>`.
async fn burst(handle: &EngineHandle, n: usize) {
    for i in 0..n {
        let token = Bytes::from(format!("t{i:03}"));
        handle
            .submit(event(&format!("evt_{i:03}"), "x"), Some(pos(token)))
            .await
            .unwrap();
    }
}

/// `webhook`'s deliveries in the ledger, by status.
fn recorded(ledger: &MemoryLedger, webhook: &str) -> HashMap<&'static str, usize> {
    let mut by_status = HashMap::new();
    for d in ledger.deliveries() {
        if d.record.webhook_id == webhook {
            *by_status.entry(d.record.status.as_str()).or_default() += 1;
        }
    }
    by_status
}

/// Every delivery of `webhook` got exactly one 2xx, and its URL exactly `n` requests.
fn each_sent_once(ledger: &MemoryLedger, transport: &ScriptedTransport, webhook: &str, n: usize) {
    let successes = successes(ledger, webhook);
    let twice: Vec<_> = successes.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "not delivered exactly once: {twice:?}");
    assert_eq!(successes.len(), n);
    assert_eq!(
        transport.sent_to(&format!("https://{webhook}.example/hook")),
        n
    );
}

/// Every partition's checkpoint is at `t<last>`.
fn checkpoint_at(ledger: &MemoryLedger, last: usize) -> bool {
    ledger.everywhere_at(format!("t{last:03}").as_bytes())
}

/// On real time: the rate limiter reads the wall clock.
#[tokio::test]
async fn a_rate_limited_endpoint_records_its_backlog_and_its_neighbour_gets_every_event() {
    const EVENTS: usize = 300;
    let mut config = config();
    config.max_in_flight_per_endpoint = 4;
    // A window a third of the burst: were the slow endpoint to hold its deliveries
    // unrecorded, the feed would move at its pace, and so would its neighbour.
    config.max_events_in_flight = 100;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    let slow = WebhookSpec {
        rate_limit_per_second: Some(2),
        ..webhook("slow", &["*"])
    };
    handle.upsert_webhook(slow.clone()).unwrap();
    handle.upsert_webhook(webhook("fast", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    let (stop, sampler) = watch_held(&handle, "slow");

    burst(&handle, EVENTS).await;
    until("the unlimited endpoint has every event", || {
        delivered(&ledger, "fast") == EVENTS
    })
    .await;
    // The feed passed every event: each of the slow endpoint's deliveries is recorded.
    until("the checkpoint at the last event", || {
        checkpoint_at(&ledger, EVENTS - 1)
    })
    .await;
    let pending = recorded(&ledger, "slow")
        .get(DeliveryStatus::Pending.as_str())
        .copied()
        .unwrap_or_default();
    let sent = transport.sent_to("https://slow.example/hook");
    assert!(
        pending >= EVENTS - sent,
        "{pending} pending, {sent} sent of {EVENTS}"
    );
    stop.store(true, Ordering::Relaxed);
    let most = sampler.await.unwrap();
    // Two seconds at 2/s, and no fewer than its attempts in flight: 4.
    assert!(most <= 4, "the slow endpoint held {most} deliveries");

    // Its limit lifted, it reads its backlog back from the ledger and sends each once.
    handle
        .upsert_webhook(WebhookSpec {
            rate_limit_per_second: None,
            ..slow
        })
        .unwrap();
    until("every slow delivery sent", || {
        delivered(&ledger, "slow") == EVENTS
    })
    .await;
    quiet_for(Duration::from_millis(200)).await;
    each_sent_once(&ledger, &transport, "slow", EVENTS);
    each_sent_once(&ledger, &transport, "fast", EVENTS);
    assert!(ledger.sweeps() > 0);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// A slow receiver (4 in flight, 400 ms each: 10 a second, 20 within the horizon) beside a
/// fast one, both subscribed to everything.
async fn slow_beside_fast(
    max_events_in_flight: usize,
) -> (Engine, ScriptedTransport, MemoryLedger) {
    let mut config = config();
    config.max_in_flight_per_endpoint = 4;
    config.attempt_timeout = Duration::from_secs(5);
    config.max_events_in_flight = max_events_in_flight;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("slow", &["*"])).unwrap();
    handle.upsert_webhook(webhook("fast", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    transport.set_default(
        "https://slow.example/hook",
        Answer::Slow(Duration::from_millis(400)),
    );
    (engine, transport, ledger)
}

/// On paused time while the slow receiver shows its pace, then on real time: the endpoint
/// reads its backlog back when it falls due on the wall clock.
#[tokio::test(start_paused = true)]
async fn a_slow_receiver_keeps_what_it_sends_in_two_seconds_and_records_the_rest() {
    const EVENTS: usize = 300;
    // The burst fills all but 20 of the window's 320 events: the window is nearly full, so
    // the slow endpoint's pace holds its neighbour back.
    let (engine, transport, ledger) = slow_beside_fast(EVENTS + 20).await;
    let handle = engine.handle();
    // What it records comes back once its due second has passed on the wall clock, which
    // may pass at any point of this paused run: held until memory has been looked at.
    let sweeps = ledger.hold_sweeps();

    burst(&handle, EVENTS).await;
    until("the fast endpoint has every event", || {
        delivered(&ledger, "fast") == EVENTS
    })
    .await;
    until("the checkpoint at the last event", || {
        checkpoint_at(&ledger, EVENTS - 1)
    })
    .await;
    let kept = held(&handle, "slow").await;
    assert!(kept <= 20, "the slow endpoint holds {kept} deliveries");
    let recorded = recorded(&ledger, "slow");
    let pending = recorded.get(DeliveryStatus::Pending.as_str()).copied();
    assert_eq!(recorded.values().sum::<usize>(), EVENTS);
    assert!(
        pending.unwrap_or_default() >= EVENTS - transport.sent_to("https://slow.example/hook"),
        "{recorded:?}"
    );

    tokio::time::resume();
    sweeps.add_permits(tokio::sync::Semaphore::MAX_PERMITS);
    transport.set_default("https://slow.example/hook", Answer::Status(200));
    until("every slow delivery sent", || {
        delivered(&ledger, "slow") == EVENTS
    })
    .await;
    quiet_for(Duration::from_millis(200)).await;
    each_sent_once(&ledger, &transport, "slow", EVENTS);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// While the window has room, the slow endpoint's burst holds no one back: it stays in
/// memory, unrecorded, and nothing of it goes through the ledger until the endpoint has
/// worked on it for `HOLD_FEED_FOR`; then what it cannot send within its horizon is recorded
/// and the checkpoint passes the burst; it reads that back a horizon at a time. All on
/// paused time.
#[tokio::test(start_paused = true)]
async fn a_slow_receiver_holds_its_burst_while_the_window_has_room_until_it_has_held_the_feed_too_long(
) {
    // 100 s of the slow endpoint's work; the default window (20,000 events) holds it all.
    const EVENTS: usize = 1_000;
    let (engine, transport, ledger) = slow_beside_fast(20_000).await;
    let handle = engine.handle();
    let began = Moment::now();

    burst(&handle, EVENTS).await;
    until("the fast endpoint has every event", || {
        delivered(&ledger, "fast") == EVENTS
    })
    .await;
    // Well past its horizon (it sends 20 in two seconds), well before `HOLD_FEED_FOR`.
    quiet_for(HOLD_FEED_FOR / 2).await;
    let sent = transport.sent_to("https://slow.example/hook");
    assert!(sent < EVENTS, "the slow endpoint sent all {sent} already");
    let by_status = recorded(&ledger, "slow");
    assert_eq!(
        by_status.get(DeliveryStatus::Pending.as_str()),
        None,
        "recorded ahead while the window had room: {by_status:?}"
    );
    assert!(held(&handle, "slow").await > 20);
    assert!(!checkpoint_at(&ledger, EVENTS - 1));

    quiet_for(HOLD_FEED_FOR / 2).await;
    until("the checkpoint at the last event", || {
        checkpoint_at(&ledger, EVENTS - 1)
    })
    .await;
    let after = Moment::now().since(&began);
    assert!(after >= HOLD_FEED_FOR, "recorded ahead after {after:?}");
    let kept = held(&handle, "slow").await;
    assert!(kept <= 20, "the slow endpoint holds {kept} deliveries");
    let pending = recorded(&ledger, "slow")
        .get(DeliveryStatus::Pending.as_str())
        .copied()
        .unwrap_or_default();
    assert!(pending > 0);
    // What it kept goes out, and once the due second of what it recorded has passed on the
    // wall clock (real time from here) it reads that back a horizon at a time: its queue
    // running dry between two reads does not make it forget its pace and take the whole
    // backlog back into memory.
    tokio::time::resume();
    let (stop, sampler) = watch_held(&handle, "slow");
    let sent = transport.sent_to("https://slow.example/hook");
    until("40 more sent, read back from the ledger", || {
        transport.sent_to("https://slow.example/hook") >= sent + 40
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let most = sampler.await.unwrap();
    assert!(ledger.sweeps() > 0);
    assert!(
        most <= 20,
        "reading back, the slow endpoint held {most} deliveries"
    );
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// Beside an endpoint that could take more work (it waits for events of another type,
/// and had one lately).
#[tokio::test(start_paused = true)]
async fn an_endpoint_that_never_answers_records_its_burst_once_it_has_waited_its_horizon() {
    const EVENTS: usize = 200;
    let mut config = config();
    config.max_in_flight_per_endpoint = 4;
    config.attempt_timeout = Duration::from_secs(30);
    // The burst leaves 20 of the window's 220 events free: it is nearly full.
    config.max_events_in_flight = EVENTS + 20;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("dead", &["x"])).unwrap();
    handle.upsert_webhook(webhook("idle", &["y"])).unwrap();
    settle_webhooks(&handle).await;
    feed_one(&handle, &ledger, "idle").await;
    transport.set_default("https://dead.example/hook", Answer::Hang);
    let began = Moment::now();

    burst(&handle, EVENTS).await;
    // In slow start, one attempt is under way; everything else is recorded and all but
    // what its attempts need is spilled, long before that attempt times out.
    let dead = || {
        ledger
            .deliveries()
            .into_iter()
            .filter(|d| d.record.webhook_id == "dead")
            .collect::<Vec<_>>()
    };
    until("all but the attempt under way recorded", || {
        dead().len() == EVENTS - 1
    })
    .await;
    let after = Moment::now().since(&began);
    assert!(
        after >= HORIZON && after < HOLD_FEED_FOR,
        "judged slow after {after:?}"
    );
    assert_eq!(transport.sent_to("https://dead.example/hook"), 1);
    assert!(dead().iter().all(|d| d.attempt_log.is_empty()));
    let kept = held(&handle, "dead").await;
    assert!(kept <= 4, "the endpoint holds {kept} deliveries");
    engine.shutdown(Duration::from_millis(100)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_working_through_a_burst_within_its_horizon_records_each_delivery_once() {
    const EVENTS: usize = 1_200;
    let mut config = config();
    config.max_in_flight_per_endpoint = 8;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    // 8 in flight, 20 ms each: 400 a second. The burst takes 3 s, and from its second
    // second on, what is left of it is within the 800 deliveries of the horizon.
    transport.set_default(
        "https://a.example/hook",
        Answer::Slow(Duration::from_millis(20)),
    );
    burst(&handle, EVENTS).await;
    until("every delivery", || delivered(&ledger, "a") == EVENTS).await;
    // No delivery took the way through the ledger: each was recorded once, as it ended.
    assert!(ledger.deliveries().iter().all(|d| d.record.first_write));
    // Nor was the ledger read: it held nothing pending of this webhook as it started.
    assert_eq!(ledger.sweeps(), 0);
    each_sent_once(&ledger, &transport, "a", EVENTS);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// Two equally slow receivers, `a` and `b` (4 in flight, 200 ms each: 20 a second, 40
/// within the horizon), subscribed to `x`, with a window of 100 events; `others` are
/// subscribed to `y` and answer at once.
async fn busy_pair(others: &[&str]) -> (Engine, ScriptedTransport, MemoryLedger) {
    let mut config = config();
    config.max_in_flight_per_endpoint = 4;
    config.attempt_timeout = Duration::from_secs(5);
    config.max_events_in_flight = 100;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    for name in others {
        handle.upsert_webhook(webhook(name, &["y"])).unwrap();
    }
    for name in ["a", "b"] {
        handle.upsert_webhook(webhook(name, &["x"])).unwrap();
        transport.set_default(
            &format!("https://{name}.example/hook"),
            Answer::Slow(Duration::from_millis(200)),
        );
    }
    settle_webhooks(&handle).await;
    (engine, transport, ledger)
}

/// `a` and `b` get all `events` deliveries of the burst, each recorded once, as its attempt
/// ended, and the ledger is never read. It waits for every delivery, or only until one was
/// recorded ahead of its attempt (`pending`: their receivers answer 2xx), so that the check
/// fails at once rather than after a read back, which on paused time never comes (spilled
/// deliveries fall due on the wall clock).
async fn held_in_memory(ledger: &MemoryLedger, transport: &ScriptedTransport, events: usize) {
    until("every delivery, or one recorded ahead", || {
        let all = delivered(ledger, "a") == events && delivered(ledger, "b") == events;
        all || ledger
            .deliveries()
            .iter()
            .any(|d| d.record.status == DeliveryStatus::Pending)
    })
    .await;
    assert!(ledger.deliveries().iter().all(|d| d.record.first_write));
    assert_eq!(ledger.sweeps(), 0);
    each_sent_once(ledger, transport, "a", events);
    each_sent_once(ledger, transport, "b", events);
}

/// Two equally slow receivers subscribed to a burst three times the feed window: each is
/// busy with the whole window all along, so reading on would give no endpoint anything it
/// could send sooner. The burst stays in memory and nothing goes through the ledger ahead
/// of its attempt. On paused time.
#[tokio::test(start_paused = true)]
async fn endpoints_all_busy_with_a_burst_larger_than_the_window_hold_it_in_memory() {
    const EVENTS: usize = 300;
    let (engine, transport, ledger) = busy_pair(&[]).await;

    burst(&engine.handle(), EVENTS).await;
    held_in_memory(&ledger, &transport, EVENTS).await;
    until("the checkpoint at the last event", || {
        checkpoint_at(&ledger, EVENTS - 1)
    })
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// The same burst beside a bystander: an endpoint with nothing to do that the feed has
/// brought nothing for longer than [`HOLD_FEED_FOR`] (it subscribes to events that do not
/// come). Holding costs it nothing it was getting: the burst still stays in memory.
#[tokio::test(start_paused = true)]
async fn a_bystander_that_has_had_no_event_lately_does_not_send_a_burst_through_the_ledger() {
    const EVENTS: usize = 300;
    let (engine, transport, ledger) = busy_pair(&["bystander"]).await;
    let handle = engine.handle();
    // Its last event was long ago.
    feed_one(&handle, &ledger, "bystander").await;
    tokio::time::sleep(HOLD_FEED_FOR + Duration::from_secs(1)).await;

    burst(&handle, EVENTS).await;
    held_in_memory(&ledger, &transport, EVENTS).await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// A slow receiver (4 in flight, 1 s each) beside a fast one, with the window nearly full
/// while the store takes no write: the fast endpoint's records pile up in the ledger writer
/// and it has nothing left to send. Recording the slow one's backlog ahead would free the
/// window no sooner (its records would wait behind the others), so it keeps it. On paused
/// time.
#[tokio::test(start_paused = true)]
async fn while_the_ledger_writer_trails_far_behind_no_backlog_is_recorded_ahead() {
    const EVENTS: usize = 90;
    let mut config = config();
    config.max_in_flight_per_endpoint = 4;
    config.attempt_timeout = Duration::from_secs(5);
    // 90 of the window's 100 events: nearly full. Ten batches of 2 records: far behind.
    config.max_events_in_flight = 100;
    config.ledger_batch_max = 2;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("slow", &["*"])).unwrap();
    handle.upsert_webhook(webhook("fast", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    transport.set_default(
        "https://slow.example/hook",
        Answer::Slow(Duration::from_secs(1)),
    );
    let gate = ledger.hold_writes();

    burst(&handle, EVENTS).await;
    until("the fast endpoint has sent every event", || {
        transport.sent_to("https://fast.example/hook") == EVENTS
    })
    .await;
    // Well past the slow endpoint's horizon (8 deliveries): it keeps its whole backlog.
    quiet_for(HORIZON * 2).await;
    let kept = held(&handle, "slow").await;
    assert!(kept >= EVENTS - 20, "the slow endpoint holds only {kept}");

    gate.add_permits(1_000_000);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// On real time: the lease clock reads the wall clock.
#[tokio::test]
async fn an_endpoint_held_back_by_a_lapsed_lease_is_not_judged_slow() {
    const EVENTS: usize = 200;
    let mut config = config();
    config.max_in_flight_per_endpoint = 4;
    // The burst leaves 20 of the window's 220 events free: it is nearly full.
    config.max_events_in_flight = EVENTS + 20;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("a", &["x"])).unwrap();
    // One that could take more work: holding the window would cost it.
    handle.upsert_webhook(webhook("idle", &["y"])).unwrap();
    settle_webhooks(&handle).await;
    feed_one(&handle, &ledger, "idle").await;
    // The store is too busy to renew the leases: no attempt may start.
    let lease = handle.lease_clock();
    lease.hold_until(std::time::Instant::now());
    burst(&handle, EVENTS).await;
    // Longer than the horizon, with the whole burst waiting and nothing sent.
    tokio::time::sleep(HORIZON + Duration::from_secs(1)).await;
    assert_eq!(transport.sent_to("https://a.example/hook"), 0);
    assert_eq!(held(&handle, "a").await, EVENTS);

    lease.hold_until(std::time::Instant::now() + Duration::from_secs(3600));
    until("every delivery", || delivered(&ledger, "a") == EVENTS).await;
    // Nothing was recorded ahead and read back: each delivery was recorded once, as it ended.
    assert!(ledger.deliveries().iter().all(|d| d.record.first_write));
    assert_eq!(ledger.sweeps(), 0);
    each_sent_once(&ledger, &transport, "a", EVENTS);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// On real time: its retries are spilled due later on the wall clock.
#[tokio::test]
async fn a_failing_endpoint_holds_no_more_than_its_attempts_in_flight() {
    const EVENTS: usize = 200;
    let mut config = config();
    config.max_in_flight_per_endpoint = 4;
    config.retry.max_attempts = 1_000;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("down", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    transport.set_default("https://down.example/hook", Answer::Status(503));

    burst(&handle, EVENTS).await;
    until("every delivery recorded", || {
        ledger.deliveries().len() == EVENTS
    })
    .await;
    // Once failing, it keeps its probes' worth and spills the rest.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while held(&handle, "down").await > 4 {
        assert!(tokio::time::Instant::now() < deadline, "still holding more");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (stop, sampler) = watch_held(&handle, "down");
    quiet_for(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let most = sampler.await.unwrap();
    assert!(most <= 4, "the failing endpoint held {most} deliveries");

    transport.set_default("https://down.example/hook", Answer::Status(200));
    until("every delivery once healed", || {
        delivered(&ledger, "down") == EVENTS
    })
    .await;
    quiet_for(Duration::from_millis(200)).await;
    let twice: Vec<_> = successes(&ledger, "down")
        .into_iter()
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}
