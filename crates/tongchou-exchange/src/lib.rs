//! Data exchange: providers load what they hold into versioned tables; nothing is lost.
//!
//! - [`ingest`] streams a department file (CSV in UTF-8 or GBK, XLSX, JSON/NDJSON, Parquet)
//!   through the catalog's field rules into the resource's Delta table as one commit;
//!   rows that break a rule go to the resource's quarantine with line, field and reason.
//! - Loads, their per-rule tallies and the quarantine are kept in the metadata database.

pub mod changes;
pub mod keys;
mod lines;
pub mod load;
pub mod reader;
pub mod table;

use std::path::Path;

use deltalake::datafusion::error::DataFusionError;
use serde::Serialize;
use sqlx::Row;
use tongchou_catalog::Catalog;
use tongchou_store::DataDir;

pub use load::{Quarantined, Tally, Violation};
pub use reader::{Encoding, ReadOptions};

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("cannot read the file {0}")]
    BadFile(String),
    #[error("{0}")]
    Columns(String),
    #[error("the table could not be written: {0}")]
    Table(String),
    #[error("{0}")]
    NoSuchVersion(String),
    #[error("a concurrent load changed the table first; run this load again ({0})")]
    Conflict(String),
    #[error(transparent)]
    Catalog(#[from] tongchou_catalog::CatalogError),
    #[error("metadata database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    NotRecorded(String),
}

impl From<deltalake::DeltaTableError> for ExchangeError {
    fn from(e: deltalake::DeltaTableError) -> Self {
        let text = e.to_string();
        if text.contains("already exists") || text.contains("onflict") {
            ExchangeError::Conflict(text)
        } else {
            ExchangeError::Table(text)
        }
    }
}

impl From<DataFusionError> for ExchangeError {
    fn from(e: DataFusionError) -> Self {
        ExchangeError::Table(e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Append,
    Replace,
    Upsert,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Append => "append",
            Mode::Replace => "replace",
            Mode::Upsert => "upsert",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "append" => Some(Mode::Append),
            "replace" => Some(Mode::Replace),
            "upsert" => Some(Mode::Upsert),
            _ => None,
        }
    }
}

/// What one load did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub resource: String,
    pub load_id: String,
    pub file: String,
    pub mode: Mode,
    pub version: i64,
    pub rows_read: u64,
    pub accepted: u64,
    pub quarantined: u64,
    pub by_rule: std::collections::BTreeMap<String, u64>,
    /// Rows in the table after the load.
    pub rows: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
    pub header_row: u64,
}

/// One quarantined row and one rule it broke.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineEntry {
    pub id: i64,
    pub load_id: String,
    pub line: u64,
    pub field: String,
    pub rule: String,
    pub reason: String,
    pub values: serde_json::Value,
}

const BATCH_ROWS: usize = 65_536;

/// Told the rows read since it was last told (`tongchou_model::Progress::advance`), now and
/// then during a load; the load never calls `start`, which is its caller's.
pub type Progress = std::sync::Arc<dyn tongchou_model::Progress>;

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// One load: which file goes into which resource's table, how, and by whom.
pub struct Load<'a> {
    pub resource: &'a str,
    pub file: &'a Path,
    pub mode: Mode,
    pub read: &'a ReadOptions,
    pub actor: &'a str,
}

/// The most rows a load sizes its uniqueness index for up front (about 800 MB, which a
/// file whose first rows are unusually short could otherwise overestimate); past that
/// the index grows as it goes.
const MAX_EXPECTED_ROWS: usize = 16 << 20;

/// Rows per chunk handed from the reading thread to the checking threads, and the bytes
/// that end a chunk sooner (rows may be long: what is in flight stays bounded).
const CHUNK_ROWS: usize = 4096;
const CHUNK_BYTES: usize = 16 << 20;
/// A batch is written at this many bytes of rows, if it has not reached `BATCH_ROWS`.
const BATCH_BYTES: usize = 64 << 20;
/// A reused row buffer that grew past this is given back, not kept for the next row.
const KEPT_ROW_BYTES: usize = 1 << 20;

fn chunk_bytes(chunk: &[(u64, reader::Row)]) -> usize {
    chunk.iter().map(|(_, row)| row.as_slice().len()).sum()
}

type Chunk = Result<Vec<(u64, reader::Row)>, ExchangeError>;

