//! The one validation of a webhook's fields, for the API, `herald apply` and the store.
//!
//! Every source turns what it has into [`WebhookFields`] and calls [`validate`], which
//! normalizes what it accepts (the URL, duplicate event types) and names each problem by its
//! path. The limits are those of [`super::limits`], whoever asks.
//!
//! A few rules belong to *writing* a webhook and are skipped for a document read back from
//! MongoDB ([`Origin::Stored`]), because a defined outcome awaits such a document further
//! on: a plaintext or non-HTTPS URL (the transport refuses it on every attempt and records
//! why in the delivery), event types outside the catalog (they match no event), headers
//! herald sets itself (the transport drops them), and the header-name spellings MongoDB
//! could not store through the API (`$…`, dotted, twice in different case). A stored
//! document's name is not read: the engine never uses it.

use std::collections::HashSet;

use herald_actors::signing::SigningKey;
use hyper::header::{HeaderName, HeaderValue};

use super::limits::{
    MAX_HEADERS, MAX_HEADER_VALUE_BYTES, MAX_NAME_CHARS, MAX_URL_BYTES, RATE_LIMIT_RANGE,
    RESERVED_HEADERS,
};
use crate::secrets::{SecretBox, SEALED_PREFIX};

/// One problem with one field: `path` names it (`url`, `headers.X-Foo`, `event_types[1]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Where the fields come from, which decides the few rules of writing (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client writing a webhook: the API, and `herald apply` before it calls the API.
    Client,
    /// A document of the `webhooks` collection, possibly written there by hand.
    Stored,
}

/// The event types that exist, and what the message calls them.
#[derive(Clone, Copy)]
pub struct Catalog<'a> {
    pub contains: &'a dyn Fn(&str) -> bool,
    /// E.g. `the event catalog (GET /v1/webhooks/events)`: where a client can list them.
    pub called: &'a str,
}

/// What [`validate`] checks beyond the limits.
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    pub origin: Origin,
    /// Event types must be in it; `None` checks their shape only.
    pub catalog: Option<Catalog<'a>>,
}

/// A webhook's fields as given; `None` is "not given" (a patch, an absent optional field).
/// `enabled` and `paused` are booleans whatever the source, so there is nothing to check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookFields {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub name: Option<String>,
    /// In the order given (plaintext values).
    pub headers: Option<Vec<(String, String)>>,
    pub secret: Option<String>,
    pub rate_limit_per_second: Option<i64>,
}

