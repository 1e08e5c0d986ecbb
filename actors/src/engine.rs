//! Starting, feeding and stopping the engine.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ractor::{Actor, ActorRef};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::EngineConfig;
use crate::delivery::PendingDelivery;
use crate::event::Event;
use crate::ledger_writer;
use crate::ports::{Ledger, LedgerError, Transport};
use crate::router::{self, EndpointReport, RouterStats};
use crate::supervisor::{self, Supervisor};
use crate::webhook::WebhookSpec;

/// The engine has stopped (shut down, or its router failed).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the delivery engine has stopped")]
pub struct EngineStopped;

/// Why a shutdown could not leave the checkpoint where it belongs (the deliveries are safe:
/// what the checkpoint did not pass is handed over again after a restart).
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error("cannot write the final checkpoint: {0}")]
    Checkpoint(#[from] LedgerError),
    #[error("the router did not answer the final checkpoint in time")]
    NoAnswer,
}

/// A running engine: its handle plus what it takes to stop it.
pub struct Engine {
    handle: EngineHandle,
    supervisor: ActorRef<supervisor::Msg>,
    join: JoinHandle<()>,
}

/// Cheap to clone; what the feed, the webhook watcher and the API use.
#[derive(Clone)]
pub struct EngineHandle {
    router: ActorRef<router::Msg>,
    window: Arc<Semaphore>,
}

impl Engine {
    /// Spawns the actor tree.
    pub async fn start(
        config: EngineConfig,
        transport: Arc<dyn Transport>,
        ledger: Arc<dyn Ledger>,
    ) -> Result<Self, ractor::SpawnErr> {
        let window = Arc::new(Semaphore::new(config.max_events_in_flight));
        let (supervisor, join) = Actor::spawn(
            None,
            Supervisor {
                config: Arc::new(config),
                transport,
                ledger,
                window: window.clone(),
            },
            (),
        )
        .await?;
        let router = supervisor
            .call(supervisor::Msg::Router, Some(Duration::from_secs(5)))
            .await
            .map_err(|e| ractor::SpawnErr::StartupFailed(e.to_string().into()))?
            .success_or(())
            .map_err(|_| ractor::SpawnErr::StartupFailed("router did not answer".into()))?;
        Ok(Self {
            handle: EngineHandle { router, window },
            supervisor,
            join,
        })
    }

    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Resolves when the actor tree has stopped (after [`Engine::shutdown`], or on failure).
    pub fn stopped(&mut self) -> &mut JoinHandle<()> {
        &mut self.join
    }

    /// Stops taking events, lets in-flight attempts finish (at most `grace`), makes every
    /// record durable, writes the checkpoint and stops the tree.
    pub async fn shutdown(self, grace: Duration) -> Result<(), ShutdownError> {
        let router = self.handle.router.clone();
        let drained = router.call(router::Msg::Drain, Some(grace)).await;
        if !matches!(drained, Ok(ractor::rpc::CallResult::Success(()))) {
            warn!("in-flight attempts did not finish within the grace period; they will be retried after restart");
        }
        let writer = router
            .call(router::Msg::LedgerWriter, Some(Duration::from_secs(5)))
            .await;
        if let Ok(ractor::rpc::CallResult::Success(writer)) = writer {
            let _ = writer
                .call(ledger_writer::Msg::Sync, Some(Duration::from_secs(30)))
                .await;
        }
        let result = match router
            .call(router::Msg::FinalCheckpoint, Some(Duration::from_secs(30)))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(result)) => result.map_err(ShutdownError::from),
            _ => Err(ShutdownError::NoAnswer),
        };
        self.supervisor.stop(Some("shutdown".into()));
        let _ = self.join.await;
        info!("engine stopped");
        result
    }
}

impl EngineHandle {
    /// Hands an event to the router. Waits while `max_events_in_flight` events are not yet
    /// durable: the caller (the change stream) slows down instead of memory growing.
    pub async fn submit(
        &self,
        event: Event,
        checkpoint: Option<Bytes>,
    ) -> Result<(), EngineStopped> {
        let permit = self.window.acquire().await.map_err(|_| EngineStopped)?;
        permit.forget();
        self.router
            .cast(router::Msg::Event {
                event: Arc::new(event),
                checkpoint,
            })
            .map_err(|_| EngineStopped)
    }

    /// A feed position without an event; it becomes the checkpoint once every event
    /// submitted before it is durable.
    pub async fn mark(&self, checkpoint: Bytes) -> Result<(), EngineStopped> {
        let permit = self.window.acquire().await.map_err(|_| EngineStopped)?;
        permit.forget();
        self.router
            .cast(router::Msg::Mark(checkpoint))
            .map_err(|_| EngineStopped)
    }

    /// A webhook was created or changed (disabled ones stop their endpoint).
    pub fn upsert_webhook(&self, spec: WebhookSpec) -> Result<(), EngineStopped> {
        self.router
            .cast(router::Msg::Upsert(spec))
            .map_err(|_| EngineStopped)
    }

    /// A webhook was deleted.
    pub fn remove_webhook(&self, id: &str) -> Result<(), EngineStopped> {
        self.router
            .cast(router::Msg::Remove(id.into()))
            .map_err(|_| EngineStopped)
    }

