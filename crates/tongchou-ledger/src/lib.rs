//! The audit ledger (审计留痕, DESIGN.md §6): an append-only Merkle log that anyone holding
//! an old checkpoint can check was only ever appended to.
//!
//! [`merkle`] is the tree itself: RFC 6962 hashing (leaf = SHA-256(0x00 ‖ entry), node =
//! SHA-256(0x01 ‖ left ‖ right)), the hashes of complete subtrees kept level by level so
//! that a proof in a log of any size reads only O(log n) of them, inclusion proofs ("this
//! entry is in the log") and consistency proofs ("today's log extends yesterday's"), and the
//! verifiers of RFC 9162 §2.1.3.2 and §2.1.4.2, which need nothing but the proof.
//! [`checkpoint`] states "the log had n entries with this root" in the C2SP
//! `tlog-checkpoint` format, signed with Ed25519 as a C2SP signed note.
//!
//! [`log`] keeps the entries in an append-only file of length-prefixed records, durable
//! with one sync per batch, and cuts off a torn last record when opened.
//!
//! Still to come (issue 6): group commit across concurrent writers, segments, the entries'
//! format, the subject index, key rotation, and wiring every front door through it.

pub mod checkpoint;
pub mod log;
pub mod merkle;

pub use checkpoint::{Checkpoint, CheckpointError, NoteSigner, NoteVerifier};
pub use log::Log;
pub use merkle::{Hash, Tree, leaf_hash, node_hash, verify_consistency, verify_inclusion};
