//! Runs one endpoint actor's attempts, all of them in one task.
//!
//! The actor hands over the attempts it starts in one turn as one batch, with the number
//! that may run at once; the task polls them together and reports every attempt that has
//! ended since its last report as one [`Report::Ended`].
//!
//! A healthy endpoint hands over more attempts than may run at once: the task starts the
//! next one the moment one ends, instead of waiting for the actor to hear of the end and
//! send another (a round trip through two tasks for every attempt, which at a fixed cap of
//! attempts in flight is time the endpoint's connection sits idle). Attempts not started yet
//! are returned on [`Attempts::recall`] ([`Report::Returned`]): the actor does
//! so whenever what may start changes (the endpoint fails, is paused, changed or drained).
//! An attempt is signed when it starts, never before. Nor does a lined-up attempt start once
//! the actor's gate closes (the daemon's leases may have passed to another member, say
//! after it was frozen past them, or its partition was revoked): the task returns it
//! instead, as on a recall, so what runs on past the gate is at most the attempts already
//! running — also when the actor has stopped meanwhile.
//!
//! One task rather than a task per attempt saves a task spawn per attempt (and the move of
//! the attempt's future into the task), the wake-ups between the tasks, and a message to
//! the actor for every attempt that ends. (It does not make the HTTP/2 connection batch its
//! writes: its task runs on another worker and writes each request as it comes.)
//!
//! The actor drops its handle when nothing is in flight; the task ends once it has no
//! attempt left, so an idle endpoint costs no task. An attempt whose actor died meanwhile
//! still runs to its end (the successor attempts it again: at least once).

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use crate::delivery::AttemptResult;

/// One attempt, ready to run: it reports when it started and how long it took.
pub struct Attempt {
    /// The actor's key for the attempt's job.
    pub key: u64,
    pub run: Pin<Box<dyn Future<Output = EndedAttempt> + Send>>,
}

enum Order {
    /// Run these, at most `cap` attempts at a time.
    Start { attempts: Vec<Attempt>, cap: usize },
    /// Return the attempts not started yet.
    Recall,
}

/// One ended attempt.
#[derive(Debug)]
pub struct EndedAttempt {
    /// The actor's key for the attempt's job.
    pub key: u64,
    pub started_at: SystemTime,
    pub elapsed: Duration,
    pub result: AttemptResult,
}

/// What the task tells the actor.
#[derive(Debug)]
pub enum Report {
    /// Attempts ended.
    Ended(Vec<EndedAttempt>),
    /// Attempts handed over and not started, returned on recall (by key).
    Returned(Vec<u64>),
}

/// How the task reaches the actor; `false` once the actor is gone.
pub type Reporter = Arc<dyn Fn(Report) -> bool + Send + Sync>;

/// Whether a lined-up attempt may start now.
pub type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

/// The actor's handle on its attempts task.
pub struct Attempts {
    report: Reporter,
    gate: Gate,
    task: Option<mpsc::UnboundedSender<Order>>,
}

impl Attempts {
    /// No task runs until the first batch; each task reports through `report`, and starts
    /// an attempt only while `gate` says it may.
    pub fn new(report: Reporter, gate: Gate) -> Self {
        Self {
            report,
            gate,
            task: None,
        }
    }

    /// Runs `batch` after the attempts handed over before, at most `cap` at a time, in the
    /// running task or a new one.
    pub fn start(&mut self, batch: Vec<Attempt>, cap: usize) {
        if batch.is_empty() {
            return;
        }
        let order = Order::Start {
            attempts: batch,
            cap,
        };
        let order = match &self.task {
            Some(task) => match task.send(order) {
                Ok(()) => return,
                // The task is gone (it cannot end while this handle lives, unless it
                // panicked): a new one takes the batch.
                Err(mpsc::error::SendError(order)) => order,
            },
            None => order,
        };
        let (task, inbox) = mpsc::unbounded_channel();
        task.send(order).expect("the receiver is right here");
        tokio::spawn(run(self.report.clone(), self.gate.clone(), inbox));
        self.task = Some(task);
    }

    /// Asks for the attempts not started yet back; they come with
    /// [`Report::Returned`] (none: no report).
    pub fn recall(&self) {
        if let Some(task) = &self.task {
            let _ = task.send(Order::Recall);
        }
    }

    /// Nothing is in flight: let the task end.
    pub fn idle(&mut self) {
        self.task = None;
    }
}

