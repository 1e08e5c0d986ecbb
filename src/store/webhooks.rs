//! Webhooks from the `webhooks` collection, live.
//!
//! The watcher opens a change stream on `webhooks` first and loads every document second,
//! so no change between the two is missed; then it applies each insert, update, replace and
//! delete to the engine. Documents are validated here: a bad one (unparseable URL, bad
//! secret, illegal header) disables only that webhook, with a log line saying why.
//!
//! The secret, the rotated-out secrets and the header values may be stored sealed
//! (`enc:v1:…`, see [`crate::secrets`]) or in plaintext; the engine gets them opened. One
//! that cannot be opened (no `--secret-key`, another key) disables the webhook like any other
//! bad field, and the log line names the field, never its value.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use herald_actors::signing::{Signer, SigningKey};
use herald_actors::{EngineHandle, EventFilter, WebhookSpec};
use mongodb::bson::{Bson, Document};
use mongodb::change_stream::event::OperationType;
use mongodb::options::FullDocumentType;
use mongodb::{Collection, Database};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{one_line, reopen_backoff, WEBHOOKS};
use crate::secrets::{SecretBox, SecretError};

/// Why a webhook document cannot be delivered to.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadWebhook {
    #[error("_id must be a string")]
    Id,
    #[error("url is missing or not an absolute URL with a host")]
    Url,
    #[error("event_types must be a non-empty array of strings")]
    EventTypes,
    #[error("secret: {0}")]
    Secret(String),
    #[error("headers must map header names to string values; {0:?} is not a legal header")]
    Header(String),
    #[error("rate_limit_per_second must be a positive integer")]
    RateLimit,
    #[error("enabled must be a boolean")]
    Enabled,
    #[error("paused must be a boolean")]
    Paused,
    /// A sealed value that cannot be opened; `field` is `secret` or `headers.<name>`.
    #[error("{field}: {reason}")]
    Sealed { field: String, reason: SecretError },
}

fn legal_header_name(name: &str) -> bool {
    hyper::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
}

fn legal_header_value(value: &str) -> bool {
    hyper::header::HeaderValue::from_str(value).is_ok()
}

fn parse_url(url: &str) -> bool {
    match url.parse::<hyper::Uri>() {
        Ok(uri) => uri.scheme().is_some() && uri.host().is_some_and(|h| !h.is_empty()),
        Err(_) => false,
    }
}

