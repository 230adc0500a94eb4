//! `DELETE FROM … WHERE <time range> [AND tag = '…']` and retention: rows
//! vanish from answers at once, stay gone across restarts, and compaction
//! removes them from the files.

use serde_json::{Value, json};

use crate::common::{Server, Tsbs};

const ARGS: [&str; 4] = ["--compaction-interval", "0", "--gc-grace", "0s"];

fn ts(tsbs: &Tsbs, epoch: usize) -> String {
    chrono::DateTime::from_timestamp_nanos(tsbs.time(epoch))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn count(server: &Server, db: &str, sql: &str) -> i64 {
    server.sql_i64(db, sql).await
}

#[tokio::test]
async fn deletes_are_immediate_durable_and_made_physical() {
    let tsbs = Tsbs::new(5);
    let mut server = Server::start(&ARGS);
    server.write_ok("fleet", &tsbs.body(0, 30)).await;
    server.flush().await;
    server.write_ok("fleet", &tsbs.body(30, 60)).await; // stays buffered

    let del = format!(
        "DELETE FROM cpu WHERE time >= '{}' AND time < '{}' AND hostname = 'host_1'",
        ts(&tsbs, 10),
        ts(&tsbs, 40)
    );
    let (status, body) = server.sql_raw("fleet", &del, "json").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"hostname\":\"host_1\""), "{body}");
    assert_eq!(
        count(&server, "fleet", "SELECT count(*) FROM cpu").await,
        300 - 30
    );
    let host1 = "SELECT count(*) FROM cpu WHERE hostname = 'host_1'";
    assert_eq!(count(&server, "fleet", host1).await, 30);

    // A write after the delete is not deleted, and old fields do not
    // come back into it.
    server
        .write_ok(
            "fleet",
            &format!(
                "cpu,hostname=host_1,region=eu-west-1,datacenter=eu-west-1a,rack=1,os=Ubuntu16.04LTS,arch=x64,team=SF,service=1,service_version=1,service_environment=production usage_user=77i {}\n",
                tsbs.time(15)
            ),
        )
        .await;
    assert_eq!(count(&server, "fleet", host1).await, 31);
    let rows = server
        .sql(
            "fleet",
            &format!(
                "SELECT usage_user, usage_system FROM cpu WHERE hostname = 'host_1' AND time = '{}'",
                ts(&tsbs, 15)
            ),
        )
        .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["usage_user"].as_i64(), Some(77));
    assert!(rows[0]["usage_system"].is_null(), "{rows:?}");

    // A time-only delete over every series.
    let (status, body) = server
        .sql_raw(
            "fleet",
            &format!("DELETE FROM cpu WHERE time < '{}'", ts(&tsbs, 5)),
            "json",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let total = 300 - 30 + 1 - 25;
    assert_eq!(
        count(&server, "fleet", "SELECT count(*) FROM cpu").await,
        total
    );

    // Durable: a restart keeps every delete.
    let dir = server.take_dir().unwrap();
    server.terminate();
    let server = Server::start_in(dir.path(), &ARGS);
    assert_eq!(
        count(&server, "fleet", "SELECT count(*) FROM cpu").await,
        total
    );
    let all = "SELECT * FROM cpu ORDER BY hostname, time";
    let before = server.sql("fleet", all).await;
    let pending =
        "SELECT CAST(pending_deletes AS BIGINT) FROM system.tables WHERE \"table\" = 'cpu'";
    assert_eq!(count(&server, "fleet", pending).await, 2);

    // Compaction rewrites the affected files without the rows, and the
    // tombstones are then dropped.
    server.admin("compact").await;
    assert_eq!(server.sql("fleet", all).await, before);
    let persisted = "SELECT CAST(sum(rows) AS BIGINT) FROM system.files WHERE \"table\" = 'cpu'";
    assert_eq!(count(&server, "fleet", persisted).await, total);
    assert_eq!(count(&server, "fleet", pending).await, 0);
    assert_eq!(
        count(&server, "fleet", "SELECT count(*) FROM cpu").await,
        total
    );
}

