//! The client every attempt goes through: TLS by rustls over TCP whose name resolution
//! goes through the SSRF guard, and hyper-util's connection pool over that stack.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;

use super::resolver::{GuardedResolver, Resolve};
use crate::ssrf::SsrfGuard;

/// How long the TCP connect to one resolved address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connector stack: TLS over TCP whose name resolution goes through the SSRF guard.
pub(super) type GuardedConnector = HttpsConnector<HttpConnector<GuardedResolver>>;

/// TLS by rustls with the ring provider (no process-wide provider needed) trusting `roots`,
/// HTTP/1.1 and HTTP/2 by ALPN, HTTPS only, over TCP that dials only the addresses of
/// `resolver` that `guard` lets through.
pub(super) fn guarded_connector(
    roots: RootCertStore,
    guard: Arc<SsrfGuard>,
    resolver: Arc<dyn Resolve>,
) -> Result<GuardedConnector, rustls::Error> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();

    let mut http = HttpConnector::new_with_resolver(GuardedResolver { guard, resolver });
    // The TLS layer checks the scheme; the TCP layer must accept `https://` URIs.
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));

    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}

pub(super) fn pooled_client(
    connector: GuardedConnector,
    pool_idle_timeout: Duration,
    max_idle_per_host: usize,
) -> Client<GuardedConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(pool_idle_timeout)
        .pool_max_idle_per_host(max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}
