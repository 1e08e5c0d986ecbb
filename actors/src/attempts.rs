//! Runs one endpoint actor's attempts, all of them in one task.
//!
//! The actor hands over the attempts it starts in one turn as one batch; the task polls
//! them together and reports every attempt that has ended since its last report as one
//! [`EndpointMsg::AttemptsEnded`].
//!
//! One task rather than a task per attempt is what lets the connection batch its writes:
//! the attempts of a batch all queue their requests on the (HTTP/2) connection before its
//! task runs, so it sends them with one write instead of one write per request, and the
//! receiver reads them with one read. It also saves a task spawn per attempt and the
//! wake-ups between the tasks.
//!
//! The actor drops its handle when nothing is in flight; the task ends once it has no
//! attempt left, so an idle endpoint costs no task. An attempt whose actor died meanwhile
//! still runs to its end (the successor attempts it again: at least once).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use futures::stream::{FuturesUnordered, StreamExt};
use ractor::ActorRef;
use tokio::sync::mpsc;

use crate::delivery::AttemptResult;
use crate::endpoint::EndpointMsg;

/// One attempt, ready to run: it reports when it started and how long it took.
pub type Attempt = Pin<Box<dyn Future<Output = EndedAttempt> + Send>>;

/// One ended attempt.
#[derive(Debug)]
pub struct EndedAttempt {
    /// The actor's key for the attempt's job.
    pub key: u64,
    pub started_at: SystemTime,
    pub elapsed: Duration,
    pub result: AttemptResult,
}

/// The actor's handle on its attempts task.
#[derive(Default)]
pub struct Attempts {
    task: Option<mpsc::UnboundedSender<Vec<Attempt>>>,
}

impl Attempts {
    /// Starts `batch`, in the running task or a new one.
    pub fn start(&mut self, myself: &ActorRef<EndpointMsg>, batch: Vec<Attempt>) {
        if batch.is_empty() {
            return;
        }
        let batch = match &self.task {
            Some(task) => match task.send(batch) {
                Ok(()) => return,
                // The task is gone (it cannot end while this handle lives, unless it
                // panicked): a new one takes the batch.
                Err(mpsc::error::SendError(batch)) => batch,
            },
            None => batch,
        };
        let (task, inbox) = mpsc::unbounded_channel();
        task.send(batch).expect("the receiver is right here");
        tokio::spawn(run(myself.clone(), inbox));
        self.task = Some(task);
    }

    /// Nothing is in flight: let the task end.
    pub fn idle(&mut self) {
        self.task = None;
    }
}

async fn run(actor: ActorRef<EndpointMsg>, mut inbox: mpsc::UnboundedReceiver<Vec<Attempt>>) {
    let mut running = FuturesUnordered::new();
    let mut open = true;
    let mut ended = Vec::new();
    loop {
        poll_fn(|cx| {
            while open {
                match inbox.poll_recv(cx) {
                    Poll::Ready(Some(batch)) => running.extend(batch),
                    Poll::Ready(None) => open = false,
                    Poll::Pending => break,
                }
            }
            // Polls every new attempt once (each queues its request) before this task
            // yields to the connection's.
            while let Poll::Ready(Some(attempt)) = running.poll_next_unpin(cx) {
                ended.push(attempt);
            }
            if !ended.is_empty() || (!open && running.is_empty()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        if !ended.is_empty() {
            let _ = actor.cast(EndpointMsg::AttemptsEnded(std::mem::take(&mut ended)));
        }
        if !open && running.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use ractor::{Actor, ActorProcessingErr};
    use tokio::sync::oneshot;

    use super::*;

    /// Stands in for the endpoint actor: passes on what the task reports.
    struct Reports(mpsc::UnboundedSender<Vec<u64>>);

    impl Actor for Reports {
        type Msg = EndpointMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _: ActorRef<EndpointMsg>,
            _: (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            _: ActorRef<EndpointMsg>,
            msg: EndpointMsg,
            _: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            if let EndpointMsg::AttemptsEnded(ended) = msg {
                let _ = self.0.send(ended.into_iter().map(|a| a.key).collect());
            }
            Ok(())
        }
    }

    /// An attempt that ends, answering 200, when `go` fires.
    fn attempt(key: u64, go: oneshot::Receiver<()>) -> Attempt {
        Box::pin(async move {
            let _ = go.await;
            EndedAttempt {
                key,
                started_at: SystemTime::now(),
                elapsed: Duration::ZERO,
                result: Ok(crate::delivery::AttemptResponse {
                    status: 200,
                    retry_after: None,
                }),
            }
        })
    }

    async fn next(reports: &mut mpsc::UnboundedReceiver<Vec<u64>>) -> Vec<u64> {
        let mut keys = tokio::time::timeout(Duration::from_secs(10), reports.recv())
            .await
            .expect("a report in time")
            .expect("the actor runs");
        keys.sort_unstable();
        keys
    }

    #[tokio::test]
    async fn every_attempt_is_reported_as_it_ends_and_the_task_ends_when_idle() {
        let (tx, mut reports) = mpsc::unbounded_channel();
        let (actor, _) = Actor::spawn(None, Reports(tx), ()).await.unwrap();
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = tasks();
        let mut attempts = Attempts::default();
        let (go, wait): (Vec<_>, Vec<_>) = (0..4).map(|_| oneshot::channel()).unzip();
        let mut wait = wait.into_iter();
        attempts.start(
            &actor,
            (1..=2).map(|k| attempt(k, wait.next().unwrap())).collect(),
        );
        attempts.start(
            &actor,
            (3..=4).map(|k| attempt(k, wait.next().unwrap())).collect(),
        );
        assert_eq!(tasks(), before + 1, "one task runs both batches");

        // Attempt 1 still runs: the ones that ended are reported without it.
        let mut go = go.into_iter();
        let first = go.next().unwrap();
        go.for_each(|go| go.send(()).unwrap());
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.extend(next(&mut reports).await);
        }
        seen.sort_unstable();
        assert_eq!(seen, [2, 3, 4]);

        // Idle while attempt 1 runs: the task stays until it has reported it.
        attempts.idle();
        tokio::task::yield_now().await;
        assert_eq!(tasks(), before + 1);
        first.send(()).unwrap();
        assert_eq!(next(&mut reports).await, [1]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tasks() > before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the task never ended"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        actor.stop(None);
    }
}