/// Checks every given field under `rules`, normalizing in place the ones it accepts: the
/// URL (a fragment dropped, spaces escaped) and the event types (duplicates dropped, order
/// kept). The errors come in field order (`url`, `event_types`, `name`, `headers`, `secret`,
/// `rate_limit_per_second`), at most one per field.
pub fn validate(fields: &mut WebhookFields, rules: &Rules) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut check = |result: Result<(), FieldError>| {
        if let Err(e) = result {
            errors.push(e);
        }
    };
    if let Some(url) = &mut fields.url {
        check(normalize_url(url, rules.origin).map(|normalized| *url = normalized));
    }
    if let Some(types) = &mut fields.event_types {
        check(event_types(types, rules).map(|unique| *types = unique));
    }
    if let Some(name) = &fields.name {
        check(self::name(name));
    }
    if let Some(headers) = &fields.headers {
        check(self::headers(headers, rules.origin));
    }
    if let Some(secret) = &fields.secret {
        check(self::secret(secret));
    }
    if let Some(limit) = fields.rate_limit_per_second {
        check(rate_limit(limit));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A client's URL: absolute `https://` with a host, normalized (so the store and the
/// transport, which parse URLs with hyper, can parse it too). A stored URL: what hyper
/// parses as absolute with a host, kept as it is.
fn normalize_url(raw: &str, origin: Origin) -> Result<String, FieldError> {
    let invalid = |message: String| FieldError::new("url", message);
    if raw.len() > MAX_URL_BYTES {
        return Err(invalid(format!("longer than {MAX_URL_BYTES} bytes")));
    }
    if origin == Origin::Stored {
        return match raw.parse::<hyper::Uri>() {
            Ok(uri) if uri.scheme().is_some() && uri.host().is_some_and(|h| !h.is_empty()) => {
                Ok(raw.to_owned())
            }
            _ => Err(invalid("not an absolute URL with a host".into())),
        };
    }
    let mut url =
        url::Url::parse(raw.trim()).map_err(|e| invalid(format!("not an absolute URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            return Err(invalid(
                "HTTPS is required: plaintext http:// URLs are refused".into(),
            ))
        }
        other => return Err(invalid(format!("HTTPS is required, not {other}:"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host".into()));
    }
    // Never sent anyway, and hyper refuses URIs with one.
    url.set_fragment(None);
    let normalized = String::from(url);
    if normalized.parse::<hyper::Uri>().is_err() {
        return Err(invalid("not a valid request URI".into()));
    }
    Ok(normalized)
}

/// At least one type, none blank; for a client also catalog types (duplicates dropped,
/// order kept), or `*` with nothing but herald's operational types beside it.
fn event_types(types: &[String], rules: &Rules) -> Result<Vec<String>, FieldError> {
    if types.is_empty() {
        return Err(FieldError::new(
            "event_types",
            "must list at least one event type, or [\"*\"] for all",
        ));
    }
    if let Some(i) = types.iter().position(|t| t.trim().is_empty()) {
        return Err(FieldError::new(
            format!("event_types[{i}]"),
            "event types must not be empty",
        ));
    }
    if rules.origin == Origin::Stored {
        return Ok(types.to_vec());
    }
    let mut unique: Vec<String> = Vec::with_capacity(types.len());
    if types.iter().any(|t| t == "*") {
        // `*` is every domain event; herald's operational events are only ever named.
        unique.push("*".to_owned());
        for event_type in types {
            if unique.contains(event_type) {
                continue;
            }
            if !herald_actors::webhook::is_operational(event_type) {
                return Err(FieldError::new(
                    "event_types",
                    "\"*\" subscribes to every event but herald's operational ones \
                     (webhook.endpoint.*, delivery.exhausted); only those may be named beside it",
                ));
            }
            unique.push(event_type.clone());
        }
        return Ok(unique);
    }
    for (i, event_type) in types.iter().enumerate() {
        if let Some(catalog) = rules.catalog {
            if !(catalog.contains)(event_type) {
                return Err(FieldError::new(
                    format!("event_types[{i}]"),
                    format!("{event_type:?} is not in {}", catalog.called),
                ));
            }
        }
        if !unique.contains(event_type) {
            unique.push(event_type.clone());
        }
    }
    Ok(unique)
}

fn name(name: &str) -> Result<(), FieldError> {
    if name.trim().is_empty() {
        return Err(FieldError::new("name", "may not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(FieldError::new(
            "name",
            format!("longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::new(
            "name",
            "may not contain control characters",
        ));
    }
    Ok(())
}

/// At most [`MAX_HEADERS`] legal headers with legal values; for a client also none that
/// herald sets itself, each once (case-insensitively), storable as MongoDB field names.
fn headers(headers: &[(String, String)], origin: Origin) -> Result<(), FieldError> {
    if headers.len() > MAX_HEADERS {
        return Err(FieldError::new(
            "headers",
            format!("at most {MAX_HEADERS} headers, got {}", headers.len()),
        ));
    }
    let mut seen = HashSet::new();
    for (name, value) in headers {
        let invalid = |message: String| FieldError::new(format!("headers.{name}"), message);
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("not a legal HTTP header name".into()))?;
        if origin == Origin::Client {
            // Legal in HTTP, but MongoDB reads them as paths or operators in field names.
            if name.starts_with('$') || name.contains('.') {
                return Err(invalid(
                    "header names may not start with '$' or contain '.'".into(),
                ));
            }
            if RESERVED_HEADERS.contains(&parsed.as_str()) {
                return Err(invalid(
                    "herald sets this header itself; it cannot be overridden".into(),
                ));
            }
            if !seen.insert(parsed) {
                return Err(invalid(
                    "given twice (header names are case-insensitive)".into(),
                ));
            }
        }
        if value.len() > MAX_HEADER_VALUE_BYTES {
            return Err(invalid(format!(
                "value longer than {MAX_HEADER_VALUE_BYTES} bytes"
            )));
        }
        // `HeaderValue` takes obs-text (bytes 128–255) too; the API keeps to visible ASCII.
        // (Documents stored before it did still run: HTTP allows those bytes.)
        let visible_ascii = value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        if (origin == Origin::Client && !visible_ascii) || HeaderValue::from_str(value).is_err() {
            return Err(invalid(
                "not a legal HTTP header value (visible ASCII, spaces and tabs only)".into(),
            ));
        }
        // Stored as given without a key, it would read back as a value herald encrypted.
        // (A stored value has been opened already.)
        if origin == Origin::Client && SecretBox::is_sealed(value) {
            return Err(invalid(format!(
                "values may not start with {SEALED_PREFIX:?} (reserved for values herald encrypts)"
            )));
        }
    }
    Ok(())
}

fn secret(secret: &str) -> Result<(), FieldError> {
    SigningKey::parse(secret)
        .map(drop)
        .map_err(|e| FieldError::new("secret", e.to_string()))
}

fn rate_limit(limit: i64) -> Result<(), FieldError> {
    if RATE_LIMIT_RANGE.contains(&limit) {
        return Ok(());
    }
    Err(FieldError::new(
        "rate_limit_per_second",
        format!(
            "{limit} is out of range {}..={}",
            RATE_LIMIT_RANGE.start(),
            RATE_LIMIT_RANGE.end()
        ),
    ))
}
