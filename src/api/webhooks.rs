//! Webhook routes (contract §4): create, list, read, change, delete and rotate the secret
//! of the subscriptions in the `webhooks` collection.
//!
//! The routes write MongoDB documents in the contract's §2 shape; the daemon's webhook
//! watcher (`store::webhooks`) picks every change up through its change stream and applies
//! it to the engine, exactly as for documents written by hand — in every daemon on the
//! database, within its poll interval. The API validates more strictly than the watcher
//! (HTTPS only, catalog event types, no header herald sets itself). Each route also hands
//! what it wrote to this daemon's engine before answering ([`apply_now`]), so an event
//! published after the answer meets the webhook as written.
//!
//! What is returned: `{webhook_id, url, event_types, name, headers, enabled, paused,
//! rate_limit_per_second, created_at, updated_at}`. The signing secret appears only in the
//! answers of create and rotate-secret, and header values are always redacted — they are
//! credentials too (`X-Mixpeek-Secret`). With `--secret-key`, the secret, the rotated-out
//! secrets and every header value are stored sealed ([`crate::secrets`]).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::store::is_duplicate_key;
use futures::TryStreamExt;
use herald_actors::signing::{generate_secret, SigningKey};
use hyper::header::{HeaderName, HeaderValue};
use hyper::StatusCode;
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::options::ReturnDocument;
use mongodb::Collection;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

use super::catalog::Catalog;
use super::request::cursor;
use super::request::path_id;
use super::{json_response, no_content, ApiError, ApiRequest, ApiResult, AppState};
use crate::secrets::{SecretBox, SEALED_PREFIX};
use crate::store::{bson_date, WEBHOOKS};

/// What header values read as in every answer.
pub const REDACTED: &str = "********";
/// Most custom headers per webhook.
pub const MAX_HEADERS: usize = 50;
/// Longest header value, in bytes.
const MAX_HEADER_VALUE_BYTES: usize = 8192;
/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest URL, in bytes.
const MAX_URL_BYTES: usize = 4096;
/// The accepted range of `rate_limit_per_second`.
pub const RATE_LIMIT_RANGE: std::ops::RangeInclusive<i64> = 1..=10_000;
/// Headers herald sets on every delivery itself; a webhook may not override them.
pub const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "user-agent",
];
/// How long a rotated-out secret keeps signing, so receivers can switch without a gap.
pub const PREVIOUS_SECRET_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Most rotated-out secrets kept at once (rotating in a loop must not grow the document).
const MAX_PREVIOUS_SECRETS: usize = 10;
/// List page size: default and maximum.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

/// Serializes "is this name free?" with the write that takes it, so two concurrent
/// requests cannot both create the same name (`apply` identifies webhooks by name). One
/// daemon serves the API, so a process-wide lock is enough; names are rarely written.
static NAME_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `POST /v1/webhooks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
    event_types: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    rate_limit_per_second: Option<i64>,
}

/// `PATCH /v1/webhooks/{id}`: the outer `Option` is "present", the inner one "not null".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default, deserialize_with = "present")]
    url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    event_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    headers: Option<Option<BTreeMap<String, String>>>,
    #[serde(default, deserialize_with = "present")]
    enabled: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    rate_limit_per_second: Option<Option<i64>>,
}

/// `POST /v1/webhooks/{id}/rotate-secret` (the body is optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    secret: Option<String>,
}

/// A field that is present (possibly `null`), as opposed to absent (`#[serde(default)]`).
fn present<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The body as `T`, which must be a JSON object: other JSON (an array, say) is a 422 about
/// the body as a whole rather than about some element of it.
fn object_body<T: DeserializeOwned>(req: &ApiRequest) -> Result<T, ApiError> {
    let first = req.body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        // Malformed JSON stays a 400.
        let value: Value = req.json()?;
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        return Err(ApiError::invalid_field(
            "body",
            format!("must be a JSON object, not {kind}"),
        ));
    }
    req.json()
}

fn collection(app: &AppState) -> Collection<Document> {
    app.db.collection(WEBHOOKS)
}

/// `POST /v1/webhooks` → 201 with the webhook, its `webhook_id` and its `secret`.
pub async fn create(app: &AppState, req: &ApiRequest) -> ApiResult {
    let (mut document, name, secret) = create_document(&app.catalog, req)?;
    seal_credentials(&app.secrets, &mut document);
    let webhooks = collection(app);
    let _guard = match &name {
        Some(name) => {
            let guard = NAME_LOCK.lock().await;
            if webhooks.find_one(doc! {"name": name}).await?.is_some() {
                return Err(name_taken(name));
            }
            Some(guard)
        }
        None => None,
    };
    // A random 64-bit id collides with an existing one practically never; if it does,
    // draw again rather than answer with an error.
    let mut attempts = 0;
    loop {
        match webhooks.insert_one(&document).await {
            Ok(_) => break,
            Err(e) if is_duplicate_key(&e) && attempts < 3 => {
                attempts += 1;
                document.insert("_id", new_id());
            }
            Err(e) => return Err(e.into()),
        }
    }
    apply_now(app, &document);
    let mut view = view(&document);
    view["secret"] = Value::String(secret);
    Ok(json_response(StatusCode::CREATED, view))
}

