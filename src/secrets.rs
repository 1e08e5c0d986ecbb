//! Encryption at rest for the credentials herald stores (contract §1, `--secret-key`):
//! webhook signing secrets (current and rotated-out), webhook header values
//! (`X-Mixpeek-Secret`) and provider connection secrets.
//!
//! A [`SecretBox`] seals a value with XChaCha20-Poly1305 under the 32-byte key and a fresh
//! random 24-byte nonce, and stores it as the self-describing string
//! `enc:v1:<base64(nonce ‖ ciphertext ‖ tag)>`. Anything without that prefix is plaintext
//! and is used as it is: values written directly into MongoDB by an operator, or stored
//! before the key was set, keep working (and are sealed the next time the API writes them).
//! Without a key, values are stored as given.
//!
//! Opening an `enc:v1:` value without the key, with another key, or after the stored bytes
//! were altered is a [`SecretError`] — never a panic — and no error message ever contains
//! the value, sealed or not.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The prefix of every value herald sealed.
pub const SEALED_PREFIX: &str = "enc:v1:";
/// Length of the random nonce at the start of a sealed value, in bytes.
const NONCE_BYTES: usize = 24;
/// Length of the Poly1305 tag at the end of a sealed value, in bytes.
const TAG_BYTES: usize = 16;

/// Why a stored value cannot be read. Messages never include the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the value is encrypted (enc:v1:) but herald runs without --secret-key")]
    NoKey,
    #[error("the value is encrypted (enc:v1:) but does not decrypt with this --secret-key (another key, or altered)")]
    WrongKeyOrTampered,
    #[error("the value starts with enc:v1: but is not a well-formed encrypted value")]
    Malformed,
}

/// Seals values for storage and opens them again; see the module docs. Cheap to clone.
#[derive(Clone, Default)]
pub struct SecretBox {
    /// `None`: no `--secret-key`, values are stored as given.
    cipher: Option<XChaCha20Poly1305>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SecretBox")
            .field("encrypts", &self.encrypts())
            .finish()
    }
}

impl SecretBox {
    /// A box for `--secret-key` (`None`: store as given).
    pub fn new(key: Option<[u8; 32]>) -> Self {
        Self {
            cipher: key.map(|key| XChaCha20Poly1305::new(&key.into())),
        }
    }

    /// Whether values are encrypted on write.
    pub fn encrypts(&self) -> bool {
        self.cipher.is_some()
    }

    /// Whether `stored` is a sealed value (as opposed to plaintext).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }

