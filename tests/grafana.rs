//! The Grafana JSON datasource API: requests as the simPod JSON plugin (and
//! SimpleJSON) send them, answers checked against values computed here from
//! the data written.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::common::Server;

const HOSTS: usize = 3;
const EPOCHS: usize = 60;
/// 2016-10-31T06:00:00Z, the day of the plugin docs' example request.
const START_MS: i64 = 1_477_893_600_000;
const STEP_MS: i64 = 10_000;
const FROM: &str = "2016-10-31T06:00:00.000Z";
const TO: &str = "2016-10-31T06:09:59.999Z";

fn usage_user(h: usize, e: usize) -> f64 {
    ((h * 37 + e * 11 + (e * e) % 7) % 100) as f64
}

fn usage_system(h: usize, e: usize) -> f64 {
    ((h * 13 + e * 5) % 50) as f64 + 0.5
}

fn region(h: usize) -> &'static str {
    ["us-east-1", "eu-west-1"][h % 2]
}

fn t_ms(e: usize) -> i64 {
    START_MS + e as i64 * STEP_MS
}

async fn start() -> Server {
    let server = Server::start(&["--compaction-interval", "0"]);
    let mut lp = String::new();
    for e in 0..EPOCHS {
        for h in 0..HOSTS {
            lp.push_str(&format!(
                "cpu,hostname=host_{h},region={} usage_user={},usage_system={},status=\"ok\" {}\n",
                region(h),
                usage_user(h, e),
                usage_system(h, e),
                t_ms(e) * 1_000_000
            ));
        }
    }
    lp.push_str(&format!(
        "events,kind=deploy text=\"deployed v1\",title=\"deploy\",tags=\"deploy,prod\" {}\n",
        t_ms(12) * 1_000_000
    ));
    server.write_ok("fleet", &lp).await;
    // Half the data in Parquet, half in the buffer: both must answer.
    server.flush().await;
    server
        .write_ok(
            "other",
            &format!("mem,hostname=host_9 used=42 {}\n", t_ms(0) * 1_000_000),
        )
        .await;
    server
}

async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let r = server
        .client()
        .post(format!("{}{path}", server.url))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let v =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
    (status, v)
}

async fn post_ok(server: &Server, path: &str, body: Value) -> Value {
    let (status, v) = post(server, path, body).await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// A `/query` body as Grafana 10 sends it for the JSON plugin.
fn query_body(targets: Value, interval_ms: i64, max_points: i64, adhoc: Value) -> Value {
    json!({
        "app": "dashboard",
        "requestId": "Q100",
        "timezone": "browser",
        "panelId": 2,
        "dashboardUID": "fleet-overview",
        "range": {"from": FROM, "to": TO, "raw": {"from": "now-10m", "to": "now"}},
        "rangeRaw": {"from": "now-10m", "to": "now"},
        "interval": format!("{}s", interval_ms / 1000),
        "intervalMs": interval_ms,
        "maxDataPoints": max_points,
        "targets": targets,
        "adhocFilters": adhoc,
        "scopedVars": {
            "__interval": {"text": format!("{}s", interval_ms / 1000), "value": format!("{}s", interval_ms / 1000)},
            "__interval_ms": {"text": interval_ms.to_string(), "value": interval_ms}
        },
        "startTime": 1_477_894_200_000_i64,
        "liveStreaming": false,
        "filters": []
    })
}

fn target(refid: &str, target: &str, payload: Value) -> Value {
    json!({
        "refId": refid,
        "target": target,
        "payload": payload,
        "datasource": {"type": "simpod-json-datasource", "uid": "fleetlake"},
        "editorMode": "code",
        "hide": false
    })
}

/// Averages of `value(h, e)` per bucket of `width_ms`, over hosts `hosts`.
fn bucket_avgs(
    hosts: &[usize],
    width_ms: i64,
    value: impl Fn(usize, usize) -> f64,
    keep: impl Fn(f64) -> bool,
) -> BTreeMap<i64, f64> {
    let mut sums: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for e in 0..EPOCHS {
        for &h in hosts {
            let v = value(h, e);
            if keep(v) {
                let b = t_ms(e).div_euclid(width_ms) * width_ms;
                let s = sums.entry(b).or_default();
                s.0 += v;
                s.1 += 1.0;
            }
        }
    }
    sums.into_iter().map(|(b, (s, n))| (b, s / n)).collect()
}

fn points(series: &Value) -> BTreeMap<i64, f64> {
    series["datapoints"]
        .as_array()
        .expect("datapoints")
        .iter()
        .map(|p| (p[1].as_i64().expect("ms"), p[0].as_f64().expect("value")))
        .collect()
}

fn assert_close(got: &BTreeMap<i64, f64>, want: &BTreeMap<i64, f64>, what: &str) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: bucket times"
    );
    for (t, w) in want {
        assert!(
            (got[t] - w).abs() < 1e-9,
            "{what} at {t}: {} != {w}",
            got[t]
        );
    }
}

