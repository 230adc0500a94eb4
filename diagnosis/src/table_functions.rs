//! The bulk forms in SQL: `job_diagnoses(start, end)` (every job that
//! ended in the range, one row per reported cause) and `host_impact(start,
//! end)` (the fleet view: the hosts that hurt the most of those jobs).
//!
//! ```sql
//! -- The top causes of the last day's jobs:
//! SELECT cause, count(*) AS jobs, sum(cost_s) AS lost_s
//! FROM job_diagnoses(now() - INTERVAL '1 day', now())
//! WHERE rank = 1 GROUP BY cause ORDER BY lost_s DESC;
//! -- The hosts that hurt the most jobs:
//! SELECT * FROM host_impact(now() - INTERVAL '1 day', now()) LIMIT 10;
//! ```
//!
//! `start` and `end` are constant expressions: timestamps, RFC 3339
//! strings, or anything folding to one (`now() - INTERVAL '1 day'`). The
//! database is the query's. The work (loading with [`load_range`],
//! diagnosing, ranking hosts) happens when the query is planned for
//! execution; the answer is a table in memory.
//!
//! # Invariants
//! - A job with no reported cause still has one row (`rank`, `cause` and
//!   the cause columns NULL), so counting rows by job counts every job; a
//!   job whose rows do not form a DAG has one row with `error` set.
//! - The functions hold the engine weakly (the engine holds them).

use std::sync::{Arc, Weak};

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{ColumnarValue, Expr};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_plan::ExecutionPlan;
use fleetlake_query::QueryEngine;

use crate::bulk::{diagnose_all, host_impact};
use crate::config::Config;
use crate::fetch::{RangeOptions, load_range};

/// Registers `job_diagnoses` and `host_impact` on `engine`.
pub fn register(engine: &Arc<QueryEngine>) {
    for which in [Which::Jobs, Which::Hosts] {
        engine.register_table_function(
            which.name(),
            Arc::new(Function {
                engine: Arc::downgrade(engine),
                which,
            }),
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Jobs,
    Hosts,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Jobs => "job_diagnoses",
            Which::Hosts => "host_impact",
        }
    }

    fn schema(self) -> SchemaRef {
        let time = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        let f = |name: &str, t: DataType, null: bool| Field::new(name, t, null);
        Arc::new(Schema::new(match self {
            Which::Jobs => vec![
                f("job_id", DataType::Utf8, false),
                f("status", DataType::Utf8, false),
                f("user", DataType::Utf8, true),
                f("queue", DataType::Utf8, true),
                f("start", time(), false),
                f("end", time(), false),
                f("wall_s", DataType::Float64, false),
                f("queue_wait_s", DataType::Float64, true),
                f("rank", DataType::Int64, true),
                f("cause", DataType::Utf8, true),
                f("confidence", DataType::Float64, true),
                f("cost_s", DataType::Float64, true),
                f("hosts", DataType::Utf8, true),
                f("stage_id", DataType::Int64, true),
                f("summary", DataType::Utf8, true),
                f("action", DataType::Utf8, true),
                f("error", DataType::Utf8, true),
            ],
            Which::Hosts => vec![
                f("hostname", DataType::Utf8, false),
                f("jobs", DataType::Int64, false),
                f("cost_s", DataType::Float64, false),
                f("top_cause", DataType::Utf8, true),
                f("causes", DataType::Utf8, false),
                f("worst_job", DataType::Utf8, false),
                f("worst_cost_s", DataType::Float64, false),
                f("first", time(), false),
                f("last", time(), false),
            ],
        }))
    }
}

#[derive(Debug)]
struct Function {
    engine: Weak<QueryEngine>,
    which: Which,
}

impl TableFunctionImpl for Function {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let name = self.which.name();
        let [start, end] = args.exprs() else {
            return plan_err!(
                "{name}(start, end) takes 2 arguments, got {}",
                args.exprs().len()
            );
        };
        let start_ns = constant_ns(name, "start", start, args.session())?;
        let end_ns = constant_ns(name, "end", end, args.session())?;
        if end_ns < start_ns {
            return plan_err!("{name}: end is before start");
        }
        Ok(Arc::new(Bulk {
            engine: self.engine.clone(),
            which: self.which,
            start_ns,
            end_ns,
            schema: self.which.schema(),
        }))
    }
}

