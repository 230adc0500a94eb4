//! Compaction: flush files merge into sorted runs with every answer unchanged;
//! `kill -9` at each fault point leaves every row exactly once; the next
//! start deletes what a crash left behind.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::common::{Server, Tsbs};

/// Background compaction off (tests trigger it), no grace period, small
/// output files so a merge writes several.
const ARGS: [&str; 6] = [
    "--compaction-interval",
    "0",
    "--gc-grace",
    "0s",
    "--compaction-target-rows",
    "500",
];

/// Parquet files under the store directory.
fn parquet_files(dir: &Path) -> usize {
    fn walk(p: &Path, n: &mut usize) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, n);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(&dir.join("store"), &mut n);
    n
}

async fn catalog_files(server: &Server) -> i64 {
    server
        .sql_i64("fleet", "SELECT CAST(count(*) AS BIGINT) FROM system.files")
        .await
}

const ANSWERS: [&str; 5] = [
    "SELECT * FROM cpu ORDER BY hostname, time",
    "SELECT count(*) AS n FROM cpu",
    "SELECT hostname, max(usage_user) AS m, sum(usage_idle) AS s FROM cpu GROUP BY hostname ORDER BY hostname",
    "SELECT date_bin(INTERVAL '1 minute', time) AS t, avg(usage_system) AS a FROM cpu WHERE hostname = 'host_3' GROUP BY t ORDER BY t",
    "SELECT count(*) AS n FROM cpu WHERE usage_user > 50",
];

async fn answers(server: &Server) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for q in ANSWERS {
        out.push(server.sql("fleet", q).await);
    }
    out
}

#[tokio::test]
async fn compaction_keeps_every_answer_and_deletes_replaced_files() {
    let server = Server::start(&ARGS);
    let tsbs = Tsbs::new(20);
    // Five flushes cut mid-epoch, a retried batch, and an overwrite of one
    // field of rows already persisted.
    let lines: Vec<String> = tsbs.body(0, 60).lines().map(|l| format!("{l}\n")).collect();
    for chunk in lines.chunks(250) {
        server.write_ok("fleet", &chunk.concat()).await;
        server.flush().await;
    }
    server.write_ok("fleet", &tsbs.body(10, 20)).await;
    server.flush().await;
    server
        .write_ok(
            "fleet",
            &format!("cpu,hostname=host_3,region=us-east-1,datacenter=us-east-1a,rack=3,os=Ubuntu16.04LTS,arch=x64,team=SF,service=3,service_version=1,service_environment=production usage_user=99i {}\n", tsbs.time(5)),
        )
        .await;
    server.flush().await;
    let before = answers(&server).await;
    let files_before = catalog_files(&server).await;
    assert!(files_before >= 6, "{files_before}");

    let report = server.admin("compact").await;
    let runs = report["compactions"].as_array().expect("compactions");
    assert_eq!(runs.len(), 1, "{report}");
    assert_eq!(runs[0]["input_files"].as_i64(), Some(files_before));
    assert_eq!(runs[0]["output_rows"].as_i64(), Some(20 * 60));
    // 1,200 rows in files of about 500, cut at series boundaries (60 rows).
    assert_eq!(runs[0]["output_files"].as_i64(), Some(3), "{report}");
    assert_eq!(answers(&server).await, before);
    assert_eq!(catalog_files(&server).await, 3);
    // Grace 0: the replaced files are gone from disk too.
    assert_eq!(parquet_files(&server.data_dir), 3);

    // The run's files hold disjoint series, so no scan de-duplicates them.
    let plan = server.plan("fleet", "EXPLAIN SELECT * FROM cpu").await;
    assert!(!plan.contains("DedupExec"), "{plan}");

    // Late data for the compacted day: answered with the run, then merged.
    server.write_ok("fleet", &tsbs.body(60, 61)).await;
    server.flush().await;
    assert_eq!(
        server.sql_i64("fleet", "SELECT count(*) FROM cpu").await,
        20 * 61
    );
    server.admin("compact").await;
    assert_eq!(
        server.sql_i64("fleet", "SELECT count(*) FROM cpu").await,
        20 * 61
    );

    let history = server
        .sql(
            "fleet",
            "SELECT input_files, output_rows, error FROM system.compactions ORDER BY started",
        )
        .await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1]["output_rows"].as_i64(), Some(20 * 61));
    assert!(history.iter().all(|h| h["error"].is_null()), "{history:?}");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("fleetlake_compactions_total 2"),
        "{metrics}"
    );
}

