//! Safety decisions: which candidates of a self-heal rule may be acted on
//! now. Pure over a [`SafetyContext`] (what was done before, what is in
//! flight, the inventory), so the live engine and the backtest apply the
//! same limits — the backtest in simulated time.
//!
//! Checks, in order (the first that holds decides, the reason is recorded):
//! `max_candidates` (more candidates than allowed, or every entity of the
//! inventory at once: nothing is done and `RuleSafetyCandidates` fires),
//! `no_entity`, `breaker_open`, `max_attempts` (then `RuleEscalation` fires
//! for the entity), `cooldown`, `in_flight`, `scope_cap`, `rate_limit`;
//! then the mode decides: `shadow`, `dry_run`, `awaiting_approval` or
//! `executed`. A candidate that passes counts at once against the limits of
//! the candidates after it (candidates are taken in instance-key order).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::definition::{Mode, SafetyDef};

const HOUR_NS: i64 = 3600 * 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Executed,
    DryRun,
    Shadow,
    AwaitingApproval,
    Approved,
    Denied,
    Expired,
    Skipped,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Executed => "executed",
            Decision::DryRun => "dry_run",
            Decision::Shadow => "shadow",
            Decision::AwaitingApproval => "awaiting_approval",
            Decision::Approved => "approved",
            Decision::Denied => "denied",
            Decision::Expired => "expired",
            Decision::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    RateLimit,
    Cooldown,
    ScopeCap,
    MaxCandidates,
    BreakerOpen,
    MaxAttempts,
    InFlight,
    NoEntity,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::RateLimit => "rate_limit",
            SkipReason::Cooldown => "cooldown",
            SkipReason::ScopeCap => "scope_cap",
            SkipReason::MaxCandidates => "max_candidates",
            SkipReason::BreakerOpen => "breaker_open",
            SkipReason::MaxAttempts => "max_attempts",
            SkipReason::InFlight => "in_flight",
            SkipReason::NoEntity => "no_entity",
        }
    }
}

/// Something done (or, in shadow / dry-run mode, that would have been done)
/// to an entity: what the limits count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acted {
    pub at: i64,
    pub entity: String,
    pub scopes: BTreeMap<String, String>,
    /// `Some(success)` once a real action finished (the breaker counts these).
    pub outcome: Option<bool>,
    pub finished_at: Option<i64>,
}

/// The fleet as the rule sees it: entity → its scope labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub entities: BTreeMap<String, BTreeMap<String, String>>,
}

impl Inventory {
    /// Entities whose `label` is `value`.
    pub fn scope_size(&self, label: &str, value: &str) -> usize {
        self.entities
            .values()
            .filter(|s| s.get(label).is_some_and(|v| v == value))
            .count()
    }
}

/// Global limits (flags of `fleetlake serve`), shared by every rule.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GlobalLimits {
    pub max_actions_per_hour: Option<u32>,
    pub max_in_flight: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct SafetyContext {
    pub now: i64,
    /// This rule's past actions (at least the last hour, cooldown and breaker window).
    pub acted: Vec<Acted>,
    /// Actions of every rule in the last hour (global rate limit).
    pub global_acted_last_hour: u32,
    pub in_flight_rule: u32,
    pub in_flight_global: u32,
    /// Entities with an action running or awaiting approval.
    pub busy: BTreeSet<String>,
    pub breaker_open: bool,
    pub inventory: Option<Inventory>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub key: String,
    pub labels: BTreeMap<String, String>,
    /// Attempts already made in this firing episode.
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub key: String,
    pub entity: Option<String>,
    pub scopes: BTreeMap<String, String>,
    pub decision: Decision,
    pub reason: Option<SkipReason>,
    pub detail: String,
}

/// The alerts safety raises about a rule (beside its own instances).
#[derive(Debug, Clone, PartialEq)]
pub enum SafetyAlert {
    /// Too many candidates, or the whole fleet: nothing was done.
    Candidates { candidates: usize, detail: String },
    /// An entity still failing after `max_attempts` actions.
    Escalation { entity: String, attempts: u32 },
}