/// The body of a create request, validated, as the document to insert (with a fresh
/// `_id`), its name and its secret: everything `create` does before touching MongoDB (also
/// what `fuzz/` feeds arbitrary bytes).
pub fn create_document(
    catalog: &Catalog,
    req: &ApiRequest,
) -> Result<(Document, Option<String>, String), ApiError> {
    let body: CreateBody = object_body(req)?;
    let url = validate_url(&body.url)?;
    let event_types = validate_event_types(catalog, body.event_types)?;
    let name = body.name.map(validate_name).transpose()?;
    let headers = validate_headers(body.headers.unwrap_or_default())?;
    let secret = match body.secret {
        Some(secret) => validate_secret(secret)?,
        None => generate_secret(),
    };
    let rate_limit = body
        .rate_limit_per_second
        .map(validate_rate_limit)
        .transpose()?;
    let now = DateTime::now();
    let mut document = doc! {
        "_id": new_id(),
        "url": url,
        "event_types": event_types,
        "secret": &secret,
        "headers": headers,
        "enabled": body.enabled.unwrap_or(true),
    };
    if let Some(limit) = rate_limit {
        document.insert("rate_limit_per_second", limit);
    }
    if let Some(name) = &name {
        document.insert("name", name);
    }
    document.insert("created_at", now);
    document.insert("updated_at", now);
    Ok((document, name, secret))
}

/// `GET /v1/webhooks` → `{results, next_cursor}`, sorted by `webhook_id`; filters
/// `event_type` (subscribed to it, `*` included), `enabled`, `limit`, `cursor`.
pub async fn list(app: &AppState, req: &ApiRequest) -> ApiResult {
    let limit = req.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let mut filter = Document::new();
    if let Some(event_type) = req.query.get("event_type") {
        if herald_actors::webhook::is_operational(event_type) {
            // Only webhooks that name an operational type receive it.
            filter.insert("event_types", event_type.as_str());
        } else {
            filter.insert("event_types", doc! {"$in": [event_type.as_str(), "*"]});
        }
    }
    match req.query.get("enabled").map(String::as_str) {
        None => {}
        // A document without `enabled` is enabled.
        Some("true") => {
            filter.insert("enabled", doc! {"$ne": false});
        }
        Some("false") => {
            filter.insert("enabled", false);
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query parameter enabled: {other:?} is neither true nor false"
            )))
        }
    }
    if let Some(raw) = req.query.get("cursor") {
        filter.insert("_id", doc! {"$gt": cursor::decode(raw)?});
    }
    // One more than a page tells whether another page follows.
    let mut docs: Vec<Document> = collection(app)
        .find(filter)
        .sort(doc! {"_id": 1})
        .limit(limit + 1)
        .await?
        .try_collect()
        .await?;
    let more = docs.len() as i64 > limit;
    docs.truncate(limit as usize);
    let next_cursor = match docs.last() {
        Some(last) if more => Value::String(cursor::encode(&id_of(last))),
        _ => Value::Null,
    };
    let results: Vec<Value> = docs.iter().map(view).collect();
    Ok(json_response(
        StatusCode::OK,
        json!({"results": results, "next_cursor": next_cursor}),
    ))
}

/// `GET /v1/webhooks/{id}` → 200 / 404.
pub async fn get(app: &AppState, _req: &ApiRequest, id: &str) -> ApiResult {
    let id = &path_id(id)?;
    let Some(document) = collection(app).find_one(doc! {"_id": id}).await? else {
        return Err(ApiError::not_found("webhook", id));
    };
    let mut webhook = view(&document);
    // What the running endpoint actor knows; none runs for a disabled webhook.
    let report = app.engine.endpoint(id).await.ok().flatten();
    webhook["health"] = health_view(report.as_ref());
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
    let webhooks = collection(app);
    let _guard = match &new_name {
        Some(name) => {
            let guard = NAME_LOCK.lock().await;
            if webhooks.find_one(doc! {"_id": id}).await?.is_none() {
                return Err(ApiError::not_found("webhook", id));
            }
            let taken = doc! {"name": name, "_id": {"$ne": id}};
            if webhooks.find_one(taken).await?.is_some() {
                return Err(name_taken(name));
            }
            Some(guard)
        }
        None => None,
    };
    let updated = webhooks
        .find_one_and_update(doc! {"_id": id}, update)
        .return_document(ReturnDocument::After)
        .await?;
    match updated {
        Some(document) => {
            apply_now(app, &document);
            Ok(json_response(StatusCode::OK, view(&document)))
        }
        None => Err(ApiError::not_found("webhook", id)),
    }
}

