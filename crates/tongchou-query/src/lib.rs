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

pub mod bounds;
pub mod catalog;
pub mod deliver;
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
use deltalake::datafusion::execution::object_store::{
    DefaultObjectStoreRegistry, ObjectStoreRegistry,
};
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::execution::session_state::SessionState;
use deltalake::datafusion::execution::{FunctionRegistry, TaskContext};
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use deltalake::datafusion::physical_plan::execute_stream;
use deltalake::datafusion::prelude::SQLOptions;
use futures::StreamExt;
use sqlx::Row;
use tongchou_access::{AccessError, Policy, PolicySet};
use tongchou_audit::SubjectKey;
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
    /// Over the statement's memory or what one function may build.
    #[error("the statement needs more memory than allowed: {0}")]
    Exhausted(String),
    #[error("metadata database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the mask key: {0}")]
    Key(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Exchange(#[from] tongchou_exchange::ExchangeError),
    #[error("the delivery could not be recorded in the ledger, so it was not released: {0}")]
    NotRecorded(String),
}

impl QueryError {
    /// The error with every quoted value replaced by `'…'`: an error raised while rows
    /// flow (a failed cast, say) quotes the value it failed on, and a statement must not
    /// hand out rows through its error message, past its row count and the ledger's digest.
    pub fn without_values(self) -> QueryError {
        match self {
            QueryError::Sql(text) => QueryError::Sql(unquoted(&text)),
            QueryError::Refused(text) => QueryError::Refused(unquoted(&text)),
            QueryError::Exhausted(text) => QueryError::Exhausted(unquoted(&text)),
            other => other,
        }
    }
}

/// `text` with the contents of each single-quoted stretch replaced by `…`.
fn unquoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(512));
    let mut inside = false;
    for c in text.chars() {
        if c == '\'' {
            if inside {
                out.push('…');
            }
            inside = !inside;
            out.push(c);
        } else if !inside {
            out.push(c);
        }
    }
    out
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
            QueryError::Exhausted(text)
        } else {
            QueryError::Sql(text)
        }
    }
}

/// Per-statement bounds. The pool (`memory_bytes`) holds what operators keep; what
/// functions build is bounded per value and per batch ([`bounds`]). By default a statement
/// stays near 1.5 GiB: the pool, the constants it folds (one value's worth) and a batch in
/// flight — under the 2 GiB a server is given.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_rows: u64,
    pub timeout: Duration,
    pub memory_bytes: usize,
    /// The most one value a function builds may weigh.
    pub value_bytes: usize,
    /// The most one call of a function may build over a batch of rows.
    pub batch_bytes: usize,
    /// The most an answer may hold: it is held whole until it is delivered.
    pub result_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_rows: 100_000,
            timeout: Duration::from_secs(60),
            memory_bytes: 1 << 30,
            value_bytes: 64 << 20,
            batch_bytes: 256 << 20,
            result_bytes: 256 << 20,
        }
    }
}

impl Limits {
    pub fn bounds(&self) -> bounds::Bounds {
        bounds::Bounds {
            value: self.value_bytes,
            batch: self.batch_bytes,
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
}

/// A statement's answer and what it read.
pub struct Answer {
    pub batches: Vec<RecordBatch>,
    pub schema: arrow::datatypes::SchemaRef,
    pub rows: u64,
    pub reads: Vec<ResourceRead>,
    /// The people and enterprises whose raw rows the statement touched — every row that
    /// left a governed leaf, whatever the mask, alias or aggregate above it — as the
    /// ledger's keyed hashes, sorted. Never shown to the caller.
    pub subjects: Vec<[u8; tongchou_audit::SUBJECT_BYTES]>,
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
    /// The ledger's key for the people and enterprises a statement touches.
    subjects: SubjectKey,
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
    by_code: HashMap<String, Visible>,
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
    /// The engine of a data directory; `subjects` is the ledger's key for the people and
    /// enterprises statements touch (`Audit::subject_key`).
    pub fn open(
        dir: DataDir,
        policy: Arc<Policy>,
        subjects: SubjectKey,
    ) -> Result<Engine, QueryError> {
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
            subjects,
        })
    }

