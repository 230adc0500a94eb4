//! The fleet's output read back: schema, order, and faults against their
//! ground truth through an independent detector built on [`thresholds`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::*;
use crate::test_util::{Row, generate_all, parse};
use crate::time::{DAY_NS, HOUR_NS, MINUTE_NS, SECOND_NS, days_from_civil};

fn config(hosts: u64, hours: i64, seed: u64) -> SimConfig {
    let start = days_from_civil(2026, 1, 1) * DAY_NS;
    SimConfig::new(hosts, start, start + hours * HOUR_NS, 10 * SECOND_NS, seed).unwrap()
}

/// `faults` faults of the default kinds.
fn options(faults: u32) -> FleetOptions {
    FleetOptions {
        faults,
        ..Default::default()
    }
}

fn run(config: &SimConfig, faults: u32, chunk: usize) -> (Vec<u8>, GroundTruth) {
    run_kinds(config, faults, &[], chunk)
}

fn run_kinds(
    config: &SimConfig,
    faults: u32,
    kinds: &[FaultKind],
    chunk: usize,
) -> (Vec<u8>, GroundTruth) {
    let options = FleetOptions {
        faults,
        fault_kinds: kinds.to_vec(),
        ..Default::default()
    };
    let mut fleet = Fleet::new(config, &options).unwrap();
    let out = generate_all(&mut fleet, chunk);
    (out, fleet.ground_truth())
}

/// A signal the detector saw: (kind, host or job), and when.
type Signals = BTreeMap<(FaultKind, String), Vec<i64>>;

