//! Bounds on what scalar functions build. The statement's memory pool counts what
//! operators hold (sorts, joins, aggregates), not the values a function makes:
//! `repeat('x', 1500000000)` builds 1.4 GB in one call, and the optimizer folds such a
//! constant call before any pool exists. So every function call of a statement is wrapped
//! ([`Bounded`], put in by the [`BoundFunctions`] rewrite, `||` included through
//! [`Weighed`]): a function that grows its input by an argument (a count, a length, a
//! replacement) is refused before it runs when an upper bound of its output passes a
//! limit ([`Growth`]); whatever any function built is weighed against the batch limit;
//! and the constants one statement folds share one value's budget ([`folding`]): the
//! optimizer copies a folded literal with the plan, pass after pass.

use std::cell::RefCell;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, FieldRef, Int64Type, IntervalMonthDayNano, TimeUnit};
use deltalake::datafusion::common::config::ConfigOptions;
use deltalake::datafusion::common::tree_node::{Transformed, TreeNode};
use deltalake::datafusion::common::{
    DFSchema, DataFusionError, ExprSchema, Result, ScalarValue, human_readable_size,
};
use deltalake::datafusion::logical_expr::expr::ScalarFunction;
use deltalake::datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use deltalake::datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use deltalake::datafusion::logical_expr::udf_eq::UdfEq;
use deltalake::datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Documentation, Expr, Operator, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The most one value, and one batch of a function's results, may weigh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bounds {
    pub value: usize,
    pub batch: usize,
}

impl Bounds {
    fn refuse(&self, what: String) -> DataFusionError {
        DataFusionError::ResourcesExhausted(self.refusal(what))
    }

    fn refusal(&self, what: String) -> String {
        format!(
            "{what}; a statement may build at most {} per value and {} per batch — ask for less (a smaller count or length, fewer rows)",
            human_readable_size(self.value),
            human_readable_size(self.batch)
        )
    }

    /// Refuses `name` before it runs when `per_row` (upper bounds of what each row's
    /// value would weigh) passes a limit.
    fn admit(&self, name: &str, per_row: &[u64]) -> Result<()> {
        let largest = per_row.iter().copied().max().unwrap_or(0);
        if largest > self.value as u64 {
            return Err(self.refuse(format!("{name} would build {} in one value", size(largest))));
        }
        let total = per_row.iter().fold(0u64, |sum, b| sum.saturating_add(*b));
        if total > self.batch as u64 {
            return Err(self.refuse(format!(
                "{name} would build {} for {} rows",
                size(total),
                per_row.len()
            )));
        }
        Ok(())
    }

    /// Weighs what `name` built, against the batch limit and, while a plan is optimised,
    /// against what the statement's other constants took already.
    fn weigh(&self, name: &str, built: &ColumnarValue) -> Result<()> {
        let bytes = match built {
            ColumnarValue::Scalar(value) => value.size(),
            ColumnarValue::Array(array) => weight(array),
        };
        if bytes > self.batch {
            return Err(self.refuse(format!("{name} built {}", human_readable_size(bytes))));
        }
        let over = FOLDED.with_borrow_mut(|folded| {
            let folded = folded.as_mut()?;
            folded.spent = folded.spent.saturating_add(bytes);
            (folded.spent > self.value).then(|| {
                let refusal = self.refusal(format!(
                    "the statement's constants would take {}",
                    human_readable_size(folded.spent)
                ));
                folded.refused.get_or_insert(refusal).clone()
            })
        });
        over.map_or(Ok(()), |refusal| {
            Err(DataFusionError::ResourcesExhausted(refusal))
        })
    }
}

fn size(bytes: u64) -> String {
    human_readable_size(usize::try_from(bytes).unwrap_or(usize::MAX))
}

/// What an array's values take: a view array counts the bytes its views show (its
/// buffers may be shared with other arrays), any other the slice it covers.
fn weight(array: &ArrayRef) -> usize {
    let views = match array.data_type() {
        DataType::Utf8View => array.as_string_view().views(),
        DataType::BinaryView => array.as_binary_view().views(),
        _ => {
            return array
                .to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| array.get_array_memory_size());
        }
    };
    views.iter().map(|v| *v as u32 as usize + 16).sum()
}

/// The constants folded while one plan is optimised, on this thread.
struct Folded {
    spent: usize,
    refused: Option<String>,
}

thread_local! {
    static FOLDED: RefCell<Option<Folded>> = const { RefCell::new(None) };
}

