//! How many send-bulk requests read, validate and store their body at once.
//!
//! A create holds its whole body and every recipient in memory until it is stored; sixteen
//! clients each posting the maximum at once would otherwise hold sixteen of those together.
//! A create enters the gate *before* its body is read (an unread body stays in the socket,
//! where TCP flow control holds it back), so at most `MINDO_MAX_CONCURRENT_CREATES` bodies are
//! in memory. Others wait in a short queue ([`QUEUE_PER_SLOT`] per slot, each at most
//! [`MAX_WAIT`]); past that they get 503 `too_many_creates` with `Retry-After` (the `send` command
//! retries it with backoff).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::{ApiError, ErrorCode};

/// Requests that may wait per create slot.
pub const QUEUE_PER_SLOT: usize = 4;
/// The longest a request waits for a slot before it is told to come back.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// The `Retry-After` of a refused create, in seconds.
pub const RETRY_AFTER_SECS: u64 = 2;

/// The gate; clones share it.
#[derive(Clone, Debug)]
pub struct CreateGate {
    slots: Arc<Semaphore>,
    /// The number of slots (the configured concurrency).
    capacity: usize,
    /// Requests waiting for a slot now.
    waiting: Arc<AtomicUsize>,
}

/// A create's slot, released when dropped.
pub struct CreateSlot {
    /// Held only to be released on drop.
    _permit: OwnedSemaphorePermit,
}

/// A create refused for now: too many are in flight and waiting.
#[derive(Debug)]
pub struct Busy;

impl CreateGate {
    /// A gate of `capacity` slots (at least 1).
    pub fn new(capacity: usize) -> CreateGate {
        let capacity = capacity.max(1);
        CreateGate {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A slot now, or after waiting in the queue; [`Busy`] when the queue is full or the wait
    /// runs out.
    pub async fn enter(&self) -> Result<CreateSlot, Busy> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(CreateSlot { _permit: permit });
        }
        let queue = self.capacity * QUEUE_PER_SLOT;
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Busy);
        }
        let waited = tokio::time::timeout(MAX_WAIT, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match waited {
            Ok(Ok(permit)) => Ok(CreateSlot { _permit: permit }),
            _ => Err(Busy),
        }
    }

    /// Creates holding a slot now.
    pub fn in_flight(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// Creates waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

impl Busy {
    /// 503 `too_many_creates` with `Retry-After`.
    pub fn response(&self) -> HttpResponse {
        let error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::TooManyCreates,
            format!(
                "too many sends are being created at once; submit this one again in {RETRY_AFTER_SECS} s"
            ),
        );
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()))
            .content_type("application/json")
            .body(error.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_full_queue_refuses_at_once_and_a_freed_slot_lets_a_waiter_in() {
        let gate = CreateGate::new(1);
        let first = gate.enter().await.expect("a free slot");
        assert_eq!(gate.in_flight(), 1);

        let waiters: Vec<_> = (0..QUEUE_PER_SLOT)
            .map(|_| {
                let gate = gate.clone();
                actix_web::rt::spawn(async move { gate.enter().await.is_ok() })
            })
            .collect();
        while gate.waiting() < QUEUE_PER_SLOT {
            actix_web::rt::task::yield_now().await;
        }
        assert!(gate.enter().await.is_err(), "the queue is full");

        drop(first);
        for waiter in waiters {
            assert!(waiter.await.unwrap(), "every waiter gets its turn");
        }
        assert_eq!((gate.in_flight(), gate.waiting()), (0, 0));
    }
}
