//! Governed query (DESIGN.md §5): SQL over the resources' Delta tables in Apache
//! DataFusion, in a session built for one (user, purpose), where each resource is an
//! opaque governed leaf ([`governed`]) planned from the caller's `tongchou_access::Access`:
//! the grant's row filter on raw rows first, every granted field masked from its raw value
//! ([`udf`], masks from `tongchou-mask`, keyed per consumer unit), ungranted fields absent.
//! Statements are queries only (no DDL, DML, `SET`, `COPY`, `EXPLAIN ANALYZE`), bounded by
//! a row cap, a time limit and a memory pool, set per role ([`limits`]). Sessions are
//! prepared once per (user, purpose), policy generation and grant clock change; small
//! tables are held decoded
//! in memory ([`hot`]).
//!
//! Front doors (`tongchou query`, `POST /api/query`, the PostgreSQL protocol in
//! `tongchou-server`) record every statement in the audit ledger before the result leaves.

pub mod catalog;
pub mod front;
pub mod governed;
pub mod hot;
pub mod limits;
mod reuse;
pub mod session;
pub mod udf;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use deltalake::datafusion::catalog::SchemaProvider;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use deltalake::datafusion::datasource::source_as_provider;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::TaskContext;
use deltalake::datafusion::execution::object_store::{
    DefaultObjectStoreRegistry, ObjectStoreRegistry,
};
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::execution::session_state::SessionState;
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use deltalake::datafusion::physical_plan::execute_stream;
use deltalake::datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use sqlx::Row;
use tongchou_access::{AccessError, Policy, PolicySet};
use tongchou_mask::UnitKey;
use tongchou_store::DataDir;

use crate::governed::GovernedTable;
use crate::session::{UnitSchema, Visible};

pub const CATALOG: &str = "tongchou";
pub const MASK_KEY_FILE: &str = "mask-master.key";

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Sql(String),
    #[error("the statement ran longer than {0} s and was stopped; narrow it")]
    Timeout(u64),
    #[error("the result has more than {0} rows; narrow it (WHERE, LIMIT, GROUP BY)")]
    TooManyRows(u64),
    #[error("metadata database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the mask key: {0}")]
    Key(String),
}

impl From<arrow::error::ArrowError> for QueryError {
    fn from(e: arrow::error::ArrowError) -> QueryError {
        QueryError::Sql(e.to_string())
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> QueryError {
        let text = e.to_string();
        if text.contains("Resources exhausted") {
            QueryError::Refused(format!(
                "the statement needs more memory than allowed: {text}"
            ))
        } else {
            QueryError::Sql(text)
        }
    }
}

/// Per-statement bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_rows: u64,
    /// Answers of up to this many rows have the people and enterprises they name worked
    /// out (for the ledger's subject index).
    pub subject_rows: u64,
    pub timeout: Duration,
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_rows: 100_000,
            subject_rows: 1000,
            timeout: Duration::from_secs(60),
            memory_bytes: 1 << 30,
        }
    }
}

/// How one resource was read, for the ledger.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResourceRead {
    pub code: String,
    pub fields: Vec<String>,
    /// Field → mask, for masked fields.
    pub masks: BTreeMap<String, String>,
    pub row_filter: Option<String>,
    /// Fields that identify a person or enterprise, with their mask if any.
    pub identifiers: Vec<(String, Option<String>)>,
}

/// A statement's answer and what it read.
pub struct Answer {
    pub batches: Vec<RecordBatch>,
    pub schema: arrow::datatypes::SchemaRef,
    pub rows: u64,
    pub reads: Vec<ResourceRead>,
    /// The raw IDs of the people and enterprises the answer names (see `subjects_of`);
    /// empty for answers larger than `Limits::subject_rows`. Never shown to the caller.
    pub subject_ids: Vec<String>,
    /// The unit the caller belonged to when the statement ran (none for answers the
    /// engine makes for itself).
    pub unit: Option<String>,
}

