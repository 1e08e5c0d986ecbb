//! Configuration: defaults, then the `--config` TOML file, then environment variables, then
//! flags — validated once at start into an immutable [`Config`].
//!
//! Every flag is also an env var (`--mongodb-uri` = `HERALD_MONGODB_URI`) and a kebab-case
//! key of the file (`mongodb-uri = "..."`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use serde::Deserialize;

use crate::ssrf::SsrfGuard;

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "A webhook daemon: MongoDB change streams in, signed HTTPS deliveries out."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon beside MongoDB.
    Serve(Box<ServeArgs>),
    /// Manage webhooks through a running daemon's API.
    Webhooks(crate::cli::webhooks::WebhooksArgs),
    /// Publish events through a running daemon's API.
    Events(crate::cli::events::EventsArgs),
    /// Inspect and replay deliveries through a running daemon's API.
    Deliveries(crate::cli::deliveries::DeliveriesArgs),
    /// Make the webhooks match a TOML file (create, update, with --prune delete).
    Apply(crate::cli::apply::ApplyArgs),
    /// Show the cluster: its members, what each owns, their feed lag (--json: every lease).
    Cluster(crate::cli::cluster::ClusterArgs),
    /// Create, list and revoke API keys (admin keys only).
    Keys(crate::cli::keys::KeysArgs),
    /// The audit trail of API writes, oldest first (--json for scripts).
    Audit(crate::cli::audit::AuditArgs),
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `herald serve` flags. All optional here so that the file can fill what flags leave out.
#[derive(Debug, Args, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ServeArgs {
    /// TOML file with the same keys (kebab-case).
    #[arg(long, env = "HERALD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// MongoDB connection string [default: mongodb://127.0.0.1:27017/?directConnection=true]
    #[arg(long, env = "HERALD_MONGODB_URI")]
    pub mongodb_uri: Option<String>,
    /// Database holding events, webhooks and deliveries [default: herald]
    #[arg(long, env = "HERALD_DATABASE")]
    pub database: Option<String>,
    /// Address of the HTTP listener [default: 127.0.0.1:8080]
    #[arg(long, env = "HERALD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Bearer key for the /v1 management routes.
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM file of extra root certificates for outbound TLS.
    #[arg(long, env = "HERALD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Comma-separated CIDRs outbound delivery may reach although private or loopback.
    #[arg(long, env = "HERALD_ALLOW_PRIVATE_NETWORKS")]
    pub allow_private_networks: Option<String>,
    /// First retry delay ceiling, in ms [default: 5000]
    #[arg(long, env = "HERALD_RETRY_INITIAL_MS")]
    pub retry_initial_ms: Option<u64>,
    /// Largest retry delay, in ms [default: 3600000]
    #[arg(long, env = "HERALD_RETRY_MAX_MS")]
    pub retry_max_ms: Option<u64>,
    /// Attempts in all before a delivery fails [default: 15]
    #[arg(long, env = "HERALD_RETRY_MAX_ATTEMPTS")]
    pub retry_max_attempts: Option<u32>,
    /// Whole-attempt timeout (connect + TLS + response), in ms [default: 10000]
    #[arg(long, env = "HERALD_ATTEMPT_TIMEOUT_MS")]
    pub attempt_timeout_ms: Option<u64>,
    /// 64 hex characters: key encrypting secrets at rest.
    #[arg(long, env = "HERALD_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Attempts in flight per endpoint, at most [default: 64]
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT_PER_ENDPOINT")]
    pub max_in_flight_per_endpoint: Option<usize>,
    /// Deliveries one endpoint holds in memory, at most; beyond it they wait in the ledger
    /// as pending and are paged back in [default: 10000]
    #[arg(long, env = "HERALD_MAX_HELD_PER_ENDPOINT")]
    pub max_held_per_endpoint: Option<usize>,
    /// Events read from the feed whose deliveries are not all durable yet, at most; the
    /// change stream waits beyond it [default: 20000]
    #[arg(long, env = "HERALD_MAX_EVENTS_IN_FLIGHT")]
    pub max_events_in_flight: Option<usize>,
    /// Bytes of event bodies read from the feed whose deliveries are not all durable yet, at
    /// most (`64MiB`, `512KiB`, or bytes); an event larger than this goes through alone
    /// [default: 64MiB]
    #[arg(long, env = "HERALD_MAX_BYTES_IN_FLIGHT")]
    pub max_bytes_in_flight: Option<String>,
    /// How long this daemon's claim on its share of the webhooks lasts without renewal
    /// (`10s`, `2500ms`, or seconds); takeover after a crash happens within it [default: 10s]
    #[arg(long, env = "HERALD_LEASE_TTL")]
    pub lease_ttl: Option<String>,
    /// This daemon's name in the cluster; unique per running process
    /// [default: <hostname>-<pid>-<4 hex>]
    #[arg(long, env = "HERALD_MEMBER_ID")]
    pub member_id: Option<String>,
    /// Grace period for in-flight attempts at shutdown, in ms [default: 10000]
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Log format [default: text]
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Days a succeeded delivery is kept after it completed (TTL index) [default: 7]
    #[arg(long, env = "HERALD_RETENTION_SUCCEEDED_DAYS")]
    pub retention_succeeded_days: Option<u32>,
    /// Days a failed delivery, and an inbound event record, is kept (TTL index) [default: 30]
    #[arg(long, env = "HERALD_RETENTION_FAILED_DAYS")]
    pub retention_failed_days: Option<u32>,
    /// Failed attempts in a row after which an endpoint is failing and one
    /// `webhook.endpoint.failing` event is published [default: 10]
    #[arg(long, env = "HERALD_ENDPOINT_FAILING_AFTER")]
    pub endpoint_failing_after: Option<u32>,
    /// Disable a webhook whose endpoint has failed every attempt for this many seconds
    /// (publishes `webhook.endpoint.disabled`); 0 = never [default: 0]
    #[arg(long, env = "HERALD_ENDPOINT_DISABLE_AFTER_SECS")]
    pub endpoint_disable_after_secs: Option<u64>,
    /// Open connections the listener serves at once; at the cap, the longest-idle one is
    /// closed to make room, or the new one is closed if none is idle [default: 1024]
    #[arg(long, env = "HERALD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Time a client has to send a request's head (`10s`, `2500ms`) [default: 10s]
    #[arg(long, env = "HERALD_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<String>,
    /// Time a client has to send a request's whole body; slower ones get 408 [default: 30s]
    #[arg(long, env = "HERALD_REQUEST_TIMEOUT")]
    pub request_timeout: Option<String>,
    /// A connection with no request in flight for this long is closed (HTTP/1 keep-alive
    /// and HTTP/2 alike) [default: 60s]
    #[arg(long, env = "HERALD_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// Largest body of an inbound provider webhook (`/v1/webhooks/mux/…`), in bytes; at
    /// most the API's 1 MiB [default: 262144]
    #[arg(long, env = "HERALD_INBOUND_MAX_BODY_BYTES")]
    pub inbound_max_body_bytes: Option<usize>,
    /// OTLP/HTTP collector to export traces to, e.g. http://127.0.0.1:4318 (`/v1/traces`
    /// is appended); unset: the standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables,
    /// and without those no traces are exported
    #[arg(long, env = "HERALD_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// How long a published event waits for others to share its write while a write is
    /// already in flight, in ms; 0 = only until a write completes [default: 1]
    #[arg(long, env = "HERALD_PUBLISH_WINDOW_MS")]
    pub publish_window_ms: Option<u64>,
    /// Writes of published events to MongoDB outstanding at once [default: 2]
    #[arg(long, env = "HERALD_PUBLISH_WRITES_IN_FLIGHT")]
    pub publish_writes_in_flight: Option<usize>,
    /// Operator-defined event types for the catalog (config file only: `[[event-types]]`).
    #[arg(skip)]
    pub event_types: Option<Vec<EventTypeDef>>,
}

