//! Whole-job scenarios: hand-built jobs with one known cause each, and
//! healthy jobs that must come out clean.

use crate::testing::{JobBuilder, MIB, OOM, S, secs};
use crate::{CauseKind, Config, Error, Report, SegmentKind, SignalKind, Status, diagnose};

/// Stage 0 (root, 8 tasks) → stage 1 (8 tasks). Task t runs 20 + t s and
/// reads 500 + 10·t MiB, on `host_{10·stage + t}`. Stage 0 ends at 40 s,
/// stage 1 starts at 42 s.
fn base() -> JobBuilder {
    let mut b = JobBuilder::new("job_000042");
    b.stage(0, &[], 11.0);
    for t in 0..8 {
        b.task(
            0,
            t,
            &format!("host_{t}"),
            12.0,
            20.0 + f64::from(t),
            500.0 + 10.0 * f64::from(t),
        );
    }
    b.stage(1, &[0], 42.0);
    for t in 0..8 {
        b.task(
            1,
            t,
            &format!("host_{}", 10 + t),
            43.0,
            20.0 + f64::from(t),
            500.0 + 10.0 * f64::from(t),
        );
    }
    b
}

fn run(b: &JobBuilder) -> Report {
    let report = diagnose(&b.build(), &Config::default()).unwrap();
    assert_eq!(
        report.wall_ns,
        report.end_ns - report.submit_ns.unwrap_or(report.start_ns)
    );
    assert_eq!(
        report
            .critical_path
            .iter()
            .map(|s| s.duration_ns)
            .sum::<i64>(),
        report.wall_ns
    );
    report
}

fn kinds(r: &Report) -> Vec<(CauseKind, bool)> {
    r.causes.iter().map(|c| (c.kind, c.reported)).collect()
}

#[test]
fn healthy_base_job_has_no_reported_cause() {
    let r = run(&base());
    assert!(r.top().is_none(), "{:#?}", r.causes);
    assert!(!r.running);
    assert_eq!(r.status, Status::Succeeded);
    assert!(r.notes.iter().any(|n| n.contains("looks healthy")));
    assert!(!r.notes.iter().any(|n| n.contains("no hardware telemetry")));
}

#[test]
fn a_single_oom_retry_off_the_critical_path_is_not_reported() {
    let mut b = base();
    b.failed(1, 8, "host_30", 43.0, 6.0, OOM);
    b.task(1, 8, "host_31", 51.0, 10.0, 520.0);
    let r = run(&b);
    assert!(r.top().is_none(), "{:#?}", r.causes);
    let oom = r
        .causes
        .iter()
        .find(|c| c.kind == CauseKind::TaskFailures)
        .unwrap();
    assert_eq!(oom.cost_ns, 0);
    assert!(oom.confidence < r.confidence_cut);
}

/// Healthy jobs drawn from the simulator's model, and the seeds whose top
/// cause reached the cut.
fn flagged_healthy(
    seeds: std::ops::RangeInclusive<u64>,
    oom_rate: f64,
) -> Vec<(u64, CauseKind, String)> {
    let mut flagged = Vec::new();
    for seed in seeds {
        let input = JobBuilder::healthy_job(seed, oom_rate);
        let r = diagnose(&input, &Config::default()).unwrap();
        assert_eq!(
            r.critical_path.iter().map(|s| s.duration_ns).sum::<i64>(),
            r.wall_ns
        );
        if let Some(top) = r.top() {
            flagged.push((seed, top.kind, top.summary.clone()));
        }
    }
    flagged
}

#[test]
fn healthy_jobs_with_the_simulators_noise_stay_under_the_cut() {
    // The simulator's rate of transient OOMs: nothing is reported.
    let flagged = flagged_healthy(1..=1000, 0.002);
    assert!(flagged.is_empty(), "{flagged:#?}");
    // Five times that rate: three OOMs in one stage start to look like
    // memory pressure (0.55), in well under 1 % of jobs (7 of 4,000 when
    // this was written). The issue's bar is >= 95 % clean.
    let flagged = flagged_healthy(1..=1000, 0.01);
    assert!(
        flagged.len() <= 10,
        "{} of 1000: {flagged:#?}",
        flagged.len()
    );
    assert!(
        flagged.iter().all(|f| f.1 == CauseKind::TaskFailures),
        "{flagged:#?}"
    );
}

