//! Webhook routes (contract §4): create, list, read, change, delete and rotate the secret
//! of the subscriptions in the `webhooks` collection.
//!
//! Each route reads the same way: parse and validate the body ([`body`], through the one
//! webhook model, [`crate::webhook`]), call the store ([`crate::store::webhooks`], the one
//! door to the collection), render ([`view`]). The daemon's webhook watcher picks every
//! change up through its change stream and applies it to the engine, exactly as for
//! documents written by hand — in every daemon on the database, within its poll interval.
//! Each route also hands what it wrote to this daemon's engine before answering
//! ([`apply_now`]), so an event published after the answer meets the webhook as written.
//!
//! What is returned: `{webhook_id, url, event_types, name, headers, enabled, paused,
//! rate_limit_per_second, created_at, updated_at}`. The signing secret appears only in the
//! answers of create and rotate-secret, and header values are always redacted — they are
//! credentials too (`X-Mixpeek-Secret`). With `--secret-key`, the secret, the rotated-out
//! secrets and every header value are stored sealed ([`secrets`]).

mod body;
mod secrets;
mod view;

use std::time::SystemTime;

use hyper::StatusCode;
use mongodb::bson::Document;
use serde_json::Value;

pub use body::{create_document, patch_update, rotation_secret};
pub use secrets::rotate_secret;

use super::request::path_id;
use super::{json_response, no_content, ApiError, ApiRequest, ApiResult, AppState};
use crate::store::health as health_store;
use crate::store::page::PageLimits;
use crate::store::webhooks::{self as store, ListFilter};
use crate::webhook::new_id;
use secrets::seal_credentials;
use view::{health_view, view};

/// List page size: default and maximum.
/// `GET /v1/webhooks` pages (an empty `cursor` is a 400, as it always was here).
const PAGE: PageLimits = PageLimits {
    default: 50,
    max: 500,
    empty_cursor_is_first_page: true,
};

/// Serializes "is this name free?" with the write that takes it, so two concurrent
/// requests cannot both create the same name (`apply` identifies webhooks by name). One
/// daemon serves the API, so a process-wide lock is enough; names are rarely written.
static NAME_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn name_taken(name: &str) -> ApiError {
    ApiError::conflict(format!("name: another webhook is already named {name:?}"))
}

/// `POST /v1/webhooks` → 201 with the webhook, its `webhook_id` and its `secret`.
pub async fn create(app: &AppState, req: &ApiRequest) -> ApiResult {
    let (mut document, name, secret) = create_document(&app.catalog, req)?;
    seal_credentials(&app.secrets, &mut document);
    let _guard = match &name {
        Some(name) => {
            let guard = NAME_LOCK.lock().await;
            let namespace = document.get_str("namespace_id").ok();
            if store::name_taken(&app.db, name, namespace, None).await? {
                return Err(name_taken(name));
            }
            Some(guard)
        }
        None => None,
    };
    store::insert(&app.db, &mut document, new_id).await?;
    apply_now(app, &document);
    let mut view = view(&document);
    view["secret"] = Value::String(secret);
    Ok(json_response(StatusCode::CREATED, view))
}

/// `GET /v1/webhooks` → `{results, next_cursor}`, sorted by `webhook_id`; filters
/// `event_type` (subscribed to it, `*` included), `enabled`, `limit`, `cursor`.
pub async fn list(app: &AppState, req: &ApiRequest) -> ApiResult {
    let page = req.page(PAGE)?;
    let enabled = match req.query.get("enabled").map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query parameter enabled: {other:?} is neither true nor false"
            )))
        }
    };
    let filter = ListFilter {
        event_type: req.query.get("event_type").cloned(),
        enabled,
        // Checked, and forced for a namespaced key, by `super::auth`.
        namespace_id: req.query.get("namespace_id").cloned(),
    };
    let page = store::list(&app.db, &filter, &page).await?;
    Ok(json_response(StatusCode::OK, page.to_json(view)))
}

