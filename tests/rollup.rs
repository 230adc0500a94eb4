//! Rollups: the materialized tables equal direct aggregation over the raw
//! table — after the first pass, after late data (new rows, overwrites, new
//! series; flushed or still buffered), deletes of source rows, across a
//! restart, a crash between the commit and the progress record, and a
//! compaction of the target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Server;

/// 2016-01-01T00:00:00Z
const T0: i64 = 1_451_606_400_000_000_000;
const SEC: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SEC;
const HOUR: i64 = 60 * MINUTE;
/// Raw rows are compared up to here: later ones are too new to be closed.
const OLD: &str = "2017-01-01T00:00:00Z";

const ROLLUPS: &str = r#"
[[rollup]]
source = "cpu"
target = "cpu_1m"
every = "1m"

[[rollup]]
db = "fleet"
source = "cpu"
target = "cpu_1h"
every = "1h"
fields = ["usage", "n"]
"#;

/// The rollup file in a directory that outlives the servers using it.
fn rollup_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rollups.toml");
    std::fs::write(&path, text).expect("write rollup file");
    (dir, path)
}

fn args(file: &Path) -> Vec<String> {
    vec![
        "--compaction-interval".into(),
        "0".into(),
        "--rollups".into(),
        file.display().to_string(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn mix(h: u64, e: u64, salt: u64) -> u64 {
    let mut x = h.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ e.wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ salt.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^ (x >> 29)
}

/// One raw row: host `h` at epoch `e` (every 13 s, so minutes hold 4 or 5
/// rows and their averages do not average to the hour's). Host 3 has no
/// `region` (a NULL tag); every fifth row lacks `n`, so counts differ per
/// field and a bucket's last row may not hold its last `n`.
fn line(h: u64, e: u64) -> String {
    line_with(h, e, (mix(h, e, 1) % 100_000) as f64 / 7.0)
}

/// [`line`] with another `usage`: an overwrite of that row.
fn line_with(h: u64, e: u64, usage: f64) -> String {
    let tags = if h == 3 {
        format!("cpu,host=h{h}")
    } else {
        format!("cpu,host=h{h},region=r{}", h % 2)
    };
    let mut fields = format!("usage={usage}");
    if !(e + h).is_multiple_of(5) {
        fields.push_str(&format!(",n={}i", (mix(h, e, 2) % 2000) as i64 - 1000));
    }
    fields.push_str(&format!(",u={}u,status=\"ok\"", mix(h, e, 3) % 1000));
    format!("{tags} {fields} {}\n", T0 + e as i64 * 13 * SEC)
}

fn body(hosts: std::ops::Range<u64>, epochs: std::ops::Range<u64>) -> String {
    let mut s = String::new();
    for e in epochs {
        for h in hosts.clone() {
            s.push_str(&line(h, e));
        }
    }
    s
}

fn report<'a>(v: &'a Value, target: &str) -> &'a Value {
    v["rollups"]
        .as_array()
        .expect("rollups")
        .iter()
        .find(|r| r["target"] == target)
        .unwrap_or_else(|| panic!("no report for {target}: {v}"))
}

type Key = (Option<String>, Option<String>, i64);

fn key(row: &Value, t: i64) -> Key {
    let tag = |n: &str| row.get(n).and_then(Value::as_str).map(str::to_string);
    (tag("host"), tag("region"), t)
}

/// Aggregates of `fields` per series and bucket, computed here from the raw
/// rows: column name (`usage_min`, ...) → value.
async fn direct(
    server: &Server,
    every: i64,
    fields: &[&str],
) -> BTreeMap<Key, BTreeMap<String, Option<f64>>> {
    let raw = server
        .sql(
            "fleet",
            &format!(
                "SELECT host, region, CAST(time AS BIGINT) AS t, {} FROM cpu WHERE time < '{OLD}'",
                fields.join(", ")
            ),
        )
        .await;
    #[derive(Default)]
    struct Agg {
        min: Option<f64>,
        max: Option<f64>,
        sum: Option<f64>,
        count: u64,
        last: Option<(i64, f64)>,
    }
    let mut groups: BTreeMap<Key, BTreeMap<&str, Agg>> = BTreeMap::new();
    for row in &raw {
        let t = row["t"].as_i64().expect("t");
        let g = groups
            .entry(key(row, t.div_euclid(every) * every))
            .or_default();
        for f in fields {
            let a = g.entry(f).or_default();
            let Some(v) = row.get(*f).and_then(Value::as_f64) else {
                continue;
            };
            a.min = Some(a.min.map_or(v, |m| m.min(v)));
            a.max = Some(a.max.map_or(v, |m| m.max(v)));
            a.sum = Some(a.sum.unwrap_or(0.0) + v);
            a.count += 1;
            if a.last.is_none_or(|(lt, _)| t > lt) {
                a.last = Some((t, v));
            }
        }
    }
    groups
        .into_iter()
        .map(|(k, aggs)| {
            let mut cols = BTreeMap::new();
            for (f, a) in aggs {
                cols.insert(format!("{f}_min"), a.min);
                cols.insert(format!("{f}_max"), a.max);
                cols.insert(format!("{f}_sum"), a.sum);
                cols.insert(format!("{f}_count"), Some(a.count as f64));
                cols.insert(format!("{f}_last"), a.last.map(|(_, v)| v));
            }
            (k, cols)
        })
        .collect()
}

/// The rollup table, in the shape of [`direct`].
async fn materialized(
    server: &Server,
    target: &str,
    fields: &[&str],
) -> BTreeMap<Key, BTreeMap<String, Option<f64>>> {
    let rows = server
        .sql(
            "fleet",
            &format!("SELECT *, CAST(time AS BIGINT) AS t FROM {target} WHERE time < '{OLD}'"),
        )
        .await;
    let mut out = BTreeMap::new();
    for row in &rows {
        let k = key(row, row["t"].as_i64().expect("t"));
        let mut cols = BTreeMap::new();
        for f in fields {
            for a in ["min", "max", "sum", "count", "last"] {
                let c = format!("{f}_{a}");
                cols.insert(c.clone(), row.get(&c).and_then(Value::as_f64));
            }
        }
        assert!(
            out.insert(k.clone(), cols).is_none(),
            "{target}: two rows for {k:?}"
        );
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Every series and bucket of `target` holds exactly the min, max, sum,
/// count and last of the raw rows, and no other row exists.
async fn assert_matches_raw(server: &Server, target: &str, every: i64, fields: &[&str]) {
    let want = direct(server, every, fields).await;
    let got = materialized(server, target, fields).await;
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{target}: buckets missing {missing:?}, extra {extra:?}"
    );
    for (k, cols) in &want {
        for (c, w) in cols {
            let g = got[k][c];
            let same = match (w, g) {
                // Sums of floats differ in the order of addition only.
                (Some(w), Some(g)) if c.ends_with("_sum") => close(*w, g),
                _ => *w == g,
            };
            assert!(same, "{target} {k:?} {c}: raw {w:?}, rollup {g:?}");
        }
    }
    assert!(!want.is_empty());
}

/// Averages from the rollups are exact (sum / count), per hour and overall,
/// while an average of the per-minute averages is not.
async fn assert_exact_averages(server: &Server) {
    let per_hour = |sql: String| async move {
        let rows = server.sql("fleet", &sql).await;
        rows.iter()
            .map(|r| {
                let tag = |n: &str| r.get(n).and_then(Value::as_str).map(str::to_string);
                (
                    (tag("host"), tag("region"), r["h"].to_string()),
                    r["a"].as_f64().expect("a"),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    let group = "GROUP BY host, region, h";
    let hour = "date_bin(INTERVAL '1 hour', time) AS h";
    let raw = per_hour(format!(
        "SELECT host, region, {hour}, avg(usage) AS a FROM cpu WHERE time < '{OLD}' {group}"
    ))
    .await;
    let from_minutes = per_hour(format!(
        "SELECT host, region, {hour}, sum(usage_sum) / sum(usage_count) AS a FROM cpu_1m WHERE time < '{OLD}' {group}"
    ))
    .await;
    let from_hours = per_hour(format!(
        "SELECT host, region, {hour}, usage_sum / usage_count AS a FROM cpu_1h WHERE time < '{OLD}'"
    ))
    .await;
    let of_averages = per_hour(format!(
        "SELECT host, region, {hour}, avg(usage_sum / usage_count) AS a FROM cpu_1m WHERE time < '{OLD}' {group}"
    ))
    .await;
    assert_eq!(raw.len(), from_minutes.len());
    assert_eq!(raw.len(), from_hours.len());
    let mut averages_differ = false;
    for (k, a) in &raw {
        assert!(
            close(*a, from_minutes[k]),
            "{k:?}: avg {a}, from cpu_1m {}",
            from_minutes[k]
        );
        assert!(
            close(*a, from_hours[k]),
            "{k:?}: avg {a}, from cpu_1h {}",
            from_hours[k]
        );
        averages_differ |= !close(*a, of_averages[k]);
    }
    assert!(
        averages_differ,
        "the data should tell exact averages from averages of averages"
    );

    let integer_raw = server
        .sql(
            "fleet",
            &format!("SELECT avg(n) AS a FROM cpu WHERE time < '{OLD}'"),
        )
        .await;
    let integer_rollup = server
        .sql(
            "fleet",
            &format!(
                "SELECT CAST(sum(n_sum) AS DOUBLE) / sum(n_count) AS a FROM cpu_1h WHERE time < '{OLD}'"
            ),
        )
        .await;
    let (r, g) = (
        integer_raw[0]["a"].as_f64().expect("a"),
        integer_rollup[0]["a"].as_f64().expect("a"),
    );
    assert!(close(r, g), "avg(n) {r}, from cpu_1h {g}");
}

async fn assert_all(server: &Server) {
    assert_matches_raw(server, "cpu_1m", MINUTE, &["usage", "n", "u"]).await;
    assert_matches_raw(server, "cpu_1h", HOUR, &["usage", "n"]).await;
    assert_exact_averages(server).await;
}

fn n(v: &Value, target: &str, what: &str) -> i64 {
    report(v, target)[what]
        .as_i64()
        .unwrap_or_else(|| panic!("{target}.{what}: {v}"))
}

#[tokio::test]
async fn rollups_equal_direct_aggregation_through_late_data_restarts_and_compaction() {
    let (_cfg, file) = rollup_file(ROLLUPS);
    let args = args(&file);
    let mut server = Server::start(&strs(&args));
    // 2.5 hours of 4 hosts: the first 1.5 hours flushed in two files, the
    // rest still in the write buffer (rollups read it too).
    server.write_ok("fleet", &body(0..4, 0..200)).await;
    server.flush().await;
    server.write_ok("fleet", &body(0..4, 200..420)).await;
    server.flush().await;
    server.write_ok("fleet", &body(0..4, 420..692)).await;

    let first = server.admin("rollup").await;
    assert!(n(&first, "cpu_1m", "rows") > 0, "{first}");
    assert_eq!(n(&first, "cpu_1m", "late_buckets"), 0, "{first}");
    // Status is a string field: not rolled up. Unsigned sums stay unsigned.
    let columns = server
        .sql(
            "fleet",
            "SELECT \"column\", data_type FROM system.columns WHERE \"table\" = 'cpu_1m' ORDER BY \"column\"",
        )
        .await;
    let names: Vec<&str> = columns
        .iter()
        .map(|c| c["column"].as_str().unwrap())
        .collect();
    assert!(!names.iter().any(|c| c.starts_with("status")), "{names:?}");
    assert!(
        columns
            .iter()
            .any(|c| c["column"] == "u_sum" && c["data_type"] == "UInt64")
    );
    assert_all(&server).await;

    // Nothing new: a second run does nothing.
    let again = server.admin("rollup").await;
    assert_eq!(n(&again, "cpu_1m", "late_buckets"), 0, "{again}");
    assert_eq!(n(&again, "cpu_1m", "rows"), 0, "{again}");

    // Late data for closed, materialized buckets, then flushed: an overwrite
    // of a raw row, a row at a new time, a new series, and a row that lacks
    // `usage` at the latest time of its minute (its `usage_last` stays).
    let overwrite = line_with(1, 100, 99999.5);
    let late = format!(
        "{overwrite}\
         cpu,host=h2,region=r0 usage=-5.25,n=7i {}\n\
         cpu,host=h9,region=r1 usage=1.5,n=1i,u=3u {}\n\
         cpu,host=h0,region=r0 n=12345i {}\n",
        T0 + 30 * MINUTE + 59 * SEC,
        T0 + 90 * MINUTE,
        T0 + 10 * MINUTE + 59 * SEC,
    );
    server.write_ok("fleet", &late).await;
    server.flush().await;
    let after_late = server.admin("rollup").await;
    assert!(
        n(&after_late, "cpu_1m", "late_buckets") >= 4,
        "{after_late}"
    );
    assert!(
        n(&after_late, "cpu_1h", "late_buckets") >= 2,
        "{after_late}"
    );
    assert_all(&server).await;

    // Late data still in the write buffer counts as well.
    server.write_ok("fleet", &line_with(2, 300, -1e6)).await;
    let buffered = server.admin("rollup").await;
    assert_eq!(n(&buffered, "cpu_1m", "late_buckets"), 1, "{buffered}");
    assert_all(&server).await;

    // A bucket that has not closed yet (now, with an hour's buckets) is not materialized.
    server
        .write_ok("fleet", "cpu,host=h0,region=r0 usage=1,n=1i\n")
        .await;
    server.admin("rollup").await;
    let open = server
        .sql_i64(
            "fleet",
            &format!("SELECT count(*) FROM cpu_1h WHERE time >= '{OLD}'"),
        )
        .await;
    assert_eq!(open, 0);

    let history = server
        .sql(
            "fleet",
            "SELECT target, late_buckets, error FROM system.rollups",
        )
        .await;
    assert!(
        history
            .iter()
            .any(|r| r["target"] == "cpu_1h" && r["late_buckets"].as_i64() > Some(0))
    );
    assert!(history.iter().all(|r| r["error"].is_null()), "{history:?}");

    // A restart keeps the progress: the flush at shutdown holds only rows
    // the last run saw, so nothing is recomputed.
    assert!(server.terminate());
    let dir = server.take_dir().expect("data dir");
    let server = Server::start_in(dir.path(), &strs(&args));
    let restarted = server.admin("rollup").await;
    for target in ["cpu_1m", "cpu_1h"] {
        assert_eq!(n(&restarted, target, "late_buckets"), 0, "{restarted}");
    }
    assert_all(&server).await;

    // Compaction merges the target's versions of each bucket: the newest wins.
    server.admin("compact").await;
    assert_all(&server).await;
    let stored = server
        .sql_i64(
            "fleet",
            "SELECT CAST(sum(rows) AS BIGINT) FROM system.files WHERE \"table\" = 'cpu_1m'",
        )
        .await;
    let visible = server.sql_i64("fleet", "SELECT count(*) FROM cpu_1m").await;
    assert_eq!(
        stored, visible,
        "compacted rollup files hold each bucket once"
    );
}

/// Source rows `DELETE`d after their buckets were materialized leave the
/// rollups too: whole series-buckets vanish, partly deleted ones shrink —
/// whether the rollup pass sees the tombstone, or compaction applied and
/// dropped it before the pass ran.
#[tokio::test]
async fn rollups_follow_deletes_of_source_rows() {
    let (_cfg, file) = rollup_file(ROLLUPS);
    let args = args(&file);
    let server = Server::start(&strs(&args));
    // 91 minutes of 4 hosts, flushed.
    server.write_ok("fleet", &body(0..4, 0..420)).await;
    server.flush().await;
    server.admin("rollup").await;
    assert_all(&server).await;
    let h1 = "SELECT count(*) FROM cpu_1m WHERE host = 'h1' AND time >= '2016-01-01T00:10:00Z' AND time < '2016-01-01T00:30:00Z'";
    assert_eq!(server.sql_i64("fleet", h1).await, 20);

    let delete = |sql: &'static str| {
        let server = &server;
        async move {
            let (status, body) = server.sql_raw("fleet", sql, "json").await;
            assert_eq!(status, 200, "{sql}: {body}");
        }
    };
    // h1 loses minutes 10–29 whole and half of minute 30.
    delete("DELETE FROM cpu WHERE host = 'h1' AND time >= '2016-01-01T00:10:00Z' AND time < '2016-01-01T00:30:30Z'").await;
    let pass = server.admin("rollup").await;
    assert!(n(&pass, "cpu_1m", "late_buckets") >= 21, "{pass}");
    assert!(n(&pass, "cpu_1h", "late_buckets") >= 1, "{pass}");
    assert_eq!(server.sql_i64("fleet", h1).await, 0);
    assert_all(&server).await;
    // Nothing new since: nothing recomputed.
    let again = server.admin("rollup").await;
    assert_eq!(n(&again, "cpu_1m", "late_buckets"), 0, "{again}");

    // Every host loses 40:00–49:59; compaction makes it physical and drops
    // the tombstone before the next rollup pass.
    delete(
        "DELETE FROM cpu WHERE time >= '2016-01-01T00:40:00Z' AND time < '2016-01-01T00:50:00Z'",
    )
    .await;
    server.admin("compact").await;
    let pending =
        "SELECT CAST(pending_deletes AS BIGINT) FROM system.tables WHERE \"table\" = 'cpu'";
    assert_eq!(server.sql_i64("fleet", pending).await, 0);
    let pass = server.admin("rollup").await;
    assert!(n(&pass, "cpu_1m", "late_buckets") >= 10, "{pass}");
    let gone = "SELECT count(*) FROM cpu_1m WHERE time >= '2016-01-01T00:40:00Z' AND time < '2016-01-01T00:50:00Z'";
    assert_eq!(server.sql_i64("fleet", gone).await, 0);
    assert_all(&server).await;

    // Compacting the targets applies their own tombstones: still equal.
    server.admin("compact").await;
    assert_all(&server).await;
}

#[tokio::test]
async fn a_crash_between_commit_and_progress_recomputes_the_same_rows() {
    let (_cfg, file) = rollup_file(ROLLUPS);
    let args = args(&file);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start_with_env(
        tmp.path(),
        &strs(&args),
        &[("FLEETLAKE_FAULT", "rollup:after_commit")],
    );
    server.write_ok("fleet", &body(0..4, 0..300)).await;
    server.flush().await;
    let r = server
        .client()
        .post(format!("{}/api/v1/admin/rollup", server.url))
        .send()
        .await;
    assert!(
        r.is_err() || r.unwrap().status().as_u16() != 200,
        "the fault point aborts"
    );
    server.kill9();

    let server = Server::start_in(tmp.path(), &strs(&args));
    let rerun = server.admin("rollup").await;
    // The progress was lost: the buckets are computed again, identically.
    assert!(n(&rerun, "cpu_1m", "rows") > 0, "{rerun}");
    assert_all(&server).await;
}

/// Starts the server with `rollups` as its rollup file, expecting it to
/// refuse; returns what it printed.
fn refused_start(rollups: &str) -> String {
    let (cfg, file) = rollup_file(rollups);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetlake"))
        .args(["serve", "--http-bind", "127.0.0.1:0", "--data-dir"])
        .arg(cfg.path().join("data"))
        .arg("--rollups")
        .arg(&file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fleetlake");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(!status.success(), "a bad rollup file must stop the server");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started with a bad rollup file");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert!(err.contains("rollups.toml"), "names the file: {err}");
    assert!(
        !cfg.path().join("data").join("store").exists(),
        "nothing opened: {err}"
    );
    err
}

#[test]
fn a_bad_rollup_file_refuses_to_start_with_a_clear_message() {
    let err = refused_start("[[rollup]]\nsource = \"cpu\"\ntarget = \"cpu_1m\"\nevry = \"1m\"\n");
    assert!(err.contains("unknown field `evry`"), "{err}");
    assert!(err.contains("line 4"), "{err}");
    let err =
        refused_start("[[rollup]]\nsource = \"cpu\"\ntarget = \"cpu_1m\"\nevery = \"1 minute\"\n");
    assert!(err.contains("invalid duration"), "{err}");
    let err = refused_start("[[rollup]]\nsource = \"cpu\"\ntarget = \"cpu\"\nevery = \"1m\"\n");
    assert!(err.contains("target must differ from source"), "{err}");
}

#[tokio::test]
async fn the_background_loop_materializes_rollups() {
    let (_cfg, file) = rollup_file(ROLLUPS);
    let mut args = args(&file);
    args[1] = "1s".into();
    let server = Server::start(&strs(&args));
    server.write_ok("fleet", &body(0..4, 0..100)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, text) = server
            .sql_raw("fleet", "SELECT count(*) AS n FROM cpu_1h", "json")
            .await;
        if status == 200 && !text.contains("\"n\":0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rollup after a minute: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_all(&server).await;
}

/// The plan of `sql` as `EXPLAIN` shows it (logical and physical).
async fn explain(server: &Server, sql: &str) -> String {
    server.plan("fleet", &format!("EXPLAIN {sql}")).await
}

/// Per series and bucket of `width`, from `sql` (columns host, region, t
/// and the aggregates), in [`direct`]'s shape.
async fn aggregated(server: &Server, sql: &str) -> BTreeMap<Key, BTreeMap<String, Option<f64>>> {
    let rows = server.sql("fleet", sql).await;
    let mut out = BTreeMap::new();
    for row in &rows {
        let k = key(row, row["t"].as_i64().expect("t"));
        let cols = [
            "usage_min",
            "usage_max",
            "usage_sum",
            "n_sum",
            "n_count",
            "usage_avg",
            "n_avg",
        ]
        .iter()
        .map(|c| (c.to_string(), row.get(*c).and_then(Value::as_f64)))
        .collect();
        assert!(out.insert(k.clone(), cols).is_none(), "two rows for {k:?}");
    }
    out
}

fn aggregate_sql(width: &str, from: &str, to: &str, extra: &str) -> String {
    format!(
        "SELECT host, region, CAST(date_bin(INTERVAL '{width}', time) AS BIGINT) AS t, \
         min(usage) AS usage_min, max(usage) AS usage_max, sum(usage) AS usage_sum, \
         sum(n) AS n_sum, count(n) AS n_count, avg(usage) AS usage_avg, avg(n) AS n_avg \
         FROM cpu WHERE time >= '{from}' AND time < '{to}' {extra} \
         GROUP BY host, region, date_bin(INTERVAL '{width}', time)"
    )
}

/// `got` equals the raw rows' aggregates in `[from, to)` (ns).
async fn assert_equals_raw(
    server: &Server,
    every: i64,
    from: i64,
    to: i64,
    got: &BTreeMap<Key, BTreeMap<String, Option<f64>>>,
) {
    let raw = direct(server, every, &["usage", "n"]).await;
    let want: BTreeMap<_, _> = raw
        .into_iter()
        .filter(|(k, _)| k.2 >= from && k.2 < to)
        .collect();
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (k, w) in &want {
        let g = &got[k];
        let avg = |f: &str| match (w[&format!("{f}_sum")], w[&format!("{f}_count")]) {
            (Some(s), Some(c)) if c > 0.0 => Some(s / c),
            _ => None,
        };
        for (c, want) in [
            ("usage_min", w["usage_min"]),
            ("usage_max", w["usage_max"]),
            ("usage_sum", w["usage_sum"]),
            ("n_sum", w["n_sum"]),
            ("n_count", w["n_count"]),
            ("usage_avg", avg("usage")),
            // An integer field's: the planner casts it to DOUBLE first.
            ("n_avg", avg("n")),
        ] {
            let same = match (want, g[c]) {
                (Some(a), Some(b)) => close(a, b),
                (a, b) => a == b,
            };
            assert!(same, "{k:?} {c}: raw {want:?}, answered {:?}", g[c]);
        }
    }
}

/// An aggregation of the source reads the rollup when the rollup holds the
/// answer whole — buckets a multiple of the rollup's, bounds on its edges,
/// no data or delete it has not seen — and the source otherwise; either
/// way the answer equals the raw rows'.
#[tokio::test]
async fn aggregations_read_a_rollup_where_it_answers_exactly() {
    let (_cfg, file) = rollup_file(ROLLUPS);
    let args = args(&file);
    let server = Server::start(&strs(&args));
    // 7.2 hours of 6 hosts, flushed.
    for part in 0..4 {
        server
            .write_ok("fleet", &body(0..6, part * 500..part * 500 + 500))
            .await;
    }
    server.flush().await;
    // Before any pass nothing is known of the rollups: the source answers.
    let hours = aggregate_sql("1 hour", "2016-01-01T00:00:00Z", "2016-01-01T06:00:00Z", "");
    assert!(explain(&server, &hours).await.contains("fleet/cpu/day="));
    server.admin("rollup").await;

    // Hours from cpu_1h.
    let plan = explain(&server, &hours).await;
    assert!(plan.contains("TableScan: cpu_1h"), "{plan}");
    assert!(plan.contains("fleet/cpu_1h/day="), "{plan}");
    assert!(!plan.contains("fleet/cpu/day="), "{plan}");
    let got = aggregated(&server, &hours).await;
    assert_equals_raw(&server, HOUR, T0, T0 + 6 * HOUR, &got).await;
    assert_eq!(got.len(), 6 * 6);

    // Half hours: not whole hours, so from cpu_1m.
    let halves = aggregate_sql(
        "30 minutes",
        "2016-01-01T01:30:00Z",
        "2016-01-01T05:00:00Z",
        "",
    );
    let plan = explain(&server, &halves).await;
    assert!(plan.contains("fleet/cpu_1m/day="), "{plan}");
    assert!(!plan.contains("fleet/cpu/day="), "{plan}");
    let got = aggregated(&server, &halves).await;
    assert_equals_raw(&server, 30 * MINUTE, T0 + 90 * MINUTE, T0 + 5 * HOUR, &got).await;

    // Filters on tags apply to the rollup's tags.
    let two = aggregate_sql(
        "2 hours",
        "2016-01-01T00:00:00Z",
        "2016-01-01T06:00:00Z",
        "AND host IN ('h1', 'h3') AND region IS NULL",
    );
    assert!(explain(&server, &two).await.contains("fleet/cpu_1h/day="));
    let got = aggregated(&server, &two).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.keys().all(|k| k.0.as_deref() == Some("h3")), "{got:?}");
    let mut want = aggregated(
        &server,
        &aggregate_sql(
            "2 hours",
            "2016-01-01T00:00:00Z",
            "2016-01-01T06:00:00Z",
            "AND usage > -1",
        ),
    )
    .await;
    want.retain(|k, _| k.0.as_deref() == Some("h3"));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, w) in &want {
        for (c, v) in w {
            let same = match (v, got[k][c]) {
                (Some(a), Some(b)) => close(*a, b),
                (a, b) => *a == b,
            };
            assert!(same, "{k:?} {c}: source {v:?}, rollup {:?}", got[k][c]);
        }
    }

    // A filtered tag that is not grouped by (the planner projects it away
    // between the filter and the aggregation).
    let one_host = |extra: &str| {
        format!(
            "SELECT CAST(date_bin(INTERVAL '1 hour', time) AS BIGINT) AS t, max(usage) AS m, \
             count(n) AS c FROM cpu WHERE host = 'h1' AND time >= '2016-01-01T00:00:00Z' \
             AND time < '2016-01-01T06:00:00Z' {extra} GROUP BY t ORDER BY t"
        )
    };
    assert!(
        explain(&server, &one_host(""))
            .await
            .contains("fleet/cpu_1h/day=")
    );
    let from_rollup = server.sql("fleet", &one_host("")).await;
    assert_eq!(from_rollup.len(), 6);
    assert_eq!(
        from_rollup,
        server.sql("fleet", &one_host("AND usage > -1")).await
    );

    // What a rollup cannot answer exactly reads the source.
    for sql in [
        // A bound inside a minute.
        aggregate_sql("1 hour", "2016-01-01T00:00:13Z", "2016-01-01T06:00:00Z", ""),
        // A filter on a field.
        aggregate_sql(
            "1 hour",
            "2016-01-01T00:00:00Z",
            "2016-01-01T06:00:00Z",
            "AND usage > 100",
        ),
        // Buckets that are no multiple of a minute.
        aggregate_sql(
            "90 seconds",
            "2016-01-01T00:00:00Z",
            "2016-01-01T06:00:00Z",
            "",
        ),
        "SELECT host, count(*) FROM cpu WHERE time < '2016-01-01T06:00:00Z' GROUP BY host"
            .to_string(),
    ] {
        let plan = explain(&server, &sql).await;
        assert!(plan.contains("fleet/cpu/day="), "{sql}\n{plan}");
        assert!(!plan.contains("cpu_1"), "{sql}\n{plan}");
    }
    let got = aggregated(
        &server,
        &aggregate_sql(
            "1 hour",
            "2016-01-01T00:00:00Z",
            "2016-01-01T06:00:00Z",
            "AND usage > -1",
        ),
    )
    .await;
    assert_equals_raw(&server, HOUR, T0, T0 + 6 * HOUR, &got).await;

    // A late overwrite, still buffered: the source answers until a pass
    // has seen it, then the rollup again — with it.
    server
        .write_ok("fleet", &line_with(1, 10, 1_000_000.0))
        .await;
    let plan = explain(&server, &hours).await;
    assert!(!plan.contains("cpu_1h"), "{plan}");
    let max_h1 = |rows: &BTreeMap<Key, BTreeMap<String, Option<f64>>>| {
        rows.iter()
            .find(|(k, _)| k.0.as_deref() == Some("h1") && k.2 == T0)
            .and_then(|(_, c)| c["usage_max"])
    };
    assert_eq!(
        max_h1(&aggregated(&server, &hours).await),
        Some(1_000_000.0)
    );
    server.admin("rollup").await;
    assert!(explain(&server, &hours).await.contains("cpu_1h"));
    let got = aggregated(&server, &hours).await;
    assert_eq!(max_h1(&got), Some(1_000_000.0));
    assert_equals_raw(&server, HOUR, T0, T0 + 6 * HOUR, &got).await;

    // A delete: the source answers until a pass has followed it.
    let (status, body) = server
        .sql_raw(
            "fleet",
            "DELETE FROM cpu WHERE host = 'h2' AND time >= '2016-01-01T02:00:00Z' AND time < '2016-01-01T03:00:00Z'",
            "json",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!explain(&server, &hours).await.contains("cpu_1h"));
    let got = aggregated(&server, &hours).await;
    assert_equals_raw(&server, HOUR, T0, T0 + 6 * HOUR, &got).await;
    assert_eq!(got.len(), 6 * 6 - 1);
    server.admin("rollup").await;
    assert!(explain(&server, &hours).await.contains("cpu_1h"));
    let got = aggregated(&server, &hours).await;
    assert_equals_raw(&server, HOUR, T0, T0 + 6 * HOUR, &got).await;

    // The hour now is open (a bucket closes a bucket's width after its
    // end): its data is only in the source.
    let now = chrono::Utc::now()
        .timestamp_nanos_opt()
        .expect("now in range");
    server
        .write_ok("fleet", &format!("cpu,host=h9 usage=1,n=1i {now}\n"))
        .await;
    server.flush().await;
    server.admin("rollup").await;
    let rfc = |ns: i64| chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339();
    let hour = now - now.rem_euclid(HOUR);
    let recent = aggregate_sql("1 hour", &rfc(hour - 2 * HOUR), &rfc(hour + HOUR), "");
    let plan = explain(&server, &recent).await;
    assert!(!plan.contains("cpu_1"), "{plan}");
    let rows = server.sql("fleet", &recent).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["n_count"], 1, "{rows:?}");
    // Hours before it closed: the rollup answers them.
    let closed = aggregate_sql("1 hour", &rfc(hour - 24 * HOUR), &rfc(hour - HOUR), "");
    assert!(explain(&server, &closed).await.contains("cpu_1h"));
}
