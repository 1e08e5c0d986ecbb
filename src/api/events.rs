//! Publishing events over HTTP (`POST /v1/events`).
//!
//! The API publishes exactly as any producer does: it inserts one document into the
//! `events` outbox (contract §2) and lets the change stream carry it to the engine. So an
//! event published here is as durable as any other, is delivered by the same path, and
//! the request never waits on a delivery.
//!
//! Idempotency rides on the outbox's `_id`: publishing an `event_id` that already exists
//! meets MongoDB's duplicate-key error, which answers 202 with the same id and writes
//! nothing — the change stream only ever saw the first insert, so the event is delivered
//! once.
//!
//! Concurrent requests are written together: each hands its document to the daemon's
//! [`GroupCommit`](crate::store::events::group_commit), which inserts what has gathered in
//! one unordered `insert_many` and answers each request once its own document is durable,
//! exactly as a write of its own would have been answered.
//!
//! The document is checked with the feed's own parser ([`payload_from_event`]) before it
//! is inserted, so anything accepted here is something the feed will deliver rather than
//! skip as malformed.

use herald_actors::Event;
use hyper::StatusCode;
use mongodb::bson::{doc, Bson, DateTime, Document};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::catalog::Catalog;
use super::{json_response, ApiError, ApiRequest, ApiResult, AppState};
use crate::store::events::group_commit::PublishError;
use crate::store::events::{payload_from_event, MAX_PAYLOAD_BYTES};

/// Longest accepted `event_id`, in characters.
pub const MAX_EVENT_ID_LEN: usize = 200;

/// Deepest nesting accepted inside `data`. MongoDB refuses documents nested
/// more than 100 levels; staying well below keeps every server's insert a success.
const MAX_DEPTH: usize = 32;

/// The body of `POST /v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishRequest {
    event_type: String,
    data: Map<String, Value>,
    #[serde(default)]
    event_id: Option<String>,
    /// RFC 3339; stored as a BSON date.
    #[serde(default)]
    occurred_at: Option<String>,
    #[serde(default)]
    namespace_id: Option<String>,
    /// `{type, id}`; checked by hand (see [`subject_doc`]).
    #[serde(default)]
    subject: Option<Map<String, Value>>,
    /// `{scope, collection_id?, namespace_id?, keys?}`; checked by hand (see
    /// [`cache_scope_doc`]).
    #[serde(default)]
    cache_scope: Option<Map<String, Value>>,
    #[serde(default)]
    task_id: Option<String>,
    /// `{traceparent}`: the producer's W3C trace context (contract §7); checked by hand
    /// (see [`trace_context_doc`]).
    #[serde(default)]
    trace_context: Option<Map<String, Value>>,
}

/// `POST /v1/events`: validates, inserts into the outbox, answers 202 `{event_id}`.
pub async fn publish(app: &AppState, req: &ApiRequest) -> ApiResult {
    let document = publish_document(&app.catalog, req)?;
    let event_id = document.get_str("_id").unwrap_or_default().to_owned();

    if app.publisher.publish(document).await? {
        tracing::debug!(event_id = %event_id, "event published through the API");
    } else {
        // Already published: the first insert stands and is the one delivered.
        tracing::debug!(event_id = %event_id, "event already published; nothing changed");
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        json!({ "event_id": event_id }),
    ))
}

/// The body of a publish request, validated, as its `events` document: everything
/// `publish` does before touching MongoDB (also what `fuzz/` feeds arbitrary bytes).
pub fn publish_document(catalog: &Catalog, req: &ApiRequest) -> Result<Document, ApiError> {
    outbox_document(catalog, object_body(req)?)
}

