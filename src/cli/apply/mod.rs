//! `herald apply -f FILE [--prune] [--dry-run] [--force-headers]`: make the daemon's
//! webhooks match a declarative TOML file (contract §6), infrastructure-as-code style.
//!
//! Three steps: [`load`] parses and validates the whole file before anything is sent, by the
//! API's own rules ([`crate::webhook`]) — [`file`]; [`plan()`] — a pure function of the
//! current webhooks and the file — decides what to create, update and delete ([`plan`]);
//! then each step is sent (or, with `--dry-run`, only printed, [`render`]).
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

mod file;
mod plan;
mod render;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::Args;

pub use file::{check_event_types, load, parse, Desired};
pub use plan::{is_redacted, plan, Current, Diff, Options, Plan, Step};
pub use render::render_plan;

use super::client::segment;
use super::output::{emit, emit_json, string_field};
use super::webhooks::{list_all, Filters, ID_KEYS};
use super::{CliError, ConnectArgs, Session};
use render::{notes, plan_json, summary};

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
