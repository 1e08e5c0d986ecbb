//! MongoDB for integration tests: SecantusDB child processes (see DEVSERVER.md).
//!
//! Two flavours:
//! - [`shared()`] — one server per test process, started by the first test that asks and
//!   reused by the rest. Tests isolate themselves with [`unique_db`]. Cheapest; use it
//!   unless a test needs to take the server down.
//! - [`TestMongo::spawn`] — a dedicated server on its own port and storage directory that
//!   a test can [`stop`](TestMongo::stop) and [`restart`](TestMongo::restart) (outages).
//!
//! `HERALD_TEST_MONGODB_URI` points both [`shared()`] and [`TestMongo::start`] at an
//! existing server instead (a real MongoDB replica set, say). The Python that runs
//! SecantusDB is `$HERALD_SECANTUS_PYTHON`, else `<repo>/.venv/bin/python`
//! (`scripts/dev-db install` creates it).
//!
//! "Per test process": `cargo test` runs every test in one process, so they share one
//! server; `cargo nextest` runs each test in a process of its own, so each starts one
//! (about a second). To share one across processes, `scripts/dev-db start 27018` and
//! export `HERALD_TEST_MONGODB_URI=mongodb://127.0.0.1:27018/?directConnection=true`.
//!
//! Children are started with `std::process`, not tokio's, because the shared one outlives
//! every test's runtime. Each child reads its stdin in a watchdog thread and shuts itself
//! down (and deletes its directory) on EOF, which happens when the test process exits for
//! any reason — statics are never dropped, so this is what stops the shared server.

use std::fs::File;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use mongodb::Client;

/// Use this server instead of spawning one.
pub const URI_ENV: &str = "HERALD_TEST_MONGODB_URI";
/// The Python interpreter that has `secantusdb` installed.
pub const PYTHON_ENV: &str = "HERALD_SECANTUS_PYTHON";

/// How long a starting server may take to answer `ping`.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the server is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// Attempts to find a free port before giving up (another process may grab ours).
const SPAWN_ATTEMPTS: usize = 3;

/// Runs `python -m secantus` with the remaining arguments, plus a watchdog thread reading
/// stdin. At EOF (the test process exited, however it died) it asks SecantusDB to shut down
/// cleanly with SIGTERM, and the `finally` removes the instance directory named by
/// `HERALD_TEST_CLEANUP_DIR`. A `stop` line does the same but keeps the directory, for a
/// restart.
///
/// The SIGTERM goes to the main thread (`pthread_kill`), where SecantusDB's handler runs,
/// and again every half second until that handler has begun: one signal sent with
/// `os.kill` was seen to be lost, leaving a shared server running after its test process
/// had gone (and a `stop` that falls back to SIGKILL after [`STOP_DEADLINE`] may lose the
/// writes acknowledged just before).
const WRAPPER_PY: &str = r#"
import os, runpy, shutil, signal, sys, threading, time

# Remove the instance directory on exit, unless asked to stop (for a restart).
_cleanup = os.environ.get("HERALD_TEST_CLEANUP_DIR")
_stopping = threading.Event()

# Note when SecantusDB's own SIGTERM handler begins, so that the watchdog stops signalling.
_install = signal.signal
def _noting(signum, handler):
    if signum == signal.SIGTERM and callable(handler):
        def noted(n, frame, handler=handler):
            _stopping.set()
            return handler(n, frame)
        return _install(signum, noted)
    return _install(signum, handler)
signal.signal = _noting

def _watchdog():
    global _cleanup
    try:
        for line in sys.stdin:
            if line.strip() == "stop":
                _cleanup = None
                break
    except Exception:
        pass
    main = threading.main_thread().ident
    while not _stopping.is_set():
        signal.pthread_kill(main, signal.SIGTERM)
        _stopping.wait(0.5)

threading.Thread(target=_watchdog, daemon=True).start()
sys.argv[0] = "secantus"
try:
    runpy.run_module("secantus", run_name="__main__", alter_sys=True)
finally:
    if _cleanup:
        shutil.rmtree(_cleanup, ignore_errors=True)
"#;

/// A database name no other test (in this or any concurrent test process) uses:
/// `<prefix>_<pid>_<n>_<nanos>`, sanitised and cut to MongoDB's 63-byte limit.
pub fn unique_db(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let suffix = format!("_{}_{n}_{nanos:x}", std::process::id());
    let mut name: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(63 - suffix.len())
        .collect();
    if name.is_empty() {
        name.push('t');
    }
    name.push_str(&suffix);
    name
}

/// The process-wide server; see [`shared()`].
#[derive(Debug)]
pub struct SharedMongo {
    /// `mongodb://127.0.0.1:PORT/?directConnection=true` (or `$HERALD_TEST_MONGODB_URI`).
    pub uri: String,
    /// The child, kept so its stdin stays open; `None` when the server is external.
    _server: Option<std::sync::Mutex<ServerProcess>>,
}

