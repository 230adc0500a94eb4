//! Aggregations answered from a rollup table when that is exact.
//!
//! A rollup `cpu_1m` of `cpu` holds, per series and minute, `F_min`,
//! `F_max`, `F_sum` and `F_count` of each field `F` (see
//! `fleetlake_compaction::rollup`). A query such as
//!
//! ```sql
//! SELECT date_bin(INTERVAL '1 hour', time) AS hour, max(usage_user)
//! FROM cpu WHERE hostname = 'host_1' AND time >= '…T00:00:00Z' AND time < '…T12:00:00Z'
//! GROUP BY hour
//! ```
//!
//! reads one row per series and minute from `cpu_1m` instead of one per
//! sample from `cpu`: `max(usage_user)` becomes `max(usage_user_max)`,
//! `min` `min(F_min)`, `sum` `sum(F_sum)`, `count(F)` `sum(F_count)` and
//! `avg(F)` `sum(F_sum) / sum(F_count)`. The plan shows it: a
//! `SubqueryAlias` of the source's name over a scan of the rollup.
//!
//! The rewrite is exact by construction, so it is made only when every
//! part of the answer is in the rollup's buckets whole:
//! - the aggregation groups by tags and at most one `date_bin` (or
//!   `time_bucket`) of `time` whose width is a multiple of the rollup's,
//!   from an origin on the rollup's bucket edges;
//! - it filters on tags and on `time` compared with literals only, and
//!   the time bounds fall on bucket edges (a half-open bucket range);
//! - every bucket of the range that holds source data is below the
//!   rollup's watermark, and no data written or deleted since its last pass
//!   touches the range: source files and buffered rows there carry write
//!   sequences it has seen, and the table had no delete since;
//! - the rollup table as planned includes the commit the rollup's progress
//!   describes, and neither table's retention cuts a bucket of the range.
//!
//! `min`, `max`, `count` and integer `sum`s are equal to the source's
//! answer; float sums and averages add the same values in another order,
//! as a parallel aggregation does.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::catalog::TableProvider;
use datafusion::catalog::default_table_source::{provider_as_source, source_as_provider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result, ScalarValue, TableReference};
use datafusion::execution::SessionState;
use datafusion::functions::expr_fn::nullif;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator, cast,
    lit, when,
};
use fleetlake_storage::schema::TIME_COLUMN;
use fleetlake_storage::write_order::SEQ_COLUMN;

use crate::catalog::CATALOG_NAME;
use crate::functions::udaf::interval_literal_ns;
use crate::table::{FleetTable, filtered_scan};
use crate::time_range::{TimeRange, literal_ns};

/// A rollup as far as its last pass got (what its progress object says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupView {
    pub db: String,
    pub source: String,
    pub target: String,
    pub every_ns: i64,
    /// Every bucket that starts before this is materialized.
    pub watermark_ns: i64,
    /// Source rows written up to this sequence are in the buckets.
    pub seen_seq: u64,
    /// Source deletes up to this tombstone sequence are in the buckets.
    pub seen_delete_seq: u64,
    /// The catalog commit that holds the buckets the progress describes: a
    /// plan of the target from an older catalog state may lack them.
    pub catalog_seq: u64,
}

/// The rollups' latest progress, published by each pass, read by queries.
#[derive(Debug, Default)]
pub struct RollupRegistry {
    views: RwLock<HashMap<(String, String), Vec<RollupView>>>,
}

impl RollupRegistry {
    /// Replaces what was known of `view.target`.
    pub fn publish(&self, view: RollupView) {
        let mut views = self.views.write().unwrap_or_else(|e| e.into_inner());
        let of_source = views
            .entry((view.db.clone(), view.source.clone()))
            .or_default();
        of_source.retain(|v| v.target != view.target);
        of_source.push(view);
        // The coarsest first: it reads the fewest rows.
        of_source.sort_by_key(|v| std::cmp::Reverse(v.every_ns));
    }