#[test]
fn skew_is_detected_and_ranked_first() {
    let mut b = base();
    // 15x the median input, and the time that takes at 25 MB/s.
    let mib = 15.0 * 540.0;
    b.task(1, 8, "host_18", 43.0, 20.0 + mib * MIB as f64 / 25e6, mib);
    b.failed(0, 8, "host_50", 12.0, 5.0, OOM)
        .task(0, 8, "host_51", 19.0, 12.0, 500.0);
    let r = run(&b);
    let top = r.top().unwrap();
    assert_eq!(top.kind, CauseKind::DataSkew, "{:#?}", r.causes);
    assert_eq!((top.stage_id, top.attempts[0].task_id), (Some(1), 8));
    assert!(top.confidence >= 0.9);
    // It is the critical task: it cost its duration minus the median (24 s: the upper median of 20..27 s and itself).
    let dur = r
        .critical_path
        .iter()
        .find(|s| s.kind == SegmentKind::Attempt && s.stage_id == Some(1))
        .unwrap();
    assert_eq!(dur.task_id, Some(8));
    assert_eq!(top.cost_ns, dur.duration_ns - 24 * S);
    assert!(top.action.contains("repartition stage 1"), "{}", top.action);
    assert!(
        top.evidence[0]
            .sql
            .as_deref()
            .unwrap()
            .contains("job_tasks")
    );
    assert_eq!(r.reported().count(), 1, "{:#?}", r.causes);
}

fn straggler_on(host: &str) -> JobBuilder {
    let mut b = base();
    b.task(1, 8, host, 43.0, 80.0, 540.0); // 3.2x the median, normal input
    b
}

#[test]
fn a_straggler_without_hardware_evidence_is_a_straggler() {
    let r = run(&straggler_on("host_99"));
    let top = r.top().unwrap();
    assert_eq!(top.kind, CauseKind::Straggler, "{:#?}", r.causes);
    assert_eq!(top.hosts, vec!["host_99".to_owned()]);
    assert_eq!(top.cost_ns, 80 * S - 24 * S);
}

#[test]
fn a_straggler_on_a_host_with_disk_latency_is_blamed_on_the_disk() {
    let mut b = straggler_on("host_99");
    b.signal("host_99", SignalKind::DiskLatency, 30.0, 200.0);
    b.signal("host_3", SignalKind::Thermal, 0.0, 200.0); // a host whose task ran normally
    let r = run(&b);
    let top = r.top().unwrap();
    assert_eq!(top.kind, CauseKind::FailingDisk, "{:#?}", r.causes);
    assert_eq!(top.hosts, vec!["host_99".to_owned()]);
    assert_eq!(top.cost_ns, 56 * S);
    assert!(top.action.contains("drain host_99"));
    assert!(
        top.evidence
            .iter()
            .any(|e| e.description.contains("symptom")),
        "the straggler is merged in as evidence"
    );
    assert!(
        !r.causes.iter().any(|c| c.kind == CauseKind::Straggler),
        "{:#?}",
        kinds(&r)
    );
    // The thermal signal on host_3 touched a task that ran normally.
    let thermal = r
        .causes
        .iter()
        .find(|c| c.kind == CauseKind::ThermalThrottling)
        .unwrap();
    assert!(!thermal.reported && thermal.cost_ns == 0);
    assert_eq!(r.reported().count(), 1);
}

#[test]
fn a_task_inside_its_stages_spread_under_throttling_is_still_explained() {
    let mut b = base();
    // 1.2x the stage's median duration and rate: inside its spread.
    b.task(1, 8, "host_77", 43.0, 29.0, 540.0);
    assert!(run(&b).top().is_none());
    // Throttled for all of its run: reported, just over the cut.
    let mut under = b.clone();
    under.signal("host_77", SignalKind::Thermal, 40.0, 100.0);
    let r = run(&under);
    let top = r.top().expect("the thermal cause is reported");
    assert_eq!(top.kind, CauseKind::ThermalThrottling, "{:#?}", r.causes);
    assert!((0.5..0.6).contains(&top.confidence), "{}", top.confidence);
    // Throttled for a few seconds of it: not explained.
    let mut brief = b.clone();
    brief.signal("host_77", SignalKind::Thermal, 60.0, 65.0);
    assert!(run(&brief).top().is_none(), "{:#?}", run(&brief).causes);
    // A NIC signal does not slow a task that succeeds.
    let mut nic = b;
    nic.signal("host_77", SignalKind::NicErrors, 40.0, 100.0);
    assert!(run(&nic).top().is_none(), "{:#?}", run(&nic).causes);
}

