//! Checks that need the catalog: the SQL plans (DataFusion's message when
//! it does not), its `value` is numeric, the columns templates and safety
//! limits name exist.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use fleetlake_query::{QueryEngine, SqlCheck};

use crate::stream::StateKey;
use crate::stream::shape::Shape;

use crate::definition::{Kind, RuleDef};
use crate::error::{Error, Result};
use crate::eval::{VALUE, inventory_sql};
use crate::template::Template;

#[derive(Debug, Clone, Default)]
pub struct Validation {
    /// Not errors: e.g. the SQL reads tables that do not exist yet.
    pub warnings: Vec<String>,
    /// The tables the SQL reads (empty when it could not be planned yet).
    pub tables: Vec<String>,
    /// How the rule is evaluated: streaming (from state fed by writes) or,
    /// with the construct that kept it out, batch SQL.
    pub mode: Mode,
    /// The SQL's logical plan: batch evaluations run it instead of planning
    /// the SQL again, until a table's schema changes.
    pub plan: Option<Arc<datafusion::logical_expr::LogicalPlan>>,
}

/// How a rule is evaluated.
#[derive(Debug, Clone)]
pub enum Mode {
    Streaming(Arc<Compiled>),
    /// Batch SQL, and why.
    Batch(String),
}

impl Default for Mode {
    fn default() -> Self {
        Mode::Batch("not planned yet (the tables it reads do not exist)".into())
    }
}

/// A streaming rule: its shape, the state it reads, and the SQL's output
/// schema its answers are built in.
#[derive(Debug)]
pub struct Compiled {
    pub shape: Shape,
    pub key: StateKey,
    /// The tag columns of the table (to fill the state).
    pub tags: Vec<String>,
    pub schema: SchemaRef,
}

fn sql_error(def: &RuleDef, what: &str, e: fleetlake_query::Error) -> Error {
    match e {
        fleetlake_query::Error::User(m) => {
            Error::invalid(format!("rule {:?}: {what}: {m}", def.name))
        }
        other => Error::Query(other),
    }
}

/// Validates `def` against the catalog (after [`RuleDef::check`]).
///
/// # Errors
/// [`Error::Invalid`] with DataFusion's message for bad SQL, or naming the
/// missing column.
pub async fn validate(engine: &QueryEngine, def: &RuleDef) -> Result<Validation> {
    def.check()?;
    let mut v = Validation::default();
    let (schema, tables) = match engine
        .check(&def.db, &def.sql)
        .await
        .map_err(|e| sql_error(def, "sql", e))?
    {
        SqlCheck::MissingTables(t) => {
            v.warnings.push(format!(
                "sql reads {} that do{} not exist yet in database {:?}; the rule is evaluated once {}",
                t.join(", "),
                if t.len() == 1 { "es" } else { "" },
                def.db,
                if t.len() == 1 { "it does" } else { "they do" },
            ));
            return Ok(v);
        }
        SqlCheck::Planned {
            schema,
            tables,
            plan,
        } => {
            v.mode = match crate::stream::shape::compile(&plan) {
                Ok((shape, tags)) => Mode::Streaming(Arc::new(Compiled {
                    key: StateKey::of(&def.db, &shape),
                    shape,
                    tags,
                    schema: schema.clone(),
                })),
                Err(why) => Mode::Batch(why.0),
            };
            v.plan = Some(plan.clone());
            if def.eval == crate::definition::Eval::OnWrite
                && let Mode::Batch(why) = &v.mode
            {
                return Err(Error::invalid(format!(
                    "rule {:?}: eval = \"on_write\" needs a rule that streams; this one runs as batch SQL: {why}",
                    def.name
                )));
            }
            (schema, tables)
        }
    };
    v.tables = tables;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let bad = |m: String| Err(Error::invalid(format!("rule {:?}: {m}", def.name)));
    match schema.field_with_name(VALUE) {
        Ok(f) => {
            let t = f.data_type();
            if !(t.is_numeric() || matches!(t, DataType::Boolean | DataType::Null)) {
                return bad(format!("column `value` must be numeric, the SQL gives {t}"));
            }
        }
        Err(_) if def.kind == Kind::Record => {
            return bad(format!(
                "a record rule's SQL must return a numeric `value` column (it returns {names:?})"
            ));
        }
        Err(_) => {}
    }
    let has = |c: &str| names.contains(&c);
    for (k, a) in &def.annotations {
        let t = Template::parse(a).map_err(Error::invalid)?;
        for c in t.columns() {
            if !has(c) {
                return bad(format!(
                    "annotation {k:?} uses {{{{ {c} }}}} but the SQL returns only {names:?}"
                ));
            }
        }
    }
    if let Some(cmd) = def.action.as_ref().and_then(|a| a.command.as_ref()) {
        for arg in cmd {
            let t = Template::parse(arg).map_err(Error::invalid)?;
            for c in t.columns() {
                if !has(c) {
                    return bad(format!(
                        "command argument {arg:?} uses {{{{ {c} }}}} but the SQL returns only {names:?}"
                    ));
                }
            }
        }
    }
    if def.kind == Kind::SelfHeal {
        let safety = def.safety.clone().unwrap_or_default();
        if !has(safety.entity()) {
            return bad(format!(
                "the SQL must return the entity column {:?} (safety.entity) so each row names what is acted on; it returns {names:?}",
                safety.entity()
            ));
        }
        let needs_inventory = safety.inventory_sql.is_some()
            || safety
                .max_per_scope
                .iter()
                .any(|l| !has(&l.label) || l.max_percent.is_some());
        if needs_inventory && let Some(sql) = inventory_sql(def, &v.tables) {
            match engine
                .check(&def.db, &sql)
                .await
                .map_err(|e| sql_error(def, "inventory (safety.inventory_sql, or the entity and scope columns of the first table the SQL reads)", e))?
            {
                SqlCheck::MissingTables(t) => v.warnings.push(format!(
                    "the inventory reads {} that do not exist yet",
                    t.join(", ")
                )),
                SqlCheck::Planned { schema: inv, .. } => {
                    for l in &safety.max_per_scope {
                        if !has(&l.label) && inv.field_with_name(&l.label).is_err() {
                            return bad(format!(
                                "max_per_scope label {:?} is neither a column of the SQL nor of the inventory",
                                l.label
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(v)
}
