//! TSBS-shaped `cpu` data through every write API; SQL answers checked
//! against values this test computes itself, from the buffer, from Parquet
//! and after a restart.

use std::collections::BTreeMap;
use std::io::Write;

use crate::common::{Server, TSBS_FIELDS, Tsbs};

const HOSTS: usize = 20;
const EPOCHS: usize = 360; // one hour at 10 s

async fn check_answers(server: &Server, tsbs: &Tsbs) {
    let total = server
        .sql_i64("fleet", "SELECT count(*) AS n FROM cpu")
        .await;
    assert_eq!(total, (HOSTS * EPOCHS) as i64);

    // Per-minute max of usage_user for one host (TSBS single-groupby-1-1-1).
    let host = 7;
    let rows = server
        .sql(
            "fleet",
            "SELECT date_bin(INTERVAL '1 minute', time) AS minute, max(usage_user) AS m \
             FROM cpu WHERE hostname = 'host_7' AND time >= '2016-01-01T00:00:00Z' \
             AND time < '2016-01-01T01:00:00Z' GROUP BY minute ORDER BY minute",
        )
        .await;
    let mut expected: BTreeMap<usize, i64> = BTreeMap::new();
    for e in 0..EPOCHS {
        let m = expected.entry(e / 6).or_insert(i64::MIN);
        *m = (*m).max(tsbs.value(host, e, 0));
    }
    assert_eq!(rows.len(), 60);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["m"].as_i64(), Some(expected[&i]), "minute {i}: {row}");
        let minute = format!("2016-01-01T00:{i:02}:00Z");
        assert_eq!(row["minute"].as_str(), Some(minute.as_str()));
    }

    // time_bucket is date_bin.
    let same = server
        .sql(
            "fleet",
            "SELECT count(*) AS n FROM (SELECT time_bucket(INTERVAL '1 minute', time) AS a, \
             date_bin(INTERVAL '1 minute', time) AS b FROM cpu WHERE hostname = 'host_1') WHERE a = b",
        )
        .await;
    assert_eq!(same[0]["n"].as_i64(), Some(EPOCHS as i64));

    // Average of usage_system per host (TSBS double-groupby shape).
    let rows = server
        .sql(
            "fleet",
            "SELECT hostname, avg(usage_system) AS a, count(*) AS n FROM cpu GROUP BY hostname",
        )
        .await;
    assert_eq!(rows.len(), HOSTS);
    for row in rows {
        let h: usize = row["hostname"].as_str().unwrap()["host_".len()..]
            .parse()
            .unwrap();
        let sum: i64 = (0..EPOCHS).map(|e| tsbs.value(h, e, 1)).sum();
        let want = sum as f64 / EPOCHS as f64;
        let got = row["a"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "host {h}: {got} vs {want}");
        assert_eq!(row["n"].as_i64(), Some(EPOCHS as i64));
    }

    // Every field of one row, exactly.
    let rows = server
        .sql(
            "fleet",
            "SELECT * FROM cpu WHERE hostname = 'host_3' AND time = '2016-01-01T00:10:00Z'",
        )
        .await;
    assert_eq!(rows.len(), 1);
    for (i, f) in TSBS_FIELDS.iter().enumerate() {
        assert_eq!(rows[0][*f].as_i64(), Some(tsbs.value(3, 60, i)), "{f}");
    }
    assert_eq!(rows[0]["region"].as_str(), Some("us-east-1"));
}