#[test]
fn a_host_slowing_other_jobs_too_is_a_slow_host() {
    let mut b = base();
    b.task(1, 8, "host_99", 43.0, 43.0, 540.0); // 1.8x: under the straggler bar
    assert!(run(&b).top().is_none());
    let history = |tasks: u64, mean_slowdown: f64| crate::model::HostHistory {
        hostname: "host_99".into(),
        tasks,
        mean_slowdown,
        start_ns: 0,
        end_ns: 100 * S,
        sql: "SELECT 1".into(),
    };
    // Its other jobs' tasks ran 2.4x their stages: the host.
    let mut slow = b.clone();
    slow.input.host_history = vec![history(6, 2.4)];
    let r = run(&slow);
    let top = r.top().expect("a slow host");
    assert_eq!(top.kind, CauseKind::SlowHost, "{:#?}", r.causes);
    assert_eq!(top.hosts, vec!["host_99".to_owned()]);
    assert!(top.confidence >= 0.8, "{}", top.confidence);
    assert!(
        top.summary.contains("6 tasks of other jobs"),
        "{}",
        top.summary
    );
    assert_eq!(top.evidence[1].sql.as_deref(), Some("SELECT 1"));
    // Normal elsewhere, or too few tasks to say: nothing.
    for h in [history(6, 1.1), history(2, 3.0)] {
        let mut b = b.clone();
        b.input.host_history = vec![h];
        assert!(run(&b).top().is_none(), "{:#?}", run(&b).causes);
    }
}

#[test]
fn thermal_throttling_is_blamed_below_the_straggler_bar() {
    let mut b = base();
    b.task(1, 8, "host_77", 43.0, 47.0, 540.0); // 1.9x: not a straggler alone
    assert!(run(&b).top().is_none());
    b.signal("host_77", SignalKind::Thermal, 40.0, 100.0);
    let r = run(&b);
    let top = r.top().unwrap();
    assert_eq!(top.kind, CauseKind::ThermalThrottling, "{:#?}", r.causes);
    assert_eq!(top.cost_ns, 23 * S);
}

#[test]
fn a_nic_signal_does_not_explain_a_task_within_the_noise() {
    let mut b = base();
    b.task(1, 8, "host_77", 43.0, 35.0, 540.0); // 1.4x: healthy variance
    b.signal("host_77", SignalKind::NicErrors, 40.0, 100.0);
    assert!(run(&b).top().is_none(), "{:#?}", run(&b).causes);
    b.signal("host_77", SignalKind::Thermal, 40.0, 100.0);
    assert_eq!(run(&b).top().unwrap().kind, CauseKind::ThermalThrottling);
}

fn fetch_failed() -> JobBuilder {
    let mut b = base();
    b.failed(
        1,
        8,
        "host_5",
        43.0,
        12.0,
        "FetchFailed: failed to fetch a shuffle block from host_77: Connection reset by peer",
    );
    b.task(1, 8, "host_6", 58.0, 22.0, 540.0); // 58-80: the critical task
    b
}

#[test]
fn fetch_failed_blames_the_source_host() {
    let r = run(&fetch_failed());
    let top = r.top().unwrap();
    assert_eq!(top.kind, CauseKind::HostErrors, "{:#?}", r.causes);
    assert_eq!(
        top.hosts,
        vec!["host_77".to_owned()],
        "the source, not the reader host_5"
    );
    assert_eq!(top.cost_ns, 15 * S, "12 s failed + 3 s until the retry");
    assert!(top.action.contains("host_77"));
}

#[test]
fn fetch_failed_with_nic_errors_on_the_source_is_a_flapping_nic() {
    let mut b = fetch_failed();
    b.signal("host_77", SignalKind::NicErrors, 0.0, 300.0);
    let r = run(&b);
    let top = r.top().unwrap();
    assert_eq!(top.kind, CauseKind::FlappingNic, "{:#?}", r.causes);
    assert_eq!(top.hosts, vec!["host_77".to_owned()]);
    assert!(top.confidence >= 0.95);
    assert_eq!(top.cost_ns, 15 * S);
    assert!(!r.causes.iter().any(|c| c.kind == CauseKind::HostErrors));
}

