//! The HTTP API (contract §4, and `GET /v1/cluster`, `/v1/keys` and `/v1/audit` of §7):
//! routing, authentication and tenant scope ([`auth`]), the audit trail of writes
//! ([`audit`]), body limits, JSON errors, health.
//!
//! Every handler takes the shared [`AppState`] and a fully read [`ApiRequest`] and returns
//! an [`ApiResult`]; failures are [`ApiError`]s, rendered as
//! `{"error": {"code", "message"}}` with a 4xx status (503 when MongoDB is unreachable) —
//! never a 500 or a panic.

pub mod audit;
pub mod auth;
pub mod catalog;
pub mod cluster;
pub mod connections;
pub mod deliveries;
pub mod error;
pub mod events;
pub mod events_batch;
pub mod guard;
pub mod inbound;
pub mod keys;
pub mod openapi;
pub mod request;
pub mod test_event;
pub mod ui;
pub mod webhook_stats;
pub mod webhooks;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

pub use crate::config::MAX_BODY_BYTES;
pub use error::{ApiError, ApiResult};
pub use request::ApiRequest;

use crate::config::Config;
use crate::store::events::FeedHealth;
use crate::store::webhooks::WatchHealth;

/// What request handlers share.
pub struct AppState {
    pub db: mongodb::Database,
    pub config: Arc<Config>,
    pub engine: herald_actors::EngineHandle,
    pub catalog: catalog::Catalog,
    pub feed: Arc<FeedHealth>,
    pub watcher: Arc<WatchHealth>,
    /// Seals webhook and connection secrets on write, opens them on read (`--secret-key`).
    pub secrets: crate::secrets::SecretBox,
    /// Writes concurrent `POST /v1/events` together (group commit).
    pub publisher: crate::store::events::group_commit::GroupCommit,
}

pub type Body = Full<Bytes>;

/// A JSON response.
pub fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// An empty response (204).
pub fn no_content() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// The contract's error shape.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response<Body> {
    ApiError::new(status, code, message).into_response()
}

/// The routes, as `(method, pattern)`; `{x}` is one path segment. The OpenAPI document is
/// checked against this table by a test.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/events"),
    ("GET", "/v1/webhooks/{webhook_id}"),
    ("PATCH", "/v1/webhooks/{webhook_id}"),
    ("DELETE", "/v1/webhooks/{webhook_id}"),
    ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"),
    ("POST", "/v1/webhooks/{webhook_id}/recover"),
    ("POST", "/v1/webhooks/{webhook_id}/pause"),
    ("POST", "/v1/webhooks/{webhook_id}/resume"),
    ("POST", "/v1/webhooks/{webhook_id}/test"),
    ("GET", "/v1/webhooks/{webhook_id}/stats"),
    ("POST", "/v1/events"),
    ("POST", "/v1/events/batch"),
    ("GET", "/v1/deliveries"),
    ("GET", "/v1/deliveries/{delivery_id}"),
    ("POST", "/v1/deliveries/{delivery_id}/retry"),
    ("POST", "/v1/connections"),
    ("GET", "/v1/connections"),
    ("GET", "/v1/connections/{connection_id}"),
    ("DELETE", "/v1/connections/{connection_id}"),
    ("POST", "/v1/webhooks/mux/{connection_id}"),
    ("GET", "/v1/cluster"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys"),
    ("DELETE", "/v1/keys/{key_id}"),
    ("GET", "/v1/audit"),
    ("GET", "/ui/"),
    ("GET", "/ui/{version}/{asset}"),
];

/// Routes one request.
pub async fn handle(app: Arc<AppState>, request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    // An HTTP/1 answer given before the body is read (a 404, 401, 413 by length, 408 …)
    // leaves the body's bytes on the connection: hyper closes it after that answer, so the
    // answer says so, and a client does not send its next request down a socket about to
    // close. (HTTP/2 resets just the stream, and forbids the header.)
    let body_pending =
        parts.version < hyper::Version::HTTP_2 && !hyper::body::Body::is_end_stream(&body);
    match admit(&app, parts, body).await {
        Ok(admitted) => respond(&app, admitted).await,
        Err(response) if body_pending => closing(response),
        Err(response) => response,
    }
}

