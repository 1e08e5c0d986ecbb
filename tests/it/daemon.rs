//! Running herald for a test: in-process (`herald::serve::run`) for most stories, as a child
//! process for crash stories.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use herald::config::Config;
use herald::serve::ServeError;
use tokio_util::sync::CancellationToken;

/// A loopback port nothing listens on (bound, then released): for "unreachable" URLs and
/// servers that cannot report a port of their own choosing, never for herald, which binds
/// port 0 and reports its address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Settings every test uses: fast retries, the receiver's CA trusted, loopback allowed, and
/// a listener on a port the system chooses (herald reports it).
pub fn test_config(mongodb_uri: &str, database: &str, ca_file: &Path) -> Config {
    Config {
        mongodb_uri: mongodb_uri.to_owned(),
        database: database.to_owned(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ca_file: Some(ca_file.to_owned()),
        allow_private_networks: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        retry_initial_ms: 20,
        retry_max_ms: 200,
        retry_max_attempts: 5,
        attempt_timeout_ms: 2_000,
        shutdown_grace_ms: 2_000,
        // A killed daemon's successor takes its partitions over within this.
        lease_ttl_ms: 2_000,
        ..Config::default()
    }
}

/// herald in-process with [`test_config`] changed by `tweak`, its API behind `key`, and a
/// client for that API.
pub async fn start_with_key(
    uri: &str,
    name: &str,
    key: &str,
    tweak: impl FnOnce(&mut Config),
) -> (InProcess, crate::api_client::Api) {
    let mut config = test_config(uri, name, crate::support::test_ca_pem_path());
    config.api_key = Some(key.to_owned());
    tweak(&mut config);
    let daemon = InProcess::start(config).await;
    let api = crate::api_client::Api::new(daemon.listen, Some(key));
    (daemon, api)
}

/// herald running inside the test process.
pub struct InProcess {
    /// The address its listener bound.
    pub listen: SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl InProcess {
    /// Starts herald and waits until `/readyz` answers 200.
    pub async fn start(config: Config) -> Self {
        let daemon = Self::try_start(config)
            .await
            .unwrap_or_else(|e| panic!("herald did not start: {e}"));
        daemon.wait_ready().await;
        daemon
    }

    /// Starts herald and waits until its listener accepts (not until it is ready), or
    /// returns why it could not start.
    pub async fn try_start(config: Config) -> Result<Self, ServeError> {
        let shutdown = CancellationToken::new();
        let (listening_tx, listening) = tokio::sync::oneshot::channel();
        let mut task = tokio::spawn(herald::serve::run_reporting(
            config,
            shutdown.clone(),
            listening_tx,
        ));
        let listen = tokio::select! {
            addr = listening => match addr {
                Ok(addr) => addr,
                // Dropped unsent: start-up failed, and the task says why.
                Err(_) => return Err((&mut task).await.unwrap().expect_err("stopped without error")),
            },
            ended = &mut task => return Err(ended.unwrap().expect_err("stopped without error")),
        };
        Ok(Self {
            listen,
            shutdown,
            task: Some(task),
        })
    }

    async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.listen);
        crate::support::eventually(Duration::from_secs(30), "herald ready", || {
            let url = url.clone();
            async move { http_get_status(&url).await == Some(200) }
        })
        .await;
    }

    /// SIGTERM's equivalent: drain and stop; returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The status of a plain-HTTP GET, or `None` when nothing answers.
pub async fn http_get_status(url: &str) -> Option<u16> {
    let uri: hyper::Uri = url.parse().ok()?;
    let addr = format!("{}:{}", uri.host()?, uri.port_u16()?);
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(connection);
    let request = hyper::Request::get(uri.path())
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    Some(response.status().as_u16())
}

/// herald as a child process (for `kill -9` and SIGTERM). Its address is read from its
/// `listening` log line, so it can bind port 0 like the in-process daemon.
pub struct ChildDaemon {
    pub child: Child,
    /// The file its stderr is appended to (a restarted daemon may share it).
    log: PathBuf,
    /// Where this child's lines begin in `log`.
    log_from: u64,
    /// The address it bound, once read from the log.
    listen: OnceLock<SocketAddr>,
}

impl ChildDaemon {
    pub fn spawn(config: &Config, log: &Path) -> Self {
        Self::spawn_command(Self::command(config), log)
    }

    /// `herald serve` with `config`'s settings, info-level logs; add flags or environment
    /// before [`ChildDaemon::spawn_command`].
    pub fn command(config: &Config) -> Command {
        let allow: Vec<String> = config
            .allow_private_networks
            .iter()
            .map(|n| n.to_string())
            .collect();
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        command
            .arg("serve")
            .args(["--mongodb-uri", &config.mongodb_uri])
            .args(["--database", &config.database])
            .args(["--listen", &config.listen.to_string()])
            .args([
                "--ca-file",
                config.ca_file.as_ref().unwrap().to_str().unwrap(),
            ])
            .args(["--allow-private-networks", &allow.join(",")])
            .args(["--retry-initial-ms", &config.retry_initial_ms.to_string()])
            .args(["--retry-max-ms", &config.retry_max_ms.to_string()])
            .args([
                "--retry-max-attempts",
                &config.retry_max_attempts.to_string(),
            ])
            .args([
                "--attempt-timeout-ms",
                &config.attempt_timeout_ms.to_string(),
            ])
            .args(["--lease-ttl", &format!("{}ms", config.lease_ttl_ms)])
            // `HERALD_TEST_CHILD_LOG=info,herald_actors::router=debug` to look closer.
            .env(
                "HERALD_LOG",
                std::env::var("HERALD_TEST_CHILD_LOG")
                    .ok()
                    .filter(|l| !l.is_empty())
                    .unwrap_or_else(|| "info".into()),
            );
        command
    }

    /// Starts `command`, its stderr appended to `log`.
    pub fn spawn_command(mut command: Command, log: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let log_from = file.metadata().unwrap().len();
        let child = command
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn herald");
        Self {
            child,
            log: log.to_owned(),
            log_from,
            listen: OnceLock::new(),
        }
    }

    /// This child's part of its log.
    pub fn log_text(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let from = (self.log_from as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    /// The address herald bound. Panics before [`ChildDaemon::wait_listening`] (or
    /// [`ChildDaemon::wait_ready`]) has seen it.
    pub fn listen(&self) -> SocketAddr {
        *self
            .listen
            .get()
            .expect("the child's address is known once it has logged `listening`")
    }

    /// Waits until herald logs `listening` (it binds after connecting to MongoDB and
    /// building its indexes, which can take long over a large backlog) and returns the
    /// address; panics if it exits first or `within` passes.
    pub async fn wait_listening(&self, within: Duration) -> SocketAddr {
        if let Some(addr) = self.listen.get() {
            return *addr;
        }
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(addr) = listening_addr(&self.log_text()) {
                return *self.listen.get_or_init(|| addr);
            }
            // Exited and not yet reaped: a zombie (`Z` in its stat), or gone.
            let exited = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).map_or(
                true,
                |stat| {
                    stat.rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
                },
            );
            assert!(
                !exited && tokio::time::Instant::now() < until,
                "herald never logged `listening` (exited: {exited})\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the child listens and `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        self.wait_ready_within(Duration::from_secs(30)).await;
    }

    /// [`ChildDaemon::wait_ready`] with a deadline for each of the two waits.
    pub async fn wait_ready_within(&self, within: Duration) {
        let url = format!("http://{}/readyz", self.wait_listening(within).await);
        crate::support::eventually(within, "herald child ready", || {
            let url = url.clone();
            async move { http_get_status(&url).await == Some(200) }
        })
        .await;
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (a name `kill` knows: `STOP`, `CONT`, ...) and returns at once.
    /// SIGSTOP freezes herald as a long GC pause or a suspended VM would: its timers, its
    /// connections and its leases stand still until SIGCONT.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }

    /// SIGTERM, then the exit code, waiting without blocking the test's runtime: receivers
    /// of this test (on the same runtime) keep answering while herald drains.
    pub async fn sigterm(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if tokio::time::Instant::now() > deadline {
                self.kill();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then the exit code. Blocks the calling thread: use
    /// [`ChildDaemon::sigterm`] when herald must reach the test's receivers while it drains.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The address of the last `listening` line of a herald log, text or JSON.
pub fn listening_addr(log: &str) -> Option<SocketAddr> {
    crate::support::without_colours(log)
        .lines()
        .rev()
        .filter(|line| line.contains("listening"))
        .find_map(|line| {
            let value = if let Some((_, rest)) = line.split_once("addr=") {
                rest.split_whitespace().next()?
            } else {
                let (_, rest) = line.split_once("\"addr\":\"")?;
                rest.split('"').next()?
            };
            value.parse::<SocketAddr>().ok()
        })
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}
