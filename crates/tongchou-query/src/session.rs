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

use crate::governed::{GovernedTable, SUBJECT_COLUMN};
use crate::hot::{HotTables, Raw, has_newer_commit};
use crate::udf::{MaskUdf, SUBJECT_UDF, SubjectUdf};
use tongchou_audit::SubjectKey;
use tongchou_exchange::changes::RowKeys;

/// A resource the caller may read, and how.
#[derive(Debug, Clone)]
pub struct Visible {
    pub code: String,
    /// The providing unit's name and the resource's: its schema and table in SQL.
    pub unit_name: String,
    pub name: String,
    pub access: Access,
}

impl Visible {
    /// The table's name in SQL, with a reading's suffix (`@v3`, `$changes@v3..v7`).
    pub fn sql_name(&self, suffix: &str) -> String {
        format!(
            "{}.{}",
            quoted(&self.unit_name),
            quoted(&format!("{}{suffix}", self.name))
        )
    }
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
    subjects: SubjectKey,
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
    /// Changes after version `from` (from the first version when `None`) up to `to`.
    Changes {
        from: Option<u64>,
        to: Option<u64>,
    },
}

impl Reading {
    /// The part after `$changes@`: `v<from>` or `v<from>..v<to>`.
    fn changes(when: &str) -> Result<Reading> {
        let version = |v: &str| v.strip_prefix('v').and_then(|v| v.parse::<u64>().ok());
        let (from, to) = match when.split_once("..") {
            Some((from, to)) => (version(from), Some(version(to))),
            None => (version(when), None),
        };
        match (from, to) {
            (Some(from), None) => Ok(Reading::Changes {
                from: Some(from),
                to: None,
            }),
            (Some(from), Some(Some(to))) if from <= to => Ok(Reading::Changes {
                from: Some(from),
                to: Some(to),
            }),
            _ => Err(DataFusionError::Plan(format!(
                "'$changes@{when}' is not a range of versions: write $changes@v3 (after version 3) or $changes@v3..v7"
            ))),
        }
    }

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
        (key, subjects): (UnitKey, SubjectKey),
        objects: Arc<dyn ObjectStoreRegistry>,
        hot: Arc<HotTables>,
    ) -> UnitSchema {
        UnitSchema {
            tables,
            built: Mutex::new(HashMap::new()),
            dir,
            key,
            subjects,
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

    /// A trusted context of its own over `raw`, registered as `raw`.
    fn trusted(
        &self,
        raw: Arc<dyn TableProvider>,
        config: SessionConfig,
    ) -> Result<SessionContext> {
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(self.objects.clone())
            .build_arc()?;
        let trusted = SessionContext::new_with_config_rt(config, runtime);
        trusted.register_table("raw", raw)?;
        Ok(trusted)
    }

    /// The policy's columns over `raw` in `trusted`: every granted field, masked from its
    /// raw value where the grant says, then the hidden subject columns (the keyed hashes of
    /// the raw person and enterprise IDs, granted or not); and the fields shown in clear.
    async fn policy_columns(
        &self,
        trusted: &SessionContext,
        visible: &Visible,
    ) -> Result<(Vec<String>, Vec<String>)> {
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
        trusted.register_udf(ScalarUDF::new_from_impl(SubjectUdf::new(
            self.subjects.clone(),
        )));
        let raw = trusted.table_provider("raw").await?.schema();
        let keys = self.row_keys(visible).await?;
        for (i, id) in keys.identifiers.iter().enumerate() {
            if raw.column_with_name(id).is_some() {
                columns.push(format!(
                    "{SUBJECT_UDF}(CAST({} AS VARCHAR)) AS \"{SUBJECT_COLUMN}{i}\"",
                    quoted(id)
                ));
            }
        }
        Ok((columns, clear))
    }

    async fn row_keys(&self, visible: &Visible) -> Result<RowKeys> {
        tongchou_exchange::changes::row_keys(&self.dir, &visible.code)
            .await
            .map_err(|e| DataFusionError::Plan(e.to_string()))
    }

    /// The grant's policy over `raw`: row filter first, then every granted field, masked
    /// from its raw value where the grant says.
    async fn govern(&self, visible: &Visible, raw: Raw) -> Result<GovernedTable> {
        let in_memory = raw.in_memory;
        // Rows held in memory are few: one partition, no repartitioning.
        let config = if in_memory {
            SessionConfig::new().with_target_partitions(1)
        } else {
            delta_scan_config()
        };
        let trusted = self.trusted(raw.table, config)?;
        let (columns, clear) = self.policy_columns(&trusted, visible).await?;
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

    /// `"<resource>$changes@v<from>[..v<to>]"`: the rows changed after version `from` up
    /// to `to` (the current version when left out), with `_change` and `_version`, as the
    /// grant shows them. The row filter is evaluated on the raw row before and after each
    /// change, so the feed never tells of a row the grant hides: an update that takes a row
    /// out of the filter is the delete of the row the consumer had, one that brings a row in
    /// is an insert, and an update of a hidden row is nothing.
    async fn changes(
        &self,
        visible: &Visible,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<Arc<dyn TableProvider>> {
        let table = tongchou_exchange::table::open(&self.table_dir(visible))
            .await
            .map_err(|e| DataFusionError::Plan(e.to_string()))?
            .ok_or_else(|| DataFusionError::Plan(format!("{} has no data yet", visible.code)))?;
        let current = table.version().unwrap_or(0);
        let to = to.unwrap_or(current).min(current);
        let start = from.map_or(0, |f| f + 1);
        let changed = if start > to {
            None
        } else {
            let builder = table
                .clone()
                .scan_cdf()
                .with_starting_version(start)
                .with_ending_version(to);
            Some(
                deltalake::delta_datafusion::DeltaCdfTableProvider::try_new(builder)
                    .map_err(|e| DataFusionError::Plan(e.to_string()))?,
            )
        };
        let Some(changed) = changed else {
            return self.no_changes(visible, &table).await;
        };
        let trusted = self.trusted(Arc::new(changed), delta_scan_config())?;
        let (columns, mut clear) = self.policy_columns(&trusted, visible).await?;
        clear.extend(["_change".to_string(), "_version".to_string()]);
        let keys = self.row_keys(visible).await?;
        let sql = changes_sql(&columns, visible.access.row_filter.as_deref(), &keys.key);
        let policy = trusted.sql(&sql).await?;
        Ok(Arc::new(GovernedTable::new(
            visible.code.clone(),
            policy,
            clear,
        )))
    }

    /// The shape of a change feed with no rows (nothing changed in the versions asked).
    async fn no_changes(
        &self,
        visible: &Visible,
        table: &deltalake::DeltaTable,
    ) -> Result<Arc<dyn TableProvider>> {
        let raw = table
            .table_provider()
            .await
            .map_err(|e| DataFusionError::Plan(e.to_string()))?;
        let trusted = self.trusted(raw, SessionConfig::new())?;
        let (columns, mut clear) = self.policy_columns(&trusted, visible).await?;
        clear.extend(["_change".to_string(), "_version".to_string()]);
        let sql = format!(
            "SELECT {}, 'insert' AS \"_change\", CAST(0 AS BIGINT) AS \"_version\" FROM raw WHERE false",
            columns.join(", ")
        );
        let policy = trusted.sql(&sql).await?;
        Ok(Arc::new(GovernedTable::new(
            visible.code.clone(),
            policy,
            clear,
        )))
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
        if let Some(base) = name.strip_suffix("$changes")
            && let Some(visible) = self.tables.get(base)
        {
            return Ok(Some((
                visible,
                Reading::Changes {
                    from: None,
                    to: None,
                },
            )));
        }
        let Some((base, when)) = name.rsplit_once('@') else {
            return Ok(None);
        };
        if let Some(base) = base.strip_suffix("$changes") {
            let Some(visible) = self.tables.get(base) else {
                return Ok(None);
            };
            return Ok(Some((visible, Reading::changes(when)?)));
        }
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
            Reading::Changes { from, to } => {
                return self.changes(visible, from, to).await.map(Some);
            }
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

/// The trusted statement of a change feed (see [`UnitSchema::changes`]) over `raw`, the
/// Delta change data feed: `columns` are the policy's, `filter` the grant's row filter,
/// `key` the resource's declared key, which pairs an update's images (without one, an
/// update is the delete of the old row and the insert of the new).
fn changes_sql(columns: &[String], filter: Option<&str>, key: &[String]) -> String {
    let kept = filter.map_or("true".to_string(), |f| format!("COALESCE(({f}), false)"));
    let mut sql = format!("WITH c AS (SELECT *, {kept} AS \"__kept\" FROM raw)");
    let images = |kind: &str, alias: &str| {
        let keys: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{} AS \"__{alias}{i}\"", quoted(k)))
            .collect();
        format!(
            ", {alias} AS (SELECT {}, _commit_version AS \"__{alias}_v\", bool_or(\"__kept\") AS \"__{alias}_kept\" FROM c WHERE _change_type = '{kind}' GROUP BY {})",
            keys.join(", "),
            (1..=key.len() + 1)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let join = |alias: &str| {
        let on: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("c.{} = {alias}.\"__{alias}{i}\"", quoted(k)))
            .collect();
        format!(
            " LEFT JOIN {alias} ON {} AND c._commit_version = {alias}.\"__{alias}_v\"",
            on.join(" AND ")
        )
    };
    let (update, from, stays) = if key.is_empty() {
        (
            "'insert'".to_string(),
            " FROM c".to_string(),
            "true".to_string(),
        )
    } else {
        sql.push_str(&images("update_preimage", "pre"));
        sql.push_str(&images("update_postimage", "post"));
        (
            "CASE WHEN COALESCE(\"__pre_kept\", false) THEN 'update' ELSE 'insert' END".to_string(),
            format!(" FROM c{}{}", join("pre"), join("post")),
            "NOT COALESCE(\"__post_kept\", false)".to_string(),
        )
    };
    sql.push_str(&format!(
        " SELECT {}, CASE _change_type WHEN 'update_postimage' THEN {update} WHEN 'update_preimage' THEN 'delete' ELSE _change_type END AS \"_change\", CAST(_commit_version AS BIGINT) AS \"_version\"{from} WHERE \"__kept\" AND (_change_type <> 'update_preimage' OR {stays})",
        columns.join(", ")
    ));
    sql
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