/// Validates a request and builds its `events` document (contract §2).
pub(super) fn outbox_document(
    catalog: &Catalog,
    request: PublishRequest,
) -> Result<Document, ApiError> {
    if request.event_type.is_empty() {
        return Err(ApiError::invalid_field("event_type", "must not be empty"));
    }
    if !catalog.contains(&request.event_type) {
        return Err(ApiError::invalid_field(
            "event_type",
            format!(
                "unknown event type {:?}; GET /v1/webhooks/events lists the known ones",
                request.event_type
            ),
        ));
    }
    let event_id = match request.event_id {
        Some(id) => {
            check_event_id(&id)?;
            id
        }
        None => new_event_id(),
    };
    let occurred_at = match request.occurred_at.as_deref() {
        Some(raw) => parse_rfc3339(raw).ok_or_else(|| {
            ApiError::invalid_field(
                "occurred_at",
                format!("{raw:?} is not an RFC 3339 timestamp (e.g. 2026-01-01T00:00:00Z)"),
            )
        })?,
        None => DateTime::now(),
    };

    let mut document = doc! {
        "_id": &event_id,
        "event_type": &request.event_type,
        "occurred_at": occurred_at,
    };
    if let Some(namespace_id) = request.namespace_id {
        document.insert("namespace_id", non_empty("namespace_id", namespace_id)?);
    }
    if let Some(task_id) = request.task_id {
        document.insert("task_id", non_empty("task_id", task_id)?);
    }
    if let Some(subject) = request.subject {
        document.insert("subject", subject_doc(subject)?);
    }
    document.insert("data", object_to_bson("data", request.data, 1)?);
    if let Some(scope) = request.cache_scope {
        document.insert("cache_scope", cache_scope_doc(scope)?);
    }
    if let Some(context) = request.trace_context {
        document.insert("trace_context", trace_context_doc(context)?);
    }

    // What the feed will make of it: refuse here what it would skip there.
    let payload = payload_from_event(&document, occurred_at)
        .map_err(|e| ApiError::invalid_field("body", e))?;
    let size = Event::from_payload(&payload).body.len();
    if size > MAX_PAYLOAD_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the delivered payload would be {size} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit"),
        ));
    }
    Ok(document)
}

impl From<PublishError> for ApiError {
    /// Whatever kept the event from the outbox: 503, as a failed write of its own was.
    fn from(error: PublishError) -> Self {
        match error {
            PublishError::Store(e) => e.into(),
            other => {
                tracing::warn!(error = %other, "event not published");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "MongoDB did not complete the operation; try again",
                )
            }
        }
    }
}

/// The body as `T`, which must be a JSON object: serde would read a struct from an array
/// of its fields in order, which no client means. [`ApiRequest::json`] refuses any other
/// JSON (an array included) with a 422 — and malformed JSON, an unclosed array too, with
/// a 400.
pub fn object_body<T: serde::de::DeserializeOwned>(req: &ApiRequest) -> Result<T, ApiError> {
    req.json()
}

/// `subject`: exactly `{type, id}`, both non-empty strings.
///
/// Nested objects are read as maps and checked here rather than derived, so that an array
/// is not taken for a struct and every error names its full path.
fn subject_doc(subject: Map<String, Value>) -> Result<Document, ApiError> {
    if let Some(unknown) = subject
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "id"))
    {
        return Err(ApiError::invalid_field(
            &format!("subject.{unknown}"),
            "unknown field; subject is {type, id}",
        ));
    }
    Ok(doc! {
        "type": required_string(&subject, "subject", "type")?,
        "id": required_string(&subject, "subject", "id")?,
    })
}

/// `trace_context`: exactly `{traceparent}`, a string. Its value is kept as given: one
/// that is not a valid W3C `traceparent` is ignored by the feed (the event is delivered
/// without it), exactly as in a document a producer inserts itself.
fn trace_context_doc(context: Map<String, Value>) -> Result<Document, ApiError> {
    if let Some(unknown) = context.keys().find(|k| k.as_str() != "traceparent") {
        return Err(ApiError::invalid_field(
            &format!("trace_context.{unknown}"),
            "unknown field; trace_context is {traceparent}",
        ));
    }
    Ok(doc! {"traceparent": required_string(&context, "trace_context", "traceparent")?})
}

/// `cache_scope`: `{scope: "collection" | "namespace" | "key", collection_id?,
/// namespace_id?, keys?: [string]}`.
fn cache_scope_doc(scope: Map<String, Value>) -> Result<Document, ApiError> {
    const FIELDS: &[&str] = &["scope", "collection_id", "namespace_id", "keys"];
    if let Some(unknown) = scope.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid_field(
            &format!("cache_scope.{unknown}"),
            "unknown field; cache_scope is {scope, collection_id?, namespace_id?, keys?}",
        ));
    }
    let kind = required_string(&scope, "cache_scope", "scope")?;
    if !matches!(kind.as_str(), "collection" | "namespace" | "key") {
        return Err(ApiError::invalid_field(
            "cache_scope.scope",
            format!("{kind:?} is not one of \"collection\", \"namespace\", \"key\""),
        ));
    }
    let mut d = doc! {"scope": kind};
    for field in ["collection_id", "namespace_id"] {
        match scope.get(field) {
            None | Some(Value::Null) => {}
            Some(_) => {
                d.insert(field, required_string(&scope, "cache_scope", field)?);
            }
        }
    }
    match scope.get("keys") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            let keys = items
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    k.as_str().map(str::to_owned).ok_or_else(|| {
                        ApiError::invalid_field(
                            &format!("cache_scope.keys[{i}]"),
                            "must be a string",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            d.insert("keys", keys);
        }
        Some(_) => {
            return Err(ApiError::invalid_field(
                "cache_scope.keys",
                "must be an array of strings",
            ))
        }
    }
    Ok(d)
}

