//! Who is calling, and what they may do (contract §7): authentication by bearer key, then
//! the role and namespace scope of every request.
//!
//! Keys:
//! - `--api-key` is the operator's bootstrap key: admin of every namespace, `key_id`
//!   `"operator"` in the audit trail. Compared in constant time.
//! - Keys made with `POST /v1/keys` (`hk_…`) are looked up by their SHA-256 on every
//!   request ([`crate::store::keys`]): nothing is cached, so a revoked key is refused at once
//!   by every daemon sharing the database. Wrong prefix, unknown or revoked: 401.
//! - No `--api-key` (a loopback listener only): a request without a key is the operator's,
//!   as before keys existed; a request that presents a key still has it checked.
//!
//! The scheme is matched case-insensitively (`Bearer`, `bearer`, `BEARER`), as HTTP
//! authentication schemes are.
//!
//! Scope:
//! - a `read` key gets 403 on every write (any method but GET/HEAD);
//! - a namespaced key sees and changes only its namespace: another namespace's webhook,
//!   connection, delivery or key answers 404 (never 403: no existence leak); its lists are
//!   always of its namespace; what it creates is put in its namespace (a body naming another
//!   namespace is a 400 naming `namespace_id`);
//! - keys are managed by admin keys only; a namespaced admin manages its namespace's keys;
//! - `GET /v1/cluster` describes every tenant's webhooks, so it needs an all-namespace key.
//!
//! The [`Caller`] travels to handlers in the request's extensions ([`caller`]).

use hyper::{HeaderMap, Method, StatusCode};
use mongodb::bson::DateTime;
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::request::path_id;
use super::{ApiError, ApiRequest, AppState};
use crate::store::keys::{self as key_store, Role, KEY_PREFIX};
use crate::store::{connections, deliveries, webhooks};

/// The audit trail's `key_id` for requests made with `--api-key`.
pub const OPERATOR_KEY_ID: &str = "operator";

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `key_…`, [`OPERATOR_KEY_ID`], or `None` for a keyless request (no `--api-key`).
    pub key_id: Option<String>,
    /// The one namespace it may see; `None`: every namespace.
    pub namespace_id: Option<String>,
    pub role: Role,
}

impl Caller {
    fn operator(key_id: Option<&str>) -> Self {
        Self {
            key_id: key_id.map(str::to_owned),
            namespace_id: None,
            role: Role::Admin,
        }
    }

    /// Whether an object of namespace `namespace` is visible to this caller.
    pub fn sees(&self, namespace: Option<&str>) -> bool {
        match &self.namespace_id {
            None => true,
            Some(mine) => namespace == Some(mine.as_str()),
        }
    }
}

/// The caller of a request that went through [`authenticate`]; the operator's for a
/// request that did not (public routes).
pub fn caller(req: &ApiRequest) -> Caller {
    req.parts
        .extensions
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(|| Caller::operator(None))
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!("Authorization: {message}"),
    )
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// The bearer token of `headers`, `None` when there is no `Authorization` header.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(hyper::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| unauthorized("not a valid header value"))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized("expected Bearer <key>"));
    }
    Ok(Some(token.trim()))
}

