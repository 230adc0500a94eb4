//! The doors: tokens and scopes on every API, and requests that used to take
//! the server down (deep expressions, huge function outputs, huge bodies,
//! extreme PromQL ranges) answered with a 4xx while the server stays up and
//! inside its memory.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Server, create_token};

async fn call(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = c.request(method, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Sends a POST's headers announcing `length` bytes, no body, and returns
/// the status the server answers with.
async fn status_for_headers_only(base: &str, path: &str, length: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.expect("send headers");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("an answer before the body")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"))
}

#[tokio::test]
async fn tokens_and_scopes_guard_every_api() {
    let dir = tempfile::tempdir().unwrap();
    let admin = create_token(dir.path(), "ops", &["admin"]);
    let reader = create_token(dir.path(), "grafana", &["read:fleet"]);
    let writer = create_token(dir.path(), "telegraf", &["write:fleet"]);
    let s = Server::start_in(dir.path(), &["--auth"]);
    let c = s.client();
    let u = &s.url;
    use reqwest::Method as M;

    // Probes stay open; everything else needs a token.
    assert_eq!(
        call(&c, M::GET, &format!("{u}/ping"), None, None).await.0,
        204
    );
    assert_eq!(
        call(&c, M::GET, &format!("{u}/health"), None, None).await.0,
        200
    );
    let r = c
        .get(format!("{u}/api/v1/sql?q=SELECT+1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    for (method, path) in [
        (M::POST, "/api/v3/write_lp?db=fleet"),
        (M::POST, "/api/v1/prom/write"),
        (M::GET, "/prometheus/api/v1/query?query=1"),
        (M::GET, "/prometheus/api/v1/labels"),
        (M::POST, "/grafana/search"),
        (M::GET, "/api/v1/rules"),
        (M::POST, "/api/v1/admin/flush"),
        (M::PUT, "/api/v1/retention"),
        (M::GET, "/api/v1/tokens"),
        (M::GET, "/metrics"),
    ] {
        let (status, v) = call(&c, method.clone(), &format!("{u}{path}"), None, None).await;
        assert_eq!(status, 401, "{method} {path}: {v}");
        let (status, _) = call(
            &c,
            method.clone(),
            &format!("{u}{path}"),
            Some("flk_wrong"),
            None,
        )
        .await;
        assert_eq!(status, 401, "{method} {path} with a bad token");
    }

    // The writer writes, in every form clients send a token.
    let w = |auth: &str| {
        c.post(format!("{u}/api/v3/write_lp?db=fleet"))
            .header("Authorization", auth.to_string())
            .body("cpu,host=a v=1 1000000000\n")
    };
    assert_eq!(
        w(&format!("Bearer {writer}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    assert_eq!(
        w(&format!("Token {writer}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let basic = c
        .post(format!("{u}/api/v3/write_lp?db=fleet"))
        .basic_auth("telegraf", Some(&writer))
        .body("cpu,host=b v=2 1000000000\n");
    assert_eq!(basic.send().await.unwrap().status().as_u16(), 204);
    let v1 = c
        .post(format!("{u}/write?db=fleet&u=telegraf&p={writer}"))
        .body("cpu,host=c v=3 1000000000\n");
    assert_eq!(v1.send().await.unwrap().status().as_u16(), 204);
    // ... but cannot read, nor write elsewhere.
    let (status, v) = call(
        &c,
        M::POST,
        &format!("{u}/api/v1/sql"),
        Some(&writer),
        Some(json!({"sql": "SELECT count(*) AS n FROM cpu"})),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("lacks read:fleet"),
        "{v}"
    );
    let r = c
        .post(format!("{u}/api/v3/write_lp?db=other"))
        .bearer_auth(&writer)
        .body("cpu,host=a v=1 1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // The reader reads (SQL, PromQL, Grafana) but cannot write or delete.
    let (status, v) = call(
        &c,
        M::POST,
        &format!("{u}/api/v1/sql"),
        Some(&reader),
        Some(json!({"sql": "SELECT count(*) AS n FROM cpu"})),
    )
    .await;
    assert_eq!((status, &v[0]["n"]), (200, &json!(3)), "{v}");
    let (status, v) = call(
        &c,
        M::GET,
        &format!("{u}/prometheus/api/v1/query?query=count(cpu_v)&time=1"),
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        &c,
        M::GET,
        &format!("{u}/prometheus/api/v1/query?query=1&db=other"),
        Some(&reader),
        None,
    )
    .await;
    assert_eq!((status, &v["errorType"]), (403, &json!("forbidden")), "{v}");
    let r = c
        .post(format!("{u}/api/v3/write_lp?db=fleet"))
        .bearer_auth(&reader)
        .body("cpu,host=a v=1 1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let delete =
        json!({"sql": "DELETE FROM cpu WHERE time >= '1970-01-01T00:00:00Z' AND host = 'a'"});
    let (status, v) = call(
        &c,
        M::POST,
        &format!("{u}/api/v1/sql"),
        Some(&reader),
        Some(delete.clone()),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    for (method, path, body) in [
        (M::POST, "/api/v1/admin/flush", None),
        (
            M::PUT,
            "/api/v1/retention",
            Some(json!({"db": "fleet", "ttl": "7d"})),
        ),
        (M::GET, "/api/v1/tokens", None),
        (
            M::POST,
            "/api/v1/rules",
            Some(json!({"name": "r", "kind": "alert", "every": "1m",
                        "sql": "SELECT host, max(v) AS value FROM cpu GROUP BY host"})),
        ),
    ] {
        let (status, v) = call(
            &c,
            method.clone(),
            &format!("{u}{path}"),
            Some(&reader),
            body,
        )
        .await;
        assert_eq!(status, 403, "{method} {path}: {v}");
    }

    // The admin deletes, sets retention, and manages tokens; each is audited.
    let (status, v) = call(
        &c,
        M::POST,
        &format!("{u}/api/v1/sql"),
        Some(&admin),
        Some(delete),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        &c,
        M::PUT,
        &format!("{u}/api/v1/retention"),
        Some(&admin),
        Some(json!({"db": "fleet", "table": "cpu", "ttl": "30d"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        &c,
        M::POST,
        &format!("{u}/api/v1/tokens"),
        Some(&admin),
        Some(json!({"name": "temp", "scopes": ["read:*"]})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let temp = v["token"].as_str().unwrap().to_string();
    let temp_id = v["id"].as_str().unwrap().to_string();
    let (status, v) = call(
        &c,
        M::GET,
        &format!("{u}/api/v1/tokens"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let listed = v["tokens"].to_string();
    assert!(
        listed.contains("\"temp\"") && !listed.contains(&temp),
        "a secret was listed: {v}"
    );
    let (status, v) = call(
        &c,
        M::GET,
        &format!("{u}/api/v1/sql?q=SELECT+1&db=fleet"),
        Some(&temp),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = call(
        &c,
        M::DELETE,
        &format!("{u}/api/v1/tokens/{temp_id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &c,
        M::GET,
        &format!("{u}/api/v1/sql?q=SELECT+1"),
        Some(&temp),
        None,
    )
    .await;
    assert_eq!(status, 401, "a revoked token still works");
    let (status, v) = call(
        &c,
        M::POST,
        &format!("{u}/api/v1/sql"),
        Some(&admin),
        Some(json!({"sql": "SELECT principal, action, target, outcome FROM system.audit ORDER BY time"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let actions: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["delete", "retention", "token.create", "token.revoke"],
        "{v}"
    );
    assert!(
        v[0]["principal"].as_str().unwrap().starts_with("token ops"),
        "{v}"
    );
    assert_eq!(v[0]["target"], "fleet.cpu");
}

#[tokio::test]
async fn deep_and_huge_requests_get_4xx_and_the_server_lives() {
    let s = Server::start(&[
        "--query-memory-limit",
        "67108864",
        "--max-request-bytes",
        "1048576",
        "--query-timeout",
        "20s",
    ]);
    let c = s.client();
    let u = &s.url;
    s.write_ok("fleet", "cpu,host=a v=1 1000000000\n").await;
    let sql = |q: String| {
        let c = c.clone();
        let url = format!("{u}/api/v1/sql");
        async move {
            let r = c
                .post(url)
                .json(&json!({"sql": q, "format": "json"}))
                .send()
                .await
                .expect("sql");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let deep = [
        (
            format!("SELECT {}", vec!["1"; 3_000].join("+")),
            400,
            "operators",
        ),
        (
            format!(
                "SELECT 1 FROM cpu WHERE {}",
                vec!["v = 1"; 1_500].join(" OR ")
            ),
            400,
            "operators",
        ),
        (
            format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000)),
            400,
            "nests",
        ),
        ("SELECT repeat('x', 2000000000)".into(), 422, "memory limit"),
        ("SELECT range(1, 1000000000)".into(), 422, "memory limit"),
        (
            "SELECT array_repeat(1, 1000000000)".into(),
            422,
            "memory limit",
        ),
    ];
    for (q, want, text) in deep {
        let (status, body) = sql(q.clone()).await;
        assert_eq!(status, want, "{}…: {body}", &q[..40.min(q.len())]);
        assert!(body.contains(text), "{}…: {body}", &q[..40.min(q.len())]);
    }
    // The whole answer buffered for pretty or parquet counts against the limit.
    for format in ["pretty", "parquet"] {
        let r = c
            .post(format!("{u}/api/v1/sql"))
            .json(&json!({"sql": "SELECT * FROM generate_series(1, 1000000000000)", "format": format}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, 422, "{format}: {body}");
        assert!(body.contains("memory limit"), "{format}: {body}");
    }
    // Bodies past --max-request-bytes are refused before they are read: the
    // answer comes with only the headers sent (a client sending the body
    // anyway sees the connection close under it).
    for path in [
        "/api/v1/sql",
        "/prometheus/api/v1/query",
        "/api/v1/rules",
        "/grafana/query",
    ] {
        let status = status_for_headers_only(u, path, 2 << 20).await;
        assert_eq!(status, 413, "{path}");
    }
    // PromQL: deep expressions, absurd ranges and subqueries.
    let prom = |q: &str, extra: &[(&str, &str)], endpoint: &str| {
        let mut form: Vec<(String, String)> = vec![("query".into(), q.to_string())];
        form.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let r = c
            .post(format!("{u}/prometheus/api/v1/{endpoint}"))
            .form(&form)
            .send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let nested = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
    let chain = vec!["1"; 10_000].join("+");
    let calls = format!("{}1{}", "abs(".repeat(10_000), ")".repeat(10_000));
    for q in [&nested, &chain, &calls] {
        for endpoint in ["query", "format_query"] {
            let (status, body) = prom(q, &[("time", "1")], endpoint).await;
            assert_eq!(status, 400, "{endpoint} {}…: {body}", &q[..20]);
        }
    }
    let (status, body) = prom(
        "cpu_v",
        &[("start", "-1e300"), ("end", "1e300"), ("step", "1")],
        "query_range",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = prom("max_over_time(cpu_v[1y:1ms])", &[("time", "100")], "query").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("subquery"), "{body}");

    // Millions of bad lines (a small gzip body): the answer lists the first
    // thousand and counts the rest, instead of an error list past the body.
    let bad = "a\n".repeat(4_000_000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, bad.as_bytes()).unwrap();
    let r = c
        .post(format!("{u}/api/v3/write_lp?db=fleet"))
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1_000);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("4000000 line(s) rejected"),
        "{}",
        v["error"]
    );

    // Rules: a name too long for the store, a backtest over all of time.
    let rule = json!({"name": "r".repeat(5_000), "kind": "alert", "every": "1m",
        "sql": "SELECT host, max(v) AS value FROM cpu GROUP BY host"});
    let (status, v) = call(
        &c,
        reqwest::Method::POST,
        &format!("{u}/api/v1/rules"),
        None,
        Some(rule),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("at most 128"), "{v}");
    let backtest = json!({
        "rule": {"name": "r", "kind": "alert", "every": "1m",
                 "sql": "SELECT host, max(v) AS value FROM cpu GROUP BY host"},
        "start": i64::MIN, "end": i64::MAX, "step": "1h"});
    let started = Instant::now();
    let (status, v) = call(
        &c,
        reqwest::Method::POST,
        &format!("{u}/api/v1/rules/backtest"),
        None,
        Some(backtest),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("evaluations"), "{v}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Still up, still answering, within a sane footprint.
    assert_eq!(
        c.get(format!("{u}/ping"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let rows = s.sql("fleet", "SELECT count(*) AS n FROM cpu").await;
    assert_eq!(rows[0]["n"], 1);
    let peak = s.peak_rss();
    assert!(peak < 1 << 30, "peak RSS {} MiB", peak >> 20);
}

#[tokio::test]
async fn a_query_burning_every_core_leaves_ping_and_writes_answering() {
    let s = Server::start(&["--query-timeout", "8s"]);
    let c = s.client();
    let u = s.url.clone();
    let heavy = {
        let c = c.clone();
        let u = u.clone();
        tokio::spawn(async move {
            c.post(format!("{u}/api/v1/sql"))
                .json(&json!({"sql": "SELECT sum(a.value * b.value + c.value) FROM generate_series(1, 2000) a, generate_series(1, 2000) b, generate_series(1, 2000) c"}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..5 {
        let started = Instant::now();
        let r = c
            .get(format!("{u}/ping"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap_or_else(|e| panic!("ping {i} during the query: {e}"));
        assert_eq!(r.status().as_u16(), 204);
        let (status, text) = s
            .write("fleet", &format!("cpu,host=a v={i} {}\n", i + 1))
            .await;
        assert_eq!(status, 204, "write {i} during the query: {text}");
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let status = heavy.await.unwrap().unwrap();
    assert_eq!(status, 408, "the cross join should hit the time limit");
}

/// Streams a chunked POST body of `total` bytes of `fill` to `path` and
/// returns the status and how many body bytes were sent before the server
/// answered (or closed the connection).
async fn status_for_endless_body(base: &str, path: &str, total: u64) -> (u16, u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = conn.into_split();
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n");
    wr.write_all(head.as_bytes()).await.expect("send headers");
    let sender = tokio::spawn(async move {
        let chunk = "m,host=a v=1 1\n".repeat(1 << 16);
        let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        let mut sent = 0u64;
        while sent < total {
            if wr.write_all(framed.as_bytes()).await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        sent
    });
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(120), rd.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    drop(rd);
    // The server stops reading once it has answered; the sender then fails
    // (connection reset) or blocks on a full socket.
    let sent = match tokio::time::timeout(Duration::from_secs(5), sender).await {
        Ok(r) => r.expect("sender"),
        Err(_) => 0,
    };
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    (status, sent)
}

#[tokio::test]
async fn hostile_writes_are_refused_inside_the_memory_budget() {
    use fleetlake_ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode, snappy};
    let s = Server::start(&[]);
    let c = s.client();
    let u = &s.url;
    let remote_write = |body: Vec<u8>| {
        let r = c
            .post(format!("{u}/api/v1/prom/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body)
            .send();
        async move {
            let r = r.await.expect("remote write");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    // A 10 KiB label on 50,000 samples: ~100 KiB that would become ~500 MB of rows.
    let long = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "amplified".into(),
                },
                Label {
                    name: "l".into(),
                    value: "x".repeat(10 << 10),
                },
            ],
            samples: (0..50_000)
                .map(|i| Sample {
                    value: 1.0,
                    timestamp: 1_000 + i,
                })
                .collect(),
        }],
    };
    let body = encode(&long);
    assert!(body.len() < 256 << 10, "{}", body.len());
    let (status, text) = remote_write(body).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("expands to"), "{text}");
    // 2,000,000 empty series in a few hundred KiB: refused before decoding,
    // with a short answer.
    let (status, text) = remote_write(snappy(&[0x0a, 0x00].repeat(2_000_000))).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("2000000 series"), "{text}");
    assert!(text.len() < 1_000, "{} bytes of answer", text.len());
    // 20,000 series rejected one by one: the answer lists 1,000, counts all.
    let bad = WriteRequest {
        timeseries: (0..20_000)
            .map(|i| TimeSeries {
                labels: vec![Label {
                    name: "job".into(),
                    value: format!("j{i}"),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1_000,
                }],
            })
            .collect(),
    };
    let (status, text) = remote_write(encode(&bad)).await;
    assert_eq!(status, 400, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["rejected_series"], 20_000);
    assert_eq!(v["data"].as_array().unwrap().len(), 1_000);

    // A poison batch of columns: the first 400 fit, the rest are refused by
    // name, and the table still flushes.
    let wide: String = (0..5_000)
        .map(|i| format!("wide,t{i}=x v=1 {}\n", i + 1))
        .collect();
    let (status, text) = s.write("fleet", &wide).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("--max-columns-per-table"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("4601 line(s) rejected"),
        "{v}"
    );
    let one_line: String = format!(
        "wider,{} v=1 1\n",
        (0..40_000)
            .map(|i| format!("t{i}=x"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let (status, text) = s.write("fleet", &one_line).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("40001 columns"), "{text}");
    s.flush().await;
    assert_eq!(s.sql_i64("fleet", "SELECT count(*) FROM wide").await, 399);
    let cols = s
        .sql(
            "fleet",
            "SELECT count(*) AS n FROM information_schema.columns WHERE table_name = 'wide'",
        )
        .await;
    assert_eq!(cols[0]["n"], 401, "400 columns and time");

    // A 7.5 GiB body is refused after the write limit, not read to the end.
    let (status, sent) = status_for_endless_body(u, "/api/v3/write_lp?db=fleet", 7_500 << 20).await;
    assert_eq!(status, 413);
    assert!(sent < 1 << 30, "sent {} MiB before the answer", sent >> 20);

    assert_eq!(
        c.get(format!("{u}/ping"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let peak = s.peak_rss();
    assert!(peak < 1 << 30, "peak RSS {} MiB", peak >> 20);
}

/// `--memory-limit` bounds the write buffer, flushes, queries and compaction
/// together: a query within its own limit but past what the budget has left
/// gets 503 with Retry-After and a message naming the holders, the budget
/// is given back, and the same query passes on a server with room. A limit
/// below the write buffer's own refuses to start.
#[tokio::test]
async fn queries_share_the_servers_memory_budget() {
    // 32 MB of values in one aggregate's state, which cannot spill.
    let collect =
        "SELECT array_length(array_agg(v)) AS n FROM (SELECT unnest(range(0, 4000000)) AS v)";
    let s = Server::start(&["--memory-budget", "4194304", "--memory-limit", "8388608"]);
    let c = s.client();
    s.write_ok("fleet", "cpu,host=a v=1 1000000000\n").await;
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("fleetlake_memory_limit_bytes 8388608"),
        "{metrics}"
    );
    let held = |m: &str, consumer: &str| -> u64 {
        let key = format!("fleetlake_memory_used_bytes{{consumer=\"{consumer}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("no {key} in {m}"))
            .parse()
            .unwrap()
    };
    assert!(held(&metrics, "write_buffer") > 0, "{metrics}");

    let r = c
        .post(format!("{}/api/v1/sql", s.url))
        .json(&json!({"sql": collect, "format": "json"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("the server's memory budget of 8388608 bytes")
            && body.contains("query asked for")
            && body.contains("--memory-limit"),
        "{body}"
    );
    // A buffered answer counts too.
    let (status, body) = s
        .sql_raw(
            "fleet",
            "SELECT * FROM generate_series(1, 2000000)",
            "pretty",
        )
        .await;
    assert_eq!(status, 503, "{body}");
    let metrics = s.metrics().await;
    assert_eq!(held(&metrics, "query"), 0, "{metrics}");
    assert_eq!(s.sql_i64("fleet", "SELECT count(*) FROM cpu").await, 1);
    s.flush().await;
    assert_eq!(held(&s.metrics().await, "write_buffer"), 0);
    // A merge's readers and writer (16 MB of upload parts alone) do not
    // fit: it is refused, recorded, and the files stay as they are.
    for i in 2..5 {
        s.write_ok("fleet", &format!("cpu,host=a v={i} {i}000000000\n"))
            .await;
        s.flush().await;
    }
    let r = c
        .post(format!("{}/api/v1/admin/compact", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("the server's memory budget") && body.contains("compaction asked for"),
        "{body}"
    );
    assert_eq!(s.sql_i64("fleet", "SELECT count(*) FROM cpu").await, 4);

    let roomy = Server::start(&[]);
    let (status, body) = roomy.sql_raw("fleet", collect, "json").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("4000000"), "{body}");

    let dir = tempfile::tempdir().unwrap();
    let mut low = std::process::Command::new(env!("CARGO_BIN_EXE_fleetlake"))
        .args([
            "serve",
            "--http-bind",
            "127.0.0.1:0",
            "--memory-limit",
            "1048576",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while low.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "started with --memory-limit below --memory-budget"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = low.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--memory-limit"),
        "{stderr}"
    );
}
