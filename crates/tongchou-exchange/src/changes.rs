//! Consumers subscribe to a resource and pull what changed since their cursor: the
//! inserted, updated and deleted rows, read from the table's change data feed, written as
//! Parquet, CSV, JSON (one object per line) or Arrow IPC.

use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::delta_datafusion::DeltaCdfTableProvider;
use serde::Serialize;
use sqlx::Row;
use tongchou_store::DataDir;

use crate::{ExchangeError, table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Parquet,
    Csv,
    Json,
    Arrow,
}

impl OutputFormat {
    pub fn parse(text: &str) -> Option<OutputFormat> {
        match text {
            "parquet" => Some(OutputFormat::Parquet),
            "csv" => Some(OutputFormat::Csv),
            "json" => Some(OutputFormat::Json),
            "arrow" => Some(OutputFormat::Arrow),
            _ => None,
        }
    }
}

/// The changed rows between two versions, with `_change` (insert, update or delete) and
/// `_version` columns.
pub struct Changes {
    pub batches: Vec<RecordBatch>,
    pub from_version: i64,
    pub to_version: i64,
    pub rows: u64,
}

/// Changes after version `since` (exclusive) up to the table's current version.
pub async fn since(dir: &DataDir, code: &str, since: i64) -> Result<Changes, ExchangeError> {
    let Some(table) = table::open(&table::table_dir(&dir.tables_dir(), code)).await? else {
        return Ok(Changes {
            batches: Vec::new(),
            from_version: since,
            to_version: since,
            rows: 0,
        });
    };
    let current = table.version().unwrap_or(0) as i64;
    if since >= current {
        return Ok(Changes {
            batches: Vec::new(),
            from_version: since,
            to_version: current,
            rows: 0,
        });
    }
    let builder = table
        .scan_cdf()
        .with_starting_version((since + 1).max(0) as u64);
    let provider = DeltaCdfTableProvider::try_new(builder)?;
    let ctx = SessionContext::new();
    ctx.register_table("cdf", Arc::new(provider))?;
    let columns = ctx
        .table("cdf")
        .await?
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !n.starts_with('_'))
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns}, CASE _change_type WHEN 'update_postimage' THEN 'update' ELSE _change_type END AS _change, _commit_version AS _version \
         FROM cdf WHERE _change_type <> 'update_preimage' ORDER BY _commit_version"
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
    Ok(Changes {
        batches,
        from_version: since,
        to_version: current,
        rows,
    })
}