pub struct Engine {
    dir: DataDir,
    policy: Arc<Policy>,
    master_key: [u8; 32],
    pub limits: Limits,
    /// `config/query.toml`: limits by role over `limits`.
    role_limits: limits::RoleLimits,
    /// Sessions prepared per (user, purpose), kept while the policy is unchanged.
    sessions: Mutex<HashMap<(String, String), Arc<Prepared>>>,
    /// Where every session finds the tables' files.
    objects: Arc<dyn ObjectStoreRegistry>,
    hot: Arc<hot::HotTables>,
    template: catalog::SessionTemplate,
    /// Each consumer unit's mask key, derived once: it remembers recent pseudonyms.
    unit_keys: Mutex<HashMap<String, UnitKey>>,
}

/// A (user, purpose) session: its catalog of governed tables and what each reads.
struct Prepared {
    /// The access decisions it was built from; a policy change replaces them.
    policy: Arc<PolicySet>,
    /// When a grant starts or ends next, changing what the session may see by the clock
    /// alone.
    changes_at: Option<jiff::Timestamp>,
    state: SessionState,
    /// The caller's unit under that policy.
    unit: String,
    key: UnitKey,
    by_code: HashMap<String, Visible>,
    /// Resource code → its person and enterprise ID fields, looked up on first read.
    identifiers: Mutex<HashMap<String, Vec<String>>>,
    /// Optimised plans of the statement shapes run in this session.
    plans: reuse::Plans,
}

impl Prepared {
    fn fresh(&self, policy: &Arc<PolicySet>) -> bool {
        Arc::ptr_eq(&self.policy, policy)
            && self.changes_at.is_none_or(|at| jiff::Timestamp::now() < at)
    }
}

fn load_or_create_master_key(dir: &DataDir) -> Result<[u8; 32], QueryError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.config_dir().join(MASK_KEY_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| QueryError::Key(format!("{} is not a key", path.display())));
    }
    let key: [u8; 32] = rand::random();
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(hex::encode(key).as_bytes())
                .and_then(|()| f.sync_all())
        });
    match created {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_master_key(dir),
        Err(e) => Err(QueryError::Key(format!(
            "cannot write {}: {e}",
            path.display()
        ))),
    }
}

impl Engine {
    pub fn open(dir: DataDir, policy: Arc<Policy>) -> Result<Engine, QueryError> {
        let master_key = load_or_create_master_key(&dir)?;
        let role_limits = limits::RoleLimits::read(&dir.config_dir())?;
        let objects: Arc<dyn ObjectStoreRegistry> = Arc::new(DefaultObjectStoreRegistry::new());
        let shared = RuntimeEnvBuilder::new()
            .with_object_store_registry(objects.clone())
            .build_arc()?;
        Ok(Engine {
            template: catalog::SessionTemplate::new(CATALOG, shared)?,
            unit_keys: Mutex::new(HashMap::new()),
            dir,
            policy,
            master_key,
            limits: Limits::default(),
            role_limits,
            sessions: Mutex::new(HashMap::new()),
            hot: Arc::new(hot::HotTables::new(hot::default_budget(), objects.clone())),
            objects,
        })
    }

    /// The resources `user` may read for `purpose`, grouped by providing unit's name.
    async fn visible(
        &self,
        set: &PolicySet,
        user: &str,
        purpose: &str,
    ) -> Result<HashMap<String, HashMap<String, Visible>>, QueryError> {
        let rows = sqlx::query(
            "SELECT r.code, r.name, u.name AS unit_name FROM resources r JOIN units u ON u.code = r.unit WHERE r.has_data = 1",
        )
        .fetch_all(self.dir.metadata())
        .await?;
        let now = jiff::Timestamp::now();
        let mut units: HashMap<String, HashMap<String, Visible>> = HashMap::new();
        for r in rows {
            let code: String = r.get("code");
            if let Ok(access) = set.decide(user, &code, purpose, now) {
                units
                    .entry(r.get("unit_name"))
                    .or_default()
                    .insert(r.get("name"), Visible { code, access });
            }
        }
        Ok(units)
    }

