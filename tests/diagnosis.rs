//! Job diagnosis over HTTP and the CLI: a simulated fleet with one fault of
//! each kind, diagnosed job by job against the simulator's ground truth.

use std::collections::BTreeSet;
use std::process::Command;

use fleetlake_sim::{FaultKind, GroundTruth, SimConfig};
use serde_json::Value;

use crate::common::{Server, create_token};

const S: i64 = 1_000_000_000;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600 * S;

/// 40 hosts × 3 hours at 10 s, one fault of each kind (seed 3, as the
/// anomaly pack's test).
async fn faulty_fleet(server: &Server) -> GroundTruth {
    let config = SimConfig::new(40, T0, T0 + 3 * 3600 * S, 10 * S, 3).expect("config");
    server.load_fleet(&config, 5).await
}

/// `GET /api/v1/diagnosis/jobs/{job}` → (status, JSON body).
async fn diagnose(server: &Server, job: &str, query: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = server
        .client()
        .get(format!("{}/api/v1/diagnosis/jobs/{job}{query}", server.url));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.expect("diagnosis request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

async fn report(server: &Server, job: &str) -> Value {
    let (status, body) = diagnose(server, job, "", None).await;
    assert_eq!(status, 200, "{job}: {body}");
    body
}

fn reported(report: &Value) -> Vec<&Value> {
    report["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter(|c| c["reported"] == true)
        .collect()
}

fn names_host(cause: &Value, host: &str) -> bool {
    cause["hosts"]
        .as_array()
        .is_some_and(|h| h.iter().any(|h| h == host))
}

const HARDWARE: [&str; 6] = [
    "failing_disk",
    "bad_memory",
    "thermal_throttling",
    "flapping_nic",
    "host_lost",
    "hardware_anomaly",
];

/// One line per job, for the test's output: what the report says.
fn describe(report: &Value) -> String {
    let causes: Vec<String> = reported(report)
        .iter()
        .map(|c| {
            format!(
                "{} {:?} conf {:.2} cost {:.0}s",
                c["kind"].as_str().unwrap_or("?"),
                c["hosts"],
                c["confidence"].as_f64().unwrap_or(0.0),
                c["cost_ns"].as_f64().unwrap_or(0.0) / 1e9
            )
        })
        .collect();
    format!(
        "{} wall {:.0}s: [{}]",
        report["job_id"].as_str().unwrap_or("?"),
        report["wall_ns"].as_f64().unwrap_or(0.0) / 1e9,
        causes.join("; ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnoses_injected_faults_and_healthy_jobs() {
    let server = Server::start(&[]);
    let truth = faulty_fleet(&server).await;
    let fault = |kind: FaultKind| {
        truth
            .faults
            .iter()
            .find(|f| f.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} fault injected"))
    };

    // Data skew: the skewed task is the top cause.
    let skew = fault(FaultKind::DataSkew);
    let job = skew.job.clone().expect("the skewed job");
    let r = report(&server, &job).await;
    eprintln!("data_skew: {}", describe(&r));
    let top = reported(&r).first().copied().expect("a reported cause");
    assert_eq!(top["kind"], "data_skew", "{r:#}");
    assert_eq!(top["stage_id"], skew.stage.expect("stage"), "{top:#}");
    assert_eq!(
        top["attempts"][0]["task_id"],
        skew.task.expect("task"),
        "{top:#}"
    );
    assert!(!r["critical_path"].as_array().expect("path").is_empty());

    // The same as a self-contained HTML page: a Gantt naming the skewed task.
    let page = server
        .client()
        .get(format!(
            "{}/api/v1/diagnosis/jobs/{job}?format=html",
            server.url
        ))
        .send()
        .await
        .expect("html request");
    assert_eq!(page.status().as_u16(), 200);
    let content_type = page.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "text/html; charset=utf-8");
    let html = page.text().await.expect("html body");
    let skewed = format!(
        "stage {} task {} attempt",
        skew.stage.expect("stage"),
        skew.task.expect("task")
    );
    assert!(html.contains(&skewed), "{skewed:?} missing from the page");
    assert!(html.contains("<svg"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page links out"
    );

    // Each job's top reported kind ("" for none), from the per-job reports,
    // to compare with the bulk form.
    let mut tops: std::collections::BTreeMap<String, String> = Default::default();
    let top_kind = |r: &Value| {
        reported(r)
            .first()
            .and_then(|c| c["kind"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    tops.insert(job.clone(), top_kind(&r));

    // Failing disk and thermal throttling: every job with an attempt that
    // started on the host inside the window (so was slowed) names the
    // host's hardware among its reported causes, and first when no other
    // fault touched the job.
    for kind in [FaultKind::FailingDisk, FaultKind::ThermalThrottling] {
        let f = fault(kind);
        let host = f.host.clone().expect("host");
        let rows = server
            .sql(
                "fleet",
                &format!(
                    "SELECT job_id, count(*) AS n FROM job_tasks WHERE hostname = '{host}' \
                     AND start_ns >= {} AND start_ns < {} GROUP BY job_id ORDER BY job_id",
                    f.start_ns, f.end_ns
                ),
            )
            .await;
        let others: BTreeSet<&str> = truth
            .faults
            .iter()
            .filter(|o| o.id != f.id)
            .flat_map(|o| o.affected_jobs.iter().map(String::as_str))
            .collect();
        let slowed: Vec<&str> = rows.iter().filter_map(|r| r["job_id"].as_str()).collect();
        assert!(!slowed.is_empty(), "{kind:?} on {host}: no slowed job");
        let (mut named, mut first, mut sole) = (Vec::new(), Vec::new(), Vec::new());
        for job in &slowed {
            assert!(
                f.affected_jobs.iter().any(|j| j == job),
                "{job} ran on {host} in the window but is not in the truth"
            );
            let r = report(&server, job).await;
            eprintln!("{kind:?} on {host}: {}", describe(&r));
            tops.insert(job.to_string(), top_kind(&r));
            let blames = |c: &&Value| {
                HARDWARE.contains(&c["kind"].as_str().unwrap_or("")) && names_host(c, &host)
            };
            let causes = reported(&r);
            if causes.iter().any(blames) {
                named.push(*job);
            }
            if causes.first().is_some_and(blames) {
                first.push(*job);
            }
            if !others.contains(job) {
                sole.push(*job);
            }
        }
        eprintln!(
            "{kind:?} on {host}: {} slowed job(s), {} name the host's hardware, {} first; \
             {} touched by no other fault",
            slowed.len(),
            named.len(),
            first.len(),
            sole.len()
        );
        assert_eq!(named, slowed, "{kind:?}: jobs not blamed on {host}");
        assert!(
            !sole.is_empty(),
            "{kind:?}: every slowed job also had another fault"
        );
        for job in &sole {
            assert!(
                first.contains(job),
                "{kind:?}: {job} not blamed on {host} first"
            );
        }
    }

    // Healthy jobs: in no fault's affected_jobs, no failed attempt.
    let affected: BTreeSet<&str> = truth
        .faults
        .iter()
        .flat_map(|f| f.affected_jobs.iter().map(String::as_str))
        .collect();
    let rows = server
        .sql(
            "fleet",
            "SELECT job_id FROM job_runs WHERE failed_attempts = 0 AND status = 'SUCCEEDED' ORDER BY job_id",
        )
        .await;
    let healthy: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["job_id"].as_str())
        .filter(|j| !affected.contains(j))
        .collect();
    assert!(healthy.len() >= 5, "{} healthy jobs", healthy.len());
    let mut flagged = Vec::new();
    for job in &healthy {
        let r = report(&server, job).await;
        tops.insert(job.to_string(), top_kind(&r));
        if !reported(&r).is_empty() {
            flagged.push(describe(&r));
        }
    }
    eprintln!(
        "healthy: {} jobs, {} with a reported cause",
        healthy.len(),
        flagged.len()
    );
    assert!(flagged.is_empty(), "healthy jobs with causes: {flagged:#?}");

    // The bulk forms: every job that ended in the range, in SQL and over HTTP.
    let range = format!(
        "TIMESTAMP '{}', TIMESTAMP '{}'",
        fleetlake_time::rfc3339(T0),
        fleetlake_time::rfc3339(T0 + 4 * 3600 * S)
    );
    let ended = server
        .sql_i64("fleet", "SELECT count(DISTINCT job_id) FROM job_runs")
        .await;
    let rows = server
        .sql(
            "fleet",
            &format!(
                "SELECT job_id, rank, cause, hosts, error FROM job_diagnoses({range}) \
                 ORDER BY job_id, rank"
            ),
        )
        .await;
    let bulk_jobs: BTreeSet<&str> = rows.iter().filter_map(|r| r["job_id"].as_str()).collect();
    assert_eq!(bulk_jobs.len() as i64, ended, "every ended job has a row");
    assert!(rows.iter().all(|r| r["error"].is_null()), "{rows:#?}");
    let bulk_top = |job: &str| {
        rows.iter()
            .find(|r| r["job_id"] == job && (r["rank"] == 1 || r["rank"].is_null()))
            .map(|r| r["cause"].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(bulk_top(&job).as_deref(), Some("data_skew"));
    let differ: Vec<String> = tops
        .iter()
        .filter(|(j, k)| bulk_top(j).is_some_and(|b| b != **k))
        .map(|(j, k)| format!("{j}: per job {k:?}, bulk {:?}", bulk_top(j)))
        .collect();
    eprintln!(
        "bulk: {} jobs; top cause differs from the per-job report for {} of {} compared: {differ:?}",
        bulk_jobs.len(),
        differ.len(),
        tops.len()
    );
    assert!(
        differ.len() * 10 <= tops.len(),
        "the bulk form disagrees with the per-job reports: {differ:#?}"
    );
    // The fleet view names the failing disk's host, for its disk.
    let disk_host = fault(FaultKind::FailingDisk).host.clone().expect("host");
    let impact = server
        .sql(
            "fleet",
            &format!("SELECT hostname, jobs, causes, top_cause FROM host_impact({range})"),
        )
        .await;
    eprintln!("host_impact: {impact:?}");
    let row = impact
        .iter()
        .find(|r| r["hostname"] == disk_host.as_str())
        .unwrap_or_else(|| panic!("{disk_host} missing from host_impact: {impact:#?}"));
    assert!(row["jobs"].as_i64().unwrap() >= 1, "{row}");
    assert!(
        row["causes"].as_str().unwrap().contains("failing_disk"),
        "{row}"
    );
    // Over HTTP: the same hosts, first the one that hurt the most jobs.
    let get = |path: String| {
        let client = server.client();
        async move {
            let r = client.get(path).send().await.expect("request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let window = format!("db=fleet&start={}&end={}", T0 / S, T0 / S + 4 * 3600);
    let (status, body) = get(format!("{}/api/v1/diagnosis/hosts?{window}", server.url)).await;
    assert_eq!(status, 200, "{body}");
    let hosts = body["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), impact.len(), "{body:#}");
    assert_eq!(hosts[0]["hostname"], impact[0]["hostname"]);
    let (status, body) = get(format!("{}/api/v1/diagnosis/jobs?{window}", server.url)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jobs"].as_array().expect("jobs").len() as i64, ended);
    // Bad arguments: a 400 saying what to pass.
    for (sql, want) in [
        ("SELECT * FROM job_diagnoses(1)", "takes 2 arguments"),
        (
            "SELECT * FROM job_diagnoses('yesterday', now())",
            "start must be a constant timestamp",
        ),
        (
            "SELECT * FROM host_impact(now(), now() - INTERVAL '1 hour')",
            "end is before start",
        ),
    ] {
        let (status, body) = server.sql_raw("fleet", sql, "json").await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(body.contains(want), "{sql}: {body}");
    }
    let (status, body) = get(format!("{}/api/v1/diagnosis/hosts?start=abc", server.url)).await;
    assert_eq!(status, 400, "{body}");
    // Hostile parameters of the fleet view: each a 400 or 404 naming it.
    for (query, code, want) in [
        ("limit=-1", 400, "limit"),
        ("limit=99999999999999999999999", 400, "limit"),
        (
            "start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z",
            400,
            "end is before start",
        ),
        ("end=99999999999999999999", 400, "end"),
        ("db=nope", 404, "nope"),
    ] {
        for route in ["jobs", "hosts"] {
            let (status, body) =
                get(format!("{}/api/v1/diagnosis/{route}?{query}", server.url)).await;
            assert_eq!(status, code, "{route}?{query}: {body}");
            assert!(body.to_string().contains(want), "{route}?{query}: {body}");
        }
    }

    // A job still running (no job_runs row yet) is diagnosed so far.
    let rows = server
        .sql(
            "fleet",
            "SELECT DISTINCT job_id FROM job_tasks WHERE job_id NOT IN (SELECT job_id FROM job_runs) ORDER BY job_id LIMIT 1",
        )
        .await;
    if let Some(job) = rows.first().and_then(|r| r["job_id"].as_str()) {
        let r = report(&server, job).await;
        assert_eq!(r["running"], true, "{r:#}");
        assert_eq!(r["status"], "RUNNING");
    }

    // Bad input.
    let (status, body) = diagnose(&server, "job_999999", "", None).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("job_999999"),
        "{body}"
    );
    let (status, body) = diagnose(&server, "job%27%20OR%20%271", "", None).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("invalid job id"),
        "{body}"
    );
    let (status, body) = diagnose(&server, &job, "?format=xml", None).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("format must be json (the default) or html")
    );
    let (status, body) = diagnose(&server, &job, "?db=nope", None).await;
    assert_eq!(status, 404, "{body}");

    // Job tables without hardware telemetry: job-only causes, with a note.
    let lp = crate::common::skewed_job_lp("job_x", T0);
    server.write_ok("jobsonly", &lp).await;
    let (status, r) = diagnose(&server, "job_x", "?db=jobsonly", None).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(reported(&r)[0]["kind"], "data_skew", "{r:#}");
    assert!(
        r["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("no hardware telemetry")),
        "{r:#}"
    );

    // The CLI: a summary for a person, and the JSON.
    let out = Command::new(env!("CARGO_BIN_EXE_fleetlake"))
        .args(["diagnose", &job, "--url", &server.url, "--db", "fleet"])
        .env_remove("FLEETLAKE_TOKEN")
        .output()
        .expect("run fleetlake diagnose");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    for want in [
        "wall time",
        "queue wait",
        "critical path:",
        "1. data_skew",
        "action:",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_fleetlake"))
        .args(["diagnose", &job, "--url", &server.url, "--format", "json"])
        .output()
        .expect("run fleetlake diagnose --format json");
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(v["job_id"], job.as_str());
    let out = Command::new(env!("CARGO_BIN_EXE_fleetlake"))
        .args(["diagnose", &job, "--url", &server.url, "--format", "html"])
        .output()
        .expect("run fleetlake diagnose --format html");
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains(&skewed));
    let out = Command::new(env!("CARGO_BIN_EXE_fleetlake"))
        .args(["diagnose", "job_999999", "--url", &server.url])
        .output()
        .expect("run fleetlake diagnose");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("job_999999"));
}

#[tokio::test]
async fn diagnosis_needs_a_read_token() {
    let dir = tempfile::tempdir().unwrap();
    let reader = create_token(dir.path(), "analyst", &["read:fleet"]);
    let other = create_token(dir.path(), "elsewhere", &["read:other"]);
    let server = Server::start_in(dir.path(), &["--auth"]);
    let (status, body) = diagnose(&server, "job_000001", "", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = diagnose(&server, "job_000001", "", Some(&other)).await;
    assert_eq!(status, 403, "{body}");
    // Allowed, and the store holds no job: 404 naming it.
    let (status, body) = diagnose(&server, "job_000001", "", Some(&reader)).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("job_000001"),
        "{body}"
    );
    // The fleet view's routes too: no token, a token for another database.
    for path in [
        "/api/v1/diagnosis/jobs?db=fleet",
        "/api/v1/diagnosis/hosts?db=fleet",
    ] {
        let url = format!("{}{path}", server.url);
        let r = server.client().get(&url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
        let r = server
            .client()
            .get(&url)
            .bearer_auth(&other)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{path}");
    }
}

/// The diagnosis journal: the fleet's jobs diagnosed by contiguous passes
/// as they end, their results kept as rows, and the fleet view read from
/// those rows, as it would be computed from the jobs; across a restart the
/// journal goes on from its newest pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_view_reads_the_diagnosis_journal() {
    let args = [
        "--diagnosis-journal-interval",
        "1s",
        "--diagnosis-backfill",
        "4h",
    ];
    // The fleet is written before the journal starts: a pass that ran
    // while the fleet was being written would take the newest end it saw
    // then, and rows written later at or before that end are not passed
    // again (a known limit of the journal's watermark).
    let mut loader = Server::start(&["--diagnosis-journal-interval", "0s"]);
    let truth = faulty_fleet(&loader).await;
    let dir = loader.take_dir().expect("dir");
    assert!(loader.terminate(), "clean stop");
    let mut server = Server::start_in(dir.path(), &args);
    let newest = server
        .sql_i64("fleet", "SELECT CAST(max(time) AS BIGINT) FROM job_runs")
        .await;
    async fn journaled_to(server: &Server) -> Option<i64> {
        let (_, text) = server
            .sql_raw(
                "fleet",
                "SELECT CAST(max(time) AS BIGINT) AS t FROM diagnosis_passes",
                "json",
            )
            .await;
        let rows: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        rows.get(0).and_then(|r| r["t"].as_i64())
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while journaled_to(&server).await != Some(newest) {
        assert!(
            std::time::Instant::now() < deadline,
            "the journal did not reach the newest job end {newest} in 300 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // Contiguous passes from the backfill's start to the newest job end.
    let passes = server
        .sql(
            "fleet",
            "SELECT from_ns, jobs, CAST(time AS BIGINT) AS t FROM diagnosis_passes ORDER BY t",
        )
        .await;
    let first = passes[0]["from_ns"].as_i64().unwrap();
    assert_eq!(first, newest - 4 * 3600 * S, "{passes:?}");
    for w in passes.windows(2) {
        assert_eq!(
            w[1]["from_ns"].as_i64().unwrap(),
            w[0]["t"].as_i64().unwrap() + 1,
            "{passes:?}"
        );
    }
    let ended = server
        .sql_i64("fleet", "SELECT count(DISTINCT job_id) FROM job_runs")
        .await;
    let journaled = server
        .sql_i64("fleet", "SELECT count(DISTINCT job_id) FROM diagnosis_jobs")
        .await;
    let passed: i64 = passes.iter().map(|p| p["jobs"].as_i64().unwrap()).sum();
    assert_eq!(journaled, ended, "every ended job journaled once");
    assert_eq!(passed, ended);

    // The fleet view from the journal and computed from the jobs.
    let get = |server: &Server, query: String| {
        let (client, url) = (server.client(), server.url.clone());
        async move {
            let r = client
                .get(format!("{url}/api/v1/diagnosis/hosts?db=fleet&{query}"))
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let window = format!("start={}&end={}&limit=100000", T0 / S, newest / S + 1);
    let (status, journal) = get(&server, format!("{window}&source=journal")).await;
    assert_eq!(status, 200, "{journal}");
    let (status, computed) = get(&server, format!("{window}&source=computed")).await;
    assert_eq!(status, 200, "{computed}");
    let (status, auto) = get(&server, window.clone()).await;
    assert_eq!(status, 200, "{auto}");
    assert_eq!(journal["source"], "journal");
    assert_eq!(computed["source"], "computed");
    assert_eq!(auto["source"], "journal", "the journal covers the range");
    assert_eq!(
        journal["jobs"], computed["jobs"],
        "{journal:#}\n{computed:#}"
    );
    assert_eq!(journal["jobs"].as_i64(), Some(ended));
    // A host's hardware harm does not depend on which other jobs were
    // diagnosed with its jobs (the host-history comparison does): the
    // hosts with a hardware cause, their jobs and costs, agree.
    let hardware = |view: &Value| -> Vec<(String, u64, i64, Vec<String>)> {
        let mut out: Vec<_> = view["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .filter_map(|h| {
                let kinds: Vec<String> = h["causes"]
                    .as_object()?
                    .keys()
                    .filter(|k| HARDWARE.contains(&k.as_str()))
                    .cloned()
                    .collect();
                (!kinds.is_empty()).then(|| {
                    (
                        h["hostname"].as_str().unwrap().to_owned(),
                        h["jobs"].as_u64().unwrap(),
                        h["cost_ns"].as_i64().unwrap(),
                        kinds,
                    )
                })
            })
            .collect();
        out.sort();
        out
    };
    let from_journal = hardware(&journal);
    eprintln!(
        "{} passes, {ended} jobs; hosts with hardware harm: {from_journal:?}; all hosts: journal {}, computed {}",
        passes.len(),
        journal["hosts_total"],
        computed["hosts_total"]
    );
    assert!(!from_journal.is_empty(), "{journal:#}");
    assert_eq!(from_journal, hardware(&computed));
    let disk_host = truth
        .faults
        .iter()
        .find(|f| f.kind == FaultKind::FailingDisk)
        .and_then(|f| f.host.clone())
        .expect("a failing disk");
    assert!(
        from_journal
            .iter()
            .any(|h| h.0 == disk_host && h.3.contains(&"failing_disk".to_owned())),
        "{disk_host} not blamed for a failing disk: {from_journal:#?}"
    );

    // A start the journal does not cover: 409 naming what it covers; a
    // source that is not one: 400.
    let (status, body) = get(
        &server,
        format!("start={}&end={}&source=journal", T0 / S - 86_400, T0 / S),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("covers"), "{body}");
    let (status, body) = get(&server, "source=cache".into()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("source"), "{body}");

    // A restart goes on from the newest pass: no pass again, none lost.
    assert!(server.terminate(), "clean stop");
    let server = Server::start_in(dir.path(), &args);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let again = server
        .sql_i64("fleet", "SELECT count(*) FROM diagnosis_passes")
        .await;
    assert_eq!(again, passes.len() as i64, "a restart passed again");
    let (status, body) = get(&server, format!("{window}&source=journal")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jobs"], journal["jobs"]);
}
