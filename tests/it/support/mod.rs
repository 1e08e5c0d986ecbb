//! Helpers shared by the integration tests: a MongoDB-compatible server ([`mongo`]), an
//! HTTPS webhook receiver ([`receiver`]) and a polling assertion ([`eventually`]).
//!
//! Not every test uses every helper or re-export, hence the blanket allowances.
#![allow(dead_code, unused_imports)]

pub mod chaos_receiver;
pub mod mongo;
pub mod otlp_collector;
pub mod receiver;

use std::future::Future;
use std::time::Duration;

pub use mongo::{shared, unique_db, SharedMongo, TestMongo};
pub use receiver::{
    https_client, test_ca_pem_path, HttpsClient, Receiver, RecordedRequest, Response,
};

/// How often [`eventually`] polls.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `f` until it returns true; panics with `what` if `deadline` passes first.
///
/// ```ignore
/// eventually(Duration::from_secs(5), "the delivery is marked succeeded", || async {
///     deliveries.count_documents(doc! {"status": "succeeded"}).await.unwrap() == 1
/// })
/// .await;
/// ```
pub async fn eventually<F, Fut>(deadline: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if f().await {
            return;
        }
        if tokio::time::Instant::now() >= until {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A log without its ANSI colour codes (`field=value` is written as
/// `ESC[3mfield ESC[0m ESC[2m= ESC[0m value`).
pub fn without_colours(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `[`, parameters, and the final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}