/// Reads (and decodes) rows on a thread of their own, a few chunks ahead of the checking,
/// so that parsing, checking and writing overlap. A read error ends the stream. Chunks
/// sent back through the returned sender are refilled, so rows' buffers are reused.
fn read_ahead(
    mut rows: reader::Rows,
) -> (
    std::sync::mpsc::Receiver<Chunk>,
    std::sync::mpsc::Sender<Vec<(u64, reader::Row)>>,
) {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Chunk>(4);
    let (spent, returned) = std::sync::mpsc::channel::<Vec<(u64, reader::Row)>>();
    let reading = std::thread::Builder::new().name("ingest-read".into());
    reading
        .spawn(move || {
            loop {
                let mut chunk = returned
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(CHUNK_ROWS));
                for (_, row) in chunk.iter_mut() {
                    if row.as_slice().len() > KEPT_ROW_BYTES {
                        *row = reader::Row::new();
                    }
                }
                let (mut filled, mut bytes) = (0, 0);
                while filled < CHUNK_ROWS && bytes < CHUNK_BYTES {
                    if filled == chunk.len() {
                        chunk.push((0, reader::Row::new()));
                    }
                    match rows.next_into(&mut chunk[filled].1) {
                        Some(Ok(line)) => {
                            chunk[filled].0 = line;
                            bytes += chunk[filled].1.as_slice().len();
                            filled += 1;
                        }
                        Some(Err(e)) => {
                            let _ = sender.send(Err(e));
                            return;
                        }
                        None => break,
                    }
                }
                chunk.truncate(filled);
                let last = filled < CHUNK_ROWS && bytes < CHUNK_BYTES;
                if (filled > 0 && sender.send(Ok(chunk)).is_err()) || last {
                    return;
                }
            }
        })
        .expect("the reading thread starts");
    (receiver, spent)
}

