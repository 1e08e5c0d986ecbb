//! transport: herald's HTTPS transport alone (signed requests, 64 in flight, no actors),
//! against the bare hyper client, so that the `engine` gap splits into what the transport
//! costs and what the actors around it cost.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald_actors::signing::{Signer, SigningKey};
use herald_actors::{Event, OutboundRequest, Transport};

use super::shared::{payload, rounds_against_bare, transport, SECRET};
use super::Ctx;
use crate::harness::*;

/// `n` signed POSTs of `body` to `url` through `transport`, `concurrency` in flight, each
/// signed as an attempt is (its own id, the second it starts): requests/s.
async fn transport_rate(
    transport: Arc<dyn Transport>,
    url: &str,
    body: Bytes,
    n: usize,
    concurrency: usize,
) -> f64 {
    let signer = Arc::new(Signer::new(vec![SigningKey::parse(SECRET).unwrap()]));
    let headers: Arc<[(String, String)]> =
        Arc::new([("X-Mixpeek-Secret".to_owned(), "bench".to_owned())]);
    let url: Arc<str> = url.into();
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (transport, signer, headers, url, body, next) = (
            transport.clone(),
            signer.clone(),
            headers.clone(),
            url.clone(),
            body.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let msg_id: Arc<str> = format!("evt_bench_{i:08}").into();
                let timestamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64;
                let signature = signer.header_value(&msg_id, timestamp, &body, SystemTime::now());
                let result = transport
                    .send(OutboundRequest {
                        url: url.clone(),
                        msg_id,
                        timestamp,
                        signature,
                        headers: headers.clone(),
                        body: body.clone(),
                        trace: None,
                    })
                    .await;
                assert!(result.is_ok(), "transport attempt failed");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// The goal is `engine`'s (85 % of the bare client): a transport below it would leave the
/// engine no room to reach its own.
pub async fn transport_alone(ctx: &Ctx) -> Vec<Outcome> {
    let n = ctx.n(50_000, 100_000);
    let url = ctx.receiver.url("/ok/transport");
    let body = Event::from_payload(&payload(0, "bench.engine")).body;
    let client = bare_client(&ctx.receiver.ca);
    let herald: Arc<dyn Transport> = transport(ctx);
    bare_rate(&client, std::slice::from_ref(&url), body.clone(), 2_000, 64).await;
    transport_rate(herald.clone(), &url, body.clone(), 2_000, 64).await;
    let (rounds, bare_cpu) = rounds_against_bare(&client, &url, &body, n, |_| {
        let (herald, url, body) = (herald.clone(), url.clone(), body.clone());
        async move {
            let cpu = cpu_seconds();
            let rate = transport_rate(herald, &url, body, n, 64).await;
            (rate, cpu_seconds() - cpu)
        }
    })
    .await;
    let (median, ratios) = median_round(&rounds);
    vec![
        Outcome::new("transport", "requests/s, 1 endpoint", median.value)
            .against(median.ceiling, 0.85)
            .cpu(median.cpu_seconds, n as u64)
            .note(format!(
                "{n} signed requests through herald's transport, 64 in flight, no actors; \
                 median of {ROUNDS} rounds ({ratios}); bare client CPU s per 1,000: {bare_cpu}"
            )),
    ]
}
