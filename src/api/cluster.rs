//! `GET /v1/cluster` (contract §7): the members of the cluster, which partitions each
//! owns, every partition's lease, and each member's feed lag.
//!
//! Everything is read from MongoDB (`herald_members`, `herald_partitions`, through
//! [`crate::store::cluster`]), so every member gives the same answer. A member's
//! `partitions` are the leases it holds now, as `herald_partitions` records them, so the
//! members and the leases of one answer always agree. `live` is judged here from the
//! member's last heartbeat and its lease TTL against this daemon's wall clock: a summary
//! for people. The coordinator itself never compares clocks; it watches renewals on its
//! own monotonic clock (docs/cluster.md).
//!
//! A document edited by hand into nonsense is shown with nulls where it makes no sense,
//! and logged at warn; it never turns the answer into an error.

use herald_actors::PARTITIONS;
use hyper::StatusCode;
use mongodb::bson::DateTime;
use serde_json::{json, Value};

use super::{json_response, ApiRequest, ApiResult, AppState};
use crate::store::cluster::{self, Lease, Member};

/// The lease TTL assumed for a member document without a usable `lease_ttl_ms` (the
/// `--lease-ttl` default), in milliseconds.
const DEFAULT_LEASE_TTL_MS: i64 = 10_000;

/// `GET /v1/cluster` → 200 `{partitions, members, leases}`.
pub async fn get(app: &AppState, _req: &ApiRequest) -> ApiResult {
    let members = cluster::members(&app.db).await?;
    let leases = cluster::leases(&app.db, PARTITIONS).await?;
    Ok(json_response(
        StatusCode::OK,
        view(&members, &leases, DateTime::now()),
    ))
}

/// The answer, for members sorted by id and leases sorted by partition, at time `now`.
pub fn view(members: &[Member], leases: &[Lease], now: DateTime) -> Value {
    let members: Vec<Value> = members
        .iter()
        .map(|member| {
            let owned: Vec<u16> = leases
                .iter()
                .filter(|lease| lease.owner.as_deref() == Some(member.member_id.as_str()))
                .map(|lease| lease.partition)
                .collect();
            json!({
                "member_id": member.member_id,
                "listen": member.listen,
                "version": member.version,
                "started_at": member.started_at.map(rfc3339),
                "heartbeat_at": member.heartbeat_at.map(rfc3339),
                "live": is_live(member, now),
                "owned": owned.len(),
                "partitions": owned,
                "feed_lag_seconds": member.feed_lag_ms.map(seconds),
                "checkpoint_age_seconds": member.checkpoint_age_ms.map(seconds),
            })
        })
        .collect();
    let leases: Vec<Value> = leases
        .iter()
        .map(|lease| {
            json!({
                "partition": lease.partition,
                "owner": lease.owner,
                "epoch": lease.epoch,
                "expires_at": lease.expires_at.map(rfc3339),
                "checkpoint_at": lease.checkpoint_at.map(rfc3339),
            })
        })
        .collect();
    json!({"partitions": PARTITIONS, "members": members, "leases": leases})
}

/// Whether the member's last heartbeat is younger than its lease TTL, on this daemon's
/// clock. Without a heartbeat time it is not live.
fn is_live(member: &Member, now: DateTime) -> bool {
    let ttl_ms = member.lease_ttl_ms.unwrap_or(DEFAULT_LEASE_TTL_MS);
    member
        .heartbeat_at
        .is_some_and(|at| at.timestamp_millis().saturating_add(ttl_ms) > now.timestamp_millis())
}

fn rfc3339(t: DateTime) -> String {
    t.to_chrono()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime {
        DateTime::from_millis(ms)
    }

    const NOW: i64 = 1_800_000_000_000;

    fn member(id: &str, heartbeat_ms_ago: Option<i64>, ttl_ms: Option<i64>) -> Member {
        Member {
            member_id: id.into(),
            beat: Some(1),
            started_at: Some(at(NOW - 60_000)),
            heartbeat_at: heartbeat_ms_ago.map(|ago| at(NOW - ago)),
            lease_ttl_ms: ttl_ms,
            listen: Some("127.0.0.1:8080".into()),
            version: Some("0.1.0".into()),
            feed_lag_ms: Some(1_500),
            checkpoint_age_ms: None,
        }
    }

    fn lease(partition: u16, owner: Option<&str>) -> Lease {
        Lease {
            partition,
            owner: owner.map(str::to_owned),
            epoch: Some(2),
            beat: Some(10),
            renewed_at: Some(at(NOW - 1_000)),
            expires_at: Some(at(NOW + 9_000)),
            checkpoint_at: None,
        }
    }

    #[test]
    fn members_show_the_partitions_their_leases_give_them() {
        let members = [
            member("a", Some(1_000), Some(10_000)),
            member("b", Some(1_000), None),
        ];
        let leases = [
            lease(0, Some("a")),
            lease(1, Some("b")),
            lease(2, Some("a")),
            lease(3, None),
        ];
        let body = view(&members, &leases, at(NOW));
        assert_eq!(body["partitions"], 64);
        assert_eq!(body["members"][0]["member_id"], "a");
        assert_eq!(body["members"][0]["partitions"], json!([0, 2]));
        assert_eq!(body["members"][0]["owned"], 2);
        assert_eq!(body["members"][1]["partitions"], json!([1]));
        assert_eq!(body["members"][0]["feed_lag_seconds"], 1.5);
        assert_eq!(body["members"][0]["checkpoint_age_seconds"], Value::Null);
        assert_eq!(body["members"][0]["started_at"], "2027-01-15T07:59:00.000Z");
        assert_eq!(
            body["leases"][3],
            json!({"partition": 3, "owner": null, "epoch": 2,
                   "expires_at": "2027-01-15T08:00:09.000Z", "checkpoint_at": null})
        );
    }

    #[test]
    fn live_means_a_heartbeat_younger_than_the_members_lease_ttl() {
        let now = at(NOW);
        assert!(is_live(&member("m", Some(9_999), Some(10_000)), now));
        assert!(!is_live(&member("m", Some(10_000), Some(10_000)), now));
        assert!(is_live(&member("m", Some(20_000), Some(30_000)), now));
        // Without a usable TTL, the default one.
        assert!(is_live(&member("m", Some(5_000), None), now));
        assert!(!is_live(&member("m", Some(15_000), None), now));
        // Without a heartbeat time, not live.
        assert!(!is_live(&member("m", None, Some(10_000)), now));
        // A clock ahead of ours is still live (skew is not death).
        assert!(is_live(&member("m", Some(-3_000), Some(10_000)), now));
    }
}