/// Who sent `headers`: the operator (`--api-key`, or no key where none is configured) or
/// the holder of an API key; a 401 for anything else.
pub async fn authenticate(app: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let configured = app.config.api_key.as_deref();
    let Some(token) = bearer(headers)? else {
        return match configured {
            None => Ok(Caller::operator(None)),
            Some(_) => Err(unauthorized(
                "missing API key (Authorization: Bearer <key>)",
            )),
        };
    };
    if let Some(expected) = configured {
        // Compared as digests: equal lengths, so the comparison's time says nothing about
        // the configured key's length either.
        let presented = key_store::hash(token);
        if bool::from(
            presented
                .as_bytes()
                .ct_eq(key_store::hash(expected).as_bytes()),
        ) {
            return Ok(Caller::operator(Some(OPERATOR_KEY_ID)));
        }
    }
    if !token.starts_with(KEY_PREFIX) {
        return Err(unauthorized(&format!(
            "invalid API key (herald keys start with {KEY_PREFIX})"
        )));
    }
    if !key_store::well_formed(token) {
        return Err(unauthorized("invalid API key"));
    }
    let hash = key_store::hash(token);
    let Some(stored) = key_store::find_by_hash(&app.db, &hash).await? else {
        return Err(unauthorized("invalid API key"));
    };
    // Found by its hash already; compared again in constant time all the same.
    let matches = stored
        .get_str("hash")
        .is_ok_and(|h| bool::from(h.as_bytes().ct_eq(hash.as_bytes())));
    if !matches {
        return Err(unauthorized("invalid API key"));
    }
    if stored.get_datetime("revoked_at").is_ok() {
        return Err(unauthorized("this API key was revoked"));
    }
    let key_id = stored.get_str("_id").unwrap_or_default().to_owned();
    let role = stored
        .get_str("role")
        .ok()
        .and_then(Role::parse)
        // A document edited by hand into something unknown may only read.
        .unwrap_or(Role::Read);
    let namespace_id = stored.get_str("namespace_id").ok().map(str::to_owned);
    note_use(app, &key_id, &stored);
    Ok(Caller {
        key_id: Some(key_id),
        namespace_id,
        role,
    })
}

/// Refreshes `last_used_at` when it is older than its resolution, off the request's path.
fn note_use(app: &AppState, key_id: &str, stored: &mongodb::bson::Document) {
    let now = DateTime::now();
    let fresh = stored.get_datetime("last_used_at").is_ok_and(|t| {
        now.timestamp_millis() - t.timestamp_millis()
            < key_store::LAST_USED_RESOLUTION.as_millis() as i64
    });
    if fresh {
        return;
    }
    let db = app.db.clone();
    let key_id = key_id.to_owned();
    tokio::spawn(async move {
        if let Err(e) = key_store::touch(&db, &key_id, now).await {
            tracing::debug!(key_id, error = %crate::text::one_line(&e.to_string()), "could not record the key's last use");
        }
    });
}

/// What a route acts on, for scoping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Health, metrics, the catalog: no tenant data.
    Open,
    Webhooks,
    /// A webhook by id (as in the path, still percent-encoded).
    Webhook(String),
    Connections,
    Connection(String),
    Deliveries,
    Delivery(String),
    Events,
    /// `POST /v1/events/batch`: each of its `events` is scoped as a single publish.
    EventBatch,
    Keys,
    Key(String),
    Audit,
    Cluster,
}

/// What [`admit`] learnt about the object a request names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admitted {
    /// The object's id, decoded.
    pub object_id: Option<String>,
    /// Its namespace, when it was looked up (`Some(None)`: it has none).
    pub object_namespace: Option<Option<String>>,
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// Whether `caller` may make this request: role, key management, namespace of the object
/// named in the path. Objects are looked up only for namespaced callers and for writes
/// (whose audit record names the object's namespace).
pub async fn admit(
    app: &AppState,
    caller: &Caller,
    method: &Method,
    target: &Target,
) -> Result<Admitted, ApiError> {
    let write = is_write(method);
    if write && caller.role == Role::Read {
        return Err(forbidden("this API key may only read"));
    }
    match target {
        Target::Keys | Target::Key(_) if caller.role != Role::Admin => {
            return Err(forbidden("only an admin key may manage API keys"));
        }
        Target::Cluster if caller.namespace_id.is_some() => {
            return Err(forbidden(
                "GET /v1/cluster describes every namespace; it needs a key for all namespaces",
            ));
        }
        _ => {}
    }
    let (kind, raw) = match target {
        Target::Webhook(id) => ("webhook", id),
        Target::Connection(id) => ("connection", id),
        Target::Delivery(id) => ("delivery", id),
        Target::Key(id) => ("key", id),
        _ => return Ok(Admitted::default()),
    };
    let id = path_id(raw)?;
    if caller.namespace_id.is_none() && !write {
        return Ok(Admitted {
            object_id: Some(id),
            object_namespace: None,
        });
    }
    let namespace = match kind {
        "webhook" => webhooks::namespace_of(&app.db, &id).await?,
        "connection" => connections::namespace_of(&app.db, &id).await?,
        "key" => key_store::get(&app.db, &id)
            .await?
            .map(|k| k.get_str("namespace_id").ok().map(str::to_owned)),
        _ => match deliveries::get(&app.db, &id).await? {
            None => None,
            Some(delivery) => match delivery.get_str("webhook_id") {
                // A delivery follows its webhook's namespace; once the webhook is gone,
                // only an all-namespace key sees it.
                Ok(webhook_id) => Some(
                    webhooks::namespace_of(&app.db, webhook_id)
                        .await?
                        .unwrap_or(Some(String::new())),
                ),
                Err(_) => Some(None),
            },
        },
    };
    if let Some(found) = &namespace {
        if !caller.sees(found.as_deref()) {
            return Err(ApiError::not_found(kind, &id));
        }
    }
    Ok(Admitted {
        object_id: Some(id),
        object_namespace: namespace,
    })
}

