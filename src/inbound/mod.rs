//! Inbound provider webhooks (contract §5): a provider tells herald that an asset it
//! syncs into buckets was deleted or changed, and herald applies that to `objects` and
//! publishes `object.deleted` / `object.updated` through the outbox.
//!
//! The flow of one request, whatever the provider ([`receive`]):
//!
//! 1. the connection is chosen by the path alone ([`store::connections`],
//!    [`Connection`]) — the only MongoDB read an unauthenticated caller can cause, an
//!    `_id` lookup;
//! 2. the provider verifies its signature over the raw body bytes ([`InboundProvider::verify`]);
//! 3. only then is the body parsed ([`InboundProvider::parse`]) into a provider-neutral
//!    [`InboundEvent`] whose [`Change`] says what to do with the asset's objects;
//! 4. [`apply`] does it once per provider event id, recording the outcome in
//!    `inbound_events`, and answers with that outcome ([`Outcome`]).
//!
//! The seam is [`InboundProvider`]: Mux lives in [`mux`], and a second provider with a
//! `t=,v1=` scheme (Stripe, say) is a new file reusing [`signature`], plus one line in
//! [`provider`] and one route.

pub mod apply;
pub mod filters;
pub mod mux;
pub mod signature;

use std::time::SystemTime;

use hyper::HeaderMap;
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::Database;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::secrets::{SecretBox, SecretError};
use crate::store;

pub use filters::Filter;
/// Provider connections ([`store::connections`]) and the apply-once records of their events
/// ([`store::inbound_events`]).
pub use store::connections::CONNECTIONS;
pub use store::inbound_events::INBOUND_EVENTS;

/// Why a request is not from the provider. Every variant is a 401 and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "the signature timestamp is more than {} s away from now",
        signature::TOLERANCE_SECS
    )]
    Stale,
    #[error("no signature in the header matches the body")]
    Mismatch,
}

/// Why a verified body cannot be read. A 400: the provider sent something we cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: &'static str,
    },
}

/// What a provider event asks of the objects synced from one asset.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The asset is gone: so are its objects.
    AssetDeleted { asset_id: String },
    /// The asset changed: its objects are re-checked against the connection's filters
    /// (`asset` is what they are evaluated on) and, still matching, get `metadata`.
    AssetUpdated {
        asset_id: String,
        asset: Value,
        metadata: Value,
        /// When the provider made the change (Mux: the event's `created_at`). Updates are
        /// applied in this order: an object already updated from a later change keeps what
        /// it has. `None`: the provider did not say; applied as it comes.
        changed_at: Option<DateTime>,
    },
    /// Nothing herald acts on.
    Ignored,
}

/// A verified provider event, provider-neutral.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundEvent {
    /// The provider's event id: the unit of idempotency. Always present for a change that
    /// is acted on; may be `None` for an ignored one.
    pub id: Option<String>,
    /// The provider's event type, as sent (recorded, logged).
    pub event_type: String,
    pub change: Change,
}

/// A provider of inbound webhooks.
pub trait InboundProvider: Send + Sync {
    /// The provider's name, as stored in `connections.provider` (`"mux"`).
    fn name(&self) -> &'static str;

    /// Checks that `body` was sent by the provider under `secret` at about `now`. Runs
    /// before anything parses the body.
    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secret: &str,
        now: SystemTime,
    ) -> Result<(), VerifyError>;

    /// Reads a verified body.
    fn parse(&self, body: &[u8]) -> Result<InboundEvent, ParseError>;
}

/// The provider named `name`, if herald supports it.
pub fn provider(name: &str) -> Option<&'static dyn InboundProvider> {
    match name {
        "mux" => Some(&mux::Mux),
        _ => None,
    }
}

/// The providers herald supports, for error messages.
pub const PROVIDERS: &[&str] = &["mux"];

