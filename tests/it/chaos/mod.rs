//! Receiver chaos and SSRF spellings: what herald does when the other end misbehaves, or
//! when a webhook URL points somewhere it must never go.
//!
//! Each chaos story runs herald in-process with one healthy receiver next to the
//! misbehaving ones, and checks three things: the attempt-log entry (status code or error
//! text), the retry decision (pending with a `next_attempt_at`, or `failed` once attempts
//! run out), and that the healthy endpoint was unaffected meanwhile: every one of its
//! deliveries succeeded at its first attempt and, where the neighbour is slow, before the
//! neighbour's first attempt ended (times from herald's own ledger, never a fixed bound).

use std::time::{Duration, Instant};

use herald::config::Config;
use mongodb::bson::Document;
use mongodb::Database;

use crate::daemon::{test_config, InProcess};
use crate::fixtures::*;
use crate::support::chaos_receiver::chaos_ca_bundle;
use crate::support::Receiver;

mod connections;
mod huge_body;
mod redirects;
mod resets;
mod slowloris;
mod ssrf;
mod tls;

const HEALTHY: &str = "wh_00000000000ca000";

/// herald with a healthy receiver and the misbehaving endpoints of one story.
struct Scene {
    db: Database,
    daemon: InProcess,
    healthy: Receiver,
}

/// Starts herald with the healthy webhook plus one webhook per `(id, url)` in `chaos`,
/// every one subscribed to all event types, trusting both test CAs.
async fn scene(prefix: &str, chaos: &[(&str, &str)], tune: impl FnOnce(&mut Config)) -> Scene {
    let (uri, name, db) = database(prefix).await;
    let healthy = Receiver::start().await;
    insert_webhook(&db, webhook(HEALTHY, &healthy.url, &["*"])).await;
    for (id, url) in chaos {
        insert_webhook(&db, webhook(id, url, &["*"])).await;
    }
    let mut config = test_config(&uri, &name, chaos_ca_bundle(&healthy.ca_pem_path));
    tune(&mut config);
    let daemon = InProcess::start(config).await;
    Scene {
        db,
        daemon,
        healthy,
    }
}

impl Scene {
    /// Inserts events `evt_<prefix>_0..n` in one batch.
    async fn publish(&self, prefix: &str, n: usize) {
        let events: Vec<Document> = (0..n)
            .map(|i| event(&format!("evt_{prefix}_{i}"), "batch.completed"))
            .collect();
        self.db
            .collection::<Document>("events")
            .insert_many(events)
            .await
            .unwrap();
    }

    /// The healthy endpoint got `n` deliveries in all, each at its first attempt: the chaos
    /// next door cost it no failure and no retry.
    async fn healthy_unaffected(&self, n: usize) {
        self.healthy.wait_for(n, Duration::from_secs(30)).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let done = deliveries(
                &self.db,
                mongodb::bson::doc! {"webhook_id": HEALTHY, "status": "succeeded"},
            )
            .await;
            if done.len() >= n {
                for d in &done {
                    assert_eq!(d.get_i64("attempts").unwrap(), 1, "{d}");
                }
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} healthy deliveries recorded succeeded",
                done.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    /// Waits until delivery `id` satisfies `done`, and returns it.
    async fn delivery_when(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&Document) -> bool,
    ) -> Document {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let found = delivery(&self.db, id).await;
            if let Some(d) = found.as_ref().filter(|d| done(d)) {
                return d.clone();
            }
            assert!(
                Instant::now() < deadline,
                "delivery {id} never became {what}; last seen: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The attempt log of a delivery document.
fn attempt_log(d: &Document) -> Vec<Document> {
    d.get_array("attempt_log")
        .unwrap()
        .iter()
        .map(|a| a.as_document().unwrap().clone())
        .collect()
}

/// Every attempt-log entry carries an error (no status code) containing each of `needles`
/// (case-insensitively).
fn assert_every_attempt_errored(d: &Document, needles: &[&str]) {
    let log = attempt_log(d);
    assert!(!log.is_empty(), "no attempts logged: {d}");
    for entry in &log {
        assert!(entry.get("status_code").is_none(), "{entry}");
        let error = entry.get_str("error").unwrap_or_default().to_lowercase();
        for needle in needles {
            assert!(
                error.contains(&needle.to_lowercase()),
                "attempt error {error:?} should mention {needle:?}"
            );
        }
    }
}

fn delivery_id(event: &str, webhook: &str) -> String {
    format!("{event}:{webhook}")
}
