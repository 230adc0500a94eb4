//! Pruning: time predicates skip partitions and files; tag predicates skip
//! row groups and pages (Parquet statistics and page index on the sort key).
//! Shown with DataFusion's scan metrics from `EXPLAIN ANALYZE`.

use crate::common::{Server, Tsbs};

/// Sums a metric (e.g. `bytes_scanned=1234` or `bytes_scanned=1.2 MB`) over a plan.
fn metric_sum(plan: &str, name: &str) -> f64 {
    let mut total = 0.0;
    let key = format!("{name}=");
    for part in plan.split(&key).skip(1) {
        let value: String = part
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ' ' || c.is_ascii_alphabetic())
            .collect();
        let mut it = value.split_whitespace();
        let num: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let mult = match it.next() {
            Some("KB") => 1024.0,
            Some("MB") => 1024.0 * 1024.0,
            Some("GB") => 1024.0 * 1024.0 * 1024.0,
            _ => 1.0,
        };
        total += num * mult;
    }
    total
}

/// Distinct data files a plan names (a file may be split into byte ranges).
fn files_in(plan: &str) -> std::collections::BTreeSet<String> {
    plan.split(".parquet")
        .filter_map(|before| before.rsplit(['[', ' ', ',']).next())
        .filter(|p| p.contains("day="))
        .map(str::to_string)
        .collect()
}

async fn explain(server: &Server, sql: &str) -> String {
    server
        .plan("fleet", &format!("EXPLAIN ANALYZE {sql}"))
        .await
}

#[tokio::test]
async fn host_and_hour_read_a_small_part_of_the_table() {
    let server = Server::start(&[]);
    let hosts = 100;
    let tsbs = Tsbs::new(hosts);
    // 100 hosts × 6 hours, in 2 flushes.
    for chunk in 0..2 {
        server
            .write_ok("fleet", &tsbs.body(chunk * 1080, chunk * 1080 + 1080))
            .await;
        server.flush().await;
    }
    let table_bytes = server
        .sql_i64(
            "fleet",
            "SELECT persisted_bytes FROM system.tables WHERE \"table\" = 'cpu'",
        )
        .await as f64;
    let sql = "SELECT * FROM cpu WHERE hostname = 'host_7' \
               AND time >= '2016-01-01T02:00:00Z' AND time < '2016-01-01T03:00:00Z'";
    let plan = explain(&server, sql).await;
    let scanned = metric_sum(&plan, "bytes_scanned");
    let ratio = scanned / table_bytes;
    // One host of 100 for one hour of six is 0.17% of the rows; pages of
    // 8,192 rows hold ~4 hosts here, so a few % of the bytes is the floor.
    assert!(scanned > 0.0, "no bytes_scanned metric in {plan}");
    assert!(
        ratio < 0.10,
        "read {scanned} of {table_bytes} bytes ({:.1}%)\n{plan}",
        ratio * 100.0
    );
    // The answer is still exact.
    assert_eq!(server.sql("fleet", sql).await.len(), 360);
    // Each filter is tested once per row group, page and row: the scan's
    // predicate holds it once, though the table and DataFusion's filter
    // pushdown both give it to the scan.
    let predicate = plan
        .split("predicate=")
        .nth(1)
        .and_then(|p| p.split(", pruning_predicate").next())
        .unwrap_or_else(|| panic!("no predicate in {plan}"));
    assert_eq!(predicate.matches("hostname@").count(), 1, "{predicate}");
    assert_eq!(predicate.matches("time@").count(), 2, "{predicate}");

    // A time range outside a file's range never opens it.
    let plan = explain(
        &server,
        "SELECT count(*) FROM cpu WHERE time >= '2016-01-01T04:00:00Z'",
    )
    .await;
    assert_eq!(files_in(&plan).len(), 1, "{plan}");
    let none = explain(
        &server,
        "SELECT count(*) FROM cpu WHERE time >= '2017-01-01T00:00:00Z'",
    )
    .await;
    assert!(files_in(&none).is_empty(), "{none}");
}

