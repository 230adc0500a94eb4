//! The time range a query's filters allow, for pruning partitions and files.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use fleetlake_storage::schema::TIME_COLUMN;

/// Inclusive nanosecond bounds on `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub min: i64,
    pub max: i64,
}

impl Default for TimeRange {
    fn default() -> Self {
        Self {
            min: i64::MIN,
            max: i64::MAX,
        }
    }
}

impl TimeRange {
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        min <= self.max && max >= self.min
    }

    /// Narrows the range by every conjunct of `filters` that bounds `time`
    /// with a literal. Other filters are ignored (they do not widen it).
    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut r = Self::default();
        for f in filters {
            r.narrow(f);
        }
        r
    }

    fn narrow(&mut self, e: &Expr) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    self.narrow(left);
                    self.narrow(right);
                    return;
                }
                let (op, value) = match (is_time(left), is_time(right)) {
                    (true, false) => (*op, literal_ns(right)),
                    (false, true) => (op.swap().unwrap_or(*op), literal_ns(left)),
                    _ => return,
                };
                let Some(v) = value else { return };
                match op {
                    Operator::Eq => {
                        self.min = self.min.max(v);
                        self.max = self.max.min(v);
                    }
                    Operator::Gt => self.min = self.min.max(v.saturating_add(1)),
                    Operator::GtEq => self.min = self.min.max(v),
                    Operator::Lt => self.max = self.max.min(v.saturating_sub(1)),
                    Operator::LtEq => self.max = self.max.min(v),
                    _ => {}
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_time(expr) => {
                if let (Some(lo), Some(hi)) = (literal_ns(low), literal_ns(high)) {
                    self.min = self.min.max(lo);
                    self.max = self.max.min(hi);
                }
            }
            _ => {}
        }
    }
}

fn is_time(e: &Expr) -> bool {
    match e {
        Expr::Column(c) => c.name == TIME_COLUMN,
        Expr::Cast(c) => is_time(&c.expr),
        _ => false,
    }
}

/// A timestamp literal in nanoseconds.
pub(crate) fn literal_ns(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(v),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn bounds_from_comparisons() {
        let f = vec![
            col("time").gt_eq(ts(10)).and(col("time").lt(ts(20))),
            col("host").eq(lit("a")),
        ];
        assert_eq!(TimeRange::from_filters(&f), TimeRange { min: 10, max: 19 });
        let f = vec![ts(5).lt(col("time"))];
        assert_eq!(TimeRange::from_filters(&f).min, 6);
        let f = vec![col("time").between(ts(1), ts(2))];
        assert_eq!(TimeRange::from_filters(&f), TimeRange { min: 1, max: 2 });
        // OR does not narrow.
        let f = vec![col("time").lt(ts(1)).or(col("time").gt(ts(5)))];
        assert_eq!(TimeRange::from_filters(&f), TimeRange::default());
    }
}
