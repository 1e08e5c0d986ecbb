//! Tenancy (issue 20): namespaces, API keys with scope and role, the audit trail.
//!
//! Every story runs herald in-process on a fresh database with an operator key
//! (`--api-key`), makes namespaced keys through `POST /v1/keys`, and acts as each tenant
//! through the API, with real HTTPS receivers for deliveries.

use std::net::SocketAddr;

use mongodb::Database;
use serde_json::{json, Value};

use crate::api_client::Api;
use crate::daemon::{start_with_key, InProcess};
use crate::fixtures::database;

mod alerts;
mod audit;
mod bad_input;
mod isolation;
mod revoke;
mod routing;
mod upgrade;

/// The operator's bootstrap key of every story.
const OPERATOR: &str = "operator-bootstrap-key";

/// herald on a fresh database, the operator's API, and where it listens.
struct Setup {
    db: Database,
    uri: String,
    name: String,
    daemon: InProcess,
    operator: Api,
}

async fn setup(prefix: &str) -> Setup {
    let (uri, name, db) = database(prefix).await;
    let (daemon, operator) = start_with_key(&uri, &name, OPERATOR, |_| {}).await;
    Setup {
        db,
        uri,
        name,
        daemon,
        operator,
    }
}

/// A key made by `by` (201 expected): `(key_id, an API client holding the key)`.
async fn make_key(
    by: &Api,
    listen: SocketAddr,
    namespace: Option<&str>,
    role: &str,
) -> (String, Api) {
    let mut body = json!({"role": role});
    if let Some(namespace) = namespace {
        body["namespace_id"] = json!(namespace);
    }
    let created = by.post("/v1/keys", body).await;
    assert_eq!(created.status, 201, "key not created: {}", created.body);
    let key = created.body["key"].as_str().unwrap();
    assert!(key.starts_with("hk_"), "{key}");
    (
        created.body["key_id"].as_str().unwrap().to_owned(),
        Api::new(listen, Some(key)),
    )
}

/// Creates a webhook (201 expected) and returns the answer.
async fn create_webhook(api: &Api, body: Value) -> Value {
    let response = api.post("/v1/webhooks", body).await;
    assert_eq!(response.status, 201, "create failed: {}", response.body);
    response.body
}

/// The ids of a list answer's results, under `field`.
fn ids(list: &Value, field: &str) -> Vec<String> {
    list["results"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|r| r[field].as_str().unwrap_or_default().to_owned())
        .collect()
}