/// Loads a file into the resource's table. Rows breaking a rule are quarantined; the load
/// fails as a whole only when the file or the table cannot be read or written, and then
/// the table stays at its previous version.
pub async fn ingest(
    dir: &DataDir,
    catalog: &Catalog,
    load: &Load<'_>,
    progress: Progress,
) -> Result<LoadReport, ExchangeError> {
    let Load {
        resource: code,
        file: path,
        mode,
        read: options,
        actor,
    } = *load;
    let resource = catalog.get(code).await?.resource;
    let started = now();
    let load_id = format!(
        "{}-{:08x}",
        jiff::Timestamp::now().as_millisecond(),
        rand_suffix()
    );
    let source = reader::open(path, &resource, options)?;
    let mut loader = load::Loader::new(&resource, &source.labels)?;
    if mode == Mode::Upsert {
        loader = loader.for_upsert(&resource)?;
    }
    if let Some(rows) = source.rows_estimate {
        loader.expect_rows(rows.min(MAX_EXPECTED_ROWS));
    }
    let schema = loader.schema();
    let table_dir = table::table_dir(&dir.tables_dir(), code);
    let _serialised = keys::lock(&table_dir).await?;
    let table = table::open_or_create(&table_dir, &resource).await?;
    if mode != Mode::Replace {
        table::check_decimals(&table, &resource)?;
    }
    let indexed = !keys::slots(&resource).is_empty();
    if indexed && mode != Mode::Replace {
        let index = keys::current(&table_dir, &table, &resource).await?;
        index.expect_lookups(source.rows_estimate.unwrap_or(0));
        loader.prior = Some(load::Prior {
            index,
            files: version_files(dir, code).await?,
        });
    }
    // The version the load's commit makes, unless another write commits first.
    let expected_version = table.version().map_or(0, |v| v + 1);
    let fresh_index =
        (indexed && mode == Mode::Replace).then(|| keys::fresh(&table_dir, &resource));
    let (sender, receiver) = tokio::sync::mpsc::channel::<
        Result<deltalake::arrow::record_batch::RecordBatch, DataFusionError>,
    >(2);
    let (encoding, header_row) = (source.encoding, source.header_row);
    let pending = Pending {
        dir: dir.clone(),
        handle: tokio::runtime::Handle::current(),
        load_id: load_id.clone(),
        code: code.to_string(),
        file: reader::shown(path),
        mode,
        actor: actor.to_string(),
        started: started.clone(),
    };
    type Parsed = (
        load::Loader,
        Option<keys::KeyIndex>,
        Result<Option<keys::Prepared>, ExchangeError>,
    );
    let parser = tokio::task::spawn_blocking(move || -> Result<Parsed, ExchangeError> {
        let fail = |sender: &tokio::sync::mpsc::Sender<_>, e: &ExchangeError| {
            let _ = sender.blocking_send(Err(DataFusionError::External(Box::new(
                std::io::Error::other(e.to_string()),
            ))));
        };
        let (chunks, spent) = read_ahead(source.rows);
        let mut pending_bytes = 0;
        let mut reported = 0;
        let mut report =
            |read: u64| progress.advance(read - std::mem::replace(&mut reported, read));
        for chunk in chunks {
            let rows = match chunk {
                Ok(rows) => rows,
                Err(e) => {
                    fail(&sender, &e);
                    return Err(e);
                }
            };
            loader.push_chunk(&rows);
            pending_bytes += chunk_bytes(&rows);
            let _ = spent.send(rows);
            if loader.pending() >= BATCH_ROWS || pending_bytes >= BATCH_BYTES {
                pending_bytes = 0;
                report(loader.tally.rows_read);
                if sender.blocking_send(Ok(loader.batch())).is_err() {
                    return Err(ExchangeError::Table("the table writer stopped".into()));
                }
            }
        }
        if loader.pending() > 0 {
            let _ = sender.blocking_send(Ok(loader.batch()));
        }
        report(loader.tally.rows_read);
        // The load and its quarantine are on record before the stream ends and the table
        // commits: a crash after the commit cannot lose the quarantined rows.
        if let Err(e) = pending.record(&loader) {
            fail(&sender, &e);
            return Err(e);
        }
        // The stream ends here and the table commits while the key index's new segment
        // is written; if it cannot be, the index is left stale and the next load rebuilds it.
        drop(sender);
        let landed = indexed.then(|| loader.landed());
        let index = (loader.prior.as_ref().map(|p| &p.index)).or(fresh_index.as_ref());
        let prepared = match index.zip(landed) {
            Some((index, landed)) => index.prepare(expected_version, landed),
            None => Ok(None),
        };
        Ok((loader, fresh_index, prepared))
    });
    let written = match mode {
        Mode::Upsert => table::upsert(table, receiver, &resource, &load_id).await,
        _ => table::write(table, schema, receiver, mode == Mode::Replace, &load_id).await,
    };
    let parsed = parser
        .await
        .map_err(|e| ExchangeError::Table(e.to_string()))?;
    let table = match (written, parsed) {
        (Ok(table), Ok(parsed)) => (table, parsed),
        (written, parsed) => {
            forget_load(dir, &load_id).await?;
            drop(parsed?);
            return Err(written
                .err()
                .unwrap_or_else(|| ExchangeError::Table("the load was not committed".into())));
        }
    };
    let (table, (mut loader, fresh_index, prepared)) = table;
    let version = table.version().unwrap_or(0) as i64;
    let rows = match mode {
        Mode::Replace => loader.tally.accepted as i64,
        Mode::Append => previous_rows(dir, code).await? + loader.tally.accepted as i64,
        Mode::Upsert => table::count_rows(&table).await?,
    };
    settle(dir, code, &load_id, version, rows).await?;
    let index = (loader.prior.take().map(|prior| prior.index)).or(fresh_index);
    if let Some(index) = index
        && index.version != version as u64
        && let Ok(prepared) = prepared
    {
        // The load has landed either way: an index left behind is rebuilt by the next.
        let _ = index.commit(version as u64, mode == Mode::Replace, prepared);
    }
    let tally = &loader.tally;
    Ok(LoadReport {
        resource: code.to_string(),
        load_id,
        file: reader::shown(path),
        mode,
        version,
        rows_read: tally.rows_read,
        accepted: tally.accepted,
        quarantined: tally.quarantined,
        by_rule: tally.by_rule.clone(),
        rows,
        encoding,
        header_row,
    })
}

/// The file each committed version's load read, by version.
async fn version_files(
    dir: &DataDir,
    code: &str,
) -> Result<std::collections::HashMap<u64, String>, ExchangeError> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT version, file FROM loads WHERE resource = ? AND status = 'committed'",
    )
    .bind(code)
    .fetch_all(dir.metadata())
    .await?;
    Ok((rows.into_iter())
        .map(|(version, file)| (version as u64, file_name(file)))
        .collect())
}

/// What the parsing thread needs to put a load on record as pending.
struct Pending {
    dir: DataDir,
    handle: tokio::runtime::Handle,
    load_id: String,
    code: String,
    file: String,
    mode: Mode,
    actor: String,
    started: String,
}

