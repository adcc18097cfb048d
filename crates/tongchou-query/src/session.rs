//! The caller's session: one schema per providing unit (its Chinese name), one table per
//! resource the caller may read for this purpose (its Chinese name), each built on first
//! use as a [`GovernedTable`] and kept until its Delta table gets a new version. Resources
//! the caller may not read do not exist here, so `information_schema` and unknown-table
//! errors show nothing else.
//!
//! Time travel and history, under the same grant: `"<resource>@v<N>"` is the resource as
//! it was at version N, `"<resource>@<time>"` as it stood then (RFC 3339, or a China-time
//! `YYYY-MM-DD[ HH:MM:SS]`; a bare date means the end of that day), both through the
//! caller's current row filter and masks; `"<resource>$history"` lists its versions with
//! their time and operation (no row counts: those would count rows the grant hides).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use async_trait::async_trait;
use deltalake::datafusion::catalog::{SchemaProvider, TableProvider};
use deltalake::datafusion::common::{DataFusionError, Result};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::execution::object_store::ObjectStoreRegistry;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::logical_expr::ScalarUDF;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use jiff::Timestamp;
use tongchou_access::Access;
use tongchou_access::clock::{china, end_of_day, parse_date};
use tongchou_exchange::table::Commit;
use tongchou_mask::{Mask, UnitKey};
use tongchou_store::DataDir;

use crate::governed::GovernedTable;
use crate::hot::{HotTables, Raw, has_newer_commit};
use crate::udf::MaskUdf;

/// A resource the caller may read, and how.
#[derive(Debug, Clone)]
pub struct Visible {
    pub code: String,
    pub access: Access,
}

/// A governed table and the Delta version it was planned over.
struct Built {
    version: u64,
    table: Arc<GovernedTable>,
}

pub struct UnitSchema {
    tables: HashMap<String, Visible>,
    built: Mutex<HashMap<String, Built>>,
    dir: DataDir,
    key: UnitKey,
    objects: Arc<dyn ObjectStoreRegistry>,
    hot: Arc<HotTables>,
}

impl std::fmt::Debug for UnitSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UnitSchema({} tables)", self.tables.len())
    }
}

/// The trusted context's settings over a Delta table: the row filter and the caller's
/// harmless predicates are evaluated inside the Parquet decoder (most selective first), so
/// the other columns are decoded only for rows that pass.
pub fn delta_scan_config() -> SessionConfig {
    SessionConfig::new()
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true)
}

/// How a statement reads a resource: as it is, as it was, or its list of versions.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reading {
    Now,
    Version(u64),
    AsOf(Timestamp),
    History,
}

impl Reading {
    /// The part after `@`: `v<N>`, an RFC 3339 instant, or China time.
    fn parse(when: &str) -> Result<Reading> {
        if let Some(version) = when.strip_prefix('v').and_then(|v| v.parse().ok()) {
            return Ok(Reading::Version(version));
        }
        if let Ok(at) = when.parse::<Timestamp>() {
            return Ok(Reading::AsOf(at));
        }
        if let Ok(day) = parse_date(when) {
            return Ok(Reading::AsOf(end_of_day(day)));
        }
        let civil = when.replacen(' ', "T", 1);
        if let Ok(at) = civil.parse::<jiff::civil::DateTime>()
            && let Ok(zoned) = at.to_zoned(china())
        {
            return Ok(Reading::AsOf(zoned.timestamp()));
        }
        Err(DataFusionError::Plan(format!(
            "'@{when}' is not a version or a time: write @v3, @2026-11-27 or @2026-11-27 18:00:00"
        )))
    }
}

