//! Misbehaving HTTPS receivers for the receiver-chaos stories.
//!
//! [`ChaosReceiver::start`] listens on `127.0.0.1:0` and speaks TLS with a certificate from
//! [`ChaosCa`], then does whatever its [`Behaviour`] says: reset the connection halfway
//! through a status line, trickle its answer one byte a second, stream an enormous body,
//! close every connection after one response, or speak HTTP/2 only. HTTP/1.1 behaviours
//! are written by hand on the raw TLS stream, so the misbehaviour is exactly what the test
//! names rather than whatever a server library would allow.
//!
//! Every receiver counts what happened at each layer — TCP connections accepted, TLS
//! handshakes completed, requests read, body bytes written — so a test can tell "never
//! dialled" from "dialled and refused".

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How a [`ChaosReceiver`] treats each connection once the TLS handshake is done.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// HTTP/1.1 keep-alive, `200 OK` with an empty body to every request.
    Ok,
    /// Reads the request, writes `partial` (e.g. the first bytes of a status line), then
    /// resets the TCP connection (`SO_LINGER` 0: an RST, no TLS close_notify).
    ResetMidResponse { partial: &'static [u8] },
    /// Reads the request, then sends a complete `200 OK` response one byte every `every`.
    Trickle { every: Duration },
    /// Reads the request, answers `200 OK` with `len` bytes of body — announced by
    /// `content-length`, or `chunked` — written as fast as the client reads them.
    HugeBody { len: u64, chunked: bool },
    /// Answers `200 OK` to one request, then closes the connection. With `announce` the
    /// response says `connection: close`; without, the server just hangs up afterwards,
    /// like an idle-timeout of zero.
    CloseAfterEachResponse { announce: bool },
    /// HTTP/2 only (ALPN offers `h2` alone), `200 OK` to every request, through hyper.
    Http2Only,
}

/// What a receiver saw, layer by layer.
#[derive(Debug, Default)]
struct Stats {
    connections: AtomicUsize,
    handshakes: AtomicUsize,
    requests: AtomicUsize,
    body_bytes_written: AtomicU64,
    /// Set when a [`Behaviour::HugeBody`] wrote its whole body.
    body_completed: AtomicBool,
    /// The HTTP version of every request, in arrival order.
    versions: Mutex<Vec<hyper::Version>>,
}

/// A running misbehaving receiver; dropping it stops the listener and every connection.
#[derive(Debug)]
pub struct ChaosReceiver {
    /// `https://127.0.0.1:PORT/hook`.
    pub url: String,
    pub addr: SocketAddr,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
}

impl ChaosReceiver {
    /// Starts a receiver with a certificate from [`chaos_ca`] valid for `localhost`,
    /// `127.0.0.1` and `::1`.
    pub async fn start(behaviour: Behaviour) -> ChaosReceiver {
        let alpn: &[&[u8]] = match behaviour {
            Behaviour::Http2Only => &[b"h2"],
            _ => &[b"http/1.1"],
        };
        let tls = chaos_ca().server_config(&["localhost", "127.0.0.1", "::1"], false, alpn);
        Self::start_with_tls(behaviour, tls).await
    }

    /// Starts a receiver presenting the identity in `tls`.
    pub async fn start_with_tls(
        behaviour: Behaviour,
        tls: Arc<rustls::ServerConfig>,
    ) -> ChaosReceiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the chaos receiver to 127.0.0.1:0");
        let addr = listener.local_addr().expect("chaos receiver address");
        let stats = Arc::new(Stats::default());
        let shutdown = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(tls),
            behaviour,
            Arc::clone(&stats),
            shutdown.clone(),
        ));
        ChaosReceiver {
            url: format!("https://127.0.0.1:{}/hook", addr.port()),
            addr,
            stats,
            shutdown,
        }
    }

    /// This receiver's port behind another host spelling, e.g. `https://2130706433:PORT/`.
    pub fn url_with_host(&self, host: &str) -> String {
        format!("https://{host}:{}/hook", self.addr.port())
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.stats.handshakes.load(Ordering::SeqCst)
    }

    /// Complete requests (head and body) read so far.
    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Response body bytes handed to TLS so far (a [`Behaviour::HugeBody`]).
    pub fn body_bytes_written(&self) -> u64 {
        self.stats.body_bytes_written.load(Ordering::SeqCst)
    }

    /// Whether a [`Behaviour::HugeBody`] ever managed to write its whole body.
    pub fn body_completed(&self) -> bool {
        self.stats.body_completed.load(Ordering::SeqCst)
    }

    /// The HTTP version of every request so far.
    pub fn versions(&self) -> Vec<hyper::Version> {
        self.stats.versions.lock().unwrap().clone()
    }
}

impl Drop for ChaosReceiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    behaviour: Behaviour,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
    loop {
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        stats.connections.fetch_add(1, Ordering::SeqCst);
        let acceptor = acceptor.clone();
        let behaviour = behaviour.clone();
        let stats = Arc::clone(&stats);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = tokio::select! {
                _ = shutdown.cancelled() => return,
                tls = acceptor.accept(tcp) => match tls {
                    Ok(tls) => tls,
                    // E.g. a client that rejected our certificate.
                    Err(_) => return,
                },
            };
            stats.handshakes.fetch_add(1, Ordering::SeqCst);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = serve(tls, behaviour, stats) => {}
            }
        });
    }
}

