//! engine: events from an in-memory feed through the real actor tree, signing and HTTPS
//! to one endpoint, against a bare hyper client.

use std::time::Duration;

use herald_actors::Event;

use super::shared::{payload, rounds_against_bare, run_engine};
use super::Ctx;
use crate::harness::*;

pub async fn engine(ctx: &Ctx) -> Vec<Outcome> {
    let n = ctx.n(50_000, 100_000);
    let url = ctx.receiver.url("/ok/engine");
    let body = Event::from_payload(&payload(0, "bench.engine")).body;
    let client = bare_client(&ctx.receiver.ca);
    bare_rate(&client, std::slice::from_ref(&url), body.clone(), 2_000, 64).await; // warm-up
    let (rounds, bare_cpu) = rounds_against_bare(&client, &url, &body, n, |round| {
        let label = format!("engine, round {round}/{ROUNDS}");
        let urls = [url.clone()];
        async move { run_engine(ctx, n, &urls, n as u64, Duration::from_secs(10), &label).await }
    })
    .await;
    let (median, ratios) = median_round(&rounds);
    vec![
        Outcome::new("engine", "deliveries/s, 1 endpoint", median.value)
            .against(median.ceiling, 0.70)
            .cpu(median.cpu_seconds, n as u64)
            .note(format!(
                "{n} events; median of {ROUNDS} rounds ({ratios}); ceiling: bare hyper client, \
                 64 in flight, CPU s per 1,000: {bare_cpu}"
            )),
    ]
}
