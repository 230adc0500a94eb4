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