    fn of(&self, db: &str, source: &str) -> Vec<RollupView> {
        let views = self.views.read().unwrap_or_else(|e| e.into_inner());
        views
            .get(&(db.to_string(), source.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        let views = self.views.read().unwrap_or_else(|e| e.into_inner());
        views.values().all(Vec::is_empty)
    }
}

/// `plan` with every aggregation that a rollup answers exactly reading the
/// rollup (see the module's doc).
pub async fn answer_from_rollups(
    plan: LogicalPlan,
    state: &SessionState,
    registry: &RollupRegistry,
) -> Result<LogicalPlan> {
    if registry.is_empty() {
        return Ok(plan);
    }
    // The rollups that would answer an aggregation, before reading any:
    // a query that none answers pays for a walk of its plan only.
    let mut targets: HashMap<(String, String), Arc<dyn TableProvider>> = HashMap::new();
    let mut wanted = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::Aggregate(agg) = node {
            rewrite(agg, registry, &targets, &mut wanted)?;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    for (db, target) in wanted.drain(..) {
        if targets.contains_key(&(db.clone(), target.clone())) {
            continue;
        }
        let schema = state.schema_for_ref(TableReference::full(
            CATALOG_NAME,
            db.as_str(),
            target.as_str(),
        ))?;
        if let Some(t) = schema.table(&target).await? {
            targets.insert((db, target), t);
        }
    }
    if targets.is_empty() {
        return Ok(plan);
    }
    let mut changed = false;
    let out = plan.transform_up(|node| {
        if let LogicalPlan::Aggregate(agg) = &node
            && let Some(rewritten) = rewrite(agg, registry, &targets, &mut wanted)?
        {
            changed = true;
            return Ok(Transformed::yes(rewritten));
        }
        if changed {
            // Above a rewrite: the same columns, perhaps another nullability.
            return Ok(Transformed::yes(node.recompute_schema()?));
        }
        Ok(Transformed::no(node))
    })?;
    Ok(out.data)
}

/// A rollup column's suffix and the aggregate taken over it.
type Part = (&'static str, fn(Expr) -> Expr);

/// One aggregate of the source, and what the rollup reads for it.
enum Agg {
    Min(String),
    Max(String),
    Sum(String),
    Count(String),
    Avg(String),
}

impl Agg {
    fn field(&self) -> &str {
        match self {
            Agg::Min(f) | Agg::Max(f) | Agg::Sum(f) | Agg::Count(f) | Agg::Avg(f) => f,
        }
    }

    /// The rollup's columns it reads, and the aggregate over each.
    fn parts(&self) -> &'static [Part] {
        match self {
            Agg::Min(_) => &[("min", min)],
            Agg::Max(_) => &[("max", max)],
            Agg::Sum(_) => &[("sum", sum)],
            Agg::Count(_) => &[("count", sum)],
            Agg::Avg(_) => &[("sum", sum), ("count", sum)],
        }
    }

    fn columns(&self) -> impl Iterator<Item = String> + '_ {
        self.parts()
            .iter()
            .map(|(suffix, _)| format!("{}_{suffix}", self.field()))
    }

    /// The aggregates over the rollup's columns (qualified by `q`), named
    /// `{name}_0`, `{name}_1`: one, or `avg`'s sum and count.
    fn over_rollup(&self, q: &TableReference, name: &str) -> Vec<Expr> {
        self.columns()
            .zip(self.parts())
            .enumerate()
            .map(|(i, (column, (_, aggregate)))| {
                aggregate(Expr::Column(Column::new(Some(q.clone()), column)))
                    .alias(format!("{name}_{i}"))
            })
            .collect()
    }

    /// The source aggregate's value from [`Agg::over_rollup`]'s columns.
    fn value(&self, name: &str) -> Expr {
        let part = |i: usize| Expr::Column(Column::new_unqualified(format!("{name}_{i}")));
        match self {
            Agg::Avg(_) => {
                let as_double = |e: Expr| cast(e, arrow::datatypes::DataType::Float64);
                Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(as_double(part(0))),
                    Operator::Divide,
                    Box::new(nullif(as_double(part(1)), lit(0.0f64))),
                ))
            }
            _ => part(0),
        }
    }
}

