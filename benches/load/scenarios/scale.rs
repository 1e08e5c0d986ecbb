//! scale: time to ready and idle memory with many webhooks.

use std::time::Duration;

use mongodb::bson::Document;

use super::daemon::Daemon;
use super::shared::{webhook_doc, webhook_id};
use super::Ctx;
use crate::harness::*;

pub async fn scale(ctx: &Ctx) -> Vec<Outcome> {
    let webhooks = ctx.n(20_000, 100_000);
    let db = Database::start().await;
    let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
    let database = client.database("bench_scale");
    let url = ctx.receiver.url("/ok/scale");
    for start in (0..webhooks).step_by(1_000) {
        let docs: Vec<Document> = (start..(start + 1_000).min(webhooks))
            .map(|i| webhook_doc(&webhook_id(i), &url, "bench.scale"))
            .collect();
        database
            .collection::<Document>("webhooks")
            .insert_many(docs)
            .await
            .unwrap();
    }
    let before = rss_mib();
    let (daemon, ready) = Daemon::start(ctx, &db.uri, "bench_scale").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_mib();
    daemon.stop();
    let per_actor_kib = (after - before) * 1024.0 / webhooks as f64;
    vec![
        Outcome::new(
            "scale",
            &format!("seconds until ready, {webhooks} webhooks"),
            ready.as_secs_f64(),
        )
        .goal("≤ 5 s", ready <= Duration::from_secs(5)),
        Outcome::new("scale", "idle RSS MiB (herald's share)", after - before)
            .goal("≤ 512 MiB", after - before <= 512.0)
            .note(format!("{per_actor_kib:.1} KiB per endpoint actor")),
    ]
}
