//! Standard Webhooks signing (actors/src/signing.rs): arbitrary secrets (`whsec_` parsing
//! included), message ids, timestamps, bodies and `webhook-signature` headers never panic,
//! and what herald signs always verifies under the same key.
//!
//! Input: `secret NUL msg_id NUL timestamp NUL header NUL body`.

#![no_main]

use std::time::{Duration, SystemTime};

use herald_actors::signing::{verify_header, Signer, SigningKey, SECRET_PREFIX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `secret NUL msg_id NUL timestamp NUL header NUL body` (the body is the rest, NULs
    // and all), so that seeds can be written by hand.
    let mut fields = data.splitn(5, |b| *b == 0);
    let mut text = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let (secret, msg_id, timestamp, header) = (text(), text(), text(), text());
    let body = fields.next().unwrap_or_default();
    let timestamp: i64 = timestamp.trim().parse().unwrap_or_default();
    let (secret, msg_id, header) = (secret.as_str(), msg_id.as_str(), header.as_str());

    // The secret as stored (`whsec_<base64>`), and as a `whsec_` prefix on arbitrary text.
    let parsed = SigningKey::parse(secret);
    let _ = SigningKey::parse(&format!("{SECRET_PREFIX}{secret}"));
    // Raw key bytes of any length are accepted.
    let raw = SigningKey::from_bytes(secret.as_bytes());

    for key in parsed.iter().chain(std::iter::once(&raw)) {
        // An arbitrary header: a list of candidate signatures, none of which may panic.
        let _ = key.verify(msg_id, timestamp, body, header);
        let _ = verify_header(key, msg_id, timestamp, body, header);

        // Sign, then verify: the signing input `{id}.{timestamp}.{body}` round-trips.
        let signature = key.sign(msg_id, timestamp, body);
        assert!(signature.starts_with("v1,"));
        assert!(key.verify(msg_id, timestamp, body, &signature));
        assert!(!key.verify(msg_id, timestamp.wrapping_add(1), body, &signature));

        // A rotation: the current key and one expiring later both sign, space-separated.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let old = key.clone().expiring_at(now + Duration::from_secs(60));
        let signer = Signer::new(vec![key.clone(), old]);
        let value = signer.header_value(msg_id, timestamp, body, now);
        assert_eq!(value.split(' ').count(), 2);
        assert!(verify_header(key, msg_id, timestamp, body, &value));
        let later = signer.header_value(msg_id, timestamp, body, now + Duration::from_secs(61));
        assert_eq!(later, signature);
    }
});
