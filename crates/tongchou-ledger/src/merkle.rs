//! The Merkle tree of RFC 6962 / RFC 9162, with proofs and their verifiers.

use std::io;

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(entry);
    hasher.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (n ≥ 2): where RFC 6962 splits a tree.
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Where the hashes of complete subtrees are read from: memory ([`Tree`]) or the files of
/// the ledger's tree store. Every root and proof below reads O(log n) of them.
pub trait Subtrees {
    fn size(&self) -> u64;
    /// The hash of the complete subtree over leaves `index·2^level .. (index+1)·2^level`.
    fn subtree(&self, level: u32, index: u64) -> io::Result<Hash>;
}

/// The hash of leaves `start..end` as RFC 6962 defines it (MTH of that range).
fn range_hash<S: Subtrees + ?Sized>(s: &S, start: u64, end: u64) -> io::Result<Hash> {
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        let level = n.trailing_zeros();
        return s.subtree(level, start >> level);
    }
    let k = split(n);
    Ok(node_hash(
        &range_hash(s, start, start + k)?,
        &range_hash(s, start + k, end)?,
    ))
}

/// The root of the first `size` entries; `None` when `size` is beyond the tree.
pub fn root_of<S: Subtrees + ?Sized>(s: &S, size: u64) -> io::Result<Option<Hash>> {
    match size {
        0 => Ok(Some(empty_root())),
        n if n <= s.size() => range_hash(s, 0, n).map(Some),
        _ => Ok(None),
    }
}

/// The audit path of entry `index` in the tree of the first `size` entries.
pub fn inclusion_proof_of<S: Subtrees + ?Sized>(
    s: &S,
    index: u64,
    size: u64,
) -> io::Result<Option<Vec<Hash>>> {
    if index >= size || size > s.size() {
        return Ok(None);
    }
    let mut proof = Vec::new();
    path(s, index, 0, size, &mut proof)?;
    Ok(Some(proof))
}

fn path<S: Subtrees + ?Sized>(
    s: &S,
    index: u64,
    start: u64,
    end: u64,
    proof: &mut Vec<Hash>,
) -> io::Result<()> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if index < start + k {
        path(s, index, start, start + k, proof)?;
        proof.push(range_hash(s, start + k, end)?);
    } else {
        path(s, index, start + k, end, proof)?;
        proof.push(range_hash(s, start, start + k)?);
    }
    Ok(())
}

/// The proof that the tree of the first `new` entries extends that of the first `old`.
pub fn consistency_proof_of<S: Subtrees + ?Sized>(
    s: &S,
    old: u64,
    new: u64,
) -> io::Result<Option<Vec<Hash>>> {
    if old == 0 || old > new || new > s.size() {
        return Ok(None);
    }
    let mut proof = Vec::new();
    if old < new {
        subproof(s, old, 0, new, true, &mut proof)?;
    }
    Ok(Some(proof))
}

