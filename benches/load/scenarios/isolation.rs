//! isolation: 50 healthy endpoints' deliveries with 50 hanging beside them, against the
//! healthy 50 alone.

use std::time::Duration;

use super::shared::run_engine;
use super::Ctx;
use crate::harness::*;

pub async fn isolation(ctx: &Ctx) -> Vec<Outcome> {
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
    vec![Outcome::new(
        "isolation",
        "healthy deliveries/s with 50 hanging",
        with_bad,
    )
    .against(alone, 0.90)
    .cpu(cpu, expected)
    .note(format!(
        "100 endpoints, {per_endpoint} events; ceiling: the healthy 50 alone"
    ))]
}
