//! What every request passes before its handler: the keyless API's defence against
//! browsers, and the bounded body read.
//!
//! **A keyless API browsers cannot drive.** Without `--api-key` the listener is on loopback
//! and the API is open to whoever can reach it — which includes every web page open in a
//! browser on the host: a page may send a "simple" cross-site request (a `POST` with a
//! `text/plain` or form body, no preflight), or rebind its own DNS name to 127.0.0.1 to
//! make its requests same-origin. So, when no key is set, a request to a keyed route
//! (every `/v1` route but the inbound provider routes, which carry a provider signature)
//! is refused when:
//!
//! - its `Host` (or HTTP/2 `:authority`) does not name a loopback address
//!   (`127.0.0.1[:port]`, `[::1][:port]`, `localhost[:port]`): 403 `forbidden_host` —
//!   DNS rebinding;
//! - `Sec-Fetch-Site` says `cross-site` or `same-site`, or an `Origin` is sent that is not
//!   the listener's own (`http://` + the request's loopback `Host`): 403 `cross_site`;
//! - it is a write (`POST`, `PUT`, `PATCH`, `DELETE`) whose body is not declared
//!   `application/json`: 415 `unsupported_media_type`. A write with no body and no
//!   `content-type` (`curl -X DELETE`, a bodyless retry) is not a browser's simple
//!   request: browsers send `Origin` with every cross-origin write.
//!
//! The daemon's own web UI is same-origin and sends JSON, so it passes; so do the CLI and
//! scripts, which send no `Origin` or `Sec-Fetch-*` headers. With a key set, the key is the
//! defence (a browser cannot attach it cross-site) and none of this applies.
//!
//! **Bodies are read within bounds**: at most 1 MiB (`--inbound-max-body-bytes`, 256 KiB
//! by default, on inbound provider routes, which anyone may call), and within
//! `--request-timeout` (408 `request_timeout`): a client trickling its body cannot hold a
//! connection and a handler forever.

use std::net::IpAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Method, StatusCode};

use super::{ApiError, ApiRequest};
use crate::config::Config;
use crate::refusals::{self, Refusal};

/// Checks a request to a keyed route (`keyed`) of a keyless API; anything else passes.
pub fn check(config: &Config, parts: &Parts, keyed: bool) -> Result<(), ApiError> {
    if config.api_key.is_some() || !keyed {
        return Ok(());
    }
    browser_proof(parts).inspect_err(|_| refusals::note(Refusal::CrossSite))
}

fn browser_proof(parts: &Parts) -> Result<(), ApiError> {
    let header = |name: hyper::header::HeaderName| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().map(str::trim).unwrap_or("\u{0}"))
    };
    let host = header(hyper::header::HOST)
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()));
    if let Some(host) = &host {
        if !is_loopback_host(host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                "Host must name a loopback address (127.0.0.1, [::1] or localhost) when the API has no key",
            ));
        }
    }
    if let Some(site) = header(hyper::header::HeaderName::from_static("sec-fetch-site")) {
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Err(cross_site("Sec-Fetch-Site"));
        }
    }
    if let Some(origin) = header(hyper::header::ORIGIN) {
        if !is_own_origin(origin, host.as_deref()) {
            return Err(cross_site("Origin"));
        }
    }
    if is_write(&parts.method) && !declares_json(parts) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a write with a body must send content-type: application/json",
        ));
    }
    Ok(())
}

fn cross_site(header: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_site",
        format!("cross-site requests are refused ({header}); the API has no key, so only clients on this host may use it"),
    )
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// `content-type: application/json` (parameters allowed), or no body and no content type.
fn declares_json(parts: &Parts) -> bool {
    match parts.headers.get(hyper::header::CONTENT_TYPE) {
        Some(value) => value.to_str().is_ok_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
        }),
        None => {
            let length = parts
                .headers
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .map(str::trim);
            let chunked = parts.headers.contains_key(hyper::header::TRANSFER_ENCODING);
            !chunked && matches!(length, None | Some("0"))
        }
    }
}

/// `127.0.0.1`, any `127.x.y.z`, `[::1]` or `localhost` (any case), with an optional port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return false;
        }
        return ip
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_ipv4() && ip.is_loopback())
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok()
}

