//! `herald audit`: the audit trail of API writes (`GET /v1/audit`), oldest first, with its
//! filters; `--json` prints the API's answer.

use clap::Args;
use serde_json::{json, Value};

use super::client::with_query;
use super::output::{emit, emit_json, field, note, render_table, table};
use super::{CliError, ConnectArgs, PageArgs, Session};

/// `herald audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this action, e.g. webhook.create, key.revoke.
    #[arg(long)]
    pub action: Option<String>,
    /// Only objects of this type: webhook, connection, key, delivery.
    #[arg(long, value_name = "TYPE")]
    pub object_type: Option<String>,
    /// Only this object.
    #[arg(long, value_name = "ID")]
    pub object_id: Option<String>,
    /// Only writes made with this key (`key_…`, or `operator` for --api-key).
    #[arg(long, value_name = "ID")]
    pub key_id: Option<String>,
    /// Only this namespace.
    #[arg(long, value_name = "ID")]
    pub namespace: Option<String>,
    /// Only records at or after this RFC 3339 time, e.g. 2026-01-31T00:00:00Z.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only records before this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs `herald audit`.
pub async fn run(args: AuditArgs) -> Result<(), CliError> {
    let session = Session::from_connect(&args.connect, &ConnectArgs::default())?;
    let query = |limit: Option<u32>, cursor: Option<String>| {
        with_query(
            "/v1/audit",
            &[
                ("action", args.action.clone()),
                ("object_type", args.object_type.clone()),
                ("object_id", args.object_id.clone()),
                ("key_id", args.key_id.clone()),
                ("namespace_id", args.namespace.clone()),
                ("since", args.since.clone()),
                ("until", args.until.clone()),
                ("limit", limit.map(|n| n.to_string())),
                ("cursor", cursor),
            ],
        )
    };
    let (records, next_cursor) = args.page.fetch(&session.api, query).await?;
    if session.json {
        emit_json(&json!({"results": records, "next_cursor": next_cursor}));
        return Ok(());
    }
    let mut t = table(&["AT", "KEY", "ACTION", "OBJECT", "NAMESPACE", "CHANGED"]);
    for record in &records {
        t.add_row(vec![
            field(record, &["at"]),
            record["key_id"].as_str().unwrap_or("-").to_owned(),
            field(record, &["action"]),
            field(record, &["object_id"]),
            record["namespace_id"].as_str().unwrap_or("-").to_owned(),
            changed(&record["changed_fields"]),
        ]);
    }
    emit(&render_table(&t));
    if let Some(cursor) = next_cursor {
        note(&format!(
            "More records: add --cursor {cursor} for the next page, or --all."
        ));
    }
    Ok(())
}

/// The names of the changed fields, sorted and comma-separated (values are in `--json`).
fn changed(fields: &Value) -> String {
    match fields.as_object() {
        Some(fields) if !fields.is_empty() => {
            let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
            names.sort_unstable();
            names.join(",")
        }
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_fields_show_by_name() {
        assert_eq!(changed(&json!({"url": "x", "name": "y"})), "name,url");
        assert_eq!(changed(&json!({})), "-");
        assert_eq!(changed(&Value::Null), "-");
    }
}
