//! `herald deliveries list|get|retry|recover`: find failed deliveries, read their attempt
//! logs and replay them.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{segment, with_query};
use super::output::{details, emit, emit_json, field, note, render_table, string_field, table};
use super::{CliError, ConnectArgs, PageArgs, Session};

/// Id fields of a delivery, in the order they are looked for.
pub const ID_KEYS: &[&str] = &["delivery_id", "id", "_id"];

/// `herald deliveries [--url …] <command>`.
#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: DeliveriesCommand,
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first as the API orders them (one page unless --all).
    List(ListArgs),
    /// Show one delivery with its attempt log.
    Get(IdArgs),
    /// Re-queue one delivery now.
    Retry(IdArgs),
    /// Re-queue every failed delivery of a webhook since a point in time.
    Recover(RecoverArgs),
}

/// `herald deliveries list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// pending, succeeded or failed.
    #[arg(long)]
    pub status: Option<String>,
    /// Only deliveries to this webhook.
    #[arg(long, value_name = "ID")]
    pub webhook_id: Option<String>,
    /// Only deliveries of this event.
    #[arg(long, value_name = "ID")]
    pub event_id: Option<String>,
    /// Only deliveries of events carrying this task id.
    #[arg(long, value_name = "ID")]
    pub task_id: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// A subcommand taking one delivery id.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// The delivery id (`<event_id>:<webhook_id>`).
    pub delivery_id: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `herald deliveries recover`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The webhook whose failed deliveries to re-queue.
    pub webhook_id: String,
    /// Only deliveries created at or after this RFC 3339 time, e.g. 2025-01-31T00:00:00Z.
    #[arg(long)]
    pub since: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs `herald deliveries …`.
pub async fn run(args: DeliveriesArgs) -> Result<(), CliError> {
    let outer = &args.connect;
    match args.command {
        DeliveriesCommand::List(list) => {
            let session = Session::from_connect(&list.connect, outer)?;
            run_list(&session, &list).await
        }
        DeliveriesCommand::Get(id) => {
            let session = Session::from_connect(&id.connect, outer)?;
            let delivery = session.api.get(&path(&id.delivery_id)).await?;
            if session.json {
                emit_json(&delivery);
            } else {
                emit(&render_table(&details(&delivery, &["attempt_log"])));
                emit("");
                emit(&render_table(&attempt_log(&delivery)));
            }
            Ok(())
        }
        DeliveriesCommand::Retry(id) => {
            let session = Session::from_connect(&id.connect, outer)?;
            let answer = session
                .api
                .post(&format!("{}/retry", path(&id.delivery_id)), &json!({}))
                .await?;
            if session.json {
                emit_json(&answer);
            } else {
                emit(&format!("retry queued for {}", id.delivery_id));
            }
            Ok(())
        }
        DeliveriesCommand::Recover(recover) => {
            let session = Session::from_connect(&recover.connect, outer)?;
            let answer = session
                .api
                .post(
                    &format!("/v1/webhooks/{}/recover", segment(&recover.webhook_id)),
                    &json!({"since": recover.since}),
                )
                .await?;
            if session.json {
                emit_json(&answer);
            } else {
                let count = field(&answer, &["count", "recovered", "requeued"]);
                emit(&format!(
                    "re-queued {count} failed deliveries of {} since {}",
                    recover.webhook_id, recover.since
                ));
            }
            Ok(())
        }
    }
}

fn path(delivery_id: &str) -> String {
    format!("/v1/deliveries/{}", segment(delivery_id))
}

async fn run_list(session: &Session, args: &ListArgs) -> Result<(), CliError> {
    let query = |limit: Option<u32>, cursor: Option<String>| {
        with_query(
            "/v1/deliveries",
            &[
                ("status", args.status.clone()),
                ("webhook_id", args.webhook_id.clone()),
                ("event_id", args.event_id.clone()),
                ("task_id", args.task_id.clone()),
                ("limit", limit.map(|n| n.to_string())),
                ("cursor", cursor),
            ],
        )
    };
    let (deliveries, next_cursor) = args.page.fetch(&session.api, query).await?;
    if session.json {
        emit_json(&json!({"results": deliveries, "next_cursor": next_cursor}));
        return Ok(());
    }
    let mut t = table(&[
        "DELIVERY ID",
        "EVENT TYPE",
        "STATUS",
        "ATTEMPTS",
        "LAST CODE",
        "NEXT ATTEMPT",
        "LAST ERROR",
    ]);
    for delivery in &deliveries {
        t.add_row(vec![
            field(delivery, ID_KEYS),
            field(delivery, &["event_type"]),
            field(delivery, &["status"]),
            field(delivery, &["attempts"]),
            field(delivery, &["last_status_code"]),
            field(delivery, &["next_attempt_at"]),
            short(&field(delivery, &["last_error"]), 60),
        ]);
    }
    emit(&render_table(&t));
    if let Some(cursor) = next_cursor {
        note(&format!(
            "More deliveries: add --cursor {cursor} for the next page, or --all."
        ));
    }
    Ok(())
}

/// The attempt log as a table: when, status code, error, duration.
fn attempt_log(delivery: &Value) -> comfy_table::Table {
    let mut t = table(&["#", "AT", "STATUS CODE", "DURATION MS", "ERROR"]);
    let log = delivery["attempt_log"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (n, attempt) in log.iter().enumerate() {
        t.add_row(vec![
            (n + 1).to_string(),
            field(attempt, &["at"]),
            field(attempt, &["status_code"]),
            field(attempt, &["duration_ms"]),
            field(attempt, &["error"]),
        ]);
    }
    if log.is_empty() {
        let id = string_field(delivery, ID_KEYS).unwrap_or_default();
        t.add_row(vec!["-", "no attempts recorded", "", "", &id]);
    }
    t
}

fn short(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max_chars - 1).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_log_lists_every_attempt() {
        let delivery = json!({
            "delivery_id": "evt_1:wh_1",
            "attempt_log": [
                {"at": "2025-01-01T00:00:00Z", "status_code": 500, "duration_ms": 12},
                {"at": "2025-01-01T00:00:01Z", "error": "timed out", "duration_ms": 2000},
            ]
        });
        let text = render_table(&attempt_log(&delivery));
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("500") && text.contains("timed out"), "{text}");
    }

    #[test]
    fn long_errors_are_shortened() {
        assert_eq!(short("abc", 5), "abc");
        assert_eq!(short("abcdefgh", 5), "abcd…");
    }
}
