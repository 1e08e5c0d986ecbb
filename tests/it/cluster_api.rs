//! `GET /v1/cluster`, as an operator relies on it: it shows every member of the cluster
//! sharing the database (here, one written by hand as another daemon would write it), the
//! partitions each holds, whether it is live, its feed lag, and every partition's lease;
//! a document edited by hand into nonsense shows nulls and never turns the answer into an
//! error; and the route is behind the API key like every /v1 route.
//!
//! The daemon under test may itself be a member holding leases, so the stories look for
//! what they wrote rather than assume it is all there is.

use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use serde_json::Value;

use crate::api_client::Api;
use crate::daemon::InProcess;
use crate::fixtures::{database, insert_member, lease, member, put_lease};

const KEY: &str = "cluster-test-key";

async fn start(prefix: &str) -> (InProcess, Api, mongodb::Database) {
    let (uri, name, db) = database(prefix).await;
    let (daemon, api) = crate::daemon::start_with_key(&uri, &name, KEY, |_| {}).await;
    (daemon, api, db)
}

async fn cluster(api: &Api) -> Value {
    let answer = api.get("/v1/cluster").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

fn find<'a>(list: &'a Value, key: &str, value: impl Into<Value>) -> Option<&'a Value> {
    let value = value.into();
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|item| item[key] == value)
}

fn member_of<'a>(body: &'a Value, id: &str) -> &'a Value {
    find(&body["members"], "member_id", id)
        .unwrap_or_else(|| panic!("member {id} not listed: {body:#}"))
}

fn lease_of(body: &Value, partition: u16) -> &Value {
    find(&body["leases"], "partition", partition)
        .unwrap_or_else(|| panic!("no lease of partition {partition}: {body:#}"))
}

fn rfc3339(t: DateTime) -> String {
    t.to_chrono()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Members sorted by id, leases by partition, each partition at most once and in range.
fn assert_ordered(body: &Value) {
    let ids: Vec<&str> = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["member_id"].as_str().expect("member_id is a string"))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "members not sorted by id");
    let partitions: Vec<u64> = body["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["partition"].as_u64().expect("partition is a number"))
        .collect();
    assert!(
        partitions.windows(2).all(|w| w[0] < w[1]),
        "leases not sorted by partition, or one listed twice: {partitions:?}"
    );
    assert!(partitions.iter().all(|p| *p < 64), "{partitions:?}");
}

#[tokio::test]
async fn the_cluster_shows_another_daemon_its_leases_and_whether_it_is_live() {
    let (herald, api, db) = start("cluster_members").await;
    let heartbeat = DateTime::from_millis(DateTime::now().timestamp_millis() - 1_000);
    let far = member("member-far", "10.0.0.9:8080", heartbeat);
    insert_member(&db, far.clone()).await;
    // Its last heartbeat a minute ago, longer than its 10 s lease TTL.
    let stale = DateTime::from_millis(DateTime::now().timestamp_millis() - 60_000);
    insert_member(&db, member("member-gone", "10.0.0.8:8080", stale)).await;
    for partition in [1, 2, 3] {
        put_lease(&db, lease(partition, Some("member-far"), 3)).await;
    }
    let gone_lease = lease(4, Some("member-gone"), 1);
    put_lease(&db, gone_lease.clone()).await;

    let body = cluster(&api).await;
    assert_eq!(body["partitions"], 64);
    assert_ordered(&body);

    let far_view = member_of(&body, "member-far");
    assert_eq!(far_view["listen"], "10.0.0.9:8080");
    assert_eq!(far_view["version"], "9.9.9");
    assert_eq!(far_view["heartbeat_at"], rfc3339(heartbeat));
    assert_eq!(
        far_view["started_at"],
        rfc3339(*far.get_datetime("started_at").unwrap())
    );
    assert_eq!(far_view["live"], true);
    assert_eq!(far_view["partitions"], serde_json::json!([1, 2, 3]));
    assert_eq!(far_view["owned"], 3);
    assert_eq!(far_view["feed_lag_seconds"], 1.5);
    assert_eq!(far_view["checkpoint_age_seconds"], 2.5);

    let gone_view = member_of(&body, "member-gone");
    assert_eq!(gone_view["live"], false, "{gone_view}");
    assert_eq!(gone_view["partitions"], serde_json::json!([4]));

    for partition in [1, 2, 3] {
        let shown = lease_of(&body, partition);
        assert_eq!(shown["owner"], "member-far", "{shown}");
        assert_eq!(shown["epoch"], 3, "{shown}");
        assert!(shown["expires_at"].is_string(), "{shown}");
        assert!(shown["checkpoint_at"].is_string(), "{shown}");
    }
    let shown = lease_of(&body, 4);
    assert_eq!(shown["owner"], "member-gone");
    assert_eq!(
        shown["expires_at"],
        rfc3339(*gone_lease.get_datetime("expires_at").unwrap())
    );
    herald.stop().await.unwrap();
}

