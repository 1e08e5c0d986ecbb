//! herald's integration tests: one binary, run against a real MongoDB-compatible server
//! (SecantusDB, see `support::mongo`) and real HTTPS receivers (`support::receiver`), with
//! herald in-process (`daemon::InProcess`) or as a child process (`daemon::ChildDaemon`).

mod support;

mod api_client;
mod api_deliveries;
mod api_webhooks;
mod backlog;
mod changes;
mod chaos;
mod cli;
mod cluster;
mod cluster_api;
mod crash;
mod daemon;
mod delivery;
mod fixtures;
mod hardening;
mod harness_smoke;
mod health;
mod health_batched;
mod health_cluster;
mod hostile;
mod ledger;
mod mux;
mod openapi;
mod operations;
mod outage;
mod payloads;
mod secrets;
mod startup;
mod tenancy;
mod traces;
mod ui;
