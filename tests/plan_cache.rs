//! Plans kept by query shape: the same SQL with other literals reuses the
//! optimized plan, and answers exactly as if planned from its SQL — with
//! the table as it is now (new rows, new columns), the values converted as
//! the planner converts them, and its errors where the values are wrong.

use crate::common::Server;

/// A GET of `sql`: its status, body, and the `desc` of the `plan` phase
/// in its `Server-Timing` header (`hit`, `miss`, `planned`).
async fn ask(server: &Server, sql: &str) -> (u16, String, String) {
    let r = server
        .client()
        .get(format!("{}/api/v1/sql", server.url))
        .query(&[("db", "fleet"), ("q", sql)])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let plan = r
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split(", ").find(|p| p.starts_with("plan;")))
        .and_then(|p| p.split(";desc=").nth(1))
        .unwrap_or("")
        .to_string();
    (status, r.text().await.unwrap(), plan)
}

fn lines(hosts: &[&str], minutes: std::ops::Range<i64>, extra: &str) -> String {
    let mut body = String::new();
    for (h, host) in hosts.iter().enumerate() {
        for m in minutes.clone() {
            let t = 1_700_000_000_000_000_000i64 + m * 60_000_000_000;
            body.push_str(&format!(
                "cpu,hostname={host} usage={}.5,n={}i{extra} {t}\n",
                h * 100 + m as usize,
                m
            ));
        }
    }
    body
}

