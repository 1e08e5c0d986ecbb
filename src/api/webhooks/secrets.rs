//! A webhook's credentials at rest: the signing secret and header values sealed on write
//! (`--secret-key`, [`crate::secrets`]), and the rotation of the signing secret, during which
//! the rotated-out secret keeps signing for [`PREVIOUS_SECRET_TTL`].

use std::time::SystemTime;

use hyper::StatusCode;
use mongodb::bson::{doc, Bson, DateTime, Document};
use serde_json::json;

use super::super::request::path_id;
use super::super::{json_response, ApiError, ApiRequest, ApiResult, AppState};
use super::apply_now;
use super::body::rotation_secret;
use crate::secrets::SecretBox;
use crate::store::{self, bson_date};
use crate::webhook::limits::{MAX_PREVIOUS_SECRETS, PREVIOUS_SECRET_TTL};

/// `POST /v1/webhooks/{id}/rotate-secret` (optional body `{secret?}`) → 200
/// `{webhook_id, secret}`. The old secret keeps signing for [`PREVIOUS_SECRET_TTL`]: each
/// delivery meanwhile carries one signature per valid secret.
pub async fn rotate_secret(app: &AppState, req: &ApiRequest, id: &str) -> ApiResult {
    let id = &path_id(id)?;
    let secret = rotation_secret(req)?;
    // Compare-and-swap on the current secret, so that concurrent rotations each keep the
    // secret they replaced instead of losing one.
    for _ in 0..5 {
        let Some(current) = store::webhooks::get(&app.db, id).await? else {
            return Err(ApiError::not_found("webhook", id));
        };
        let now = SystemTime::now();
        let previous = previous_secrets_after_rotation(&current, &secret, &app.secrets, now);
        // As stored (sealed or not): the swap compares stored values.
        let old = current.get("secret").cloned().unwrap_or(Bson::Null);
        let fields = doc! {
            "secret": app.secrets.seal(&secret),
            "previous_secrets": previous,
            "updated_at": bson_date(now),
        };
        if let Some(document) = store::webhooks::swap_secret(&app.db, id, old, fields).await? {
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
pub(super) fn seal_credentials(secrets: &SecretBox, fields: &mut Document) {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::view::view;
    use super::*;
    use crate::webhook::limits::REDACTED;

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
}
