//! The alert state machine, exactly as Prometheus's alerting rule: pure,
//! over an evaluation time given by the caller, so the scheduler, the
//! backtest and the tests share it.
//!
//! # Invariants
//! - A new instance is `pending` with `active_at` = the evaluation that first
//!   saw it; it turns `firing` at the first evaluation with
//!   `now - active_at >= for` (at once when `for` is 0).
//! - A pending instance that disappears is dropped.
//! - A firing instance that disappears stays firing until it has been gone
//!   for `keep_firing_for` (measured from the first evaluation that missed
//!   it), then resolves; it is kept as `resolved` for 15 minutes (so
//!   receivers learn of the resolution) unless it comes back, which starts
//!   a new episode.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Resolved instances are kept this long (Prometheus's `resolvedRetention`).
pub const RESOLVED_RETENTION_NS: i64 = 15 * 60 * 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One row of an evaluation: its labels (every non-`value` column, plus
/// the rule's labels), its `value`, and the row itself as evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: Option<f64>,
    pub row: serde_json::Map<String, serde_json::Value>,
}

impl Sample {
    pub fn key(&self) -> String {
        instance_key(&self.labels)
    }
}

/// `{a="1",b="2"}`: the identity of an instance within its rule.
pub fn instance_key(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub labels: BTreeMap<String, String>,
    pub value: Option<f64>,
    pub row: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub keep_firing_since: Option<i64>,
    /// Last evaluation that saw the row.
    pub last_seen: i64,
    /// Last notification sent (alertmanager re-sends).
    #[serde(default)]
    pub last_sent: Option<i64>,
    /// Remediation attempts in this firing episode (max_attempts).
    #[serde(default)]
    pub attempts: u32,
    /// The escalation for this episode was raised.
    #[serde(default)]
    pub escalated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A new instance (pending; with `for` = 0 a `Firing` follows at once).
    Pending,
    Firing,
    Resolved,
    /// A pending instance disappeared before `for` elapsed.
    Dropped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub key: String,
    pub change: Change,
    pub at: i64,
}

/// One evaluation at `now` with the rows the rule's SQL returned.
/// Returns the transitions in key order (`Pending` before `Firing` for one
/// instance).
pub fn step(
    instances: &mut BTreeMap<String, Instance>,
    samples: Vec<Sample>,
    now: i64,
    for_ns: i64,
    keep_firing_for_ns: i64,
) -> Vec<Transition> {
    step_in(instances, samples, None, now, for_ns, keep_firing_for_ns)
}

/// Which instances an evaluation speaks for, by their labels (an
/// `on_write` evaluation speaks for the groups a write touched).
pub trait Scope {
    fn covers(&self, labels: &BTreeMap<String, String>) -> bool;
}

impl<F: Fn(&BTreeMap<String, String>) -> bool> Scope for F {
    fn covers(&self, labels: &BTreeMap<String, String>) -> bool {
        self(labels)
    }
}

