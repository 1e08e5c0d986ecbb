//! `herald apply -f FILE [--prune] [--dry-run] [--force-headers]`: make the daemon's
//! webhooks match a declarative TOML file (contract §6), infrastructure-as-code style.
//!
//! Three steps: [`load`] parses and validates the whole file before anything is sent;
//! [`plan`] — a pure function of the current webhooks and the file — decides what to create,
//! update and delete; then each step is sent (or, with `--dry-run`, only printed).
//!
//! The rules, which also make `apply` idempotent:
//!
//! * **Identity is `name`.** A webhook in the file is created when no webhook has its name,
//!   else compared with it. Two existing webhooks sharing a name the file uses are an error
//!   (which one would be meant?), nothing is changed.
//! * **The file is the whole truth for the fields it governs**: `url`, `event_types`
//!   (compared as a set), `headers`, `rate_limit_per_second` (absent = no limit) and
//!   `enabled` (absent = true). An update sends only the fields that differ (`PATCH`).
//! * **Header values are write-only.** The API redacts header values on read, so a redacted
//!   value cannot be compared; headers count as equal when their names match (case-
//!   insensitively) and every value that *is* readable matches. `--force-headers` re-sends
//!   the file's header map whenever a value cannot be compared — use it after changing only
//!   a header's value.
//! * **Deletion is opt-in and limited to named webhooks.** With `--prune`, webhooks whose
//!   name is not in the file are deleted; webhooks without a name were not created from a
//!   file, so `apply` never touches them.
//! * The signing secret is not part of the file (it does not belong in version control):
//!   new webhooks get a generated secret, which `apply` prints once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::client::segment;
use super::output::{emit, emit_json, note, string_field};
use super::webhooks::{list_all, Filters, ID_KEYS};
use super::{CliError, ConnectArgs, Session};

/// What `herald apply --help` adds after the flags.
const RULES: &str = "\
The file: [[webhooks]] tables with name (the identity), url, event_types, and optionally
headers, rate_limit_per_second (absent: no limit) and enabled (absent: true).

Rules:
  - Webhooks are matched by name; missing ones are created, differing ones get a PATCH of
    the fields that differ, identical ones are left alone (a second apply changes nothing).
  - Header values are redacted by the API, so headers count as equal when their names match;
    after changing only a header value, run apply with --force-headers to re-send them.
  - --prune deletes webhooks whose name is not in the file; webhooks without a name are
    never touched.
  - Secrets are not in the file: new webhooks get a generated one, printed once.";

/// `herald apply`.
#[derive(Debug, Args)]
#[command(after_long_help = RULES)]
pub struct ApplyArgs {
    /// The TOML file of `[[webhooks]]` to apply.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Delete named webhooks that are not in the file.
    #[arg(long)]
    pub prune: bool,
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Re-send header values the API redacts (and so cannot be compared).
    #[arg(long)]
    pub force_headers: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

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
    fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// The `POST /v1/webhooks` body.
    fn create_body(&self) -> Value {
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
}

/// A webhook as the API shows it, reduced to what `apply` compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub id: String,
    pub name: Option<String>,
    pub url: String,
    pub event_types: Vec<String>,
    /// Values may be redacted.
    pub headers: BTreeMap<String, String>,
    pub enabled: bool,
    pub rate_limit_per_second: Option<u64>,
}

impl Current {
    /// Reads a webhook of `GET /v1/webhooks`.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let id = string_field(value, ID_KEYS)
            .ok_or_else(|| format!("a listed webhook has no id: {value}"))?;
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let headers = value["headers"]
            .as_object()
            .map(|map| {
                map.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            id,
            name: value["name"].as_str().map(str::to_owned),
            url: value["url"].as_str().unwrap_or_default().to_owned(),
            event_types: strings(&value["event_types"]),
            headers,
            enabled: value["enabled"].as_bool().unwrap_or(true),
            rate_limit_per_second: value["rate_limit_per_second"].as_u64(),
        })
    }
}

/// Planner switches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub prune: bool,
    pub force_headers: bool,
}