/// A server holding 100 TSBS hosts × 6 hours in one flushed file: 216,000
/// rows, ~27 pages of 8,192 per column.
async fn hundred_hosts_in_one_file() -> (Server, Tsbs) {
    let server = Server::start(&[]);
    let tsbs = Tsbs::new(100);
    for hour in 0..6 {
        server
            .write_ok("fleet", &tsbs.body(hour * 360, hour * 360 + 360))
            .await;
    }
    server.flush().await;
    (server, tsbs)
}

/// A query that reads a few pages runs in one partition (no
/// `RepartitionExec`, one aggregate); one that reads the table keeps a
/// partition per core. The size is what the page index leaves, once the
/// file's metadata is cached: one host over the whole time range is small
/// though its time range alone is the whole table.
#[tokio::test]
async fn a_query_of_a_few_pages_runs_in_one_partition() {
    let (server, _) = hundred_hosts_in_one_file().await;
    let big = "SELECT hostname, max(usage_user) FROM cpu GROUP BY hostname";
    let plan = explain(&server, big).await;
    assert_eq!(server.sql("fleet", big).await.len(), 100);
    if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        assert!(plan.contains("RepartitionExec"), "{plan}");
    }
    let small = "SELECT date_bin(INTERVAL '1 hour', time) AS hour, max(usage_user), count(*) \
                 FROM cpu WHERE hostname = 'host_7' GROUP BY hour ORDER BY hour";
    let plan = explain(&server, small).await;
    assert!(!plan.contains("RepartitionExec"), "{plan}");
    assert!(plan.contains("AggregateExec: mode=Single"), "{plan}");
    let rows = server.sql("fleet", small).await;
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(rows.iter().all(|r| r["count(*)"] == 360), "{rows:?}");
}

/// A small query reads each file by the access plan its size estimate
/// worked out (the row groups and pages the statistics leave), without
/// pruning it again, and does not open a file that plan rules out whole.
#[tokio::test]
async fn a_small_query_does_not_open_a_file_its_estimate_rules_out() {
    let server = Server::start(&[]);
    let tsbs = Tsbs::new(20);
    // Hours 0-3 of twenty TSBS hosts in one file; hours 3-6 of twenty
    // other hosts, whose names sort after theirs, in another.
    server.write_ok("fleet", &tsbs.body(0, 1080)).await;
    server.flush().await;
    let other: String = (1080..2160)
        .flat_map(|e| (0..20).map(move |h| (h, e)))
        .map(|(h, e)| {
            format!(
                "cpu,hostname=zz_{h} usage_user={}i {}\n",
                e % 100,
                tsbs.time(e)
            )
        })
        .collect();
    server.write_ok("fleet", &other).await;
    server.flush().await;
    for (host, epochs) in [("host_7", 0..1080), ("zz_7", 1080..2160)] {
        let sql = format!(
            "SELECT count(*) AS n, sum(usage_user) AS total FROM cpu WHERE hostname = '{host}'"
        );
        // The first query caches the files' metadata, which the estimate reads.
        let rows = server.sql("fleet", &sql).await;
        let total: i64 = if host == "host_7" {
            epochs.clone().map(|e| tsbs.value(7, e, 0)).sum()
        } else {
            epochs.clone().map(|e| (e % 100) as i64).sum()
        };
        assert_eq!(rows, vec![serde_json::json!({"n": 1080, "total": total})]);
        let plan = explain(&server, &sql).await;
        assert_eq!(files_in(&plan).len(), 1, "{plan}");
        assert_eq!(server.sql("fleet", &sql).await, rows);
    }
    // Both files when both hold the host's rows: a filter the estimate
    // cannot use (a function of the tag) leaves every file to the scan.
    let both = "SELECT count(*) AS n FROM cpu WHERE upper(hostname) IN ('HOST_7', 'ZZ_7')";
    let plan = explain(&server, both).await;
    assert_eq!(files_in(&plan).len(), 2, "{plan}");
    assert_eq!(
        server.sql("fleet", both).await,
        vec![serde_json::json!({"n": 2160})]
    );
}