    /// Re-queues a pending delivery loaded from the ledger (attempted at its due time).
    pub fn resume(&self, pending: PendingDelivery) -> Result<(), EngineStopped> {
        self.router
            .cast(router::Msg::Resume(pending))
            .map_err(|_| EngineStopped)
    }

    /// These webhooks have pending deliveries in the ledger (at start-up): their endpoints
    /// read them back a page at a time, as they have room, instead of all at once. Endpoints
    /// started from now on (a webhook created or enabled again) look in the ledger too.
    pub fn page_pending(&self, webhook_ids: Vec<String>) -> Result<(), EngineStopped> {
        self.router
            .cast(router::Msg::PagePending(
                webhook_ids.into_iter().map(Into::into).collect(),
            ))
            .map_err(|_| EngineStopped)
    }

    /// The router's bookkeeping.
    pub async fn stats(&self) -> Result<RouterStats, EngineStopped> {
        match self
            .router
            .call(router::Msg::Stats, Some(Duration::from_secs(5)))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(stats)) => Ok(stats),
            _ => Err(EngineStopped),
        }
    }

    /// One endpoint's backlog and health; `None` when no endpoint actor runs for the
    /// webhook (unknown, disabled or deleted).
    pub async fn endpoint(
        &self,
        webhook_id: &str,
    ) -> Result<Option<EndpointReport>, EngineStopped> {
        match self
            .router
            .call(
                |reply| router::Msg::Endpoint(webhook_id.into(), reply),
                Some(Duration::from_secs(5)),
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(report)) => Ok(report),
            _ => Err(EngineStopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::*;
    use crate::delivery::DeliveryStatus;
    use crate::event::Payload;
    use crate::fakes::{Answer, MemoryLedger, ScriptedTransport};
    use crate::retry::RetryPolicy;
    use crate::signing::{verify_header, Signer, SigningKey};
    use crate::webhook::EventFilter;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn config() -> EngineConfig {
        EngineConfig {
            retry: RetryPolicy {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(40),
                max_attempts: 3,
            },
            attempt_timeout: Duration::from_millis(200),
            ..EngineConfig::default()
        }
    }

    fn webhook(id: &str, types: &[&str]) -> WebhookSpec {
        WebhookSpec {
            id: id.into(),
            url: format!("https://{id}.example/hook").into(),
            filter: EventFilter::from_list(
                &types.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            ),
            signer: Signer::new(vec![SigningKey::parse(SECRET).unwrap()]),
            headers: Arc::new([("X-Mixpeek-Secret".to_owned(), "shh".to_owned())]),
            enabled: true,
            paused: false,
            rate_limit_per_second: None,
        }
    }

    fn event(id: &str, event_type: &str) -> Event {
        Event::from_payload(&Payload {
            event_id: id.into(),
            event_type: event_type.into(),
            occurred_at: "2026-01-01T00:00:00Z".into(),
            namespace_id: None,
            task_id: None,
            subject: None,
            data: serde_json::json!({"n": id}),
            cache_scope: None,
        })
    }

    async fn start(config: EngineConfig) -> (Engine, ScriptedTransport, MemoryLedger) {
        let transport = ScriptedTransport::default();
        let ledger = MemoryLedger::default();
        let engine = Engine::start(
            config,
            Arc::new(transport.clone()),
            Arc::new(ledger.clone()),
        )
        .await
        .unwrap();
        (engine, transport, ledger)
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Webhook changes are asynchronous messages; a stats call is processed after them.
    async fn settle_webhooks(handle: &EngineHandle) {
        handle.stats().await.unwrap();
    }

    #[tokio::test]
    async fn delivers_each_event_once_to_each_matching_enabled_webhook() {
        let (engine, transport, ledger) = start(config()).await;
        let handle = engine.handle();
        handle
            .upsert_webhook(webhook("a", &["object.created"]))
            .unwrap();
        handle
            .upsert_webhook(webhook("b", &["batch.completed"]))
            .unwrap();
        handle.upsert_webhook(webhook("all", &["*"])).unwrap();
        handle
            .upsert_webhook(WebhookSpec {
                enabled: false,
                ..webhook("off", &["*"])
            })
            .unwrap();
        settle_webhooks(&handle).await;

        for i in 0..10 {
            let token = Bytes::from(format!("t{i}"));
            handle
                .submit(event(&format!("evt_{i}"), "object.created"), Some(token))
                .await
                .unwrap();
        }
        until("20 deliveries", || {
            ledger.count_with(DeliveryStatus::Succeeded) == 20
        })
        .await;
        until("checkpoint at the last event", || {
            ledger.checkpoints().last().map(|c| c.as_ref()) == Some(b"t9".as_ref())
        })
        .await;

        assert_eq!(transport.sent_to("https://a.example/hook"), 10);
        assert_eq!(transport.sent_to("https://all.example/hook"), 10);
        assert_eq!(transport.sent_to("https://b.example/hook"), 0);
        assert_eq!(transport.sent_to("https://off.example/hook"), 0);

        // Signed per Standard Webhooks, with the webhook's own headers and identical bytes.
        let key = SigningKey::parse(SECRET).unwrap();
        for request in transport.sent() {
            assert!(verify_header(
                &key,
                &request.msg_id,
                request.timestamp,
                &request.body,
                &request.signature
            ));
            assert_eq!(
                &*request.headers,
                &[("X-Mixpeek-Secret".to_owned(), "shh".to_owned())]
            );
        }
        // Batched: far fewer ledger writes than deliveries.
        assert!(ledger.writes() < 20, "{} writes", ledger.writes());
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn retries_until_2xx_and_keeps_the_attempt_log() {
        let (engine, transport, ledger) = start(config()).await;
        let handle = engine.handle();
        handle.upsert_webhook(webhook("a", &["*"])).unwrap();
        settle_webhooks(&handle).await;
        transport.script(
            "https://a.example/hook",
            vec![Answer::Status(500), Answer::Status(500)],
        );

        handle.submit(event("evt_1", "x"), None).await.unwrap();
        until("success", || {
            ledger.count_with(DeliveryStatus::Succeeded) == 1
        })
        .await;

        let stored = ledger.delivery("evt_1:a").unwrap();
        assert_eq!(stored.record.attempts, 3);
        let codes: Vec<_> = stored.attempt_log.iter().map(|a| a.status_code).collect();
        assert_eq!(codes, [Some(500), Some(500), Some(200)]);
        // Every attempt sent the same bytes.
        let bodies: Vec<_> = transport.sent().into_iter().map(|r| r.body).collect();
        assert!(bodies.windows(2).all(|w| w[0] == w[1]));
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn exhausted_retries_end_failed_with_payload_kept_for_replay() {
        let (engine, transport, ledger) = start(config()).await;
        let handle = engine.handle();
        handle.upsert_webhook(webhook("a", &["*"])).unwrap();
        settle_webhooks(&handle).await;
        transport.set_default("https://a.example/hook", Answer::Status(503));

        handle.submit(event("evt_1", "x"), None).await.unwrap();
        until("failure", || ledger.count_with(DeliveryStatus::Failed) == 1).await;
        let stored = ledger.delivery("evt_1:a").unwrap();
        assert_eq!(stored.record.attempts, 3);
        assert_eq!(stored.attempt_log.len(), 3);
        assert_eq!(stored.record.last_status_code, Some(503));
        assert!(stored.payload.is_some());
        assert_eq!(transport.sent_to("https://a.example/hook"), 3);
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn retry_after_is_waited_for() {
        let mut config = config();
        config.retry.max = Duration::from_secs(10);
        let (engine, transport, ledger) = start(config).await;
        let handle = engine.handle();
        handle.upsert_webhook(webhook("a", &["*"])).unwrap();
        settle_webhooks(&handle).await;
        transport.script(
            "https://a.example/hook",
            vec![Answer::StatusRetryAfter(429, Duration::from_millis(400))],
        );
        let started = Instant::now();
        handle.submit(event("evt_1", "x"), None).await.unwrap();
        until("success", || {
            ledger.count_with(DeliveryStatus::Succeeded) == 1
        })
        .await;
        assert!(started.elapsed() >= Duration::from_millis(400));
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn plaintext_urls_fail_without_being_dialled() {
        let (engine, transport, ledger) = start(config()).await;
        let handle = engine.handle();
        handle
            .upsert_webhook(WebhookSpec {
                url: "http://a.example/hook".into(),
                ..webhook("a", &["*"])
            })
            .unwrap();
        settle_webhooks(&handle).await;
        handle.submit(event("evt_1", "x"), None).await.unwrap();
        until("failure", || ledger.count_with(DeliveryStatus::Failed) == 1).await;
        let stored = ledger.delivery("evt_1:a").unwrap();
        assert_eq!(stored.record.attempts, 1);
        assert!(stored
            .record
            .last_error
            .unwrap()
            .contains("HTTPS is required"));
        assert!(transport.sent().is_empty());
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn a_hanging_endpoint_times_out_and_does_not_delay_others() {
        let (engine, transport, ledger) = start(config()).await;
        let handle = engine.handle();
        handle.upsert_webhook(webhook("slow", &["*"])).unwrap();
        handle.upsert_webhook(webhook("fast", &["*"])).unwrap();
        settle_webhooks(&handle).await;
        transport.set_default("https://slow.example/hook", Answer::Hang);

        let started = Instant::now();
        for i in 0..20 {
            handle
                .submit(event(&format!("evt_{i}"), "x"), None)
                .await
                .unwrap();
        }
        until("fast endpoint done", || {
            transport.sent_to("https://fast.example/hook") == 20
        })
        .await;
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );

        until("slow endpoint exhausted", || {
            ledger.count_with(DeliveryStatus::Failed) == 20
        })
        .await;
        let stored = ledger.delivery("evt_0:slow").unwrap();
        assert!(stored
            .attempt_log
            .iter()
            .all(|a| a.error.as_deref() == Some("timed out after 200 ms")));
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn checkpoint_waits_for_every_earlier_delivery() {
        let mut config = config();
        config.attempt_timeout = Duration::from_millis(500);
        config.retry.max_attempts = 1;
        let (engine, transport, ledger) = start(config).await;
        let handle = engine.handle();
        handle.upsert_webhook(webhook("slow", &["slow"])).unwrap();
        handle.upsert_webhook(webhook("fast", &["fast"])).unwrap();
        settle_webhooks(&handle).await;
        transport.set_default("https://slow.example/hook", Answer::Hang);

        handle
            .submit(event("evt_1", "slow"), Some(Bytes::from_static(b"t1")))
            .await
            .unwrap();
        handle
            .submit(event("evt_2", "fast"), Some(Bytes::from_static(b"t2")))
            .await
            .unwrap();
        until("fast delivered", || ledger.delivery("evt_2:fast").is_some()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            ledger.checkpoints().is_empty(),
            "checkpoint passed an unrecorded delivery"
        );

        until("checkpoint after the slow one ends", || {
            ledger.checkpoints().last().map(|c| c.as_ref()) == Some(b"t2".as_ref())
        })
        .await;
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn rate_limit_spaces_attempts() {
        let (engine, transport, ledger) = start(config()).await;
        let handle = engine.handle();
        handle
            .upsert_webhook(WebhookSpec {
                rate_limit_per_second: Some(10),
                ..webhook("a", &["*"])
            })
            .unwrap();
        settle_webhooks(&handle).await;
        let started = Instant::now();
        for i in 0..25 {
            handle
                .submit(event(&format!("evt_{i}"), "x"), None)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // One every 100 ms, no burst.
        let early = transport.sent_to("https://a.example/hook");
        assert!((4..=7).contains(&early), "{early} sent in the first 500 ms");
        until("all delivered", || {
            ledger.count_with(DeliveryStatus::Succeeded) == 25
        })
        .await;
        assert!(started.elapsed() >= Duration::from_millis(2_300));
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn removing_a_webhook_stops_it_and_frees_the_checkpoint() {
        let mut config = config();
        config.attempt_timeout = Duration::from_secs(30);
        let (engine, transport, ledger) = start(config).await;
        let handle = engine.handle();
        handle.upsert_webhook(webhook("a", &["*"])).unwrap();
        settle_webhooks(&handle).await;
        transport.set_default("https://a.example/hook", Answer::Hang);
        handle
            .submit(event("evt_1", "x"), Some(Bytes::from_static(b"t1")))
            .await
            .unwrap();
        until("attempt started", || {
            transport.sent_to("https://a.example/hook") == 1
        })
        .await;

        handle.remove_webhook("a").unwrap();
        until("checkpoint moves on", || !ledger.checkpoints().is_empty()).await;
        handle.submit(event("evt_2", "x"), None).await.unwrap();
        settle_webhooks(&handle).await;
        assert_eq!(transport.sent_to("https://a.example/hook"), 1);
        assert_eq!(handle.stats().await.unwrap().endpoints, 0);
        engine.shutdown(Duration::from_millis(100)).await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_endpoint_is_probed_with_few_attempts_until_it_recovers() {
        let mut config = config();
        config.attempt_timeout = Duration::from_millis(100);
        config.retry.max_attempts = 50;
        let (engine, transport, ledger) = start(config).await;
        let handle = engine.handle();
        handle.upsert_webhook(webhook("dead", &["*"])).unwrap();
        settle_webhooks(&handle).await;
        transport.set_default("https://dead.example/hook", Answer::Hang);

        for i in 0..40 {
            handle
                .submit(event(&format!("evt_{i}"), "x"), None)
                .await
                .unwrap();
        }
        until("the first wave", || {
            transport.sent_to("https://dead.example/hook") >= 40
        })
        .await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        // Uncapped, every 100 ms timeout would re-send all 40 (~240 by now); failing, the
        // endpoint is probed two at a time.
        let sent = transport.sent_to("https://dead.example/hook");
        assert!(sent < 80, "{sent} attempts to a dead endpoint");

        // Once it answers again, the backlog flows at full concurrency.
        transport.set_default("https://dead.example/hook", Answer::Status(200));
        until("all delivered after recovery", || {
            ledger.count_with(DeliveryStatus::Succeeded) == 40
        })
        .await;
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn answering_endpoints_share_connections_and_one_that_hangs_moves_to_its_own() {
        let mut config = config();
        config.attempt_timeout = Duration::from_secs(2);
        config.retry.max_attempts = 50;
        let (engine, transport, ledger) = start(config).await;
        let handle = engine.handle();
        let (ok, dead) = ("https://ok.example/hook", "https://dead.example/hook");
        transport.set_default(dead, Answer::Hang);
        handle.upsert_webhook(webhook("ok", &["*"])).unwrap();
        handle.upsert_webhook(webhook("dead", &["*"])).unwrap();
        settle_webhooks(&handle).await;
        for i in 0..10 {
            handle
                .submit(event(&format!("evt_{i}"), "x"), None)
                .await
                .unwrap();
        }
        until("the answering endpoint served", || {
            transport.sent_to(ok) == 10
        })
        .await;
        assert_eq!(transport.sent_through(ok, false), 10, "shared connections");
        // Not answered yet: one attempt at a time, so a new endpoint that hangs holds one
        // stream of the shared connection, not a whole in-flight window.
        assert_eq!(transport.sent_to(dead), 1, "slow start");

        // Its first attempt timed out: the queued ones go through connections of its own.
        until("the rest sent after the timeout", || {
            transport.sent_through(dead, true) >= 9
        })
        .await;
        assert_eq!(transport.sent_through(dead, false), 1);

        // Answering again, it shares the connections again.
        transport.set_default(dead, Answer::Status(200));
        until("everything delivered", || {
            ledger.count_with(DeliveryStatus::Succeeded) == 20
        })
        .await;
        let shared_before = transport.sent_through(dead, false);
        handle.submit(event("evt_after", "x"), None).await.unwrap();
        until("the new event delivered", || {
            ledger.count_with(DeliveryStatus::Succeeded) == 22
        })
        .await;
        assert_eq!(transport.sent_through(dead, false), shared_before + 1);
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn a_checkpoint_whose_write_failed_is_written_again() {
        let (engine, _transport, ledger) = start(config()).await;
        let handle = engine.handle();
        handle.upsert_webhook(webhook("a", &["*"])).unwrap();
        settle_webhooks(&handle).await;
        ledger.fail_checkpoints(3);
        // One event and nothing after it: only a retry can store its checkpoint.
        handle
            .submit(event("evt_1", "object.created"), Some(Bytes::from("t1")))
            .await
            .unwrap();
        until("the checkpoint stored despite failed writes", || {
            ledger.checkpoints().last().map(|c| c.as_ref()) == Some(b"t1".as_ref())
        })
        .await;
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_endpoint_raises_one_failing_and_one_recovered_alert() {
        let mut config = config();
        config.retry.max_attempts = 100;
        config.health.failing_after = 4;
        let (engine, transport, ledger) = start(config).await;
        let handle = engine.handle();
        transport.set_default("https://a.example/hook", Answer::Status(503));
        handle.upsert_webhook(webhook("a", &["*"])).unwrap();
        settle_webhooks(&handle).await;
        for i in 0..3 {
            handle
                .submit(event(&format!("evt_{i}"), "object.created"), None)
                .await
                .unwrap();
        }
        until("12 failed attempts", || {
            transport.sent_to("https://a.example/hook") >= 12
        })
        .await;
        let report = handle
            .endpoint("a")
            .await
            .unwrap()
            .expect("endpoint a runs");
        assert!(report.health.failing);
        assert!(report.health.consecutive_failures >= 12);
        assert_eq!(report.health.last_status_code, Some(503));
        assert_eq!(report.health.last_success_at, None);
        assert_eq!(report.health.success_rate(), Some(0.0));

        transport.set_default("https://a.example/hook", Answer::Status(200));
        until("3 deliveries succeed", || {
            ledger.count_with(DeliveryStatus::Succeeded) == 3
        })
        .await;
        until("the recovered alert", || ledger.alerts().len() >= 2).await;
        let alerts = ledger.alerts();
        let types: Vec<_> = alerts.iter().map(|a| a.event_type()).collect();
        assert_eq!(
            types,
            ["webhook.endpoint.failing", "webhook.endpoint.recovered"],
            "{alerts:?}"
        );
        match &alerts[0] {
            crate::health::Alert::EndpointFailing {
                webhook_id,
                consecutive_failures,
                last_status_code,
                ..
            } => {
                assert_eq!(webhook_id, "a");
                assert_eq!(*consecutive_failures, 4);
                assert_eq!(*last_status_code, Some(503));
            }
            other => panic!("{other:?}"),
        }
        let report = handle.endpoint("a").await.unwrap().unwrap();
        assert!(!report.health.failing);
        assert_eq!(report.health.consecutive_failures, 0);
        assert!(report.health.last_success_at.is_some());
        assert!(handle.endpoint("nope").await.unwrap().is_none());
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn an_exhausted_delivery_raises_delivery_exhausted_but_not_for_its_own_kind() {
        let (engine, transport, ledger) = start(config()).await;
        let handle = engine.handle();
        transport.set_default("https://a.example/hook", Answer::Status(500));
        handle
            .upsert_webhook(webhook("a", &["*", "delivery.exhausted"]))
            .unwrap();
        settle_webhooks(&handle).await;
        handle
            .submit(event("evt_x", "object.created"), None)
            .await
            .unwrap();
        handle
            .submit(event("evt_y", "delivery.exhausted"), None)
            .await
            .unwrap();
        until("both deliveries failed", || {
            ledger.count_with(DeliveryStatus::Failed) == 2
        })
        .await;
        until("the exhausted alert", || !ledger.alerts().is_empty()).await;
        // Give a wrongly raised second alert the time to show up.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let alerts = ledger.alerts();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        match &alerts[0] {
            crate::health::Alert::DeliveryExhausted {
                delivery_id,
                event_id,
                attempts,
                last_status_code,
                ..
            } => {
                assert_eq!(delivery_id, "evt_x:a");
                assert_eq!(event_id, "evt_x");
                assert_eq!(*attempts, 3);
                assert_eq!(*last_status_code, Some(500));
            }
            other => panic!("{other:?}"),
        }
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn a_crashed_endpoint_is_restarted_with_its_backlog() {
        let (engine, transport, ledger) = start(config()).await;
        let handle = engine.handle();
        handle
            .upsert_webhook(WebhookSpec {
                rate_limit_per_second: Some(5),
                ..webhook("a", &["*"])
            })
            .unwrap();
        settle_webhooks(&handle).await;
        for i in 0..6 {
            handle
                .submit(
                    event(&format!("evt_{i}"), "x"),
                    Some(Bytes::from(format!("t{i}"))),
                )
                .await
                .unwrap();
        }
        // Most of them are still queued behind the rate limit when the actor dies.
        handle
            .router
            .cast(router::Msg::CrashEndpoint("a".into()))
            .unwrap();
        until("all delivered after the restart", || {
            ledger.count_with(DeliveryStatus::Succeeded) == 6
        })
        .await;
        assert!(transport.sent_to("https://a.example/hook") >= 6);
        let stats = handle.stats().await.unwrap();
        assert_eq!(stats.endpoint_restarts, 1);
        assert_eq!(stats.endpoints, 1);
        until("checkpoint at the last event", || {
            ledger.checkpoints().last().map(|c| c.as_ref()) == Some(b"t5".as_ref())
        })
        .await;
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn resumed_deliveries_are_attempted_at_their_due_time() {
        let (engine, transport, ledger) = start(config()).await;
        let handle = engine.handle();
        handle.upsert_webhook(webhook("a", &["*"])).unwrap();
        settle_webhooks(&handle).await;
        let body = event("evt_9", "x").body;
        handle
            .resume(PendingDelivery {
                event_id: "evt_9".into(),
                webhook_id: "a".into(),
                event_type: "x".into(),
                task_id: None,
                attempts: 2,
                next_attempt_at: std::time::SystemTime::now() + Duration::from_millis(100),
                created_at: std::time::SystemTime::now(),
                payload: body.clone(),
            })
            .unwrap();
        settle_webhooks(&handle).await;
        assert!(transport.sent().is_empty());
        until("resumed delivery succeeds", || {
            ledger.count_with(DeliveryStatus::Succeeded) == 1
        })
        .await;
        let stored = ledger.delivery("evt_9:a").unwrap();
        assert_eq!(stored.record.attempts, 3);
        assert!(!stored.record.first_write);
        assert_eq!(transport.sent()[0].body, body);
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn a_paused_endpoint_holds_its_deliveries_as_pending_until_resumed() {
        let (engine, transport, ledger) = start(config()).await;
        let handle = engine.handle();
        let paused = WebhookSpec {
            paused: true,
            ..webhook("a", &["*"])
        };
        handle.upsert_webhook(paused.clone()).unwrap();
        settle_webhooks(&handle).await;
        for i in 0..5 {
            let token = Bytes::from(format!("t{i}"));
            handle
                .submit(event(&format!("evt_{i}"), "x"), Some(token))
                .await
                .unwrap();
        }
        // Recorded as pending, and the checkpoint moves past them: nothing is lost in a
        // crash and the feed is not held back.
        until("5 pending records", || {
            ledger.count_with(DeliveryStatus::Pending) == 5
        })
        .await;
        until("checkpoint at the last event", || {
            ledger.checkpoints().last().map(|c| c.as_ref()) == Some(b"t4".as_ref())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            transport.sent().len(),
            0,
            "a paused endpoint sent something"
        );

        handle
            .upsert_webhook(WebhookSpec {
                paused: false,
                ..paused
            })
            .unwrap();
        until("5 deliveries", || {
            ledger.count_with(DeliveryStatus::Succeeded) == 5
        })
        .await;
        assert_eq!(transport.sent().len(), 5);
        let stored = ledger.delivery("evt_0:a").unwrap();
        assert_eq!(stored.record.attempts, 1);
        assert_eq!(stored.attempt_log.len(), 1);
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn pausing_a_busy_endpoint_starts_nothing_more_and_resuming_delivers_each_once() {
        let mut config = config();
        config.max_in_flight_per_endpoint = 2;
        config.attempt_timeout = Duration::from_secs(5);
        let (engine, transport, ledger) = start(config).await;
        let handle = engine.handle();
        let spec = webhook("a", &["*"]);
        let url = spec.url.to_string();
        handle.upsert_webhook(spec.clone()).unwrap();
        settle_webhooks(&handle).await;
        // Proven by a first delivery, the endpoint lines up more attempts than it runs.
        handle.submit(event("evt_first", "x"), None).await.unwrap();
        until("the first delivery", || delivered(&ledger, "a") == 1).await;
        transport.set_default(&url, Answer::Slow(Duration::from_millis(500)));
        for i in 0..20 {
            handle
                .submit(event(&format!("evt_{i}"), "x"), None)
                .await
                .unwrap();
        }
        until("two attempts under way", || transport.sent_to(&url) >= 3).await;
        handle
            .upsert_webhook(WebhookSpec {
                paused: true,
                ..spec.clone()
            })
            .unwrap();
        settle_webhooks(&handle).await;
        // What was under way (answered after 500 ms) ends; what was lined up behind it
        // never starts.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sent = transport.sent_to(&url);
        assert_eq!(sent, 1 + 2, "the cap is 2");
        tokio::time::sleep(Duration::from_millis(800)).await;
        let after = transport.sent_to(&url);
        assert_eq!(after, sent, "a paused endpoint started attempts");
        transport.set_default(&url, Answer::Status(200));

        handle
            .upsert_webhook(WebhookSpec {
                paused: false,
                ..spec
            })
            .unwrap();
        until("every delivery", || delivered(&ledger, "a") == 21).await;
        let successes = successes(&ledger, "a");
        assert!(
            successes.values().all(|n| *n == 1),
            "a delivery succeeded more than once: {successes:?}"
        );
        assert_eq!(transport.sent_to(&url), 21);
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    // ---- Bounded memory: spilling to the ledger and paging back -------------------------

    async fn start_with(
        config: EngineConfig,
        ledger: MemoryLedger,
    ) -> (Engine, ScriptedTransport, MemoryLedger) {
        let transport = ScriptedTransport::default();
        let engine = Engine::start(
            config,
            Arc::new(transport.clone()),
            Arc::new(ledger.clone()),
        )
        .await
        .unwrap();
        (engine, transport, ledger)
    }

    /// Small bounds so that a few hundred events overflow them.
    fn bounded(max_held: usize, page: usize) -> EngineConfig {
        let mut config = config();
        config.retry.max_attempts = 1_000;
        config.max_held_per_endpoint = max_held;
        config.ledger_page_size = page;
        config
    }

    /// Deliveries an endpoint holds in memory, in any state.
    async fn held(handle: &EngineHandle, id: &str) -> usize {
        let stats = handle.stats().await.unwrap();
        stats
            .per_endpoint
            .get(id)
            .map_or(0, |s| s.queued + s.in_flight + s.scheduled)
    }

    /// Samples what an endpoint holds until stopped; returns the largest figure seen.
    fn watch_held(handle: &EngineHandle, id: &'static str) -> (Arc<AtomicBool>, JoinHandle<usize>) {
        let stop = Arc::new(AtomicBool::new(false));
        let (handle, flag) = (handle.clone(), stop.clone());
        let sampler = tokio::spawn(async move {
            let mut most = 0;
            while !flag.load(Ordering::Relaxed) {
                most = most.max(held(&handle, id).await);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            most
        });
        (stop, sampler)
    }

    /// Successful attempts per delivery of `webhook`, from the attempt logs.
    fn successes(ledger: &MemoryLedger, webhook: &str) -> HashMap<String, usize> {
        ledger
            .deliveries()
            .into_iter()
            .filter(|d| d.record.webhook_id == webhook)
            .map(|d| {
                let ok = d
                    .attempt_log
                    .iter()
                    .filter(|a| a.status_code == Some(200))
                    .count();
                (d.record.event_id, ok)
            })
            .collect()
    }

    /// Deliveries of `webhook` that got a 2xx.
    fn delivered(ledger: &MemoryLedger, webhook: &str) -> usize {
        successes(ledger, webhook)
            .values()
            .filter(|n| **n > 0)
            .count()
    }

    fn pending(event_id: &str, webhook_id: &str, due: std::time::SystemTime) -> PendingDelivery {
        PendingDelivery {
            event_id: event_id.into(),
            webhook_id: webhook_id.into(),
            event_type: "x".into(),
            task_id: None,
            attempts: 1,
            next_attempt_at: due,
            created_at: std::time::SystemTime::now(),
            payload: event(event_id, "x").body,
        }
    }

    #[tokio::test]
    async fn a_dead_endpoint_holds_at_most_its_bound_and_delivers_every_spilled_delivery_once_healed(
    ) {
        let (engine, transport, ledger) = start(bounded(20, 8)).await;
        let handle = engine.handle();
        handle.upsert_webhook(webhook("dead", &["*"])).unwrap();
        handle.upsert_webhook(webhook("ok", &["*"])).unwrap();
        settle_webhooks(&handle).await;
        transport.set_default("https://dead.example/hook", Answer::Status(503));
        let (stop, sampler) = watch_held(&handle, "dead");

        for i in 0..300 {
            let token = Bytes::from(format!("t{i}"));
            handle
                .submit(event(&format!("evt_{i}"), "x"), Some(token))
                .await
                .unwrap();
        }
        // The healthy neighbour gets everything, and the checkpoint passes all 300 events:
        // what the dead endpoint could not hold is recorded as pending.
        until("the healthy endpoint has all 300", || {
            delivered(&ledger, "ok") == 300
        })
        .await;
        until("checkpoint at the last event", || {
            ledger.checkpoints().last().map(|c| c.as_ref()) == Some(b"t299".as_ref())
        })
        .await;
        until("every dead delivery recorded", || {
            ledger
                .deliveries()
                .iter()
                .filter(|d| d.record.webhook_id == "dead")
                .count()
                == 300
        })
        .await;
        assert!(held(&handle, "dead").await <= 20);

        transport.set_default("https://dead.example/hook", Answer::Status(200));
        until("all 300 spilled and held deliveries succeed", || {
            let ok = successes(&ledger, "dead");
            ok.len() == 300 && ok.values().all(|n| *n >= 1)
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        let most = sampler.await.unwrap();
        assert!(most <= 20, "the dead endpoint held {most} deliveries");
        // Never held twice (in memory and read back): exactly one 2xx per delivery.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let twice: Vec<_> = successes(&ledger, "dead")
            .into_iter()
            .filter(|(_, n)| *n != 1)
            .collect();
        assert!(twice.is_empty(), "delivered more than once: {twice:?}");
        assert!(ledger.sweeps() > 0);
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn the_checkpoint_never_passes_a_spilled_delivery_before_it_is_recorded() {
        let mut config = bounded(5, 4);
        config.attempt_timeout = Duration::from_millis(300);
        let (engine, transport, ledger) =
            start_with(config, MemoryLedger::auditing_checkpoints()).await;
        let handle = engine.handle();
        handle.upsert_webhook(webhook("dead", &["*"])).unwrap();
        handle.upsert_webhook(webhook("ok", &["*"])).unwrap();
        settle_webhooks(&handle).await;
        transport.set_default("https://dead.example/hook", Answer::Hang);

        for i in 0..40 {
            let token = Bytes::from(format!("t{i:02}"));
            handle
                .submit(event(&format!("evt_{i:02}"), "x"), Some(token))
                .await
                .unwrap();
        }
        until("checkpoint at the last event", || {
            ledger.checkpoints().last().map(|c| c.as_ref()) == Some(b"t39".as_ref())
        })
        .await;
        let audited = ledger.audited_checkpoints();
        assert!(!audited.is_empty());
        for (checkpoint, recorded) in audited {
            let last: usize = std::str::from_utf8(&checkpoint[1..])
                .unwrap()
                .parse()
                .unwrap();
            for i in 0..=last {
                for webhook in ["dead", "ok"] {
                    let id = format!("evt_{i:02}:{webhook}");
                    assert!(
                        recorded.contains(&id),
                        "checkpoint t{last:02} written before {id} was recorded"
                    );
                }
            }
        }
        engine.shutdown(Duration::from_millis(100)).await.unwrap();
    }

    #[tokio::test]
    async fn pending_deliveries_of_a_previous_run_are_paged_in_not_loaded_at_once() {
        let ledger = MemoryLedger::default();
        let now = std::time::SystemTime::now();
        let soon = now + Duration::from_millis(1_500);
        ledger.insert_pending((0..400).map(|i| pending(&format!("evt_{i:03}"), "a", now)));
        ledger.insert_pending((400..405).map(|i| pending(&format!("evt_{i:03}"), "a", soon)));
        ledger.insert_pending((0..10).map(|i| pending(&format!("evt_{i:03}"), "off", now)));
        let (engine, transport, ledger) = start_with(bounded(50, 20), ledger).await;
        let handle = engine.handle();
        handle
            .upsert_webhook(WebhookSpec {
                rate_limit_per_second: Some(1_000),
                ..webhook("a", &["*"])
            })
            .unwrap();
        let off = WebhookSpec {
            enabled: false,
            ..webhook("off", &["*"])
        };
        handle.upsert_webhook(off.clone()).unwrap();
        settle_webhooks(&handle).await;
        let (stop, sampler) = watch_held(&handle, "a");

        handle.page_pending(vec!["a".into(), "off".into()]).unwrap();
        until("half of them delivered", || delivered(&ledger, "a") >= 200).await;
        // Its successor carries on where a crashed actor stopped reading.
        handle
            .router
            .cast(router::Msg::CrashEndpoint("a".into()))
            .unwrap();
        until("the 400 due ones delivered", || {
            delivered(&ledger, "a") >= 400
        })
        .await;
        until("the 5 due later delivered once due", || {
            delivered(&ledger, "a") == 405
        })
        .await;
        assert!(std::time::SystemTime::now() >= soon);
        stop.store(true, Ordering::Relaxed);
        let most = sampler.await.unwrap();
        assert!(most <= 50, "endpoint a held {most} deliveries");
        let twice: Vec<_> = successes(&ledger, "a")
            .into_iter()
            .filter(|(_, n)| *n != 1)
            .collect();
        assert!(twice.is_empty(), "delivered more than once: {twice:?}");

        // A disabled webhook's deliveries stay pending until it is enabled again.
        assert_eq!(transport.sent_to("https://off.example/hook"), 0);
        handle
            .upsert_webhook(WebhookSpec {
                enabled: true,
                ..off
            })
            .unwrap();
        until("the enabled webhook's backlog delivered", || {
            delivered(&ledger, "off") == 10
        })
        .await;
        engine.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn all_endpoints_together_hold_at_most_the_total_bound() {
        let mut config = bounded(1_000, 50);
        config.max_held_total = 60;
        config.max_in_flight_per_endpoint = 4;
        config.attempt_timeout = Duration::from_secs(5);
        let (engine, transport, ledger) = start(config).await;
        let handle = engine.handle();
        for id in ["d1", "d2", "d3"] {
            handle.upsert_webhook(webhook(id, &["*"])).unwrap();
            transport.set_default(&format!("https://{id}.example/hook"), Answer::Hang);
        }
        settle_webhooks(&handle).await;
        for i in 0..200 {
            handle
                .submit(event(&format!("evt_{i}"), "x"), None)
                .await
                .unwrap();
        }
        // Nothing has failed yet (5 s timeout): each delivery is either held or spilled.
        let deadline = Instant::now() + Duration::from_secs(10);
        let total = loop {
            let stats = handle.stats().await.unwrap();
            let total: usize = stats
                .per_endpoint
                .values()
                .map(|s| s.queued + s.in_flight + s.scheduled)
                .sum();
            if total + ledger.deliveries().len() == 600 {
                break total;
            }
            assert!(Instant::now() < deadline, "{total} held, not all spilled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        // The shared budget, give or take what each endpoint may always hold.
        assert!(total <= 60 + 3 * 4, "{total} held in all");
        assert!(total >= 3 * 4, "{total} held in all");
        engine.shutdown(Duration::from_millis(100)).await.unwrap();
    }
}
