//! Consumers' subscriptions to resources: their cursors, the files a pull delivers
//! (Parquet, CSV, JSON with one object per line, or Arrow IPC) and the exchange volume.
//! What a pull delivers is decided and read by governed query (`tongchou_query::deliver`),
//! never here: this crate keeps the bookkeeping only.

use std::path::Path;

use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use serde::Serialize;
use sqlx::Row;
use tongchou_store::DataDir;

use crate::ExchangeError;

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

/// Writes rows of `schema` to `out` in `format` (a header or schema even when there are none).
pub fn write(
    batches: &[RecordBatch],
    schema: SchemaRef,
    format: OutputFormat,
    out: &Path,
) -> Result<(), ExchangeError> {
    let io =
        |e: std::io::Error| ExchangeError::Table(format!("cannot write {}: {e}", out.display()));
    let file = std::fs::File::create(out).map_err(io)?;
    // No rows still says which columns there would be (a CSV's header).
    let none = [RecordBatch::new_empty(schema.clone())];
    let batches = if batches.is_empty() {
        &none[..]
    } else {
        batches
    };
    let fail = |e: &dyn std::fmt::Display| {
        ExchangeError::Table(format!("cannot write {}: {e}", out.display()))
    };
    match format {
        OutputFormat::Parquet => {
            let mut w = deltalake::parquet::arrow::ArrowWriter::try_new(file, schema, None)
                .map_err(|e| fail(&e))?;
            for b in batches {
                w.write(b).map_err(|e| fail(&e))?;
            }
            w.close().map_err(|e| fail(&e))?;
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(file);
            for b in batches {
                w.write(b).map_err(|e| fail(&e))?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(file);
            for b in batches {
                w.write(b).map_err(|e| fail(&e))?;
            }
            w.finish().map_err(|e| fail(&e))?;
        }
        OutputFormat::Arrow => {
            let mut w =
                arrow::ipc::writer::FileWriter::try_new(file, &schema).map_err(|e| fail(&e))?;
            for b in batches {
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
/// purpose from the bureau's list. Subscribing again for another purpose starts again from
/// the beginning: what the unit had came under the old purpose's grant, and the next pull
/// delivers the resource as the new one shows it. Whether the
/// unit may read the resource for that purpose is governed query's decision, taken before.
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
    sqlx::query("INSERT INTO subscriptions (resource, consumer, cursor, created_at, purpose) VALUES (?, ?, -1, datetime('now'), ?) ON CONFLICT (resource, consumer) DO UPDATE SET cursor = CASE WHEN excluded.purpose IS NOT NULL AND excluded.purpose IS NOT purpose THEN -1 ELSE cursor END, purpose = COALESCE(excluded.purpose, purpose)")
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
    Ok(subscription_of_row(&r))
}

fn subscription_of_row(r: &sqlx::sqlite::SqliteRow) -> Subscription {
    Subscription {
        id: r.get("id"),
        resource: r.get("resource"),
        consumer: r.get("consumer"),
        cursor: r.get("cursor"),
        purpose: r.get("purpose"),
    }
}

pub async fn subscriptions(dir: &DataDir) -> Result<Vec<Subscription>, ExchangeError> {
    let rows = sqlx::query(
        "SELECT id, resource, consumer, cursor, purpose FROM subscriptions ORDER BY id",
    )
    .fetch_all(dir.metadata())
    .await?;
    Ok(rows.into_iter().map(|r| subscription_of_row(&r)).collect())
}

/// One subscription, or `None`.
pub async fn subscription(dir: &DataDir, id: i64) -> Result<Option<Subscription>, ExchangeError> {
    let row = sqlx::query(
        "SELECT id, resource, consumer, cursor, purpose FROM subscriptions WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(dir.metadata())
    .await?;
    Ok(row.as_ref().map(subscription_of_row))
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

/// After a delivery of `rows` rows up to version `to` has been recorded: moves the cursor
/// and counts the records in the exchange volume.
pub async fn delivered(dir: &DataDir, id: i64, to: i64, rows: u64) -> Result<(), ExchangeError> {
    let mut tx = dir.metadata().begin().await?;
    sqlx::query("UPDATE subscriptions SET cursor = ? WHERE id = ?")
        .bind(to)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO exchange_volume (day, resource, provider, consumer, records) SELECT date('now'), s.resource, r.unit, s.consumer, ? FROM subscriptions s JOIN resources r ON r.code = s.resource WHERE s.id = ? ON CONFLICT (day, resource, consumer) DO UPDATE SET records = records + excluded.records")
        .bind(rows as i64)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// `sha256:` and the hex digest of the file at `path`, read as a stream.
pub fn file_digest(path: &Path) -> Result<String, ExchangeError> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path)
        .map_err(|e| ExchangeError::Table(format!("cannot read {}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| ExchangeError::Table(format!("cannot read {}: {e}", path.display())))?;
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// The fields of a resource that say which row is which and whom it is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowKeys {
    /// The declared key.
    pub key: Vec<String>,
    /// The fields that identify a person or an enterprise — what the ledger's subject index
    /// is built from.
    pub identifiers: Vec<String>,
}

/// The key and identifier fields of resource `code` (none for an unknown resource).
pub async fn row_keys(dir: &DataDir, code: &str) -> Result<RowKeys, ExchangeError> {
    let body: Option<String> = sqlx::query_scalar("SELECT body FROM resources WHERE code = ?")
        .bind(code)
        .fetch_optional(dir.metadata())
        .await?;
    let Some(body) = body else {
        return Ok(RowKeys::default());
    };
    let resource: tongchou_model::Resource = serde_json::from_str(&body)
        .map_err(|e| ExchangeError::Table(format!("resource {code} is unreadable: {e}")))?;
    Ok(RowKeys {
        key: resource.key,
        identifiers: resource
            .fields
            .into_iter()
            .filter(|f| {
                matches!(
                    f.role,
                    Some(tongchou_model::Role::PersonId | tongchou_model::Role::EnterpriseId)
                )
            })
            .map(|f| f.name)
            .collect(),
    })
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
