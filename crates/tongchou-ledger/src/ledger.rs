//! The ledger of one data directory: the log, its signing key and its checkpoints.
//!
//! ```text
//! config/ledger-signing.key   the Ed25519 key that signs checkpoints (0600)
//! config/ledger-verifiers     every verifier key the ledger has used, oldest first
//! config/ledger-subject.key   the key of the subject hashes (0600)
//! ledger/checkpoints.log      signed checkpoints, as records like the entries'
//! ledger/checkpoints.last     where the newest checkpoint starts and ends (derived)
//! ```
//!
//! Entry 0 names the first key; a key rotation is itself an entry, covered by a checkpoint
//! signed with the old key before the new one signs anything, so the chain of keys is
//! checked from the log alone.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointError, MAX_NOTE_BYTES, NoteSigner, NoteVerifier};
use crate::entry::{self, ALLOWED, Entry, SubjectKey};
use crate::log::{self, Log};
use crate::segment::{self, Found, SegmentReader};

pub const SIGNING_KEY_FILE: &str = "ledger-signing.key";
pub const VERIFIERS_FILE: &str = "ledger-verifiers";
pub const SUBJECT_KEY_FILE: &str = "ledger-subject.key";
pub const CHECKPOINTS_FILE: &str = "checkpoints.log";
/// Where the newest checkpoint is in the checkpoint log, so that opening and signing read
/// one record, not the whole log. Derived: checked against the log each time, and found
/// again by a scan when missing or wrong.
pub const LAST_CHECKPOINT_FILE: &str = "checkpoints.last";
pub const INCLUSION_FORMAT: &str = "tongchou-inclusion-proof/1";
pub const CONSISTENCY_FORMAT: &str = "tongchou-consistency-proof/1";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the audit ledger cannot be written or read: {0}")]
    Io(#[from] io::Error),
    #[error("the audit ledger is damaged: {0}; run `tongchou ledger verify`")]
    Damaged(String),
    #[error("ledger key: {0}")]
    Key(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    NotFound(String),
    #[error("the audit ledger could not record this, so it was not done: {0}")]
    NotDurable(String),
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// "Entry `index` is in the log whose signed checkpoint is `checkpoint`."
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InclusionProof {
    pub format: String,
    pub index: u64,
    /// The entry exactly as recorded.
    pub entry: String,
    pub tree_size: u64,
    /// Hex SHA-256 hashes, in the order of RFC 9162 §2.1.3.
    pub hashes: Vec<String>,
    pub checkpoint: String,
    pub verifier_key: String,
}

/// "The log of `new_checkpoint` extends the log of `old_checkpoint`."
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub format: String,
    pub old_checkpoint: String,
    pub new_checkpoint: String,
    /// Hex SHA-256 hashes, in the order of RFC 9162 §2.1.4.
    pub hashes: Vec<String>,
    pub verifier_key: String,
}

pub struct Ledger {
    log: Log,
    config: PathBuf,
    origin: String,
    signer: Option<NoteSigner>,
    subject_key: SubjectKey,
    damage: Option<String>,
}

fn write_secret(path: &Path, text: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// The verifier keys in `config/ledger-verifiers`, oldest first.
pub fn read_verifiers(config: &Path) -> Result<Vec<NoteVerifier>> {
    let path = config.join(VERIFIERS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            NoteVerifier::decode(l)
                .map_err(|e| LedgerError::Key(format!("{}: {e}", path.display())))
        })
        .collect()
}

/// The checkpoint log as read: its signed notes, oldest first, and where bytes that are
/// not a whole record begin at its end (a checkpoint write cut off by a crash, or the file
/// cut short), with how many.
pub struct CheckpointLog {
    pub notes: Vec<String>,
    pub torn: Option<(u64, u64)>,
}

pub fn read_checkpoint_log(ledger_dir: &Path) -> Result<CheckpointLog> {
    let path = ledger_dir.join(CHECKPOINTS_FILE);
    let mut log = CheckpointLog {
        notes: Vec::new(),
        torn: None,
    };
    if !path.exists() {
        return Ok(log);
    }
    let mut reader = SegmentReader::open(&path, 0)?.at_most(MAX_NOTE_BYTES);
    while let Some(found) = reader.next_found()? {
        match found {
            Found::Record { entry, .. } => log.notes.push(note_text(entry)?),
            Found::Torn { offset, bytes } => log.torn = Some((offset, bytes)),
            Found::Damaged { offset, why } => {
                return Err(LedgerError::Damaged(format!(
                    "{CHECKPOINTS_FILE} at byte {offset}: {why}"
                )));
            }
        }
    }
    Ok(log)
}

/// The signed notes in `ledger/checkpoints.log`, oldest first; an unfinished last one was
/// never handed out.
pub fn read_checkpoints(ledger_dir: &Path) -> Result<Vec<String>> {
    Ok(read_checkpoint_log(ledger_dir)?.notes)
}

/// The newest checkpoint in the log, where it starts and where whole records end, and
/// bytes after them that are not a whole record.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CheckpointTail {
    pub last: Option<String>,
    pub at: u64,
    pub end: u64,
    pub torn: Option<(u64, u64)>,
}

