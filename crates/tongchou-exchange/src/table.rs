//! One Delta Lake table per resource, written through DataFusion: a load streams its
//! batches into one commit, so a table is always at its previous version or the new one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::datasource::provider_as_source;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::logical_expr::LogicalPlanBuilder;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{DataType as DeltaType, StructField};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, TableProperty};
use tongchou_model::{DataType, Resource};

use crate::ExchangeError;

/// Where a resource's table lives under the data directory.
pub fn table_dir(tables: &Path, code: &str) -> PathBuf {
    tables.join(code.replace('/', "_"))
}

async fn open_url(dir: &Path) -> Result<DeltaTable, ExchangeError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ExchangeError::Table(format!("cannot create {}: {e}", dir.display())))?;
    let url = deltalake::ensure_table_uri(dir.to_string_lossy())?;
    Ok(DeltaTable::try_from_url(url).await?)
}

/// Opens a resource's table, creating it (with change data feed on) at its first load.
pub async fn open_or_create(dir: &Path, resource: &Resource) -> Result<DeltaTable, ExchangeError> {
    let table = open_url(dir).await?;
    if table.version().is_some() {
        return Ok(table);
    }
    let columns = resource
        .fields
        .iter()
        .map(|f| {
            let t = match f.data_type {
                DataType::String => DeltaType::STRING,
                DataType::Integer => DeltaType::LONG,
                DataType::Decimal => {
                    let d = f.decimal_type();
                    DeltaType::decimal(d.precision, d.scale)
                        .map_err(|e| ExchangeError::Table(e.to_string()))?
                }
                DataType::Date => DeltaType::DATE,
                DataType::Timestamp => DeltaType::TIMESTAMP_NTZ,
                DataType::Boolean => DeltaType::BOOLEAN,
            };
            Ok(StructField::new(f.name.clone(), t, true))
        })
        .collect::<Result<Vec<_>, ExchangeError>>()?;
    Ok(table
        .create()
        .with_columns(columns)
        .with_table_name(resource.code.clone().unwrap_or_default())
        .with_comment(resource.name.clone())
        .with_configuration_property(TableProperty::EnableChangeDataFeed, Some("true"))
        .await?)
}