fn plan_cache_count(metrics: &str, result: &str) -> u64 {
    let key = format!("fleetlake_query_plan_cache_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("{key}in {metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_shape_is_planned_once_and_answers_as_planned_from_its_sql() {
    let server = Server::start(&[]);
    let cached = Server::start(&["--query-plan-cache", "0"]);
    let body = lines(&["a", "b", "c"], 0..60, "");
    for s in [&server, &cached] {
        s.write_ok("fleet", &body).await;
        s.flush().await;
    }
    // 2023-11-14T22:13:20Z is minute 0.
    let shape = |hosts: &str, from: &str, to: &str, above: &str| {
        format!(
            "SELECT hostname, count(*) AS n, max(usage) AS top, sum(n) AS s FROM cpu \
             WHERE hostname IN ({hosts}) AND time >= '{from}' AND time < '{to}' AND usage > {above} \
             GROUP BY hostname ORDER BY hostname"
        )
    };
    let queries = [
        shape("'a'", "2023-11-14T22:13:20Z", "2023-11-14T22:23:20Z", "0"),
        shape("'b'", "2023-11-14T22:33:20Z", "2023-11-14T22:43:20Z", "120"),
        shape(
            "'c'",
            "2023-11-14T22:13:20Z",
            "2023-11-14T23:13:20Z",
            "230.5",
        ),
        shape("'a'", "2023-11-14T22:20:20Z", "2023-11-14T22:21:20Z", "6"),
    ];
    let mut descs = Vec::new();
    for q in &queries {
        let (status, body, desc) = ask(&server, q).await;
        let (s0, expected, d0) = ask(&cached, q).await;
        assert_eq!((status, s0), (200, 200), "{body} {expected}");
        assert_eq!(body, expected, "{q}");
        assert_eq!(d0, "planned");
        descs.push(desc);
    }
    assert_eq!(descs, ["miss", "hit", "hit", "hit"]);
    // Concrete answers, so that both servers being wrong alike fails too.
    let (_, b, _) = ask(&server, &queries[1]).await;
    // Host b is h = 1: usage 100 + m + .5 for minutes 20..29, above 120 from m = 20.
    assert_eq!(b, r#"[{"hostname":"b","n":10,"top":129.5,"s":245}]"#);
    let (_, c, _) = ask(&server, &queries[2]).await;
    // Host c: 200 + m + .5 > 230.5 for m in 31..59.
    assert_eq!(c, r#"[{"hostname":"c","n":29,"top":259.5,"s":1305}]"#);

    // Rows written after the plan was kept are in the next answer.
    let late = lines(&["a"], 60..70, "");
    server.write_ok("fleet", &late).await;
    let (_, all_a, desc) = ask(
        &server,
        &shape("'a'", "2023-11-14T22:13:20Z", "2023-11-15T22:13:20Z", "-1"),
    )
    .await;
    // `-1` is not a literal we take out (a unary minus): its own shape.
    assert_eq!(desc, "miss");
    assert!(all_a.contains(r#""n":70"#), "{all_a}");
    let (_, all_a, desc) = ask(
        &server,
        &shape("'a'", "2023-11-14T22:13:20Z", "2023-11-15T22:13:20Z", "0"),
    )
    .await;
    assert_eq!(desc, "hit");
    assert!(all_a.contains(r#""n":70"#), "{all_a}");

    let m = server.metrics().await;
    assert!(plan_cache_count(&m, "hit") >= 4, "{m}");
    assert!(plan_cache_count(&m, "miss") >= 2, "{m}");
}

#[tokio::test]
async fn values_bind_only_where_the_planner_would_convert_them_alike() {
    let server = Server::start(&[]);
    server.write_ok("fleet", &lines(&["a"], 0..5, "")).await;
    let q = |v: &str| format!("SELECT count(*) AS k FROM cpu WHERE n > {v}");
    let (_, body, desc) = ask(&server, &q("1")).await;
    assert_eq!((body.as_str(), desc.as_str()), (r#"[{"k":3}]"#, "miss"));
    let (_, body, desc) = ask(&server, &q("3")).await;
    assert_eq!((body.as_str(), desc.as_str()), (r#"[{"k":1}]"#, "hit"));
    // 1.5 against an integer column compares as a float: planned as written.
    let (_, body, desc) = ask(&server, &q("1.5")).await;
    assert_eq!((body.as_str(), desc.as_str()), (r#"[{"k":3}]"#, "planned"));
    // Beyond the column's range, or a string against a number: the
    // planner's answer.
    let (status, body, _) = ask(&server, &q("99999999999999999999")).await;
    let (s2, b2, _) = ask(&server, &q("99999999999999999999.0")).await;
    assert_eq!((status, s2), (200, 200), "{body} {b2}");
    assert_eq!(body, r#"[{"k":0}]"#);

    // A time that is not a time: DataFusion's 400, on a kept shape too.
    let t = |v: &str| format!("SELECT count(*) AS k FROM cpu WHERE time >= '{v}'");
    let (status, body, desc) = ask(&server, &t("2023-11-14T22:15:20Z")).await;
    assert_eq!(
        (status, body.as_str(), desc.as_str()),
        (200, r#"[{"k":3}]"#, "miss")
    );
    let (status, body, desc) = ask(&server, &t("not a time")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a time"), "{body}");
    assert_eq!(desc, "");

    // Output columns named after a value are not kept.
    let (status, body, desc) = ask(
        &server,
        "SELECT hostname = 'a' FROM cpu ORDER BY time LIMIT 1",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(desc, "planned");
    assert!(
        !body.contains('$') && body.contains("Utf8(\\\"a\\\")"),
        "{body}"
    );

    // now() folds into the plan: planned every time.
    for _ in 0..2 {
        let (_, body, desc) = ask(
            &server,
            "SELECT count(*) AS k FROM cpu WHERE time < now() AND hostname = 'a'",
        )
        .await;
        assert_eq!((body.as_str(), desc.as_str()), (r#"[{"k":5}]"#, "planned"));
    }
    // So are the system tables (their rows are the catalog's now).
    let (_, _, desc) = ask(&server, "SELECT count(*) FROM system.tables").await;
    assert_eq!(desc, "planned");
}

#[tokio::test]
async fn a_new_column_replans_a_kept_shape() {
    let server = Server::start(&[]);
    server.write_ok("fleet", &lines(&["a"], 0..3, "")).await;
    let q = |h: &str| format!("SELECT * FROM cpu WHERE hostname = '{h}' ORDER BY time LIMIT 1");
    let (_, body, desc) = ask(&server, &q("a")).await;
    assert_eq!(desc, "miss");
    assert!(!body.contains("temp"), "{body}");
    server
        .write_ok("fleet", &lines(&["b"], 0..3, ",temp=40.5"))
        .await;
    let (_, body, desc) = ask(&server, &q("b")).await;
    assert_eq!(desc, "miss", "the schema changed: planned anew");
    assert!(body.contains(r#""temp":40.5"#), "{body}");
    let (_, _, desc) = ask(&server, &q("a")).await;
    assert_eq!(desc, "hit");
}
