//! Every table is a Delta Lake table: the `deltalake` Python package (delta-rs,
//! from PyPI; `scripts/test` installs it) reads each compacted day once,
//! follows deletes and schema changes, travels in time, and after `kill -9`
//! at each point between our commit and the Delta commit reads what the
//! server answers.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Server, Tsbs};

/// Background compaction off (tests trigger it); removed files kept an
/// hour, so older Delta versions stay readable.
const ARGS: [&str; 6] = [
    "--compaction-interval",
    "0",
    "--gc-grace",
    "1h",
    "--compaction-target-rows",
    "500",
];

/// Reads a Delta table (at a version, if given) and prints its rows.
const READ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/delta_read.py");

const CRASH_ARGS: [&str; 4] = ["--compaction-interval", "0", "--gc-grace", "0s"];

fn read_delta(server: &Server, table: &str, version: Option<u64>) -> Value {
    let uri = server.data_dir.join("store/fleet").join(table);
    read_delta_at(uri.to_str().unwrap(), version, None)
}

/// Reads the Delta table at `uri` (a directory, or `s3://…` with
/// `storage_options`) with delta-rs: `{"error"}` when there is none, else
/// its version, columns, types and rows (hostname, time µs, usage_user,
/// usage_new, day) sorted.
pub fn read_delta_at(uri: &str, version: Option<u64>, storage_options: Option<&Value>) -> Value {
    let mut cmd = Command::new("python3");
    cmd.args([READ, uri]);
    cmd.arg(version.map(|v| v.to_string()).unwrap_or_default());
    if let Some(o) = storage_options {
        cmd.arg(o.to_string());
    }
    let out = cmd
        .output()
        .expect("python3 runs (scripts/test installs deltalake from PyPI)");
    assert!(
        out.status.success(),
        "reading the Delta table failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// The server's rows in the reader's shape: hostname, time (µs),
/// usage_user, usage_new, day.
async fn ours(server: &Server, with_new: bool) -> Vec<Value> {
    let new = if with_new { "usage_new" } else { "NULL" };
    let rows = server
        .sql(
            "fleet",
            &format!(
                "SELECT hostname, CAST(time AS BIGINT) / 1000 AS t, usage_user, {new} AS n, \
                 to_char(time, '%Y-%m-%d') AS day FROM cpu ORDER BY hostname, t"
            ),
        )
        .await;
    rows.iter()
        .map(|r| {
            Value::Array(vec![
                r["hostname"].clone(),
                r["t"].clone(),
                r["usage_user"].clone(),
                r["n"].clone(),
                r["day"].clone(),
            ])
        })
        .collect()
}

/// Waits until the Delta table's rows are `want` (the publisher follows
/// the catalog in the background) and returns what the reader saw.
async fn until_rows(server: &Server, want: &[Value]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = read_delta(server, "cpu", None);
        if got["rows"].as_array().is_some_and(|r| r == want) {
            return got;
        }
        if Instant::now() > deadline {
            let rows = got["rows"].as_array().cloned().unwrap_or_default();
            let missing = want.iter().filter(|r| !rows.contains(r)).count();
            let extra = rows.iter().filter(|r| !want.contains(r)).count();
            panic!(
                "the Delta table never showed the server's {} rows: it has {} ({missing} missing, {extra} not the server's); version {}, error {}",
                want.len(),
                rows.len(),
                got["version"],
                got["error"]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// Host `h`'s line at epoch `e` (the same series and time) with its
/// `usage_user` replaced by `fields`.
fn with_usage_user(tsbs: &Tsbs, h: usize, e: usize, fields: &str) -> String {
    let line = tsbs.line(h, e);
    let old = format!("usage_user={}i", tsbs.value(h, e, 0));
    assert!(line.contains(&old), "{line}");
    line.replacen(&old, fields, 1)
}

fn tsbs() -> Tsbs {
    Tsbs {
        // 23:50 on 2015-12-31: the rows span two day partitions.
        start_ns: 1_451_605_800_000_000_000,
        ..Tsbs::new(5)
    }
}

#[tokio::test]
async fn delta_readers_see_each_compacted_day_once() {
    // A checkpoint every two versions: readers start from one.
    let mut args = ARGS.to_vec();
    args.extend(["--delta-checkpoint-every", "2"]);
    let server = Server::start(&args);
    let tsbs = tsbs();
    // One flush: one file per day, which holds each row once: published.
    server.write_ok("fleet", &tsbs.body(0, 90)).await;
    server.flush().await;
    let first = ours(&server, false).await;
    assert_eq!(first.len(), 5 * 90);
    until_rows(&server, &first).await;
    // A second flush with a retried batch and an overwrite of one row: two
    // flush files per day may hold a row twice, so readers keep the first
    // state until compaction.
    server.write_ok("fleet", &tsbs.body(90, 120)).await;
    server.write_ok("fleet", &tsbs.body(80, 90)).await;
    let t = tsbs.time(100);
    server
        .write_ok("fleet", &with_usage_user(&tsbs, 2, 100, "usage_user=1000i"))
        .await;
    server.flush().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stale = read_delta(&server, "cpu", None);
    assert_eq!(stale["rows"].as_array().unwrap(), &first);
    let m = server.metrics().await;
    assert!(
        metric(&m, "fleetlake_delta_unpublished_files") >= 1.0,
        "{m}"
    );
    assert!(metric(&m, "fleetlake_delta_lag_seconds") > 0.0, "{m}");

    server.admin("compact").await;
    let want = ours(&server, false).await;
    assert_eq!(want.len(), 5 * 120);
    let got = until_rows(&server, &want).await;
    let overwritten = want
        .iter()
        .find(|r| r[0] == "host_2" && r[1] == t / 1000)
        .expect("the overwritten row");
    assert_eq!(overwritten[2], 1000);
    let cols: Vec<&str> = got["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cols.last(), Some(&"day"), "{cols:?}");
    assert!(
        cols.contains(&"time") && cols.contains(&"hostname"),
        "{cols:?}"
    );
    let types = got["types"].as_array().unwrap();
    assert_eq!(
        types[cols.iter().position(|c| *c == "time").unwrap()],
        "timestamp[us, tz=UTC]"
    );
    assert_eq!(
        types[cols.iter().position(|c| *c == "day").unwrap()],
        "date32[day]"
    );
    let m = server.metrics().await;
    assert_eq!(metric(&m, "fleetlake_delta_unpublished_files"), 0.0, "{m}");
    assert_eq!(metric(&m, "fleetlake_delta_lag_seconds"), 0.0, "{m}");
    let compacted = got["version"].as_u64().unwrap();

    // A new field, then a delete: neither shows until compaction has
    // applied it, then both do.
    let t2 = tsbs.time(110);
    server
        .write_ok(
            "fleet",
            &with_usage_user(&tsbs, 1, 110, "usage_user=7i,usage_new=2.5"),
        )
        .await;
    server.flush().await;
    let (status, body) = server
        .sql_raw(
            "fleet",
            &format!(
                "DELETE FROM cpu WHERE hostname = 'host_3' AND time >= '{}'",
                chrono::DateTime::from_timestamp_nanos(tsbs.time(60)).to_rfc3339()
            ),
            "json",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stale = read_delta(&server, "cpu", None);
    assert_eq!(
        stale["rows"].as_array().unwrap(),
        &want,
        "a pending change showed early"
    );
    server.admin("compact").await;
    let want2 = ours(&server, true).await;
    assert!(want2.len() < want.len());
    assert!(
        !want2
            .iter()
            .any(|r| r[0] == "host_3" && r[1].as_i64() >= Some(tsbs.time(60) / 1000))
    );
    let got2 = until_rows(&server, &want2).await;
    assert!(
        got2["columns"]
            .as_array()
            .unwrap()
            .contains(&Value::from("usage_new"))
    );
    let new_row = want2
        .iter()
        .find(|r| r[0] == "host_1" && r[1] == t2 / 1000)
        .unwrap();
    assert_eq!(new_row[3], 2.5);

    let log = server.data_dir.join("store/fleet/cpu/_delta_log");
    let last: Value =
        serde_json::from_slice(&std::fs::read(log.join("_last_checkpoint")).unwrap()).unwrap();
    let v = last["version"].as_u64().unwrap();
    assert!(v >= 2 && v.is_multiple_of(2), "{last}");
    assert!(log.join(format!("{v:020}.checkpoint.parquet")).exists());

    // Each live file's statistics bound its columns, so over the table
    // they are the table's own bounds.
    let mut live: std::collections::BTreeMap<String, Value> = Default::default();
    let mut commits: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    commits.sort();
    for c in commits {
        for line in std::fs::read_to_string(c).unwrap().lines() {
            let action: Value = serde_json::from_str(line).unwrap();
            if let Some(add) = action.get("add") {
                let stats = serde_json::from_str(add["stats"].as_str().unwrap()).unwrap();
                live.insert(add["path"].as_str().unwrap().to_string(), stats);
            }
            if let Some(remove) = action.get("remove") {
                live.remove(remove["path"].as_str().unwrap());
            }
        }
    }
    assert!(!live.is_empty());
    let bounds = |side: &str, col: &str| -> Vec<Value> {
        live.values()
            .map(|s| s[side][col].clone())
            .inspect(|v| assert!(!v.is_null(), "{side} of {col} missing: {live:?}"))
            .collect()
    };
    let table = &server
        .sql(
            "fleet",
            "SELECT min(usage_user) AS lo, max(usage_user) AS hi, min(hostname) AS hlo, \
             max(hostname) AS hhi, min(usage_new) AS nlo, max(usage_new) AS nhi FROM cpu",
        )
        .await[0];
    if table["nlo"].is_null() {
        for q in [
            "SELECT hostname, time, usage_new FROM cpu WHERE usage_new IS NOT NULL",
            "SELECT count(usage_new) AS c, min(usage_new) AS m FROM cpu",
            "SELECT min(usage_new) AS m FROM cpu",
            "EXPLAIN SELECT min(usage_new) AS m FROM cpu",
        ] {
            eprintln!("{q}: {:?}", server.sql("fleet", q).await);
        }
    }
    let ints = |side, col| {
        bounds(side, col)
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    let strs = |side, col| {
        bounds(side, col)
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let floats = |side, col| {
        live.values()
            .filter_map(|s| s[side][col].as_f64())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ints("minValues", "usage_user").into_iter().min(),
        table["lo"].as_i64()
    );
    assert_eq!(
        ints("maxValues", "usage_user").into_iter().max(),
        table["hi"].as_i64()
    );
    assert_eq!(
        strs("minValues", "hostname").into_iter().min().as_deref(),
        table["hlo"].as_str()
    );
    assert_eq!(
        strs("maxValues", "hostname").into_iter().max().as_deref(),
        table["hhi"].as_str()
    );
    // `usage_new` has one value; files without it count it NULL.
    assert_eq!(
        floats("minValues", "usage_new"),
        vec![table["nlo"].as_f64().unwrap_or_else(|| panic!("{table}"))]
    );
    assert_eq!(
        floats("maxValues", "usage_new"),
        vec![table["nhi"].as_f64().unwrap()]
    );
    let rows: u64 = live
        .values()
        .map(|s| s["numRecords"].as_u64().unwrap())
        .sum();
    let nulls: u64 = live
        .values()
        .map(|s| {
            s["nullCount"]["usage_new"]
                .as_u64()
                .unwrap_or(s["numRecords"].as_u64().unwrap())
        })
        .sum();
    assert_eq!(nulls, rows - 1, "{live:?}");

    // Time travel: the version of the first compaction still reads as it was.
    let old = read_delta(&server, "cpu", Some(compacted));
    assert_eq!(old["rows"].as_array().unwrap(), &want);

    // Retention drops the files whose rows all expired (these are from
    // 2016): the Delta table drops them too.
    let r = server
        .client()
        .put(format!("{}/api/v1/retention", server.url))
        .body(r#"{"db": "fleet", "table": "cpu", "ttl": "30d"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    server.admin("compact").await;
    assert_eq!(server.sql_i64("fleet", "SELECT count(*) FROM cpu").await, 0);
    let dropped = until_rows(&server, &[]).await;
    assert!(
        dropped["version"].as_u64() > got2["version"].as_u64(),
        "{dropped}"
    );
}

/// Reads `kill -9` at each point between a catalog commit and the Delta
/// commit that follows it: after a restart the table reads as the server
/// answers, each row once.
#[tokio::test]
async fn a_crash_between_the_catalog_and_the_delta_log_is_repaired_at_start() {
    let tsbs = tsbs();
    for fault in [
        "delta:before_commit",
        "delta:after_commit",
        "compaction:after_commit",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut server =
            Server::start_with_env(tmp.path(), &CRASH_ARGS, &[("FLEETLAKE_FAULT", fault)]);
        // Each request may be the one the server dies in.
        let client = server.client();
        let url = server.url.clone();
        for (from, to) in [(0, 70), (70, 120)] {
            let _ = client
                .post(format!("{url}/api/v3/write_lp?db=fleet"))
                .body(tsbs.body(from, to))
                .send()
                .await;
            let _ = client
                .post(format!("{url}/api/v1/admin/flush"))
                .send()
                .await;
        }
        let _ = client
            .post(format!("{url}/api/v1/admin/compact"))
            .send()
            .await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.liveness().starts_with("running") {
            assert!(
                Instant::now() < deadline,
                "{fault}: the server never reached the fault"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.kill9();
        // No garbage collection grace: were the Delta log repaired after
        // start-up's collection, it would list deleted files.
        let server = Server::start_in(tmp.path(), &CRASH_ARGS);
        // Repaired at start, before anything new is written: the table
        // reads (no file it lists is gone), holds what was flushed before
        // the crash, each row once, and nothing the server does not answer
        // (the server may answer more: rows replayed from its WAL).
        let now = ours(&server, false).await;
        let got = read_delta(&server, "cpu", None);
        let rows = got["rows"]
            .as_array()
            .unwrap_or_else(|| panic!("{fault}: {got}"));
        assert!(
            !rows.is_empty(),
            "{fault}: nothing published after the restart"
        );
        let mut seen = std::collections::HashSet::new();
        for r in rows {
            assert!(
                seen.insert((r[0].clone(), r[1].clone())),
                "{fault}: {r} twice"
            );
            assert!(now.contains(r), "{fault}: {r} is not the server's");
        }
        // And it keeps following: everything again (idempotent), compacted.
        server.write_ok("fleet", &tsbs.body(0, 120)).await;
        server.flush().await;
        server.admin("compact").await;
        let want = ours(&server, false).await;
        assert_eq!(want.len(), 5 * 120, "{fault}: rows after restart");
        until_rows(&server, &want).await;
    }
}