/// Flags every crossing of a threshold in `rows`, knowing nothing of the
/// plan.
fn detect(rows: &[Row], config: &SimConfig) -> Signals {
    let mut signals: Signals = BTreeMap::new();
    let mut flag = |kind: FaultKind, who: &str, t: i64| {
        signals.entry((kind, who.to_string())).or_default().push(t);
    };
    let by = |table: &str, device: Option<&str>| {
        let mut series: BTreeMap<(String, String), Vec<&Row>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.table == table) {
            let dev = device
                .map(|d| r.tag(d).unwrap().to_string())
                .unwrap_or_default();
            series
                .entry((r.host().to_string(), dev))
                .or_default()
                .push(r);
        }
        series
    };
    // Rises of a cumulative counter, and bursts within the sliding window.
    let bursts = |series: &[&Row], value: &dyn Fn(&Row) -> i64, burst: i64| -> Vec<i64> {
        let mut hits = Vec::new();
        let mut lo = 0;
        for hi in 0..series.len() {
            while series[hi].time - series[lo].time > thresholds::WINDOW_NS {
                lo += 1;
            }
            if value(series[hi]) - value(series[lo]) >= burst {
                hits.push(series[hi].time);
            }
        }
        hits
    };

    for ((host, _), s) in by("smart", Some("disk")) {
        for w in s.windows(2) {
            for f in ["reallocated_sector_ct", "current_pending_sector"] {
                if w[1].int(f) > w[0].int(f) {
                    flag(FaultKind::FailingDisk, &host, w[1].time);
                }
            }
        }
    }
    for ((host, _), s) in by("diskio_hw", Some("disk")) {
        let mut run_start = None;
        for r in &s {
            let busy = r.num("util_pct") > thresholds::DISK_BUSY_UTIL_PCT
                && r.num("iops") < thresholds::DISK_BUSY_MAX_IOPS;
            match (busy, run_start) {
                (true, None) => run_start = Some(r.time),
                (true, Some(t0)) if r.time - t0 > thresholds::DISK_BUSY_MIN_NS => {
                    flag(FaultKind::FailingDisk, &host, r.time)
                }
                (false, _) => run_start = None,
                _ => {}
            }
        }
    }
    for ((host, _), s) in by("edac", Some("dimm")) {
        for t in bursts(&s, &|r| r.int("ce_count"), thresholds::EDAC_CE_BURST) {
            flag(FaultKind::BadDimm, &host, t);
        }
        for r in s.iter().filter(|r| r.int("ue_count") > 0) {
            flag(FaultKind::BadDimm, &host, r.time);
        }
    }
    for r in rows
        .iter()
        .filter(|r| r.table == "mce" && !r.boolean("corrected"))
    {
        flag(FaultKind::BadDimm, r.host(), r.time);
    }
    let mut last_beat: HashMap<&str, i64> = HashMap::new();
    for r in rows.iter().filter(|r| r.table == "heartbeat") {
        last_beat.insert(r.host(), r.time);
    }
    for h in 0..config.hosts {
        let host = format!("host_{h}");
        let last = last_beat
            .get(host.as_str())
            .copied()
            .unwrap_or(config.start_ns);
        if config.end_ns - last > thresholds::HEARTBEAT_GAP_NS {
            flag(FaultKind::BadDimm, &host, last);
        }
    }
    for ((host, _), s) in by("cpu_thermal", None) {
        for w in s.windows(2) {
            if w[1].int("throttle_count") > w[0].int("throttle_count") {
                flag(FaultKind::ThermalThrottling, &host, w[1].time);
            }
        }
        for r in &s {
            if (r.int("freq_mhz") as f64)
                < thresholds::THROTTLED_FREQ_RATIO * r.int("base_mhz") as f64
            {
                flag(FaultKind::ThermalThrottling, &host, r.time);
            }
        }
    }
    for ((host, _), s) in by("nic", Some("interface")) {
        for w in s.windows(2) {
            if w[1].int("carrier_changes") > w[0].int("carrier_changes") {
                flag(FaultKind::FlappingNic, &host, w[1].time);
            }
        }
        let errors = |r: &Row| r.int("rx_errors") + r.int("tx_errors");
        let drops = |r: &Row| r.int("rx_dropped") + r.int("tx_dropped");
        for t in bursts(&s, &errors, thresholds::NIC_ERRORS_BURST)
            .into_iter()
            .chain(bursts(&s, &drops, thresholds::NIC_DROPS_BURST))
        {
            flag(FaultKind::FlappingNic, &host, t);
        }
    }
    for r in rows.iter().filter(|r| r.table == "job_tasks") {
        let Some(e) = r.string("error") else { continue };
        let named = e
            .split([' ', ':'])
            .find(|w| w.starts_with("host_"))
            .map(str::to_string);
        let kind = if e.starts_with("java.io.IOException") {
            FaultKind::FailingDisk
        } else if e.starts_with("ExecutorLostFailure") && e.contains("exited with code") {
            FaultKind::FlakyHost
        } else if e.starts_with("ExecutorLostFailure") {
            FaultKind::BadDimm
        } else if e.starts_with("FetchFailed") {
            FaultKind::FlappingNic
        } else {
            assert!(!thresholds::HOST_ERRORS.iter().any(|p| e.starts_with(p)));
            continue;
        };
        // When the attempt started: a failure is reported later, and may be
        // reported after the window closed.
        flag(
            kind,
            &named.expect("a host-attributed error names the host"),
            r.int("start_ns"),
        );
    }
    // Skew: per stage, over successful attempts.
    let mut stages: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.table == "job_tasks" && r.string("status") == Some("SUCCEEDED"))
    {
        stages
            .entry((
                r.tag("job_id").unwrap().into(),
                r.tag("stage_id").unwrap().into(),
            ))
            .or_default()
            .push(r.int("bytes_read"));
    }
    for ((job, _), mut bytes) in stages {
        if bytes.len() < 4 {
            continue;
        }
        bytes.sort_unstable();
        let median = bytes[bytes.len() / 2] as f64;
        if *bytes.last().unwrap() as f64 >= thresholds::SKEW_RATIO * median {
            flag(FaultKind::DataSkew, &job, 0);
        }
    }
    signals
}

#[test]
fn deterministic_whatever_the_chunks() {
    let c = config(12, 2, 7);
    let (a, truth_a) = run(&c, 5, 1);
    let (b, truth_b) = run(&c, 5, 333);
    let (d, _) = run(&c, 5, 100_000);
    assert!(a == b && a == d, "chunking changed the output");
    assert_eq!(truth_a.to_json(), truth_b.to_json());
    let (other, _) = run(&config(12, 2, 8), 5, 333);
    assert_ne!(a, other);
}

