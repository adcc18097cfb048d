//! A resource as the caller's session sees it: an opaque leaf (DESIGN.md §5).
//!
//! The policy — the grant's row filter on raw rows, then every granted field masked from
//! its raw value in one projection — is planned in a *trusted* context that alone holds
//! the raw Delta table and the mask functions. The caller's context gets a provider whose
//! scan returns [`GovernedExec`]: an execution plan with no children that runs the trusted
//! plan. The caller's optimizer therefore cannot push its predicates, projections, limits
//! or dynamic filters beneath the policy (the error-oracle leaks DESIGN.md records), and
//! EXPLAIN shows the leaf only. Statistics: the raw row count only (the catalog's public
//! record count), so joins put the smaller side first; no column statistics.
//!
//! One kind of caller predicate does cross, so that a lookup by key reads one row group
//! instead of the table: a comparison that cannot fail (see [`harmless`]) on columns the
//! grant shows in clear. It is added on top of the policy, so it sees only rows the row
//! filter let through, and an expression that cannot fail cannot be an error oracle
//! whichever order the trusted optimizer evaluates it in. The leaf applies every predicate
//! it accepts (pushdown is `Exact`), before any row limit, so the caller's plan does not
//! filter the same rows again.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::stats::Precision;
use deltalake::datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use deltalake::datafusion::common::{Column, DFSchema, DataFusionError, Result, Statistics};
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::datasource::memory::MemorySourceConfig;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::logical_expr::execution_props::ExecutionProps;
use deltalake::datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use deltalake::datafusion::logical_expr::utils::conjunction;
use deltalake::datafusion::logical_expr::{
    Expr, LogicalPlan, Operator, TableProviderFilterPushDown,
};
use deltalake::datafusion::physical_expr::create_physical_expr;
use deltalake::datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use deltalake::datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use deltalake::datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use deltalake::datafusion::physical_plan::filter::FilterExec;
use deltalake::datafusion::physical_plan::limit::GlobalLimitExec;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, collect_partitioned,
};
use futures::StreamExt;
use tongchou_audit::SUBJECT_BYTES;

use crate::hot::{Budget, Hold, compacted};

/// The policy's columns of this prefix are hidden: the keyed hashes of the raw person and
/// enterprise IDs of each row, taken whatever the grant shows, for the ledger (DESIGN.md
/// §5.8). They travel with the rows through the trusted plan and are stripped in the leaf.
pub const SUBJECT_COLUMN: &str = "__tongchou_subject_";

pub struct GovernedTable {
    pub resource: String,
    /// The policy, planned in the trusted context: the granted columns, then the hidden
    /// subject columns (see [`SUBJECT_COLUMN`]).
    policy: DataFrame,
    /// The granted columns: what the caller sees.
    schema: SchemaRef,
    /// The policy's hidden subject columns, always scanned, never shown.
    subjects: Vec<String>,
    /// Granted fields shown without a mask.
    clear: HashSet<String>,
    /// The policy's physical plans, one per set of columns scanned, made once when scans
    /// need no optimizing (see [`GovernedTable::planned_once`]).
    planned: Option<Mutex<HashMap<Vec<usize>, Arc<Planned>>>>,
    /// Where the policy's output over rows held in memory is kept, computed once per set
    /// of columns, while it fits.
    masked: Option<Arc<Budget>>,
    /// Whether the policy has a row filter (else only masks make its output differ from
    /// the raw rows).
    filtered: bool,
    /// The raw table's row count, the only statistic the caller's planner gets (to
    /// choose join sides): it is the catalog's public record count, where column
    /// statistics would carry raw values.
    raw_rows: Option<usize>,
}

/// How many column sets of one table keep a plan (each a few kilobytes).
const COLUMN_SETS_KEPT: usize = 64;

struct Planned {
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    /// The budget's hold on the policy's output, when `plan` reads it from memory.
    _kept: Option<Hold>,
}

impl Planned {
    /// The policy's output computed now and read from memory by later scans, when it fits
    /// `budget`: masks are then computed once per table version, not per statement.
    async fn kept(self, budget: &Arc<Budget>) -> Result<Planned> {
        let output = collect_partitioned(self.plan.clone(), self.task.clone()).await?;
        let output = output
            .iter()
            .map(|batches| batches.iter().map(compacted).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        let bytes = output
            .iter()
            .flatten()
            .map(|b| b.get_array_memory_size())
            .sum();
        let Some(hold) = budget.hold(bytes) else {
            return Ok(self);
        };
        Ok(Planned {
            plan: MemorySourceConfig::try_new_exec(&output, self.plan.schema(), None)?,
            task: self.task,
            _kept: Some(hold),
        })
    }
}

impl fmt::Debug for GovernedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GovernedTable({})", self.resource)
    }
}