/// Scopes a request's query and body to the caller: a list's `namespace_id` filter is
/// checked (400 naming it) and, for a namespaced key, set to its namespace; what a
/// namespaced key creates (webhooks, connections, keys, events) is put in its namespace.
pub fn scope_request(
    caller: &Caller,
    method: &Method,
    target: &Target,
    req: &mut ApiRequest,
) -> Result<(), ApiError> {
    let list = matches!(
        target,
        Target::Webhooks | Target::Connections | Target::Deliveries | Target::Keys | Target::Audit
    ) && !is_write(method);
    let create = matches!(
        target,
        Target::Webhooks | Target::Connections | Target::Keys | Target::Events
    ) && *method == Method::POST;
    if list {
        if let Some(given) = req.query.get("namespace_id") {
            crate::namespace::validate(given)
                .map_err(|e| ApiError::bad_request(format!("query parameter namespace_id: {e}")))?;
            if !caller.sees(Some(given)) {
                return Err(outside_namespace(caller));
            }
        }
        if let Some(mine) = &caller.namespace_id {
            req.query.insert("namespace_id".into(), mine.clone());
        }
    }
    let batch = *target == Target::EventBatch && *method == Method::POST;
    if create || batch {
        if let Some(mine) = &caller.namespace_id {
            // Anything but a JSON object is left for the route to refuse in its own words.
            let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&req.body) else {
                return Ok(());
            };
            if batch {
                if let Some(Value::Array(events)) = body.get_mut("events") {
                    for event in events.iter_mut() {
                        if let Value::Object(event) = event {
                            place_in(caller, mine, event)?;
                        }
                    }
                }
            } else {
                place_in(caller, mine, &mut body)?;
            }
            req.body = serde_json::to_vec(&body)
                .map_err(|e| ApiError::bad_request(e.to_string()))?
                .into();
        }
    }
    Ok(())
}

/// Puts an object a namespaced caller creates in its namespace `mine`; naming another is
/// refused.
fn place_in(
    caller: &Caller,
    mine: &str,
    object: &mut serde_json::Map<String, Value>,
) -> Result<(), ApiError> {
    match object.get("namespace_id") {
        None | Some(Value::Null) => {
            object.insert("namespace_id".into(), Value::String(mine.to_owned()));
            Ok(())
        }
        Some(Value::String(given)) if given == mine => Ok(()),
        Some(_) => Err(outside_namespace(caller)),
    }
}