fn by_target(answer: &Value) -> BTreeMap<String, Value> {
    answer
        .as_array()
        .expect("array")
        .iter()
        .map(|s| (s["target"].as_str().expect("target").to_string(), s.clone()))
        .collect()
}

#[tokio::test]
async fn save_test_metrics_and_payload_options() {
    let server = start().await;
    for path in [
        "/grafana/",
        "/grafana",
        "/grafana/db/other/",
        "/grafana/?db=other",
    ] {
        let r = server
            .client()
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }

    // The builder's first request is `{}`.
    let metrics = post_ok(&server, "/grafana/metrics", json!({})).await;
    let names: Vec<&str> = metrics
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"cpu.usage_user"), "{names:?}");
    assert!(names.contains(&"cpu.usage_system"), "{names:?}");
    assert!(
        !names.contains(&"cpu.status"),
        "strings are not plottable: {names:?}"
    );
    assert!(!names.contains(&"mem.used"), "other database: {names:?}");
    let cpu = metrics
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["value"] == "cpu.usage_user")
        .unwrap();
    let payloads: Vec<&str> = cpu["payloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for want in [
        "aggregate",
        "group_by",
        "hostname",
        "region",
        "format",
        "db",
    ] {
        assert!(payloads.contains(&want), "{want} in {payloads:?}");
    }
    let aggs: Vec<&str> = cpu["payloads"][0]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(aggs, ["avg", "min", "max", "sum", "count", "last"]);

    // Another database by payload, by path and by query parameter.
    let body = json!({"metric": "cpu.usage_user", "payload": {"db": "other"}});
    let other = post_ok(&server, "/grafana/metrics", body).await;
    assert_eq!(other[0]["value"], "mem.used", "{other}");
    let other = post_ok(&server, "/grafana/db/other/metrics", json!({})).await;
    assert_eq!(other.as_array().unwrap().len(), 1, "{other}");
    let other = post_ok(&server, "/grafana/metrics?db=other", json!({})).await;
    assert_eq!(other[0]["value"], "mem.used", "{other}");
    // A tag filter in the payload keeps the tables that have the tag.
    let body = json!({"metric": "", "payload": {"region": "eu-west-1"}});
    let filtered = post_ok(&server, "/grafana/metrics", body).await;
    assert!(
        filtered
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["value"].as_str().unwrap().starts_with("cpu.")),
        "{filtered}"
    );

    // The drop-down of a tag payload: its values.
    let body =
        json!({"metric": "cpu.usage_user", "payload": {"aggregate": "avg"}, "name": "hostname"});
    let opts = post_ok(&server, "/grafana/metric-payload-options", body).await;
    assert_eq!(
        opts,
        json!([
            {"label": "host_0", "value": "host_0"},
            {"label": "host_1", "value": "host_1"},
            {"label": "host_2", "value": "host_2"}
        ])
    );
    let body = json!({"metric": "cpu.usage_user", "payload": {}, "name": "group_by"});
    let opts = post_ok(&server, "/grafana/metric-payload-options", body).await;
    assert_eq!(opts[0]["value"], "hostname", "{opts}");

    // SimpleJSON's /search: the same metrics as a flat list.
    let search = post_ok(&server, "/grafana/search", json!({"target": ""})).await;
    assert!(
        search
            .as_array()
            .unwrap()
            .contains(&json!("cpu.usage_user"))
    );
}

