//! Hardware cross-links: a signal on a host (disk, memory, thermal, NIC,
//! heartbeat) that overlaps, give or take `signal_slack_ns`, an attempt that
//! ran on that host, or whose error blames it (a fetch failure names the
//! shuffle source, not the reader).
//!
//! Per affected attempt, how well the signal explains it:
//! - failed with a host error blaming the host, of the matching kind (local
//!   I/O ↔ disk, lost executor ↔ memory/heartbeat, fetch ↔ NIC): 0.95; of
//!   another kind: 0.8;
//! - succeeded with a slowdown ≥ `hardware_slow_ratio` (1.3×) vs its stage:
//!   0.6, rising to 0.9 at 2.5×. The bar is lower than a straggler's because
//!   the signal corroborates (thermal throttling costs 1.7-2.3×). Only
//!   signals that slow the work itself lower it (disk, thermal, a generic
//!   anomaly); a NIC, memory or heartbeat signal fails attempts rather than
//!   slowing them, so against those a successful attempt must reach the
//!   straggler bar (`straggler_ratio`): on the simulated fleet a 1.4×
//!   healthy task beside a flapping NIC was otherwise blamed on it;
//! - succeeded under a signal that measures slowed work itself (disk
//!   latency, thermal throttling) for most of its run, at or above its
//!   stage's median but under the bar: 0.5, rising to 0.6 at the bar. A
//!   task's fixed overhead varies several-fold between siblings, so a short
//!   task slowed 2× can sit inside its stage's spread; the host's own
//!   telemetry says it ran slowed;
//! - succeeded in a stage too small to compare (< 3 successful tasks): 0.45;
//! - succeeded at normal speed: 0.15 (the signal was there, the job did not
//!   feel it).
//!
//! One cause per (host, kind) takes the best attempt's confidence (× 0.85
//! for a generic anomaly) and the sum of the attempts' costs.

use std::collections::BTreeMap;

use crate::cause::{AttemptRef, Cause, CauseKind, Evidence, human_ns};
use crate::error_class::ErrorClass;
use crate::model::{Attempt, HostSignal, SignalKind, Status};
use crate::sql;
use crate::stats::ramp;

use super::Context;

/// Effects at or above this are "explained" and can absorb symptoms.
const EXPLAINS: f64 = 0.5;

/// The signals of one (host, kind) and the attempts they touch.
#[derive(Default)]
struct Group<'a> {
    signals: Vec<&'a HostSignal>,
    effects: BTreeMap<AttemptRef, Effect>,
}

struct Effect {
    confidence: f64,
    cost_ns: i64,
    what: String,
}