/// `agg` reading a rollup of `targets`, if one answers it exactly. A
/// rollup that would but is not in `targets` is added to `wanted`.
fn rewrite(
    agg: &Aggregate,
    registry: &RollupRegistry,
    targets: &HashMap<(String, String), Arc<dyn TableProvider>>,
    wanted: &mut Vec<(String, String)>,
) -> Result<Option<LogicalPlan>> {
    let mut input = agg.input.as_ref();
    // Columns passed through (the planner drops those only filtered on).
    if let LogicalPlan::Projection(p) = input
        && p.expr.iter().all(|e| matches!(e, Expr::Column(_)))
    {
        input = p.input.as_ref();
    }
    let Some((filter, scan)) = filtered_scan(input) else {
        return Ok(None);
    };
    let predicate = filter.map(|f| &f.predicate);
    if scan.fetch.is_some() {
        return Ok(None);
    }
    let Ok(provider) = source_as_provider(&scan.source) else {
        return Ok(None);
    };
    let Some(source) = provider.downcast_ref::<FleetTable>() else {
        return Ok(None);
    };
    let Some((db, name)) = source.identity() else {
        return Ok(None);
    };

    // Filters: tags, and `time` against literals.
    let mut conjuncts: Vec<Expr> = Vec::new();
    for c in predicate
        .into_iter()
        .flat_map(|p| split_conjunction(p))
        .chain(scan.filters.iter().flat_map(|f| split_conjunction(f)))
    {
        if !conjuncts.contains(c) {
            conjuncts.push(c.clone());
        }
    }
    for c in &conjuncts {
        let refs = c.column_refs();
        if refs.iter().any(|r| r.name == TIME_COLUMN) {
            if !is_time_bound(c) {
                return Ok(None);
            }
        } else if !refs.iter().all(|r| source.is_tag(&r.name)) {
            return Ok(None);
        }
    }
    let range = TimeRange::from_filters(&conjuncts);

    // Groups: tags and one bucket of `time`.
    let mut bucket: Option<(i64, i64)> = None;
    for g in &agg.group_expr {
        match unalias(g) {
            Expr::Column(c) if source.is_tag(&c.name) => {}
            e => match date_bin_of_time(without_injective_cast(e)) {
                Some(b) if bucket.is_none() => bucket = Some(b),
                _ => return Ok(None),
            },
        }
    }
    // Aggregates of fields.
    let mut aggs = Vec::with_capacity(agg.aggr_expr.len());
    for a in &agg.aggr_expr {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = unalias(a) else {
            return Ok(None);
        };
        if params.distinct || params.filter.is_some() || !params.order_by.is_empty() {
            return Ok(None);
        }
        let [arg] = params.args.as_slice() else {
            return Ok(None);
        };
        let (c, as_double) = match arg {
            Expr::Column(c) => (c, false),
            // `avg` of an integer field: the planner casts it to DOUBLE.
            Expr::Cast(datafusion::logical_expr::Cast { expr, field })
                if *field.data_type() == arrow::datatypes::DataType::Float64 =>
            {
                let Expr::Column(c) = expr.as_ref() else {
                    return Ok(None);
                };
                (c, true)
            }
            _ => return Ok(None),
        };
        if c.name == TIME_COLUMN || source.is_tag(&c.name) {
            return Ok(None);
        }
        let f = c.name.clone();
        aggs.push(match (func.name(), as_double) {
            ("min", false) => Agg::Min(f),
            ("max", false) => Agg::Max(f),
            ("sum", false) => Agg::Sum(f),
            ("count", false) => Agg::Count(f),
            ("avg", _) => Agg::Avg(f),
            _ => return Ok(None),
        });
    }

    for view in registry.of(db, name) {
        let every = view.every_ns;
        if let Some((width, origin)) = bucket
            && (width % every != 0 || origin.rem_euclid(every) != 0)
        {
            continue;
        }
        let aligned = |t: i64, edge: i64| t == edge || t.rem_euclid(every) == 0;
        if !aligned(range.min, i64::MIN) || !aligned(range.max.saturating_add(1), i64::MAX) {
            continue;
        }
        if !is_fresh(source, &view, &range) {
            continue;
        }
        let key = (db.to_string(), view.target.clone());
        let Some(target) = targets.get(&key) else {
            wanted.push(key);
            continue;
        };
        let Some(rollup) = target.downcast_ref::<FleetTable>() else {
            continue;
        };
        if rollup.snapshot_seq() < view.catalog_seq {
            continue;
        }
        // The rollup's own retention may have dropped buckets of the range.
        if rollup
            .expired_before()
            .is_some_and(|cutoff| range.min < cutoff)
        {
            continue;
        }
        let schema = target.schema();
        let mut wanted: Vec<String> = vec![TIME_COLUMN.to_string()];
        for c in conjuncts.iter().flat_map(|c| c.column_refs()) {
            wanted.push(c.name.clone());
        }
        for g in &agg.group_expr {
            wanted.extend(g.column_refs().iter().map(|c| c.name.clone()));
        }
        for a in &aggs {
            wanted.extend(a.columns());
        }
        let mut projection = Vec::with_capacity(wanted.len());
        let mut complete = true;
        for w in &wanted {
            match schema.index_of(w) {
                Ok(i) if !projection.contains(&i) => projection.push(i),
                Ok(_) => {}
                Err(_) => complete = false,
            }
        }
        if !complete {
            continue;
        }
        projection.sort_unstable();
        return build(
            agg,
            &scan.table_name,
            &view.target,
            target,
            projection,
            conjuncts,
            &aggs,
        )
        .map(Some);
    }
    Ok(None)
}

