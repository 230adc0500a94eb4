//! The last-value cache: `SELECT DISTINCT ON (<tags>) … ORDER BY <tags>,
//! time DESC` answers from the newest row per series, and equals the same
//! question asked with a window function (which scans the table) through
//! writes newer and older than the cached rows, overwrites of the newest
//! time, new series and columns, flushes, deletes, retention, compaction
//! and a restart.

use serde_json::{Value, json};

use crate::common::Server;

const MINUTE: i64 = 60_000_000_000;

struct Fleet {
    base: i64,
}

impl Fleet {
    /// Host `h` at minute `e`: each host's times differ by `h` ms so that
    /// no two series tie on their newest time. Host h3 has no rack.
    fn time(&self, h: u64, e: i64) -> i64 {
        self.base + e * MINUTE + h as i64 * 1_000_000
    }

    fn tags(h: u64) -> String {
        if h == 3 {
            format!("m,host=h{h}")
        } else {
            format!("m,host=h{h},rack=r{}", h % 2)
        }
    }

    fn line(&self, h: u64, e: i64) -> String {
        format!(
            "{} v={}.5,n={}i,s=\"e{e}\" {}\n",
            Self::tags(h),
            h as i64 * 100 + e,
            e * 7 - h as i64,
            self.time(h, e)
        )
    }

    fn body(&self, hosts: std::ops::Range<u64>, epochs: std::ops::Range<i64>) -> String {
        let mut s = String::new();
        for e in epochs {
            for h in hosts.clone() {
                s.push_str(&self.line(h, e));
            }
        }
        s
    }

    fn rfc3339(&self, h: u64, e: i64) -> String {
        chrono::DateTime::from_timestamp_nanos(self.time(h, e))
            .format("%Y-%m-%dT%H:%M:%S%.9fZ")
            .to_string()
    }
}

/// (cached form, the same question with `row_number()`), as pairs of SQL.
fn questions(fleet: &Fleet) -> Vec<(String, String)> {
    let window = |partition: &str, filter: &str, order: &str| {
        format!(
            "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {partition} ORDER BY time DESC) AS rn FROM m {filter}) WHERE rn = 1 ORDER BY {order}"
        )
    };
    let since = format!("WHERE time >= '{}'", fleet.rfc3339(0, 33));
    vec![
        (
            "SELECT DISTINCT ON (host) * FROM m ORDER BY host, time DESC".into(),
            window("host", "", "host"),
        ),
        (
            "SELECT DISTINCT ON (rack) rack, host, v, time FROM m WHERE host <> 'h0' ORDER BY rack, time DESC"
                .into(),
            format!(
                "SELECT rack, host, v, time FROM ({}) ORDER BY rack",
                window("rack", "WHERE host <> 'h0'", "rack")
            ),
        ),
        // A filter above the DISTINCT ON applies to the chosen rows.
        (
            "SELECT * FROM (SELECT DISTINCT ON (rack) rack, host, v, time FROM m ORDER BY rack, time DESC) WHERE host <> 'h0' ORDER BY rack"
                .into(),
            format!(
                "SELECT rack, host, v, time FROM ({}) WHERE host <> 'h0' ORDER BY rack",
                window("rack", "", "rack")
            ),
        ),
        (
            format!(
                "SELECT DISTINCT ON (host, rack) * FROM m {since} ORDER BY host, rack, time DESC"
            ),
            window("host, rack", &since, "host, rack"),
        ),
    ]
}

fn without_rn(rows: Vec<Value>) -> Vec<Value> {
    rows.into_iter()
        .map(|mut r| {
            r.as_object_mut().expect("row").remove("rn");
            r
        })
        .collect()
}

/// Every question's cached answer equals its scanned one; returns the
/// first question's answer.
async fn check(server: &Server, fleet: &Fleet, when: &str) -> Vec<Value> {
    let mut first = None;
    for (cached, scanned) in questions(fleet) {
        let (_, plan) = server
            .sql_raw("fleet", &format!("EXPLAIN {cached}"), "json")
            .await;
        assert!(
            plan.contains("partition_sizes") && !plan.contains(".parquet"),
            "{when}: {cached} does not read the cache: {plan}"
        );
        let got = server.sql("fleet", &cached).await;
        let want = without_rn(server.sql("fleet", &scanned).await);
        assert_eq!(got, want, "{when}: {cached}");
        first.get_or_insert(got);
    }
    first.expect("questions")
}

fn newest<'a>(rows: &'a [Value], host: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["host"] == host)
        .unwrap_or_else(|| panic!("no row for {host}: {rows:?}"))
}