/// The listener's own origin: `http://` and the request's loopback `Host` (a request
/// without one: any loopback origin).
fn is_own_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(authority) = origin
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .and_then(|_| origin.get(7..))
    else {
        return false;
    };
    match host {
        Some(host) => authority.eq_ignore_ascii_case(host),
        None => is_loopback_host(authority),
    }
}

/// Reads the body: at most the route's `limit` (413), within `--request-timeout` (408).
pub async fn read(
    config: &Config,
    parts: Parts,
    body: Incoming,
    limit: usize,
) -> Result<ApiRequest, ApiError> {
    let timeout = Duration::from_millis(config.request_timeout_ms);
    match tokio::time::timeout(timeout, ApiRequest::read(parts, body, limit)).await {
        Ok(Ok(request)) => Ok(request),
        Ok(Err(e)) => {
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                refusals::note(Refusal::BodyTooLarge);
            }
            Err(e)
        }
        Err(_) => {
            refusals::note(Refusal::BodyTimeout);
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} ms",
                    config.request_timeout_ms
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = hyper::Request::builder().method(method).uri("/v1/webhooks");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn keyless() -> Config {
        Config::default()
    }

    #[test]
    fn loopback_hosts_pass_and_others_do_not() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:8080",
            "localhost",
            "LocalHost:8080",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "127.0.0.1:",
            "127.0.0.1:99999",
            "127.0.0.1:80:80",
            "[::1",
            "[::2]:80",
            "[::1]x",
            "10.0.0.1",
            "0.0.0.0",
            "::1",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn a_cross_site_text_plain_post_is_refused() {
        let config = keyless();
        let simple = parts(
            "POST",
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "https://evil.example"),
                ("content-type", "text/plain"),
            ],
        );
        assert_eq!(check(&config, &simple, true).unwrap_err().status, 403);
        // Without Origin (an old browser), the content type alone refuses it.
        let no_origin = parts(
            "POST",
            &[("host", "127.0.0.1:8080"), ("content-type", "text/plain")],
        );
        assert_eq!(check(&config, &no_origin, true).unwrap_err().status, 415);
        let form = parts(
            "POST",
            &[
                ("content-length", "3"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
        );
        assert_eq!(check(&config, &form, true).unwrap_err().status, 415);
        let undeclared = parts("POST", &[("content-length", "3")]);
        assert_eq!(check(&config, &undeclared, true).unwrap_err().status, 415);
    }

    #[test]
    fn same_origin_json_and_plain_clients_pass() {
        let config = keyless();
        let ui = parts(
            "PATCH",
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin"),
                ("content-type", "application/json; charset=utf-8"),
            ],
        );
        check(&config, &ui, true).unwrap();
        let cli = parts(
            "POST",
            &[
                ("host", "localhost:8080"),
                ("content-type", "application/json"),
            ],
        );
        check(&config, &cli, true).unwrap();
        let bodyless_delete = parts("DELETE", &[("host", "[::1]:8080")]);
        check(&config, &bodyless_delete, true).unwrap();
        let read = parts("GET", &[("host", "127.0.0.1"), ("sec-fetch-site", "none")]);
        check(&config, &read, true).unwrap();
    }

    #[test]
    fn rebinding_and_foreign_origins_are_refused() {
        let config = keyless();
        let cases: &[&[(&str, &str)]] = &[
            &[("host", "evil.example:8080")],
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://localhost:3000"),
            ],
            &[("host", "127.0.0.1:8080"), ("origin", "null")],
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "https://127.0.0.1:8080"),
            ],
            &[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")],
            &[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")],
        ];
        for headers in cases {
            let error = check(&config, &parts("GET", headers), true).unwrap_err();
            assert_eq!(error.status, 403, "{headers:?}");
        }
    }

    #[test]
    fn a_key_or_a_public_route_skips_the_guard() {
        let evil = parts(
            "POST",
            &[("host", "evil.example"), ("content-type", "text/plain")],
        );
        check(&keyless(), &evil, false).unwrap();
        let keyed = Config {
            api_key: Some("k".into()),
            ..Config::default()
        };
        check(&keyed, &evil, true).unwrap();
    }
}
