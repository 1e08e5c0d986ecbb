//! Values an operator wrote into MongoDB in plaintext keep working with a key; a value
//! sealed under another key disables only its own webhook.

use std::time::Duration;

use herald::secrets::SecretBox;
use mongodb::bson::{doc, Document};

use super::{asset_deleted, insert_synced_object, keyed, mux_deliver, publish_until, raw, API_KEY};
use crate::api_client::Api;
use crate::daemon::InProcess;
use crate::fixtures::*;
use crate::support::Receiver;

#[tokio::test]
async fn plaintext_written_directly_into_mongodb_keeps_working_with_a_key_and_a_foreign_key_disables_only_its_webhook(
) {
    let receiver = Receiver::start().await;
    let foreign_receiver = Receiver::start().await;
    let (db, config) = keyed("secrets_plaintext", &receiver.ca_pem_path).await;
    // The contract's document, by hand, in plaintext (`SECRET`, `X-Mixpeek-Secret:
    // shared-secret`).
    insert_webhook(
        &db,
        webhook("wh_00000000000000a1", &receiver.url, &["object.created"]),
    )
    .await;
    // One sealed under some other key: herald cannot open it.
    let other = SecretBox::new(Some([0x42; 32]));
    let mut foreign = webhook(
        "wh_00000000000000a2",
        &foreign_receiver.url,
        &["object.created"],
    );
    foreign.insert("secret", other.seal(SECRET));
    insert_webhook(&db, foreign).await;
    // A connection by hand, with a plaintext secret.
    db.collection::<Document>("connections")
        .insert_one(doc! {"_id": "conn_00000000000000a1", "provider": "mux",
        "bucket_id": "bkt_1", "webhook_secret": "by-hand-mux-secret", "metadata_filters": []})
        .await
        .unwrap();
    insert_synced_object(&db, "obj_by_hand", "conn_00000000000000a1", "asset_h").await;

    let daemon = InProcess::start(config).await;
    let api = Api::new(daemon.listen, Some(API_KEY));
    let request = publish_until(&api, &receiver, |_| true).await;
    assert_eq!(header(&request, "x-mixpeek-secret"), Some("shared-secret"));
    assert_signed(&request);
    // The webhook herald cannot decrypt gets nothing; the daemon carries on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(foreign_receiver.count(), 0);
    let response = mux_deliver(
        &api,
        "conn_00000000000000a1",
        "by-hand-mux-secret",
        asset_deleted("asset_h"),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["objects_affected"], 1);

    // Neither document was rewritten by reading it.
    let stored = raw(&db, "webhooks", "wh_00000000000000a1").await;
    assert_eq!(stored.get_str("secret").unwrap(), SECRET);
    daemon.stop().await.unwrap();
}
