//! # herald — the daemon
//!
//! Wires the delivery engine ([`herald_actors`]) to the world:
//!
//! - [`config`]: flags, env vars and the TOML file, validated into one `Config`;
//! - [`webhook`]: the webhook model — its document, its limits and the one validation the
//!   API, `herald apply` and the store share;
//! - [`namespace`]: the tenant unit — what a `namespace_id` may be, on webhooks,
//!   connections, API keys and events;
//! - [`store`]: the one door to MongoDB — every collection's queries, indexes and TTLs in a
//!   module of its own: the outbox change stream ([`store::events`]), the live webhook
//!   watcher ([`store::webhooks`]), the delivery ledger ([`store::deliveries`]), the
//!   cluster's members and leases ([`store::cluster`]), and one page type for every list
//!   route ([`store::page`]);
//! - [`refusals`]: what the listener and the API's guard refuse, counted and logged at
//!   warn at most once a second;
//! - [`secrets`]: encryption at rest (`--secret-key`) of the webhook and connection secrets
//!   the store and the API read and write;
//! - [`transport`]: the one shared hyper client over rustls, with the [`ssrf`] guard on the
//!   address actually dialled;
//! - [`listener`] and [`api`]: the hyper server actor (spawned and stopped by `serve::run`,
//!   beside the engine's tree, not under it) and its routes, among them the delivery
//!   inspector ([`api::ui`]), a page served at `/ui/` from memory that works through the
//!   `/v1` API with its user's key;
//! - [`inbound`]: provider webhooks in (Mux): the signature check, then the transactional
//!   apply through the store;
//! - [`metrics`]: the Prometheus recorder behind `GET /metrics` and the daemon's own gauges;
//! - [`telemetry`]: OpenTelemetry traces of routings and attempts over OTLP
//!   (`--otlp-endpoint`), through the engine's `Tracer` port; nothing runs when it is off;
//! - [`memory`]: how the process takes memory from the kernel (no transparent huge pages);
//! - [`serve`]: start-up order, the run loop and graceful shutdown;
//! - [`text`]: one-line messages ([`text::one_line`]) for logs, API errors and the CLI;
//! - [`cli`]: the client subcommands (`webhooks`, `events`, `deliveries`, `apply`,
//!   `cluster`) that talk to a running daemon's API.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod inbound;
pub mod listener;
pub mod memory;
pub mod metrics;
pub mod namespace;
pub mod refusals;
pub mod secrets;
pub mod serve;
pub mod ssrf;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod transport;
pub mod webhook;
