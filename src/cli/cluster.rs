//! `herald cluster`: `GET /v1/cluster` — the members, what each owns, and their feed lag.
//!
//! A table of members (live or not, how long since their last heartbeat, as this
//! machine's clock sees it), then one line per lease owner naming its partitions, and the
//! partitions nobody owns. `--json` prints the API's answer as it is.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::Value;

use super::output::{emit, emit_json, field, render_table, table};
use super::{CliError, ConnectArgs, Session};

/// How many partitions to assume when the answer does not say.
const DEFAULT_PARTITIONS: u64 = 64;

/// `herald cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs `herald cluster`.
pub async fn run(args: ClusterArgs) -> Result<(), CliError> {
    let session = Session::from_connect(&args.connect, &ConnectArgs::default())?;
    let cluster = session.api.get("/v1/cluster").await?;
    if session.json {
        emit_json(&cluster);
    } else {
        emit(&render(&cluster, chrono::Utc::now()));
    }
    Ok(())
}

/// The members table and the ownership summary, with heartbeat ages as of `now`.
pub fn render(cluster: &Value, now: chrono::DateTime<chrono::Utc>) -> String {
    let members = cluster["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut t = table(&[
        "MEMBER",
        "LISTEN",
        "OWNED",
        "LIVE",
        "HEARTBEAT AGE",
        "FEED LAG",
    ]);
    for member in members {
        let live = match member["live"].as_bool() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        let heartbeat_age = member["heartbeat_at"]
            .as_str()
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .map(|at| duration(now.signed_duration_since(at).num_milliseconds() as f64 / 1e3))
            .unwrap_or_else(|| "-".into());
        let feed_lag = member["feed_lag_seconds"]
            .as_f64()
            .map(duration)
            .unwrap_or_else(|| "-".into());
        t.add_row(vec![
            field(member, &["member_id"]),
            field(member, &["listen"]),
            field(member, &["owned"]),
            live.to_owned(),
            heartbeat_age,
            feed_lag,
        ]);
    }
    let mut out = render_table(&t);
    if members.is_empty() {
        out.push_str("\n(no members: no daemon has joined this database's cluster)");
    }
    let summary = ownership(cluster);
    if !summary.is_empty() {
        out.push_str("\n\n");
        out.push_str(&summary.join("\n"));
    }
    out
}

/// One line per lease owner, then one for the partitions nobody owns.
fn ownership(cluster: &Value) -> Vec<String> {
    let total = cluster["partitions"].as_u64().unwrap_or(DEFAULT_PARTITIONS);
    let mut by_owner: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for lease in cluster["leases"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        if let (Some(owner), Some(partition)) =
            (lease["owner"].as_str(), lease["partition"].as_u64())
        {
            by_owner.entry(owner).or_default().push(partition);
        }
    }
    let members = cluster["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let member = |id: &str| members.iter().find(|m| m["member_id"] == id);
    let mut lines = Vec::new();
    for (owner, partitions) in &by_owner {
        let remark = match member(owner).map(|m| m["live"].as_bool()) {
            None => " (no member document)",
            Some(Some(false)) => " (not live)",
            _ => "",
        };
        lines.push(format!("{owner}{remark}: {}", counted(partitions, total)));
    }
    let unowned: Vec<u64> = (0..total)
        .filter(|p| !by_owner.values().any(|owned| owned.contains(p)))
        .collect();
    if !unowned.is_empty() {
        lines.push(format!("unowned: {}", counted(&unowned, total)));
    }
    lines
}

/// `3 of 64 partitions: 0-1, 7`.
fn counted(partitions: &[u64], total: u64) -> String {
    format!(
        "{} of {total} partitions: {}",
        partitions.len(),
        ranges(partitions)
    )
}

/// Partition numbers as ranges: `0-3, 7, 9-12`.
pub fn ranges(partitions: &[u64]) -> String {
    let mut sorted = partitions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut iter = sorted.into_iter().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(", ")
}

/// Seconds for people: `0.4s`, `12.0s`, `3m05s`, `2h07m`; negative (a clock ahead of this
/// one) with a minus sign.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "-".into();
    }
    if seconds < 0.0 {
        return format!("-{}", duration(-seconds));
    }
    let whole = seconds as u64;
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else if whole < 3_600 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h{:02}m", whole / 3_600, whole % 3_600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partitions_read_as_ranges() {
        assert_eq!(ranges(&[9, 0, 1, 2, 3, 7, 10, 11, 12]), "0-3, 7, 9-12");
        assert_eq!(ranges(&[5]), "5");
        assert_eq!(ranges(&[]), "");
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(0.42), "0.4s");
        assert_eq!(duration(12.0), "12.0s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(7_620.0), "2h07m");
        assert_eq!(duration(-1.5), "-1.5s");
    }

    #[test]
    fn the_table_and_the_summary() {
        let cluster = json!({
            "partitions": 4,
            "members": [
                {"member_id": "a", "listen": "10.0.0.1:8080", "owned": 2, "live": true,
                 "heartbeat_at": "2027-01-15T07:59:58.500Z", "feed_lag_seconds": 0.3},
                {"member_id": "b", "listen": null, "owned": 0, "live": false,
                 "heartbeat_at": null, "feed_lag_seconds": null},
            ],
            "leases": [
                {"partition": 0, "owner": "a"}, {"partition": 1, "owner": "a"},
                {"partition": 2, "owner": "gone"}, {"partition": 3, "owner": null},
            ],
        });
        let now = chrono::DateTime::parse_from_rfc3339("2027-01-15T08:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let text = render(&cluster, now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("MEMBER"), "{text}");
        let a: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            a,
            ["a", "10.0.0.1:8080", "2", "yes", "1.5s", "0.3s"],
            "{text}"
        );
        let b: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(b, ["b", "-", "0", "no", "-", "-"], "{text}");
        assert!(text.contains("\na: 2 of 4 partitions: 0-1\n"), "{text}");
        assert!(
            text.contains("\ngone (no member document): 1 of 4 partitions: 2\n"),
            "{text}"
        );
        assert!(text.ends_with("\nunowned: 1 of 4 partitions: 3"), "{text}");
    }
}
