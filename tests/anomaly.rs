//! The anomaly functions through the real server's SQL, and the shipped rule
//! pack (`rules/examples/`) run against a simulated fleet with injected
//! faults: each rule names the faulty host and no healthy one.

use std::collections::BTreeSet;

use fleetlake_sim::SimConfig;
use fleetlake_sim::fleet::FaultKind;
use serde_json::Value;

use crate::common::Server;

const S: i64 = 1_000_000_000;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600 * S;

fn f64_of(row: &Value, key: &str) -> Option<f64> {
    row.get(key).and_then(Value::as_f64)
}

fn close(got: Option<f64>, want: f64, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: no value"));
    assert!((got - want).abs() < 1e-9, "{what}: {got} != {want}");
}

/// A SQL timestamp literal for Unix nanoseconds (what `now()` is replaced by).
fn ts(ns: i64) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(ns);
    format!(
        "CAST('{}' AS TIMESTAMP WITH TIME ZONE)",
        t.format("%Y-%m-%dT%H:%M:%S%.9fZ")
    )
}

/// Series `a`: 2, 4, 4, 4, 5, 5, 7, 9, 12 every 10 s; counter `c` with a
/// reset: 10, 15, 3, 8, 8 (then NULL rows); series `b`: three points.
async fn small_series(server: &Server) {
    let a = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0, 12.0];
    let c = [10, 15, 3, 8, 8];
    let mut body = String::new();
    // Out of time order on purpose: the functions order by the time argument.
    for (i, v) in a.iter().enumerate().rev() {
        let t = T0 + i as i64 * 10 * S;
        body.push_str(&format!("s,host=a v={v:.1} {t}\n"));
        if let Some(c) = c.get(i) {
            body.push_str(&format!("s,host=a c={c}i {t}\n"));
        }
    }
    for (i, v) in [1.0, 2.0, 3.0].iter().enumerate() {
        body.push_str(&format!("s,host=b v={v:.1} {}\n", T0 + i as i64 * 10 * S));
    }
    server.write_ok("t", &body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_by_hand() {
    let server = Server::start(&[]);
    small_series(&server).await;
    let rows = server
        .sql(
            "t",
            "SELECT host, zscore(v, time) AS z, robust_zscore(v, time) AS rz, \
             ewma_deviation(v, time, 0.5) AS e, seasonal_delta(v, time, INTERVAL '30 seconds') AS sd, \
             increase(c, time) AS inc, rate(c, time) AS r, count(v) AS n \
             FROM s GROUP BY host ORDER BY host",
        )
        .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let a = &rows[0];
    // Baseline 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sample variance 32/7; last 12.
    close(f64_of(a, "z"), 7.0 / (32.0f64 / 7.0).sqrt(), "zscore");
    // Median 4.5; deviations 2.5, .5, .5, .5, .5, .5, 2.5, 4.5 → MAD 0.5.
    close(f64_of(a, "rz"), 7.5 / (1.4826 * 0.5), "robust_zscore");
    // 12 at 80 s against 5 at 50 s.
    close(f64_of(a, "sd"), 7.0, "seasonal_delta");
    // 10 → 15 → 3 (reset) → 8 → 8: 5 + 3 + 5 + 0 over 40 s.
    close(f64_of(a, "inc"), 13.0, "increase");
    close(f64_of(a, "r"), 13.0 / 40.0, "rate");
    // EWMA (alpha 0.5) of 2, 4, 4, 4, 5, 5, 7, 9, computed step by step.
    let (mut m, mut var) = (2.0f64, 0.0f64);
    for x in [4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
        let d = x - m;
        m += 0.5 * d;
        var = 0.5 * (var + 0.5 * d * d);
    }
    close(f64_of(a, "e"), (12.0 - m) / var.sqrt(), "ewma_deviation");
    // Series b: three points leave a baseline of two (too few); no counter.
    let b = &rows[1];
    for k in ["z", "rz", "e", "inc", "r"] {
        assert!(b[k].is_null(), "{k} of b: {b:?}");
    }
    // b's last point (20 s) reaches back 30 s to nothing.
    assert!(b["sd"].is_null(), "{b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_form_and_absence() {
    let server = Server::start(&[]);
    small_series(&server).await;
    // Per row: each point against the three before it.
    let rows = server
        .sql(
            "t",
            "SELECT time, v, zscore(v, time) OVER (PARTITION BY host ORDER BY time \
             ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS z, \
             increase(c, time) OVER (PARTITION BY host ORDER BY time \
             ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS inc \
             FROM s WHERE host = 'a' ORDER BY time",
        )
        .await;
    assert_eq!(rows.len(), 9, "{rows:?}");
    // Rows 0–2 have fewer than three points before them.
    for r in &rows[..3] {
        assert!(r["z"].is_null(), "{r:?}");
    }
    // Row 3 (4) against 2, 4, 4: mean 10/3, sd √(4/3).
    close(
        f64_of(&rows[3], "z"),
        (4.0 - 10.0 / 3.0) / (4.0f64 / 3.0).sqrt(),
        "z row 3",
    );
    // Row 4 (5) against 4, 4, 4: no spread; above it by 1, in halves of
    // the step of whole numbers: 2.
    close(f64_of(&rows[4], "z"), 2.0, "z row 4");
    // Results spell non-finite floats (JSON strings, CSV fields) and JSON
    // writes SQL NULL as null.
    let sql = "SELECT CAST('inf' AS DOUBLE) AS p, CAST('-inf' AS DOUBLE) AS m, \
               CAST('NaN' AS DOUBLE) AS n, CAST(NULL AS DOUBLE) AS z, 1.5 AS f";
    let (status, json) = server.sql_raw("t", sql, "json").await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json,
        r#"[{"p":"Infinity","m":"-Infinity","n":"NaN","z":null,"f":1.5}]"#
    );
    let (status, csv) = server.sql_raw("t", sql, "csv").await;
    assert_eq!(status, 200, "{csv}");
    assert_eq!(csv, "p,m,n,z,f\nInfinity,-Infinity,NaN,,1.5\n");
    // Row 8 (12) against 5, 7, 9: mean 7, sd 2.
    close(f64_of(&rows[8], "z"), 2.5, "z row 8");
    // Counter over pairs: 15−10, reset to 3, 8−3, 0.
    let incs: Vec<Option<f64>> = rows[..5].iter().map(|r| f64_of(r, "inc")).collect();
    assert_eq!(
        incs,
        [None, Some(5.0), Some(3.0), Some(5.0), Some(0.0)],
        "{rows:?}"
    );

    // Absence: seconds from each host's last point to the evaluation time.
    let at = T0 + 200 * S;
    let rows = server
        .sql(
            "t",
            &format!(
                "SELECT host, staleness(time, {}) AS value FROM s \
                 GROUP BY host HAVING staleness(time, {}) > 150 ORDER BY host",
                ts(at),
                ts(at)
            ),
        )
        .await;
    // a's last point is at 80 s (120 s ago), b's at 20 s (180 s ago).
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["host"], "b");
    close(f64_of(&rows[0], "value"), 180.0, "staleness");
}

