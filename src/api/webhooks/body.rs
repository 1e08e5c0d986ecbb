//! The request bodies of the webhook routes, parsed and validated: everything a route does
//! before touching MongoDB (also what `fuzz/` feeds arbitrary bytes).
//!
//! Each body becomes [`WebhookFields`] and goes through the one webhook validation
//! ([`crate::webhook::validate`]) with the catalog of this daemon; the first problem is the
//! answer, a 422 naming its field.

use std::collections::BTreeMap;

use herald_actors::signing::generate_secret;
use mongodb::bson::{doc, DateTime, Document};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::super::catalog::Catalog;
use super::super::{ApiError, ApiRequest};
use crate::webhook::{self, FieldError, Origin, Rules, WebhookDocument, WebhookFields};

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
    rate_limit_per_second: Option<WholeNumber>,
    /// The tenant it belongs to (set at create, fixed after); absent: the operator's,
    /// receiving every event.
    #[serde(default)]
    namespace_id: Option<String>,
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
    rate_limit_per_second: Option<Option<WholeNumber>>,
}

/// `POST /v1/webhooks/{id}/rotate-secret` (the body is optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    secret: Option<String>,
}

impl From<FieldError> for ApiError {
    /// 422 `validation_failed`, naming the field by its path.
    fn from(error: FieldError) -> Self {
        ApiError::invalid_field(&error.path, error.message)
    }
}

/// The API's rules: a client writing, event types from this daemon's catalog.
fn validate(catalog: &Catalog, fields: &mut WebhookFields) -> Result<(), Vec<FieldError>> {
    let contains = |t: &str| catalog.contains(t);
    let rules = Rules {
        origin: Origin::Client,
        catalog: Some(webhook::Catalog {
            contains: &contains,
            called: "the event catalog (GET /v1/webhooks/events)",
        }),
    };
    webhook::validate(fields, &rules)
}

/// The fields of a body in the order they are judged, so that the answer names the first
/// problem whichever check found it.
const FIELD_ORDER: [&str; 6] = [
    "url",
    "event_types",
    "name",
    "headers",
    "enabled",
    "rate_limit_per_second",
];

