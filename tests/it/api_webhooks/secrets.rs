//! Secret rotation and signing: after a rotation both secrets sign for a day, and a
//! previous secret signs until it expires and never after.

use std::time::{Duration, Instant};

use herald_actors::signing::SigningKey;
use mongodb::bson::doc;
use serde_json::json;

use super::{create, path, publish_until_received, setup, stored};
use crate::api_client::assert_error;
use crate::fixtures::*;
use crate::support::{Receiver, RecordedRequest};

/// Checks every signature of `request` and returns which of `keys` verified each.
fn signature_owners(request: &RecordedRequest, keys: &[&SigningKey]) -> Vec<Vec<usize>> {
    let id = header(request, "webhook-id").unwrap();
    let ts: i64 = header(request, "webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    header(request, "webhook-signature")
        .unwrap()
        .split(' ')
        .map(|signature| {
            keys.iter()
                .enumerate()
                .filter(|(_, key)| key.verify(id, ts, &request.body, signature))
                .map(|(i, _)| i)
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn rotating_the_secret_signs_with_both_secrets_for_a_day() {
    let s = setup("api_wh_rotate", |_| {}).await;
    let receiver = Receiver::start().await;
    let created = create(
        &s.api,
        json!({"url": receiver.url, "event_types": ["object.created"]}),
    )
    .await;
    let old_secret = created["secret"].as_str().unwrap().to_owned();
    let old = SigningKey::parse(&old_secret).unwrap();
    let before = publish_until_received(&s.db, &receiver, "object.created").await;
    assert_eq!(signature_owners(&before, &[&old]), [vec![0]]);

    let rotate = format!("{}/rotate-secret", path(&created));
    let rotated = s.api.raw("POST", &rotate, "", &[]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body["webhook_id"], created["webhook_id"]);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    let new = SigningKey::parse(&new_secret).unwrap();

    // The old secret is kept, expiring in 24 hours.
    let document = stored(&s.db, created["webhook_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(document.get_str("secret").unwrap(), new_secret);
    let previous = document.get_array("previous_secrets").unwrap();
    assert_eq!(previous.len(), 1);
    let entry = previous[0].as_document().unwrap();
    assert_eq!(entry.get_str("secret").unwrap(), old_secret);
    let ttl = entry
        .get_datetime("expires_at")
        .unwrap()
        .to_system_time()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        ttl > Duration::from_secs(23 * 3600) && ttl <= Duration::from_secs(24 * 3600),
        "{ttl:?}"
    );

    // Deliveries now carry two signatures: one by the old secret, one by the new.
    let until = Instant::now() + Duration::from_secs(30);
    let during = loop {
        let request = publish_until_received(&s.db, &receiver, "object.created").await;
        if header(&request, "webhook-signature").unwrap().contains(' ') {
            break request;
        }
        assert!(Instant::now() < until, "never signed with both secrets");
    };
    let mut owners = signature_owners(&during, &[&old, &new]);
    owners.sort();
    assert_eq!(owners, [vec![0], vec![1]]);

    // The secret is not shown elsewhere.
    let read = s.api.get(&path(&created)).await;
    assert!(!read.body.to_string().contains(&new_secret));

    // Rotating again to a given secret keeps both earlier ones for their day.
    let given = s.api.post(&rotate, json!({"secret": SECRET})).await;
    assert_eq!(given.status, 200, "{}", given.body);
    assert_eq!(given.body["secret"], SECRET);
    let document = stored(&s.db, created["webhook_id"].as_str().unwrap())
        .await
        .unwrap();
    let kept: Vec<&str> = document
        .get_array("previous_secrets")
        .unwrap()
        .iter()
        .map(|b| b.as_document().unwrap().get_str("secret").unwrap())
        .collect();
    assert_eq!(kept, [old_secret.as_str(), new_secret.as_str()]);

    // Mistakes are refused, nothing changed.
    let message = assert_error(
        &s.api.post(&rotate, json!({"secret": "hunter2"})).await,
        422,
    );
    assert!(message.starts_with("secret"), "{message}");
    assert_error(&s.api.post(&rotate, json!({"secrett": SECRET})).await, 422);
    assert_error(
        &s.api
            .raw(
                "POST",
                "/v1/webhooks/wh_ffffffffffffffff/rotate-secret",
                "",
                &[],
            )
            .await,
        404,
    );
    assert_eq!(
        stored(&s.db, created["webhook_id"].as_str().unwrap())
            .await
            .unwrap()
            .get_str("secret")
            .unwrap(),
        SECRET
    );
    s.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_previous_secret_signs_until_it_expires_and_never_after() {
    let s = setup("api_wh_expired", |_| {}).await;
    let receiver = Receiver::start().await;
    let current = SigningKey::parse(SECRET).unwrap();
    let expired_secret = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let expiring_secret = "whsec_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    let expired = SigningKey::parse(expired_secret).unwrap();
    let expiring = SigningKey::parse(expiring_secret).unwrap();
    let now = std::time::SystemTime::now();
    // Expiring a few seconds from now: long enough for a first delivery to carry it on a
    // loaded machine, short enough to watch it stop.
    let expires_at = now + Duration::from_secs(5);
    let mut document = webhook("wh_00000000000e0001", &receiver.url, &["object.created"]);
    document.insert(
        "previous_secrets",
        vec![
            doc! {"secret": expired_secret,
            "expires_at": mongodb::bson::DateTime::from_system_time(now - Duration::from_secs(60))},
            doc! {"secret": expiring_secret,
            "expires_at": mongodb::bson::DateTime::from_system_time(expires_at)},
        ],
    );
    insert_webhook(&s.db, document).await;
    let keys = [&current, &expired, &expiring];

    // While one previous secret is live: the current one and that one sign, never the
    // expired one.
    let first = publish_until_received(&s.db, &receiver, "object.created").await;
    let timestamp: u64 = header(&first, "webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let expiry = expires_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if timestamp < expiry {
        let mut owners = signature_owners(&first, &keys);
        owners.sort();
        assert_eq!(owners, [vec![0], vec![2]], "signed at {timestamp}");
    }

    // Once it has expired, with no change to the webhook: the current secret alone.
    let until = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let request = publish_until_received(&s.db, &receiver, "object.created").await;
        let at: u64 = header(&request, "webhook-timestamp")
            .unwrap()
            .parse()
            .unwrap();
        if at > expiry {
            break request;
        }
        assert!(Instant::now() < until, "no delivery after the expiry");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        signature_owners(&after, &keys),
        [vec![0]],
        "an expired previous secret still signs: {:?}",
        header(&after, "webhook-signature")
    );
    s.daemon.stop().await.unwrap();
}
