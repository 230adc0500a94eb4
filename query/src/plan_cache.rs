//! Plans by shape. A query's *shape* is its SQL with the literals it
//! compares columns with taken out (`hostname IN ($1)`, `time >= $2`).
//! Grafana panels, rules and scripts send the same shapes again and again
//! with other hosts and time bounds: each shape is parsed, planned and
//! optimized once, and later queries of it bind their own values into the
//! optimized plan and the tables as they are now into its scans.
//!
//! # Invariants
//! - A shape is reused only when its answer depends on nothing but its
//!   literals and the tables' rows: every function in it is immutable (no
//!   `now()`, no `random()`), every scan reads a [`FleetTable`] (whose
//!   filter push-down does not look at the filters' values; each use binds
//!   the table as it is then), and no output column is named after a
//!   parameter.
//! - A literal is bound only where it converts to the parameter's type the
//!   way the planner would have converted it: text to a string or a time,
//!   an integer to an integer or a float, a decimal to a float. Anything
//!   else goes the planner's own way, which also gives its error messages.
//! - The cache holds at most `capacity` shapes (least recently used go
//!   first), each of SQL no longer than [`MAX_SQL_BYTES`].

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, BinaryOperator, Expr as SqlExpr, Value};

use crate::table::FleetTable;

/// Longer SQL is planned every time (and never held by the cache).
pub const MAX_SQL_BYTES: usize = 16 << 10;

/// A literal taken out of a query's SQL, as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Text(String),
    Number(String),
}

/// A query cut into its shape and its literals.
#[derive(Debug)]
pub(crate) struct Shaped {
    /// The database and the shape's SQL text.
    pub key: String,
    /// The statement with `$1`, `$2`, ... in place of the literals.
    pub statement: DfStatement,
    /// `literals[i]` is `$(i + 1)`.
    pub literals: Vec<Literal>,
}

/// The shape of `statement` run in database `db`; `None` when it is not a
/// query or already has placeholders of its own.
pub(crate) fn shape(db: &str, statement: &DfStatement) -> Option<Shaped> {
    let DfStatement::Statement(inner) = statement else {
        return None;
    };
    if !matches!(**inner, ast::Statement::Query(_)) {
        return None;
    }
    let mut s = (**inner).clone();
    let mut literals = Vec::new();
    let mut own_placeholder = false;
    // Post-order: a node's operands are visited (and left as they are)
    // before the node itself takes them out, so every placeholder met as a
    // value was the user's.
    let _ = ast::visit_expressions_mut(&mut s, |e| {
        match e {
            SqlExpr::Value(v) if matches!(v.value, Value::Placeholder(_)) => own_placeholder = true,
            SqlExpr::BinaryOp { left, op, right } if is_comparison(op) => {
                if is_column(left) {
                    take(right, &mut literals);
                } else if is_column(right) {
                    take(left, &mut literals);
                }
            }
            SqlExpr::InList { expr, list, .. } if is_column(expr) => {
                for item in list {
                    take(item, &mut literals);
                }
            }
            SqlExpr::Between {
                expr, low, high, ..
            } if is_column(expr) => {
                take(low, &mut literals);
                take(high, &mut literals);
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    if own_placeholder {
        return None;
    }
    Some(Shaped {
        key: format!("{db}\u{1f}{s}"),
        statement: DfStatement::Statement(Box::new(s)),
        literals,
    })
}

fn is_comparison(op: &BinaryOperator) -> bool {
    use BinaryOperator::*;
    matches!(op, Eq | NotEq | Lt | LtEq | Gt | GtEq)
}

fn is_column(e: &SqlExpr) -> bool {
    matches!(e, SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_))
}

/// Replaces `e` by the next placeholder when it is a literal we bind.
fn take(e: &mut SqlExpr, literals: &mut Vec<Literal>) {
    let SqlExpr::Value(v) = e else {
        return;
    };
    let literal = match &v.value {
        Value::SingleQuotedString(s) => Literal::Text(s.clone()),
        Value::Number(n, false) => Literal::Number(n.clone()),
        _ => return,
    };
    literals.push(literal);
    v.value = Value::Placeholder(format!("${}", literals.len()));
}

/// The values of `literals` as parameters of `types`, or `None` when one
/// would not convert exactly as the planner converts it.
pub(crate) fn bind(literals: &[Literal], types: &[DataType]) -> Option<Vec<ScalarValue>> {
    if literals.len() != types.len() {
        return None;
    }
    literals
        .iter()
        .zip(types)
        .map(|(l, t)| value(l, t))
        .collect()
}

fn value(literal: &Literal, ty: &DataType) -> Option<ScalarValue> {
    use DataType::*;
    let is_text = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    match literal {
        // A string compared with a string column stays a string; with a
        // time column the planner casts it with the same kernel.
        Literal::Text(s) => {
            let fits = match ty {
                Dictionary(_, v) => is_text(v),
                t => is_text(t) || matches!(t, Timestamp(..) | Date32 | Date64),
            };
            if fits {
                ScalarValue::Utf8(Some(s.clone())).cast_to(ty).ok()
            } else {
                None
            }
        }
        // The planner reads an integer literal as Int64 and anything else
        // as Float64; against a float column both become Float64, against
        // an integer column an integer that fits keeps its value (a cast
        // that overflows fails here and goes the planner's way).
        Literal::Number(n) => match (n.parse::<i64>(), ty) {
            (Ok(i), Float64) => Some(ScalarValue::Float64(Some(i as f64))),
            (Ok(i), t) if t.is_integer() => ScalarValue::Int64(Some(i)).cast_to(ty).ok(),
            (Err(_), Float64) => n.parse::<f64>().ok().map(|f| ScalarValue::Float64(Some(f))),
            _ => None,
        },
    }
}

/// What a shape plans to.
#[derive(Debug)]
pub(crate) enum Cached {
    /// The optimized plan with `$1`.. in it and schema-only scans, and the
    /// parameters' types (`types[i]` is `$(i + 1)`'s).
    Reusable {
        plan: LogicalPlan,
        types: Vec<DataType>,
    },
    /// Planned every time (see the invariants).
    Unfit,
}

/// Whether a query's plan came from the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PlanUse {
    /// Planned from its SQL: not a cacheable query, or the cache is off.
    #[default]
    Planned,
    /// Its shape was planned now and kept.
    Miss,
    /// Bound into a plan kept before.
    Hit,
}

impl PlanUse {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Miss => "miss",
            Self::Hit => "hit",
        }
    }
}