/// A request that may run: its route, its fully read body, and who called.
struct Admitted {
    route: Route,
    request: ApiRequest,
    /// The caller and what they were admitted to, on keyed routes.
    scope: Option<(auth::Caller, auth::Admitted)>,
    action: Option<audit::Action>,
}

/// Routing, the browser guard, authentication and the bounded body read: everything a
/// request passes before its handler, or the answer that stops it.
async fn admit(
    app: &AppState,
    mut parts: hyper::http::request::Parts,
    body: Incoming,
) -> Result<Admitted, Response<Body>> {
    let path = parts.uri.path().to_owned();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let method = parts.method.clone();

    // Which handler, with its path parameter, or why none.
    let route = route(&method, &segments)?;
    guard::check(&app.config, &parts, !route.is_public()).map_err(ApiError::into_response)?;
    // Who calls, and whether they may: before the body is read.
    let (target, action) = route.access();
    let mut scope = None;
    if !route.is_public() {
        let caller = auth::authenticate(app, &parts.headers)
            .await
            .map_err(ApiError::into_response)?;
        let admitted = auth::admit(app, &caller, &method, &target)
            .await
            .map_err(ApiError::into_response)?;
        parts.extensions.insert(caller.clone());
        scope = Some((caller, admitted));
    }
    if let Route::MuxInbound(id) = &route {
        inbound::mux_before_body(app, id)
            .await
            .map_err(ApiError::into_response)?;
    }
    let limit = route.max_body_bytes(&app.config);
    let mut request = guard::read(&app.config, parts, body, limit)
        .await
        .map_err(ApiError::into_response)?;
    if let Some((caller, _)) = &scope {
        auth::scope_request(caller, &method, &target, &mut request)
            .map_err(ApiError::into_response)?;
    }
    Ok(Admitted {
        route,
        request,
        scope,
        action,
    })
}

/// `response`, telling the client the connection closes after it.
fn closing(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    response
}

/// Runs the handler of an admitted request, and records a write in the audit trail.
async fn respond(app: &AppState, admitted: Admitted) -> Response<Body> {
    let Admitted {
        route,
        request,
        scope,
        action,
    } = admitted;
    let result = match route {
        Route::Healthz => Ok(json_response(StatusCode::OK, json!({"status": "ok"}))),
        Route::Readyz => Ok(readyz(app).await),
        Route::Metrics => Ok(metrics()),
        Route::OpenApi => Ok(openapi::serve(&app.catalog)),
        Route::CreateWebhook => webhooks::create(app, &request).await,
        Route::ListWebhooks => webhooks::list(app, &request).await,
        Route::Catalog => Ok(app.catalog.response()),
        Route::GetWebhook(id) => webhooks::get(app, &request, &id).await,
        Route::PatchWebhook(id) => webhooks::patch(app, &request, &id).await,
        Route::DeleteWebhook(id) => webhooks::delete(app, &request, &id).await,
        Route::RotateSecret(id) => webhooks::rotate_secret(app, &request, &id).await,
        Route::Recover(id) => deliveries::recover(app, &request, &id).await,
        Route::Pause(id) => webhooks::set_paused(app, &request, &id, true).await,
        Route::Resume(id) => webhooks::set_paused(app, &request, &id, false).await,
        Route::PublishEvent => events::publish(app, &request).await,
        Route::PublishBatch => events_batch::publish(app, &request).await,
        Route::ListDeliveries => deliveries::list(app, &request).await,
        Route::GetDelivery(id) => deliveries::get(app, &request, &id).await,
        Route::RetryDelivery(id) => deliveries::retry(app, &request, &id).await,
        Route::CreateConnection => connections::create(app, &request).await,
        Route::ListConnections => connections::list(app, &request).await,
        Route::GetConnection(id) => connections::get(app, &request, &id).await,
        Route::DeleteConnection(id) => connections::delete(app, &request, &id).await,
        Route::MuxInbound(id) => inbound::mux(app, &request, &id).await,
        Route::Cluster => cluster::get(app, &request).await,
        Route::CreateKey => keys::create(app, &request).await,
        Route::ListKeys => keys::list(app, &request).await,
        Route::RevokeKey(id) => keys::revoke(app, &request, &id).await,
        Route::Audit => audit::list(app, &request).await,
        Route::Ui => Ok(ui::serve(&request)),
        Route::TestEvent(id) => test_event::send(app, &request, &id).await,
        Route::WebhookStats(id) => webhook_stats::get(app, &request, &id).await,
    };
    let response = result.unwrap_or_else(ApiError::into_response);
    if let (Some((caller, admitted)), Some(action)) = (&scope, action) {
        audit::record(app, caller, action, admitted, &request, &response).await;
    }
    response
}