#[test]
fn schema_order_and_ranges() {
    let c = config(25, 3, 3);
    let (out, _) = run(&c, 0, 4096);
    let rows = parse(&out);
    let tables: BTreeSet<&str> = rows.iter().map(|r| r.table.as_str()).collect();
    let expected: BTreeSet<&str> = HW_TABLES.iter().chain(&JOB_TABLES).copied().collect();
    // A healthy fleet may have no machine-check event in 3 hours.
    assert!(
        tables.is_subset(&expected) && expected.len() - tables.len() <= 1,
        "{tables:?}"
    );

    // Epoch-major: times never go back across epochs, and each row falls in
    // the epoch it is emitted with.
    let mut epoch_of_prev = 0;
    for r in &rows {
        assert!(r.time >= c.start_ns && r.time < c.end_ns, "{r:?}");
        let epoch = (r.time - c.start_ns) / c.interval_ns;
        assert!(
            epoch >= epoch_of_prev,
            "row of epoch {epoch} after epoch {epoch_of_prev}"
        );
        epoch_of_prev = epoch;
    }
    let beats = rows.iter().filter(|r| r.table == "heartbeat").count() as u64;
    assert_eq!(beats, c.hosts * c.epochs(), "every host beats every epoch");
    let smart_times: BTreeSet<i64> = rows
        .iter()
        .filter(|r| r.table == "smart")
        .map(|r| r.time)
        .collect();
    assert_eq!(smart_times.len() as u64, c.epochs() / 6);

    for r in &rows {
        let job_level = r.table == "job_stages" || r.table == "job_runs";
        assert_eq!(r.tag("hostname").is_some(), !job_level, "{r:?}");
        match r.table.as_str() {
            "cpu_thermal" => {
                assert!((0.0..=100.0).contains(&r.num("util_pct")));
                assert!((25.0..=100.0).contains(&r.num("temp_c")));
                assert!(r.int("freq_mhz") > 0);
            }
            "diskio_hw" => {
                assert!((0.0..=100.0).contains(&r.num("util_pct")));
                assert!(r.num("iops") >= 0.0 && r.num("latency_ms") > 0.0);
                assert!(DISKS.contains(&r.tag("disk").unwrap()));
            }
            "edac" => assert!(DIMMS.contains(&r.tag("dimm").unwrap())),
            "nic" => assert!(r.boolean("link_up")),
            "job_tasks" => {
                let (s, e) = (r.int("start_ns"), r.int("end_ns"));
                assert!(s < e && e == r.time);
                assert_eq!(r.int("duration_ms"), (e - s) / 1_000_000);
                let status = r.string("status").unwrap();
                assert_eq!(status == "FAILED", r.string("error").is_some());
            }
            "job_stages" => {
                let stage: u32 = r.tag("stage_id").unwrap().parse().unwrap();
                let parents = r.string("parents").unwrap();
                for p in parents.split(',').filter(|p| !p.is_empty()) {
                    assert!(p.parse::<u32>().unwrap() < stage, "DAG edges point back");
                }
                assert!(
                    r.int("attempts") >= r.int("tasks") || r.string("status") == Some("FAILED")
                );
            }
            "job_runs" => {
                assert!(r.int("submit_ns") <= r.int("start_ns"));
                assert!(r.int("start_ns") <= r.int("end_ns") && r.int("end_ns") == r.time);
            }
            _ => {}
        }
    }
    // Jobs: every reported task belongs to a host of the fleet; runs and
    // their tasks agree.
    let runs: BTreeMap<&str, &Row> = rows
        .iter()
        .filter(|r| r.table == "job_runs")
        .map(|r| (r.tag("job_id").unwrap(), r))
        .collect();
    assert!(runs.len() >= 8, "{} jobs in 3 h on 25 hosts", runs.len());
    let mut attempts: BTreeMap<&str, i64> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.table == "job_tasks") {
        let h: u64 = r.host().strip_prefix("host_").unwrap().parse().unwrap();
        assert!(h < c.hosts);
        *attempts.entry(r.tag("job_id").unwrap()).or_default() += 1;
    }
    for (job, run) in &runs {
        assert_eq!(
            attempts.get(job).copied().unwrap_or(0),
            run.int("attempts"),
            "{job}"
        );
    }
    let tasks = attempts.values().sum::<i64>() as f64;
    let per_host_hour = tasks / (c.hosts as f64 * 3.0);
    assert!(
        (2.0..20.0).contains(&per_host_hour),
        "{per_host_hour} task attempts per host-hour"
    );
}

