//! The side-by-side bench's publishing client (`benches/sidebyside/run.py`): POSTs `n` JSON
//! events to one HTTP API on 127.0.0.1 over `concurrency` keep-alive HTTP/1.1 connections,
//! either as fast as the answers come (`burst`) or paced at `rate` per second (`paced`),
//! and prints one line per request: `<i> <sent, unix s> <answered, unix s> <status> <id>`,
//! where the id is the event's `event_id` (herald) or the answer's `id` (Svix's message).
//!
//! ```text
//! cargo run --release --example publisher -- burst 8080 /v1/events 3000 16 0 herald run1 [KEY]
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// The next request as soon as a connection's answer comes.
    Burst,
    /// Request `i` at `i / rate` seconds after the start.
    Paced,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Kind {
    /// herald's `POST /v1/events` body.
    Herald,
    /// Svix's `POST /api/v1/app/{app}/msg/` body.
    Svix,
}

#[derive(Parser)]
struct Args {
    mode: Mode,
    port: u16,
    path: String,
    n: usize,
    concurrency: usize,
    /// Events per second (`paced` only).
    rate: f64,
    kind: Kind,
    /// Goes into every event id, so that runs do not collide.
    tag: String,
    /// Sent as `Authorization: Bearer <key>`.
    key: Option<String>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Event `i`'s id and body.
fn event(kind: Kind, tag: &str, i: usize) -> (String, Bytes) {
    let data = serde_json::json!({"bucket_id": "bkt_bench", "object_id": format!("obj_{i}"),
        "metadata": {"i": i, "source": "sidebyside"}});
    let id = format!("evt_{tag}_{i}");
    let body = match kind {
        Kind::Herald => {
            serde_json::json!({"event_id": id, "event_type": "object.created", "data": data})
        }
        Kind::Svix => serde_json::json!({"eventType": "object.created", "payload": data}),
    };
    (id, Bytes::from(body.to_string()))
}

/// One connection's requests, taking the next index until all `n` are taken.
async fn publish(
    args: Arc<Args>,
    events: Arc<Vec<(String, Bytes)>>,
    next: Arc<AtomicUsize>,
    start: Instant,
) -> anyhow::Result<Vec<String>> {
    let stream = TcpStream::connect(("127.0.0.1", args.port)).await?;
    stream.set_nodelay(true)?;
    let (mut send, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut lines = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some((id, body)) = events.get(i) else {
            break;
        };
        if let Mode::Paced = args.mode {
            tokio::time::sleep_until(
                (start + Duration::from_secs_f64(i as f64 / args.rate)).into(),
            )
            .await;
        }
        let mut request = Request::post(&args.path)
            .header("host", format!("127.0.0.1:{}", args.port))
            .header("content-type", "application/json");
        if let Some(key) = &args.key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = request.body(Full::new(body.clone()))?;
        send.ready().await?;
        let sent = unix_now();
        let (status, answer) = match send.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let answer = response
                    .into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                (status, answer)
            }
            Err(e) => {
                eprintln!("request {i}: {e}");
                (0, Bytes::new())
            }
        };
        let answered = unix_now();
        let id = match args.kind {
            Kind::Herald => id.clone(),
            Kind::Svix => serde_json::from_slice::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v.get("id").and_then(|x| x.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "-".into()),
        };
        lines.push(format!("{i} {sent:.6} {answered:.6} {status} {id}\n"));
        if status == 0 {
            break;
        }
    }
    Ok(lines)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    // Bodies are made before the clock starts.
    let events: Arc<Vec<(String, Bytes)>> = Arc::new(
        (0..args.n)
            .map(|i| event(args.kind, &args.tag, i))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now() + Duration::from_millis(100);
    let tasks: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| tokio::spawn(publish(args.clone(), events.clone(), next.clone(), start)))
        .collect();
    let mut out = String::new();
    for task in tasks {
        out.extend(task.await??);
    }
    print!("{out}");
    Ok(())
}
