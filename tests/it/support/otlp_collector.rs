//! An OTLP/HTTP trace collector for integration tests.
//!
//! [`Collector::start`] listens on `127.0.0.1:0` (plain HTTP/1.1, as a local collector
//! does), decodes every `POST /v1/traces` (`http/protobuf`, the exporter's default) and
//! keeps its spans, flattened into [`CollectedSpan`]s; it answers 200 with an empty export
//! response. Dropping it closes the listener.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One exported span, as a test reads it.
#[derive(Debug, Clone)]
pub struct CollectedSpan {
    pub name: String,
    /// Lower-case hex.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub status_message: String,
    pub attributes: HashMap<String, Value>,
    /// The resource's `service.name`.
    pub service_name: Option<String>,
}

impl CollectedSpan {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }

    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(Value::as_str)
    }

    pub fn int_attr(&self, key: &str) -> Option<i64> {
        self.attr(key).and_then(Value::as_i64)
    }
}

#[derive(Default)]
struct Seen {
    requests: usize,
    spans: Vec<CollectedSpan>,
}

/// The collector; `url` is its base URL (the exporter appends `/v1/traces`).
pub struct Collector {
    pub url: String,
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Collector {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = CancellationToken::new();
        let (state, token) = (seen.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                };
                let state = state.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = connection => {}
                    }
                });
            }
        });
        Self {
            url: format!("http://{addr}"),
            addr,
            seen,
            stop,
        }
    }

    /// Export requests received so far.
    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().requests
    }

    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.seen.lock().unwrap().spans.clone()
    }

    /// Waits until the spans received satisfy `done` (the batch exporter sends every few
    /// seconds); panics with `what` and what it has after `deadline`.
    pub async fn wait_for(
        &self,
        deadline: Duration,
        what: &str,
        mut done: impl FnMut(&[CollectedSpan]) -> bool,
    ) -> Vec<CollectedSpan> {
        let until = Instant::now() + deadline;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < until,
                "collector: timed out waiting for {what}; got {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn handle(
    seen: Arc<Mutex<Seen>>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let path_ok = req.method() == hyper::Method::POST && req.uri().path() == "/v1/traces";
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let decoded = path_ok
        .then(|| ExportTraceServiceRequest::decode(body.as_ref()).ok())
        .flatten();
    let Some(export) = decoded else {
        eprintln!("collector: refused a request of {} bytes", body.len());
        let mut response = hyper::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
        return Ok(response);
    };
    let mut seen = seen.lock().unwrap();
    seen.requests += 1;
    for resource_spans in export.resource_spans {
        let service_name = resource_spans.resource.as_ref().and_then(|r| {
            attributes(&r.attributes)
                .get("service.name")
                .and_then(|v| v.as_str().map(str::to_owned))
        });
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let (status_code, status_message) = span
                    .status
                    .as_ref()
                    .map_or((0, String::new()), |s| (s.code, s.message.clone()));
                seen.spans.push(CollectedSpan {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    status_code,
                    status_message,
                    attributes: attributes(&span.attributes),
                    service_name: service_name.clone(),
                });
            }
        }
    }
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    Ok(response)
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, Value> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => Value::from(s.clone()),
                Some(AnyValue::IntValue(i)) => Value::from(*i),
                Some(AnyValue::BoolValue(b)) => Value::from(*b),
                Some(AnyValue::DoubleValue(d)) => Value::from(*d),
                Some(other) => Value::from(format!("{other:?}")),
                None => Value::Null,
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