/// The body of a patch request, validated, as the update to apply and the new name (if
/// one is set): everything `patch` does before touching MongoDB (also what `fuzz/` feeds
/// arbitrary bytes).
pub fn patch_update(
    catalog: &Catalog,
    req: &ApiRequest,
) -> Result<(Document, Option<String>), ApiError> {
    let body: PatchBody = object_body(req)?;
    let mut set = Document::new();
    let mut unset = Document::new();
    match body.url {
        None => {}
        Some(None) => return Err(not_null("url")),
        Some(Some(url)) => {
            set.insert("url", validate_url(&url)?);
        }
    }
    match body.event_types {
        None => {}
        Some(None) => return Err(not_null("event_types")),
        Some(Some(types)) => {
            set.insert("event_types", validate_event_types(catalog, types)?);
        }
    }
    let mut new_name = None;
    match body.name {
        None => {}
        Some(None) => {
            unset.insert("name", "");
        }
        Some(Some(name)) => {
            let name = validate_name(name)?;
            set.insert("name", &name);
            new_name = Some(name);
        }
    }
    match body.headers {
        None => {}
        Some(headers) => {
            set.insert("headers", validate_headers(headers.unwrap_or_default())?);
        }
    }
    match body.enabled {
        None => {}
        Some(None) => return Err(not_null("enabled")),
        Some(Some(enabled)) => {
            set.insert("enabled", enabled);
        }
    }
    match body.rate_limit_per_second {
        None => {}
        Some(None) => {
            unset.insert("rate_limit_per_second", "");
        }
        Some(Some(limit)) => {
            set.insert("rate_limit_per_second", validate_rate_limit(limit)?);
        }
    }
    if set.is_empty() && unset.is_empty() {
        return Err(ApiError::invalid_field(
            "body",
            "give at least one of url, event_types, name, headers, enabled, rate_limit_per_second",
        ));
    }
    set.insert("updated_at", DateTime::now());
    let mut update = doc! {"$set": set};
    if !unset.is_empty() {
        update.insert("$unset", unset);
    }
    Ok((update, new_name))
}

/// `POST /v1/webhooks/{id}/pause` and `/resume` → 200 with the webhook / 404. Stored as
/// `paused` in the document, where the watcher picks it up like any change; the endpoint
/// actor then holds deliveries (recorded as `pending`) or delivers its backlog at the rate
/// limit. Idempotent; no body is read.
pub async fn set_paused(app: &AppState, _req: &ApiRequest, id: &str, paused: bool) -> ApiResult {
    let id = &path_id(id)?;
    let updated = collection(app)
        .find_one_and_update(
            doc! {"_id": id},
            doc! {"$set": {"paused": paused, "updated_at": DateTime::now()}},
        )
        .return_document(ReturnDocument::After)
        .await?;
    let Some(document) = updated else {
        return Err(ApiError::not_found("webhook", id));
    };
    apply_now(app, &document);
    Ok(json_response(StatusCode::OK, view(&document)))
}

/// Hands a webhook document a route just wrote to this daemon's engine, before the answer:
/// the watcher's copy of the change reaches the engine up to a poll interval later, and an
/// event published after the answer must meet the webhook as written (created, changed,
/// paused, re-keyed). Applying it again from the watcher is harmless. A document the watcher
/// would refuse is left to the watcher's verdict (removed).
fn apply_now(app: &AppState, document: &Document) {
    if let Ok(spec) =
        crate::store::webhooks::spec_from_doc(document, &app.secrets, SystemTime::now())
    {
        let _ = app.engine.upsert_webhook(spec);
    }
}

/// `DELETE /v1/webhooks/{id}` → 204, also when there was nothing to delete.
pub async fn delete(app: &AppState, _req: &ApiRequest, id: &str) -> ApiResult {
    let id = &path_id(id)?;
    collection(app).delete_one(doc! {"_id": id}).await?;
    // As for `apply_now`: no event published after the 204 reaches it.
    let _ = app.engine.remove_webhook(id);
    Ok(no_content())
}

