//! `Mux-Signature: t=<unix>,v1=<hex>` (src/inbound/signature.rs) and the Mux body parser
//! (src/inbound/mux.rs): arbitrary header bytes and body never panic, and whatever the
//! header, a body signed by `sign` verifies under the same secret.
//!
//! Input: one length byte, that many header bytes, then the body.

#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::inbound::mux::{Mux, SIGNATURE_HEADER};
use herald::inbound::{signature, InboundProvider, VerifyError};
use hyper::header::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "mux-webhook-secret";

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let (header, body) = rest.split_at(usize::from(len).min(rest.len()));

    // The header as text, as the route sees it after `to_str`.
    let text = String::from_utf8_lossy(header);
    let parsed = signature::parse(&text);
    // Verify at the header's own time when it has one, so the HMAC comparison is reached.
    let now = match &parsed {
        Ok(p) => UNIX_EPOCH + Duration::from_secs(p.unix.min(u64::from(u32::MAX))),
        Err(_) => SystemTime::now(),
    };
    let verdict = signature::verify(&text, body, SECRET, now);
    if let Err(e) = &parsed {
        assert_eq!(
            verdict.as_ref(),
            Err(e),
            "verify must refuse what parse refuses"
        );
    }

    // The provider's entry point, with the raw header bytes.
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(header) {
        headers.insert(SIGNATURE_HEADER, value);
    }
    let _ = Mux.verify(&headers, body, SECRET, now);
    assert_eq!(
        Mux.verify(&HeaderMap::new(), body, SECRET, now),
        Err(VerifyError::Missing)
    );

    // What a real sender signs always verifies; another secret never does.
    let unix = 1_700_000_000;
    let signed = signature::sign(SECRET, unix, body);
    let at = UNIX_EPOCH + Duration::from_secs(unix);
    assert_eq!(signature::verify(&signed, body, SECRET, at), Ok(()));
    assert_eq!(
        signature::verify(&signed, body, "another secret", at),
        Err(VerifyError::Mismatch)
    );

    // Only then is the body parsed.
    let _ = Mux.parse(body);
});
