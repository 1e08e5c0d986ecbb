//! The load bench's HTTPS receiver, run as a child process (`load --receiver DIR`) so that
//! it never shares a scheduler with herald.
//!
//! Paths decide behaviour: `/ok/...` answers 200 at once, `/hang/...` never answers, and
//! `/tally/...` answers 200 at once and also counts, per path, how often each event (the
//! `webhook-id` header) came, and when it first came. A plain-HTTP control port serves
//! `GET /stats` (requests seen, and insert→receipt latencies when `/ok` bodies carry
//! `"t_ns":<unix nanos>`), `GET /tally` (per `/tally` path: requests and distinct events),
//! `GET /tally/resumed?after_ns=T` (per `/tally` path: when it first received an event
//! whose `t_ns` is T or later) and `POST /reset` (everything, tallies included).

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Default)]
struct Stats {
    ok: AtomicU64,
    hung: AtomicU64,
    latencies_ns: Mutex<Vec<u64>>,
    /// `/tally` paths: what came to each.
    tallies: Mutex<HashMap<String, Tally>>,
}

/// What one `/tally` path received.
#[derive(Default)]
struct Tally {
    requests: u64,
    /// Per event id: copies received.
    copies: HashMap<String, u32>,
    /// (the body's `t_ns`, when it was received), in order of receipt; for
    /// `/tally/resumed`.
    received: Vec<(u64, u64)>,
}

impl Stats {
    fn record_tally(&self, path: &str, event_id: Option<&str>, sent_ns: Option<u64>) {
        let mut tallies = self.tallies.lock().unwrap();
        let tally = tallies.entry(path.to_owned()).or_default();
        tally.requests += 1;
        if let Some(id) = event_id {
            *tally.copies.entry(id.to_owned()).or_default() += 1;
        }
        if let Some(t) = sent_ns {
            tally.received.push((t, now_ns()));
        }
    }

    /// `GET /tally`: `{path: {"requests": n, "distinct": n}}`.
    fn tally_summary(&self) -> serde_json::Value {
        let tallies = self.tallies.lock().unwrap();
        tallies
            .iter()
            .map(|(path, t)| {
                (
                    path.clone(),
                    serde_json::json!({"requests": t.requests, "distinct": t.copies.len()}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// `GET /tally/resumed?after_ns=T`: `{path: first receipt (unix ns) of an event sent at T
    /// or later}`, for the paths that have had one.
    fn tally_resumed(&self, after_ns: u64) -> serde_json::Value {
        let tallies = self.tallies.lock().unwrap();
        tallies
            .iter()
            .filter_map(|(path, t)| {
                let first = t
                    .received
                    .iter()
                    .filter(|(sent, _)| *sent >= after_ns)
                    .map(|(_, at)| *at)
                    .min()?;
                Some((path.clone(), serde_json::json!(first)))
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// `after_ns=123` in a query string.
fn after_ns(query: Option<&str>) -> u64 {
    query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("after_ns="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `"t_ns":123` anywhere in the body.
fn sent_at(body: &[u8]) -> Option<u64> {
    let needle = b"\"t_ns\":";
    let at = body.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let digits: Vec<u8> = body[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Generates a CA and a leaf for 127.0.0.1/localhost in `dir` (ca.pem, server.pem, server.key).
pub fn generate_tls(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "herald load bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(
        dir.join("server.pem"),
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
    )
    .unwrap();
    std::fs::write(dir.join("server.key"), leaf_key.serialize_pem()).unwrap();
}

/// Runs the receiver forever; prints `PORTS <https> <control>` once listening.
pub fn run(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "PORTS {} {}",
            https.local_addr().unwrap().port(),
            control.local_addr().unwrap().port()
        );
        let stats = Arc::new(Stats::default());

        let control_stats = stats.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = control.accept().await else {
                    continue;
                };
                let stats = control_stats.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let stats = stats.clone();
                        async move {
                            if req.method() == hyper::Method::POST {
                                stats.ok.store(0, Ordering::SeqCst);
                                stats.hung.store(0, Ordering::SeqCst);
                                stats.latencies_ns.lock().unwrap().clear();
                                stats.tallies.lock().unwrap().clear();
                            }
                            let body = match req.uri().path() {
                                "/tally" => stats.tally_summary(),
                                "/tally/resumed" => {
                                    stats.tally_resumed(after_ns(req.uri().query()))
                                }
                                _ => serde_json::json!({
                                "ok": stats.ok.load(Ordering::SeqCst),
                                "hung": stats.hung.load(Ordering::SeqCst),
                                "latencies_ns": *stats.latencies_ns.lock().unwrap(),
                                }),
                            };
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                                body.to_string(),
                            ))))
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });

        loop {
            let Ok((stream, _)) = https.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let stats = stats.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |req: Request<Incoming>| {
                    let stats = stats.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let hang = path.starts_with("/hang");
                        let event_id = req
                            .headers()
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if hang {
                            stats.hung.fetch_add(1, Ordering::SeqCst);
                            std::future::pending::<()>().await;
                        }
                        if path.starts_with("/tally/") {
                            stats.record_tally(&path, event_id.as_deref(), sent_at(&body));
                        } else if let Some(t) = sent_at(&body) {
                            stats
                                .latencies_ns
                                .lock()
                                .unwrap()
                                .push(now_ns().saturating_sub(t));
                        }
                        stats.ok.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
}