/// One field that differs, for people: `from → to` (header values are never shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub field: &'static str,
    pub from: String,
    pub to: String,
}

/// One change to make.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Create {
        desired: Desired,
    },
    Update {
        id: String,
        name: String,
        diffs: Vec<Diff>,
        /// The `PATCH` body: only the fields that differ.
        patch: Value,
    },
    Delete {
        id: String,
        name: String,
    },
}

/// What `apply` would do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Names of webhooks that already match.
    pub unchanged: Vec<String>,
    /// Named webhooks absent from the file, kept because `--prune` was not given.
    pub kept: Vec<String>,
    /// Webhooks without a name, which `apply` never touches.
    pub unnamed: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    fn count(&self, kind: fn(&Step) -> bool) -> usize {
        self.steps.iter().filter(|s| kind(s)).count()
    }
}

/// Decides the steps that make `current` match `desired`. Pure: no I/O.
///
/// Errors (one line) when a name in the file is shared by several existing webhooks.
pub fn plan(current: &[Current], desired: &[Desired], options: Options) -> Result<Plan, String> {
    let mut by_name: HashMap<&str, Vec<&Current>> = HashMap::new();
    let mut plan = Plan::default();
    for webhook in current {
        match &webhook.name {
            Some(name) => by_name.entry(name.as_str()).or_default().push(webhook),
            None => plan.unnamed += 1,
        }
    }
    for want in desired {
        match by_name.get(want.name.as_str()).map(Vec::as_slice) {
            None | Some([]) => plan.steps.push(Step::Create {
                desired: want.clone(),
            }),
            Some([have]) => {
                let (diffs, patch) = compare(have, want, options);
                if diffs.is_empty() {
                    plan.unchanged.push(want.name.clone());
                } else {
                    plan.steps.push(Step::Update {
                        id: have.id.clone(),
                        name: want.name.clone(),
                        diffs,
                        patch: Value::Object(patch),
                    });
                }
            }
            Some(several) => {
                let ids: Vec<&str> = several.iter().map(|w| w.id.as_str()).collect();
                return Err(format!(
                    "{} webhooks are named {:?} ({}); apply matches webhooks by name — delete or rename all but one first",
                    several.len(),
                    want.name,
                    ids.join(", ")
                ));
            }
        }
    }
    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.name.as_str()).collect();
    for webhook in current {
        let Some(name) = &webhook.name else { continue };
        if wanted.contains(name.as_str()) {
            continue;
        }
        if options.prune {
            plan.steps.push(Step::Delete {
                id: webhook.id.clone(),
                name: name.clone(),
            });
        } else {
            plan.kept.push(name.clone());
        }
    }
    Ok(plan)
}

/// The differing fields of one webhook, and the `PATCH` body that fixes them.
fn compare(have: &Current, want: &Desired, options: Options) -> (Vec<Diff>, Map<String, Value>) {
    let mut diffs = Vec::new();
    let mut patch = Map::new();
    if !same_url(&have.url, &want.url) {
        diffs.push(Diff {
            field: "url",
            from: have.url.clone(),
            to: want.url.clone(),
        });
        patch.insert("url".into(), json!(want.url));
    }
    let have_types: BTreeSet<&str> = have.event_types.iter().map(String::as_str).collect();
    let want_types: BTreeSet<&str> = want.event_types.iter().map(String::as_str).collect();
    if have_types != want_types {
        diffs.push(Diff {
            field: "event_types",
            from: list(have_types),
            to: list(want_types),
        });
        patch.insert("event_types".into(), json!(want.event_types));
    }
    if let Some(diff) = header_diff(&have.headers, &want.headers, options.force_headers) {
        diffs.push(diff);
        patch.insert("headers".into(), json!(want.headers));
    }
    let want_rate = want.rate_limit_per_second.map(u64::from);
    if have.rate_limit_per_second != want_rate {
        let show = |r: Option<u64>| r.map_or_else(|| "none".to_owned(), |r| r.to_string());
        diffs.push(Diff {
            field: "rate_limit_per_second",
            from: show(have.rate_limit_per_second),
            to: show(want_rate),
        });
        patch.insert("rate_limit_per_second".into(), json!(want_rate));
    }
    if have.enabled != want.enabled() {
        diffs.push(Diff {
            field: "enabled",
            from: have.enabled.to_string(),
            to: want.enabled().to_string(),
        });
        patch.insert("enabled".into(), json!(want.enabled()));
    }
    (diffs, patch)
}