/// An event type an operator adds to the catalog in the config file:
///
/// ```toml
/// [[event-types]]
/// event-type = "report.generated"
/// description = "A report finished rendering"
/// payload-fields = ["report_id", "url"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EventTypeDef {
    pub event_type: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub payload_fields: Vec<String>,
}

/// The validated configuration of `herald serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub mongodb_uri: String,
    pub database: String,
    pub listen: SocketAddr,
    pub api_key: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub allow_private_networks: Vec<IpNet>,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub retry_max_attempts: u32,
    pub attempt_timeout_ms: u64,
    pub secret_key: Option<[u8; 32]>,
    pub max_in_flight_per_endpoint: usize,
    /// Deliveries one endpoint holds in memory (queued, in flight, waiting to retry).
    pub max_held_per_endpoint: usize,
    pub shutdown_grace_ms: u64,
    /// Events read but not all durable yet, at most (the feed window).
    pub max_events_in_flight: usize,
    /// Bytes of those events' bodies, at most (the feed window's second bound).
    pub max_bytes_in_flight: u64,
    /// How long a partition lease lasts without renewal.
    pub lease_ttl_ms: u64,
    /// This daemon's name in the cluster; `None`: one is made up at start.
    pub member_id: Option<String>,
    pub log_format: LogFormat,
    /// Days succeeded deliveries are kept after `completed_at`.
    pub retention_succeeded_days: u32,
    /// Days failed deliveries are kept after `completed_at`, and `inbound_events` after
    /// `received_at`.
    pub retention_failed_days: u32,
    /// Failed attempts in a row after which an endpoint is failing.
    pub endpoint_failing_after: u32,
    /// Seconds of failing without a 2xx after which the webhook is disabled; 0 = never.
    pub endpoint_disable_after_secs: u64,
    /// How long a published event waits for company while a write is in flight (group
    /// commit of `POST /v1/events`).
    pub publish_window_ms: u64,
    /// Writes of published events outstanding at once.
    pub publish_writes_in_flight: usize,
    /// Operator-defined event types, added to the built-in catalog.
    pub event_types: Vec<EventTypeDef>,
    /// Listener limits: open connections at most.
    pub max_connections: usize,
    /// Time to send a request head.
    pub header_read_timeout_ms: u64,
    /// Time to send a request body (408 beyond it).
    pub request_timeout_ms: u64,
    /// Time a connection may sit with no request in flight.
    pub idle_timeout_ms: u64,
    /// Largest inbound provider webhook body.
    pub inbound_max_body_bytes: usize,
    /// Where traces are exported over OTLP; `None`: nowhere, and no span is built.
    pub otlp: Option<crate::telemetry::OtlpTarget>,
}