/// `POST /v1/webhooks/{id}/rotate-secret` (optional body `{secret?}`) → 200
/// `{webhook_id, secret}`. The old secret keeps signing for [`PREVIOUS_SECRET_TTL`]: each
/// delivery meanwhile carries one signature per valid secret.
pub async fn rotate_secret(app: &AppState, req: &ApiRequest, id: &str) -> ApiResult {
    let id = &path_id(id)?;
    let secret = rotation_secret(req)?;
    let webhooks = collection(app);
    // Compare-and-swap on the current secret, so that concurrent rotations each keep the
    // secret they replaced instead of losing one.
    for _ in 0..5 {
        let Some(current) = webhooks.find_one(doc! {"_id": id}).await? else {
            return Err(ApiError::not_found("webhook", id));
        };
        let now = SystemTime::now();
        let previous = previous_secrets_after_rotation(&current, &secret, &app.secrets, now);
        // As stored (sealed or not): the swap compares stored values.
        let old = current.get("secret").cloned().unwrap_or(Bson::Null);
        let rotated = webhooks
            .find_one_and_update(
                doc! {"_id": id, "secret": {"$eq": old}},
                doc! {"$set": {
                    "secret": app.secrets.seal(&secret),
                    "previous_secrets": previous,
                    "updated_at": bson_date(now),
                }},
            )
            .return_document(ReturnDocument::After)
            .await?;
        if let Some(document) = rotated {
            apply_now(app, &document);
            return Ok(json_response(
                StatusCode::OK,
                json!({"webhook_id": id, "secret": secret}),
            ));
        }
    }
    Err(ApiError::conflict(
        "the secret was rotated concurrently several times; try again",
    ))
}

/// The new secret of a rotate-secret request: the body's (validated) or a fresh one when
/// the body is empty (also what `fuzz/` feeds arbitrary bytes).
pub fn rotation_secret(req: &ApiRequest) -> Result<String, ApiError> {
    let body: RotateBody = if req.body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        object_body(req)?
    };
    match body.secret {
        Some(secret) => validate_secret(secret),
        None => Ok(generate_secret()),
    }
}

/// The `previous_secrets` array after replacing `current`'s secret by `new` (plaintext):
/// the still valid previous secrets plus the current one, valid for [`PREVIOUS_SECRET_TTL`].
/// Secrets are compared opened and stored sealed by `secrets`; one that cannot be opened
/// (another key) is kept as stored until it expires.
fn previous_secrets_after_rotation(
    current: &Document,
    new: &str,
    secrets: &SecretBox,
    now: SystemTime,
) -> Vec<Bson> {
    let opened = |stored: &str| secrets.open(stored).ok().map(|s| s.into_owned());
    // (opened if it opens, as stored, expiry)
    let mut kept: Vec<(Option<String>, String, DateTime)> = current
        .get_array("previous_secrets")
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(Bson::as_document)
        .filter_map(|entry| {
            let stored = entry.get_str("secret").ok()?;
            let expires = entry.get_datetime("expires_at").ok()?;
            let secret = opened(stored);
            (expires.to_system_time() > now && secret.as_deref() != Some(new))
                .then(|| (secret, stored.to_owned(), *expires))
        })
        .collect();
    if let Ok(stored) = current.get_str("secret") {
        let old = opened(stored);
        if old.as_deref() != Some(new) {
            if old.is_some() {
                kept.retain(|(secret, _, _)| *secret != old);
            }
            kept.push((old, stored.to_owned(), bson_date(now + PREVIOUS_SECRET_TTL)));
        }
    }
    let skip = kept.len().saturating_sub(MAX_PREVIOUS_SECRETS);
    kept.into_iter()
        .skip(skip)
        .map(|(_, stored, expires_at)| {
            // Plaintext from before the key was set gets sealed on the way.
            let secret = if secrets.encrypts() && !SecretBox::is_sealed(&stored) {
                secrets.seal(&stored)
            } else {
                stored
            };
            Bson::Document(doc! {"secret": secret, "expires_at": expires_at})
        })
        .collect()
}

/// Seals the credentials in a webhook document or a `$set` of one: `secret` and every
/// header value. Without `--secret-key` nothing changes.
fn seal_credentials(secrets: &SecretBox, fields: &mut Document) {
    if !secrets.encrypts() {
        return;
    }
    if let Ok(secret) = fields.get_str("secret") {
        let sealed = secrets.seal(secret);
        fields.insert("secret", sealed);
    }
    if let Ok(headers) = fields.get_document_mut("headers") {
        for (_, value) in headers.iter_mut() {
            if let Bson::String(value) = value {
                *value = secrets.seal(value);
            }
        }
    }
}

/// `wh_` + 16 lowercase hex digits.
fn new_id() -> String {
    format!("wh_{:016x}", rand::random::<u64>())
}

fn name_taken(name: &str) -> ApiError {
    ApiError::conflict(format!("name: another webhook is already named {name:?}"))
}

fn not_null(field: &str) -> ApiError {
    ApiError::invalid_field(field, "may not be null")
}

