//! Provider connections (contract §5): `POST/GET /v1/connections`,
//! `GET/DELETE /v1/connections/{id}`.
//!
//! A connection ties a provider account (its webhook signing secret) to the bucket its
//! assets sync into, with the `metadata_filters` an asset must satisfy to belong. The
//! secret is write-only: accepted by `POST`, used to verify inbound webhooks, and never
//! returned — not even by the `POST` that set it — nor logged. Documents are stored in the
//! shape of [`Connection::to_doc`], the secret sealed under `--secret-key` when one is set
//! ([`crate::secrets`]).

use hyper::StatusCode;
use mongodb::bson::{Bson, DateTime, Document};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tracing::{info, warn};

use super::{json_response, no_content, ApiError, ApiRequest, ApiResult, AppState};
use crate::inbound::{self, filters, Connection};
use crate::secrets::{SecretBox, SEALED_PREFIX};
use crate::store::connections::{self, ConnectionFilter};
use crate::store::page::PageLimits;
use crate::store::{is_duplicate_key, objects};
use crate::text::one_line;

/// Page sizes of `GET /v1/connections`: 50 unless `limit` says otherwise, at most 500.
const PAGE: PageLimits = PageLimits {
    default: 50,
    max: 500,
    empty_cursor_is_first_page: true,
};
/// Longest webhook secret accepted, in bytes.
const MAX_SECRET_BYTES: usize = 512;
/// Longest bucket id accepted, in bytes.
const MAX_BUCKET_ID_BYTES: usize = 256;

/// The body of `POST /v1/connections`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    provider: String,
    bucket_id: String,
    webhook_secret: String,
    #[serde(default)]
    metadata_filters: Option<Map<String, Value>>,
    /// The tenant it belongs to; its Mux-derived events carry it.
    #[serde(default)]
    namespace_id: Option<String>,
}

/// `POST /v1/connections` → 201 with the connection, without its secret.
pub async fn create(app: &AppState, req: &ApiRequest) -> ApiResult {
    let (body, metadata_filters) = validate_create(req)?;
    // The query every inbound event runs needs this index; creating it is idempotent and
    // connections are created rarely.
    if let Err(e) = objects::ensure_indexes(&app.db).await {
        warn!(error = %one_line(&e.to_string()), "cannot create the objects index for inbound webhooks");
    }
    let mut attempts = 0;
    let connection = loop {
        attempts += 1;
        let mut connection = Connection::new(
            new_id(),
            body.provider.clone(),
            body.bucket_id.clone(),
            body.webhook_secret.clone(),
            metadata_filters.clone(),
            DateTime::now(),
        );
        connection.namespace_id = body.namespace_id.clone();
        match connections::insert(&app.db, connection.to_doc(&app.secrets)).await {
            Ok(_) => break connection,
            // 64 random bits collided: draw again.
            Err(e) if is_duplicate_key(&e) && attempts < 3 => continue,
            Err(e) => return Err(e.into()),
        }
    };
    info!(connection_id = %connection.id, provider = %connection.provider, bucket_id = %connection.bucket_id, "connection created");
    Ok(json_response(StatusCode::CREATED, connection.view()))
}

/// The body of a create request, validated, with its parsed `metadata_filters`:
/// everything `create` does before touching MongoDB (also what `fuzz/` feeds arbitrary
/// bytes).
pub fn validate_create(
    req: &ApiRequest,
) -> Result<(CreateConnection, Vec<inbound::Filter>), ApiError> {
    let body: CreateConnection = req.json()?;
    if inbound::provider(&body.provider).is_none() {
        return Err(ApiError::invalid_field(
            "provider",
            format!(
                "unsupported provider {:?}; supported: {}",
                body.provider,
                inbound::PROVIDERS.join(", ")
            ),
        ));
    }
    if body.bucket_id.trim().is_empty() || body.bucket_id.chars().count() > MAX_BUCKET_ID_BYTES {
        return Err(ApiError::invalid_field(
            "bucket_id",
            format!("must be a non-empty string of at most {MAX_BUCKET_ID_BYTES} characters"),
        ));
    }
    if body.bucket_id.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "bucket_id",
            "must not contain control characters",
        ));
    }
    // The messages never repeat the secret.
    if body.webhook_secret.is_empty() || body.webhook_secret.chars().count() > MAX_SECRET_BYTES {
        return Err(ApiError::invalid_field(
            "webhook_secret",
            format!("must be a non-empty string of at most {MAX_SECRET_BYTES} characters"),
        ));
    }
    // Stored as given without a key, it would read back as a value herald encrypted.
    if SecretBox::is_sealed(&body.webhook_secret) {
        return Err(ApiError::invalid_field(
            "webhook_secret",
            format!("may not start with {SEALED_PREFIX:?} (reserved for values herald encrypts)"),
        ));
    }
    if let Some(namespace_id) = &body.namespace_id {
        crate::namespace::validate(namespace_id)
            .map_err(|e| ApiError::invalid_field("namespace_id", e))?;
    }
    let metadata_filters = match &body.metadata_filters {
        None => Vec::new(),
        Some(map) => filters::from_json(map)
            .map_err(|bad| ApiError::invalid_field(&bad.field, bad.message))?,
    };
    Ok((body, metadata_filters))
}