fn note_text(entry: Vec<u8>) -> Result<String> {
    String::from_utf8(entry).map_err(|_| {
        LedgerError::Damaged(format!("{CHECKPOINTS_FILE}: a checkpoint that is not text"))
    })
}

/// The newest checkpoint, read from where `checkpoints.last` says it is (checked: a whole
/// record that ends there) and any records after it; the whole log only when the
/// remembered place is missing or wrong. Damage before the newest checkpoint is
/// `ledger verify`'s to find.
pub fn read_checkpoint_tail(ledger_dir: &Path) -> Result<CheckpointTail> {
    let path = ledger_dir.join(CHECKPOINTS_FILE);
    if !path.exists() {
        return Ok(CheckpointTail::default());
    }
    let remembered = remembered_tail(ledger_dir, &path).unwrap_or_default();
    let mut tail = remembered.clone();
    let mut reader = SegmentReader::open(&path, tail.end)?.at_most(MAX_NOTE_BYTES);
    while let Some(found) = reader.next_found()? {
        match found {
            Found::Record { offset, entry, .. } => {
                tail.last = Some(note_text(entry)?);
                tail.at = offset;
                tail.end = reader.offset();
            }
            Found::Torn { offset, bytes } => tail.torn = Some((offset, bytes)),
            Found::Damaged { offset, why } => {
                return Err(LedgerError::Damaged(format!(
                    "{CHECKPOINTS_FILE} at byte {offset}: {why}"
                )));
            }
        }
    }
    if tail.end != remembered.end {
        remember_tail(ledger_dir, tail.at, tail.end);
    }
    Ok(tail)
}

fn remembered_tail(ledger_dir: &Path, path: &Path) -> Option<CheckpointTail> {
    let text = std::fs::read_to_string(ledger_dir.join(LAST_CHECKPOINT_FILE)).ok()?;
    let (at, end) = text.trim().split_once(' ')?;
    let (at, end): (u64, u64) = (at.parse().ok()?, end.parse().ok()?);
    let mut reader = SegmentReader::open(path, at).ok()?.at_most(MAX_NOTE_BYTES);
    match reader.next_found().ok()?? {
        Found::Record { entry, .. } if reader.offset() == end => Some(CheckpointTail {
            last: Some(String::from_utf8(entry).ok()?),
            at,
            end,
            torn: None,
        }),
        _ => None,
    }
}

/// Notes where the newest checkpoint is. Not synced: a place lost in a crash is found
/// again by a scan.
fn remember_tail(ledger_dir: &Path, at: u64, end: u64) {
    let path = ledger_dir.join(LAST_CHECKPOINT_FILE);
    let staged = path.with_extension("last.tmp");
    if std::fs::write(&staged, format!("{at} {end}\n")).is_ok() {
        let _ = std::fs::rename(&staged, &path);
    }
}