/// An absolute `https://` URL with a host, normalized (so the watcher can parse it too).
fn validate_url(raw: &str) -> Result<String, ApiError> {
    if raw.len() > MAX_URL_BYTES {
        return Err(ApiError::invalid_field(
            "url",
            format!("longer than {MAX_URL_BYTES} bytes"),
        ));
    }
    let mut url = url::Url::parse(raw.trim())
        .map_err(|e| ApiError::invalid_field("url", format!("not an absolute URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            return Err(ApiError::invalid_field(
                "url",
                "HTTPS is required: plaintext http:// URLs are refused",
            ))
        }
        other => {
            return Err(ApiError::invalid_field(
                "url",
                format!("HTTPS is required, not {other}:"),
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid_field("url", "the URL has no host"));
    }
    // Never sent anyway, and hyper refuses URIs with one.
    url.set_fragment(None);
    let normalized = String::from(url);
    // The watcher and the transport parse URLs with hyper; refuse what they would not.
    if normalized.parse::<hyper::Uri>().is_err() {
        return Err(ApiError::invalid_field("url", "not a valid request URI"));
    }
    Ok(normalized)
}

/// Catalog types (duplicates dropped, order kept), or exactly `["*"]`.
fn validate_event_types(catalog: &Catalog, types: Vec<String>) -> Result<Vec<String>, ApiError> {
    if types.is_empty() {
        return Err(ApiError::invalid_field(
            "event_types",
            "must list at least one event type, or [\"*\"] for all",
        ));
    }
    if types.iter().any(|t| t == "*") {
        // `*` is every domain event; herald's operational events are only ever named.
        let mut unique = vec!["*".to_owned()];
        for event_type in types {
            if unique.contains(&event_type) {
                continue;
            }
            if !herald_actors::webhook::is_operational(&event_type) {
                return Err(ApiError::invalid_field(
                    "event_types",
                    "\"*\" subscribes to every event but herald's operational ones \
                     (webhook.endpoint.*, delivery.exhausted); only those may be named beside it",
                ));
            }
            unique.push(event_type);
        }
        return Ok(unique);
    }
    let mut unique: Vec<String> = Vec::with_capacity(types.len());
    for (i, event_type) in types.into_iter().enumerate() {
        if !catalog.contains(&event_type) {
            return Err(ApiError::invalid_field(
                &format!("event_types[{i}]"),
                format!("{event_type:?} is not in the event catalog (GET /v1/webhooks/events)"),
            ));
        }
        if !unique.contains(&event_type) {
            unique.push(event_type);
        }
    }
    Ok(unique)
}

fn validate_name(name: String) -> Result<String, ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::invalid_field("name", "may not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid_field(
            "name",
            format!("longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "name",
            "may not contain control characters",
        ));
    }
    Ok(name)
}

/// Legal header names (each once, case-insensitively, none that herald sets itself) with
/// legal values, as the document stores them.
fn validate_headers(headers: BTreeMap<String, String>) -> Result<Document, ApiError> {
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::invalid_field(
            "headers",
            format!("at most {MAX_HEADERS} headers, got {}", headers.len()),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut document = Document::new();
    for (name, value) in headers {
        let field = format!("headers.{name}");
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ApiError::invalid_field(&field, "not a legal HTTP header name"))?;
        // Legal in HTTP, but MongoDB reads them as paths or operators in field names.
        if name.starts_with('$') || name.contains('.') {
            return Err(ApiError::invalid_field(
                &field,
                "header names may not start with '$' or contain '.'",
            ));
        }
        if RESERVED_HEADERS.contains(&parsed.as_str()) {
            return Err(ApiError::invalid_field(
                &field,
                "herald sets this header itself; it cannot be overridden",
            ));
        }
        if !seen.insert(parsed) {
            return Err(ApiError::invalid_field(
                &field,
                "given twice (header names are case-insensitive)",
            ));
        }
        if value.len() > MAX_HEADER_VALUE_BYTES {
            return Err(ApiError::invalid_field(
                &field,
                format!("value longer than {MAX_HEADER_VALUE_BYTES} bytes"),
            ));
        }
        if HeaderValue::from_str(&value).is_err() {
            return Err(ApiError::invalid_field(
                &field,
                "not a legal HTTP header value (visible ASCII, spaces and tabs only)",
            ));
        }
        // Stored as given without a key, it would read back as a value herald encrypted.
        if SecretBox::is_sealed(&value) {
            return Err(ApiError::invalid_field(
                &field,
                format!("values may not start with {SEALED_PREFIX:?} (reserved for values herald encrypts)"),
            ));
        }
        document.insert(name, value);
    }
    Ok(document)
}

fn validate_secret(secret: String) -> Result<String, ApiError> {
    SigningKey::parse(&secret).map_err(|e| ApiError::invalid_field("secret", e))?;
    Ok(secret)
}

