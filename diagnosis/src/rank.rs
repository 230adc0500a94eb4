//! Ranking: merge symptoms into the hardware causes that explain them, then
//! order by confidence × cost.
//!
//! # Rules
//! - A hardware cause at or above the cut absorbs the host symptoms
//!   (straggler, host errors, slow host) that share an attempt with it or
//!   blame the same host: their summaries and evidence become its evidence,
//!   it keeps the higher confidence and the higher cost (both measure the
//!   same attempts), and the symptom is no longer listed on its own.
//! - `score` = confidence × cost in seconds; `reported` = confidence ≥ cut.
//! - Reported causes come first, by score; then the rest, by score. Ties
//!   go to confidence, then cost, then kind, so the order is stable.

use std::cmp::Ordering;

use crate::cause::{Cause, Evidence};

pub(crate) fn rank(causes: Vec<Cause>, cut: f64) -> Vec<Cause> {
    let (mut hardware, mut rest): (Vec<Cause>, Vec<Cause>) =
        causes.into_iter().partition(|c| c.kind.is_hardware());
    hardware.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    for h in hardware.iter_mut().filter(|h| h.confidence >= cut) {
        let mut kept = Vec::with_capacity(rest.len());
        for c in rest {
            if c.kind.is_host_symptom() && explains(h, &c) {
                absorb(h, c);
            } else {
                kept.push(c);
            }
        }
        rest = kept;
    }
    let mut all: Vec<Cause> = hardware.into_iter().chain(rest).collect();
    for c in &mut all {
        c.score = c.confidence * c.cost_ns as f64 / 1e9;
        c.reported = c.confidence >= cut;
    }
    all.sort_by(order);
    all
}

fn explains(h: &Cause, symptom: &Cause) -> bool {
    symptom.attempts.iter().any(|r| h.attempts.contains(r))
        || (!symptom.hosts.is_empty() && symptom.hosts == h.hosts)
}

fn absorb(h: &mut Cause, symptom: Cause) {
    h.confidence = h.confidence.max(symptom.confidence);
    h.cost_ns = h.cost_ns.max(symptom.cost_ns);
    h.evidence.push(Evidence::new(
        format!("symptom explained by this cause: {}", symptom.summary),
        Vec::new(),
        None,
    ));
    h.evidence.extend(symptom.evidence);
    for r in symptom.attempts {
        if !h.attempts.contains(&r) {
            h.attempts.push(r);
        }
    }
}

fn order(a: &Cause, b: &Cause) -> Ordering {
    b.reported
        .cmp(&a.reported)
        .then(b.score.total_cmp(&a.score))
        .then(b.confidence.total_cmp(&a.confidence))
        .then(b.cost_ns.cmp(&a.cost_ns))
        .then(a.kind.cmp(&b.kind))
        .then(a.summary.cmp(&b.summary))
}
