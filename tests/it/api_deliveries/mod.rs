//! The HTTP API for publishing events and for deliveries, as its users rely on it: an
//! event published with `POST /v1/events` reaches every subscribed receiver once, however
//! often it is published; deliveries can be listed, read with their attempt log, retried
//! one by one and recovered in bulk after an outage; bad input gets a 4xx naming the field.
//!
//! Each story runs herald in-process against SecantusDB and real HTTPS receivers, and
//! talks to it over real HTTP. Webhooks are written straight into MongoDB (a documented
//! way to register them) before herald starts, so none of these stories depends on the
//! webhook routes.

use std::time::Duration;

use herald::config::Config;
use serde_json::Value;

use crate::api_client::{Api, ApiResponse};
use crate::daemon::{test_config, InProcess};
use crate::support;

mod auth;
mod batching;
mod errors;
mod fuzz;
mod publishing;
mod read;
mod recover;
mod retry;

/// A built-in event type of the catalog.
const TYPE: &str = "collection.documents.written";

const WH_A: &str = "wh_00000000000000d1";
const WH_B: &str = "wh_00000000000000d2";

/// Generous: SecantusDB and the receivers share a small machine with other tests.
const DEADLINE: Duration = Duration::from_secs(30);

/// Gives herald a moment to (not) do more than expected.
async fn quiet_period() {
    tokio::time::sleep(Duration::from_millis(800)).await;
}

/// Starts herald on database `name` (webhooks already inserted), `tweak`ing the test
/// configuration first; returns it with an API client holding its key.
async fn start(uri: &str, name: &str, tweak: impl FnOnce(&mut Config)) -> (InProcess, Api) {
    let mut config = test_config(uri, name, support::test_ca_pem_path());
    tweak(&mut config);
    let key = config.api_key.clone();
    let daemon = InProcess::start(config).await;
    let api = Api::new(daemon.listen, key.as_deref());
    (daemon, api)
}

/// Publishes and expects 202; returns the event id.
async fn publish(api: &Api, body: Value) -> String {
    let response = api.post("/v1/events", body).await;
    assert_eq!(response.status, 202, "publish: {}", response.body);
    response.body["event_id"]
        .as_str()
        .expect("event_id in the answer")
        .to_owned()
}

fn delivery_id(event_id: &str, webhook_id: &str) -> String {
    format!("{event_id}:{webhook_id}")
}

/// The `delivery_id`s of one page.
fn ids(response: &ApiResponse) -> Vec<String> {
    response.body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {}", response.body))
        .iter()
        .map(|d| d["delivery_id"].as_str().unwrap().to_owned())
        .collect()
}
