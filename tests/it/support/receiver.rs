//! An HTTPS webhook receiver for integration tests.
//!
//! [`Receiver::start`] listens on `127.0.0.1:0` (HTTP/1.1 and HTTP/2 over TLS), records
//! every request it gets and answers with a programmable [`Response`]: a default that a
//! test can change at any time ([`Receiver::respond_with`]) and a script consumed one
//! response per request first ([`Receiver::script`]). Dropping the receiver closes the
//! listener and every open connection, even those stuck in a [`Response::hang`].
//!
//! Its certificate is issued by a test CA that is generated once per build and cached in
//! cargo's target tmp dir; give the daemon [`test_ca_pem_path()`] as `--ca-file`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The default path requests are expected on.
pub const HOOK_PATH: &str = "/hook";

/// What the receiver answers to one request.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Extra headers, e.g. `("retry-after", "2")`.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// How long to wait before answering (after the request is recorded).
    pub delay: Duration,
}

impl Response {
    /// Answer `status` at once with an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
        }
    }

    /// `200 OK`.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// Never answer (in practice: a day), to exercise attempt timeouts. The request is
    /// still recorded when it arrives.
    pub fn hang() -> Self {
        Self::ok().delay(Duration::from_secs(24 * 60 * 60))
    }

    /// Adds a response header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the response body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Waits `delay` before answering.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

impl From<u16> for Response {
    fn from(status: u16) -> Self {
        Self::status(status)
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// When its headers arrived.
    pub at: Instant,
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: Option<String>,
    pub version: hyper::Version,
    /// Names lowercase, in arrival order; repeated headers appear once per value.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as (lossy) UTF-8.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A running HTTPS receiver; see the module docs.
#[derive(Debug)]
pub struct Receiver {
    /// `https://127.0.0.1:PORT/hook` (or `https://localhost:PORT/hook`).
    pub url: String,
    /// The PEM of the CA that issued the receiver's certificate (`--ca-file`).
    pub ca_pem_path: PathBuf,
    pub addr: SocketAddr,
    host: &'static str,
    state: Arc<State>,
    shutdown: CancellationToken,
}

#[derive(Debug)]
struct State {
    started: Instant,
    requests: Mutex<Vec<RecordedRequest>>,
    script: Mutex<VecDeque<Response>>,
    default: Mutex<Response>,
    /// Woken on every recorded request.
    arrived: Notify,
}

impl Receiver {
    /// Starts a receiver on `127.0.0.1:0`; its URL uses `127.0.0.1`.
    pub async fn start() -> Receiver {
        Self::start_with_host("127.0.0.1").await
    }

    /// Like [`start`](Self::start), but the URL names `localhost` (exercises DNS
    /// resolution and hostname verification rather than an IP SAN).
    pub async fn start_on_localhost() -> Receiver {
        Self::start_with_host("localhost").await
    }

    async fn start_with_host(host: &'static str) -> Receiver {
        let tls = test_tls();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver to 127.0.0.1:0");
        let addr = listener.local_addr().expect("receiver address");
        let state = Arc::new(State {
            started: Instant::now(),
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Response::ok()),
            arrived: Notify::new(),
        });
        let shutdown = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(tls.server_config.clone()),
            state.clone(),
            shutdown.clone(),
        ));
        Receiver {
            url: format!("https://{host}:{}{HOOK_PATH}", addr.port()),
            ca_pem_path: tls.ca_pem_path.clone(),
            addr,
            host,
            state,
            shutdown,
        }
    }

    /// `https://<host>:PORT<path>`; `path` should start with `/`.
    pub fn url_with_path(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.host, self.addr.port())
    }

    /// From now on answer `status` (after any scripted responses).
    pub fn respond_with(&self, status: u16) {
        self.respond_with_response(Response::status(status));
    }

    /// From now on answer `response` (after any scripted responses).
    pub fn respond_with_response(&self, response: Response) {
        *self.state.default.lock().unwrap() = response;
    }

    /// Answers the next requests with these responses, in order, then falls back to the
    /// default. Replaces any remaining script. Accepts statuses: `script([500, 200])`.
    pub fn script<I>(&self, responses: I)
    where
        I: IntoIterator,
        I::Item: Into<Response>,
    {
        *self.state.script.lock().unwrap() = responses.into_iter().map(Into::into).collect();
    }

    /// Fails the next `n` requests with `status`, then answers the default.
    pub fn fail_first(&self, n: usize, status: u16) {
        self.script(std::iter::repeat_n(status, n));
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests arrived so far.
    pub fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    /// Waits until at least `n` requests arrived and returns them all; panics listing what
    /// did arrive if `deadline` passes first.
    pub async fn wait_for(&self, n: usize, deadline: Duration) -> Vec<RecordedRequest> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            // Register interest before looking, so a request in between is not missed.
            let arrived = self.state.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            if tokio::time::timeout_at(until, arrived).await.is_err() {
                let requests = self.requests();
                if requests.len() >= n {
                    return requests;
                }
                panic!(
                    "receiver {}: expected at least {n} request(s) within {deadline:?}, got {}:\n{}",
                    self.url,
                    requests.len(),
                    self.describe(&requests)
                );
            }
        }
    }

    /// A readable listing of `requests`, for assertion messages.
    pub fn describe(&self, requests: &[RecordedRequest]) -> String {
        if requests.is_empty() {
            return "  (none)".to_owned();
        }
        let mut out = String::new();
        for (i, r) in requests.iter().enumerate() {
            let mut body = r.body_text();
            if body.len() > 300 {
                let mut cut = 300;
                while !body.is_char_boundary(cut) {
                    cut -= 1;
                }
                body.truncate(cut);
                body.push('…');
            }
            let _ = writeln!(
                out,
                "  {}. +{:?} {} {} {:?} webhook-id={} body={}",
                i + 1,
                r.at.saturating_duration_since(self.state.started),
                r.method,
                r.path,
                r.version,
                r.header("webhook-id").unwrap_or("-"),
                body
            );
        }
        out
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    shutdown: CancellationToken,
) {
    loop {
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                // E.g. too many open files; keep serving the connections we have.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = tokio::select! {
                _ = shutdown.cancelled() => return,
                tls = acceptor.accept(tcp) => match tls {
                    Ok(tls) => tls,
                    Err(_) => return, // e.g. a client that does not trust the test CA
                },
            };
            let service = service_fn(move |req| handle(state.clone(), req));
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

async fn handle(
    state: Arc<State>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        // The client went away mid-body; nothing worth recording.
        return Ok(hyper::Response::builder()
            .status(400)
            .body(Full::new(Bytes::new()))
            .expect("a valid response"));
    };
    let recorded = RecordedRequest {
        at,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        version: parts.version,
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    // Pick the response in arrival order, under the same lock as the recording.
    let response = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(recorded);
        let scripted = state.script.lock().unwrap().pop_front();
        scripted.unwrap_or_else(|| state.default.lock().unwrap().clone())
    };
    state.arrived.notify_waiters();

    if !response.delay.is_zero() {
        tokio::time::sleep(response.delay).await;
    }
    let mut builder = hyper::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    Ok(builder
        .body(Full::new(response.body))
        .expect("scripted response has a valid status and headers"))
}