impl GovernedTable {
    pub fn new(resource: String, policy: DataFrame, clear: Vec<String>) -> GovernedTable {
        let all = policy.schema().as_arrow();
        let (subjects, shown): (Vec<_>, Vec<_>) = all
            .fields()
            .iter()
            .partition(|f| f.name().starts_with(SUBJECT_COLUMN));
        let schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
            shown.into_iter().cloned().collect::<Vec<_>>(),
            all.metadata().clone(),
        ));
        let subjects = subjects.iter().map(|f| f.name().clone()).collect();
        GovernedTable {
            resource,
            policy,
            schema,
            subjects,
            clear: clear.into_iter().collect(),
            planned: None,
            masked: None,
            filtered: false,
            raw_rows: None,
        }
    }

    pub fn with_raw_rows(mut self, rows: Option<usize>) -> GovernedTable {
        self.raw_rows = rows;
        self
    }

    /// A table over rows held in memory: nothing below the policy prunes, so the policy
    /// is planned once per set of columns, its output kept in memory while `masked` has
    /// room, and each scan only adds the caller's predicates and limit on top — unless the
    /// policy reads the clock (`now()` in a row filter), which must be read again for each
    /// statement.
    pub async fn planned_once(mut self, masked: Arc<Budget>) -> Result<GovernedTable> {
        let plan = self.policy.logical_plan();
        let reads_clock = crate::varies_between_statements(plan);
        if reads_clock {
            return Ok(self);
        }
        let every_column: Vec<usize> = (0..self.schema.fields().len()).collect();
        if self.plan_columns(&every_column).await?.is_some() {
            self.planned = Some(Mutex::new(HashMap::new()));
            self.masked = Some(masked);
            self.filtered = plan
                .exists(|node| Ok(matches!(node, LogicalPlan::Filter(_))))
                .unwrap_or(true);
        }
        Ok(self)
    }

    /// The policy for these columns only (masks of others not computed), planned; `None`
    /// when the plan cannot be run more than once.
    async fn plan_columns(&self, columns: &[usize]) -> Result<Option<Planned>> {
        let policy = self
            .policy
            .clone()
            .select_columns(&self.with_subjects(columns))?;
        let task = Arc::new(policy.task_ctx());
        let plan = policy.create_physical_plan().await?;
        Ok(reusable(&plan).then_some(Planned {
            plan,
            task,
            _kept: None,
        }))
    }

    /// The names of `columns`, then the hidden subject columns.
    fn with_subjects(&self, columns: &[usize]) -> Vec<&str> {
        columns
            .iter()
            .map(|&i| self.schema.field(i).name().as_str())
            .chain(self.subjects.iter().map(String::as_str))
            .collect()
    }

    /// The plan kept for these columns, planned on first use.
    async fn planned_for(&self, columns: Vec<usize>) -> Result<Option<Arc<Planned>>> {
        let Some(kept) = &self.planned else {
            return Ok(None);
        };
        let room = {
            let kept = kept.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(planned) = kept.get(&columns) {
                return Ok(Some(planned.clone()));
            }
            kept.len() < COLUMN_SETS_KEPT
        };
        let Some(mut planned) = self.plan_columns(&columns).await? else {
            return Ok(None);
        };
        if !room {
            return Ok(Some(Arc::new(planned)));
        }
        let computed = self.filtered
            || columns
                .iter()
                .any(|&i| !self.clear.contains(self.schema.field(i).name()));
        if let Some(budget) = self.masked.as_ref().filter(|_| computed) {
            planned = planned.kept(budget).await?;
        }
        let planned = Arc::new(planned);
        kept.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(columns, planned.clone());
        Ok(Some(planned))
    }

    /// `planned` (already down to the scanned columns) with the caller's harmless
    /// predicates on top, then the limit.
    fn on_top(
        &self,
        planned: &Planned,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut plan = planned.plan.clone();
        if let Some(predicate) = conjunction(filters.iter().cloned()) {
            let schema = DFSchema::try_from(plan.schema().as_ref().clone())?;
            let predicate = create_physical_expr(
                &unqualified(predicate)?,
                &schema,
                &ExecutionProps::new(),
                &PhysicalPlanningContext::default(),
            )?;
            plan = Arc::new(FilterExec::try_new(predicate, plan)?);
        }
        if let Some(limit) = limit {
            if plan.output_partitioning().partition_count() > 1 {
                plan = Arc::new(CoalescePartitionsExec::new(plan));
            }
            plan = Arc::new(GlobalLimitExec::new(plan, 0, Some(limit)));
        }
        Ok(plan)
    }

    /// The rows a scan with `filters` is estimated to return: the raw count, cut as
    /// DataFusion's own filter estimates it (default selectivity, 20 %) — the caller's
    /// plan no longer has that filter above the leaf to estimate it there, and joins
    /// choose their build side by it.
    fn rows_after(&self, filters: &[Expr]) -> Option<usize> {
        self.raw_rows
            .map(|rows| if filters.is_empty() { rows } else { rows / 5 })
    }

    /// `columns`, then the other columns `filters` read: a pushed predicate is applied in
    /// the leaf even on columns the caller does not select.
    fn with_filtered_columns(&self, mut columns: Vec<usize>, filters: &[Expr]) -> Vec<usize> {
        for filter in filters {
            for column in filter.column_refs() {
                if let Ok(i) = self.schema.index_of(&column.name)
                    && !columns.contains(&i)
                {
                    columns.push(i);
                }
            }
        }
        columns
    }

    /// The clear column `expr` names, with its type.
    fn clear_column(&self, expr: &Expr) -> Option<DataType> {
        let Expr::Column(column) = expr else {
            return None;
        };
        if !self.clear.contains(&column.name) {
            return None;
        }
        let (_, field) = self.schema.column_with_name(&column.name)?;
        Some(field.data_type().clone())
    }

    /// The type of a value `expr` yields without any chance of failing: a clear column, a
    /// string cast of one, a literal, or a typed placeholder (a literal to come: plans are
    /// reused with their values bound before any scan, see `reuse`).
    fn safe_value(&self, expr: &Expr) -> Option<DataType> {
        match expr {
            Expr::Literal(value, _) => Some(value.data_type()),
            Expr::Placeholder(p) => p.field.as_ref().map(|f| f.data_type().clone()),
            Expr::Cast(cast) if is_text(cast.field.data_type()) => self
                .clear_column(&cast.expr)
                .filter(is_text)
                .map(|_| cast.field.data_type().clone()),
            _ => self.clear_column(expr),
        }
    }

    /// Whether evaluating `expr` on any raw row can neither fail nor touch a masked or
    /// ungranted column: comparisons of same-typed clear columns and literals, `IN` lists,
    /// null tests, and `AND`/`OR`/`NOT` of those.
    pub fn harmless(&self, expr: &Expr) -> bool {
        match expr {
            Expr::BinaryExpr(binary) if matches!(binary.op, Operator::And | Operator::Or) => {
                self.harmless(&binary.left) && self.harmless(&binary.right)
            }
            Expr::BinaryExpr(binary)
                if matches!(
                    binary.op,
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::Lt
                        | Operator::LtEq
                        | Operator::Gt
                        | Operator::GtEq
                        | Operator::IsDistinctFrom
                        | Operator::IsNotDistinctFrom
                ) =>
            {
                comparable(
                    self.safe_value(&binary.left),
                    self.safe_value(&binary.right),
                )
            }
            Expr::InList(list) => {
                let item = self.safe_value(&list.expr);
                item.is_some()
                    && list.list.iter().all(|v| {
                        matches!(v, Expr::Literal(..))
                            && comparable(item.clone(), self.safe_value(v))
                    })
            }
            Expr::IsNull(e) | Expr::IsNotNull(e) => self.safe_value(e).is_some(),
            Expr::Not(e) => self.harmless(e),
            _ => false,
        }
    }
}