/// URLs compare as parsed (`https://h` = `https://h/`), else as text.
fn same_url(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.into_iter().collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// How the API shows a header value it will not reveal. Anything else is taken as the real
/// value (an API that shows values lets `apply` compare them exactly).
pub fn is_redacted(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    value.is_empty() || value.contains("***") || value.contains('…') || lower.contains("redacted")
}

/// Whether the header maps differ, judged on what can be read (see the module doc).
fn header_diff(
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
    force: bool,
) -> Option<Diff> {
    let lower = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect()
    };
    let (have_l, want_l) = (lower(have), lower(want));
    let names = |m: &BTreeMap<String, String>| list(m.keys().map(String::as_str));
    if have_l.keys().ne(want_l.keys()) {
        return Some(Diff {
            field: "headers",
            from: names(have),
            to: names(want),
        });
    }
    let mut changed = Vec::new();
    let mut unreadable = Vec::new();
    for (name, value) in want {
        let current = &have_l[&name.to_ascii_lowercase()];
        if current == value {
            continue;
        }
        if is_redacted(current) {
            unreadable.push(name.as_str());
        } else {
            changed.push(name.as_str());
        }
    }
    if !changed.is_empty() {
        return Some(Diff {
            field: "headers",
            from: names(have),
            to: format!("{} (value changed: {})", names(want), changed.join(", ")),
        });
    }
    if force && !unreadable.is_empty() {
        return Some(Diff {
            field: "headers",
            from: names(have),
            to: format!("{} (values re-sent: --force-headers)", names(want)),
        });
    }
    None
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
        let message = super::client::one_line_str(e.message());
        match line {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        }
    })?;
    validate(&file.webhooks)?;
    Ok(file.webhooks)
}

fn validate(webhooks: &[Desired]) -> Result<(), String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, w) in webhooks.iter().enumerate() {
        let at = |field: &str, problem: &str| {
            format!("webhooks[{i}] ({:?}): {field}: {problem}", w.name)
        };
        if w.name.trim().is_empty() {
            return Err(format!("webhooks[{i}]: name: must not be empty"));
        }
        if let Some(first) = seen.insert(w.name.as_str(), i) {
            return Err(format!(
                "webhooks[{i}]: name: {:?} is already used by webhooks[{first}]; names must be unique",
                w.name
            ));
        }
        match url::Url::parse(&w.url) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some_and(|h| !h.is_empty()) => {}
            Ok(_) => return Err(at("url", "must be an absolute https:// URL")),
            Err(e) => return Err(at("url", &format!("not a URL ({e})"))),
        }
        if w.event_types.is_empty() {
            return Err(at(
                "event_types",
                "must list at least one event type (or \"*\")",
            ));
        }
        if w.event_types.iter().any(|t| t.trim().is_empty()) {
            return Err(at("event_types", "event types must not be empty"));
        }
        let mut header_names = BTreeSet::new();
        for (name, value) in &w.headers {
            if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(at(
                    "headers",
                    &format!("{name:?} is not a legal header name"),
                ));
            }
            if hyper::header::HeaderValue::from_str(value).is_err() {
                return Err(at(
                    "headers",
                    &format!("the value of {name} is not a legal header value"),
                ));
            }
            if !header_names.insert(name.to_ascii_lowercase()) {
                return Err(at(
                    "headers",
                    &format!("{name} appears twice (header names ignore case)"),
                ));
            }
        }
        if w.rate_limit_per_second == Some(0) {
            return Err(at("rate_limit_per_second", "must be at least 1"));
        }
    }
    Ok(())
}