/// A merge cuts its output by hour as well as by series (the hours hold
/// more than half of the small target size each): each compacted file
/// holds one hour's rows, every answer is unchanged, and a query of the
/// newest minutes over every host reads only the newest hour's files
/// (before, every file of the run spanned the whole range).
#[tokio::test]
async fn compacted_files_hold_one_hour_each() {
    const HOUR: i64 = 3_600_000_000_000;
    let server = Server::start(&ARGS);
    // 20 hosts, a row a minute from 00:30 to 03:29: four hours touched,
    // the first and last in part.
    let tsbs = Tsbs {
        start_ns: Tsbs::new(20).start_ns + HOUR / 2,
        interval_ns: 60_000_000_000,
        ..Tsbs::new(20)
    };
    // Flushes cut across the hours.
    for (from, to) in [(0, 70), (70, 130), (130, 180)] {
        server.write_ok("fleet", &tsbs.body(from, to)).await;
        server.flush().await;
    }
    let before = answers(&server).await;
    server.admin("compact").await;
    assert_eq!(answers(&server).await, before);

    let files = server
        .sql(
            "fleet",
            "SELECT path, CAST(min_time AS BIGINT) AS lo, CAST(max_time AS BIGINT) AS hi, run \
             FROM system.files WHERE \"table\" = 'cpu'",
        )
        .await;
    let hour = |ns: i64| ns.div_euclid(HOUR);
    let mut hours = std::collections::BTreeSet::new();
    for f in &files {
        let (lo, hi) = (f["lo"].as_i64().unwrap(), f["hi"].as_i64().unwrap());
        assert_eq!(hour(lo), hour(hi), "a file spans hours: {f}");
        assert_eq!(f["run"], files[0]["run"], "one run: {files:?}");
        hours.insert(hour(lo));
    }
    assert_eq!(hours.len(), 4, "{files:?}");
    // 20 series of 60 rows in a full hour, cut past 500 rows at a series
    // boundary: more than one file per full hour.
    assert!(files.len() > 4, "{files:?}");

    // The newest five minutes over every host.
    let since = tsbs.time(175);
    let plan = server
        .plan(
            "fleet",
            &format!(
                "EXPLAIN SELECT max(usage_user) FROM cpu WHERE time >= to_timestamp_nanos({since})"
            ),
        )
        .await;
    for f in &files {
        let path = f["path"].as_str().unwrap();
        let newest = hour(f["hi"].as_i64().unwrap()) == hour(since);
        assert_eq!(plan.contains(path), newest, "{path} in {plan}");
    }
    assert_eq!(
        server
            .sql_i64(
                "fleet",
                &format!("SELECT count(*) FROM cpu WHERE time >= to_timestamp_nanos({since})")
            )
            .await,
        20 * 5
    );

    // A second merge (late rows of the first hour) keeps the cut.
    server.write_ok("fleet", &tsbs.body(0, 1)).await;
    server.flush().await;
    server.admin("compact").await;
    assert_eq!(answers(&server).await, before);
    let spans = server
        .sql(
            "fleet",
            "SELECT CAST(min_time AS BIGINT) AS lo, CAST(max_time AS BIGINT) AS hi FROM system.files",
        )
        .await;
    assert!(
        spans
            .iter()
            .all(|f| hour(f["lo"].as_i64().unwrap()) == hour(f["hi"].as_i64().unwrap())),
        "{spans:?}"
    );
}

/// Two dozen flush files of a day merge under a small memory limit: each
/// pass takes the oldest inputs that fit, none fails for memory, and the
/// passes end in one run with every answer unchanged.
#[tokio::test]
async fn many_flush_files_merge_within_a_small_memory_limit() {
    let server = Server::start(&[
        "--compaction-interval",
        "0",
        "--gc-grace",
        "0s",
        "--compaction-memory-limit",
        "67108864",
    ]);
    let tsbs = Tsbs::new(1000);
    for flush in 0..24 {
        server
            .write_ok("fleet", &tsbs.body(flush * 10, flush * 10 + 10))
            .await;
        server.flush().await;
    }
    let before = answers(&server).await;
    assert_eq!(catalog_files(&server).await, 24);
    // One request runs passes until one merges nothing.
    let report = server.admin("compact").await;
    let merges = report["compactions"].as_array().expect("compactions");
    for r in merges {
        assert!(r["error"].is_null(), "{report}");
        assert!(
            r["input_files"].as_i64() < Some(24),
            "fan-in not bounded: {report}"
        );
    }
    assert!(
        merges.len() >= 2,
        "one merge took everything: the limit did not bind: {report}"
    );
    let again = server.admin("compact").await;
    assert_eq!(again["compactions"], serde_json::json!([]), "{again}");
    let runs = server
        .sql_i64(
            "fleet",
            "SELECT count(DISTINCT run) FROM system.files WHERE \"table\" = 'cpu'",
        )
        .await;
    assert_eq!(runs, 1);
    assert_eq!(answers(&server).await, before);
    assert_eq!(
        server.sql_i64("fleet", "SELECT count(*) FROM cpu").await,
        1000 * 240
    );
}