/// `anomaly_score` through SQL: per row (a growing frame, the detector
/// learning each row once) and per series (the latest point), over two
/// hosts of noise, one of which spikes and has a gap of NULL values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomaly_score_per_row_and_per_series() {
    let server = Server::start(&[]);
    let noise = |i: u64| ((i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % 1000) as f64 / 250.0;
    let mut lines = Vec::new();
    for i in 0..600u64 {
        let t = T0 + i as i64 * 60 * S;
        let a = 50.0 + noise(i);
        let b = if i == 599 { 95.0 } else { 50.0 + noise(i + 7) };
        lines.push(format!("d,host=a v={a} {t}"));
        if (400..405).contains(&i) {
            // A row without the field: v is NULL.
            lines.push(format!("d,host=b w=1 {t}"));
        } else {
            lines.push(format!("d,host=b v={b} {t}"));
        }
    }
    // Written out of time order: the function orders by its time argument.
    lines.reverse();
    server.write_ok("t", &lines.join("\n")).await;

    let rows = server
        .sql(
            "t",
            "SELECT host, anomaly_score(v, time) AS s FROM d GROUP BY host ORDER BY host",
        )
        .await;
    let a = f64_of(&rows[0], "s").expect("a scored");
    let b = f64_of(&rows[1], "s").expect("b scored");
    assert!((0.0..0.5).contains(&a), "a's last point is ordinary: {a}");
    assert!((0.5..=1.0).contains(&b), "b's last point is a spike: {b}");

    let rows = server
        .sql(
            "t",
            "SELECT time, v, anomaly_score(v, time) OVER (PARTITION BY host ORDER BY time) AS s \
             FROM d WHERE host = 'b' ORDER BY time",
        )
        .await;
    assert_eq!(rows.len(), 600);
    let scores: Vec<Option<f64>> = rows.iter().map(|r| f64_of(r, "s")).collect();
    // Learning: the first 150 points score NULL.
    assert!(
        scores[..150].iter().all(Option::is_none),
        "{:?}",
        &scores[..150]
    );
    // A row without a value scores NULL; the others are in [0, 1].
    assert!(scores[400..405].iter().all(Option::is_none));
    assert!(
        scores[150..400]
            .iter()
            .chain(&scores[405..])
            .all(|s| s.is_some_and(|s| (0.0..=1.0).contains(&s))),
    );
    // The last row scores as the per-series form does.
    assert_eq!(scores[599], Some(b));

    // The sustained form: c's last five minutes sit 8 above its normal,
    // b has one spike at the very end, a is ordinary. Only c's span is
    // anomalous as a whole.
    let mut lines = Vec::new();
    for i in 0..600u64 {
        let t = T0 + i as i64 * 60 * S;
        let c = 50.0 + noise(i + 13) + if i >= 595 { 8.0 } else { 0.0 };
        lines.push(format!("d,host=c v={c} {t}"));
    }
    server.write_ok("t", &lines.join("\n")).await;
    let rows = server
        .sql(
            "t",
            "SELECT host, anomaly_score(v, time, INTERVAL '5 minutes') AS s FROM d \
             GROUP BY host ORDER BY host",
        )
        .await;
    let span: Vec<f64> = rows
        .iter()
        .map(|r| f64_of(r, "s").expect("scored"))
        .collect();
    assert_eq!(span.len(), 3, "{rows:?}");
    assert!(span[0] < 0.5, "a: {span:?}");
    assert!(span[1] < 0.5, "b's lone spike: {span:?}");
    assert!(span[2] >= 0.5, "c's shift: {span:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_user_errors() {
    let server = Server::start(&[]);
    small_series(&server).await;
    for (sql, needle) in [
        ("SELECT zscore(v) FROM s", "zscore takes 2 arguments"),
        ("SELECT zscore(host, time) FROM s", "must be numeric"),
        ("SELECT rate(c, v) FROM s", "must be a timestamp"),
        (
            "SELECT ewma_deviation(v, time, 1.5) FROM s",
            "alpha must be in (0, 1]",
        ),
        (
            "SELECT ewma_deviation(v, time, v) FROM s",
            "must be a constant",
        ),
        (
            "SELECT seasonal_delta(v, time, 5) FROM s",
            "bad third argument",
        ),
        (
            "SELECT seasonal_delta(v, time, INTERVAL '1 month') FROM s",
            "months have no fixed length",
        ),
        ("SELECT staleness(v, time) FROM s", "two timestamps"),
        (
            "SELECT anomaly_score(v, time, 3) FROM s",
            "anomaly_score: bad third argument of type Int64: use anomaly_score(value, time), or anomaly_score(value, time, INTERVAL '1 minute')",
        ),
        (
            "SELECT anomaly_score(v) FROM s",
            "anomaly_score takes 2 or 3 arguments, got 1",
        ),
        (
            "SELECT anomaly_score(v, time, INTERVAL '0 seconds') FROM s",
            "anomaly_score: the span must be positive",
        ),
        (
            "SELECT anomaly_score(v, time, INTERVAL '1 month') FROM s",
            "months have no fixed length",
        ),
        ("SELECT anomaly_score(host, time) FROM s", "must be numeric"),
    ] {
        let (status, body) = server.sql_raw("t", sql, "json").await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(body.contains(needle), "{sql}: {body}");
    }
}

// ------------------------------------------------------------ the pack

/// One `[[rule]]` of a pack file: the keys this test needs.
#[derive(Debug, serde::Deserialize)]
struct PackFile {
    rule: Vec<PackRule>,
}

#[derive(Debug, serde::Deserialize)]
struct PackRule {
    name: String,
    sql: String,
}

fn pack() -> Vec<PackRule> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("rules/examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut rules = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let file: PackFile =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        rules.extend(file.rule);
    }
    rules
}

