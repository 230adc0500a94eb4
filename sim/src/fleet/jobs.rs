//! Job telemetry, as a scheduler reports it: runs, stages (a DAG) and task
//! attempts placed on the simulated hosts.
//!
//! A job is planned whole when the clock reaches its submit time: its DAG,
//! every task attempt's host, start, end and outcome (which depend on the
//! fault plan: slow or failing hosts, dead hosts, flapping NICs). Its rows
//! wait in a min-heap until their report time (a task's end, a stage's end,
//! the job's end); rows due after the end of the range are never queued. So
//! memory is O(jobs in flight), whatever the length of the range.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::faults::{EXECUTOR_LOST_AFTER_NS, FaultKind, FaultPlan};
use crate::SimConfig;
use crate::lp::{push_int, push_str_field, push_u64};
use crate::rng::{SplitMix64, stream};
use crate::time::{HOUR_NS, SECOND_NS};

/// The job tables, in emission order of equal timestamps (tasks end before
/// their stage, stages before their job).
pub const JOB_TABLES: [&str; 3] = ["job_tasks", "job_stages", "job_runs"];

/// `job_000042`: zero-padded so that ids sort in submit order.
pub fn job_id(idx: u64) -> String {
    format!("job_{idx:06}")
}

const USERS: [&str; 12] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar",
];
pub(crate) const QUEUES: [&str; 5] = ["default", "etl", "adhoc", "ml", "reporting"];

/// Jobs submitted per host per hour: about 9 task attempts per host-hour
/// with the DAG sizes below, so every host runs tasks every few minutes and
/// a host fault touches jobs.
const JOBS_PER_HOST_HOUR: f64 = 0.2;
/// Task throughput, bytes a second.
const TASK_BYTES_PER_S: f64 = 25e6;
const MAX_ATTEMPTS: u8 = 4;
/// Healthy noise: attempts that fail for reasons of their own.
const RANDOM_FAILURE: f64 = 0.002;

const ARRIVAL_STREAM: (u64, u64) = (1 << 41, 1);
const JOB_STREAM: u64 = 1 << 40;
const SKEW_STREAM: u64 = (1 << 40) + (1 << 39);
/// A congested queue's extra wait, per job.
const QUEUE_STREAM: u64 = (1 << 40) + (1 << 38);
/// Minutes a congested queue adds to a job's wait, from … to.
const CONGESTION_MIN: (f64, f64) = (8.0, 25.0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Succeeded,
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskError {
    Io {
        host: u32,
    },
    ExecutorLost {
        host: u32,
    },
    /// A flaky host's executor crashed (SIGABRT).
    ExecutorExited {
        host: u32,
    },
    FetchFailed {
        from: u32,
    },
    Oom,
    ContainerKilled,
}

impl TaskError {
    fn write(self, out: &mut Vec<u8>) {
        let (before, host, after) = match self {
            TaskError::Io { host } => (
                "java.io.IOException: Input/output error reading a local block on ",
                Some(host),
                "",
            ),
            TaskError::ExecutorLost { host } => (
                "ExecutorLostFailure: executor on ",
                Some(host),
                " exited: heartbeat timed out",
            ),
            TaskError::ExecutorExited { host } => (
                "ExecutorLostFailure: executor on ",
                Some(host),
                " exited with code 134",
            ),
            TaskError::FetchFailed { from } => (
                "FetchFailed: failed to fetch a shuffle block from ",
                Some(from),
                ": Connection reset by peer",
            ),
            TaskError::Oom => ("java.lang.OutOfMemoryError: Java heap space", None, ""),
            TaskError::ContainerKilled => (
                "Container killed by YARN for exceeding memory limits",
                None,
                "",
            ),
        };
        // No quotes or backslashes in these pieces: no escaping needed.
        out.push(b'"');
        out.extend_from_slice(before.as_bytes());
        if let Some(h) = host {
            out.extend_from_slice(b"host_");
            push_u64(out, u64::from(h));
        }
        out.extend_from_slice(after.as_bytes());
        out.push(b'"');
    }
}

#[derive(Debug, Clone)]
struct TaskRow {
    job: u64,
    stage: u16,
    task: u16,
    attempt: u8,
    host: u32,
    start: i64,
    end: i64,
    bytes_read: u64,
    bytes_written: u64,
    records_read: u64,
    records_written: u64,
    shuffle_read: u64,
    error: Option<TaskError>,
}

#[derive(Debug, Clone)]
struct StageRow {
    job: u64,
    stage: u16,
    parents: Vec<u16>,
    status: Status,
    tasks: u16,
    attempts: u16,
    failed_attempts: u16,
    start: i64,
    end: i64,
    bytes_read: u64,
    bytes_written: u64,
}

#[derive(Debug, Clone)]
struct RunRow {
    job: u64,
    user: &'static str,
    queue: &'static str,
    status: Status,
    submit: i64,
    start: i64,
    end: i64,
    stages: u16,
    tasks: u32,
    attempts: u32,
    failed_attempts: u32,
    bytes_read: u64,
    bytes_written: u64,
}

#[derive(Debug, Clone)]
enum Row {
    Task(TaskRow),
    Stage(StageRow),
    Run(RunRow),
}

/// A row waiting for its report time. Ordered by (time, seq): `seq` is the
/// queueing order, which keeps equal times deterministic.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    time: i64,
    seq: u64,
    row: Row,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.time, self.seq).cmp(&(other.time, other.seq))
    }
}

