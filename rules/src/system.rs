//! `system.rules`, `system.alerts` and `system.actions`: snapshots of the
//! engine, built each time a query names them.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use fleetlake_query::system::{Columns, SystemTable};

use crate::engine::{RulesEngine, Source};
use crate::validate::Mode;

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
        Columns::new(&rules)
            .str("name", |r| &r.0.name)
            .str("kind", |r| r.0.kind.as_str())
            .str("db", |r| &r.0.db)
            .u64("version", |r| r.2.version)
            .string("source", |r| match &r.1 {
                Source::File(p) => format!("file:{}", p.display()),
                Source::Api => "api".into(),
            })
            .string("every", |r| r.0.every.to_string())
            .string("for", |r| r.0.for_.to_string())
            .string("keep_firing_for", |r| r.0.keep_firing_for.to_string())
            .opt_str("mode", |r| r.0.safety.as_ref().map(|s| s.mode.as_str()))
            .str("sql", |r| &r.0.sql)
            .opt_time("last_evaluation", |r| r.2.last_eval)
            .f64("evaluation_ms", |r| r.4)
            .opt_str("last_error", |r| r.3.as_deref())
            .str("evaluation", |r| match &r.5 {
                Mode::Streaming(_) => "streaming",
                Mode::Batch(_) => "batch",
            })
            .opt_str("batch_reason", |r| match &r.5 {
                Mode::Streaming(_) => None,
                Mode::Batch(why) => Some(why.as_str()),
            })
            .bool("breaker_open", |r| r.2.breaker.open)
            .u64("instances", |r| r.2.instances.len() as u64)
            .finish()
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
        for (def, _, st, _, _, _) in &rules {
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
        Columns::new(&rows)
            .str("rule", |r| &r.0)
            .u64("version", |r| r.1)
            .str("alertname", |r| &r.2)
            .str("instance", |r| &r.3)
            .str("state", |r| r.4.state.as_str())
            .opt_f64("value", |r| r.4.value)
            .string("labels", |r| {
                serde_json::to_string(&r.4.labels).unwrap_or_default()
            })
            .string("annotations", |r| {
                serde_json::to_string(&r.4.annotations).unwrap_or_default()
            })
            .time("active_at", |r| r.4.active_at)
            .opt_time("fired_at", |r| r.4.fired_at)
            .opt_time("resolved_at", |r| r.4.resolved_at)
            .opt_time("keep_firing_since", |r| r.4.keep_firing_since)
            .time("last_seen", |r| r.4.last_seen)
            .u64("attempts", |r| u64::from(r.4.attempts))
            .finish()
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
        Columns::new(&rows)
            .str("id", |r| &r.id)
            .str("rule", |r| &r.rule)
            .u64("version", |r| r.version)
            .time("evaluation_time", |r| r.evaluation_time)
            .opt_str("entity", |r| r.entity.as_deref())
            .str("instance", |r| &r.instance)
            .str("status", |r| &r.status)
            .str("action", |r| &r.action)
            .str("mode", |r| &r.mode)
            .str("decision", |r| r.decision.as_str())
            .opt_str("reason", |r| r.reason.map(|x| x.as_str()))
            .str("detail", |r| &r.detail)
            .str("evidence", |r| &r.evidence)
            .opt_str("outcome", |r| r.outcome.as_deref())
            .str("message", |r| &r.message)
            .opt_time("finished_at", |r| r.finished_at)
            .finish()
    }
}