/// Runs `optimize` (synchronous, on this thread) with one budget for every constant it
/// folds. The optimizer keeps a call it failed to fold for execution, where each call is
/// weighed alone; so a refusal while folding refuses the statement.
pub fn folding<T>(optimize: impl FnOnce() -> Result<T>) -> Result<T> {
    struct Reset(Option<Folded>);
    impl Drop for Reset {
        fn drop(&mut self) {
            FOLDED.set(self.0.take());
        }
    }
    let outer = FOLDED.replace(Some(Folded {
        spent: 0,
        refused: None,
    }));
    let reset = Reset(outer);
    let optimized = optimize();
    let refused = FOLDED.with_borrow_mut(|f| f.as_mut().and_then(|f| f.refused.take()));
    drop(reset);
    match refused {
        Some(refusal) => Err(DataFusionError::ResourcesExhausted(refusal)),
        None => optimized,
    }
}

/// Functions that grow their input by an argument, and how far at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    Repeat,
    Pad,
    Replace,
    RegexpReplace,
    ArrayRepeat,
    Range,
    Resize,
    Split,
}

impl Growth {
    fn of(name: &str) -> Option<Growth> {
        Some(match name {
            "repeat" => Growth::Repeat,
            "lpad" | "rpad" => Growth::Pad,
            "replace" => Growth::Replace,
            "regexp_replace" => Growth::RegexpReplace,
            "array_repeat" => Growth::ArrayRepeat,
            "range" | "generate_series" => Growth::Range,
            "array_resize" => Growth::Resize,
            "string_to_array" => Growth::Split,
            _ => return None,
        })
    }

    /// An upper bound of each row's output bytes; `None` for arguments it cannot read
    /// (the function's own checks and [`Bounds::weigh`] remain).
    fn per_row(self, args: &[ColumnarValue], rows: usize) -> Result<Option<Vec<u64>>> {
        let text = |i: usize| args.get(i).and_then(|a| texts(a, rows));
        let count = |i: usize| match args.get(i) {
            Some(a) => counts(a, rows),
            None => Ok(None),
        };
        let bound = match self {
            Growth::Repeat => zip2(text(0), count(1)?, |s, n| len(s).saturating_mul(n)),
            Growth::Pad => {
                let fill = match args.len() {
                    2 => Some(vec![Some(" "); rows]),
                    _ => text(2),
                };
                zip3(text(0), count(1)?, fill, |s, n, f| {
                    len(s).saturating_add(n.saturating_mul(len(f).min(4)))
                })
            }
            Growth::Replace => zip3(text(0), text(1), text(2), replaced),
            Growth::RegexpReplace => zip2(text(0), text(2), |s, r| {
                let (s, r) = (len(s), len(r));
                s.saturating_add((s + 1).saturating_mul(r))
                    .saturating_add(s.saturating_mul(r / 2))
            }),
            Growth::ArrayRepeat => zip2(Some(weights(&args[0], rows)?), count(1)?, |e, n| {
                (e + 8).saturating_mul(n)
            }),
            Growth::Range => {
                range_lengths(args, rows)?.map(|n| n.iter().map(|n| n.saturating_mul(8)).collect())
            }
            Growth::Resize => {
                let value = match args.get(2) {
                    Some(v) => weights(v, rows)?,
                    None => vec![0; rows],
                };
                zip3(
                    Some(weights(&args[0], rows)?),
                    count(1)?,
                    Some(value),
                    |a, n, v| a.saturating_add(n.saturating_mul(v.max(16))),
                )
            }
            Growth::Split => zip2(text(0), text(1), |s, d| {
                // No delimiter splits into characters: at most one a byte.
                let pieces = match (s, d) {
                    (Some(s), Some(d)) if !d.is_empty() => s.matches(d).count() as u64 + 1,
                    (s, _) => len(s) + 1,
                };
                len(s).saturating_add(pieces.saturating_mul(8))
            }),
        };
        Ok(bound)
    }
}

fn len(text: Option<&str>) -> u64 {
    text.map_or(0, |t| t.len() as u64)
}

/// `replace(s, from, to)`: each occurrence of `from` grows by what `to` is longer.
fn replaced(s: Option<&str>, from: Option<&str>, to: Option<&str>) -> u64 {
    let (Some(s), Some(from), Some(to)) = (s, from, to) else {
        return 0;
    };
    let growth = to.len().saturating_sub(from.len()) as u64;
    if growth == 0 {
        return s.len() as u64;
    }
    (s.len() as u64).saturating_add((s.matches(from).count() as u64).saturating_mul(growth))
}

fn zip2<A: Copy, B: Copy>(
    a: Option<Vec<A>>,
    b: Option<Vec<B>>,
    f: impl Fn(A, B) -> u64,
) -> Option<Vec<u64>> {
    Some(a?.into_iter().zip(b?).map(|(a, b)| f(a, b)).collect())
}