/// The first of `errors` in field order, as the answer.
fn first(errors: Vec<FieldError>) -> Result<(), ApiError> {
    let rank = |e: &FieldError| FIELD_ORDER.iter().position(|f| e.path.starts_with(f));
    match errors
        .into_iter()
        .min_by_key(|e| rank(e).unwrap_or(usize::MAX))
    {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}

/// An integer as JSON Schema counts them: `20` and `20.0` alike (JSON does not tell them
/// apart, and generators and some JSON writers send the latter); `20.5` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WholeNumber(i64);

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WholeNumber;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<WholeNumber, E> {
                Ok(WholeNumber(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<WholeNumber, E> {
                i64::try_from(v)
                    .map(WholeNumber)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<WholeNumber, E> {
                // Within ±2^53 every whole f64 is exactly an i64.
                if v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_992.0 {
                    Ok(WholeNumber(v as i64))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
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

/// The body of a create request, validated, as the document to insert (with a fresh
/// `_id`), its name and its secret (generated when the body has none).
pub fn create_document(
    catalog: &Catalog,
    req: &ApiRequest,
) -> Result<(Document, Option<String>, String), ApiError> {
    let body: CreateBody = object_body(req)?;
    let namespace_id = body.namespace_id;
    let mut fields = WebhookFields {
        url: Some(body.url),
        event_types: Some(body.event_types),
        name: body.name,
        headers: Some(body.headers.unwrap_or_default().into_iter().collect()),
        secret: body.secret,
        rate_limit_per_second: body.rate_limit_per_second.map(|n| n.0),
    };
    validate(catalog, &mut fields).or_else(first)?;
    if let Some(namespace_id) = &namespace_id {
        crate::namespace::validate(namespace_id)
            .map_err(|e| ApiError::invalid_field("namespace_id", e))?;
    }
    let secret = fields.secret.take().unwrap_or_else(generate_secret);
    let name = fields.name.clone();
    let mut document = WebhookDocument::new(fields, secret.clone(), body.enabled).to_document();
    if let Some(namespace_id) = namespace_id {
        document.insert("namespace_id", namespace_id);
    }
    Ok((document, name, secret))
}

/// The body of a patch request, validated, as the update to apply and the new name (if
/// one is set). `headers` replaces the whole map; `null` removes `name`, `headers` or the
/// rate limit, and is refused for the other fields.
pub fn patch_update(
    catalog: &Catalog,
    req: &ApiRequest,
) -> Result<(Document, Option<String>), ApiError> {
    let body: PatchBody = object_body(req)?;
    let mut errors = Vec::new();
    let mut not_null = |field: &str| errors.push(FieldError::new(field, "may not be null"));
    let mut unset = Document::new();
    let mut fields = WebhookFields::default();
    match body.url {
        Some(None) => not_null("url"),
        given => fields.url = given.flatten(),
    }
    match body.event_types {
        Some(None) => not_null("event_types"),
        given => fields.event_types = given.flatten(),
    }
    match body.name {
        Some(None) => {
            unset.insert("name", "");
        }
        given => fields.name = given.flatten(),
    }
    fields.headers = body
        .headers
        .map(|h| h.unwrap_or_default().into_iter().collect());
    let enabled = match body.enabled {
        Some(None) => {
            not_null("enabled");
            None
        }
        given => given.flatten(),
    };
    match body.rate_limit_per_second {
        Some(None) => {
            unset.insert("rate_limit_per_second", "");
        }
        given => fields.rate_limit_per_second = given.flatten().map(|n| n.0),
    }
    if let Err(invalid) = validate(catalog, &mut fields) {
        errors.extend(invalid);
    }
    first(errors)?;

    let mut set = Document::new();
    if let Some(url) = fields.url {
        set.insert("url", url);
    }
    if let Some(types) = fields.event_types {
        set.insert("event_types", types);
    }
    if let Some(name) = &fields.name {
        set.insert("name", name);
    }
    if let Some(headers) = fields.headers {
        let headers: Document = headers.into_iter().map(|(k, v)| (k, v.into())).collect();
        set.insert("headers", headers);
    }
    if let Some(enabled) = enabled {
        set.insert("enabled", enabled);
    }
    if let Some(limit) = fields.rate_limit_per_second {
        // Validated, so in range.
        set.insert("rate_limit_per_second", limit as i32);
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
    Ok((update, fields.name))
}

/// The new secret of a rotate-secret request: the body's (validated) or a fresh one when
/// there is no body. A body of only whitespace is not JSON, and refused as such.
pub fn rotation_secret(req: &ApiRequest) -> Result<String, ApiError> {
    let body: RotateBody = if req.body.is_empty() {
        RotateBody::default()
    } else {
        object_body(req)?
    };
    let Some(secret) = body.secret else {
        return Ok(generate_secret());
    };
    let mut fields = WebhookFields {
        secret: Some(secret),
        ..WebhookFields::default()
    };
    let rules = Rules {
        origin: Origin::Client,
        catalog: None,
    };
    webhook::validate(&mut fields, &rules).map_err(|mut errors| errors.swap_remove(0))?;
    Ok(fields.secret.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::WholeNumber;

    #[test]
    fn whole_numbers_may_be_written_as_floats() {
        let read = |json: &str| serde_json::from_str::<WholeNumber>(json).map(|n| n.0);
        assert_eq!(read("20").unwrap(), 20);
        assert_eq!(read("20.0").unwrap(), 20);
        assert_eq!(read("-3").unwrap(), -3);
        assert!(read("20.5").is_err());
        assert!(read("\"20\"").is_err());
        assert!(read("1e300").is_err());
    }
}
