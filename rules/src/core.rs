//! One evaluation of one rule, given its rows: state transitions, safety
//! decisions and the actions to run. Pure (the caller supplies time, ids
//! and what is in flight), so the live engine and the backtest share it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::actions::{ActionRequest, idempotency_key};
use crate::definition::{ActionKind, Kind, Mode, RuleDef};
use crate::safety::{
    self, Acted, Candidate, Decision, GlobalLimits, Inventory, SafetyAlert, SafetyContext,
    SkipReason,
};
use crate::state::{self, AlertState, Change, Instance, Sample, Transition};
use crate::template;

const HOUR_NS: i64 = 3600 * 1_000_000_000;

/// Everything about a rule that survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    pub version: u64,
    /// Hash of the definition the version belongs to.
    pub def_hash: String,
    pub instances: BTreeMap<String, Instance>,
    /// `RuleSafetyCandidates` and `RuleEscalation` alerts of the rule.
    #[serde(default)]
    pub safety_alerts: BTreeMap<String, Instance>,
    #[serde(default)]
    pub acted: Vec<ActedRecord>,
    #[serde(default)]
    pub breaker: BreakerState,
    #[serde(default)]
    pub approvals: BTreeMap<String, Approval>,
    pub last_eval: Option<i64>,
}

impl RuleState {
    /// A fingerprint of what a restart needs from this state: everything
    /// but what the next evaluation recomputes (each instance's value, row,
    /// annotations and last sighting, and the time of the last evaluation).
    pub fn durable_fingerprint(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        // Every field named, so that a new one is a compile error here
        // until it is sorted into durable or recomputed.
        let RuleState {
            version,
            def_hash,
            instances,
            safety_alerts,
            acted,
            breaker,
            approvals,
            last_eval: _,
        } = self;
        let view = (
            version,
            def_hash,
            DurableInstances(instances),
            DurableInstances(safety_alerts),
            acted,
            breaker,
            approvals,
        );
        // Streamed into the hasher: a round fingerprints every rule it
        // evaluated, and a copy of each state as JSON would cost the
        // runtime's workers megabytes per round.
        let mut w = HashWriter(FINGERPRINT.build_hasher());
        serde_json::to_writer(&mut w, &view).expect("a state serializes");
        w.0.finish()
    }
}

/// [`RuleState::durable_fingerprint`]'s hash: in memory only, never stored.
static FINGERPRINT: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0xd0ab);

/// Feeds written bytes to a hasher.
struct HashWriter(foldhash::fast::FoldHasher<'static>);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::hash::Hasher::write(&mut self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Instances by key, without what the next evaluation recomputes (value,
/// row, annotations, last sighting).
struct DurableInstances<'a>(&'a BTreeMap<String, Instance>);

impl Serialize for DurableInstances<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, i)| {
            let Instance {
                labels,
                value: _,
                row: _,
                annotations: _,
                state,
                active_at,
                fired_at,
                resolved_at,
                keep_firing_since,
                last_seen: _,
                last_sent,
                attempts,
                escalated,
            } = i;
            (
                k,
                (
                    labels,
                    state,
                    active_at,
                    fired_at,
                    resolved_at,
                    keep_firing_since,
                    last_sent,
                    attempts,
                    escalated,
                ),
            )
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActedRecord {
    pub id: String,
    #[serde(flatten)]
    pub acted: Acted,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BreakerState {
    pub open: bool,
    pub since: Option<i64>,
    pub reason: String,
    pub reset_at: Option<i64>,
}

/// An action awaiting a human's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub instance: String,
    pub entity: String,
    pub scopes: BTreeMap<String, String>,
    pub evaluation_time: i64,
    pub expires_at: i64,
}

/// A row of `system.actions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRow {
    pub id: String,
    pub rule: String,
    pub version: u64,
    pub evaluation_time: i64,
    pub entity: Option<String>,
    pub instance: String,
    /// firing | resolved
    pub status: String,
    pub action: String,
    pub mode: String,
    pub decision: Decision,
    pub reason: Option<SkipReason>,
    pub detail: String,
    /// JSON array of the rows behind the decision.
    pub evidence: String,
    /// success | failure, once carried out.
    pub outcome: Option<String>,
    pub message: String,
    pub finished_at: Option<i64>,
}

/// In-flight work the live engine knows of (zero in a backtest).
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub global_acted_last_hour: u32,
    pub in_flight_rule: u32,
    pub in_flight_global: u32,
    pub busy: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub transitions: Vec<Transition>,
    pub safety_transitions: Vec<Transition>,
    /// New rows for `system.actions`, and for each the action to run (if any).
    pub decisions: Vec<(ActionRow, Option<ActionRequest>)>,
    /// Notifications without a row (Alertmanager re-sends).
    pub resends: Vec<ActionRequest>,
    pub duplicate_rows: usize,
}

