//! The apply file: `[[webhooks]]` tables, read and judged whole before anything is sent.
//!
//! Each entry is judged by the API's own rules ([`crate::webhook::validate`], as a client),
//! so a file that loads is one the API accepts: the same URL, header and rate-limit rules,
//! the same limits. Only the event catalog waits for the daemon ([`check_event_types`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::cli::CliError;
use crate::webhook::{self, Catalog, Origin, Rules, WebhookFields};

/// The file: `[[webhooks]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyFile {
    #[serde(default)]
    webhooks: Vec<Desired>,
}

/// One `[[webhooks]]` entry: how a webhook should be.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Desired {
    /// The identity used for matching.
    pub name: String,
    pub url: String,
    pub event_types: Vec<String>,
    /// Absent means no headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Absent means no limit.
    pub rate_limit_per_second: Option<u32>,
    /// Absent means enabled.
    pub enabled: Option<bool>,
}

impl Desired {
    pub(super) fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// The `POST /v1/webhooks` body.
    pub(super) fn create_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("name".into(), json!(self.name));
        body.insert("url".into(), json!(self.url));
        body.insert("event_types".into(), json!(self.event_types));
        if !self.headers.is_empty() {
            body.insert("headers".into(), json!(self.headers));
        }
        if let Some(rate) = self.rate_limit_per_second {
            body.insert("rate_limit_per_second".into(), json!(rate));
        }
        body.insert("enabled".into(), json!(self.enabled()));
        Value::Object(body)
    }

    /// The fields the webhook model judges.
    fn fields(&self) -> WebhookFields {
        WebhookFields {
            url: Some(self.url.clone()),
            event_types: Some(self.event_types.clone()),
            name: Some(self.name.clone()),
            headers: Some(self.headers.clone().into_iter().collect()),
            secret: None,
            rate_limit_per_second: self.rate_limit_per_second.map(i64::from),
        }
    }
}

/// Reads and validates the file; every problem is one line naming the file and the entry.
pub fn load(path: &Path) -> Result<Vec<Desired>, CliError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read {shown}: {e}")))?;
    let desired = parse(&text).map_err(|e| CliError::Usage(format!("{shown}: {e}")))?;
    Ok(desired)
}

/// Parses and validates the text of an apply file.
pub fn parse(text: &str) -> Result<Vec<Desired>, String> {
    let file: ApplyFile = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        let message = crate::text::one_line(e.message());
        match line {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        }
    })?;
    validate(&file.webhooks)?;
    Ok(file.webhooks)
}

/// Names are unique in the file; every entry passes the API's rules but the catalog's.
fn validate(webhooks: &[Desired]) -> Result<(), String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let rules = Rules {
        origin: Origin::Client,
        catalog: None,
    };
    for (i, w) in webhooks.iter().enumerate() {
        if let Some(first) = seen.insert(w.name.as_str(), i) {
            return Err(format!(
                "webhooks[{i}]: name: {:?} is already used by webhooks[{first}]; names must be unique",
                w.name
            ));
        }
        webhook::validate(&mut w.fields(), &rules)
            .map_err(|errors| entry_error(i, w, &errors[0]))?;
    }
    Ok(())
}

fn entry_error(i: usize, w: &Desired, error: &webhook::FieldError) -> String {
    format!("webhooks[{i}] ({:?}): {error}", w.name)
}

/// Checks every event type of the file against the daemon's catalog, so that a typo is
/// caught before anything changes rather than halfway through.
pub fn check_event_types(desired: &[Desired], catalog: &BTreeSet<String>) -> Result<(), String> {
    let contains = |t: &str| catalog.contains(t);
    let rules = Rules {
        origin: Origin::Client,
        catalog: Some(Catalog {
            contains: &contains,
            called: "the daemon's event catalog (herald webhooks event-types)",
        }),
    };
    for (i, w) in desired.iter().enumerate() {
        let mut fields = WebhookFields {
            event_types: Some(w.event_types.clone()),
            ..WebhookFields::default()
        };
        webhook::validate(&mut fields, &rules).map_err(|errors| entry_error(i, w, &errors[0]))?;
    }
    Ok(())
}
