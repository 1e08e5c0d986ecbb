//! Which origins a pool is connected to, so that a burst to a cold origin dials once, and
//! which webhook URLs it has already judged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_actors::DeliveryError;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::capture_connection;
use hyper_util::client::legacy::Client;

use super::client::GuardedConnector;
use super::url::{check_literal_host, parse_https_url};
use crate::ssrf::SsrfGuard;

/// How many origins a pool remembers before it first forgets the idle ones.
pub(super) const PRUNE_ORIGINS_AT: usize = 4_096;

/// How many webhook URLs a pool remembers having judged.
pub(super) const MAX_KNOWN_URLS: usize = 16_384;

/// Which origins a pool is (probably) connected to.
///
/// The pool learns only after the TLS handshake whether an origin speaks HTTP/2 (ALPN), so
/// a burst of attempts to an origin it has no connection to would each dial and handshake —
/// fan-out of one event to 1,000 webhooks on one host cost 1,000 handshakes. So the first
/// attempt to a cold origin dials alone, and the others wait until its connection is up
/// (not until its answer: an endpoint that never answers holds nobody up) or its attempt
/// has failed; then they share the connection (HTTP/2) or open their own (HTTP/1.1).
#[derive(Debug)]
pub(super) struct Origins {
    /// A pooled connection is assumed gone after this long without an answer.
    pub(super) idle_timeout: Duration,
    pub(super) known: Mutex<KnownOrigins>,
}

#[derive(Debug)]
pub(super) struct KnownOrigins {
    pub(super) by_key: HashMap<String, Arc<Origin>>,
    /// Forget idle origins when the map reaches this size.
    prune_at: usize,
    /// Webhook URLs already judged, with what was found: every attempt to a URL would
    /// otherwise parse and check it again. Forgotten wholesale when it reaches
    /// [`MAX_KNOWN_URLS`] (URLs in use come back on their next attempt).
    pub(super) by_url: HashMap<Arc<str>, Result<Target, DeliveryError>>,
}

/// Where a webhook URL sends: the parsed URL and its origin.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) uri: Uri,
    pub(super) origin: Arc<Origin>,
}

#[derive(Debug, Default)]
pub(super) struct Origin {
    /// Held by the attempt that dials a cold origin.
    dialling: tokio::sync::Mutex<()>,
    /// When a connection to the origin last carried an answer (or was set up).
    warm_at: Mutex<Option<Instant>>,
}

impl Origins {
    pub(super) fn new(idle_timeout: Duration) -> Self {
        Self {
            idle_timeout,
            known: Mutex::new(KnownOrigins {
                by_key: HashMap::new(),
                prune_at: PRUNE_ORIGINS_AT,
                by_url: HashMap::new(),
            }),
        }
    }

    /// Where `url` sends, or why it must not be used: parsed and checked against the
    /// guard on its first attempt only.
    pub(super) fn target(
        &self,
        url: &Arc<str>,
        guard: &SsrfGuard,
    ) -> Result<Target, DeliveryError> {
        let mut known = self.known.lock().expect("origins lock");
        if let Some(target) = known.by_url.get(&**url) {
            return target.clone();
        }
        let target = parse_https_url(url).and_then(|uri| {
            check_literal_host(&uri, guard)?;
            let origin = self.get(&mut known, &uri);
            Ok(Target { uri, origin })
        });
        if known.by_url.len() >= MAX_KNOWN_URLS {
            known.by_url.clear();
        }
        known.by_url.insert(Arc::clone(url), target.clone());
        target
    }

    fn get(&self, known: &mut KnownOrigins, uri: &Uri) -> Arc<Origin> {
        let key = uri
            .authority()
            .map(|a| a.as_str().to_ascii_lowercase())
            .unwrap_or_default();
        if !known.by_key.contains_key(&key) && known.by_key.len() >= known.prune_at {
            // Webhooks come and go: forget the origins nobody is sending to and whose
            // connections the pool has dropped by now. Amortised: the next pass waits
            // until the map has doubled.
            // The URLs hold their origins: forget them first.
            known.by_url.clear();
            known.by_key.retain(|_, origin| {
                Arc::strong_count(origin) > 1 || origin.is_warm(self.idle_timeout)
            });
            known.prune_at = (known.by_key.len() * 2).max(PRUNE_ORIGINS_AT);
        }
        Arc::clone(known.by_key.entry(key).or_default())
    }
}

impl Origin {
    fn is_warm(&self, idle_timeout: Duration) -> bool {
        self.warm_at
            .lock()
            .expect("origin lock")
            .is_some_and(|at| at.elapsed() < idle_timeout)
    }

    pub(super) fn set_warm(&self, warm: bool) {
        *self.warm_at.lock().expect("origin lock") = warm.then(Instant::now);
    }

    /// Sends `request`; to a cold origin, one dial at a time.
    pub(super) async fn send(
        &self,
        client: &Client<GuardedConnector, Full<Bytes>>,
        idle_timeout: Duration,
        request: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Incoming>, hyper_util::client::legacy::Error> {
        if !self.is_warm(idle_timeout) {
            let dialling = self.dialling.lock().await;
            // Another attempt may have connected while this one waited.
            if !self.is_warm(idle_timeout) {
                return self.dial_alone(client, request, dialling).await;
            }
        }
        self.note(client.request(request).await)
    }

    /// Sends the attempt that dials a cold origin, holding the others back (`dialling`)
    /// until its connection is up or it has failed.
    async fn dial_alone(
        &self,
        client: &Client<GuardedConnector, Full<Bytes>>,
        mut request: Request<Full<Bytes>>,
        dialling: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<hyper::Response<Incoming>, hyper_util::client::legacy::Error> {
        let mut connected = capture_connection(&mut request);
        let mut response = client.request(request);
        let early = tokio::select! {
            result = &mut response => Some(result),
            _ = connected.wait_for_connection_metadata() => None,
        };
        let result = match early {
            Some(result) => result,
            None => {
                self.set_warm(true);
                drop(dialling);
                response.await
            }
        };
        self.note(result)
    }

    /// An answer means the pool holds a connection; a failure, that it may not.
    fn note<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        self.set_warm(result.is_ok());
        result
    }
}