/// Whether every operator of `plan` starts afresh on each `execute` (a repartition, for
/// one, can be run once only).
fn reusable(plan: &Arc<dyn ExecutionPlan>) -> bool {
    matches!(
        plan.name(),
        "DataSourceExec"
            | "FilterExec"
            | "ProjectionExec"
            | "CoalesceBatchesExec"
            | "EmptyExec"
            | "PlaceholderRowExec"
    ) && plan.children().into_iter().all(reusable)
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
    )
}

/// Two values of these types compare without a cast that could fail.
fn comparable(left: Option<DataType>, right: Option<DataType>) -> bool {
    match (left, right) {
        (Some(l), Some(r)) => l == r || (is_text(&l) && is_text(&r)),
        _ => false,
    }
}

/// `expr` with its columns unqualified, to be resolved against the policy's output.
fn unqualified(expr: Expr) -> Result<Expr> {
    expr.transform(|e| match e {
        Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::from_name(c.name)))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

#[async_trait]
impl TableProvider for GovernedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// A resource is a table to its readers (psql's `\dt`, JDBC's `getTables`), whatever
    /// policy stands between them and the raw rows.
    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.harmless(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Only the caller's choice of governed columns, harmless predicates and a row
        // limit (applied after them) cross into the trusted plan.
        if !filters.iter().all(|f| self.harmless(f)) {
            return Err(DataFusionError::Internal(
                "a governed scan was handed a predicate it did not accept".into(),
            ));
        }
        let columns = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let shown = columns.len();
        let scanned = self.with_filtered_columns(columns, filters);
        if let Some(planned) = self.planned_for(scanned).await? {
            let plan = self.on_top(&planned, filters, limit)?;
            return Ok(Arc::new(GovernedExec::new(
                self.resource.clone(),
                plan,
                planned.task.clone(),
                self.rows_after(filters),
                (shown, self.subjects.len()),
            )?));
        }
        let mut policy = self.policy.clone();
        for filter in filters {
            policy = policy.filter(unqualified(filter.clone())?)?;
        }
        if let Some(limit) = limit {
            policy = policy.limit(0, Some(limit))?;
        }
        let columns = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        policy = policy.select_columns(&self.with_subjects(&columns))?;
        // The trusted plan only scans, filters and projects (nothing that holds memory
        // beyond the batches in flight); the caller's operators above it run under the
        // statement's memory pool.
        let task = Arc::new(policy.task_ctx());
        let plan = policy.create_physical_plan().await?;
        Ok(Arc::new(GovernedExec::new(
            self.resource.clone(),
            plan,
            task,
            self.rows_after(filters),
            (columns.len(), self.subjects.len()),
        )?))
    }
}