enum Route {
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    CreateWebhook,
    ListWebhooks,
    Catalog,
    GetWebhook(String),
    PatchWebhook(String),
    DeleteWebhook(String),
    RotateSecret(String),
    Recover(String),
    Pause(String),
    Resume(String),
    PublishEvent,
    PublishBatch,
    ListDeliveries,
    GetDelivery(String),
    RetryDelivery(String),
    CreateConnection,
    ListConnections,
    GetConnection(String),
    DeleteConnection(String),
    MuxInbound(String),
    Cluster,
    CreateKey,
    ListKeys,
    RevokeKey(String),
    Audit,
    /// The delivery inspector's page and assets ([`ui`]); it checks the method.
    Ui,
    TestEvent(String),
    WebhookStats(String),
}

impl Route {
    /// Health, metrics, the OpenAPI document and inbound provider routes need no API key
    /// (scrapers and orchestrators, like probes, carry none); nor does the inspector's
    /// page, which holds no data and asks its user for a key.
    fn is_public(&self) -> bool {
        matches!(
            self,
            Route::Healthz
                | Route::Readyz
                | Route::Metrics
                | Route::OpenApi
                | Route::MuxInbound(_)
                | Route::Ui
        )
    }

    /// What the route acts on (for the caller's scope) and, for a write, how the audit
    /// trail names it.
    fn access(&self) -> (auth::Target, Option<audit::Action>) {
        use audit::{Action, Changes};
        use auth::Target;
        let webhook = |id: &String, name, changes| {
            (
                Target::Webhook(id.clone()),
                Some(Action::new(name, "webhook", changes)),
            )
        };
        match self {
            Route::Healthz
            | Route::Readyz
            | Route::Metrics
            | Route::OpenApi
            | Route::Catalog
            | Route::MuxInbound(_) => (Target::Open, None),
            Route::CreateWebhook => (
                Target::Webhooks,
                Some(Action::new("webhook.create", "webhook", Changes::Body)),
            ),
            Route::ListWebhooks => (Target::Webhooks, None),
            Route::GetWebhook(id) => (Target::Webhook(id.clone()), None),
            Route::PatchWebhook(id) => webhook(id, "webhook.update", Changes::Body),
            Route::DeleteWebhook(id) => webhook(id, "webhook.delete", Changes::Nothing),
            Route::RotateSecret(id) => webhook(id, "webhook.rotate_secret", Changes::Secret),
            Route::Recover(id) => webhook(id, "webhook.recover", Changes::Body),
            Route::Pause(id) => webhook(id, "webhook.pause", Changes::Paused(true)),
            Route::Resume(id) => webhook(id, "webhook.resume", Changes::Paused(false)),
            Route::PublishEvent => (Target::Events, None),
            Route::PublishBatch => (Target::EventBatch, None),
            Route::ListDeliveries => (Target::Deliveries, None),
            Route::GetDelivery(id) => (Target::Delivery(id.clone()), None),
            Route::RetryDelivery(id) => (
                Target::Delivery(id.clone()),
                Some(Action::new("delivery.retry", "delivery", Changes::Nothing)),
            ),
            Route::CreateConnection => (
                Target::Connections,
                Some(Action::new(
                    "connection.create",
                    "connection",
                    Changes::Body,
                )),
            ),
            Route::ListConnections => (Target::Connections, None),
            Route::GetConnection(id) => (Target::Connection(id.clone()), None),
            Route::DeleteConnection(id) => (
                Target::Connection(id.clone()),
                Some(Action::new(
                    "connection.delete",
                    "connection",
                    Changes::Nothing,
                )),
            ),
            Route::Cluster => (Target::Cluster, None),
            Route::CreateKey => (
                Target::Keys,
                Some(Action::new("key.create", "key", Changes::Body)),
            ),
            Route::ListKeys => (Target::Keys, None),
            Route::RevokeKey(id) => (
                Target::Key(id.clone()),
                Some(Action::new("key.revoke", "key", Changes::Nothing)),
            ),
            Route::Audit => (Target::Audit, None),
            Route::Ui => (Target::Open, None),
            Route::TestEvent(id) => webhook(id, "webhook.test", Changes::Nothing),
            Route::WebhookStats(id) => (Target::Webhook(id.clone()), None),
        }
    }