impl Config {
    /// Layers flags/env over the file over defaults and validates. Errors are one line.
    pub fn load(args: ServeArgs) -> Result<Self, String> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str::<ServeArgs>(&text).map_err(|e| {
                    format!("config file {}: {}", path.display(), e.message().trim())
                })?
            }
            None => ServeArgs::default(),
        };
        let defaults = Config::default();
        macro_rules! pick {
            ($field:ident) => {
                args.$field.clone().or(file.$field.clone())
            };
        }
        let allow = pick!(allow_private_networks).unwrap_or_default();
        let config = Config {
            mongodb_uri: pick!(mongodb_uri).unwrap_or(defaults.mongodb_uri),
            database: pick!(database).unwrap_or(defaults.database),
            listen: pick!(listen).unwrap_or(defaults.listen),
            api_key: pick!(api_key).filter(|k| !k.is_empty()),
            ca_file: pick!(ca_file),
            allow_private_networks: SsrfGuard::parse_allow_list(&allow)
                .map_err(|e| format!("--allow-private-networks: {e}"))?,
            retry_initial_ms: pick!(retry_initial_ms).unwrap_or(defaults.retry_initial_ms),
            retry_max_ms: pick!(retry_max_ms).unwrap_or(defaults.retry_max_ms),
            retry_max_attempts: pick!(retry_max_attempts).unwrap_or(defaults.retry_max_attempts),
            attempt_timeout_ms: pick!(attempt_timeout_ms).unwrap_or(defaults.attempt_timeout_ms),
            secret_key: pick!(secret_key)
                .map(|k| parse_secret_key(&k))
                .transpose()?,
            max_in_flight_per_endpoint: pick!(max_in_flight_per_endpoint)
                .unwrap_or(defaults.max_in_flight_per_endpoint),
            max_held_per_endpoint: pick!(max_held_per_endpoint)
                .unwrap_or(defaults.max_held_per_endpoint),
            shutdown_grace_ms: pick!(shutdown_grace_ms).unwrap_or(defaults.shutdown_grace_ms),
            max_events_in_flight: pick!(max_events_in_flight)
                .unwrap_or(defaults.max_events_in_flight),
            max_bytes_in_flight: pick!(max_bytes_in_flight)
                .map(|t| parse_bytes(&t).map_err(|e| format!("--max-bytes-in-flight: {e}")))
                .transpose()?
                .unwrap_or(defaults.max_bytes_in_flight),
            lease_ttl_ms: pick!(lease_ttl)
                .map(|t| parse_duration_ms(&t).map_err(|e| format!("--lease-ttl: {e}")))
                .transpose()?
                .unwrap_or(defaults.lease_ttl_ms),
            member_id: pick!(member_id).filter(|m| !m.is_empty()),
            log_format: pick!(log_format).unwrap_or_default(),
            retention_succeeded_days: pick!(retention_succeeded_days)
                .unwrap_or(defaults.retention_succeeded_days),
            retention_failed_days: pick!(retention_failed_days)
                .unwrap_or(defaults.retention_failed_days),
            endpoint_failing_after: pick!(endpoint_failing_after)
                .unwrap_or(defaults.endpoint_failing_after),
            endpoint_disable_after_secs: pick!(endpoint_disable_after_secs)
                .unwrap_or(defaults.endpoint_disable_after_secs),
            publish_window_ms: pick!(publish_window_ms).unwrap_or(defaults.publish_window_ms),
            publish_writes_in_flight: pick!(publish_writes_in_flight)
                .unwrap_or(defaults.publish_writes_in_flight),
            event_types: file.event_types.clone().unwrap_or_default(),
            max_connections: pick!(max_connections).unwrap_or(defaults.max_connections),
            header_read_timeout_ms: duration_flag(
                "--header-read-timeout",
                pick!(header_read_timeout),
                defaults.header_read_timeout_ms,
            )?,
            request_timeout_ms: duration_flag(
                "--request-timeout",
                pick!(request_timeout),
                defaults.request_timeout_ms,
            )?,
            idle_timeout_ms: duration_flag(
                "--idle-timeout",
                pick!(idle_timeout),
                defaults.idle_timeout_ms,
            )?,
            inbound_max_body_bytes: pick!(inbound_max_body_bytes)
                .unwrap_or(defaults.inbound_max_body_bytes),
            otlp: crate::telemetry::OtlpTarget::resolve(pick!(otlp_endpoint))
                .map_err(|e| format!("--otlp-endpoint: {e}"))?,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.database.is_empty() || self.database.contains(['/', '\\', '.', ' ', '"', '$']) {
            return Err(format!(
                "--database: invalid database name {:?}",
                self.database
            ));
        }
        if self.retry_initial_ms == 0 {
            return Err("--retry-initial-ms must be at least 1".into());
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Err("--retry-max-ms must not be below --retry-initial-ms".into());
        }
        if self.retry_max_attempts == 0 {
            return Err("--retry-max-attempts must be at least 1".into());
        }
        if self.attempt_timeout_ms == 0 {
            return Err("--attempt-timeout-ms must be at least 1".into());
        }
        if self.endpoint_failing_after == 0 {
            return Err("--endpoint-failing-after must be at least 1".into());
        }
        if self.max_in_flight_per_endpoint == 0 {
            return Err("--max-in-flight-per-endpoint must be at least 1".into());
        }
        if self.max_events_in_flight == 0 {
            return Err("--max-events-in-flight must be at least 1".into());
        }
        if self.max_bytes_in_flight == 0 {
            return Err("--max-bytes-in-flight must be at least 1 byte".into());
        }
        if self.lease_ttl_ms < MIN_LEASE_TTL_MS {
            return Err(format!(
                "--lease-ttl must be at least {MIN_LEASE_TTL_MS} ms: a member renews every third of it, and a shorter lease would expire on an ordinary pause of the store"
            ));
        }
        if let Some(id) = &self.member_id {
            if id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(format!(
                    "--member-id: {id:?} must be at most 128 characters, without spaces or control characters"
                ));
            }
        }
        if self.max_held_per_endpoint == 0 {
            return Err("--max-held-per-endpoint must be at least 1".into());
        }
        if self.publish_writes_in_flight == 0 {
            return Err("--publish-writes-in-flight must be at least 1".into());
        }
        if self.publish_window_ms > 1_000 {
            return Err("--publish-window-ms must be at most 1000".into());
        }
        // MongoDB caps expireAfterSeconds at 2^31 - 1 seconds (about 68 years).
        for (flag, days) in [
            ("--retention-succeeded-days", self.retention_succeeded_days),
            ("--retention-failed-days", self.retention_failed_days),
        ] {
            if days == 0 || days > MAX_RETENTION_DAYS {
                return Err(format!("{flag} must be between 1 and {MAX_RETENTION_DAYS}"));
            }
        }
        for def in &self.event_types {
            if def.event_type.is_empty()
                || def.event_type.contains(char::is_whitespace)
                || def.event_type == "*"
            {
                return Err(format!(
                    "config file: invalid event type {:?}",
                    def.event_type
                ));
            }
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return Err(format!(
                "--max-connections must be between 1 and {MAX_CONNECTIONS}"
            ));
        }
        for (flag, ms) in [
            ("--header-read-timeout", self.header_read_timeout_ms),
            ("--request-timeout", self.request_timeout_ms),
            ("--idle-timeout", self.idle_timeout_ms),
        ] {
            if !(MIN_LISTENER_TIMEOUT_MS..=MAX_LISTENER_TIMEOUT_MS).contains(&ms) {
                return Err(format!(
                    "{flag} must be between {MIN_LISTENER_TIMEOUT_MS} ms and {} s",
                    MAX_LISTENER_TIMEOUT_MS / 1_000
                ));
            }
        }
        if self.inbound_max_body_bytes == 0 || self.inbound_max_body_bytes > MAX_BODY_BYTES {
            return Err(format!(
                "--inbound-max-body-bytes must be between 1 and {}",
                MAX_BODY_BYTES
            ));
        }
        if self.api_key.is_none() && !self.listen.ip().is_loopback() {
            return Err(format!(
                "--api-key is required when listening on a non-loopback address ({})",
                self.listen
            ));
        }
        Ok(())
    }

    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms)
    }

    /// The engine's view of this configuration.
    pub fn engine(&self) -> herald_actors::EngineConfig {
        herald_actors::EngineConfig {
            retry: herald_actors::RetryPolicy {
                initial: Duration::from_millis(self.retry_initial_ms),
                max: Duration::from_millis(self.retry_max_ms),
                max_attempts: self.retry_max_attempts,
            },
            attempt_timeout: self.attempt_timeout(),
            max_in_flight_per_endpoint: self.max_in_flight_per_endpoint,
            max_held_per_endpoint: self.max_held_per_endpoint,
            max_events_in_flight: self.max_events_in_flight,
            max_bytes_in_flight: self.max_bytes_in_flight,
            // Each write is one command for every partition that moved: a few a second.
            checkpoint_interval: Duration::from_millis(250),
            // A partition nothing was routed to since its last write has nothing to lose by
            // an older checkpoint but a longer re-read when it is taken over: written every
            // 5 s instead of 4 times a second, the dev server's checkpoint work fell sixfold
            // (BENCHMARKS.md, "2f521c0 → f48476c"). Every 1 s, a take-over after a kill came
            // 0.2-0.3 s sooner (BENCHMARKS.md, "d49e128 → c948297") but `e2e`'s rates were
            // about 8 % lower (BENCHMARKS.md, "6bf2d1d → 1f184f2"): 63 documents a second.
            // The quiet mark below keeps the take-over's re-read as short with one write
            // (BENCHMARKS.md, "1f184f2 → d8cef43").
            quiet_checkpoint_interval: Duration::from_secs(5),
            // One write a second, in the member document, for all the quiet partitions:
            // a taker resumes them from there (`crate::cluster`, `resume_point`).
            quiet_mark_interval: Some(Duration::from_secs(1)),
            health: herald_actors::HealthPolicy {
                failing_after: self.endpoint_failing_after,
                disable_after: (self.endpoint_disable_after_secs > 0)
                    .then(|| Duration::from_secs(self.endpoint_disable_after_secs)),
            },
            ..herald_actors::EngineConfig::default()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mongodb_uri: "mongodb://127.0.0.1:27017/?directConnection=true".into(),
            database: "herald".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_key: None,
            ca_file: None,
            allow_private_networks: Vec::new(),
            retry_initial_ms: 5_000,
            retry_max_ms: 3_600_000,
            retry_max_attempts: 15,
            attempt_timeout_ms: 10_000,
            secret_key: None,
            max_in_flight_per_endpoint: 64,
            max_held_per_endpoint: herald_actors::EngineConfig::default().max_held_per_endpoint,
            shutdown_grace_ms: 10_000,
            max_events_in_flight: herald_actors::EngineConfig::default().max_events_in_flight,
            max_bytes_in_flight: herald_actors::EngineConfig::default().max_bytes_in_flight,
            lease_ttl_ms: 10_000,
            member_id: None,
            log_format: LogFormat::Text,
            retention_succeeded_days: 7,
            retention_failed_days: 30,
            endpoint_failing_after: 10,
            endpoint_disable_after_secs: 0,
            publish_window_ms: 1,
            publish_writes_in_flight: 2,
            event_types: Vec::new(),
            max_connections: 1024,
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            inbound_max_body_bytes: 256 * 1024,
            otlp: None,
        }
    }
}

