//! The newest few time buckets read from the newest few buckets' rows.
//!
//! A dashboard's "latest k minutes" is
//!
//! ```sql
//! SELECT date_bin(INTERVAL '1 minute', time) AS minute, max(usage_user)
//! FROM cpu WHERE time < '…T02:13:07Z'
//! GROUP BY minute ORDER BY minute DESC LIMIT 5
//! ```
//!
//! Planned as written it aggregates every row before the bound to keep
//! five groups. The answer can only come from the five buckets below the
//! bound (`[02:08, 02:13:07)`) unless some of them hold no row. So the
//! query runs first with that range added to its filters; when that gives
//! the `LIMIT`'s rows, they are the answer, and otherwise the query runs
//! again as written.
//!
//! Why that is exact: every bucket of the narrowed range holds all of its
//! rows before the bound, so its groups (and their aggregates, `HAVING`
//! and projections) are the same in both runs, and every group outside
//! the range sorts after every group inside it (its bucket is older). When
//! the narrowed run has `k` rows, the first `k` of the whole answer are
//! among them, in the same order.
//!
//! It applies to `[Limit k] → Sort (bucket DESC, …)[fetch k] → Projection |
//! Filter … → Aggregate (grouped by one `date_bin` of `time`, and anything
//! else) → [column Projection] → [Filter] → scan of a fleetlake table`.
//! The bound is the query's upper bound on `time` or the newest time the
//! table's files and buffer hold, whichever is lower. `EXPLAIN` shows a
//! `NewestBuckets` node over both plans.

use std::fmt;
use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef, Result, ScalarValue, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Expr, Extension, Filter, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{Distribution, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use fleetlake_storage::schema::TIME_COLUMN;
use futures::TryStreamExt;

use crate::rollup_rewrite::{date_bin_of_time, unalias, without_injective_cast};
use crate::table::{FleetTable, filtered_scan};
use crate::time_range::TimeRange;

/// The most buckets narrowed to: past that the narrowed run is no longer
/// small, and a miss costs it on top of the whole query.
const MAX_BUCKETS: usize = 1_000;

/// `plan` over a [`NewestBuckets`] node when its shape allows (see the
/// module's doc); `plan` itself otherwise. Under `EXPLAIN [ANALYZE]` too.
pub fn narrow(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Analyze(mut a) => {
            if let Some(node) = NewestBuckets::of(&a.input)? {
                a.input = Arc::new(node);
            }
            Ok(LogicalPlan::Analyze(a))
        }
        LogicalPlan::Explain(mut e) => {
            if let Some(node) = NewestBuckets::of(&e.plan)? {
                e.plan = Arc::new(node);
            }
            Ok(LogicalPlan::Explain(e))
        }
        plan => Ok(NewestBuckets::of(&plan)?.unwrap_or(plan)),
    }
}

/// Runs `narrowed`; its answer when it has `k` rows, `full`'s otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct NewestBuckets {
    narrowed: LogicalPlan,
    full: LogicalPlan,
    k: usize,
    /// The lower `time` bound added to `narrowed` (ns).
    since_ns: i64,
}

