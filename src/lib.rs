//! # herald — the daemon
//!
//! Wires the delivery engine ([`herald_actors`]) to the world:
//!
//! - [`config`]: flags, env vars and the TOML file, validated into one `Config`;
//! - [`store`]: MongoDB — the outbox change stream ([`store::events`]), the live webhook
//!   watcher ([`store::webhooks`]) and the delivery ledger ([`store::deliveries`]);
//! - [`transport`]: the one shared hyper client over rustls, with the [`ssrf`] guard on the
//!   address actually dialled;
//! - [`listener`] and [`api`]: the hyper server actor and its routes;
//! - [`serve`]: start-up order, the run loop and graceful shutdown.

pub mod api;
pub mod config;
pub mod listener;
pub mod serve;
pub mod ssrf;
pub mod store;
pub mod transport;
