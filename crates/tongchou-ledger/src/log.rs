//! The ledger's entries on disk and the tree over them, shared safely by every process that
//! opens the data directory.
//!
//! ```text
//! ledger/segments/…​.seg   entries, append-only (see `segment`); the only source of truth
//! ledger/entries.idx       where each entry starts in its segment (u64 LE each)  ┐ derived,
//! ledger/tree/             the Merkle tree, one file per level                  ┘ rebuilt
//! ledger/synced            how many entries the derived files hold durably
//! ledger/lock              held (flock) while a process reads new entries or appends
//! ledger/torn/             bytes of unfinished writes cut off by `repair`, kept
//! ```
//!
//! An append writes the batch's records with one `write` and one `fdatasync` (group commit:
//! many entries, one sync) before it returns; the index and the tree follow without a sync
//! of their own, and are made durable (and `synced` moved) before a checkpoint signs their
//! root. Opening rebuilds them from the entries after `synced`, so a crash at any point
//! leaves every acknowledged entry and a tree that matches the entries.
//!
//! A crash can leave a torn last record. Opening never changes a segment: it reports the
//! torn bytes, appends are refused until `repair` moves them aside, and damage (a record
//! that fails its check, a missing segment) refuses appends until someone looks at it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::merkle::{Hash, Subtrees, consistency_proof_of, inclusion_proof_of, root_of};
use crate::segment::{
    self, Found, HEADER_BYTES, MAX_ENTRY_BYTES, SegmentReader, list_segments, segment_path,
};
use crate::tree_store::TreeStore;

pub const INDEX_FILE: &str = "entries.idx";
pub const SYNCED_FILE: &str = "synced";
pub const LOCK_FILE: &str = "lock";
pub const TORN_DIR: &str = "torn";
/// A new segment starts once the current one reaches this size.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// The most bytes one append writes; a torn tail longer than this is not a crash.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

