//! What `apply` shows: the plan for people (`+ create`, `~ update`, `- delete`), the
//! summary after applying, the notes on stderr, and the same for `--json`.

use serde_json::{json, Value};

use super::plan::{list, Options, Plan, Step};
use super::Done;
use crate::cli::output::note;

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

pub(super) fn summary(plan: &Plan, file: &str) -> String {
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
pub(super) fn notes(plan: &Plan, options: Options) {
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
pub(super) fn plan_json(plan: &Plan, done: Option<&Done>, dry_run: bool) -> Value {
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
