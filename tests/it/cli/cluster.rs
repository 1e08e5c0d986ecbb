//! `herald cluster`: the members table and one line per lease owner, or the API's JSON,
//! showing another daemon of the cluster (written by hand as it would write itself).

use mongodb::bson::DateTime;

use super::{herald, setup};
use crate::fixtures::{insert_member, lease, member, put_lease};

#[tokio::test]
async fn herald_cluster_shows_the_members_and_what_each_owns() {
    let s = setup("cli_cluster").await;
    let heartbeat = DateTime::from_millis(DateTime::now().timestamp_millis() - 1_000);
    insert_member(&s.db, member("member-far", "10.0.0.9:8080", heartbeat)).await;
    for partition in [1, 2, 3, 7] {
        put_lease(&s.db, lease(partition, Some("member-far"), 2)).await;
    }

    let json = s.cli(&["cluster", "--json"]).await.ok().json();
    assert_eq!(json["partitions"], 64);
    let far = json["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member_id"] == "member-far")
        .unwrap_or_else(|| panic!("member-far not listed: {json:#}"));
    assert_eq!(far["owned"], 4);
    assert_eq!(far["live"], true);

    let table = s.cli(&["cluster"]).await.ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "MEMBER",
            "LISTEN",
            "OWNED",
            "LIVE",
            "HEARTBEAT AGE",
            "FEED LAG"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines
        .iter()
        .find(|line| line.starts_with("member-far "))
        .unwrap_or_else(|| panic!("no row for member-far: {table}"))
        .split_whitespace()
        .collect();
    assert_eq!(row.len(), 6, "{table}");
    assert_eq!(
        &row[..4],
        ["member-far", "10.0.0.9:8080", "4", "yes"],
        "{table}"
    );
    assert!(row[4].ends_with('s'), "heartbeat age {:?}: {table}", row[4]);
    assert_eq!(row[5], "1.5s", "{table}");
    assert!(
        lines.contains(&"member-far: 4 of 64 partitions: 1-3, 7"),
        "{table}"
    );

    // Without the key: the API's 401 in one line.
    let refused = herald(&["cluster", "--url", &s.url]).await.failed();
    assert!(refused.contains("401"), "{refused}");
}