#[test]
fn a_healthy_fleet_crosses_no_threshold() {
    for seed in [1, 2] {
        let c = config(40, 6, seed);
        let (out, truth) = run(&c, 0, 10_000);
        assert!(truth.faults.is_empty());
        let signals = detect(&parse(&out), &c);
        assert!(signals.is_empty(), "seed {seed}: {signals:?}");
    }
}

#[test]
fn faults_match_their_ground_truth() {
    let c = config(30, 8, 11);
    let (out, truth) = run(&c, 10, 10_000);
    let rows = parse(&out);
    assert_eq!(truth.faults.len(), 10, "{}", truth.to_json());

    // What the detector sees is exactly what was injected.
    let signals = detect(&rows, &c);
    let seen: BTreeSet<(FaultKind, String)> = signals.keys().cloned().collect();
    let injected: BTreeSet<(FaultKind, String)> = truth
        .faults
        .iter()
        .map(|f| (f.kind, f.host.clone().or(f.job.clone()).unwrap()))
        .collect();
    assert_eq!(seen, injected, "{}", truth.to_json());

    // And when: inside the window (a dead host's last heartbeat is its end;
    // tasks lost with it fail a little after).
    for f in &truth.faults {
        let who = f.host.clone().or(f.job.clone()).unwrap();
        if f.kind == FaultKind::DataSkew {
            continue;
        }
        // A sliding-window detector keeps seeing a burst until the window
        // has moved past it.
        for &t in &signals[&(f.kind, who.clone())] {
            assert!(
                t >= f.start_ns && t <= f.end_ns + thresholds::WINDOW_NS,
                "{:?} on {who} signalled at {t}, window {}..{}",
                f.kind,
                f.start,
                f.end
            );
        }
    }

    let (mut io_errors, mut hot_hosts_checked) = (0, 0);
    for f in &truth.faults {
        let host = f.host.as_deref();
        let in_window = |r: &&Row| r.time >= f.start_ns && r.time < f.end_ns;
        let of_host = |r: &&Row| Some(r.host()) == host;
        match f.kind {
            FaultKind::FailingDisk => {
                let disk = f.device.as_deref().unwrap();
                let smart: Vec<&Row> = rows
                    .iter()
                    .filter(|r| r.table == "smart" && of_host(r) && r.tag("disk") == Some(disk))
                    .collect();
                let before = smart.iter().rfind(|r| r.time < f.start_ns).unwrap();
                let last = smart.iter().rfind(|r| in_window(r)).unwrap();
                assert!(
                    last.int("reallocated_sector_ct") > before.int("reallocated_sector_ct") + 10
                );
                assert!(last.int("current_pending_sector") > before.int("current_pending_sector"));
                // Tasks on the host in the window: slow, then I/O errors —
                // every attempt started in the last 60 % of the window.
                let io_from = f.start_ns + (f.end_ns - f.start_ns) * 2 / 5;
                for r in rows.iter().filter(|r| r.table == "job_tasks" && of_host(r)) {
                    let start = r.int("start_ns");
                    let io_error = r.string("error").is_some_and(|e| e.starts_with("java.io"));
                    assert_eq!(io_error, start >= io_from && start < f.end_ns, "{r:?}");
                    io_errors += usize::from(io_error);
                }
            }
            FaultKind::BadDimm => {
                let last_row = rows
                    .iter()
                    .filter(|r| of_host(r) && !r.table.starts_with("job_"))
                    .map(|r| r.time)
                    .max()
                    .unwrap();
                assert_eq!(
                    last_row, f.end_ns,
                    "the host reports until its uncorrectable error"
                );
                let ue = rows
                    .iter()
                    .filter(|r| r.table == "edac" && of_host(r) && r.int("ue_count") > 0)
                    .map(|r| r.time)
                    .min();
                assert_eq!(ue, Some(f.end_ns));
                assert!(rows.iter().any(|r| r.table == "mce"
                    && of_host(&r)
                    && r.time < f.end_ns
                    && r.string("kind") == Some("memory")));
            }
            FaultKind::ThermalThrottling => {
                // Tasks that ran on the hot host read their bytes more slowly.
                let rate =
                    |r: &Row| r.int("bytes_read") as f64 / r.int("duration_ms").max(1) as f64;
                let mut all: Vec<f64> = rows
                    .iter()
                    .filter(|r| r.table == "job_tasks" && r.string("status") == Some("SUCCEEDED"))
                    .map(rate)
                    .collect();
                all.sort_by(f64::total_cmp);
                let mut hot: Vec<f64> = rows
                    .iter()
                    .filter(|r| {
                        r.table == "job_tasks"
                            && of_host(r)
                            && r.string("status") == Some("SUCCEEDED")
                    })
                    .filter(|r| r.int("start_ns") >= f.start_ns && r.int("end_ns") < f.end_ns)
                    .map(rate)
                    .collect();
                hot.sort_by(f64::total_cmp);
                if hot.len() >= 3 {
                    let (m_all, m_hot) = (all[all.len() / 2], hot[hot.len() / 2]);
                    assert!(m_hot < 0.75 * m_all, "hot {m_hot} vs all {m_all}");
                    hot_hosts_checked += 1;
                }
            }
            FaultKind::FlappingNic => {
                let fetch_failures = rows
                    .iter()
                    .filter(|r| r.table == "job_tasks")
                    .filter(|r| {
                        r.string("error")
                            .is_some_and(|e| e.starts_with("FetchFailed"))
                    })
                    .count();
                assert!(fetch_failures > 0);
                assert!(
                    rows.iter()
                        .filter(|r| r.table == "nic" && of_host(r))
                        .any(|r| !r.boolean("link_up"))
                );
            }
            FaultKind::DataSkew => {
                let job = f.job.as_deref().unwrap();
                let (stage, task) = (f.stage.unwrap().to_string(), f.task.unwrap().to_string());
                let skewed = rows
                    .iter()
                    .filter(|r| r.table == "job_tasks" && r.tag("job_id") == Some(job))
                    .filter(|r| {
                        r.tag("stage_id") == Some(&stage) && r.tag("task_id") == Some(&task)
                    })
                    .find(|r| r.string("status") == Some("SUCCEEDED"))
                    .expect("the skewed task is reported");
                assert_eq!(
                    (skewed.int("start_ns"), skewed.int("end_ns")),
                    (f.start_ns, f.end_ns)
                );
                assert_eq!(f.affected_jobs, vec![job.to_string()]);
            }
            // Opt-in kinds: opt_in_faults_match_their_ground_truth.
            FaultKind::StragglerHost | FaultKind::FlakyHost | FaultKind::Queueing => {
                unreachable!("not among the default kinds")
            }
        }
        // Affected jobs had reported tasks on (or fetching from) the host.
        if let Some(h) = host {
            // A bad DIMM affects only the jobs running when the host dies,
            // and there may be none.
            let may_be_empty = matches!(f.kind, FaultKind::FlappingNic | FaultKind::BadDimm);
            assert!(!f.affected_jobs.is_empty() || may_be_empty, "{f:?}");
            for job in &f.affected_jobs {
                assert!(
                    rows.iter().any(|r| r.table == "job_tasks"
                        && r.tag("job_id") == Some(job)
                        && (r.host() == h
                            || r.string("error")
                                .is_some_and(|e| e.contains(&format!("{h}:"))))),
                    "{job} not on {h}"
                );
            }
            // Harmed jobs: an attempt started on the host inside the window
            // (slowed or failed there), or failed naming the host; every
            // such attempt's job is harmed, unless a shuffle fetch from
            // another host failed it first.
            let names = |e: &str| {
                e.ends_with(h) || e.contains(&format!("{h} ")) || e.contains(&format!("{h}:"))
            };
            let started_here = |r: &&Row| {
                r.table == "job_tasks"
                    && r.host() == h
                    && (f.start_ns..f.end_ns).contains(&r.int("start_ns"))
            };
            let slows = matches!(
                f.kind,
                FaultKind::FailingDisk | FaultKind::ThermalThrottling
            );
            let mut harmed = BTreeSet::new();
            for r in rows.iter().filter(|r| r.table == "job_tasks") {
                let error = r.string("error");
                let by_host_error = error.is_some_and(|e| {
                    names(e) && thresholds::HOST_ERRORS.iter().any(|p| e.starts_with(p))
                });
                let slowed = slows
                    && started_here(&r)
                    && !error.is_some_and(|e| e.starts_with("FetchFailed"));
                if by_host_error || slowed {
                    harmed.insert(r.tag("job_id").unwrap().to_string());
                }
            }
            let truth_harmed: BTreeSet<String> = f.harmed_jobs.iter().cloned().collect();
            assert_eq!(truth_harmed, harmed, "{:?} on {h}", f.kind);
            assert!(
                f.harmed_jobs.iter().all(|j| f.affected_jobs.contains(j)),
                "{f:?}"
            );
        } else {
            assert_eq!(f.harmed_jobs, f.affected_jobs);
        }
    }
    assert!(io_errors > 0, "no task hit a failing disk");
    assert!(hot_hosts_checked > 0, "no task ran on a throttled host");
}

