//! Name resolution behind the SSRF guard: every address the client could dial is judged
//! when it is resolved, at dial time, not when the webhook was created.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::FutureExt;
use hyper_util::client::legacy::connect::dns::Name;
use tracing::debug;

use crate::ssrf::SsrfGuard;

/// Turns a host name into addresses. Asked afresh for every new connection, so what it
/// answers then — not at webhook creation — is what the guard judges.
pub(super) trait Resolve: Send + Sync + fmt::Debug {
    fn resolve(&self, host: &str) -> BoxFuture<'static, io::Result<Vec<IpAddr>>>;
}

/// The system resolver, through tokio (`getaddrinfo` on a blocking thread).
#[derive(Debug)]
pub(super) struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        let host = host.to_owned();
        async move {
            // Port 0: the connector puts the URL's port on every address.
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|addr| addr.ip())
                .collect())
        }
        .boxed()
    }
}

/// Resolves with `resolver` (the system resolver outside tests) and keeps only addresses
/// the SSRF guard lets through, so the client can only ever dial an allowed address.
#[derive(Debug, Clone)]
pub(super) struct GuardedResolver {
    pub(super) guard: Arc<SsrfGuard>,
    pub(super) resolver: Arc<dyn Resolve>,
}

/// Why the guarded resolver produced no address.
#[derive(Debug, thiserror::Error)]
pub(super) enum ResolveError {
    /// Every resolved address was refused; the first one is reported.
    #[error("{host} resolves to {ip}, which is {reason}")]
    Blocked {
        host: String,
        ip: IpAddr,
        reason: String,
    },
    /// The lookup succeeded but returned nothing.
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    /// The lookup itself failed (unknown name, resolver down, ...).
    #[error("lookup failed: {0}")]
    Lookup(io::Error),
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guard = Arc::clone(&self.guard);
        let resolver = Arc::clone(&self.resolver);
        async move {
            let host = name.as_str();
            // RFC 6761: localhost names are loopback whatever the system resolver says
            // (glibc does not know `localhost.`, and some resolvers forward `*.localhost`),
            // so the guard judges them as what they must be.
            let resolved: Vec<SocketAddr> = if is_localhost_name(host) {
                vec![
                    SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
                    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
                ]
            } else {
                // Port 0: the connector puts the URL's port on every address.
                resolver
                    .resolve(host)
                    .await
                    .map_err(ResolveError::Lookup)?
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect()
            };
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match guard.check(addr.ip()) {
                    Ok(()) => true,
                    Err(reason) => {
                        debug!(host, ip = %addr.ip(), reason, "resolved address refused by SSRF guard");
                        refused.get_or_insert((addr.ip(), reason));
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                return Err(match refused {
                    Some((ip, reason)) => ResolveError::Blocked {
                        host: host.to_owned(),
                        ip,
                        reason,
                    },
                    None => ResolveError::NoAddress {
                        host: host.to_owned(),
                    },
                });
            }
            Ok(allowed.into_iter())
        }
        .boxed()
    }
}

/// `localhost` or a name under it, in any case, with or without the root's trailing dot:
/// the names RFC 6761 reserves for loopback.
fn is_localhost_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}