impl Pending {
    pub fn write(&self, out: &mut Vec<u8>) {
        let field = |out: &mut Vec<u8>, key: &[u8], v: i64| {
            out.extend_from_slice(key);
            push_int(out, v);
        };
        match &self.row {
            Row::Task(t) => {
                out.extend_from_slice(b"job_tasks,hostname=host_");
                push_u64(out, u64::from(t.host));
                write_job_tag(out, t.job);
                out.extend_from_slice(b",stage_id=");
                push_u64(out, u64::from(t.stage));
                out.extend_from_slice(b",task_id=");
                push_u64(out, u64::from(t.task));
                out.extend_from_slice(b",attempt=");
                push_u64(out, u64::from(t.attempt));
                out.extend_from_slice(b" status=");
                let status = if t.error.is_some() {
                    Status::Failed
                } else {
                    Status::Succeeded
                };
                push_str_field(out, status.as_str());
                field(out, b",start_ns=", t.start);
                field(out, b",end_ns=", t.end);
                field(out, b",duration_ms=", (t.end - t.start) / 1_000_000);
                field(out, b",bytes_read=", t.bytes_read as i64);
                field(out, b",bytes_written=", t.bytes_written as i64);
                field(out, b",records_read=", t.records_read as i64);
                field(out, b",records_written=", t.records_written as i64);
                field(out, b",shuffle_read_bytes=", t.shuffle_read as i64);
                if let Some(e) = t.error {
                    out.extend_from_slice(b",error=");
                    e.write(out);
                }
            }
            Row::Stage(s) => {
                out.extend_from_slice(b"job_stages");
                write_job_tag(out, s.job);
                out.extend_from_slice(b",stage_id=");
                push_u64(out, u64::from(s.stage));
                out.extend_from_slice(b" status=");
                push_str_field(out, s.status.as_str());
                out.extend_from_slice(b",parents=\"");
                for (i, p) in s.parents.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push_u64(out, u64::from(*p));
                }
                out.push(b'"');
                field(out, b",tasks=", i64::from(s.tasks));
                field(out, b",attempts=", i64::from(s.attempts));
                field(out, b",failed_attempts=", i64::from(s.failed_attempts));
                field(out, b",start_ns=", s.start);
                field(out, b",end_ns=", s.end);
                field(out, b",duration_ms=", (s.end - s.start) / 1_000_000);
                field(out, b",bytes_read=", s.bytes_read as i64);
                field(out, b",bytes_written=", s.bytes_written as i64);
            }
            Row::Run(r) => {
                out.extend_from_slice(b"job_runs");
                write_job_tag(out, r.job);
                out.extend_from_slice(b",user=");
                out.extend_from_slice(r.user.as_bytes());
                out.extend_from_slice(b",queue=");
                out.extend_from_slice(r.queue.as_bytes());
                out.extend_from_slice(b" status=");
                push_str_field(out, r.status.as_str());
                field(out, b",submit_ns=", r.submit);
                field(out, b",start_ns=", r.start);
                field(out, b",end_ns=", r.end);
                field(out, b",duration_ms=", (r.end - r.start) / 1_000_000);
                field(out, b",stages=", i64::from(r.stages));
                field(out, b",tasks=", i64::from(r.tasks));
                field(out, b",attempts=", i64::from(r.attempts));
                field(out, b",failed_attempts=", i64::from(r.failed_attempts));
                field(out, b",bytes_read=", r.bytes_read as i64);
                field(out, b",bytes_written=", r.bytes_written as i64);
            }
        }
        out.push(b' ');
        push_int(out, self.time);
        out.pop(); // push_int's `i` suffix: timestamps have none
        out.push(b'\n');
    }
}

