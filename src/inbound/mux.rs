//! Mux (<https://docs.mux.com/core/listen-for-webhooks>): `Mux-Signature: t=<unix>,v1=<hex>`
//! verified by [`signature`](super::signature), and the two asset events herald acts on.
//!
//! A Mux event is `{type, id, created_at, object: {type, id}, data: {…the asset…}, …}`.
//! - `video.asset.deleted` → [`Change::AssetDeleted`] of `data.id` (else `object.id`);
//! - `video.asset.updated` → [`Change::AssetUpdated`]: the connection's filters are
//!   evaluated on `data`, and the objects' new metadata is the **Mux-owned part of the
//!   asset**: `{passthrough, meta}`, each present when the asset has it. Not the whole
//!   asset — its tracks, playback ids and statuses are Mux's bookkeeping, not what a
//!   bucket object describes, and would bloat every `object.updated` payload;
//!   Mux assets carry no modification time, so the event's own `created_at` orders
//!   updates ([`Change::AssetUpdated::changed_at`]);
//! - anything else → [`Change::Ignored`], answered `{"handled": false}` so Mux stops
//!   retrying.

use std::time::SystemTime;

use hyper::HeaderMap;
use serde_json::{Map, Value};

use super::{signature, Change, InboundEvent, InboundProvider, ParseError, VerifyError};

/// The header Mux signs with.
pub const SIGNATURE_HEADER: &str = "mux-signature";
pub const ASSET_DELETED: &str = "video.asset.deleted";
pub const ASSET_UPDATED: &str = "video.asset.updated";
/// Longest event id accepted (Mux's are UUIDs); it becomes part of document ids.
const MAX_ID_BYTES: usize = 256;

/// The Mux provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mux;

impl InboundProvider for Mux {
    fn name(&self) -> &'static str {
        "mux"
    }

    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secret: &str,
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let header = headers
            .get(SIGNATURE_HEADER)
            .ok_or(VerifyError::Missing)?
            .to_str()
            .map_err(|_| VerifyError::Malformed("not printable ASCII"))?;
        signature::verify(header, body, secret, now)
    }

    fn parse(&self, body: &[u8]) -> Result<InboundEvent, ParseError> {
        parse_event(body)
    }
}

/// The metadata objects of an asset carry: `{passthrough?, meta?}`.
pub fn metadata_snapshot(asset: &Map<String, Value>) -> Value {
    let mut snapshot = Map::new();
    for field in ["passthrough", "meta"] {
        if let Some(value) = asset.get(field) {
            snapshot.insert(field.to_owned(), value.clone());
        }
    }
    Value::Object(snapshot)
}

/// The event's `created_at` (RFC 3339, e.g. `2024-01-05T17:52:34.123456Z`) as a date, to
/// the millisecond; an unreadable one is treated as absent.
fn changed_at(text: &str) -> Option<mongodb::bson::DateTime> {
    let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(mongodb::bson::DateTime::from_millis(at.timestamp_millis()))
}

fn field(field: &'static str, message: &'static str) -> ParseError {
    ParseError::Field { field, message }
}

