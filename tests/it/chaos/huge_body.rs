//! A huge response body (50 MiB, sized or chunked) is not read: the attempt succeeds
//! promptly and herald hangs up long before the body ends.

use super::{attempt_log, delivery_id, scene};
use crate::fixtures::*;
use crate::support::chaos_receiver::{Behaviour, ChaosReceiver};

const MIB: u64 = 1024 * 1024;

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
