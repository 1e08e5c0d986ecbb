//! `herald events publish --type T --data JSON [--event-id ID]`: `POST /v1/events`.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::output::{emit, emit_json, string_field};
use super::{CliError, ConnectArgs, Session};

/// `herald events [--url …] <command>`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: EventsCommand,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Publish an event to every subscribed webhook (idempotent on --event-id).
    Publish(PublishArgs),
}

/// `herald events publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The event type, e.g. object.created.
    #[arg(long = "type", visible_alias = "event-type", value_name = "TYPE")]
    pub event_type: String,
    /// The payload: a JSON object, `@FILE` to read it from a file, or `@-` for stdin.
    #[arg(long, value_name = "JSON")]
    pub data: String,
    /// The event id; publishing the same id again delivers once. Generated when absent.
    #[arg(long, value_name = "ID")]
    pub event_id: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs `herald events …`.
pub async fn run(args: EventsArgs) -> Result<(), CliError> {
    match args.command {
        EventsCommand::Publish(publish) => {
            // Validate the input before connecting: a typo should not need a daemon.
            let body = publish_body(&publish)?;
            let session = Session::from_connect(&publish.connect, &args.connect)?;
            let answer = session.api.post("/v1/events", &body).await?;
            if session.json {
                emit_json(&answer);
            } else {
                let id = string_field(&answer, &["event_id", "id"])
                    .or(publish.event_id)
                    .unwrap_or_else(|| "-".into());
                emit(&format!("published {id} ({})", publish.event_type));
            }
            Ok(())
        }
    }
}

/// The request body of `POST /v1/events`, or a usage error naming `--data`.
pub fn publish_body(args: &PublishArgs) -> Result<Value, CliError> {
    let text = read_data(&args.data)?;
    let data: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("--data is not valid JSON: {e}")))?;
    if !data.is_object() {
        return Err(CliError::Usage(
            "--data must be a JSON object, e.g. '{\"object_id\": \"obj_1\"}'".into(),
        ));
    }
    let mut body = Map::new();
    body.insert("event_type".into(), json!(args.event_type));
    body.insert("data".into(), data);
    if let Some(id) = &args.event_id {
        body.insert("event_id".into(), json!(id));
    }
    Ok(Value::Object(body))
}

/// `--data` itself, or the contents of `@FILE` / `@-` (stdin).
fn read_data(raw: &str) -> Result<String, CliError> {
    match raw.strip_prefix('@') {
        None => Ok(raw.to_owned()),
        Some("-") => std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::Usage(format!("--data @-: cannot read stdin: {e}"))),
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("--data @{path}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(data: &str, event_id: Option<&str>) -> PublishArgs {
        PublishArgs {
            event_type: "object.created".into(),
            data: data.into(),
            event_id: event_id.map(str::to_owned),
            connect: ConnectArgs::default(),
        }
    }

    #[test]
    fn the_body_carries_type_data_and_id() {
        let body = publish_body(&args(r#"{"object_id":"obj_1"}"#, Some("evt_1"))).unwrap();
        assert_eq!(
            body,
            json!({"event_type": "object.created", "data": {"object_id": "obj_1"}, "event_id": "evt_1"})
        );
        let body = publish_body(&args("{}", None)).unwrap();
        assert!(body.get("event_id").is_none());
    }

    #[test]
    fn bad_data_is_a_usage_error_naming_the_flag() {
        for bad in ["{not json", "[1,2]", "\"text\""] {
            let error = publish_body(&args(bad, None)).unwrap_err();
            assert!(matches!(error, CliError::Usage(_)));
            assert!(error.to_string().starts_with("--data"), "{error}");
        }
    }

    #[test]
    fn data_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("payload.json");
        std::fs::write(&file, r#"{"a": 1}"#).unwrap();
        let body = publish_body(&args(&format!("@{}", file.display()), None)).unwrap();
        assert_eq!(body["data"], json!({"a": 1}));
        let missing = publish_body(&args("@/nonexistent/payload.json", None)).unwrap_err();
        assert!(missing.to_string().starts_with("--data @"), "{missing}");
    }
}