impl Ledger {
    /// Opens the ledger of a data directory, starting it (key, entry 0, first checkpoint)
    /// when there is none yet.
    pub fn open(ledger_dir: &Path, config: &Path, origin: &str) -> Result<Ledger> {
        let log = Log::open(ledger_dir)?;
        let subject_key = load_or_create_subject_key(config)?;
        let signer = match std::fs::read_to_string(config.join(SIGNING_KEY_FILE)) {
            Ok(text) => Some(NoteSigner::decode(&text)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let mut ledger = Ledger {
            log,
            config: config.to_path_buf(),
            origin: origin.to_string(),
            signer,
            subject_key,
            damage: None,
        };
        let checkpoints = read_checkpoint_tail(ledger.log.dir())?;
        ledger.damage = ledger.find_damage(checkpoints.last.as_deref())?;
        if ledger.damage.is_some() {
            return Ok(ledger);
        }
        // Writes cut off by a crash were never acknowledged: set aside (kept in
        // ledger/torn/), and said so in the log.
        let mut repairs = Vec::new();
        let torn = ledger.log.torn_bytes();
        if torn > 0 {
            ledger.log.repair()?;
            repairs.push(format!("{torn} bytes of an append"));
        }
        if checkpoints.torn.is_some()
            && let Some(bytes) = ledger.set_aside_torn_checkpoint()?
        {
            repairs.push(format!("{bytes} bytes of a checkpoint"));
        }
        if ledger.log.is_empty() {
            ledger.start()?;
        }
        if !repairs.is_empty() {
            let mut repaired = Entry::new("ledger_repaired", "ledger", ALLOWED);
            repaired.reason = Some(format!(
                "{} cut off by a crash were set aside in ledger/torn/",
                repairs.join(" and ")
            ));
            ledger.append(&[repaired.to_bytes()])?;
        }
        Ok(ledger)
    }

    /// Cuts an unfinished checkpoint write off the checkpoint log (looked for again under
    /// the lock), so that the next one is not written after it and lost to readers;
    /// returns how many bytes it moved.
    fn set_aside_torn_checkpoint(&mut self) -> Result<Option<u64>> {
        let moved = self.log.exclusively(|dir| {
            let torn = read_checkpoint_tail(dir)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
                .torn;
            torn.map(|(offset, _)| log::set_aside(dir, &dir.join(CHECKPOINTS_FILE), offset))
                .transpose()
        })?;
        Ok(moved)
    }

    /// What stops appends: damage the log found, entries fewer than a checkpoint counted,
    /// or a log emptied under an existing key.
    fn find_damage(&self, last_checkpoint: Option<&str>) -> Result<Option<String>> {
        if let Some(d) = self.log.damage() {
            return Ok(Some(d.to_string()));
        }
        if let Some(last) = last_checkpoint {
            let counted = Checkpoint::read_unverified(last)?.size;
            if counted > self.log.len() {
                return Ok(Some(format!(
                    "the log has {} entries, but a checkpoint counted {counted}: entries were removed",
                    self.log.len()
                )));
            }
        }
        Ok(None)
    }

    fn start(&mut self) -> Result<()> {
        let signer = match self.signer.take() {
            Some(s) => s,
            None => {
                let s = NoteSigner::generate(&self.origin)?;
                write_secret(&self.config.join(SIGNING_KEY_FILE), &s.encode())?;
                append_verifier(&self.config, &s.verifier())?;
                s
            }
        };
        let mut genesis = Entry::new("ledger_started", "ledger", ALLOWED);
        genesis.detail = serde_json::json!({ "verifier_key": signer.verifier().encode() });
        self.signer = Some(signer);
        self.append(&[genesis.to_bytes()])?;
        self.checkpoint()?;
        Ok(())
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn subject_key(&self) -> &SubjectKey {
        &self.subject_key
    }

    pub fn len(&self) -> u64 {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    pub fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    /// Reads entries other processes appended.
    pub fn refresh(&mut self) -> Result<()> {
        self.log.refresh()?;
        Ok(())
    }

    /// Appends unnumbered entries (see [`entry::numbered`]) durably; returns the first's seq.
    pub fn append(&mut self, unnumbered: &[Vec<u8>]) -> Result<u64> {
        if let Some(d) = &self.damage {
            return Err(LedgerError::Damaged(d.clone()));
        }
        let at = self.log.append_with(|first| {
            unnumbered
                .iter()
                .enumerate()
                .map(|(i, e)| entry::numbered(first + i as u64, e))
                .collect()
        })?;
        Ok(at)
    }

    /// Signs a checkpoint of the log as it is now (unless the newest one already covers it).
    pub fn checkpoint(&mut self) -> Result<String> {
        self.log.refresh()?;
        if let Some(last) = self.last_checkpoint()?
            && Checkpoint::read_unverified(&last)?.size == self.log.len()
        {
            return Ok(last);
        }
        self.sign_checkpoint()
    }

    fn sign_checkpoint(&mut self) -> Result<String> {
        let signer = self.signer.as_ref().ok_or_else(|| {
            LedgerError::Key(format!(
                "{} is missing: restore it from your backup; checkpoints cannot be signed without it",
                self.config.join(SIGNING_KEY_FILE).display()
            ))
        })?;
        self.log.sync_derived()?;
        let size = self.log.len();
        let root = self.log.root(size)?.expect("the tree has the log's size");
        let note = signer.sign(&Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
        });
        if note.len() > MAX_NOTE_BYTES {
            return Err(LedgerError::Key(format!(
                "a checkpoint of {} bytes is longer than {MAX_NOTE_BYTES}: shorten the ledger's origin",
                note.len()
            )));
        }
        let mut record = Vec::new();
        segment::encode_record(&mut record, note.as_bytes());
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log.dir().join(CHECKPOINTS_FILE))?;
        file.write_all(&record)?;
        file.sync_data()?;
        let end = io::Seek::stream_position(&mut file)?;
        remember_tail(self.log.dir(), end - record.len() as u64, end);
        Ok(note)
    }

    pub fn checkpoints(&self) -> Result<Vec<String>> {
        read_checkpoints(self.log.dir())
    }

    /// The newest signed checkpoint, read without the ones before it.
    pub fn last_checkpoint(&self) -> Result<Option<String>> {
        Ok(read_checkpoint_tail(self.log.dir())?.last)
    }

    pub fn verifier(&self) -> Option<NoteVerifier> {
        self.signer.as_ref().map(NoteSigner::verifier)
    }

    /// Replaces the signing key: the rotation is an entry, signed over by the old key; the
    /// old private key is deleted, its verifier key kept.
    pub fn rotate_key(&mut self) -> Result<NoteVerifier> {
        let old = self
            .signer
            .as_ref()
            .ok_or_else(|| LedgerError::Key("no signing key to rotate from".into()))?;
        let new = NoteSigner::generate(&self.origin)?;
        let mut rotated = Entry::new("key_rotated", "ledger", ALLOWED);
        rotated.detail = serde_json::json!({
            "old_verifier_key": old.verifier().encode(),
            "verifier_key": new.verifier().encode(),
        });
        self.append(&[rotated.to_bytes()])?;
        self.sign_checkpoint()?;
        let key_path = self.config.join(SIGNING_KEY_FILE);
        let staged = key_path.with_extension("new");
        let _ = std::fs::remove_file(&staged);
        write_secret(&staged, &new.encode())?;
        append_verifier(&self.config, &new.verifier())?;
        std::fs::rename(&staged, &key_path)?;
        let verifier = new.verifier();
        self.signer = Some(new);
        self.sign_checkpoint()?;
        Ok(verifier)
    }

    /// The newest checkpoint, signing one first when the log has grown past it.
    fn covering_checkpoint(&mut self, size_at_least: u64) -> Result<(String, Checkpoint)> {
        let mut note = self.last_checkpoint()?;
        let too_old = match &note {
            Some(n) => Checkpoint::read_unverified(n)?.size < size_at_least,
            None => true,
        };
        if too_old {
            note = Some(self.checkpoint()?);
        }
        let note = note.expect("a checkpoint exists now");
        let checkpoint = Checkpoint::read_unverified(&note)?;
        Ok((note, checkpoint))
    }

    pub fn prove(&mut self, index: u64) -> Result<InclusionProof> {
        self.log.refresh()?;
        let entry = self.log.entry(index).map_err(|_| {
            LedgerError::NotFound(format!(
                "there is no entry {index}: the log has {} (0 to {})",
                self.log.len(),
                self.log.len().saturating_sub(1)
            ))
        })?;
        let (note, checkpoint) = self.covering_checkpoint(index + 1)?;
        let hashes = self
            .log
            .inclusion_proof(index, checkpoint.size)?
            .expect("index is below the checkpoint's size");
        Ok(InclusionProof {
            format: INCLUSION_FORMAT.into(),
            index,
            entry: String::from_utf8_lossy(&entry).into_owned(),
            tree_size: checkpoint.size,
            hashes: hashes.iter().map(hex::encode).collect(),
            checkpoint: note,
            verifier_key: self.signing_verifier_text()?,
        })
    }

    fn signing_verifier_text(&self) -> Result<String> {
        self.verifier()
            .map(|v| v.encode())
            .ok_or_else(|| LedgerError::Key("the signing key is missing".into()))
    }

    /// Proves the newest checkpoint extends `old_note`, after checking `old_note` was signed
    /// by one of this ledger's keys.
    pub fn consistency(&mut self, old_note: &str) -> Result<ConsistencyProof> {
        let verifiers = read_verifiers(&self.config)?;
        let old = verifiers
            .iter()
            .find_map(|v| v.open(old_note).ok())
            .ok_or_else(|| {
                LedgerError::Key(
                    "the old checkpoint is not signed by any key of this ledger".into(),
                )
            })?;
        if old.origin != self.origin {
            return Err(LedgerError::Key(format!(
                "the old checkpoint is of '{}', this ledger is '{}'",
                old.origin, self.origin
            )));
        }
        let (new_note, new) = self.covering_checkpoint(old.size)?;
        let hashes = if old.size == 0 {
            Vec::new()
        } else {
            self.log
                .consistency_proof(old.size, new.size)?
                .expect("old size is within the log")
        };
        Ok(ConsistencyProof {
            format: CONSISTENCY_FORMAT.into(),
            old_checkpoint: old_note.to_string(),
            new_checkpoint: new_note,
            hashes: hashes.iter().map(hex::encode).collect(),
            verifier_key: self.signing_verifier_text()?,
        })
    }
}

fn append_verifier(config: &Path, verifier: &NoteVerifier) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.join(VERIFIERS_FILE))?;
    writeln!(file, "{}", verifier.encode())?;
    file.sync_all()
}