/// A connection as stored in `connections`:
/// `{_id: "conn_<16 hex>", provider, bucket_id, webhook_secret,
///   metadata_filters: [{path, value}], created_at}`. `webhook_secret` is stored sealed
/// under `--secret-key` (`enc:v1:…`) or in plaintext; the struct always holds it opened.
#[derive(Clone, PartialEq)]
pub struct Connection {
    pub id: String,
    pub provider: String,
    pub bucket_id: String,
    /// Write-only: never returned by the API, never logged (see the `Debug` impl).
    webhook_secret: String,
    pub metadata_filters: Vec<Filter>,
    pub created_at: Option<DateTime>,
    /// The tenant it belongs to; the events its inbound webhooks publish carry it.
    pub namespace_id: Option<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("bucket_id", &self.bucket_id)
            .field("metadata_filters", &self.metadata_filters)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A new connection (the API validated every field).
    pub fn new(
        id: String,
        provider: String,
        bucket_id: String,
        webhook_secret: String,
        metadata_filters: Vec<Filter>,
        created_at: DateTime,
    ) -> Self {
        Self {
            id,
            provider,
            bucket_id,
            webhook_secret,
            metadata_filters,
            created_at: Some(created_at),
            namespace_id: None,
        }
    }

    /// The signing secret, for verification only.
    pub fn webhook_secret(&self) -> &str {
        &self.webhook_secret
    }

    /// The stored document, with the secret sealed by `secrets`.
    pub fn to_doc(&self, secrets: &SecretBox) -> Document {
        let mut doc = doc! {
            "_id": &self.id,
            "provider": &self.provider,
            "bucket_id": &self.bucket_id,
            "webhook_secret": secrets.seal(&self.webhook_secret),
            "metadata_filters": filters::to_bson(&self.metadata_filters),
            "created_at": self.created_at.map(Bson::DateTime).unwrap_or(Bson::Null),
        };
        if let Some(namespace_id) = &self.namespace_id {
            doc.insert("namespace_id", namespace_id);
        }
        doc
    }

    /// Reads a stored document, opening its secret with `secrets`; a connection written by
    /// hand may lack `created_at`, and its secret may be plaintext.
    pub fn from_doc(doc: &Document, secrets: &SecretBox) -> Result<Self, &'static str> {
        let text = |field: &'static str, why: &'static str| {
            doc.get_str(field)
                .ok()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or(why)
        };
        let sealed = text("webhook_secret", "webhook_secret must be a string")?;
        // The reasons never include the value.
        let webhook_secret = match secrets.open(&sealed) {
            Ok(secret) => secret.into_owned(),
            Err(SecretError::NoKey) => {
                return Err("webhook_secret is encrypted but herald runs without --secret-key")
            }
            Err(SecretError::WrongKeyOrTampered) => return Err(
                "webhook_secret does not decrypt with this --secret-key (another key, or altered)",
            ),
            Err(SecretError::Malformed) => {
                return Err(
                    "webhook_secret starts with enc:v1: but is not a well-formed encrypted value",
                )
            }
        };
        Ok(Self {
            id: text("_id", "_id must be a string")?,
            provider: text("provider", "provider must be a string")?,
            bucket_id: text("bucket_id", "bucket_id must be a string")?,
            webhook_secret,
            metadata_filters: filters::from_doc(doc)?,
            created_at: doc.get_datetime("created_at").ok().copied(),
            namespace_id: crate::namespace::of_document(doc)
                .map_err(|_| "namespace_id is not a valid namespace id")?,
        })
    }

    /// The API's view: every field but the secret.
    pub fn view(&self) -> Value {
        json!({
            "connection_id": self.id,
            "provider": self.provider,
            "bucket_id": self.bucket_id,
            "namespace_id": self.namespace_id,
            "metadata_filters": filters::to_json(&self.metadata_filters),
            "created_at": self.created_at.map(|t| {
                t.to_chrono().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            }),
            "inbound_path": format!("/v1/webhooks/{}/{}", self.provider, self.id),
        })
    }
}

/// What was done about one event: `{"handled": false}` or
/// `{"handled": true, "action": "deleted" | "updated", "objects_affected": n}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub handled: bool,
    pub action: Option<String>,
    pub objects_affected: u64,
}

impl Outcome {
    /// Nothing to do for this event type.
    pub fn ignored() -> Self {
        Self {
            handled: false,
            action: None,
            objects_affected: 0,
        }
    }

