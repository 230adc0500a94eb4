//! Integer fields compared with whole float literals, without the cast.
//!
//! `usage_user > 90.0` over an integer field plans as `CAST(usage_user AS
//! DOUBLE) > 90`: every row is converted before it is compared, and the
//! Parquet statistics are read through the cast. DataFusion keeps the cast
//! because `BIGINT` to `DOUBLE` loses precision. When the literal is a whole
//! number of magnitude below 2^53 (and fits the column's type), `CAST(c AS
//! DOUBLE) op L` and `c op L` agree for every `c`: the conversion is
//! monotonic, exact for `|c| ≤ 2^53`, and `L` and its neighbours `L ± 1` are
//! exact doubles, so a `c` that rounds cannot land on or cross `L`. NULL
//! stays NULL.
//!
//! Applied to filters and scan filters after binding (a cached plan's
//! literals are parameters until then).

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Cast, Expr, ExprSchemable, LogicalPlan, Operator};

/// 2^53: every integer of smaller magnitude is an exact double.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// `plan` with its filters' integer-to-float casts unwrapped where exact.
pub fn unwrap_casts(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| match node {
        LogicalPlan::Filter(_) => {
            let schema = node.inputs()[0].schema().clone();
            node.map_expressions(|e| e.transform_up(|e| unwrap(e, &schema)))
        }
        LogicalPlan::TableScan(ref scan) => {
            let schema = DFSchema::try_from_qualified_schema(
                scan.table_name.clone(),
                scan.source.schema().as_ref(),
            )?;
            node.map_expressions(|e| e.transform_up(|e| unwrap(e, &schema)))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

fn unwrap(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
        return Ok(Transformed::no(e));
    };
    if !matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
    ) {
        return Ok(Transformed::no(e));
    }
    let rewritten = match (integer_cast(left, schema), whole(right)) {
        (Some((c, t)), Some(v)) => literal(v, &t).map(|l| (c.clone(), *op, l)),
        _ => match (whole(left), integer_cast(right, schema)) {
            (Some(v), Some((c, t))) => literal(v, &t).map(|l| (l, *op, c.clone())),
            _ => None,
        },
    };
    Ok(match rewritten {
        Some((l, op, r)) => Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
            Box::new(l),
            op,
            Box::new(r),
        ))),
        None => Transformed::no(e),
    })
}

/// `CAST(c AS DOUBLE)` of an integer expression `c`: `c` and its type.
fn integer_cast<'a>(
    e: &'a Expr,
    schema: &DFSchema,
) -> Option<(&'a Expr, arrow::datatypes::DataType)> {
    let Expr::Cast(Cast { expr, field }) = e else {
        return None;
    };
    if *field.data_type() != arrow::datatypes::DataType::Float64 {
        return None;
    }
    let t = expr.get_type(schema).ok()?;
    t.is_integer().then_some((expr.as_ref(), t))
}

/// A float literal's value when it is a whole number below 2^53.
fn whole(e: &Expr) -> Option<f64> {
    let Expr::Literal(ScalarValue::Float64(Some(v)), _) = e else {
        return None;
    };
    (v.fract() == 0.0 && v.abs() < EXACT).then_some(*v)
}

/// `v` as a literal of integer type `t`, when it fits.
fn literal(v: f64, t: &arrow::datatypes::DataType) -> Option<Expr> {
    // `v` is whole and below 2^53: the conversion is exact.
    let wide = ScalarValue::Int64(Some(v as i64));
    let typed = wide.cast_to(t).ok()?;
    // A cast that wrapped or saturated would not compare back equal.
    (typed.cast_to(&arrow::datatypes::DataType::Int64).ok()? == wide)
        .then(|| Expr::Literal(typed, None))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::{cast, col, lit};

    use super::*;

    fn schema() -> DFSchema {
        DFSchema::try_from(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("u", DataType::UInt8, true),
            Field::new("f", DataType::Float64, true),
        ]))
        .unwrap()
    }

    fn rewrite(e: Expr) -> Expr {
        let schema = Arc::new(schema());
        e.transform_up(|e| unwrap(e, &schema)).unwrap().data
    }

    #[test]
    fn whole_literals_compare_on_the_integer() {
        let d = |c| cast(col(c), DataType::Float64);
        assert_eq!(rewrite(d("i").gt(lit(90.0))), col("i").gt(lit(90i64)));
        assert_eq!(rewrite(lit(-3.0).lt_eq(d("i"))), lit(-3i64).lt_eq(col("i")));
        assert_eq!(rewrite(d("u").eq(lit(200.0))), col("u").eq(lit(200u8)));
        // Inside other expressions too.
        assert_eq!(
            rewrite(d("i").gt(lit(1.0)).and(col("f").gt(lit(0.5)))),
            col("i").gt(lit(1i64)).and(col("f").gt(lit(0.5)))
        );
    }

    #[test]
    fn other_literals_keep_the_cast() {
        let d = |c| cast(col(c), DataType::Float64);
        for e in [
            d("i").gt(lit(90.5)),
            d("i").gt(lit(f64::NAN)),
            d("i").gt(lit(f64::INFINITY)),
            d("i").gt(lit(EXACT)),
            // Out of UInt8's range: the comparison is decided by the cast.
            d("u").lt(lit(300.0)),
            d("u").gt(lit(-1.0)),
            // A float column's cast, and arithmetic, are left alone.
            cast(col("f"), DataType::Float64).gt(lit(1.0)),
            (d("i") + lit(1.0)).gt(lit(2.0)),
        ] {
            assert_eq!(rewrite(e.clone()), e);
        }
    }
}