pub struct Env<'a> {
    pub global: GlobalLimits,
    pub live: Live,
    pub inventory: Option<Inventory>,
    pub generator_url: String,
    pub new_id: &'a mut dyn FnMut() -> String,
}

fn mode_of(def: &RuleDef) -> Mode {
    match (&def.safety, def.kind) {
        (Some(s), _) => s.mode,
        // Notifications of plain alert rules go out unless a mode says otherwise.
        (None, Kind::Alert) => Mode::Auto,
        (None, _) => Mode::DryRun,
    }
}

/// Applies one evaluation at `now` with the rule's rows to `st`.
pub fn apply(
    def: &RuleDef,
    st: &mut RuleState,
    samples: Vec<Sample>,
    now: i64,
    env: Env<'_>,
) -> Outcome {
    apply_in(def, st, samples, None, now, env)
}

/// [`apply`] for an evaluation that speaks only for the instances in
/// `scope` (see [`state::step_in`]).
pub fn apply_in(
    def: &RuleDef,
    st: &mut RuleState,
    samples: Vec<Sample>,
    scope: Option<&dyn state::Scope>,
    now: i64,
    env: Env<'_>,
) -> Outcome {
    let mut out = Outcome::default();
    let n = samples.len();
    expire_approvals(def, st, now, &mut out);
    let mut seen = BTreeSet::new();
    out.duplicate_rows = samples.iter().filter(|s| !seen.insert(s.key())).count();
    debug_assert!(n >= out.duplicate_rows);
    out.transitions = state::step_in(
        &mut st.instances,
        samples,
        scope,
        now,
        def.for_.ns(),
        def.keep_firing_for.ns(),
    );
    for a in st.instances.values_mut() {
        if a.last_seen == now {
            let text = crate::eval::row_text(&a.row);
            a.annotations = def
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), template::render(v, &text, &a.labels)))
                .collect();
        }
        if a.state == AlertState::Resolved {
            a.attempts = 0;
            a.escalated = false;
        }
    }
    st.last_eval = Some(now);
    match def.kind {
        Kind::Record => {}
        Kind::Alert => {
            let mut env = env;
            notify(def, st, now, &mut env, &mut out)
        }
        Kind::SelfHeal => remediate(def, st, now, env, &mut out),
    }
    let keep = [
        HOUR_NS,
        def.safety
            .as_ref()
            .and_then(|s| s.cooldown)
            .map_or(0, |c| c.ns()),
        def.safety
            .as_ref()
            .and_then(|s| s.breaker.as_ref())
            .map_or(0, |b| b.window.ns()),
    ]
    .into_iter()
    .max()
    .unwrap_or(HOUR_NS);
    // Unfinished actions stay (their outcome is still to come), for a day at most.
    st.acted.retain(|a| {
        a.acted.at > now - keep
            || (a.acted.finished_at.is_none() && now - a.acted.at < 24 * HOUR_NS)
    });
    out
}

pub fn expire_approvals(def: &RuleDef, st: &mut RuleState, now: i64, out: &mut Outcome) {
    let expired: Vec<String> = st
        .approvals
        .values()
        .filter(|a| a.expires_at <= now)
        .map(|a| a.id.clone())
        .collect();
    for id in expired {
        let a = st.approvals.remove(&id).expect("listed above");
        out.decisions.push((
            ActionRow {
                id: format!("{id}-expired"),
                rule: def.name.clone(),
                version: st.version,
                evaluation_time: now,
                entity: Some(a.entity.clone()),
                instance: a.instance.clone(),
                status: "firing".into(),
                action: action_type(def),
                mode: mode_of(def).as_str().into(),
                decision: Decision::Expired,
                reason: None,
                detail: format!(
                    "approval of {id} not given within approval_ttl; denied by default"
                ),
                evidence: "[]".into(),
                outcome: None,
                message: String::new(),
                finished_at: None,
            },
            None,
        ));
    }
}

fn action_type(def: &RuleDef) -> String {
    def.action
        .as_ref()
        .map_or("none", |a| match a.kind {
            ActionKind::Webhook => "webhook",
            ActionKind::Alertmanager => "alertmanager",
            ActionKind::Exec => "exec",
            ActionKind::Log => "log",
            ActionKind::Diagnose => "diagnose",
        })
        .to_string()
}

