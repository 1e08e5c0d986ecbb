//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
//!
//! A [`SigningKey`] is parsed once per webhook secret and keeps the HMAC state after the key
//! schedule, so signing an attempt costs one clone plus the hash of the body.

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// `v1,` and the base64 of a 32-byte tag.
const SIGNATURE_LEN: usize = 3 + 44;

/// The prefix of every herald webhook secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Why a secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret must start with \"whsec_\"")]
    MissingPrefix,
    #[error("secret is not valid base64 after \"whsec_\"")]
    NotBase64,
    #[error("secret key must be between 24 and 64 bytes, got {0}")]
    BadLength(usize),
}

/// One webhook secret, ready to sign.
#[derive(Clone)]
pub struct SigningKey {
    mac: HmacSha256,
    /// After this instant the key no longer signs (a rotated-out secret); `None`: forever.
    expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses a `whsec_<base64>` secret.
    pub fn parse(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::BadLength(key.len()));
        }
        Ok(Self::from_bytes(&key))
    }

    /// A key from raw bytes (HMAC accepts any length).
    pub fn from_bytes(key: &[u8]) -> Self {
        let mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
        Self {
            mac,
            expires_at: None,
        }
    }

    /// The same key, valid only until `at`.
    pub fn expiring_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Whether the key still signs at `now`.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }

    fn mac_for(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(itoa::Buffer::new().format(timestamp).as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64>` for one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut out = String::with_capacity(SIGNATURE_LEN);
        self.sign_into(msg_id, timestamp, body, &mut out);
        out
    }

    /// Appends `v1,<base64>` for one message to `out`.
    fn sign_into(&self, msg_id: &str, timestamp: i64, body: &[u8], out: &mut String) {
        let tag = self
            .mac_for(msg_id, timestamp, body)
            .finalize()
            .into_bytes();
        // Into a buffer on the stack: `encode_string` goes through a chunked encoder.
        let mut encoded = [0u8; SIGNATURE_LEN - 3];
        let n = STANDARD
            .encode_slice(tag, &mut encoded)
            .expect("a 32-byte tag fits 44 base64 characters");
        out.push_str("v1,");
        out.push_str(std::str::from_utf8(&encoded[..n]).expect("base64 is ASCII"));
    }

    /// Checks one `v1,<base64>` signature in constant time.
    pub fn verify(&self, msg_id: &str, timestamp: i64, body: &[u8], signature: &str) -> bool {
        let Some(encoded) = signature.strip_prefix("v1,") else {
            return false;
        };
        let Ok(tag) = STANDARD.decode(encoded) else {
            return false;
        };
        self.mac_for(msg_id, timestamp, body)
            .verify_slice(&tag)
            .is_ok()
    }
}

/// Every key a webhook currently signs with: the current secret plus, for a while after a
/// rotation, the previous one.
#[derive(Debug, Clone)]
pub struct Signer {
    keys: Vec<SigningKey>,
}

impl Signer {
    pub fn new(keys: Vec<SigningKey>) -> Self {
        Self { keys }
    }

    /// The `webhook-signature` header value: the signatures of every valid key,
    /// space-separated.
    pub fn header_value(
        &self,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
        now: SystemTime,
    ) -> String {
        // Exactly the length of the value when every key signs, so that the transport can
        // turn it into a header value without copying or allocating again.
        let mut out = String::with_capacity((SIGNATURE_LEN + 1) * self.keys.len().max(1) - 1);
        for key in self.keys.iter().filter(|k| k.is_valid_at(now)) {
            if !out.is_empty() {
                out.push(' ');
            }
            key.sign_into(msg_id, timestamp, body, &mut out);
        }
        out
    }
}

/// Verifies a `webhook-signature` header (as a receiver would): true when any listed
/// signature matches `key`.
pub fn verify_header(
    key: &SigningKey,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    header
        .split(' ')
        .any(|sig| key.verify(msg_id, timestamp, body, sig))
}

/// A new random secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's own test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_spec_vector() {
        let key = SigningKey::parse(SECRET).unwrap();
        assert_eq!(key.sign(MSG_ID, TIMESTAMP, BODY.as_bytes()), EXPECTED);
    }

    #[test]
    fn verifies_its_own_signature_and_rejects_tampering() {
        let key = SigningKey::parse(SECRET).unwrap();
        assert!(key.verify(MSG_ID, TIMESTAMP, BODY.as_bytes(), EXPECTED));
        assert!(!key.verify(MSG_ID, TIMESTAMP + 1, BODY.as_bytes(), EXPECTED));
        assert!(!key.verify(MSG_ID, TIMESTAMP, b"{\"test\": 1}", EXPECTED));
        assert!(!key.verify(MSG_ID, TIMESTAMP, BODY.as_bytes(), "v2,abc"));
    }

    #[test]
    fn rejects_malformed_secrets() {
        assert_eq!(
            SigningKey::parse("MfKQ9r8G").unwrap_err(),
            SecretError::MissingPrefix
        );
        assert_eq!(
            SigningKey::parse("whsec_!!!").unwrap_err(),
            SecretError::NotBase64
        );
        assert_eq!(
            SigningKey::parse("whsec_AAAA").unwrap_err(),
            SecretError::BadLength(3)
        );
    }

    #[test]
    fn rotated_keys_sign_side_by_side_until_they_expire() {
        let now = SystemTime::now();
        let old = SigningKey::parse(SECRET)
            .unwrap()
            .expiring_at(now + std::time::Duration::from_secs(60));
        let new = SigningKey::parse(&generate_secret()).unwrap();
        let signer = Signer::new(vec![new.clone(), old.clone()]);

        let header = signer.header_value(MSG_ID, TIMESTAMP, BODY.as_bytes(), now);
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify_header(
            &old,
            MSG_ID,
            TIMESTAMP,
            BODY.as_bytes(),
            &header
        ));
        assert!(verify_header(
            &new,
            MSG_ID,
            TIMESTAMP,
            BODY.as_bytes(),
            &header
        ));

        let later = now + std::time::Duration::from_secs(61);
        let header = signer.header_value(MSG_ID, TIMESTAMP, BODY.as_bytes(), later);
        assert!(!verify_header(
            &old,
            MSG_ID,
            TIMESTAMP,
            BODY.as_bytes(),
            &header
        ));
        assert!(verify_header(
            &new,
            MSG_ID,
            TIMESTAMP,
            BODY.as_bytes(),
            &header
        ));
    }

    #[test]
    fn generated_secrets_parse() {
        let secret = generate_secret();
        assert!(secret.starts_with(SECRET_PREFIX));
        SigningKey::parse(&secret).unwrap();
        assert_ne!(secret, generate_secret());
    }
}