impl Pending {
    fn record(&self, loader: &load::Loader) -> Result<(), ExchangeError> {
        self.handle.block_on(async {
            let tally = &loader.tally;
            let mut tx = self.dir.metadata().begin().await?;
            sqlx::query("INSERT INTO loads (id, resource, file, mode, actor, started_at, finished_at, version, rows_read, accepted, quarantined, by_rule, rows_total, status) VALUES (?, ?, ?, ?, ?, ?, ?, -1, ?, ?, ?, ?, 0, 'pending')")
                .bind(&self.load_id).bind(&self.code).bind(&self.file).bind(self.mode.as_str()).bind(&self.actor).bind(&self.started).bind(now())
                .bind(tally.rows_read as i64).bind(tally.accepted as i64).bind(tally.quarantined as i64)
                .bind(serde_json::to_string(&tally.by_rule).expect("serialises"))
                .execute(&mut *tx)
                .await?;
            for q in &loader.quarantine {
                sqlx::query("INSERT INTO quarantine (resource, load_id, line, violations, row_values, status) VALUES (?, ?, ?, ?, ?, 'pending')")
                    .bind(&self.code).bind(&self.load_id).bind(q.line as i64)
                    .bind(serde_json::to_string(&q.violations).expect("serialises"))
                    .bind(serde_json::to_string(&q.values).expect("serialises"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

async fn previous_rows(dir: &DataDir, code: &str) -> Result<i64, ExchangeError> {
    Ok(sqlx::query_scalar("SELECT coalesce((SELECT rows_total FROM loads WHERE resource = ? AND status = 'committed' ORDER BY version DESC LIMIT 1), 0)")
        .bind(code)
        .fetch_one(dir.metadata())
        .await?)
}

/// Marks a pending load committed at `version`, its quarantine open, its resource fed.
async fn settle(
    dir: &DataDir,
    code: &str,
    load_id: &str,
    version: i64,
    rows: i64,
) -> Result<(), ExchangeError> {
    let mut tx = dir.metadata().begin().await?;
    sqlx::query("UPDATE loads SET status = 'committed', version = ?, rows_total = ?, finished_at = ? WHERE id = ?")
        .bind(version).bind(rows).bind(now()).bind(load_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE quarantine SET status = 'open' WHERE load_id = ?")
        .bind(load_id)
        .execute(&mut *tx)
        .await?;
    let first_data =
        sqlx::query("UPDATE resources SET has_data = 1 WHERE code = ? AND has_data = 0")
            .bind(code)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
    tx.commit().await?;
    if first_data {
        // The resource becomes queryable: prepared query sessions list it from now on.
        dir.note_policy_change();
    }
    Ok(())
}

/// Removes a load that never committed, with its quarantine.
async fn forget_load(dir: &DataDir, load_id: &str) -> Result<(), ExchangeError> {
    let mut tx = dir.metadata().begin().await?;
    sqlx::query("DELETE FROM quarantine WHERE load_id = ?")
        .bind(load_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM loads WHERE id = ? AND status = 'pending'")
        .bind(load_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Settles loads left pending by a crash: committed if the table's history has a commit
/// carrying the load's id, otherwise forgotten (their rows never landed).
pub async fn reconcile(dir: &DataDir, code: &str) -> Result<(), ExchangeError> {
    let pending: Vec<String> =
        sqlx::query_scalar("SELECT id FROM loads WHERE resource = ? AND status = 'pending'")
            .bind(code)
            .fetch_all(dir.metadata())
            .await?;
    if pending.is_empty() {
        return Ok(());
    }
    let table_dir = table::table_dir(&dir.tables_dir(), code);
    // A load holding the lock is running, not crashed: it settles its own record.
    let Some(_serialised) = keys::try_lock(&table_dir)? else {
        return Ok(());
    };
    let table = table::open(&table_dir).await?;
    let committed = match &table {
        Some(t) => table::committed_loads(t).await?,
        None => std::collections::HashMap::new(),
    };
    for id in pending {
        match committed.get(&id) {
            Some(version) => {
                let rows = match &table {
                    Some(t) if Some(*version as u64) == t.version() => table::count_rows(t).await?,
                    _ => 0,
                };
                settle(dir, code, &id, *version, rows).await?;
            }
            None => forget_load(dir, &id).await?,
        }
    }
    Ok(())
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// The open quarantine of a resource: one entry per rule a row broke.
pub async fn quarantine(dir: &DataDir, code: &str) -> Result<Vec<QuarantineEntry>, ExchangeError> {
    reconcile(dir, code).await?;
    let rows = sqlx::query("SELECT id, load_id, line, violations, row_values FROM quarantine WHERE resource = ? AND status = 'open' ORDER BY id")
        .bind(code)
        .fetch_all(dir.metadata())
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let violations: Vec<load::Violation> =
            serde_json::from_str(r.get::<&str, _>("violations")).unwrap_or_default();
        let values: serde_json::Value =
            serde_json::from_str(r.get::<&str, _>("row_values")).unwrap_or_default();
        for v in violations {
            out.push(QuarantineEntry {
                id: r.get("id"),
                load_id: r.get("load_id"),
                line: r.get::<i64, _>("line") as u64,
                field: v.field,
                rule: v.rule,
                reason: v.reason,
                values: values.clone(),
            });
        }
    }
    Ok(out)
}

/// Marks a resource's open quarantine as resubmitted (after its corrected rows were loaded).
pub async fn close_quarantine(
    dir: &DataDir,
    code: &str,
    before_load: &str,
) -> Result<u64, ExchangeError> {
    let done = sqlx::query("UPDATE quarantine SET status = 'resubmitted' WHERE resource = ? AND status = 'open' AND load_id != ?")
        .bind(code)
        .bind(before_load)
        .execute(dir.metadata())
        .await?;
    Ok(done.rows_affected())
}

/// A resource's loads, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct LoadInfo {
    pub load_id: String,
    pub version: i64,
    pub mode: String,
    pub file: String,
    pub finished_at: String,
    pub accepted: i64,
    pub quarantined: i64,
    pub rows: i64,
}

/// The name of a loaded file without the directories it was read from (which say how the
/// server's disk is laid out).
fn file_name(path: String) -> String {
    path.rsplit(['/', '\\'])
        .next()
        .map(str::to_string)
        .unwrap_or(path)
}

pub async fn loads(dir: &DataDir, code: &str) -> Result<Vec<LoadInfo>, ExchangeError> {
    reconcile(dir, code).await?;
    let rows = sqlx::query("SELECT id, version, mode, file, finished_at, accepted, quarantined, rows_total FROM loads WHERE resource = ? AND status = 'committed' ORDER BY version DESC")
        .bind(code)
        .fetch_all(dir.metadata())
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| LoadInfo {
            load_id: r.get("id"),
            version: r.get("version"),
            mode: r.get("mode"),
            file: file_name(r.get("file")),
            finished_at: r.get("finished_at"),
            accepted: r.get("accepted"),
            quarantined: r.get("quarantined"),
            rows: r.get("rows_total"),
        })
        .collect())
}

/// A resource's table as it is now.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    pub resource: String,
    /// None until the first load.
    pub version: Option<i64>,
    /// Rows counted in the table's current version.
    pub rows: i64,
    pub last_load: Option<String>,
}

pub async fn info(dir: &DataDir, code: &str) -> Result<TableInfo, ExchangeError> {
    reconcile(dir, code).await?;
    let table = table::open(&table::table_dir(&dir.tables_dir(), code)).await?;
    let (version, rows) = match &table {
        Some(t) => (t.version().map(|v| v as i64), table::count_rows(t).await?),
        None => (None, 0),
    };
    let last_load: Option<String> = sqlx::query_scalar(
        "SELECT finished_at FROM loads WHERE resource = ? AND status = 'committed' ORDER BY version DESC LIMIT 1",
    )
    .bind(code)
    .fetch_optional(dir.metadata())
    .await?;
    Ok(TableInfo {
        resource: code.to_string(),
        version,
        rows,
        last_load,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_ahead_into_reused_buffers_arrive_whole_and_in_order() {
        let row = |i: u64| -> Vec<String> {
            (0..1 + i % 5)
                .map(|c| "值".repeat(((i * 7 + c) % 40) as usize))
                .collect()
        };
        let total = 3 * CHUNK_ROWS as u64 + 17;
        let source = reader::from_values((0..total).map(move |i| Ok((i + 2, row(i)))));
        let (chunks, spent) = read_ahead(source);
        let mut seen = 0u64;
        for chunk in chunks {
            for (line, r) in chunk.as_ref().unwrap() {
                assert_eq!(*line, seen + 2);
                let values: Vec<String> = r.iter().map(reader::lossy).collect();
                assert_eq!(values, row(seen), "row {seen}");
                seen += 1;
            }
            let _ = spent.send(chunk.unwrap());
        }
        assert_eq!(seen, total);
    }
}