/// Counts of [`PlanUse`] since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanCacheStats {
    pub hits: u64,
    pub misses: u64,
    pub planned: u64,
    pub entries: usize,
}

/// Shapes and their plans, least recently used first out.
#[derive(Debug)]
pub struct PlanCache {
    capacity: usize,
    inner: Mutex<Lru>,
    hits: AtomicU64,
    misses: AtomicU64,
    planned: AtomicU64,
}

#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<String, (Arc<Cached>, u64)>,
    tick: u64,
}

impl PlanCache {
    /// A cache of at most `capacity` shapes; 0 turns it off.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Lru::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            planned: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<Cached>> {
        let mut lru = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        lru.tick += 1;
        let tick = lru.tick;
        lru.entries.get_mut(key).map(|(c, used)| {
            *used = tick;
            Arc::clone(c)
        })
    }

    pub(crate) fn insert(&self, key: String, cached: Cached) {
        if !self.enabled() {
            return;
        }
        let mut lru = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        lru.tick += 1;
        let tick = lru.tick;
        lru.entries.insert(key, (Arc::new(cached), tick));
        if lru.entries.len() > self.capacity {
            // O(capacity), only when a new shape arrives at a full cache.
            let oldest = lru
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                lru.entries.remove(&k);
            }
        }
    }

    pub(crate) fn remove(&self, key: &str) {
        let mut lru = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        lru.entries.remove(key);
    }

    pub(crate) fn count(&self, used: PlanUse) {
        let c = match used {
            PlanUse::Hit => &self.hits,
            PlanUse::Miss => &self.misses,
            PlanUse::Planned => &self.planned,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> PlanCacheStats {
        PlanCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            planned: self.planned.load(Ordering::Relaxed),
            entries: self
                .inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entries
                .len(),
        }
    }
}

/// Whether every function in `plan` (planned, not yet optimized: the
/// optimizer folds `now()` into a literal) gives the same answer for the
/// same arguments.
pub(crate) fn immutable(plan: &LogicalPlan) -> bool {
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|p| {
        p.apply_expressions(|e| {
            e.apply(|e| {
                let v = match e {
                    Expr::ScalarFunction(f) => f.func.signature().volatility,
                    Expr::AggregateFunction(f) => f.func.signature().volatility,
                    Expr::WindowFunction(w) => w.fun.signature().volatility,
                    _ => Volatility::Immutable,
                };
                ok &= v == Volatility::Immutable;
                Ok(if ok {
                    TreeNodeRecursion::Continue
                } else {
                    TreeNodeRecursion::Stop
                })
            })
        })
    });
    ok
}

/// Whether every scan of `plan` reads a [`FleetTable`].
pub(crate) fn only_fleet_scans(plan: &LogicalPlan) -> bool {
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(s) = p {
            ok &= source_as_provider(&s.source)
                .is_ok_and(|p| p.downcast_ref::<FleetTable>().is_some());
        }
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok
}

/// The types of `$1`..`$n` in `plan`, or `None` when one has no type or
/// is gone (the optimizer dropped the comparison holding it).
pub(crate) fn parameter_types(plan: &LogicalPlan, n: usize) -> Option<Vec<DataType>> {
    let fields = plan.get_parameter_fields().ok()?;
    if fields.len() != n {
        return None;
    }
    (1..=n)
        .map(|i| {
            fields
                .get(&format!("${i}"))
                .and_then(|f| f.as_ref())
                .map(|f| f.data_type().clone())
        })
        .collect()
}