/// The rule's SQL evaluated at `at`: `now()` is the evaluation time.
fn at(sql: &str, at_ns: i64) -> String {
    sql.replace("now()", &ts(at_ns))
}

/// Which fault each rule of the pack is there to catch.
fn target(rule: &str) -> FaultKind {
    match rule {
        "smart_sectors_rising" | "disk_stuck" => FaultKind::FailingDisk,
        "ecc_storm" | "host_down" => FaultKind::BadDimm,
        "thermal_throttling" | "cpu_temp_anomaly" => FaultKind::ThermalThrottling,
        "nic_flapping" => FaultKind::FlappingNic,
        "disk_latency_anomaly" => FaultKind::FailingDisk,
        other => panic!("rule {other} has no target fault in this test"),
    }
}

/// 40 hosts × 3 hours at 10 s with one fault of each kind (seed 3: the
/// bad DIMM's host dies with time to spare before the end).
async fn faulty_fleet(server: &Server) -> (SimConfig, fleetlake_sim::GroundTruth) {
    let config = SimConfig::new(40, T0, T0 + 3 * 3600 * S, 10 * S, 3).expect("config");
    let truth = server.load_fleet(&config, 5).await;
    (config, truth)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pack_names_the_faulty_hosts_only() {
    let rules = pack();
    let names: BTreeSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    for want in [
        "smart_sectors_rising",
        "ecc_storm",
        "thermal_throttling",
        "disk_stuck",
        "host_down",
        "cpu_temp_anomaly",
        "disk_latency_anomaly",
    ] {
        assert!(names.contains(want), "the pack lacks {want}: {names:?}");
    }
    let server = Server::start(&[]);
    let (config, truth) = faulty_fleet(&server).await;
    for rule in &rules {
        let kind = target(&rule.name);
        let fault = truth
            .faults
            .iter()
            .find(|f| f.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} fault injected"));
        let host = fault.host.clone().expect("a host fault");
        // Every 5 minutes over the whole range (every minute for the
        // detector's rules, which flag the change and then learn it): the
        // rule's answer must only ever name the faulty host, and name it at
        // least once while its fault shows (a dead host: in the 30 minutes
        // after it died).
        let step = if rule.sql.contains("anomaly_score") {
            60 * S
        } else {
            5 * 60 * S
        };
        let mut hit = Vec::new();
        let mut t = config.start_ns + 15 * 60 * S;
        while t < config.end_ns {
            let rows = server.sql("fleet", &at(&rule.sql, t)).await;
            for r in &rows {
                let h = r["hostname"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: a row without hostname: {r:?}", rule.name));
                assert_eq!(
                    h, host,
                    "{} named a host without a {kind:?} fault at {t}: {rows:?} (fault: {fault:?})",
                    rule.name
                );
                assert!(r["value"].is_number(), "{}: {r:?}", rule.name);
                hit.push(t);
            }
            t += step;
        }
        let (from, to) = if rule.name == "host_down" {
            (fault.end_ns, fault.end_ns + 30 * 60 * S)
        } else {
            (fault.start_ns, fault.end_ns + 15 * 60 * S)
        };
        assert!(
            hit.iter().any(|t| (from..=to).contains(t)),
            "{} never named {host} in its fault window {}..{}: fired at {hit:?}",
            rule.name,
            fault.start,
            fault.end
        );
        assert!(
            hit.iter().all(|t| (fault.start_ns..=to).contains(t)),
            "{} named {host} outside its fault window {}..{}: {hit:?}",
            rule.name,
            fault.start,
            fault.end
        );
    }
}