fn load_or_create_subject_key(config: &Path) -> Result<SubjectKey> {
    std::fs::create_dir_all(config)?;
    let path = config.join(SUBJECT_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => SubjectKey::from_hex(&text)
            .ok_or_else(|| LedgerError::Key(format!("{} is not a key", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = SubjectKey::generate();
            match write_secret(&path, &key.to_hex()) {
                Ok(()) => Ok(key),
                // Another process made it first: use theirs.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    load_or_create_subject_key(config)
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A new ledger in a temporary directory, as the tests of this crate open it.
    pub(crate) fn test_ledger() -> (tempfile::TempDir, Ledger) {
        let tmp = tempfile::tempdir().unwrap();
        let ledger = reopen(&tmp).unwrap();
        (tmp, ledger)
    }

    fn ledger_with_checkpoints(n: usize) -> (tempfile::TempDir, Ledger) {
        let (tmp, mut ledger) = test_ledger();
        for _ in 0..n {
            ledger
                .append(&[Entry::new("statement", "rest", ALLOWED).to_bytes()])
                .unwrap();
            ledger.checkpoint().unwrap();
        }
        (tmp, ledger)
    }

    fn reopen(tmp: &tempfile::TempDir) -> Result<Ledger> {
        Ledger::open(
            &tmp.path().join("ledger"),
            &tmp.path().join("config"),
            "test/ledger",
        )
    }

    /// Opening reads the newest checkpoint where it was noted, not the log before it: a
    /// changed old checkpoint does not slow or stop the open (verify names it), and once
    /// the note is gone the scan that replaces it finds the change.
    #[test]
    fn opening_reads_only_the_newest_checkpoint() {
        let (tmp, ledger) = ledger_with_checkpoints(5);
        let newest = ledger.last_checkpoint().unwrap().unwrap();
        drop(ledger);
        let dir = tmp.path().join("ledger");
        let path = dir.join(CHECKPOINTS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let ledger = reopen(&tmp).unwrap();
        assert_eq!(ledger.last_checkpoint().unwrap().unwrap(), newest);
        drop(ledger);
        std::fs::remove_file(dir.join(LAST_CHECKPOINT_FILE)).unwrap();
        let err = reopen(&tmp).err().unwrap().to_string();
        assert!(err.contains("checkpoints.log at byte 0"), "{err}");
    }

    /// Opening trusts the tree files up to what a checkpoint made durable: they are not
    /// cut and rebuilt from the entries (which made every open read the whole log).
    #[test]
    fn opening_leaves_the_tree_files_as_they_are() {
        let (tmp, ledger) = ledger_with_checkpoints(40);
        drop(ledger);
        let tree = tmp.path().join("ledger").join(crate::tree_store::TREE_DIR);
        let stamps = || {
            // An empty level above the top may be created; it holds nothing.
            let mut files: Vec<_> = std::fs::read_dir(&tree)
                .unwrap()
                .filter(|f| f.as_ref().unwrap().metadata().unwrap().len() > 0)
                .map(|f| {
                    let f = f.unwrap();
                    let meta = f.metadata().unwrap();
                    (f.file_name(), meta.len(), meta.modified().unwrap())
                })
                .collect();
            files.sort();
            files
        };
        let before = stamps();
        assert!(before.len() > 5 && before[0].1 == 41 * 32, "{before:?}");
        let ledger = reopen(&tmp).unwrap();
        assert_eq!(ledger.len(), 41);
        assert_eq!(stamps(), before);
    }

    /// A checkpoint another process signed after the note (the note lost in a crash) is
    /// still the newest: the read goes on from the noted place.
    #[test]
    fn a_checkpoint_after_the_noted_one_is_found() {
        let (tmp, mut ledger) = ledger_with_checkpoints(3);
        let dir = tmp.path().join("ledger");
        let noted = std::fs::read(dir.join(LAST_CHECKPOINT_FILE)).unwrap();
        ledger
            .append(&[Entry::new("statement", "rest", ALLOWED).to_bytes()])
            .unwrap();
        let newest = ledger.checkpoint().unwrap();
        std::fs::write(dir.join(LAST_CHECKPOINT_FILE), noted).unwrap();
        assert_eq!(read_checkpoint_tail(&dir).unwrap().last.unwrap(), newest);
        assert_eq!(ledger.checkpoint().unwrap(), newest, "not signed again");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the note says, the newest checkpoint read is the scan's.
        #[test]
        fn any_note_gives_the_scans_newest_checkpoint(at in 0u64..2000, end in 0u64..2000, garbage in any::<bool>()) {
            let (tmp, ledger) = ledger_with_checkpoints(4);
            let dir = tmp.path().join("ledger");
            let note = if garbage { format!("{at}") } else { format!("{at} {end}\n") };
            std::fs::write(dir.join(LAST_CHECKPOINT_FILE), note).unwrap();
            let scanned = read_checkpoints(&dir).unwrap().pop();
            prop_assert_eq!(read_checkpoint_tail(&dir).unwrap().last, scanned);
            drop(ledger);
        }
    }
}