/// Runs `behaviour` on one connection until it ends or breaks.
async fn serve(mut tls: TlsStream<TcpStream>, behaviour: Behaviour, stats: Arc<Stats>) {
    let mut buf = Vec::new();
    match behaviour {
        Behaviour::Http2Only => serve_h2(tls, stats).await,
        Behaviour::Ok => {
            while read_request(&mut tls, &mut buf, &stats).await {
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                if write_flush(&mut tls, ok).await.is_err() {
                    return;
                }
            }
        }
        Behaviour::ResetMidResponse { partial } => {
            if !read_request(&mut tls, &mut buf, &stats).await {
                return;
            }
            let _ = write_flush(&mut tls, partial).await;
            let (tcp, _) = tls.into_inner();
            // An RST instead of a FIN, and no TLS close_notify: the rudest hang-up there is.
            let _ = tcp.set_zero_linger();
            drop(tcp);
        }
        Behaviour::Trickle { every } => {
            if !read_request(&mut tls, &mut buf, &stats).await {
                return;
            }
            for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n" {
                if write_flush(&mut tls, &[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(every).await;
            }
        }
        Behaviour::HugeBody { len, chunked } => {
            if !read_request(&mut tls, &mut buf, &stats).await {
                return;
            }
            let _ = write_huge_body(&mut tls, len, chunked, &stats).await;
        }
        Behaviour::CloseAfterEachResponse { announce } => {
            if !read_request(&mut tls, &mut buf, &stats).await {
                return;
            }
            let response: &[u8] = if announce {
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
            };
            if write_flush(&mut tls, response).await.is_ok() {
                // close_notify and FIN.
                let _ = tls.shutdown().await;
            }
        }
    }
}

async fn serve_h2(tls: TlsStream<TcpStream>, stats: Arc<Stats>) {
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let stats = Arc::clone(&stats);
        async move {
            use http_body_util::BodyExt;
            let version = request.version();
            let _ = request.into_body().collect().await;
            stats.versions.lock().unwrap().push(version);
            stats.requests.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::new())))
        }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

async fn write_flush<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Streams a `200 OK` with `len` zero bytes of body in 64 KiB writes, counting what was
/// handed to TLS; stops at the first write error (the client hung up).
async fn write_huge_body<S: AsyncWrite + Unpin>(
    stream: &mut S,
    len: u64,
    chunked: bool,
    stats: &Stats,
) -> io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let head = if chunked {
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_owned()
    } else {
        format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n")
    };
    write_flush(stream, head.as_bytes()).await?;
    let zeros = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        if chunked {
            stream.write_all(format!("{n:x}\r\n").as_bytes()).await?;
        }
        stream.write_all(&zeros[..n]).await?;
        if chunked {
            stream.write_all(b"\r\n").await?;
        }
        stats
            .body_bytes_written
            .fetch_add(n as u64, Ordering::SeqCst);
        left -= n as u64;
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    stream.flush().await?;
    stats.body_completed.store(true, Ordering::SeqCst);
    Ok(())
}

/// Reads one HTTP/1.1 request (head, then a `content-length` body) off `stream`, keeping
/// any bytes of the next request in `buf`. `false` when the client hung up or sent
/// something unreadable.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    stats: &Stats,
) -> bool {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body_len = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let total = end + 4 + body_len;
            while buf.len() < total {
                match stream.read_buf(buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {}
                }
            }
            buf.drain(..total);
            stats.versions.lock().unwrap().push(hyper::Version::HTTP_11);
            stats.requests.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        if buf.len() > 1 << 20 {
            return false;
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// A certificate authority for chaos receivers, generated in memory once per process.
pub struct ChaosCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

impl std::fmt::Debug for ChaosCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaosCa").finish_non_exhaustive()
    }
}

/// The process-wide [`ChaosCa`].
pub fn chaos_ca() -> &'static ChaosCa {
    static CA: OnceLock<ChaosCa> = OnceLock::new();
    CA.get_or_init(ChaosCa::generate)
}

impl ChaosCa {
    fn generate() -> Self {
        let key = KeyPair::generate().expect("generate the chaos CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "herald chaos CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign the chaos CA");
        ChaosCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server configuration presenting a certificate for `names` issued by this CA —
    /// one that expired in 2021 when `expired` — offering `alpn` protocols.
    pub fn server_config(
        &self,
        names: &[&str],
        expired: bool,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().expect("generate a leaf key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("issue a leaf certificate");
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the leaf certificate matches its key");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A PEM bundle trusting both the chaos CA and the regular test receivers' CA (`test_ca`),
/// for `--ca-file`, so one daemon can talk to both kinds of receiver. Kept for the life of
/// the process.
pub fn chaos_ca_bundle(test_ca: &Path) -> &'static Path {
    static BUNDLE: OnceLock<tempfile::TempPath> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let test_pem = std::fs::read_to_string(test_ca).expect("read the test CA");
        let file = tempfile::Builder::new()
            .prefix("herald-chaos-ca-")
            .suffix(".pem")
            .tempfile()
            .expect("create the CA bundle");
        std::fs::write(file.path(), format!("{}{}", chaos_ca().pem, test_pem))
            .expect("write the CA bundle");
        file.into_temp_path()
    })
}