    /// Largest body this route reads: a batch of events may be larger than one request.
    fn max_body_bytes(&self, config: &Config) -> usize {
        match self {
            Route::PublishBatch => events_batch::MAX_BODY_BYTES,
            Route::MuxInbound(_) => config.inbound_max_body_bytes,
            _ => MAX_BODY_BYTES,
        }
    }
}

fn method_not_allowed(method: &Method, allowed: &str) -> Response<Body> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed here; allowed: {allowed}"),
    );
    if let Ok(value) = hyper::header::HeaderValue::from_str(allowed) {
        response.headers_mut().insert(hyper::header::ALLOW, value);
    }
    response
}

// The error is the finished 404/405 response; it is built once per bad request, so its
// size does not matter.
#[allow(clippy::result_large_err)]
fn route(method: &Method, segments: &[&str]) -> Result<Route, Response<Body>> {
    let m = method.as_str();
    let id = |s: &str| s.to_owned();
    let not_allowed = |allowed| Err(method_not_allowed(method, allowed));
    match segments {
        ["healthz"] => match m {
            "GET" | "HEAD" => Ok(Route::Healthz),
            _ => not_allowed("GET"),
        },
        ["readyz"] => match m {
            "GET" | "HEAD" => Ok(Route::Readyz),
            _ => not_allowed("GET"),
        },
        ["metrics"] => match m {
            "GET" | "HEAD" => Ok(Route::Metrics),
            _ => not_allowed("GET"),
        },
        ["openapi.json"] => match m {
            "GET" => Ok(Route::OpenApi),
            _ => not_allowed("GET"),
        },
        ["v1", "webhooks"] => match m {
            "POST" => Ok(Route::CreateWebhook),
            "GET" => Ok(Route::ListWebhooks),
            _ => not_allowed("GET, POST"),
        },
        ["v1", "webhooks", "events"] => match m {
            "GET" => Ok(Route::Catalog),
            _ => not_allowed("GET"),
        },
        ["v1", "webhooks", "mux", connection] => match m {
            "POST" => Ok(Route::MuxInbound(id(connection))),
            _ => not_allowed("POST"),
        },
        ["v1", "webhooks", webhook] => match m {
            "GET" => Ok(Route::GetWebhook(id(webhook))),
            "PATCH" => Ok(Route::PatchWebhook(id(webhook))),
            "DELETE" => Ok(Route::DeleteWebhook(id(webhook))),
            _ => not_allowed("GET, PATCH, DELETE"),
        },
        ["v1", "webhooks", webhook, "rotate-secret"] => match m {
            "POST" => Ok(Route::RotateSecret(id(webhook))),
            _ => not_allowed("POST"),
        },
        ["v1", "webhooks", webhook, "recover"] => match m {
            "POST" => Ok(Route::Recover(id(webhook))),
            _ => not_allowed("POST"),
        },
        ["v1", "webhooks", webhook, "pause"] => match m {
            "POST" => Ok(Route::Pause(id(webhook))),
            _ => not_allowed("POST"),
        },
        ["v1", "webhooks", webhook, "resume"] => match m {
            "POST" => Ok(Route::Resume(id(webhook))),
            _ => not_allowed("POST"),
        },
        ["v1", "events"] => match m {
            "POST" => Ok(Route::PublishEvent),
            _ => not_allowed("POST"),
        },
        ["v1", "events", "batch"] => match m {
            "POST" => Ok(Route::PublishBatch),
            _ => not_allowed("POST"),
        },
        ["v1", "deliveries"] => match m {
            "GET" => Ok(Route::ListDeliveries),
            _ => not_allowed("GET"),
        },
        ["v1", "deliveries", delivery] => match m {
            "GET" => Ok(Route::GetDelivery(id(delivery))),
            _ => not_allowed("GET"),
        },
        ["v1", "deliveries", delivery, "retry"] => match m {
            "POST" => Ok(Route::RetryDelivery(id(delivery))),
            _ => not_allowed("POST"),
        },
        ["v1", "connections"] => match m {
            "POST" => Ok(Route::CreateConnection),
            "GET" => Ok(Route::ListConnections),
            _ => not_allowed("GET, POST"),
        },
        ["v1", "connections", connection] => match m {
            "GET" => Ok(Route::GetConnection(id(connection))),
            "DELETE" => Ok(Route::DeleteConnection(id(connection))),
            _ => not_allowed("GET, DELETE"),
        },
        ["v1", "cluster"] => match m {
            "GET" => Ok(Route::Cluster),
            _ => not_allowed("GET"),
        },
        ["v1", "keys"] => match m {
            "POST" => Ok(Route::CreateKey),
            "GET" => Ok(Route::ListKeys),
            _ => not_allowed("GET, POST"),
        },
        ["v1", "keys", key] => match m {
            "DELETE" => Ok(Route::RevokeKey(id(key))),
            _ => not_allowed("DELETE"),
        },
        ["v1", "audit"] => match m {
            "GET" => Ok(Route::Audit),
            _ => not_allowed("GET"),
        },
        ["ui", ..] => Ok(Route::Ui),
        ["v1", "webhooks", webhook, "test"] => match m {
            "POST" => Ok(Route::TestEvent(id(webhook))),
            _ => not_allowed("POST"),
        },
        ["v1", "webhooks", webhook, "stats"] => match m {
            "GET" => Ok(Route::WebhookStats(id(webhook))),
            _ => not_allowed("GET"),
        },
        _ => Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for /{}", segments.join("/")),
        )),
    }
}