    /// Keeps decoded tables (and as much again of their governed views' masked rows)
    /// within `bytes`, for a server with a memory ceiling; set before the first statement.
    pub fn keep_tables_within(&mut self, bytes: usize) {
        self.hot = Arc::new(hot::HotTables::new(bytes, self.objects.clone()));
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
                let (unit_name, name): (String, String) = (r.get("unit_name"), r.get("name"));
                let visible = Visible {
                    code,
                    unit_name: unit_name.clone(),
                    name: name.clone(),
                    access,
                };
                units.entry(unit_name).or_default().insert(name, visible);
            }
        }
        Ok(units)
    }

    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    /// The decision for `user` reading resource `code` for `purpose`, as every statement
    /// takes it.
    pub async fn decide(
        &self,
        user: &str,
        code: &str,
        purpose: &str,
    ) -> Result<tongchou_access::Access, QueryError> {
        let set = self.policy.current().await?;
        Ok(set.decide(user, code, purpose, jiff::Timestamp::now())?)
    }

    /// The current version of resource `code`'s table; refused when it has no data yet.
    pub async fn version(&self, code: &str) -> Result<u64, QueryError> {
        let dir = tongchou_exchange::table::table_dir(&self.dir.tables_dir(), code);
        let table = tongchou_exchange::table::open(&dir).await?;
        table
            .and_then(|t| t.version())
            .ok_or_else(|| QueryError::Refused(format!("resource {code} has no data yet")))
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
        state.register_function_rewrite(Arc::new(bounds::BoundFunctions(limits.bounds())))?;
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
        Ok((bounds::folding(|| state.optimize(&plan))?, read))
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
        self.execute(user, purpose, sql, parameters, true).await
    }

    /// A subscriber's delivery of resource `code` as a statement like any other, under the
    /// caller's grant for `purpose`: with `after` none, the resource as it stands at version
    /// `to` (every row an `insert`); else the changes after version `after` up to `to`.
    /// Rows come with `_change` and `_version`; no row cap (deliveries are bulk), the time
    /// and memory limits hold. A resource the caller may not read is refused with the
    /// decision's reason.
    pub async fn delivery(
        &self,
        user: &str,
        purpose: &str,
        code: &str,
        after: Option<u64>,
        to: u64,
    ) -> Result<(String, Answer), QueryError> {
        let (prepared, _, _) = self.session(user, purpose).await?;
        let Some(visible) = prepared.by_code.get(code) else {
            let set = self.policy.current().await?;
            set.decide(user, code, purpose, jiff::Timestamp::now())?;
            return Err(QueryError::Refused(format!(
                "resource {code} has no data to deliver yet"
            )));
        };
        let sql = match after {
            None => format!(
                "SELECT *, 'insert' AS \"_change\", CAST({to} AS BIGINT) AS \"_version\" FROM {}",
                visible.sql_name(&format!("@v{to}"))
            ),
            Some(after) => format!(
                "SELECT * FROM {} ORDER BY \"_version\"",
                visible.sql_name(&format!("$changes@v{after}..v{to}"))
            ),
        };
        let answer = self.execute(user, purpose, &sql, &[], false).await?;
        Ok((sql, answer))
    }

    /// Plans and runs one statement; `capped` applies the caller's row cap.
    async fn execute(
        &self,
        user: &str,
        purpose: &str,
        sql: &str,
        parameters: &[Option<String>],
        capped: bool,
    ) -> Result<Answer, QueryError> {
        let (prepared, state, limits) = self.session(user, purpose).await?;
        // Deliveries (pulls) are bulk: written out as they come, not held as an answer.
        let (max_rows, max_bytes) = if capped {
            (limits.max_rows, limits.result_bytes)
        } else {
            (u64::MAX, usize::MAX)
        };
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .with_object_store_registry(self.objects.clone())
            .build_arc()?;
        let touched = Arc::new(governed::Touched::default());
        let collected = tokio::time::timeout(limits.timeout, async {
            let (plan, read) = self.optimized(&prepared, &state, sql, parameters).await?;
            let physical = state
                .query_planner()
                .create_physical_plan(&plan, &state)
                .await?;
            // Planned in the session, run under this statement's own memory pool, with the
            // leaves noting whom they touch.
            let config = state.config().clone().with_extension(touched.clone());
            let task = Arc::new(
                TaskContext::from(&state)
                    .with_session_config(config)
                    .with_runtime(runtime),
            );
            let mut stream = execute_stream(physical, task)?;
            let (mut batches, mut rows, mut bytes) = (Vec::new(), 0u64, 0usize);
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(|e| QueryError::from(e).without_values())?;
                rows += batch.num_rows() as u64;
                bytes += batch.get_array_memory_size();
                if rows > max_rows {
                    return Err(QueryError::TooManyRows(max_rows));
                }
                if bytes > max_bytes {
                    return Err(QueryError::Exhausted(format!(
                        "the answer holds over {} MiB; narrow it (fewer or shorter columns, WHERE, LIMIT)",
                        limits.result_bytes >> 20
                    )));
                }
                batches.push(batch);
            }
            Ok((plan, read, batches, rows))
        });
        // A panic inside the engine (an Arrow buffer past its offsets, say) fails this
        // statement, recorded like any failure, instead of the connection that sent it.
        let collected = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(collected))
            .await
            .map_err(|panic| {
                QueryError::Sql(format!(
                    "the engine could not run this statement: {}",
                    panic_text(&panic)
                ))
                .without_values()
            })?
            .map_err(|_| QueryError::Timeout(limits.timeout.as_secs()))??;
        let (plan, read, batches, rows) = collected;
        let schema = Arc::new(plan.schema().as_arrow().clone());
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
            })
            .collect();
        Ok(Answer {
            batches,
            schema,
            rows,
            reads,
            subjects: touched.take(),
            unit: Some(prepared.unit.clone()),
        })
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
                (key.clone(), self.subjects.clone()),
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
            by_code,
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

/// What a panic said, when it said it as text.
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "it failed inside".into())
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn errors_raised_by_rows_lose_the_values_they_quote() {
        let e = QueryError::Sql(
            "Cast error: Cannot cast string 'CRJ01|P5XY|两**;CRJ02' to value of Int32 type".into(),
        );
        assert_eq!(
            e.without_values().to_string(),
            "Cast error: Cannot cast string '…' to value of Int32 type"
        );
        assert_eq!(unquoted("no quotes"), "no quotes");
        assert_eq!(unquoted("a 'b' c 'unterminated"), "a '…' c '");
    }
}