/// `GET /v1/connections` → `{results, next_cursor}`, sorted by `connection_id`; filters
/// `provider`, `bucket_id`, `limit`, `cursor`.
pub async fn list(app: &AppState, req: &ApiRequest) -> ApiResult {
    let page = req.page(PAGE)?;
    let filter = ConnectionFilter {
        provider: req.query.get("provider").cloned(),
        bucket_id: req.query.get("bucket_id").cloned(),
        // Checked, and forced for a namespaced key, by `super::auth`.
        namespace_id: req.query.get("namespace_id").cloned(),
    };
    let found = connections::list(&app.db, &filter, &page).await?;
    Ok(json_response(StatusCode::OK, found.to_json(view)))
}

/// `GET /v1/connections/{id}` → 200 / 404.
pub async fn get(app: &AppState, _req: &ApiRequest, id: &str) -> ApiResult {
    match connections::get(&app.db, id).await? {
        Some(document) => Ok(json_response(StatusCode::OK, view(&document))),
        None => Err(ApiError::not_found("connection", id)),
    }
}

/// `DELETE /v1/connections/{id}` → 204, whether or not it existed. Its objects stay; its
/// inbound webhooks answer 404 from now on.
pub async fn delete(app: &AppState, _req: &ApiRequest, id: &str) -> ApiResult {
    if connections::delete(&app.db, id).await? {
        info!(connection_id = id, "connection deleted");
    }
    Ok(no_content())
}

/// The API's view of a stored connection. Read leniently — a document written by hand
/// shows what it has — and never with the secret (which the queries do not even fetch).
fn view(document: &Document) -> Value {
    let mut with_secret = document.clone();
    with_secret.insert("webhook_secret", "-");
    if let Ok(connection) = Connection::from_doc(&with_secret, &SecretBox::default()) {
        return connection.view();
    }
    let text = |field: &str| match document.get(field) {
        Some(Bson::String(s)) => Value::String(s.clone()),
        Some(Bson::ObjectId(oid)) => Value::String(oid.to_hex()),
        _ => Value::Null,
    };
    json!({
        "connection_id": text("_id"),
        "provider": text("provider"),
        "bucket_id": text("bucket_id"),
        "namespace_id": text("namespace_id"),
        "metadata_filters": filters::from_doc(document)
            .map(|f| filters::to_json(&f))
            .unwrap_or(Value::Null),
        "created_at": document.get_datetime("created_at").ok().map(|t| {
            t.to_chrono().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        }),
    })
}

fn new_id() -> String {
    format!("conn_{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn ids_look_like_the_contract_says() {
        let id = new_id();
        assert_eq!(id.len(), "conn_".len() + 16);
        assert!(id.starts_with("conn_"));
        assert!(id[5..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn the_view_never_has_the_secret_even_of_a_hand_written_document() {
        let stored = doc! {"_id": "c1", "provider": "mux", "webhook_secret": "hunter2",
        "metadata_filters": 7};
        let shown = view(&stored);
        assert!(!shown.to_string().contains("hunter2"), "{shown}");
        assert_eq!(shown["connection_id"], "c1");
        assert_eq!(shown["bucket_id"], Value::Null);
    }
}
