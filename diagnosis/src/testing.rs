//! Hand-built jobs for the unit tests: a builder over [`JobInput`] and a
//! healthy-noise generator that follows the simulator's model (input ×
//! exp(0.3·N) clamped to [0.5, 2], duration (U(3,15) s + input at 25 MB/s) ×
//! exp(0.15·N) clamped to [0.85, 1.6]).

use crate::model::{Attempt, HostSignal, JobInput, JobRun, SignalKind, Stage, Status};

pub const S: i64 = 1_000_000_000;
pub const MIB: i64 = 1 << 20;

pub const OOM: &str = "java.lang.OutOfMemoryError: Java heap space";

#[derive(Clone)]
pub struct JobBuilder {
    pub input: JobInput,
    /// Stage id → (parents, start s).
    stages: Vec<(u32, Vec<u32>, f64)>,
    rng: u64,
    /// Chance that an attempt of a healthy stage fails with an OOM first.
    pub oom_rate: f64,
}

impl JobBuilder {
    /// Submitted at 0 s, started at 10 s; ends 1 s after its last stage.
    pub fn new(job_id: &str) -> JobBuilder {
        JobBuilder {
            input: JobInput {
                job_id: job_id.to_owned(),
                run: Some(JobRun {
                    job_id: job_id.to_owned(),
                    user: Some("alice".into()),
                    queue: Some("etl".into()),
                    status: Status::Succeeded,
                    submit_ns: Some(0),
                    start_ns: Some(10 * S),
                    end_ns: None,
                }),
                stages: Vec::new(),
                attempts: Vec::new(),
                signals: Some(Vec::new()),
                notes: Vec::new(),
                host_history: Vec::new(),
            },
            stages: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15 ^ job_id.len() as u64,
            oom_rate: 0.0,
        }
    }

    pub fn seed(mut self, seed: u64) -> JobBuilder {
        self.rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        self
    }

    pub fn stage(&mut self, id: u32, parents: &[u32], start_s: f64) -> &mut Self {
        self.stages.push((id, parents.to_vec(), start_s));
        self
    }

    /// The next attempt of a task, succeeded.
    pub fn task(
        &mut self,
        stage: u32,
        task: u32,
        host: &str,
        start_s: f64,
        dur_s: f64,
        mib: f64,
    ) -> &mut Self {
        self.push(stage, task, host, start_s, dur_s, mib, None)
    }

    /// The next attempt of a task, failed with `error`.
    pub fn failed(
        &mut self,
        stage: u32,
        task: u32,
        host: &str,
        start_s: f64,
        dur_s: f64,
        error: &str,
    ) -> &mut Self {
        self.push(stage, task, host, start_s, dur_s, 300.0, Some(error))
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        stage: u32,
        task: u32,
        host: &str,
        start_s: f64,
        dur_s: f64,
        mib: f64,
        error: Option<&str>,
    ) -> &mut Self {
        let attempt = self
            .input
            .attempts
            .iter()
            .filter(|a| a.stage_id == stage && a.task_id == task)
            .count() as u32;
        let bytes = (mib * MIB as f64) as i64;
        self.input.attempts.push(Attempt {
            stage_id: stage,
            task_id: task,
            attempt,
            hostname: host.to_owned(),
            status: if error.is_some() {
                Status::Failed
            } else {
                Status::Succeeded
            },
            start_ns: secs(start_s),
            end_ns: secs(start_s + dur_s),
            bytes_read: bytes,
            shuffle_read_bytes: bytes,
            records_read: bytes / 200,
            error: error.map(str::to_owned),
        });
        self
    }

    pub fn signal(&mut self, host: &str, kind: SignalKind, start_s: f64, end_s: f64) -> &mut Self {
        self.input
            .signals
            .get_or_insert_with(Vec::new)
            .push(HostSignal {
                hostname: host.to_owned(),
                kind,
                start_ns: secs(start_s),
                end_ns: secs(end_s),
                detail: "test signal".into(),
                sql: "SELECT 1".into(),
            });
        self
    }