/// Equality filters on a tag — `IN`, `=` and `OR`s of them — narrow a
/// file to the pages whose bounds hold one of the values
/// (`fleetlake_query::tag_pages`), so a few hosts of a hundred are a small
/// query, a host in no page opens no file, and the answers are exact.
#[tokio::test]
async fn a_few_hosts_by_in_or_and_equality_read_only_their_pages() {
    let (server, tsbs) = hundred_hosts_in_one_file().await;
    // In the answer's order: by name.
    let hosts = [42_usize, 7, 99];
    let expected: Vec<serde_json::Value> = hosts
        .iter()
        .map(|&h| {
            let total: i64 = (0..2160).map(|e| tsbs.value(h, e, 0)).sum();
            serde_json::json!({"hostname": format!("host_{h}"), "n": 2160, "total": total})
        })
        .collect();
    let select = "SELECT hostname, count(*) AS n, sum(usage_user) AS total FROM cpu WHERE";
    let group = "GROUP BY hostname ORDER BY hostname";
    // The first query caches the file's metadata, which the estimate reads.
    server.sql("fleet", "SELECT count(*) FROM cpu").await;
    for filter in [
        "hostname IN ('host_7', 'host_42', 'host_99', 'host_7')",
        "(hostname = 'host_7' OR hostname = 'host_42' OR 'host_99' = hostname)",
        "hostname IN ('host_7', 'host_42', 'host_99') AND usage_user >= 0",
    ] {
        let sql = format!("{select} {filter} {group}");
        let rows = server.sql("fleet", &sql).await;
        assert_eq!(rows, expected, "{sql}");
        let plan = explain(&server, &sql).await;
        assert!(!plan.contains("RepartitionExec"), "{sql}\n{plan}");
        assert!(plan.contains("AggregateExec: mode=Single"), "{sql}\n{plan}");
    }
    // The same hosts through a filter no pruning reads agree.
    let unpruned = format!("{select} hostname || '' IN ('host_7', 'host_42', 'host_99') {group}");
    assert_eq!(server.sql("fleet", &unpruned).await, expected);
    // A host in no page: the file is not opened.
    let none = "SELECT count(*) AS n FROM cpu WHERE hostname IN ('host_nope', 'zz')";
    assert_eq!(
        server.sql("fleet", none).await,
        vec![serde_json::json!({"n": 0})]
    );
    let plan = explain(&server, none).await;
    assert!(files_in(&plan).is_empty(), "{plan}");
}

/// `min` and `max` of a sparse field beside dense ones: DataFusion's
/// dynamic filter for them once dropped the rows that held the sparse
/// field's only value (see `without_aggregate_dynamic_filters`).
#[tokio::test]
async fn min_and_max_of_a_sparse_field_beside_dense_ones() {
    let server = Server::start(&[]);
    let day = 86_400_000_000_000_i64;
    let start = 1_451_606_400_000_000_000_i64;
    let mut body = String::new();
    // Four days of the dense field, its bounds met at once; then, on a
    // fifth day (the smallest file, opened last, after a whole day's file
    // has been aggregated), the sparse field's one value beside a dense
    // value inside those bounds.
    for d in 0..4 {
        for i in 0..20_000_i64 {
            let u = if i % 2 == 0 { 0 } else { 100 };
            body.push_str(&format!(
                "m,host=a u={u}i {}\n",
                start + d * day + i * 1_000_000_000
            ));
        }
    }
    body.push_str(&format!("m,host=a u=50i,sparse=2.5 {}\n", start + 4 * day));
    server.write_ok("fleet", &body).await;
    server.flush().await;
    // Only `min` and `max`: any other aggregate turns the filter off.
    let sql = "SELECT min(u) AS lo, max(u) AS hi, min(sparse) AS slo, max(sparse) AS shi FROM m";
    for _ in 0..3 {
        let rows = server.sql("fleet", sql).await;
        assert_eq!(
            rows,
            vec![serde_json::json!({"lo": 0, "hi": 100, "slo": 2.5, "shi": 2.5})],
        );
    }
}