fn write_job_tag(out: &mut Vec<u8>, job: u64) {
    out.extend_from_slice(b",job_id=job_");
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(job);
    for _ in digits.len()..6 {
        out.push(b'0');
    }
    out.extend_from_slice(digits.as_bytes());
}

/// Rounds to whole milliseconds: schedulers report milliseconds.
fn ms(t: f64) -> i64 {
    (t / 1e6).round() as i64 * 1_000_000
}

/// The static shape of a job, drawn before any timing.
struct Shape {
    user: &'static str,
    queue: &'static str,
    queue_wait_ns: f64,
    stages: Vec<StageShape>,
}

struct StageShape {
    parents: Vec<u16>,
    tasks: u16,
    base_bytes: f64,
    write_ratio: f64,
    record_bytes: f64,
}

fn draw_shape(rng: &mut SplitMix64) -> Shape {
    let user = rng.pick(&USERS);
    let queue = rng.pick(&QUEUES);
    let queue_wait_ns = rng.exponential(20.0 * SECOND_NS as f64);
    let n = 1 + rng.pick(&[0u16, 1, 1, 2, 2, 2, 3, 3, 4, 5]);
    let stages = (0..n)
        .map(|i| {
            let mut parents = Vec::new();
            if i > 0 && !rng.chance(0.15) {
                parents.push(if rng.chance(0.8) {
                    i - 1
                } else {
                    rng.below(u64::from(i)) as u16
                });
                if i > 1 && rng.chance(0.3) {
                    let other = rng.below(u64::from(i)) as u16;
                    if !parents.contains(&other) {
                        parents.push(other);
                    }
                }
                parents.sort_unstable();
            }
            let tasks = if parents.is_empty() {
                rng.between(4, 32)
            } else {
                rng.between(2, 24)
            } as u16;
            StageShape {
                parents,
                tasks,
                base_bytes: rng
                    .range((256.0 * 1048576.0f64).ln(), (4096.0 * 1048576.0f64).ln())
                    .exp(),
                write_ratio: rng.range(0.1, 1.2),
                record_bytes: rng.range(100.0, 400.0),
            }
        })
        .collect();
    Shape {
        user,
        queue,
        queue_wait_ns,
        stages,
    }
}

/// A planned job: its rows (report time, row) and what it did to the faults.
struct Planned {
    rows: Vec<(i64, Row)>,
    status: Status,
    end: i64,
    /// Fault indices whose signature the job's reported tasks carry.
    affected: Vec<usize>,
    /// The subset that slowed or failed one of its reported attempts.
    harmed: Vec<usize>,
    /// (stage, task, attempt start, attempt end) of the injected skew.
    skew: Option<(u16, u16, i64, i64)>,
}

pub(crate) struct Scheduler {
    seed: u64,
    hosts: u32,
    end_ns: i64,
    arrivals: SplitMix64,
    mean_gap_ns: f64,
    next_submit: f64,
    next_job: u64,
    pending: BinaryHeap<Reverse<Pending>>,
    seq: u64,
}