/// Parses and validates a webhook document, opening its sealed values with `secrets`.
/// `http://` URLs are accepted here: the engine refuses to dial them and records why in each
/// delivery.
pub fn spec_from_doc(
    doc: &Document,
    secrets: &SecretBox,
    now: SystemTime,
) -> Result<WebhookSpec, BadWebhook> {
    let id = doc.get_str("_id").map_err(|_| BadWebhook::Id)?;
    let url = doc.get_str("url").map_err(|_| BadWebhook::Url)?;
    if !parse_url(url) {
        return Err(BadWebhook::Url);
    }
    let types: Vec<String> = match doc.get("event_types") {
        Some(Bson::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|b| b.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or(BadWebhook::EventTypes)?,
        _ => return Err(BadWebhook::EventTypes),
    };
    let secret = doc
        .get_str("secret")
        .map_err(|_| BadWebhook::Secret("missing".into()))?;
    let secret = secrets.open(secret).map_err(|reason| BadWebhook::Sealed {
        field: "secret".into(),
        reason,
    })?;
    let mut keys = vec![SigningKey::parse(&secret).map_err(|e| BadWebhook::Secret(e.to_string()))?];
    // Rotated-out secrets keep signing until they expire; one that cannot be opened is
    // skipped like one that cannot be parsed (the current secret still signs).
    if let Ok(previous) = doc.get_array("previous_secrets") {
        for entry in previous.iter().filter_map(Bson::as_document) {
            let (Ok(secret), Ok(expires)) =
                (entry.get_str("secret"), entry.get_datetime("expires_at"))
            else {
                continue;
            };
            if expires.to_system_time() > now {
                let Ok(secret) = secrets.open(secret) else {
                    continue;
                };
                if let Ok(key) = SigningKey::parse(&secret) {
                    keys.push(key.expiring_at(expires.to_system_time()));
                }
            }
        }
    }
    let mut headers = Vec::new();
    match doc.get("headers") {
        None | Some(Bson::Null) => {}
        Some(Bson::Document(map)) => {
            for (name, value) in map {
                let Some(value) = value.as_str() else {
                    return Err(BadWebhook::Header(name.clone()));
                };
                let value = secrets.open(value).map_err(|reason| BadWebhook::Sealed {
                    field: format!("headers.{name}"),
                    reason,
                })?;
                if !legal_header_name(name) || !legal_header_value(&value) {
                    return Err(BadWebhook::Header(name.clone()));
                }
                headers.push((name.clone(), value.into_owned()));
            }
        }
        Some(_) => return Err(BadWebhook::Header("headers".into())),
    }
    let enabled = match doc.get("enabled") {
        None | Some(Bson::Null) => true,
        Some(Bson::Boolean(b)) => *b,
        Some(_) => return Err(BadWebhook::Enabled),
    };
    let paused = match doc.get("paused") {
        None | Some(Bson::Null) => false,
        Some(Bson::Boolean(b)) => *b,
        Some(_) => return Err(BadWebhook::Paused),
    };
    let rate_limit_per_second = match doc.get("rate_limit_per_second") {
        None | Some(Bson::Null) => None,
        Some(Bson::Int32(n)) if *n > 0 => Some(*n as u32),
        Some(Bson::Int64(n)) if *n > 0 && *n <= u32::MAX as i64 => Some(*n as u32),
        Some(Bson::Double(n)) if *n >= 1.0 && n.fract() == 0.0 && *n <= u32::MAX as f64 => {
            Some(*n as u32)
        }
        Some(_) => return Err(BadWebhook::RateLimit),
    };
    Ok(WebhookSpec {
        id: id.into(),
        url: url.into(),
        filter: EventFilter::from_list(&types),
        signer: Signer::new(keys),
        headers: headers.into(),
        enabled,
        paused,
        rate_limit_per_second,
    })
}

/// How often the watcher asks for webhook changes once it has seen none, and how long each
/// ask may wait on the server. Webhooks change rarely, and a change made through the API
/// reaches the engine at once anyway; what this bounds is how late a change written straight
/// into MongoDB takes effect. A change stream kept waiting on the server instead (the
/// default: a getMore that waits up to a second, then the next) is woken by every write to
/// the database — each event, each delivery record — to look for webhook changes among
/// them, next to the feed's own stream doing the same: on a busy server, work and latency
/// the event feed pays for.
const WATCH_POLL: Duration = Duration::from_millis(200);
const WATCH_AWAIT: Duration = Duration::from_millis(1);

/// Readiness of the watcher, for `/readyz`.
#[derive(Debug, Default)]
pub struct WatchHealth {
    pub live: AtomicBool,
}

/// Applies one webhook document to the engine; `known` tracks the ids the engine has.
fn apply(engine: &EngineHandle, secrets: &SecretBox, doc: &Document, known: &mut HashSet<String>) {
    match spec_from_doc(doc, secrets, SystemTime::now()) {
        Ok(spec) => {
            known.insert(spec.id.to_string());
            let _ = engine.upsert_webhook(spec);
        }
        Err(reason) => {
            let id = doc.get("_id").map(|b| b.to_string()).unwrap_or_default();
            error!(webhook_id = %id, %reason, "invalid webhook document; webhook disabled");
            if let Ok(id) = doc.get_str("_id") {
                known.remove(id);
                let _ = engine.remove_webhook(id);
            }
        }
    }
}

/// Loads every webhook into the engine, then follows changes until `cancel` fires.
/// The first load completes before this returns `ready` through `loaded`. Sealed values are
/// opened with `secrets`.
pub async fn run_watcher(
    db: Database,
    engine: EngineHandle,
    secrets: SecretBox,
    health: Arc<WatchHealth>,
    loaded: tokio::sync::oneshot::Sender<Result<usize, String>>,
    cancel: CancellationToken,
) {
    let collection: Collection<Document> = db.collection(WEBHOOKS);
    let mut known: HashSet<String> = HashSet::new();
    let mut loaded = Some(loaded);
    let mut failures: u32 = 0;
    loop {
        let result = async {
            let stream = collection
                .watch()
                .full_document(FullDocumentType::UpdateLookup)
                .max_await_time(WATCH_AWAIT)
                .await?;
            let docs: Vec<Document> = collection
                .find(Default::default())
                .await?
                .try_collect()
                .await?;
            Ok::<_, mongodb::error::Error>((stream, docs))
        };
        let (mut stream, docs) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = result => match r {
                Ok(ok) => ok,
                Err(e) => {
                    let message = one_line(&e.to_string());
                    if let Some(tx) = loaded.take() {
                        let _ = tx.send(Err(message));
                        return;
                    }
                    health.live.store(false, Ordering::Relaxed);
                    failures += 1;
                    warn!(error = %message, "cannot watch webhooks; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(reopen_backoff(failures)) => continue,
                    }
                }
            },
        };
        // Full reload: drop what vanished while we were not watching.
        let present: HashSet<String> = docs
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect();
        for gone in known.difference(&present).cloned().collect::<Vec<_>>() {
            let _ = engine.remove_webhook(&gone);
            known.remove(&gone);
        }
        for doc in &docs {
            apply(&engine, &secrets, doc, &mut known);
        }
        health.live.store(true, Ordering::Relaxed);
        if let Some(tx) = loaded.take() {
            info!(webhooks = docs.len(), "webhooks loaded");
            let _ = tx.send(Ok(docs.len()));
        }
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = stream.next_if_any() => next,
            };
            let next = match next {
                Ok(Some(change)) => Some(Ok(change)),
                Ok(None) if stream.is_alive() => {
                    // Nothing new: look again in a moment, holding no getMore open meanwhile.
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(WATCH_POLL) => continue,
                    }
                }
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            };
            if matches!(next, Some(Ok(_))) {
                failures = 0;
            }
            match next {
                Some(Ok(change)) => match change.operation_type {
                    OperationType::Insert | OperationType::Update | OperationType::Replace => {
                        match change.full_document {
                            Some(doc) => apply(&engine, &secrets, &doc, &mut known),
                            None => {
                                // Deleted again before the lookup.
                                if let Some(Ok(id)) =
                                    change.document_key.as_ref().map(|k| k.get_str("_id"))
                                {
                                    known.remove(id);
                                    let _ = engine.remove_webhook(id);
                                }
                            }
                        }
                    }
                    OperationType::Delete => {
                        if let Some(Ok(id)) = change.document_key.as_ref().map(|k| k.get_str("_id"))
                        {
                            info!(webhook_id = %id, "webhook deleted");
                            known.remove(id);
                            let _ = engine.remove_webhook(id);
                        }
                    }
                    _ => {}
                },
                Some(Err(e)) => {
                    health.live.store(false, Ordering::Relaxed);
                    warn!(error = %one_line(&e.to_string()), "webhook change stream failed; reloading");
                    break;
                }
                None => break,
            }
        }
        // A stream that fails again straight after opening must not spin: wait before the
        // reload, longer each time until a change gets through.
        failures += 1;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(reopen_backoff(failures)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn parses_a_contract_document() {
        let spec = spec_from_doc(
            &doc! {"_id": "wh_0123456789abcdef", "url": "https://a.example/h", "event_types": ["*"],
            "secret": SECRET, "headers": {"X-Mixpeek-Secret": "s"}, "rate_limit_per_second": 50},
            &SecretBox::default(),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(
            spec.filter,
            EventFilter::All {
                operational: vec![]
            }
        );
        assert!(spec.enabled);
        assert!(!spec.paused);
        assert_eq!(spec.rate_limit_per_second, Some(50));
        assert_eq!(
            &*spec.headers,
            &[("X-Mixpeek-Secret".to_owned(), "s".to_owned())]
        );
    }

    #[test]
    fn bad_documents_name_the_problem() {
        let base = doc! {"_id": "wh_1", "url": "https://a.example/h", "event_types": ["x"], "secret": SECRET};
        let with = |k: &str, v: Bson| {
            let mut d = base.clone();
            d.insert(k, v);
            d
        };
        let cases = [
            (with("url", Bson::String("not a url".into())), "url"),
            (with("event_types", Bson::Array(vec![])), "event_types"),
            (with("secret", Bson::String("nope".into())), "secret"),
            (
                with("headers", Bson::Document(doc! {"bad header": "v"})),
                "legal header",
            ),
            (
                with("headers", Bson::Document(doc! {"X-Ok": "line\nbreak"})),
                "legal header",
            ),
            (with("rate_limit_per_second", Bson::Int32(0)), "rate_limit"),
            (with("enabled", Bson::String("yes".into())), "enabled"),
            (with("paused", Bson::Int32(1)), "paused"),
        ];
        for (doc, expected) in cases {
            let error = spec_from_doc(&doc, &SecretBox::default(), SystemTime::now())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{doc}: {error}");
        }
        // Plaintext is accepted here and refused at delivery time.
        assert!(spec_from_doc(
            &with("url", Bson::String("http://a.example/h".into())),
            &SecretBox::default(),
            SystemTime::now()
        )
        .is_ok());
    }

    #[test]
    fn sealed_values_are_opened_and_plaintext_ones_used_as_they_are() {
        let secrets = SecretBox::new(Some([3; 32]));
        let now = SystemTime::now();
        let previous = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let document = doc! {"_id": "wh_1", "url": "https://a.example/h", "event_types": ["*"],
        "secret": secrets.seal(SECRET),
        "previous_secrets": [
            {"secret": secrets.seal(previous), "expires_at": crate::store::bson_date(now + std::time::Duration::from_secs(60))},
        ],
        "headers": {"X-Mixpeek-Secret": secrets.seal("s3cret"), "X-Plain": "as-is"}};
        let spec = spec_from_doc(&document, &secrets, now).unwrap();
        let mut headers = spec.headers.to_vec();
        headers.sort();
        assert_eq!(
            headers,
            [
                ("X-Mixpeek-Secret".to_owned(), "s3cret".to_owned()),
                ("X-Plain".to_owned(), "as-is".to_owned())
            ]
        );
        // Both secrets sign, exactly as if they had been stored in plaintext.
        let plain = doc! {"_id": "wh_1", "url": "https://a.example/h", "event_types": ["*"],
        "secret": SECRET,
        "previous_secrets": [
            {"secret": previous, "expires_at": crate::store::bson_date(now + std::time::Duration::from_secs(60))},
        ]};
        let expected = spec_from_doc(&plain, &SecretBox::default(), now).unwrap();
        let at = 1_700_000_000;
        let signatures = spec.signer.header_value("evt_1", at, b"{}", now);
        assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
        assert_eq!(
            signatures,
            expected.signer.header_value("evt_1", at, b"{}", now)
        );

        // Without the key, or with another, the webhook is refused naming the field only.
        for other in [SecretBox::default(), SecretBox::new(Some([4; 32]))] {
            let error = spec_from_doc(&document, &other, now).unwrap_err();
            assert!(matches!(&error, BadWebhook::Sealed { field, .. } if field == "secret"));
            let mut headers_only = document.clone();
            headers_only.insert("secret", SECRET);
            let error = spec_from_doc(&headers_only, &other, now)
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("headers.X-Mixpeek-Secret:"), "{error}");
            let sealed = document
                .get_document("headers")
                .unwrap()
                .get_str("X-Mixpeek-Secret")
                .unwrap();
            assert!(
                !error.contains("s3cret") && !error.contains(sealed),
                "{error}"
            );
        }
    }
}