/// A constant argument as Unix nanoseconds: folded (so `now()` is the
/// query's), then cast to a timestamp (RFC 3339 strings parse).
fn constant_ns(name: &str, arg: &str, expr: &Expr, session: &dyn Session) -> Result<i64> {
    let bad =
        |why: String| plan_err!("{name}(start, end): {arg} must be a constant timestamp ({why})");
    let schema = Arc::new(DFSchema::empty());
    // `now()` folds to the query's start (the planner has not stamped it
    // yet when a statement is planned outside `SessionContext::sql`).
    let now = session
        .execution_props()
        .query_execution_start_time
        .unwrap_or_else(chrono::Utc::now);
    let context = SimplifyContext::builder()
        .with_schema(schema.clone())
        .with_query_execution_start_time(Some(now))
        .build();
    let folded = ExprSimplifier::new(context).simplify(expr.clone())?;
    let value = match folded {
        Expr::Literal(v, _) => v,
        other => {
            let physical = session.create_physical_expr(other, &schema)?;
            let one_row = RecordBatch::try_new_with_options(
                Arc::new(Schema::empty()),
                vec![],
                &RecordBatchOptions::new().with_row_count(Some(1)),
            )?;
            match physical.evaluate(&one_row) {
                Ok(ColumnarValue::Scalar(v)) => v,
                Ok(ColumnarValue::Array(a)) if a.len() == 1 => ScalarValue::try_from_array(&a, 0)?,
                Ok(_) => return bad("it is not one value".into()),
                Err(e) => return bad(e.to_string()),
            }
        }
    };
    if value.is_null() {
        return bad("it is NULL".into());
    }
    match value.cast_to(&DataType::Timestamp(TimeUnit::Nanosecond, None)) {
        Ok(ScalarValue::TimestampNanosecond(Some(ns), _)) => Ok(ns),
        Ok(other) => bad(format!("got {other}")),
        Err(_) => bad(format!("got {value}")),
    }
}

/// One call's answer, computed when scanned.
#[derive(Debug)]
struct Bulk {
    engine: Weak<QueryEngine>,
    which: Which,
    start_ns: i64,
    end_ns: i64,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for Bulk {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let engine = self.engine.upgrade().ok_or_else(|| {
            DataFusionError::Execution(format!("{}: the engine is shut down", self.which.name()))
        })?;
        let db = state.config_options().catalog.default_schema.clone();
        let inputs = load_range(
            &engine,
            &db,
            self.start_ns,
            self.end_ns,
            &RangeOptions::default(),
        )
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let reports = diagnose_all(&inputs, &Config::default());
        let columns = match self.which {
            Which::Jobs => job_columns(&inputs, &reports),
            Which::Hosts => host_columns(&reports),
        };
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        let exec = MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?;
        Ok(exec)
    }
}

type Reports = [(String, crate::Result<crate::Report>)];

/// A value's serde name (`failing_disk`, `SUCCEEDED`).
pub(crate) fn serde_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