fn parse_event(body: &[u8]) -> Result<InboundEvent, ParseError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let Value::Object(mut event) = value else {
        return Err(field("body", "must be a JSON object"));
    };
    let event_type = match event.get("type") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => return Err(field("type", "must be a non-empty string")),
    };
    let id = match event.get("id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_ID_BYTES => Some(id.clone()),
        None | Some(Value::Null) => None,
        Some(_) => {
            return Err(field(
                "id",
                "must be a non-empty string of at most 256 bytes",
            ))
        }
    };
    let acted_on = event_type == ASSET_DELETED || event_type == ASSET_UPDATED;
    if !acted_on {
        return Ok(InboundEvent {
            id,
            event_type,
            change: Change::Ignored,
        });
    }
    if id.is_none() {
        return Err(field("id", "is required"));
    }
    let asset_id = event
        .get("data")
        .and_then(|d| d.get("id"))
        .or_else(|| event.get("object").and_then(|o| o.get("id")))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or(field("data.id", "the asset id is required"))?;
    let change = if event_type == ASSET_DELETED {
        Change::AssetDeleted { asset_id }
    } else {
        let Some(Value::Object(asset)) = event.remove("data") else {
            return Err(field("data", "must be the asset, a JSON object"));
        };
        let metadata = metadata_snapshot(&asset);
        Change::AssetUpdated {
            asset_id,
            asset: Value::Object(asset),
            metadata,
            changed_at: event
                .get("created_at")
                .and_then(Value::as_str)
                .and_then(changed_at),
        }
    };
    Ok(InboundEvent {
        id,
        event_type,
        change,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use hyper::header::HeaderValue;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const SDK_SECRET: &str = "SuperSecret123";
    const SDK_BODY: &[u8] = br#"{"test":"body"}"#;
    const SDK_T: u64 = 1_565_125_718;
    const SDK_V1: &str = "854ece4c22acef7c66b57d4e504153bc512595e8e9c772ece2a68150548c19a7";

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    fn headers(signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(signature).unwrap());
        headers
    }

    fn verify(signature: &str, body: &[u8], now: u64) -> Result<(), VerifyError> {
        Mux.verify(&headers(signature), body, SDK_SECRET, at(now))
    }

    #[test]
    fn the_mux_sdk_vector_verifies() {
        let header = format!("t={SDK_T},v1={SDK_V1}");
        assert_eq!(verify(&header, SDK_BODY, SDK_T + 10), Ok(()));
        assert_eq!(signature::sign(SDK_SECRET, SDK_T, SDK_BODY), header);
    }

    #[test]
    fn any_of_several_v1_values_may_match() {
        let wrong = "0".repeat(64);
        let header = format!("t={SDK_T},v1={wrong},v1={SDK_V1}");
        assert_eq!(verify(&header, SDK_BODY, SDK_T), Ok(()));
        let header = format!("t={SDK_T},v1={SDK_V1},v1={wrong}");
        assert_eq!(verify(&header, SDK_BODY, SDK_T), Ok(()));
        let header = format!("t={SDK_T},v1={wrong},v1={}", "1".repeat(64));
        assert_eq!(verify(&header, SDK_BODY, SDK_T), Err(VerifyError::Mismatch));
    }

    #[test]
    fn a_tampered_body_or_another_secret_fails() {
        let header = format!("t={SDK_T},v1={SDK_V1}");
        assert_eq!(
            verify(&header, br#"{"test":"bodY"}"#, SDK_T),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&header, br#"{"test":"body"} "#, SDK_T),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            Mux.verify(&headers(&header), SDK_BODY, "SuperSecret124", at(SDK_T)),
            Err(VerifyError::Mismatch)
        );
        // The timestamp is signed too: shifting it breaks the signature.
        let shifted = format!("t={},v1={SDK_V1}", SDK_T + 1);
        assert_eq!(
            verify(&shifted, SDK_BODY, SDK_T),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn a_stale_or_future_timestamp_fails_even_when_signed() {
        let header = format!("t={SDK_T},v1={SDK_V1}");
        assert_eq!(
            verify(&header, SDK_BODY, SDK_T + 301),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(&header, SDK_BODY, SDK_T - 301),
            Err(VerifyError::Stale)
        );
        assert_eq!(verify(&header, SDK_BODY, SDK_T + 300), Ok(()));
    }

    #[test]
    fn malformed_or_missing_headers_fail() {
        assert_eq!(
            Mux.verify(&HeaderMap::new(), SDK_BODY, SDK_SECRET, at(SDK_T)),
            Err(VerifyError::Missing)
        );
        for header in [
            "",
            "t=abc",
            &format!("t=abc,v1={SDK_V1}"),
            &format!("v1={SDK_V1}"),
            &format!("t={SDK_T}"),
            &format!("t={SDK_T},v1=not-hex"),
            &format!("t={SDK_T},v1={}", SDK_V1.replace('a', "z")),
            &format!("t={SDK_T};v1={SDK_V1}"),
        ] {
            assert!(
                matches!(
                    verify(header, SDK_BODY, SDK_T),
                    Err(VerifyError::Malformed(_))
                ),
                "header {header:?}: {:?}",
                verify(header, SDK_BODY, SDK_T)
            );
        }
        let mut binary = HeaderMap::new();
        binary.insert(
            SIGNATURE_HEADER,
            HeaderValue::from_bytes(b"t=1,v1=\xff").unwrap(),
        );
        assert_eq!(
            Mux.verify(&binary, SDK_BODY, SDK_SECRET, at(1)),
            Err(VerifyError::Malformed("not printable ASCII"))
        );
    }

    #[test]
    fn asset_deleted_names_the_asset() {
        let body = json!({"type": ASSET_DELETED, "id": "e1", "object": {"type": "asset", "id": "a0"},
                          "data": {"id": "a1", "status": "ready"}});
        let event = Mux.parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(event.id.as_deref(), Some("e1"));
        assert_eq!(
            event.change,
            Change::AssetDeleted {
                asset_id: "a1".into()
            }
        );
        // Without data.id, object.id names the asset.
        let body =
            json!({"type": ASSET_DELETED, "id": "e1", "object": {"type": "asset", "id": "a0"}});
        let event = Mux.parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            event.change,
            Change::AssetDeleted {
                asset_id: "a0".into()
            }
        );
    }

    #[test]
    fn asset_updated_carries_the_asset_and_its_metadata_snapshot() {
        let body = json!({"type": ASSET_UPDATED, "id": "e2", "created_at": "2024-01-05T17:52:34.123456Z", "data": {
            "id": "a1", "status": "ready", "passthrough": "p", "meta": {"title": "t", "external_id": "x"},
            "tracks": [{"type": "video"}]}});
        let event = Mux.parse(body.to_string().as_bytes()).unwrap();
        let Change::AssetUpdated {
            asset_id,
            asset,
            metadata,
            changed_at,
        } = event.change
        else {
            panic!("not an update: {:?}", event.change);
        };
        // The event's own time orders updates, to the millisecond.
        assert_eq!(
            changed_at.map(|at| at.timestamp_millis()),
            Some(1_704_477_154_123)
        );
        assert_eq!(asset_id, "a1");
        assert_eq!(asset["status"], "ready");
        assert_eq!(
            metadata,
            json!({"passthrough": "p", "meta": {"title": "t", "external_id": "x"}})
        );
        let bare = json!({"type": ASSET_UPDATED, "id": "e3", "data": {"id": "a1"}});
        let event = Mux.parse(bare.to_string().as_bytes()).unwrap();
        assert!(
            matches!(event.change, Change::AssetUpdated { metadata, .. } if metadata == json!({}))
        );
    }

    #[test]
    fn other_types_are_ignored_even_without_an_id() {
        for body in [
            json!({"type": "video.asset.ready", "id": "e4", "data": {"id": "a1"}}),
            json!({"type": "video.live_stream.idle", "data": 5}),
        ] {
            let event = Mux.parse(body.to_string().as_bytes()).unwrap();
            assert_eq!(event.change, Change::Ignored);
        }
    }

    #[test]
    fn unusable_payloads_name_what_is_wrong() {
        let not_json = Mux.parse(b"not json").unwrap_err();
        assert!(matches!(not_json, ParseError::NotJson(_)));
        let cases = [
            (json!([1, 2]), "body"),
            (json!({"id": "e"}), "type"),
            (json!({"type": 5, "id": "e"}), "type"),
            (json!({"type": ASSET_DELETED, "id": 5}), "id"),
            (json!({"type": ASSET_DELETED, "data": {"id": "a"}}), "id"),
            (
                json!({"type": ASSET_DELETED, "id": "e", "data": {}}),
                "data.id",
            ),
            (
                json!({"type": ASSET_DELETED, "id": "e", "data": {"id": ""}}),
                "data.id",
            ),
            (
                json!({"type": ASSET_UPDATED, "id": "e", "object": {"id": "a"}}),
                "data",
            ),
            (
                json!({"type": ASSET_UPDATED, "id": "e", "object": {"id": "a"}, "data": "x"}),
                "data",
            ),
        ];
        for (body, expected) in cases {
            match Mux.parse(body.to_string().as_bytes()) {
                Err(ParseError::Field { field, .. }) => assert_eq!(field, expected, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Mux.parse(&body);
        }

        #[test]
        fn parsing_never_panics_on_json_shaped_events(
            kind in prop_oneof![Just(ASSET_DELETED), Just(ASSET_UPDATED), Just("x")],
            id in prop_oneof![Just(json!(null)), Just(json!(1)), ".{0,300}".prop_map(Value::from)],
            data in prop_oneof![
                Just(json!(null)), Just(json!([])), Just(json!({})),
                ".{0,8}".prop_map(|s| json!({"id": s, "passthrough": s, "meta": {"k": s}})),
                any::<i64>().prop_map(|n| json!({"id": n})),
            ],
        ) {
            let body = json!({"type": kind, "id": id, "data": data, "object": data});
            let _ = Mux.parse(body.to_string().as_bytes());
        }
    }
}
