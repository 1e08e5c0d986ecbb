//! API keys (contract §7): `POST /v1/keys`, `GET /v1/keys`, `DELETE /v1/keys/{key_id}`.
//!
//! Only admin keys reach these routes ([`super::auth`]); a namespaced admin key sees and
//! makes keys of its own namespace only. The key itself is in the answer of `POST` and
//! nowhere else: it is stored as its SHA-256 ([`crate::store::keys`]). Revoking is
//! `DELETE`, answered 204; an unknown `key_id` is a 404 rather than the idempotent 204 of
//! other deletes, because a mistyped revoke would otherwise leave the key meant working.

use hyper::StatusCode;
use mongodb::bson::{doc, DateTime, Document};
use serde::Deserialize;
use serde_json::{json, Value};

use super::request::path_id;
use super::{json_response, no_content, ApiError, ApiRequest, ApiResult, AppState};
use crate::store::is_duplicate_key;
use crate::store::keys::{self as store, Role};
use crate::store::page::PageLimits;

const PAGE: PageLimits = PageLimits {
    default: 50,
    max: 500,
    empty_cursor_is_first_page: true,
};

/// The body of `POST /v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    role: String,
    #[serde(default)]
    namespace_id: Option<String>,
}

/// `POST /v1/keys` → 201 `{key_id, key, namespace_id, role, created_at, prefix}`.
pub async fn create(app: &AppState, req: &ApiRequest) -> ApiResult {
    let body: CreateKey = req.json()?;
    let role = Role::parse(&body.role)
        .ok_or_else(|| ApiError::invalid_field("role", "must be \"admin\" or \"read\""))?;
    if let Some(namespace_id) = &body.namespace_id {
        crate::namespace::validate(namespace_id)
            .map_err(|e| ApiError::invalid_field("namespace_id", e))?;
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (id, key) = store::generate();
        let mut document = doc! {
            "_id": &id,
            "hash": store::hash(&key),
            "prefix": store::display_prefix(&key),
            "role": role.as_str(),
            "created_at": DateTime::now(),
        };
        if let Some(namespace_id) = &body.namespace_id {
            document.insert("namespace_id", namespace_id);
        }
        match store::insert(&app.db, document.clone()).await {
            Ok(()) => {
                tracing::info!(key_id = %id, role = role.as_str(), namespace_id = ?body.namespace_id, "API key created");
                let mut answer = view(&document);
                answer["key"] = Value::String(key);
                return Ok(json_response(StatusCode::CREATED, answer));
            }
            // 64 random bits of id collided: draw again.
            Err(e) if is_duplicate_key(&e) && attempts < 3 => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `GET /v1/keys` → `{results, next_cursor}` by `key_id`, never a key or its hash;
/// filter `namespace_id`.
pub async fn list(app: &AppState, req: &ApiRequest) -> ApiResult {
    let page = req.page(PAGE)?;
    let namespace_id = req.query.get("namespace_id").map(String::as_str);
    let found = store::list(&app.db, namespace_id, &page).await?;
    Ok(json_response(StatusCode::OK, found.to_json(view)))
}

/// `DELETE /v1/keys/{key_id}` → 204 (revoked, now or before) / 404.
pub async fn revoke(app: &AppState, _req: &ApiRequest, id: &str) -> ApiResult {
    let id = path_id(id)?;
    if !store::revoke(&app.db, &id).await? {
        return Err(ApiError::not_found("key", &id));
    }
    tracing::info!(key_id = %id, "API key revoked");
    Ok(no_content())
}

fn view(document: &Document) -> Value {
    let text = |field: &str| document.get_str(field).ok();
    let time = |field: &str| {
        document.get_datetime(field).ok().map(|t| {
            t.to_chrono()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
    };
    json!({
        "key_id": text("_id"),
        "prefix": text("prefix"),
        "namespace_id": text("namespace_id"),
        "role": text("role"),
        "created_at": time("created_at"),
        "last_used_at": time("last_used_at"),
        "revoked_at": time("revoked_at"),
    })
}