/// Decides for every candidate. See the module docs for the order.
pub fn decide(
    safety: &SafetyDef,
    global: GlobalLimits,
    ctx: &SafetyContext,
    candidates: &[Candidate],
) -> (Vec<Verdict>, Vec<SafetyAlert>) {
    let entity_label = safety.entity();
    let now = ctx.now;
    let mut alerts = Vec::new();
    let mut out = Vec::with_capacity(candidates.len());
    let scopes_of = |labels: &BTreeMap<String, String>, entity: Option<&String>| {
        let mut s = BTreeMap::new();
        for l in &safety.max_per_scope {
            let v = labels.get(&l.label).cloned().or_else(|| {
                let inv = ctx.inventory.as_ref()?;
                inv.entities.get(entity?)?.get(&l.label).cloned()
            });
            if let Some(v) = v {
                s.insert(l.label.clone(), v);
            }
        }
        s
    };
    let verdict = |c: &Candidate, decision, reason, detail: String| {
        let entity = c.labels.get(entity_label).cloned();
        Verdict {
            key: c.key.clone(),
            scopes: scopes_of(&c.labels, entity.as_ref()),
            entity,
            decision,
            reason,
            detail,
        }
    };

    // Blast radius first: too many at once means something bigger is wrong.
    let whole_fleet = ctx.inventory.as_ref().and_then(|inv| {
        let entities: BTreeSet<&String> = candidates
            .iter()
            .filter_map(|c| c.labels.get(entity_label))
            .collect();
        (inv.entities.len() >= 2 && inv.entities.keys().all(|e| entities.contains(e))).then(|| {
            format!(
                "the candidates are the whole fleet ({} entities)",
                inv.entities.len()
            )
        })
    });
    let too_many = safety
        .max_candidates
        .filter(|&m| candidates.len() > m as usize)
        .map(|m| {
            format!(
                "{} candidates, more than max_candidates = {m}",
                candidates.len()
            )
        });
    if let Some(detail) = too_many.or(whole_fleet) {
        if !candidates.is_empty() {
            alerts.push(SafetyAlert::Candidates {
                candidates: candidates.len(),
                detail: detail.clone(),
            });
        }
        for c in candidates {
            out.push(verdict(
                c,
                Decision::Skipped,
                Some(SkipReason::MaxCandidates),
                detail.clone(),
            ));
        }
        return (out, alerts);
    }

    let hour_ago = now - HOUR_NS;
    let scope_window = safety.cooldown.map_or(HOUR_NS, |c| c.ns().max(1));
    let mut acted: Vec<Acted> = ctx.acted.clone();
    let mut rule_hour = acted.iter().filter(|a| a.at > hour_ago).count() as u32;
    let mut global_hour = ctx.global_acted_last_hour;
    let mut in_flight_rule = ctx.in_flight_rule;
    let mut in_flight_global = ctx.in_flight_global;
    let real = matches!(safety.mode, Mode::Auto | Mode::Approval);

    for c in candidates {
        let Some(entity) = c.labels.get(entity_label).cloned() else {
            out.push(verdict(
                c,
                Decision::Skipped,
                Some(SkipReason::NoEntity),
                format!("the row has no {entity_label:?} column naming the entity"),
            ));
            continue;
        };
        let skip = |reason, detail: String| verdict(c, Decision::Skipped, Some(reason), detail);
        if ctx.breaker_open {
            out.push(skip(
                SkipReason::BreakerOpen,
                "the circuit breaker is open; reset it with POST /api/v1/rules/<name>/breaker/reset".into(),
            ));
            continue;
        }
        if let Some(max) = safety.max_attempts
            && c.attempts >= max
        {
            alerts.push(SafetyAlert::Escalation {
                entity: entity.clone(),
                attempts: c.attempts,
            });
            out.push(skip(
                SkipReason::MaxAttempts,
                format!(
                    "{} attempts in this episode (max_attempts = {max}); escalated",
                    c.attempts
                ),
            ));
            continue;
        }
        if let Some(cd) = safety.cooldown
            && let Some(last) = acted
                .iter()
                .filter(|a| a.entity == entity)
                .map(|a| a.at)
                .max()
            && now - last < cd.ns()
        {
            out.push(skip(
                SkipReason::Cooldown,
                format!(
                    "last action on {entity} {}s ago (cooldown {cd})",
                    (now - last) / 1_000_000_000
                ),
            ));
            continue;
        }
        if ctx.busy.contains(&entity) {
            out.push(skip(
                SkipReason::InFlight,
                format!("an action on {entity} is running or awaiting approval"),
            ));
            continue;
        }
        if real {
            if let Some(max) = safety.max_in_flight
                && in_flight_rule >= max
            {
                out.push(skip(
                    SkipReason::InFlight,
                    format!(
                        "{in_flight_rule} actions of this rule in flight (max_in_flight = {max})"
                    ),
                ));
                continue;
            }
            if let Some(max) = global.max_in_flight
                && in_flight_global >= max
            {
                out.push(skip(
                    SkipReason::InFlight,
                    format!("{in_flight_global} actions in flight (global max {max})"),
                ));
                continue;
            }
        }
        let scopes = scopes_of(&c.labels, Some(&entity));
        let mut capped = None;
        for l in &safety.max_per_scope {
            let Some(value) = scopes.get(&l.label) else {
                capped = Some(format!(
                    "scope {:?} of {entity} is unknown (not in the row nor the inventory)",
                    l.label
                ));
                break;
            };
            let active: BTreeSet<&String> = acted
                .iter()
                .filter(|a| a.at > now - scope_window && a.scopes.get(&l.label) == Some(value))
                .map(|a| &a.entity)
                .collect();
            let (max, how) = match (l.max, l.max_percent) {
                (Some(m), _) => (m as usize, format!("max {m}")),
                (None, Some(p)) => {
                    let size = ctx
                        .inventory
                        .as_ref()
                        .map_or(0, |i| i.scope_size(&l.label, value));
                    let m = ((p / 100.0) * size as f64).ceil() as usize;
                    (m.max(1), format!("{p}% of {size} entities = {}", m.max(1)))
                }
                (None, None) => continue,
            };
            if active.len() >= max {
                capped = Some(format!(
                    "{} entities of {}={value} acted on recently ({how})",
                    active.len(),
                    l.label
                ));
                break;
            }
        }
        if let Some(detail) = capped {
            out.push(skip(SkipReason::ScopeCap, detail));
            continue;
        }
        if let Some(max) = safety.max_actions_per_hour
            && rule_hour >= max
        {
            out.push(skip(
                SkipReason::RateLimit,
                format!("{rule_hour} actions in the last hour (max_actions_per_hour = {max})"),
            ));
            continue;
        }
        if let Some(max) = global.max_actions_per_hour
            && global_hour >= max
        {
            out.push(skip(
                SkipReason::RateLimit,
                format!("{global_hour} actions of all rules in the last hour (global max {max})"),
            ));
            continue;
        }
        let decision = match safety.mode {
            Mode::Shadow => Decision::Shadow,
            Mode::DryRun => Decision::DryRun,
            Mode::Approval => Decision::AwaitingApproval,
            Mode::Auto => Decision::Executed,
        };
        rule_hour += 1;
        global_hour += 1;
        if real {
            in_flight_rule += 1;
            in_flight_global += 1;
        }
        acted.push(Acted {
            at: now,
            entity: entity.clone(),
            scopes: scopes.clone(),
            outcome: None,
            finished_at: None,
        });
        out.push(Verdict {
            key: c.key.clone(),
            entity: Some(entity),
            scopes,
            decision,
            reason: None,
            detail: String::new(),
        });
    }
    (out, alerts)
}

