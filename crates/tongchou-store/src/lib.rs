//! The Tongchou data directory: everything one platform instance keeps.
//!
//! ```text
//! DIR/
//!   tongchou.toml     format version and instance facts (written last by `init`)
//!   metadata.sqlite   embedded metadata (catalog, users, grants, exchange state) via sqlx
//!   tables/           one versioned table per resource
//!   ledger/           the audit ledger's segments and checkpoints
//!   config/           keys and settings
//!   index/            search indexes, rebuilt from the metadata when stale
//! ```
//!
//! [`DataDir::open`] refuses a directory of another format version or a damaged one with a
//! message that says what to do, so no command ever works on a half-understood directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
pub const MARKER_FILE: &str = "tongchou.toml";
pub const METADATA_FILE: &str = "metadata.sqlite";
pub const SUBDIRS: [&str; 4] = ["tables", "ledger", "config", "index"];

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{0} is not a Tongchou data directory (no {MARKER_FILE}); run `tongchou --data-dir {0} init` first"
    )]
    NotInitialised(String),
    #[error(
        "{path} is not empty and is not a Tongchou data directory; choose an empty or new directory for `init`"
    )]
    NotEmpty { path: String },
    #[error(
        "{path} has data format version {found}, but this tongchou (v{}) reads version {FORMAT_VERSION}; use the tongchou release that wrote it, or migrate it",
        env!("CARGO_PKG_VERSION")
    )]
    WrongVersion { path: String, found: u32 },
    #[error(
        "the data directory {path} is damaged: {what}; restore it from a backup or re-create it with `tongchou init`"
    )]
    Damaged { path: String, what: String },
    #[error("cannot use the data directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    format_version: u32,
    created_unix: u64,
    created_by: String,
}

/// An opened, checked data directory with its metadata pool.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    metadata: SqlitePool,
}

impl DataDir {
    /// Creates a data directory (or confirms an existing one of this version). The marker
    /// is written last, so a crash during `init` never leaves a directory that opens.
    pub async fn init(root: &Path) -> Result<DataDir, StoreError> {
        if root.join(MARKER_FILE).exists() {
            return Self::open(root).await;
        }
        let display = root.display().to_string();
        let io = |source| StoreError::Io {
            path: display.clone(),
            source,
        };
        if root.exists() && std::fs::read_dir(root).map_err(io)?.next().is_some() {
            return Err(StoreError::NotEmpty { path: display });
        }
        for sub in SUBDIRS {
            std::fs::create_dir_all(root.join(sub)).map_err(io)?;
        }
        let metadata = connect(root, true).await?;
        MIGRATOR
            .run(&metadata)
            .await
            .map_err(|e| damaged(root, format!("metadata migration failed: {e}")))?;
        let marker = Marker {
            format_version: FORMAT_VERSION,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            created_by: format!("tongchou {}", env!("CARGO_PKG_VERSION")),
        };
        let text = toml::to_string(&marker).expect("marker serialises");
        write_durably(&root.join(MARKER_FILE), text.as_bytes()).map_err(io)?;
        Ok(DataDir {
            root: root.to_path_buf(),
            metadata,
        })
    }

    /// Opens an initialised directory after checking its version and integrity.
    pub async fn open(root: &Path) -> Result<DataDir, StoreError> {
        let display = root.display().to_string();
        let marker_path = root.join(MARKER_FILE);
        let text = match std::fs::read_to_string(&marker_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotInitialised(display));
            }
            Err(e) => return Err(damaged(root, format!("{MARKER_FILE} cannot be read ({e})"))),
        };
        let marker: Marker = toml::from_str(&text).map_err(|e| {
            damaged(
                root,
                format!("{MARKER_FILE} is not valid ({})", e.message()),
            )
        })?;
        if marker.format_version != FORMAT_VERSION {
            return Err(StoreError::WrongVersion {
                path: display,
                found: marker.format_version,
            });
        }
        for sub in SUBDIRS {
            if !root.join(sub).is_dir() {
                return Err(damaged(root, format!("the {sub}/ directory is missing")));
            }
        }
        if !root.join(METADATA_FILE).is_file() {
            return Err(damaged(root, format!("{METADATA_FILE} is missing")));
        }
        let metadata = connect(root, false).await?;
        check_metadata(root, &metadata).await?;
        Ok(DataDir {
            root: root.to_path_buf(),
            metadata,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn metadata(&self) -> &SqlitePool {
        &self.metadata
    }

    pub fn tables_dir(&self) -> PathBuf {
        self.root.join("tables")
    }

    pub fn ledger_dir(&self) -> PathBuf {
        self.root.join("ledger")
    }

    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }

    pub fn index_dir(&self) -> PathBuf {
        self.root.join("index")
    }

    /// Tells every process serving this directory that users, credentials, grants or the
    /// catalog changed, so cached access decisions are rebuilt before the next statement.
    /// Called after the change is committed: failing to signal only delays other processes
    /// until their next reload, so it is reported, not returned.
    pub fn note_policy_change(&self) {
        let path = self.config_dir().join(POLICY_GENERATION_FILE);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let stamp: u64 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let written = std::fs::write(&tmp, format!("{stamp}-{}", std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            eprintln!(
                "warning: cannot signal an access or catalog change to running servers ({}): {e}",
                path.display()
            );
        }
    }

    /// A watch on the marker `note_policy_change` writes, for callers that ask before
    /// every statement.
    pub fn policy_generation_watch(&self) -> GenerationWatch {
        GenerationWatch {
            path: self.config_dir().join(POLICY_GENERATION_FILE),
            held: std::sync::Mutex::new(None),
        }
    }
}

/// Reads the policy generation marker only when it was replaced. `note_policy_change`
/// replaces the file by rename, and the watch keeps the file it read open, so that inode
/// cannot be freed and its number reused: while the path still names the same inode, the
/// generation is the one already read. One `stat` a statement instead of opening and
/// reading the file.
pub struct GenerationWatch {
    path: PathBuf,
    held: std::sync::Mutex<Option<(std::fs::File, u64, String)>>,
}

impl GenerationWatch {
    pub fn current(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(inode), Some((_, read, text))) = (inode, held.as_ref())
            && inode == *read
        {
            return text.clone();
        }
        *held = Self::read(&self.path).ok();
        held.as_ref()
            .map(|(_, _, text)| text.clone())
            .unwrap_or_default()
    }

    fn read(path: &Path) -> std::io::Result<(std::fs::File, u64, String)> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let mut file = std::fs::File::open(path)?;
        let inode = file.metadata()?.ino();
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok((file, inode, text))
    }
}