/// Randomised mixes of writes, overwrites (some fields only) and flushes:
/// the table equals a last-write-wins model before and after compaction.
#[tokio::test]
async fn compaction_matches_a_last_write_wins_model() {
    for seed in 1..=4u64 {
        let server = Server::start(&ARGS);
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        // (host, t) → (a, b), the model.
        let mut model: BTreeMap<(u64, u64), (Option<i64>, Option<i64>)> = BTreeMap::new();
        for _op in 0..12 {
            let mut body = String::new();
            for _ in 0..(1 + next(40)) {
                let (h, t) = (next(6), next(30));
                let (a, b) = (next(1000) as i64, next(1000) as i64);
                let entry = model.entry((h, t)).or_default();
                match next(3) {
                    0 => {
                        body.push_str(&format!("m,host=h{h} a={a}i {t}\n"));
                        entry.0 = Some(a);
                    }
                    1 => {
                        body.push_str(&format!("m,host=h{h} b={b}i {t}\n"));
                        entry.1 = Some(b);
                    }
                    _ => {
                        body.push_str(&format!("m,host=h{h} a={a}i,b={b}i {t}\n"));
                        *entry = (Some(a), Some(b));
                    }
                }
            }
            server.write_ok("db", &body).await;
            if next(2) == 0 {
                server.flush().await;
            }
        }
        server.flush().await;
        let want: Vec<String> = model
            .iter()
            .map(|((h, t), (a, b))| format!("h{h} {t} {a:?} {b:?}"))
            .collect();
        let q = "SELECT host, CAST(time AS BIGINT) AS t, a, b FROM m ORDER BY host, time";
        let got = |rows: Vec<Value>| -> Vec<String> {
            rows.iter()
                .map(|r| {
                    format!(
                        "{} {} {:?} {:?}",
                        r["host"].as_str().unwrap(),
                        r["t"].as_i64().unwrap(),
                        r["a"].as_i64(),
                        r["b"].as_i64()
                    )
                })
                .collect()
        };
        assert_eq!(got(server.sql("db", q).await), want, "seed {seed}, before");
        server.admin("compact").await;
        assert_eq!(got(server.sql("db", q).await), want, "seed {seed}, after");
    }
}

/// `kill -9` at each point of a flush, a compaction and a garbage
/// collection: after a restart every row is there exactly once, and the
/// start deletes the files the crash orphaned.
#[tokio::test]
async fn kill9_at_every_fault_point() {
    let tsbs = Tsbs::new(10);
    for point in [
        "flush:before_commit",
        "compaction:mid_write",
        "compaction:before_commit",
        "compaction:after_commit",
        "gc:after_delete",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut server = Server::start_with_env(tmp.path(), &ARGS, &[("FLEETLAKE_FAULT", point)]);
        let is_flush = point.starts_with("flush");
        for b in 0..4 {
            server
                .write_ok("fleet", &tsbs.body(b * 30, b * 30 + 30))
                .await;
            if !is_flush {
                server.flush().await;
            }
        }
        let action = if is_flush { "flush" } else { "compact" };
        let r = server
            .client()
            .post(format!("{}/api/v1/admin/{action}", server.url))
            .send()
            .await;
        assert!(r.is_err(), "{point}: the server should have died: {r:?}");
        server.kill9();

        let server = Server::start_in(tmp.path(), &ARGS);
        let n = server.sql_i64("fleet", "SELECT count(*) FROM cpu").await;
        assert_eq!(n, 10 * 120, "{point}: rows after restart");
        let distinct = server
            .sql_i64(
                "fleet",
                "SELECT count(*) FROM (SELECT DISTINCT hostname, time FROM cpu)",
            )
            .await;
        assert_eq!(distinct, n, "{point}: an identity appears twice");
        let sum = server
            .sql_i64("fleet", "SELECT CAST(sum(usage_user) AS BIGINT) FROM cpu")
            .await;
        let want: i64 = (0..10)
            .flat_map(|h| (0..120).map(move |e| (h, e)))
            .map(|(h, e)| tsbs.value(h, e, 0))
            .sum();
        assert_eq!(sum, want, "{point}: values after restart");
        // Nothing orphaned survives the start; a compaction now completes and
        // its grace-0 GC deletes whatever the crash left removed.
        server.flush().await;
        server.admin("compact").await;
        assert_eq!(
            parquet_files(tmp.path()) as i64,
            catalog_files(&server).await,
            "{point}: files on disk vs catalog"
        );
        assert_eq!(server.sql_i64("fleet", "SELECT count(*) FROM cpu").await, n);
    }
}