/// Checks every event type of the file against the daemon's catalog, so that a typo is
/// caught before anything changes rather than halfway through.
pub fn check_event_types(desired: &[Desired], catalog: &BTreeSet<String>) -> Result<(), String> {
    for (i, w) in desired.iter().enumerate() {
        let star = w.event_types.iter().any(|t| t == "*");
        if star
            && w.event_types
                .iter()
                .any(|t| t != "*" && !herald_actors::webhook::is_operational(t))
        {
            return Err(format!(
                "webhooks[{i}] ({:?}): event_types: \"*\" subscribes to every event but herald's operational ones; only those may be named beside it",
                w.name
            ));
        }
        if let Some(unknown) = w
            .event_types
            .iter()
            .find(|t| *t != "*" && !catalog.contains(*t))
        {
            return Err(format!(
                "webhooks[{i}] ({:?}): event_types: {unknown:?} is not in the daemon's event catalog (herald webhooks event-types)",
                w.name
            ));
        }
    }
    Ok(())
}

/// Runs `herald apply`.
pub async fn run(args: ApplyArgs) -> Result<(), CliError> {
    let desired = load(&args.file)?;
    let session = Session::from_connect(&args.connect, &ConnectArgs::default())?;
    let catalog: BTreeSet<String> =
        super::output::results(&session.api.get("/v1/webhooks/events").await?)
            .iter()
            .filter_map(|t| t["event_type"].as_str().map(str::to_owned))
            .collect();
    check_event_types(&desired, &catalog)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.file.display())))?;
    let listed = list_all(&session.api, &Filters::default()).await?;
    let current = listed
        .iter()
        .map(Current::from_json)
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::Transport)?;
    let options = Options {
        prune: args.prune,
        force_headers: args.force_headers,
    };
    let plan = plan(&current, &desired, options).map_err(CliError::Refused)?;
    let file = args.file.display().to_string();

    if args.dry_run {
        if session.json {
            emit_json(&plan_json(&plan, None, true));
        } else {
            emit(&render_plan(&plan, &file));
            emit("Dry run: nothing was changed.");
        }
        return Ok(());
    }

    let mut done = Done::default();
    for step in &plan.steps {
        if let Err(e) = execute(&session, step, &mut done, !session.json).await {
            let applied = done.created.len() + done.updated + done.deleted;
            let what = match step {
                Step::Create { desired } => format!("creating {:?}", desired.name),
                Step::Update { name, .. } => format!("updating {name:?}"),
                Step::Delete { name, .. } => format!("deleting {name:?}"),
            };
            return Err(CliError::Refused(format!(
                "{what}: {e}; {applied} earlier change(s) were applied — fix and run apply again"
            )));
        }
    }
    if session.json {
        emit_json(&plan_json(&plan, Some(&done), false));
    } else {
        emit(&summary(&plan, &file));
    }
    notes(&plan, options);
    Ok(())
}

/// What was done, as it happened.
#[derive(Default)]
struct Done {
    /// name → (webhook_id, secret) of each created webhook.
    created: BTreeMap<String, (String, String)>,
    updated: usize,
    deleted: usize,
}

async fn execute(
    session: &Session,
    step: &Step,
    done: &mut Done,
    print: bool,
) -> Result<(), CliError> {
    match step {
        Step::Create { desired } => {
            let created = session
                .api
                .post("/v1/webhooks", &desired.create_body())
                .await?;
            let id = string_field(&created, ID_KEYS).unwrap_or_else(|| "?".into());
            let secret = string_field(&created, &["secret"]).unwrap_or_default();
            if print {
                emit(&format!(
                    "created {} ({id}); signing secret: {secret}",
                    desired.name
                ));
            }
            done.created.insert(desired.name.clone(), (id, secret));
        }
        Step::Update {
            id,
            name,
            diffs,
            patch,
        } => {
            session
                .api
                .patch(&format!("/v1/webhooks/{}", segment(id)), patch)
                .await?;
            if print {
                let fields: Vec<&str> = diffs.iter().map(|d| d.field).collect();
                emit(&format!("updated {name} ({id}): {}", fields.join(", ")));
            }
            done.updated += 1;
        }
        Step::Delete { id, name } => {
            session
                .api
                .delete(&format!("/v1/webhooks/{}", segment(id)))
                .await?;
            if print {
                emit(&format!("deleted {name} ({id})"));
            }
            done.deleted += 1;
        }
    }
    Ok(())
}

