//! What an attempt sends, and what it refuses to send.

use herald_actors::{DeliveryError, Transport};
use hyper::{Method, Uri};

use super::*;
use crate::transport::request::build_request;

#[tokio::test]
async fn non_https_urls_are_refused_without_dialling() {
    let cert = self_signed();
    let receiver = start_receiver(&cert).await;
    let ca = ca_file(&cert);
    let transport = transport(&ca, "127.0.0.0/8");

    let plaintext = transport
        .send(outbound(&format!("http://127.0.0.1:{}/", receiver.port)))
        .await;
    match plaintext {
        Err(DeliveryError::InvalidUrl(message)) => {
            assert!(
                message.starts_with("plaintext URL refused: HTTPS is required"),
                "{message}"
            )
        }
        other => panic!("expected InvalidUrl, got {other:?}"),
    }

    for url in [
        "not a url",
        "/relative/path",
        "ftp://localhost/",
        "https:///nohost",
    ] {
        let result = transport.send(outbound(url)).await;
        assert!(
            matches!(result, Err(DeliveryError::InvalidUrl(_))),
            "{url}: {result:?}"
        );
    }
    assert_eq!(receiver.connections(), 0);
}

#[tokio::test]
async fn invalid_webhook_headers_fail_without_echoing_their_value() {
    let cert = self_signed();
    let ca = ca_file(&cert);
    let transport = transport(&ca, "127.0.0.0/8");
    let port = closed_port();
    let url = format!("https://127.0.0.1:{port}/");

    let mut bad_value = outbound(&url);
    bad_value.headers = vec![("X-Secret".to_owned(), "top\nsecret".to_owned())].into();
    let error = transport.send(bad_value).await.expect_err("invalid value");
    assert_eq!(
        error,
        DeliveryError::InvalidUrl("invalid value for header \"X-Secret\"".to_owned())
    );
    assert!(!error.to_string().contains("top"));

    let mut bad_name = outbound(&url);
    bad_name.headers = vec![("Bad Name".to_owned(), "v".to_owned())].into();
    let error = transport.send(bad_name).await.expect_err("invalid name");
    assert_eq!(
        error,
        DeliveryError::InvalidUrl("invalid header name \"Bad Name\"".to_owned())
    );
}

#[test]
fn herald_headers_win_over_the_webhooks_own() {
    let mut request = outbound("https://example.com/");
    request.headers = vec![
        ("Content-Type".to_owned(), "text/plain".to_owned()),
        ("webhook-signature".to_owned(), "forged".to_owned()),
        ("Content-Length".to_owned(), "1".to_owned()),
        ("X-Extra".to_owned(), "kept".to_owned()),
    ]
    .into();
    let uri: Uri = "https://example.com/".parse().expect("uri");
    let built = build_request(uri, request).expect("request");
    let headers = built.headers();
    assert_eq!(built.method(), Method::POST);
    assert_eq!(headers.get_all("content-type").iter().count(), 1);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["webhook-signature"], "v1,c2lnbmF0dXJl v1,b2xkZXI=");
    assert!(headers.get("content-length").is_none());
    assert_eq!(headers["x-extra"], "kept");
    assert!(headers["x-extra"].is_sensitive());
    // Unique per request: HTTP/2 must not spend HPACK table space on them.
    assert!(headers["webhook-id"].is_sensitive());
    assert!(headers["webhook-signature"].is_sensitive());
    // The same for every request of a second: indexed.
    assert!(!headers["webhook-timestamp"].is_sensitive());
}

#[test]
fn a_trace_context_is_sent_as_traceparent_and_replaces_the_webhooks_own() {
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let uri: Uri = "https://example.com/".parse().expect("uri");

    let mut request = outbound("https://example.com/");
    request.headers = vec![("traceparent".to_owned(), "forged".to_owned())].into();
    request.trace = Some(herald_actors::TraceParent::parse(traceparent).expect("valid"));
    let built = build_request(uri.clone(), request).expect("request");
    assert_eq!(built.headers().get_all("traceparent").iter().count(), 1);
    assert_eq!(built.headers()["traceparent"], traceparent);

    // Without one, no header is made up.
    let built = build_request(uri, outbound("https://example.com/")).expect("request");
    assert!(built.headers().get("traceparent").is_none());
}