    /// What `user` may read for `purpose`: (unit name, resource name, access), sorted, as
    /// the query console lists it beside the editor.
    pub async fn readable(
        &self,
        user: &str,
        purpose: &str,
    ) -> Result<Vec<(String, String, tongchou_access::Access)>, QueryError> {
        let set = self.policy.current().await?;
        let mut out: Vec<_> = self
            .visible(&set, user, purpose)
            .await?
            .into_iter()
            .flat_map(|(unit, tables)| {
                tables
                    .into_iter()
                    .map(move |(name, v)| (unit.clone(), name, v.access))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Ok(out)
    }

    /// Runs one query statement as `user` for `purpose`.
    pub async fn run(&self, user: &str, purpose: &str, sql: &str) -> Result<Answer, QueryError> {
        self.run_with(user, purpose, sql, &[]).await
    }

    /// The statement's parameter types (`$1`, `$2`, … in order; `None` where the
    /// statement does not tell) and result schema, without running it.
    pub async fn describe(
        &self,
        user: &str,
        purpose: &str,
        sql: &str,
    ) -> Result<(Vec<Option<DataType>>, SchemaRef), QueryError> {
        let (_, _, plan, _) = self.plan(user, purpose, sql).await?;
        Ok((
            parameter_types(&plan)?,
            Arc::new(plan.schema().as_arrow().clone()),
        ))
    }

    /// Plans `sql` in the session for (`user`, `purpose`): queries only.
    async fn plan(
        &self,
        user: &str,
        purpose: &str,
        sql: &str,
    ) -> Result<(Arc<Prepared>, SessionState, LogicalPlan, Limits), QueryError> {
        let (prepared, state, limits) = self.session(user, purpose).await?;
        let plan = state
            .create_logical_plan(sql)
            .await
            .map_err(|e| QueryError::Sql(e.to_string()))?;
        Ok((prepared, state, only_queries(plan)?, limits))
    }

    /// The session for (`user`, `purpose`), marked as starting a statement now, and the
    /// caller's limits.
    async fn session(
        &self,
        user: &str,
        purpose: &str,
    ) -> Result<(Arc<Prepared>, SessionState, Limits), QueryError> {
        let set = self.policy.current().await?;
        let account = set.user(user).ok_or_else(|| {
            AccessError::Forbidden(format!("user '{user}' does not exist or is disabled"))
        })?;
        if !set.knows_purpose(purpose) {
            return Err(AccessError::Forbidden(format!(
                "purpose '{purpose}' is not on the bureau's list; see `tongchou access purposes`"
            ))
            .into());
        }
        let limits = self.role_limits.for_role(&self.limits, account.role);
        let prepared = self.prepared(&set, user, purpose, &account.unit).await?;
        let mut state = prepared.state.clone();
        state.mark_start_execution();
        Ok((prepared, state, limits))
    }

    /// The optimised plan of `sql` with `parameters` bound, and the resources the
    /// statement reads (as written, before the optimiser removes any): from the
    /// statement's shape when the session has planned it before, else planned as written.
    async fn optimized(
        &self,
        prepared: &Prepared,
        state: &SessionState,
        sql: &str,
        parameters: &[Option<String>],
    ) -> Result<(LogicalPlan, Vec<String>), QueryError> {
        if let Some(reused) = prepared.plans.reuse(state, sql, parameters).await {
            return Ok(reused);
        }
        let plan = state
            .create_logical_plan(sql)
            .await
            .map_err(|e| QueryError::Sql(e.to_string()))?;
        let mut plan = only_queries(plan)?;
        if !parameters.is_empty() {
            let types = parameter_types(&plan)?;
            plan = bind(plan, parameters, &types)?;
        }
        let read = resources_read(&plan);
        Ok((state.optimize(&plan)?, read))
    }

    /// Runs a statement with `$1`, `$2`, … bound to `parameters` (given as text, or null;
    /// each converted to the type the statement expects there).
    pub async fn run_with(
        &self,
        user: &str,
        purpose: &str,
        sql: &str,
        parameters: &[Option<String>],
    ) -> Result<Answer, QueryError> {
        let (prepared, state, limits) = self.session(user, purpose).await?;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .with_object_store_registry(self.objects.clone())
            .build_arc()?;
        let collected = tokio::time::timeout(limits.timeout, async {
            let (plan, read) = self.optimized(&prepared, &state, sql, parameters).await?;
            let physical = state
                .query_planner()
                .create_physical_plan(&plan, &state)
                .await?;
            // Planned in the session, run under this statement's own memory pool.
            let task = Arc::new(TaskContext::from(&state).with_runtime(runtime));
            let mut stream = execute_stream(physical, task)?;
            let (mut batches, mut rows) = (Vec::new(), 0u64);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                if rows > limits.max_rows {
                    return Err(QueryError::TooManyRows(limits.max_rows));
                }
                batches.push(batch);
            }
            Ok((plan, read, batches, rows))
        })
        .await
        .map_err(|_| QueryError::Timeout(limits.timeout.as_secs()))??;
        let (plan, read, batches, rows) = collected;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let identifiers = self.identifier_fields(&prepared, &read).await?;
        let reads = read
            .iter()
            .filter_map(|code| prepared.by_code.get(code))
            .map(|v| ResourceRead {
                code: v.code.clone(),
                fields: v.access.fields.iter().map(|f| f.name.clone()).collect(),
                masks: v
                    .access
                    .fields
                    .iter()
                    .filter_map(|f| {
                        f.mask
                            .clone()
                            .filter(|m| m != "none")
                            .map(|m| (f.name.clone(), m))
                    })
                    .collect(),
                row_filter: v.access.row_filter.clone(),
                identifiers: v
                    .access
                    .fields
                    .iter()
                    .filter(|f| identifiers.contains(&(v.code.clone(), f.name.clone())))
                    .map(|f| (f.name.clone(), f.mask.clone().filter(|m| m != "none")))
                    .collect(),
            })
            .collect();
        let mut answer = Answer {
            batches,
            schema,
            rows,
            reads,
            subject_ids: Vec::new(),
            unit: Some(prepared.unit.clone()),
        };
        if rows <= self.limits.subject_rows {
            answer.subject_ids = self.subjects_of(&answer, sql, &prepared.key).await?;
        }
        Ok(answer)
    }

    /// (resource, field) pairs of person and enterprise ID fields among `codes`.
    async fn identifier_fields(
        &self,
        prepared: &Prepared,
        codes: &[String],
    ) -> Result<Vec<(String, String)>, QueryError> {
        let mut found = Vec::new();
        for code in codes {
            let known = prepared
                .identifiers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(code)
                .cloned();
            let names = match known {
                Some(names) => names,
                None => {
                    let names =
                        tongchou_exchange::changes::identifier_fields(&self.dir, code).await?;
                    prepared
                        .identifiers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(code.clone(), names.clone());
                    names
                }
            };
            found.extend(names.into_iter().map(|n| (code.clone(), n)));
        }
        Ok(found)
    }

    fn unit_key(&self, unit: &str) -> UnitKey {
        self.unit_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(unit.to_string())
            .or_insert_with(|| UnitKey::derive(&self.master_key, unit))
            .clone()
    }

    /// The session for (`user`, `purpose`), prepared again after any policy change.
    async fn prepared(
        &self,
        set: &Arc<PolicySet>,
        user: &str,
        purpose: &str,
        unit: &str,
    ) -> Result<Arc<Prepared>, QueryError> {
        let id = (user.to_string(), purpose.to_string());
        if let Some(p) = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .filter(|p| p.fresh(set))
        {
            return Ok(p.clone());
        }
        let key = self.unit_key(unit);
        let visible = self.visible(set, user, purpose).await?;
        let mut by_code = HashMap::new();
        let changes_at = set.next_grant_change(jiff::Timestamp::now());
        let mut schemas: Vec<(String, Arc<dyn SchemaProvider>)> = Vec::new();
        for (unit_name, tables) in visible {
            for v in tables.values() {
                by_code.insert(v.code.clone(), v.clone());
            }
            let schema = UnitSchema::new(
                tables,
                self.dir.clone(),
                key.clone(),
                self.objects.clone(),
                self.hot.clone(),
            );
            schemas.push((unit_name, Arc::new(schema)));
        }
        let state = self.template.session(CATALOG, schemas)?;
        let prepared = Arc::new(Prepared {
            policy: set.clone(),
            changes_at,
            state,
            unit: unit.to_string(),
            key,
            by_code,
            identifiers: Mutex::new(HashMap::new()),
            plans: reuse::Plans::default(),
        });
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, p| Arc::ptr_eq(&p.policy, &prepared.policy));
        sessions.insert(id, prepared.clone());
        Ok(prepared)
    }
}

