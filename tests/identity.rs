//! Row identity = series + time: the later write wins field by field, across
//! the buffer and Parquet; a retried batch changes no query result.

use crate::common::{Server, Tsbs};

const ALL: &str = "SELECT * FROM m ORDER BY host, time";

#[tokio::test]
async fn later_write_wins_field_by_field_across_buffer_and_parquet() {
    let server = Server::start(&[]);
    server
        .write_ok("db1", "m,host=a x=1,y=1 100\nm,host=b x=7 100\n")
        .await;
    server.write_ok("db1", "m,host=a x=2 100\n").await;
    let rows = server.sql("db1", ALL).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0]["x"].as_f64(), rows[0]["y"].as_f64()),
        (Some(2.0), Some(1.0))
    );

    server.flush().await;
    // A buffered write over a persisted row: only y changes.
    server.write_ok("db1", "m,host=a y=5 100\n").await;
    let rows = server.sql("db1", ALL).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0]["x"].as_f64(), rows[0]["y"].as_f64()),
        (Some(2.0), Some(5.0))
    );

    // Two persisted files with the same identity: the newer file wins.
    server.flush().await;
    server.write_ok("db1", "m,host=a x=3 100\n").await;
    server.flush().await;
    let rows = server.sql("db1", ALL).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0]["x"].as_f64(), rows[0]["y"].as_f64()),
        (Some(3.0), Some(5.0))
    );
    // A filter on a field sees the merged row, not the stale one.
    let n = server
        .sql_i64("db1", "SELECT count(*) FROM m WHERE x = 1")
        .await;
    assert_eq!(n, 0);
    let n = server
        .sql_i64("db1", "SELECT count(*) FROM m WHERE x = 3 AND y = 5")
        .await;
    assert_eq!(n, 1);

    // Within one request the later line wins.
    server
        .write_ok("db1", "m,host=c x=1 5\nm,host=c x=9 5\n")
        .await;
    let rows = server.sql("db1", "SELECT x FROM m WHERE host = 'c'").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["x"].as_f64(), Some(9.0));

    // A tag added later reads NULL in older rows, and is a different series.
    server.write_ok("db1", "m,host=a,zone=z1 x=4 100\n").await;
    let rows = server
        .sql(
            "db1",
            "SELECT host, zone, x FROM m WHERE host = 'a' ORDER BY zone NULLS FIRST",
        )
        .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0]["zone"].is_null() && rows[0]["x"].as_f64() == Some(3.0),
        "{rows:?}"
    );
    assert_eq!(rows[1]["zone"].as_str(), Some("z1"));
}

#[tokio::test]
async fn lines_without_timestamp_get_the_server_time() {
    let server = Server::start(&[]);
    server
        .write_ok("db2", "nots,host=a v=1\nnots,host=b v=2\n")
        .await;
    let n = server
        .sql_i64(
            "db2",
            "SELECT count(*) FROM nots WHERE time > now() - INTERVAL '1 minute' AND time <= now()",
        )
        .await;
    assert_eq!(n, 2);
}

#[tokio::test]
async fn retried_batches_change_nothing() {
    let tsbs = Tsbs::new(5);
    let once = Server::start(&[]);
    let body = tsbs.body(0, 30);
    once.write_ok("fleet", &body).await;
    let expected = once
        .sql("fleet", "SELECT * FROM cpu ORDER BY hostname, time")
        .await;
    assert_eq!(expected.len(), 150);

    let twice = Server::start(&[]);
    // Twice into the buffer.
    twice.write_ok("fleet", &body).await;
    twice.write_ok("fleet", &body).await;
    assert_eq!(
        twice
            .sql("fleet", "SELECT * FROM cpu ORDER BY hostname, time")
            .await,
        expected
    );
    // Once more after a flush: buffer over Parquet.
    twice.flush().await;
    twice.write_ok("fleet", &body).await;
    assert_eq!(
        twice
            .sql("fleet", "SELECT * FROM cpu ORDER BY hostname, time")
            .await,
        expected
    );
    // And Parquet over Parquet.
    twice.flush().await;
    assert_eq!(
        twice
            .sql("fleet", "SELECT * FROM cpu ORDER BY hostname, time")
            .await,
        expected
    );
    let agg = "SELECT hostname, sum(usage_user) AS s, count(*) AS n FROM cpu GROUP BY hostname ORDER BY hostname";
    assert_eq!(twice.sql("fleet", agg).await, once.sql("fleet", agg).await);
}

/// Flushes cut mid-epoch: consecutive files share one timestamp. Only that
/// instant is de-duplicated; rows on either side are read once, with field
/// filters pushed down, and an overwrite at the shared instant still wins.
#[tokio::test]
async fn files_touching_at_one_instant() {
    let server = Server::start(&[]);
    let epoch = |t: i64, v: i64| {
        (0..4)
            .map(|h| format!("t,host=h{h},rack=r{} v={} {t}\n", h % 2, v + h))
            .collect::<String>()
    };
    // File 1: t=10, 20 and half of t=30; file 2: the rest of t=30 (and a
    // rewrite of h0@30), then t=40; the buffer: a rewrite of h1@30 and t=50.
    let half: String = epoch(30, 200)
        .lines()
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    let first: String = epoch(10, 0) + &epoch(20, 100) + &half;
    server.write_ok("db", &first).await;
    server.flush().await;
    server
        .write_ok("db", &(epoch(30, 300) + &epoch(40, 400)))
        .await;
    server.flush().await;
    server
        .write_ok(
            "db",
            &format!("t,host=h1,rack=r1 v=999 30\n{}", epoch(50, 500)),
        )
        .await;

    let files = server
        .sql_i64(
            "db",
            "SELECT CAST(files AS BIGINT) FROM system.tables WHERE \"table\" = 't'",
        )
        .await;
    assert_eq!(files, 2);
    assert_eq!(server.sql_i64("db", "SELECT count(*) FROM t").await, 20);
    let rows = server
        .sql(
            "db",
            "SELECT host, v FROM t WHERE time = to_timestamp_nanos(30) ORDER BY host",
        )
        .await;
    let got: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["host"].as_str().unwrap().to_string(),
                r["v"].as_f64().unwrap() as i64,
            )
        })
        .collect();
    let want =
        [("h0", 300), ("h1", 999), ("h2", 302), ("h3", 303)].map(|(h, v)| (h.to_string(), v));
    assert_eq!(got, want);
    // A field filter over both files and the buffer: the stale values at
    // t=30 (200..203) must not come back.
    let n = server
        .sql_i64("db", "SELECT count(*) FROM t WHERE v >= 200 AND v < 300")
        .await;
    assert_eq!(n, 0);
    let n = server
        .sql_i64(
            "db",
            "SELECT count(*) FROM t WHERE v >= 100 AND rack = 'r1'",
        )
        .await;
    // r1 = h1, h3 at t=20..50: 8 rows.
    assert_eq!(n, 8);
    let sum = server
        .sql_i64(
            "db",
            "SELECT CAST(sum(v) AS BIGINT) FROM t WHERE host = 'h2'",
        )
        .await;
    assert_eq!(sum, 2 + 102 + 302 + 402 + 502);
}
