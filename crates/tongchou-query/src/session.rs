//! The caller's session: one schema per providing unit (its Chinese name), one table per
//! resource the caller may read for this purpose (its Chinese name), each built on first
//! use as a [`GovernedTable`] and kept until its Delta table gets a new version. Resources
//! the caller may not read do not exist here, so `information_schema` and unknown-table
//! errors show nothing else.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use deltalake::datafusion::catalog::{SchemaProvider, TableProvider};
use deltalake::datafusion::common::{DataFusionError, Result};
use deltalake::datafusion::execution::object_store::ObjectStoreRegistry;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::logical_expr::ScalarUDF;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use tongchou_access::Access;
use tongchou_mask::{Mask, UnitKey};
use tongchou_store::DataDir;

use crate::governed::GovernedTable;
use crate::hot::{HotTables, has_newer_commit};
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
        let (version, raw, in_memory) = self
            .hot
            .raw(&visible.code, &self.table_dir(visible))
            .await?
            .ok_or_else(|| DataFusionError::Plan(format!("{} has no data yet", visible.code)))?;
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(self.objects.clone())
            .build_arc()?;
        // Rows held in memory are few: one partition, no repartitioning.
        let config = if in_memory {
            SessionConfig::new().with_target_partitions(1)
        } else {
            SessionConfig::new()
        };
        let trusted = SessionContext::new_with_config_rt(config, runtime);
        trusted.register_table("raw", raw)?;
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
        let mut table = GovernedTable::new(visible.code.clone(), policy, clear);
        if in_memory {
            table = table.planned_once().await?;
        }
        Ok(Built {
            version,
            table: Arc::new(table),
        })
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
        let Some(visible) = self.tables.get(name) else {
            return Ok(None);
        };
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

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}