/// Scan of the rollup under the source's name, filtered and aggregated,
/// projected to the original aggregate's columns.
fn build(
    agg: &Aggregate,
    source_name: &TableReference,
    target_name: &str,
    target: &Arc<dyn TableProvider>,
    projection: Vec<usize>,
    conjuncts: Vec<Expr>,
    aggs: &[Agg],
) -> Result<LogicalPlan> {
    let mut plan = LogicalPlanBuilder::scan_with_filters(
        target_name,
        provider_as_source(Arc::clone(target)),
        Some(projection),
        conjuncts.clone(),
    )?
    .alias(source_name.clone())?;
    if let Some(p) = conjunction(conjuncts) {
        plan = plan.filter(p)?;
    }
    let names: Vec<String> = (0..aggs.len()).map(|i| format!("__rollup_{i}")).collect();
    let aggr: Vec<Expr> = aggs
        .iter()
        .zip(&names)
        .flat_map(|(a, n)| a.over_rollup(source_name, n))
        .collect();
    let n_groups = agg.group_expr.len();
    let new = plan.aggregate(agg.group_expr.clone(), aggr)?.build()?;
    // The original's columns, names and types, in its order.
    let new_schema = new.schema().clone();
    let exprs = agg
        .schema
        .iter()
        .enumerate()
        .map(|(i, (qualifier, field))| {
            let mut e = if i < n_groups {
                let (q, f) = new_schema.qualified_field(i);
                Expr::Column(Column::new(q.cloned(), f.name()))
            } else {
                aggs[i - n_groups].value(&names[i - n_groups])
            };
            if e.get_type(&new_schema)? != *field.data_type() {
                e = cast(e, field.data_type().clone());
            }
            if i >= n_groups && !field.is_nullable() {
                // `count` is never NULL (nor is `sum(F_count)` of a group).
                let zero = lit(ScalarValue::new_zero(field.data_type())?);
                e = when(e.clone().is_null(), zero).otherwise(e)?;
            }
            Ok(e.alias_qualified(qualifier.cloned(), field.name()))
        })
        .collect::<Result<Vec<_>>>()?;
    LogicalPlanBuilder::from(new).project(exprs)?.build()
}

/// A bucket cast to its nanoseconds (a BIGINT, or a timestamp of another
/// zone) groups as the bucket does.
pub(crate) fn without_injective_cast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(datafusion::logical_expr::Cast { expr, field })
            if matches!(
                field.data_type(),
                arrow::datatypes::DataType::Int64
                    | arrow::datatypes::DataType::Timestamp(
                        arrow::datatypes::TimeUnit::Nanosecond,
                        _
                    )
            ) =>
        {
            expr
        }
        e => e,
    }
}

pub(crate) fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}

/// `time` compared with a literal timestamp.
fn is_time(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == TIME_COLUMN)
}

fn is_time_bound(e: &Expr) -> bool {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return false;
    };
    let is_ts = |e: &Expr| literal_ns(e).is_some();
    matches!(
        op,
        Operator::Gt | Operator::GtEq | Operator::Lt | Operator::LtEq
    ) && ((is_time(left) && is_ts(right)) || (is_ts(left) && is_time(right)))
}

/// `date_bin(width, time[, origin])` with a fixed width: `(width, origin)` in ns.
pub(crate) fn date_bin_of_time(e: &Expr) -> Option<(i64, i64)> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = e else {
        return None;
    };
    if func.name() != "date_bin" {
        return None;
    }
    let Expr::Literal(width, _) = args.first()? else {
        return None;
    };
    let width = interval_literal_ns(width)?;
    if width <= 0 || !is_time(args.get(1)?) || args.len() > 3 {
        return None;
    }
    let origin = match args.get(2) {
        None => 0,
        Some(e) => literal_ns(e)?,
    };
    Some((width, origin))
}

/// Whether the rollup holds every source row of `range` as the source
/// shows it now (see the module's doc).
fn is_fresh(source: &FleetTable, view: &RollupView, range: &TimeRange) -> bool {
    if source.delete_seq() > view.seen_delete_seq {
        return false;
    }
    if let Some(cutoff) = source.expired_before()
        && range.min < cutoff
    {
        return false;
    }
    for f in source.files() {
        if !range.overlaps(f.min_time, f.max_time) {
            continue;
        }
        let newest = f.max_time.min(range.max);
        if f.seq > view.seen_seq || newest >= view.watermark_ns {
            return false;
        }
    }
    for p in source.buffered() {
        if !range.overlaps(p.min_time, p.max_time) {
            continue;
        }
        if p.max_time.min(range.max) >= view.watermark_ns {
            return false;
        }
        for b in &p.batches {
            let Some(seq) = b
                .column_by_name(SEQ_COLUMN)
                .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>())
            else {
                return false;
            };
            if arrow::compute::max(seq).is_some_and(|s| s > view.seen_seq) {
                return false;
            }
        }
    }
    true
}
