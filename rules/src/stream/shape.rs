//! Which rules stream: recognizing, in a rule's logical plan (as planned from
//! its SQL, before optimization), the shape that dominates fleet monitoring:
//!
//! ```sql
//! SELECT <tags>, AGG(field[, time[, param]]) AS value
//! FROM t
//! WHERE time > now() - INTERVAL 'W' [AND time <= now()]
//!   [AND <tag> = | != | IN (<literals>)] [AND <field> <op> <number>]
//! GROUP BY <tags>
//! [HAVING AGG(...) <op> <number>]
//! [ORDER BY ...]
//! ```
//!
//! Anything else is a [`NotStreamable`] naming the construct that kept the
//! rule out; such rules run as batch SQL.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::{AggregateFunction, Alias};
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use fleetlake_query::functions::Kind;
use fleetlake_query::functions::udaf::interval_literal_ns;

/// A comparison with a constant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cmp {
    Lt,
    LtEq,
    Gt,
    GtEq,
    Eq,
    NotEq,
}

impl Cmp {
    fn of(op: Operator) -> Option<Self> {
        Some(match op {
            Operator::Lt => Cmp::Lt,
            Operator::LtEq => Cmp::LtEq,
            Operator::Gt => Cmp::Gt,
            Operator::GtEq => Cmp::GtEq,
            Operator::Eq => Cmp::Eq,
            Operator::NotEq => Cmp::NotEq,
            _ => return None,
        })
    }

    /// `x <op> c` read as `c <op'> x`.
    fn flipped(self) -> Self {
        match self {
            Cmp::Lt => Cmp::Gt,
            Cmp::LtEq => Cmp::GtEq,
            Cmp::Gt => Cmp::Lt,
            Cmp::GtEq => Cmp::LtEq,
            other => other,
        }
    }

    pub fn holds(self, x: f64, c: f64) -> bool {
        match self {
            Cmp::Lt => x < c,
            Cmp::LtEq => x <= c,
            Cmp::Gt => x > c,
            Cmp::GtEq => x >= c,
            Cmp::Eq => x == c,
            Cmp::NotEq => x != c,
        }
    }
}

/// The aggregate a streaming rule computes per group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agg {
    Avg,
    Min,
    Max,
    Sum,
    /// `count(field)`: rows where the field is set.
    Count,
    /// `count(*)`: rows.
    CountRows,
    /// Sample standard deviation (`stddev`, `stddev_samp`).
    Stddev,
    /// `last_value(field ORDER BY time)`.
    Last,
    /// A series function of the query crate over `(field, time[, param])`
    /// (`ewma_deviation`'s alpha, `anomaly_score`'s span in nanoseconds);
    /// `staleness(time, now())` reads no field.
    Series(Kind, Option<f64>),
}

impl Agg {
    pub fn name(&self) -> String {
        match self {
            Agg::Avg => "avg".into(),
            Agg::Min => "min".into(),
            Agg::Max => "max".into(),
            Agg::Sum => "sum".into(),
            Agg::Count => "count".into(),
            Agg::CountRows => "count(*)".into(),
            Agg::Stddev => "stddev".into(),
            Agg::Last => "last_value".into(),
            Agg::Series(k, _) => k.name().into(),
        }
    }
}

/// A tag condition, true or false for a whole series.
#[derive(Debug, Clone, PartialEq)]
pub enum TagFilter {
    /// The tag is one of these values.
    In(String, Vec<String>),
    /// The tag is set and none of these values.
    NotIn(String, Vec<String>),
}

impl TagFilter {
    pub fn holds(&self, value: Option<&str>) -> bool {
        match self {
            TagFilter::In(_, vs) => value.is_some_and(|v| vs.iter().any(|x| x == v)),
            TagFilter::NotIn(_, vs) => value.is_some_and(|v| !vs.iter().any(|x| x == v)),
        }
    }

    pub fn tag(&self) -> &str {
        match self {
            TagFilter::In(t, _) | TagFilter::NotIn(t, _) => t,
        }
    }
}

