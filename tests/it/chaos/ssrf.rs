//! SSRF: every spelling of a forbidden address (loopback, unspecified, link-local, CGNAT,
//! multicast; decimal, hex, octal, short, IPv6-mapped, `localhost` names) is refused,
//! saying why, without dialling.

use super::delivery_id;
use crate::daemon::{test_config, InProcess};
use crate::fixtures::*;
use crate::support::chaos_receiver::{chaos_ca_bundle, Behaviour, ChaosReceiver};

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