/// Refuses to add rows to a table that keeps a decimal field in another type than the
/// catalog declares now (written as floating point before decimals were exact, or under
/// another precision or scale): its rows would have to be rounded. A replace writes the
/// new type as a new version instead; the versions before stay readable as they were.
pub fn check_decimals(table: &DeltaTable, resource: &Resource) -> Result<(), ExchangeError> {
    let kept = table.snapshot()?.snapshot().arrow_schema();
    for field in resource
        .fields
        .iter()
        .filter(|f| f.data_type == DataType::Decimal)
    {
        let declared = crate::load::arrow_type(field);
        match kept.field_with_name(&field.name).map(|c| c.data_type()) {
            Ok(was) if *was != declared => {
                return Err(ExchangeError::Columns(format!(
                    "the table of 「{}」 keeps {}（{}） as {}, the catalog now declares {}: load the whole file in replace mode, which writes a new version in the declared type (earlier versions stay readable as they were)",
                    resource.name,
                    field.label,
                    field.name,
                    shown_type(was),
                    field.decimal_type()
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

fn shown_type(t: &deltalake::arrow::datatypes::DataType) -> String {
    use deltalake::arrow::datatypes::DataType as Arrow;
    match t {
        Arrow::Float64 => "double (binary floating point)".into(),
        Arrow::Decimal128(p, s) => format!("decimal({p},{s})"),
        other => other.to_string(),
    }
}

/// Opens an existing table, if the resource has one.
pub async fn open(dir: &Path) -> Result<Option<DeltaTable>, ExchangeError> {
    if !dir.join("_delta_log").is_dir() {
        return Ok(None);
    }
    let table = open_url(dir).await?;
    Ok(table.version().is_some().then_some(table))
}

/// The table as it was at `version`.
pub async fn open_at(dir: &Path, version: u64) -> Result<DeltaTable, ExchangeError> {
    let newest = open(dir)
        .await?
        .and_then(|t| t.version())
        .ok_or_else(|| ExchangeError::NoSuchVersion("the resource has no data yet".into()))?;
    if version > newest {
        return Err(ExchangeError::NoSuchVersion(format!(
            "version {version} does not exist: the resource has versions 0 to {newest}"
        )));
    }
    let mut table = open_url(dir).await?;
    table.load_version(version).await?;
    Ok(table)
}

/// The table's row count from its files' statistics (no data read); `None` when a file
/// lacks them.
pub fn row_estimate(table: &DeltaTable) -> Option<usize> {
    let snapshot = table.snapshot().ok()?;
    snapshot
        .log_data()
        .iter()
        .map(|file| file.num_records())
        .sum()
}

/// One commit of a resource's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub version: u64,
    /// Milliseconds since the Unix epoch.
    pub committed_at: i64,
    /// Delta's name of the operation (`WRITE`, `MERGE`, `CREATE TABLE`, …).
    pub operation: String,
}

/// The table's commits, newest first.
pub async fn commits(table: &DeltaTable) -> Result<Vec<Commit>, ExchangeError> {
    use futures::StreamExt;
    let newest = table.version().unwrap_or(0);
    let infos: Vec<_> = table.history(None).collect().await;
    let mut out = Vec::with_capacity(infos.len());
    for (i, info) in infos.into_iter().enumerate() {
        let info = info?;
        out.push(Commit {
            version: newest.saturating_sub(i as u64),
            committed_at: info.timestamp.unwrap_or_default(),
            operation: info.operation.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// A one-shot partition whose batches arrive on a channel from the parsing thread.
struct ChannelStream {
    schema: SchemaRef,
    receiver: Mutex<Option<tokio::sync::mpsc::Receiver<Result<RecordBatch, DataFusionError>>>>,
}

impl std::fmt::Debug for ChannelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelStream")
    }
}

impl PartitionStream for ChannelStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let receiver = self.receiver.lock().expect("not poisoned").take();
        let stream = futures_stream(receiver);
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

fn futures_stream(
    receiver: Option<tokio::sync::mpsc::Receiver<Result<RecordBatch, DataFusionError>>>,
) -> impl futures::Stream<Item = Result<RecordBatch, DataFusionError>> + Send {
    futures::stream::unfold(receiver, |receiver| async move {
        let mut receiver = receiver?;
        let item = receiver.recv().await?;
        Some((item, Some(receiver)))
    })
}

/// Writes the batches from `receiver` as one commit; `replace` overwrites the table, in
/// the catalog's types of now (a decimal's new precision or scale included).
pub async fn write(
    table: DeltaTable,
    schema: SchemaRef,
    receiver: tokio::sync::mpsc::Receiver<Result<RecordBatch, DataFusionError>>,
    replace: bool,
    load_id: &str,
) -> Result<DeltaTable, ExchangeError> {
    let partition = Arc::new(ChannelStream {
        schema: schema.clone(),
        receiver: Mutex::new(Some(receiver)),
    });
    let provider = StreamingTable::try_new(schema, vec![partition])?;
    let plan =
        LogicalPlanBuilder::scan("load", provider_as_source(Arc::new(provider)), None)?.build()?;
    let metadata = [("tongchou.load".to_string(), serde_json::json!(load_id))];
    let write = table
        .write(Vec::new())
        .with_input_plan(plan)
        .with_save_mode(if replace {
            SaveMode::Overwrite
        } else {
            SaveMode::Append
        });
    let write = if replace {
        write.with_schema_mode(SchemaMode::Overwrite)
    } else {
        write
    };
    Ok(write
        .with_commit_properties(CommitProperties::default().with_metadata(metadata))
        .await?)
}

/// Merges the batches from `receiver` by the resource's key, as one commit: matching rows
/// are replaced, rows flagged for deletion removed, new rows inserted.
pub async fn upsert(
    table: DeltaTable,
    mut receiver: tokio::sync::mpsc::Receiver<Result<RecordBatch, DataFusionError>>,
    resource: &Resource,
    load_id: &str,
) -> Result<DeltaTable, ExchangeError> {
    let mut batches = Vec::new();
    while let Some(batch) = receiver.recv().await {
        batches.push(batch?);
    }
    if batches.is_empty() {
        return Ok(table);
    }
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    let source = ctx.read_batches(batches)?;
    let quoted = |side: &str, name: &str| format!("{side}.\"{name}\"");
    let predicate = resource
        .key
        .iter()
        .map(|k| format!("{} = {}", quoted("target", k), quoted("source", k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let delete_flag = quoted("source", crate::load::DELETE_FLAG);
    let fields: Vec<String> = resource.fields.iter().map(|f| f.name.clone()).collect();
    let metadata = [("tongchou.load".to_string(), serde_json::json!(load_id))];
    let (table, _metrics) = table
        .merge(source, predicate.as_str())
        .with_source_alias("source")
        .with_target_alias("target")
        .with_commit_properties(CommitProperties::default().with_metadata(metadata))
        .when_matched_delete(|d| d.predicate(format!("{delete_flag} = true")))?
        .when_matched_update(|mut u| {
            for f in &fields {
                u = u.update(format!("\"{f}\""), quoted("source", f));
            }
            u.predicate(format!("{delete_flag} = false"))
        })?
        .when_not_matched_insert(|mut i| {
            for f in &fields {
                i = i.set(format!("\"{f}\""), quoted("source", f));
            }
            i.predicate(format!("{delete_flag} = false"))
        })?
        .await?;
    Ok(table)
}

/// Rows in the table's current version.
pub async fn count_rows(table: &DeltaTable) -> Result<i64, ExchangeError> {
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    ctx.register_table("t", table.table_provider().await?)?;
    let batches = ctx.sql("SELECT count(*) FROM t").await?.collect().await?;
    Ok(batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<deltalake::arrow::array::Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0))
}

/// The load id recorded in each commit's info, with the commit's version.
pub async fn committed_loads(
    table: &DeltaTable,
) -> Result<std::collections::HashMap<String, i64>, ExchangeError> {
    use futures::StreamExt;
    let current = table.version().unwrap_or(0) as i64;
    let commits: Vec<_> = table.history(None).collect().await;
    let mut out = std::collections::HashMap::new();
    for (i, commit) in commits.into_iter().enumerate() {
        if let Some(id) = commit?.info.get("tongchou.load").and_then(|v| v.as_str()) {
            out.insert(id.to_string(), current - i as i64);
        }
    }
    Ok(out)
}