/// A rule compiled into a streaming shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub table: String,
    /// The field the aggregate reads (`None`: rows only, as `count(*)` and
    /// `staleness` need).
    pub field: Option<String>,
    pub agg: Agg,
    /// The window: rows with `time > now - window_ns` count.
    pub window_ns: i64,
    /// Whether `time >= now - window` (rather than `>`).
    pub window_inclusive: bool,
    /// Whether rows after `now` are left out (`time <= now()`), and whether
    /// `now` itself is (`time < now()`).
    pub upper: Option<bool>,
    /// Group-by tags, in the order of the output columns they appear in.
    pub group_by: Vec<String>,
    pub tag_filters: Vec<TagFilter>,
    /// Conditions on the aggregated field, per row.
    pub field_filters: Vec<(Cmp, f64)>,
    pub having: Option<(Cmp, f64)>,
    /// Output columns in order: `Ok(tag)` names a group tag, `Err(())` the
    /// aggregate; with their output names.
    pub outputs: Vec<(Result<String, ()>, String)>,
}

/// Why a rule runs as batch SQL: the construct that kept it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotStreamable(pub String);

type Found<T> = Result<T, NotStreamable>;

fn no<T>(why: impl Into<String>) -> Found<T> {
    Err(NotStreamable(why.into()))
}

/// What the matcher needs to know of the table: a column's type.
pub trait Columns {
    fn data_type(&self, column: &str) -> Option<DataType>;
}

fn is_tag(t: &DataType) -> bool {
    matches!(t, DataType::Dictionary(_, v) if **v == DataType::Utf8)
}

fn is_number(t: &DataType) -> bool {
    matches!(t, DataType::Float64 | DataType::Int64 | DataType::UInt64)
}

