//! The `t=<unix>,v1=<hex>` signature scheme that Mux (`Mux-Signature`) and Stripe
//! (`Stripe-Signature`) share: `v1` is the lowercase hex HMAC-SHA256, keyed by the
//! connection secret's UTF-8 bytes, of `"{t}.{raw body}"`.
//!
//! Parsing is strict — a part without `=`, a second `t`, a `t` that is not digits, a `v1`
//! that is not 64 hex digits: all malformed — and never panics (the property tests at the
//! bottom feed it arbitrary strings). Unknown schemes (`v0=…`) are ignored, as Stripe's own
//! libraries do, so a provider can add one without breaking us. Comparison is constant-time
//! (`hmac`'s `verify_slice`).

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::VerifyError;

type HmacSha256 = Hmac<Sha256>;

/// How far `t` may lie from now, either way, in seconds.
pub const TOLERANCE_SECS: u64 = 300;

/// More `v1` values than this in one header is not a key rotation but an attack on our CPU.
const MAX_SIGNATURES: usize = 16;

/// A parsed signature header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader<'a> {
    /// `t` exactly as sent: it is signed as text, so it is kept as text.
    pub timestamp: &'a str,
    /// `t` as unix seconds.
    pub unix: u64,
    /// Every `v1` value, decoded.
    pub signatures: Vec<[u8; 32]>,
}

/// Parses `t=<unix>,v1=<hex>[,v1=<hex>…]`; whitespace around parts is tolerated.
pub fn parse(header: &str) -> Result<SignatureHeader<'_>, VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let (key, value) = part
            .split_once('=')
            .ok_or(VerifyError::Malformed("a part has no '='"))?;
        match key.trim() {
            "t" => {
                if timestamp.is_some() {
                    return Err(VerifyError::Malformed("t appears twice"));
                }
                timestamp = Some(value.trim());
            }
            "v1" => {
                if signatures.len() == MAX_SIGNATURES {
                    return Err(VerifyError::Malformed("too many v1 signatures"));
                }
                let digest = decode_hex32(value.trim())
                    .ok_or(VerifyError::Malformed("v1 is not 64 hex digits"))?;
                signatures.push(digest);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed("t is missing"))?;
    // Digits only: no sign, no spaces, and short enough to fit in a u64.
    if timestamp.is_empty()
        || timestamp.len() > 19
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(VerifyError::Malformed("t is not unix seconds"));
    }
    let unix = timestamp
        .parse()
        .map_err(|_| VerifyError::Malformed("t is not unix seconds"))?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed("v1 is missing"));
    }
    Ok(SignatureHeader {
        timestamp,
        unix,
        signatures,
    })
}

/// Verifies `header` for `body` under `secret` at `now`: the timestamp within
/// [`TOLERANCE_SECS`] of `now`, then any `v1` equal to the expected HMAC.
pub fn verify(header: &str, body: &[u8], secret: &str, now: SystemTime) -> Result<(), VerifyError> {
    let parsed = parse(header)?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if now.abs_diff(parsed.unix) > TOLERANCE_SECS {
        return Err(VerifyError::Stale);
    }
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(parsed.timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    // Each candidate is compared in constant time; which one matched is no secret.
    if parsed
        .signatures
        .iter()
        .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The header a sender would write: `t=<t>,v1=<hex>` (tests, examples, a future sender).
pub fn sign(secret: &str, unix: u64, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(format!("{unix}.").as_bytes());
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix},v1={hex}")
}

/// 64 hex digits (either case) as 32 bytes.
fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn parses_several_signatures_and_ignores_unknown_schemes() {
        let a = "a".repeat(64);
        let b = "0B".repeat(32);
        let header = format!(" t=12 , v0=zz, v1={a},v1={b}");
        let parsed = parse(&header).unwrap();
        assert_eq!(parsed.timestamp, "12");
        assert_eq!(parsed.unix, 12);
        assert_eq!(parsed.signatures, vec![[0xaa; 32], [0x0b; 32]]);
    }

    #[test]
    fn malformed_headers_say_why() {
        let v1 = "a".repeat(64);
        let cases: &[(&str, &str)] = &[
            ("", "t is missing"),
            (",,,", "t is missing"),
            ("garbage", "a part has no '='"),
            (&format!("v1={v1}"), "t is missing"),
            ("t=1565125718", "v1 is missing"),
            (&format!("t=,v1={v1}"), "t is not unix seconds"),
            (&format!("t=abc,v1={v1}"), "t is not unix seconds"),
            (&format!("t=-5,v1={v1}"), "t is not unix seconds"),
            (
                &format!("t=99999999999999999999,v1={v1}"),
                "t is not unix seconds",
            ),
            (&format!("t=1,t=2,v1={v1}"), "t appears twice"),
            ("t=1,v1=xyz", "v1 is not 64 hex digits"),
            (
                &format!("t=1,v1={}", "g".repeat(64)),
                "v1 is not 64 hex digits",
            ),
            (
                &format!("t=1,v1={}", "a".repeat(62)),
                "v1 is not 64 hex digits",
            ),
            ("t=1,v1=", "v1 is not 64 hex digits"),
        ];
        for (header, why) in cases {
            assert_eq!(
                parse(header),
                Err(VerifyError::Malformed(why)),
                "header {header:?}"
            );
        }
        let many = std::iter::repeat_n(format!("v1={v1}"), MAX_SIGNATURES + 1)
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            parse(&format!("t=1,{many}")),
            Err(VerifyError::Malformed("too many v1 signatures"))
        );
    }

    #[test]
    fn the_tolerance_holds_both_ways() {
        let header = sign("s", 1_000, b"{}");
        assert_eq!(verify(&header, b"{}", "s", at(1_000 + 300)), Ok(()));
        assert_eq!(verify(&header, b"{}", "s", at(1_000 - 300)), Ok(()));
        assert_eq!(
            verify(&header, b"{}", "s", at(1_000 + 301)),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(&header, b"{}", "s", at(1_000 - 301)),
            Err(VerifyError::Stale)
        );
    }

    #[test]
    fn sign_and_verify_agree_and_the_key_matters() {
        let header = sign("one", 50, b"body");
        assert_eq!(verify(&header, b"body", "one", at(50)), Ok(()));
        assert_eq!(
            verify(&header, b"body", "two", at(50)),
            Err(VerifyError::Mismatch)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(header in ".{0,300}") {
            let _ = parse(&header);
            let _ = verify(&header, b"{}", "secret", at(1_565_125_718));
        }

        #[test]
        fn parse_never_panics_on_near_misses(
            t in "[0-9a-z-]{0,22}",
            sigs in proptest::collection::vec("[0-9a-fA-Fg ]{0,66}", 0..4),
            sep in "[,= ]{1,2}",
        ) {
            let mut header = format!("t={t}");
            for sig in sigs {
                header.push_str(&sep);
                header.push_str("v1=");
                header.push_str(&sig);
            }
            let _ = parse(&header);
            let _ = verify(&header, b"{}", "secret", at(0));
        }

        #[test]
        fn only_the_signed_body_verifies(body in proptest::collection::vec(any::<u8>(), 0..64),
                                         other in proptest::collection::vec(any::<u8>(), 0..64)) {
            let header = sign("k", 7, &body);
            prop_assert_eq!(verify(&header, &body, "k", at(7)), Ok(()));
            if other != body {
                prop_assert_eq!(verify(&header, &other, "k", at(7)), Err(VerifyError::Mismatch));
            }
        }
    }
}
