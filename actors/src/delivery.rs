//! What one attempt produces and what the ledger records: the vocabulary shared by the
//! endpoint actors, the ledger writer and the daemon's MongoDB adapter.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Why an attempt ended without an HTTP response (or with one we must not follow).
///
/// A failed delivery is data, not a crash: every variant ends up in the attempt log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The whole attempt (connect + TLS + response headers) exceeded the attempt timeout.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// DNS resolution or TCP connect failed.
    #[error("connect error: {0}")]
    Connect(String),
    /// The TLS handshake failed (bad certificate, protocol mismatch, ...).
    #[error("tls error: {0}")]
    Tls(String),
    /// The connection broke after it was established (reset, protocol error, ...).
    #[error("io error: {0}")]
    Io(String),
    /// The SSRF guard refused the address the URL resolved to.
    #[error("blocked: {0}")]
    Blocked(String),
    /// The URL can never be delivered to (plaintext `http://`, unparseable, ...).
    #[error("invalid url: {0}")]
    InvalidUrl(String),
}

impl DeliveryError {
    /// Whether trying again later may succeed. A URL that is refused by policy never will.
    pub fn is_retriable(&self) -> bool {
        !matches!(self, DeliveryError::InvalidUrl(_))
    }
}

/// The part of an HTTP response herald keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The `Retry-After` header, when present and parseable (seconds or HTTP date).
    pub retry_after: Option<Duration>,
}

impl AttemptResponse {
    /// Any 2xx ends the delivery successfully.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The result of one attempt, as the transport reports it.
pub type AttemptResult = Result<AttemptResponse, DeliveryError>;

/// Lifecycle of a delivery document (`deliveries.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt at `next_attempt_at`.
    Pending,
    /// An attempt answered 2xx.
    Succeeded,
    /// Retries are exhausted, or the URL can never be delivered to.
    Failed,
}

impl DeliveryStatus {
    /// The name stored in MongoDB.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One entry of a delivery's `attempt_log`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptLogEntry {
    /// When the attempt started.
    pub at: SystemTime,
    /// The response status, when there was a response.
    pub status_code: Option<u16>,
    /// Why the attempt failed, when it did.
    pub error: Option<String>,
    /// How long the attempt took, in milliseconds.
    pub duration_ms: u64,
}

/// One write to the ledger: the state of a delivery after an attempt ended.
///
/// The first record of a delivery (`first_write`) creates its document; later ones update it
/// and append `new_attempts` to its attempt log.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// `"{event_id}:{webhook_id}"`.
    pub delivery_id: String,
    pub event_id: String,
    pub webhook_id: String,
    pub event_type: String,
    /// Carried through from the event so deliveries can be listed per task.
    pub task_id: Option<String>,
    pub status: DeliveryStatus,
    /// Attempts made so far, including this one.
    pub attempts: u32,
    pub next_attempt_at: Option<SystemTime>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    /// Attempts since the previous record of this delivery (usually one).
    pub new_attempts: Vec<AttemptLogEntry>,
    /// Whether the document does not exist yet (insert rather than update).
    pub first_write: bool,
    pub created_at: SystemTime,
    pub completed_at: Option<SystemTime>,
    /// The exact body, kept while the delivery may still be attempted again so that a
    /// restarted daemon re-sends the same bytes. `None` once it succeeded.
    pub payload: Option<Bytes>,
}

/// A delivery loaded back from the ledger to be attempted again (after a restart, or a
/// manual retry).
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub event_id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub task_id: Option<String>,
    pub attempts: u32,
    pub next_attempt_at: SystemTime,
    pub created_at: SystemTime,
    pub payload: Bytes,
}