#[tokio::test]
async fn newest_rows_per_series_follow_every_change() {
    let now = chrono::Utc::now().timestamp_nanos_opt().expect("now");
    let fleet = Fleet {
        base: now - 180 * MINUTE,
    };
    let mut server = Server::start(&["--compaction-interval", "0", "--gc-grace", "0s"]);
    server.write_ok("fleet", &fleet.body(0..6, 0..30)).await;
    server.flush().await;

    // The plan reads the cache, not Parquet; the window form scans files.
    let (status, plan) = server
        .sql_raw(
            "fleet",
            "EXPLAIN SELECT DISTINCT ON (host) * FROM m ORDER BY host, time DESC",
            "json",
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    assert!(
        plan.contains("partition_sizes") && !plan.contains(".parquet"),
        "{plan}"
    );
    let (_, scan_plan) = server
        .sql_raw(
            "fleet",
            &format!("EXPLAIN {}", questions(&fleet)[0].1),
            "json",
        )
        .await;
    assert!(scan_plan.contains(".parquet"), "{scan_plan}");

    let rows = check(&server, &fleet, "flushed").await;
    assert_eq!(rows.len(), 6);
    assert_eq!(newest(&rows, "h2")["s"], "e29");

    // Buffered: newer rows for h0–h3, a late (older) row for h4 that must
    // not win, the newest time of h5 rewritten with `n` only (its `v` and
    // `s` stay), and a new series.
    let mut late = fleet.body(0..4, 30..40);
    late.push_str(&format!("{} v=-1.5 {}\n", Fleet::tags(4), fleet.time(4, 5)));
    late.push_str(&format!(
        "{} n=999i {}\n",
        Fleet::tags(5),
        fleet.time(5, 29)
    ));
    late.push_str(&fleet.line(6, 12));
    server.write_ok("fleet", &late).await;
    let rows = check(&server, &fleet, "buffered").await;
    assert_eq!(rows.len(), 7);
    assert_eq!(newest(&rows, "h0")["s"], "e39");
    assert_eq!(newest(&rows, "h4")["s"], "e29");
    let h5 = newest(&rows, "h5");
    assert_eq!(
        (h5["n"].clone(), h5["s"].clone()),
        (json!(999), json!("e29"))
    );

    server.flush().await;
    check(&server, &fleet, "flushed again").await;

    // A new column.
    server
        .write_ok(
            "fleet",
            &format!("{} v=1.5,extra=7i {}\n", Fleet::tags(0), fleet.time(0, 40)),
        )
        .await;
    let rows = check(&server, &fleet, "new column").await;
    assert_eq!(newest(&rows, "h0")["extra"], 7);

    // Deleting h1's newest rows brings its older one back.
    let del = format!(
        "DELETE FROM m WHERE host = 'h1' AND time >= '{}'",
        fleet.rfc3339(1, 35)
    );
    let (status, text) = server.sql_raw("fleet", &del, "json").await;
    assert_eq!(status, 200, "{text}");
    let rows = check(&server, &fleet, "deleted").await;
    assert_eq!(newest(&rows, "h1")["s"], "e34");

    // Retention hides the hosts whose newest row is older than the cutoff
    // (h4, h5 at minute 29; h6 at 12), then gives them back.
    let client = server.client();
    let retention = |ttl: Value| {
        client
            .put(format!("{}/api/v1/retention", server.url))
            .json(&json!({"db": "fleet", "table": "m", "ttl": ttl}))
            .send()
    };
    assert_eq!(
        retention(json!("148m")).await.unwrap().status().as_u16(),
        200
    );
    let rows = check(&server, &fleet, "retention").await;
    let hosts: Vec<&str> = rows.iter().map(|r| r["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["h0", "h1", "h2", "h3"]);
    assert_eq!(retention(Value::Null).await.unwrap().status().as_u16(), 200);
    assert_eq!(check(&server, &fleet, "retention cleared").await.len(), 7);

    server.admin("compact").await;
    check(&server, &fleet, "compacted").await;

    assert!(server.terminate());
    let dir = server.take_dir().expect("data dir");
    let server = Server::start_in(dir.path(), &["--compaction-interval", "0"]);
    let rows = check(&server, &fleet, "restarted").await;
    assert_eq!(rows.len(), 7);
    assert_eq!(newest(&rows, "h1")["s"], "e34");
}

/// The value of `fleetlake_last_value_series` for `db`'s `table`, if the
/// cache is built.
async fn cached_series(server: &Server, db: &str, table: &str) -> Option<u64> {
    let wanted = format!("fleetlake_last_value_series{{db=\"{db}\",table=\"{table}\"}} ");
    let metrics = server.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&wanted))
        .map(|n| n.parse().expect("a count"))
}

#[tokio::test]
async fn the_heartbeat_cache_is_built_at_start_up_before_any_query() {
    let now = chrono::Utc::now().timestamp_nanos_opt().expect("now");
    let mut server = Server::start(&["--compaction-interval", "0"]);
    let mut body = String::new();
    for e in 0..20 {
        for h in 0..7 {
            body.push_str(&format!(
                "heartbeat,hostname=host_{h},datacenter=dc{} uptime_s={e}i {}\n",
                h % 2,
                now - (20 - e) * MINUTE
            ));
        }
    }
    body.push_str(&format!("m,host=h0 v=1 {now}\n"));
    server.write_ok("fleet", &body).await;
    server.write_ok("other", &body).await;
    server.flush().await;
    assert!(server.terminate());
    let dir = server.take_dir().expect("data dir");

    // Restarted, no query asked: the heartbeat caches fill by themselves;
    // `m` is not named by --warm-last-value, so it stays unbuilt.
    let server = Server::start_in(dir.path(), &["--compaction-interval", "0"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let fleet = cached_series(&server, "fleet", "heartbeat").await;
        let other = cached_series(&server, "other", "heartbeat").await;
        if fleet.is_some() && other.is_some() {
            assert_eq!((fleet, other), (Some(7), Some(7)));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the heartbeat caches were not built within 60 s of start-up:\n{}",
            server.metrics().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(cached_series(&server, "fleet", "m").await, None);

    // The warm cache answers the overview's question like a scan would.
    let rows = server
        .sql(
            "fleet",
            "SELECT DISTINCT ON (hostname) hostname, uptime_s FROM heartbeat ORDER BY hostname, time DESC",
        )
        .await;
    assert_eq!(rows.len(), 7, "{rows:?}");
    assert!(rows.iter().all(|r| r["uptime_s"] == 19), "{rows:?}");
    drop(server);

    // --warm-last-value "" turns it off.
    let server = Server::start_in(
        dir.path(),
        &["--compaction-interval", "0", "--warm-last-value", ""],
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(cached_series(&server, "fleet", "heartbeat").await, None);
}