/// The one table a plan of the shape reads: its scan's schema.
fn scanned(plan: &LogicalPlan) -> Option<arrow::datatypes::SchemaRef> {
    match plan {
        LogicalPlan::TableScan(scan) => Some(scan.source.schema()),
        LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Projection(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Aggregate(_)
        | LogicalPlan::SubqueryAlias(_) => match plan.inputs().as_slice() {
            [one] => scanned(one),
            _ => None,
        },
        _ => None,
    }
}

/// Recognizes the streaming shape in `plan` (planned, not optimized).
/// Returns it with the table's tag columns.
///
/// # Errors
/// [`NotStreamable`] naming the first construct outside the shape.
pub fn compile(plan: &LogicalPlan) -> Found<(Shape, Vec<String>)> {
    let Some(schema) = scanned(plan) else {
        return no("a plan that is not one aggregate over one table");
    };
    let shape = recognize(plan, &schema)?;
    let tags = schema
        .fields()
        .iter()
        .filter(|f| is_tag(f.data_type()))
        .map(|f| f.name().clone())
        .collect();
    Ok((shape, tags))
}

/// Recognizes the streaming shape in `plan`.
///
/// # Errors
/// [`NotStreamable`] naming the first construct outside the shape.
pub fn recognize(plan: &LogicalPlan, columns: &dyn Columns) -> Found<Shape> {
    let mut node = plan;
    // ORDER BY changes nothing a rule sees.
    if let LogicalPlan::Sort(s) = node {
        if s.fetch.is_some() {
            return no("ORDER BY with LIMIT");
        }
        node = &s.input;
    }
    let LogicalPlan::Projection(proj) = node else {
        return no(format!("{} at the top of the plan", node.display()));
    };
    let mut below = proj.input.as_ref();
    let mut having = None;
    if let LogicalPlan::Filter(f) = below
        && matches!(f.input.as_ref(), LogicalPlan::Aggregate(_))
    {
        having = Some(&f.predicate);
        below = &f.input;
    }
    let LogicalPlan::Aggregate(agg) = below else {
        return no(format!(
            "no GROUP BY aggregate ({} under the SELECT)",
            below.display()
        ));
    };
    let [aggr] = agg.aggr_expr.as_slice() else {
        return no(format!(
            "{} aggregates (streaming takes one)",
            agg.aggr_expr.len()
        ));
    };
    let agg_name = agg.schema.field(agg.group_expr.len()).name().clone();
    let mut node = agg.input.as_ref();
    let mut where_ = None;
    if let LogicalPlan::Filter(f) = node {
        where_ = Some(&f.predicate);
        node = &f.input;
    }
    if let LogicalPlan::SubqueryAlias(a) = node {
        node = &a.input;
    }
    let LogicalPlan::TableScan(scan) = node else {
        return no(format!("{} as the FROM (one table)", node.display()));
    };
    if scan.fetch.is_some() || !scan.filters.is_empty() {
        return no("a scan with pushed-down parts");
    }
    let table = scan.table_name.table().to_string();
    if scan.table_name.schema().is_some_and(|s| s == "system") {
        return no("a system table");
    }

    let mut group_by = Vec::new();
    for g in &agg.group_expr {
        let Expr::Column(c) = g else {
            return no(format!("GROUP BY {g} (tags only)"));
        };
        match columns.data_type(&c.name) {
            Some(t) if is_tag(&t) => group_by.push(c.name.clone()),
            _ => return no(format!("GROUP BY {} (not a tag)", c.name)),
        }
    }

    let (agg_kind, field) = aggregate(aggr, columns)?;

    let mut shape = Shape {
        table,
        field,
        agg: agg_kind,
        window_ns: 0,
        window_inclusive: false,
        upper: None,
        group_by: group_by.clone(),
        tag_filters: Vec::new(),
        field_filters: Vec::new(),
        having: None,
        outputs: Vec::new(),
    };
    let Some(predicate) = where_ else {
        return no("no time window (WHERE time > now() - INTERVAL '…')");
    };
    for c in conjuncts(predicate) {
        condition(c, columns, &mut shape)?;
    }
    if shape.window_ns <= 0 {
        return no("no time window (WHERE time > now() - INTERVAL '…')");
    }
    if let Some(h) = having {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = h else {
            return no(format!("HAVING {h}"));
        };
        let Some(cmp) = Cmp::of(*op) else {
            return no(format!("HAVING {h}"));
        };
        let is_agg = |e: &Expr| matches!(e, Expr::Column(c) if c.name == agg_name);
        shape.having = Some(match (number(left), number(right)) {
            (None, Some(c)) if is_agg(left) => (cmp, c),
            (Some(c), None) if is_agg(right) => (cmp.flipped(), c),
            _ => return no(format!("HAVING {h} (the aggregate against a number)")),
        });
    }
    for e in &proj.expr {
        let name = match e {
            Expr::Alias(Alias { name, .. }) => name.clone(),
            other => other.schema_name().to_string(),
        };
        let inner = unalias(e);
        let Expr::Column(c) = inner else {
            return no(format!("SELECT {e} (group tags and the aggregate only)"));
        };
        if c.name == agg_name {
            shape.outputs.push((Err(()), name));
        } else if group_by.contains(&c.name) {
            shape.outputs.push((Ok(c.name.clone()), name));
        } else {
            return no(format!("SELECT {e}"));
        }
    }
    Ok(shape)
}

fn aggregate(e: &Expr, columns: &dyn Columns) -> Found<(Agg, Option<String>)> {
    let e = unalias(e);
    let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
        return no(format!("aggregate {e}"));
    };
    if params.distinct || params.filter.is_some() || params.null_treatment.is_some() {
        return no(format!("{e} (DISTINCT, FILTER or NULLS)"));
    }
    let name = func.name().to_ascii_lowercase();
    let field_of = |arg: Option<&Expr>| -> Found<String> {
        match arg {
            Some(Expr::Column(c)) => match columns.data_type(&c.name) {
                Some(t) if is_number(&t) => Ok(c.name.clone()),
                _ => no(format!("{name}({}) (not a numeric field)", c.name)),
            },
            Some(other) => no(format!("{name}({other}) (a field column only)")),
            None => no(format!("{name}() without arguments")),
        }
    };
    let is_time = |arg: Option<&Expr>| matches!(arg, Some(Expr::Column(c)) if c.name == "time");
    let args = &params.args;
    if name != "last_value" && !params.order_by.is_empty() {
        return no(format!("{e} (ORDER BY inside the aggregate)"));
    }
    let simple = match name.as_str() {
        "avg" | "mean" => Some(Agg::Avg),
        "min" => Some(Agg::Min),
        "max" => Some(Agg::Max),
        "sum" => Some(Agg::Sum),
        "stddev" | "stddev_samp" => Some(Agg::Stddev),
        _ => None,
    };
    if let Some(a) = simple {
        if args.len() != 1 {
            return no(format!("{e}"));
        }
        return Ok((a, Some(field_of(args.first())?)));
    }
    match name.as_str() {
        "count" => match args.as_slice() {
            [Expr::Literal(_, _)] => Ok((Agg::CountRows, None)),
            [a] => Ok((Agg::Count, Some(field_of(Some(a))?))),
            _ => no(format!("{e}")),
        },
        "last_value" => {
            let by_time = matches!(params.order_by.as_slice(),
                [s] if s.asc && matches!(&s.expr, Expr::Column(c) if c.name == "time"));
            if !by_time || args.len() != 1 {
                return no(format!("{e} (last_value(field ORDER BY time))"));
            }
            Ok((Agg::Last, Some(field_of(args.first())?)))
        }
        _ => {
            let Some(kind) = Kind::ALL.iter().copied().find(|k| k.name() == name) else {
                return no(format!("the aggregate {name}"));
            };
            if kind == Kind::Staleness {
                let now_second =
                    matches!(args.get(1), Some(Expr::ScalarFunction(f)) if f.func.name() == "now");
                if !is_time(args.first()) || !now_second || args.len() != 2 {
                    return no(format!("{e} (staleness(time, now()))"));
                }
                return Ok((Agg::Series(kind, None), None));
            }
            if !is_time(args.get(1)) {
                return no(format!("{e} (time as the second argument)"));
            }
            let param = match (kind, args.get(2)) {
                (Kind::EwmaDeviation, Some(p)) => Some(
                    number(p).ok_or_else(|| NotStreamable(format!("{e} (alpha not a number)")))?,
                ),
                (Kind::SeasonalDelta, _) => {
                    return no(format!("{e} (seasonal_delta reaches before the window)"));
                }
                // The span, in nanoseconds (exact in an f64 up to 104 days).
                (Kind::AnomalyScore, Some(Expr::Literal(v, _))) => Some(
                    interval_literal_ns(v)
                        .filter(|ns| *ns > 0)
                        .ok_or_else(|| NotStreamable(format!("{e} (span not an interval)")))?
                        as f64,
                ),
                (_, None) => None,
                (_, Some(_)) => return no(format!("{e}")),
            };
            Ok((Agg::Series(kind, param), Some(field_of(args.first())?)))
        }
    }
}

