//! herald run in this process, on its own runtime, as the scenarios that go through
//! MongoDB start it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald::config::Config;
use tokio_util::sync::CancellationToken;

use super::Ctx;

/// herald in this process (its own runtime), against `db`.
pub(super) struct Daemon {
    listen: SocketAddr,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    pub(super) async fn start(ctx: &Ctx, uri: &str, database: &str) -> (Self, Duration) {
        let listen: SocketAddr = format!(
            "127.0.0.1:{}",
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        )
        .parse()
        .unwrap();
        let mut config = Config {
            mongodb_uri: uri.to_owned(),
            database: database.to_owned(),
            listen,
            ca_file: Some(ctx.receiver.ca.clone()),
            allow_private_networks: vec!["127.0.0.0/8".parse().unwrap()],
            ..Config::default()
        };
        // The group commit's settings, as `herald serve` reads them, to compare choices.
        if let Some(ms) = env_number("HERALD_PUBLISH_WINDOW_MS") {
            config.publish_window_ms = ms;
        }
        if let Some(n) = env_number("HERALD_PUBLISH_WRITES_IN_FLIGHT") {
            config.publish_writes_in_flight = n as usize;
        }
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let started = Instant::now();
        // herald gets its own runtime, as in production; the bench's clients use another.
        let thread = std::thread::spawn(move || {
            // Named, so that a profile tells herald's threads from the bench's.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("herald")
                .build()
                .unwrap();
            if let Err(e) = runtime.block_on(herald::serve::run(config, token)) {
                eprintln!("herald: {e}");
            }
        });
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<Bytes>>();
        loop {
            let ready = client
                .get(format!("http://{listen}/readyz").parse().unwrap())
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "herald never became ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (
            Self {
                listen,
                shutdown,
                thread: Some(thread),
            },
            started.elapsed(),
        )
    }

    /// Where its API listens.
    pub(super) fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// A value from herald's `/metrics` (0 when absent).
    pub(super) async fn metric(&self, name: &str) -> f64 {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<Bytes>>();
        let Ok(response) = client
            .get(format!("http://{}/metrics", self.listen).parse().unwrap())
            .await
        else {
            return 0.0;
        };
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    pub(super) fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A number from the environment, if set and one.
fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}
