//! `herald webhooks create|list|get|delete|rotate-secret|event-types`: the webhook routes.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::client::{segment, with_query, ApiClient};
use super::output::{details, emit, emit_json, field, note, render_table, results, table};
use super::{AuthArgs, CliError, ConnectArgs, PageArgs, Session};

/// The largest page asked for when following cursors.
pub const PAGE_SIZE: u32 = 100;

/// Id fields of a webhook, in the order they are looked for.
pub const ID_KEYS: &[&str] = &["webhook_id", "id", "_id"];

/// `herald webhooks [--url …] <command>`.
#[derive(Debug, Args)]
pub struct WebhooksArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: WebhooksCommand,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Subscribe an HTTPS endpoint to event types; prints the signing secret.
    Create(CreateArgs),
    /// List webhooks (one page unless --all).
    List(ListArgs),
    /// Show one webhook.
    Get(IdArgs),
    /// Delete a webhook (idempotent).
    Delete(IdArgs),
    /// Issue a new signing secret; the old one keeps signing for 24 h.
    RotateSecret(IdArgs),
    /// The event catalog: every event type a webhook can subscribe to.
    EventTypes(ConnectArgs),
}

/// `herald webhooks create`. Here `--url` is the endpoint's URL, so the daemon's URL is
/// `--server` (or `herald webhooks --url DAEMON create …`, or `HERALD_URL`).
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The endpoint: an absolute https:// URL.
    #[arg(long = "url", value_name = "HTTPS_URL")]
    pub endpoint: String,
    /// Event type to subscribe to; repeat or comma-separate; `*` for all.
    #[arg(
        long = "event-type",
        value_name = "TYPE",
        required = true,
        value_delimiter = ','
    )]
    pub event_types: Vec<String>,
    /// A name (the identity `herald apply` matches on).
    #[arg(long)]
    pub name: Option<String>,
    /// A header sent with every delivery, as NAME=VALUE; repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// The signing secret (`whsec_` + base64); generated when absent.
    #[arg(long)]
    pub secret: Option<String>,
    /// At most this many deliveries per second to this endpoint.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate_limit: Option<u32>,
    /// Create it disabled (nothing is delivered until it is enabled).
    #[arg(long)]
    pub disabled: bool,
    /// The namespace it belongs to (it then receives only that namespace's events); a
    /// namespaced API key puts it in its own.
    #[arg(long, value_name = "ID")]
    pub namespace: Option<String>,
    /// Base URL of herald's API [env: HERALD_URL] [default: http://127.0.0.1:8080]
    #[arg(long = "server", alias = "api-url", value_name = "URL")]
    pub server: Option<String>,
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `herald webhooks list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only webhooks subscribed to this event type.
    #[arg(long, value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only enabled (true) or disabled (false) webhooks.
    #[arg(long, value_name = "BOOL")]
    pub enabled: Option<bool>,
    /// Only webhooks of this namespace (a namespaced key always lists its own).
    #[arg(long, value_name = "ID")]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// A subcommand taking one webhook id.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// The webhook id (`wh_…`).
    pub webhook_id: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `NAME=VALUE` → (name, value).
pub fn parse_header(raw: &str) -> Result<(String, String), String> {
    let (name, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("{raw:?} is not NAME=VALUE"))?;
    let name = name.trim();
    if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("{name:?} is not a legal header name"));
    }
    if hyper::header::HeaderValue::from_str(value).is_err() {
        return Err(format!("the value of {name} is not a legal header value"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// Runs `herald webhooks …`.
pub async fn run(args: WebhooksArgs) -> Result<(), CliError> {
    let outer = &args.connect;
    match args.command {
        WebhooksCommand::Create(create) => {
            let session = Session::open(
                &[create.server.as_deref(), outer.url.as_deref()],
                &[&create.auth, &outer.auth],
            )?;
            run_create(&session, create).await
        }
        WebhooksCommand::List(list) => {
            let session = Session::from_connect(&list.connect, outer)?;
            run_list(&session, &list).await
        }
        WebhooksCommand::Get(id) => {
            let session = Session::from_connect(&id.connect, outer)?;
            let webhook = session.api.get(&path(&id.webhook_id)).await?;
            if session.json {
                emit_json(&webhook);
            } else {
                emit(&render_table(&details(&webhook, &[])));
            }
            Ok(())
        }
        WebhooksCommand::Delete(id) => {
            let session = Session::from_connect(&id.connect, outer)?;
            session.api.delete(&path(&id.webhook_id)).await?;
            if session.json {
                emit_json(&json!({"webhook_id": id.webhook_id, "deleted": true}));
            } else {
                emit(&format!("deleted {}", id.webhook_id));
            }
            Ok(())
        }
        WebhooksCommand::RotateSecret(id) => {
            let session = Session::from_connect(&id.connect, outer)?;
            let answer = session
                .api
                .post(
                    &format!("{}/rotate-secret", path(&id.webhook_id)),
                    &json!({}),
                )
                .await?;
            if session.json {
                emit_json(&answer);
            } else {
                emit(&render_table(&details(&answer, &[])));
                note("The previous secret keeps signing for 24 h; switch receivers over before then.");
            }
            Ok(())
        }
        WebhooksCommand::EventTypes(connect) => {
            let session = Session::from_connect(&connect, outer)?;
            let catalog = session.api.get("/v1/webhooks/events").await?;
            if session.json {
                emit_json(&catalog);
            } else {
                let mut t = table(&["EVENT TYPE", "DESCRIPTION", "PAYLOAD FIELDS"]);
                for entry in results(&catalog) {
                    t.add_row(vec![
                        field(entry, &["event_type"]),
                        field(entry, &["description"]),
                        field(entry, &["payload_fields"]),
                    ]);
                }
                emit(&render_table(&t));
            }
            Ok(())
        }
    }
}

fn path(webhook_id: &str) -> String {
    format!("/v1/webhooks/{}", segment(webhook_id))
}

async fn run_create(session: &Session, args: CreateArgs) -> Result<(), CliError> {
    let mut body = Map::new();
    body.insert("url".into(), json!(args.endpoint));
    body.insert("event_types".into(), json!(args.event_types));
    if let Some(name) = args.name {
        body.insert("name".into(), json!(name));
    }
    if !args.headers.is_empty() {
        let headers: BTreeMap<String, String> = args.headers.into_iter().collect();
        body.insert("headers".into(), json!(headers));
    }
    if let Some(secret) = args.secret {
        body.insert("secret".into(), json!(secret));
    }
    if let Some(rate) = args.rate_limit {
        body.insert("rate_limit_per_second".into(), json!(rate));
    }
    if args.disabled {
        body.insert("enabled".into(), json!(false));
    }
    if let Some(namespace) = args.namespace {
        body.insert("namespace_id".into(), json!(namespace));
    }
    let created = session
        .api
        .post("/v1/webhooks", &Value::Object(body))
        .await?;
    if session.json {
        emit_json(&created);
    } else {
        emit(&render_table(&details(&created, &[])));
        note("Store the secret now: receivers need it to verify signatures.");
    }
    Ok(())
}

async fn run_list(session: &Session, args: &ListArgs) -> Result<(), CliError> {
    let filters = Filters {
        event_type: args.event_type.clone(),
        enabled: args.enabled,
        namespace_id: args.namespace.clone(),
    };
    let (webhooks, next_cursor) = if args.page.all {
        (list_all(&session.api, &filters).await?, None)
    } else {
        let page = session
            .api
            .get(&list_path(
                &filters,
                args.page.limit,
                args.page.cursor.clone(),
            ))
            .await?;
        let next = page["next_cursor"].as_str().map(str::to_owned);
        (results(&page).to_vec(), next)
    };
    if session.json {
        emit_json(&json!({"results": webhooks, "next_cursor": next_cursor}));
        return Ok(());
    }
    let mut t = table(&[
        "WEBHOOK ID",
        "NAME",
        "URL",
        "EVENT TYPES",
        "ENABLED",
        "RATE LIMIT",
    ]);
    for webhook in &webhooks {
        t.add_row(vec![
            field(webhook, ID_KEYS),
            field(webhook, &["name"]),
            field(webhook, &["url"]),
            field(webhook, &["event_types"]),
            field(webhook, &["enabled"]),
            field(webhook, &["rate_limit_per_second"]),
        ]);
    }
    emit(&render_table(&t));
    if let Some(cursor) = next_cursor {
        note(&format!(
            "More webhooks: add --cursor {cursor} for the next page, or --all."
        ));
    }
    Ok(())
}

/// The list filters of `GET /v1/webhooks`.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub event_type: Option<String>,
    pub enabled: Option<bool>,
    pub namespace_id: Option<String>,
}

fn list_path(filters: &Filters, limit: Option<u32>, cursor: Option<String>) -> String {
    with_query(
        "/v1/webhooks",
        &[
            ("event_type", filters.event_type.clone()),
            ("enabled", filters.enabled.map(|b| b.to_string())),
            ("namespace_id", filters.namespace_id.clone()),
            ("limit", limit.map(|n| n.to_string())),
            ("cursor", cursor),
        ],
    )
}

/// Every webhook matching `filters`, following `next_cursor` to the end.
pub async fn list_all(api: &ApiClient, filters: &Filters) -> Result<Vec<Value>, CliError> {
    api.list_all(|cursor| list_path(filters, Some(PAGE_SIZE), cursor))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_name_equals_value() {
        assert_eq!(
            parse_header("X-Mixpeek-Secret=a=b").unwrap(),
            ("X-Mixpeek-Secret".into(), "a=b".into())
        );
        assert!(parse_header("no-equals").is_err());
        assert!(parse_header("bad name=v").is_err());
        assert!(parse_header("X-A=line\nbreak").is_err());
    }

    #[test]
    fn ids_are_path_segments() {
        assert_eq!(
            path("wh_0123456789abcdef"),
            "/v1/webhooks/wh_0123456789abcdef"
        );
        assert_eq!(path("a/b"), "/v1/webhooks/a%2Fb");
    }
}