/// `e` without its aliases (`count(*)` is planned as `count(1) AS count(*)`).
fn unalias(mut e: &Expr) -> &Expr {
    while let Expr::Alias(Alias { expr, .. }) = e {
        e = expr;
    }
    e
}

fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            let mut v = conjuncts(left);
            v.extend(conjuncts(right));
            v
        }
        other => vec![other],
    }
}

/// A numeric literal (an integer or a float, possibly negated).
fn number(e: &Expr) -> Option<f64> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Float64(Some(x)) => Some(*x),
            ScalarValue::Float32(Some(x)) => Some(f64::from(*x)),
            ScalarValue::Int64(Some(x)) => Some(*x as f64),
            ScalarValue::Int32(Some(x)) => Some(f64::from(*x)),
            ScalarValue::UInt64(Some(x)) => Some(*x as f64),
            _ => None,
        },
        Expr::Negative(inner) => number(inner).map(|x| -x),
        _ => None,
    }
}

fn string(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)), _) => {
            Some(s.clone())
        }
        _ => None,
    }
}

fn is_now(e: &Expr) -> bool {
    matches!(e, Expr::ScalarFunction(f) if f.func.name() == "now" && f.args.is_empty())
}

/// `now() - INTERVAL '…'` as nanoseconds (no months: they vary in length).
fn now_minus(e: &Expr) -> Option<i64> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Minus,
        right,
    }) = e
    else {
        return None;
    };
    if !is_now(left) {
        return None;
    }
    match right.as_ref() {
        Expr::Literal(v, _) => interval_literal_ns(v),
        _ => None,
    }
}

