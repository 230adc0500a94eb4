//! A read replica (`--role query`): a second server on the first's object
//! store answers SQL and PromQL as the writer does, follows its flushes,
//! new tables and compactions, and refuses every change with a 403.

use std::time::{Duration, Instant};

use crate::common::{Server, Tsbs};

const QUERIES: [&str; 3] = [
    "SELECT count(*) AS n FROM cpu",
    "SELECT hostname, max(usage_user) AS m, sum(usage_idle) AS s FROM cpu GROUP BY hostname ORDER BY hostname",
    "SELECT * FROM cpu WHERE hostname = 'host_1' ORDER BY time",
];

async fn until_count(replica: &Server, sql: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = replica.sql_raw("fleet", sql, "json").await;
        if status == 200 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if v[0]["n"].as_i64() == Some(want) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the replica never answered {want} to {sql}; last: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_read_replica_follows_the_writer_and_refuses_changes() {
    // The writer keeps replaced files an hour: the replica's queries may
    // still read them (it holds snapshots the writer cannot see).
    let writer = Server::start(&["--compaction-interval", "0", "--gc-grace", "1h"]);
    let tsbs = Tsbs::new(4);
    writer.write_ok("fleet", &tsbs.body(0, 50)).await;
    writer.flush().await;
    let store = writer.data_dir.join("store");
    let replica = Server::start(&[
        "--role",
        "query",
        "--object-store",
        store.to_str().unwrap(),
        "--follow-interval",
        "100ms",
    ]);
    for q in QUERIES {
        assert_eq!(
            replica.sql("fleet", q).await,
            writer.sql("fleet", q).await,
            "{q}"
        );
    }

    // Rows still in the writer's buffer are the writer's alone; once
    // flushed the replica answers them, and a new table too.
    writer.write_ok("fleet", &tsbs.body(50, 100)).await;
    writer
        .write_ok("fleet", "mem,hostname=host_0 used=5i 1451606400000000000\n")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        replica.sql_i64("fleet", "SELECT count(*) FROM cpu").await,
        200
    );
    writer.flush().await;
    until_count(&replica, "SELECT count(*) AS n FROM cpu", 400).await;
    until_count(&replica, "SELECT count(*) AS n FROM mem", 1).await;

    // A compaction replaces every file: the answers stay the same.
    writer.admin("compact").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for q in QUERIES {
        assert_eq!(
            replica.sql("fleet", q).await,
            writer.sql("fleet", q).await,
            "{q}"
        );
    }
    let promql = |s: &Server| {
        let url = format!(
            "{}/prometheus/api/v1/query?query=sum(cpu_usage_user)&time=1451606900",
            s.url
        );
        let client = s.client();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let (w, r) = (promql(&writer).await, promql(&replica).await);
    assert_eq!(w["status"], "success", "{w}");
    assert_eq!(r["data"], w["data"]);

    // Every change is refused, saying where to go; the writer's catalog
    // does not move.
    let seq = writer
        .sql("fleet", "SELECT count(*) AS n FROM system.files")
        .await;
    let client = replica.client();
    for (method, path, body) in [
        (
            "POST",
            "/api/v3/write_lp?db=fleet",
            "cpu,hostname=x usage_user=1i 1\n",
        ),
        (
            "POST",
            "/write?db=fleet",
            "cpu,hostname=x usage_user=1i 1\n",
        ),
        ("POST", "/api/v1/admin/flush", ""),
        ("POST", "/api/v1/admin/compact", ""),
        (
            "PUT",
            "/api/v1/retention",
            r#"{"db": "fleet", "ttl": "1d"}"#,
        ),
        ("POST", "/api/v1/rules", "[[rule]]\nname = \"x\"\n"),
        (
            "POST",
            "/api/v1/tokens",
            r#"{"name": "x", "scopes": ["admin"]}"#,
        ),
    ] {
        let r = client
            .request(method.parse().unwrap(), format!("{}{path}", replica.url))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, 403, "{method} {path}: {text}");
        assert!(
            text.contains("read replica (--role query)"),
            "{method} {path}: {text}"
        );
    }
    let (status, text) = replica
        .sql_raw(
            "fleet",
            "DELETE FROM cpu WHERE time < '2016-01-02T00:00:00Z'",
            "json",
        )
        .await;
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("a DELETE goes to the server that writes"),
        "{text}"
    );
    assert_eq!(
        replica.sql_i64("fleet", "SELECT count(*) FROM cpu").await,
        400
    );
    assert_eq!(
        writer
            .sql("fleet", "SELECT count(*) AS n FROM system.files")
            .await,
        seq
    );
}