#[tokio::test]
async fn documents_edited_into_nonsense_show_nulls_and_never_an_error() {
    let (herald, api, db) = start("cluster_nonsense").await;
    let members = db.collection::<Document>("herald_members");
    members
        .insert_one(doc! {
            "_id": "member-odd", "beat": "many", "started_at": 5, "heartbeat_at": "yesterday",
            "lease_ttl_ms": "ten", "listen": 8080, "version": ["x"], "partitions": "all",
            "feed_lag_ms": "slow", "checkpoint_age_ms": -3,
        })
        .await
        .unwrap();
    members
        .insert_one(doc! {"_id": 1234, "heartbeat_at": DateTime::now()})
        .await
        .unwrap();
    // Leases that cannot be placed: a name for an id, a partition out of range.
    put_lease(
        &db,
        doc! {"_id": "seven", "owner": "member-odd", "epoch": 1_i64},
    )
    .await;
    put_lease(
        &db,
        doc! {"_id": 500, "owner": "member-odd", "epoch": 1_i64},
    )
    .await;
    let nonsense = doc! {"_id": 9, "owner": 42, "epoch": "one", "expires_at": "soon",
    "checkpoint_at": true};
    put_lease(&db, nonsense.clone()).await;

    let body = cluster(&api).await;
    assert_ordered(&body);
    let odd = member_of(&body, "member-odd");
    for field in [
        "listen",
        "version",
        "started_at",
        "heartbeat_at",
        "feed_lag_seconds",
        "checkpoint_age_seconds",
    ] {
        assert!(odd[field].is_null(), "{field}: {odd}");
    }
    // Without a heartbeat time it cannot be live; the leases that could not be placed
    // give it nothing.
    assert_eq!(odd["live"], false, "{odd}");
    assert_eq!(odd["owned"], 0, "{odd}");
    assert_eq!(odd["partitions"], serde_json::json!([]));
    let numbered = member_of(&body, "1234");
    assert_eq!(numbered["live"], true, "{numbered}");

    // Partition 9 as written, unless a lease coordinator has rewritten it since (a later
    // read still finding it means the answer above saw it too).
    let still = db
        .collection::<Document>("herald_partitions")
        .find_one(doc! {"_id": 9})
        .await
        .unwrap();
    if still.as_ref() == Some(&nonsense) {
        let shown = lease_of(&body, 9);
        for field in ["owner", "epoch", "expires_at", "checkpoint_at"] {
            assert!(shown[field].is_null(), "{field}: {shown}");
        }
    }
    herald.stop().await.unwrap();
}

#[tokio::test]
async fn the_cluster_needs_the_api_key() {
    let (herald, api, _db) = start("cluster_auth").await;
    let answer = api.anonymous().get("/v1/cluster").await;
    crate::api_client::assert_error(&answer, 401);
    assert_eq!(answer.body["error"]["code"], "unauthorized");
    let wrong = Api::new(herald.listen, Some("not-the-key"));
    crate::api_client::assert_error(&wrong.get("/v1/cluster").await, 401);
    // Another method than GET: 405, naming GET.
    let answer = api.post("/v1/cluster", serde_json::json!({})).await;
    crate::api_client::assert_error(&answer, 405);
    assert_eq!(answer.headers["allow"], "GET");
    herald.stop().await.unwrap();
}

#[tokio::test]
async fn the_daemon_lists_itself_owning_every_partition() {
    let (herald, api, _db) = start("cluster_self").await;
    let listen = herald.listen.to_string();
    // Wait until it has taken every lease (within a few lease periods of starting).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let body = loop {
        let body = cluster(&api).await;
        let members = body["members"].as_array().map_or(0, Vec::len);
        if members == 1 && body["members"][0]["owned"] == 64 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the daemon never listed itself owning all 64 partitions: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ordered(&body);
    assert_eq!(body["leases"].as_array().map(Vec::len), Some(64));
    let me = &body["members"][0];
    assert_eq!(me["listen"], listen.as_str(), "{me}");
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"), "{me}");
    assert_eq!(me["live"], true, "{me}");
    assert!(
        me["heartbeat_at"].is_string() && me["started_at"].is_string(),
        "{me}"
    );
    assert_eq!(
        me["partitions"],
        serde_json::json!((0..64).collect::<Vec<u16>>())
    );
    let member_id = me["member_id"].as_str().unwrap();
    for lease in body["leases"].as_array().unwrap() {
        assert_eq!(lease["owner"], member_id, "{lease}");
        assert!(lease["epoch"].as_u64().is_some(), "{lease}");
        assert!(lease["expires_at"].is_string(), "{lease}");
    }
    herald.stop().await.unwrap();
}