/// [`step`] over part of the instances: with `scope`, the evaluation
/// speaks only for the instances it covers; the others are left as they
/// are.
pub fn step_in(
    instances: &mut BTreeMap<String, Instance>,
    samples: Vec<Sample>,
    scope: Option<&dyn Scope>,
    now: i64,
    for_ns: i64,
    keep_firing_for_ns: i64,
) -> Vec<Transition> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for s in samples {
        let key = s.key();
        if !seen.insert(key.clone()) {
            // Two rows with the same labels: Prometheus refuses the whole
            // evaluation; we keep the first, which the engine reports.
            continue;
        }
        match instances.get_mut(&key) {
            Some(a) if a.state != AlertState::Resolved => {
                a.value = s.value;
                a.row = s.row;
                a.last_seen = now;
                a.keep_firing_since = None;
            }
            _ => {
                instances.insert(
                    key.clone(),
                    Instance {
                        labels: s.labels,
                        value: s.value,
                        row: s.row,
                        annotations: BTreeMap::new(),
                        state: AlertState::Pending,
                        active_at: now,
                        fired_at: None,
                        resolved_at: None,
                        keep_firing_since: None,
                        last_seen: now,
                        last_sent: None,
                        attempts: 0,
                        escalated: false,
                    },
                );
                out.push(Transition {
                    key: key.clone(),
                    change: Change::Pending,
                    at: now,
                });
            }
        }
    }
    let mut remove = Vec::new();
    for (key, a) in instances.iter_mut() {
        // An evaluation speaks for every instance its rows name.
        let named = seen.contains(key);
        if !named && scope.is_some_and(|s| !s.covers(&a.labels)) {
            continue;
        }
        if !named {
            let mut keep_firing = false;
            if a.state == AlertState::Firing && keep_firing_for_ns > 0 {
                let since = *a.keep_firing_since.get_or_insert(now);
                keep_firing = now - since < keep_firing_for_ns;
            }
            match a.state {
                AlertState::Pending => {
                    remove.push(key.clone());
                    out.push(Transition {
                        key: key.clone(),
                        change: Change::Dropped,
                        at: now,
                    });
                    continue;
                }
                AlertState::Resolved => {
                    if a.resolved_at
                        .is_some_and(|r| now - r > RESOLVED_RETENTION_NS)
                    {
                        remove.push(key.clone());
                    }
                    continue;
                }
                AlertState::Firing if !keep_firing => {
                    a.state = AlertState::Resolved;
                    a.resolved_at = Some(now);
                    a.keep_firing_since = None;
                    out.push(Transition {
                        key: key.clone(),
                        change: Change::Resolved,
                        at: now,
                    });
                    continue;
                }
                AlertState::Firing => {}
            }
        }
        if a.state == AlertState::Pending && now - a.active_at >= for_ns {
            a.state = AlertState::Firing;
            a.fired_at = Some(now);
            out.push(Transition {
                key: key.clone(),
                change: Change::Firing,
                at: now,
            });
        }
    }
    for k in remove {
        instances.remove(&k);
    }
    out.sort_by(|a, b| {
        a.key
            .cmp(&b.key)
            .then((a.change as u8).cmp(&(b.change as u8)))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn sample(host: &str, v: f64) -> Sample {
        Sample {
            labels: BTreeMap::from([("hostname".to_string(), host.to_string())]),
            value: Some(v),
            row: serde_json::Map::new(),
        }
    }

    fn changes(t: &[Transition]) -> Vec<Change> {
        t.iter().map(|t| t.change).collect()
    }

    #[test]
    fn pending_then_firing_after_for() {
        let mut m = BTreeMap::new();
        let t = step(&mut m, vec![sample("a", 1.0)], 0, 60 * S, 0);
        assert_eq!(changes(&t), [Change::Pending]);
        assert!(step(&mut m, vec![sample("a", 1.0)], 30 * S, 60 * S, 0).is_empty());
        let t = step(&mut m, vec![sample("a", 2.0)], 60 * S, 60 * S, 0);
        assert_eq!(changes(&t), [Change::Firing]);
        let a = &m["{hostname=\"a\"}"];
        assert_eq!(
            (a.state, a.active_at, a.fired_at, a.value),
            (AlertState::Firing, 0, Some(60 * S), Some(2.0))
        );
    }

    #[test]
    fn for_zero_fires_at_once() {
        let mut m = BTreeMap::new();
        let t = step(&mut m, vec![sample("a", 1.0)], 5 * S, 0, 0);
        assert_eq!(changes(&t), [Change::Pending, Change::Firing]);
    }

    #[test]
    fn a_scoped_evaluation_speaks_for_its_scope_and_the_rows_it_names() {
        let mut m = BTreeMap::new();
        step(&mut m, vec![sample("a", 1.0), sample("b", 1.0)], 0, 0, 0);
        // Covering only `b`: `a` is left firing, `b` resolves, and `c`,
        // named by a row though outside the scope, fires at once.
        let only_b = |labels: &BTreeMap<String, String>| labels["hostname"] == "b";
        let t = step_in(&mut m, vec![sample("c", 1.0)], Some(&only_b), S, 0, 0);
        assert_eq!(
            t.iter()
                .map(|t| (t.key.as_str(), t.change))
                .collect::<Vec<_>>(),
            [
                ("{hostname=\"b\"}", Change::Resolved),
                ("{hostname=\"c\"}", Change::Pending),
                ("{hostname=\"c\"}", Change::Firing),
            ]
        );
        assert_eq!(m["{hostname=\"a\"}"].state, AlertState::Firing);
    }

    #[test]
    fn pending_that_disappears_is_dropped() {
        let mut m = BTreeMap::new();
        step(&mut m, vec![sample("a", 1.0)], 0, 60 * S, 0);
        let t = step(&mut m, vec![], 30 * S, 60 * S, 0);
        assert_eq!(changes(&t), [Change::Dropped]);
        assert!(m.is_empty());
        // Coming back starts the `for` timer again.
        step(&mut m, vec![sample("a", 1.0)], 40 * S, 60 * S, 0);
        assert!(step(&mut m, vec![sample("a", 1.0)], 60 * S, 60 * S, 0).is_empty());
        assert_eq!(
            changes(&step(&mut m, vec![sample("a", 1.0)], 100 * S, 60 * S, 0)),
            [Change::Firing]
        );
    }

    #[test]
    fn keep_firing_for_then_resolve() {
        let mut m = BTreeMap::new();
        step(&mut m, vec![sample("a", 1.0)], 0, 0, 120 * S);
        // Gone at 60 s: still firing until it has been gone for 120 s.
        assert!(step(&mut m, vec![], 60 * S, 0, 120 * S).is_empty());
        assert!(step(&mut m, vec![], 120 * S, 0, 120 * S).is_empty());
        assert_eq!(m["{hostname=\"a\"}"].state, AlertState::Firing);
        let t = step(&mut m, vec![], 180 * S, 0, 120 * S);
        assert_eq!(changes(&t), [Change::Resolved]);
        let a = &m["{hostname=\"a\"}"];
        assert_eq!(
            (a.state, a.resolved_at),
            (AlertState::Resolved, Some(180 * S))
        );
        // Back after resolving: a new episode, pending from now.
        let t = step(&mut m, vec![sample("a", 1.0)], 200 * S, 60 * S, 120 * S);
        assert_eq!(changes(&t), [Change::Pending]);
        assert_eq!(m["{hostname=\"a\"}"].active_at, 200 * S);
    }

    #[test]
    fn reappearing_inside_keep_firing_for_resets_it() {
        let mut m = BTreeMap::new();
        step(&mut m, vec![sample("a", 1.0)], 0, 0, 100 * S);
        step(&mut m, vec![], 60 * S, 0, 100 * S);
        step(&mut m, vec![sample("a", 1.0)], 120 * S, 0, 100 * S);
        assert!(step(&mut m, vec![], 180 * S, 0, 100 * S).is_empty());
        assert_eq!(
            changes(&step(&mut m, vec![], 280 * S, 0, 100 * S)),
            [Change::Resolved]
        );
    }

    #[test]
    fn without_keep_firing_for_resolves_at_once_and_is_retained() {
        let mut m = BTreeMap::new();
        step(&mut m, vec![sample("a", 1.0)], 0, 0, 0);
        assert_eq!(
            changes(&step(&mut m, vec![], 10 * S, 0, 0)),
            [Change::Resolved]
        );
        step(&mut m, vec![], 10 * S + RESOLVED_RETENTION_NS, 0, 0);
        assert_eq!(m.len(), 1);
        step(&mut m, vec![], 11 * S + RESOLVED_RETENTION_NS, 0, 0);
        assert!(m.is_empty());
    }

    /// A restart mid-`for`: the state is serialized and read back, and the
    /// timer runs from the original `active_at`.
    #[test]
    fn restart_mid_for_keeps_the_timer() {
        let mut m = BTreeMap::new();
        step(&mut m, vec![sample("a", 1.0)], 0, 60 * S, 0);
        step(&mut m, vec![sample("a", 1.0)], 30 * S, 60 * S, 0);
        let saved = serde_json::to_string(&m).unwrap();
        let mut restored: BTreeMap<String, Instance> = serde_json::from_str(&saved).unwrap();
        assert_eq!(restored, m);
        let t = step(&mut restored, vec![sample("a", 1.0)], 60 * S, 60 * S, 0);
        assert_eq!(changes(&t), [Change::Firing]);
        assert_eq!(restored["{hostname=\"a\"}"].active_at, 0);
    }
}
