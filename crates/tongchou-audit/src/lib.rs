//! What Tongchou records in its audit ledger (可追溯, DESIGN.md §6) and how the record is
//! read back.
//!
//! Every front door builds an [`Entry`] for each statement, download, pull, catalog change
//! and load — denied ones included — and [`Audit::record`]s it before acting or before the
//! first byte of a result leaves: the call returns only once the entry is durable, and
//! when the ledger cannot be written the action fails. Access events (sign-ins, requests,
//! decisions, grants) are written by the access crate in the same transaction as their
//! change and moved into the ledger by [`outbox`]. [`index`] keeps a searchable copy of the
//! entries in the metadata database — who looked at a person, use by unit and purpose,
//! denied attempts, unusual readers — rebuilt from the ledger whenever it is behind.

pub mod index;
pub mod outbox;

use std::path::Path;

use serde::{Deserialize, Serialize};
use tongchou_ledger::{Committer, Ledger, LedgerError};
use tongchou_store::DataDir;

pub use tongchou_ledger::SubjectKey;
pub use tongchou_ledger::entry::{ALLOWED, DENIED, Entry, FAILED, SUBJECT_BYTES, now};

/// The name the ledger's checkpoints carry.
pub const ORIGIN: &str = "tongchou/ledger";
pub const SETTINGS_FILE: &str = "ledger.toml";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the ledger's index in the metadata database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Settings(String),
    #[error("a subject set beside the ledger: {0}")]
    SubjectSet(String),
    /// A search the caller asked for wrongly (a time that is not one, a page after an
    /// entry that does not exist).
    #[error("{0}")]
    Filter(String),
}

/// `config/ledger.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Results of up to this many rows have their people and enterprises indexed.
    #[serde(default = "default_subject_rows")]
    pub subject_rows: u64,
}

fn default_subject_rows() -> u64 {
    1000
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            subject_rows: default_subject_rows(),
        }
    }
}

impl Settings {
    pub fn read(config: &Path) -> Result<Settings, AuditError> {
        let path = config.join(SETTINGS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| AuditError::Settings(format!("{}: {}", path.display(), e.message()))),
            Err(_) => Ok(Settings::default()),
        }
    }
}

/// The ledger of a data directory, shared by the tasks of one process.
#[derive(Clone)]
pub struct Audit {
    committer: Committer,
    dir: DataDir,
    settings: Settings,
    subject_key: SubjectKey,
}

impl Audit {
    /// Opens (or starts) the ledger and pins its first key in the metadata database.
    pub async fn open(dir: &DataDir) -> Result<Audit, AuditError> {
        let settings = Settings::read(&dir.config_dir())?;
        let (ledger_dir, config) = (dir.ledger_dir(), dir.config_dir());
        let ledger =
            tokio::task::spawn_blocking(move || Ledger::open(&ledger_dir, &config, ORIGIN))
                .await
                .expect("opening the ledger does not panic")?;
        let subject_key = ledger.subject_key().clone();
        if let Some(first) = tongchou_ledger::ledger::read_verifiers(&dir.config_dir())?.first() {
            sqlx::query(
                "INSERT OR IGNORE INTO ledger_pins (name, value) VALUES ('first_verifier_key', ?)",
            )
            .bind(first.encode())
            .execute(dir.metadata())
            .await?;
        }
        Ok(Audit {
            committer: Committer::start(ledger),
            dir: dir.clone(),
            settings,
            subject_key,
        })
    }

    /// Appends an entry; returns its place once it is durable. A set of subjects too large
    /// for the entry is stored first, so no entry names a set that is not there.
    pub async fn record(&self, entry: &Entry) -> Result<u64, AuditError> {
        if let Some(digest) = &entry.subject_set {
            store_subject_set(self.dir.metadata(), digest, &entry.subject_hashes).await?;
        }
        let entry = Audit::without_identifiers(entry);
        Ok(self.committer.append(entry.to_bytes()).await?)
    }

    /// Records a denied attempt. A failure to record it is returned to the caller too:
    /// the refusal stands either way.
    pub async fn record_denied(&self, mut entry: Entry, reason: &str) -> Result<u64, AuditError> {
        entry.outcome = DENIED.into();
        entry.reason = Some(reason.to_string());
        self.record(&entry).await
    }

    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The keyed hash under which a person's or enterprise's ID is indexed.
    pub fn subject(&self, id: &str) -> String {
        self.subject_key.subject(id)
    }

    pub fn subject_key(&self) -> &SubjectKey {
        &self.subject_key
    }