#[test]
fn state_stays_bounded() {
    let c = config(60, 48, 5);
    let mut fleet = Fleet::new(&c, &options(5)).unwrap();
    let mut buf = Vec::new();
    let epochs_per_day = (24 * HOUR_NS / c.interval_ns) as u64;
    let (mut first_day_max, mut second_day_max) = (0, 0);
    loop {
        buf.clear();
        if fleet.next_chunk(&mut buf, 5000) == 0 {
            break;
        }
        let bytes = fleet.state_bytes();
        if fleet.epoch < epochs_per_day {
            first_day_max = first_day_max.max(bytes);
        } else {
            second_day_max = second_day_max.max(bytes);
        }
    }
    assert!(first_day_max > 0);
    // Jobs in flight come and go; nothing accumulates with time.
    assert!(
        second_day_max <= first_day_max * 2,
        "state grew from {first_day_max} to {second_day_max} bytes"
    );
}

#[test]
fn config_errors() {
    let short = config(10, 1, 1);
    let short = SimConfig {
        end_ns: short.start_ns + 30 * MINUTE_NS,
        ..short
    };
    assert!(Fleet::new(&short, &options(1)).is_err());
    assert!(Fleet::new(&short, &options(0)).is_ok());
    assert!(Fleet::new(&config(3, 2, 1), &options(5)).is_err());
    assert!(Fleet::new(&config(4, 2, 1), &options(5)).is_ok());
}