#[tokio::test]
async fn metric_targets_bucketed_grouped_filtered() {
    let server = start().await;
    let all: Vec<usize> = (0..HOSTS).collect();

    // Per-minute averages over all hosts; hidden and empty targets skipped.
    let targets = json!([
        target("A", "cpu.usage_user", json!({"aggregate": "avg"})),
        {"refId": "B", "target": "cpu.usage_system", "hide": true, "datasource": {"type": "simpod-json-datasource"}},
        {"refId": "C", "datasource": {"type": "simpod-json-datasource"}, "editorMode": "builder"},
    ]);
    let body = query_body(targets, 60_000, 550, json!([]));
    let answer = post_ok(&server, "/grafana/query", body).await;
    assert_eq!(answer.as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer[0]["target"], "cpu.usage_user");
    let want = bucket_avgs(&all, 60_000, usage_user, |_| true);
    assert_eq!(want.len(), 10);
    assert_close(&points(&answer[0]), &want, "avg per minute");

    // max, count and last per minute.
    for (agg, check) in [("max", 0), ("count", 1), ("last", 2)] {
        let targets = json!([target("A", "cpu.usage_user", json!({"aggregate": agg}))]);
        let answer = post_ok(
            &server,
            "/grafana/query",
            query_body(targets, 60_000, 550, json!([])),
        )
        .await;
        let got = points(&answer[0]);
        for (b, v) in &got {
            let es: Vec<usize> = (0..EPOCHS)
                .filter(|&e| t_ms(e) / 60_000 * 60_000 == *b)
                .collect();
            let want = match check {
                0 => es
                    .iter()
                    .flat_map(|&e| all.iter().map(move |&h| usage_user(h, e)))
                    .fold(f64::MIN, f64::max),
                1 => (es.len() * HOSTS) as f64,
                // Every host reports at the last epoch; any of their values is "last".
                _ => {
                    let e = *es.last().unwrap();
                    assert!(
                        all.iter().any(|&h| usage_user(h, e) == *v),
                        "{agg} {b}: {v}"
                    );
                    *v
                }
            };
            assert_eq!(*v, want, "{agg} at {b}");
        }
    }

    // maxDataPoints caps the buckets: the interval widens.
    let targets = json!([target("A", "cpu.usage_user", json!({}))]);
    let answer = post_ok(
        &server,
        "/grafana/query",
        query_body(targets, 10_000, 4, json!([])),
    )
    .await;
    let got = points(&answer[0]);
    assert!(got.len() <= 4 && got.len() >= 2, "{got:?}");
    let times: Vec<i64> = got.keys().copied().collect();
    let width = times[1] - times[0];
    assert!(width >= 200_000, "widened to {width} ms");
    assert_close(
        &got,
        &bucket_avgs(&all, width, usage_user, |_| true),
        "widened",
    );

    // Group by a tag: one series per host; a payload tag filter narrows.
    let targets = json!([target(
        "A",
        "cpu.usage_system",
        json!({"aggregate": "avg", "group_by": ["hostname"], "region": ["us-east-1"]})
    )]);
    let answer = post_ok(
        &server,
        "/grafana/query",
        query_body(targets, 60_000, 550, json!([])),
    )
    .await;
    let series = by_target(&answer);
    let names: Vec<&String> = series.keys().collect();
    assert_eq!(
        names,
        [
            "cpu.usage_system{hostname=host_0}",
            "cpu.usage_system{hostname=host_2}"
        ]
    );
    for h in [0, 2] {
        let s = &series[&format!("cpu.usage_system{{hostname=host_{h}}}")];
        assert_close(
            &points(s),
            &bucket_avgs(&[h], 60_000, usage_system, |_| true),
            "per host",
        );
    }

    // Ad hoc filters apply to every metric target of the request.
    type Case = (Value, Vec<usize>, fn(f64) -> bool);
    let cases: Vec<Case> = vec![
        (
            json!([{"key": "hostname", "operator": "=", "value": "host_1"}]),
            vec![1],
            |_| true,
        ),
        (
            json!([{"key": "hostname", "operator": "!=", "value": "host_1"}]),
            vec![0, 2],
            |_| true,
        ),
        (
            json!([{"key": "hostname", "operator": "=~", "value": "^host_[12]$"}]),
            vec![1, 2],
            |_| true,
        ),
        (
            json!([{"key": "hostname", "operator": "!~", "value": "/2$/"}]),
            vec![0, 1],
            |_| true,
        ),
        (
            json!([{"key": "usage_user", "operator": ">", "value": "50"}]),
            vec![0, 1, 2],
            |v| v > 50.0,
        ),
        (
            json!([{"key": "usage_user", "operator": "<", "value": "30"},
                {"key": "region", "operator": "=", "value": "us-east-1"}]),
            vec![0, 2],
            |v| v < 30.0,
        ),
    ];
    for (adhoc, hosts, keep) in cases {
        let targets = json!([target("A", "cpu.usage_user", json!({"aggregate": "avg"}))]);
        let answer = post_ok(
            &server,
            "/grafana/query",
            query_body(targets, 60_000, 550, adhoc.clone()),
        )
        .await;
        assert_close(
            &points(&answer[0]),
            &bucket_avgs(&hosts, 60_000, usage_user, keep),
            &adhoc.to_string(),
        );
    }

    // Table format of a metric target.
    let targets = json!([target(
        "A",
        "cpu.usage_user",
        json!({"format": "table", "group_by": "hostname"})
    )]);
    let answer = post_ok(
        &server,
        "/grafana/query",
        query_body(targets, 60_000, 550, json!([])),
    )
    .await;
    let t = &answer[0];
    assert_eq!(t["type"], "table");
    assert_eq!(
        t["columns"],
        json!([{"text": "Time", "type": "time"}, {"text": "hostname", "type": "string"},
               {"text": "cpu.usage_user", "type": "number"}])
    );
    assert_eq!(t["rows"].as_array().unwrap().len(), 30);
    let want = bucket_avgs(&[1], 60_000, usage_user, |_| true);
    let row = t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[1] == "host_1")
        .unwrap();
    assert_eq!(row[2].as_f64().unwrap(), want[&row[0].as_i64().unwrap()]);
}