/// `object.field` as a non-empty string.
fn required_string(
    object: &Map<String, Value>,
    parent: &str,
    field: &str,
) -> Result<String, ApiError> {
    let path = format!("{parent}.{field}");
    match object.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(ApiError::invalid_field(&path, "must not be empty")),
        None | Some(Value::Null) => Err(ApiError::invalid_field(&path, "required")),
        Some(_) => Err(ApiError::invalid_field(&path, "must be a string")),
    }
}

/// 1–200 characters of `[A-Za-z0-9_.:-]`: safe in a URL path, a header and a delivery id.
fn check_event_id(id: &str) -> Result<(), ApiError> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    if id.is_empty() || id.len() > MAX_EVENT_ID_LEN || !id.chars().all(legal) {
        return Err(ApiError::invalid_field(
            "event_id",
            format!("must be 1–{MAX_EVENT_ID_LEN} characters of A-Z a-z 0-9 _ . : -"),
        ));
    }
    Ok(())
}

/// `evt_` + 24 random hex digits.
fn new_event_id() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("evt_{hex}")
}

/// An RFC 3339 timestamp as a BSON date (millisecond precision, like every BSON date).
pub fn parse_rfc3339(raw: &str) -> Option<DateTime> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(DateTime::from_chrono)
}

fn non_empty(field: &str, value: String) -> Result<String, ApiError> {
    if value.is_empty() {
        Err(ApiError::invalid_field(field, "must not be empty"))
    } else {
        Ok(value)
    }
}

/// Converts JSON to BSON by hand rather than through serde, so that what MongoDB cannot
/// store is a 422 naming the place instead of a failed insert: keys starting with `$` or
/// holding NUL, and very deep nesting (integers beyond 64-bit signed range become doubles).
fn object_to_bson(path: &str, object: Map<String, Value>, depth: usize) -> Result<Bson, ApiError> {
    if depth > MAX_DEPTH {
        return Err(ApiError::invalid_field(
            path,
            format!("nested more than {MAX_DEPTH} levels deep"),
        ));
    }
    let mut document = Document::new();
    for (key, value) in object {
        let here = format!("{path}.{key}");
        if key.starts_with('$') {
            return Err(ApiError::invalid_field(
                &here,
                "field names may not start with '$'",
            ));
        }
        if key.contains('\0') {
            return Err(ApiError::invalid_field(
                path,
                "field names may not contain NUL characters",
            ));
        }
        let bson = value_to_bson(&here, value, depth)?;
        document.insert(key, bson);
    }
    Ok(Bson::Document(document))
}

