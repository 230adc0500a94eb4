//! Backtests: a rule evaluated over history as if it had been running —
//! the same SQL (with `now()` at each step), the same state machine and the
//! same safety limits in simulated time — with no side effects: no actions,
//! no notifications, no state or record writes.
//!
//! In simulated time every action succeeds at once (the breaker never
//! trips), nothing is in flight across steps, and no one approves: an
//! action awaiting approval expires after `approval_ttl`. Only this rule's
//! simulated actions count against the global hourly limit.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::core::{self, Env, Live, RuleState};
use crate::definition::{self, Kind, RuleDef};
use crate::duration::Dur;
use crate::engine::{RulesEngine, gather_inventory, record_lines};
use crate::error::{Error, Result};
use crate::eval::{self, rfc3339};
use crate::safety::Decision;
use crate::state::Change;
use crate::validate::validate;

/// Most evaluations one backtest may run.
pub const MAX_STEPS: i64 = 20_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    /// A rule definition (the API's JSON body) ...
    #[serde(default)]
    rule: Option<Value>,
    /// ... or the name of an installed rule.
    #[serde(default)]
    name: Option<String>,
    start: Value,
    end: Value,
    #[serde(default)]
    step: Option<Dur>,
}

/// RFC 3339 text or integer nanoseconds since the epoch.
fn time_arg(v: &Value, what: &str) -> Result<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| Error::invalid(format!("{what}: expected nanoseconds since the epoch"))),
        Value::String(s) => fleetlake_time::parse_rfc3339(s).ok_or_else(|| {
            Error::invalid(format!(
                "{what} {s:?}: not an RFC 3339 time like \"2026-01-01T00:00:00Z\""
            ))
        }),
        _ => Err(Error::invalid(format!(
            "{what}: expected an RFC 3339 time like \"2026-01-01T00:00:00Z\" or integer nanoseconds"
        ))),
    }
}

pub async fn run(engine: &Arc<RulesEngine>, body: &[u8]) -> Result<Value> {
    let req: Request = serde_json::from_slice(body).map_err(|e| {
        Error::invalid(format!(
            "backtest body must be JSON like {{\"name\": \"disk_stuck\", \"start\": \"2026-01-01T00:00:00Z\", \"end\": \"2026-01-02T00:00:00Z\", \"step\": \"1m\"}} (or \"rule\": {{...}} instead of \"name\"): {e}"
        ))
    })?;
    let def: RuleDef = match (&req.rule, &req.name) {
        (Some(r), None) => definition::parse_body(r.to_string().as_bytes())?,
        (None, Some(n)) => (*engine
            .rule_def(n)
            .ok_or_else(|| Error::NotFound(n.clone()))?)
        .clone(),
        _ => {
            return Err(Error::invalid(
                "give exactly one of \"rule\" (a definition) or \"name\"",
            ));
        }
    };
    let q = engine.query_engine()?;
    let v = validate(&q, &def).await?;
    let start = time_arg(&req.start, "start")?;
    let end = time_arg(&req.end, "end")?;
    let step = req.step.unwrap_or(def.every).ns();
    if step <= 0 {
        return Err(Error::invalid("step must be positive"));
    }
    if end < start {
        return Err(Error::invalid("end is before start"));
    }
    // i128: the times come from the request and may sit at i64's ends.
    let steps = (i128::from(end) - i128::from(start)) / i128::from(step) + 1;
    if steps > i128::from(MAX_STEPS) {
        return Err(Error::invalid(format!(
            "{steps} evaluations; at most {MAX_STEPS} per backtest: use a larger step or a shorter range"
        )));
    }
    let mut st = RuleState {
        version: 1,
        ..RuleState::default()
    };
    let mut timeline: BTreeMap<String, (BTreeMap<String, String>, Vec<Value>)> = BTreeMap::new();
    let mut actions = Vec::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut records = 0u64;
    let mut seq = 0u64;
    let mut t = start;
    let mut tables = v.tables.clone();
    while t <= end {
        let batches = match eval::run_sql(&q, &def.db, &def.sql, t).await {
            Ok(b) => b,
            Err(e) => {
                errors.push(json!({"evaluation_time": rfc3339(t), "error": e.to_string()}));
                t += step;
                continue;
            }
        };
        let samples = eval::samples(&def, &batches)?;
        if def.kind == Kind::Record {
            records += record_lines(&def, &samples, t).lines().count() as u64;
        }
        if tables.is_empty() {
            tables = validate(&q, &def)
                .await
                .map(|v| v.tables)
                .unwrap_or_default();
        }
        let inventory = gather_inventory(&q, &def, &tables, t, &samples).await?;
        let mut new_id = || {
            seq += 1;
            format!("backtest-{seq}")
        };
        let env = Env {
            global: engine.global_limits(),
            live: Live::default(),
            inventory,
            generator_url: String::new(),
            new_id: &mut new_id,
        };
        let out = core::apply(&def, &mut st, samples, t, env);
        for tr in out.transitions.iter().chain(&out.safety_transitions) {
            let labels = st
                .instances
                .get(&tr.key)
                .or_else(|| st.safety_alerts.get(&tr.key))
                .map(|a| a.labels.clone())
                .unwrap_or_default();
            let entry = timeline
                .entry(tr.key.clone())
                .or_insert_with(|| (labels, Vec::new()));
            let to = match tr.change {
                Change::Pending => "pending",
                Change::Firing => "firing",
                Change::Resolved => "resolved",
                Change::Dropped => "dropped",
            };
            entry.1.push(json!({"to": to, "at": rfc3339(tr.at)}));
        }
        for (row, _) in &out.decisions {
            let label = row.reason.map_or(row.decision.as_str().to_string(), |r| {
                format!("skipped:{}", r.as_str())
            });
            *counts.entry(label).or_default() += 1;
            actions.push(json!({
                "evaluation_time": rfc3339(row.evaluation_time),
                "entity": row.entity,
                "instance": row.instance,
                "status": row.status,
                "decision": row.decision.as_str(),
                "reason": row.reason.map(|r| r.as_str()),
                "detail": row.detail,
            }));
            if row.decision == Decision::Executed {
                core::finish(&def, &mut st, &row.id, true, t);
            }
        }
        t += step;
    }
    Ok(json!({
        "rule": def.name,
        "kind": def.kind.as_str(),
        "start": rfc3339(start),
        "end": rfc3339(end),
        "step": Dur(std::time::Duration::from_nanos(step as u64)).to_string(),
        "evaluations": steps,
        "timeline": timeline.into_iter().map(|(k, (labels, tr))| json!({"instance": k, "labels": labels, "transitions": tr})).collect::<Vec<_>>(),
        "actions": actions,
        "summary": counts,
        "records": records,
        "errors": errors,
        "warnings": v.warnings,
    }))
}
