//! The pieces every scenario uses: the receiver child process, a SecantusDB child process,
//! a bare hyper client (the ceiling), resource readings and the result table.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::Serialize;

/// The receiver, in its own process.
pub struct ReceiverProcess {
    child: Child,
    pub port: u16,
    control: u16,
    pub ca: PathBuf,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ReceiverStats {
    pub ok: u64,
    #[allow(dead_code)] // reported by the control port; useful when debugging a run
    pub hung: u64,
    pub latencies_ns: Vec<u64>,
}

/// What one `/tally/...` path of the receiver got: requests, and distinct events among them
/// (by `webhook-id`).
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
pub struct PathTally {
    pub requests: u64,
    pub distinct: u64,
}

impl ReceiverProcess {
    pub fn start(tls_dir: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--receiver")
            .arg(tls_dir)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the receiver process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut parts = line
            .split_whitespace()
            .skip(1)
            .map(|p| p.parse::<u16>().unwrap());
        let (port, control) = (parts.next().unwrap(), parts.next().unwrap());
        Self {
            child,
            port,
            control,
            ca: tls_dir.join("ca.pem"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    async fn control<T: serde::de::DeserializeOwned>(&self, method: &str, path: &str) -> T {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.control))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client
            .request(request)
            .await
            .expect("receiver control port");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap()
    }

    pub async fn stats(&self) -> ReceiverStats {
        self.control("GET", "/stats").await
    }

    pub async fn reset(&self) {
        self.control::<ReceiverStats>("POST", "/stats").await;
    }

    /// What each `/tally/...` path has received since the last reset, by path.
    pub async fn tally(&self) -> HashMap<String, PathTally> {
        self.control("GET", "/tally").await
    }

    /// When each `/tally/...` path first received an event whose body's `t_ns` is
    /// `after_ns` or later (unix ns), for the paths that have.
    pub async fn resumed(&self, after_ns: u64) -> HashMap<String, u64> {
        self.control("GET", &format!("/tally/resumed?after_ns={after_ns}"))
            .await
    }

    /// Waits until the receiver has answered `n` requests; returns when it did. What it saw
    /// on the way is kept, under the progress bar's message, for `--plot`.
    pub async fn wait_ok(
        &self,
        n: u64,
        deadline: Duration,
        progress: &indicatif::ProgressBar,
    ) -> Instant {
        let started = Instant::now();
        let until = started + deadline;
        let mut seen = Vec::new();
        loop {
            let ok = self.stats().await.ok;
            progress.set_position(ok.min(n));
            seen.push((started.elapsed().as_secs_f64(), ok));
            if ok >= n {
                crate::samples::record_progress(&progress.message(), seen);
                return Instant::now();
            }
            assert!(
                Instant::now() < until,
                "receiver saw {ok} of {n} requests before the deadline"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ReceiverProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SecantusDB in its own process, on a free port, throwaway storage.
pub struct Database {
    /// The dev server this run started; `None` for one given by `HERALD_BENCH_MONGODB_URI`.
    child: Option<Child>,
    /// Its config file, removed when the server goes.
    _config: Option<tempfile::NamedTempFile>,
    pub uri: String,
}

/// Databases of a bench run on a server it did not start begin with this (or are
/// [`CEILING_DATABASE`]).
const BENCH_DATABASE_PREFIX: &str = "bench_";

/// Where the ceilings' change streams run.
pub const CEILING_DATABASE: &str = "ceiling";

impl Database {
    /// The dev server's process id, when this run started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A fresh SecantusDB, or with `HERALD_BENCH_MONGODB_URI` a MongoDB replica set of your
    /// own (the e2e figures on a real `mongod`): the bench's databases there (`bench_*` and
    /// `ceiling`) are dropped first, nothing else is touched.
    pub async fn start() -> Self {
        if let Ok(uri) = std::env::var("HERALD_BENCH_MONGODB_URI") {
            let client = mongodb::Client::with_uri_str(&uri)
                .await
                .unwrap_or_else(|e| panic!("HERALD_BENCH_MONGODB_URI: {e}"));
            for name in client.list_database_names().await.unwrap() {
                if name.starts_with(BENCH_DATABASE_PREFIX) || name == CEILING_DATABASE {
                    client.database(&name).drop().await.unwrap();
                }
            }
            return Self {
                child: None,
                _config: None,
                uri,
            };
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = std::env::var("HERALD_SECANTUS_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join(".venv/bin/python"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Without two pauses of the dev server's own that mongod does not have (its TTL
        // sweeper, seconds of stall with herald's retention indexes; its interpreter's full
        // garbage collections, 25–96 ms each): see `scripts/secantus_quiet.py`. Benchmarks
        // measure herald, not those (test setup only). The empty config keeps a developer's
        // `./secantusd.toml` out.
        let config = tempfile::Builder::new()
            .prefix("herald-bench-secantus-")
            .suffix(".toml")
            .tempfile()
            .unwrap();
        let child = Command::new(&python)
            .arg(root.join("scripts/secantus_quiet.py"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--storage-path", ":memory:"])
            .arg("--config")
            .arg(config.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start SecantusDB with {} (run scripts/dev-db install): {e}",
                    python.display()
                )
            });
        let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(client) = mongodb::Client::with_uri_str(&uri).await {
                if client
                    .database("admin")
                    .run_command(mongodb::bson::doc! {"ping": 1})
                    .await
                    .is_ok()
                {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "SecantusDB did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self {
            child: Some(child),
            _config: Some(config),
            uri,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub type BareClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The ceiling's client: hyper-util pooled, keep-alive, HTTP/1.1 + HTTP/2 over rustls.
pub fn bare_client(ca: &Path) -> BareClient {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// `n` POSTs of `body` to `urls` (round robin) with `concurrency` in flight: requests/s.
pub async fn bare_rate(
    client: &BareClient,
    urls: &[String],
    body: Bytes,
    n: usize,
    concurrency: usize,
) -> f64 {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, urls, body, next) =
            (client.clone(), urls.to_vec(), body.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let request = hyper::Request::post(&urls[i % urls.len()])
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let response = client.request(request).await.expect("bare request");
                let _ = response.into_body().collect().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// CPU seconds (user + system) this process has used.
pub fn cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat")
}

/// What the dev server spent over a stretch of a run: its CPU time, and that over the wall
/// time as a share of one core (it serves on one Python thread, so near 100 % it is the
/// bound).
pub struct ServerBusy {
    pid: Option<u32>,
    cpu: f64,
    since: Instant,
}

impl ServerBusy {
    /// Starts measuring `db`'s server (nothing to measure on a server the run did not start).
    pub fn start(db: &Database) -> Self {
        let pid = db.pid();
        Self {
            pid,
            cpu: pid.map_or(0.0, process_cpu_seconds),
            since: Instant::now(),
        }
    }

    /// CPU seconds the server used since `start`; 0 on a server of your own.
    pub fn cpu_seconds(&self) -> f64 {
        self.pid
            .map_or(0.0, |pid| process_cpu_seconds(pid) - self.cpu)
    }

    /// Percent of one core since `start`, e.g. "77 %"; "n/a" on a server of your own.
    pub fn percent(&self) -> String {
        match self.pid {
            Some(_) => format!(
                "{:.0} %",
                100.0 * self.cpu_seconds() / self.since.elapsed().as_secs_f64()
            ),
            None => "n/a".to_owned(),
        }
    }
}

/// CPU seconds (user + system) process `pid` has used; 0 once it is gone.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 0, utime 11, stime 12 (clock ticks, 100/s).
    (ticks(11) + ticks(12)) / 100.0
}

fn status_kib(key: &str) -> u64 {
    process_status_kib("self", key)
}

fn process_status_kib(process: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident memory now, MiB.
pub fn rss_mib() -> f64 {
    status_kib("VmRSS:") as f64 / 1024.0
}

/// Peak resident memory of this process, MiB.
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") as f64 / 1024.0
}

/// Peak resident memory of process `pid`, MiB (0 once it is gone).
pub fn process_peak_rss_mib(pid: u32) -> f64 {
    process_status_kib(&pid.to_string(), "VmHWM:") as f64 / 1024.0
}

/// Percentile (0..=100) of nanosecond samples, in milliseconds.
pub fn percentile_ms(samples: &mut [u64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank] as f64 / 1e6
}

/// Rounds of (ceiling, herald) measured alternately in the ratio scenarios. This machine is
/// a shared VM whose speed drifts, by up to 40 % within half an hour: one ceiling phase
/// followed by one herald phase reads that drift as herald's ratio.
pub const ROUNDS: usize = 3;

/// One round of a ratio scenario.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    pub value: f64,
    pub ceiling: f64,
    pub cpu_seconds: f64,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.value / self.ceiling
    }
}

/// The round whose ratio is the median, and every round's ratio for the notes.
pub fn median_round(rounds: &[Round]) -> (Round, String) {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
    let listed = rounds
        .iter()
        .map(|r| format!("{:.0} %", r.ratio() * 100.0))
        .collect::<Vec<_>>()
        .join(", ");
    (sorted[sorted.len() / 2], listed)
}

/// One line of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    /// What was measured, with its unit.
    pub metric: String,
    pub value: f64,
    pub ceiling: Option<f64>,
    pub ratio: Option<f64>,
    /// The goal, as text (e.g. "≥ 70 % of ceiling").
    pub goal: String,
    pub met: Option<bool>,
    pub cpu_s_per_1000: Option<f64>,
    pub peak_rss_mib: f64,
    pub notes: String,
}

impl Outcome {
    pub fn new(scenario: &str, metric: &str, value: f64) -> Self {
        Self {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            ceiling: None,
            ratio: None,
            goal: String::new(),
            met: None,
            cpu_s_per_1000: None,
            peak_rss_mib: peak_rss_mib(),
            notes: String::new(),
        }
    }

    /// Compares with a ceiling: goal met when value ≥ `min_ratio` × ceiling.
    pub fn against(mut self, ceiling: f64, min_ratio: f64) -> Self {
        self.ceiling = Some(ceiling);
        self.ratio = Some(self.value / ceiling);
        self.goal = format!("≥ {:.0} % of ceiling", min_ratio * 100.0);
        self.met = Some(self.value >= min_ratio * ceiling);
        self
    }

    pub fn goal(mut self, goal: &str, met: bool) -> Self {
        self.goal = goal.into();
        self.met = Some(met);
        self
    }

    pub fn cpu(mut self, cpu_seconds: f64, deliveries: u64) -> Self {
        if deliveries > 0 {
            self.cpu_s_per_1000 = Some(cpu_seconds / deliveries as f64 * 1000.0);
        }
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes = note.into();
        self
    }
}

pub fn print_table(outcomes: &[Outcome]) {
    let mut table = comfy_table::Table::new();
    table.set_header([
        "scenario",
        "metric",
        "value",
        "ceiling",
        "ratio",
        "goal",
        "met",
        "CPU s/1k",
        "peak RSS MiB",
        "notes",
    ]);
    let f = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
    for o in outcomes {
        table.add_row([
            o.scenario.clone(),
            o.metric.clone(),
            format!("{:.1}", o.value),
            f(o.ceiling),
            o.ratio
                .map(|r| format!("{:.0} %", r * 100.0))
                .unwrap_or_default(),
            o.goal.clone(),
            match o.met {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => String::new(),
            },
            o.cpu_s_per_1000
                .map(|v| format!("{v:.3}"))
                .unwrap_or_default(),
            format!("{:.0}", o.peak_rss_mib),
            o.notes.clone(),
        ]);
    }
    println!("\n{table}");
}

pub fn progress(len: u64, message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>28} [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
        )
        .unwrap()
        .progress_chars("=> "),
    );
    bar.set_message(message.to_owned());
    bar
}
