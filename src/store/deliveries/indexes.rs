//! The indexes of `deliveries`: those its queries need, those earlier versions created and
//! no longer use, and the two TTL indexes that bound it.

use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use tracing::{info, warn};

use crate::store::retention::{days, Retention, TtlIndex};
use crate::store::DELIVERIES;
use crate::text::one_line;

/// The TTL index names herald creates on `deliveries` (and re-creates when the retention
/// changes).
pub const TTL_SUCCEEDED: &str = "herald_ttl_succeeded";
pub const TTL_FAILED: &str = "herald_ttl_failed";

/// Creates the indexes every query of `deliveries` needs (idempotent), and drops those
/// herald no longer uses.
pub async fn ensure_indexes(db: &Database) -> mongodb::error::Result<()> {
    let deliveries = db.collection::<Document>(DELIVERIES);
    let models = [
        // An endpoint reading its spilled (and, at start-up, pending) deliveries back, due
        // oldest first; `distinct` of the webhooks with pending ones; the pending count.
        // Only pending deliveries are in it: most deliveries succeed at their first
        // attempt, and their records skip this index entirely.
        IndexModel::builder()
            .keys(doc! {"status": 1, "webhook_id": 1, "next_attempt_at": 1, "_id": 1})
            .options(
                IndexOptions::builder()
                    .name(PENDING_DUE.to_owned())
                    .partial_filter_expression(doc! {"status": "pending"})
                    .build(),
            )
            .build(),
        // A webhook's deliveries in `_id` order: the API's listing and its cursor. An
        // event's deliveries need no index of their own: their `_id`s are one range,
        // `<event_id>:…`, of the `_id` index.
        IndexModel::builder()
            .keys(doc! {"webhook_id": 1, "_id": 1})
            .options(IndexOptions::builder().build())
            .build(),
    ];
    deliveries.create_indexes(models).await?;
    // Only once the index that replaces them is in place: a daemon of the earlier version
    // running beside this one goes on finding its pending deliveries by index.
    drop_obsolete(&deliveries).await?;
    Ok(())
}

/// The index of pending deliveries by webhook and due time (partial: `status: "pending"`).
pub const PENDING_DUE: &str = "herald_pending_due";

/// Indexes earlier versions of herald created on `deliveries` and no longer use. Every
/// delivery write pays for every index, so they are dropped at start.
pub const OBSOLETE_INDEXES: [&str; 4] = [
    "status_1_next_attempt_at_1",
    "webhook_id_1_created_at_-1",
    "event_id_1",
    // The same keys as `herald_pending_due`, over every delivery, succeeded ones too.
    "status_1_webhook_id_1_next_attempt_at_1__id_1",
];

async fn drop_obsolete(deliveries: &Collection<Document>) -> mongodb::error::Result<()> {
    let names = deliveries.list_index_names().await?;
    for name in OBSOLETE_INDEXES {
        if !names.iter().any(|n| n == name) {
            continue;
        }
        match deliveries.drop_index(name).await {
            Ok(()) => info!(index = name, "dropped an index herald no longer uses"),
            // Dropping an index takes more than the readWrite role: without it herald runs
            // on, and the index keeps costing writes.
            Err(e) => warn!(
                index = name,
                error = %one_line(&e.to_string()),
                "cannot drop an index herald no longer uses; drop it to speed up writes"
            ),
        }
    }
    Ok(())
}

/// The TTL indexes of `deliveries` under `retention`: two on one field, told apart by their
/// partial filters. A delivery expires by its final status, and a pending one
/// (`completed_at` null) never does.
pub fn ttl_indexes(retention: Retention) -> [TtlIndex; 2] {
    [
        TtlIndex {
            collection: DELIVERIES,
            name: TTL_SUCCEEDED,
            field: "completed_at",
            expire_after: days(retention.succeeded_days),
            partial: Some(doc! {"status": "succeeded"}),
        },
        TtlIndex {
            collection: DELIVERIES,
            name: TTL_FAILED,
            field: "completed_at",
            expire_after: days(retention.failed_days),
            partial: Some(doc! {"status": "failed"}),
        },
    ]
}
