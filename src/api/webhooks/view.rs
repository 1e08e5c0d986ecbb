//! A webhook as every route answers with it: no secret, header values redacted, and for
//! `GET /v1/webhooks/{id}` the health of its endpoint.

use std::time::SystemTime;

use herald_actors::endpoint::Stats;
use herald_actors::HealthSnapshot;
use mongodb::bson::{Bson, Document};
use serde_json::{json, Map, Value};

use crate::store::id_string;
use crate::webhook::limits::REDACTED;

fn rfc3339(document: &Document, key: &str) -> Value {
    match document.get_datetime(key) {
        Ok(date) => Value::String(
            date.to_chrono()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
        Err(_) => Value::Null,
    }
}

/// The webhook as every route returns it: no secret, header values redacted. Tolerates
/// documents written directly into MongoDB with missing or odd fields.
pub(super) fn view(document: &Document) -> Value {
    let event_types: Vec<&str> = document
        .get_array("event_types")
        .map(|a| a.iter().filter_map(Bson::as_str).collect())
        .unwrap_or_default();
    let headers: Map<String, Value> = document
        .get_document("headers")
        .map(|h| {
            h.keys()
                .map(|k| (k.clone(), Value::String(REDACTED.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let enabled = match document.get("enabled") {
        Some(Bson::Boolean(b)) => *b,
        None | Some(Bson::Null) => true,
        // The watcher disables a webhook whose `enabled` is not a boolean.
        Some(_) => false,
    };
    let rate_limit = match document.get("rate_limit_per_second") {
        Some(Bson::Int32(n)) => json!(n),
        Some(Bson::Int64(n)) => json!(n),
        Some(Bson::Double(n)) => json!(n),
        _ => Value::Null,
    };
    json!({
        "webhook_id": id_string(document.get("_id")),
        "url": document.get_str("url").ok(),
        "event_types": event_types,
        "name": document.get_str("name").ok(),
        "namespace_id": document.get_str("namespace_id").ok(),
        "headers": headers,
        "enabled": enabled,
        // Absent (every webhook written before pausing existed): not paused.
        "paused": document.get_bool("paused").unwrap_or(false),
        "rate_limit_per_second": rate_limit,
        // Set when herald disabled the webhook itself (`--endpoint-disable-after-secs`).
        "disabled_reason": document.get_str("disabled_reason").ok(),
        "disabled_at": rfc3339(document, "disabled_at"),
        "created_at": rfc3339(document, "created_at"),
        "updated_at": rfc3339(document, "updated_at"),
    })
}

fn time_view(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(
            chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
    })
}

/// The endpoint's health (`GET /v1/webhooks/{id}`): its failing streak, last success and
/// failure, success rate over the last hour, and what it holds. `held` is what the endpoint
/// actor holds when this daemon runs it; a daemon that does not (another owns the webhook's
/// partition, or the webhook is disabled) shows the health the owner kept, with `null`
/// for what is held, which only the owner knows. `null` when there is neither.
pub(super) fn health_view(health: Option<&HealthSnapshot>, held: Option<&Stats>) -> Value {
    let Some(health) = health else {
        return Value::Null;
    };
    let state = if health.failing {
        "failing"
    } else if health.window_attempts == 0 && health.last_success_at.is_none() {
        "unknown"
    } else {
        "healthy"
    };
    let last_failure = health.last_failure_at.map(|at| {
        json!({
            "at": time_view(Some(at)),
            "status_code": health.last_status_code,
            "error": health.last_error,
        })
    });
    json!({
        "state": state,
        "consecutive_failures": health.consecutive_failures,
        "failing_since": time_view(health.failing_since),
        "last_success_at": time_view(health.last_success_at),
        "last_failure": last_failure,
        "success_rate": health.success_rate(),
        "window_seconds": health.window.as_secs(),
        "window_attempts": health.window_attempts,
        "window_successes": health.window_successes,
        "queued": held.map(|h| h.queued),
        "in_flight": held.map(|h| h.in_flight),
        "scheduled": held.map(|h| h.scheduled),
    })
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, DateTime};

    use super::*;

    #[test]
    fn the_view_hides_secrets_and_header_values() {
        let now = DateTime::now();
        let view = view(&doc! {
            "_id": "wh_0123456789abcdef", "url": "https://a.example/h", "event_types": ["*"],
            "secret": "whsec_x", "headers": {"X-Mixpeek-Secret": "s"}, "enabled": true,
            "rate_limit_per_second": 5, "name": "n", "created_at": now, "updated_at": now,
        });
        assert_eq!(view["webhook_id"], "wh_0123456789abcdef");
        assert_eq!(view["headers"]["X-Mixpeek-Secret"], REDACTED);
        assert!(view.get("secret").is_none());
        assert!(!view.to_string().contains("whsec_x"));
        assert_eq!(view["rate_limit_per_second"], 5);
        assert!(view["created_at"].as_str().unwrap().ends_with('Z'));

        // A sparse hand-written document still renders.
        let sparse = super::view(&doc! {"_id": "wh_1"});
        assert_eq!(sparse["enabled"], true);
        assert_eq!(sparse["paused"], false);
        assert_eq!(sparse["rate_limit_per_second"], Value::Null);
        assert_eq!(
            super::view(&doc! {"_id": "wh_1", "paused": true})["paused"],
            true
        );
        assert_eq!(sparse["event_types"], json!([]));
    }
}