    pub fn handled(action: &str, objects_affected: u64) -> Self {
        Self {
            handled: true,
            action: Some(action.to_owned()),
            objects_affected,
        }
    }

    /// The response body.
    pub fn to_json(&self) -> Value {
        match &self.action {
            Some(action) if self.handled => json!({
                "handled": true,
                "action": action,
                "objects_affected": self.objects_affected,
            }),
            _ => json!({"handled": false}),
        }
    }

    /// As recorded in `inbound_events.outcome`.
    pub fn to_doc(&self) -> Document {
        let mut outcome = doc! {"handled": self.handled};
        if let Some(action) = &self.action {
            outcome.insert("action", action);
            outcome.insert("objects_affected", self.objects_affected as i64);
        }
        outcome
    }

    /// Reads a recorded outcome; anything unreadable reads as "handled, nothing affected",
    /// which is what a redelivery must answer anyway: 200, change nothing.
    pub fn from_doc(doc: &Document) -> Self {
        let handled = doc.get_bool("handled").unwrap_or(true);
        let affected = match doc.get("objects_affected") {
            Some(Bson::Int64(n)) => (*n).max(0) as u64,
            Some(Bson::Int32(n)) => (*n).max(0) as u64,
            _ => 0,
        };
        match doc.get_str("action") {
            Ok(action) if handled => Self::handled(action, affected),
            _ if handled => Self {
                handled: true,
                action: None,
                objects_affected: affected,
            },
            _ => Self::ignored(),
        }
    }
}

