//! The audit trail (contract §7): every write made through the API is recorded, and
//! `GET /v1/audit` lists the records.
//!
//! Recorded: creating, changing, deleting, pausing, resuming, recovering a webhook and
//! rotating its secret; creating and deleting a connection; creating and revoking a key;
//! retrying a delivery — once the route answered 2xx. Not recorded: event publishes (data,
//! not configuration, and as frequent as the producer makes them: the outbox is their
//! record) and inbound provider webhooks (`inbound_events` is theirs).
//!
//! A record is `{at, key_id, action, object_type, object_id, changed_fields,
//! namespace_id}`. `changed_fields` is what the request set, with every credential
//! replaced by `********`: secrets (`secret`, `webhook_secret`), header values, and a URL's
//! userinfo, query and fragment (where tokens hide). Neither the caller's key nor any
//! secret is ever written. A record that cannot be written is logged at warn; the write it
//! describes has happened, so the request still succeeds.

use hyper::{Response, StatusCode};
use mongodb::bson::{self, doc, Bson, DateTime, Document};
use serde_json::{json, Map, Value};

use super::auth::{Admitted, Caller};
use super::{json_response, ApiRequest, ApiResult, AppState, Body};
use crate::store::audit::{self as store, AuditFilter};
use crate::store::page::PageLimits;
use crate::webhook::limits::REDACTED;

/// Page sizes of `GET /v1/audit`.
const PAGE: PageLimits = PageLimits {
    default: 50,
    max: 500,
    empty_cursor_is_first_page: true,
};

/// The query parameters `GET /v1/audit` understands; any other is a 400.
const LIST_PARAMS: &[&str] = &[
    "action",
    "object_type",
    "object_id",
    "key_id",
    "namespace_id",
    "since",
    "until",
    "limit",
    "cursor",
];

/// What a route does, as the audit trail names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// `webhook.create`, `key.revoke`, …
    pub name: &'static str,
    /// `webhook`, `connection`, `key`, `delivery`.
    pub object_type: &'static str,
    /// What to record as changed.
    pub changes: Changes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changes {
    /// The request body's fields, redacted (create, patch, recover).
    Body,
    /// A new signing secret (shown only as redacted).
    Secret,
    /// `{"paused": …}`.
    Paused(bool),
    /// Nothing beyond the action itself (delete, revoke, retry).
    Nothing,
}

impl Action {
    pub const fn new(name: &'static str, object_type: &'static str, changes: Changes) -> Self {
        Self {
            name,
            object_type,
            changes,
        }
    }
}

/// Records `action` once its route answered `response`, if that is a success.
pub async fn record(
    app: &AppState,
    caller: &Caller,
    action: Action,
    admitted: &Admitted,
    req: &ApiRequest,
    response: &Response<Body>,
) {
    if !response.status().is_success() {
        return;
    }
    // A create names its new object only in its answer.
    let created = match admitted.object_id {
        Some(_) => None,
        None => answer_json(response).await,
    };
    let object_id = admitted.object_id.clone().or_else(|| {
        let field = format!("{}_id", action.object_type);
        created
            .as_ref()
            .and_then(|c| c.get(&field))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let namespace_id = match &created {
        Some(created) => created
            .get("namespace_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        None => admitted.object_namespace.clone().flatten(),
    }
    .filter(|ns| !ns.is_empty());
    let changed = match action.changes {
        Changes::Body => match serde_json::from_slice::<Value>(&req.body) {
            Ok(Value::Object(fields)) => redact(fields),
            _ => Map::new(),
        },
        Changes::Secret => Map::from_iter([("secret".into(), json!(REDACTED))]),
        Changes::Paused(paused) => Map::from_iter([("paused".into(), json!(paused))]),
        Changes::Nothing => Map::new(),
    };
    let mut record = doc! {
        "_id": store::new_id(),
        "at": DateTime::now(),
        "key_id": caller.key_id.as_deref().map_or(Bson::Null, |k| Bson::String(k.to_owned())),
        "action": action.name,
        "object_type": action.object_type,
        "object_id": object_id.map_or(Bson::Null, Bson::String),
        "changed_fields": bson::to_bson(&Value::Object(changed)).unwrap_or(Bson::Null),
    };
    if let Some(namespace_id) = namespace_id {
        record.insert("namespace_id", namespace_id);
    }
    if let Err(e) = store::insert(&app.db, record).await {
        tracing::warn!(
            action = action.name,
            error = %crate::text::one_line(&e.to_string()),
            "could not write the audit record of an API write"
        );
    }
}

/// The JSON of a (fully buffered) answer.
async fn answer_json(response: &Response<Body>) -> Option<Value> {
    use http_body_util::BodyExt;
    let bytes = response.body().clone().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&bytes).ok()
}

/// A request body's fields with every credential replaced (see the module docs).
pub fn redact(mut fields: Map<String, Value>) -> Map<String, Value> {
    for (name, value) in fields.iter_mut() {
        match name.as_str() {
            "secret" | "webhook_secret" | "key" if !value.is_null() => {
                *value = json!(REDACTED);
            }
            "headers" => {
                if let Value::Object(headers) = value {
                    for header in headers.values_mut() {
                        *header = json!(REDACTED);
                    }
                }
            }
            "url" => {
                if let Value::String(url) = value {
                    *url = redact_url(url);
                }
            }
            _ => {}
        }
    }
    fields
}

/// A URL without its userinfo, query and fragment (each replaced by `********`); a string
/// that is not a URL is redacted whole.
fn redact_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return REDACTED.to_owned();
    };
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_username(REDACTED);
        let _ = url.set_password(None);
    }
    if url.query().is_some() {
        url.set_query(Some(REDACTED));
    }
    if url.fragment().is_some() {
        url.set_fragment(Some(REDACTED));
    }
    url.to_string()
}

