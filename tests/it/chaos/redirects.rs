//! Redirects are never followed: each counts as a failure with its own status code.

use std::time::Duration;

use super::{attempt_log, delivery_id, scene};
use crate::support::{Receiver, Response};

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