fn validate_rate_limit(limit: i64) -> Result<i32, ApiError> {
    if !RATE_LIMIT_RANGE.contains(&limit) {
        return Err(ApiError::invalid_field(
            "rate_limit_per_second",
            format!(
                "{limit} is out of range {}..={}",
                RATE_LIMIT_RANGE.start(),
                RATE_LIMIT_RANGE.end()
            ),
        ));
    }
    // In range, so it fits.
    Ok(limit as i32)
}

/// The `_id` as the API shows it (documents written by hand may use another type).
fn id_of(document: &Document) -> String {
    match document.get("_id") {
        Some(Bson::String(s)) => s.clone(),
        Some(Bson::ObjectId(oid)) => oid.to_hex(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn rfc3339(document: &Document, key: &str) -> Value {
    match document.get_datetime(key) {
        Ok(date) => Value::String(
            date.to_chrono()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
        Err(_) => Value::Null,
    }
}

/// The webhook as every route returns it: no secret, header values redacted. Tolerates
/// documents written directly into MongoDB with missing or odd fields.
fn view(document: &Document) -> Value {
    let event_types: Vec<&str> = document
        .get_array("event_types")
        .map(|a| a.iter().filter_map(Bson::as_str).collect())
        .unwrap_or_default();
    let headers: Map<String, Value> = document
        .get_document("headers")
        .map(|h| {
            h.keys()
                .map(|k| (k.clone(), Value::String(REDACTED.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let enabled = match document.get("enabled") {
        Some(Bson::Boolean(b)) => *b,
        None | Some(Bson::Null) => true,
        // The watcher disables a webhook whose `enabled` is not a boolean.
        Some(_) => false,
    };
    let rate_limit = match document.get("rate_limit_per_second") {
        Some(Bson::Int32(n)) => json!(n),
        Some(Bson::Int64(n)) => json!(n),
        Some(Bson::Double(n)) => json!(n),
        _ => Value::Null,
    };
    json!({
        "webhook_id": id_of(document),
        "url": document.get_str("url").ok(),
        "event_types": event_types,
        "name": document.get_str("name").ok(),
        "headers": headers,
        "enabled": enabled,
        // Absent (every webhook written before pausing existed): not paused.
        "paused": document.get_bool("paused").unwrap_or(false),
        "rate_limit_per_second": rate_limit,
        // Set when herald disabled the webhook itself (`--endpoint-disable-after-secs`).
        "disabled_reason": document.get_str("disabled_reason").ok(),
        "disabled_at": rfc3339(document, "disabled_at"),
        "created_at": rfc3339(document, "created_at"),
        "updated_at": rfc3339(document, "updated_at"),
    })
}

fn time_view(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(
            chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
    })
}

/// The endpoint's health (`GET /v1/webhooks/{id}`): `null` when no endpoint actor runs for
/// the webhook (disabled), else its failing streak, last success and failure, success rate
/// over the last hour and the deliveries it holds.
fn health_view(report: Option<&herald_actors::router::EndpointReport>) -> Value {
    let Some(report) = report else {
        return Value::Null;
    };
    let health = &report.health;
    let state = if health.failing {
        "failing"
    } else if health.window_attempts == 0 && health.last_success_at.is_none() {
        "unknown"
    } else {
        "healthy"
    };
    let last_failure = health.last_failure_at.map(|at| {
        json!({
            "at": time_view(Some(at)),
            "status_code": health.last_status_code,
            "error": health.last_error,
        })
    });
    json!({
        "state": state,
        "consecutive_failures": health.consecutive_failures,
        "failing_since": time_view(health.failing_since),
        "last_success_at": time_view(health.last_success_at),
        "last_failure": last_failure,
        "success_rate": health.success_rate(),
        "window_seconds": health.window.as_secs(),
        "window_attempts": health.window_attempts,
        "window_successes": health.window_successes,
        "queued": report.stats.queued,
        "in_flight": report.stats.in_flight,
        "scheduled": report.stats.scheduled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(result: Result<impl std::fmt::Debug, ApiError>) -> (u16, String) {
        let e = result.unwrap_err();
        (e.status.as_u16(), e.message)
    }

    #[test]
    fn ids_are_wh_and_16_lowercase_hex() {
        let id = new_id();
        assert_eq!(id.len(), 19);
        assert!(id.starts_with("wh_"));
        assert!(id[3..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn urls_must_be_absolute_https_with_a_host() {
        assert_eq!(
            validate_url("https://hooks.example.com/h?x=1").unwrap(),
            "https://hooks.example.com/h?x=1"
        );
        let (code, message) = status(validate_url("http://hooks.example.com/h"));
        assert_eq!(code, 422);
        assert!(
            message.starts_with("url:") && message.contains("HTTPS"),
            "{message}"
        );
        for bad in [
            "hooks.example.com/h",
            "/relative",
            "ftp://x.example/",
            "https://",
            "",
        ] {
            let (code, message) = status(validate_url(bad));
            assert_eq!(code, 422, "{bad}");
            assert!(message.starts_with("url:"), "{bad}: {message}");
        }
        assert_eq!(
            validate_url("https://x.example/h#section").unwrap(),
            "https://x.example/h"
        );
        assert!(validate_url("https://user:pw@x.example/h").is_ok());
        // Normalized into something hyper parses.
        assert_eq!(
            validate_url("https://x.example/a b").unwrap(),
            "https://x.example/a%20b"
        );
    }

    #[test]
    fn event_types_are_catalog_types_or_exactly_star() {
        let catalog = Catalog::new(&[]);
        let types = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            validate_event_types(&catalog, types(&["object.created", "object.created"])).unwrap(),
            ["object.created"]
        );
        assert_eq!(
            validate_event_types(&catalog, types(&["*"])).unwrap(),
            ["*"]
        );
        assert_eq!(status(validate_event_types(&catalog, vec![])).0, 422);
        let (_, message) = status(validate_event_types(
            &catalog,
            types(&["object.created", "nope"]),
        ));
        assert!(message.starts_with("event_types[1]:"), "{message}");
        assert!(validate_event_types(&catalog, types(&["*", "object.created"])).is_err());
    }

    #[test]
    fn headers_must_be_legal_and_not_herald_s_own() {
        let headers = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let ok = validate_headers(headers(&[("X-Mixpeek-Secret", "s3cret")])).unwrap();
        assert_eq!(ok.get_str("X-Mixpeek-Secret").unwrap(), "s3cret");
        for (pairs, field) in [
            (&[("bad header", "v")][..], "headers.bad header"),
            (&[("X-Ok", "line\nbreak")][..], "headers.X-Ok"),
            (
                &[("Webhook-Signature", "v1,forged")][..],
                "headers.Webhook-Signature",
            ),
            (
                &[("Content-Type", "text/plain")][..],
                "headers.Content-Type",
            ),
            (&[("X-A", "1"), ("x-a", "2")][..], "headers.x-a"),
            (&[("$where", "v")][..], "headers.$where"),
            (&[("X.Dotted", "v")][..], "headers.X.Dotted"),
            (&[("X-Sealed", "enc:v1:abc")][..], "headers.X-Sealed"),
        ] {
            let (code, message) = status(validate_headers(headers(pairs)));
            assert_eq!(code, 422);
            assert!(message.starts_with(field), "{message}");
        }
        let many: BTreeMap<String, String> = (0..=MAX_HEADERS)
            .map(|i| (format!("X-{i}"), "v".into()))
            .collect();
        assert_eq!(status(validate_headers(many)).0, 422);
    }

    #[test]
    fn names_secrets_and_rate_limits_are_checked() {
        assert!(validate_name("search-cache".into()).is_ok());
        assert!(validate_name(" ".into()).is_err());
        assert!(validate_name("x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(validate_name("é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(validate_secret(generate_secret()).is_ok());
        let (_, message) = status(validate_secret("hunter2".into()));
        assert!(message.starts_with("secret:"), "{message}");
        assert_eq!(validate_rate_limit(1).unwrap(), 1);
        assert_eq!(validate_rate_limit(10_000).unwrap(), 10_000);
        for bad in [0, -1, 10_001, i64::MAX] {
            assert!(validate_rate_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rotation_keeps_unexpired_previous_secrets_and_adds_the_current_one() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let current = doc! {
            "_id": "wh_1",
            "secret": "whsec_current",
            "previous_secrets": [
                {"secret": "whsec_expired", "expires_at": bson_date(now - hour)},
                {"secret": "whsec_valid", "expires_at": bson_date(now + hour)},
                {"secret": 5},
            ],
        };
        let plain = SecretBox::default();
        let previous = previous_secrets_after_rotation(&current, "whsec_new", &plain, now);
        let secrets: Vec<&str> = previous
            .iter()
            .map(|b| b.as_document().unwrap().get_str("secret").unwrap())
            .collect();
        assert_eq!(secrets, ["whsec_valid", "whsec_current"]);
        let expires = previous[1]
            .as_document()
            .unwrap()
            .get_datetime("expires_at")
            .unwrap()
            .to_system_time();
        let ttl = expires.duration_since(now).unwrap();
        assert!(ttl > PREVIOUS_SECRET_TTL - Duration::from_secs(1) && ttl <= PREVIOUS_SECRET_TTL);

        // Rotating to the same secret keeps nothing twice.
        let same = previous_secrets_after_rotation(&current, "whsec_current", &plain, now);
        assert_eq!(same.len(), 1);

        // Rotating in a loop does not grow the document without bound.
        let mut document = current.clone();
        for i in 0..3 * MAX_PREVIOUS_SECRETS {
            let new = format!("whsec_{i}");
            let previous = previous_secrets_after_rotation(&document, &new, &plain, now);
            document.insert("previous_secrets", previous);
            document.insert("secret", new);
        }
        assert_eq!(
            document.get_array("previous_secrets").unwrap().len(),
            MAX_PREVIOUS_SECRETS
        );
    }

    #[test]
    fn with_a_key_rotation_compares_opened_secrets_and_stores_them_sealed() {
        let secrets = SecretBox::new(Some([5; 32]));
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let foreign = SecretBox::new(Some([6; 32])).seal("whsec_foreign");
        let current = doc! {
            "_id": "wh_1",
            "secret": secrets.seal("whsec_current"),
            "previous_secrets": [
                // Written before the key was set.
                {"secret": "whsec_plain", "expires_at": bson_date(now + hour)},
                {"secret": secrets.seal("whsec_sealed"), "expires_at": bson_date(now + hour)},
                {"secret": &foreign, "expires_at": bson_date(now + hour)},
            ],
        };
        let previous = previous_secrets_after_rotation(&current, "whsec_new", &secrets, now);
        let stored: Vec<&str> = previous
            .iter()
            .map(|b| b.as_document().unwrap().get_str("secret").unwrap())
            .collect();
        assert!(stored.iter().all(|s| SecretBox::is_sealed(s)), "{stored:?}");
        let opened: Vec<Option<String>> = stored
            .iter()
            .map(|s| secrets.open(s).ok().map(|s| s.into_owned()))
            .collect();
        assert_eq!(
            opened,
            [
                Some("whsec_plain".to_owned()),
                Some("whsec_sealed".to_owned()),
                None,
                Some("whsec_current".to_owned())
            ]
        );
        // The one sealed under another key is kept as it was.
        assert_eq!(stored[2], foreign);
        // Rotating to a secret already listed (sealed differently) keeps it once.
        let again = previous_secrets_after_rotation(&current, "whsec_sealed", &secrets, now);
        assert_eq!(again.len(), 3);
        // Rotating to the current secret changes nothing.
        let same = previous_secrets_after_rotation(&current, "whsec_current", &secrets, now);
        assert_eq!(same.len(), 3);
    }

    #[test]
    fn sealing_covers_the_secret_and_every_header_value() {
        let secrets = SecretBox::new(Some([5; 32]));
        let mut document = doc! {"_id": "wh_1", "url": "https://a.example/h",
        "secret": "whsec_x", "headers": {"X-Mixpeek-Secret": "s3cret", "X-Other": "o"}};
        seal_credentials(&secrets, &mut document);
        assert!(!document.to_string().contains("whsec_x"), "{document}");
        assert!(!document.to_string().contains("s3cret"), "{document}");
        assert_eq!(document.get_str("url").unwrap(), "https://a.example/h");
        let headers = document.get_document("headers").unwrap();
        assert_eq!(
            secrets.open(headers.get_str("X-Other").unwrap()).unwrap(),
            "o"
        );
        assert_eq!(view(&document)["headers"]["X-Mixpeek-Secret"], REDACTED);
        // Without a key, stored as given.
        let mut plain = doc! {"secret": "whsec_x", "headers": {"X-A": "a"}};
        seal_credentials(&SecretBox::default(), &mut plain);
        assert_eq!(plain, doc! {"secret": "whsec_x", "headers": {"X-A": "a"}});
    }

    #[test]
    fn the_view_hides_secrets_and_header_values() {
        let now = DateTime::now();
        let view = view(&doc! {
            "_id": "wh_0123456789abcdef", "url": "https://a.example/h", "event_types": ["*"],
            "secret": "whsec_x", "headers": {"X-Mixpeek-Secret": "s"}, "enabled": true,
            "rate_limit_per_second": 5, "name": "n", "created_at": now, "updated_at": now,
        });
        assert_eq!(view["webhook_id"], "wh_0123456789abcdef");
        assert_eq!(view["headers"]["X-Mixpeek-Secret"], REDACTED);
        assert!(view.get("secret").is_none());
        assert!(!view.to_string().contains("whsec_x"));
        assert_eq!(view["rate_limit_per_second"], 5);
        assert!(view["created_at"].as_str().unwrap().ends_with('Z'));

        // A sparse hand-written document still renders.
        let sparse = super::view(&doc! {"_id": "wh_1"});
        assert_eq!(sparse["enabled"], true);
        assert_eq!(sparse["paused"], false);
        assert_eq!(sparse["rate_limit_per_second"], Value::Null);
        assert_eq!(
            super::view(&doc! {"_id": "wh_1", "paused": true})["paused"],
            true
        );
        assert_eq!(sparse["event_types"], json!([]));
    }
}