/// The people and enterprises whose raw rows left the governed leaves of one statement:
/// the keyed hashes of their IDs, as the ledger indexes them. A statement that wants them
/// puts one in its task's session config; leaves add to it as their rows go up.
#[derive(Debug, Default)]
pub struct Touched(Mutex<HashSet<[u8; SUBJECT_BYTES], BuildHasherDefault<KeyedHash>>>);

/// Hashes a subject by its own first bytes: they are an HMAC's output, uniform, and no one
/// without the ledger's key can choose them to collide — a statement touching hundreds of
/// thousands of rows pays no second hash per row.
#[derive(Debug, Default)]
pub struct KeyedHash(u64);

impl std::hash::Hasher for KeyedHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(first) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*first);
        }
    }

    // The length an array hashes first says nothing.
    fn write_usize(&mut self, _: usize) {}
}

impl Touched {
    fn add(&self, column: &ArrayRef) {
        let Some(hashes) = column.as_fixed_size_binary_opt() else {
            return;
        };
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for hash in hashes.iter().flatten() {
            if let Ok(hash) = hash.try_into() {
                seen.insert(hash);
            }
        }
    }

    pub fn take(&self) -> Vec<[u8; SUBJECT_BYTES]> {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = std::mem::take(&mut *seen).into_iter().collect();
        all.sort_unstable();
        all
    }
}

/// The governed leaf in the caller's physical plan.
pub struct GovernedExec {
    resource: String,
    /// The trusted plan: the shown columns first, then any it scanned only to filter, and
    /// the subject columns last.
    inner: Arc<dyn ExecutionPlan>,
    /// How many of `inner`'s columns go up.
    shown: usize,
    /// How many of its last columns are subject columns.
    subjects: usize,
    /// The trusted session's context: its object stores and functions run the policy.
    trusted: Arc<TaskContext>,
    properties: Arc<PlanProperties>,
    raw_rows: Option<usize>,
}