async fn run(report: Reporter, gate: Gate, mut inbox: mpsc::UnboundedReceiver<Order>) {
    let mut running = FuturesUnordered::new();
    let mut waiting = VecDeque::new();
    let mut cap = 1;
    let mut open = true;
    let mut ended = Vec::new();
    let mut returned = Vec::new();
    loop {
        let done = poll_fn(|cx| {
            while open {
                match inbox.poll_recv(cx) {
                    Poll::Ready(Some(Order::Start { attempts, cap: c })) => {
                        waiting.extend(attempts);
                        cap = c.max(1);
                    }
                    Poll::Ready(Some(Order::Recall)) => {
                        returned.extend(waiting.drain(..).map(|attempt: Attempt| attempt.key));
                    }
                    Poll::Ready(None) => open = false,
                    Poll::Pending => break,
                }
            }
            loop {
                while running.len() < cap && !waiting.is_empty() {
                    if !gate() {
                        returned.extend(waiting.drain(..).map(|attempt: Attempt| attempt.key));
                        break;
                    }
                    if let Some(attempt) = waiting.pop_front() {
                        running.push(attempt.run);
                    }
                }
                // Polls every new attempt once (each queues its request) before this task
                // yields to the connection's.
                match running.poll_next_unpin(cx) {
                    Poll::Ready(Some(attempt)) => ended.push(attempt),
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
            let done = !open && running.is_empty() && waiting.is_empty();
            if !ended.is_empty() || !returned.is_empty() || done {
                Poll::Ready(done)
            } else {
                Poll::Pending
            }
        })
        .await;
        if !returned.is_empty() {
            report(Report::Returned(std::mem::take(&mut returned)));
        }
        if !ended.is_empty() {
            report(Report::Ended(std::mem::take(&mut ended)));
        }
        if done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::oneshot;

    use super::*;

    /// Stands in for the endpoint actor: passes on what the task reports (returned
    /// attempts as negative keys).
    fn reports() -> (Attempts, mpsc::UnboundedReceiver<Vec<i64>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let report: Reporter = Arc::new(move |report| {
            let keys = match report {
                Report::Ended(ended) => ended.iter().map(|a| a.key as i64).collect(),
                Report::Returned(keys) => keys.iter().map(|k| -(*k as i64)).collect(),
            };
            tx.send(keys).is_ok()
        });
        (Attempts::new(report, Arc::new(|| true)), rx)
    }

    /// An attempt that ends, answering 200, when `go` fires.
    fn attempt(key: u64, go: oneshot::Receiver<()>) -> Attempt {
        attempt_counted(key, go, Arc::default())
    }

    /// The same, counting in `started` that it has started.
    fn attempt_counted(key: u64, go: oneshot::Receiver<()>, started: Arc<AtomicUsize>) -> Attempt {
        let run = Box::pin(async move {
            started.fetch_add(1, Ordering::SeqCst);
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
        });
        Attempt { key, run }
    }

    async fn next(reports: &mut mpsc::UnboundedReceiver<Vec<i64>>) -> Vec<i64> {
        let mut keys = tokio::time::timeout(Duration::from_secs(10), reports.recv())
            .await
            .expect("a report in time")
            .expect("the actor runs");
        keys.sort_unstable();
        keys
    }

    #[tokio::test]
    async fn every_attempt_is_reported_as_it_ends_and_the_task_ends_when_idle() {
        let (mut attempts, mut reports) = reports();
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = tasks();
        let (go, wait): (Vec<_>, Vec<_>) = (0..4).map(|_| oneshot::channel()).unzip();
        let mut wait = wait.into_iter();
        let mut batch = |keys: std::ops::RangeInclusive<u64>| -> Vec<Attempt> {
            keys.map(|k| attempt(k, wait.next().unwrap())).collect()
        };
        attempts.start(batch(1..=2), 4);
        attempts.start(batch(3..=4), 4);
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
    }

    /// `n` attempts keyed 1 to `n`, each counting its start in `started` and ending when
    /// its sender fires.
    fn counted_batch(
        n: usize,
        started: &Arc<AtomicUsize>,
    ) -> (Vec<oneshot::Sender<()>>, Vec<Attempt>) {
        let (go, wait): (Vec<_>, Vec<_>) = (0..n).map(|_| oneshot::channel()).unzip();
        let batch = wait
            .into_iter()
            .zip(1..)
            .map(|(wait, key)| attempt_counted(key, wait, started.clone()))
            .collect();
        (go, batch)
    }

    /// Waits until at least `n` attempts have started; fails at `deadline`.
    async fn started_at_least(started: &AtomicUsize, n: usize, deadline: tokio::time::Instant) {
        while started.load(Ordering::SeqCst) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} attempts never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn at_most_cap_run_the_next_starts_as_one_ends_and_a_recall_returns_the_rest() {
        let (mut attempts, mut reports) = reports();
        let started = Arc::new(AtomicUsize::new(0));
        let (go, batch) = counted_batch(5, &started);
        attempts.start(batch, 2);
        let started_now = || started.load(Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        started_at_least(&started, 2, deadline).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(started_now(), 2, "a cap of 2 lets two run");

        // One ends: the next starts without the actor handing anything over.
        let mut go = go.into_iter();
        go.next().unwrap().send(()).unwrap();
        assert_eq!(next(&mut reports).await, [1]);
        started_at_least(&started, 3, deadline).await;

        // A recall returns the two not started; those running go on.
        attempts.recall();
        assert_eq!(next(&mut reports).await, [-5, -4]);
        go.for_each(|go| {
            let _ = go.send(());
        });
        let mut rest = Vec::new();
        while rest.len() < 2 {
            rest.extend(next(&mut reports).await);
        }
        rest.sort_unstable();
        assert_eq!(rest, [2, 3]);
        assert_eq!(started_now(), 3, "a returned attempt never starts");
    }

    #[tokio::test]
    async fn once_the_gate_closes_lined_up_attempts_are_returned_not_started() {
        let (mut attempts, mut reports) = reports();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        attempts.gate = {
            let open = open.clone();
            Arc::new(move || open.load(Ordering::SeqCst))
        };
        let started = Arc::new(AtomicUsize::new(0));
        let (go, batch) = counted_batch(4, &started);
        attempts.start(batch, 2);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        started_at_least(&started, 2, deadline).await;

        // The gate closes (the leases lapsed while frozen): the two running end as they
        // will, the two lined up go back to the actor unstarted.
        open.store(false, Ordering::SeqCst);
        let mut go = go.into_iter();
        go.next().unwrap().send(()).unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.extend(next(&mut reports).await);
        }
        seen.sort_unstable();
        assert_eq!(seen, [-4, -3, 1]);
        go.for_each(|go| {
            let _ = go.send(());
        });
        assert_eq!(next(&mut reports).await, [2]);
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "nothing started past the gate"
        );
    }
}