fn outside_namespace(caller: &Caller) -> ApiError {
    ApiError::bad_request(format!(
        "namespace_id: this API key belongs to namespace {:?} and can act only in it",
        caller.namespace_id.as_deref().unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(hyper::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for value in ["Bearer k1", "bearer k1", "BEARER k1", "BeArEr   k1 "] {
            assert_eq!(bearer(&headers(value)).unwrap(), Some("k1"), "{value}");
        }
        assert_eq!(bearer(&HeaderMap::new()).unwrap(), None);
        for value in ["Basic azE=", "k1", "Bearerk1"] {
            let error = bearer(&headers(value)).unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED, "{value}");
            assert!(error.message.starts_with("Authorization:"), "{value}");
        }
    }

    fn request(uri: &str, body: &str) -> ApiRequest {
        let (parts, ()) = hyper::Request::builder()
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts();
        let query = parts
            .uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        ApiRequest {
            parts,
            query,
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    fn tenant(namespace: &str) -> Caller {
        Caller {
            key_id: Some("key_1".into()),
            namespace_id: Some(namespace.into()),
            role: Role::Admin,
        }
    }

    #[test]
    fn a_namespaced_key_creates_in_its_namespace_and_lists_only_it() {
        let caller = tenant("ns_a");
        let mut req = request(
            "/v1/webhooks",
            r#"{"url": "https://x", "event_types": ["*"]}"#,
        );
        scope_request(&caller, &Method::POST, &Target::Webhooks, &mut req).unwrap();
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["namespace_id"], "ns_a");
        assert_eq!(body["url"], "https://x");

        let mut same = request("/v1/events", r#"{"namespace_id": "ns_a"}"#);
        scope_request(&caller, &Method::POST, &Target::Events, &mut same).unwrap();
        let mut other = request("/v1/keys", r#"{"role": "read", "namespace_id": "ns_b"}"#);
        let error = scope_request(&caller, &Method::POST, &Target::Keys, &mut other).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(
            error.message.starts_with("namespace_id:"),
            "{}",
            error.message
        );
        // A batch: each of its events is put in the namespace; one naming another refuses
        // the request.
        let mut batch = request(
            "/v1/events/batch",
            r#"{"events": [{"event_type": "x"}, {"event_type": "y", "namespace_id": "ns_a"}]}"#,
        );
        scope_request(&caller, &Method::POST, &Target::EventBatch, &mut batch).unwrap();
        let scoped: Value = serde_json::from_slice(&batch.body).unwrap();
        assert_eq!(scoped["events"][0]["namespace_id"], "ns_a");
        assert_eq!(scoped["events"][1]["namespace_id"], "ns_a");
        let mut across = request(
            "/v1/events/batch",
            r#"{"events": [{"event_type": "x"}, {"event_type": "y", "namespace_id": "ns_b"}]}"#,
        );
        let error =
            scope_request(&caller, &Method::POST, &Target::EventBatch, &mut across).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);

        // Not JSON: left for the route to refuse in its own words.
        let mut broken = request("/v1/webhooks", "{nope");
        scope_request(&caller, &Method::POST, &Target::Webhooks, &mut broken).unwrap();
        assert_eq!(&broken.body[..], b"{nope");

        let mut list = request("/v1/deliveries?status=failed", "");
        scope_request(&caller, &Method::GET, &Target::Deliveries, &mut list).unwrap();
        assert_eq!(list.query["namespace_id"], "ns_a");
        let mut across = request("/v1/audit?namespace_id=ns_b", "");
        assert!(scope_request(&caller, &Method::GET, &Target::Audit, &mut across).is_err());

        // An all-namespace caller's requests are left as sent, its filters checked.
        let operator = Caller::operator(Some(OPERATOR_KEY_ID));
        let mut any = request("/v1/webhooks?namespace_id=ns_b", "");
        scope_request(&operator, &Method::GET, &Target::Webhooks, &mut any).unwrap();
        assert_eq!(any.query["namespace_id"], "ns_b");
        let mut odd = request("/v1/webhooks?namespace_id=a%20b", "");
        let error =
            scope_request(&operator, &Method::GET, &Target::Webhooks, &mut odd).unwrap_err();
        assert!(error.message.contains("namespace_id"), "{}", error.message);
    }

    #[test]
    fn a_namespaced_caller_sees_only_its_namespace() {
        let tenant = Caller {
            key_id: Some("key_1".into()),
            namespace_id: Some("ns_a".into()),
            role: Role::Read,
        };
        assert!(tenant.sees(Some("ns_a")));
        assert!(!tenant.sees(Some("ns_b")));
        assert!(!tenant.sees(None));
        let operator = Caller::operator(Some(OPERATOR_KEY_ID));
        assert!(operator.sees(None) && operator.sees(Some("ns_b")));
    }
}