impl SharedMongo {
    /// A new client for the calling test. A `mongodb::Client` is tied to the runtime it
    /// was created on, and every `#[tokio::test]` has its own, so clients are never shared.
    pub async fn client(&self) -> Client {
        connect(&self.uri).await
    }
}

/// The server shared by every test of this process, started on first use.
///
/// Blocks the calling thread while the server starts (about a second); each
/// `#[tokio::test]` runs on its own thread, so that stalls only the caller.
pub fn shared() -> &'static SharedMongo {
    static SHARED: OnceLock<SharedMongo> = OnceLock::new();
    SHARED.get_or_init(|| {
        if let Some(uri) = external_uri() {
            return SharedMongo { uri, _server: None };
        }
        // The readiness check needs a runtime; the caller may be inside one (and block_on
        // would panic there), so start the server from a thread of our own.
        let server = std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a runtime to start SecantusDB")
                .block_on(ServerProcess::start_fresh("shared", ""))
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
        // Nobody removes a static's directory; the child does it when it exits.
        let server = server.leak_dir();
        SharedMongo {
            uri: server.uri(),
            _server: Some(std::sync::Mutex::new(server)),
        }
    })
}

/// A dedicated server for one test; killed (and its storage removed) on drop.
#[derive(Debug)]
pub struct TestMongo {
    /// `mongodb://127.0.0.1:PORT/?directConnection=true` — stable across restarts.
    pub uri: String,
    server: Option<ServerProcess>,
}

impl TestMongo {
    /// `$HERALD_TEST_MONGODB_URI` if set (then [`stop`](Self::stop) and
    /// [`restart`](Self::restart) panic), else a freshly spawned server like [`spawn`](Self::spawn).
    pub async fn start() -> TestMongo {
        match external_uri() {
            Some(uri) => TestMongo { uri, server: None },
            None => Self::spawn().await,
        }
    }

    /// Always spawns a SecantusDB of its own on a free 127.0.0.1 port, storing its data in
    /// a temporary directory so that [`restart`](Self::restart) finds it again. Returns
    /// once `ping` succeeds.
    pub async fn spawn() -> TestMongo {
        Self::spawn_with_config("").await
    }

    /// [`spawn`](Self::spawn) with `config` as its `secantusd.toml` (e.g. a small oplog:
    /// `[oplog]` `max_entries = 20`).
    pub async fn spawn_with_config(config: &str) -> TestMongo {
        let server = ServerProcess::start_fresh("dedicated", config).await;
        TestMongo {
            uri: server.uri(),
            server: Some(server),
        }
    }

    /// A new client for the calling test.
    pub async fn client(&self) -> Client {
        connect(&self.uri).await
    }

    /// Whether [`stop`](Self::stop)/[`restart`](Self::restart) work (a spawned server).
    pub fn is_restartable(&self) -> bool {
        self.server.is_some()
    }

    /// The port the server listens on (also after a restart).
    pub fn port(&self) -> u16 {
        self.spawned("port").port
    }

    /// Shuts the server down cleanly (SIGTERM; it checkpoints and closes its storage) and
    /// waits until it has exited; clients then get connection errors. Everything it
    /// acknowledged is there again after [`restart`](Self::restart). Idempotent.
    pub async fn stop(&mut self) {
        self.spawned_mut("stop").stop().await;
    }

    /// Kills the server abruptly (SIGKILL), like a crash. Writes it acknowledged just
    /// before may be lost (SecantusDB, like a mongod with `j: false`, does not make every
    /// commit durable; an insert followed at once by SIGKILL was seen to vanish), so use
    /// [`stop`](Self::stop) when a test needs every acknowledged write to survive.
    /// Idempotent; [`restart`](Self::restart) recovers from the storage as it was left.
    pub fn kill(&mut self) {
        self.spawned_mut("kill").kill();
    }

    /// Starts the server again on the same port and storage (stopping it first if it
    /// runs) and waits until `ping` succeeds.
    pub async fn restart(&mut self) {
        let server = self.spawned_mut("restart");
        server.stop().await;
        server.launch();
        server.wait_ready().await;
    }

    /// The last lines of the server's log, for assertion messages.
    pub fn log_tail(&self) -> String {
        self.server
            .as_ref()
            .map(ServerProcess::log_tail)
            .unwrap_or_else(|| "(external server: no log)".to_owned())
    }

    fn spawned(&self, what: &str) -> &ServerProcess {
        self.server.as_ref().unwrap_or_else(|| {
            panic!("TestMongo::{what}: the server at {URI_ENV} is not ours; use TestMongo::spawn()")
        })
    }

    fn spawned_mut(&mut self, what: &str) -> &mut ServerProcess {
        self.server.as_mut().unwrap_or_else(|| {
            panic!("TestMongo::{what}: the server at {URI_ENV} is not ours; use TestMongo::spawn()")
        })
    }
}

