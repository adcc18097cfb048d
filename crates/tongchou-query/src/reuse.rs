//! Plans reused within one (user, purpose) session, so that a lookup repeated with other
//! keys is analysed and optimised once instead of per statement.
//!
//! A statement's *shape* is its query with the literals its top-level `WHERE` compares
//! columns with lifted out as parameters (`credit_code = '9144…'` becomes
//! `credit_code = $1`); statements sent with parameters already are their own shape. The
//! shape is planned, checked and optimised in the session once; each statement of that
//! shape binds its own values to the optimised plan. The session is the caller's own
//! (same grants, same governed leaves), binding changes values only, and the leaves
//! re-check every predicate they are handed — so a reused plan enforces exactly what a
//! fresh one would. A shape is planned afresh when a table it reads has a newer version
//! (the session then hands out a new leaf), and never kept when it calls a function
//! whose value changes between statements (`now()` is folded while optimising).
//!
//! Only where binding is certain to give what the literal would have meant is a lifted
//! literal bound: text compared with text, whole numbers with numbers, other numbers
//! with floating point. Anything else is planned as written.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use arrow::datatypes::DataType;
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::datasource::source_as_provider;
use deltalake::datafusion::execution::session_state::SessionState;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::sql::parser::Statement as Parsed;
use deltalake::datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, SetExpr, Statement, UnaryOperator, Value, ValueWithSpan,
};

/// Shapes kept per session; when full they are all dropped and planned again as used.
const SHAPES_KEPT: usize = 256;

/// A value taken out of a statement, and how it was written.
#[derive(Debug, Clone, PartialEq)]
enum Lifted {
    /// A quoted string.
    Text(String),
    /// A number without a fraction or exponent.
    Whole(String),
    /// Any other number.
    Number(String),
    /// Sent as a parameter (extended protocol): bound as the engine always binds those.
    Given(Option<String>),
}

impl Lifted {
    fn text(&self) -> Option<String> {
        match self {
            Lifted::Text(t) | Lifted::Whole(t) | Lifted::Number(t) => Some(t.clone()),
            Lifted::Given(t) => t.clone(),
        }
    }

    /// Whether binding this value where the plan expects `want` means what the literal
    /// meant (the planner would otherwise have coerced the literal, or the column).
    fn binds_as_written(&self, want: Option<&DataType>) -> bool {
        let Some(want) = want else {
            return matches!(self, Lifted::Given(_));
        };
        match self {
            Lifted::Given(_) => true,
            Lifted::Text(_) => matches!(
                want,
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            ),
            Lifted::Whole(_) => want.is_integer() || want.is_floating() || want.is_decimal(),
            Lifted::Number(_) => want.is_floating(),
        }
    }
}

/// An optimised plan with placeholders, the type it expects at each, and the resources
/// the statement reads.
struct Shape {
    plan: LogicalPlan,
    types: Vec<Option<DataType>>,
    read: Vec<String>,
}

/// A session's shapes, by their text.
#[derive(Default)]
pub struct Plans {
    shapes: Mutex<HashMap<String, Arc<Shape>>>,
}