impl Scheduler {
    pub fn new(config: &SimConfig) -> Self {
        let mut arrivals = stream(config.seed, ARRIVAL_STREAM.0, ARRIVAL_STREAM.1);
        let per_hour = (config.hosts as f64 * JOBS_PER_HOST_HOUR).max(1.0);
        let mean_gap_ns = HOUR_NS as f64 / per_hour;
        let next_submit = config.start_ns as f64 + arrivals.exponential(mean_gap_ns);
        Self {
            seed: config.seed,
            hosts: config.hosts as u32,
            end_ns: config.end_ns,
            arrivals,
            mean_gap_ns,
            next_submit,
            next_job: 0,
            pending: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Plans every job submitted before `t_end`.
    pub fn plan_until(&mut self, t_end: i64, plan: &mut FaultPlan) {
        while (self.next_submit as i64) < t_end.min(self.end_ns) {
            let submit = ms(self.next_submit);
            let idx = self.next_job;
            self.next_job += 1;
            self.next_submit += self.arrivals.exponential(self.mean_gap_ns);
            let mut planned = None;
            if let Some(fault) = plan.skew_due(submit) {
                let p = self.plan_job(idx, submit, plan, true);
                if let Some((stage, task, start, end)) = p.skew
                    && p.status == Status::Succeeded
                    && p.end < self.end_ns
                {
                    let f = &mut plan.faults[fault];
                    f.job = Some(idx);
                    f.stage = u32::from(stage);
                    f.task = u32::from(task);
                    f.start_ns = start;
                    f.end_ns = end;
                    f.affected.insert(idx);
                    f.harmed.insert(idx);
                    planned = Some(p);
                }
            }
            let planned = planned.unwrap_or_else(|| self.plan_job(idx, submit, plan, false));
            for &f in &planned.affected {
                plan.faults[f].affected.insert(idx);
            }
            for &f in &planned.harmed {
                plan.faults[f].harmed.insert(idx);
            }
            for (time, row) in planned.rows {
                debug_assert!(time < self.end_ns);
                self.seq += 1;
                self.pending.push(Reverse(Pending {
                    time,
                    seq: self.seq,
                    row,
                }));
            }
        }
    }

    /// The next queued row reported before `t_end`.
    pub fn pop_before(&mut self, t_end: i64) -> Option<Pending> {
        if self.pending.peek()?.0.time < t_end {
            self.pending.pop().map(|r| r.0)
        } else {
            None
        }
    }

    pub fn state_bytes(&self) -> usize {
        self.pending.capacity() * size_of::<Reverse<Pending>>()
            + self
                .pending
                .iter()
                .map(|p| match &p.0.row {
                    Row::Stage(s) => s.parents.capacity() * 2,
                    _ => 0,
                })
                .sum::<usize>()
    }

    /// Picks a host that is up at `t`, other than `avoid`.
    fn pick_host(&self, rng: &mut SplitMix64, t: i64, avoid: Option<u32>, plan: &FaultPlan) -> u32 {
        let mut h = rng.below(u64::from(self.hosts)) as u32;
        for _ in 0..32 {
            if plan.alive(h, t) && (Some(h) != avoid || self.hosts == 1) {
                break;
            }
            h = rng.below(u64::from(self.hosts)) as u32;
        }
        h
    }

    fn plan_job(&self, idx: u64, submit: i64, plan: &FaultPlan, skew: bool) -> Planned {
        let mut rng = stream(self.seed, JOB_STREAM, idx);
        let shape = draw_shape(&mut rng);
        // Which task gets the skew comes from its own stream, so that the
        // skewed and the plain plans share everything else.
        let skew_at = skew.then(|| {
            let mut r = stream(self.seed, SKEW_STREAM, idx);
            let candidates: Vec<usize> = (0..shape.stages.len())
                .filter(|&s| shape.stages[s].tasks >= 4)
                .collect();
            (!candidates.is_empty()).then(|| {
                let s = r.pick(&candidates);
                (
                    s,
                    r.below(u64::from(shape.stages[s].tasks)) as usize,
                    r.range(12.0, 25.0),
                )
            })
        });
        let skew_at = skew_at.flatten();

        let queue = QUEUES.iter().position(|q| *q == shape.queue).unwrap_or(0);
        // A congested queue's extra wait comes from its own stream: the
        // job's other draws stay those of the plain plan.
        let congestion = plan.congested(queue, submit).map(|f| {
            let mut r = stream(self.seed, QUEUE_STREAM, idx);
            let (lo, hi) = CONGESTION_MIN;
            (f, r.range(lo, hi) * 60.0 * SECOND_NS as f64)
        });
        let extra_wait = congestion.map_or(0.0, |(_, w)| w);
        let start = ms(submit as f64 + shape.queue_wait_ns + extra_wait);
        let n = shape.stages.len();
        let mut rows = Vec::new();
        let mut affected = Vec::new();
        let mut harmed = Vec::new();
        let mut skew_span = None;
        let mut stage_end = vec![0i64; n];
        let mut stage_hosts: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut job_failed = false;
        let (mut tasks_total, mut attempts_total, mut failed_total) = (0u32, 0u32, 0u32);
        let (mut job_read, mut job_written) = (0u64, 0u64);
        let mut job_end = start;
        let mut stages_run = 0u16;

        for (i, st) in shape.stages.iter().enumerate() {
            // Stages run in index order, which is a topological order; the
            // scheduler stops a job at its first failed stage.
            if job_failed {
                break;
            }
            stages_run += 1;
            let stage_start = if st.parents.is_empty() {
                ms(start as f64 + rng.range(0.0, 2e9))
            } else {
                let ready = st
                    .parents
                    .iter()
                    .map(|&p| stage_end[p as usize])
                    .max()
                    .unwrap_or(start);
                ms(ready as f64 + rng.range(1e9, 5e9))
            };
            let mut sources: Vec<u32> = st
                .parents
                .iter()
                .flat_map(|&p| stage_hosts[p as usize].iter().copied())
                .collect();
            sources.sort_unstable();
            sources.dedup();

            let mut inputs: Vec<f64> = (0..st.tasks)
                .map(|_| st.base_bytes * (0.3 * rng.normal()).exp().clamp(0.5, 2.0))
                .collect();
            if let Some((s, t, factor)) = skew_at
                && s == i
            {
                let mut others: Vec<f64> = inputs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != t)
                    .map(|(_, v)| *v)
                    .collect();
                others.sort_by(f64::total_cmp);
                // The upper median of the whole stage (the skewed task sorts
                // last): the ratio holds whichever median a reader takes.
                inputs[t] = others[inputs.len() / 2] * factor;
            }

            let (mut end_max, mut ok, mut attempts, mut failed) = (stage_start, true, 0u16, 0u16);
            let (mut read, mut written) = (0u64, 0u64);
            for (j, &input) in inputs.iter().enumerate() {
                let mut t0 = ms(stage_start as f64 + rng.range(0.0, 3e9));
                let mut avoid = None;
                let mut succeeded = false;
                let mut last_end = t0;
                for attempt in 0..MAX_ATTEMPTS {
                    let host = self.pick_host(&mut rng, t0, avoid, plan);
                    let straggle = (0.15 * rng.normal()).exp().clamp(0.85, 1.6);
                    let dur = (rng.range(3e9, 15e9) + input / TASK_BYTES_PER_S * 1e9)
                        * straggle
                        * plan.slowdown(host, t0);
                    let mut end = ms(t0 as f64 + dur);
                    let mut error = None;
                    let mut blame = None;
                    // The blamed fault failed this attempt, or (disk,
                    // thermal) it started inside the window and was slowed;
                    // pure reads of the plan, no draw.
                    let mut harm = plan.slowdown(host, t0) > 1.0;
                    let host_fault = plan.of_host(host);
                    if let Some(f) = plan.io_failing(host, t0) {
                        end = ms(t0 as f64 + dur * rng.range(0.2, 0.6));
                        error = Some(TaskError::Io { host });
                        blame = Some(f);
                        harm = true;
                    } else if let Some(dead) = plan.dead_after(host)
                        && dead < end
                    {
                        end = dead.max(t0) + EXECUTOR_LOST_AFTER_NS;
                        error = Some(TaskError::ExecutorLost { host });
                        blame = host_fault.map(|(f, _)| f);
                        harm = true;
                    } else if let Some((f, from)) = plan.flapping_among(&sources, t0)
                        && rng.chance(0.6)
                    {
                        end = ms(t0 as f64 + rng.range(5e9, 30e9));
                        error = Some(TaskError::FetchFailed { from });
                        blame = Some(f);
                        harm = true;
                    } else if let Some((f, p)) = plan.flaky(host, t0)
                        && rng.chance(p)
                    {
                        end = ms(t0 as f64 + dur * rng.range(0.1, 0.5));
                        error = Some(TaskError::ExecutorExited { host });
                        blame = Some(f);
                        harm = true;
                    } else if rng.chance(RANDOM_FAILURE) {
                        end = ms(t0 as f64 + dur * rng.range(0.3, 0.9));
                        error = Some(if rng.chance(0.5) {
                            TaskError::Oom
                        } else {
                            TaskError::ContainerKilled
                        });
                    }
                    // Slowed by a failing disk, a hot CPU or a straggling
                    // host while it ran.
                    if blame.is_none()
                        && let Some((f, fault)) = host_fault
                        && matches!(
                            fault.kind,
                            FaultKind::FailingDisk
                                | FaultKind::ThermalThrottling
                                | FaultKind::StragglerHost
                        )
                        && t0 < fault.end_ns
                        && end > fault.start_ns
                    {
                        blame = Some(f);
                    }
                    let done = if error.is_some() {
                        rng.range(0.2, 0.9)
                    } else {
                        1.0
                    };
                    let bytes_read = (input * done) as u64;
                    let bytes_written = (input * done * st.write_ratio) as u64;
                    attempts += 1;
                    if error.is_some() {
                        failed += 1;
                    }
                    if end < self.end_ns {
                        if let Some(f) = blame {
                            affected.push(f);
                            if harm {
                                harmed.push(f);
                            }
                        }
                        rows.push((
                            end,
                            Row::Task(TaskRow {
                                job: idx,
                                stage: i as u16,
                                task: j as u16,
                                attempt,
                                host,
                                start: t0,
                                end,
                                bytes_read,
                                bytes_written,
                                records_read: (bytes_read as f64 / st.record_bytes) as u64,
                                records_written: (bytes_written as f64 / st.record_bytes) as u64,
                                shuffle_read: if st.parents.is_empty() { 0 } else { bytes_read },
                                error,
                            }),
                        ));
                    }
                    read += bytes_read;
                    written += bytes_written;
                    last_end = end;
                    if error.is_none() {
                        succeeded = true;
                        stage_hosts[i].push(host);
                        if skew_at.is_some_and(|(s, t, _)| s == i && t == j) {
                            skew_span = Some((i as u16, j as u16, t0, end));
                        }
                        break;
                    }
                    avoid = Some(host);
                    t0 = ms(end as f64 + rng.range(1e9, 5e9));
                }
                end_max = end_max.max(last_end);
                ok &= succeeded;
            }
            stage_hosts[i].sort_unstable();
            stage_hosts[i].dedup();
            stage_end[i] = end_max;
            job_failed = !ok;
            job_end = job_end.max(end_max);
            tasks_total += u32::from(st.tasks);
            attempts_total += u32::from(attempts);
            failed_total += u32::from(failed);
            job_read += read;
            job_written += written;
            if end_max < self.end_ns {
                rows.push((
                    end_max,
                    Row::Stage(StageRow {
                        job: idx,
                        stage: i as u16,
                        parents: st.parents.clone(),
                        status: if ok {
                            Status::Succeeded
                        } else {
                            Status::Failed
                        },
                        tasks: st.tasks,
                        attempts,
                        failed_attempts: failed,
                        start: stage_start,
                        end: end_max,
                        bytes_read: read,
                        bytes_written: written,
                    }),
                ));
            }
        }
        let status = if job_failed {
            Status::Failed
        } else {
            Status::Succeeded
        };
        if job_end < self.end_ns {
            if let Some((f, _)) = congestion {
                affected.push(f);
                harmed.push(f);
            }
            rows.push((
                job_end,
                Row::Run(RunRow {
                    job: idx,
                    user: shape.user,
                    queue: shape.queue,
                    status,
                    submit,
                    start,
                    end: job_end,
                    stages: stages_run,
                    tasks: tasks_total,
                    attempts: attempts_total,
                    failed_attempts: failed_total,
                    bytes_read: job_read,
                    bytes_written: job_written,
                }),
            ));
        }
        affected.sort_unstable();
        affected.dedup();
        harmed.sort_unstable();
        harmed.dedup();
        Planned {
            rows,
            status,
            end: job_end,
            affected,
            harmed,
            skew: skew_span,
        }
    }
}