/// `plan` if it is a query: no DDL, DML, `SET` or `EXPLAIN ANALYZE`.
pub(crate) fn only_queries(plan: LogicalPlan) -> Result<LogicalPlan, QueryError> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    options.verify_plan(&plan).map_err(|e| {
        QueryError::Refused(format!(
            "only queries are run here ({e}); nothing was changed"
        ))
    })?;
    if let LogicalPlan::Analyze(_) = plan {
        return Err(QueryError::Refused(
            "EXPLAIN ANALYZE is not run: its counts describe rows you may not see; use EXPLAIN"
                .into(),
        ));
    }
    Ok(plan)
}

/// `plan` with its placeholders replaced by `parameters`, each cast from text to the type
/// the plan expects at that place (text where it does not say).
pub(crate) fn bind(
    plan: LogicalPlan,
    parameters: &[Option<String>],
    types: &[Option<DataType>],
) -> Result<LogicalPlan, QueryError> {
    let mut values = Vec::with_capacity(parameters.len());
    for (i, text) in parameters.iter().enumerate() {
        let want = types.get(i).cloned().flatten().unwrap_or(DataType::Utf8);
        let value = ScalarValue::Utf8(text.clone())
            .cast_to(&want)
            .map_err(|_| {
                QueryError::Sql(format!(
                    "parameter ${} is not a {want} value; send it as one",
                    i + 1
                ))
            })?;
        values.push(value);
    }
    Ok(plan.with_param_values(values)?)
}

