//! A resource as the caller's session sees it: an opaque leaf (DESIGN.md §5).
//!
//! The policy — the grant's row filter on raw rows, then every granted field masked from
//! its raw value in one projection — is planned in a *trusted* context that alone holds
//! the raw Delta table and the mask functions. The caller's context gets a provider whose
//! scan returns [`GovernedExec`]: an execution plan with no children that runs the trusted
//! plan. The caller's optimizer therefore cannot push its predicates, projections, limits
//! or dynamic filters beneath the policy (the error-oracle leaks DESIGN.md records), and
//! EXPLAIN shows the leaf only. Statistics are unknown, filters unsupported.

use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::common::{DataFusionError, Result, Statistics};
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use deltalake::datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use deltalake::datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use deltalake::datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};

/// What a statement read through governed leaves, for its ledger entry.
#[derive(Debug, Default, Clone)]
pub struct Reads {
    pub resources: Vec<String>,
}

pub struct GovernedTable {
    pub resource: String,
    /// The policy, planned in the trusted context.
    policy: DataFrame,
    schema: SchemaRef,
    reads: Arc<Mutex<Reads>>,
}

impl fmt::Debug for GovernedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GovernedTable({})", self.resource)
    }
}

impl GovernedTable {
    pub fn new(resource: String, policy: DataFrame, reads: Arc<Mutex<Reads>>) -> GovernedTable {
        let schema = Arc::new(policy.schema().as_arrow().clone());
        GovernedTable {
            resource,
            policy,
            schema,
            reads,
        }
    }
}

#[async_trait]
impl TableProvider for GovernedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        {
            let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
            if !reads.resources.contains(&self.resource) {
                reads.resources.push(self.resource.clone());
            }
        }
        // Only the caller's choice of governed columns crosses into the trusted plan.
        let mut policy = self.policy.clone();
        if let Some(columns) = projection {
            let names: Vec<&str> = columns
                .iter()
                .map(|&i| self.schema.field(i).name().as_str())
                .collect();
            policy = policy.select_columns(&names)?;
        }
        let task = Arc::new(policy.task_ctx());
        let plan = policy.create_physical_plan().await?;
        Ok(Arc::new(GovernedExec::new(
            self.resource.clone(),
            plan,
            task,
        )))
    }
}

/// The governed leaf in the caller's physical plan.
pub struct GovernedExec {
    resource: String,
    inner: Arc<dyn ExecutionPlan>,
    /// The trusted session's context: its object stores and functions run the policy.
    trusted: Arc<TaskContext>,
    properties: Arc<PlanProperties>,
}

impl GovernedExec {
    fn new(resource: String, inner: Arc<dyn ExecutionPlan>, trusted: Arc<TaskContext>) -> Self {
        let partitions = inner.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(inner.schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        GovernedExec {
            resource,
            inner,
            trusted,
            properties,
        }
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
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, self.trusted.clone())
    }

    fn partition_statistics(&self, _partition: Option<usize>) -> Result<Arc<Statistics>> {
        Ok(Arc::new(Statistics::new_unknown(&self.schema())))
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // The policy's expressions belong to the trusted plan; none are shown here.
        Ok(TreeNodeRecursion::Continue)
    }
}
