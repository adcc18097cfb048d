//! Group commit: many writers, one thread appending. Each writer hands over its entry and
//! waits; the thread takes everything that queued while the last batch was being synced,
//! appends it with one write and one sync, and answers each writer with its entry's place.
//! The more writers wait, the larger the batches, so throughput grows with load while a
//! lone writer waits for one sync only.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::ledger::{Ledger, LedgerError};

/// Entries and bytes one batch takes at most.
const MAX_BATCH_ENTRIES: usize = 20_000;
const MAX_BATCH_BYTES: usize = 8 << 20;

struct Job {
    entry: Vec<u8>,
    done: oneshot::Sender<Result<u64, String>>,
}

/// A shared handle on a ledger: appends go through the committing thread, everything
/// else (proofs, checkpoints) locks the ledger briefly.
#[derive(Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
    ledger: Arc<Mutex<Ledger>>,
}

impl Committer {
    pub fn start(ledger: Ledger) -> Committer {
        let ledger = Arc::new(Mutex::new(ledger));
        let (jobs, queue) = mpsc::channel::<Job>();
        let shared = ledger.clone();
        std::thread::Builder::new()
            .name("ledger-commit".into())
            .spawn(move || commit_loop(&queue, &shared))
            .expect("the ledger thread starts");
        Committer { jobs, ledger }
    }

    /// Appends one unnumbered entry; returns once it is durable, with its place.
    pub async fn append(&self, entry: Vec<u8>) -> Result<u64, LedgerError> {
        let (done, answer) = oneshot::channel();
        self.send(entry, done)?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(LedgerError::NotDurable)
    }

    /// Appends several entries in order (usually in one batch); returns the first's place.
    pub async fn append_all(&self, entries: Vec<Vec<u8>>) -> Result<Vec<u64>, LedgerError> {
        let mut answers = Vec::with_capacity(entries.len());
        for entry in entries {
            let (done, answer) = oneshot::channel();
            self.send(entry, done)?;
            answers.push(answer);
        }
        let mut places = Vec::with_capacity(answers.len());
        for answer in answers {
            places.push(
                answer
                    .await
                    .map_err(|_| stopped())?
                    .map_err(LedgerError::NotDurable)?,
            );
        }
        Ok(places)
    }

    /// The same as `append`, for callers outside an async runtime.
    pub fn append_blocking(&self, entry: Vec<u8>) -> Result<u64, LedgerError> {
        let (done, answer) = oneshot::channel();
        self.send(entry, done)?;
        answer
            .blocking_recv()
            .map_err(|_| stopped())?
            .map_err(LedgerError::NotDurable)
    }

    fn send(
        &self,
        entry: Vec<u8>,
        done: oneshot::Sender<Result<u64, String>>,
    ) -> Result<(), LedgerError> {
        self.jobs.send(Job { entry, done }).map_err(|_| stopped())
    }

    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn stopped() -> LedgerError {
    LedgerError::NotDurable("the ledger's writing thread has stopped".into())
}

/// Under load the thread sleeps this long for company before syncing: one sync then
/// serves several statements, and each sync costs the machine an I/O interrupt, a flush
/// and two wake-ups. It sleeps rather than waiting on the queue so that the entries
/// arriving meanwhile do not wake it one by one.
const LINGER: Duration = Duration::from_micros(300);

/// How many entries must be expected to arrive during a linger for it to be worth its
/// delay: below that (a lone writer, or a few hundred statements a second) each entry is
/// synced at once.
const WORTH_LINGERING: f64 = 0.5;

/// Entries per second lately, smoothed over batches.
#[derive(Debug)]
struct Pace {
    per_second: f64,
    last_batch: Instant,
}

impl Pace {
    fn new(now: Instant) -> Pace {
        Pace {
            per_second: 0.0,
            last_batch: now,
        }
    }

    /// Counts a batch of `entries` taken at `now`.
    fn observe(&mut self, entries: usize, now: Instant) {
        let seconds = now.duration_since(self.last_batch).as_secs_f64().max(1e-6);
        self.per_second = 0.8 * self.per_second + 0.2 * (entries as f64 / seconds);
        self.last_batch = now;
    }

    fn worth_lingering(&self) -> bool {
        self.per_second * LINGER.as_secs_f64() >= WORTH_LINGERING
    }
}

fn commit_loop(queue: &mpsc::Receiver<Job>, ledger: &Mutex<Ledger>) {
    let mut pace = Pace::new(Instant::now());
    while let Ok(first) = queue.recv() {
        if pace.worth_lingering() {
            std::thread::sleep(LINGER);
        }
        let mut batch = vec![first];
        let mut bytes = batch[0].entry.len();
        while batch.len() < MAX_BATCH_ENTRIES && bytes < MAX_BATCH_BYTES {
            let Ok(job) = queue.try_recv() else { break };
            bytes += job.entry.len();
            batch.push(job);
        }
        pace.observe(batch.len(), Instant::now());
        let (entries, answers): (Vec<Vec<u8>>, Vec<_>) =
            batch.into_iter().map(|j| (j.entry, j.done)).unzip();
        let appended = ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .append(&entries);
        for (i, done) in answers.into_iter().enumerate() {
            let answer = match &appended {
                Ok(first) => Ok(first + i as u64),
                Err(e) => Err(e.to_string()),
            };
            let _ = done.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace_at(per_second: u64, batch: usize) -> Pace {
        let start = Instant::now();
        let mut pace = Pace::new(start);
        let gap = Duration::from_nanos(1_000_000_000 * batch as u64 / per_second);
        for i in 1..=50 {
            pace.observe(batch, start + gap * i);
        }
        pace
    }

    #[test]
    fn a_few_hundred_statements_a_second_are_synced_at_once() {
        assert!(!pace_at(500, 1).worth_lingering());
        assert!(!pace_at(1_000, 1).worth_lingering());
    }

    #[test]
    fn thousands_a_second_wait_for_company() {
        assert!(pace_at(3_000, 2).worth_lingering());
        assert!(pace_at(20_000, 8).worth_lingering());
    }

    #[test]
    fn a_lull_after_a_burst_stops_the_lingering() {
        let mut pace = pace_at(20_000, 8);
        let mut at = pace.last_batch;
        for _ in 0..30 {
            at += Duration::from_millis(5);
            pace.observe(1, at);
        }
        assert!(!pace.worth_lingering());
    }
}
