//! Attempts that reach a receiver: what it sees, what comes back, and how connections are shared.

use std::time::{Duration, Instant};

use herald_actors::{AttemptResponse, Transport};

use super::*;
use crate::transport::parse_retry_after;
use crate::transport::request::USER_AGENT;

#[tokio::test]
async fn an_allowed_loopback_receiver_gets_the_signed_post_and_its_retry_after_comes_back() {
    let cert = self_signed();
    let receiver = start_receiver(&cert).await;
    let ca = ca_file(&cert);
    let transport = transport(&ca, "127.0.0.0/8");

    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{}/hooks/herald?x=1", receiver.port);
        let response = transport.send(outbound(&url)).await;
        assert_eq!(
            response,
            Ok(AttemptResponse {
                status: 503,
                retry_after: Some(Duration::from_secs(7)),
            }),
            "{url}"
        );
    }

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    for seen in requests.iter() {
        let header = |name: &str| seen.headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(seen.version, Version::HTTP_2, "ALPN negotiates HTTP/2");
        assert_eq!(seen.body, Bytes::from_static(BODY));
        assert_eq!(header("content-type"), Some("application/json"));
        assert_eq!(header("webhook-id"), Some("evt_1"));
        assert_eq!(header("webhook-timestamp"), Some("1700000000"));
        assert_eq!(
            header("webhook-signature"),
            Some("v1,c2lnbmF0dXJl v1,b2xkZXI=")
        );
        assert_eq!(header("user-agent"), Some(USER_AGENT));
        assert_eq!(header("x-mixpeek-secret"), Some("s3cret-value"));
        assert_eq!(header("x-tenant"), Some("acme"));
    }
}

#[tokio::test]
async fn attempts_to_one_host_share_a_pooled_connection() {
    let cert = self_signed();
    let receiver = start_receiver(&cert).await;
    let ca = ca_file(&cert);
    let transport = transport(&ca, "127.0.0.1");
    let url = format!("https://localhost:{}/", receiver.port);

    for _ in 0..3 {
        let response = transport.send(outbound(&url)).await.expect("response");
        assert_eq!(response.status, 503);
    }
    assert_eq!(receiver.requests().len(), 3);
    assert_eq!(receiver.connections(), 1);
}

#[tokio::test]
async fn a_burst_to_an_origin_not_yet_connected_dials_once_over_http2() {
    let cert = self_signed();
    let receiver = start_receiver(&cert).await;
    let ca = ca_file(&cert);
    let transport = transport(&ca, "127.0.0.1");
    // Fan-out: many webhooks on one host, all sent at once.
    let sends = (0..50).map(|i| {
        transport.send(outbound(&format!(
            "https://localhost:{}/hook{i}",
            receiver.port
        )))
    });
    for response in futures::future::join_all(sends).await {
        assert_eq!(response.expect("response").status, 503);
    }
    assert_eq!(receiver.requests().len(), 50);
    assert!(receiver
        .requests()
        .iter()
        .all(|r| r.version == Version::HTTP_2));
    assert_eq!(
        receiver.connections(),
        1,
        "one handshake, not one per attempt"
    );
}

#[tokio::test]
async fn a_first_attempt_that_never_answers_does_not_hold_up_its_origin() {
    let cert = self_signed();
    let receiver = start_receiver(&cert).await;
    let ca = ca_file(&cert);
    let transport = transport(&ca, "127.0.0.1");
    let base = format!("https://localhost:{}", receiver.port);
    let hanging = tokio::spawn(transport.send(outbound(&format!("{base}/hang"))));
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.requests().is_empty() {
        assert!(Instant::now() < deadline, "the first attempt never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // It dialled; its answer never comes, and its neighbour is not held up.
    let other = tokio::time::timeout(
        Duration::from_secs(10),
        transport.send(outbound(&format!("{base}/ok"))),
    )
    .await
    .expect("the second attempt waited for the first one's answer");
    assert_eq!(other.expect("response").status, 503);
    assert_eq!(receiver.connections(), 1);
    assert!(!hanging.is_finished());
    hanging.abort();
}

#[test]
fn retry_after_accepts_seconds_and_http_dates() {
    let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
    let cases = [
        ("7", Some(Duration::from_secs(7))),
        (" 120 ", Some(Duration::from_secs(120))),
        ("0", Some(Duration::ZERO)),
        (
            "99999999999999999999999",
            Some(Duration::from_secs(u64::MAX)),
        ),
        (
            "Wed, 21 Oct 2015 07:29:30 GMT",
            Some(Duration::from_secs(90)),
        ),
        ("Wed, 21 Oct 2015 07:28:00 GMT", Some(Duration::ZERO)),
        ("Wed, 21 Oct 2015 07:00:00 GMT", Some(Duration::ZERO)),
        (
            "Wednesday, 21-Oct-15 07:29:00 GMT",
            Some(Duration::from_secs(60)),
        ),
        ("Wed Oct 21 07:28:10 2015", Some(Duration::from_secs(10))),
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:29:30", None),
    ];
    for (value, expected) in cases {
        assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
    }
}