#[tokio::test]
async fn sql_targets_with_macros() {
    let server = start().await;

    // $__timeGroup with $__timeFilter: the string column names the series.
    let sql = "SELECT $__timeGroup(time, '1m') AS time, hostname, avg(usage_user) AS v \
               FROM cpu WHERE $__timeFilter(time) GROUP BY 1, 2 ORDER BY 1";
    let answer = post_ok(
        &server,
        "/grafana/query",
        query_body(json!([target("A", sql, json!({}))]), 10_000, 550, json!([])),
    )
    .await;
    let series = by_target(&answer);
    assert_eq!(
        series.keys().collect::<Vec<_>>(),
        ["host_0", "host_1", "host_2"]
    );
    for h in 0..HOSTS {
        assert_close(
            &points(&series[&format!("host_{h}")]),
            &bucket_avgs(&[h], 60_000, usage_user, |_| true),
            "timeGroup",
        );
    }

    // $__dateBin at the request's interval; ad hoc filters reach a result column.
    let sql = "SELECT $__dateBin(time) AS time, hostname, max(usage_user) AS peak FROM cpu \
               WHERE $__timeFilter(time) GROUP BY 1, 2";
    let adhoc = json!([{"key": "hostname", "operator": "=", "value": "host_2"}]);
    let answer = post_ok(
        &server,
        "/grafana/query",
        query_body(
            json!([target("A", sql, json!({}))]),
            120_000,
            550,
            adhoc.clone(),
        ),
    )
    .await;
    assert_eq!(answer.as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer[0]["target"], "host_2");
    let got = points(&answer[0]);
    assert_eq!(got.len(), 5);
    for (b, v) in &got {
        let want = (0..EPOCHS)
            .filter(|&e| t_ms(e) / 120_000 * 120_000 == *b)
            .map(|e| usage_user(2, e))
            .fold(f64::MIN, f64::max);
        assert_eq!(*v, want);
    }

    // $__adhocFilters puts them where the query says, even on columns it does not return.
    let sql = "SELECT $__timeGroup(time, 5m) AS time, count(*) AS n FROM cpu \
               WHERE $__timeFilter(time) AND $__adhocFilters GROUP BY 1";
    let answer = post_ok(
        &server,
        "/grafana/query",
        query_body(json!([target("A", sql, json!({}))]), 60_000, 550, adhoc),
    )
    .await;
    assert_eq!(answer[0]["target"], "n");
    assert_eq!(
        points(&answer[0]).values().copied().collect::<Vec<_>>(),
        [30.0, 30.0]
    );

    // $__timeFrom(), $__timeTo(), $__interval and $__interval_ms.
    let sql = "SELECT $__timeFrom() AS time, \
               CAST($__interval_ms AS DOUBLE) AS ms, \
               CAST(date_part('epoch', $__timeTo()) - date_part('epoch', $__timeFrom()) AS DOUBLE) AS span, \
               CAST(date_part('epoch', INTERVAL '$__interval') AS DOUBLE) AS secs";
    let answer = post_ok(
        &server,
        "/grafana/query",
        query_body(json!([target("A", sql, json!({}))]), 30_000, 550, json!([])),
    )
    .await;
    let series = by_target(&answer);
    assert_eq!(
        points(&series["ms"]),
        BTreeMap::from([(START_MS, 30_000.0)])
    );
    assert!(
        (points(&series["span"])[&START_MS] - 599.999).abs() < 1e-6,
        "{answer}"
    );
    assert_eq!(points(&series["secs"])[&START_MS], 30.0);

    // Table answers: by payload, and SimpleJSON's "type": "table".
    let sql = "SELECT time, hostname, usage_user FROM cpu WHERE $__timeFilter(time) AND hostname = 'host_0' ORDER BY time LIMIT 2";
    for t in [
        target("A", sql, json!({"format": "table"})),
        json!({"refId": "A", "target": sql, "type": "table"}),
    ] {
        let answer = post_ok(
            &server,
            "/grafana/query",
            query_body(json!([t]), 60_000, 550, json!([])),
        )
        .await;
        assert_eq!(
            answer,
            json!([{"type": "table",
                "columns": [{"text": "time", "type": "time"}, {"text": "hostname", "type": "string"},
                            {"text": "usage_user", "type": "number"}],
                "rows": [[t_ms(0), "host_0", usage_user(0, 0)], [t_ms(1), "host_0", usage_user(0, 1)]]}])
        );
    }
}