/// Writes changes to `out` in `format`.
pub fn write(changes: &Changes, format: OutputFormat, out: &Path) -> Result<(), ExchangeError> {
    let io =
        |e: std::io::Error| ExchangeError::Table(format!("cannot write {}: {e}", out.display()));
    let file = std::fs::File::create(out).map_err(io)?;
    let fail = |e: &dyn std::fmt::Display| {
        ExchangeError::Table(format!("cannot write {}: {e}", out.display()))
    };
    let Some(schema) = changes.batches.first().map(|b| b.schema()) else {
        return Ok(());
    };
    match format {
        OutputFormat::Parquet => {
            let mut w = deltalake::parquet::arrow::ArrowWriter::try_new(file, schema, None)
                .map_err(|e| fail(&e))?;
            for b in &changes.batches {
                w.write(b).map_err(|e| fail(&e))?;
            }
            w.close().map_err(|e| fail(&e))?;
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(file);
            for b in &changes.batches {
                w.write(b).map_err(|e| fail(&e))?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(file);
            for b in &changes.batches {
                w.write(b).map_err(|e| fail(&e))?;
            }
            w.finish().map_err(|e| fail(&e))?;
        }
        OutputFormat::Arrow => {
            let mut w =
                arrow::ipc::writer::FileWriter::try_new(file, &schema).map_err(|e| fail(&e))?;
            for b in &changes.batches {
                w.write(b).map_err(|e| fail(&e))?;
            }
            w.finish().map_err(|e| fail(&e))?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    pub id: i64,
    pub resource: String,
    pub consumer: String,
    pub cursor: i64,
    /// Why the consumer takes the data (a code of the bureau's purposes), recorded with
    /// every pull.
    pub purpose: Option<String>,
}

/// Subscribes a consumer unit to a resource, from the beginning (cursor -1), for a
/// purpose from the bureau's list. Subscribing again changes the purpose only.
pub async fn subscribe(
    dir: &DataDir,
    code: &str,
    consumer: &str,
    purpose: Option<&str>,
) -> Result<Subscription, ExchangeError> {
    if let Some(p) = purpose {
        let known: Option<String> =
            sqlx::query_scalar("SELECT code FROM purposes WHERE code = ? AND active = 1")
                .bind(p)
                .fetch_optional(dir.metadata())
                .await?;
        if known.is_none() {
            return Err(ExchangeError::Columns(format!(
                "'{p}' is not one of the bureau's purposes; list them with `tongchou access purposes`"
            )));
        }
    }
    let known: Option<String> = sqlx::query_scalar("SELECT code FROM resources WHERE code = ?")
        .bind(code)
        .fetch_optional(dir.metadata())
        .await?;
    if known.is_none() {
        return Err(ExchangeError::Columns(format!(
            "resource {code} is not in the catalog"
        )));
    }
    let unit: Option<String> = sqlx::query_scalar("SELECT code FROM units WHERE code = ?")
        .bind(consumer)
        .fetch_optional(dir.metadata())
        .await?;
    if unit.is_none() {
        return Err(ExchangeError::Columns(format!(
            "unit {consumer} is not registered"
        )));
    }
    sqlx::query("INSERT INTO subscriptions (resource, consumer, cursor, created_at, purpose) VALUES (?, ?, -1, datetime('now'), ?) ON CONFLICT (resource, consumer) DO UPDATE SET purpose = COALESCE(excluded.purpose, purpose)")
        .bind(code)
        .bind(consumer)
        .bind(purpose)
        .execute(dir.metadata())
        .await?;
    subscription_of(dir, code, consumer).await
}

async fn subscription_of(
    dir: &DataDir,
    code: &str,
    consumer: &str,
) -> Result<Subscription, ExchangeError> {
    let r = sqlx::query("SELECT id, resource, consumer, cursor, purpose FROM subscriptions WHERE resource = ? AND consumer = ?").bind(code).bind(consumer).fetch_one(dir.metadata()).await?;
    Ok(Subscription {
        id: r.get("id"),
        resource: r.get("resource"),
        consumer: r.get("consumer"),
        cursor: r.get("cursor"),
        purpose: r.get("purpose"),
    })
}

pub async fn subscriptions(dir: &DataDir) -> Result<Vec<Subscription>, ExchangeError> {
    let rows = sqlx::query(
        "SELECT id, resource, consumer, cursor, purpose FROM subscriptions ORDER BY id",
    )
    .fetch_all(dir.metadata())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Subscription {
            id: r.get("id"),
            resource: r.get("resource"),
            consumer: r.get("consumer"),
            cursor: r.get("cursor"),
            purpose: r.get("purpose"),
        })
        .collect())
}

/// What a pull delivered.
#[derive(Debug, Clone, Serialize)]
pub struct Pulled {
    pub subscription: i64,
    pub resource: String,
    pub from_version: i64,
    pub to_version: i64,
    pub rows: u64,
    pub file: String,
}

/// What a pull is about to deliver, for the audit ledger to record before it is released.
#[derive(Debug, Clone, Serialize)]
pub struct PullPreview {
    pub subscription: i64,
    pub resource: String,
    pub provider: String,
    pub consumer: String,
    pub purpose: Option<String>,
    pub from_version: i64,
    pub to_version: i64,
    pub rows: u64,
    pub columns: Vec<String>,
    /// `sha256:` and the hex digest of the file as written.
    pub digest: String,
    /// The person and enterprise IDs in the rows, when there are at most `subject_rows`.
    #[serde(skip)]
    pub subject_ids: Vec<String>,
}

impl PullPreview {
    /// Records this delivery in the ledger; the `Err` text is what the caller is told.
    pub async fn record(
        &self,
        audit: &tongchou_audit::Audit,
        base: tongchou_audit::Entry,
    ) -> Result<(), String> {
        audit
            .record(&self.entry(audit, base))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The ledger entry of this delivery, from a front door's `base` (who, how).
    pub fn entry(
        &self,
        audit: &tongchou_audit::Audit,
        mut base: tongchou_audit::Entry,
    ) -> tongchou_audit::Entry {
        base.purpose = self.purpose.clone();
        base.resources = vec![self.resource.clone()];
        base.fields = self.columns.clone();
        base.rows = Some(self.rows);
        base.result_digest = Some(self.digest.clone());
        base.subjects = audit.subjects_of(self.rows, self.subject_ids.iter().map(String::as_str));
        base.detail = serde_json::json!({
            "subscription": self.subscription,
            "versions": [self.from_version, self.to_version],
        });
        base
    }
}

/// Delivers the changes since the subscription's cursor to `out`, has `record` trace the
/// delivery, and only then moves the cursor and counts the records in the exchange volume.
/// When `record` fails the file is removed and the cursor stays: the pull can be repeated
/// and nothing was delivered untraced.
pub async fn pull<F>(
    dir: &DataDir,
    id: i64,
    format: OutputFormat,
    out: &Path,
    subject_rows: u64,
    record: F,
) -> Result<Pulled, ExchangeError>
where
    F: AsyncFnOnce(&PullPreview) -> Result<(), String>,
{
    let r = sqlx::query("SELECT s.resource, s.consumer, s.cursor, s.purpose, r.unit FROM subscriptions s JOIN resources r ON r.code = s.resource WHERE s.id = ?")
        .bind(id)
        .fetch_optional(dir.metadata())
        .await?
        .ok_or_else(|| ExchangeError::Columns(format!("subscription {id} does not exist; list them with `tongchou exchange subscriptions`")))?;
    let (code, consumer, cursor, provider): (String, String, i64, String) = (
        r.get("resource"),
        r.get("consumer"),
        r.get("cursor"),
        r.get("unit"),
    );
    let purpose: Option<String> = r.get("purpose");
    let changes = since(dir, &code, cursor).await?;
    write(&changes, format, out)?;
    let subject_ids = if changes.rows <= subject_rows {
        identifiers(dir, &code, &changes.batches).await?
    } else {
        Vec::new()
    };
    let preview = PullPreview {
        subscription: id,
        resource: code.clone(),
        provider: provider.clone(),
        consumer: consumer.clone(),
        purpose,
        from_version: cursor,
        to_version: changes.to_version,
        rows: changes.rows,
        columns: changes
            .batches
            .first()
            .map(|b| {
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect()
            })
            .unwrap_or_default(),
        digest: file_digest(out)?,
        subject_ids,
    };
    if let Err(why) = record(&preview).await {
        let _ = std::fs::remove_file(out);
        return Err(ExchangeError::NotRecorded(why));
    }
    let mut tx = dir.metadata().begin().await?;
    sqlx::query("UPDATE subscriptions SET cursor = ? WHERE id = ?")
        .bind(changes.to_version)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO exchange_volume (day, resource, provider, consumer, records) VALUES (date('now'), ?, ?, ?, ?) ON CONFLICT (day, resource, consumer) DO UPDATE SET records = records + excluded.records")
        .bind(&code)
        .bind(&provider)
        .bind(&consumer)
        .bind(changes.rows as i64)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Pulled {
        subscription: id,
        resource: code,
        from_version: cursor,
        to_version: changes.to_version,
        rows: changes.rows,
        file: out.display().to_string(),
    })
}

fn file_digest(path: &Path) -> Result<String, ExchangeError> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path)
        .map_err(|e| ExchangeError::Table(format!("cannot read {}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| ExchangeError::Table(format!("cannot read {}: {e}", path.display())))?;
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// The names of a resource's fields that identify a person or an enterprise — what the
/// ledger's subject index is built from.
pub async fn identifier_fields(dir: &DataDir, code: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT json_extract(f.value, '$.name') FROM resources r, json_each(r.body, '$.fields') f WHERE r.code = ? AND json_extract(f.value, '$.role') IN ('person_id', 'enterprise_id')",
    )
    .bind(code)
    .fetch_all(dir.metadata())
    .await
}

/// The values of the resource's person and enterprise ID fields in `batches`.
async fn identifiers(
    dir: &DataDir,
    code: &str,
    batches: &[RecordBatch],
) -> Result<Vec<String>, ExchangeError> {
    let fields = identifier_fields(dir, code).await?;
    let mut ids = Vec::new();
    for batch in batches {
        for name in &fields {
            let Some(column) = batch.column_by_name(name) else {
                continue;
            };
            let text = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8)
                .map_err(|e| ExchangeError::Table(e.to_string()))?;
            let text = text
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .expect("cast to Utf8 gives a StringArray");
            ids.extend(text.iter().flatten().map(str::to_string));
        }
    }
    Ok(ids)
}

/// Records delivered, per day, resource, provider and consumer.
#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    pub day: String,
    pub resource: String,
    pub provider: String,
    pub consumer: String,
    pub records: i64,
}

/// Records delivered per day, all resources and consumers together, oldest day first.
pub async fn volume_per_day(dir: &DataDir) -> Result<Vec<(String, i64)>, ExchangeError> {
    Ok(
        sqlx::query_as("SELECT day, sum(records) FROM exchange_volume GROUP BY day ORDER BY day")
            .fetch_all(dir.metadata())
            .await?,
    )
}

pub async fn volume(dir: &DataDir) -> Result<Vec<Volume>, ExchangeError> {
    let rows = sqlx::query("SELECT day, resource, provider, consumer, records FROM exchange_volume ORDER BY day, resource, consumer").fetch_all(dir.metadata()).await?;
    Ok(rows
        .into_iter()
        .map(|r| Volume {
            day: r.get("day"),
            resource: r.get("resource"),
            provider: r.get("provider"),
            consumer: r.get("consumer"),
            records: r.get("records"),
        })
        .collect())
}
