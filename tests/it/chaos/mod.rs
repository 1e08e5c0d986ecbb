//! Receiver chaos and SSRF spellings: what herald does when the other end misbehaves, or
//! when a webhook URL points somewhere it must never go.
//!
//! Each chaos story runs herald in-process with one healthy receiver next to the
//! misbehaving ones, and checks three things: the attempt-log entry (status code or error
//! text), the retry decision (pending with a `next_attempt_at`, or `failed` once attempts
//! run out), and that the healthy endpoint was unaffected meanwhile: every one of its
//! deliveries succeeded at its first attempt and, where the neighbour is slow, before the
//! neighbour's first attempt ended (times from herald's own ledger, never a fixed bound).

use std::time::{Duration, Instant};

use herald::config::Config;
use mongodb::bson::Document;
use mongodb::Database;

use crate::daemon::{test_config, InProcess};
use crate::fixtures::*;
use crate::support::chaos_receiver::{chaos_ca_bundle, Behaviour, ChaosReceiver};
use crate::support::{Receiver, Response};

const HEALTHY: &str = "wh_00000000000ca000";
const MIB: u64 = 1024 * 1024;

/// herald with a healthy receiver and the misbehaving endpoints of one story.
struct Scene {
    db: Database,
    daemon: InProcess,
    healthy: Receiver,
}

/// Starts herald with the healthy webhook plus one webhook per `(id, url)` in `chaos`,
/// every one subscribed to all event types, trusting both test CAs.
async fn scene(prefix: &str, chaos: &[(&str, &str)], tune: impl FnOnce(&mut Config)) -> Scene {
    let (uri, name, db) = database(prefix).await;
    let healthy = Receiver::start().await;
    insert_webhook(&db, webhook(HEALTHY, &healthy.url, &["*"])).await;
    for (id, url) in chaos {
        insert_webhook(&db, webhook(id, url, &["*"])).await;
    }
    let mut config = test_config(&uri, &name, chaos_ca_bundle(&healthy.ca_pem_path));
    tune(&mut config);
    let daemon = InProcess::start(config).await;
    Scene {
        db,
        daemon,
        healthy,
    }
}

impl Scene {
    /// Inserts events `evt_<prefix>_0..n` in one batch.
    async fn publish(&self, prefix: &str, n: usize) {
        let events: Vec<Document> = (0..n)
            .map(|i| event(&format!("evt_{prefix}_{i}"), "batch.completed"))
            .collect();
        self.db
            .collection::<Document>("events")
            .insert_many(events)
            .await
            .unwrap();
    }