fn value_to_bson(path: &str, value: Value, depth: usize) -> Result<Bson, ApiError> {
    Ok(match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i32::try_from(i).map_or(Bson::Int64(i), Bson::Int32)
            } else {
                // Beyond the 64-bit signed range (BSON's largest integer): a double, as
                // JSON readers in most languages would read it anyway.
                Bson::Double(n.as_f64().unwrap_or_default())
            }
        }
        Value::String(s) => Bson::String(s),
        Value::Array(items) => {
            if depth + 1 > MAX_DEPTH {
                return Err(ApiError::invalid_field(
                    path,
                    format!("nested more than {MAX_DEPTH} levels deep"),
                ));
            }
            Bson::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| value_to_bson(&format!("{path}[{i}]"), item, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        Value::Object(object) => object_to_bson(path, object, depth + 1)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_checked() {
        for good in ["evt_1", "a", "order-42.v1:retry", &"x".repeat(200)] {
            assert!(check_event_id(good).is_ok(), "{good}");
        }
        for bad in ["", "has space", "slash/y", "é", &"x".repeat(201), "q?x"] {
            let e = check_event_id(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
            assert!(e.message.starts_with("event_id"), "{}", e.message);
        }
    }

    #[test]
    fn trace_context_is_traceparent_only_and_kept_as_given() {
        let context = |v: Value| v.as_object().cloned().unwrap();
        let kept = trace_context_doc(context(json!({"traceparent": "00-not-valid"}))).unwrap();
        assert_eq!(kept.get_str("traceparent"), Ok("00-not-valid"));
        for (bad, field) in [
            (json!({}), "trace_context.traceparent"),
            (json!({"traceparent": 5}), "trace_context.traceparent"),
            (
                json!({"traceparent": "x", "baggage": "y"}),
                "trace_context.baggage",
            ),
        ] {
            let e = trace_context_doc(context(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert!(e.message.starts_with(field), "{}", e.message);
        }
    }

    #[test]
    fn generated_ids_are_evt_and_24_hex() {
        let id = new_event_id();
        assert_eq!(id.len(), 28);
        assert!(id.starts_with("evt_"));
        assert!(id[4..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, new_event_id());
        assert!(check_event_id(&id).is_ok());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = parse_rfc3339("2026-01-02T03:04:05.678+02:00").unwrap();
        assert_eq!(t.timestamp_millis(), 1_767_315_845_678);
        for bad in ["", "2026-01-02", "yesterday", "2026-01-02T03:04:05"] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
    }

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn subjects_are_type_and_id() {
        assert_eq!(
            subject_doc(map(json!({"type": "object", "id": "obj_1"}))).unwrap(),
            doc! {"type": "object", "id": "obj_1"}
        );
        let refused = [
            (json!({"type": "object"}), "subject.id: required"),
            (
                json!({"type": "", "id": "x"}),
                "subject.type: must not be empty",
            ),
            (
                json!({"type": 1, "id": "x"}),
                "subject.type: must be a string",
            ),
            (
                json!({"type": "o", "id": "x", "extra": 1}),
                "subject.extra: unknown",
            ),
        ];
        for (value, message) in refused {
            let e = subject_doc(map(value)).unwrap_err();
            assert!(e.message.starts_with(message), "{}", e.message);
        }
    }

    #[test]
    fn cache_scopes_are_checked_field_by_field() {
        assert_eq!(
            cache_scope_doc(map(
                json!({"scope": "key", "keys": ["a", "b"], "namespace_id": null})
            ))
            .unwrap(),
            doc! {"scope": "key", "keys": ["a", "b"]}
        );
        let refused = [
            (json!({}), "cache_scope.scope: required"),
            (
                json!({"scope": "all"}),
                "cache_scope.scope: \"all\" is not one of",
            ),
            (
                json!({"scope": "key", "keys": "a"}),
                "cache_scope.keys: must be an array",
            ),
            (
                json!({"scope": "key", "keys": ["a", 2]}),
                "cache_scope.keys[1]: must be a string",
            ),
            (
                json!({"scope": "collection", "collection_id": 3}),
                "cache_scope.collection_id:",
            ),
            (
                json!({"scope": "collection", "ttl": 3}),
                "cache_scope.ttl: unknown",
            ),
        ];
        for (value, message) in refused {
            let e = cache_scope_doc(map(value)).unwrap_err();
            assert!(e.message.starts_with(message), "{}", e.message);
        }
    }

    #[test]
    fn json_becomes_bson_or_a_named_422() {
        let data =
            json!({"n": 1, "big": 5_000_000_000i64, "f": 1.5, "a": [1, {"b": null}], "s": "x"});
        let Value::Object(map) = data else {
            unreachable!()
        };
        let bson = object_to_bson("data", map, 1).unwrap();
        assert_eq!(
            bson,
            Bson::Document(doc! {
                "n": 1, "big": 5_000_000_000i64, "f": 1.5, "a": [1, {"b": Bson::Null}], "s": "x"
            })
        );
        let refused = [
            (json!({"$set": 1}), "data.$set"),
            (json!({"a": {"b\u{0}": 1}}), "data.a"),
        ];
        // Beyond i64, a number is kept as a double rather than refused.
        let Value::Object(big) = json!({"a": [u64::MAX]}) else {
            unreachable!()
        };
        assert_eq!(
            object_to_bson("data", big, 1).unwrap(),
            Bson::Document(doc! {"a": [u64::MAX as f64]})
        );
        for (value, field) in refused {
            let Value::Object(map) = value else {
                unreachable!()
            };
            let e = object_to_bson("data", map, 1).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert!(e.message.starts_with(&format!("{field}:")), "{}", e.message);
        }
        let mut deep = json!({});
        for _ in 0..MAX_DEPTH {
            deep = json!({ "x": deep });
        }
        let Value::Object(map) = deep else {
            unreachable!()
        };
        assert!(object_to_bson("data", map, 1).is_err());
    }
}
