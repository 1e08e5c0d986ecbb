//! `api_keys`: the API keys clients present (contract §7, `POST /v1/keys`).
//!
//! A key is `hk_` and 48 random hex digits (192 bits), shown once, when it is created.
//! Only its SHA-256 is stored: a key has the entropy of a random secret, so a plain hash
//! (no salt, no stretching) cannot be reversed, and it lets a request find its key with one
//! indexed look-up (`hash`, unique). A document:
//!
//! ```text
//! { _id: "key_<16 hex>", hash: "<64 hex>", prefix: "hk_1a2b3c", role: "admin" | "read",
//!   namespace_id?: "…", created_at, last_used_at?, revoked_at? }
//! ```
//!
//! Revoking sets `revoked_at`; the document stays, so the audit trail's `key_id`s keep a
//! meaning. Every daemon looks the key up per request (nothing is cached), so a revoke is
//! refused at once by every daemon sharing the database. `last_used_at` is written at most
//! once a minute per key, by whichever daemon first sees it stale: a conditional update,
//! not a write per request.

use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use sha2::{Digest, Sha256};

use super::page::{find_page, Page, PageRequest};

/// The collection's name.
pub const API_KEYS: &str = "api_keys";

/// What every key starts with, so that a leaked one is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "hk_";

/// Random hex digits after the prefix (24 bytes).
const KEY_HEX_DIGITS: usize = 48;

/// How stale `last_used_at` may get before a request refreshes it.
pub const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

fn collection(db: &Database) -> Collection<Document> {
    db.collection(API_KEYS)
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything in its scope: reads and writes.
    Admin,
    /// Reads only; every write is a 403.
    Read,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Read => "read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "read" => Some(Role::Read),
            _ => None,
        }
    }
}

/// A fresh key and its id: `(key_id, key)`.
pub fn generate() -> (String, String) {
    let id = format!("key_{:016x}", rand::random::<u64>());
    let bytes: [u8; KEY_HEX_DIGITS / 2] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    (id, format!("{KEY_PREFIX}{hex}"))
}

/// Whether `key` has the shape of a herald key (prefix, length, hex digits).
pub fn well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|hex| {
        hex.len() == KEY_HEX_DIGITS && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The stored form of a key: its SHA-256, lowercase hex.
pub fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first characters of a key, stored and listed so that a person can tell keys apart
/// (too short to help guess one).
pub fn display_prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX.len() + 6).collect()
}

/// The indexes of `api_keys` (idempotent): one key per hash, and a namespace's keys.
pub async fn ensure_indexes(db: &Database) -> mongodb::error::Result<()> {
    let unique = IndexModel::builder()
        .keys(doc! {"hash": 1})
        .options(
            IndexOptions::builder()
                .name("hash_1".to_owned())
                .unique(true)
                .build(),
        )
        .build();
    let namespace = IndexModel::builder()
        .keys(doc! {"namespace_id": 1, "_id": 1})
        .build();
    collection(db)
        .create_indexes([unique, namespace])
        .await
        .map(drop)
}

/// Inserts a new key document (see the module docs for its shape).
pub async fn insert(db: &Database, document: Document) -> mongodb::error::Result<()> {
    collection(db).insert_one(document).await.map(drop)
}

/// The key whose hash is `hash`, revoked or not.
pub async fn find_by_hash(db: &Database, hash: &str) -> mongodb::error::Result<Option<Document>> {
    collection(db).find_one(doc! {"hash": hash}).await
}

/// One key by id, without its hash.
pub async fn get(db: &Database, id: &str) -> mongodb::error::Result<Option<Document>> {
    collection(db)
        .find_one(doc! {"_id": id})
        .projection(doc! {"hash": 0})
        .await
}

/// One page of keys (of one namespace, if given), without their hashes.
pub async fn list(
    db: &Database,
    namespace_id: Option<&str>,
    page: &PageRequest,
) -> mongodb::error::Result<Page<Document>> {
    let filter = match namespace_id {
        Some(ns) => doc! {"namespace_id": ns},
        None => Document::new(),
    };
    find_page(&collection(db), filter, Some(doc! {"hash": 0}), page).await
}

/// Revokes a key (once: a second revoke keeps the first time) → whether it exists.
pub async fn revoke(db: &Database, id: &str) -> mongodb::error::Result<bool> {
    let now = DateTime::now();
    let revoked = collection(db)
        .update_one(
            doc! {"_id": id, "revoked_at": null},
            doc! {"$set": {"revoked_at": now}},
        )
        .await?;
    if revoked.matched_count == 1 {
        return Ok(true);
    }
    Ok(get(db, id).await?.is_some())
}

/// Records a use of key `id` at `now` unless one was recorded within
/// [`LAST_USED_RESOLUTION`] (the filter makes racing daemons write once).
pub async fn touch(db: &Database, id: &str, now: DateTime) -> mongodb::error::Result<()> {
    let stale =
        DateTime::from_millis(now.timestamp_millis() - LAST_USED_RESOLUTION.as_millis() as i64);
    collection(db)
        .update_one(
            doc! {"_id": id, "$or": [
                {"last_used_at": null},
                {"last_used_at": {"$lt": stale}},
            ]},
            doc! {"$set": {"last_used_at": now}},
        )
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hash_to_hex() {
        let (id, key) = generate();
        assert!(id.starts_with("key_") && id.len() == 20, "{id}");
        assert!(well_formed(&key), "{key}");
        assert_ne!(generate().1, key);
        let hashed = hash(&key);
        assert_eq!(hashed.len(), 64);
        assert!(!hashed.contains(&key[3..]));
        assert_eq!(hash(&key), hashed);
        assert_eq!(display_prefix(&key).len(), 9);
        assert!(!well_formed("hk_short"));
        assert!(!well_formed(&key.replacen("hk_", "sk_", 1)));
        assert!(!well_formed(&format!("{key}0")));
    }

    #[test]
    fn roles_read_back() {
        for role in [Role::Admin, Role::Read] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("owner"), None);
    }
}