pub struct Log {
    dir: PathBuf,
    lock: File,
    segment_bytes: u64,
    /// First entry number of each segment.
    segments: Vec<u64>,
    writer: Option<File>,
    index: File,
    len: u64,
    /// End of the last whole record in the last segment.
    tail_end: u64,
    torn: u64,
    damage: Option<String>,
    /// The index or tree could not be written: rebuild them before the next use.
    stale: bool,
    tree: TreeStore,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl Log {
    pub fn open(dir: &Path) -> io::Result<Log> {
        Log::open_with(dir, SEGMENT_BYTES)
    }

    /// Opens (or creates) the log in `dir`, starting new segments at `segment_bytes`.
    pub fn open_with(dir: &Path, segment_bytes: u64) -> io::Result<Log> {
        std::fs::create_dir_all(dir.join(segment::SEGMENTS_DIR))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        let index = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(dir.join(INDEX_FILE))?;
        lock.lock()?;
        let opened = (|| {
            let tree = TreeStore::unopened(dir);
            let mut log = Log {
                dir: dir.to_path_buf(),
                lock: lock.try_clone()?,
                segment_bytes,
                segments: Vec::new(),
                writer: None,
                index,
                len: 0,
                tail_end: 0,
                torn: 0,
                damage: None,
                stale: false,
                tree,
            };
            log.rebuild_derived()?;
            Ok(log)
        })();
        lock.unlock()?;
        opened
    }

    fn read_synced(&self) -> u64 {
        std::fs::read_to_string(self.dir.join(SYNCED_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Cuts the index and tree back to what was durable at the last sync, then reads the
    /// entries after it.
    fn rebuild_derived(&mut self) -> io::Result<()> {
        let indexed = self.index.metadata()?.len() / 8;
        let kept = self.read_synced().min(indexed);
        self.index.set_len(kept * 8)?;
        self.tree = TreeStore::open(&self.dir, kept)?;
        self.len = kept;
        self.stale = false;
        self.recover()
    }

    fn segment_of(&self, entry: u64) -> usize {
        self.segments.partition_point(|&first| first <= entry) - 1
    }

    fn offset_of(&self, entry: u64) -> io::Result<u64> {
        let mut bytes = [0u8; 8];
        self.index.read_exact_at(&mut bytes, entry * 8)?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Segment and byte just after entry `n - 1`.
    fn position_after(&self, n: u64) -> io::Result<(usize, u64)> {
        if n == 0 {
            return Ok((0, 0));
        }
        let segment = self.segment_of(n - 1);
        let offset = self.offset_of(n - 1)?;
        let path = segment_path(&self.dir, self.segments[segment]);
        let mut header = [0u8; HEADER_BYTES as usize];
        File::open(&path)?.read_exact_at(&mut header, offset)?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as u64;
        Ok((segment, offset + HEADER_BYTES + len))
    }

    /// Adopts what other processes appended (the index they wrote) and reads any whole
    /// records after the indexed ones (appended before a crash cut the index short).
    fn recover(&mut self) -> io::Result<()> {
        self.segments = list_segments(&self.dir)?;
        self.writer = None;
        self.damage = None;
        self.torn = 0;
        if self.segments.first().is_some_and(|&first| first != 0) {
            self.damage = Some(format!(
                "the first segment starts at entry {}: the segments before it are missing",
                self.segments[0]
            ));
        }
        let indexed = self.index.metadata()?.len() / 8;
        self.index.set_len(indexed * 8)?;
        self.len = indexed;
        // Another process may have grown the tree files: take them as they are now.
        self.tree = TreeStore::open(&self.dir, indexed)?;
        if self.segments.is_empty() {
            self.len = 0;
            self.tail_end = 0;
            self.index.set_len(0)?;
            self.tree.cut_to(0)?;
            return Ok(());
        }
        let (mut segment, mut offset) = self.position_after(self.len)?;
        let (mut offsets, mut leaves) = (Vec::new(), Vec::new());
        loop {
            let first = self.segments[segment];
            let mut reader = SegmentReader::open(&segment_path(&self.dir, first), offset)?;
            while let Some(found) = reader.next_found()? {
                match found {
                    Found::Record { offset, leaf, .. } => {
                        offsets.push(offset);
                        leaves.push(leaf);
                    }
                    Found::Torn { bytes, .. } if segment + 1 == self.segments.len() => {
                        self.torn = bytes;
                    }
                    Found::Torn { offset, bytes } => {
                        self.damage = Some(format!(
                            "segment {} ends in {bytes} bytes at byte {offset} that are not a whole record, and later segments follow",
                            segment::segment_name(first)
                        ));
                    }
                    Found::Damaged { offset, why } => {
                        self.damage = Some(format!(
                            "segment {} at byte {offset}: {why}",
                            segment::segment_name(first)
                        ));
                    }
                }
            }
            offset = reader.offset();
            let count = self.len + offsets.len() as u64;
            if segment + 1 == self.segments.len() || self.damage.is_some() {
                break;
            }
            if self.segments[segment + 1] != count {
                self.damage = Some(format!(
                    "segment {} should start at entry {count}: entries are missing or added before it",
                    segment::segment_name(self.segments[segment + 1])
                ));
                break;
            }
            segment += 1;
            offset = 0;
        }
        self.write_index(&offsets)?;
        let first_new = self.len;
        self.len += offsets.len() as u64;
        self.tail_end = offset;
        self.catch_up_tree(first_new, &leaves)
    }

    fn write_index(&mut self, offsets: &[u64]) -> io::Result<()> {
        let bytes: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        self.index.write_all(&bytes)
    }

    /// Brings the tree to `len` leaves; `leaves` are those of entries `first_new..len`.
    fn catch_up_tree(&mut self, first_new: u64, leaves: &[Hash]) -> io::Result<()> {
        let have = self.tree.size();
        if have > self.len {
            self.tree.cut_to(self.len)?;
        }
        let have = self.tree.size();
        if have < first_new {
            let missing = (have..first_new)
                .map(|i| self.entry(i).map(|e| crate::merkle::leaf_hash(&e)))
                .collect::<io::Result<Vec<_>>>()?;
            self.tree.extend(&missing)?;
        }
        let skip = (self.tree.size() - first_new) as usize;
        self.tree.extend(&leaves[skip.min(leaves.len())..])
    }

    /// Reads what other processes appended since this one last looked. Appends look
    /// cheaply (their index, the last segment's size, a segment started after it); a
    /// `refresh` also lists the segments, which notices one removed.
    fn catch_up(&mut self, list_segments: bool) -> io::Result<()> {
        if self.stale {
            return self.rebuild_derived();
        }
        let unchanged = !self.changed_elsewhere()?
            && (!list_segments || list_segments_len_unchanged(&self.dir, self.segments.len())?);
        if unchanged {
            return Ok(());
        }
        self.recover()
    }

    fn changed_elsewhere(&self) -> io::Result<bool> {
        if self.index.metadata()?.len() != self.len * 8 {
            return Ok(true);
        }
        let last_size = match (&self.writer, self.segments.last()) {
            (Some(writer), _) => writer.metadata()?.len(),
            (None, Some(&first)) => std::fs::metadata(segment_path(&self.dir, first))?.len(),
            (None, None) => 0,
        };
        // Another process crashed after starting a segment at this length.
        let started_after =
            self.segments.last() != Some(&self.len) && segment_path(&self.dir, self.len).exists();
        Ok(last_size != self.tail_end + self.torn || started_after)
    }

    fn locked<T>(&mut self, f: impl FnOnce(&mut Log) -> io::Result<T>) -> io::Result<T> {
        self.locked_with(false, f)
    }

    fn locked_with<T>(
        &mut self,
        list_segments: bool,
        f: impl FnOnce(&mut Log) -> io::Result<T>,
    ) -> io::Result<T> {
        self.lock.lock()?;
        let result = self.catch_up(list_segments).and_then(|()| f(self));
        self.lock.unlock()?;
        result
    }

    /// Looks for entries appended by other processes.
    pub fn refresh(&mut self) -> io::Result<()> {
        self.locked_with(true, |_| Ok(()))
    }

    /// Bytes after the last whole record (0 for a clean log).
    pub fn torn_bytes(&self) -> u64 {
        self.torn
    }

    /// What is wrong with the log, when something is, as found by reading it.
    pub fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    /// Moves the bytes after the last whole record to `ledger/torn/`; returns how many.
    /// Refused when they are more than one append could have written: that is not a crash.
    pub fn repair(&mut self) -> io::Result<u64> {
        self.locked_with(true, |log| {
            let cut = log.torn;
            if cut == 0 {
                return Ok(0);
            }
            if cut as usize > MAX_BATCH_BYTES {
                return Err(invalid(format!(
                    "the log ends in {cut} bytes that are not whole records, more than one append writes; this is damage, not a crash — run `tongchou ledger verify`"
                )));
            }
            let first = *log.segments.last().expect("torn bytes are in a segment");
            let path = segment_path(&log.dir, first);
            set_aside(&log.dir, &path, log.tail_end)?;
            log.torn = 0;
            Ok(cut)
        })
    }

    /// Runs `f` on the ledger directory while no other process appends.
    pub fn exclusively<T>(&mut self, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
        self.locked(|log| f(&log.dir))
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a batch and makes it durable with one sync; returns the first entry's index.
    /// On error nothing of the batch counts: the segment is cut back to where it was.
    pub fn append(&mut self, entries: &[&[u8]]) -> io::Result<u64> {
        self.append_with(|_| entries.iter().map(|e| e.to_vec()).collect())
    }

    /// Like `append`, with the entries made by `build` from the index the first will have,
    /// under the lock, so that entries can carry their own place in the log.
    pub fn append_with(&mut self, build: impl FnOnce(u64) -> Vec<Vec<u8>>) -> io::Result<u64> {
        self.locked(|log| {
            let entries = build(log.len);
            if let Some(big) = entries.iter().find(|e| e.len() > MAX_ENTRY_BYTES) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("an entry of {} bytes exceeds {MAX_ENTRY_BYTES}", big.len()),
                ));
            }
            let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
            log.append_locked(&refs)
        })
    }

    fn append_locked(&mut self, entries: &[&[u8]]) -> io::Result<u64> {
        if let Some(damage) = &self.damage {
            return Err(invalid(format!(
                "the ledger is damaged ({damage}); nothing is appended until it is looked at — run `tongchou ledger verify`"
            )));
        }
        if self.torn > 0 {
            return Err(invalid(format!(
                "the log ends in {} bytes that are not a whole record (an append cut off by a crash); `tongchou ledger repair` sets them aside",
                self.torn
            )));
        }
        if self.segments.is_empty() || self.tail_end >= self.segment_bytes {
            self.start_segment()?;
        }
        let mut buffer = Vec::with_capacity(
            entries
                .iter()
                .map(|e| e.len() + HEADER_BYTES as usize)
                .sum(),
        );
        let mut offsets = Vec::with_capacity(entries.len());
        let mut leaves = Vec::with_capacity(entries.len());
        for e in entries {
            offsets.push(self.tail_end + buffer.len() as u64);
            leaves.push(segment::encode_record(&mut buffer, e));
        }
        let tail_end = self.tail_end;
        let writer = self.writer()?;
        let written = writer.write_all(&buffer).and_then(|()| writer.sync_data());
        if let Err(e) = written {
            let _ = writer.set_len(tail_end);
            return Err(e);
        }
        let first = self.len;
        self.len += entries.len() as u64;
        self.tail_end += buffer.len() as u64;
        let derived = self
            .write_index(&offsets)
            .and_then(|()| self.tree.extend(&leaves));
        if derived.is_err() {
            // The entries are durable; the index and tree are rebuilt from them next time.
            self.stale = true;
        }
        Ok(first)
    }

    fn writer(&mut self) -> io::Result<&mut File> {
        if self.writer.is_none() {
            let first = *self.segments.last().expect("a segment exists");
            self.writer = Some(
                OpenOptions::new()
                    .append(true)
                    .open(segment_path(&self.dir, first))?,
            );
        }
        Ok(self.writer.as_mut().expect("just opened"))
    }

    fn start_segment(&mut self) -> io::Result<()> {
        let path = segment_path(&self.dir, self.len);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)?;
        File::open(self.dir.join(segment::SEGMENTS_DIR))?.sync_all()?;
        self.segments.push(self.len);
        self.writer = Some(file);
        self.tail_end = 0;
        Ok(())
    }

    /// Makes the index and tree durable and records how far they go: called before a
    /// checkpoint signs the root.
    pub fn sync_derived(&mut self) -> io::Result<()> {
        self.locked_with(true, |log| {
            log.index.sync_data()?;
            log.tree.sync()?;
            crate::write_durably(&log.dir.join(SYNCED_FILE), log.len.to_string().as_bytes())
        })
    }

    /// Reads entry `index` back from disk.
    pub fn entry(&self, index: u64) -> io::Result<Vec<u8>> {
        if index >= self.len {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no entry {index}: the log has {}", self.len),
            ));
        }
        let segment = self.segments[self.segment_of(index)];
        segment::read_record(&segment_path(&self.dir, segment), self.offset_of(index)?)
    }

