//! The plan: which webhooks to create, update and delete so that the daemon's match the
//! file. A pure function of the current webhooks and the file, so it is tested without a
//! daemon.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Map, Value};

use super::file::Desired;
use crate::cli::output::string_field;
use crate::cli::webhooks::ID_KEYS;

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

    pub(super) fn count(&self, kind: fn(&Step) -> bool) -> usize {
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

pub(super) fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
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
