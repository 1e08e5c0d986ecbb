//! Running herald for a test: in-process (`herald::serve::run`) for most stories, as a child
//! process for crash stories.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use herald::config::Config;
use tokio_util::sync::CancellationToken;

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Settings every test uses: fast retries, the receiver's CA trusted, loopback allowed.
pub fn test_config(mongodb_uri: &str, database: &str, ca_file: &Path) -> Config {
    Config {
        mongodb_uri: mongodb_uri.to_owned(),
        database: database.to_owned(),
        listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
        ca_file: Some(ca_file.to_owned()),
        allow_private_networks: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        retry_initial_ms: 20,
        retry_max_ms: 200,
        retry_max_attempts: 5,
        attempt_timeout_ms: 2_000,
        shutdown_grace_ms: 2_000,
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
    pub listen: SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl InProcess {
    /// Starts herald and waits until `/readyz` answers 200.
    pub async fn start(config: Config) -> Self {
        let listen = config.listen;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(herald::serve::run(config, shutdown.clone()));
        let daemon = Self {
            listen,
            shutdown,
            task: Some(task),
        };
        daemon.wait_ready().await;
        daemon
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
    pub async fn stop(mut self) -> Result<(), String> {
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

/// herald as a child process (for `kill -9`).
pub struct ChildDaemon {
    pub child: Child,
    pub listen: SocketAddr,
}

impl ChildDaemon {
    pub fn spawn(config: &Config, log: &Path) -> Self {
        Self::spawn_command(Self::command(config), config, log)
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
            .env("HERALD_LOG", "info");
        command
    }

    /// Starts `command`, its stderr appended to `log`.
    pub fn spawn_command(mut command: Command, config: &Config, log: &Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn herald");
        Self {
            child,
            listen: config.listen,
        }
    }

    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.listen);
        crate::support::eventually(Duration::from_secs(30), "herald child ready", || {
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

    /// SIGTERM, then the exit code.
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

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}
