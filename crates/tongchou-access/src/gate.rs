//! Argon2 work, a few at a time. Each hash or verification holds 40 MiB for ~80 ms, so a
//! burst of sign-ins run all at once takes gigabytes (60 took 2.6 GiB); here at most one
//! per core runs, a bounded queue waits, and whoever comes after that is told to retry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use crate::AccessError;

/// How many may wait per running slot before callers are refused.
const WAITING_PER_SLOT: usize = 8;
/// What a refused caller is told to wait, in seconds.
const RETRY_AFTER_SECONDS: u64 = 1;

pub(crate) struct Gate {
    slots: Arc<Semaphore>,
    /// Running and waiting.
    inside: Arc<AtomicUsize>,
    capacity: usize,
}

/// A place inside the gate, given back when dropped (even by a caller who went away).
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    pub(crate) fn new(slots: usize, waiting: usize) -> Gate {
        Gate {
            slots: Arc::new(Semaphore::new(slots)),
            inside: Arc::new(AtomicUsize::new(0)),
            capacity: slots + waiting,
        }
    }

    /// Runs `work` on a blocking thread once a slot is free, or refuses at once when the
    /// queue is full. The slot is held until `work` ends, even if the caller is dropped.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AccessError> {
        if self.inside.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.inside.fetch_sub(1, Ordering::SeqCst);
            return Err(AccessError::Busy(RETRY_AFTER_SECONDS));
        }
        let place = Place(self.inside.clone());
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| AccessError::Hash(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _held = (slot, place);
            work()
        })
        .await
        .map_err(|e| AccessError::Hash(e.to_string()))
    }
}

/// The process's gate: one slot per core (at most 4).
pub(crate) fn argon2() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let slots = cores.clamp(1, 4);
        Gate::new(slots, slots * WAITING_PER_SLOT)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_the_slots_run_and_a_full_queue_is_refused() {
        let gate = Arc::new(Gate::new(2, 3));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    gate.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        let mut done = 0;
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => done += 1,
                Err(AccessError::Busy(1)) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((done, refused), (5, 5));
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(
            gate.inside.load(Ordering::SeqCst),
            0,
            "every place given back"
        );
    }
}
