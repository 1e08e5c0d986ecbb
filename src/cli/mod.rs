//! The client subcommands of the `herald` binary (contract §6, §7): `webhooks`, `events`,
//! `deliveries`, `apply`, `cluster`, `keys` and `audit` talk to a running daemon's HTTP API.
//!
//! Each subcommand parses its flags (clap derive, declared here and in the submodules),
//! resolves where the daemon is ([`ConnectArgs`]: `--url`/`HERALD_URL`, `--api-key`/
//! `HERALD_API_KEY`), sends its requests through [`client::ApiClient`] and prints either a
//! human-readable table ([`output`]) or, with `--json`, the API's JSON. Every failure is a
//! [`CliError`] that [`finish`] prints as one line, `herald: …`, with a non-zero exit code.

pub mod apply;
pub mod audit;
pub mod client;
pub mod cluster;
pub mod deliveries;
pub mod events;
pub mod keys;
pub mod output;
pub mod webhooks;

use std::process::ExitCode;

use clap::Args;

use client::ApiClient;

/// Where the daemon listens unless `--url` or `HERALD_URL` says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Why a client subcommand failed. `Display` is one line, without the `herald: ` prefix.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags or input files, found before anything was sent (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The daemon could not be reached, or its answer could not be read (exit code 1).
    #[error("{0}")]
    Transport(String),
    /// The daemon's state does not allow the operation (exit code 1).
    #[error("{0}")]
    Refused(String),
    /// The daemon answered with an error (exit code 1).
    #[error("{message} (HTTP {status} {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Transport(_) | CliError::Refused(_) | CliError::Api { .. } => {
                ExitCode::FAILURE
            }
        }
    }
}

/// Prints a failure as one line on stderr and turns the outcome into the exit code.
pub fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {}", crate::text::one_line(&e.to_string()));
            e.exit_code()
        }
    }
}

/// Paging flags shared by the list subcommands.
#[derive(Debug, Clone, Default, Args)]
pub struct PageArgs {
    /// Page size.
    #[arg(long)]
    pub limit: Option<u32>,
    /// Continue from the `next_cursor` of an earlier page.
    #[arg(long, conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Follow cursors and list everything that matches.
    #[arg(long)]
    pub all: bool,
}

impl PageArgs {
    /// The page asked for (`--limit`, `--cursor`), or every page with `--all`: the results
    /// and the next page's cursor (none after `--all`). `path(limit, cursor)` builds a
    /// page's path with the listing's own filters.
    pub async fn fetch(
        &self,
        api: &ApiClient,
        path: impl Fn(Option<u32>, Option<String>) -> String,
    ) -> Result<(Vec<serde_json::Value>, Option<String>), CliError> {
        if self.all {
            let all = api.list_all(|c| path(Some(webhooks::PAGE_SIZE), c)).await?;
            return Ok((all, None));
        }
        let page = api.get(&path(self.limit, self.cursor.clone())).await?;
        let next = page["next_cursor"].as_str().map(str::to_owned);
        Ok((output::results(&page).to_vec(), next))
    }
}

/// How to reach the daemon: accepted after every client subcommand, and before the
/// subcommand of a group (`herald webhooks --url … list`); the innermost one wins.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectArgs {
    /// Base URL of herald's API [env: HERALD_URL] [default: http://127.0.0.1:8080]
    #[arg(long = "url", visible_alias = "server", value_name = "URL")]
    pub url: Option<String>,
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// The API key and the output format; shared by every client subcommand.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// Bearer key of the daemon's /v1 routes [env: HERALD_API_KEY]
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Print the API's JSON instead of tables (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// A resolved connection: the client, and whether to print JSON.
pub struct Session {
    pub api: ApiClient,
    pub json: bool,
}

impl Session {
    /// Resolves flags (innermost first), then `HERALD_URL`/`HERALD_API_KEY`, then the
    /// default URL. Environment variables are read here rather than by clap so that a flag
    /// given at the group level still beats them.
    pub fn open(url: &[Option<&str>], auth: &[&AuthArgs]) -> Result<Self, CliError> {
        let url = url
            .iter()
            .flatten()
            .map(|s| s.to_string())
            .next()
            .or_else(|| env_var("HERALD_URL"))
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        let api_key = auth
            .iter()
            .find_map(|a| a.api_key.clone())
            .or_else(|| env_var("HERALD_API_KEY"));
        let json = auth.iter().any(|a| a.json);
        Ok(Self {
            api: ApiClient::new(&url, api_key)?,
            json,
        })
    }

    /// From an inner (subcommand) and an outer (group) set of connection flags.
    pub fn from_connect(inner: &ConnectArgs, outer: &ConnectArgs) -> Result<Self, CliError> {
        Self::open(
            &[inner.url.as_deref(), outer.url.as_deref()],
            &[&inner.auth, &outer.auth],
        )
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
