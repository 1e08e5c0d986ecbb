//! The limits of a webhook, in one place: the API, `herald apply` and the store all judge
//! a webhook by these numbers (see [`super::validate`]).

use std::ops::RangeInclusive;
use std::time::Duration;

/// What header values read as in every answer of the API.
pub const REDACTED: &str = "********";
/// Most custom headers per webhook.
pub const MAX_HEADERS: usize = 50;
/// Longest header value, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 8192;
/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest URL, in bytes.
pub const MAX_URL_BYTES: usize = 4096;
/// The accepted range of `rate_limit_per_second`.
pub const RATE_LIMIT_RANGE: RangeInclusive<i64> = 1..=10_000;
/// Headers herald sets on every delivery itself: a client may not set them in a webhook's
/// `headers`, and the transport drops them from a document written by hand.
pub const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "user-agent",
];
/// Connection-level headers whose values hyper decides on the wire. A webhook may name them
/// (the API has always accepted them), but the transport never sends them from a webhook's
/// `headers`: a value that disagrees with the connection breaks the request.
pub const CONNECTION_HEADERS: &[&str] =
    &["keep-alive", "proxy-connection", "te", "trailer", "upgrade"];
/// How long a rotated-out secret keeps signing, so receivers can switch without a gap.
pub const PREVIOUS_SECRET_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Most rotated-out secrets kept at once (rotating in a loop must not grow the document).
pub const MAX_PREVIOUS_SECRETS: usize = 10;

/// Whether herald sends `name` (lowercase, as `HeaderName` spells it) itself rather than
/// from a webhook's `headers`.
pub fn is_managed_header(name: &str) -> bool {
    RESERVED_HEADERS.contains(&name) || CONNECTION_HEADERS.contains(&name)
}