impl GovernedExec {
    fn new(
        resource: String,
        inner: Arc<dyn ExecutionPlan>,
        trusted: Arc<TaskContext>,
        raw_rows: Option<usize>,
        (shown, subjects): (usize, usize),
    ) -> Result<Self> {
        let partitions = inner.output_partitioning().partition_count();
        let schema = Arc::new(inner.schema().project(&(0..shown).collect::<Vec<_>>())?);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(GovernedExec {
            resource,
            inner,
            shown,
            subjects,
            trusted,
            properties,
            raw_rows,
        })
    }

    /// The shown columns of `batch`; its last `subjects` columns into `touched`.
    fn go_up(
        batch: RecordBatch,
        (shown, subjects): (usize, usize),
        touched: Option<&Touched>,
    ) -> Result<RecordBatch> {
        if let Some(touched) = touched {
            let first = batch.num_columns().saturating_sub(subjects);
            for column in &batch.columns()[first..] {
                touched.add(column);
            }
        }
        Ok(batch.project(&(0..shown).collect::<Vec<_>>())?)
    }
}

impl fmt::Debug for GovernedExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GovernedScan: {}", self.resource)
    }
}

impl DisplayAs for GovernedExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "GovernedScan: {}", self.resource)
    }
}

impl ExecutionPlan for GovernedExec {
    fn name(&self) -> &str {
        "GovernedScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "a governed scan has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let touched = context.session_config().get_extension::<Touched>();
        let columns = (self.shown, self.subjects);
        let rows = self.inner.execute(partition, self.trusted.clone())?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            rows.map(move |batch| GovernedExec::go_up(batch?, columns, touched.as_deref())),
        )))
    }

    /// At most the raw row count, inexact, for the whole scan; nothing per column.
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        let mut statistics = Statistics::new_unknown(&self.schema());
        if let (None, Some(rows)) = (partition, self.raw_rows) {
            statistics.num_rows = Precision::Inexact(rows);
        }
        Ok(Arc::new(statistics))
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // The policy's expressions belong to the trusted plan; none are shown here.
        Ok(TreeNodeRecursion::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use deltalake::datafusion::logical_expr::expr::Placeholder;
    use deltalake::datafusion::logical_expr::{cast, col, lit};
    use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

    fn placeholder(id: &str, data_type: Option<DataType>) -> Expr {
        let field = data_type.map(|t| Arc::new(arrow::datatypes::Field::new(id, t, true)));
        Expr::Placeholder(Placeholder::new_with_field(id.into(), field))
    }

    /// A resource with clear `code` and `amount` and a masked `id`.
    fn table() -> GovernedTable {
        let batch = RecordBatch::try_from_iter([
            ("code", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
            ("amount", Arc::new(Int64Array::from(vec![1]))),
            ("id", Arc::new(StringArray::from(vec!["P"]))),
        ])
        .unwrap();
        let policy = SessionContext::new().read_batch(batch).unwrap();
        GovernedTable::new("R".into(), policy, vec!["code".into(), "amount".into()])
    }

    fn texts(batches: &[RecordBatch]) -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| {
                let column = arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
                let column = column.as_any().downcast_ref::<StringArray>().unwrap();
                column
                    .iter()
                    .map(|v| v.unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_policy_planned_once_still_filters_first_and_takes_predicates_on_top() {
        let one = || SessionConfig::new().with_target_partitions(1);
        for (trusted, once, room) in [
            (SessionContext::new_with_config(one()), true, 1 << 20),
            (SessionContext::new_with_config(one()), true, 0),
            (SessionContext::new(), false, 1 << 20),
        ] {
            let masked = Budget::new(room);
            governed_answers(trusted, once, masked.clone()).await;
            assert_eq!(masked.used(), 0, "every hold is given back with the table");
        }
    }

    async fn governed_answers(trusted: SessionContext, once: bool, masked: Arc<Budget>) {
        let batch = RecordBatch::try_from_iter([
            (
                "code",
                Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
            ),
            ("amount", Arc::new(Int64Array::from(vec![1, 2, 3]))),
            ("id", Arc::new(StringArray::from(vec!["x", "y", "z"]))),
        ])
        .unwrap();
        trusted.register_batch("raw", batch).unwrap();
        let policy = trusted
            .sql("SELECT code, amount, upper(id) AS id FROM raw WHERE amount > 1")
            .await
            .unwrap();
        let table = GovernedTable::new("R".into(), policy, vec!["code".into(), "amount".into()])
            .planned_once(masked.clone())
            .await
            .unwrap();
        assert_eq!(table.planned.is_some(), once);
        let table = Arc::new(table);
        let caller = SessionContext::new();
        caller.register_table("t", table.clone()).unwrap();
        let run = async |sql: &str| texts(&caller.sql(sql).await.unwrap().collect().await.unwrap());
        assert_eq!(run("SELECT id FROM t WHERE code = 'c'").await, ["Z"]);
        assert!(run("SELECT id FROM t WHERE code = 'a'").await.is_empty());
        assert_eq!(
            run("SELECT code FROM t WHERE code IN ('a', 'b')").await,
            ["b"]
        );
        // The limit is applied after the pushed predicate, on a column not selected.
        assert_eq!(
            run("SELECT amount FROM t WHERE code <> 'b' LIMIT 1").await,
            ["3"]
        );
        let first = run("SELECT amount FROM t LIMIT 1").await;
        assert!(first == ["2"] || first == ["3"], "{first:?}");
        assert_eq!(run("SELECT count(*) FROM t WHERE id <> 'Y'").await, ["1"]);
        assert_eq!(run("SELECT count(*) FROM t").await, ["2"]);
        if let Some(planned) = &table.planned {
            let planned = planned.lock().unwrap();
            let room = masked.limit > 0;
            assert!(!planned.is_empty(), "plans are kept for the next statement");
            // Counting rows needs no column: its kept output fits any budget.
            assert!(
                planned
                    .iter()
                    .all(|(columns, p)| p._kept.is_some() == (room || columns.is_empty()))
            );
            assert_eq!(masked.used() > 0, room);
        }
        drop(caller);
        drop(table);
    }

    #[tokio::test]
    async fn raw_rows_shown_as_they_are_are_not_copied() {
        let trusted =
            SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        let batch = RecordBatch::try_from_iter([(
            "code",
            Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
        )])
        .unwrap();
        trusted.register_batch("raw", batch).unwrap();
        let policy = trusted.sql("SELECT code FROM raw").await.unwrap();
        let masked = Budget::new(1 << 20);
        let table = GovernedTable::new("R".into(), policy, vec!["code".into()])
            .planned_once(masked.clone())
            .await
            .unwrap();
        let table = Arc::new(table);
        let caller = SessionContext::new();
        caller.register_table("t", table.clone()).unwrap();
        for _ in 0..2 {
            let batches = caller
                .sql("SELECT code FROM t WHERE code = 'b'")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            assert_eq!(texts(&batches), ["b"]);
        }
        let planned = table.planned.as_ref().unwrap().lock().unwrap();
        assert_eq!(planned.len(), 1, "one plan, kept");
        assert!(planned.values().all(|p| p._kept.is_none()));
        assert_eq!(masked.used(), 0);
    }

    #[tokio::test]
    async fn a_policy_that_reads_the_clock_is_planned_per_statement() {
        let trusted = SessionContext::new();
        let policy = trusted
            .sql("SELECT 1 AS n WHERE now() > to_timestamp(0)")
            .await
            .unwrap();
        let table = GovernedTable::new("R".into(), policy, vec!["n".into()])
            .planned_once(Budget::new(1 << 20))
            .await
            .unwrap();
        assert!(table.planned.is_none());
    }

    #[test]
    fn only_predicates_that_cannot_fail_on_clear_columns_cross() {
        let t = table();
        for crossing in [
            col("code").eq(lit("x")),
            col("amount")
                .gt(lit(5i64))
                .and(col("code").in_list(vec![lit("a"), lit("b")], false)),
            col("code").is_null().or(col("amount").not_eq(lit(0i64))),
            cast(col("code"), DataType::Utf8View).eq(lit("x")),
            col("amount").lt_eq(placeholder("$1", Some(DataType::Int64))),
        ] {
            assert!(t.harmless(&crossing), "{crossing} should cross");
        }
        for staying in [
            col("id").eq(lit("x")),
            col("amount").eq(lit(5i32)),
            cast(col("code"), DataType::Int64).eq(lit(5i64)),
            (lit(1i64) / col("amount")).eq(lit(1i64)),
            col("code").like(lit("a%")),
            col("code").eq(lit("x")).or(col("id").eq(lit("y"))),
            col("code").in_list(vec![col("id")], false),
            col("missing").eq(lit("x")),
            col("amount").eq(placeholder("$1", None)),
            col("amount").eq(placeholder("$1", Some(DataType::Utf8))),
        ] {
            assert!(
                !t.harmless(&staying),
                "{staying} must stay above the policy"
            );
        }
    }
}