#[tokio::test]
async fn variables_tags_and_annotations() {
    let server = start().await;
    let range = json!({"from": FROM, "to": TO, "raw": {"from": "now-10m", "to": "now"}});

    let hosts = json!([
        {"__text": "host_0", "__value": "host_0"},
        {"__text": "host_1", "__value": "host_1"},
        {"__text": "host_2", "__value": "host_2"}
    ]);
    let body = json!({"payload": {"target": "tag_values(cpu, hostname)"}, "range": range});
    assert_eq!(post_ok(&server, "/grafana/variable", body).await, hosts);
    let body = json!({"payload": {"target": "SELECT DISTINCT hostname FROM cpu WHERE $__timeFilter(time) ORDER BY 1"}, "range": range});
    assert_eq!(post_ok(&server, "/grafana/variable", body).await, hosts);
    let body = json!({"payload": {"target": "SELECT DISTINCT region, hostname FROM cpu ORDER BY 2"}, "range": range});
    assert_eq!(
        post_ok(&server, "/grafana/variable", body).await,
        json!([
            {"__text": "us-east-1", "__value": "host_0"},
            {"__text": "eu-west-1", "__value": "host_1"},
            {"__text": "us-east-1", "__value": "host_2"}
        ])
    );
    // SimpleJSON's variable editor asks /search.
    let search = post_ok(
        &server,
        "/grafana/search",
        json!({"target": "tag_values(cpu, region)"}),
    )
    .await;
    assert_eq!(search, json!(["eu-west-1", "us-east-1"]));

    let keys = post_ok(&server, "/grafana/tag-keys", json!({})).await;
    assert_eq!(
        keys,
        json!([{"type": "string", "text": "hostname"}, {"type": "string", "text": "kind"},
               {"type": "string", "text": "region"}])
    );
    let values = post_ok(&server, "/grafana/tag-values", json!({"key": "region"})).await;
    assert_eq!(
        values,
        json!([{"text": "eu-west-1"}, {"text": "us-east-1"}])
    );
    let values = post_ok(&server, "/grafana/tag-values", json!({"key": "nope"})).await;
    assert_eq!(values, json!([]));

    let annotation = json!({
        "name": "deploys", "datasource": "fleetlake", "iconColor": "rgba(255, 96, 96, 1)",
        "enable": true,
        "query": "SELECT time, title, text, tags FROM events WHERE $__timeFilter(time)"
    });
    let body = json!({"range": range, "rangeRaw": {"from": "now-10m", "to": "now"}, "annotation": annotation});
    let answer = post_ok(&server, "/grafana/annotations", body).await;
    assert_eq!(
        answer,
        json!([{"annotation": annotation, "time": t_ms(12), "title": "deploy",
                "text": "deployed v1", "tags": ["deploy", "prod"]}])
    );
}

