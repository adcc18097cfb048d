//! The SQL catalog a session sees: one schema per providing unit, listed in a stable order,
//! plus `pg_catalog` (from `datafusion-pg-catalog`) so that psql's `\dt`, JDBC's
//! `getTables` and BI tools list the tables — built from this session's catalog, so they
//! list only the resources the caller may read, with only the granted columns.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};
use deltalake::datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProviderList, SchemaProvider,
};
use deltalake::datafusion::common::{DataFusionError, Result};
use deltalake::datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

/// What every session starts from, set up once: PostgreSQL's catalog functions, type
/// names and the decoded static `pg_catalog` tables (`pg_type`, `pg_proc`, …).
pub struct SessionTemplate {
    state: SessionState,
    pg_tables: Arc<PgCatalogStaticTables>,
}

impl std::fmt::Debug for SessionTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionTemplate")
    }
}

impl SessionTemplate {
    pub fn new(catalog: &str, runtime: Arc<RuntimeEnv>) -> Result<SessionTemplate> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(catalog, "public");
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        datafusion_pg_catalog::setup_pg_catalog(&ctx, catalog, EmptyContextProvider)
            .map_err(|e| *e)?;
        Ok(SessionTemplate {
            state: ctx.state(),
            pg_tables: Arc::new(PgCatalogStaticTables::try_new()?),
        })
    }

    /// A session whose catalog `name` holds `schemas` (and `public`, `pg_catalog`).
    pub fn session(
        &self,
        name: &str,
        schemas: Vec<(String, Arc<dyn SchemaProvider>)>,
    ) -> Result<SessionState> {
        let list: Arc<dyn CatalogProviderList> = Arc::new(MemoryCatalogProviderList::new());
        let catalog = Arc::new(OrderedCatalog::default());
        for (schema, provider) in schemas {
            catalog.register_schema(&schema, provider)?;
        }
        catalog.register_schema(
            "public",
            Arc::new(deltalake::datafusion::catalog::MemorySchemaProvider::new()),
        )?;
        catalog.register_schema(
            "pg_catalog",
            Arc::new(PgCatalogSchemaProvider::try_new(
                list.clone(),
                self.pg_tables.clone(),
                EmptyContextProvider,
            )?),
        )?;
        list.register_catalog(name.to_string(), catalog);
        Ok(SessionStateBuilder::new_from_existing(self.state.clone())
            .with_catalog_list(list)
            .build())
    }
}

/// Schemas listed by name, so catalog queries (and the object ids `pg_catalog` hands out
/// in listing order) are the same in every session built from the same grants.
#[derive(Debug, Default)]
struct OrderedCatalog {
    schemas: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl CatalogProvider for OrderedCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.schemas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.schemas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        Ok(self
            .schemas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), schema))
    }

    fn deregister_schema(
        &self,
        name: &str,
        _cascade: bool,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        Err(DataFusionError::Plan(format!(
            "schema {name} cannot be dropped: the catalog follows the grants"
        )))
    }
}