async fn readyz(app: &AppState) -> Response<Body> {
    let ping = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        crate::store::ping(&app.db),
    )
    .await;
    let mongodb = matches!(ping, Ok(true));
    let feed = app.feed.live.load(Ordering::Relaxed);
    let webhooks = app.watcher.live.load(Ordering::Relaxed);
    let ready = mongodb && feed && webhooks;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        json!({"ready": ready, "mongodb": mongodb, "event_stream": feed, "webhook_stream": webhooks}),
    )
}

/// `GET /metrics`: the Prometheus text exposition format.
fn metrics() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(crate::metrics::render())));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod audit_actions {
    use super::*;

    /// Every action a route records in the audit trail is one the OpenAPI document lists
    /// (schemathesis found `webhook.test` missing from `AuditRecord.action`).
    #[test]
    fn every_audited_action_is_in_the_openapi_enum() {
        let document: serde_json::Value = serde_json::from_str(openapi::DOCUMENT).unwrap();
        let listed =
            &document["components"]["schemas"]["AuditRecord"]["properties"]["action"]["enum"];
        let listed: Vec<&str> = listed
            .as_array()
            .expect("AuditRecord.action has an enum")
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        let mut audited = 0;
        for (method, pattern) in ROUTES {
            let method: Method = method.parse().unwrap();
            let path = pattern
                .split('/')
                .map(|s| if s.starts_with('{') { "x_1" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
            let Ok(route) = route(&method, &segments) else {
                panic!("{method} {pattern} does not route");
            };
            if let (_, Some(action)) = route.access() {
                assert!(
                    listed.contains(&action.name),
                    "{method} {pattern} records {:?}, which AuditRecord.action does not list",
                    action.name
                );
                audited += 1;
            }
        }
        assert!(audited >= 13, "only {audited} audited routes found");
    }
}