fn is_create(s: &Step) -> bool {
    matches!(s, Step::Create { .. })
}
fn is_update(s: &Step) -> bool {
    matches!(s, Step::Update { .. })
}
fn is_delete(s: &Step) -> bool {
    matches!(s, Step::Delete { .. })
}

/// The plan for people: `+ create`, `~ update` with field diffs, `- delete`, then counts.
pub fn render_plan(plan: &Plan, file: &str) -> String {
    if plan.is_empty() {
        return no_changes(plan, file);
    }
    let mut out = Vec::new();
    for step in &plan.steps {
        match step {
            Step::Create { desired } => {
                out.push(format!("+ create {}", desired.name));
                out.push(format!("    url: {}", desired.url));
                out.push(format!(
                    "    event_types: {}",
                    list(desired.event_types.iter().map(String::as_str))
                ));
                if !desired.headers.is_empty() {
                    out.push(format!(
                        "    headers: {}",
                        list(desired.headers.keys().map(String::as_str))
                    ));
                }
                if let Some(rate) = desired.rate_limit_per_second {
                    out.push(format!("    rate_limit_per_second: {rate}"));
                }
                if !desired.enabled() {
                    out.push("    enabled: false".into());
                }
            }
            Step::Update {
                id, name, diffs, ..
            } => {
                out.push(format!("~ update {name} ({id})"));
                for d in diffs {
                    out.push(format!("    {}: {} → {}", d.field, d.from, d.to));
                }
            }
            Step::Delete { id, name } => out.push(format!("- delete {name} ({id})")),
        }
    }
    out.push(format!(
        "Plan: {} to create, {} to update, {} to delete, {} unchanged.",
        plan.count(is_create),
        plan.count(is_update),
        plan.count(is_delete),
        plan.unchanged.len()
    ));
    out.join("\n")
}

fn no_changes(plan: &Plan, file: &str) -> String {
    format!(
        "No changes: {} webhook(s) already match {file}.",
        plan.unchanged.len()
    )
}

fn summary(plan: &Plan, file: &str) -> String {
    if plan.is_empty() {
        return no_changes(plan, file);
    }
    format!(
        "Applied {file}: {} created, {} updated, {} deleted, {} unchanged.",
        plan.count(is_create),
        plan.count(is_update),
        plan.count(is_delete),
        plan.unchanged.len()
    )
}

/// Things worth knowing that are not changes, on stderr.
fn notes(plan: &Plan, options: Options) {
    if !plan.kept.is_empty() {
        note(&format!(
            "Kept {} named webhook(s) not in the file ({}); --prune deletes them.",
            plan.kept.len(),
            plan.kept.join(", ")
        ));
    }
    if options.prune && plan.unnamed > 0 {
        note(&format!(
            "Left {} webhook(s) without a name alone: apply manages named webhooks only.",
            plan.unnamed
        ));
    }
}