    pub fn tree(&self) -> &TreeStore {
        &self.tree
    }

    pub fn root(&self, size: u64) -> io::Result<Option<Hash>> {
        root_of(&self.tree, size)
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> io::Result<Option<Vec<Hash>>> {
        inclusion_proof_of(&self.tree, index, size)
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> io::Result<Option<Vec<Hash>>> {
        consistency_proof_of(&self.tree, old, new)
    }
}

fn list_segments_len_unchanged(dir: &Path, known: usize) -> io::Result<bool> {
    // A new segment shows in the index length too, except after a crash; the directory
    // listing is the cheap confirmation.
    Ok(std::fs::read_dir(dir.join(segment::SEGMENTS_DIR))?.count() == known)
}

/// Moves the bytes of `path` from `from` on to `ledger/torn/`, kept under the file's name
/// and offset, and cuts the file back to `from`; returns how many bytes moved.
pub fn set_aside(ledger_dir: &Path, path: &Path, from: u64) -> io::Result<u64> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let end = file.metadata()?.len();
    let mut bytes = vec![0u8; end.saturating_sub(from) as usize];
    file.read_exact_at(&mut bytes, from)?;
    let kept = ledger_dir.join(TORN_DIR);
    std::fs::create_dir_all(&kept)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    std::fs::write(kept.join(format!("{name}-{from}.bin")), &bytes)?;
    file.set_len(from)?;
    file.sync_all()?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, verify_inclusion};