impl NewestBuckets {
    fn of(plan: &LogicalPlan) -> Result<Option<LogicalPlan>> {
        let Some((k, since_ns)) = shape(plan) else {
            return Ok(None);
        };
        let narrowed = plan
            .clone()
            .transform_up(|node| match node {
                LogicalPlan::TableScan(mut scan) => {
                    let time = Column::new(Some(scan.table_name.clone()), TIME_COLUMN);
                    scan.filters.push(at_or_after(&time, since_ns));
                    let scan = Arc::new(LogicalPlan::TableScan(scan));
                    let filter = Filter::try_new(at_or_after(&time, since_ns), scan)?;
                    Ok(Transformed::yes(LogicalPlan::Filter(filter)))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        Ok(Some(LogicalPlan::Extension(Extension {
            node: Arc::new(NewestBuckets {
                narrowed,
                full: plan.clone(),
                k,
                since_ns,
            }),
        })))
    }
}

/// `time >= ns`.
fn at_or_after(time: &Column, ns: i64) -> Expr {
    Expr::Column(time.clone()).gt_eq(Expr::Literal(
        ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into())),
        None,
    ))
}

/// `(k, since_ns)` when `plan` is the shape of the module's doc.
fn shape(plan: &LogicalPlan) -> Option<(usize, i64)> {
    let (k, sort) = match plan {
        LogicalPlan::Limit(limit) => {
            let skip = limit.get_skip_type().ok()?;
            let fetch = limit.get_fetch_type().ok()?;
            let (
                datafusion::logical_expr::SkipType::Literal(0),
                datafusion::logical_expr::FetchType::Literal(Some(k)),
            ) = (skip, fetch)
            else {
                return None;
            };
            let LogicalPlan::Sort(sort) = limit.input.as_ref() else {
                return None;
            };
            (sort.fetch.map_or(k, |f| f.min(k)), sort)
        }
        LogicalPlan::Sort(sort) => (sort.fetch?, sort),
        _ => return None,
    };
    if k == 0 || k > MAX_BUCKETS {
        return None;
    }
    let first = sort.expr.first()?;
    if first.asc {
        return None;
    }
    // Follow the sort key down to the aggregate's group expression.
    let mut key = first.expr.clone();
    let mut node = sort.input.as_ref();
    let agg = loop {
        match node {
            LogicalPlan::Projection(p) => {
                key = resolve(&key, p.schema.as_ref(), &p.expr)?;
                node = p.input.as_ref();
            }
            LogicalPlan::Filter(f) => node = f.input.as_ref(),
            LogicalPlan::Aggregate(a) => break a,
            _ => return None,
        }
    };
    let group = match unalias(&key) {
        Expr::Column(c) => {
            let i = (0..agg.group_expr.len())
                .find(|&i| Column::from(agg.schema.qualified_field(i)) == *c)?;
            agg.group_expr.get(i)?
        }
        e => agg.group_expr.iter().find(|g| unalias(g) == e)?,
    };
    let (width, origin) = date_bin_of_time(without_injective_cast(unalias(group)))?;

    let mut input = agg.input.as_ref();
    if let LogicalPlan::Projection(p) = input
        && p.expr.iter().all(|e| matches!(e, Expr::Column(_)))
    {
        input = p.input.as_ref();
    }
    let (filter, scan) = filtered_scan(input)?;
    let provider = source_as_provider(&scan.source).ok()?;
    let table = provider.downcast_ref::<FleetTable>()?;
    let conjuncts: Vec<Expr> = filter
        .into_iter()
        .flat_map(|f| split_conjunction(&f.predicate))
        .chain(scan.filters.iter().flat_map(|f| split_conjunction(f)))
        .cloned()
        .collect();
    let range = TimeRange::from_filters(&conjuncts);
    // No row is newer than the newest the table's files and buffer hold
    // (statistics of rows the filters may drop: an upper bound all the
    // same, so only how often the narrowed plan answers depends on it).
    let newest = table
        .live_files()
        .map(|f| f.max_time)
        .chain(table.buffered().iter().map(|b| b.max_time))
        .max()?;
    let last = range.max.min(newest);
    // The newest bucket that can hold a row, then k - 1 below it.
    let top = origin.checked_add(last.checked_sub(origin)?.div_euclid(width) * width)?;
    let since_ns = top.checked_sub(width.checked_mul(i64::try_from(k - 1).ok()?)?)?;
    (range.min < since_ns).then_some((k, since_ns))
}

/// `key` (a column of `schema`) as the projection computes it.
fn resolve(key: &Expr, schema: &datafusion::common::DFSchema, exprs: &[Expr]) -> Option<Expr> {
    let Expr::Column(c) = unalias(key) else {
        return None;
    };
    let i = (0..schema.fields().len()).find(|&i| Column::from(schema.qualified_field(i)) == *c)?;
    Some(unalias(exprs.get(i)?).clone())
}

impl UserDefinedLogicalNodeCore for NewestBuckets {
    fn name(&self) -> &str {
        "NewestBuckets"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.narrowed, &self.full]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.full.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "NewestBuckets: k={}, narrowed to time >= {}",
            self.k,
            fleetlake_time::rfc3339(self.since_ns)
        )
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        let [narrowed, full]: [LogicalPlan; 2] = inputs.try_into().map_err(|_| {
            datafusion::common::DataFusionError::Internal("NewestBuckets has two inputs".into())
        })?;
        Ok(Self {
            narrowed,
            full,
            k: self.k,
            since_ns: self.since_ns,
        })
    }
}

/// Plans [`NewestBuckets`] as [`NewestBucketsExec`].
#[derive(Debug, Default)]
pub struct NewestBucketsPlanner;

#[async_trait::async_trait]
impl ExtensionPlanner for NewestBucketsPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<NewestBuckets>() else {
            return Ok(None);
        };
        let [narrowed, full] = physical_inputs else {
            return internal_err!("NewestBuckets has two inputs");
        };
        Ok(Some(Arc::new(NewestBucketsExec::new(
            narrowed.clone(),
            full.clone(),
            node.k,
        ))))
    }
}

/// Runs its first child to the end; streams that child's rows when there
/// are `k` of them, its second child's otherwise.
#[derive(Debug)]
pub struct NewestBucketsExec {
    narrowed: Arc<dyn ExecutionPlan>,
    full: Arc<dyn ExecutionPlan>,
    k: usize,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl NewestBucketsExec {
    fn new(narrowed: Arc<dyn ExecutionPlan>, full: Arc<dyn ExecutionPlan>, k: usize) -> Self {
        let props = PlanProperties::new(
            full.properties().equivalence_properties().clone(),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            narrowed,
            full,
            k,
            props: Arc::new(props),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for NewestBucketsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "NewestBucketsExec: k={}", self.k)
    }
}

impl ExecutionPlan for NewestBucketsExec {
    fn name(&self) -> &str {
        "NewestBucketsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.narrowed, &self.full]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition, Distribution::SinglePartition]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true, true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false, false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [narrowed, full]: [Arc<dyn ExecutionPlan>; 2] = children.try_into().map_err(|_| {
            datafusion::common::DataFusionError::Internal(
                "NewestBucketsExec has two children".into(),
            )
        })?;
        Ok(Arc::new(NewestBucketsExec::new(narrowed, full, self.k)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("NewestBucketsExec has one partition; asked for {partition}");
        }
        let narrowed = self.narrowed.execute(0, context.clone())?;
        let full = self.full.clone();
        let k = self.k;
        let answered: Count = MetricBuilder::new(&self.metrics).counter("narrowed_answered", 0);
        let fell_back: Count = MetricBuilder::new(&self.metrics).counter("ran_whole", 0);
        let schema = self.full.schema();
        let answer = async move {
            let batches: Vec<_> = narrowed.try_collect().await?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let stream: SendableRecordBatchStream = if rows >= k {
                answered.add(1);
                Box::pin(RecordBatchStreamAdapter::new(
                    full.schema(),
                    futures::stream::iter(batches.into_iter().map(Ok)),
                ))
            } else {
                fell_back.add(1);
                full.execute(0, context)?
            };
            Ok::<_, datafusion::common::DataFusionError>(stream)
        };
        let stream = futures::stream::once(answer).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}
