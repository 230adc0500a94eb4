//! The newest k buckets (`GROUP BY bucket ORDER BY bucket DESC LIMIT k`)
//! read from the k buckets below the query's time bound, and the whole
//! range read again when some of them are empty.

use serde_json::Value;

use crate::common::{Server, Tsbs};

/// The first `k` rows of `sql` run without its `LIMIT` (a plan the
/// narrowing never applies to).
async fn first_rows(server: &Server, sql: &str, k: usize) -> Vec<Value> {
    let (whole, _) = sql.rsplit_once(" LIMIT ").expect("a LIMIT");
    let mut rows = server.sql("fleet", whole).await;
    rows.truncate(k);
    rows
}

/// The `NewestBucketsExec` line of an `EXPLAIN ANALYZE`.
async fn newest_line(server: &Server, sql: &str) -> String {
    let plan = server
        .plan("fleet", &format!("EXPLAIN ANALYZE {sql}"))
        .await;
    plan.lines()
        .find(|l| l.contains("NewestBucketsExec"))
        .unwrap_or_else(|| panic!("no NewestBucketsExec in\n{plan}"))
        .to_string()
}

#[tokio::test]
async fn the_newest_buckets_equal_the_whole_answers_first_rows() {
    let server = Server::start(&[]);
    let tsbs = Tsbs::new(30);
    // 30 hosts × 60 minutes, one row per 10 s; minutes 40–42 left empty.
    let epochs = |from_min: usize, to_min: usize| tsbs.body(from_min * 6, to_min * 6);
    server.write_ok("fleet", &epochs(0, 40)).await;
    server.flush().await;
    server.write_ok("fleet", &epochs(43, 60)).await;

    // Every bucket below the bound holds rows: the narrowed run answers.
    let sql = "SELECT date_bin(INTERVAL '1 minute', time) AS minute, max(usage_user) AS m, \
               count(*) AS n FROM cpu WHERE time < '2016-01-01T00:31:07Z' \
               GROUP BY minute ORDER BY minute DESC LIMIT 5";
    let rows = server.sql("fleet", sql).await;
    assert_eq!(rows, first_rows(&server, sql, 5).await);
    assert_eq!(rows[0]["minute"], "2016-01-01T00:31:00Z");
    // The newest bucket is cut by the bound: of its six epochs, only
    // 00:31:00 is before 00:31:07.
    assert_eq!(rows[0]["n"], 30);
    assert_eq!(rows[4]["minute"], "2016-01-01T00:27:00Z");
    assert_eq!(rows[4]["n"], 180);
    let line = newest_line(&server, sql).await;
    assert!(line.contains("narrowed_answered=1"), "{line}");
    let plan = server.plan("fleet", &format!("EXPLAIN {sql}")).await;
    assert!(
        plan.contains("NewestBuckets: k=5, narrowed to time >= 2016-01-01T00:27:00Z"),
        "{plan}"
    );
    assert!(!line.contains("ran_whole=1"), "{line}");

    // Buckets 40–42 are empty: the five below 00:44:30 are not the five
    // newest, and the whole range is read.
    let gap = "SELECT date_bin(INTERVAL '1 minute', time) AS minute, max(usage_user) AS m \
               FROM cpu WHERE time < '2016-01-01T00:44:30Z' \
               GROUP BY minute ORDER BY minute DESC LIMIT 5";
    let rows = server.sql("fleet", gap).await;
    assert_eq!(rows, first_rows(&server, gap, 5).await);
    let minutes: Vec<&str> = rows.iter().map(|r| r["minute"].as_str().unwrap()).collect();
    assert_eq!(
        minutes,
        [
            "2016-01-01T00:44:00Z",
            "2016-01-01T00:43:00Z",
            "2016-01-01T00:39:00Z",
            "2016-01-01T00:38:00Z",
            "2016-01-01T00:37:00Z"
        ]
    );
    let line = newest_line(&server, gap).await;
    assert!(line.contains("ran_whole=1"), "{line}");

    // More group keys, a HAVING and a second sort key: the k rows may come
    // from fewer buckets, and are still the whole answer's first.
    let wide = "SELECT date_bin(INTERVAL '2 minutes', time) AS b, hostname, sum(usage_user) AS s \
                FROM cpu WHERE time <= '2016-01-01T00:20:00Z' AND hostname <> 'host_3' \
                GROUP BY b, hostname HAVING sum(usage_user) > 300 \
                ORDER BY b DESC, s DESC, hostname LIMIT 40";
    let rows = server.sql("fleet", wide).await;
    assert_eq!(rows.len(), 40);
    assert_eq!(rows, first_rows(&server, wide, 40).await);
    assert!(
        newest_line(&server, wide)
            .await
            .contains("narrowed_answered=1")
    );

    // Without an upper bound, the table's newest time bounds the buckets.
    let latest = "SELECT date_bin(INTERVAL '1 minute', time) AS minute, count(*) AS n \
                  FROM cpu GROUP BY minute ORDER BY minute DESC LIMIT 5";
    let rows = server.sql("fleet", latest).await;
    assert_eq!(rows, first_rows(&server, latest, 5).await);
    assert_eq!(rows[0]["minute"], "2016-01-01T00:59:00Z");
    assert!(
        newest_line(&server, latest)
            .await
            .contains("narrowed_answered=1")
    );
    let plan = server.plan("fleet", &format!("EXPLAIN {latest}")).await;
    assert!(
        plan.contains("narrowed to time >= 2016-01-01T00:55:00Z"),
        "{plan}"
    );

    // Oldest first is not narrowed (it would need the range's start).
    let asc = sql.replace("minute DESC", "minute ASC");
    let plan = server.plan("fleet", &format!("EXPLAIN {asc}")).await;
    assert!(!plan.contains("NewestBuckets"), "{plan}");
    assert_eq!(
        server.sql("fleet", &asc).await,
        first_rows(&server, &asc, 5).await
    );
}
