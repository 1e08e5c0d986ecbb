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
//! Failures come back as [`DeliveryError`] values with short one-line messages; header
//! values (which carry shared secrets) never appear in them.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::io::{self, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use herald_actors::{AttemptResponse, AttemptResult, DeliveryError, OutboundRequest, Transport};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::{capture_connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ipnet::IpNet;
use rustls::pki_types::InvalidDnsNameError;
use rustls::RootCertStore;
use tracing::debug;

use crate::ssrf::SsrfGuard;
use crate::text::one_line;
use crate::webhook::limits::is_managed_header;

/// How long the TCP connect to one resolved address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this much of a response body is read (and discarded) so that the connection can
/// go back to the pool; a larger body is dropped, which closes the connection instead.
const DRAIN_LIMIT_BYTES: usize = 64 * 1024;

/// How long draining a response body may take once the status is known. The attempt's
/// outcome is decided by then; a receiver that stalls its body must not turn a known
/// status into a timeout.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Sent as `user-agent` on every attempt.
const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

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

/// Why the transport could not be built. Each message names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TransportBuildError {
    /// The CA file could not be opened or read, or holds a malformed PEM section.
    #[error("cannot read CA file {}: {source}", path.display())]
    CaFileRead {
        /// The `--ca-file` path.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The CA file holds no `CERTIFICATE` PEM section.
    #[error("CA file {} contains no PEM certificates", path.display())]
    CaFileEmpty {
        /// The `--ca-file` path.
        path: PathBuf,
    },
    /// A certificate in the CA file is not usable as a trust anchor.
    #[error("CA file {}: unusable certificate: {reason}", path.display())]
    CaFileInvalid {
        /// The `--ca-file` path.
        path: PathBuf,
        /// rustls' reason.
        reason: String,
    },
    /// rustls refused the TLS configuration.
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The connector stack: TLS over TCP whose name resolution goes through the SSRF guard.
type GuardedConnector = HttpsConnector<HttpConnector<GuardedResolver>>;

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

/// How many origins a pool remembers before it first forgets the idle ones.
const PRUNE_ORIGINS_AT: usize = 4_096;

/// How many webhook URLs a pool remembers having judged.
const MAX_KNOWN_URLS: usize = 16_384;

/// Which origins a pool is (probably) connected to.
///
/// The pool learns only after the TLS handshake whether an origin speaks HTTP/2 (ALPN), so
/// a burst of attempts to an origin it has no connection to would each dial and handshake —
/// fan-out of one event to 1,000 webhooks on one host cost 1,000 handshakes. So the first
/// attempt to a cold origin dials alone, and the others wait until its connection is up
/// (not until its answer: an endpoint that never answers holds nobody up) or its attempt
/// has failed; then they share the connection (HTTP/2) or open their own (HTTP/1.1).
#[derive(Debug)]
struct Origins {
    /// A pooled connection is assumed gone after this long without an answer.
    idle_timeout: Duration,
    known: Mutex<KnownOrigins>,
}

#[derive(Debug)]
struct KnownOrigins {
    by_key: HashMap<String, Arc<Origin>>,
    /// Forget idle origins when the map reaches this size.
    prune_at: usize,
    /// Webhook URLs already judged, with what was found: every attempt to a URL would
    /// otherwise parse and check it again. Forgotten wholesale when it reaches
    /// [`MAX_KNOWN_URLS`] (URLs in use come back on their next attempt).
    by_url: HashMap<Arc<str>, Result<Target, DeliveryError>>,
}

/// Where a webhook URL sends: the parsed URL and its origin.
#[derive(Debug, Clone)]
struct Target {
    uri: Uri,
    origin: Arc<Origin>,
}

#[derive(Debug, Default)]
struct Origin {
    /// Held by the attempt that dials a cold origin.
    dialling: tokio::sync::Mutex<()>,
    /// When a connection to the origin last carried an answer (or was set up).
    warm_at: Mutex<Option<Instant>>,
}

impl Origins {
    fn new(idle_timeout: Duration) -> Self {
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
    fn target(&self, url: &Arc<str>, guard: &SsrfGuard) -> Result<Target, DeliveryError> {
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

    fn set_warm(&self, warm: bool) {
        *self.warm_at.lock().expect("origin lock") = warm.then(Instant::now);
    }

    /// Sends `request`; to a cold origin, one dial at a time.
    async fn send(
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
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();

        let guard = Arc::new(SsrfGuard::new(opts.allow_private));
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            guard: Arc::clone(&guard),
            resolver,
        });
        // The TLS layer checks the scheme; the TCP layer must accept `https://` URIs.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));

        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);

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

fn pooled_client(
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

/// Parses the webhook URL and refuses anything but an absolute `https://` URL with a host.
fn parse_https_url(url: &str) -> Result<Uri, DeliveryError> {
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
fn check_literal_host(uri: &Uri, guard: &SsrfGuard) -> Result<(), DeliveryError> {
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

/// `localhost` or a name under it, in any case, with or without the root's trailing dot:
/// the names RFC 6761 reserves for loopback.
fn is_localhost_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// The signed `POST`: the webhook's own headers first, then herald's, which win.
fn build_request(
    uri: Uri,
    outbound: OutboundRequest,
) -> Result<Request<Full<Bytes>>, DeliveryError> {
    let mut request = Request::new(Full::new(outbound.body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    // The webhook's own headers and the five herald sets below.
    headers.reserve(outbound.headers.len() + 5);

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
    Ok(request)
}

/// Reads and discards a small response body so the connection can be reused; a large or
/// stalled one is simply dropped (closing the connection or resetting the stream).
async fn drain(mut body: Incoming) {
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

/// Turns a client error into the attempt's [`DeliveryError`].
fn classify(error: &hyper_util::client::legacy::Error) -> DeliveryError {
    let chain = error_chain(error);

    if let Some(blocked) = chain
        .iter()
        .find_map(|e| match e.downcast_ref::<ResolveError>() {
            Some(blocked @ ResolveError::Blocked { .. }) => Some(blocked),
            _ => None,
        })
    {
        return DeliveryError::Blocked(blocked.to_string());
    }
    if let Some(tls) = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return DeliveryError::Tls(one_line(&tls.to_string()));
    }
    if chain.iter().any(|e| e.is::<InvalidDnsNameError>()) {
        return DeliveryError::InvalidUrl("host is not a valid TLS server name".to_owned());
    }

    // The first link is hyper-util's own "client error (Connect)": say what is under it.
    let message = describe(
        chain
            .get(1..)
            .filter(|rest| !rest.is_empty())
            .unwrap_or(&chain),
    );
    let lower = message.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("handshake") {
        DeliveryError::Tls(message)
    } else if error.is_connect() {
        DeliveryError::Connect(message)
    } else {
        DeliveryError::Io(message)
    }
}

/// The error and its causes, outermost first. `io::Error` hides a wrapped error from
/// `source()` (it returns the *wrapped error's* source), and both tokio-rustls and
/// hyper-rustls wrap in `io::Error`, so those are unwrapped with `get_ref`.
fn error_chain<'a>(error: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut chain = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        chain.push(current);
        if chain.len() >= 16 {
            break;
        }
        next = match current.downcast_ref::<io::Error>() {
            Some(io_error) => io_error
                .get_ref()
                .map(|inner| inner as &(dyn StdError + 'static)),
            None => current.source(),
        };
    }
    chain
}

/// Joins the messages of a chain into one short line, skipping repeats (a wrapping
/// `io::Error` displays exactly what it wraps).
fn describe(chain: &[&(dyn StdError + 'static)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for error in chain {
        let text = one_line(&error.to_string());
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    let joined = parts.join(": ");
    truncate(joined, 240)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Builds the trust roots: the web PKI plus every certificate of the optional CA file.
fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TransportBuildError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let Some(path) = ca_file else {
        return Ok(roots);
    };
    let read_error = |source| TransportBuildError::CaFileRead {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut reader = BufReader::new(file);
    let mut added = 0usize;
    for cert in rustls_pemfile::certs(&mut reader) {
        roots.add(cert.map_err(read_error)?).map_err(|error| {
            TransportBuildError::CaFileInvalid {
                path: path.to_owned(),
                reason: error.to_string(),
            }
        })?;
        added += 1;
    }
    if added == 0 {
        return Err(TransportBuildError::CaFileEmpty {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

/// Turns a host name into addresses. Asked afresh for every new connection, so what it
/// answers then — not at webhook creation — is what the guard judges.
trait Resolve: Send + Sync + fmt::Debug {
    fn resolve(&self, host: &str) -> BoxFuture<'static, io::Result<Vec<IpAddr>>>;
}

/// The system resolver, through tokio (`getaddrinfo` on a blocking thread).
#[derive(Debug)]
struct SystemResolver;

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
struct GuardedResolver {
    guard: Arc<SsrfGuard>,
    resolver: Arc<dyn Resolve>,
}

/// Why the guarded resolver produced no address.
#[derive(Debug, thiserror::Error)]
enum ResolveError {
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use hyper::service::service_fn;
    use hyper::{HeaderMap, Response, Version};
    use hyper_util::rt::TokioIo;
    use rcgen::{CertifiedKey, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::*;

    const BODY: &[u8] = br#"{"event_id":"evt_1","event_type":"object.created","data":{}}"#;

    /// What the receiver saw of one request.
    #[derive(Debug)]
    struct Seen {
        version: Version,
        headers: HeaderMap,
        body: Bytes,
    }

    /// A TLS receiver on 127.0.0.1 that answers `503` with `Retry-After: 7` (and never
    /// answers paths under `/hang`) and records every request and every accepted TCP
    /// connection.
    struct Receiver {
        port: u16,
        connections: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<Seen>>>,
    }

    impl Receiver {
        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }

        fn requests(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
            self.requests.lock().expect("receiver lock")
        }
    }

    fn self_signed() -> CertifiedKey<KeyPair> {
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("self-signed certificate")
    }

    async fn start_receiver(cert: &CertifiedKey<KeyPair>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let chain: Vec<CertificateDer<'static>> = vec![cert.cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let receiver = Receiver {
            port,
            connections: Arc::clone(&connections),
            requests: Arc::clone(&requests),
        };
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let requests = Arc::clone(&requests);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |request: Request<Incoming>| {
                        let requests = Arc::clone(&requests);
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let hang = parts.uri.path().starts_with("/hang");
                            requests.lock().expect("receiver lock").push(Seen {
                                version: parts.version,
                                headers: parts.headers,
                                body,
                            });
                            if hang {
                                futures::future::pending::<()>().await;
                            }
                            let response = Response::builder()
                                .status(503)
                                .header("retry-after", "7")
                                .body(Full::new(Bytes::from_static(b"busy, come back later")))
                                .expect("response");
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        receiver
    }

    /// A PEM file holding `cert`, to pass as `ca_file`.
    fn ca_file(cert: &CertifiedKey<KeyPair>) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), cert.cert.pem()).expect("write PEM");
        file
    }

    fn transport(ca: &tempfile::NamedTempFile, allow: &str) -> HttpsTransport {
        HttpsTransport::new(TransportOptions {
            ca_file: Some(ca.path().to_owned()),
            allow_private: SsrfGuard::parse_allow_list(allow).expect("allow list"),
            ..TransportOptions::default()
        })
        .expect("transport")
    }

    fn outbound(url: &str) -> OutboundRequest {
        OutboundRequest {
            url: url.into(),
            msg_id: "evt_1".into(),
            timestamp: 1_700_000_000,
            signature: "v1,c2lnbmF0dXJl v1,b2xkZXI=".to_owned(),
            headers: vec![
                ("X-Mixpeek-Secret".to_owned(), "s3cret-value".to_owned()),
                ("X-Tenant".to_owned(), "acme".to_owned()),
            ]
            .into(),
            body: Bytes::from_static(BODY),
        }
    }

    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local addr").port()
    }

    #[tokio::test]
    async fn an_allowed_loopback_receiver_gets_the_signed_post_and_its_retry_after_comes_back() {
        let cert = self_signed();
        let receiver = start_receiver(&cert).await;
        let ca = ca_file(&cert);
        let transport = transport(&ca, "127.0.0.0/8");

        for host in ["localhost", "127.0.0.1"] {
            let url = format!("https://{host}:{}/hooks/herald?x=1", receiver.port);
            let response = transport.send(outbound(&url)).await;
            assert_eq!(
                response,
                Ok(AttemptResponse {
                    status: 503,
                    retry_after: Some(Duration::from_secs(7)),
                }),
                "{url}"
            );
        }

        let requests = receiver.requests();
        assert_eq!(requests.len(), 2);
        for seen in requests.iter() {
            let header = |name: &str| seen.headers.get(name).and_then(|v| v.to_str().ok());
            assert_eq!(seen.version, Version::HTTP_2, "ALPN negotiates HTTP/2");
            assert_eq!(seen.body, Bytes::from_static(BODY));
            assert_eq!(header("content-type"), Some("application/json"));
            assert_eq!(header("webhook-id"), Some("evt_1"));
            assert_eq!(header("webhook-timestamp"), Some("1700000000"));
            assert_eq!(
                header("webhook-signature"),
                Some("v1,c2lnbmF0dXJl v1,b2xkZXI=")
            );
            assert_eq!(header("user-agent"), Some(USER_AGENT));
            assert_eq!(header("x-mixpeek-secret"), Some("s3cret-value"));
            assert_eq!(header("x-tenant"), Some("acme"));
        }
    }

    #[tokio::test]
    async fn attempts_to_one_host_share_a_pooled_connection() {
        let cert = self_signed();
        let receiver = start_receiver(&cert).await;
        let ca = ca_file(&cert);
        let transport = transport(&ca, "127.0.0.1");
        let url = format!("https://localhost:{}/", receiver.port);

        for _ in 0..3 {
            let response = transport.send(outbound(&url)).await.expect("response");
            assert_eq!(response.status, 503);
        }
        assert_eq!(receiver.requests().len(), 3);
        assert_eq!(receiver.connections(), 1);
    }

    #[tokio::test]
    async fn a_burst_to_an_origin_not_yet_connected_dials_once_over_http2() {
        let cert = self_signed();
        let receiver = start_receiver(&cert).await;
        let ca = ca_file(&cert);
        let transport = transport(&ca, "127.0.0.1");
        // Fan-out: many webhooks on one host, all sent at once.
        let sends = (0..50).map(|i| {
            transport.send(outbound(&format!(
                "https://localhost:{}/hook{i}",
                receiver.port
            )))
        });
        for response in futures::future::join_all(sends).await {
            assert_eq!(response.expect("response").status, 503);
        }
        assert_eq!(receiver.requests().len(), 50);
        assert!(receiver
            .requests()
            .iter()
            .all(|r| r.version == Version::HTTP_2));
        assert_eq!(
            receiver.connections(),
            1,
            "one handshake, not one per attempt"
        );
    }

    #[tokio::test]
    async fn a_first_attempt_that_never_answers_does_not_hold_up_its_origin() {
        let cert = self_signed();
        let receiver = start_receiver(&cert).await;
        let ca = ca_file(&cert);
        let transport = transport(&ca, "127.0.0.1");
        let base = format!("https://localhost:{}", receiver.port);
        let hanging = tokio::spawn(transport.send(outbound(&format!("{base}/hang"))));
        let deadline = Instant::now() + Duration::from_secs(10);
        while receiver.requests().is_empty() {
            assert!(Instant::now() < deadline, "the first attempt never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // It dialled; its answer never comes, and its neighbour is not held up.
        let other = tokio::time::timeout(
            Duration::from_secs(10),
            transport.send(outbound(&format!("{base}/ok"))),
        )
        .await
        .expect("the second attempt waited for the first one's answer");
        assert_eq!(other.expect("response").status, 503);
        assert_eq!(receiver.connections(), 1);
        assert!(!hanging.is_finished());
        hanging.abort();
    }

    #[test]
    fn origins_nobody_sends_to_are_forgotten_once_many_are_known() {
        let origins = Origins::new(Duration::from_secs(90));
        let guard = SsrfGuard::new(Vec::new());
        let url = |i: usize| -> Arc<str> { format!("https://host{i}.example/").into() };
        let origin = |i: usize| origins.target(&url(i), &guard).expect("a valid URL").origin;
        let in_use = origin(0);
        origin(1).set_warm(true);
        for i in 2..PRUNE_ORIGINS_AT {
            origin(i);
        }
        let known = |o: &Origins| o.known.lock().unwrap().by_key.len();
        assert_eq!(known(&origins), PRUNE_ORIGINS_AT);
        // One more: the cold, unused ones go; one in use and one with a live connection stay.
        origin(PRUNE_ORIGINS_AT);
        assert_eq!(known(&origins), 3);
        assert!(Arc::ptr_eq(&in_use, &origin(0)));
    }

    #[test]
    fn a_url_is_judged_once_and_the_verdicts_kept_are_bounded() {
        let origins = Origins::new(Duration::from_secs(90));
        let guard = SsrfGuard::new(Vec::new());
        let plaintext: Arc<str> = "http://host.example/hook".into();
        let refused = origins.target(&plaintext, &guard).unwrap_err();
        assert!(
            matches!(refused, DeliveryError::InvalidUrl(_)),
            "{refused:?}"
        );
        // The verdict is remembered, and given again as it was.
        let urls = |o: &Origins| o.known.lock().unwrap().by_url.len();
        assert_eq!(urls(&origins), 1);
        assert_eq!(origins.target(&plaintext, &guard).unwrap_err(), refused);
        // Two URLs on one origin share it.
        let a = origins
            .target(&"https://host.example/a".into(), &guard)
            .unwrap();
        let b = origins
            .target(&"https://HOST.example/b".into(), &guard)
            .unwrap();
        assert!(Arc::ptr_eq(&a.origin, &b.origin));
        assert_eq!(b.uri.path(), "/b");
        for i in 0..MAX_KNOWN_URLS + 10 {
            let url: Arc<str> = format!("https://host.example/{i}").into();
            origins.target(&url, &guard).unwrap();
        }
        assert!(urls(&origins) <= MAX_KNOWN_URLS);
    }

    #[tokio::test]
    async fn loopback_is_blocked_without_the_allow_list_and_nothing_is_dialled() {
        let cert = self_signed();
        let receiver = start_receiver(&cert).await;
        let ca = ca_file(&cert);
        let transport = transport(&ca, "");

        let by_name = transport
            .send(outbound(&format!("https://localhost:{}/", receiver.port)))
            .await;
        assert_eq!(
            by_name,
            Err(DeliveryError::Blocked(
                "localhost resolves to 127.0.0.1, which is loopback (127.0.0.0/8)".to_owned()
            ))
        );

        let literal = transport
            .send(outbound(&format!("https://127.0.0.1:{}/", receiver.port)))
            .await;
        assert_eq!(
            literal,
            Err(DeliveryError::Blocked(
                "127.0.0.1 is loopback (127.0.0.0/8)".to_owned()
            ))
        );

        for url in [
            "https://[::1]:9/",
            "https://[::ffff:127.0.0.1]:9/",
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.1/",
        ] {
            let result = transport.send(outbound(url)).await;
            assert!(
                matches!(result, Err(DeliveryError::Blocked(_))),
                "{url}: {result:?}"
            );
        }

        assert_eq!(receiver.connections(), 0);
        assert!(receiver.requests().is_empty());
    }

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
    async fn a_certificate_outside_the_trusted_roots_is_a_tls_error() {
        let trusted = self_signed();
        let ca = ca_file(&trusted);
        let untrusted = self_signed();
        let receiver = start_receiver(&untrusted).await;
        let transport = transport(&ca, "127.0.0.0/8");

        for host in ["localhost", "127.0.0.1"] {
            let result = transport
                .send(outbound(&format!("https://{host}:{}/", receiver.port)))
                .await;
            match result {
                Err(DeliveryError::Tls(message)) => {
                    assert!(message.contains("certificate"), "{message}");
                    assert!(!message.contains('\n'));
                }
                other => panic!("{host}: expected Tls, got {other:?}"),
            }
        }
        assert!(receiver.requests().is_empty());
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let cert = self_signed();
        let ca = ca_file(&cert);
        let transport = transport(&ca, "127.0.0.0/8");
        let port = closed_port();

        for host in ["localhost", "127.0.0.1"] {
            let result = transport
                .send(outbound(&format!("https://{host}:{port}/")))
                .await;
            match result {
                Err(DeliveryError::Connect(message)) => assert!(!message.contains('\n')),
                other => panic!("{host}: expected Connect, got {other:?}"),
            }
        }
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
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        let cases = [
            ("7", Some(Duration::from_secs(7))),
            (" 120 ", Some(Duration::from_secs(120))),
            ("0", Some(Duration::ZERO)),
            (
                "99999999999999999999999",
                Some(Duration::from_secs(u64::MAX)),
            ),
            (
                "Wed, 21 Oct 2015 07:29:30 GMT",
                Some(Duration::from_secs(90)),
            ),
            ("Wed, 21 Oct 2015 07:28:00 GMT", Some(Duration::ZERO)),
            ("Wed, 21 Oct 2015 07:00:00 GMT", Some(Duration::ZERO)),
            (
                "Wednesday, 21-Oct-15 07:29:00 GMT",
                Some(Duration::from_secs(60)),
            ),
            ("Wed Oct 21 07:28:10 2015", Some(Duration::from_secs(10))),
            ("", None),
            ("-5", None),
            ("1.5", None),
            ("soon", None),
            ("Wed, 21 Oct 2015 07:29:30", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
        }
    }

    #[test]
    fn the_ca_file_must_exist_and_hold_certificates() {
        let missing = TransportOptions {
            ca_file: Some(PathBuf::from("/nonexistent/herald-ca.pem")),
            ..TransportOptions::default()
        };
        let error = HttpsTransport::new(missing).expect_err("missing file");
        assert!(
            error.to_string().contains("/nonexistent/herald-ca.pem"),
            "{error}"
        );

        let empty = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(empty.path(), "not a certificate\n").expect("write");
        let error = HttpsTransport::new(TransportOptions {
            ca_file: Some(empty.path().to_owned()),
            ..TransportOptions::default()
        })
        .expect_err("no certificates");
        assert!(matches!(error, TransportBuildError::CaFileEmpty { .. }));
        assert!(
            error
                .to_string()
                .contains(&empty.path().display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn numeric_ipv4_spellings_are_judged_as_the_address_they_spell() {
        let strict = SsrfGuard::default();
        let loopback_allowed =
            SsrfGuard::new(SsrfGuard::parse_allow_list("127.0.0.0/8").expect("allow list"));
        let check = |url: &str, guard: &SsrfGuard| {
            check_literal_host(&parse_https_url(url).expect("parses"), guard)
        };
        let blocked = [
            (
                "https://2130706433/",
                "2130706433 is 127.0.0.1, which is loopback",
            ),
            (
                "https://0x7f.0.0.1/",
                "0x7f.0.0.1 is 127.0.0.1, which is loopback",
            ),
            ("https://0x7f000001/", "is 127.0.0.1, which is loopback"),
            ("https://017700000001/", "is 127.0.0.1, which is loopback"),
            ("https://0177.0.0.1/", "is 127.0.0.1, which is loopback"),
            ("https://127.1/", "127.1 is 127.0.0.1, which is loopback"),
            ("https://0/", "0 is 0.0.0.0, which is unspecified"),
            (
                "https://0xa9fea9fe/",
                "is 169.254.169.254, which is link-local",
            ),
            ("https://127.0.0.1/", "127.0.0.1 is loopback"),
            (
                "https://[::ffff:7f00:1]/",
                "127.0.0.1 in IPv6 form: loopback",
            ),
            (
                "https://[::ffff:127.0.0.1]/",
                "127.0.0.1 in IPv6 form: loopback",
            ),
            ("https://[::]/", ":: is unspecified"),
            ("https://0.0.0.0/", "0.0.0.0 is unspecified"),
            (
                "https://1681915905/",
                "1681915905 is 100.64.0.1, which is shared CGNAT",
            ),
            (
                "https://0xe0000001/",
                "0xe0000001 is 224.0.0.1, which is multicast",
            ),
            (
                "https://012.0.0.1/",
                "012.0.0.1 is 10.0.0.1, which is private",
            ),
            (
                "https://0300.0250.1.1/",
                "0300.0250.1.1 is 192.168.1.1, which is private",
            ),
            (
                "https://[::ffff:a9fe:a9fe]/",
                "169.254.169.254 in IPv6 form: link-local",
            ),
        ];
        for (url, reason) in blocked {
            match check(url, &strict) {
                Err(DeliveryError::Blocked(message)) => {
                    assert!(message.contains(reason), "{url}: {message}")
                }
                other => panic!("{url}: expected Blocked, got {other:?}"),
            }
        }

        // Allowed or public, a numeric spelling is still refused, and says how to fix it.
        for (url, guard) in [
            ("https://2130706433/", &loopback_allowed),
            ("https://134744072/", &strict),
        ] {
            match check(url, guard) {
                Err(DeliveryError::InvalidUrl(message)) => {
                    assert!(
                        message.contains("non-canonical spelling"),
                        "{url}: {message}"
                    )
                }
                other => panic!("{url}: expected InvalidUrl, got {other:?}"),
            }
        }
        // Names and canonical addresses pass when allowed: the resolver judges names.
        for (url, guard) in [
            ("https://localhost./", &strict),
            ("https://127.0.0.1/", &loopback_allowed),
            ("https://example.com/", &strict),
            ("https://localhost.example.com/", &strict),
            ("https://1.1.1.1/", &strict),
        ] {
            assert_eq!(check(url, guard), Ok(()), "{url}");
        }
    }

    #[tokio::test]
    async fn localhost_names_resolve_to_loopback_whatever_the_system_resolver_says() {
        use std::str::FromStr;
        use tower_service::Service;

        let mut strict = GuardedResolver {
            guard: Arc::new(SsrfGuard::default()),
            resolver: Arc::new(SystemResolver),
        };
        for name in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "LocalHost.",
            "api.localhost",
            "api.LOCALHOST.",
        ] {
            let error = strict
                .call(Name::from_str(name).expect("name"))
                .await
                .expect_err(name);
            assert_eq!(
                error.to_string(),
                format!("{name} resolves to 127.0.0.1, which is loopback (127.0.0.0/8)")
            );
        }

        let mut v4_only = GuardedResolver {
            guard: Arc::new(SsrfGuard::new(
                SsrfGuard::parse_allow_list("127.0.0.0/8").expect("allow list"),
            )),
            resolver: Arc::new(SystemResolver),
        };
        let addrs: Vec<SocketAddr> = v4_only
            .call(Name::from_str("localhost.").expect("name"))
            .await
            .expect("allowed")
            .collect();
        assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 1], 0))]);
    }

    /// A resolver whose answer changes under herald's feet: `first` for the first lookup
    /// (say, when the webhook is created), `then` for every later one.
    #[derive(Debug)]
    struct Rebinding {
        first: IpAddr,
        then: IpAddr,
        lookups: AtomicUsize,
    }

    impl Resolve for Rebinding {
        fn resolve(&self, _host: &str) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
            let n = self.lookups.fetch_add(1, Ordering::SeqCst);
            let ip = if n == 0 { self.first } else { self.then };
            futures::future::ready(Ok(vec![ip])).boxed()
        }
    }

    #[tokio::test]
    async fn a_name_rebound_to_loopback_after_creation_is_refused_at_dial_time_unless_allowed() {
        use std::str::FromStr;
        use tower_service::Service;

        let cert = rcgen::generate_simple_self_signed(vec!["rebind.example".to_owned()])
            .expect("self-signed certificate");
        let receiver = start_receiver(&cert).await;
        let ca = ca_file(&cert);
        let resolver = Arc::new(Rebinding {
            first: "93.184.216.34".parse().expect("ip"),
            then: IpAddr::from([127, 0, 0, 1]),
            lookups: AtomicUsize::new(0),
        });
        let options = |allow: &str| TransportOptions {
            ca_file: Some(ca.path().to_owned()),
            allow_private: SsrfGuard::parse_allow_list(allow).expect("allow list"),
            ..TransportOptions::default()
        };
        let url = format!("https://rebind.example:{}/hook", receiver.port);

        // When the webhook is created the name is public, and the guard agrees.
        let mut at_creation = GuardedResolver {
            guard: Arc::new(SsrfGuard::default()),
            resolver: resolver.clone(),
        };
        let public: Vec<SocketAddr> = at_creation
            .call(Name::from_str("rebind.example").expect("name"))
            .await
            .expect("a public address passes")
            .collect();
        assert_eq!(public, [SocketAddr::from(([93, 184, 216, 34], 0))]);

        // At dial time it resolves to loopback: refused, and nothing reaches the receiver
        // listening there.
        let strict =
            HttpsTransport::with_resolver(options(""), resolver.clone()).expect("transport");
        assert_eq!(
            strict.send(outbound(&url)).await,
            Err(DeliveryError::Blocked(
                "rebind.example resolves to 127.0.0.1, which is loopback (127.0.0.0/8)".to_owned()
            ))
        );
        assert_eq!(receiver.connections(), 0);

        // Inside --allow-private-networks the same dial goes through.
        let allowed = HttpsTransport::with_resolver(options("127.0.0.0/8"), resolver.clone())
            .expect("transport");
        let response = allowed.send(outbound(&url)).await.expect("delivered");
        assert_eq!(response.status, 503);
        assert_eq!(receiver.requests().len(), 1);
        assert_eq!(resolver.lookups.load(Ordering::SeqCst), 3);
    }
}