// The arguments are the parts of one notification; the callers hold them apart.
#[allow(clippy::too_many_arguments)]
pub fn request(
    def: &RuleDef,
    version: u64,
    key: &str,
    a: &Instance,
    status: &'static str,
    now: i64,
    id: &str,
    generator_url: &str,
) -> ActionRequest {
    let resend = def
        .action
        .as_ref()
        .and_then(|x| x.resend)
        .map_or(def.every.ns(), |r| r.ns());
    ActionRequest {
        action_id: id.to_string(),
        rule: def.name.clone(),
        version,
        status,
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        value: a.value,
        evidence: vec![a.row.clone()],
        idempotency_key: idempotency_key(&def.name, key, a.active_at),
        evaluation_time: now,
        starts_at: a.fired_at.unwrap_or(a.active_at),
        // As Prometheus: a firing alert's endsAt is 4 re-send intervals
        // ahead, so Alertmanager resolves it itself if we stop sending.
        ends_at: a
            .resolved_at
            .unwrap_or(now.saturating_add(resend.max(def.every.ns()).saturating_mul(4))),
        entity: def
            .safety
            .as_ref()
            .and_then(|s| a.labels.get(s.entity()).cloned()),
        generator_url: generator_url.to_string(),
        attachments: BTreeMap::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    def: &RuleDef,
    st: &RuleState,
    id: String,
    now: i64,
    key: &str,
    a: &Instance,
    status: &str,
    decision: Decision,
    reason: Option<SkipReason>,
    detail: String,
    entity: Option<String>,
) -> ActionRow {
    ActionRow {
        id,
        rule: def.name.clone(),
        version: st.version,
        evaluation_time: now,
        entity,
        instance: key.to_string(),
        status: status.to_string(),
        action: action_type(def),
        mode: mode_of(def).as_str().into(),
        decision,
        reason,
        detail,
        evidence: serde_json::to_string(&[&a.row]).unwrap_or_default(),
        outcome: None,
        message: String::new(),
        finished_at: None,
    }
}

/// Alert rules: a notification when an instance fires and when it
/// resolves (exec: on firing only); Alertmanager also gets every active
/// alert again each re-send interval.
fn notify(def: &RuleDef, st: &mut RuleState, now: i64, env: &mut Env<'_>, out: &mut Outcome) {
    let Some(action) = def.action.clone() else {
        return;
    };
    let mode = mode_of(def);
    let decision = match mode {
        Mode::Shadow => Decision::Shadow,
        Mode::DryRun => Decision::DryRun,
        Mode::Approval | Mode::Auto => Decision::Executed,
    };
    let mut notified = BTreeSet::new();
    let transitions = out.transitions.clone();
    for t in &transitions {
        let status = match t.change {
            Change::Firing => "firing",
            // A command or a diagnosis is for the firing only.
            Change::Resolved if !matches!(action.kind, ActionKind::Exec | ActionKind::Diagnose) => {
                "resolved"
            }
            _ => continue,
        };
        let Some(a) = st.instances.get(&t.key).cloned() else {
            continue;
        };
        notified.insert(t.key.clone());
        let id = (env.new_id)();
        let run = (decision == Decision::Executed).then(|| {
            request(
                def,
                st.version,
                &t.key,
                &a,
                status,
                now,
                &id,
                &env.generator_url,
            )
        });
        let r = row(
            def,
            st,
            id,
            now,
            &t.key,
            &a,
            status,
            decision,
            None,
            String::new(),
            None,
        );
        out.decisions.push((r, run));
        if decision == Decision::Executed
            && let Some(i) = st.instances.get_mut(&t.key)
        {
            i.last_sent = Some(now);
        }
    }
    if action.kind == ActionKind::Alertmanager && decision == Decision::Executed {
        let resend = action.resend.map_or(def.every.ns(), |r| r.ns());
        let version = st.version;
        for (key, a) in st.instances.iter_mut() {
            if a.state == AlertState::Firing
                && !notified.contains(key)
                && a.last_sent.is_none_or(|t| now - t >= resend)
            {
                a.last_sent = Some(now);
                out.resends.push(request(
                    def,
                    version,
                    key,
                    a,
                    "firing",
                    now,
                    "",
                    &env.generator_url,
                ));
            }
        }
    }
}

fn remediate(def: &RuleDef, st: &mut RuleState, now: i64, env: Env<'_>, out: &mut Outcome) {
    let safety = def.safety.clone().unwrap_or_default();
    let candidates: Vec<Candidate> = st
        .instances
        .iter()
        .filter(|(_, a)| a.state == AlertState::Firing && a.last_seen == now)
        .map(|(k, a)| Candidate {
            key: k.clone(),
            labels: a.labels.clone(),
            attempts: a.attempts,
        })
        .collect();
    let mut busy = env.live.busy.clone();
    busy.extend(st.approvals.values().map(|a| a.entity.clone()));
    let ctx = SafetyContext {
        now,
        acted: st.acted.iter().map(|a| a.acted.clone()).collect(),
        global_acted_last_hour: env.live.global_acted_last_hour,
        in_flight_rule: env.live.in_flight_rule,
        in_flight_global: env.live.in_flight_global,
        busy,
        breaker_open: st.breaker.open,
        inventory: env.inventory.clone(),
    };
    let (verdicts, alerts) = safety::decide(&safety, env.global, &ctx, &candidates);
    let new_id = env.new_id;
    for v in verdicts {
        let a = st
            .instances
            .get(&v.key)
            .cloned()
            .expect("candidate of an instance");
        let id = new_id();
        let mut run = None;
        if v.reason.is_none() {
            st.acted.push(ActedRecord {
                id: id.clone(),
                acted: Acted {
                    at: now,
                    entity: v.entity.clone().unwrap_or_default(),
                    scopes: v.scopes.clone(),
                    outcome: None,
                    finished_at: None,
                },
            });
            if let Some(i) = st.instances.get_mut(&v.key) {
                i.attempts += 1;
            }
            match v.decision {
                Decision::Executed => {
                    run = Some(request(
                        def,
                        st.version,
                        &v.key,
                        &a,
                        "firing",
                        now,
                        &id,
                        &env.generator_url,
                    ));
                }
                Decision::AwaitingApproval => {
                    st.approvals.insert(
                        id.clone(),
                        Approval {
                            id: id.clone(),
                            instance: v.key.clone(),
                            entity: v.entity.clone().unwrap_or_default(),
                            scopes: v.scopes.clone(),
                            evaluation_time: now,
                            expires_at: now
                                + safety.approval_ttl().as_nanos().min(i64::MAX as u128) as i64,
                        },
                    );
                }
                _ => {}
            }
        }
        let r = row(
            def, st, id, now, &v.key, &a, "firing", v.decision, v.reason, v.detail, v.entity,
        );
        out.decisions.push((r, run));
    }
    // Safety alerts are instances of their own: firing while the condition
    // holds, resolved when it stops.
    let mut samples = Vec::new();
    for al in alerts {
        let (name, extra, value, summary) = match al {
            SafetyAlert::Candidates { candidates, detail } => (
                "RuleSafetyCandidates",
                None,
                candidates as f64,
                format!("rule {} acted on nothing: {detail}", def.name),
            ),
            SafetyAlert::Escalation { entity, attempts } => (
                "RuleEscalation",
                Some(entity.clone()),
                f64::from(attempts),
                format!(
                    "rule {} gave up on {entity} after {attempts} attempts; a human is needed",
                    def.name
                ),
            ),
        };
        let mut labels = BTreeMap::from([
            ("alertname".to_string(), name.to_string()),
            ("rule".to_string(), def.name.clone()),
        ]);
        if let Some(e) = extra {
            labels.insert(safety.entity().to_string(), e);
        }
        let mut row = serde_json::Map::new();
        row.insert("summary".into(), summary.into());
        samples.push(Sample {
            labels,
            value: Some(value),
            row,
        });
    }
    if st.breaker.open {
        let labels = BTreeMap::from([
            ("alertname".to_string(), "RuleBreakerOpen".to_string()),
            ("rule".to_string(), def.name.clone()),
        ]);
        let mut row = serde_json::Map::new();
        row.insert("summary".into(), st.breaker.reason.clone().into());
        samples.push(Sample {
            labels,
            value: Some(1.0),
            row,
        });
    }
    out.safety_transitions = state::step(&mut st.safety_alerts, samples, now, 0, 0);
    for a in st.safety_alerts.values_mut() {
        if a.last_seen == now {
            a.annotations = a
                .row
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
        }
    }
}

/// Records a finished action: its outcome counts for the breaker, which
/// trips (and stays open until reset) when the failure rate is reached.
pub fn finish(def: &RuleDef, st: &mut RuleState, id: &str, ok: bool, now: i64) -> Option<String> {
    if let Some(a) = st.acted.iter_mut().find(|a| a.id == id) {
        a.acted.outcome = Some(ok);
        a.acted.finished_at = Some(now);
    }
    if st.breaker.open {
        return None;
    }
    let safety = def.safety.as_ref()?;
    let acted: Vec<Acted> = st.acted.iter().map(|a| a.acted.clone()).collect();
    let reason = safety::breaker_trips(safety, &acted, now, st.breaker.reset_at)?;
    st.breaker.open = true;
    st.breaker.since = Some(now);
    st.breaker.reason = format!("circuit breaker open: {reason}");
    Some(reason)
}

#[cfg(test)]
mod tests;