/// A SQL identifier in double quotes (Chinese and any other characters kept).
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl UnitSchema {
    pub fn new(
        tables: HashMap<String, Visible>,
        dir: DataDir,
        key: UnitKey,
        objects: Arc<dyn ObjectStoreRegistry>,
        hot: Arc<HotTables>,
    ) -> UnitSchema {
        UnitSchema {
            tables,
            built: Mutex::new(HashMap::new()),
            dir,
            key,
            objects,
            hot,
        }
    }

    fn table_dir(&self, visible: &Visible) -> PathBuf {
        tongchou_exchange::table::table_dir(&self.dir.tables_dir(), &visible.code)
    }

    /// The table built earlier, unless its Delta table has moved on.
    fn current(&self, name: &str, visible: &Visible) -> Option<Arc<GovernedTable>> {
        let built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        let found = built.get(name)?;
        (!has_newer_commit(&self.table_dir(visible), found.version)).then(|| found.table.clone())
    }

    /// Plans the grant over the raw table in a trusted context of its own.
    async fn build(&self, visible: &Visible) -> Result<Built> {
        let raw = self
            .hot
            .raw(&visible.code, &self.table_dir(visible))
            .await?
            .ok_or_else(|| DataFusionError::Plan(format!("{} has no data yet", visible.code)))?;
        Ok(Built {
            version: raw.version,
            table: Arc::new(self.govern(visible, raw).await?),
        })
    }

    /// The grant's policy over `raw`: row filter first, then every granted field, masked
    /// from its raw value where the grant says.
    async fn govern(&self, visible: &Visible, raw: Raw) -> Result<GovernedTable> {
        let in_memory = raw.in_memory;
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(self.objects.clone())
            .build_arc()?;
        // Rows held in memory are few: one partition, no repartitioning.
        let config = if in_memory {
            SessionConfig::new().with_target_partitions(1)
        } else {
            delta_scan_config()
        };
        let trusted = SessionContext::new_with_config_rt(config, runtime);
        trusted.register_table("raw", raw.table)?;
        let mut columns = Vec::new();
        let mut clear = Vec::new();
        for (i, field) in visible.access.fields.iter().enumerate() {
            let column = quoted(&field.name);
            match field.mask.as_deref().filter(|m| *m != "none") {
                None => {
                    clear.push(field.name.clone());
                    columns.push(column)
                }
                Some(spec) => {
                    let mask =
                        Mask::parse(spec).map_err(|e| DataFusionError::Plan(e.to_string()))?;
                    let name = format!("governed_mask_{i}");
                    trusted.register_udf(ScalarUDF::new_from_impl(MaskUdf::new(
                        name.clone(),
                        mask,
                        self.key.clone(),
                    )));
                    columns.push(format!("{name}({column}) AS {column}"));
                }
            }
        }
        let mut sql = format!("SELECT {} FROM raw", columns.join(", "));
        if let Some(filter) = &visible.access.row_filter {
            sql.push_str(&format!(" WHERE ({filter})"));
        }
        let policy = trusted.sql(&sql).await?;
        let table = GovernedTable::new(visible.code.clone(), policy, clear).with_raw_rows(raw.rows);
        if in_memory {
            table.planned_once(self.hot.masked.clone()).await
        } else {
            Ok(table)
        }
    }

    /// The resource as it was at `version`, under the current grant.
    async fn at_version(&self, visible: &Visible, version: u64) -> Result<Arc<dyn TableProvider>> {
        let table = tongchou_exchange::table::open_at(&self.table_dir(visible), version)
            .await
            .map_err(|e| DataFusionError::Plan(format!("{}: {e}", visible.code)))?;
        let raw = Raw {
            version,
            rows: tongchou_exchange::table::row_estimate(&table),
            table: table
                .table_provider()
                .await
                .map_err(|e| DataFusionError::Plan(e.to_string()))?,
            in_memory: false,
        };
        Ok(Arc::new(self.govern(visible, raw).await?))
    }

    async fn commits(&self, visible: &Visible) -> Result<Vec<Commit>> {
        let table = tongchou_exchange::table::open(&self.table_dir(visible))
            .await
            .map_err(|e| DataFusionError::Plan(e.to_string()))?
            .ok_or_else(|| DataFusionError::Plan(format!("{} has no data yet", visible.code)))?;
        tongchou_exchange::table::commits(&table)
            .await
            .map_err(|e| DataFusionError::Plan(e.to_string()))
    }

    /// The resource as it stood at `at`: its last version committed by then.
    async fn as_of(&self, visible: &Visible, at: Timestamp) -> Result<Arc<dyn TableProvider>> {
        let commits = self.commits(visible).await?;
        let version = commits
            .iter()
            .find(|c| c.committed_at <= at.as_millisecond())
            .map(|c| c.version)
            .ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "the resource had no data at {at}; its first version is from {}",
                    commits
                        .last()
                        .and_then(|c| Timestamp::from_millisecond(c.committed_at).ok())
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                ))
            })?;
        self.at_version(visible, version).await
    }

    /// `"<resource>$history"`: version, commit time and operation, newest first.
    async fn history(&self, visible: &Visible) -> Result<Arc<dyn TableProvider>> {
        let commits = self.commits(visible).await?;
        let schema = Arc::new(Schema::new(vec![
            Field::new("version", DataType::Int64, false),
            Field::new(
                "committed_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("operation", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(
                    commits.iter().map(|c| c.version as i64),
                )),
                Arc::new(
                    TimestampMillisecondArray::from_iter_values(
                        commits.iter().map(|c| c.committed_at),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from_iter_values(
                    commits.iter().map(|c| c.operation.as_str()),
                )),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    /// The visible resource a table name reads, and how; `None` when it names none.
    fn reading<'a>(&'a self, name: &'a str) -> Result<Option<(&'a Visible, Reading)>> {
        if let Some(visible) = self.tables.get(name) {
            return Ok(Some((visible, Reading::Now)));
        }
        if let Some(base) = name.strip_suffix("$history")
            && let Some(visible) = self.tables.get(base)
        {
            return Ok(Some((visible, Reading::History)));
        }
        let Some((base, when)) = name.rsplit_once('@') else {
            return Ok(None);
        };
        let Some(visible) = self.tables.get(base) else {
            return Ok(None);
        };
        Ok(Some((visible, Reading::parse(when)?)))
    }
}

#[async_trait]
impl SchemaProvider for UnitSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tables.keys().cloned().collect();
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some((visible, reading)) = self.reading(name)? else {
            return Ok(None);
        };
        match reading {
            Reading::Now => {}
            Reading::Version(version) => return self.at_version(visible, version).await.map(Some),
            Reading::AsOf(at) => return self.as_of(visible, at).await.map(Some),
            Reading::History => return self.history(visible).await.map(Some),
        }
        if let Some(table) = self.current(name, visible) {
            return Ok(Some(table));
        }
        let built = self.build(visible).await?;
        let table = built.table.clone();
        self.built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), built);
        Ok(Some(table))
    }

    /// Answered without building the table, for catalog listings.
    async fn table_type(&self, name: &str) -> Result<Option<TableType>> {
        Ok(self.tables.contains_key(name).then_some(TableType::Base))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.reading(name).is_ok_and(|r| r.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_travel_suffixes_read_as_versions_and_instants() {
        assert_eq!(Reading::parse("v0").unwrap(), Reading::Version(0));
        assert_eq!(Reading::parse("v42").unwrap(), Reading::Version(42));
        let utc: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        assert_eq!(
            Reading::parse("2026-11-27T10:00:00Z").unwrap(),
            Reading::AsOf(utc)
        );
        // China time: UTC+8.
        assert_eq!(
            Reading::parse("2026-11-27 18:00:00").unwrap(),
            Reading::AsOf(utc)
        );
        // A date: as the day ended in China.
        let midnight: Timestamp = "2026-11-27T16:00:00Z".parse().unwrap();
        assert_eq!(
            Reading::parse("2026-11-27").unwrap(),
            Reading::AsOf(midnight)
        );
        for bad in ["", "v", "v-1", "vx", "yesterday", "2026-13-01"] {
            let e = Reading::parse(bad).unwrap_err().to_string();
            assert!(e.contains("write @v3"), "{bad}: {e}");
        }
    }
}