/// Every SQL answer says where its time went before the first row, as an
/// HTTP `Server-Timing` header (planning, optimizing, physical planning).
#[tokio::test]
async fn a_query_answer_times_its_planning_phases() {
    let server = Server::start(&[]);
    server.write_ok("fleet", &Tsbs::new(2).body(0, 10)).await;
    let r = server
        .client()
        .get(format!("{}/api/v1/sql", server.url))
        .query(&[("q", "SELECT count(*) FROM cpu WHERE hostname = 'host_1'")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let timing = r
        .headers()
        .get("server-timing")
        .expect("a Server-Timing header")
        .to_str()
        .unwrap()
        .to_string();
    let phases: Vec<(&str, f64)> = timing
        .split(", ")
        .map(|p| {
            let (name, dur) = p.split_once(";dur=").expect("name;dur=ms");
            // `plan` says where the plan came from: `;desc=miss` here.
            let dur = dur.split(';').next().unwrap();
            (name, dur.parse().expect("milliseconds"))
        })
        .collect();
    assert_eq!(
        phases.iter().map(|p| p.0).collect::<Vec<_>>(),
        ["session", "plan", "optimize", "physical", "first_batch"],
        "{timing}"
    );
    // EXPLAIN ANALYZE ends with the same phases, as a row of its own.
    let rows = server
        .sql(
            "fleet",
            "EXPLAIN ANALYZE SELECT count(*) FROM cpu WHERE hostname = 'host_1'",
        )
        .await;
    let last = rows.last().expect("rows");
    assert_eq!(last["plan_type"], "Query Phases", "{rows:?}");
    let text = last["plan"].as_str().unwrap();
    for phase in [
        "session;dur=",
        "plan;dur=",
        "optimize;dur=",
        "physical;dur=",
    ] {
        assert!(text.contains(phase), "{text}");
    }
    let first_batch = phases[4].1;
    let planning: f64 = phases[..4].iter().map(|p| p.1).sum();
    assert!(first_batch >= planning - 0.01, "{timing}");
    assert!(phases.iter().all(|p| p.1 >= 0.0), "{timing}");
    assert!(phases.iter().any(|p| p.1 > 0.0), "{timing}");
    assert!(
        timing.contains("plan;dur=") && timing.contains(";desc=miss"),
        "{timing}"
    );
    assert_eq!(r.text().await.unwrap(), "[{\"count(*)\":10}]");
    // And summed by phase on /metrics, each under its own name.
    let m = server.metrics().await;
    let physical = "fleetlake_query_phase_seconds_sum{phase=\"physical\"} ";
    let physical: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix(physical))
        .unwrap_or_else(|| panic!("{physical}in {m}"))
        .parse()
        .unwrap();
    assert!(physical > 0.0, "{m}");
    for phase in ["session", "plan", "optimize", "physical"] {
        let count = format!("fleetlake_query_phase_seconds_count{{phase=\"{phase}\"}} ");
        let n: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix(&count))
            .unwrap_or_else(|| panic!("{count}in {m}"))
            .parse()
            .unwrap();
        assert!(n >= 1, "{m}");
    }
}

/// `usage_user > 90.0` over an integer field compares integers (no cast of
/// every row to a float), with the answer of the cast: a whole literal only.
#[tokio::test]
async fn integer_fields_compare_with_whole_floats_without_a_cast() {
    let server = Server::start(&[]);
    let hosts = 20;
    let tsbs = Tsbs::new(hosts);
    server.write_ok("fleet", &tsbs.body(0, 360)).await;
    server.flush().await;
    let count = |pred: &dyn Fn(i64) -> bool| {
        (0..360)
            .flat_map(|e| (0..hosts).map(move |h| (h, e)))
            .filter(|&(h, e)| pred(tsbs.value(h, e, 0)))
            .count() as i64
    };
    for (cmp, expected, cast) in [
        ("usage_user > 90.0", count(&|v| v > 90), false),
        ("usage_user <= 90.0", count(&|v| v <= 90), false),
        ("90.0 = usage_user", count(&|v| v == 90), false),
        ("usage_user <> 7.0", count(&|v| v != 7), false),
        ("usage_user > 90.5", count(&|v| v > 90), true),
    ] {
        let sql = format!("SELECT count(*) FROM cpu WHERE {cmp}");
        assert_eq!(server.sql_i64("fleet", &sql).await, expected, "{sql}");
        let plan = explain(&server, &sql).await;
        let predicate = plan
            .split("predicate=")
            .nth(1)
            .unwrap_or_else(|| panic!("no predicate in {plan}"));
        assert_eq!(
            predicate.contains("CAST(usage_user"),
            cast,
            "{sql}: {predicate}"
        );
    }
}