fn zip3<A: Copy, B: Copy, C: Copy>(
    a: Option<Vec<A>>,
    b: Option<Vec<B>>,
    c: Option<Vec<C>>,
    f: impl Fn(A, B, C) -> u64,
) -> Option<Vec<u64>> {
    let rows = a?.into_iter().zip(b?).zip(c?);
    Some(rows.map(|((a, b), c)| f(a, b, c)).collect())
}

/// The texts of a string argument, one a row; `None` for any other type.
fn texts(arg: &ColumnarValue, rows: usize) -> Option<Vec<Option<&str>>> {
    match arg {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s),
        ) => Some(vec![s.as_deref(); rows]),
        ColumnarValue::Scalar(_) => None,
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Utf8 => Some(a.as_string::<i32>().iter().collect()),
            DataType::LargeUtf8 => Some(a.as_string::<i64>().iter().collect()),
            DataType::Utf8View => Some(a.as_string_view().iter().collect()),
            _ => None,
        },
    }
}

/// A whole-number argument, one a row, null and negative as 0.
fn counts(arg: &ColumnarValue, rows: usize) -> Result<Option<Vec<u64>>> {
    Ok(integers(arg, rows, &DataType::Int64)?
        .map(|n| n.into_iter().map(|n| n.max(0) as u64).collect()))
}

/// `arg` cast to `to`, read as 64-bit integers (null as 0); `None` when it does not cast.
fn integers(arg: &ColumnarValue, rows: usize, to: &DataType) -> Result<Option<Vec<i64>>> {
    let Ok(typed) = cast(&arg.to_array(rows)?, to) else {
        return Ok(None);
    };
    let Ok(ints) = cast(&typed, &DataType::Int64) else {
        return Ok(None);
    };
    let ints = ints.as_primitive::<Int64Type>();
    Ok(Some(ints.iter().map(|v| v.unwrap_or(0)).collect()))
}

/// What each row's value of `arg` weighs.
fn weights(arg: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
    if let ColumnarValue::Scalar(value) = arg {
        return Ok(vec![weight(&value.to_array_of_size(1)?) as u64; rows]);
    }
    let array = arg.to_array(rows)?;
    Ok((0..array.len())
        .map(|i| weight(&array.slice(i, 1)) as u64)
        .collect())
}

/// How many elements `range`/`generate_series` makes per row: (stop - start) / step + 1,
/// dates and timestamps in nanoseconds with a month taken as 28 days.
fn range_lengths(args: &[ColumnarValue], rows: usize) -> Result<Option<Vec<u64>>> {
    let temporal = matches!(
        args.first().map(|a| a.data_type()),
        Some(DataType::Date32 | DataType::Date64 | DataType::Timestamp(..))
    );
    let (start, stop, step) = match args {
        [stop] => (vec![0; rows], integers(stop, rows, &DataType::Int64)?, None),
        [start, stop] => (
            integers(start, rows, &DataType::Int64)?.unwrap_or_default(),
            integers(stop, rows, &DataType::Int64)?,
            None,
        ),
        [start, stop, step] if temporal => {
            let nanos = DataType::Timestamp(TimeUnit::Nanosecond, None);
            (
                integers(start, rows, &nanos)?.unwrap_or_default(),
                integers(stop, rows, &nanos)?,
                Some(steps(step, rows)?),
            )
        }
        [start, stop, step] => (
            integers(start, rows, &DataType::Int64)?.unwrap_or_default(),
            integers(stop, rows, &DataType::Int64)?,
            integers(step, rows, &DataType::Int64)?,
        ),
        _ => return Ok(None),
    };
    let Some(stop) = stop else { return Ok(None) };
    let step = step.unwrap_or_else(|| vec![1; rows]);
    Ok(Some(
        start
            .iter()
            .zip(&stop)
            .zip(&step)
            .map(|((a, b), s)| (b.abs_diff(*a) / s.unsigned_abs().max(1)).saturating_add(1))
            .collect(),
    ))
}

/// A range's interval steps in nanoseconds (a month as 28 days, the shortest).
fn steps(step: &ColumnarValue, rows: usize) -> Result<Vec<i64>> {
    const DAY: i64 = 86_400_000_000_000;
    let array = step.to_array(rows)?;
    let Some(intervals) = array.as_primitive_opt::<arrow::datatypes::IntervalMonthDayNanoType>()
    else {
        return Ok(vec![1; rows]);
    };
    Ok(intervals
        .iter()
        .map(|v| {
            let v = v.unwrap_or(IntervalMonthDayNano::ZERO);
            (v.months as i64 * 28)
                .saturating_mul(DAY)
                .saturating_add(v.days as i64 * DAY)
                .saturating_add(v.nanoseconds)
        })
        .collect())
}