fn job_columns(inputs: &[crate::JobInput], reports: &Reports) -> Vec<ArrayRef> {
    let mut job = StringBuilder::new();
    let mut status = StringBuilder::new();
    let mut user = StringBuilder::new();
    let mut queue = StringBuilder::new();
    let mut start = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut end = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut wall = Float64Builder::new();
    let mut wait = Float64Builder::new();
    let mut rank = Int64Builder::new();
    let mut cause = StringBuilder::new();
    let mut confidence = Float64Builder::new();
    let mut cost = Float64Builder::new();
    let mut hosts = StringBuilder::new();
    let mut stage = Int64Builder::new();
    let mut summary = StringBuilder::new();
    let mut action = StringBuilder::new();
    let mut error = StringBuilder::new();
    for (input, (job_id, report)) in inputs.iter().zip(reports) {
        match report {
            Ok(r) => {
                let reported: Vec<_> = r.reported().collect();
                let rows = reported.len().max(1);
                for i in 0..rows {
                    job.append_value(job_id);
                    status.append_value(serde_name(&r.status));
                    user.append_option(r.user.as_deref());
                    queue.append_option(r.queue.as_deref());
                    start.append_value(r.start_ns);
                    end.append_value(r.end_ns);
                    wall.append_value(secs(r.wall_ns));
                    wait.append_option(r.queue_wait_ns.map(secs));
                    error.append_null();
                    match reported.get(i) {
                        Some(c) => {
                            rank.append_value(i as i64 + 1);
                            cause.append_value(serde_name(&c.kind));
                            confidence.append_value(c.confidence);
                            cost.append_value(secs(c.cost_ns));
                            hosts.append_value(c.hosts.join(","));
                            stage.append_option(c.stage_id.map(i64::from));
                            summary.append_value(&c.summary);
                            action.append_value(&c.action);
                        }
                        None => {
                            rank.append_null();
                            cause.append_null();
                            confidence.append_null();
                            cost.append_null();
                            hosts.append_null();
                            stage.append_null();
                            summary.append_null();
                            action.append_null();
                        }
                    }
                }
            }
            Err(e) => {
                let run = input.run.as_ref();
                let end_ns = run.and_then(|r| r.end_ns).unwrap_or(0);
                let start_ns = run.and_then(|r| r.start_ns).unwrap_or(end_ns);
                job.append_value(job_id);
                status.append_value(run.map(|r| serde_name(&r.status)).unwrap_or_default());
                user.append_option(run.and_then(|r| r.user.as_deref()));
                queue.append_option(run.and_then(|r| r.queue.as_deref()));
                start.append_value(start_ns);
                end.append_value(end_ns);
                wall.append_value(secs(end_ns - start_ns));
                wait.append_null();
                rank.append_null();
                cause.append_null();
                confidence.append_null();
                cost.append_null();
                hosts.append_null();
                stage.append_null();
                summary.append_null();
                action.append_null();
                error.append_value(e.to_string());
            }
        }
    }
    vec![
        Arc::new(job.finish()),
        Arc::new(status.finish()),
        Arc::new(user.finish()),
        Arc::new(queue.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(wall.finish()),
        Arc::new(wait.finish()),
        Arc::new(rank.finish()),
        Arc::new(cause.finish()),
        Arc::new(confidence.finish()),
        Arc::new(cost.finish()),
        Arc::new(hosts.finish()),
        Arc::new(stage.finish()),
        Arc::new(summary.finish()),
        Arc::new(action.finish()),
        Arc::new(error.finish()),
    ]
}

fn host_columns(reports: &Reports) -> Vec<ArrayRef> {
    let impact = host_impact(reports.iter().filter_map(|(_, r)| r.as_ref().ok()));
    let mut host = StringBuilder::new();
    let mut jobs = Int64Builder::new();
    let mut cost = Float64Builder::new();
    let mut top = StringBuilder::new();
    let mut causes = StringBuilder::new();
    let mut worst = StringBuilder::new();
    let mut worst_cost = Float64Builder::new();
    let mut first = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut last = TimestampNanosecondBuilder::new().with_timezone("UTC");
    for h in &impact {
        host.append_value(&h.hostname);
        jobs.append_value(h.jobs as i64);
        cost.append_value(secs(h.cost_ns));
        top.append_option(h.top_cause().map(|k| serde_name(&k)));
        causes.append_value(
            h.causes
                .iter()
                .map(|(k, n)| format!("{}: {n}", serde_name(k)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        worst.append_value(&h.worst_job);
        worst_cost.append_value(secs(h.worst_cost_ns));
        first.append_value(h.first_ns);
        last.append_value(h.last_ns);
    }
    vec![
        Arc::new(host.finish()),
        Arc::new(jobs.finish()),
        Arc::new(cost.finish()),
        Arc::new(top.finish()),
        Arc::new(causes.finish()),
        Arc::new(worst.finish()),
        Arc::new(worst_cost.finish()),
        Arc::new(first.finish()),
        Arc::new(last.finish()),
    ]
}
