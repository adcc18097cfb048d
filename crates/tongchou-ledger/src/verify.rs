//! Verification of a whole ledger from its files alone: every record's framing and check,
//! every entry's place (`seq`), the derived files (the index's offsets and every hash of
//! the stored tree, from which proofs are drawn) against the entries, the
//! root at every checkpoint recomputed from the entries, every checkpoint's signature by
//! the key in force at its size, and the chain of keys back to the ledger's first key.
//! Memory stays O(log n): the tree is rebuilt as a [`Frontier`] while streaming.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::Serialize;

use crate::checkpoint::{Checkpoint, NoteVerifier};
use crate::entry::seq_of;
use crate::ledger::{CHECKPOINTS_FILE, read_checkpoint_log, read_verifiers};
use crate::log::INDEX_FILE;
use crate::merkle::{Frontier, Hash};
use crate::segment::{Found, SegmentReader, list_segments, segment_name, segment_path};
use crate::tree_store::{TREE_DIR, level_name};

/// Problems reported beyond this many are counted, not listed.
const MAX_LISTED: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Where: `entry 12 (segment …, byte 345)`, `segment …`, `checkpoint 3 (size 100)`.
    pub at: String,
    pub what: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub entries: u64,
    pub segments: usize,
    pub checkpoints: usize,
    pub keys: usize,
    pub problems: Vec<Problem>,
    pub problems_not_listed: usize,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, at: String, what: String) {
        if self.problems.len() < MAX_LISTED {
            self.problems.push(Problem { at, what });
        } else {
            self.problems_not_listed += 1;
        }
    }
}

/// The keys the log itself introduces: (index of the introducing entry, key).
type KeyChain = Vec<(u64, NoteVerifier)>;

struct Stream<'a> {
    report: &'a mut Report,
    frontier: Frontier,
    roots: BTreeMap<u64, Hash>,
    wanted: Vec<u64>,
    derived: Derived,
    keys: KeyChain,
}

/// The derived files as written, read alongside the entries. Each may hold fewer entries
/// than the log (they are written after each sync); a file ends its own comparison.
struct Derived {
    dir: std::path::PathBuf,
    index: Option<BufReader<File>>,
    /// Level k of the stored tree, opened when its first subtree is complete.
    levels: Vec<Option<BufReader<File>>>,
    /// Whether the entries still match the stored leaves: above a changed entry the
    /// stored tree is the evidence, not a derived file to rebuild.
    leaves_match: bool,
}

impl Derived {
    fn open(ledger_dir: &Path) -> Derived {
        Derived {
            dir: ledger_dir.to_path_buf(),
            index: Self::reader(&ledger_dir.join(INDEX_FILE)),
            levels: Vec::new(),
            leaves_match: true,
        }
    }

    fn reader(path: &Path) -> Option<BufReader<File>> {
        File::open(path)
            .ok()
            .map(|f| BufReader::with_capacity(1 << 16, f))
    }

    /// The next value a file holds, or `None` (for good) once it has no more.
    fn next<const N: usize>(file: &mut Option<BufReader<File>>) -> Option<[u8; N]> {
        let mut bytes = [0u8; N];
        match file.as_mut()?.read_exact(&mut bytes) {
            Ok(()) => Some(bytes),
            Err(_) => {
                *file = None;
                None
            }
        }
    }

    fn offset(&mut self) -> Option<u64> {
        Self::next::<8>(&mut self.index).map(u64::from_le_bytes)
    }

    fn hash(&mut self, level: u32) -> Option<Hash> {
        let k = level as usize;
        while self.levels.len() <= k {
            let next = self.levels.len() as u32;
            self.levels.push(Self::reader(
                &self.dir.join(TREE_DIR).join(level_name(next)),
            ));
        }
        Self::next::<32>(&mut self.levels[k])
    }
}

const REBUILD: &str = "the derived files are wrong, so proofs drawn from them would not verify: write 0 into ledger/synced and open the ledger to rebuild them from the entries";

