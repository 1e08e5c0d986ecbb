//! Documents and lookups shared by the stories.

use std::time::Duration;

use futures::TryStreamExt;
use herald_actors::signing::{verify_header, SigningKey};
use mongodb::bson::{doc, Document};
use mongodb::Database;

use crate::support::{self, RecordedRequest};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A fresh database on the shared test server.
pub async fn database(prefix: &str) -> (String, String, Database) {
    let uri = support::mongo::shared().uri.clone();
    let name = support::mongo::unique_db(prefix);
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    (uri, name.clone(), client.database(&name))
}

/// A webhook document as the API would write it.
pub fn webhook(id: &str, url: &str, event_types: &[&str]) -> Document {
    doc! {
        "_id": id,
        "url": url,
        "event_types": event_types,
        "secret": SECRET,
        "headers": {"X-Mixpeek-Secret": "shared-secret"},
        "enabled": true,
        "created_at": mongodb::bson::DateTime::now(),
    }
}

/// Every index of `collection`, as the server lists them.
pub async fn indexes(db: &Database, collection: &str) -> Vec<mongodb::IndexModel> {
    db.collection::<Document>(collection)
        .list_indexes()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

pub async fn insert_webhook(db: &Database, doc: Document) {
    db.collection::<Document>("webhooks")
        .insert_one(doc)
        .await
        .unwrap();
}

pub fn event(id: &str, event_type: &str) -> Document {
    doc! {
        "_id": id,
        "event_type": event_type,
        "data": {"collection_id": "col_1", "document_ids": ["d1", "d2"]},
        "cache_scope": {"scope": "collection", "collection_id": "col_1"},
    }
}

pub async fn insert_event(db: &Database, id: &str, event_type: &str) {
    db.collection::<Document>("events")
        .insert_one(event(id, event_type))
        .await
        .unwrap();
}

pub async fn delivery(db: &Database, id: &str) -> Option<Document> {
    db.collection::<Document>("deliveries")
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
}

pub async fn deliveries(db: &Database, filter: Document) -> Vec<Document> {
    db.collection::<Document>("deliveries")
        .find(filter)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Waits until the delivery has `status`, and returns it.
pub async fn wait_for_status(db: &Database, id: &str, status: &str) -> Document {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = delivery(db, id).await;
        if let Some(d) = &found {
            if d.get_str("status") == Ok(status) {
                return d.clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delivery {id} never became {status}; last seen: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn header<'a>(request: &'a RecordedRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Checks a request as a receiver following Standard Webhooks would.
pub fn assert_signed(request: &RecordedRequest) {
    let key = SigningKey::parse(SECRET).unwrap();
    let id = header(request, "webhook-id").expect("webhook-id");
    let ts: i64 = header(request, "webhook-timestamp")
        .expect("webhook-timestamp")
        .parse()
        .unwrap();
    let signature = header(request, "webhook-signature").expect("webhook-signature");
    assert!(
        verify_header(&key, id, ts, &request.body, signature),
        "bad signature on {id}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - ts).abs() < 300, "timestamp {ts} is not current");
}

pub fn body_json(request: &RecordedRequest) -> serde_json::Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}

/// A webhook of the test's own that tells when herald has caught up: with webhook changes
/// written straight into MongoDB (they are applied in the order written), and with events
/// (they are routed in the order inserted). A negative check ("nothing arrives") waits on
/// it first, so that its bounded quiet period starts only once herald has seen the change.
pub struct Marker {
    db: Database,
    id: String,
    pub receiver: support::Receiver,
    /// Bumped by each [`Marker::changes_applied`]: the marker listens to `marker.<round>`.
    round: u32,
}

impl Marker {
    /// Inserts the marker webhook (`id` must be unused by the test).
    pub async fn start(db: &Database, id: &str) -> Self {
        let receiver = support::Receiver::start().await;
        insert_webhook(db, webhook(id, &receiver.url, &["marker.0"])).await;
        let mut marker = Self {
            db: db.clone(),
            id: id.to_owned(),
            receiver,
            round: 0,
        };
        marker.events_routed().await;
        marker
    }

    /// Waits until herald has applied every webhook change written before this call: moves
    /// the marker to a new event type, then publishes that type until the marker gets one.
    pub async fn changes_applied(&mut self) {
        self.round += 1;
        self.db
            .collection::<Document>("webhooks")
            .update_one(
                doc! {"_id": &self.id},
                doc! {"$set": {"event_types": [format!("marker.{}", self.round)]}},
            )
            .await
            .unwrap();
        self.events_routed().await;
    }

    /// Waits until herald has routed every event inserted before this call: publishes an
    /// event of the marker's type (again, until the marker's current type is live) and
    /// waits for it.
    pub async fn events_routed(&mut self) {
        let event_type = format!("marker.{}", self.round);
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let id = format!("evt_marker_{:08x}", rand::random::<u32>());
            insert_event(&self.db, &id, &event_type).await;
            let probe_until = tokio::time::Instant::now() + Duration::from_secs(2);
            while tokio::time::Instant::now() < probe_until {
                if self
                    .receiver
                    .requests()
                    .iter()
                    .any(|r| header(r, "webhook-id") == Some(id.as_str()))
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "herald never delivered a {event_type} event to the marker"
            );
        }
    }
}

/// `Mux-Signature` as Mux computes it for `body` at time `t` (seconds), written here
/// independently of herald's code.
pub fn mux_signature(secret: &str, t: u64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// The most requests that arrived within any one second.
pub fn most_in_one_second(times: &[std::time::Instant]) -> usize {
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(times[i]) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// The document another daemon of the cluster keeps in `herald_members`: heartbeat at
/// `heartbeat_at`, a 10 s lease TTL, listening on `listen`.
pub fn member(id: &str, listen: &str, heartbeat_at: mongodb::bson::DateTime) -> Document {
    let started_at =
        mongodb::bson::DateTime::from_millis(heartbeat_at.timestamp_millis() - 3_600_000);
    doc! {
        "_id": id,
        "beat": 41_i64,
        "started_at": started_at,
        "heartbeat_at": heartbeat_at,
        "lease_ttl_ms": 10_000_i64,
        "listen": listen,
        "version": "9.9.9",
        "partitions": Vec::<i32>::new(),
        "feed_lag_ms": 1_500_i64,
        "checkpoint_age_ms": 2_500_i64,
    }
}

pub async fn insert_member(db: &Database, member: Document) {
    db.collection::<Document>("herald_members")
        .insert_one(member)
        .await
        .unwrap();
}

/// A lease document of `herald_partitions` (the `_id` is the partition).
pub fn lease(partition: i32, owner: Option<&str>, epoch: i64) -> Document {
    let now = mongodb::bson::DateTime::now().timestamp_millis();
    let at = mongodb::bson::DateTime::from_millis;
    doc! {
        "_id": partition,
        "owner": owner,
        "epoch": epoch,
        "beat": 17_i64,
        "renewed_at": at(now - 1_000),
        "expires_at": at(now + 9_000),
        "checkpoint": mongodb::bson::Bson::Null,
        "checkpoint_time": mongodb::bson::Bson::Null,
        "checkpoint_at": at(now - 2_000),
        "nudge": 0_i64,
    }
}

/// Writes a lease document in place of whatever that partition's document was.
pub async fn put_lease(db: &Database, lease: Document) {
    let id = lease.get("_id").cloned().unwrap();
    db.collection::<Document>("herald_partitions")
        .replace_one(doc! {"_id": id}, lease)
        .upsert(true)
        .await
        .unwrap();
}

/// The status and body of a complete HTTP/1.1 response with a `content-length`, if `raw`
/// holds one.
pub fn complete_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (body.len() >= length).then(|| (status, body[..length].to_owned()))
}