/// The plan's parameter types in order (`$1`, `$2`, …; `None` where it does not tell).
pub(crate) fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, QueryError> {
    let found = plan.get_parameter_types()?;
    Ok((1..=found.len())
        .map(|i| found.get(&format!("${i}")).cloned().flatten())
        .collect())
}

/// Whether `plan` (its subqueries included) calls a function whose value can change
/// between statements (`now()`, `random()`) or reads a variable: such a plan must be
/// planned and run afresh each time.
pub(crate) fn varies_between_statements(plan: &LogicalPlan) -> bool {
    let mut varies = false;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                varies = match e {
                    Expr::ScalarFunction(call) => {
                        call.func.signature().volatility != Volatility::Immutable
                    }
                    Expr::ScalarVariable(..) => true,
                    _ => false,
                };
                Ok(if varies {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })
        })
    });
    varies
}

/// The resources a plan reads through governed leaves, each once, in order of appearance.
pub(crate) fn resources_read(plan: &LogicalPlan) -> Vec<String> {
    let mut codes: Vec<String> = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(table) = provider.downcast_ref::<GovernedTable>()
            && !codes.contains(&table.resource)
        {
            codes.push(table.resource.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    codes
}

/// Words of `sql` shaped like a keyed pseudonym (`P` and 20 base-32 characters).
fn pseudonyms_in(sql: &str) -> Vec<String> {
    sql.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| {
            w.len() == 21
                && w.starts_with('P')
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || ('2'..='9').contains(&c))
        })
        .map(str::to_string)
        .collect()
}

