//! `system.rules`, `system.alerts` and `system.actions`: snapshots of the
//! engine, built each time a query names them.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, StringArray, TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use fleetlake_query::system::SystemTable;

use crate::engine::{RulesEngine, Source};

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn ts_array(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
}

fn strings<S: AsRef<str>>(v: Vec<Option<S>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(
        v.iter().map(|s| s.as_ref().map(|s| s.as_ref())),
    ))
}

/// The three tables, for the query engine's `system` schema.
pub fn tables(engine: &Arc<RulesEngine>) -> Vec<Arc<dyn SystemTable>> {
    vec![
        Arc::new(RulesTable(engine.clone())),
        Arc::new(AlertsTable(engine.clone())),
        Arc::new(ActionsTable(engine.clone())),
    ]
}

#[derive(Debug)]
pub struct RulesTable(pub Arc<RulesEngine>);

impl SystemTable for RulesTable {
    fn name(&self) -> &str {
        "rules"
    }

    fn batch(&self) -> Result<RecordBatch> {
        let rules = self.0.snapshot_rules();
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("db", DataType::Utf8, false),
            Field::new("version", DataType::UInt64, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("every", DataType::Utf8, false),
            Field::new("for", DataType::Utf8, false),
            Field::new("keep_firing_for", DataType::Utf8, false),
            Field::new("mode", DataType::Utf8, true),
            Field::new("sql", DataType::Utf8, false),
            Field::new("last_evaluation", ts(), true),
            Field::new("evaluation_ms", DataType::Float64, false),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("breaker_open", DataType::Boolean, false),
            Field::new("instances", DataType::UInt64, false),
        ]));
        let col = |f: &dyn Fn(&crate::engine::RuleSnapshot) -> Option<String>| {
            strings(rules.iter().map(f).collect())
        };
        let arrays: Vec<ArrayRef> = vec![
            col(&|r| Some(r.0.name.clone())),
            col(&|r| Some(r.0.kind.as_str().into())),
            col(&|r| Some(r.0.db.clone())),
            Arc::new(UInt64Array::from_iter_values(
                rules.iter().map(|r| r.2.version),
            )),
            col(&|r| {
                Some(match &r.1 {
                    Source::File(p) => format!("file:{}", p.display()),
                    Source::Api => "api".into(),
                })
            }),
            col(&|r| Some(r.0.every.to_string())),
            col(&|r| Some(r.0.for_.to_string())),
            col(&|r| Some(r.0.keep_firing_for.to_string())),
            col(&|r| r.0.safety.as_ref().map(|s| s.mode.as_str().into())),
            col(&|r| Some(r.0.sql.clone())),
            ts_array(rules.iter().map(|r| r.2.last_eval).collect()),
            Arc::new(Float64Array::from_iter_values(rules.iter().map(|r| r.4))),
            col(&|r| r.3.clone()),
            Arc::new(BooleanArray::from_iter(
                rules.iter().map(|r| Some(r.2.breaker.open)),
            )),
            Arc::new(UInt64Array::from_iter_values(
                rules.iter().map(|r| r.2.instances.len() as u64),
            )),
        ];
        Ok(RecordBatch::try_new(schema, arrays)?)
    }
}

#[derive(Debug)]
pub struct AlertsTable(pub Arc<RulesEngine>);

impl SystemTable for AlertsTable {
    fn name(&self) -> &str {
        "alerts"
    }

