//! A change answered by the API is in effect for the very next event: create, patch,
//! pause, resume and delete need no wait for the webhook watcher.

use serde_json::json;

use super::{create, missed_by, path, publish_until_received, reaches, setup};
use crate::support::Receiver;

#[tokio::test]
async fn an_event_published_right_after_the_answer_meets_the_webhook_as_written() {
    let s = setup("api_wh_ryw", |_| {}).await;
    let target = Receiver::start().await;
    let control = Receiver::start().await;
    create(&s.api, json!({"url": control.url, "event_types": ["*"]})).await;
    publish_until_received(&s.db, &control, "batch.completed").await;

    // No waiting between an answer and the next event: the daemon that answered applies
    // the change itself, not only when its webhook watcher next looks.
    let created = create(
        &s.api,
        json!({"url": target.url, "event_types": ["object.created"]}),
    )
    .await;
    assert!(
        reaches(&s.db, &target, "object.created").await,
        "the event right after the create did not reach the new webhook"
    );

    let patched = s
        .api
        .patch(&path(&created), json!({"event_types": ["batch.completed"]}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert!(
        missed_by(&s.db, &target, &control, "object.created").await,
        "the event right after the patch reached the webhook by its old event types"
    );

    let paused = s
        .api
        .post(&format!("{}/pause", path(&created)), json!({}))
        .await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert!(
        missed_by(&s.db, &target, &control, "batch.completed").await,
        "the event right after the pause was delivered"
    );
    let resumed = s
        .api
        .post(&format!("{}/resume", path(&created)), json!({}))
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);

    let deleted = s.api.delete(&path(&created)).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert!(
        missed_by(&s.db, &target, &control, "batch.completed").await,
        "the event right after the delete reached the deleted webhook"
    );
    s.daemon.stop().await.unwrap();
}
