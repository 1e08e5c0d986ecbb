//! `herald events publish --type T --data JSON [--event-id ID]`: `POST /v1/events`; and
//! `herald events publish --file events.jsonl`: every line an event, through
//! `POST /v1/events/batch`, a thousand a request.

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
    #[arg(
        long = "type",
        visible_alias = "event-type",
        value_name = "TYPE",
        required_unless_present = "file"
    )]
    pub event_type: Option<String>,
    /// The payload: a JSON object, `@FILE` to read it from a file, or `@-` for stdin.
    #[arg(long, value_name = "JSON", required_unless_present = "file")]
    pub data: Option<String>,
    /// The event id; publishing the same id again delivers once. Generated when absent.
    #[arg(long, value_name = "ID")]
    pub event_id: Option<String>,
    /// Publish every line of FILE (JSON Lines; `-` for stdin), each a `POST /v1/events`
    /// body, through `POST /v1/events/batch`, 1,000 a request.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["event_type", "data", "event_id"])]
    pub file: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs `herald events …`.
pub async fn run(args: EventsArgs) -> Result<(), CliError> {
    match args.command {
        EventsCommand::Publish(publish) => {
            if let Some(file) = &publish.file {
                let events = read_lines(file)?;
                let session = Session::from_connect(&publish.connect, &args.connect)?;
                return publish_many(&session, events).await;
            }
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
                let event_type = publish.event_type.unwrap_or_default();
                emit(&format!("published {id} ({event_type})"));
            }
            Ok(())
        }
    }
}

/// Events a `POST /v1/events/batch` may hold.
const BATCH: usize = 1_000;

/// Publishes `events` a batch at a time; every event's result is printed (`--json`: all
/// of them as `{results}`), and any event refused makes the command fail once all are sent.
async fn publish_many(session: &Session, events: Vec<(usize, Value)>) -> Result<(), CliError> {
    let (lines, events): (Vec<usize>, Vec<Value>) = events.into_iter().unzip();
    let mut results = Vec::with_capacity(events.len());
    for chunk in events.chunks(BATCH) {
        let answer = session
            .api
            .post("/v1/events/batch", &json!({ "events": chunk }))
            .await?;
        results.extend(answer["results"].as_array().cloned().unwrap_or_default());
    }
    // Each refusal as one line: where it is in the file, the event and the API's error.
    let refusals: Vec<String> = results
        .iter()
        .zip(&lines)
        .filter(|(r, _)| r["status"] != 202)
        .map(|(r, line)| {
            format!(
                "line {line}: {} refused: {} (HTTP {} {})",
                r["event_id"].as_str().unwrap_or("-"),
                r["error"]["message"].as_str().unwrap_or_default(),
                r["status"],
                r["error"]["code"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    if session.json {
        emit_json(&json!({ "results": results }));
    } else {
        for result in results.iter().filter(|r| r["status"] == 202) {
            emit(&format!(
                "published {}",
                result["event_id"].as_str().unwrap_or("-")
            ));
        }
        for refusal in &refusals {
            emit(refusal);
        }
    }
    match refusals.first() {
        None => Ok(()),
        Some(first) => Err(CliError::Refused(format!(
            "{} of {} events were refused; the first: {first}",
            refusals.len(),
            results.len()
        ))),
    }
}

/// The events of `--file` (`-`: stdin), one JSON object a line; blank lines are skipped.
fn read_lines(file: &str) -> Result<Vec<(usize, Value)>, CliError> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::Usage(format!("--file -: cannot read stdin: {e}")))?
    } else {
        std::fs::read_to_string(file).map_err(|e| CliError::Usage(format!("--file {file}: {e}")))?
    };
    parse_lines(&text).map_err(|e| CliError::Usage(format!("--file {file}: {e}")))
}

/// JSON Lines: each non-blank line a JSON object, with its line number.
fn parse_lines(text: &str) -> Result<Vec<(usize, Value)>, String> {
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event: Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
        if !event.is_object() {
            return Err(format!("line {}: not a JSON object", i + 1));
        }
        events.push((i + 1, event));
    }
    if events.is_empty() {
        return Err("no events (one JSON object a line)".into());
    }
    Ok(events)
}

/// The request body of `POST /v1/events`, or a usage error naming `--data`.
pub fn publish_body(args: &PublishArgs) -> Result<Value, CliError> {
    let text = read_data(args.data.as_deref().unwrap_or_default())?;
    let data: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("--data is not valid JSON: {e}")))?;
    if !data.is_object() {
        return Err(CliError::Usage(
            "--data must be a JSON object, e.g. '{\"object_id\": \"obj_1\"}'".into(),
        ));
    }
    let mut body = Map::new();
    body.insert(
        "event_type".into(),
        json!(args.event_type.as_deref().unwrap_or_default()),
    );
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
            event_type: Some("object.created".into()),
            data: Some(data.into()),
            event_id: event_id.map(str::to_owned),
            file: None,
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

    #[test]
    fn a_file_is_one_event_a_line() {
        let events =
            parse_lines("{\"event_type\": \"a\"}\n\n  \n{\"event_type\": \"b\"}\n").unwrap();
        assert_eq!(
            events,
            [
                (1, json!({"event_type": "a"})),
                (4, json!({"event_type": "b"}))
            ]
        );
        for (bad, says) in [
            ("{}\n{nope", "line 2: not JSON"),
            ("[1]", "line 1: not a JSON object"),
            ("\n", "no events"),
        ] {
            let error = parse_lines(bad).unwrap_err();
            assert!(error.starts_with(says), "{error}");
        }
    }
}
