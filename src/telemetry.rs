//! OpenTelemetry traces of every delivery, exported over OTLP/HTTP (contract §7).
//!
//! Off unless `--otlp-endpoint` (or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) names a collector. Off, nothing here runs: the
//! engine gets no [`Tracer`] and builds no span, and no exporter task exists.
//!
//! On, [`Telemetry`] implements the engine's [`Tracer`] port with the OpenTelemetry SDK:
//!
//! - a `herald.route` span (kind consumer) for each event's routing to this daemon's
//!   endpoints (none when it goes to none of them): `herald.event.id`, `herald.event.type`,
//!   `herald.endpoints` (how many endpoints it went to). Its parent is the producer's
//!   `trace_context.traceparent`, when the event carries a valid one;
//! - under it, a `herald.attempt` span (kind client) for each attempt: `herald.webhook.id`,
//!   `herald.event.id`, `herald.event.type`, `herald.delivery.id`, `herald.attempt` (1 for
//!   the first), `http.request.method`, `http.response.status_code` or `error.type` and
//!   `herald.error`, and `herald.duration_ms`; its status is an error unless the receiver
//!   answered 2xx. Its context goes out as the attempt's `traceparent` header.
//!
//! Spans leave in batches from a task on the tokio runtime (the SDK's batch span processor;
//! the standard `OTEL_BSP_*` variables tune it), through the same hyper/rustls stack as
//! deliveries (trusting `--ca-file` too) but without the SSRF guard: the collector is the
//! operator's own. What is queued is flushed at shutdown. The SDK reads the other standard
//! variables itself: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` (the service is
//! `herald` unless they name it), `OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`, `…_PROTOCOL`
//! (`http/protobuf`, the default, or `http/json`), `OTEL_TRACES_SAMPLER`.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use herald_actors::{
    AttemptResult, AttemptSpan, AttemptTrace, DeliveryError, Event, RoutingSpan, TraceParent,
    Tracer,
};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::{info, warn};

/// The standard variables that name a collector (the SDK reads them itself).
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// The path of the traces signal under a collector's base URL.
const TRACES_PATH: &str = "/v1/traces";

/// How long the final flush may take before shutdown goes on without it.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where traces go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtlpTarget {
    /// `--otlp-endpoint`: the traces URL (the base URL given, with `/v1/traces`).
    Endpoint(String),
    /// The standard `OTEL_EXPORTER_OTLP_*ENDPOINT` variables name it.
    Standard,
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{0:?} is not an http:// or https:// URL")]
    Endpoint(String),
    #[error("cannot read the CA file for the OTLP exporter: {0}")]
    Tls(String),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

impl OtlpTarget {
    /// The target of `--otlp-endpoint` when given, else of the standard variables; `None`
    /// when neither names a collector, or `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none` turn tracing off.
    pub fn resolve(flag: Option<String>) -> Result<Option<Self>, TelemetryError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim() == "true")
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none");
        if disabled {
            return Ok(None);
        }
        match flag.filter(|f| !f.trim().is_empty()) {
            Some(base) => Ok(Some(Self::Endpoint(traces_url(&base)?))),
            None if ENDPOINT_VARS.iter().any(|name| var(name).is_some()) => {
                Ok(Some(Self::Standard))
            }
            None => Ok(None),
        }
    }
}

/// The traces URL under a collector's base URL (`http://host:4318` →
/// `http://host:4318/v1/traces`); a URL that already ends so is kept.
fn traces_url(base: &str) -> Result<String, TelemetryError> {
    let bad = || TelemetryError::Endpoint(base.to_owned());
    let parsed = url::Url::parse(base.trim()).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(bad());
    }
    let url = parsed.as_str().trim_end_matches('/');
    if url.ends_with(TRACES_PATH) {
        Ok(url.to_owned())
    } else {
        Ok(format!("{url}{TRACES_PATH}"))
    }
}

/// The running exporter. Hand [`Telemetry::tracer`] to the engine; call
/// [`Telemetry::shutdown`] after the engine has stopped, to flush what is queued.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    tracer: Arc<OtelTracer>,
}

