//! A receiver that resets the connection mid-response — after part of the status line, or
//! before any byte — is an I/O failure, retried until the attempts run out.

use super::{assert_every_attempt_errored, attempt_log, delivery_id, scene};
use crate::support::chaos_receiver::{Behaviour, ChaosReceiver};

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