#[tokio::test]
async fn tsbs_cpu_through_all_write_apis() {
    let mut server = Server::start(&[]);
    let tsbs = Tsbs::new(HOSTS);
    let client = server.client();
    // Epochs 0..120 through v3, 120..240 through v1 with seconds precision,
    // 240..360 through v2 gzip-compressed.
    server.write_ok("fleet", &tsbs.body(0, 120)).await;

    let v1: String = tsbs
        .body(120, 240)
        .lines()
        .map(|l| {
            let (head, ts) = l.rsplit_once(' ').unwrap();
            format!("{head} {}\n", ts.parse::<i64>().unwrap() / 1_000_000_000)
        })
        .collect();
    let r = client
        .post(format!("{}/write?db=fleet&precision=s", server.url))
        .body(v1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{:?}", r.text().await);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(tsbs.body(240, 360).as_bytes()).unwrap();
    let r = client
        .post(format!(
            "{}/api/v2/write?bucket=fleet&org=x&precision=ns",
            server.url
        ))
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{:?}", r.text().await);

    // From the write buffer, right after the acks.
    check_answers(&server, &tsbs).await;
    // From Parquet.
    server.flush().await;
    let files = server
        .sql_i64(
            "fleet",
            "SELECT count(*) AS n FROM system.files WHERE \"table\" = 'cpu'",
        )
        .await;
    assert!(files >= 1);
    check_answers(&server, &tsbs).await;
    // After a clean restart (SIGTERM flushes; the catalog is reloaded).
    assert!(server.terminate(), "SIGTERM exit was not clean");
    let dir = server.take_dir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    check_answers(&server, &tsbs).await;

    // Output formats.
    for (format, needle) in [
        ("csv", "hostname,n\nhost_0,360\n"),
        ("jsonl", "{\"hostname\":\"host_0\",\"n\":360}\n"),
        ("json", "[{\"hostname\":\"host_0\",\"n\":360}]"),
        ("pretty", "| host_0   | 360 |"),
    ] {
        let (status, body) = server
            .sql_raw(
                "fleet",
                "SELECT hostname, count(*) AS n FROM cpu WHERE hostname = 'host_0' GROUP BY hostname",
                format,
            )
            .await;
        assert_eq!(status, 200);
        assert!(body.contains(needle), "{format}: {body}");
    }
    for format in ["arrow", "parquet"] {
        let (status, body) = server
            .sql_raw("fleet", "SELECT * FROM cpu LIMIT 5", format)
            .await;
        assert_eq!(status, 200, "{format}");
        assert!(!body.is_empty());
    }
    // InfluxDB 3 query API, GET.
    let r = client
        .get(format!("{}/api/v3/query_sql", server.url))
        .query(&[
            ("q", "SELECT count(*) AS n FROM cpu"),
            ("db", "fleet"),
            ("format", "json"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        format!("[{{\"n\":{}}}]", HOSTS * EPOCHS)
    );

    // system tables.
    let cols = server
        .sql("fleet", "SELECT \"column\", kind FROM system.columns WHERE \"table\" = 'cpu' AND \"column\" IN ('hostname', 'usage_user', 'time') ORDER BY \"column\"")
        .await;
    assert_eq!(
        serde_json::Value::Array(cols).to_string(),
        r#"[{"column":"hostname","kind":"tag"},{"column":"time","kind":"time"},{"column":"usage_user","kind":"field"}]"#
    );
    let t = server
        .sql(
            "fleet",
            "SELECT persisted_rows FROM system.tables WHERE \"table\" = 'cpu'",
        )
        .await;
    assert_eq!(
        t[0]["persisted_rows"].as_i64(),
        Some((HOSTS * EPOCHS) as i64)
    );

    // /health, /metrics and the CLI.
    let h: serde_json::Value = client
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "pass");
    let m = client
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("fleetlake_queries_total{status=\"200\"}"), "{m}");
    assert!(m.contains("fleetlake_query_duration_seconds_count"), "{m}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetlake"))
        .args(["sql", "--url", &server.url, "SELECT count(*) AS n FROM cpu"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("| {} |", HOSTS * EPOCHS)), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetlake"))
        .args(["sql", "--url", &server.url, "SELECT nope FROM cpu"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[tokio::test]
async fn metrics_count_writes_and_fsyncs() {
    let server = Server::start(&[]);
    let tsbs = Tsbs::new(4);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let body = tsbs.body(i * 10, i * 10 + 10);
        let url = server.url.clone();
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/api/v3/write_lp?db=fleet"))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204);
    }
    let m = server.metrics().await;
    let value = |name: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in {m}"))
    };
    assert_eq!(value("fleetlake_rows_written_total"), 4 * 80);
    let fsyncs = value("fleetlake_wal_fsyncs_total");
    assert!((1..=8).contains(&fsyncs), "{fsyncs}");
    assert_eq!(value("fleetlake_write_requests_total{status=\"204\"}"), 8);
}
