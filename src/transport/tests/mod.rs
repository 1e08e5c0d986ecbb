//! The transport's tests by topic, and their scaffolding: a TLS receiver on 127.0.0.1 that
//! records what reaches it.

mod delivery;
mod failures;
mod guard;
mod origins;
mod request;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use herald_actors::OutboundRequest;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertifiedKey, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{HttpsTransport, TransportOptions};
use crate::ssrf::SsrfGuard;

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
        trace: None,
    }
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}