/// Largest request body the API accepts on most routes, in bytes (a route may take less,
/// like the inbound provider routes, or more, like a batch of events).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The most `--max-connections` accepted (each connection is a file descriptor).
pub const MAX_CONNECTIONS: usize = 1_000_000;
/// The bounds of the listener's timeouts: below 100 ms nothing could be sent; above an
/// hour a connection is not limited in any useful sense.
pub const MIN_LISTENER_TIMEOUT_MS: u64 = 100;
pub const MAX_LISTENER_TIMEOUT_MS: u64 = 3_600_000;

/// A duration flag's value in ms, or its default; a bad one names the flag.
fn duration_flag(flag: &str, value: Option<String>, default: u64) -> Result<u64, String> {
    match value {
        Some(text) => parse_duration_ms(&text).map_err(|e| format!("{flag}: {e}")),
        None => Ok(default),
    }
}

/// The log filter: `HERALD_LOG`, else the conventional `RUST_LOG`, else `info`. An empty
/// variable counts as unset.
pub fn log_filter(herald_log: Option<String>, rust_log: Option<String>) -> String {
    herald_log
        .filter(|v| !v.trim().is_empty())
        .or(rust_log.filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "info".to_owned())
}

/// The shortest `--lease-ttl` accepted.
pub const MIN_LEASE_TTL_MS: u64 = 1_000;