/// Why a request was not applied; the API maps each to its status.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// No such connection for this provider: 404.
    #[error("connection {0:?} does not exist")]
    UnknownConnection(String),
    /// 401, nothing changed.
    #[error(transparent)]
    Unauthorized(#[from] VerifyError),
    /// 400, nothing changed.
    #[error(transparent)]
    BadPayload(#[from] ParseError),
    /// MongoDB failed: 503, and the provider retries.
    #[error(transparent)]
    Store(#[from] mongodb::error::Error),
}

/// Longest connection id looked up; anything longer cannot be one of ours.
const MAX_CONNECTION_ID_BYTES: usize = 128;

/// Handles one inbound request for `provider`; see the module docs for the order of steps.
/// The connection's secret is opened with `secrets`. Every request is counted in
/// `herald_inbound_webhooks_total` by its outcome.
pub async fn receive(
    db: &Database,
    secrets: &SecretBox,
    provider: &dyn InboundProvider,
    connection_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<Outcome, ReceiveError> {
    use crate::metrics::inbound_outcome as o;
    let result = receive_once(db, secrets, provider, connection_id, headers, body, now).await;
    let outcome = match &result {
        Ok(outcome) if outcome.handled => o::HANDLED,
        Ok(_) => o::IGNORED,
        Err(ReceiveError::UnknownConnection(_)) => o::UNKNOWN_CONNECTION,
        Err(ReceiveError::Unauthorized(_)) => o::UNAUTHORIZED,
        Err(ReceiveError::BadPayload(_)) => o::BAD_PAYLOAD,
        Err(ReceiveError::Store(_)) => o::ERROR,
    };
    crate::metrics::count_inbound(provider.name(), outcome);
    result
}

/// Whether `connection_id` could be one herald issued: one that could not is refused
/// without a database round trip.
fn plausible_id(connection_id: &str) -> bool {
    !connection_id.is_empty()
        && connection_id.len() <= MAX_CONNECTION_ID_BYTES
        && connection_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether `connection_id` names a connection of `provider` — asked before the request
/// body is read, so that a request to no connection is answered 404 without buffering a
/// body for nothing (counted like any unknown connection). [`receive`] asks again.
pub async fn known_connection(
    db: &Database,
    provider: &dyn InboundProvider,
    connection_id: &str,
) -> mongodb::error::Result<bool> {
    let known = plausible_id(connection_id)
        && store::connections::get(db, connection_id)
            .await?
            .is_some_and(|c| c.get_str("provider") == Ok(provider.name()));
    if !known {
        crate::metrics::count_inbound(
            provider.name(),
            crate::metrics::inbound_outcome::UNKNOWN_CONNECTION,
        );
    }
    Ok(known)
}

async fn receive_once(
    db: &Database,
    secrets: &SecretBox,
    provider: &dyn InboundProvider,
    connection_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<Outcome, ReceiveError> {
    let unknown = || ReceiveError::UnknownConnection(connection_id.to_owned());
    if !plausible_id(connection_id) {
        return Err(unknown());
    }
    let Some(stored) = store::connections::get_with_secret(db, connection_id).await? else {
        return Err(unknown());
    };
    let connection = match Connection::from_doc(&stored, secrets) {
        Ok(c) if c.provider == provider.name() => c,
        Ok(_) => return Err(unknown()),
        Err(why) => {
            warn!(
                connection_id,
                why, "connection document is unusable; refusing its webhooks"
            );
            return Err(unknown());
        }
    };
    if let Err(e) = provider.verify(headers, body, connection.webhook_secret(), now) {
        warn!(connection_id, provider = provider.name(), error = %e, "inbound webhook refused");
        return Err(e.into());
    }
    let event = provider.parse(body)?;
    let outcome = apply::apply(db, provider.name(), &connection, &event).await?;
    info!(
        connection_id,
        provider = provider.name(),
        event_id = event.id.as_deref().unwrap_or(""),
        event_type = %event.event_type,
        handled = outcome.handled,
        action = outcome.action.as_deref().unwrap_or(""),
        objects_affected = outcome.objects_affected,
        "inbound webhook applied"
    );
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_the_record() {
        for outcome in [
            Outcome::ignored(),
            Outcome::handled("deleted", 3),
            Outcome::handled("updated", 0),
        ] {
            assert_eq!(Outcome::from_doc(&outcome.to_doc()), outcome);
        }
        assert_eq!(Outcome::ignored().to_json(), json!({"handled": false}));
        assert_eq!(
            Outcome::handled("deleted", 2).to_json(),
            json!({"handled": true, "action": "deleted", "objects_affected": 2})
        );
    }

    #[test]
    fn a_connection_secret_is_stored_sealed_under_a_key_and_read_back_opened() {
        let secrets = SecretBox::new(Some([9; 32]));
        let connection = Connection::new(
            "conn_0123456789abcdef".into(),
            "mux".into(),
            "bkt_1".into(),
            "hunter2".into(),
            Vec::new(),
            DateTime::now(),
        );
        let stored = connection.to_doc(&secrets);
        assert!(!stored.to_string().contains("hunter2"), "{stored}");
        assert!(SecretBox::is_sealed(
            stored.get_str("webhook_secret").unwrap()
        ));
        let back = Connection::from_doc(&stored, &secrets).unwrap();
        assert_eq!(back, connection);
        // Plaintext written by hand is used as it is.
        let mut by_hand = stored.clone();
        by_hand.insert("webhook_secret", "hunter2");
        assert_eq!(
            Connection::from_doc(&by_hand, &secrets)
                .unwrap()
                .webhook_secret(),
            "hunter2"
        );
        // Without the key, or with another one: unusable, and the reason shows no value.
        for other in [SecretBox::default(), SecretBox::new(Some([8; 32]))] {
            let why = Connection::from_doc(&stored, &other).unwrap_err();
            assert!(why.starts_with("webhook_secret"), "{why}");
        }
    }

    #[test]
    fn a_connection_never_shows_its_secret() {
        let connection = Connection::new(
            "conn_0123456789abcdef".into(),
            "mux".into(),
            "bkt_1".into(),
            "hunter2".into(),
            Vec::new(),
            DateTime::now(),
        );
        assert!(!format!("{connection:?}").contains("hunter2"));
        assert!(!connection.view().to_string().contains("hunter2"));
        let plain = SecretBox::default();
        let back = Connection::from_doc(&connection.to_doc(&plain), &plain).unwrap();
        assert_eq!(back.webhook_secret(), "hunter2");
        assert_eq!(
            back.view()["inbound_path"],
            "/v1/webhooks/mux/conn_0123456789abcdef"
        );
    }
}
