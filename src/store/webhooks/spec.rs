//! A stored webhook document as the engine's [`WebhookSpec`].
//!
//! Documents may have been written by hand, so each field is read for its type first; then
//! the fields go through the one webhook validation ([`crate::webhook::validate`]) as
//! [`Origin::Stored`]: the same limits as the API, without the rules that belong to writing
//! (a plaintext URL, say, is accepted here and refused by the transport on every attempt,
//! which records why in each delivery).
//!
//! The secret, the rotated-out secrets and the header values may be stored sealed
//! (`enc:v1:…`, see [`crate::secrets`]) or in plaintext; the engine gets them opened. One
//! that cannot be opened (no `--secret-key`, another key) refuses the webhook like any other
//! bad field, naming the field, never its value.

use std::time::SystemTime;

use herald_actors::signing::{Signer, SigningKey};
use herald_actors::{EventFilter, WebhookSpec};
use mongodb::bson::{Bson, Document};

use crate::secrets::{SecretBox, SecretError};
use crate::webhook::{validate, FieldError, Origin, Rules, WebhookFields};

/// Why a webhook document cannot be delivered to.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadWebhook {
    #[error("_id must be a string")]
    Id,
    /// A field of the wrong type, or one the webhook rules refuse.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A sealed value that cannot be opened; `field` is `secret` or `headers.<name>`.
    #[error("{field}: {reason}")]
    Sealed { field: String, reason: SecretError },
}

fn wrong(path: impl Into<String>, message: &str) -> BadWebhook {
    BadWebhook::Field(FieldError::new(path, message))
}

/// Parses and validates a webhook document, opening its sealed values with `secrets`.
pub fn spec_from_doc(
    doc: &Document,
    secrets: &SecretBox,
    now: SystemTime,
) -> Result<WebhookSpec, BadWebhook> {
    let id = doc.get_str("_id").map_err(|_| BadWebhook::Id)?;
    let url = doc
        .get_str("url")
        .map_err(|_| wrong("url", "missing or not a string"))?;
    let event_types = match doc.get("event_types") {
        Some(Bson::Array(items)) => items
            .iter()
            .map(|b| b.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| wrong("event_types", "must be an array of strings"))?,
        _ => return Err(wrong("event_types", "must be an array of strings")),
    };
    let secret = doc
        .get_str("secret")
        .map_err(|_| wrong("secret", "missing"))?;
    let secret = secrets.open(secret).map_err(|reason| BadWebhook::Sealed {
        field: "secret".into(),
        reason,
    })?;
    let headers = headers(doc, secrets)?;
    let enabled = boolean(doc, "enabled", true)?;
    let paused = boolean(doc, "paused", false)?;
    let rate_limit = rate_limit(doc)?;
    let namespace_id =
        crate::namespace::of_document(doc).map_err(|e| wrong("namespace_id", &e.to_string()))?;

    let mut fields = WebhookFields {
        url: Some(url.to_owned()),
        event_types: Some(event_types),
        name: None,
        headers: Some(headers),
        secret: Some(secret.into_owned()),
        rate_limit_per_second: rate_limit,
    };
    let rules = Rules {
        origin: Origin::Stored,
        catalog: None,
    };
    validate(&mut fields, &rules).map_err(|mut errors| errors.swap_remove(0))?;

    let secret = fields.secret.unwrap_or_default();
    let mut keys = vec![SigningKey::parse(&secret).map_err(|e| wrong("secret", &e.to_string()))?];
    keys.extend(previous_keys(doc, secrets, now));
    Ok(WebhookSpec {
        id: id.into(),
        url: fields.url.unwrap_or_default().into(),
        filter: EventFilter::from_list(&fields.event_types.unwrap_or_default()),
        signer: Signer::new(keys),
        headers: fields.headers.unwrap_or_default().into(),
        enabled,
        paused,
        // Validated, so in range.
        rate_limit_per_second: rate_limit.map(|n| n as u32),
        namespace_id: namespace_id.map(Into::into),
    })
}

/// Rotated-out secrets keep signing until they expire; one that cannot be opened or parsed
/// is skipped (the current secret still signs).
fn previous_keys<'a>(
    doc: &'a Document,
    secrets: &'a SecretBox,
    now: SystemTime,
) -> impl Iterator<Item = SigningKey> + 'a {
    doc.get_array("previous_secrets")
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(Bson::as_document)
        .filter_map(move |entry| {
            let secret = entry.get_str("secret").ok()?;
            let expires = entry.get_datetime("expires_at").ok()?.to_system_time();
            if expires <= now {
                return None;
            }
            let secret = secrets.open(secret).ok()?;
            Some(SigningKey::parse(&secret).ok()?.expiring_at(expires))
        })
}

/// The `headers` map, values opened, in stored order.
fn headers(doc: &Document, secrets: &SecretBox) -> Result<Vec<(String, String)>, BadWebhook> {
    let map = match doc.get("headers") {
        None | Some(Bson::Null) => return Ok(Vec::new()),
        Some(Bson::Document(map)) => map,
        Some(_) => return Err(wrong("headers", "must map header names to string values")),
    };
    let mut headers = Vec::with_capacity(map.len());
    for (name, value) in map {
        let field = format!("headers.{name}");
        let Some(value) = value.as_str() else {
            return Err(wrong(field, "must be a string"));
        };
        let value = secrets
            .open(value)
            .map_err(|reason| BadWebhook::Sealed { field, reason })?;
        headers.push((name.clone(), value.into_owned()));
    }
    Ok(headers)
}

/// A boolean field; absent or `null` is `default`.
fn boolean(doc: &Document, key: &str, default: bool) -> Result<bool, BadWebhook> {
    match doc.get(key) {
        None | Some(Bson::Null) => Ok(default),
        Some(Bson::Boolean(b)) => Ok(*b),
        Some(_) => Err(wrong(key, "must be a boolean")),
    }
}

/// `rate_limit_per_second` as a whole number (a whole double too: documents written by
/// hand in the shell store numbers as doubles); absent or `null` is no limit.
fn rate_limit(doc: &Document) -> Result<Option<i64>, BadWebhook> {
    match doc.get("rate_limit_per_second") {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Int32(n)) => Ok(Some(i64::from(*n))),
        Some(Bson::Int64(n)) => Ok(Some(*n)),
        Some(Bson::Double(n)) if n.fract() == 0.0 && n.abs() < 1e15 => Ok(Some(*n as i64)),
        Some(_) => Err(wrong("rate_limit_per_second", "must be a whole number")),
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