    fn entries(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{{\"seq\":{i},\"user\":\"analyst\"}}").into_bytes())
            .collect()
    }

    fn append_all(log: &mut Log, all: &[Vec<u8>], batch: usize) {
        for chunk in all.chunks(batch) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            log.append(&refs).unwrap();
        }
    }

    fn last_segment(dir: &Path) -> PathBuf {
        let first = *list_segments(dir).unwrap().last().unwrap();
        segment_path(dir, first)
    }

    #[test]
    fn appended_batches_survive_reopening_with_the_same_tree_across_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let all = entries(300);
        let root = {
            let mut log = Log::open_with(tmp.path(), 1000).unwrap();
            append_all(&mut log, &all, 7);
            log.root(300).unwrap().unwrap()
        };
        assert!(list_segments(tmp.path()).unwrap().len() > 5);
        let log = Log::open_with(tmp.path(), 1000).unwrap();
        assert_eq!((log.len(), log.torn_bytes()), (300, 0));
        assert!(log.damage().is_none());
        assert_eq!(log.root(300).unwrap().unwrap(), root);
        assert_eq!(log.entry(123).unwrap(), all[123]);
        let proof = log.inclusion_proof(123, 300).unwrap().unwrap();
        assert!(verify_inclusion(
            123,
            300,
            &leaf_hash(&all[123]),
            &proof,
            &root
        ));
        assert!(log.entry(300).is_err());
    }

    #[test]
    fn derived_files_lost_after_the_last_sync_are_rebuilt_from_the_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let all = entries(200);
        let root = {
            let mut log = Log::open_with(tmp.path(), 2000).unwrap();
            append_all(&mut log, &all[..100], 10);
            log.sync_derived().unwrap();
            append_all(&mut log, &all[100..], 10);
            log.root(200).unwrap().unwrap()
        };
        // A crash after the entries were synced but before the index and tree were.
        std::fs::write(tmp.path().join(INDEX_FILE), b"").unwrap();
        std::fs::remove_dir_all(tmp.path().join(crate::tree_store::TREE_DIR)).unwrap();
        let log = Log::open_with(tmp.path(), 2000).unwrap();
        assert_eq!(log.len(), 200);
        assert_eq!(log.root(200).unwrap().unwrap(), root);
        assert_eq!(log.entry(150).unwrap(), all[150]);
    }

    #[test]
    fn two_handles_see_each_others_appends() {
        let tmp = tempfile::tempdir().unwrap();
        let all = entries(60);
        let mut a = Log::open_with(tmp.path(), 500).unwrap();
        let mut b = Log::open_with(tmp.path(), 500).unwrap();
        for (i, e) in all.iter().enumerate() {
            let log = if i % 3 == 0 { &mut a } else { &mut b };
            assert_eq!(log.append(&[e]).unwrap(), i as u64);
        }
        a.refresh().unwrap();
        b.refresh().unwrap();
        assert_eq!((a.len(), b.len()), (60, 60));
        assert_eq!(a.root(60).unwrap(), b.root(60).unwrap());
        let fresh = Log::open_with(tmp.path(), 500).unwrap();
        assert_eq!(fresh.root(60).unwrap(), a.root(60).unwrap());
        assert_eq!(fresh.entry(59).unwrap(), all[59]);
    }

    #[test]
    fn a_torn_last_record_is_shown_then_set_aside_and_the_rest_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let all = entries(10);
        let root9 = {
            let mut log = Log::open(tmp.path()).unwrap();
            append_all(&mut log, &all, 10);
            log.root(9).unwrap().unwrap()
        };
        let path = last_segment(tmp.path());
        let size = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(size - 3)
            .unwrap();
        let mut log = Log::open(tmp.path()).unwrap();
        assert_eq!(log.len(), 9);
        let torn = all[9].len() as u64 + HEADER_BYTES - 3;
        assert_eq!(log.torn_bytes(), torn);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            size - 3,
            "open changes nothing"
        );
        assert!(log.append(&[b"refused"]).is_err());
        assert_eq!(log.repair().unwrap(), torn);
        assert_eq!(
            std::fs::read_dir(tmp.path().join(TORN_DIR))
                .unwrap()
                .count(),
            1,
            "the cut bytes are kept"
        );
        assert_eq!(log.root(9).unwrap().unwrap(), root9);
        log.append(&[b"after the crash"]).unwrap();
        let reopened = Log::open(tmp.path()).unwrap();
        assert_eq!(reopened.len(), 10);
        assert_eq!(reopened.entry(9).unwrap(), b"after the crash");
        assert_eq!(reopened.root(9).unwrap().unwrap(), root9);
    }

    #[test]
    fn a_changed_byte_is_damage_that_stops_appends() {
        let tmp = tempfile::tempdir().unwrap();
        let all = entries(50);
        {
            let mut log = Log::open(tmp.path()).unwrap();
            append_all(&mut log, &all, 50);
        }
        // Not synced: opening reads every record, and finds the change.
        let path = last_segment(tmp.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
        let mut log = Log::open(tmp.path()).unwrap();
        assert!(log.damage().unwrap().contains("do not match its check"));
        assert!(log.append(&[b"x"]).is_err());
    }

    #[test]
    fn oversized_entries_are_refused_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = Log::open(tmp.path()).unwrap();
        let big = vec![b'x'; MAX_ENTRY_BYTES + 1];
        assert!(log.append(&[b"fine", &big]).is_err());
        assert!(log.is_empty());
        assert!(list_segments(tmp.path()).unwrap().is_empty());
    }
}
