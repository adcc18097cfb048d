//! Small tables kept decoded in memory. Reading a Delta table costs a log replay and a
//! Parquet decode per scan — most of a point lookup's CPU. A table whose data files are
//! small is read once per Delta version into Arrow batches shared by every session (the
//! governed plans above it still differ per grant); the least recently used go first when
//! the budget is spent. Larger tables are read from Delta each time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use deltalake::datafusion::catalog::{MemTable, TableProvider};
use deltalake::datafusion::common::{DataFusionError, Result};
use deltalake::datafusion::execution::object_store::ObjectStoreRegistry;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

/// Tables with more Parquet bytes on disk than this are not kept.
const LARGEST_FILES: u64 = 16 << 20;

pub struct HotTables {
    /// Decoded bytes the kept tables may hold together.
    budget: usize,
    objects: Arc<dyn ObjectStoreRegistry>,
    kept: Mutex<HashMap<String, Kept>>,
}

struct Kept {
    version: u64,
    table: Arc<MemTable>,
    bytes: usize,
    rows: usize,
    used: Instant,
}

/// A resource's raw rows at one version.
pub struct Raw {
    pub version: u64,
    pub table: Arc<dyn TableProvider>,
    /// Held decoded in memory (else read from Delta at each scan).
    pub in_memory: bool,
    /// How many rows (raw: before any grant's row filter), when known.
    pub rows: Option<usize>,
}

impl HotTables {
    pub fn new(budget: usize, objects: Arc<dyn ObjectStoreRegistry>) -> HotTables {
        HotTables {
            budget,
            objects,
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// The raw rows of resource `code` (its Delta table in `dir`) at the latest version,
    /// from memory when small: (version, rows, whether in memory); `None` before its
    /// first load.
    pub async fn raw(&self, code: &str, dir: &Path) -> Result<Option<Raw>> {
        if let Some(kept) = self
            .kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(code)
            .filter(|k| !has_newer_commit(dir, k.version))
        {
            kept.used = Instant::now();
            return Ok(Some(Raw {
                version: kept.version,
                table: kept.table.clone(),
                in_memory: true,
                rows: Some(kept.rows),
            }));
        }
        let Some(table) = tongchou_exchange::table::open(dir)
            .await
            .map_err(|e| DataFusionError::Plan(e.to_string()))?
        else {
            return Ok(None);
        };
        let version = table.version().unwrap_or_default();
        let delta = table
            .table_provider()
            .await
            .map_err(|e| DataFusionError::Plan(e.to_string()))?;
        let rows = tongchou_exchange::table::row_estimate(&table);
        if parquet_bytes(dir) > LARGEST_FILES {
            return Ok(Some(Raw {
                version,
                table: delta,
                in_memory: false,
                rows,
            }));
        }
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(self.objects.clone())
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        let schema = delta.schema();
        ctx.register_table("raw", delta)?;
        let batches = ctx.sql("SELECT * FROM raw").await?.collect().await?;
        let bytes = batches.iter().map(|b| b.get_array_memory_size()).sum();
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        let memory = Arc::new(MemTable::try_new(schema, vec![batches])?);
        self.keep(code, version, memory.clone(), bytes, rows);
        Ok(Some(Raw {
            version,
            table: memory,
            in_memory: true,
            rows: Some(rows),
        }))
    }

    fn keep(&self, code: &str, version: u64, table: Arc<MemTable>, bytes: usize, rows: usize) {
        if bytes > self.budget {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.insert(
            code.to_string(),
            Kept {
                version,
                table,
                bytes,
                rows,
                used: Instant::now(),
            },
        );
        while kept.values().map(|k| k.bytes).sum::<usize>() > self.budget {
            let Some(oldest) = kept
                .iter()
                .min_by_key(|(_, k)| k.used)
                .map(|(c, _)| c.clone())
            else {
                break;
            };
            kept.remove(&oldest);
        }
    }
}

/// Whether a Delta table read at `version` has had a commit since.
pub fn has_newer_commit(table_dir: &Path, version: u64) -> bool {
    table_dir
        .join("_delta_log")
        .join(format!("{:020}.json", version + 1))
        .exists()
}

/// The size of the Parquet files under a table's directory (every version's, partition
/// directories included).
fn parquet_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return u64::MAX;
    };
    let mut total = 0u64;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() && !path.ends_with("_delta_log") {
            total = total.saturating_add(parquet_bytes(&path));
        } else if path.extension().is_some_and(|x| x == "parquet") {
            total = total.saturating_add(meta.len());
        }
    }
    total
}