/// The plan (and, after applying, its results) for `--json`.
fn plan_json(plan: &Plan, done: Option<&Done>, dry_run: bool) -> Value {
    let mut created = Vec::new();
    let mut updated = Vec::new();
    let mut deleted = Vec::new();
    for step in &plan.steps {
        match step {
            Step::Create { desired } => {
                let mut entry = json!({"name": desired.name, "url": desired.url});
                if let Some((id, secret)) = done.and_then(|d| d.created.get(&desired.name)) {
                    entry["webhook_id"] = json!(id);
                    entry["secret"] = json!(secret);
                }
                created.push(entry);
            }
            Step::Update {
                id, name, diffs, ..
            } => updated.push(json!({
                "name": name,
                "webhook_id": id,
                "changes": diffs.iter().map(|d| json!({"field": d.field, "from": d.from, "to": d.to})).collect::<Vec<_>>(),
            })),
            Step::Delete { id, name } => deleted.push(json!({"name": name, "webhook_id": id})),
        }
    }
    json!({
        "dry_run": dry_run,
        "changed": !plan.is_empty() && !dry_run,
        "created": created,
        "updated": updated,
        "deleted": deleted,
        "unchanged": plan.unchanged,
        "kept": plan.kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(name: &str) -> Desired {
        Desired {
            name: name.into(),
            url: format!("https://hooks.example.com/{name}"),
            event_types: vec!["object.created".into(), "object.deleted".into()],
            headers: BTreeMap::from([("X-Mixpeek-Secret".into(), "s3cret".into())]),
            rate_limit_per_second: Some(20),
            enabled: None,
        }
    }

    /// The webhook as the API would show it after creating `desired`, values redacted.
    fn current(id: &str, d: &Desired) -> Current {
        Current {
            id: id.into(),
            name: Some(d.name.clone()),
            url: d.url.clone(),
            event_types: d.event_types.clone(),
            headers: d
                .headers
                .keys()
                .map(|k| (k.clone(), "***".to_owned()))
                .collect(),
            enabled: d.enabled(),
            rate_limit_per_second: d.rate_limit_per_second.map(u64::from),
        }
    }

    fn updates(plan: &Plan) -> Vec<(&str, Vec<&'static str>, &Value)> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::Update {
                    name, diffs, patch, ..
                } => Some((
                    name.as_str(),
                    diffs.iter().map(|d| d.field).collect(),
                    patch,
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn missing_webhooks_are_created_in_file_order() {
        let plan = plan(&[], &[desired("a"), desired("b")], Options::default()).unwrap();
        assert_eq!(
            plan.steps,
            vec![
                Step::Create {
                    desired: desired("a")
                },
                Step::Create {
                    desired: desired("b")
                }
            ]
        );
        let body = desired("a").create_body();
        assert_eq!(body["name"], "a");
        assert_eq!(body["enabled"], true);
        assert_eq!(body["rate_limit_per_second"], 20);
        assert_eq!(body["headers"]["X-Mixpeek-Secret"], "s3cret");
    }

    #[test]
    fn a_second_apply_plans_nothing() {
        let want = vec![desired("a"), desired("b")];
        let have = vec![current("wh_a", &want[0]), current("wh_b", &want[1])];
        let plan = plan(&have, &want, Options::default()).unwrap();
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan.unchanged, vec!["a", "b"]);
        assert_eq!(
            render_plan(&plan, "w.toml"),
            "No changes: 2 webhook(s) already match w.toml."
        );
    }

    #[test]
    fn only_differing_fields_are_patched() {
        let mut want = desired("a");
        let have = current("wh_a", &want);
        want.url = "https://other.example.com/a".into();
        want.rate_limit_per_second = None;
        let plan = plan(&[have], &[want], Options::default()).unwrap();
        let ups = updates(&plan);
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].1, vec!["url", "rate_limit_per_second"]);
        assert_eq!(
            ups[0].2,
            &json!({"url": "https://other.example.com/a", "rate_limit_per_second": null})
        );
    }

    #[test]
    fn event_types_compare_as_a_set_and_urls_as_parsed() {
        let want = desired("a");
        let mut have = current("wh_a", &want);
        have.event_types.reverse();
        have.url = format!("{}", url::Url::parse(&want.url).unwrap());
        assert!(plan(
            std::slice::from_ref(&have),
            std::slice::from_ref(&want),
            Options::default()
        )
        .unwrap()
        .is_empty());
        have.event_types.pop();
        let plan = plan(&[have], &[want], Options::default()).unwrap();
        assert_eq!(updates(&plan)[0].1, vec!["event_types"]);
        assert_eq!(
            updates(&plan)[0].2["event_types"],
            json!(["object.created", "object.deleted"])
        );
    }

    #[test]
    fn enabled_defaults_to_true() {
        let want = desired("a");
        let mut have = current("wh_a", &want);
        have.enabled = false;
        let plan = plan(&[have], &[want], Options::default()).unwrap();
        assert_eq!(updates(&plan)[0].2, &json!({"enabled": true}));
    }

    #[test]
    fn redacted_header_values_count_as_equal_unless_forced() {
        let want = desired("a");
        let have = current("wh_a", &want);
        assert!(plan(
            std::slice::from_ref(&have),
            std::slice::from_ref(&want),
            Options::default()
        )
        .unwrap()
        .is_empty());
        let forced = Options {
            force_headers: true,
            ..Options::default()
        };
        let plan = plan(&[have], &[want], forced).unwrap();
        assert_eq!(
            updates(&plan)[0].2,
            &json!({"headers": {"X-Mixpeek-Secret": "s3cret"}})
        );
    }

    #[test]
    fn readable_header_values_are_compared_and_never_shown() {
        let want = desired("a");
        let mut have = current("wh_a", &want);
        have.headers
            .insert("X-Mixpeek-Secret".into(), "s3cret".into());
        assert!(plan(
            std::slice::from_ref(&have),
            std::slice::from_ref(&want),
            Options::default()
        )
        .unwrap()
        .is_empty());
        // Even --force-headers has nothing to re-send when every value matches.
        let forced = Options {
            force_headers: true,
            ..Options::default()
        };
        assert!(plan(
            std::slice::from_ref(&have),
            std::slice::from_ref(&want),
            forced
        )
        .unwrap()
        .is_empty());
        have.headers.insert("X-Mixpeek-Secret".into(), "old".into());
        let plan = plan(&[have], &[want], Options::default()).unwrap();
        let text = render_plan(&plan, "w.toml");
        assert!(text.contains("value changed: X-Mixpeek-Secret"), "{text}");
        assert!(!text.contains("s3cret") && !text.contains("old"), "{text}");
    }

    #[test]
    fn header_names_compare_without_case_and_renames_patch_the_whole_map() {
        let want = desired("a");
        let mut have = current("wh_a", &want);
        have.headers = BTreeMap::from([("x-mixpeek-secret".into(), "***".into())]);
        assert!(plan(
            std::slice::from_ref(&have),
            std::slice::from_ref(&want),
            Options::default()
        )
        .unwrap()
        .is_empty());
        have.headers = BTreeMap::from([("X-Other".into(), "***".into())]);
        let plan = plan(&[have], &[want], Options::default()).unwrap();
        assert_eq!(
            updates(&plan)[0].2,
            &json!({"headers": {"X-Mixpeek-Secret": "s3cret"}})
        );
    }

    #[test]
    fn removing_headers_from_the_file_clears_them() {
        let mut want = desired("a");
        let have = current("wh_a", &want);
        want.headers.clear();
        let plan = plan(&[have], &[want], Options::default()).unwrap();
        assert_eq!(updates(&plan)[0].2, &json!({"headers": {}}));
    }

    #[test]
    fn prune_deletes_only_named_webhooks_absent_from_the_file() {
        let want = vec![desired("a")];
        let mut unnamed = current("wh_x", &desired("x"));
        unnamed.name = None;
        let have = vec![
            current("wh_a", &want[0]),
            current("wh_old", &desired("old")),
            unnamed,
        ];
        let kept = plan(&have, &want, Options::default()).unwrap();
        assert!(kept.is_empty());
        assert_eq!(kept.kept, vec!["old"]);
        let pruned = plan(
            &have,
            &want,
            Options {
                prune: true,
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(
            pruned.steps,
            vec![Step::Delete {
                id: "wh_old".into(),
                name: "old".into()
            }]
        );
        assert_eq!(pruned.unnamed, 1);
    }

    #[test]
    fn an_ambiguous_name_is_refused() {
        let want = vec![desired("a")];
        let have = vec![current("wh_1", &want[0]), current("wh_2", &want[0])];
        let error = plan(&have, &want, Options::default()).unwrap_err();
        assert!(error.contains("wh_1, wh_2"), "{error}");
        // A duplicated name the file does not use is no obstacle.
        assert!(plan(&have, &[desired("b")], Options::default()).is_ok());
    }

    #[test]
    fn the_plan_shows_field_diffs() {
        let mut want = desired("a");
        let have = current("wh_a", &want);
        want.rate_limit_per_second = Some(50);
        let plan = plan(&[have], &[want, desired("new")], Options::default()).unwrap();
        let text = render_plan(&plan, "w.toml");
        assert!(text.contains("~ update a (wh_a)"), "{text}");
        assert!(text.contains("rate_limit_per_second: 20 → 50"), "{text}");
        assert!(text.contains("+ create new"), "{text}");
        assert!(
            text.ends_with("Plan: 1 to create, 1 to update, 0 to delete, 0 unchanged."),
            "{text}"
        );
    }

    #[test]
    fn the_file_format_of_the_contract_parses() {
        let text = r#"
[[webhooks]]
name = "search-cache"
url = "https://hooks.example.com/herald"
event_types = ["collection.documents.written", "object.created"]
headers = { X-Mixpeek-Secret = "abc" }
rate_limit_per_second = 20
enabled = true

[[webhooks]]
name = "minimal"
url = "https://hooks.example.com/minimal"
event_types = ["*"]
"#;
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].headers["X-Mixpeek-Secret"], "abc");
        assert_eq!(parsed[1].rate_limit_per_second, None);
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn bad_files_get_one_line_errors() {
        let entry = |extra: &str| {
            format!("[[webhooks]]\nname = \"a\"\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\n{extra}")
        };
        let cases = [
            (entry("urll = \"x\""), "unknown field `urll`"),
            ("[[webhooks]]\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\n".to_owned(), "missing field `name`"),
            ("[[webhooks]]\nname = \"a\"\nevent_types = [\"*\"]\n".to_owned(), "missing field `url`"),
            (format!("{}{}", entry(""), entry("")), "already used by webhooks[0]"),
            (entry("rate_limit_per_second = 0"), "rate_limit_per_second"),
            (entry("rate_limit_per_second = -1"), "line 5"),
            (entry("headers = { \"bad name\" = \"v\" }"), "legal header name"),
            ("[[webhooks]]\nname = \"a\"\nurl = \"http://h.example.com\"\nevent_types = [\"*\"]\n".to_owned(), "https://"),
            ("[[webhooks]]\nname = \"a\"\nurl = \"https://h.example.com\"\nevent_types = []\n".to_owned(), "event_types"),
            ("[[webhooks]]\nname = \"\"\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\n".to_owned(), "name: must not be empty"),
            ("webhooks = [\n".to_owned(), "line"),
            ("[[webhook]]\nname = \"a\"\n".to_owned(), "unknown field `webhook`"),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn event_types_are_checked_against_the_catalog_first() {
        let catalog: BTreeSet<String> = ["object.created".to_owned()].into();
        let mut w = desired("a");
        w.event_types = vec!["object.created".into()];
        assert!(check_event_types(std::slice::from_ref(&w), &catalog).is_ok());
        w.event_types = vec!["*".into()];
        assert!(check_event_types(std::slice::from_ref(&w), &catalog).is_ok());
        w.event_types = vec!["*".into(), "object.created".into()];
        assert!(check_event_types(std::slice::from_ref(&w), &catalog).is_err());
        w.event_types = vec!["object.craeted".into()];
        let error = check_event_types(&[w], &catalog).unwrap_err();
        assert!(error.contains("\"object.craeted\""), "{error}");
    }

    #[test]
    fn current_webhooks_read_from_api_json() {
        let value = json!({
            "webhook_id": "wh_0123456789abcdef", "name": "a", "url": "https://h.example.com/",
            "event_types": ["*"], "headers": {"X-A": "***"}, "enabled": false,
            "rate_limit_per_second": 5, "created_at": "2025-01-01T00:00:00Z"
        });
        let current = Current::from_json(&value).unwrap();
        assert_eq!(current.id, "wh_0123456789abcdef");
        assert_eq!(current.name.as_deref(), Some("a"));
        assert!(!current.enabled);
        assert_eq!(current.rate_limit_per_second, Some(5));
        let bare = Current::from_json(&json!({"id": "wh_1", "url": "https://x"})).unwrap();
        assert!(bare.enabled && bare.headers.is_empty() && bare.name.is_none());
        assert!(Current::from_json(&json!({"url": "https://x"})).is_err());
    }
}
