//! The command-line client, as an operator uses it: the real `herald` binary against a
//! running herald (in-process) — managing webhooks, publishing events, replaying failed
//! deliveries, keeping webhooks in a file with `herald apply`, and failing with one clear
//! line when something is wrong.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mongodb::Database;
use serde_json::Value;

use crate::api_client::Api;
use crate::daemon::{test_config, InProcess};
use crate::fixtures;
use crate::support::Receiver;

mod apply;
mod cluster;
mod connect;
mod deliveries;
mod errors;
mod events;
mod keys;
mod webhooks;

const KEY: &str = "cli-test-key";

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "herald failed: {self:#?}");
        self
    }

    /// The stdout as JSON (`--json`).
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Asserts a failure: non-zero exit and exactly one line `herald: …` on stderr, which
    /// is returned.
    #[track_caller]
    fn failed(self) -> String {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "expected a failure: {self:#?}"
        );
        let stderr = self.stderr.trim_end();
        assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
        assert!(stderr.starts_with("herald: "), "{stderr:?}");
        stderr.to_owned()
    }
}

/// Runs `herald <args>` with no HERALD_* variables but `env`.
async fn herald_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .args(args)
        .env_remove("HERALD_URL")
        .env_remove("HERALD_API_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the CLI finishes within 60 s")
        .expect("run herald");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn herald(args: &[&str]) -> Run {
    herald_with_env(args, &[]).await
}

/// herald with an API key on a fresh database, and a receiver.
struct Setup {
    daemon: InProcess,
    db: Database,
    api: Api,
    url: String,
    receiver: Receiver,
}

async fn setup(prefix: &str) -> Setup {
    let (uri, name, db) = fixtures::database(prefix).await;
    let receiver = Receiver::start().await;
    let mut config = test_config(&uri, &name, &receiver.ca_pem_path);
    config.api_key = Some(KEY.to_owned());
    let daemon = InProcess::start(config).await;
    let api = Api::new(daemon.listen, Some(KEY));
    let url = format!("http://{}", daemon.listen);
    Setup {
        daemon,
        db,
        api,
        url,
        receiver,
    }
}

impl Setup {
    /// `herald <group> <command> <args> --url … --api-key …` (connection flags last).
    async fn cli(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--api-key", KEY]);
        // `webhooks create` uses --url for the endpoint; the daemon is --server there.
        let flag = if args.starts_with(&["webhooks", "create"]) {
            "--server"
        } else {
            "--url"
        };
        all.extend_from_slice(&[flag, &self.url]);
        herald(&all).await
    }

    async fn webhook(&self, id: &str) -> Value {
        let answer = self.api.get(&format!("/v1/webhooks/{id}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    async fn webhooks(&self) -> Vec<Value> {
        let answer = self.api.get("/v1/webhooks?limit=500").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["results"].as_array().unwrap().clone()
    }

    async fn by_name(&self, name: &str) -> Option<Value> {
        self.webhooks()
            .await
            .into_iter()
            .find(|w| w["name"] == name)
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write the apply file");
}