    fn batch(&self) -> Result<RecordBatch> {
        let rules = self.0.snapshot_rules();
        let mut rows = Vec::new();
        for (def, _, st, _, _) in &rules {
            for (key, a) in &st.instances {
                rows.push((
                    def.name.clone(),
                    st.version,
                    def.name.clone(),
                    key.clone(),
                    a.clone(),
                ));
            }
            for (key, a) in &st.safety_alerts {
                let name = a.labels.get("alertname").cloned().unwrap_or_default();
                rows.push((def.name.clone(), st.version, name, key.clone(), a.clone()));
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("rule", DataType::Utf8, false),
            Field::new("version", DataType::UInt64, false),
            Field::new("alertname", DataType::Utf8, false),
            Field::new("instance", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("value", DataType::Float64, true),
            Field::new("labels", DataType::Utf8, false),
            Field::new("annotations", DataType::Utf8, false),
            Field::new("active_at", ts(), false),
            Field::new("fired_at", ts(), true),
            Field::new("resolved_at", ts(), true),
            Field::new("keep_firing_since", ts(), true),
            Field::new("last_seen", ts(), false),
            Field::new("attempts", DataType::UInt64, false),
        ]));
        let s =
            |f: &dyn Fn(&AlertRow) -> String| strings(rows.iter().map(|r| Some(f(r))).collect());
        let arrays: Vec<ArrayRef> = vec![
            s(&|r| r.0.clone()),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
            s(&|r| r.2.clone()),
            s(&|r| r.3.clone()),
            s(&|r| r.4.state.as_str().into()),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.4.value))),
            s(&|r| serde_json::to_string(&r.4.labels).unwrap_or_default()),
            s(&|r| serde_json::to_string(&r.4.annotations).unwrap_or_default()),
            ts_array(rows.iter().map(|r| Some(r.4.active_at)).collect()),
            ts_array(rows.iter().map(|r| r.4.fired_at).collect()),
            ts_array(rows.iter().map(|r| r.4.resolved_at).collect()),
            ts_array(rows.iter().map(|r| r.4.keep_firing_since).collect()),
            ts_array(rows.iter().map(|r| Some(r.4.last_seen)).collect()),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| u64::from(r.4.attempts)),
            )),
        ];
        Ok(RecordBatch::try_new(schema, arrays)?)
    }
}

#[derive(Debug)]
pub struct ActionsTable(pub Arc<RulesEngine>);

impl SystemTable for ActionsTable {
    fn name(&self) -> &str {
        "actions"
    }

    fn batch(&self) -> Result<RecordBatch> {
        let rows = self.0.snapshot_actions();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("rule", DataType::Utf8, false),
            Field::new("version", DataType::UInt64, false),
            Field::new("evaluation_time", ts(), false),
            Field::new("entity", DataType::Utf8, true),
            Field::new("instance", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("action", DataType::Utf8, false),
            Field::new("mode", DataType::Utf8, false),
            Field::new("decision", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, true),
            Field::new("detail", DataType::Utf8, false),
            Field::new("evidence", DataType::Utf8, false),
            Field::new("outcome", DataType::Utf8, true),
            Field::new("message", DataType::Utf8, false),
            Field::new("finished_at", ts(), true),
        ]));
        let s = |f: &dyn Fn(&crate::core::ActionRow) -> Option<String>| {
            strings(rows.iter().map(f).collect())
        };
        let arrays: Vec<ArrayRef> = vec![
            s(&|r| Some(r.id.clone())),
            s(&|r| Some(r.rule.clone())),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.version),
            )),
            ts_array(rows.iter().map(|r| Some(r.evaluation_time)).collect()),
            s(&|r| r.entity.clone()),
            s(&|r| Some(r.instance.clone())),
            s(&|r| Some(r.status.clone())),
            s(&|r| Some(r.action.clone())),
            s(&|r| Some(r.mode.clone())),
            s(&|r| Some(r.decision.as_str().into())),
            s(&|r| r.reason.map(|x| x.as_str().into())),
            s(&|r| Some(r.detail.clone())),
            s(&|r| Some(r.evidence.clone())),
            s(&|r| r.outcome.clone()),
            s(&|r| Some(r.message.clone())),
            ts_array(rows.iter().map(|r| r.finished_at).collect()),
        ];
        Ok(RecordBatch::try_new(schema, arrays)?)
    }
}

/// One alert instance as `system.alerts` shows it: rule, version, key,
/// labels (JSON), and its state.
type AlertRow = (String, u64, String, String, crate::state::Instance);
