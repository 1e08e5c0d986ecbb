//! The HTTP API: routes, JSON errors (`{"error": {"code", "message"}}`) and health.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::store::events::FeedHealth;
use crate::store::webhooks::WatchHealth;

/// What request handlers share.
pub struct AppState {
    pub db: mongodb::Database,
    pub feed: Arc<FeedHealth>,
    pub watcher: Arc<WatchHealth>,
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

/// The contract's error shape.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response<Body> {
    json_response(
        status,
        json!({"error": {"code": code, "message": message.into()}}),
    )
}

/// Routes one request.
pub async fn handle(app: Arc<AppState>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, json!({"status": "ok"})),
        (&Method::GET, "/readyz") => readyz(&app).await,
        (_, "/healthz" | "/readyz") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed on {path}", request.method()),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {path}"),
        ),
    }
}

async fn readyz(app: &AppState) -> Response<Body> {
    let ping = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        app.db.run_command(mongodb::bson::doc! {"ping": 1}),
    )
    .await;
    let mongodb = matches!(ping, Ok(Ok(_)));
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
