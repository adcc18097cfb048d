//! The audit ledger (审计留痕, DESIGN.md §6): an append-only Merkle log that anyone holding
//! an old checkpoint can check was only ever appended to.
//!
//! [`merkle`] is the tree itself: RFC 6962 hashing (leaf = SHA-256(0x00 ‖ entry), node =
//! SHA-256(0x01 ‖ left ‖ right)), roots, inclusion proofs ("this entry is in the log") and
//! consistency proofs ("today's log extends yesterday's") over any store of complete
//! subtrees, and the verifiers of RFC 9162 §2.1.3.2 and §2.1.4.2, which need nothing but
//! the proof. [`checkpoint`] states "the log had n entries with this root" in the C2SP
//! `tlog-checkpoint` format, signed with Ed25519 as a C2SP signed note.
//!
//! [`segment`] and [`log`] keep the entries in append-only segment files, durable with one
//! sync per batch, with the index and the tree ([`tree_store`]) derived from them and
//! shared by every process through a file lock. [`committer`] groups concurrent appends
//! into one sync. [`entry`] is what an entry says. [`ledger`] adds the signing key, its
//! rotation, checkpoints and proofs; [`verify`] checks a whole ledger from its files and
//! [`check`] checks a proof with nothing but the proof and a key.

pub mod check;
pub mod checkpoint;
pub mod committer;
pub mod entry;
pub mod ledger;
pub mod log;
pub mod merkle;
pub mod segment;
pub mod tree_store;
pub mod verify;

use std::io::Write;
use std::path::Path;

pub use checkpoint::{Checkpoint, CheckpointError, NoteSigner, NoteVerifier};
pub use committer::Committer;
pub use entry::{Entry, SubjectKey};
pub use ledger::{ConsistencyProof, InclusionProof, Ledger, LedgerError};
pub use log::Log;
pub use merkle::{
    Frontier, Hash, Subtrees, Tree, leaf_hash, node_hash, verify_consistency, verify_inclusion,
};

/// Replaces `path` with `bytes` so that a crash leaves the old or the new content whole.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