pub(crate) fn detect(cx: &Context<'_>) -> Vec<Cause> {
    let slack = cx.config.signal_slack_ns;
    let mut groups: BTreeMap<(&str, CauseKind), Group<'_>> = BTreeMap::new();
    for s in cx.signals {
        let kind = CauseKind::of_signal(&s.kind);
        let entry = groups.entry((s.hostname.as_str(), kind)).or_default();
        entry.signals.push(s);
        for a in cx.dag.attempts {
            if a.start_ns > s.end_ns + slack || a.end_ns < s.start_ns - slack {
                continue;
            }
            let Some(effect) = effect(cx, s, a) else {
                continue;
            };
            let key = AttemptRef::from(a);
            if entry
                .effects
                .get(&key)
                .is_none_or(|e| e.confidence < effect.confidence)
            {
                entry.effects.insert(key, effect);
            }
        }
    }
    let mut out = Vec::new();
    for ((host, kind), Group { signals, effects }) in groups {
        if effects.is_empty() {
            continue;
        }
        let weight = if kind == CauseKind::HardwareAnomaly {
            0.85
        } else {
            1.0
        };
        let confidence = effects.values().map(|e| e.confidence).fold(0.0, f64::max) * weight;
        let cost: i64 = effects.values().map(|e| e.cost_ns).sum();
        let explained: Vec<(&AttemptRef, &Effect)> = effects
            .iter()
            .filter(|(_, e)| e.confidence >= EXPLAINS)
            .collect();
        let what = name(kind);
        let summary = if explained.is_empty() {
            format!(
                "{what} on {host} during {} attempt(s) of this job, which ran normally",
                effects.len()
            )
        } else {
            format!(
                "{what} on {host} explains {} attempt(s) ({}); {} of the critical path",
                explained.len(),
                explained
                    .iter()
                    .map(|(_, e)| e.what.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
                human_ns(cost)
            )
        };
        let mut c = Cause::new(kind, confidence, cost, summary);
        c.hosts = vec![host.to_owned()];
        c.attempts = explained.iter().map(|(r, _)| (*r).clone()).collect();
        for s in &signals {
            c.evidence.push(Evidence::new(
                format!("{host}: {}", s.detail),
                vec![format!(
                    "{host} {:?} [{}, {}]",
                    s.kind, s.start_ns, s.end_ns
                )],
                Some(s.sql.clone()),
            ));
        }
        for (r, e) in &effects {
            c.evidence.push(Evidence::new(
                e.what.clone(),
                vec![format!(
                    "stage {} task {} attempt {} on {}",
                    r.stage_id, r.task_id, r.attempt, r.hostname
                )],
                None,
            ));
        }
        c.evidence.push(Evidence::new(
            format!("the job's attempts involving {host}"),
            Vec::new(),
            Some(sql::tasks(cx.job_id(), None, Some(host), false)),
        ));
        c.action = action(kind, host);
        out.push(c);
    }
    out
}

fn effect(cx: &Context<'_>, s: &HostSignal, a: &Attempt) -> Option<Effect> {
    if a.status == Status::Failed {
        let class = ErrorClass::parse(a.error.as_deref().unwrap_or(""));
        if class.blamed_host(&a.hostname).as_deref() != Some(s.hostname.as_str()) {
            return None;
        }
        let matched = matches!(
            (&s.kind, &class),
            (
                SignalKind::DiskLatency | SignalKind::DiskSmart,
                ErrorClass::LocalIo { .. }
            ) | (
                SignalKind::MemoryEcc | SignalKind::HeartbeatGap,
                ErrorClass::ExecutorLost { .. }
            ) | (SignalKind::NicErrors, ErrorClass::FetchFailed { .. })
        );
        let failed_job = cx.span.failed
            && cx.dag.stage(a.stage_id).is_some_and(|st| {
                cx.dag
                    .task_attempts(st, a.task_id)
                    .last()
                    .is_some_and(|l| l.attempt == a.attempt)
            });
        return Some(Effect {
            confidence: if matched { 0.95 } else { 0.8 },
            cost_ns: if failed_job {
                cx.wall_ns()
            } else {
                cx.path.failure_ns(a)
            },
            what: format!("{} failed: {}", a.label(), class.name()),
        });
    }
    if a.hostname != s.hostname {
        return None;
    }
    let Some(st) = cx.stats.stage(a.stage_id).filter(|st| st.samples >= 3) else {
        return Some(Effect {
            confidence: 0.45,
            cost_ns: 0,
            what: format!("{} overlaps it; too few siblings to compare", a.label()),
        });
    };
    let slowdown = st.slowdown(a);
    let on_path = cx.path.attempt_ns(a) > 0;
    let bar = if slows_work(&s.kind) {
        cx.config.hardware_slow_ratio
    } else {
        cx.config.straggler_ratio
    };
    // Most of the attempt ran under the signal.
    let overlap = a.end_ns.min(s.end_ns) - a.start_ns.max(s.start_ns);
    let under_signal = overlap * 2 >= a.duration_ns();
    Some(if slowdown >= bar {
        Effect {
            confidence: ramp(slowdown, bar, 0.6, 2.5_f64.max(bar + 0.5), 0.9),
            cost_ns: if on_path { st.excess_ns(a) } else { 0 },
            what: format!(
                "{} ran {slowdown:.1}x slower than its siblings{}",
                a.label(),
                if on_path { " on the critical path" } else { "" }
            ),
        }
    } else if measures_slowness(&s.kind) && under_signal && slowdown >= 1.0 {
        Effect {
            confidence: ramp(slowdown, 1.0, 0.5, bar, 0.6),
            cost_ns: if on_path { st.excess_ns(a) } else { 0 },
            what: format!(
                "{} ran {slowdown:.1}x its siblings' median under the signal{}",
                a.label(),
                if on_path { " on the critical path" } else { "" }
            ),
        }
    } else {
        Effect {
            confidence: 0.15,
            cost_ns: 0,
            what: format!("{} ran at normal speed ({slowdown:.1}x)", a.label()),
        }
    })
}

/// Whether the signal slows an attempt that still succeeds.
fn slows_work(kind: &SignalKind) -> bool {
    matches!(
        kind,
        SignalKind::DiskLatency
            | SignalKind::DiskSmart
            | SignalKind::Thermal
            | SignalKind::Anomaly(_)
    )
}

/// Whether the signal is the host measuring its work slowed (not a
/// precursor like SMART counters, nor a generic anomaly).
fn measures_slowness(kind: &SignalKind) -> bool {
    matches!(kind, SignalKind::DiskLatency | SignalKind::Thermal)
}

fn name(kind: CauseKind) -> &'static str {
    match kind {
        CauseKind::FailingDisk => "a failing disk",
        CauseKind::BadMemory => "bad memory",
        CauseKind::ThermalThrottling => "thermal throttling",
        CauseKind::FlappingNic => "a flapping NIC",
        CauseKind::HostLost => "a lost host",
        _ => "a hardware anomaly",
    }
}

fn action(kind: CauseKind, host: &str) -> String {
    match kind {
        CauseKind::FailingDisk => {
            format!("re-run; drain {host} via a self_heal rule and replace its disk")
        }
        CauseKind::BadMemory => {
            format!("re-run; drain {host} via a self_heal rule and replace the DIMM")
        }
        CauseKind::ThermalThrottling => format!("re-run; drain {host} and check its cooling"),
        CauseKind::FlappingNic => {
            format!("re-run; drain {host} and check its NIC, cable and switch port")
        }
        CauseKind::HostLost => {
            format!("re-run; {host} went down: keep it drained until it is repaired")
        }
        _ => format!("re-run; inspect {host}'s telemetry around the job"),
    }
}
