//! `DELETE FROM <table> WHERE <time range> [AND <tag> = '<value>' ...]`.
//!
//! The statement is recognised here and its WHERE clause planned by
//! DataFusion against the table (so `now() - INTERVAL '1 day'`, RFC 3339
//! strings and `BETWEEN` all work); what comes out must be a conjunction of
//! bounds on `time` and equalities on tags. The write path turns the result
//! into a tombstone.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use datafusion::sql::sqlparser::ast::{FromTable, ObjectNamePart, Statement, TableFactor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use fleetlake_storage::schema::{ColumnKind, TIME_COLUMN};

use crate::QueryEngine;
use crate::error::{Error, Result};
use crate::time_range::TimeRange;

pub const DELETE_SYNTAX: &str = "DELETE supports: DELETE FROM <table> WHERE <time range> [AND <tag> = '<value>' ...] (a time range on `time` is required)";

/// What a `DELETE` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteSpec {
    pub table: String,
    /// Inclusive nanosecond bounds.
    pub min_time: i64,
    pub max_time: i64,
    pub tags: Vec<(String, String)>,
}

fn user(msg: impl Into<String>) -> Error {
    Error::User(msg.into())
}

/// The table and WHERE clause of `sql` if it is a single `DELETE`; `None`
/// for anything else (including text that does not parse).
fn parse(sql: &str) -> Option<Result<(String, String)>> {
    let statements = Parser::parse_sql(&GenericDialect {}, sql).ok()?;
    let [Statement::Delete(d)] = statements.as_slice() else {
        return None;
    };
    let from = match &d.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    let shape_ok = d.tables.is_empty()
        && d.using.is_none()
        && d.returning.is_none()
        && d.output.is_none()
        && d.order_by.is_empty()
        && d.limit.is_none()
        && from.len() == 1
        && from[0].joins.is_empty();
    if !shape_ok {
        return Some(Err(user(DELETE_SYNTAX)));
    }
    let TableFactor::Table { name, .. } = &from[0].relation else {
        return Some(Err(user(DELETE_SYNTAX)));
    };
    let Some(ObjectNamePart::Identifier(table)) = name.0.last() else {
        return Some(Err(user(DELETE_SYNTAX)));
    };
    let Some(selection) = &d.selection else {
        return Some(Err(user(format!(
            "DELETE without WHERE is refused. {DELETE_SYNTAX}"
        ))));
    };
    Some(Ok((table.value.clone(), selection.to_string())))
}

impl QueryEngine {
    /// Plans `sql` as a delete on database `db` when it is a `DELETE`.
    ///
    /// # Errors
    /// [`Error::User`] for an unknown table or a WHERE clause that is not a
    /// time range plus tag equalities, with what is supported.
    pub async fn plan_delete(&self, db: &str, sql: &str) -> Result<Option<DeleteSpec>> {
        crate::front_door::check_sql(sql)?;
        let Some(parsed) = parse(sql) else {
            return Ok(None);
        };
        let (table, selection) = parsed?;
        let Some(schema) = self.ingester().table_schema(db, &table) else {
            return Err(user(format!(
                "table '{table}' not found in database '{db}'"
            )));
        };
        let select = format!(
            "SELECT * FROM \"{}\" WHERE {selection}",
            table.replace('"', "\"\"")
        );
        let plan = self
            .session(db)
            .sql(&select)
            .await
            .map_err(|e| Error::from_datafusion(e, 0))?
            .into_optimized_plan()
            .map_err(|e| Error::from_datafusion(e, 0))?;
        let mut predicate = None;
        plan.apply(|node| {
            if let LogicalPlan::Filter(f) = node {
                predicate = Some(f.predicate.clone());
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        let Some(predicate) = predicate else {
            return Err(user(format!(
                "the WHERE clause selects no time range. {DELETE_SYNTAX}"
            )));
        };
        let mut range = TimeRange::default();
        let mut has_time = false;
        let mut tags = Vec::new();
        for c in split_conjunction(&predicate) {
            if is_time_bound(c) {
                let r = TimeRange::from_filters(std::slice::from_ref(c));
                has_time = true;
                range.min = range.min.max(r.min);
                range.max = range.max.min(r.max);
                continue;
            }
            match tag_equality(c, |name| schema.kind_of(name) == Some(ColumnKind::Tag)) {
                Some(pair) => tags.push(pair),
                None => {
                    return Err(user(format!("cannot delete by `{c}`. {DELETE_SYNTAX}")));
                }
            }
        }
        if !has_time {
            return Err(user(format!(
                "the WHERE clause has no condition on `time`. {DELETE_SYNTAX}"
            )));
        }
        Ok(Some(DeleteSpec {
            table,
            min_time: range.min,
            max_time: range.max,
            tags,
        }))
    }
}

/// `time <op> <literal>` (or mirrored) for a comparison operator.
fn is_time_bound(e: &Expr) -> bool {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return false;
    };
    let time = |e: &Expr| match e {
        Expr::Column(c) => c.name == TIME_COLUMN,
        Expr::Cast(c) => matches!(c.expr.as_ref(), Expr::Column(col) if col.name == TIME_COLUMN),
        _ => false,
    };
    let literal = |e: &Expr| matches!(e, Expr::Literal(..));
    matches!(
        op,
        Operator::Gt | Operator::GtEq | Operator::Lt | Operator::LtEq | Operator::Eq
    ) && ((time(left) && literal(right)) || (time(right) && literal(left)))
}

/// `(tag, value)` when `e` is `<tag> = '<value>'` (either side, possibly
/// with the tag cast to a string type).
fn tag_equality(e: &Expr, is_tag: impl Fn(&str) -> bool) -> Option<(String, String)> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = e
    else {
        return None;
    };
    let column = |e: &Expr| -> Option<String> {
        match e {
            Expr::Column(c) => Some(c.name.clone()),
            Expr::Cast(c) => match c.expr.as_ref() {
                Expr::Column(col) => Some(col.name.clone()),
                _ => None,
            },
            _ => None,
        }
    };
    let string = |e: &Expr| crate::tag_pages::literal_str(e).map(str::to_string);
    let (name, value) = match (column(left), string(right)) {
        (Some(c), Some(v)) => (c, v),
        _ => (column(right)?, string(left)?),
    };
    is_tag(&name).then_some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_deletes() {
        assert!(parse("SELECT 1").is_none());
        assert!(parse("not sql at all").is_none());
        let (t, w) = parse("DELETE FROM cpu WHERE time < '2016-01-01'")
            .unwrap()
            .unwrap();
        assert_eq!(t, "cpu");
        assert_eq!(w, "time < '2016-01-01'");
        assert!(parse("DELETE FROM cpu").unwrap().is_err());
        assert!(
            parse("DELETE FROM cpu WHERE time < 1 RETURNING *")
                .unwrap()
                .is_err()
        );
    }
}