#[tokio::test]
async fn user_errors_are_400_with_a_message() {
    let server = start().await;
    let q = |t: Value| query_body(json!([t]), 60_000, 550, json!([]));
    let cases = [
        (
            "/grafana/query",
            q(target("A", "SELEC time FROM cpu", json!({}))),
            "SQL error",
        ),
        (
            "/grafana/query",
            q(target(
                "A",
                "SELECT * FROM nope WHERE $__timeFilter(time)",
                json!({}),
            )),
            "nope",
        ),
        (
            "/grafana/query",
            q(target(
                "A",
                "SELECT $__timeGroup(time, '5 parsecs') AS time, 1.0 AS v",
                json!({}),
            )),
            "parsecs",
        ),
        (
            "/grafana/query",
            q(target("A", "SELECT $__bogus(time)", json!({}))),
            "unknown macro",
        ),
        (
            "/grafana/query",
            q(target("A", "cpu.nope", json!({}))),
            "unknown metric",
        ),
        (
            "/grafana/query",
            q(target(
                "A",
                "cpu.usage_user",
                json!({"aggregate": "median"}),
            )),
            "unknown aggregate",
        ),
        (
            "/grafana/query",
            q(target(
                "A",
                "cpu.usage_user",
                json!({"group_by": "usage_system"}),
            )),
            "not a tag",
        ),
        (
            "/grafana/query",
            q(target(
                "A",
                "SELECT avg(status) AS v, now() AS time FROM cpu",
                json!({}),
            )),
            "avg",
        ),
        (
            "/grafana/query",
            q(target("A", "SELECT hostname FROM cpu", json!({}))),
            "timestamp column",
        ),
        ("/grafana/query", json!({"targets": []}), "range"),
        (
            "/grafana/query",
            query_body(
                json!([target("A", "cpu.usage_user", json!({}))]),
                60_000,
                550,
                json!([{"key": "hostname", "operator": "LIKE", "value": "x"}]),
            ),
            "unknown operator",
        ),
        (
            "/grafana/variable",
            json!({"payload": {"target": "tag_values(cpu, usage_user)"}}),
            "not a tag",
        ),
        (
            "/grafana/variable",
            json!({"payload": {"target": "SELECT $__timeFrom()"}}),
            "range",
        ),
        (
            "/grafana/annotations",
            json!({"annotation": {"query": "SELECT 1"}}),
            "timestamp",
        ),
    ];
    for (path, body, needle) in cases {
        let (status, v) = post(&server, path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{path}: {msg:?} lacks {needle:?}");
    }
    // Not JSON at all.
    let r = server
        .client()
        .post(format!("{}/grafana/query", server.url))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}
