//! The daemons of one story: `herald serve` child processes on one database, each with a
//! log file of its own that its restarts append to, printed and kept if the story fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use mongodb::Database;

use super::{leases, LEASE_TTL, PARTITIONS};
use crate::api_client::Api;
use crate::daemon::ChildDaemon;

const API_KEY: &str = "cluster-story-key";
/// Log lines of each daemon printed when a story fails.
const LOG_TAIL_LINES: usize = 120;

/// One running `herald serve` of a [`Cluster`] and its log.
struct Member {
    /// `a`, `b`, ...: the member's name across restarts.
    name: char,
    /// Starts so far; each life has a member id of its own, as the default id
    /// (`<host>-<pid>-<hex>`) would.
    life: usize,
    daemon: Option<ChildDaemon>,
    log: PathBuf,
}

impl Member {
    fn id(&self) -> String {
        format!("herald-{}-{}", self.name, self.life)
    }
}

/// The daemons of one story: child processes on one database, each with its own log.
pub struct Cluster {
    config: herald::config::Config,
    /// Flags every daemon gets besides the config's (e.g. `--max-events-in-flight`).
    extra_args: Vec<String>,
    members: Vec<Member>,
    /// Where the logs are; kept when the story fails.
    logs: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Starts `n` daemons at once (as a deployment of `n` replicas would) with `config`'s
    /// settings, `--lease-ttl 3s` and `extra_args`, and waits until each is ready.
    pub async fn start(config: &herald::config::Config, n: usize, extra_args: &[&str]) -> Self {
        let logs = tempfile::Builder::new()
            .prefix("herald-cluster-")
            .tempdir()
            .unwrap();
        let members = (b'a'..)
            .take(n)
            .map(|name| Member {
                name: char::from(name),
                life: 0,
                daemon: None,
                log: logs.path().join(format!("herald-{}.log", char::from(name))),
            })
            .collect();
        let mut config = config.clone();
        config.lease_ttl_ms = LEASE_TTL.as_millis() as u64;
        let mut cluster = Self {
            config,
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
            members,
            logs: Some(logs),
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        for member in &cluster.members {
            member.daemon.as_ref().unwrap().wait_ready().await;
        }
        cluster
    }

    /// Starts member `i`'s next life (not waiting for it).
    fn spawn(&mut self, i: usize) {
        let member = &mut self.members[i];
        assert!(member.daemon.is_none(), "member {i} is running");
        member.life += 1;
        let mut command = ChildDaemon::command(&self.config);
        command
            .args(["--member-id", &member.id()])
            .args(["--api-key", API_KEY])
            .args(&self.extra_args);
        member.daemon = Some(ChildDaemon::spawn_command(command, &member.log));
    }

    fn daemon(&self, i: usize) -> &ChildDaemon {
        self.members[i]
            .daemon
            .as_ref()
            .unwrap_or_else(|| panic!("member {i} is not running"))
    }

    fn daemon_mut(&mut self, i: usize) -> &mut ChildDaemon {
        self.members[i]
            .daemon
            .as_mut()
            .unwrap_or_else(|| panic!("member {i} is not running"))
    }

    /// The member id of member `i`'s current (or last) life.
    pub fn member_id(&self, i: usize) -> String {
        self.members[i].id()
    }

    /// The member ids of the daemons running now.
    pub fn running(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.daemon.is_some())
            .map(Member::id)
            .collect()
    }

    /// Which member runs as `member_id` now.
    pub fn index_of(&self, member_id: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.daemon.is_some() && m.id() == member_id)
    }

    /// A client for member `i`'s API.
    pub fn api(&self, i: usize) -> Api {
        Api::new(self.daemon(i).listen(), Some(API_KEY))
    }

    /// `kill -9` member `i`.
    pub fn kill(&mut self, i: usize) {
        self.daemon_mut(i).kill();
        self.members[i].daemon = None;
    }

    /// SIGTERM member `i` and wait for it to exit (receivers keep answering meanwhile);
    /// returns its exit code.
    pub async fn sigterm(&mut self, i: usize) -> Option<i32> {
        let code = self.daemon_mut(i).sigterm().await;
        self.members[i].daemon = None;
        code
    }

    /// Starts member `i` again, with a new member id, and waits until it is ready.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.daemon(i).wait_ready().await;
    }

    /// SIGSTOP member `i`: it stands still, holding its connections and leases.
    pub fn freeze(&self, i: usize) {
        self.daemon(i).signal("STOP");
    }

    /// SIGCONT member `i`.
    pub fn thaw(&self, i: usize) {
        self.daemon(i).signal("CONT");
    }

    /// SIGTERMs every running daemon, one after the other; each must exit 0.
    pub async fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].daemon.is_some() {
                let id = self.member_id(i);
                assert_eq!(
                    self.sigterm(i).await,
                    Some(0),
                    "{id} did not exit cleanly on SIGTERM"
                );
            }
        }
    }

    /// Waits until the running daemons have shared the partitions out and keep them: every
    /// lease held by a running member, each running member holding some, and no lease
    /// changing hands for a whole lease TTL.
    pub async fn wait_settled(&self, db: &Database) {
        let running = self.running();
        let until = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut stable: Option<(tokio::time::Instant, Vec<Option<String>>)> = None;
        loop {
            let owners: Vec<Option<String>> =
                leases(db).await.into_iter().map(|l| l.owner).collect();
            let shared_out = owners.len() == PARTITIONS
                && owners
                    .iter()
                    .all(|o| o.as_ref().is_some_and(|o| running.contains(o)))
                && running
                    .iter()
                    .all(|m| owners.iter().any(|o| o.as_ref() == Some(m)));
            stable = match stable {
                Some((since, before)) if shared_out && before == owners => {
                    if since.elapsed() >= LEASE_TTL {
                        return;
                    }
                    Some((since, before))
                }
                _ if shared_out => Some((tokio::time::Instant::now(), owners.clone())),
                _ => None,
            };
            if tokio::time::Instant::now() >= until {
                let mut held: BTreeMap<String, usize> = BTreeMap::new();
                for owner in &owners {
                    *held
                        .entry(owner.clone().unwrap_or_else(|| "(nobody)".into()))
                        .or_default() += 1;
                }
                panic!(
                    "the partitions never settled over the running members {running:?}: {} \
                     leases, held {held:?}",
                    owners.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Cluster {
    /// On failure: prints the end of each daemon's log and keeps the files.
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var("XKEEP").is_err() {
            return;
        }
        for member in &self.members {
            let log = std::fs::read_to_string(&member.log).unwrap_or_default();
            let log = crate::support::without_colours(&log);
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "---- herald-{} ({} lives; last {} lines of {}) ----\n{}",
                member.name,
                member.life,
                tail.len(),
                member.log.display(),
                tail.join("\n")
            );
        }
        if let Some(logs) = self.logs.take() {
            eprintln!("herald logs kept in {}", logs.keep().display());
        }
    }
}