    /// The healthy endpoint got `n` deliveries in all, each at its first attempt: the chaos
    /// next door cost it no failure and no retry.
    async fn healthy_unaffected(&self, n: usize) {
        self.healthy.wait_for(n, Duration::from_secs(30)).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let done = deliveries(
                &self.db,
                mongodb::bson::doc! {"webhook_id": HEALTHY, "status": "succeeded"},
            )
            .await;
            if done.len() >= n {
                for d in &done {
                    assert_eq!(d.get_i64("attempts").unwrap(), 1, "{d}");
                }
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} healthy deliveries recorded succeeded",
                done.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    /// Waits until delivery `id` satisfies `done`, and returns it.
    async fn delivery_when(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&Document) -> bool,
    ) -> Document {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let found = delivery(&self.db, id).await;
            if let Some(d) = found.as_ref().filter(|d| done(d)) {
                return d.clone();
            }
            assert!(
                Instant::now() < deadline,
                "delivery {id} never became {what}; last seen: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The attempt log of a delivery document.
fn attempt_log(d: &Document) -> Vec<Document> {
    d.get_array("attempt_log")
        .unwrap()
        .iter()
        .map(|a| a.as_document().unwrap().clone())
        .collect()
}

/// Every attempt-log entry carries an error (no status code) containing each of `needles`
/// (case-insensitively).
fn assert_every_attempt_errored(d: &Document, needles: &[&str]) {
    let log = attempt_log(d);
    assert!(!log.is_empty(), "no attempts logged: {d}");
    for entry in &log {
        assert!(entry.get("status_code").is_none(), "{entry}");
        let error = entry.get_str("error").unwrap_or_default().to_lowercase();
        for needle in needles {
            assert!(
                error.contains(&needle.to_lowercase()),
                "attempt error {error:?} should mention {needle:?}"
            );
        }
    }
}

/// When an attempt ended, in ms since the epoch by herald's clock (its `at` plus its
/// `duration_ms`).
fn attempt_end(attempt: &Document) -> i64 {
    attempt.get_datetime("at").unwrap().timestamp_millis() + attempt.get_i64("duration_ms").unwrap()
}

fn delivery_id(event: &str, webhook: &str) -> String {
    format!("{event}:{webhook}")
}

/// A receiver that reads the request, then resets the connection after sending `partial`.
async fn a_reset_mid_response_is_an_io_failure_retried_until_attempts_run_out(
    prefix: &str,
    partial: &'static [u8],
) {
    const CHAOS: &str = "wh_00000000000ca001";
    let chaos = ChaosReceiver::start(Behaviour::ResetMidResponse { partial }).await;
    let scene = scene(prefix, &[(CHAOS, &chaos.url)], |c| c.retry_max_attempts = 3).await;

    scene.publish(prefix, 10).await;
    scene.healthy_unaffected(10).await;

    for i in 0..10 {
        let id = delivery_id(&format!("evt_{prefix}_{i}"), CHAOS);
        let d = scene
            .delivery_when(&id, "failed", |d| d.get_str("status") == Ok("failed"))
            .await;
        assert_eq!(d.get_i64("attempts").unwrap(), 3, "{d}");
        assert_eq!(attempt_log(&d).len(), 3);
        assert_every_attempt_errored(&d, &["io error"]);
        assert!(d
            .get("last_status_code")
            .is_none_or(|c| c.as_null().is_some()));
        assert!(d.get_str("last_error").unwrap().starts_with("io error"));
    }
    // Every attempt really reached the receiver: the failures are the resets, not herald.
    assert!(chaos.requests() >= 30, "{} requests", chaos.requests());
    scene.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_connection_reset_after_a_partial_status_line_is_retried_then_failed() {
    a_reset_mid_response_is_an_io_failure_retried_until_attempts_run_out("rstpart", b"HTTP/1.1 2")
        .await;
}

#[tokio::test]
async fn a_connection_reset_before_any_response_byte_is_retried_then_failed() {
    a_reset_mid_response_is_an_io_failure_retried_until_attempts_run_out("rstnone", b"").await;
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

#[tokio::test]
async fn redirects_are_never_followed_and_count_as_failures() {
    let target = Receiver::start().await;
    let mut redirectors = Vec::new();
    for status in [301u16, 302, 307, 308] {
        let r = Receiver::start().await;
        r.respond_with_response(Response::status(status).header("location", target.url.clone()));
        redirectors.push((status, format!("wh_00000000000ca3{status}"), r));
    }
    let chaos: Vec<(&str, &str)> = redirectors
        .iter()
        .map(|(_, id, r)| (id.as_str(), r.url.as_str()))
        .collect();
    let scene = scene("redirect", &chaos, |c| c.retry_max_attempts = 2).await;

    scene.publish("redir", 5).await;
    scene.healthy_unaffected(5).await;

    for (status, id, receiver) in &redirectors {
        for i in 0..5 {
            let d = scene
                .delivery_when(&delivery_id(&format!("evt_redir_{i}"), id), "failed", |d| {
                    d.get_str("status") == Ok("failed")
                })
                .await;
            assert_eq!(d.get_i64("attempts").unwrap(), 2);
            assert_eq!(d.get_i32("last_status_code").unwrap(), i32::from(*status));
            let codes: Vec<i32> = attempt_log(&d)
                .iter()
                .map(|a| a.get_i32("status_code").unwrap())
                .collect();
            assert_eq!(codes, [i32::from(*status); 2]);
        }
        assert_eq!(receiver.count(), 10, "{status}: every attempt asked once");
    }
    // Give a (wrongly) followed redirect time to arrive before declaring it absent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        target.count(),
        0,
        "a redirect was followed:\n{}",
        target.describe(&target.requests())
    );
    scene.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_huge_response_body_is_not_read_and_the_attempt_succeeds_promptly() {
    const SIZED: &str = "wh_00000000000ca021";
    const CHUNKED: &str = "wh_00000000000ca022";
    let sized = ChaosReceiver::start(Behaviour::HugeBody {
        len: 50 * MIB,
        chunked: false,
    })
    .await;
    let chunked = ChaosReceiver::start(Behaviour::HugeBody {
        len: 50 * MIB,
        chunked: true,
    })
    .await;
    let scene = scene(
        "hugebody",
        &[(SIZED, &sized.url), (CHUNKED, &chunked.url)],
        |_| {},
    )
    .await;
    scene.publish("huge", 5).await;
    scene.healthy_unaffected(5).await;
    for webhook in [SIZED, CHUNKED] {
        for i in 0..5 {
            let id = delivery_id(&format!("evt_huge_{i}"), webhook);
            let d = wait_for_status(&scene.db, &id, "succeeded").await;
            assert_eq!(d.get_i64("attempts").unwrap(), 1, "{d}");
            let log = attempt_log(&d);
            // Succeeded, not timed out: the attempt ended within its attempt timeout
            // without waiting for the body.
            assert_eq!(log[0].get_i32("status_code").unwrap(), 200);
        }
    }

    // herald hung up long before 50 MiB: no connection ever got its whole body out, and
    // what each got out is what socket buffers take without herald reading (herald reads
    // at most 64 KiB of a body), far from the body: herald never held one.
    for (what, receiver) in [("content-length", &sized), ("chunked", &chunked)] {
        assert!(
            !receiver.body_completed(),
            "{what}: a whole 50 MiB body was read"
        );
        let requests = receiver.requests() as u64;
        let written = receiver.body_bytes_written();
        eprintln!(
            "{what}: {requests} requests, {:.1} MiB of body written before herald hung up",
            written as f64 / MIB as f64
        );
        assert!(
            written < requests * 16 * MIB,
            "{what}: {written} bytes of body went out over {requests} requests"
        );
    }
    scene.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn expired_and_wrong_host_certificates_are_tls_failures_and_nothing_is_sent() {
    const EXPIRED: &str = "wh_00000000000ca031";
    const WRONG_HOST: &str = "wh_00000000000ca032";
    let ca = crate::support::chaos_receiver::chaos_ca();
    let expired = ChaosReceiver::start_with_tls(
        Behaviour::Ok,
        ca.server_config(&["localhost", "127.0.0.1"], true, &[b"http/1.1"]),
    )
    .await;
    let wrong_host = ChaosReceiver::start_with_tls(
        Behaviour::Ok,
        ca.server_config(&["wrong.example.com"], false, &[b"http/1.1"]),
    )
    .await;
    let scene = scene(
        "badcert",
        &[(EXPIRED, &expired.url), (WRONG_HOST, &wrong_host.url)],
        |c| c.retry_max_attempts = 2,
    )
    .await;

    scene.publish("cert", 5).await;
    scene.healthy_unaffected(5).await;

    for (webhook, why) in [(EXPIRED, "expired"), (WRONG_HOST, "not valid for name")] {
        for i in 0..5 {
            let id = delivery_id(&format!("evt_cert_{i}"), webhook);
            let d = wait_for_status(&scene.db, &id, "failed").await;
            assert_eq!(d.get_i64("attempts").unwrap(), 2, "{d}");
            assert_every_attempt_errored(&d, &["tls error", why]);
        }
    }
    assert!(expired.connections() > 0 && wrong_host.connections() > 0);
    assert_eq!(
        expired.requests(),
        0,
        "a request went over an expired certificate"
    );
    assert_eq!(wrong_host.requests(), 0, "a request went to the wrong host");
    scene.daemon.stop().await.unwrap();
}

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

#[tokio::test]
async fn every_spelling_of_a_forbidden_address_is_refused_without_dialling() {
    // A live receiver on 127.0.0.1: any spelling that reached it would show as a connection.
    let target = ChaosReceiver::start(Behaviour::Ok).await;
    // (host, what the delivery's error must say)
    let cases: &[(&str, &str)] = &[
        ("127.0.0.1", "blocked: 127.0.0.1 is loopback"),
        (
            "2130706433",
            "blocked: 2130706433 is 127.0.0.1, which is loopback",
        ),
        (
            "0x7f.0.0.1",
            "blocked: 0x7f.0.0.1 is 127.0.0.1, which is loopback",
        ),
        (
            "0x7f000001",
            "blocked: 0x7f000001 is 127.0.0.1, which is loopback",
        ),
        (
            "017700000001",
            "blocked: 017700000001 is 127.0.0.1, which is loopback",
        ),
        (
            "0177.0.0.1",
            "blocked: 0177.0.0.1 is 127.0.0.1, which is loopback",
        ),
        ("127.1", "blocked: 127.1 is 127.0.0.1, which is loopback"),
        (
            "[::ffff:127.0.0.1]",
            "blocked: ::ffff:127.0.0.1 is 127.0.0.1 in IPv6 form: loopback",
        ),
        (
            "[::ffff:7f00:1]",
            "blocked: ::ffff:127.0.0.1 is 127.0.0.1 in IPv6 form: loopback",
        ),
        ("[::1]", "blocked: ::1 is loopback"),
        (
            "localhost",
            "blocked: localhost resolves to 127.0.0.1, which is loopback",
        ),
        (
            "LOCALHOST",
            "blocked: LOCALHOST resolves to 127.0.0.1, which is loopback",
        ),
        (
            "localhost.",
            "blocked: localhost. resolves to 127.0.0.1, which is loopback",
        ),
        (
            "api.localhost",
            "blocked: api.localhost resolves to 127.0.0.1, which is loopback",
        ),
        ("0.0.0.0", "blocked: 0.0.0.0 is unspecified"),
        ("0", "blocked: 0 is 0.0.0.0, which is unspecified"),
        ("169.254.169.254", "blocked: 169.254.169.254 is link-local"),
        (
            "0xa9fea9fe",
            "blocked: 0xa9fea9fe is 169.254.169.254, which is link-local",
        ),
        ("100.64.0.1", "blocked: 100.64.0.1 is shared CGNAT"),
        ("224.0.0.1", "blocked: 224.0.0.1 is multicast"),
        ("[fe80::1]", "blocked: fe80::1 is link-local"),
    ];
    // hyper's URI parser refuses a percent-encoded host outright, so the daemon skips this
    // webhook document when it loads it: no delivery at all.
    const PERCENT: &str = "wh_00000000000cbfff";
    let (uri, name, db) = database("ssrf").await;
    let webhook_id = |i: usize| format!("wh_00000000000cb{i:03}");
    for (i, (host, _)) in cases.iter().enumerate() {
        insert_webhook(
            &db,
            webhook(&webhook_id(i), &target.url_with_host(host), &["*"]),
        )
        .await;
    }
    insert_webhook(
        &db,
        webhook(PERCENT, &target.url_with_host("%31%32%37.0.0.1"), &["*"]),
    )
    .await;
    let mut config = test_config(
        &uri,
        &name,
        chaos_ca_bundle(crate::support::test_ca_pem_path()),
    );
    config.allow_private_networks = Vec::new();
    config.retry_max_attempts = 1;
    let daemon = InProcess::start(config).await;

    insert_event(&db, "evt_ssrf_1", "batch.completed").await;
    let mut report = Vec::new();
    for (i, (host, expected)) in cases.iter().enumerate() {
        let d = wait_for_status(&db, &delivery_id("evt_ssrf_1", &webhook_id(i)), "failed").await;
        let error = d.get_str("last_error").unwrap().to_owned();
        report.push(format!("{host:>20} -> {error}"));
        if !error.starts_with(expected) {
            report.push(format!("    ^ expected {expected}"));
        }
        assert_eq!(d.get_i64("attempts").unwrap(), 1);
    }
    let report = report.join("\n");
    eprintln!("{report}");
    assert!(
        !report.contains("^ expected"),
        "refused for the wrong reason:\n{report}"
    );
    assert!(delivery(&db, &delivery_id("evt_ssrf_1", PERCENT))
        .await
        .is_none());
    assert_eq!(target.connections(), 0, "a forbidden address was dialled");
    daemon.stop().await.unwrap();
}
