//! Many jobs: diagnosing each job of a range, and the fleet view — the
//! hosts that hurt the most jobs ([`host_impact`]).
//!
//! A host hurts a job when one of the job's *reported* causes names it and
//! the cause is the host's doing: hardware, or a host symptom (straggler,
//! slow host, host errors). Data skew, task failures (the job's own) and
//! queueing name no culprit host. A cause's cost is shared evenly among
//! the hosts it names, so the fleet view's costs add up to the jobs' lost
//! time.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cause::CauseKind;
use crate::config::Config;
use crate::error::Error;
use crate::model::JobInput;
use crate::report::Report;

/// Each job's report, or why it could not be diagnosed (its rows do not
/// form a job: a cycle, duplicates, ...), in the inputs' order.
pub fn diagnose_all(inputs: &[JobInput], config: &Config) -> Vec<(String, Result<Report, Error>)> {
    inputs
        .iter()
        .map(|i| (i.job_id.clone(), crate::diagnose(i, config)))
        .collect()
}

/// One host's harm to the jobs of a range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostImpact {
    pub hostname: String,
    /// Jobs with a reported cause naming the host.
    pub jobs: usize,
    /// Those causes' cost to their jobs, shared among the hosts each names.
    pub cost_ns: i64,
    /// How many of those jobs each kind of cause hurt.
    pub causes: BTreeMap<CauseKind, usize>,
    /// The job it cost the most, and how much.
    pub worst_job: String,
    pub worst_cost_ns: i64,
    /// The earliest start and latest end of the jobs it hurt.
    pub first_ns: i64,
    pub last_ns: i64,
}

impl HostImpact {
    /// The kind of cause behind most of the host's jobs (ties: the first
    /// kind in [`CauseKind`]'s order).
    pub fn top_cause(&self) -> Option<CauseKind> {
        let most = self.causes.values().max()?;
        self.causes
            .iter()
            .find(|(_, n)| *n == most)
            .map(|(k, _)| *k)
    }
}

/// Whether a cause blames the hosts it names.
fn blames_host(kind: CauseKind) -> bool {
    kind.is_hardware() || kind.is_host_symptom()
}

/// One job's harm to one host: the shares of the job's reported causes
/// that name the host. [`host_impact`] is the fold of these; the
/// diagnosis journal stores them, one row each, as jobs end.
#[derive(Debug, Clone, PartialEq)]
pub struct JobHostHarm {
    pub hostname: String,
    pub job_id: String,
    pub cost_ns: i64,
    /// The kinds of those causes, each once, in the report's order.
    pub kinds: Vec<CauseKind>,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// The hosts a report's causes blame, each once with its causes' shares.
pub fn harms(r: &Report) -> Vec<JobHostHarm> {
    let mut job: BTreeMap<&str, (i64, Vec<CauseKind>)> = BTreeMap::new();
    for c in r.reported().filter(|c| blames_host(c.kind)) {
        let mut named: Vec<&str> = c.hosts.iter().map(String::as_str).collect();
        named.sort_unstable();
        named.dedup();
        if named.is_empty() {
            continue;
        }
        let share = c.cost_ns / named.len() as i64;
        for h in named {
            let e = job.entry(h).or_default();
            e.0 += share;
            if !e.1.contains(&c.kind) {
                e.1.push(c.kind);
            }
        }
    }
    job.into_iter()
        .map(|(h, (cost_ns, kinds))| JobHostHarm {
            hostname: h.to_owned(),
            job_id: r.job_id.clone(),
            cost_ns,
            kinds,
            start_ns: r.start_ns,
            end_ns: r.end_ns,
        })
        .collect()
}

/// The hosts that hurt the jobs of `reports`, most jobs first (then most
/// cost, then by name).
pub fn host_impact<'a>(reports: impl IntoIterator<Item = &'a Report>) -> Vec<HostImpact> {
    fold_impact(reports.into_iter().flat_map(harms))
}

/// [`host_impact`] from the harms of each job, in the jobs' order (a tie
/// for a host's worst job goes to the first).
pub fn fold_impact(harms: impl IntoIterator<Item = JobHostHarm>) -> Vec<HostImpact> {
    let mut hosts: BTreeMap<String, HostImpact> = BTreeMap::new();
    for h in harms {
        let e = hosts
            .entry(h.hostname.clone())
            .or_insert_with(|| HostImpact {
                hostname: h.hostname.clone(),
                jobs: 0,
                cost_ns: 0,
                causes: BTreeMap::new(),
                worst_job: h.job_id.clone(),
                worst_cost_ns: i64::MIN,
                first_ns: h.start_ns,
                last_ns: h.end_ns,
            });
        e.jobs += 1;
        e.cost_ns += h.cost_ns;
        for k in h.kinds {
            *e.causes.entry(k).or_default() += 1;
        }
        if h.cost_ns > e.worst_cost_ns {
            e.worst_cost_ns = h.cost_ns;
            e.worst_job = h.job_id;
        }
        e.first_ns = e.first_ns.min(h.start_ns);
        e.last_ns = e.last_ns.max(h.end_ns);
    }
    let mut out: Vec<HostImpact> = hosts.into_values().collect();
    out.sort_by(|a, b| {
        b.jobs
            .cmp(&a.jobs)
            .then(b.cost_ns.cmp(&a.cost_ns))
            .then(a.hostname.cmp(&b.hostname))
    });
    out
}