impl Plans {
    /// The optimised plan of `sql` with `parameters` bound and the resources it reads,
    /// from its shape (planned now if new); `None` when the statement is not reusable or anything on this path
    /// fails — the caller then plans it as written, which gives the statement's own
    /// answer or error.
    pub async fn reuse(
        &self,
        state: &SessionState,
        sql: &str,
        parameters: &[Option<String>],
    ) -> Option<(LogicalPlan, Vec<String>)> {
        let dialect = state.config().options().sql_parser.dialect;
        let mut statement = state.sql_to_statement(sql, &dialect).ok()?;
        let values = lift(&mut statement, parameters)?;
        let key = statement.to_string();
        let known = self.lock().get(&key).cloned();
        let shape = match known {
            Some(shape) if reads_current_tables(state, &shape.plan).await => shape,
            _ => {
                let shape = Arc::new(Shape::plan(state, statement).await?);
                let mut shapes = self.lock();
                if shapes.len() >= SHAPES_KEPT {
                    shapes.clear();
                }
                shapes.insert(key, shape.clone());
                shape
            }
        };
        Some((shape.bind(&values)?, shape.read.clone()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Shape>>> {
        self.shapes.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Shape {
    async fn plan(state: &SessionState, statement: Parsed) -> Option<Shape> {
        let plan = state.statement_to_plan(statement).await.ok()?;
        let plan = crate::only_queries(plan).ok()?;
        if crate::varies_between_statements(&plan) {
            return None;
        }
        let read = crate::resources_read(&plan);
        let plan = crate::bounds::folding(|| state.optimize(&plan)).ok()?;
        let types = crate::parameter_types(&plan).ok()?;
        Some(Shape { plan, types, read })
    }

    fn bind(&self, values: &[Lifted]) -> Option<LogicalPlan> {
        if values.len() != self.types.len() {
            return None;
        }
        if values.is_empty() {
            return Some(self.plan.clone());
        }
        let fits = values
            .iter()
            .zip(&self.types)
            .all(|(v, want)| v.binds_as_written(want.as_ref()));
        if !fits {
            return None;
        }
        let texts: Vec<Option<String>> = values.iter().map(Lifted::text).collect();
        crate::bind(self.plan.clone(), &texts, &self.types).ok()
    }
}

/// Takes the statement's values out, leaving its shape: the parameters sent with it, or
/// else the literals its top-level `WHERE` compares columns with. `None` for anything
/// but a query, and for placeholders without parameters.
fn lift(statement: &mut Parsed, parameters: &[Option<String>]) -> Option<Vec<Lifted>> {
    let Parsed::Statement(statement) = statement else {
        return None;
    };
    let Statement::Query(query) = statement.as_mut() else {
        return None;
    };
    let has_placeholders = ast::visit_expressions(&**query, |e| match e {
        ast::Expr::Value(ValueWithSpan {
            value: Value::Placeholder(_),
            ..
        }) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break();
    if !parameters.is_empty() {
        return has_placeholders.then(|| parameters.iter().cloned().map(Lifted::Given).collect());
    }
    if has_placeholders {
        return None;
    }
    let mut lifted = Vec::new();
    if query.with.is_none()
        && let SetExpr::Select(select) = query.body.as_mut()
        && let Some(selection) = select.selection.as_mut()
    {
        lift_comparisons(selection, &mut lifted);
    }
    Some(lifted)
}

/// Lifts `column <op> literal` (either way round) out of `expr`, through `AND`, `OR`,
/// `NOT` and parentheses only.
fn lift_comparisons(expr: &mut ast::Expr, lifted: &mut Vec<Lifted>) {
    match expr {
        ast::Expr::Nested(inner)
        | ast::Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr: inner,
        } => lift_comparisons(inner, lifted),
        ast::Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::And | BinaryOperator::Or => {
                lift_comparisons(left, lifted);
                lift_comparisons(right, lifted);
            }
            BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq => {
                if is_column(left) {
                    lift_literal(right, lifted);
                } else if is_column(right) {
                    lift_literal(left, lifted);
                }
            }
            _ => {}
        },
        _ => {}
    }
}

fn is_column(expr: &ast::Expr) -> bool {
    matches!(
        expr,
        ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_)
    )
}

/// Replaces a string or number literal with the next placeholder.
fn lift_literal(expr: &mut ast::Expr, lifted: &mut Vec<Lifted>) {
    let ast::Expr::Value(ValueWithSpan { value, .. }) = expr else {
        return;
    };
    let taken = match value {
        Value::SingleQuotedString(text) => Lifted::Text(text.clone()),
        Value::Number(number, false) => {
            let number = number.to_string();
            if number.bytes().all(|b| b.is_ascii_digit()) {
                Lifted::Whole(number)
            } else {
                Lifted::Number(number)
            }
        }
        _ => return,
    };
    lifted.push(taken);
    *value = Value::Placeholder(format!("${}", lifted.len()));
}

/// Whether each table `plan` scans is still the one the session hands out (a newer
/// version of the data, or a time-travel reading, gives another).
async fn reads_current_tables(state: &SessionState, plan: &LogicalPlan) -> bool {
    let mut scans = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            scans.push((scan.table_name.clone(), scan.source.clone()));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    for (name, source) in scans {
        let Ok(schema) = state.schema_for_ref(name.clone()) else {
            return false;
        };
        let (Ok(Some(now)), Ok(planned)) = (
            schema.table(name.table()).await,
            source_as_provider(&source),
        ) else {
            return false;
        };
        if !std::ptr::addr_eq(Arc::as_ptr(&now), Arc::as_ptr(&planned)) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use deltalake::datafusion::physical_plan::collect;
    use deltalake::datafusion::prelude::SessionContext;

    use super::*;

    fn context(codes: &[&str]) -> SessionContext {
        let ctx = SessionContext::new();
        let amounts: Vec<i64> = (1..=codes.len() as i64).collect();
        let batch = RecordBatch::try_from_iter([
            (
                "code",
                Arc::new(StringArray::from(codes.to_vec())) as ArrayRef,
            ),
            ("amount", Arc::new(Int64Array::from(amounts))),
        ])
        .unwrap();
        ctx.register_batch("t", batch).unwrap();
        ctx
    }

    /// Runs a plan as the engine does: physical planning only, no second optimising.
    async fn rows(state: &SessionState, plan: LogicalPlan) -> Vec<String> {
        let physical = state
            .query_planner()
            .create_physical_plan(&plan, state)
            .await
            .unwrap();
        let batches = collect(physical, state.task_ctx()).await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches).unwrap();
        text.to_string().lines().map(str::to_string).collect()
    }

    async fn as_written(state: &SessionState, sql: &str) -> Vec<String> {
        let plan = state.create_logical_plan(sql).await.unwrap();
        rows(state, state.optimize(&plan).unwrap()).await
    }

    fn shape_of(sql: &str) -> (String, Option<Vec<Lifted>>) {
        let state = SessionContext::new().state();
        let dialect = state.config().options().sql_parser.dialect;
        let mut statement = state.sql_to_statement(sql, &dialect).unwrap();
        let lifted = lift(&mut statement, &[]);
        (statement.to_string(), lifted)
    }

    #[test]
    fn only_literals_compared_with_columns_in_the_where_clause_are_lifted() {
        let (shape, values) = shape_of(
            "SELECT code, 'x' AS tag FROM t WHERE (code = 'a' OR 2 < amount) AND NOT amount <> 1.5 LIMIT 3",
        );
        assert_eq!(
            shape,
            "SELECT code, 'x' AS tag FROM t WHERE (code = $1 OR $2 < amount) AND NOT amount <> $3 LIMIT 3"
        );
        assert_eq!(
            values.unwrap(),
            [
                Lifted::Text("a".into()),
                Lifted::Whole("2".into()),
                Lifted::Number("1.5".into())
            ]
        );
        let (shape, values) = shape_of("SELECT * FROM t WHERE upper(code) = 'A' AND amount = -1");
        assert_eq!(
            shape,
            "SELECT * FROM t WHERE upper(code) = 'A' AND amount = -1"
        );
        assert_eq!(values.unwrap(), []);
        assert!(shape_of("SELECT * FROM t WHERE code = $1").1.is_none());
        assert!(
            shape_of("EXPLAIN SELECT * FROM t WHERE code = 'a'")
                .1
                .is_none()
        );
        assert!(
            shape_of("SET datafusion.execution.batch_size = 1")
                .1
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_shape_is_planned_once_and_each_statement_gets_its_own_answer() {
        let state = context(&["a", "b", "c"]).state();
        let plans = Plans::default();
        let same_answers = async |sqls: &[&str]| {
            for sql in sqls {
                let (plan, _) = plans.reuse(&state, sql, &[]).await.unwrap();
                assert_eq!(
                    rows(&state, plan).await,
                    as_written(&state, sql).await,
                    "{sql}"
                );
            }
        };
        same_answers(&[
            "SELECT code FROM t WHERE code = 'b'",
            "SELECT code FROM t WHERE code = 'c'",
            "SELECT code FROM t WHERE code = 'zz'",
        ])
        .await;
        assert_eq!(plans.len(), 1);
        let (plan, _) = plans
            .reuse(
                &state,
                "SELECT code FROM t WHERE code = $1",
                &[Some("a".into())],
            )
            .await
            .unwrap();
        assert_eq!(
            rows(&state, plan).await,
            as_written(&state, "SELECT code FROM t WHERE code = 'a'").await
        );
        assert_eq!(plans.len(), 1, "the same shape, sent with a parameter");
        same_answers(&[
            "SELECT code FROM t WHERE amount >= 2 AND amount < 3",
            "SELECT code FROM t WHERE amount <> 2 OR code = 'a'",
        ])
        .await;
    }

    #[tokio::test]
    async fn literals_the_planner_would_have_coerced_are_planned_as_written() {
        let state = context(&["a", "b"]).state();
        let plans = Plans::default();
        // Text against a number, a fraction against whole numbers: the value is not
        // what binding to the column's type would make it.
        assert!(
            plans
                .reuse(&state, "SELECT code FROM t WHERE amount = '2'", &[])
                .await
                .is_none()
        );
        assert!(
            plans
                .reuse(&state, "SELECT code FROM t WHERE amount > 1.5", &[])
                .await
                .is_none()
        );
        assert!(
            plans
                .reuse(&state, "SELECT code FROM t WHERE code = 1", &[])
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn statements_reading_the_clock_are_not_kept() {
        let state = context(&["a"]).state();
        let plans = Plans::default();
        let sql = "SELECT code FROM t WHERE now() > to_timestamp(0) AND code = 'a'";
        assert!(plans.reuse(&state, sql, &[]).await.is_none());
        assert_eq!(plans.len(), 0);
    }

    #[tokio::test]
    async fn a_table_replaced_since_is_planned_again() {
        let ctx = context(&["a", "b"]);
        let plans = Plans::default();
        let sql = "SELECT count(*) AS n FROM t WHERE code <> 'a'";
        let (plan, _) = plans.reuse(&ctx.state(), sql, &[]).await.unwrap();
        assert!(
            rows(&ctx.state(), plan)
                .await
                .iter()
                .any(|l| l.contains("| 1 |"))
        );
        ctx.deregister_table("t").unwrap();
        let replaced = context(&["a", "b", "c", "d"]);
        ctx.register_table("t", replaced.table_provider("t").await.unwrap())
            .unwrap();
        let (plan, _) = plans.reuse(&ctx.state(), sql, &[]).await.unwrap();
        assert!(
            rows(&ctx.state(), plan)
                .await
                .iter()
                .any(|l| l.contains("| 3 |"))
        );
    }
}
