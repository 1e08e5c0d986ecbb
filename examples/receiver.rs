//! A webhook receiver for demos: HTTPS on its own throwaway CA, Standard Webhooks signature
//! verification, and one line per delivery.
//!
//! ```text
//! cargo run --example receiver -- --secret whsec_... --cert-out /tmp/receiver-ca.pem \
//!     [--shared-secret VALUE] [--fail-first 2] [--listen 127.0.0.1:9443]
//! herald serve --ca-file /tmp/receiver-ca.pem --allow-private-networks 127.0.0.1/32
//! ```
//!
//! Each request is checked the way a production receiver should: the signature over
//! `{webhook-id}.{webhook-timestamp}.{body}` (401 if no signature matches), the timestamp
//! (401 if more than five minutes off, against replays), and, when `--shared-secret` is
//! given, the `X-Mixpeek-Secret` header (401). Accepted events are answered 200, except
//! that the first `--fail-first` requests get a 500 to show herald's retries.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use herald_actors::signing::{verify_header, SigningKey};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How far a `webhook-timestamp` may be from now before the request counts as a replay.
const TOLERANCE_SECS: i64 = 5 * 60;

#[derive(Debug, Parser)]
#[command(about = "An HTTPS webhook receiver that verifies herald's signatures")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
    /// The webhook's signing secret (`whsec_...`).
    #[arg(long, env = "RECEIVER_SECRET")]
    secret: String,
    /// Expected value of the `X-Mixpeek-Secret` header; unchecked when absent.
    #[arg(long, env = "RECEIVER_SHARED_SECRET")]
    shared_secret: Option<String>,
    /// Answer 500 to the first N verified requests, to show retries.
    #[arg(long, default_value_t = 0)]
    fail_first: u64,
    /// Write the PEM of the CA that issued this receiver's certificate here
    /// (give it to herald as `--ca-file`).
    #[arg(long)]
    cert_out: Option<PathBuf>,
}

struct Receiver {
    key: SigningKey,
    shared_secret: Option<String>,
    fail_first: u64,
    /// Verified requests so far (the `--fail-first` counter).
    verified: AtomicU64,
    /// Requests seen per event id: the attempt number.
    attempts: Mutex<HashMap<String, u64>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let key = SigningKey::parse(&args.secret)
        .with_context(|| "--secret must be the webhook's whsec_... secret")?;

    let (ca_pem, tls_config) = self_signed_tls(args.listen.ip())?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    if let Some(path) = &args.cert_out {
        std::fs::write(path, &ca_pem).with_context(|| format!("write {}", path.display()))?;
    }
    let acceptor = TlsAcceptor::from(Arc::new(tls_config));
    let receiver = Arc::new(Receiver {
        key,
        shared_secret: args.shared_secret,
        fail_first: args.fail_first,
        verified: AtomicU64::new(0),
        attempts: Mutex::new(HashMap::new()),
    });

    let addr = listener.local_addr()?;
    println!("receiver listening on https://{addr}/ (any path)");
    match &args.cert_out {
        Some(path) => println!(
            "run herald with: --ca-file {} --allow-private-networks {}/32",
            path.display(),
            addr.ip()
        ),
        None => println!("(pass --cert-out PATH to get the CA for herald's --ca-file)"),
    }

    loop {
        let (tcp, peer) = tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                println!("bye");
                return Ok(());
            }
            accepted = listener.accept() => accepted?,
        };
        let acceptor = acceptor.clone();
        let receiver = receiver.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    eprintln!("{} TLS handshake with {peer} failed: {e}", now_rfc3339());
                    return;
                }
            };
            let service = service_fn(move |req| {
                let receiver = receiver.clone();
                async move { Ok::<_, Infallible>(receiver.handle(req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

impl Receiver {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::POST {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "POST only");
        }
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return reply(StatusCode::BAD_REQUEST, &format!("reading body: {e}")),
        };
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());

        let (Some(id), Some(timestamp), Some(signature)) = (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        ) else {
            return self.reject(
                StatusCode::BAD_REQUEST,
                "-",
                None,
                "missing webhook-* headers",
            );
        };
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(id.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        let Ok(timestamp) = timestamp.parse::<i64>() else {
            return self.reject(
                StatusCode::BAD_REQUEST,
                id,
                Some(attempt),
                "webhook-timestamp is not a number",
            );
        };
        if !verify_header(&self.key, id, timestamp, &body, signature) {
            return self.reject(StatusCode::UNAUTHORIZED, id, Some(attempt), "sig=BAD");
        }
        let skew = unix_now() - timestamp;
        if skew.abs() > TOLERANCE_SECS {
            return self.reject(
                StatusCode::UNAUTHORIZED,
                id,
                Some(attempt),
                &format!("sig=ok but timestamp {skew}s off (tolerance {TOLERANCE_SECS}s)"),
            );
        }
        if let Some(expected) = &self.shared_secret {
            if header("x-mixpeek-secret") != Some(expected.as_str()) {
                return self.reject(
                    StatusCode::UNAUTHORIZED,
                    id,
                    Some(attempt),
                    "sig=ok but wrong X-Mixpeek-Secret",
                );
            }
        }

        let payload: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let event_type = payload["event_type"].as_str().unwrap_or("?");
        let data = payload.get("data").cloned().unwrap_or_default();
        let status = if self.verified.fetch_add(1, Ordering::Relaxed) < self.fail_first {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        // The trace this attempt belongs to, when the event carried one (or herald traces).
        let trace = header("traceparent")
            .map(|t| format!(" traceparent={t}"))
            .unwrap_or_default();
        println!(
            "{} {id} {event_type} attempt={attempt} sig=ok -> {}{trace} data={data}",
            now_rfc3339(),
            status.as_u16()
        );
        reply(
            status,
            if status.is_success() {
                "ok"
            } else {
                "failing on purpose (--fail-first)"
            },
        )
    }

    fn reject(
        &self,
        status: StatusCode,
        id: &str,
        attempt: Option<u64>,
        why: &str,
    ) -> Response<Full<Bytes>> {
        let attempt = attempt.map_or_else(|| "-".to_owned(), |n| n.to_string());
        println!(
            "{} {id} attempt={attempt} rejected -> {}: {why}",
            now_rfc3339(),
            status.as_u16()
        );
        reply(status, why)
    }
}

fn reply(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "message": message }).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A throwaway CA and a server certificate it issued for localhost, 127.0.0.1, ::1 (and
/// the listen address); returns the CA's PEM and the server's TLS config.
fn self_signed_tls(listen_ip: IpAddr) -> anyhow::Result<(String, rustls::ServerConfig)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "herald example receiver CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !listen_ip.is_unspecified() && !names.contains(&listen_ip.to_string()) {
        names.push(listen_ip.to_string());
    }
    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(names)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

    let chain = vec![leaf_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::from_pem_slice(leaf_key.serialize_pem().as_bytes())?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((ca_cert.pem(), config))
}
