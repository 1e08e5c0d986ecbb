//! A chunked body over the limit is cut off with 413 on every route: herald counts as it
//! reads, whatever the client is still sending.

use herald::api::MAX_BODY_BYTES;
use serde_json::Value;

use super::{assert_healthy, path_for, routes, setup, upload, Framing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_over_the_limit_are_cut_off_with_413_on_every_route() {
    let (daemon, api, ids) = setup().await;
    for (method, pattern) in routes() {
        let path = path_for(pattern, &ids);
        // A batch of events may be larger than one request (16 MiB).
        let limit = if pattern == "/v1/events/batch" {
            herald::api::events_batch::MAX_BODY_BYTES
        } else {
            MAX_BODY_BYTES
        };
        let body = vec![b'['; limit + 3 * MAX_BODY_BYTES];
        let (status, body) = upload(daemon.listen, method, &path, &body, Framing::Chunked).await;
        let what = format!("{method} {path} with a chunked body over its {limit}-byte limit");
        assert_eq!(status, 413, "{what}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{what}: {body}"
        );
    }
    assert_healthy(&api).await;
}
