//! `herald keys create|list|revoke`: the API keys of `/v1/keys`.
//!
//! `create` prints the new key once (it cannot be shown again: herald keeps only its
//! hash), on a line of its own so that scripts can capture it; `--json` prints the API's
//! answer. Managing keys needs an admin key.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{segment, with_query};
use super::output::{emit, emit_json, field, note, render_table, table};
use super::{CliError, ConnectArgs, PageArgs, Session};

/// `herald keys [--url …] <command>`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key; the key is printed once.
    Create(CreateArgs),
    /// List API keys (never the keys themselves).
    List(ListArgs),
    /// Revoke an API key: every daemon refuses it from the next request on.
    Revoke(RevokeArgs),
}

/// `herald keys create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// admin (reads and writes) or read (reads only).
    #[arg(long, value_parser = ["admin", "read"])]
    pub role: String,
    /// The one namespace the key may see and change; omit for every namespace.
    #[arg(long, value_name = "ID")]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `herald keys list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only keys of this namespace.
    #[arg(long, value_name = "ID")]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `herald keys revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The key's id (`key_…`, from `herald keys list`), not the key.
    pub key_id: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs `herald keys …`.
pub async fn run(args: KeysArgs) -> Result<(), CliError> {
    let outer = &args.connect;
    match args.command {
        KeysCommand::Create(create) => {
            let session = Session::from_connect(&create.connect, outer)?;
            let mut body = json!({"role": create.role});
            if let Some(namespace) = &create.namespace {
                body["namespace_id"] = json!(namespace);
            }
            let created = session.api.post("/v1/keys", &body).await?;
            if session.json {
                emit_json(&created);
            } else {
                emit(&field(&created, &["key"]));
                note(&format!(
                    "Created {} ({}, {}). Keep the key above: it is not shown again.",
                    field(&created, &["key_id"]),
                    field(&created, &["role"]),
                    namespace_label(&created),
                ));
            }
            Ok(())
        }
        KeysCommand::List(list) => {
            let session = Session::from_connect(&list.connect, outer)?;
            run_list(&session, &list).await
        }
        KeysCommand::Revoke(revoke) => {
            let session = Session::from_connect(&revoke.connect, outer)?;
            session
                .api
                .delete(&format!("/v1/keys/{}", segment(&revoke.key_id)))
                .await?;
            if session.json {
                emit_json(&json!({"key_id": revoke.key_id, "revoked": true}));
            } else {
                emit(&format!("revoked {}", revoke.key_id));
            }
            Ok(())
        }
    }
}

fn namespace_label(key: &Value) -> String {
    match key["namespace_id"].as_str() {
        Some(namespace) => format!("namespace {namespace}"),
        None => "every namespace".to_owned(),
    }
}

async fn run_list(session: &Session, args: &ListArgs) -> Result<(), CliError> {
    let query = |limit: Option<u32>, cursor: Option<String>| {
        with_query(
            "/v1/keys",
            &[
                ("namespace_id", args.namespace.clone()),
                ("limit", limit.map(|n| n.to_string())),
                ("cursor", cursor),
            ],
        )
    };
    let (keys, next_cursor) = args.page.fetch(&session.api, query).await?;
    if session.json {
        emit_json(&json!({"results": keys, "next_cursor": next_cursor}));
        return Ok(());
    }
    let mut t = table(&[
        "KEY ID",
        "PREFIX",
        "ROLE",
        "NAMESPACE",
        "CREATED",
        "LAST USED",
        "REVOKED",
    ]);
    for key in &keys {
        t.add_row(vec![
            field(key, &["key_id"]),
            field(key, &["prefix"]),
            field(key, &["role"]),
            key["namespace_id"].as_str().unwrap_or("*").to_owned(),
            field(key, &["created_at"]),
            field(key, &["last_used_at"]),
            field(key, &["revoked_at"]),
        ]);
    }
    emit(&render_table(&t));
    if let Some(cursor) = next_cursor {
        note(&format!(
            "More keys: add --cursor {cursor} for the next page, or --all."
        ));
    }
    Ok(())
}
