//! The ledger's entries on disk: one append-only file of length-prefixed records
//! (`u32` little-endian length, then the entry), made durable with one `fsync` per batch
//! (group commit: many entries, one sync), and the Merkle tree over them.
//!
//! A crash can leave a torn last record — a length without all its bytes. Opening never
//! changes the file: it reports the torn bytes, appends are refused until `repair` cuts them
//! off (so a damaged length in the middle of a log is shown, never silently cut away), and
//! after the cut only an entry whose append had not returned is lost.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::merkle::{Tree, leaf_hash};

pub const ENTRIES_FILE: &str = "entries.log";

/// The longest entry accepted (a statement's record, not its data).
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

pub struct Log {
    path: PathBuf,
    file: File,
    /// Byte offset of each entry's record.
    offsets: Vec<u64>,
    end: u64,
    tree: Tree,
    /// Bytes after the last whole record: a torn append, or damage.
    torn: u64,
}

impl Log {
    /// Opens (or creates) the log in `dir` and reads every whole record.
    pub fn open(dir: &Path) -> io::Result<Log> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(ENTRIES_FILE);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let size = file.metadata()?.len();
        let mut reader = BufReader::new(file.try_clone()?);
        let (mut offsets, mut tree, mut end) = (Vec::new(), Tree::new(), 0u64);
        let mut entry = Vec::new();
        loop {
            let mut len = [0u8; 4];
            if end + 4 > size || reader.read_exact(&mut len).is_err() {
                break;
            }
            let n = u32::from_le_bytes(len) as u64;
            if n as usize > MAX_ENTRY_BYTES || end + 4 + n > size {
                break;
            }
            entry.resize(n as usize, 0);
            reader.read_exact(&mut entry)?;
            offsets.push(end);
            tree.push(leaf_hash(&entry));
            end += 4 + n;
        }
        Ok(Log {
            path,
            file,
            offsets,
            end,
            tree,
            torn: size - end,
        })
    }

    /// Bytes after the last whole record (0 for a clean log).
    pub fn torn_bytes(&self) -> u64 {
        self.torn
    }

    /// Cuts off the bytes after the last whole record; returns how many.
    pub fn repair(&mut self) -> io::Result<u64> {
        let cut = self.torn;
        if cut > 0 {
            self.file.set_len(self.end)?;
            self.file.sync_all()?;
            self.torn = 0;
        }
        Ok(cut)
    }

    pub fn len(&self) -> u64 {
        self.offsets.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Appends a batch and makes it durable with one sync; returns the first entry's index.
    /// On error nothing of the batch counts: the file is cut back to where it was.
    pub fn append(&mut self, entries: &[&[u8]]) -> io::Result<u64> {
        if self.torn > 0 {
            return Err(io::Error::other(format!(
                "the log ends in {} bytes that are not a whole record; verify it, then repair",
                self.torn
            )));
        }
        if let Some(big) = entries.iter().find(|e| e.len() > MAX_ENTRY_BYTES) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("an entry of {} bytes exceeds {MAX_ENTRY_BYTES}", big.len()),
            ));
        }
        let mut buffer = Vec::with_capacity(entries.iter().map(|e| e.len() + 4).sum());
        for e in entries {
            buffer.extend_from_slice(&(e.len() as u32).to_le_bytes());
            buffer.extend_from_slice(e);
        }
        let written = self
            .file
            .write_all(&buffer)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let _ = self.file.set_len(self.end);
            return Err(e);
        }
        let first = self.len();
        let mut at = self.end;
        for e in entries {
            self.offsets.push(at);
            self.tree.push(leaf_hash(e));
            at += 4 + e.len() as u64;
        }
        self.end = at;
        Ok(first)
    }

    /// Reads entry `index` back from disk.
    pub fn entry(&self, index: u64) -> io::Result<Vec<u8>> {
        let offset = *self
            .offsets
            .get(index as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no entry {index}")))?;
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut len = [0u8; 4];
        file.read_exact(&mut len)?;
        let mut entry = vec![0u8; u32::from_le_bytes(len) as usize];
        file.read_exact(&mut entry)?;
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::verify_inclusion;

    fn entries(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{{\"seq\":{i},\"user\":\"analyst\"}}").into_bytes())
            .collect()
    }

    #[test]
    fn appended_batches_survive_reopening_with_the_same_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let all = entries(300);
        let root = {
            let mut log = Log::open(tmp.path()).unwrap();
            for batch in all.chunks(64) {
                let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                log.append(&refs).unwrap();
            }
            log.tree().root(300).unwrap()
        };
        let log = Log::open(tmp.path()).unwrap();
        assert_eq!((log.len(), log.torn_bytes()), (300, 0));
        assert_eq!(log.tree().root(300).unwrap(), root);
        assert_eq!(log.entry(123).unwrap(), all[123]);
        let proof = log.tree().inclusion_proof(123, 300).unwrap();
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
    fn a_torn_last_record_is_shown_then_cut_off_and_the_rest_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let all = entries(10);
        let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
        let root9 = {
            let mut log = Log::open(tmp.path()).unwrap();
            log.append(&refs).unwrap();
            log.tree().root(9).unwrap()
        };
        // A crash in the middle of the last record's bytes.
        let path = tmp.path().join(ENTRIES_FILE);
        let size = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(size - 3).unwrap();
        let mut log = Log::open(tmp.path()).unwrap();
        assert_eq!(log.len(), 9);
        let torn = all[9].len() as u64 + 4 - 3;
        assert_eq!(log.torn_bytes(), torn);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            size - 3,
            "open changes nothing"
        );
        assert!(log.append(&[b"refused"]).is_err());
        assert_eq!(log.repair().unwrap(), torn);
        assert_eq!(log.tree().root(9).unwrap(), root9);
        // Appending continues after the cut, and a later reopen agrees.
        log.append(&[b"after the crash"]).unwrap();
        let reopened = Log::open(tmp.path()).unwrap();
        assert_eq!(reopened.len(), 10);
        assert_eq!(reopened.entry(9).unwrap(), b"after the crash");
        assert_eq!(reopened.tree().root(9).unwrap(), root9);
    }

    #[test]
    fn a_changed_byte_changes_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let all = entries(50);
        let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
        let root = {
            let mut log = Log::open(tmp.path()).unwrap();
            log.append(&refs).unwrap();
            log.tree().root(50).unwrap()
        };
        let path = tmp.path().join(ENTRIES_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
        let log = Log::open(tmp.path()).unwrap();
        assert_eq!(log.len(), 50);
        assert_ne!(log.tree().root(50).unwrap(), root);
    }

    #[test]
    fn oversized_entries_are_refused_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = Log::open(tmp.path()).unwrap();
        let big = vec![b'x'; MAX_ENTRY_BYTES + 1];
        assert!(log.append(&[b"fine", &big]).is_err());
        assert!(log.is_empty());
        assert_eq!(
            std::fs::metadata(tmp.path().join(ENTRIES_FILE))
                .unwrap()
                .len(),
            0
        );
    }
}
