//! `GET /v1/webhooks/{webhook_id}/stats`: the endpoint's attempts over the last hour, in
//! twelve five-minute buckets — the inspector's success-rate chart.
//!
//! Read from the health record the endpoint's owner keeps in `endpoint_health` (one
//! document per webhook, by `_id`; its per-minute counts are written at most every two
//! seconds while attempts happen), so it costs one primary-key read, no scan of
//! `deliveries` and no index on it, and every daemon answers the same.

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde_json::{json, Value};

use super::request::path_id;
use super::{json_response, ApiError, ApiRequest, ApiResult, AppState};
use crate::store::health as health_store;
use crate::store::webhooks;

/// The window and its buckets, in minutes.
const WINDOW_MINUTES: u64 = 60;
const BUCKET_MINUTES: u64 = 5;

/// → 200 `{webhook_id, window_seconds, bucket_seconds, updated_at, attempts, successes,
/// buckets: [{start, attempts, successes}]}` (oldest bucket first, the last one holding the
/// current minute); 404 for an unknown webhook. All zeros before any attempt.
pub async fn get(app: &AppState, _req: &ApiRequest, id: &str) -> ApiResult {
    let id = path_id(id)?;
    if webhooks::get(&app.db, &id).await?.is_none() {
        return Err(ApiError::not_found("webhook", &id));
    }
    let kept = health_store::get(&app.db, &id).await?;
    let minutes: Vec<(u64, u32, u32)> =
        kept.as_ref().map(|k| k.buckets.clone()).unwrap_or_default();
    let mut body = view(&minutes, SystemTime::now());
    body["webhook_id"] = json!(id);
    body["updated_at"] = kept.map_or(Value::Null, |k| json!(rfc3339(k.updated_at)));
    Ok(json_response(StatusCode::OK, body))
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Folds `(minute since the epoch, 2xx answers, attempts)` into the buckets ending with
/// the minute of `now`; minutes outside the window are left out.
fn view(minutes: &[(u64, u32, u32)], now: SystemTime) -> Value {
    let now_minute = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60);
    let count = (WINDOW_MINUTES / BUCKET_MINUTES) as usize;
    // The last bucket ends with the current minute.
    let first_minute = now_minute + 1 - WINDOW_MINUTES;
    let mut buckets = vec![(0u64, 0u64); count];
    for &(minute, ok, all) in minutes {
        if minute < first_minute || minute > now_minute {
            continue;
        }
        let slot = ((minute - first_minute) / BUCKET_MINUTES) as usize;
        if let Some(bucket) = buckets.get_mut(slot) {
            bucket.0 += u64::from(all);
            bucket.1 += u64::from(ok);
        }
    }
    let (attempts, successes) = buckets.iter().fold((0, 0), |(a, s), b| (a + b.0, s + b.1));
    let buckets: Vec<Value> = buckets
        .iter()
        .enumerate()
        .map(|(i, (all, ok))| {
            let start = UNIX_EPOCH
                + std::time::Duration::from_secs((first_minute + i as u64 * BUCKET_MINUTES) * 60);
            json!({"start": rfc3339(start), "attempts": all, "successes": ok})
        })
        .collect();
    json!({
        "window_seconds": WINDOW_MINUTES * 60,
        "bucket_seconds": BUCKET_MINUTES * 60,
        "attempts": attempts,
        "successes": successes,
        "buckets": buckets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_fold_into_five_minute_buckets_ending_now() {
        // 10:59:30 UTC on some day: minute m; the window is minutes m-59..=m.
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000 / 60 * 60 + 30);
        let m = 1_800_000_000 / 60;
        let folded = view(
            &[
                (m, 3, 4),
                (m - 4, 1, 1),
                (m - 59, 0, 2),
                (m - 60, 5, 5),
                (m + 1, 9, 9),
            ],
            now,
        );
        let buckets = folded["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 12);
        assert_eq!(buckets[0]["attempts"], 2, "the window's first minute");
        assert_eq!(buckets[11]["attempts"], 5, "the current bucket");
        assert_eq!(buckets[11]["successes"], 4);
        assert_eq!(folded["attempts"], 7, "older and future minutes left out");
        assert_eq!(folded["successes"], 4);
        assert!(buckets[11]["start"].as_str().unwrap().ends_with(":00Z"));
        assert_eq!(view(&[], now)["attempts"], 0);
    }
}