const POLICY_GENERATION_FILE: &str = "policy.generation";

fn damaged(root: &Path, what: String) -> StoreError {
    StoreError::Damaged {
        path: root.display().to_string(),
        what,
    }
}

async fn connect(root: &Path, create: bool) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::new()
        .filename(root.join(METADATA_FILE))
        .create_if_missing(create)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(std::time::Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(|e| damaged(root, format!("{METADATA_FILE} cannot be opened ({e})")))
}

/// Integrity check plus a migration check: every applied migration must be one this build
/// knows, and pending ones are applied (same format version, additive schema changes).
async fn check_metadata(root: &Path, pool: &SqlitePool) -> Result<(), StoreError> {
    let verdict: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(pool)
        .await
        .map_err(|e| {
            damaged(
                root,
                format!("{METADATA_FILE} is not a readable database ({e})"),
            )
        })?;
    if verdict != "ok" {
        return Err(damaged(
            root,
            format!("{METADATA_FILE} failed its integrity check: {verdict}"),
        ));
    }
    let initialised: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = '_sqlx_migrations'")
            .fetch_one(pool)
            .await
            .map_err(|e| damaged(root, format!("{METADATA_FILE} cannot be read ({e})")))?;
    if initialised == 0 {
        return Err(damaged(
            root,
            format!("{METADATA_FILE} is empty: its schema was lost"),
        ));
    }
    MIGRATOR.run(pool).await.map_err(|e| {
        damaged(
            root,
            format!("{METADATA_FILE} schema does not match this build ({e})"),
        )
    })
}

/// Writes a file through a temporary sibling, fsyncs and renames it into place.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_generation_watch_sees_every_change_however_quick() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::init(&tmp.path().join("d")).await.unwrap();
        let watch = dir.policy_generation_watch();
        let mut seen = vec![watch.current()];
        assert_eq!(seen[0], "", "no change yet");
        for _ in 0..200 {
            dir.note_policy_change();
            let now = watch.current();
            assert_eq!(watch.current(), now, "unchanged between changes");
            assert!(!seen.contains(&now), "change {} was missed", seen.len());
            seen.push(now);
        }
    }

    #[tokio::test]
    async fn init_then_open() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("d");
        DataDir::init(&root).await.unwrap();
        let dir = DataDir::open(&root).await.unwrap();
        assert!(dir.tables_dir().is_dir());
        let generation: String =
            sqlx::query_scalar("SELECT value FROM instance WHERE key = 'catalog_generation'")
                .fetch_one(dir.metadata())
                .await
                .unwrap();
        assert_eq!(generation, "0", "migrations ran");
    }

    #[tokio::test]
    async fn open_refuses_uninitialised_and_other_versions() {
        let tmp = tempfile::tempdir().unwrap();
        let err = DataDir::open(tmp.path()).await.unwrap_err();
        assert!(matches!(err, StoreError::NotInitialised(_)), "{err}");
        assert!(err.to_string().contains("tongchou --data-dir"));

        let root = tmp.path().join("d");
        DataDir::init(&root).await.unwrap();
        let marker = root.join(MARKER_FILE);
        let text = std::fs::read_to_string(&marker).unwrap();
        std::fs::write(
            &marker,
            text.replace("format_version = 1", "format_version = 7"),
        )
        .unwrap();
        let err = DataDir::open(&root).await.unwrap_err();
        assert!(
            matches!(err, StoreError::WrongVersion { found: 7, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn open_refuses_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("d");
        DataDir::init(&root).await.unwrap().metadata().close().await;
        let meta = root.join(METADATA_FILE);
        for garbage in [vec![0u8; 0], b"not sqlite ".repeat(1000)] {
            std::fs::write(&meta, &garbage).unwrap();
            for ext in ["sqlite-wal", "sqlite-shm"] {
                let _ = std::fs::remove_file(meta.with_extension(ext));
            }
            let err = DataDir::open(&root).await.unwrap_err();
            assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
        }
        std::fs::remove_dir(root.join("ledger")).unwrap();
        let err = DataDir::open(&root).await.unwrap_err();
        assert!(
            err.to_string().contains("ledger/ directory is missing"),
            "{err}"
        );

        std::fs::write(root.join(MARKER_FILE), b"format_version = [").unwrap();
        let err = DataDir::open(&root).await.unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[tokio::test]
    async fn init_refuses_foreign_non_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("thesis.docx"), b"x").unwrap();
        let err = DataDir::init(tmp.path()).await.unwrap_err();
        assert!(matches!(err, StoreError::NotEmpty { .. }), "{err}");
    }
}