/// Every successful attempt's duration over its stage's median duration
/// (stages with at least 3 successful attempts): (host, start_ns, ratio).
fn slowdowns(rows: &[Row]) -> Vec<(String, i64, f64)> {
    let mut stages: BTreeMap<(String, String), Vec<&Row>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.table == "job_tasks" && r.string("status") == Some("SUCCEEDED"))
    {
        stages
            .entry((
                r.tag("job_id").unwrap().into(),
                r.tag("stage_id").unwrap().into(),
            ))
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for tasks in stages.values().filter(|t| t.len() >= 3) {
        let mut d: Vec<i64> = tasks.iter().map(|r| r.int("duration_ms")).collect();
        d.sort_unstable();
        let median = d[d.len() / 2].max(1) as f64;
        for r in tasks {
            out.push((
                r.host().to_string(),
                r.int("start_ns"),
                r.int("duration_ms") as f64 / median,
            ));
        }
    }
    out
}

#[test]
fn opt_in_faults_match_their_ground_truth() {
    let c = config(40, 8, 3);
    let kinds = [
        FaultKind::StragglerHost,
        FaultKind::FlakyHost,
        FaultKind::Queueing,
    ];
    let (out, truth) = run_kinds(&c, 6, &kinds, 10_000);
    let rows = parse(&out);
    assert_eq!(truth.faults.len(), 6, "{}", truth.to_json());
    for k in kinds {
        assert_eq!(truth.faults.iter().filter(|f| f.kind == k).count(), 2);
    }

    // No hardware signal anywhere; the crashes name exactly the flaky hosts.
    let signals = detect(&rows, &c);
    let seen: BTreeSet<(FaultKind, String)> = signals.keys().cloned().collect();
    let flaky: BTreeSet<(FaultKind, String)> = truth
        .faults
        .iter()
        .filter(|f| f.kind == FaultKind::FlakyHost)
        .map(|f| (f.kind, f.host.clone().unwrap()))
        .collect();
    assert_eq!(seen, flaky, "{}", truth.to_json());
    for f in truth
        .faults
        .iter()
        .filter(|f| f.kind == FaultKind::FlakyHost)
    {
        let h = f.host.as_deref().unwrap();
        for &t in &signals[&(f.kind, h.to_string())] {
            assert!((f.start_ns..f.end_ns).contains(&t), "{h} crashed at {t}");
        }
        // Harmed: exactly the jobs with a crash on the host.
        let crashed: BTreeSet<String> = rows
            .iter()
            .filter(|r| {
                r.table == "job_tasks"
                    && r.host() == h
                    && r.string("error")
                        .is_some_and(|e| e.contains("exited with code"))
            })
            .map(|r| r.tag("job_id").unwrap().to_string())
            .collect();
        assert!(!crashed.is_empty(), "{h} never crashed");
        let harmed: BTreeSet<String> = f.harmed_jobs.iter().cloned().collect();
        assert_eq!(harmed, crashed, "flaky {h}");
    }

    // Straggler hosts: their tasks in the window are at least twice their
    // stage's median on average; no other host is slow on average.
    let ratios = slowdowns(&rows);
    let stragglers: Vec<_> = truth
        .faults
        .iter()
        .filter(|f| f.kind == FaultKind::StragglerHost)
        .collect();
    for f in &stragglers {
        let h = f.host.as_deref().unwrap();
        let inside: Vec<f64> = ratios
            .iter()
            .filter(|(host, t, _)| host == h && (f.start_ns..f.end_ns).contains(t))
            .map(|(_, _, r)| r.ln())
            .collect();
        assert!(
            inside.len() >= 3,
            "{h}: {} tasks in its window",
            inside.len()
        );
        let mean = (inside.iter().sum::<f64>() / inside.len() as f64).exp();
        assert!(mean >= 2.0, "{h}: {mean:.2}x in its window");
        assert!(!f.harmed_jobs.is_empty());
        assert!(f.device.is_none());
    }
    let mut by_host: HashMap<&str, Vec<f64>> = HashMap::new();
    for (h, _, r) in &ratios {
        by_host.entry(h).or_default().push(r.ln());
    }
    for (h, logs) in by_host {
        if stragglers.iter().any(|f| f.host.as_deref() == Some(h)) || logs.len() < 3 {
            continue;
        }
        let mean = (logs.iter().sum::<f64>() / logs.len() as f64).exp();
        assert!(mean < 1.5, "healthy {h}: {mean:.2}x");
    }

    // Queueing: the jobs that waited over 5 minutes are exactly the harmed
    // jobs of the queueing faults: of their queue, submitted in the window.
    let waited: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.table == "job_runs" && r.int("start_ns") - r.int("submit_ns") > 5 * MINUTE_NS)
        .map(|r| r.tag("job_id").unwrap().to_string())
        .collect();
    let mut harmed = BTreeSet::new();
    for f in truth
        .faults
        .iter()
        .filter(|f| f.kind == FaultKind::Queueing)
    {
        let queue = f.device.as_deref().expect("a congested queue is named");
        assert!(f.host.is_none());
        assert_eq!(f.harmed_jobs, f.affected_jobs);
        for job in &f.harmed_jobs {
            let run = rows
                .iter()
                .find(|r| r.table == "job_runs" && r.tag("job_id") == Some(job))
                .expect("a harmed job reported its run");
            assert_eq!(run.tag("queue"), Some(queue));
            assert!((f.start_ns..f.end_ns).contains(&run.int("submit_ns")));
            harmed.insert(job.clone());
        }
    }
    assert!(!harmed.is_empty(), "no job queued in a congested queue");
    assert_eq!(waited, harmed);
}

