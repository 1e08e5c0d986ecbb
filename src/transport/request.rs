//! The signed `POST` of one attempt.

use bytes::Bytes;
use herald_actors::{DeliveryError, OutboundRequest};
use http_body_util::Full;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use tracing::debug;

use crate::webhook::limits::is_managed_header;

/// Sent as `user-agent` on every attempt.
pub(super) const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

/// The signed `POST`: the webhook's own headers first, then herald's, which win.
pub(super) fn build_request(
    uri: Uri,
    outbound: OutboundRequest,
) -> Result<Request<Full<Bytes>>, DeliveryError> {
    let mut request = Request::new(Full::new(outbound.body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    // The webhook's own headers and the five (six with a trace context) herald sets below.
    headers.reserve(outbound.headers.len() + 6);

    for (name, value) in outbound.headers.iter() {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| DeliveryError::InvalidUrl(format!("invalid header name {name:?}")))?;
        // Herald's own headers, which the API refuses on write, may still come from a
        // document written by hand.
        if is_managed_header(header_name.as_str()) {
            debug!(header = %header_name, "webhook header ignored: herald sets it itself");
            continue;
        }
        // The value may be a secret: it is never echoed, and HTTP/2 must not index it.
        let mut header_value = HeaderValue::from_str(value)
            .map_err(|_| DeliveryError::InvalidUrl(format!("invalid value for header {name:?}")))?;
        header_value.set_sensitive(true);
        headers.append(header_name, header_value);
    }

    let mut msg_id = HeaderValue::from_str(&outbound.msg_id).map_err(|_| {
        DeliveryError::InvalidUrl("event id is not a valid header value".to_owned())
    })?;
    let mut signature =
        HeaderValue::from_maybe_shared(Bytes::from(outbound.signature)).map_err(|_| {
            DeliveryError::InvalidUrl("signature is not a valid header value".to_owned())
        })?;
    // Both differ on every request: HTTP/2 indexing them would only evict the entries that
    // do repeat (the webhook's own headers are never indexed, being possibly secret) from
    // the HPACK tables at both ends.
    msg_id.set_sensitive(true);
    signature.set_sensitive(true);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    headers.insert(HeaderName::from_static("webhook-id"), msg_id);
    headers.insert(
        HeaderName::from_static("webhook-timestamp"),
        HeaderValue::from(outbound.timestamp),
    );
    headers.insert(HeaderName::from_static("webhook-signature"), signature);
    if let Some(trace) = outbound.trace {
        // Unsigned, like every header but the three above: a receiver's trace joins the
        // attempt's (or the producer's). Different on every attempt, so never indexed.
        let mut value =
            HeaderValue::from_maybe_shared(Bytes::from(trace.to_string())).map_err(|_| {
                DeliveryError::InvalidUrl("traceparent is not a valid header value".to_owned())
            })?;
        value.set_sensitive(true);
        headers.insert(HeaderName::from_static("traceparent"), value);
    }
    Ok(request)
}