/// `GET /v1/webhooks/{id}` → 200 / 404.
pub async fn get(app: &AppState, _req: &ApiRequest, id: &str) -> ApiResult {
    let id = &path_id(id)?;
    let Some(document) = store::get(&app.db, id).await? else {
        return Err(ApiError::not_found("webhook", id));
    };
    let mut webhook = view(&document);
    // What the endpoint actor knows where this daemon runs it; elsewhere (another daemon
    // owns it, or it is disabled) what its owner kept, so every daemon answers the same.
    webhook["health"] = match app.engine.endpoint(id).await.ok().flatten() {
        Some(report) => health_view(Some(&report.health), Some(&report.stats)),
        None => {
            let kept = health_store::get(&app.db, id).await?;
            health_view(kept.map(|k| k.snapshot(SystemTime::now())).as_ref(), None)
        }
    };
    Ok(json_response(StatusCode::OK, webhook))
}

/// `PATCH /v1/webhooks/{id}`: changes the fields given (`headers` replaces the whole map;
/// `null` removes `name`, `headers` or the rate limit) → 200 with the webhook / 404.
pub async fn patch(app: &AppState, req: &ApiRequest, id: &str) -> ApiResult {
    let id = &path_id(id)?;
    let (mut update, new_name) = patch_update(&app.catalog, req)?;
    if let Ok(set) = update.get_document_mut("$set") {
        seal_credentials(&app.secrets, set);
    }
    let _guard = match &new_name {
        Some(name) => {
            let guard = NAME_LOCK.lock().await;
            let Some(current) = store::get(&app.db, id).await? else {
                return Err(ApiError::not_found("webhook", id));
            };
            let namespace = current.get_str("namespace_id").ok();
            if store::name_taken(&app.db, name, namespace, Some(id)).await? {
                return Err(name_taken(name));
            }
            Some(guard)
        }
        None => None,
    };
    match store::update(&app.db, id, update).await? {
        Some(document) => {
            apply_now(app, &document);
            Ok(json_response(StatusCode::OK, view(&document)))
        }
        None => Err(ApiError::not_found("webhook", id)),
    }
}

/// `POST /v1/webhooks/{id}/pause` and `/resume` → 200 with the webhook / 404. Stored as
/// `paused` in the document, where the watcher picks it up like any change; the endpoint
/// actor then holds deliveries (recorded as `pending`) or delivers its backlog at the rate
/// limit. Idempotent; no body is read.
pub async fn set_paused(app: &AppState, _req: &ApiRequest, id: &str, paused: bool) -> ApiResult {
    let id = &path_id(id)?;
    let Some(document) = store::set_paused(&app.db, id, paused).await? else {
        return Err(ApiError::not_found("webhook", id));
    };
    apply_now(app, &document);
    Ok(json_response(StatusCode::OK, view(&document)))
}

/// `DELETE /v1/webhooks/{id}` → 204, also when there was nothing to delete.
pub async fn delete(app: &AppState, _req: &ApiRequest, id: &str) -> ApiResult {
    let id = &path_id(id)?;
    store::delete(&app.db, id).await?;
    health_store::delete(&app.db, id).await?;
    // As for `apply_now`: no event published after the 204 reaches it.
    let _ = app.engine.remove_webhook(id);
    Ok(no_content())
}

/// Hands a webhook document a route just wrote to this daemon's engine, before the answer:
/// the watcher's copy of the change reaches the engine up to a poll interval later, and an
/// event published after the answer must meet the webhook as written (created, changed,
/// paused, re-keyed). Applying it again from the watcher is harmless. A document the watcher
/// would refuse is left to the watcher's verdict (removed).
fn apply_now(app: &AppState, document: &Document) {
    if let Ok(spec) = store::spec_from_doc(document, &app.secrets, SystemTime::now()) {
        let _ = app.engine.upsert_webhook(spec);
    }
}
