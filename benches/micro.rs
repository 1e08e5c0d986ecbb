//! Micro-benchmarks of the engine's hot paths: signing, payload building, subscription
//! matching and the retry schedule. `cargo bench --bench micro`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herald_actors::signing::{Signer, SigningKey};
use herald_actors::{
    next_delay, AttemptResponse, Event, EventFilter, Payload, RetryPolicy, SubscriptionIndex,
    WebhookSpec,
};
use rand::SeedableRng;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn signing(c: &mut Criterion) {
    let key = SigningKey::parse(SECRET).unwrap();
    let body = vec![b'x'; 1024];
    let mut group = c.benchmark_group("signing");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("sign_1KiB", |b| {
        b.iter(|| {
            key.sign(
                black_box("evt_0123456789"),
                black_box(1_614_265_330),
                black_box(&body),
            )
        })
    });
    group.finish();
}

fn payload(c: &mut Criterion) {
    let payload = Payload {
        event_id: "evt_0123456789".into(),
        event_type: "collection.documents.written".into(),
        occurred_at: "2026-01-01T00:00:00.000Z".into(),
        namespace_id: Some("ns_1".into()),
        task_id: None,
        subject: None,
        data: serde_json::json!({"collection_id": "col_1", "document_ids": (0..20).map(|i| format!("doc_{i}")).collect::<Vec<_>>(), "index_signature": "abc123"}),
        cache_scope: Some(serde_json::json!({"scope": "collection", "collection_id": "col_1"})),
    };
    c.bench_function("payload/build", |b| {
        b.iter(|| Event::from_payload(black_box(&payload)))
    });
}

fn matching(c: &mut Criterion) {
    let mut index = SubscriptionIndex::default();
    let types = [
        "object.created",
        "object.updated",
        "batch.completed",
        "cluster.completed",
    ];
    for i in 0..10_000 {
        index.insert(&WebhookSpec {
            id: format!("wh_{i:016x}").into(),
            url: "https://example.com/hook".into(),
            filter: EventFilter::from_list(&[types[i % types.len()].to_owned()]),
            signer: Signer::new(vec![]),
            headers: Arc::new([]),
            enabled: true,
            paused: false,
            rate_limit_per_second: None,
            namespace_id: None,
        });
    }
    c.bench_function("match/10k_webhooks", |b| {
        b.iter(|| {
            let mut n = 0;
            index.for_each_match(black_box("batch.completed"), |_| n += 1);
            n
        })
    });
}

fn retry(c: &mut Criterion) {
    let policy = RetryPolicy::default();
    let outcome = Ok(AttemptResponse {
        status: 503,
        retry_after: None,
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    c.bench_function("retry/next_delay", |b| {
        b.iter(|| next_delay(&policy, black_box(7), &outcome, &mut rng))
    });
}

criterion_group!(benches, signing, payload, matching, retry);
criterion_main!(benches);
