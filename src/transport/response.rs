//! What the transport reads of an answer: its `Retry-After`, and just enough of its body to
//! give the connection back to the pool.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

/// At most this much of a response body is read (and discarded) so that the connection can
/// go back to the pool; a larger body is dropped, which closes the connection instead.
const DRAIN_LIMIT_BYTES: usize = 64 * 1024;

/// How long draining a response body may take once the status is known. The attempt's
/// outcome is decided by then; a receiver that stalls its body must not turn a known
/// status into a timeout.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Reads and discards a small response body so the connection can be reused; a large or
/// stalled one is simply dropped (closing the connection or resetting the stream).
pub(super) async fn drain(mut body: Incoming) {
    if body.is_end_stream() {
        // Nothing to read (an HTTP/2 answer that ended with its headers).
        return;
    }
    let declared_too_big = body
        .size_hint()
        .upper()
        .is_some_and(|upper| upper > DRAIN_LIMIT_BYTES as u64);
    if declared_too_big {
        return;
    }
    let read = async {
        let mut seen = 0usize;
        while seen <= DRAIN_LIMIT_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) | None => break,
            }
        }
    };
    // Whatever happens here, the status is already known: a timeout just drops the body.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, read).await;
}

/// Parses a `Retry-After` value: delta-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), as a wait from `now`. A date in the past means no
/// wait; a number too large to represent saturates (the engine clamps it anyway).
/// Anything else is `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}
