//! Group commit: many writers, one thread appending. Each writer hands over its entry and
//! waits; the thread takes everything that queued while the last batch was being synced,
//! appends it with one write and one sync, and answers each writer with its entry's place.
//! The more writers wait, the larger the batches, so throughput grows with load while a
//! lone writer waits for one sync only.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::entry::MOST_NUMBERING_ADDS;
use crate::ledger::{Ledger, LedgerError};
use crate::segment::MAX_ENTRY_BYTES;

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

    /// Appends several entries in order (usually in one batch, but other writers' entries
    /// may fall between them); returns their places.
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

    /// Queues an entry; one too large for the log is refused here, so that it cannot
    /// fail the batch it would have joined (the log refuses a batch whole).
    fn send(
        &self,
        entry: Vec<u8>,
        done: oneshot::Sender<Result<u64, String>>,
    ) -> Result<(), LedgerError> {
        if entry.len() + MOST_NUMBERING_ADDS > MAX_ENTRY_BYTES {
            return Err(LedgerError::NotDurable(format!(
                "an entry of {} bytes is more than the ledger takes ({MAX_ENTRY_BYTES} with its number)",
                entry.len()
            )));
        }
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
    use crate::entry::seq_of;

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

    fn committer(dir: &std::path::Path) -> Committer {
        let ledger = Ledger::open(&dir.join("ledger"), &dir.join("config"), "test/ledger").unwrap();
        Committer::start(ledger)
    }

    fn entry(writer: usize, i: usize) -> Vec<u8> {
        format!("{{\"writer\":{writer},\"i\":{i}}}").into_bytes()
    }

    /// Every entry lands exactly once, at the place its writer was told, in each writer's
    /// order.
    fn assert_placed(committer: &Committer, placed: &[(usize, usize, u64)]) {
        let ledger = committer.ledger();
        let mut seen = std::collections::HashSet::new();
        for &(writer, i, place) in placed {
            assert!(seen.insert(place), "place {place} given twice");
            let stored = ledger.log().entry(place).unwrap();
            assert_eq!(seq_of(&stored), Some(place));
            let wanted = String::from_utf8(entry(writer, i)).unwrap();
            assert!(String::from_utf8(stored).unwrap().ends_with(&wanted[1..]));
        }
        for writer in placed
            .iter()
            .map(|p| p.0)
            .collect::<std::collections::HashSet<_>>()
        {
            let places: Vec<u64> = placed
                .iter()
                .filter(|p| p.0 == writer)
                .map(|p| p.2)
                .collect();
            assert!(
                places.windows(2).all(|w| w[0] < w[1]),
                "writer {writer} out of order"
            );
        }
    }

    #[test]
    fn many_threads_are_each_placed_once_and_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let committer = committer(tmp.path());
        let before = committer.ledger().len();
        let placed: Vec<(usize, usize, u64)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|writer| {
                    let committer = committer.clone();
                    scope.spawn(move || {
                        (0..50)
                            .map(|i| {
                                (
                                    writer,
                                    i,
                                    committer.append_blocking(entry(writer, i)).unwrap(),
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(committer.ledger().len(), before + 800);
        assert_placed(&committer, &placed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_tasks_are_each_placed_once_while_other_writers_give_up() {
        let tmp = tempfile::tempdir().unwrap();
        let committer = committer(tmp.path());
        let before = committer.ledger().len();
        let tasks: Vec<_> = (0..32)
            .map(|writer| {
                let committer = committer.clone();
                tokio::spawn(async move {
                    let mut placed = Vec::new();
                    for i in 0..20 {
                        let place = if i % 5 == 4 {
                            let both = vec![entry(writer, 100 + i), entry(writer, 200 + i)];
                            let places = committer.append_all(both).await.unwrap();
                            placed.push((writer, 100 + i, places[0]));
                            places[1]
                        } else {
                            committer.append(entry(writer, i)).await.unwrap()
                        };
                        placed.push((writer, if i % 5 == 4 { 200 + i } else { i }, place));
                    }
                    placed
                })
            })
            .collect();
        // Writers that give up (aborted before or while waiting) do not disturb the others;
        // an entry already queued is written all the same.
        for writer in 100..110 {
            let committer = committer.clone();
            let waiting = tokio::spawn(async move { committer.append(entry(writer, 0)).await });
            waiting.abort();
        }
        let mut placed = Vec::new();
        for task in tasks {
            placed.extend(task.await.unwrap());
        }
        assert_placed(&committer, &placed);
        let written = committer.append(entry(999, 0)).await.unwrap();
        let len = committer.ledger().len();
        assert_eq!(written + 1, len, "the last append is the newest entry");
        assert!(
            (before + 32 * 24 + 1..=before + 32 * 24 + 11).contains(&len),
            "every entry written once, the abandoned ones at most once: {len}"
        );
    }

    #[test]
    fn a_refused_entry_fails_its_writer_and_later_appends_still_run() {
        let tmp = tempfile::tempdir().unwrap();
        let committer = committer(tmp.path());
        let too_big = vec![b'x'; MAX_ENTRY_BYTES + 1];
        assert!(committer.append_blocking(too_big).is_err());
        let place = committer.append_blocking(entry(1, 1)).unwrap();
        assert_eq!(place + 1, committer.ledger().len());
    }

    #[test]
    fn an_entry_too_large_fails_only_its_own_writer_among_concurrent_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let committer = committer(tmp.path());
        let before = committer.ledger().len();
        // Just too large once numbered: it would have failed the whole batch it joined.
        let too_big = vec![b'x'; MAX_ENTRY_BYTES - 10];
        std::thread::scope(|scope| {
            for writer in 0..8 {
                let committer = committer.clone();
                let too_big = too_big.clone();
                scope.spawn(move || {
                    for i in 0..50 {
                        if writer == 0 && i % 5 == 0 {
                            assert!(committer.append_blocking(too_big.clone()).is_err());
                        } else {
                            committer.append_blocking(entry(writer, i)).unwrap();
                        }
                    }
                });
            }
        });
        assert_eq!(committer.ledger().len(), before + 8 * 50 - 10);
    }
}
