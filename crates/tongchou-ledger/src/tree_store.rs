//! The Merkle tree on disk: one file per level (`tree/level-00.hashes` …), level k holding
//! the hashes of the complete subtrees of 2^k entries in order, 32 bytes each. Together
//! 64 bytes per entry, read with one positioned read per hash, so a proof in a log of a
//! hundred million entries reads about fifty hashes and the process holds none of them.
//!
//! The files are derived from the entries and rebuilt from them when they are behind or
//! when a crash may have left them half-written (see `Log::open`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::merkle::{Hash, Subtrees, node_hash};

pub const TREE_DIR: &str = "tree";
const HASH: u64 = 32;

pub fn level_name(k: u32) -> String {
    format!("level-{k:02}.hashes")
}

pub struct TreeStore {
    dir: PathBuf,
    levels: Vec<File>,
    size: u64,
    /// The last node written at each level, with its index: the left sibling the next
    /// append needs, kept so that appends do not read it back.
    edge: Vec<Option<(u64, Hash)>>,
}

impl TreeStore {
    /// A store not yet read from disk, to be replaced by [`TreeStore::open`]; it touches
    /// no file (opening with a limit of 0 would cut every level to nothing).
    pub fn unopened(ledger_dir: &Path) -> TreeStore {
        TreeStore {
            dir: ledger_dir.join(TREE_DIR),
            levels: Vec::new(),
            size: 0,
            edge: Vec::new(),
        }
    }

    /// Opens the level files in `ledger_dir/tree` and cuts them back to a consistent tree of
    /// at most `limit` leaves.
    pub fn open(ledger_dir: &Path, limit: u64) -> io::Result<TreeStore> {
        let dir = ledger_dir.join(TREE_DIR);
        std::fs::create_dir_all(&dir)?;
        let mut store = TreeStore {
            dir,
            levels: Vec::new(),
            size: 0,
            edge: Vec::new(),
        };
        // Every level file there is, so that a cut reaches levels above the kept tree too.
        let mut k = 0;
        while store.dir.join(level_name(k)).exists() {
            store.level(k)?;
            k += 1;
        }
        let leaves = store.level(0)?.metadata()?.len() / HASH;
        store.size = leaves.min(limit);
        // A level is consistent when it holds exactly size >> k hashes; the lowest level
        // that falls short bounds what can be trusted above it.
        let mut k = 1;
        while store.size >> k > 0 {
            let have = store.level(k)?.metadata()?.len() / HASH;
            if have < store.size >> k {
                store.size = have << k;
            }
            k += 1;
        }
        store.cut_to(store.size)?;
        Ok(store)
    }

    fn level(&mut self, k: u32) -> io::Result<&File> {
        while self.levels.len() <= k as usize {
            let path = self.dir.join(level_name(self.levels.len() as u32));
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(path)?;
            self.levels.push(file);
        }
        Ok(&self.levels[k as usize])
    }

    /// Forgets every leaf from `size` on.
    pub fn cut_to(&mut self, size: u64) -> io::Result<()> {
        let mut k = 0;
        loop {
            let want = (size >> k) * HASH;
            let file = self.level(k)?;
            if file.metadata()?.len() > want {
                file.set_len(want)?;
            }
            if size >> k == 0 && k as usize + 1 >= self.levels.len() {
                break;
            }
            k += 1;
        }
        self.size = self.size.min(size);
        self.edge.clear();
        Ok(())
    }