impl Stream<'_> {
    fn entry(&mut self, at: &str, offset: u64, entry: &[u8], leaf: Hash) {
        let index = self.frontier.size();
        match seq_of(entry) {
            Some(seq) if seq == index => {}
            Some(seq) => self.report.problem(
                format!("entry {index} ({at})"),
                format!("it says it is entry {seq}: entries were deleted, added or moved here"),
            ),
            None => self.report.problem(
                format!("entry {index} ({at})"),
                "it does not start with its place in the log (\"seq\")".into(),
            ),
        }
        if self
            .derived
            .hash(0)
            .is_some_and(|recorded| recorded != leaf)
        {
            self.derived.leaves_match = false;
            self.report.problem(
                format!("entry {index} ({at})"),
                "its bytes differ from the hash recorded when it was appended".into(),
            );
        }
        if self
            .derived
            .offset()
            .is_some_and(|indexed| indexed != offset)
        {
            self.report.problem(
                format!("{INDEX_FILE}, entry {index}"),
                format!(
                    "it places the entry elsewhere than byte {offset} of its segment: {REBUILD}"
                ),
            );
        }
        if index == 0 || contains(entry, b"\"kind\":\"key_rotated\"") {
            self.key_entry(index, entry);
        }
        let (derived, report) = (&mut self.derived, &mut *self.report);
        self.frontier.push_seeing(leaf, |level, place, hash| {
            if derived.leaves_match && derived.hash(level).is_some_and(|stored| stored != *hash) {
                report.problem(
                    format!("tree/{}, subtree {place}", level_name(level)),
                    format!("it differs from the hash of its entries: {REBUILD}"),
                );
            }
        });
        let size = self.frontier.size();
        if self.wanted.binary_search(&size).is_ok() {
            self.roots.insert(size, self.frontier.root());
        }
    }

    fn key_entry(&mut self, index: u64, entry: &[u8]) {
        let key = serde_json::from_slice::<serde_json::Value>(entry)
            .ok()
            .filter(|e| index > 0 || e["kind"] == "ledger_started")
            .and_then(|e| e["detail"]["verifier_key"].as_str().map(str::to_string))
            .and_then(|k| NoteVerifier::decode(&k).ok());
        match key {
            Some(k) => self.keys.push((index, k)),
            None => self.report.problem(
                format!("entry {index}"),
                "it should name the ledger's signing key and does not".into(),
            ),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The keys a checkpoint of `size` may be signed by: the newest key introduced before it,
/// and the one before when the checkpoint is the one covering the rotation entry.
fn keys_for(keys: &KeyChain, size: u64) -> Vec<&NoteVerifier> {
    let current = keys.partition_point(|(at, _)| *at < size);
    let mut valid = Vec::new();
    if current > 0 {
        valid.push(&keys[current - 1].1);
        if keys[current - 1].0 + 1 == size && current > 1 {
            valid.push(&keys[current - 2].1);
        }
    }
    valid
}

/// Verifies the ledger in `ledger_dir`. The first key must be `trusted` when given, else
/// the first key in `config/ledger-verifiers`.
pub fn verify(
    ledger_dir: &Path,
    config: &Path,
    trusted: Option<&NoteVerifier>,
) -> io::Result<Report> {
    let mut report = Report::default();
    let (notes, readable) = match read_checkpoint_log(ledger_dir) {
        Ok(log) => {
            if let Some((offset, bytes)) = log.torn {
                report.problem(
                    format!("{CHECKPOINTS_FILE}, byte {offset}"),
                    format!("it ends in {bytes} bytes that are not a whole checkpoint: a checkpoint write cut off by a crash (opening the ledger sets them aside) or a changed or truncated file"),
                );
            }
            (log.notes, true)
        }
        Err(e) => {
            report.problem(CHECKPOINTS_FILE.into(), e.to_string());
            (Vec::new(), false)
        }
    };
    report.checkpoints = notes.len();
    let stated: Vec<Option<Checkpoint>> = notes
        .iter()
        .map(|n| Checkpoint::read_unverified(n).ok())
        .collect();
    let mut wanted: Vec<u64> = stated.iter().flatten().map(|c| c.size).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let keys = {
        let mut stream = Stream {
            report: &mut report,
            frontier: Frontier::new(),
            roots: BTreeMap::new(),
            wanted,
            derived: Derived::open(ledger_dir),
            keys: Vec::new(),
        };
        if stream.wanted.first() == Some(&0) {
            stream.roots.insert(0, stream.frontier.root());
        }
        stream_segments(ledger_dir, &mut stream)?;
        let (roots, keys, entries) = (stream.roots, stream.keys, stream.frontier.size());
        report.entries = entries;
        if readable && notes.is_empty() && entries > 0 {
            report.problem(
                CHECKPOINTS_FILE.into(),
                "it holds no checkpoint, yet a ledger signs one when it starts: its checkpoints were removed".into(),
            );
        }
        check_checkpoints(&mut report, &notes, &stated, &roots, &keys);
        keys
    };
    report.keys = keys.len();
    check_first_key(&mut report, &keys, config, trusted)?;
    Ok(report)
}

fn stream_segments(ledger_dir: &Path, stream: &mut Stream) -> io::Result<()> {
    let segments = match list_segments(ledger_dir) {
        Ok(s) => s,
        Err(e) => {
            stream.report.problem("segments".into(), e.to_string());
            return Ok(());
        }
    };
    stream.report.segments = segments.len();
    for (i, &first) in segments.iter().enumerate() {
        let name = segment_name(first);
        let count = stream.frontier.size();
        if first != count {
            stream.report.problem(
                format!("segment {name}"),
                format!("it should start at entry {count}: entries are missing or added before it"),
            );
        }
        let mut reader = SegmentReader::open(&segment_path(ledger_dir, first), 0)?;
        while let Some(found) = reader.next_found()? {
            match found {
                Found::Record {
                    offset,
                    entry,
                    leaf,
                } => stream.entry(
                    &format!("segment {name}, byte {offset}"),
                    offset,
                    &entry,
                    leaf,
                ),
                Found::Torn { offset, bytes } => {
                    let last = i + 1 == segments.len();
                    stream.report.problem(
                        format!("segment {name}, byte {offset}"),
                        format!(
                            "it ends in {bytes} bytes that are not a whole record: {}",
                            if last {
                                "an append cut off by a crash (`tongchou ledger repair` sets them aside) or a truncated segment"
                            } else {
                                "the segment was truncated"
                            }
                        ),
                    );
                }
                Found::Damaged { offset, why } => {
                    stream.report.problem(
                        format!(
                            "entry {} (segment {name}, byte {offset})",
                            stream.frontier.size()
                        ),
                        format!("{why}; the rest of the segment cannot be read"),
                    );
                }
            }
        }
    }
    Ok(())
}

fn check_checkpoints(
    report: &mut Report,
    notes: &[String],
    stated: &[Option<Checkpoint>],
    roots: &BTreeMap<u64, Hash>,
    keys: &KeyChain,
) {
    let origin = stated.iter().flatten().next().map(|c| c.origin.clone());
    let mut previous = 0;
    for (k, (note, checkpoint)) in notes.iter().zip(stated).enumerate() {
        let Some(checkpoint) = checkpoint else {
            report.problem(
                format!("checkpoint {k}"),
                "it is not a checkpoint note".into(),
            );
            continue;
        };
        let at = format!("checkpoint {k} (size {})", checkpoint.size);
        if checkpoint.size < previous {
            report.problem(
                at.clone(),
                format!("it counts fewer entries than the checkpoint before it ({previous})"),
            );
        }
        previous = checkpoint.size;
        if origin.as_ref() != Some(&checkpoint.origin) {
            report.problem(
                at.clone(),
                format!("it is of another log: '{}'", checkpoint.origin),
            );
        }
        let signed = keys_for(keys, checkpoint.size)
            .iter()
            .any(|v| v.open(note).is_ok());
        if !signed {
            report.problem(
                at.clone(),
                "it is not signed by the ledger's key in force at that size".into(),
            );
        }
        match roots.get(&checkpoint.size) {
            None => report.problem(
                at,
                format!(
                    "it counts {} entries, more than the log has: entries were removed",
                    checkpoint.size
                ),
            ),
            Some(root) if *root != checkpoint.root => report.problem(
                at,
                "the entries up to it no longer hash to its root: an entry before it was changed, removed, added or moved".into(),
            ),
            Some(_) => {}
        }
    }
}

fn check_first_key(
    report: &mut Report,
    keys: &KeyChain,
    config: &Path,
    trusted: Option<&NoteVerifier>,
) -> io::Result<()> {
    let pinned = match trusted {
        Some(t) => Some(t.clone()),
        None => read_verifiers(config)
            .map_err(|e| io::Error::other(e.to_string()))?
            .into_iter()
            .next(),
    };
    let first = keys.first().filter(|(at, _)| *at == 0).map(|(_, k)| k);
    match (first, pinned) {
        (_, None) => report.problem(
            "keys".into(),
            "no trusted key to check against: pass --key, or keep config/ledger-verifiers".into(),
        ),
        (Some(first), Some(pinned)) if *first == pinned => {}
        (Some(first), Some(pinned)) => report.problem(
            "entry 0".into(),
            format!(
                "the log was started under key {}, but the ledger's key is {}: this is not the log that was started here",
                first.encode(),
                pinned.encode()
            ),
        ),
        (None, Some(_)) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{ALLOWED, Entry};
    use crate::ledger::Ledger;

    fn ledger_with(n: usize) -> (tempfile::TempDir, Ledger) {
        let (tmp, mut ledger) = crate::ledger::tests::test_ledger();
        let entries: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut e = Entry::new("statement", "rest", ALLOWED);
                e.user = Some(format!("user{}", i % 7));
                e.statement = Some(format!("SELECT * FROM t WHERE id = {i}"));
                e.to_bytes()
            })
            .collect();
        for batch in entries.chunks(25) {
            ledger.append(batch).unwrap();
            ledger.checkpoint().unwrap();
        }
        (tmp, ledger)
    }

    fn check(tmp: &tempfile::TempDir) -> Report {
        verify(&tmp.path().join("ledger"), &tmp.path().join("config"), None).unwrap()
    }

    #[test]
    fn an_intact_ledger_verifies_and_a_rotated_key_continues_the_chain() {
        let (tmp, mut ledger) = ledger_with(100);
        let report = check(&tmp);
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!((report.entries, report.keys), (101, 1));
        ledger.rotate_key().unwrap();
        ledger
            .append(&[Entry::new("sign_in", "cli", ALLOWED).to_bytes()])
            .unwrap();
        ledger.checkpoint().unwrap();
        let report = check(&tmp);
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.keys, 2);
    }

    #[test]
    fn keys_for_a_size_follow_the_rotations() {
        let a = crate::NoteSigner::generate("a").unwrap().verifier();
        let b = crate::NoteSigner::generate("b").unwrap().verifier();
        let chain: KeyChain = vec![(0, a.clone()), (10, b.clone())];
        assert_eq!(keys_for(&chain, 5), vec![&a]);
        assert_eq!(keys_for(&chain, 11), vec![&b, &a]);
        assert_eq!(keys_for(&chain, 12), vec![&b]);
        assert!(keys_for(&chain, 0).is_empty());
    }

    /// The records of the only segment, as (offset, length with header).
    fn records(tmp: &tempfile::TempDir) -> (std::path::PathBuf, Vec<(usize, usize)>) {
        let path = segment_path(&tmp.path().join("ledger"), 0);
        let mut reader = SegmentReader::open(&path, 0).unwrap();
        let mut out = Vec::new();
        while let Some(Found::Record { offset, entry, .. }) = reader.next_found().unwrap() {
            out.push((offset as usize, entry.len() + 8));
        }
        (path, out)
    }

    /// A closed ledger of 61 entries, its segment's path and bytes, and where record `k` is.
    #[allow(clippy::type_complexity)]
    fn segment_with_record(
        k: usize,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        Vec<u8>,
        (usize, usize),
    ) {
        let (tmp, ledger) = ledger_with(60);
        drop(ledger);
        let (path, records) = records(&tmp);
        let bytes = std::fs::read(&path).unwrap();
        (tmp, path, bytes, records[k])
    }

    fn first_problem(tmp: &tempfile::TempDir) -> Problem {
        let report = check(tmp);
        assert!(!report.ok(), "the tampering went unnoticed");
        report.problems[0].clone()
    }

    #[test]
    fn a_flipped_byte_is_named() {
        let (tmp, path, mut bytes, (at, len)) = segment_with_record(42);
        bytes[at + len - 5] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        let p = first_problem(&tmp);
        assert!(p.at.starts_with("entry 42 "), "{p:?}");
    }

    #[test]
    fn above_a_changed_entry_the_stored_tree_is_not_called_wrong() {
        let (tmp, path, mut bytes, (at, len)) = segment_with_record(42);
        let text = String::from_utf8(bytes[at + 8..at + len].to_vec()).unwrap();
        let changed = text.replace("id = 41", "id = 99");
        assert_ne!(text, changed);
        bytes.splice(at..at + len, {
            let mut record = Vec::new();
            crate::segment::encode_record(&mut record, changed.as_bytes());
            record
        });
        std::fs::write(&path, bytes).unwrap();
        let report = check(&tmp);
        assert!(
            report.problems[0].at.starts_with("entry 42 "),
            "{:?}",
            report.problems
        );
        assert!(
            report
                .problems
                .iter()
                .all(|p| !p.what.contains("ledger/synced")),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn a_changed_entry_with_its_check_and_tree_recomputed_is_caught_by_the_checkpoints() {
        let (tmp, ledger) = ledger_with(60);
        drop(ledger);
        let (path, records) = records(&tmp);
        let bytes = std::fs::read(&path).unwrap();
        let (at, len) = records[30];
        let entry = String::from_utf8(bytes[at + 8..at + len].to_vec()).unwrap();
        let forged = entry.replace("SELECT", "DELETE");
        assert_ne!(forged, entry);
        let mut rebuilt = bytes[..at].to_vec();
        crate::segment::encode_record(&mut rebuilt, forged.as_bytes());
        rebuilt.extend_from_slice(&bytes[at + len..]);
        std::fs::write(&path, rebuilt).unwrap();
        // The forger also rebuilds the tree files from the forged entries.
        std::fs::remove_dir_all(tmp.path().join("ledger").join(TREE_DIR)).unwrap();
        std::fs::remove_file(tmp.path().join("ledger").join(crate::log::SYNCED_FILE)).unwrap();
        drop(crate::Log::open(&tmp.path().join("ledger")).unwrap());
        let p = first_problem(&tmp);
        assert!(p.at.starts_with("checkpoint"), "{p:?}");
        assert!(p.what.contains("no longer hash to its root"), "{p:?}");
    }

    #[test]
    fn a_deleted_entry_is_named() {
        let (tmp, ledger) = ledger_with(60);
        drop(ledger);
        let (path, records) = records(&tmp);
        let mut bytes = std::fs::read(&path).unwrap();
        let (at, len) = records[17];
        bytes.drain(at..at + len);
        std::fs::write(&path, bytes).unwrap();
        let p = first_problem(&tmp);
        assert!(p.at.starts_with("entry 17 "), "{p:?}");
        assert!(p.what.contains("it says it is entry 18"), "{p:?}");
    }

    #[test]
    fn two_swapped_entries_are_named() {
        let (tmp, ledger) = ledger_with(60);
        drop(ledger);
        let (path, records) = records(&tmp);
        let bytes = std::fs::read(&path).unwrap();
        let ((a, alen), (b, blen)) = (records[20], records[21]);
        let mut swapped = bytes[..a].to_vec();
        swapped.extend_from_slice(&bytes[b..b + blen]);
        swapped.extend_from_slice(&bytes[a..a + alen]);
        swapped.extend_from_slice(&bytes[b + blen..]);
        std::fs::write(&path, swapped).unwrap();
        let p = first_problem(&tmp);
        assert!(p.at.starts_with("entry 20 "), "{p:?}");
    }

    #[test]
    fn a_truncated_segment_is_named() {
        let (tmp, ledger) = ledger_with(60);
        drop(ledger);
        let (path, records) = records(&tmp);
        let (at, _) = records[50];
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        // At a record boundary: whole entries are gone.
        file.set_len(at as u64).unwrap();
        let report = check(&tmp);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.what.contains("more than the log has")),
            "{:?}",
            report.problems
        );
        // In the middle of a record: the segment is named too.
        file.set_len(at as u64 - 3).unwrap();
        let p = first_problem(&tmp);
        assert!(
            p.at.starts_with("segment 00000000000000000000.seg"),
            "{p:?}"
        );
    }

    #[test]
    fn a_log_rebuilt_under_a_new_key_is_refused() {
        let (tmp, ledger) = ledger_with(30);
        drop(ledger);
        // Someone replaces the whole ledger directory with a freshly made log.
        let other = tempfile::tempdir().unwrap();
        drop(
            Ledger::open(
                &other.path().join("ledger"),
                &other.path().join("config"),
                "test/ledger",
            )
            .unwrap(),
        );
        std::fs::remove_dir_all(tmp.path().join("ledger")).unwrap();
        std::fs::rename(other.path().join("ledger"), tmp.path().join("ledger")).unwrap();
        let p = first_problem(&tmp);
        assert_eq!(p.at, "entry 0");
        assert!(
            p.what.contains("not the log that was started here"),
            "{p:?}"
        );
        // Opening it for writing refuses too: the checkpoints' key is not the ledger's.
        let trusted = read_verifiers(&tmp.path().join("config")).unwrap();
        let report = verify(
            &tmp.path().join("ledger"),
            &tmp.path().join("config"),
            trusted.first(),
        )
        .unwrap();
        assert!(!report.ok());
    }

    #[test]
    fn a_crash_mid_append_loses_only_the_unfinished_batch_and_verifies_after_repair() {
        let (tmp, ledger) = ledger_with(40);
        drop(ledger);
        let (path, _) = records(&tmp);
        // Half a batch written when the power went.
        let mut torn = Vec::new();
        crate::segment::encode_record(&mut torn, b"{\"seq\":41,\"kind\":\"lost\"}");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, &torn[..torn.len() / 2]).unwrap();
        assert!(!check(&tmp).ok());
        let mut log = crate::Log::open(&tmp.path().join("ledger")).unwrap();
        assert_eq!(log.len(), 41);
        log.repair().unwrap();
        drop(log);
        let report = check(&tmp);
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.entries, 41);
    }

    fn checkpoint_log(tmp: &tempfile::TempDir) -> std::path::PathBuf {
        tmp.path().join("ledger").join(CHECKPOINTS_FILE)
    }

    #[test]
    fn every_changed_length_in_the_checkpoint_log_is_named() {
        let (tmp, ledger) = ledger_with(100);
        drop(ledger);
        let path = checkpoint_log(&tmp);
        let original = std::fs::read(&path).unwrap();
        let mut reader = SegmentReader::open(&path, 0).unwrap();
        let mut starts = Vec::new();
        while let Some(Found::Record { offset, .. }) = reader.next_found().unwrap() {
            starts.push(offset as usize);
        }
        assert_eq!(starts.len(), 5);
        for start in starts {
            for bit in 0..32 {
                let mut bytes = original.clone();
                bytes[start + bit / 8] ^= 1 << (bit % 8);
                std::fs::write(&path, &bytes).unwrap();
                let p = first_problem(&tmp);
                assert!(
                    p.at.starts_with(CHECKPOINTS_FILE),
                    "bit {bit} of the length at byte {start}: {p:?}"
                );
            }
        }
    }

    #[test]
    fn removed_checkpoints_are_named() {
        let (tmp, ledger) = ledger_with(30);
        drop(ledger);
        let path = checkpoint_log(&tmp);
        std::fs::write(&path, b"").unwrap();
        assert_eq!(first_problem(&tmp).at, CHECKPOINTS_FILE);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(first_problem(&tmp).at, CHECKPOINTS_FILE);
    }

    #[test]
    fn a_checkpoint_cut_off_by_a_crash_is_named_then_set_aside_and_later_ones_verify() {
        let (tmp, ledger) = ledger_with(30);
        drop(ledger);
        let path = checkpoint_log(&tmp);
        let whole = std::fs::metadata(&path).unwrap().len();
        let mut record = Vec::new();
        crate::segment::encode_record(&mut record, b"test/ledger\n31\nunfinished");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, &record[..record.len() - 4]).unwrap();
        let before = check(&tmp);
        assert_eq!(
            before.problems[0].at,
            format!("{CHECKPOINTS_FILE}, byte {whole}")
        );
        let mut ledger = Ledger::open(
            &tmp.path().join("ledger"),
            &tmp.path().join("config"),
            "test/ledger",
        )
        .unwrap();
        ledger.checkpoint().unwrap();
        let after = check(&tmp);
        assert!(after.ok(), "{:?}", after.problems);
        assert_eq!(after.checkpoints, before.checkpoints + 1);
        let kept = tmp
            .path()
            .join("ledger/torn")
            .join(format!("{CHECKPOINTS_FILE}-{whole}.bin"));
        assert_eq!(std::fs::read(kept).unwrap(), record[..record.len() - 4]);
        let repaired = ledger.log().entry(after.entries - 1).unwrap();
        let repaired = String::from_utf8_lossy(&repaired);
        assert!(
            repaired.contains("ledger_repaired") && repaired.contains("bytes of a checkpoint"),
            "{repaired}"
        );
    }

    #[test]
    fn a_whole_last_entry_given_a_longer_length_is_damage_not_a_crash() {
        let (tmp, ledger) = ledger_with(40);
        drop(ledger);
        let (path, records) = records(&tmp);
        let (at, len) = *records.last().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let claimed = (len - 8 + 1) as u32;
        bytes[at..at + 4].copy_from_slice(&claimed.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        let p = first_problem(&tmp);
        assert!(
            p.at.starts_with("entry 40 ") && p.what.contains("length was changed"),
            "{p:?}"
        );
        // Read again from the segment, as after a crash before the index was written: it
        // is damage that stops appends, not an unfinished append to set aside.
        let index = tmp.path().join("ledger/entries.idx");
        let indexed = std::fs::metadata(&index).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&index)
            .unwrap()
            .set_len(indexed - 8)
            .unwrap();
        let log = crate::Log::open(&tmp.path().join("ledger")).unwrap();
        assert_eq!(log.torn_bytes(), 0);
        assert!(
            log.damage()
                .is_some_and(|d| d.contains("length was changed")),
            "{:?}",
            log.damage()
        );
    }

    #[test]
    fn a_changed_index_or_stored_tree_is_named_with_how_to_rebuild_them() {
        let (tmp, ledger) = ledger_with(60);
        drop(ledger);
        let dir = tmp.path().join("ledger");
        for (file, place, at) in [
            (
                dir.join(INDEX_FILE),
                5 * 8,
                format!("{INDEX_FILE}, entry 5"),
            ),
            (
                dir.join(TREE_DIR).join(level_name(2)),
                3 * 32,
                format!("tree/{}, subtree 3", level_name(2)),
            ),
            (
                dir.join(TREE_DIR).join(level_name(5)),
                0,
                format!("tree/{}, subtree 0", level_name(5)),
            ),
        ] {
            let original = std::fs::read(&file).unwrap();
            let mut bytes = original.clone();
            bytes[place] ^= 0x80;
            std::fs::write(&file, &bytes).unwrap();
            let p = first_problem(&tmp);
            assert_eq!(p.at, at);
            assert!(p.what.contains("write 0 into ledger/synced"), "{p:?}");
            std::fs::write(&file, &original).unwrap();
            assert!(check(&tmp).ok());
        }
        std::fs::write(dir.join("synced"), b"0").unwrap();
        let mut bytes = std::fs::read(dir.join(INDEX_FILE)).unwrap();
        bytes[5 * 8] ^= 0x80;
        std::fs::write(dir.join(INDEX_FILE), &bytes).unwrap();
        drop(crate::Log::open(&dir).unwrap());
        assert!(check(&tmp).ok(), "opening rebuilds the derived files");
    }
}
