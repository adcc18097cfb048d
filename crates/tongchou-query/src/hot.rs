//! Small tables kept decoded in memory. Reading a Delta table costs a log replay and a
//! Parquet decode per scan — most of a point lookup's CPU. A table whose data files are
//! small is read once per Delta version into Arrow batches shared by every session (the
//! governed plans above it still differ per grant); the least recently used go first when
//! the budget is spent. Larger tables are read from Delta each time. The governed views
//! of these tables keep their masked rows too, within a budget of their own ([`Budget`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::{ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use arrow::datatypes::DataType;

use deltalake::datafusion::catalog::{MemTable, TableProvider};
use deltalake::datafusion::common::{DataFusionError, Result};
use deltalake::datafusion::execution::object_store::ObjectStoreRegistry;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

/// Tables with more Parquet bytes on disk than this are not kept.
const LARGEST_FILES: u64 = 64 << 20;

/// What kept tables may hold by default: an eighth of the machine's memory, between
/// 512 MiB and 8 GiB (the masked rows of their governed views get as much again).
pub fn default_budget() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|kb| {
                    kb.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
        });
    total.map_or(512 << 20, |kb| ((kb << 10) / 8).clamp(512 << 20, 8 << 30))
}

pub struct HotTables {
    /// Decoded bytes the kept tables may hold together.
    budget: usize,
    objects: Arc<dyn ObjectStoreRegistry>,
    kept: Mutex<HashMap<String, Kept>>,
    /// What the governed views over kept tables may hold of their masked rows together.
    pub masked: Arc<Budget>,
}

/// Bytes that things kept across statements may hold together; each holding is given
/// back when what it kept is dropped.
pub struct Budget {
    pub(crate) limit: usize,
    used: AtomicUsize,
}

/// Bytes held under a [`Budget`] until dropped.
pub struct Hold {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// A hold on `bytes`, or `None` when they would not fit.
    pub fn hold(self: &Arc<Self>, bytes: usize) -> Option<Hold> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .ok()
            .map(|_| Hold {
                budget: self.clone(),
                bytes,
            })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
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
            masked: Budget::new(budget),
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
        let batches = batches.iter().map(compacted).collect::<Result<Vec<_>>>()?;
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

/// `batch` with each text or binary view column holding only its own values. Parquet's
/// decoder points views into whole pages (a dictionary page shared by every batch of its
/// row group): kept as decoded, a table would pin those pages and be counted once per
/// batch — a 16 MB file as gigabytes, over the budget and never kept.
pub(crate) fn compacted(batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|column| match column.data_type() {
            DataType::Utf8View => Arc::new(column.as_string_view().gc()) as ArrayRef,
            DataType::BinaryView => Arc::new(column.as_binary_view().gc()),
            _ => column.clone(),
        })
        .collect();
    let rows = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &rows,
    )?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringViewArray;

    #[test]
    fn a_budget_holds_what_fits_until_each_hold_is_dropped() {
        let budget = Budget::new(100);
        let first = budget.hold(60).expect("fits");
        assert!(budget.hold(41).is_none());
        let second = budget.hold(40).expect("fits exactly");
        drop(first);
        assert!(budget.hold(61).is_none());
        assert!(budget.hold(60).is_some());
        drop(second);
        assert!(budget.hold(100).is_some());
        assert!(budget.hold(usize::MAX).is_none());
    }

    #[test]
    fn compacted_batches_hold_and_count_only_their_own_values() {
        let values: Vec<String> = (0..100_000)
            .map(|i| format!("出入境记录-{i:012}"))
            .collect();
        let whole = StringViewArray::from_iter_values(&values);
        let batch = RecordBatch::try_from_iter([("v", Arc::new(whole) as ArrayRef)]).unwrap();
        let slices: Vec<RecordBatch> = (0..10).map(|i| batch.slice(i * 10_000, 10_000)).collect();
        let shared: usize = slices.iter().map(|b| b.get_array_memory_size()).sum();
        let compact: Vec<RecordBatch> = slices.iter().map(|b| compacted(b).unwrap()).collect();
        let own: usize = compact.iter().map(|b| b.get_array_memory_size()).sum();
        assert!(own * 3 < shared, "{own} bytes compacted vs {shared} shared");
        assert!(own >= batch.get_array_memory_size() / 2, "{own}");
        for (slice, compact) in slices.iter().zip(&compact) {
            assert_eq!(slice, compact);
        }
    }
}