/// A scalar function whose output is bounded (see the module's documentation); it
/// answers as the function it wraps in every other respect.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Bounded {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    growth: Option<Growth>,
    bounds: Bounds,
}

impl Bounded {
    pub fn wrap(function: &ScalarUDF, bounds: Bounds) -> ScalarUDF {
        ScalarUDF::new_from_impl(Bounded {
            growth: Growth::of(function.name()),
            inner: function.inner().clone().into(),
            bounds,
        })
    }
}

#[warn(clippy::missing_trait_methods)]
impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        #[expect(deprecated)]
        self.inner.display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.inner.with_updated_config(config)?;
        Some(Bounded::wrap(&updated, self.bounds))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        #[expect(deprecated)]
        self.inner.is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(growth) = self.growth
            && let Some(per_row) = growth.per_row(&args.args, args.number_rows)?
        {
            self.bounds.admit(self.name(), &per_row)?;
        }
        let built = self.inner.invoke_with_args(args)?;
        self.bounds.weigh(self.name(), &built)?;
        Ok(built)
    }

    /// What a function simplifies to is bounded too (`concat` rebuilds itself unwrapped).
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        Ok(match self.inner.simplify(args, info)? {
            ExprSimplifyResult::Simplified(expr) => {
                ExprSimplifyResult::Simplified(bounded_calls(expr, self.bounds)?)
            }
            original => original,
        })
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<deltalake::datafusion::logical_expr::preimage::PreimageResult> {
        self.inner.preimage(args, lit_expr, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }

    fn evaluate_bounds(
        &self,
        input: &[&deltalake::datafusion::logical_expr::interval_arithmetic::Interval],
    ) -> Result<deltalake::datafusion::logical_expr::interval_arithmetic::Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &deltalake::datafusion::logical_expr::interval_arithmetic::Interval,
        inputs: &[&deltalake::datafusion::logical_expr::interval_arithmetic::Interval],
    ) -> Result<Option<Vec<deltalake::datafusion::logical_expr::interval_arithmetic::Interval>>>
    {
        self.inner.propagate_constraints(interval, inputs)
    }

    fn output_ordering(
        &self,
        inputs: &[deltalake::datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> Result<deltalake::datafusion::logical_expr::sort_properties::SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(
        &self,
        inputs: &[deltalake::datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(
        &self,
        inputs: &[deltalake::datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> Result<bool> {
        self.inner.strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<deltalake::datafusion::logical_expr::StructFieldMapping> {
        self.inner.struct_field_mapping(literal_args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn placement(
        &self,
        args: &[deltalake::datafusion::logical_expr::ExpressionPlacement],
    ) -> deltalake::datafusion::logical_expr::ExpressionPlacement {
        self.inner.placement(args)
    }
}

/// `x` as it is, weighed: wraps `a || b` on text, an operator rather than a function,
/// so that doubling a value once per subquery is weighed at every step.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Weighed {
    signature: Signature,
}

impl Weighed {
    fn call(expr: Expr, bounds: Bounds) -> Expr {
        let weighed = ScalarUDF::new_from_impl(Weighed {
            signature: Signature::any(1, Volatility::Immutable),
        });
        Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::new(Bounded::wrap(&weighed, bounds)),
            vec![expr],
        ))
    }
}

impl ScalarUDFImpl for Weighed {
    fn name(&self) -> &str {
        "weighed"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(args.arg_fields[0].clone())
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(args.args.swap_remove(0))
    }
}

/// `expr` with every function call in it bounded.
fn bounded_calls(expr: Expr, bounds: Bounds) -> Result<Expr> {
    expr.transform_up(|e| bound_call(e, bounds)).map(|t| t.data)
}

fn bound_call(expr: Expr, bounds: Bounds) -> Result<Transformed<Expr>> {
    Ok(match expr {
        Expr::ScalarFunction(call) if call.func.inner().downcast_ref::<Bounded>().is_none() => {
            let func = Arc::new(Bounded::wrap(&call.func, bounds));
            Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                func, call.args,
            )))
        }
        Expr::BinaryExpr(BinaryExpr {
            op: Operator::StringConcat,
            ..
        }) => Transformed::yes(Weighed::call(expr, bounds)),
        other => Transformed::no(other),
    })
}

/// The analyzer's rewrite that bounds every function call of a statement — from the
/// registry or put in by the SQL planner — and text `||`.
#[derive(Debug)]
pub struct BoundFunctions(pub Bounds);

impl FunctionRewrite for BoundFunctions {
    fn name(&self) -> &str {
        "bound_functions"
    }

    fn rewrite(
        &self,
        expr: Expr,
        _schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> Result<Transformed<Expr>> {
        bound_call(expr, self.0)
    }
}