    fn uniform(&mut self) -> f64 {
        // xorshift64*: deterministic, good enough for test noise.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `n` healthy tasks on hosts `host_{100·stage + t}` starting within 3 s
    /// of `start_s`; returns the stage's end (its last task's end), in s.
    pub fn healthy_stage(
        &mut self,
        id: u32,
        parents: &[u32],
        start_s: f64,
        n: u32,
        base_mib: f64,
    ) -> f64 {
        self.stage(id, parents, start_s);
        let mut end: f64 = start_s;
        for t in 0..n {
            let mib = base_mib * (0.3 * self.normal()).exp().clamp(0.5, 2.0);
            let overhead = 3.0 + 12.0 * self.uniform();
            let straggle = (0.15 * self.normal()).exp().clamp(0.85, 1.6);
            let dur = (overhead + mib * MIB as f64 / 25e6) * straggle;
            let mut begin = start_s + 3.0 * self.uniform();
            if self.uniform() < self.oom_rate {
                // A transient memory failure, retried on another host.
                let fail = 5.0 + 25.0 * self.uniform();
                self.failed(
                    id,
                    t,
                    &format!("host_{}", 100 * id + t + 50),
                    begin,
                    fail,
                    OOM,
                );
                begin += fail + 1.0 + 4.0 * self.uniform();
            }
            self.task(id, t, &format!("host_{}", 100 * id + t), begin, dur, mib);
            end = end.max(begin + dur);
        }
        end
    }

    /// A random healthy DAG of 1-6 stages (the simulator's shapes), with
    /// transient memory failures on `oom_rate` of the tasks (the simulator's
    /// background rate is 0.002 per attempt).
    pub fn healthy_job(seed: u64, oom_rate: f64) -> JobInput {
        let mut b = JobBuilder::new(&format!("job_{seed:06}")).seed(seed);
        b.oom_rate = oom_rate;
        let stages = 1 + (b.uniform() * 6.0) as u32;
        let mut ends: Vec<f64> = Vec::new();
        for i in 0..stages {
            let mut parents = Vec::new();
            if i > 0 && b.uniform() > 0.15 {
                parents.push(if b.uniform() < 0.8 {
                    i - 1
                } else {
                    (b.uniform() * f64::from(i)) as u32
                });
                if i > 1 && b.uniform() < 0.3 {
                    let other = (b.uniform() * f64::from(i)) as u32;
                    if !parents.contains(&other) {
                        parents.push(other);
                    }
                }
            }
            let ready = parents
                .iter()
                .map(|p| ends[*p as usize])
                .fold(10.0, f64::max);
            let start = if parents.is_empty() {
                10.0 + 2.0 * b.uniform()
            } else {
                ready + 1.0 + 4.0 * b.uniform()
            };
            let n = if parents.is_empty() {
                4 + (b.uniform() * 28.0) as u32
            } else {
                2 + (b.uniform() * 22.0) as u32
            };
            let base = (256f64.ln() + (4096f64.ln() - 256f64.ln()) * b.uniform()).exp();
            let end = b.healthy_stage(i, &parents, start, n, base);
            ends.push(end);
        }
        b.build()
    }

    /// Fills stage rows (end = the last attempt's end + 1 s, failed when a
    /// task's last attempt failed) and the job's end (last stage + 1 s).
    pub fn build(&self) -> JobInput {
        let mut input = self.input.clone();
        let mut job_end = 10 * S;
        let mut job_failed = false;
        for (id, parents, start) in &self.stages {
            let mine: Vec<&Attempt> = input
                .attempts
                .iter()
                .filter(|a| a.stage_id == *id)
                .collect();
            let end = mine.iter().map(|a| a.end_ns).max().unwrap_or(secs(*start)) + S;
            let mut tasks: Vec<u32> = mine.iter().map(|a| a.task_id).collect();
            tasks.sort_unstable();
            tasks.dedup();
            let failed = tasks.iter().any(|t| {
                mine.iter()
                    .filter(|a| a.task_id == *t)
                    .max_by_key(|a| a.attempt)
                    .is_some_and(|a| a.status == Status::Failed)
            });
            job_failed |= failed;
            input.stages.push(Stage {
                stage_id: *id,
                parents: parents.clone(),
                status: if failed {
                    Status::Failed
                } else {
                    Status::Succeeded
                },
                start_ns: Some(secs(*start)),
                end_ns: Some(end),
                tasks: tasks.len() as u32,
                attempts: mine.len() as u32,
                failed_attempts: mine.iter().filter(|a| a.status == Status::Failed).count() as u32,
            });
            job_end = job_end.max(end + S);
        }
        if let Some(run) = &mut input.run {
            run.end_ns = Some(job_end);
            if job_failed {
                run.status = Status::Failed;
            }
        }
        input
    }
}

pub fn secs(s: f64) -> i64 {
    (s * S as f64).round() as i64
}