/// The distinct text values of the answer's columns named `name`.
fn column_values(answer: &Answer, name: &str) -> Vec<String> {
    let mut values = Vec::new();
    for batch in &answer.batches {
        let Some(column) = batch.column_by_name(name) else {
            continue;
        };
        if let Ok(text) = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8) {
            let text = text
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .expect("cast to Utf8 gives a StringArray");
            values.extend(text.iter().flatten().map(str::to_string));
        }
    }
    values.sort_unstable();
    values.dedup();
    values
}

impl Engine {
    /// The raw IDs an answer names, by the result columns that carry an ID field's name:
    /// clear values as they are, FPE values decrypted with the caller's unit key, keyed
    /// pseudonyms recalled from the unit key's memory of those it made lately (the
    /// statement just made them), else mapped back by masking the raw column again in a
    /// trusted context.
    /// Pseudonyms written in the statement itself (`WHERE person_id = 'P…'`) count too.
    /// Other masks (partial IDs) name nobody for certain and are left out.
    async fn subjects_of(
        &self,
        answer: &Answer,
        sql: &str,
        key: &UnitKey,
    ) -> Result<Vec<String>, QueryError> {
        let mut ids = Vec::new();
        for read in &answer.reads {
            for (field, mask) in &read.identifiers {
                let mut values = column_values(answer, field);
                if mask.as_deref() == Some("pseudonym") {
                    values.extend(pseudonyms_in(sql));
                    values.sort_unstable();
                    values.dedup();
                }
                if values.is_empty() {
                    continue;
                }
                match mask.as_deref() {
                    None => ids.extend(values),
                    Some("fpe") => ids.extend(values.iter().map(|v| key.fpe_decrypt(v))),
                    Some("pseudonym") => {
                        let mut forgotten = Vec::new();
                        for (pseudonym, id) in values.iter().zip(key.recall(&values)) {
                            match id {
                                Some(id) => ids.push(id),
                                None => forgotten.push(pseudonym.clone()),
                            }
                        }
                        if !forgotten.is_empty() {
                            ids.extend(
                                self.unpseudonymize(&read.code, field, &forgotten, key)
                                    .await?,
                            )
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    async fn unpseudonymize(
        &self,
        code: &str,
        field: &str,
        pseudonyms: &[String],
        key: &UnitKey,
    ) -> Result<Vec<String>, QueryError> {
        let dir = tongchou_exchange::table::table_dir(&self.dir.tables_dir(), code);
        let Some(raw) = self.hot.raw(code, &dir).await? else {
            return Ok(Vec::new());
        };
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(self.objects.clone())
            .build_arc()?;
        let trusted = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        trusted.register_table("raw", raw.table)?;
        trusted.register_udf(
            deltalake::datafusion::logical_expr::ScalarUDF::new_from_impl(
                crate::udf::MaskUdf::new(
                    "subject_pseudonym".into(),
                    tongchou_mask::Mask::Pseudonym,
                    key.clone(),
                ),
            ),
        );
        let list = pseudonyms
            .iter()
            .map(|p| format!("'{}'", p.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        let column = crate::session::quoted(field);
        let sql = format!(
            "SELECT DISTINCT CAST({column} AS VARCHAR) AS id FROM raw WHERE subject_pseudonym({column}) IN ({list})"
        );
        let batches = trusted.sql(&sql).await?.collect().await?;
        let found = Answer {
            schema: batches
                .first()
                .map(|b| b.schema())
                .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty())),
            batches,
            rows: 0,
            reads: Vec::new(),
            subject_ids: Vec::new(),
            unit: None,
        };
        Ok(column_values(&found, "id"))
    }
}