#[test]
fn a_lost_executor_with_a_heartbeat_gap_is_a_lost_host() {
    let mut b = base();
    b.failed(
        1,
        8,
        "host_9",
        43.0,
        40.0,
        "ExecutorLostFailure: executor on host_9 exited: heartbeat timed out",
    );
    b.task(1, 8, "host_8", 85.0, 20.0, 540.0);
    b.signal("host_9", SignalKind::HeartbeatGap, 53.0, 400.0);
    let r = run(&b);
    let top = r.top().unwrap();
    assert_eq!(top.kind, CauseKind::HostLost, "{:#?}", r.causes);
    assert_eq!(top.cost_ns, 42 * S);
    assert_eq!(r.reported().count(), 1, "{:#?}", kinds(&r));
}

#[test]
fn a_task_out_of_attempts_fails_the_job_and_costs_all_of_it() {
    let mut b = base();
    for (i, start) in [43.0, 60.0, 77.0, 94.0].into_iter().enumerate() {
        b.failed(1, 8, &format!("host_{}", 60 + i), start, 15.0, OOM);
    }
    let r = run(&b);
    assert_eq!(r.status, Status::Failed);
    let top = r.top().unwrap();
    assert_eq!(top.kind, CauseKind::TaskFailures);
    assert_eq!(top.cost_ns, r.wall_ns);
    assert!(top.action.contains("memory"));
    // The path ends in the failed task's last attempt.
    let last = r
        .critical_path
        .iter()
        .rev()
        .find(|s| s.kind == SegmentKind::FailedAttempt)
        .unwrap();
    assert_eq!((last.task_id, last.attempt), (Some(8), Some(3)));
}

#[test]
fn queueing_delay_against_the_baseline() {
    let mut b = base();
    b.input.run.as_mut().unwrap().submit_ns = Some(secs(10.0 - 20.0 * 60.0));
    let r = run(&b);
    let top = r.top().unwrap();
    assert_eq!(top.kind, CauseKind::QueueingDelay);
    assert_eq!(
        top.cost_ns,
        15 * 60 * S,
        "20 min against the 5 min baseline"
    );
    assert_eq!(r.queue_wait_ns, Some(20 * 60 * S));
    let loose = Config {
        queue_baseline_ns: 30 * 60 * S,
        ..Config::default()
    };
    assert!(diagnose(&b.build(), &loose).unwrap().top().is_none());
}

#[test]
fn a_running_job_is_diagnosed_so_far_and_flagged() {
    let mut input = base().build();
    input.run = None;
    input.stages.retain(|s| s.stage_id == 0);
    input.attempts.retain(|a| a.stage_id == 0 || a.task_id < 3);
    input.signals = None;
    let r = diagnose(&input, &Config::default()).unwrap();
    assert!(r.running);
    assert_eq!(r.status, Status::Running);
    assert!(
        r.notes.iter().any(|n| n.contains("still running")),
        "{:?}",
        r.notes
    );
    assert!(r.notes.iter().any(|n| n.contains("no hardware telemetry")));
    let s1 = r.stages.iter().find(|s| s.stage_id == 1).unwrap();
    assert!(!s1.reported && s1.end_ns.is_none() && s1.status == Status::Running);
    assert_eq!(r.submit_ns, None);
    assert_eq!(r.start_ns, 11 * S, "the first stage's start");
    assert_eq!(r.wall_ns, r.end_ns - r.start_ns);
    assert_eq!(
        r.critical_path.iter().map(|s| s.duration_ns).sum::<i64>(),
        r.wall_ns
    );

    // With a clock, the wall time runs to now.
    let now = Config {
        now_ns: Some(500 * S),
        ..Config::default()
    };
    assert_eq!(diagnose(&input, &now).unwrap().end_ns, 500 * S);
}

