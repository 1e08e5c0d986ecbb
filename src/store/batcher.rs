//! A coalescing batcher: requests that arrive together share one round trip to MongoDB.
//!
//! The dev server answers about a thousand single-document round trips a second, however
//! many are in flight, but one command over many documents costs little more than one over
//! a single document (DEVSERVER.md). So callers hand their request to one task, which
//! gathers them and passes each batch to a `flush` function that does the one round trip
//! and answers every request of the batch itself — as a database's log writer commits
//! transactions. Publishing ([`group_commit`](super::events::group_commit)) and the kept
//! endpoint health ([`health`](super::health)) use it.
//!
//! When to flush: at once when no flush is under way, so a single quiet request waits for
//! nothing but its own round trip (and no timer runs while idle); otherwise when
//! [`Options::max_batch`] requests have gathered, or [`Options::window`] after the first of
//! them, with at most [`Options::in_flight`] flushes outstanding. Under load the batches
//! grow by themselves: what arrives during a flush goes in the next.
//!
//! When the batcher stops (its `stop` token fires, or every handle is dropped), what is
//! queued is still flushed and answered before the task ends; a request made after that is
//! answered [`Stopped`].

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// When to flush what has gathered.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Most requests in one flush (at least 1).
    pub max_batch: usize,
    /// How long a request waits for others while a flush is already under way.
    pub window: Duration,
    /// Flushes outstanding at once (at least 1): with 2, one batch gathers while the other
    /// is written.
    pub in_flight: usize,
}

/// The batcher has stopped (the daemon is shutting down), or dropped a request unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the batcher has stopped")]
pub struct Stopped;

/// One request and where its answer goes; the flush answers it through its `reply`.
pub struct Request<Q, A> {
    /// What the caller asked.
    pub query: Q,
    /// Where the answer goes.
    pub reply: Reply<A>,
}

/// Where one request's answer goes.
pub struct Reply<A>(oneshot::Sender<A>);

impl<A> Reply<A> {
    /// Answers the caller (who may have gone: its answer is then dropped).
    pub fn send(self, answer: A) {
        let _ = self.0.send(answer);
    }

    /// Whether the caller still waits for the answer (it has not given up).
    pub fn is_awaited(&self) -> bool {
        !self.0.is_closed()
    }
}

/// A handle on a batcher task: cheap to clone.
pub struct Batcher<Q, A> {
    queue: mpsc::Sender<Request<Q, A>>,
}

impl<Q, A> Clone for Batcher<Q, A> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<Q, A> Batcher<Q, A>
where
    Q: Send + 'static,
    A: Send + 'static,
{
    /// Starts the task; `flush` does one round trip for a batch and answers each of its
    /// requests. The task stops once `stop` fires (or every handle is dropped) and what was
    /// queued is flushed.
    pub fn start<F, Fut>(
        options: Options,
        flush: F,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>)
    where
        F: Fn(Vec<Request<Q, A>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Requests waiting for the task, at most (then a caller waits to queue).
        let (queue, requests) = mpsc::channel(4 * options.max_batch.max(1));
        let task = tokio::spawn(run(requests, options, flush, stop));
        (Self { queue }, task)
    }

    /// Asks `query` together with whatever else is being asked, and waits for its answer.
    pub async fn call(&self, query: Q) -> Result<A, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request {
                query,
                reply: Reply(reply),
            })
            .await
            .map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }
}

/// The task: gathers requests and flushes them, until stopped and drained.
async fn run<Q, A, F, Fut>(
    mut requests: mpsc::Receiver<Request<Q, A>>,
    options: Options,
    flush: F,
    stop: CancellationToken,
) where
    Q: Send + 'static,
    A: Send + 'static,
    F: Fn(Vec<Request<Q, A>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let most = options.in_flight.max(1);
    let max_batch = options.max_batch.max(1);
    let mut queued: Vec<Request<Q, A>> = Vec::new();
    let mut flushes: JoinSet<()> = JoinSet::new();
    // When the oldest queued request stops waiting for company; `None` when none waits.
    let mut due: Option<Instant> = None;
    let mut open = true;
    let mut closing = false;
    loop {
        // Flush what is ready to go, while there is room for another flush.
        while !queued.is_empty() && flushes.len() < most {
            let ready = flushes.is_empty()
                || queued.len() >= max_batch
                || due.is_some_and(|due| due <= Instant::now())
                || !open;
            if !ready {
                break;
            }
            let take = queued.len().min(max_batch);
            let batch: Vec<Request<Q, A>> = queued.drain(..take).collect();
            flushes.spawn(flush(batch));
            due = None;
        }
        if !queued.is_empty() && due.is_none() {
            due = Some(Instant::now() + options.window);
        }
        if !open && queued.is_empty() && flushes.is_empty() {
            return;
        }
        let room = max_batch.saturating_sub(queued.len());
        tokio::select! {
            received = requests.recv_many(&mut queued, room), if open && room > 0 => {
                if received == 0 {
                    open = false;
                }
            }
            Some(_) = flushes.join_next(), if !flushes.is_empty() => {}
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)),
                if due.is_some() && flushes.len() < most => {}
            () = stop.cancelled(), if !closing => {
                // No new requests; those already queued are flushed and answered.
                requests.close();
                closing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A batcher whose flush records each batch's size and answers each request with its
    /// query doubled, after `delay`.
    fn doubling(
        options: Options,
        delay: Duration,
        stop: CancellationToken,
    ) -> (Batcher<u32, u32>, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let (batcher, _task) = Batcher::start(
            options,
            move |batch: Vec<Request<u32, u32>>| {
                seen.lock().unwrap().push(batch.len());
                async move {
                    tokio::time::sleep(delay).await;
                    for request in batch {
                        request.reply.send(request.query * 2);
                    }
                }
            },
            stop,
        );
        (batcher, sizes)
    }

    const OPTIONS: Options = Options {
        max_batch: 10,
        window: Duration::from_millis(5),
        in_flight: 1,
    };

    #[tokio::test]
    async fn a_lone_request_is_flushed_alone_and_answered() {
        let (batcher, sizes) =
            doubling(OPTIONS, Duration::from_millis(1), CancellationToken::new());
        assert_eq!(batcher.call(21).await, Ok(42));
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
    }

    #[tokio::test]
    async fn concurrent_requests_share_flushes_of_at_most_max_batch() {
        let (batcher, sizes) =
            doubling(OPTIONS, Duration::from_millis(10), CancellationToken::new());
        let answers = futures::future::join_all((0..35).map(|i| batcher.call(i))).await;
        assert_eq!(answers, (0..35).map(|i| Ok(i * 2)).collect::<Vec<_>>());
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 35);
        assert!(sizes.iter().all(|&n| n <= 10), "{sizes:?}");
        assert!(sizes.len() < 35, "nothing shared a flush: {sizes:?}");
    }

    #[tokio::test]
    async fn what_is_queued_when_stopped_is_still_answered_and_later_calls_are_refused() {
        let stop = CancellationToken::new();
        let (batcher, _) = doubling(OPTIONS, Duration::from_millis(50), stop.clone());
        let queued: Vec<_> = (0..25)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.call(i).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1)).await;
        stop.cancel();
        for (i, call) in queued.into_iter().enumerate() {
            assert_eq!(call.await.unwrap(), Ok(i as u32 * 2));
        }
        assert_eq!(batcher.call(1).await, Err(Stopped));
    }
}
