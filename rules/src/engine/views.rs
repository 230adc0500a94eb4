//! Read-only views of the engine: the rules API's JSON, the alerts in the
//! shape of Prometheus's `/api/v1/alerts`, and the snapshots behind
//! `system.rules` and `system.actions`. Each view is taken under one lock,
//! so it is consistent across rules.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Loaded, RulesEngine, Source};
use crate::core::{ActionRow, RuleState};
use crate::definition::RuleDef;
use crate::eval;
use crate::state::AlertState;
use crate::validate::Mode;

/// One rule as `system.rules` shows it: definition, where it came from, its
/// state, its last error, its last evaluation's duration (ms) and how it is
/// evaluated.
pub(crate) type RuleSnapshot = (Arc<RuleDef>, Source, RuleState, Option<String>, f64, Mode);

impl RulesEngine {
    pub fn rule_json(&self, name: &str) -> Option<Value> {
        let inner = self.inner.lock();
        inner.rules.get(name).map(loaded_json)
    }

    pub fn rules_json(&self) -> Value {
        let inner = self.inner.lock();
        json!({
            "rules": inner.rules.values().map(loaded_json).collect::<Vec<_>>(),
            "file_errors": inner.file_errors.iter().map(|(p, e)| json!({"file": p, "error": e})).collect::<Vec<_>>(),
            "shadowed_api_rules": inner.shadowed.keys().collect::<Vec<_>>(),
        })
    }

    /// Active alerts (pending and firing), in the shape of Prometheus's `/api/v1/alerts`.
    pub fn alerts_json(&self) -> Value {
        let inner = self.inner.lock();
        let mut alerts = Vec::new();
        for (name, l) in &inner.rules {
            let all = l
                .state
                .instances
                .iter()
                .map(|x| (x, false))
                .chain(l.state.safety_alerts.iter().map(|x| (x, true)));
            for ((key, a), safety) in all {
                if a.state == AlertState::Resolved {
                    continue;
                }
                let mut labels = a.labels.clone();
                if !safety {
                    labels.insert("alertname".into(), name.clone());
                }
                alerts.push(json!({
                    "labels": labels,
                    "annotations": a.annotations,
                    "state": a.state.as_str(),
                    "activeAt": eval::rfc3339(a.active_at),
                    "firedAt": a.fired_at.map(eval::rfc3339),
                    "keepFiringSince": a.keep_firing_since.map(eval::rfc3339),
                    "value": a.value.map(|v| v.to_string()),
                    "rule": name,
                    "version": l.state.version,
                    "instance": key,
                }));
            }
        }
        json!({"status": "success", "data": {"alerts": alerts}})
    }

    pub(crate) fn snapshot_actions(&self) -> Vec<ActionRow> {
        self.inner.lock().actions.iter().cloned().collect()
    }

    pub(crate) fn snapshot_rules(&self) -> Vec<RuleSnapshot> {
        self.inner
            .lock()
            .rules
            .values()
            .map(|l| {
                (
                    l.def.clone(),
                    l.source.clone(),
                    l.state.clone(),
                    l.last_error.clone(),
                    l.last_duration_ms,
                    l.mode.clone(),
                )
            })
            .collect()
    }
}

fn loaded_json(l: &Loaded) -> Value {
    let active = |s: AlertState| l.state.instances.values().filter(|a| a.state == s).count();
    json!({
        "name": l.def.name,
        "version": l.state.version,
        "source": l.source,
        "definition": &*l.def,
        "health": if l.last_error.is_some() { "err" } else if l.state.last_eval.is_some() { "ok" } else { "unknown" },
        "last_error": l.last_error,
        "warnings": l.warnings,
        "last_evaluation": l.state.last_eval.map(eval::rfc3339),
        "evaluation_ms": l.last_duration_ms,
        "pending": active(AlertState::Pending),
        "firing": active(AlertState::Firing),
        "breaker": {"open": l.state.breaker.open, "since": l.state.breaker.since.map(eval::rfc3339), "reason": l.state.breaker.reason},
        "awaiting_approval": l.state.approvals.len(),
        "evaluation": mode_json(&l.mode),
    })
}

/// How a rule is evaluated: streaming with the state it reads, or batch
/// with the construct that kept it out.
fn mode_json(mode: &Mode) -> Value {
    match mode {
        Mode::Streaming(c) => json!({
            "mode": "streaming",
            "table": c.shape.table,
            "field": c.shape.field,
            "aggregate": c.shape.agg.name(),
            "window": fleetlake_time::format_duration(std::time::Duration::from_nanos(c.shape.window_ns.max(0) as u64)),
            "group_by": c.shape.group_by,
        }),
        Mode::Batch(why) => json!({"mode": "batch", "reason": why}),
    }
}
