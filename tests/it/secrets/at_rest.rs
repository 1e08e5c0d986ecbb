//! With `--secret-key`, webhook secrets (current and rotated-out), header values and Mux
//! connection secrets are unreadable in MongoDB, yet receivers get the plaintext header
//! and signatures that verify with the plaintext secret, Mux's signatures still verify,
//! and no read answer shows a secret, sealed or not.

use herald::secrets::SecretBox;
use serde_json::json;

use super::{
    assert_no_secret, asset_deleted, create_webhook, distinctive, dump, insert_synced_object,
    keyed, mux_deliver, new_whsec, publish_until, raw, sealed_str, signed_with, API_KEY, KEY,
};
use crate::api_client::Api;
use crate::daemon::InProcess;
use crate::fixtures::*;
use crate::support::Receiver;

#[tokio::test]
async fn with_a_key_secrets_are_unreadable_in_mongodb_yet_receivers_and_mux_get_the_real_ones() {
    let receiver = Receiver::start().await;
    let (db, config) = keyed("secrets_at_rest", &receiver.ca_pem_path).await;
    let daemon = InProcess::start(config).await;
    let api = Api::new(daemon.listen, Some(API_KEY));
    let secrets = SecretBox::new(Some(KEY));

    // A webhook with a secret and a shared-secret header, created through the API.
    let secret = new_whsec();
    let shared = distinctive("mixpeek-shared");
    let created = create_webhook(
        &api,
        json!({"url": receiver.url, "event_types": ["object.created"], "secret": secret,
               "headers": {"X-Mixpeek-Secret": shared, "X-Tenant": "t1"}}),
    )
    .await;
    // Create answers with the secret, once, in plaintext.
    assert_eq!(created["secret"], secret.as_str());
    let id = created["webhook_id"].as_str().unwrap().to_owned();

    // In MongoDB: neither plaintext, anywhere in the document; each value opens with the key.
    let stored = raw(&db, "webhooks", &id).await;
    assert_no_secret("the webhook document", &dump(&stored), &[&secret, &shared]);
    assert_eq!(
        secrets.open(sealed_str(&stored, &["secret"])).unwrap(),
        secret
    );
    assert_eq!(
        secrets
            .open(sealed_str(&stored, &["headers", "X-Mixpeek-Secret"]))
            .unwrap(),
        shared
    );
    assert_eq!(
        secrets
            .open(sealed_str(&stored, &["headers", "X-Tenant"]))
            .unwrap(),
        "t1"
    );

    // The receiver gets the plaintext header and a signature made with the plaintext secret.
    let request = publish_until(&api, &receiver, |_| true).await;
    assert_eq!(header(&request, "x-mixpeek-secret"), Some(shared.as_str()));
    assert_eq!(header(&request, "x-tenant"), Some("t1"));
    assert!(signed_with(&request, &secret), "signature does not verify");

    // A PATCH of the headers is stored encrypted too, and delivered in plaintext.
    let patched_shared = distinctive("mixpeek-patched");
    let patched = api
        .patch(
            &format!("/v1/webhooks/{id}"),
            json!({"headers": {"X-Mixpeek-Secret": patched_shared}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_no_secret(
        "the PATCH answer",
        &patched.body.to_string(),
        &[&patched_shared],
    );
    let stored = raw(&db, "webhooks", &id).await;
    assert_no_secret("the patched document", &dump(&stored), &[&patched_shared]);
    sealed_str(&stored, &["headers", "X-Mixpeek-Secret"]);
    let request = publish_until(&api, &receiver, |r| {
        header(r, "x-mixpeek-secret") == Some(patched_shared.as_str())
    })
    .await;
    assert!(signed_with(&request, &secret));

    // Rotation: the new secret and the rotated-out one are both stored encrypted, and
    // deliveries carry a signature for each.
    let rotated = new_whsec();
    let answer = api
        .post(
            &format!("/v1/webhooks/{id}/rotate-secret"),
            json!({"secret": rotated}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["secret"], rotated.as_str());
    let stored = raw(&db, "webhooks", &id).await;
    assert_no_secret("the rotated document", &dump(&stored), &[&secret, &rotated]);
    let previous = stored.get_array("previous_secrets").unwrap();
    assert_eq!(previous.len(), 1);
    let previous = previous[0].as_document().unwrap();
    assert_eq!(
        secrets.open(sealed_str(previous, &["secret"])).unwrap(),
        secret
    );
    let request = publish_until(&api, &receiver, |r| signed_with(r, &rotated)).await;
    assert!(
        signed_with(&request, &secret),
        "the old secret stopped signing"
    );

    // Reads never return the secret, sealed or not, nor header values.
    for path in [format!("/v1/webhooks/{id}"), "/v1/webhooks".to_owned()] {
        let read = api.get(&path).await;
        assert_eq!(read.status, 200, "{}", read.body);
        let text = read.body.to_string();
        assert_no_secret(&path, &text, &[&secret, &rotated, &patched_shared]);
        assert!(
            !text.contains("enc:v1:"),
            "{path} shows a stored value: {text}"
        );
    }

    // A Mux connection: its secret is stored encrypted, and Mux's signature still verifies.
    let mux_secret = distinctive("mux-signing");
    let response = api
        .post(
            "/v1/connections",
            json!({"provider": "mux", "bucket_id": "bkt_1", "webhook_secret": mux_secret}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let connection_id = response.body["connection_id"].as_str().unwrap().to_owned();
    let stored = raw(&db, "connections", &connection_id).await;
    assert_no_secret("the connection document", &dump(&stored), &[&mux_secret]);
    let sealed = sealed_str(&stored, &["webhook_secret"]).to_owned();
    assert_eq!(secrets.open(&sealed).unwrap(), mux_secret);

    insert_synced_object(&db, "obj_mux_1", &connection_id, "asset_1").await;
    // Signed with what MongoDB holds: refused, and nothing changes.
    let forged = mux_deliver(&api, &connection_id, &sealed, asset_deleted("asset_1")).await;
    assert_eq!(forged.status, 401, "{}", forged.body);
    let genuine = mux_deliver(&api, &connection_id, &mux_secret, asset_deleted("asset_1")).await;
    assert_eq!(genuine.status, 200, "{}", genuine.body);
    assert_eq!(genuine.body["objects_affected"], 1, "{}", genuine.body);
    for path in [
        format!("/v1/connections/{connection_id}"),
        "/v1/connections".to_owned(),
    ] {
        let read = api.get(&path).await;
        assert_eq!(read.status, 200);
        assert_no_secret(&path, &read.body.to_string(), &[&mux_secret]);
        assert!(!read.body.to_string().contains("enc:v1:"));
    }
    daemon.stop().await.unwrap();
}