    /// Puts `subjects` (keyed hashes, any order, repeats allowed) into `entry`: listed when
    /// there are at most `subject_rows` of them, else as the digest of their set, which
    /// [`Audit::record`] stores before the entry.
    pub fn set_subjects(&self, entry: &mut Entry, mut subjects: Vec<[u8; SUBJECT_BYTES]>) {
        subjects.sort_unstable();
        subjects.dedup();
        if subjects.len() as u64 <= self.settings.subject_rows {
            entry.subjects = subjects.iter().map(hex::encode).collect();
            return;
        }
        entry.subjects.clear();
        entry.subject_set = Some(set_digest(&subjects));
        entry.subject_count = Some(subjects.len() as u64);
        entry.subject_hashes = subjects;
    }

    /// `text` with every ID-shaped word replaced by `…` ([`hide_identifiers`]). Naming
    /// someone in a statement does not make them its subject: only the rows it touched do
    /// (no one is put in another's ledger view by being written in a query).
    pub fn redact(&self, text: &str) -> String {
        hide_identifiers(text)
    }

    /// `entry` with ID-shaped words hidden in what callers typed (user, purpose, reason,
    /// statement): a failed sign-in's name, a refused purpose or an error's text can carry
    /// a citizen ID as well as a statement can. Borrowed when there is nothing to hide.
    pub(crate) fn without_identifiers<'a>(entry: &'a Entry) -> std::borrow::Cow<'a, Entry> {
        let typed = |e: &Entry| {
            [
                e.user.clone(),
                e.purpose.clone(),
                e.reason.clone(),
                e.statement.clone(),
            ]
        };
        let hidden = |t: &Option<String>| t.as_deref().map(hide_identifiers);
        if typed(entry).iter().all(|t| hidden(t) == *t) {
            return std::borrow::Cow::Borrowed(entry);
        }
        let mut e = entry.clone();
        e.user = hidden(&e.user);
        e.purpose = hidden(&e.purpose);
        e.reason = hidden(&e.reason);
        e.statement = hidden(&e.statement);
        std::borrow::Cow::Owned(e)
    }

    /// Runs `f` on the ledger outside the async runtime's threads.
    pub async fn with_ledger<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ledger) -> T + Send + 'static,
    ) -> T {
        let committer = self.committer.clone();
        tokio::task::spawn_blocking(move || f(&mut committer.ledger()))
            .await
            .expect("ledger work does not panic")
    }
}

/// `sha256:` of a sorted set of subjects, as its entries name it.
pub fn set_digest(subjects: &[[u8; SUBJECT_BYTES]]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for s in subjects {
        hasher.update(s);
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

async fn store_subject_set(
    pool: &sqlx::SqlitePool,
    digest: &str,
    subjects: &[[u8; SUBJECT_BYTES]],
) -> Result<(), AuditError> {
    // `set_subjects` made the digest from these subjects; checked in tests, not per read.
    debug_assert_eq!(set_digest(subjects), digest);
    // A repeated read of the same rows names a set stored before: nothing to write.
    let stored: Option<i64> = sqlx::query_scalar("SELECT 1 FROM subject_sets WHERE digest = ?")
        .bind(digest)
        .fetch_optional(pool)
        .await?;
    if stored.is_some() {
        return Ok(());
    }
    sqlx::query("INSERT OR IGNORE INTO subject_sets (digest, count, subjects) VALUES (?, ?, ?)")
        .bind(digest)
        .bind(subjects.len() as i64)
        .bind(subjects.concat())
        .execute(pool)
        .await?;
    Ok(())
}

/// `text` with every word that is, or holds, an ID (see [`looks_like_identifier`]) hidden:
/// the ID replaced by `…` (`v440103198601045988` → `v…`).
pub fn hide_identifiers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(&hide_in_word(word));
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// `word` (ASCII letters and digits) with each ID-shaped stretch in it replaced by `…`.
fn hide_in_word(word: &str) -> std::borrow::Cow<'_, str> {
    if word.len() < 15 {
        return word.into();
    }
    let mut out = String::with_capacity(word.len());
    let mut i = 0;
    while i < word.len() {
        let id = [18, 15]
            .into_iter()
            .find(|&n| i + n <= word.len() && looks_like_identifier(&word[i..i + n]));
        match id {
            Some(n) => {
                out.push('…');
                i += n;
            }
            None => {
                out.push_str(&word[i..i + 1]);
                i += 1;
            }
        }
    }
    out.into()
}

/// A 公民身份号码 (18 characters, or the old 15 digits) or 统一社会信用代码 (18): the
/// words whose clear text never goes into an entry.
pub fn looks_like_identifier(word: &str) -> bool {
    let digits = word.chars().filter(char::is_ascii_digit).count();
    match word.len() {
        15 => digits == 15,
        18 => {
            word.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || c == 'x')
                && digits >= 10
                && word[..6]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        }
        _ => false,
    }
}

