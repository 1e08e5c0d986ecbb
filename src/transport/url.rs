//! A webhook URL as the transport accepts it: absolute, `https://`, with a host; and the
//! SSRF check of the hosts that hyper-util dials without asking the resolver.

use std::net::IpAddr;

use herald_actors::DeliveryError;
use hyper::Uri;

use crate::ssrf::SsrfGuard;

/// Parses the webhook URL and refuses anything but an absolute `https://` URL with a host.
pub(super) fn parse_https_url(url: &str) -> Result<Uri, DeliveryError> {
    let uri: Uri = url
        .parse()
        .map_err(|error| DeliveryError::InvalidUrl(format!("unparseable URL: {error}")))?;
    match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => {}
        Some(scheme) => {
            return Err(DeliveryError::InvalidUrl(format!(
                "plaintext URL refused: HTTPS is required (scheme is {scheme:?})"
            )))
        }
        None => {
            return Err(DeliveryError::InvalidUrl(
                "URL is not absolute: expected https://host/...".to_owned(),
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(DeliveryError::InvalidUrl("URL has no host".to_owned()));
    }
    Ok(uri)
}

/// hyper-util dials IP-literal hosts without asking the resolver, so they are judged here,
/// and so are the spellings whose fate would otherwise depend on the system resolver:
/// numeric IPv4 spellings that are not dotted-quad (`2130706433`, `0x7f.0.0.1`,
/// `0177.0.0.1`, `127.1`, `0`). glibc's resolver reads them as addresses, exactly like the
/// WHATWG URL parser browsers use, so they are judged as the address they spell. An allowed
/// one is still refused: TLS cannot verify a server name that is not a name, and a delivery
/// URL should say plainly where it goes.
pub(super) fn check_literal_host(uri: &Uri, guard: &SsrfGuard) -> Result<(), DeliveryError> {
    let host = uri.host().unwrap_or_default();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return guard
            .check(ip)
            .map_err(|reason| DeliveryError::Blocked(format!("{ip} is {reason}")));
    }
    let spelled = match url::Host::parse(host) {
        Ok(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Ok(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        // Names go to the guarded resolver; what the URL parser rejects, hyper rejects too.
        Ok(url::Host::Domain(_)) | Err(_) => return Ok(()),
    };
    guard.check(spelled).map_err(|reason| {
        DeliveryError::Blocked(format!("{host} is {spelled}, which is {reason}"))
    })?;
    Err(DeliveryError::InvalidUrl(format!(
        "host {host} is a non-canonical spelling of {spelled}; write the address as {spelled}"
    )))
}