#[tokio::test]
async fn unsupported_deletes_are_refused_with_what_is_supported() {
    let tsbs = Tsbs::new(2);
    let server = Server::start(&ARGS);
    server.write_ok("fleet", &tsbs.body(0, 5)).await;
    for (sql, needle) in [
        ("DELETE FROM cpu", "without WHERE"),
        (
            "DELETE FROM cpu WHERE hostname = 'host_1'",
            "no condition on `time`",
        ),
        (
            "DELETE FROM cpu WHERE usage_user > 5 AND time < '2017-01-01T00:00:00Z'",
            "cannot delete by",
        ),
        (
            "DELETE FROM nope WHERE time < '2017-01-01T00:00:00Z'",
            "not found",
        ),
        (
            "DELETE FROM cpu WHERE time < '2017-01-01T00:00:00Z' OR hostname = 'host_1'",
            "cannot delete by",
        ),
    ] {
        let (status, body) = server.sql_raw("fleet", sql, "json").await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(body.contains(needle), "{sql}: {body}");
        assert!(
            body.contains("DELETE supports") || needle == "not found",
            "{sql}: {body}"
        );
    }
    // Nothing was deleted by the refused statements.
    assert_eq!(
        server.sql_i64("fleet", "SELECT count(*) FROM cpu").await,
        10
    );
}

#[tokio::test]
async fn retention_hides_expired_rows_and_compaction_drops_their_files() {
    let server = Server::start(&ARGS);
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let old = 1_451_606_400_000_000_000i64; // 2016
    let mut body = String::new();
    for h in 0..3 {
        body.push_str(&format!("m,host=h{h} v={h} {old}\n"));
        body.push_str(&format!("m,host=h{h} v={h} {now}\n"));
    }
    server.write_ok("ret", &body).await;
    server.flush().await;
    // An old-only partition file too.
    server
        .write_ok("ret", &format!("m,host=h9 v=9 {}\n", old + 1))
        .await;
    server.flush().await;
    assert_eq!(server.sql_i64("ret", "SELECT count(*) FROM m").await, 7);

    let retention = |ttl: Value| json!({"db": "ret", "table": "m", "ttl": ttl});
    let client = server.client();
    let put = |b: Value| {
        client
            .put(format!("{}/api/v1/retention", server.url))
            .json(&b)
            .send()
    };
    let r = put(retention(json!("1d"))).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(server.sql_i64("ret", "SELECT count(*) FROM m").await, 3);
    let seconds = "SELECT retention_seconds FROM system.tables WHERE \"table\" = 'm'";
    assert_eq!(server.sql_i64("ret", seconds).await, 86_400);

    // Cleared: the rows were only hidden, not yet deleted.
    let r = put(retention(Value::Null)).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(server.sql_i64("ret", "SELECT count(*) FROM m").await, 7);

    // Database-wide retention; then compaction drops the expired partition's
    // files and the expired rows of the mixed one.
    let r = put(json!({"db": "ret", "ttl": "7d"})).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(server.sql_i64("ret", "SELECT count(*) FROM m").await, 3);
    let listed: Value = client
        .get(format!("{}/api/v1/retention", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["retention"][0]["ttl_seconds"],
        json!(7 * 86_400),
        "{listed}"
    );
    server.admin("compact").await;
    let old_files = format!(
        "SELECT count(*) FROM system.files WHERE \"table\" = 'm' AND min_time < to_timestamp_nanos({})",
        now - 86_400_000_000_000
    );
    assert_eq!(server.sql_i64("ret", &old_files).await, 0);
    assert_eq!(server.sql_i64("ret", "SELECT count(*) FROM m").await, 3);

    // Bad requests say what is expected.
    for bad in [
        json!({"db": "ret", "ttl": "forever"}),
        json!({"db": "ret", "ttl": "0s"}),
        json!({"database": "ret"}),
    ] {
        let r = put(bad.clone()).await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{bad}");
    }
}

#[tokio::test]
async fn retention_from_the_command_line() {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let server = Server::start(&[
        "--compaction-interval",
        "0",
        "--retention",
        "r2=1h,r3.keep=30d",
    ]);
    let hour = 3_600_000_000_000i64;
    server
        .write_ok("r2", &format!("m v=1 {}\nm v=2 {now}\n", now - 2 * hour))
        .await;
    server
        .write_ok("r3", &format!("keep v=1 {}\n", now - 2 * hour))
        .await;
    assert_eq!(server.sql_i64("r2", "SELECT count(*) FROM m").await, 1);
    assert_eq!(server.sql_i64("r3", "SELECT count(*) FROM keep").await, 1);
}