/// Every file under `dir`, by path relative to it, with its size.
fn files_under(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, p: &Path, out: &mut BTreeMap<String, u64>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(m) = e.metadata() {
                let rel = path.strip_prefix(root).expect("under root");
                out.insert(rel.to_string_lossy().into_owned(), m.len());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// With the default settings a replaced file goes as soon as no query reads
/// it, and not before: a query still streaming when its files are merged
/// away reads them to the end. After that only live data is left: the
/// Parquet files the catalog lists, their series files, the catalog, the
/// audit log, and a WAL with no record in it.
#[tokio::test]
async fn replaced_files_go_once_no_running_query_reads_them() {
    let server = Server::start(&["--compaction-interval", "0"]);
    let tsbs = Tsbs::new(20);
    for part in 0..10 {
        server
            .write_ok("fleet", &tsbs.body(part * 150, (part + 1) * 150))
            .await;
        server.flush().await;
    }
    assert_eq!(parquet_files(&server.data_dir), 10);

    // 30,000 rows of 2 KB: far more than the sockets buffer, so the server
    // stops reading files while the client does not read.
    let mut held = server
        .client()
        .post(format!("{}/api/v1/sql", server.url))
        .json(&serde_json::json!({
            "db": "fleet",
            "format": "csv",
            "sql": "SELECT hostname, time, repeat('x', 2000) AS pad FROM cpu",
        }))
        .send()
        .await
        .expect("the query starts");
    assert_eq!(held.status().as_u16(), 200);
    let first = held.chunk().await.expect("a chunk").expect("a first chunk");
    let mut lines = first.iter().filter(|&&b| b == b'\n').count();

    let report = server.admin("compact").await;
    assert_eq!(
        report["compactions"][0]["input_files"].as_i64(),
        Some(10),
        "{report}"
    );
    assert_eq!(
        report["removed_files_deleted"].as_i64(),
        Some(0),
        "{report}"
    );
    assert_eq!(catalog_files(&server).await, 1);
    assert_eq!(
        parquet_files(&server.data_dir),
        11,
        "the running query's snapshot keeps the ten replaced files"
    );

    while let Some(chunk) = held.chunk().await.expect("the rest of the answer") {
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
    }
    assert_eq!(
        lines,
        1 + 30_000,
        "the header and every row, read after the merge"
    );

    // The query is over: the next pass deletes what it kept.
    let report = server.admin("compact").await;
    assert_eq!(
        report["removed_files_deleted"].as_i64(),
        Some(10),
        "{report}"
    );
    assert_eq!(parquet_files(&server.data_dir), 1);
    let live: Vec<String> = server
        .sql("fleet", "SELECT path FROM system.files")
        .await
        .iter()
        .map(|r| r["path"].as_str().expect("path").to_string())
        .collect();
    for (path, bytes) in files_under(&server.data_dir.join("store")) {
        if let Some(data) = path.strip_prefix("_index/") {
            let data = data.strip_suffix(".series").expect("a series file");
            assert!(
                live.iter().any(|l| l == data),
                "series file of a dead file: {path}"
            );
        } else if path.ends_with(".parquet") {
            assert!(live.contains(&path), "{path} is not live");
        } else {
            // The catalog, the audit log of the admin calls above, and
            // the table's Delta log.
            assert!(
                path.starts_with("_catalog/")
                    || path.starts_with("_audit/")
                    || path.starts_with("fleet/cpu/_delta_log/"),
                "{path} ({bytes} bytes)"
            );
        }
    }
    let wal = files_under(&server.data_dir.join("wal"));
    let segments: Vec<_> = wal.iter().filter(|(p, _)| p.ends_with(".wal")).collect();
    assert_eq!(segments.len(), 1, "{wal:?}");
    assert_eq!(*segments[0].1, 0, "every record is persisted: {wal:?}");
    assert_eq!(
        server.sql_i64("fleet", "SELECT count(*) FROM cpu").await,
        30_000
    );
}