/// The newest `n` entries, oldest of them first, as JSON.
pub fn tail(ledger: &mut Ledger, n: u64) -> Result<Vec<serde_json::Value>, LedgerError> {
    ledger.refresh()?;
    let len = ledger.len();
    (len.saturating_sub(n)..len)
        .map(|i| {
            let bytes = ledger.log().entry(i)?;
            Ok(serde_json::from_slice(&bytes).unwrap_or_else(
                |_| serde_json::json!({ "seq": i, "unreadable": String::from_utf8_lossy(&bytes) }),
            ))
        })
        .collect()
}

impl Audit {
    /// Signs a checkpoint every `every` while the log grows, for as long as the process runs.
    pub fn keep_checkpointing(&self, every: std::time::Duration) {
        let audit = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(e) = audit.with_ledger(|l| l.checkpoint()).await {
                    eprintln!("ledger: no checkpoint this time: {e}");
                }
            }
        });
    }
}

/// The entries `seqs` with their inclusion proofs against one fresh checkpoint.
pub fn export(
    ledger: &mut Ledger,
    seqs: &[u64],
    since: Option<&str>,
    until: Option<&str>,
) -> Result<tongchou_ledger::check::Export, LedgerError> {
    let note = ledger.checkpoint()?;
    let size = tongchou_ledger::Checkpoint::read_unverified(&note)?.size;
    let entries = seqs
        .iter()
        .map(|&index| {
            let entry = ledger.log().entry(index)?;
            let hashes = ledger.log().inclusion_proof(index, size)?.ok_or_else(|| {
                LedgerError::NotFound(format!("entry {index} is past the checkpoint"))
            })?;
            Ok(tongchou_ledger::check::ExportedEntry {
                index,
                entry: String::from_utf8_lossy(&entry).into_owned(),
                hashes: hashes.iter().map(hex_of).collect(),
            })
        })
        .collect::<Result<Vec<_>, LedgerError>>()?;
    Ok(tongchou_ledger::check::Export {
        format: tongchou_ledger::check::EXPORT_FORMAT.into(),
        from: since.unwrap_or("").into(),
        to: until.unwrap_or("").into(),
        checkpoint: note,
        verifier_key: ledger.verifier().map(|v| v.encode()).unwrap_or_default(),
        entries,
    })
}

fn hex_of(hash: &tongchou_ledger::Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hidden_alone_quoted_and_inside_longer_words() {
        let id = "440103198601045988";
        for (text, hidden) in [
            (format!("WHERE person_id = '{id}'"), "WHERE person_id = '…'"),
            (
                format!("\"出入境记录$changes@v{id}\""),
                "\"出入境记录$changes@v…\"",
            ),
            (format!("'x{id}'"), "'x…'"),
            (format!("{id}X9"), "…X9"),
            (
                "GET /api/x?subscription=123".to_string(),
                "GET /api/x?subscription=123",
            ),
            (
                "91440605MA4UXXXX1X and 44010319860104598".to_string(),
                "… and …98",
            ),
            (
                "a 12-digit 440103198601 stays".to_string(),
                "a 12-digit 440103198601 stays",
            ),
        ] {
            assert_eq!(hide_identifiers(&text), hidden, "{text}");
        }
    }

    #[test]
    fn what_callers_typed_loses_its_ids_before_it_is_recorded() {
        let mut entry = Entry::new("sign_in_attempt", "rest", DENIED);
        entry.unit = Some("11440605752028823N".into());
        let clean = Audit::without_identifiers(&entry);
        assert!(matches!(clean, std::borrow::Cow::Borrowed(_)));
        entry.user = Some("440103198601045988".into());
        entry.reason = Some("Cannot cast string '440103198601045988'".into());
        let clean = Audit::without_identifiers(&entry);
        assert_eq!(clean.user.as_deref(), Some("…"));
        assert_eq!(clean.reason.as_deref(), Some("Cannot cast string '…'"));
        assert_eq!(
            clean.unit, entry.unit,
            "the unit is the platform's own record, not typed"
        );
    }
}
