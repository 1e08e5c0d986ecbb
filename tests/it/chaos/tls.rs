//! Expired and wrong-host certificates are TLS failures, and no request is ever sent over
//! them.

use super::{assert_every_attempt_errored, delivery_id, scene};
use crate::fixtures::*;
use crate::support::chaos_receiver::{Behaviour, ChaosReceiver};

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