/// A duration as `10s`, `2500ms`, `1m` or a bare number of seconds, in milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 10s, 2500ms)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1_000,
        "ms" => 1,
        "m" => 60_000,
        _ => return Err(format!("{text:?} is not a duration (e.g. 10s, 2500ms)")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// A size as `64MiB`, `512KiB`, `1GiB` (also `K`/`KB`/`M`/`MB`/`G`/`GB`, all powers of
/// 1024) or a bare number of bytes, in bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("{text:?} is not a size (e.g. 64MiB, 512KiB, 1048576)");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The longest retention MongoDB can express as a TTL (`expireAfterSeconds` is an int32).
pub const MAX_RETENTION_DAYS: u32 = (i32::MAX as u32) / 86_400;

fn parse_secret_key(hex: &str) -> Result<[u8; 32], String> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("--secret-key must be 64 hex characters (32 bytes)".into());
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["herald", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => *args,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = Config::load(serve(&[])).unwrap();
        assert_eq!(
            config.mongodb_uri,
            "mongodb://127.0.0.1:27017/?directConnection=true"
        );
        assert_eq!(config.database, "herald");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            (
                config.retry_initial_ms,
                config.retry_max_ms,
                config.retry_max_attempts
            ),
            (5_000, 3_600_000, 15)
        );
        assert_eq!(config.attempt_timeout_ms, 10_000);
        assert_eq!(
            (
                config.retention_succeeded_days,
                config.retention_failed_days
            ),
            (7, 30)
        );
    }

    #[test]
    fn retention_comes_from_flags_env_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, "retention-failed-days = 90\n").unwrap();
        let config = Config::load(serve(&[
            "--config",
            path.to_str().unwrap(),
            "--retention-succeeded-days",
            "1",
        ]))
        .unwrap();
        assert_eq!(
            (
                config.retention_succeeded_days,
                config.retention_failed_days
            ),
            (1, 90)
        );
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, "database = \"fromfile\"\nretry-max-attempts = 3\nallow-private-networks = \"127.0.0.0/8\"\n").unwrap();
        let config = Config::load(serve(&[
            "--config",
            path.to_str().unwrap(),
            "--retry-max-attempts",
            "7",
        ]))
        .unwrap();
        assert_eq!(config.database, "fromfile");
        assert_eq!(config.retry_max_attempts, 7);
        assert_eq!(config.allow_private_networks.len(), 1);
    }

    #[test]
    fn otlp_endpoint_is_a_collector_base_url_from_flag_or_file() {
        use crate::telemetry::OtlpTarget;
        let config = Config::load(serve(&["--otlp-endpoint", "http://127.0.0.1:4318"])).unwrap();
        assert_eq!(
            config.otlp,
            Some(OtlpTarget::Endpoint(
                "http://127.0.0.1:4318/v1/traces".into()
            ))
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, "otlp-endpoint = \"https://otel.example\"\n").unwrap();
        let config = Config::load(serve(&["--config", path.to_str().unwrap()])).unwrap();
        assert_eq!(
            config.otlp,
            Some(OtlpTarget::Endpoint(
                "https://otel.example/v1/traces".into()
            ))
        );
        let error = Config::load(serve(&["--otlp-endpoint", "collector:4318"])).unwrap_err();
        assert!(error.starts_with("--otlp-endpoint: "), "{error}");
    }

    #[test]
    fn bad_values_get_one_line_errors() {
        let cases: &[(&[&str], &str)] = &[
            (&["--retry-max-attempts", "0"], "--retry-max-attempts"),
            (
                &["--retry-initial-ms", "10", "--retry-max-ms", "5"],
                "--retry-max-ms",
            ),
            (&["--secret-key", "abc"], "--secret-key"),
            (
                &["--allow-private-networks", "10.0.0.0/33"],
                "--allow-private-networks",
            ),
            (&["--listen", "0.0.0.0:8080"], "--api-key is required"),
            (&["--database", "a/b"], "--database"),
            (
                &["--retention-succeeded-days", "0"],
                "--retention-succeeded-days",
            ),
            (
                &["--retention-failed-days", "100000"],
                "--retention-failed-days",
            ),
            (
                &["--endpoint-failing-after", "0"],
                "--endpoint-failing-after",
            ),
            (&["--max-connections", "0"], "--max-connections"),
            (&["--request-timeout", "soon"], "--request-timeout"),
            (&["--request-timeout", "10ms"], "--request-timeout"),
            (&["--header-read-timeout", "2h"], "--header-read-timeout"),
            (&["--idle-timeout", "0"], "--idle-timeout"),
            (
                &["--inbound-max-body-bytes", "2000000"],
                "--inbound-max-body-bytes",
            ),
        ];
        for (args, expected) in cases {
            let error = Config::load(serve(args)).unwrap_err();
            assert!(error.contains(expected), "{args:?}: {error}");
            assert!(!error.contains('\n'));
        }
    }

    #[test]
    fn endpoint_health_policy_reaches_the_engine() {
        let engine = Config::load(serve(&[])).unwrap().engine();
        assert_eq!(engine.health.failing_after, 10);
        assert_eq!(engine.health.disable_after, None);
        let engine = Config::load(serve(&[
            "--endpoint-failing-after",
            "3",
            "--endpoint-disable-after-secs",
            "86400",
        ]))
        .unwrap()
        .engine();
        assert_eq!(engine.health.failing_after, 3);
        assert_eq!(
            engine.health.disable_after,
            Some(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn listener_limits_have_documented_defaults_and_take_durations() {
        let config = Config::load(serve(&[])).unwrap();
        assert_eq!(config.max_connections, 1024);
        assert_eq!(config.header_read_timeout_ms, 10_000);
        assert_eq!(config.request_timeout_ms, 30_000);
        assert_eq!(config.idle_timeout_ms, 60_000);
        assert_eq!(config.inbound_max_body_bytes, 262_144);
        let config = Config::load(serve(&[
            "--max-connections",
            "50",
            "--request-timeout",
            "2500ms",
            "--idle-timeout",
            "5s",
        ]))
        .unwrap();
        assert_eq!(config.max_connections, 50);
        assert_eq!(config.request_timeout_ms, 2_500);
        assert_eq!(config.idle_timeout_ms, 5_000);
    }

    #[test]
    fn herald_log_wins_over_rust_log_which_wins_over_info() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(log_filter(s("debug"), s("warn")), "debug");
        assert_eq!(log_filter(None, s("herald=trace")), "herald=trace");
        assert_eq!(log_filter(s(""), s("warn")), "warn");
        assert_eq!(log_filter(None, None), "info");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, "databse = \"typo\"\n").unwrap();
        let error = Config::load(serve(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(error.contains("databse"), "{error}");
    }

    #[test]
    fn the_bytes_in_flight_take_sizes_with_units_and_refuse_nonsense_in_one_line() {
        assert_eq!(
            Config::load(serve(&[])).unwrap().max_bytes_in_flight,
            64 << 20
        );
        for (given, bytes) in [
            ("64MiB", 64 << 20),
            ("512KiB", 512 << 10),
            ("1gib", 1 << 30),
            ("2 M", 2 << 20),
            ("1048576", 1 << 20),
        ] {
            let config = Config::load(serve(&["--max-bytes-in-flight", given])).unwrap();
            assert_eq!(config.max_bytes_in_flight, bytes, "{given}");
            assert_eq!(config.engine().max_bytes_in_flight, bytes);
        }
        for bad in ["", "lots", "64XB", "0", "-1", "99999999999999999999G"] {
            let flag = format!("--max-bytes-in-flight={bad}");
            let error = Config::load(serve(&[&flag])).unwrap_err();
            assert!(error.starts_with("--max-bytes-in-flight"), "{bad}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }
}
