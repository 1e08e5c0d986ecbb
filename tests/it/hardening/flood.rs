//! 2,000 connections that sit idle or trickle their bytes, against a daemon capped at 300:
//! a normal client keeps getting answers, a body that does not arrive in time gets 408, an
//! inbound provider request to no connection gets 404 and a body over the inbound limit
//! 413, neither read — and the daemon is fine after.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{exchange, request};
use crate::daemon::{test_config, InProcess};
use crate::fixtures::database;

const KEY: &str = "flood-key";
const ATTACKERS: usize = 2_000;

/// Raises this process's descriptor limit to its hard limit: the attackers, the daemon's
/// side of their connections and everything else must fit.
fn raise_descriptor_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut now);
        assert!(
            now.rlim_cur >= 3 * ATTACKERS as libc::rlim_t,
            "this story needs about {} descriptors; the limit is {} (ulimit -n)",
            3 * ATTACKERS,
            now.rlim_cur
        );
    }
}

/// What one attacker does with its connection.
#[derive(Clone, Copy)]
enum Attack {
    /// Connects and sends nothing.
    Idle,
    /// Sends the start of a request head, then a byte at a time.
    SlowHead,
    /// Sends a full head announcing a body, then the body a byte at a time.
    SlowBody,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_idle_or_trickling_connections_do_not_starve_a_normal_client() {
    raise_descriptor_limit();
    let (uri, name, _db) = database("flood").await;
    let mut config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    config.api_key = Some(KEY.into());
    config.max_connections = 300;
    config.request_timeout_ms = 2_000;
    // Long enough that only the cap (which closes idle connections for newcomers) and the
    // body timeout are what keep the daemon available.
    config.header_read_timeout_ms = 120_000;
    config.idle_timeout_ms = 120_000;
    let daemon = InProcess::start(config).await;
    let addr = daemon.listen;
    let auth = format!("authorization: Bearer {KEY}");

    // A body that stops arriving is cut off with 408, in the contract's error shape.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        format!("POST /v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\n{auth}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"event").as_bytes(),
    )
    .await
    .unwrap();
    let answer = super::exchange_on(&mut slow, Duration::from_secs(30)).await;
    let (status, body) = answer.expect("a 408 for a body that never arrives");
    assert_eq!(status, 408, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    drop(slow);

    // An inbound provider route answers an unknown connection before reading the body,
    // and refuses a body over its smaller limit (256 KiB) before reading it all.
    let big = "x".repeat(300 * 1024);
    let inbound = |connection: &str| {
        request(
            "POST",
            &format!("/v1/webhooks/mux/{connection}"),
            &["host: 127.0.0.1", "content-type: application/json"],
            &big,
        )
    };
    let (status, _) = exchange(
        addr,
        &inbound("conn_0000000000000000"),
        Duration::from_secs(30),
    )
    .await
    .expect("an answer for an unknown connection");
    assert_eq!(status, 404);
    let (status, body) = exchange(
        addr,
        &request(
            "POST",
            "/v1/connections",
            &["host: 127.0.0.1", &auth, "content-type: application/json"],
            &json!({"provider": "mux", "bucket_id": "bkt_flood", "webhook_secret": "s"})
                .to_string(),
        ),
        Duration::from_secs(30),
    )
    .await
    .expect("a connection is created");
    assert_eq!(status, 201, "{body}");
    let connection: Value = serde_json::from_str(&body).unwrap();
    let connection = connection["connection_id"].as_str().unwrap();
    let (status, _) = exchange(addr, &inbound(connection), Duration::from_secs(30))
        .await
        .expect("an answer to an oversized inbound body");
    assert_eq!(status, 413);

    // The flood: 2,000 connections, a third each idle, trickling a head, trickling a body.
    let mut attackers: Vec<TcpStream> = Vec::with_capacity(ATTACKERS);
    for i in 0..ATTACKERS {
        let attack = [Attack::Idle, Attack::SlowHead, Attack::SlowBody][i % 3];
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            continue;
        };
        let opening = match attack {
            Attack::Idle => String::new(),
            Attack::SlowHead => "GET /v1/webhooks HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ".into(),
            Attack::SlowBody => format!(
                "POST /v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\n{auth}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{"
            ),
        };
        if stream.write_all(opening.as_bytes()).await.is_ok() {
            attackers.push(stream);
        }
    }
    let trickle = tokio::spawn(async move {
        loop {
            let mut alive = Vec::with_capacity(attackers.len());
            for mut stream in attackers.drain(..) {
                if stream.write_all(b"a").await.is_ok() {
                    alive.push(stream);
                }
            }
            attackers = alive;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    // A normal client, each request on a fresh connection: every one is answered.
    for i in 0..10 {
        let list = request("GET", "/v1/webhooks", &["host: 127.0.0.1", &auth], "");
        let publish = request(
            "POST",
            "/v1/events",
            &["host: 127.0.0.1", &auth, "content-type: application/json"],
            &json!({"event_type": "object.created", "event_id": format!("evt_flood_{i}"), "data": {"i": i}}).to_string(),
        );
        for (what, raw, expected) in [("list", &list, 200), ("publish", &publish, 202)] {
            let until = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                match exchange(addr, raw, Duration::from_secs(10)).await {
                    Some((status, body)) => {
                        assert_eq!(status, expected, "{what} #{i}: {body}");
                        break;
                    }
                    // Closed at the cap while every slot was busy: a client retries.
                    None => assert!(
                        tokio::time::Instant::now() < until,
                        "{what} #{i}: not answered within 60 s during the flood"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    trickle.abort();
    let _ = trickle.await;
    let health = exchange(
        addr,
        &request("GET", "/healthz", &["host: 127.0.0.1"], ""),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(health.map(|(s, _)| s), Some(200));
    daemon.stop().await.unwrap();
}