/// Oplog entries a test server keeps unless its config says otherwise. SecantusDB keeps
/// 100,000 by default, and a change stream whose cursor falls behind what it prunes
/// silently skips the pruned events instead of failing with `ChangeStreamHistoryLost` as
/// mongod does; every test shares one server's oplog. mongod's smallest default oplog
/// (990 MB) holds about a million of herald's records. Kept in step with
/// `scripts/secantus_quiet.py` and `scripts/dev-db`.
const OPLOG_MAX_ENTRIES: u32 = 1_000_000;

/// `config`, with the default oplog bound unless it sets one of its own.
fn with_oplog(config: &str) -> String {
    if config.contains("[oplog]") {
        config.to_owned()
    } else {
        format!("[oplog]\nmax_entries = {OPLOG_MAX_ENTRIES}\n{config}")
    }
}

/// One SecantusDB child and the directory holding its storage, config and log.
#[derive(Debug)]
struct ServerProcess {
    port: u16,
    python: PathBuf,
    /// `db/`, `secantusd.toml`, `secantus.log`. `None` once leaked to the child.
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    child: Option<Child>,
}

impl ServerProcess {
    /// Spawns on a free port and waits until ready, retrying with another port when the
    /// child dies at startup (most likely because someone else took the port meanwhile).
    async fn start_fresh(label: &str, config: &str) -> ServerProcess {
        let python = python_path();
        let mut last_failure = String::new();
        for _ in 0..SPAWN_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix(&format!("herald-test-mongo-{label}-"))
                .tempdir()
                .expect("create a temporary directory for SecantusDB");
            std::fs::create_dir_all(dir.path().join("db")).expect("create the storage dir");
            // An explicit config file stops SecantusDB from picking up a developer's
            // ./secantusd.toml or ~/.secantus/secantusd.toml.
            std::fs::write(dir.path().join("secantusd.toml"), with_oplog(config))
                .expect("write secantusd.toml");
            let mut server = ServerProcess {
                port: free_port(),
                python: python.clone(),
                dir_path: dir.path().to_owned(),
                dir: Some(dir),
                child: None,
            };
            server.launch();
            match server.try_wait_ready().await {
                Ok(()) => return server,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("SecantusDB did not start after {SPAWN_ATTEMPTS} attempts: {last_failure}");
    }

    fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir_path.join("secantus.log")
    }

    /// Hands the directory's removal to the child (for a server that is never dropped).
    fn leak_dir(mut self) -> Self {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "SecantusDB is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the SecantusDB log");
        let log_err = log.try_clone().expect("clone the log handle");
        let child = Command::new(&self.python)
            .arg("-c")
            .arg(WRAPPER_PY)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.dir_path.join("db"))
            .arg("--config")
            .arg(self.dir_path.join("secantusd.toml"))
            .args(["--cache-size", "256M", "--log-level", "WARNING"])
            .env("HERALD_TEST_CLEANUP_DIR", &self.dir_path)
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(&self.dir_path)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}); run `scripts/dev-db install` or set {PYTHON_ENV}",
                    self.python.display()
                )
            });
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        if let Err(failure) = self.try_wait_ready().await {
            panic!("{failure}");
        }
    }

    /// Polls `ping` until it answers, the child exits, or [`READY_DEADLINE`] passes.
    async fn try_wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let uri = format!(
            "{}&serverSelectionTimeoutMS=1000&connectTimeoutMS=1000",
            self.uri()
        );
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "SecantusDB on port {} exited at startup ({status}); log:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            if let Ok(client) = Client::with_uri_str(&uri).await {
                let ping = client
                    .database("admin")
                    .run_command(doc! { "ping": 1 })
                    .await;
                if ping.is_ok() {
                    return Ok(());
                }
            }
            if started.elapsed() > READY_DEADLINE {
                self.kill();
                return Err(format!(
                    "SecantusDB on port {} did not answer ping within {READY_DEADLINE:?}; log:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asks the child to shut down cleanly, keeping its directory; kills it if it takes
    /// longer than [`STOP_DEADLINE`].
    async fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Some(stdin) = child.stdin.as_mut() {
            let _ = stdin.write_all(b"stop\n").and_then(|()| stdin.flush());
        }
        let started = Instant::now();
        while started.elapsed() < STOP_DEADLINE {
            if !matches!(child.try_wait(), Ok(None)) {
                self.child = None;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
    }

    /// SIGKILL and reap; the storage directory is left alone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Kill before the TempDir field removes the directory under the server's feet.
        self.kill();
    }
}

fn external_uri() -> Option<String> {
    std::env::var(URI_ENV).ok().filter(|s| !s.trim().is_empty())
}

fn python_path() -> PathBuf {
    if let Some(python) = std::env::var_os(PYTHON_ENV).filter(|s| !s.is_empty()) {
        return PathBuf::from(python);
    }
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run `scripts/dev-db install`, or set {PYTHON_ENV} (a Python with \
         secantusdb) or {URI_ENV} (an existing server)",
        python.display()
    );
    python
}

/// A port that was free a moment ago (the kernel picks it; we release it for the child).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

async fn connect(uri: &str) -> Client {
    Client::with_uri_str(uri)
        .await
        .unwrap_or_else(|e| panic!("connect to {uri}: {e}"))
}