    /// Appends leaves, writing each level once.
    pub fn extend(&mut self, leaves: &[Hash]) -> io::Result<()> {
        let mut new: Vec<Hash> = leaves.to_vec();
        let mut first = self.size;
        let mut k = 0;
        while !new.is_empty() {
            let bytes: Vec<u8> = new.iter().flatten().copied().collect();
            self.level(k)?.write_all(&bytes)?;
            let count = first + new.len() as u64;
            // Parents completed by this batch: from the pair holding `first` to the last
            // full pair.
            let (from, to) = (first / 2, count / 2);
            let mut parents = Vec::with_capacity((to - from) as usize);
            for p in from..to {
                let left = self.node_in(k, 2 * p, first, &new)?;
                let right = self.node_in(k, 2 * p + 1, first, &new)?;
                parents.push(node_hash(&left, &right));
            }
            self.remember_edge(k, count - 1, new[new.len() - 1]);
            new = parents;
            first = from;
            k += 1;
        }
        self.size += leaves.len() as u64;
        Ok(())
    }

    fn remember_edge(&mut self, k: u32, index: u64, hash: Hash) {
        let k = k as usize;
        if self.edge.len() <= k {
            self.edge.resize(k + 1, None);
        }
        self.edge[k] = Some((index, hash));
    }

    fn node_in(&self, k: u32, index: u64, first: u64, new: &[Hash]) -> io::Result<Hash> {
        if index >= first {
            return Ok(new[(index - first) as usize]);
        }
        match self.edge.get(k as usize) {
            Some(&Some((at, hash))) if at == index => Ok(hash),
            _ => self.subtree(k, index),
        }
    }

    /// Makes the level files durable (before a checkpoint names their root).
    pub fn sync(&self) -> io::Result<()> {
        self.levels.iter().try_for_each(File::sync_data)
    }
}

impl Subtrees for TreeStore {
    fn size(&self) -> u64 {
        self.size
    }

    fn subtree(&self, level: u32, index: u64) -> io::Result<Hash> {
        let file = self.levels.get(level as usize).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no tree level {level}"))
        })?;
        let mut hash = [0u8; 32];
        file.read_exact_at(&mut hash, index * HASH)?;
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{Tree, leaf_hash, root_of};

    fn leaves(from: u64, to: u64) -> Vec<Hash> {
        (from..to)
            .map(|i| leaf_hash(format!("e{i}").as_bytes()))
            .collect()
    }

    #[test]
    fn files_agree_with_the_tree_in_memory_however_the_batches_fall() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = TreeStore::open(tmp.path(), u64::MAX).unwrap();
        let mut tree = Tree::new();
        let mut at = 0;
        for batch in [1u64, 1, 2, 5, 64, 3, 200, 1, 17] {
            let new = leaves(at, at + batch);
            store.extend(&new).unwrap();
            new.iter().for_each(|l| {
                tree.push(*l);
            });
            at += batch;
            for size in [1, at / 2 + 1, at] {
                assert_eq!(root_of(&store, size).unwrap(), tree.root(size));
            }
        }
        assert_eq!(
            store.inclusion_proof_like(100, at),
            tree.inclusion_proof(100, at)
        );
        // Reopened with a limit, the store cuts back and grows again to the same tree.
        drop(store);
        let mut store = TreeStore::open(tmp.path(), 100).unwrap();
        assert_eq!(store.size(), 100);
        store.extend(&leaves(100, at)).unwrap();
        assert_eq!(root_of(&store, at).unwrap(), tree.root(at));
    }

    #[test]
    fn a_level_left_short_by_a_crash_bounds_what_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = TreeStore::open(tmp.path(), u64::MAX).unwrap();
        store.extend(&leaves(0, 40)).unwrap();
        drop(store);
        // Level 2 lost its last hash (leaves 36..40): only 36 leaves are whole.
        let level2 = tmp.path().join(TREE_DIR).join("level-02.hashes");
        let len = std::fs::metadata(&level2).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&level2)
            .unwrap()
            .set_len(len - 32)
            .unwrap();
        let store = TreeStore::open(tmp.path(), u64::MAX).unwrap();
        assert_eq!(store.size(), 36);
    }

    impl TreeStore {
        fn inclusion_proof_like(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
            crate::merkle::inclusion_proof_of(self, index, size).unwrap()
        }
    }
}