/// The test CA and the receiver certificate it issued.
struct TestTls {
    ca_pem_path: PathBuf,
    server_config: Arc<rustls::ServerConfig>,
}

/// The PEM file of the CA behind every test receiver's certificate; pass it to the
/// daemon as `--ca-file`.
pub fn test_ca_pem_path() -> &'static Path {
    &test_tls().ca_pem_path
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads the cached test CA and server certificate, generating them on first use.
fn test_tls() -> &'static TestTls {
    static TLS: OnceLock<TestTls> = OnceLock::new();
    TLS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("herald-test-tls");
        let (chain, key) = match load_server_identity(&dir) {
            Some(identity) => identity,
            None => {
                generate_into(&dir);
                load_server_identity(&dir).expect("load the freshly generated test certificates")
            }
        };
        let mut config = rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the test certificate matches its key");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TestTls {
            ca_pem_path: dir.join("ca.pem"),
            server_config: Arc::new(config),
        }
    })
}

fn load_server_identity(
    dir: &Path,
) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    CertificateDer::from_pem_file(dir.join("ca.pem")).ok()?;
    let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .ok()?
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).ok()?;
    (!chain.is_empty()).then_some((chain, key))
}

/// Writes `ca.pem`, `server.pem` (leaf + CA) and `server.key` into `dir` atomically:
/// generate in a sibling directory, then rename. Concurrent test processes race benignly —
/// the first rename wins and the others use its files.
fn generate_into(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };

    let ca_key = KeyPair::generate().expect("generate the CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "herald test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().expect("generate the server key");
    let mut leaf_params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .expect("server params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("issue the server certificate");

    let parent = dir.parent().expect("the tls dir has a parent");
    std::fs::create_dir_all(parent).expect("create the target tmp dir");
    let staging = tempfile::Builder::new()
        .prefix("herald-test-tls-")
        .tempdir_in(parent)
        .expect("create a staging dir for test certificates");
    std::fs::write(staging.path().join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
    std::fs::write(
        staging.path().join("server.pem"),
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
    )
    .expect("write server.pem");
    std::fs::write(staging.path().join("server.key"), leaf_key.serialize_pem())
        .expect("write server.key");
    // A leftover, unreadable dir from an interrupted run would make the rename fail.
    if dir.exists() && load_server_identity(dir).is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
    // Fails if another process got there first; `staging` is then removed on drop.
    if std::fs::rename(staging.path(), dir).is_ok() {
        let _ = staging.keep();
    }
}

/// The hyper-util client type the tests use against receivers.
pub type HttpsClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled HTTPS client (HTTP/1.1 + HTTP/2) that trusts only the test CA — handy for
/// poking a receiver directly.
pub fn https_client() -> HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(test_ca_pem_path()).expect("read the test CA") {
        roots
            .add(cert.expect("parse the test CA"))
            .expect("add the test CA to the root store");
    }
    let config = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector)
}
