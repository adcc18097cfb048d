//! Checking proofs handed out by a ledger, with nothing but the proof and a trusted key:
//! what an inspector or a court runs, years later, without the data directory.

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, NoteVerifier};
use crate::entry::seq_of;
use crate::ledger::{CONSISTENCY_FORMAT, ConsistencyProof, INCLUSION_FORMAT, InclusionProof};
use crate::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};

pub const EXPORT_FORMAT: &str = "tongchou-ledger-export/1";

/// A period's entries, each with its proof against one checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Export {
    pub format: String,
    pub from: String,
    pub to: String,
    pub checkpoint: String,
    pub verifier_key: String,
    pub entries: Vec<ExportedEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportedEntry {
    pub index: u64,
    pub entry: String,
    pub hashes: Vec<String>,
}

/// What a checked proof established.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub format: String,
    pub origin: String,
    pub tree_size: u64,
    /// Entries shown to be in the log.
    pub entries: Vec<u64>,
    /// For consistency proofs: the older size shown to be a prefix.
    pub extends_size: Option<u64>,
    pub key: String,
    /// True when the key came from the caller, not from the proof itself.
    pub key_trusted: bool,
}

fn hashes(hex_list: &[String]) -> Result<Vec<Hash>, String> {
    hex_list
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("'{h}' is not a hex SHA-256 hash"))
        })
        .collect()
}

fn key(embedded: &str, trusted: Option<&NoteVerifier>) -> Result<(NoteVerifier, bool), String> {
    match trusted {
        Some(k) => Ok((k.clone(), true)),
        None => NoteVerifier::decode(embedded)
            .map(|k| (k, false))
            .map_err(|e| format!("the proof's verifier key: {e}")),
    }
}

fn open(note: &str, key: &NoteVerifier) -> Result<Checkpoint, String> {
    key.open(note)
        .map_err(|e| format!("the checkpoint is not signed by {}: {e}", key.encode()))
}

fn check_entry(index: u64, entry: &str, proof: &[String], cp: &Checkpoint) -> Result<(), String> {
    if seq_of(entry.as_bytes()) != Some(index) {
        return Err(format!("the entry does not say it is entry {index}"));
    }
    let proof = hashes(proof)?;
    if !verify_inclusion(
        index,
        cp.size,
        &leaf_hash(entry.as_bytes()),
        &proof,
        &cp.root,
    ) {
        return Err(format!(
            "entry {index} is not in the log of size {} with that root: the entry or the proof was changed",
            cp.size
        ));
    }
    Ok(())
}

/// Checks a proof or export given as JSON text.
pub fn check_proof(text: &str, trusted: Option<&NoteVerifier>) -> Result<Checked, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a proof (JSON): {e}"))?;
    let format = value["format"].as_str().unwrap_or_default().to_string();
    let parse_error = |e: serde_json::Error| format!("a malformed {format}: {e}");
    match format.as_str() {
        INCLUSION_FORMAT => {
            let p: InclusionProof = serde_json::from_value(value).map_err(parse_error)?;
            let (key, key_trusted) = key(&p.verifier_key, trusted)?;
            let cp = open(&p.checkpoint, &key)?;
            if cp.size != p.tree_size {
                return Err("the proof's tree size is not the checkpoint's".into());
            }
            check_entry(p.index, &p.entry, &p.hashes, &cp)?;
            Ok(Checked {
                format,
                origin: cp.origin,
                tree_size: cp.size,
                entries: vec![p.index],
                extends_size: None,
                key: key.encode(),
                key_trusted,
            })
        }
        CONSISTENCY_FORMAT => {
            let p: ConsistencyProof = serde_json::from_value(value).map_err(parse_error)?;
            let (key, key_trusted) = key(&p.verifier_key, trusted)?;
            let new = open(&p.new_checkpoint, &key)?;
            // The old checkpoint may be under an earlier key: what matters is its content,
            // which the proof ties to the new, trusted one.
            let old = Checkpoint::read_unverified(&p.old_checkpoint).map_err(|e| e.to_string())?;
            if old.origin != new.origin {
                return Err("the two checkpoints are of different logs".into());
            }
            let proof = hashes(&p.hashes)?;
            let consistent = if old.size == 0 {
                true
            } else {
                verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
            };
            if !consistent {
                return Err(format!(
                    "the log of size {} does not extend the log of size {}: history was rewritten, or the proof was changed",
                    new.size, old.size
                ));
            }
            Ok(Checked {
                format,
                origin: new.origin,
                tree_size: new.size,
                entries: Vec::new(),
                extends_size: Some(old.size),
                key: key.encode(),
                key_trusted,
            })
        }
        EXPORT_FORMAT => {
            let p: Export = serde_json::from_value(value).map_err(parse_error)?;
            let (key, key_trusted) = key(&p.verifier_key, trusted)?;
            let cp = open(&p.checkpoint, &key)?;
            for e in &p.entries {
                check_entry(e.index, &e.entry, &e.hashes, &cp)?;
            }
            Ok(Checked {
                format,
                origin: cp.origin,
                tree_size: cp.size,
                entries: p.entries.iter().map(|e| e.index).collect(),
                extends_size: None,
                key: key.encode(),
                key_trusted,
            })
        }
        other => Err(format!(
            "'{other}' is not a proof format this tool knows ({INCLUSION_FORMAT}, {CONSISTENCY_FORMAT}, {EXPORT_FORMAT})"
        )),
    }
}