    /// The form to store `plaintext` in: sealed under a fresh nonce with a key, as given
    /// without one.
    pub fn seal(&self, plaintext: &str) -> String {
        let Some(cipher) = &self.cipher else {
            return plaintext.to_owned();
        };
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let ciphertext = cipher
            .encrypt(&XNonce::from(nonce), plaintext.as_bytes())
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        let mut sealed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed))
    }

    /// The plaintext of a stored value: opened if sealed, as it is otherwise.
    pub fn open<'a>(&self, stored: &'a str) -> Result<Cow<'a, str>, SecretError> {
        let Some(encoded) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(Cow::Borrowed(stored));
        };
        let cipher = self.cipher.as_ref().ok_or(SecretError::NoKey)?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::Malformed)?;
        if bytes.len() < NONCE_BYTES + TAG_BYTES {
            return Err(SecretError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().expect("split at NONCE_BYTES");
        let plaintext = cipher
            .decrypt(&XNonce::from(nonce), ciphertext)
            .map_err(|_| SecretError::WrongKeyOrTampered)?;
        // Only herald seals, and only strings; bytes that authenticate but are not UTF-8
        // were sealed by something else under this key.
        String::from_utf8(plaintext)
            .map(Cow::Owned)
            .map_err(|_| SecretError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const KEY: [u8; 32] = [7; 32];

    /// `FIXTURE_PLAINTEXT` sealed under `KEY` ([7; 32]) with the nonce 00 01 02 … 17 by
    /// two implementations independent of this crate, which agree byte for byte: Python's
    /// pycryptodome 3 (`ChaCha20_Poly1305.new(key=key, nonce=nonce)`, a 24-byte nonce
    /// selecting XChaCha20, then `"enc:v1:" + b64encode(nonce + ciphertext + tag)`) and
    /// PyNaCl/libsodium (`crypto_aead_xchacha20poly1305_ietf_encrypt(pt, None, nonce, key)`).
    /// A change to the stored format (prefix, layout, cipher, base64 alphabet, associated
    /// data) fails to open it.
    const FIXTURE_SEALED: &str = "enc:v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYX33/Y4JlDFsNulrg13qXk\
                                  9S6kbGB+omc1y1T70cCF+6VPX8MNpuOgMMSV7sXdaIrIp+eH4SqS";
    const FIXTURE_PLAINTEXT: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn a_value_sealed_by_an_independent_implementation_opens() {
        let secrets = SecretBox::new(Some(KEY));
        assert_eq!(secrets.open(FIXTURE_SEALED).unwrap(), FIXTURE_PLAINTEXT);
        assert_eq!(
            SecretBox::new(Some([8; 32])).open(FIXTURE_SEALED),
            Err(SecretError::WrongKeyOrTampered)
        );
        // And herald seals in the same layout: prefix, then nonce ‖ ciphertext ‖ tag.
        let sealed = secrets.seal(FIXTURE_PLAINTEXT);
        assert_eq!(sealed.len(), FIXTURE_SEALED.len());
        let fixture_bytes = STANDARD
            .decode(FIXTURE_SEALED.strip_prefix(SEALED_PREFIX).unwrap())
            .unwrap();
        assert_eq!(
            fixture_bytes.len(),
            NONCE_BYTES + FIXTURE_PLAINTEXT.len() + TAG_BYTES
        );
    }

    #[test]
    fn sealed_values_round_trip_and_hide_the_plaintext() {
        let secrets = SecretBox::new(Some(KEY));
        assert!(secrets.encrypts());
        for plaintext in [
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "",
            "é ünïcödé",
            "x",
        ] {
            let sealed = secrets.seal(plaintext);
            assert!(SecretBox::is_sealed(&sealed), "{sealed}");
            // (A one-letter plaintext may well occur in base64 by chance.)
            if plaintext.len() > 8 {
                assert!(!sealed.contains(plaintext), "{sealed}");
            }
            assert_eq!(secrets.open(&sealed).unwrap(), plaintext);
        }
        // A long header value too.
        let long = "v".repeat(8192);
        assert_eq!(secrets.open(&secrets.seal(&long)).unwrap(), long);
    }

    #[test]
    fn plaintext_passes_through_with_or_without_a_key() {
        for secrets in [SecretBox::new(Some(KEY)), SecretBox::new(None)] {
            let opened = secrets.open("whsec_written-by-hand").unwrap();
            assert!(matches!(opened, Cow::Borrowed(_)));
            assert_eq!(opened, "whsec_written-by-hand");
        }
        // Without a key, values are stored as given.
        let none = SecretBox::default();
        assert!(!none.encrypts());
        assert_eq!(none.seal("shared-secret"), "shared-secret");
    }

    #[test]
    fn a_sealed_value_without_the_key_or_with_another_key_is_an_error() {
        let sealed = SecretBox::new(Some(KEY)).seal("shared-secret");
        assert_eq!(
            SecretBox::new(None).open(&sealed).unwrap_err(),
            SecretError::NoKey
        );
        let mut other = KEY;
        other[31] ^= 1;
        let error = SecretBox::new(Some(other)).open(&sealed).unwrap_err();
        assert_eq!(error, SecretError::WrongKeyOrTampered);
        assert!(!error.to_string().contains("shared-secret"));
        assert!(!error.to_string().contains(&sealed));
    }

    #[test]
    fn altered_or_malformed_ciphertext_is_refused() {
        let secrets = SecretBox::new(Some(KEY));
        let sealed = secrets.seal("shared-secret");
        let mut bytes = STANDARD.decode(&sealed[SEALED_PREFIX.len()..]).unwrap();
        for i in [0, NONCE_BYTES, bytes.len() - 1] {
            bytes[i] ^= 0x80;
            let tampered = format!("{SEALED_PREFIX}{}", STANDARD.encode(&bytes));
            assert_eq!(
                secrets.open(&tampered).unwrap_err(),
                SecretError::WrongKeyOrTampered,
                "byte {i}"
            );
            bytes[i] ^= 0x80;
        }
        // Truncated, or not base64 at all.
        let truncated = format!("{SEALED_PREFIX}{}", STANDARD.encode(&bytes[..30]));
        for bad in [truncated.as_str(), "enc:v1:", "enc:v1:!!not base64!!"] {
            assert_eq!(
                secrets.open(bad).unwrap_err(),
                SecretError::Malformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let secrets = SecretBox::new(Some(KEY));
        let sealed: Vec<String> = (0..1000).map(|_| secrets.seal("same")).collect();
        let nonces: HashSet<Vec<u8>> = sealed
            .iter()
            .map(|s| STANDARD.decode(&s[SEALED_PREFIX.len()..]).unwrap()[..NONCE_BYTES].to_vec())
            .collect();
        assert_eq!(nonces.len(), sealed.len());
        assert_eq!(
            sealed.iter().collect::<HashSet<_>>().len(),
            sealed.len(),
            "the same plaintext never seals to the same string"
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let shown = format!("{:?}", SecretBox::new(Some([0xab; 32])));
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("ab, "));
        assert_eq!(shown, "SecretBox { encrypts: true }");
    }
}