#[test]
fn a_cycle_is_an_error_not_a_panic() {
    let mut input = base().build();
    input.stages[0].parents = vec![1];
    assert!(matches!(
        diagnose(&input, &Config::default()),
        Err(Error::Cycle { .. })
    ));
    let bad = Config {
        confidence_cut: 1.5,
        ..Config::default()
    };
    assert!(matches!(
        diagnose(&base().build(), &bad),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn the_report_round_trips_as_json() {
    let r = run(&fetch_failed());
    let json = r.to_json();
    assert_eq!(json["job_id"], "job_000042");
    assert_eq!(json["status"], "SUCCEEDED");
    assert_eq!(json["causes"][0]["kind"], "host_errors");
    assert_eq!(json["critical_path"][0]["kind"], "queue_wait");
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);
}

#[test]
fn a_host_slow_on_every_task_is_a_slow_host() {
    // host_99 runs one task in each stage, each 2.1x its stage's median:
    // under the straggler cut alone, a pattern together.
    let mut b = JobBuilder::new("job_1");
    for (stage, start) in [(0u32, 11.0), (1, 64.0)] {
        b.stage(stage, if stage == 0 { &[] } else { &[0] }, start);
        for t in 0..8 {
            let host = format!("host_{}", 10 * stage + t);
            b.task(
                stage,
                t,
                &host,
                start + 1.0,
                20.0 + f64::from(t),
                500.0 + 10.0 * f64::from(t),
            );
        }
        b.task(stage, 8, "host_99", start + 1.0, 50.0, 540.0);
    }
    let r = run(&b);
    let top = r.top().unwrap();
    assert_eq!(top.kind, CauseKind::SlowHost, "{:#?}", r.causes);
    assert_eq!(top.hosts, vec!["host_99".to_owned()]);
    assert_eq!(top.attempts.len(), 2);
    assert_eq!(
        top.cost_ns,
        2 * 26 * S,
        "both are critical: 50 s vs the median 24 s"
    );
    assert!(
        r.causes
            .iter()
            .filter(|c| c.kind == CauseKind::Straggler)
            .all(|c| !c.reported)
    );
}

#[test]
fn io_errors_on_a_failing_disk_are_the_disk() {
    let mut b = base();
    b.failed(
        1,
        8,
        "host_12",
        43.0,
        9.0,
        "java.io.IOException: Input/output error reading a local block on host_12",
    );
    b.task(1, 8, "host_40", 55.0, 21.0, 540.0); // 55-76: the critical task
    b.signal("host_12", SignalKind::DiskSmart, 0.0, 1000.0);
    let r = run(&b);
    let top = r.top().unwrap();
    assert_eq!(top.kind, CauseKind::FailingDisk, "{:#?}", r.causes);
    assert_eq!(top.hosts, vec!["host_12".to_owned()]);
    assert!(top.confidence >= 0.95);
    assert_eq!(top.cost_ns, 12 * S, "9 s failed + 3 s until the retry");
    assert_eq!(r.reported().count(), 1, "{:#?}", kinds(&r));
}

/// The issue's latency target is one job of 10,000 tasks in <= 1 s; this
/// checks the pure core stays far under it (SQL fetching is extra).
#[test]
fn ten_thousand_tasks() {
    let mut b = JobBuilder::new("job_big");
    for s in 0..5u32 {
        b.stage(
            s,
            if s == 0 { &[] } else { &[0] },
            11.0 + 200.0 * f64::from(s),
        );
    }
    let mut input = b.build();
    for i in 0..10_000u32 {
        let stage = i % 5;
        let start = secs(12.0 + 200.0 * f64::from(stage));
        input.attempts.push(crate::Attempt {
            stage_id: stage,
            task_id: i,
            attempt: 0,
            hostname: format!("host_{}", i % 3000),
            status: Status::Succeeded,
            start_ns: start,
            end_ns: start + secs(20.0 + f64::from(i % 97) / 10.0),
            bytes_read: 500 * MIB + i64::from(i % 89) * MIB,
            shuffle_read_bytes: 0,
            records_read: 1000,
            error: None,
        });
    }
    for s in &mut input.stages {
        s.end_ns = Some(s.start_ns.unwrap() + secs(40.0));
    }
    input.run.as_mut().unwrap().end_ns = Some(secs(11.0 + 1000.0));
    input.signals = Some(
        (0..100)
            .map(|h| crate::HostSignal {
                hostname: format!("host_{h}"),
                kind: SignalKind::DiskLatency,
                start_ns: 0,
                end_ns: secs(2000.0),
                detail: String::new(),
                sql: String::new(),
            })
            .collect(),
    );
    // Its time is measured in benches (diagnosis_eval --big-job), not here.
    let r = diagnose(&input, &Config::default()).unwrap();
    assert_eq!(r.stages.iter().map(|s| s.tasks).sum::<usize>(), 10_000);
}

/// The fleet view counts the hosts that hardware or host symptoms blame,
/// not the host that merely ran a skewed task.
#[test]
fn host_impact_counts_the_hosts_causes_blame() {
    let mut disk = straggler_on("host_99");
    disk.signal("host_99", SignalKind::DiskLatency, 30.0, 200.0);
    let mut disk = disk.build();
    disk.job_id = "job_disk".into();
    let mut slow = straggler_on("host_99").build();
    slow.job_id = "job_slow".into();
    let mut skew = base();
    let mib = 15.0 * 540.0;
    skew.task(1, 8, "host_18", 43.0, 20.0 + mib * MIB as f64 / 25e6, mib);
    let skew = skew.build();
    let healthy = base().build();
    let reports: Vec<Report> =
        crate::bulk::diagnose_all(&[disk, slow, skew, healthy], &Config::default())
            .into_iter()
            .map(|(_, r)| r.unwrap())
            .collect();
    assert_eq!(reports[2].top().unwrap().kind, CauseKind::DataSkew);
    let impact = crate::bulk::host_impact(&reports);
    assert_eq!(impact.len(), 1, "{impact:#?}");
    let h = &impact[0];
    assert_eq!((h.hostname.as_str(), h.jobs), ("host_99", 2));
    assert_eq!(h.cost_ns, 2 * 56 * S);
    assert_eq!(
        h.causes.keys().copied().collect::<Vec<_>>(),
        [CauseKind::Straggler, CauseKind::FailingDisk]
    );
    assert_eq!(h.top_cause(), Some(CauseKind::Straggler));
    assert_eq!(h.worst_cost_ns, 56 * S);
}

#[test]
fn a_journal_pass_is_line_protocol_that_reads_back() {
    use fleetlake_ingest::line_protocol::{FieldValue, parse_lines};
    let host = r#"host 9,"x"=\y"#;
    let mut b = straggler_on(host);
    b.signal(host, SignalKind::DiskLatency, 30.0, 200.0);
    let mut r = run(&b);
    r.job_id = r#"job "a", b=c"#.into();
    let mut unstorable = r.clone();
    unstorable.job_id = "job\\".into();
    let reports = vec![
        (r.job_id.clone(), Ok(r.clone())),
        (unstorable.job_id.clone(), Ok(unstorable)),
        (
            "job_bad".into(),
            Err(Error::Empty {
                job_id: "job_bad".into(),
            }),
        ),
    ];
    let body = crate::journal::pass_lines(&reports, 5, 10_000_000_000_000);
    let lines: Vec<_> = parse_lines(&body)
        .map(|l| l.parsed.unwrap_or_else(|e| panic!("{e:?} in\n{body}")))
        .collect();
    let of = |m: &str| {
        lines
            .iter()
            .filter(|l| l.measurement == m)
            .collect::<Vec<_>>()
    };
    let tag = |l: &fleetlake_ingest::line_protocol::ParsedLine<'_>, k: &str| {
        l.tags.iter().find(|t| t.0 == k).map(|t| t.1.to_string())
    };
    let field = |l: &fleetlake_ingest::line_protocol::ParsedLine<'_>, k: &str| {
        l.fields
            .iter()
            .find(|f| f.0 == k)
            .map(|f| format!("{:?}", f.1))
    };
    // The one storable job: its row, and its harm to the host (the disk).
    let jobs = of("diagnosis_jobs");
    assert_eq!(jobs.len(), 1, "{body}");
    assert_eq!(tag(jobs[0], "job_id").as_deref(), Some(r.job_id.as_str()));
    assert_eq!(jobs[0].timestamp, Some(r.end_ns));
    assert_eq!(
        field(jobs[0], "top_cause"),
        Some(format!("{:?}", FieldValue::Str("failing_disk".into())))
    );
    let harm = of("diagnosis_host_harm");
    assert_eq!(harm.len(), 1, "{body}");
    assert_eq!(tag(harm[0], "hostname").as_deref(), Some(host));
    assert_eq!(
        field(harm[0], "cost_ns"),
        Some(format!("{:?}", FieldValue::I64(r.top().unwrap().cost_ns)))
    );
    let passes = of("diagnosis_passes");
    assert_eq!(passes.len(), 1);
    assert_eq!(passes[0].timestamp, Some(10_000_000_000_000));
    assert_eq!(
        field(passes[0], "from_ns"),
        Some(format!("{:?}", FieldValue::I64(5)))
    );
    assert_eq!(
        field(passes[0], "jobs"),
        Some(format!("{:?}", FieldValue::I64(1)))
    );
    // The fleet view of the harms equals the one of the report.
    assert_eq!(
        crate::bulk::fold_impact(crate::bulk::harms(&r)),
        crate::bulk::host_impact([&r])
    );
}