/// Whether the breaker should trip: finished actions in its window (after
/// the last reset) fail at `failure_rate` or more, with at least
/// `min_actions` of them.
pub fn breaker_trips(
    safety: &SafetyDef,
    acted: &[Acted],
    now: i64,
    reset_at: Option<i64>,
) -> Option<String> {
    let b = safety.breaker.as_ref()?;
    let from = (now - b.window.ns()).max(reset_at.unwrap_or(i64::MIN));
    let (mut n, mut failed) = (0u32, 0u32);
    for a in acted {
        if let (Some(ok), Some(t)) = (a.outcome, a.finished_at)
            && t > from
        {
            n += 1;
            failed += u32::from(!ok);
        }
    }
    let rate = f64::from(failed) / f64::from(n.max(1));
    (n >= b.min_actions && rate >= b.failure_rate).then(|| {
        format!(
            "{failed} of {n} actions failed in the last {} (failure_rate {} >= {})",
            b.window, rate, b.failure_rate
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{BreakerDef, ScopeLimit};
    use crate::duration::Dur;

    const S: i64 = 1_000_000_000;

    fn cand(host: &str, rack: &str) -> Candidate {
        let labels = BTreeMap::from([
            ("hostname".to_string(), host.to_string()),
            ("rack".to_string(), rack.to_string()),
        ]);
        Candidate {
            key: crate::state::instance_key(&labels),
            labels,
            attempts: 0,
        }
    }

    fn auto() -> SafetyDef {
        SafetyDef {
            mode: Mode::Auto,
            ..SafetyDef::default()
        }
    }

    fn reasons(v: &[Verdict]) -> Vec<&str> {
        v.iter()
            .map(|v| v.reason.map_or(v.decision.as_str(), |r| r.as_str()))
            .collect()
    }

    #[test]
    fn rate_limit_per_rule_and_global() {
        let s = SafetyDef {
            max_actions_per_hour: Some(2),
            ..auto()
        };
        let ctx = SafetyContext::default();
        let c: Vec<_> = (0..3)
            .map(|i| cand(&format!("h{i}"), &format!("r{i}")))
            .collect();
        let (v, _) = decide(&s, GlobalLimits::default(), &ctx, &c);
        assert_eq!(reasons(&v), ["executed", "executed", "rate_limit"]);
        let g = GlobalLimits {
            max_actions_per_hour: Some(5),
            max_in_flight: None,
        };
        let ctx = SafetyContext {
            global_acted_last_hour: 5,
            ..SafetyContext::default()
        };
        let (v, _) = decide(&auto(), g, &ctx, &c[..1]);
        assert_eq!(reasons(&v), ["rate_limit"]);
    }

    #[test]
    fn cooldown_and_attempts() {
        let s = SafetyDef {
            cooldown: Some(Dur::from_secs(600)),
            max_attempts: Some(2),
            ..auto()
        };
        let ctx = SafetyContext {
            now: 1000 * S,
            acted: vec![Acted {
                at: 700 * S,
                entity: "h0".into(),
                scopes: BTreeMap::new(),
                outcome: Some(true),
                finished_at: Some(701 * S),
            }],
            ..SafetyContext::default()
        };
        let mut tired = cand("h1", "r1");
        tired.attempts = 2;
        let (v, alerts) = decide(
            &s,
            GlobalLimits::default(),
            &ctx,
            &[cand("h0", "r0"), tired, cand("h2", "r2")],
        );
        assert_eq!(reasons(&v), ["cooldown", "max_attempts", "executed"]);
        assert_eq!(
            alerts,
            [SafetyAlert::Escalation {
                entity: "h1".into(),
                attempts: 2
            }]
        );
    }

    #[test]
    fn scope_caps_absolute_and_percent() {
        let s = SafetyDef {
            max_per_scope: vec![
                ScopeLimit {
                    label: "rack".into(),
                    max: Some(1),
                    max_percent: None,
                },
                ScopeLimit {
                    label: "dc".into(),
                    max: None,
                    max_percent: Some(50.0),
                },
            ],
            ..auto()
        };
        let mut inv = Inventory::default();
        for (h, dc) in [
            ("h0", "a"),
            ("h1", "a"),
            ("h2", "a"),
            ("h3", "a"),
            ("h4", "b"),
            ("h5", "b"),
        ] {
            inv.entities.insert(
                h.into(),
                BTreeMap::from([("dc".to_string(), dc.to_string())]),
            );
        }
        let ctx = SafetyContext {
            inventory: Some(inv),
            ..SafetyContext::default()
        };
        // rack r0 twice → the second is capped; dc a: 50% of 4 = 2.
        let c = [
            cand("h0", "r0"),
            cand("h1", "r0"),
            cand("h2", "r1"),
            cand("h3", "r2"),
            cand("h4", "r3"),
        ];
        let (v, _) = decide(&s, GlobalLimits::default(), &ctx, &c);
        assert_eq!(
            reasons(&v),
            ["executed", "scope_cap", "executed", "scope_cap", "executed"]
        );
        assert!(v[3].detail.contains("50% of 4"), "{}", v[3].detail);
    }

    #[test]
    fn max_candidates_and_whole_fleet() {
        let s = SafetyDef {
            max_candidates: Some(2),
            ..auto()
        };
        let c: Vec<_> = (0..3).map(|i| cand(&format!("h{i}"), "r")).collect();
        let (v, alerts) = decide(&s, GlobalLimits::default(), &SafetyContext::default(), &c);
        assert_eq!(reasons(&v), ["max_candidates"; 3]);
        assert!(matches!(
            alerts[0],
            SafetyAlert::Candidates { candidates: 3, .. }
        ));
        let mut inv = Inventory::default();
        for h in ["h0", "h1"] {
            inv.entities.insert(h.into(), BTreeMap::new());
        }
        let ctx = SafetyContext {
            inventory: Some(inv),
            ..SafetyContext::default()
        };
        let (v, alerts) = decide(&auto(), GlobalLimits::default(), &ctx, &c[..2]);
        assert_eq!(reasons(&v), ["max_candidates"; 2]);
        assert_eq!(alerts.len(), 1);
    }

    #[test]
    fn in_flight_and_modes() {
        let s = SafetyDef {
            max_in_flight: Some(1),
            ..auto()
        };
        let ctx = SafetyContext {
            busy: BTreeSet::from(["h0".to_string()]),
            ..SafetyContext::default()
        };
        let c = [cand("h0", "r"), cand("h1", "r"), cand("h2", "r")];
        let (v, _) = decide(&s, GlobalLimits::default(), &ctx, &c);
        assert_eq!(reasons(&v), ["in_flight", "executed", "in_flight"]);
        for (mode, want) in [
            (Mode::Shadow, "shadow"),
            (Mode::DryRun, "dry_run"),
            (Mode::Approval, "awaiting_approval"),
        ] {
            let s = SafetyDef {
                mode,
                ..SafetyDef::default()
            };
            let (v, _) = decide(
                &s,
                GlobalLimits::default(),
                &SafetyContext::default(),
                &c[1..2],
            );
            assert_eq!(reasons(&v), [want]);
        }
    }

    #[test]
    fn breaker_trips_on_failure_rate_and_honours_reset() {
        let s = SafetyDef {
            breaker: Some(BreakerDef {
                failure_rate: 0.5,
                min_actions: 4,
                window: Dur::from_secs(3600),
            }),
            ..auto()
        };
        let a = |t: i64, ok: bool| Acted {
            at: t * S,
            entity: format!("h{t}"),
            scopes: BTreeMap::new(),
            outcome: Some(ok),
            finished_at: Some(t * S + 1),
        };
        let acted = vec![a(1, true), a(2, false), a(3, false)];
        assert!(
            breaker_trips(&s, &acted, 10 * S, None).is_none(),
            "3 < min_actions"
        );
        let acted = [acted, vec![a(4, true)]].concat();
        assert!(
            breaker_trips(&s, &acted, 10 * S, None)
                .unwrap()
                .contains("2 of 4")
        );
        assert!(breaker_trips(&s, &acted, 10 * S, Some(5 * S)).is_none());
        let (v, _) = decide(
            &s,
            GlobalLimits::default(),
            &SafetyContext {
                breaker_open: true,
                ..SafetyContext::default()
            },
            &[cand("h9", "r")],
        );
        assert_eq!(reasons(&v), ["breaker_open"]);
    }
}
