//! Bad input: the right status, a message naming the line, the good lines stored.

use std::io::Write;

use serde_json::Value;

use crate::common::Server;

async fn rejected(server: &Server, body: &str) -> (u16, Value) {
    let (status, text) = server.write("bad", body).await;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, v)
}

#[tokio::test]
async fn each_class_of_bad_line_is_reported_and_the_rest_stored() {
    let server = Server::start(&[]);
    server.write_ok("bad", "m,host=a v=1 1\n").await;
    let cases: &[(&str, &str)] = &[
        ("m,host=a 2", "field"),                        // missing fields
        ("m,host=a,host=b v=1 3", "host"),              // duplicate tag key
        ("m,host=a v=1,v=2 4", "v"),                    // duplicate field key
        ("m,host=a v=1.2.3 5", "1.2.3"),                // bad float
        ("m,host=a n=9223372036854775808i 6", "range"), // out-of-range integer
        ("m,host=a v=\"text\" 7", "float"),             // type conflict with the schema
        ("m,host=a v=1 notatime", "notatime"),          // bad timestamp
    ];
    for (line, needle) in cases {
        let body = format!("# a comment\n\nm,host=good v=10 100\n{line}\nm,host=good v=11 101\n");
        let (status, v) = rejected(&server, &body).await;
        assert_eq!(status, 400, "{line}: {v}");
        let data = v["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{line}: {v}"));
        assert_eq!(data.len(), 1, "{line}: {v}");
        assert_eq!(data[0]["line_number"], 4, "{line}: {v}");
        assert_eq!(data[0]["original_line"].as_str(), Some(*line));
        let reason = data[0]["error_message"].as_str().unwrap();
        assert!(
            reason.contains(needle),
            "{line}: reason {reason:?} lacks {needle:?}"
        );
        assert_eq!(v["stored_lines"], 2, "{line}: {v}");
    }
    // The good lines of every batch were stored (the same identities, so 2 rows + the first).
    assert_eq!(server.sql_i64("bad", "SELECT count(*) FROM m").await, 3);
    // The conflicting line did not change the column's type.
    let t = server
        .sql(
            "bad",
            "SELECT data_type FROM system.columns WHERE \"table\" = 'm' AND \"column\" = 'v'",
        )
        .await;
    assert_eq!(t[0]["data_type"], "Float64");

    // An unterminated string runs to the end of the body (as in InfluxDB).
    let (status, v) = rejected(&server, "m,host=u v=1 1\nm,host=u s=\"open 2\n").await;
    assert_eq!(status, 400);
    assert_eq!(v["data"][0]["line_number"], 2, "{v}");
    assert!(
        v["data"][0]["error_message"]
            .as_str()
            .unwrap()
            .contains("no closing double quote"),
        "{v}"
    );
    assert_eq!(v["stored_lines"], 1);

    // Long lines are cut to 100 characters in the report.
    let long = format!("m,host=a v=1 {}", "9".repeat(300));
    let (status, v) = rejected(&server, &long).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["data"][0]["original_line"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        100
    );
}

#[tokio::test]
async fn accept_partial_false_stores_nothing() {
    let server = Server::start(&[]);
    let r = server
        .client()
        .post(format!(
            "{}/api/v3/write_lp?db=strict&accept_partial=false",
            server.url
        ))
        .body("m v=1 1\nm v= 2\nm v=3 3\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"][0]["line_number"], 2, "{v}");
    let (status, body) = server
        .sql_raw("strict", "SELECT count(*) FROM m", "json")
        .await;
    // Nothing was stored, so not even the database exists.
    assert_eq!(status, 404, "the database must not exist: {body}");
    assert!(
        body.contains("strict") && body.contains("does not exist"),
        "{body}"
    );
}