fn subproof<S: Subtrees + ?Sized>(
    s: &S,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> io::Result<()> {
    let n = end - start;
    if m == n {
        if !whole {
            proof.push(range_hash(s, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(s, m, start, start + k, whole, proof)?;
        proof.push(range_hash(s, start + k, end)?);
    } else {
        subproof(s, m - k, start + k, end, false, proof)?;
        proof.push(range_hash(s, start, start + k)?);
    }
    Ok(())
}

/// A Merkle tree in memory, kept as the hashes of its complete subtrees: `levels[k][i]`
/// covers leaves `i·2^k .. (i+1)·2^k`. Appending adds at most one hash per level.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Subtrees for Tree {
    fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    fn subtree(&self, level: u32, index: u64) -> io::Result<Hash> {
        Ok(self.levels[level as usize][index as usize])
    }
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    pub fn size(&self) -> u64 {
        Subtrees::size(self)
    }

    /// Appends an entry's leaf hash; returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        let index = self.size();
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            let len = self.levels[level].len();
            if !len.is_multiple_of(2) {
                break;
            }
            hash = node_hash(&self.levels[level][len - 2], &self.levels[level][len - 1]);
            level += 1;
        }
        index
    }

    pub fn root(&self, size: u64) -> Option<Hash> {
        root_of(self, size).expect("a tree in memory reads without error")
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        inclusion_proof_of(self, index, size).expect("a tree in memory reads without error")
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        consistency_proof_of(self, old, new).expect("a tree in memory reads without error")
    }
}

/// The right edge of a tree (its "compact range"): one hash per set bit of the size, enough
/// to extend it and to compute its root in O(log n) memory — how verification streams a
/// log of any length.
#[derive(Debug, Default, Clone)]
pub struct Frontier {
    size: u64,
    /// Hashes of complete subtrees, largest first.
    edge: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Frontier {
        Frontier::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        self.push_seeing(leaf, |_, _, _| {});
    }

    /// Pushes a leaf and shows `completed` each subtree it completes above the leaves:
    /// its level (1 for two leaves), its place in that level, and its hash.
    pub fn push_seeing(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, &Hash)) {
        let mut hash = leaf;
        let mut size = self.size;
        let mut level = 0;
        while size & 1 == 1 {
            let left = self.edge.pop().expect("one hash per set bit");
            hash = node_hash(&left, &hash);
            size >>= 1;
            level += 1;
            completed(level, size, &hash);
        }
        self.edge.push(hash);
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut hashes = self.edge.iter().rev();
        let Some(last) = hashes.next() else {
            return empty_root();
        };
        hashes.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// RFC 9162 §2.1.3.2: does `proof` show the leaf at `index` in the tree of `size` with `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show the tree of `new` entries with `new_root` extending
/// the tree of `old` entries with `old_root`?
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && fr == *old_root && sr == *new_root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 6962's definition, straight from the text, over raw leaf hashes.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn tree_of(n: u64) -> (Tree, Vec<Hash>) {
        let mut tree = Tree::new();
        let leaves: Vec<Hash> = (0..n)
            .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
            .collect();
        for l in &leaves {
            tree.push(*l);
        }
        (tree, leaves)
    }

    #[test]
    fn known_answers_from_rfc6962_test_vectors() {
        // The empty tree and a one-leaf tree of the empty entry, as in certificate-transparency-go.
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        // The eight leaves of the reference test data: root of all eight.
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let mut tree = Tree::new();
        for i in inputs {
            tree.push(leaf_hash(i));
        }
        assert_eq!(
            hex::encode(tree.root(8).unwrap()),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
        assert_eq!(
            hex::encode(tree.root(3).unwrap()),
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
        );
    }

    proptest! {
        #[test]
        fn the_frontier_has_the_root_of_every_prefix(n in 0u64..300) {
            let (_, leaves) = tree_of(n);
            let mut frontier = Frontier::new();
            prop_assert_eq!(frontier.root(), empty_root());
            for (i, leaf) in leaves.iter().enumerate() {
                frontier.push(*leaf);
                prop_assert_eq!(frontier.root(), mth(&leaves[..=i]));
            }
        }

        #[test]
        fn roots_match_the_definition_for_every_prefix(n in 1u64..300) {
            let (tree, leaves) = tree_of(n);
            for size in [1, n / 2 + 1, n] {
                prop_assert_eq!(tree.root(size).unwrap(), mth(&leaves[..size as usize]));
            }
        }

        #[test]
        fn inclusion_proofs_verify_and_nothing_else_does(n in 1u64..400, i in 0u64..400, flip in 0usize..32) {
            let (tree, leaves) = tree_of(n);
            let index = i % n;
            let root = tree.root(n).unwrap();
            let proof = tree.inclusion_proof(index, n).unwrap();
            prop_assert!(verify_inclusion(index, n, &leaves[index as usize], &proof, &root));
            let other = leaf_hash(b"not in the log");
            prop_assert!(!verify_inclusion(index, n, &other, &proof, &root));
            if n > 1 {
                prop_assert!(!verify_inclusion((index + 1) % n, n, &leaves[index as usize], &proof, &root));
            }
            if let Some(first) = proof.first() {
                let mut bad = proof.clone();
                bad[0][flip] ^= 1;
                prop_assert!(!verify_inclusion(index, n, &leaves[index as usize], &bad, &root));
                prop_assert_ne!(first, &bad[0]);
                let mut short = proof.clone();
                short.pop();
                prop_assert!(!verify_inclusion(index, n, &leaves[index as usize], &short, &root));
            }
        }

        #[test]
        fn consistency_proofs_verify_and_rewritten_histories_do_not(n in 2u64..400, m in 1u64..400, changed in 0u64..400) {
            let (tree, _) = tree_of(n);
            let old = 1 + m % n;
            let proof = tree.consistency_proof(old, n).unwrap();
            let (old_root, new_root) = (tree.root(old).unwrap(), tree.root(n).unwrap());
            prop_assert!(verify_consistency(old, n, &old_root, &new_root, &proof));
            // A log that rewrote one of the first `old` entries is not consistent with it.
            let mut rewritten = Tree::new();
            let at = changed % old;
            for i in 0..n {
                let text = if i == at { "rewritten".to_string() } else { format!("entry {i}") };
                rewritten.push(leaf_hash(text.as_bytes()));
            }
            let forged_root = rewritten.root(n).unwrap();
            if let Some(forged) = rewritten.consistency_proof(old, n) {
                prop_assert!(!verify_consistency(old, n, &old_root, &forged_root, &forged));
            }
            prop_assert!(!verify_consistency(old, n, &old_root, &forged_root, &proof));
        }
    }

    #[test]
    fn proofs_refuse_sizes_beyond_the_log() {
        let (tree, _) = tree_of(10);
        assert!(tree.root(11).is_none());
        assert!(tree.inclusion_proof(10, 10).is_none());
        assert!(tree.consistency_proof(0, 5).is_none());
        assert!(tree.consistency_proof(6, 5).is_none());
        assert_eq!(tree.consistency_proof(5, 5), Some(vec![]));
    }
}
