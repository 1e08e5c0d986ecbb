//! isolation: 50 healthy endpoints' deliveries with 50 hanging beside them, against the
//! healthy 50 alone; and one endpoint's deliveries beside a rate-limited neighbour that gets
//! every event too, against that endpoint alone.

use std::time::Duration;

use super::shared::{run_engine, run_engine_limited};
use super::Ctx;
use crate::harness::*;

/// The rate-limited neighbour's requests per second: far below the feed's.
const NEIGHBOUR_PER_S: u32 = 5;

pub async fn isolation(ctx: &Ctx) -> Vec<Outcome> {
    let mut out = vec![hanging(ctx).await];
    out.push(rate_limited(ctx).await);
    out
}

async fn hanging(ctx: &Ctx) -> Outcome {
    let per_endpoint = ctx.n(200, 1_000);
    let healthy: Vec<String> = (0..50)
        .map(|i| ctx.receiver.url(&format!("/ok/iso{i}")))
        .collect();
    let mut mixed = healthy.clone();
    mixed.extend((0..50).map(|i| ctx.receiver.url(&format!("/hang/iso{i}"))));
    let expected = (per_endpoint * 50) as u64;
    let (alone, _) = run_engine(
        ctx,
        per_endpoint,
        &healthy,
        expected,
        Duration::from_secs(2),
        "isolation: healthy only",
    )
    .await;
    let (with_bad, cpu) = run_engine(
        ctx,
        per_endpoint,
        &mixed,
        expected,
        Duration::from_secs(2),
        "isolation: with 50 hanging",
    )
    .await;
    Outcome::new(
        "isolation",
        "healthy deliveries/s with 50 hanging",
        with_bad,
    )
    .against(alone, 0.90)
    .cpu(cpu, expected)
    .note(format!(
        "100 endpoints, {per_endpoint} events; ceiling: the healthy 50 alone"
    ))
}

/// More events than the feed window holds (20,000), to one endpoint and to a neighbour
/// limited to [`NEIGHBOUR_PER_S`]: the neighbour must not hold the feed at its pace. The
/// receiver counts the neighbour's few requests too (at 5/s, under 0.1 % of the total).
async fn rate_limited(ctx: &Ctx) -> Outcome {
    let n = ctx.n(50_000, 100_000);
    let measured = ctx.receiver.url("/ok/iso_measured");
    let urls = [measured.clone(), ctx.receiver.url("/ok/iso_limited")];
    let (alone, _) = run_engine(
        ctx,
        n,
        std::slice::from_ref(&measured),
        n as u64,
        Duration::from_secs(2),
        "isolation: one endpoint alone",
    )
    .await;
    let (beside, cpu) = run_engine_limited(
        ctx,
        n,
        &urls,
        &[(1, NEIGHBOUR_PER_S)],
        n as u64,
        Duration::from_secs(2),
        "isolation: beside a rate-limited neighbour",
    )
    .await;
    Outcome::new(
        "isolation",
        &format!("deliveries/s beside a {NEIGHBOUR_PER_S}/s neighbour"),
        beside,
    )
    .against(alone, 0.90)
    .cpu(cpu, n as u64)
    .note(format!(
        "{n} events to both; ceiling: the one endpoint alone"
    ))
}