#[tokio::test]
async fn bodies_parameters_and_queries() {
    let server = Server::start(&["--max-body-bytes", "1000"]);
    let c = server.client();
    // Invalid gzip.
    let r = c
        .post(format!("{}/api/v3/write_lp?db=x", server.url))
        .header("Content-Encoding", "gzip")
        .body("this is not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("gzip"));
    // Oversized body, plain and after gunzip.
    let big = "m v=1 1\n".repeat(200);
    let r = c
        .post(format!("{}/api/v3/write_lp?db=x", server.url))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(big.as_bytes()).unwrap();
    let r = c
        .post(format!("{}/api/v3/write_lp?db=x", server.url))
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        413,
        "a gzip bomb is measured after decoding"
    );
    // Bad precision, missing db/bucket, bad database name.
    for (path, needle) in [
        ("/write?db=x&precision=weeks", "precision"),
        ("/api/v2/write?org=o", "bucket"),
        ("/api/v3/write_lp", "db"),
        ("/write?db=_internal", "reserved"),
    ] {
        let r = c
            .post(format!("{}{path}", server.url))
            .body("m v=1 1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }
    // SQL errors carry DataFusion's message and a 400.
    server.write_ok("x", "m,host=a v=1 1\n").await;
    for (sql, needle) in [
        ("SELEC 1", "SELEC"),
        ("SELECT * FROM nope", "nope"),
        ("SELECT missing_col FROM m", "missing_col"),
        (
            "SELECT date_bin('not an interval', time) FROM m",
            "interval",
        ),
        ("CREATE TABLE t (a INT)", "DDL"),
    ] {
        let (status, body) = server.sql_raw("x", sql, "json").await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(body.contains(needle), "{sql}: {body}");
    }
    let (status, body) = server.sql_raw("x", "SELECT 1", "yaml").await;
    assert_eq!(status, 400);
    assert!(body.contains("format"));
}

#[tokio::test]
async fn query_limits_and_buffer_budget() {
    let server = Server::start(&[
        "--query-timeout",
        "3s",
        "--query-memory-limit",
        "64000000",
        "--memory-budget",
        "400000",
        "--flush-bytes",
        "100000000",
    ]);
    // Over the write buffer's budget: 503 with Retry-After; every acknowledged row kept.
    let mut acked = 0;
    let mut refused = 0;
    for round in 0..60 {
        let body: String = (0..1500)
            .map(|i| format!("m,host=h{round} v={i} {i}\n"))
            .collect();
        let r = server
            .client()
            .post(format!("{}/api/v3/write_lp?db=q", server.url))
            .body(body)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            204 => acked += 1500,
            503 => {
                assert!(r.headers().get("retry-after").is_some());
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(refused > 0, "the budget was never hit");
    assert!(acked > 0);
    assert_eq!(server.sql_i64("q", "SELECT count(*) FROM m").await, acked);
    // A body that could never fit the budget is a 413, not a 503 to retry forever.
    let huge: String = (0..20000)
        .map(|i| format!("m,host=a v={i} {i}\n"))
        .collect();
    let r = server
        .client()
        .post(format!("{}/api/v3/write_lp?db=q", server.url))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);

    // A query that outlives its time limit.
    let slow = "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b \
                WHERE a.value + b.value = 7";
    let (status, body) = server.sql_raw("q", slow, "json").await;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("time limit"), "{body}");
    // A query over its memory limit (a hash join's build side cannot
    // spill), on a server whose time limit it cannot reach first however
    // loaded the machine is.
    let roomy = Server::start(&[
        "--query-timeout",
        "120s",
        "--query-memory-limit",
        "64000000",
    ]);
    let hungry = "SELECT count(*) FROM generate_series(1, 8000000) a JOIN generate_series(1, 8000000) b \
                  ON a.value = b.value";
    let (status, body) = roomy.sql_raw("fleet", hungry, "json").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("memory limit"), "{body}");
}

/// A query string that does not parse (a parameter given twice) gets the
/// API's JSON error, not plain text.
#[tokio::test]
async fn a_bad_sql_query_string_is_a_json_400() {
    let server = Server::start(&[]);
    let r = server
        .client()
        .get(format!(
            "{}/api/v1/sql?q=SELECT%201&q=SELECT%202",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.expect("a JSON body");
    assert!(v["error"].as_str().unwrap().contains("duplicate"), "{v}");
}