/// `GET /v1/audit` → `{results, next_cursor}`, oldest first; filters `action`,
/// `object_type`, `object_id`, `key_id`, `namespace_id`, `since`, `until` (RFC 3339).
pub async fn list(app: &AppState, req: &ApiRequest) -> ApiResult {
    req.only_query_params(LIST_PARAMS)?;
    let page = req.page(PAGE)?;
    let time = |name: &str| super::deliveries::time_param(req, name);
    let text = |name: &str| req.query.get(name).cloned();
    let filter = AuditFilter {
        action: text("action"),
        object_type: text("object_type"),
        object_id: text("object_id"),
        key_id: text("key_id"),
        // Checked, and forced for a namespaced key, by `super::auth`.
        namespace_id: text("namespace_id"),
        since: time("since")?,
        until: time("until")?,
    };
    let found = store::list(&app.db, &filter, &page).await?;
    Ok(json_response(StatusCode::OK, found.to_json(view)))
}

fn view(record: &Document) -> Value {
    let text = |field: &str| record.get_str(field).ok();
    json!({
        "audit_id": text("_id"),
        "at": record.get_datetime("at").ok().map(|t| {
            t.to_chrono().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        }),
        "key_id": text("key_id"),
        "action": text("action"),
        "object_type": text("object_type"),
        "object_id": text("object_id"),
        "changed_fields": record
            .get_document("changed_fields")
            .map(|d| Bson::Document(d.clone()).into_relaxed_extjson())
            .unwrap_or_else(|_| json!({})),
        "namespace_id": text("namespace_id"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_record() {
        let body = json!({
            "url": "https://user:pw@hooks.example.com/in?token=abc#frag",
            "secret": "whsec_c2VjcmV0",
            "webhook_secret": "mux-secret",
            "headers": {"X-Mixpeek-Secret": "shh", "X-Other": "also"},
            "event_types": ["*"],
            "name": "kept",
        });
        let Value::Object(fields) = body else {
            unreachable!()
        };
        let shown = Value::Object(redact(fields)).to_string();
        for secret in [
            "pw",
            "user",
            "abc",
            "frag",
            "c2VjcmV0",
            "mux-secret",
            "shh",
            "also",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("hooks.example.com/in"), "{shown}");
        assert!(shown.contains("X-Mixpeek-Secret"), "{shown}");
        assert!(shown.contains("kept"), "{shown}");
        assert_eq!(redact_url("not a url"), REDACTED);
        assert_eq!(
            redact_url("https://hooks.example.com/a"),
            "https://hooks.example.com/a"
        );
    }
}