impl Telemetry {
    /// Starts the batch exporter on the current tokio runtime.
    pub fn start(target: &OtlpTarget, ca_file: Option<&Path>) -> Result<Self, TelemetryError> {
        let roots = crate::transport::root_store(ca_file)
            .map_err(|e| TelemetryError::Tls(e.to_string()))?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TelemetryError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = opentelemetry_http::hyper::HyperClient::new(connector, export_timeout(), None);
        let mut exporter = SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(protocol());
        if let OtlpTarget::Endpoint(url) = target {
            exporter = exporter.with_endpoint(url.clone());
        }
        let exporter = exporter.build()?;
        let processor =
            BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource())
            .build();
        let tracer = provider.tracer("herald");
        match target {
            OtlpTarget::Endpoint(url) => info!(endpoint = %url, "exporting traces over OTLP"),
            OtlpTarget::Standard => {
                info!("exporting traces over OTLP to the endpoint of the OTEL_* variables")
            }
        }
        Ok(Self {
            provider: Some(provider),
            tracer: Arc::new(OtelTracer { tracer }),
        })
    }

    /// The engine's port onto this exporter.
    pub fn tracer(&self) -> Arc<dyn Tracer> {
        self.tracer.clone()
    }

    /// Exports what is queued and stops the exporter task (at most [`FLUSH_TIMEOUT`]).
    pub async fn shutdown(mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        // The SDK waits for its exporter task with a blocking call: off the runtime's
        // workers, so that the task it waits for can run.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(FLUSH_TIMEOUT, flushed).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "traces not all exported at shutdown"),
            Ok(Err(_)) | Err(_) => warn!("traces not all exported at shutdown: no answer in time"),
        }
    }
}

impl Drop for Telemetry {
    /// Stopped other than by [`Telemetry::shutdown`] (start-up failed later on): the SDK's
    /// blocking shutdown runs on a thread of its own, never on a runtime worker.
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = std::thread::Builder::new()
                .name("otlp-shutdown".into())
                .spawn(move || provider.shutdown());
        }
    }
}

/// How long one export request may take: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` or
/// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), else the specification's 10 s.
fn export_timeout() -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok()?.trim().parse::<u64>().ok())
    .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// `http/protobuf`, the specification's default, unless `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`
/// or `OTEL_EXPORTER_OTLP_PROTOCOL` ask for `http/json` (the exporter, built with both,
/// would default to JSON).
fn protocol() -> Protocol {
    let asked = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()));
    match asked.as_deref().map(str::trim) {
        Some("http/json") => Protocol::HttpJson,
        Some("http/protobuf") | None => Protocol::HttpBinary,
        Some(other) => {
            warn!(
                protocol = other,
                "unsupported OTLP protocol; using http/protobuf"
            );
            Protocol::HttpBinary
        }
    }
}

/// `service.name` is `herald` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`
/// say otherwise (the SDK reads both).
fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| {
            v.split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    let mut builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if !named {
        builder = builder.with_service_name("herald");
    }
    builder.build()
}

/// The engine's [`Tracer`] over an OpenTelemetry SDK tracer.
#[derive(Debug)]
struct OtelTracer {
    tracer: SdkTracer,
}

/// The parent context of a span: a remote span of the producer's (or the routing's).
fn parent(trace: Option<TraceParent>) -> Context {
    match trace {
        Some(trace) => Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes(trace.trace_id),
            SpanId::from_bytes(trace.parent_id),
            TraceFlags::new(trace.flags),
            true,
            TraceState::default(),
        )),
        None => Context::new(),
    }
}

/// A span's context as a `traceparent`; `None` for an invalid one.
fn traceparent(context: &SpanContext) -> Option<TraceParent> {
    context.is_valid().then(|| TraceParent {
        trace_id: context.trace_id().to_bytes(),
        parent_id: context.span_id().to_bytes(),
        flags: context.trace_flags().to_u8(),
    })
}

