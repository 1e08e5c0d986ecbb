//! The HTTPS transport: how one delivery attempt reaches a receiver.
//!
//! [`HttpsTransport`] implements the engine's [`Transport`] port with one shared, pooled
//! hyper-util client over hyper-rustls (HTTP/1.1 and HTTP/2 by ALPN, keep-alive). Every
//! attempt is a single signed `POST`; redirects are never followed, so a 3xx is just a
//! status like any other non-2xx.
//!
//! Two rules are enforced here rather than trusted to callers:
//!
//! * **HTTPS only.** A URL with any other scheme is refused before anything is dialled.
//! * **The SSRF guard judges the address actually dialled.** The client's resolver resolves
//!   with tokio and drops every address [`SsrfGuard::check`] refuses, so a public-looking
//!   name that resolves to `127.0.0.1` cannot reach the daemon's own network. hyper-util
//!   skips the resolver for IP-literal hosts, so those are checked in [`Transport::send`]
//!   before the request is handed to the client — along with numeric spellings such as
//!   `2130706433` or `0x7f.0.0.1`, judged as the address they spell. `localhost` names
//!   always resolve to loopback (RFC 6761), whatever the system resolver thinks of them.
//!
//! Failures come back as [`DeliveryError`](herald_actors::DeliveryError) values with short
//! one-line messages; header values (which carry shared secrets) never appear in them.
//!
//! The rooms: this file has the transport, its options and one attempt start to finish;
//! the `client` is the connector stack and its pool, `origins` keeps which origins a
//! pool is connected to (and dials a cold one once), `url` parses a webhook URL and
//! judges the hosts the resolver never sees, `request` builds the signed `POST`,
//! `response` reads what comes back, `classify` turns a client error into a
//! delivery error, `tls` builds the trust roots and the `resolver` resolves names
//! behind the SSRF guard.

mod classify;
mod client;
mod origins;
mod request;
mod resolver;
mod response;
mod tls;
mod url;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use herald_actors::{AttemptResponse, AttemptResult, OutboundRequest, Transport};
use http_body_util::Full;
use hyper::header;
use hyper_util::client::legacy::Client;
use ipnet::IpNet;
use tracing::debug;

pub use self::response::parse_retry_after;
pub(crate) use self::tls::root_store;
pub use self::tls::TransportBuildError;

use self::classify::classify;
use self::client::{guarded_connector, pooled_client, GuardedConnector};
use self::origins::{Origins, Target};
use self::request::build_request;
use self::resolver::{Resolve, SystemResolver};
use self::response::drain;
use crate::ssrf::SsrfGuard;

/// How the transport is set up: trust roots, SSRF exceptions and connection pooling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportOptions {
    /// PEM file of extra trusted root certificates (`--ca-file`), on top of the web PKI.
    pub ca_file: Option<PathBuf>,
    /// Networks that may be dialled although private/loopback (`--allow-private-networks`).
    pub allow_private: Vec<IpNet>,
    /// How long an idle pooled connection is kept open.
    pub pool_idle_timeout: Duration,
    /// How many idle connections are kept per host.
    pub max_idle_per_host: usize,
}

impl Default for TransportOptions {
    /// Web PKI roots only, no SSRF exceptions, idle connections kept for 90 s, up to 32 per
    /// host.
    fn default() -> Self {
        Self {
            ca_file: None,
            allow_private: Vec::new(),
            pool_idle_timeout: Duration::from_secs(90),
            max_idle_per_host: 32,
        }
    }
}

/// Delivers attempts over HTTPS with one shared, pooled client. Cheap to clone.
#[derive(Clone)]
pub struct HttpsTransport {
    /// The pooled client every attempt goes through.
    /// Shared by the attempts (one reference count, where cloning the client itself takes
    /// several).
    client: Arc<Client<GuardedConnector, Full<Bytes>>>,
    /// Checks IP-literal hosts, which the client's resolver never sees.
    guard: Arc<SsrfGuard>,
    /// What [`Transport::isolated`] builds more clients from (TLS config and resolver are
    /// shared; the connection pool is not).
    connector: GuardedConnector,
    max_idle_per_host: usize,
    /// The origins this pool has connections to, and who dials the first; it also holds
    /// the pool's idle timeout.
    origins: Arc<Origins>,
}

impl fmt::Debug for HttpsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsTransport")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl HttpsTransport {
    /// Builds the client: web PKI roots plus every certificate in `opts.ca_file`, TLS by
    /// rustls with the ring provider (no process-wide provider needed), HTTP/1.1 and HTTP/2,
    /// HTTPS only, and the SSRF guard on every resolved address.
    pub fn new(opts: TransportOptions) -> Result<Self, TransportBuildError> {
        Self::with_resolver(opts, Arc::new(SystemResolver))
    }

    /// [`new`](Self::new) with another name resolver behind the SSRF guard (tests use a
    /// fake whose answers change, to prove the guard judges what is dialled).
    fn with_resolver(
        opts: TransportOptions,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Self, TransportBuildError> {
        let roots = root_store(opts.ca_file.as_deref())?;
        let guard = Arc::new(SsrfGuard::new(opts.allow_private));
        let connector = guarded_connector(roots, Arc::clone(&guard), resolver)?;
        let client = Arc::new(pooled_client(
            connector.clone(),
            opts.pool_idle_timeout,
            opts.max_idle_per_host,
        ));
        Ok(Self {
            client,
            guard,
            connector,
            max_idle_per_host: opts.max_idle_per_host,
            origins: Arc::new(Origins::new(opts.pool_idle_timeout)),
        })
    }
}

impl Transport for HttpsTransport {
    fn send(&self, request: OutboundRequest) -> BoxFuture<'static, AttemptResult> {
        let client = self.client.clone();
        let guard = Arc::clone(&self.guard);
        let origins = Arc::clone(&self.origins);
        async move { attempt(&client, &guard, &origins, request).await }.boxed()
    }

    /// The same TLS settings and SSRF guard over a connection pool of the endpoint's own:
    /// with HTTP/2 one connection carries every stream to a host, so endpoints sharing a
    /// host would otherwise share its stream limit, and one that never answers would hold
    /// the streams its neighbours need.
    fn isolated(&self) -> Option<Arc<dyn Transport>> {
        let idle_timeout = self.origins.idle_timeout;
        Some(Arc::new(Self {
            client: Arc::new(pooled_client(
                self.connector.clone(),
                idle_timeout,
                self.max_idle_per_host,
            )),
            guard: Arc::clone(&self.guard),
            connector: self.connector.clone(),
            max_idle_per_host: self.max_idle_per_host,
            origins: Arc::new(Origins::new(idle_timeout)),
        }))
    }
}

/// One attempt, start to finish: validate, build, send, read the status.
async fn attempt(
    client: &Client<GuardedConnector, Full<Bytes>>,
    guard: &SsrfGuard,
    origins: &Origins,
    request: OutboundRequest,
) -> AttemptResult {
    let Target { uri, origin } = origins.target(&request.url, guard)?;
    let request = build_request(uri, request)?;

    let response = origin
        .send(client, origins.idle_timeout, request)
        .await
        .map_err(|error| {
            let error = classify(&error);
            debug!(%error, "delivery attempt failed");
            error
        })?;

    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()));
    drain(response.into_body()).await;
    Ok(AttemptResponse {
        status,
        retry_after,
    })
}