#[test]
fn the_default_kinds_are_the_classic_five() {
    let c = config(12, 2, 7);
    let (default, _) = run(&c, 5, 10_000);
    let (explicit, _) = run_kinds(&c, 5, &FaultKind::ALL, 10_000);
    assert!(default == explicit);
}

#[test]
fn fault_kinds_by_name() {
    for k in FaultKind::EVERY {
        assert_eq!(FaultKind::from_name(k.name()), Some(k));
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, format!("\"{}\"", k.name()));
    }
    assert_eq!(FaultKind::from_name("gremlins"), None);
    // Hosts are counted only for host faults: queueing needs none.
    let c = config(1, 2, 1);
    let options = FleetOptions {
        faults: 3,
        fault_kinds: vec![FaultKind::Queueing],
        ..Default::default()
    };
    assert!(Fleet::new(&c, &options).is_ok());
}

#[test]
fn fault_starts_place_the_faults() {
    let c = config(50, 24, 3);
    let early = (c.start_ns + 20 * MINUTE_NS, c.start_ns + 30 * MINUTE_NS);
    let later = (c.start_ns + 5 * HOUR_NS, c.start_ns + 6 * HOUR_NS);
    let options = FleetOptions {
        faults: 10,
        fault_starts: vec![early; 5].into_iter().chain([later; 3]).collect(),
        ..Default::default()
    };
    let mut fleet = Fleet::new(&c, &options).unwrap();
    generate_all(&mut fleet, 50_000);
    let truth = fleet.ground_truth();
    let within = |f: &FaultTruth, (from, to): (i64, i64)| from <= f.start_ns && f.start_ns < to;
    for f in &truth.faults {
        if f.kind == FaultKind::DataSkew {
            // The truth holds the skewed task's span: the first suitable
            // job submitted after the start drawn got it.
            match f.id {
                0..5 => assert!(f.start_ns >= early.0, "{f:?}"),
                5..8 => assert!(f.start_ns >= later.0, "{f:?}"),
                _ => {}
            }
            continue;
        }
        match f.id {
            0..5 => assert!(within(f, early), "{f:?}"),
            5..8 => assert!(within(f, later), "{f:?}"),
            // Without a window: anywhere after the first 5 % of the range.
            _ => assert!(
                f.start_ns >= c.start_ns + (c.end_ns - c.start_ns) / 20,
                "{f:?}"
            ),
        }
    }
    // Every host fault was placed (the skews need a job to land on).
    assert!(truth.faults.iter().filter(|f| f.host.is_some()).count() >= 8);

    // A window outside the range, or empty, is refused.
    for bad in [
        (c.start_ns - 1, c.start_ns + HOUR_NS),
        (c.start_ns + HOUR_NS, c.start_ns + HOUR_NS),
        (c.end_ns - HOUR_NS, c.end_ns + 1),
    ] {
        let options = FleetOptions {
            faults: 1,
            fault_starts: vec![bad],
            ..Default::default()
        };
        assert!(Fleet::new(&c, &options).is_err(), "{bad:?}");
    }
}

#[test]
fn epochs_before_a_time_come_in_order_and_nothing_is_lost() {
    let c = config(20, 1, 7);
    let options = options(2);
    let mut whole = Fleet::new(&c, &options).unwrap();
    let expected = generate_all(&mut whole, 10_000);
    let mut live = Fleet::new(&c, &options).unwrap();
    let mut out = Vec::new();
    let mut before = c.start_ns;
    while let Some(next) = live.next_epoch_ns() {
        // Nothing of an epoch whose time has not come.
        assert_eq!(live.next_chunk_before(&mut out, 1000, next), 0);
        before = before.max(next) + 25 * SECOND_NS;
        let from = out.len();
        while live.next_chunk_before(&mut out, 333, before) > 0 {}
        for row in parse(&out[from..]) {
            assert!(row.time < before + c.interval_ns, "{row:?} after {before}");
        }
    }
    assert_eq!(out, expected);
}