/// Whether an output column's name shows a parameter (`x = $1` unaliased
/// in the select list): the planner would have named it after the value.
pub(crate) fn names_a_parameter(plan: &LogicalPlan) -> bool {
    plan.schema().fields().iter().any(|f| {
        let name = f.name().as_bytes();
        name.windows(2)
            .any(|w| w[0] == b'$' && w[1].is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn shaped(sql: &str) -> Option<Shaped> {
        let mut statements = DFParser::parse_sql(sql).unwrap();
        shape("fleet", &statements.pop_front().unwrap())
    }

    #[test]
    fn comparisons_with_columns_become_parameters() {
        let s = shaped(
            "SELECT time_bucket(INTERVAL '1 minute', time) AS m, max(usage_user) FROM cpu \
             WHERE hostname IN ('host_1', 'host_2') AND time >= '2016-01-01T00:00:00Z' \
             AND '2016-01-01T01:00:00Z' > time AND usage_user > 90.5 \
             GROUP BY m ORDER BY m LIMIT 5",
        )
        .unwrap();
        assert_eq!(
            s.literals,
            vec![
                Literal::Text("host_1".into()),
                Literal::Text("host_2".into()),
                Literal::Text("2016-01-01T00:00:00Z".into()),
                Literal::Text("2016-01-01T01:00:00Z".into()),
                Literal::Number("90.5".into()),
            ]
        );
        let text = s.statement.to_string();
        assert!(text.contains("hostname IN ($1, $2)"), "{text}");
        assert!(text.contains("time >= $3"), "{text}");
        assert!(text.contains("$4 > time"), "{text}");
        assert!(text.contains("usage_user > $5"), "{text}");
        // Not compared with a column: kept in the shape.
        assert!(text.contains("INTERVAL '1 minute'"), "{text}");
        assert!(text.contains("LIMIT 5"), "{text}");
    }

    #[test]
    fn same_shape_same_key_other_values() {
        let a =
            shaped("SELECT * FROM cpu WHERE hostname = 'a' AND time BETWEEN '1' AND '2'").unwrap();
        let b =
            shaped("SELECT * FROM cpu WHERE hostname = 'b' AND time BETWEEN '3' AND '4'").unwrap();
        assert_eq!(a.key, b.key);
        assert_ne!(a.literals, b.literals);
        let c =
            shaped("SELECT * FROM cpu WHERE hostname = 'a' OR time BETWEEN '1' AND '2'").unwrap();
        assert_ne!(a.key, c.key);
        let mut other_db = DFParser::parse_sql(
            "SELECT * FROM cpu WHERE hostname = 'a' AND time BETWEEN '1' AND '2'",
        )
        .unwrap();
        assert_ne!(
            shape("other", &other_db.pop_front().unwrap()).unwrap().key,
            a.key
        );
    }

    #[test]
    fn statements_and_own_placeholders_are_not_shaped() {
        assert!(shaped("SELECT * FROM cpu WHERE hostname = $1").is_none());
        assert!(shaped("EXPLAIN SELECT * FROM cpu").is_none());
        assert!(shaped("DELETE FROM cpu WHERE hostname = 'a'").is_none());
        assert!(shaped("SHOW TABLES").is_none());
    }

    #[test]
    fn literals_bind_only_as_the_planner_converts_them() {
        use DataType::*;
        let ts = Timestamp(arrow::datatypes::TimeUnit::Nanosecond, Some("UTC".into()));
        let v = bind(&[Literal::Text("2016-01-01T00:00:01Z".into())], &[ts]).unwrap();
        assert_eq!(
            v[0],
            ScalarValue::TimestampNanosecond(Some(1_451_606_401_000_000_000), Some("UTC".into()))
        );
        let dict = Dictionary(Box::new(Int32), Box::new(Utf8));
        assert!(bind(&[Literal::Text("host_1".into())], &[dict]).is_some());
        assert_eq!(
            bind(&[Literal::Number("90".into())], &[Float64]).unwrap()[0],
            ScalarValue::Float64(Some(90.0))
        );
        assert_eq!(
            bind(&[Literal::Number("7".into())], &[Int32]).unwrap()[0],
            ScalarValue::Int32(Some(7))
        );
        // 1.5 against an integer column compares as a float: not bound.
        assert!(bind(&[Literal::Number("1.5".into())], &[Int64]).is_none());
        // Out of the column type's range: the planner's way.
        assert!(bind(&[Literal::Number("300".into())], &[Int8]).is_none());
        // A string against a number column: the planner compares as text.
        assert!(bind(&[Literal::Text("5".into())], &[Int64]).is_none());
        // Not a time: the planner reports it.
        assert!(bind(&[Literal::Text("yesterday-ish".into())], &[Date32]).is_none());
        assert!(bind(&[Literal::Text("a".into())], &[]).is_none());
    }

    #[test]
    fn least_recently_used_goes_first() {
        let c = PlanCache::new(2);
        c.insert("a".into(), Cached::Unfit);
        c.insert("b".into(), Cached::Unfit);
        assert!(c.get("a").is_some());
        c.insert("c".into(), Cached::Unfit);
        assert!(c.get("b").is_none());
        assert!(c.get("a").is_some() && c.get("c").is_some());
        assert_eq!(c.stats().entries, 2);
        let off = PlanCache::new(0);
        off.insert("a".into(), Cached::Unfit);
        assert!(off.get("a").is_none());
    }
}