fn condition(e: &Expr, columns: &dyn Columns, shape: &mut Shape) -> Found<()> {
    let column = |e: &Expr| match e {
        Expr::Column(c) => Some(c.name.clone()),
        _ => None,
    };
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let Some(mut cmp) = Cmp::of(*op) else {
                return no(format!("WHERE {e}"));
            };
            // Column on the left.
            let (col, other) = match (column(left), column(right)) {
                (Some(c), _) => (c, right.as_ref()),
                (None, Some(c)) => {
                    cmp = cmp.flipped();
                    (c, left.as_ref())
                }
                _ => return no(format!("WHERE {e}")),
            };
            if col == "time" {
                if let Some(w) = now_minus(other) {
                    if !matches!(cmp, Cmp::Gt | Cmp::GtEq) || shape.window_ns > 0 {
                        return no(format!("WHERE {e} (one lower bound on time)"));
                    }
                    shape.window_ns = w;
                    shape.window_inclusive = cmp == Cmp::GtEq;
                    return Ok(());
                }
                if is_now(other) && matches!(cmp, Cmp::Lt | Cmp::LtEq) && shape.upper.is_none() {
                    shape.upper = Some(cmp == Cmp::LtEq);
                    return Ok(());
                }
                return no(format!(
                    "WHERE {e} (time > now() - INTERVAL and time <= now() only)"
                ));
            }
            let Some(t) = columns.data_type(&col) else {
                return no(format!("WHERE {e} (unknown column {col})"));
            };
            if is_tag(&t) {
                let Some(v) = string(other) else {
                    return no(format!("WHERE {e} (a tag against a string)"));
                };
                shape.tag_filters.push(match cmp {
                    Cmp::Eq => TagFilter::In(col, vec![v]),
                    Cmp::NotEq => TagFilter::NotIn(col, vec![v]),
                    _ => return no(format!("WHERE {e} (= or != on tags)")),
                });
                return Ok(());
            }
            if is_number(&t) && shape.field.as_deref() == Some(col.as_str()) {
                let Some(c) = number(other) else {
                    return no(format!("WHERE {e} (the field against a number)"));
                };
                shape.field_filters.push((cmp, c));
                return Ok(());
            }
            no(format!(
                "WHERE {e} (conditions on tags and the aggregated field only)"
            ))
        }
        Expr::InList(l) => {
            let Some(col) = column(&l.expr) else {
                return no(format!("WHERE {e}"));
            };
            if !columns.data_type(&col).is_some_and(|t| is_tag(&t)) {
                return no(format!("WHERE {e} (IN on tags only)"));
            }
            let values: Option<Vec<String>> = l.list.iter().map(string).collect();
            let Some(values) = values else {
                return no(format!("WHERE {e} (IN a list of strings)"));
            };
            shape.tag_filters.push(if l.negated {
                TagFilter::NotIn(col, values)
            } else {
                TagFilter::In(col, values)
            });
            Ok(())
        }
        other => no(format!("WHERE {other}")),
    }
}

/// The table's columns as a [`Columns`] (from an Arrow schema).
impl Columns for Arc<arrow::datatypes::Schema> {
    fn data_type(&self, column: &str) -> Option<DataType> {
        self.field_with_name(column)
            .ok()
            .map(|f| f.data_type().clone())
    }
}