impl Tracer for OtelTracer {
    fn routing(&self, event: &Event) -> Box<dyn RoutingSpan> {
        let span = self
            .tracer
            .span_builder(Cow::Borrowed("herald.route"))
            .with_kind(SpanKind::Consumer)
            .with_attributes([
                KeyValue::new("herald.event.id", event.id.to_string()),
                KeyValue::new("herald.event.type", event.event_type.to_string()),
            ])
            .start_with_context(&self.tracer, &parent(event.trace));
        Box::new(OtelSpan(span))
    }

    fn attempt(&self, attempt: AttemptTrace<'_>) -> Box<dyn AttemptSpan> {
        let event = attempt.event;
        let span = self
            .tracer
            .span_builder(Cow::Borrowed("herald.attempt"))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("herald.webhook.id", attempt.webhook_id.to_owned()),
                KeyValue::new("herald.event.id", event.id.to_string()),
                KeyValue::new("herald.event.type", event.event_type.to_string()),
                KeyValue::new(
                    "herald.delivery.id",
                    herald_actors::endpoint::delivery_id(&event.id, attempt.webhook_id),
                ),
                KeyValue::new("herald.attempt", i64::from(attempt.attempt)),
                KeyValue::new("http.request.method", "POST"),
            ])
            .start_with_context(&self.tracer, &parent(attempt.parent));
        Box::new(OtelSpan(span))
    }
}

/// A started SDK span, ended by the engine.
struct OtelSpan(opentelemetry_sdk::trace::Span);

impl RoutingSpan for OtelSpan {
    fn context(&self) -> Option<TraceParent> {
        traceparent(self.0.span_context())
    }

    fn end(self: Box<Self>, endpoints: usize) {
        let mut span = self.0;
        span.set_attribute(KeyValue::new(
            "herald.endpoints",
            i64::try_from(endpoints).unwrap_or(i64::MAX),
        ));
        span.end();
    }
}

impl AttemptSpan for OtelSpan {
    fn context(&self) -> Option<TraceParent> {
        traceparent(self.0.span_context())
    }

    fn end(self: Box<Self>, result: &AttemptResult, elapsed: Duration) {
        let mut span = self.0;
        span.set_attribute(KeyValue::new(
            "herald.duration_ms",
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        ));
        match result {
            Ok(response) => {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(response.status),
                ));
                if !response.is_success() {
                    span.set_attribute(KeyValue::new("error.type", response.status.to_string()));
                    span.set_status(Status::error(format!("HTTP {}", response.status)));
                }
            }
            Err(error) => {
                let message = error.to_string();
                span.set_attribute(KeyValue::new("error.type", error_type(error)));
                span.set_attribute(KeyValue::new("herald.error", message.clone()));
                span.set_status(Status::error(message));
            }
        }
        span.end();
    }
}

/// A low-cardinality name for a transport error (`error.type`).
fn error_type(error: &DeliveryError) -> &'static str {
    match error {
        DeliveryError::Timeout(_) => "timeout",
        DeliveryError::Connect(_) => "connect",
        DeliveryError::Tls(_) => "tls",
        DeliveryError::Io(_) => "io",
        DeliveryError::Blocked(_) => "blocked",
        DeliveryError::InvalidUrl(_) => "invalid_url",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_a_base_url_under_which_traces_go() {
        for (base, url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
            (
                "https://otel.example/prefix",
                "https://otel.example/prefix/v1/traces",
            ),
            (
                "http://collector:4318/v1/traces",
                "http://collector:4318/v1/traces",
            ),
        ] {
            assert_eq!(traces_url(base).unwrap(), url, "{base}");
        }
        for bad in ["", "collector:4318", "ftp://collector/", "not a url"] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn span_contexts_round_trip_as_traceparents() {
        let producer =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let context = parent(Some(producer));
        assert_eq!(traceparent(context.span().span_context()), Some(producer));
        assert_eq!(traceparent(&SpanContext::empty_context()), None);
    }

    #[test]
    fn transport_errors_have_short_types() {
        assert_eq!(error_type(&DeliveryError::Timeout(10)), "timeout");
    }
}
