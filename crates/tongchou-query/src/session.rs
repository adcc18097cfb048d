//! The caller's session: one schema per providing unit (its Chinese name), one table per
//! resource the caller may read for this purpose (its Chinese name), each built on first
//! use as a [`GovernedTable`]. Resources the caller may not read do not exist here, so
//! `information_schema` and unknown-table errors show nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use deltalake::datafusion::catalog::{SchemaProvider, TableProvider};
use deltalake::datafusion::common::{DataFusionError, Result};
use deltalake::datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::datafusion::logical_expr::ScalarUDF;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use tongchou_access::Access;
use tongchou_mask::{Mask, UnitKey};
use tongchou_store::DataDir;

use crate::governed::{GovernedTable, Reads};
use crate::udf::MaskUdf;

/// A resource the caller may read, and how.
#[derive(Debug, Clone)]
pub struct Visible {
    pub code: String,
    pub access: Access,
}

pub struct UnitSchema {
    pub tables: HashMap<String, Visible>,
    pub built: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
    pub dir: DataDir,
    pub key: UnitKey,
    pub runtime: Arc<RuntimeEnv>,
    pub reads: Arc<Mutex<Reads>>,
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
    /// Plans the grant over the raw table in a trusted context of its own.
    async fn build(&self, visible: &Visible) -> Result<Arc<dyn TableProvider>> {
        let dir = tongchou_exchange::table::table_dir(&self.dir.tables_dir(), &visible.code);
        let table = tongchou_exchange::table::open(&dir)
            .await
            .map_err(|e| DataFusionError::Plan(e.to_string()))?
            .ok_or_else(|| DataFusionError::Plan(format!("{} has no data yet", visible.code)))?;
        let trusted =
            SessionContext::new_with_config_rt(SessionConfig::new(), self.runtime.clone());
        trusted.register_table(
            "raw",
            table
                .table_provider()
                .await
                .map_err(|e| DataFusionError::Plan(e.to_string()))?,
        )?;
        let mut columns = Vec::new();
        for (i, field) in visible.access.fields.iter().enumerate() {
            let column = quoted(&field.name);
            match field.mask.as_deref().filter(|m| *m != "none") {
                None => columns.push(column),
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
        Ok(Arc::new(GovernedTable::new(
            visible.code.clone(),
            policy,
            self.reads.clone(),
        )))
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
        if let Some(built) = self
            .built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(Some(built.clone()));
        }
        let provider = self.build(visible).await?;
        self.built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), provider.clone());
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}
