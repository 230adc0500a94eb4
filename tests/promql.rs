//! The Prometheus query API: Grafana's Prometheus datasource requests,
//! error envelopes, `promtool` as a real client, and a differential test
//! against VictoriaMetrics over a corpus of dashboard queries
//! (`tests/promql/corpus.txt`).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, free_port};

const HOSTS: usize = 4;
const EPOCHS: usize = 360;
const INTERVAL_S: i64 = 10;
const DB: &str = "fleet";

/// Start of the data (unix seconds): two hours ago on a 10-minute boundary,
/// inside VictoriaMetrics' default retention and clear of its "recent
/// data" handling.
fn data_start() -> i64 {
    let now = chrono::Utc::now().timestamp();
    (now - 7200) / 600 * 600
}

/// Per-sample increment of a counter: 1..=13, varying with time.
fn increment(h: usize, d: usize, e: usize) -> f64 {
    ((e * 7 + h * 3 + d * 5) % 13 + 1) as f64
}

/// Epochs at which host `h`'s counters restart. They restart above their
/// largest increment, so Prometheus' zero-point bound on extrapolation never
/// engages and its rate is VictoriaMetrics' `increase_prometheus` scaled
/// (see the corpus notes).
fn resets_at(h: usize, e: usize) -> bool {
    e > 0 && (e + h * 37).is_multiple_of(157)
}

const BUCKETS: [&str; 6] = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];

/// Deterministic line protocol: `cpu` (TSBS walks, integer percent),
/// `node_load` (float gauges, distinct per host), `node_net` (counters with
/// resets, two devices) and `http_latency` (cumulative `le` buckets).
fn dataset(start: i64) -> Vec<String> {
    let mut hosts: Vec<fleetlake_sim::tsbs::CpuHost> = (0..HOSTS as u64)
        .map(|h| fleetlake_sim::tsbs::CpuHost::new(7, h))
        .collect();
    let mut bytes = [[1000.0f64; 2]; HOSTS];
    let mut packets = [[500.0f64; 2]; HOSTS];
    let mut buckets = [[0.0f64; 6]; HOSTS];
    let mut out = Vec::with_capacity(EPOCHS);
    for e in 0..EPOCHS {
        let ns = (start + e as i64 * INTERVAL_S) * 1_000_000_000;
        let mut lp = String::new();
        for (h, host) in hosts.iter_mut().enumerate() {
            if e > 0 {
                host.step();
            }
            let f = host.fields();
            lp.push_str(&format!("cpu{}", host.tags()));
            for (i, name) in fleetlake_sim::tsbs::CPU_FIELDS.iter().enumerate() {
                lp.push_str(if i == 0 { " " } else { "," });
                lp.push_str(&format!("{name}={}i", f[i]));
            }
            lp.push_str(&format!(" {ns}\n"));
            let x = e as f64;
            let load1 = 1.0 + h as f64 * 0.37 + (x / 17.0 + h as f64).sin() * 0.8;
            let load5 = 1.2 + h as f64 * 0.21 + (x / 41.0 + h as f64).cos() * 0.5;
            lp.push_str(&format!(
                "node_load,hostname=host_{h} load1={load1},load5={load5} {ns}\n"
            ));
            for d in 0..2 {
                if resets_at(h, e) {
                    bytes[h][d] = 5000.0 + h as f64;
                    packets[h][d] = 20.0 + h as f64;
                } else if e > 0 {
                    bytes[h][d] += increment(h, d, e) * 100.0;
                    packets[h][d] += increment(h, d + 1, e);
                }
                lp.push_str(&format!(
                    "node_net,hostname=host_{h},device=eth{d} bytes_total={},packets_total={} {ns}\n",
                    bytes[h][d], packets[h][d]
                ));
            }
            let mut cumulative = 0.0;
            for (j, le) in BUCKETS.iter().enumerate() {
                if e > 0 {
                    cumulative += ((e * (j + 1) + h * 11) % 9) as f64;
                    buckets[h][j] += cumulative;
                }
                lp.push_str(&format!(
                    "http_latency,hostname=host_{h},le={le} bucket={} {ns}\n",
                    buckets[h][j]
                ));
            }
        }
        out.push(lp);
    }
    out
}

/// A VictoriaMetrics single-node server on a free port (Debian package
/// `victoria-metrics`, installed by `scripts/test`).
struct VictoriaMetrics {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl VictoriaMetrics {
    #[allow(clippy::zombie_processes)] // Drop kills and waits.
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", dir.path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start victoria-metrics ({e}): install the Debian package \
                     `victoria-metrics` (apt-get install victoria-metrics; scripts/test does)"
                )
            });
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    async fn wait_ready(&self, client: &reqwest::Client) {
        for _ in 0..100 {
            if let Ok(r) = client.get(format!("{}/health", self.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("victoria-metrics did not become ready at {}", self.url);
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get_json(client: &reqwest::Client, url: &str, params: &[(&str, String)]) -> (u16, Value) {
    let r = client
        .get(url)
        .query(params)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: bad json {e}: {text}"));
    (status, v)
}

async fn post_form(client: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let r = client
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: bad json {e}: {text}"));
    (status, v)
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Writes the dataset: the first half flushed to Parquet, the rest left in
/// the write buffer, so both read paths answer.
async fn load(server: &Server, start: i64) {
    let data = dataset(start);
    let half = data.len() / 2;
    server.write_ok(DB, &data[..half].concat()).await;
    server.flush().await;
    server.write_ok(DB, &data[half..].concat()).await;
}

#[tokio::test]
async fn grafana_save_and_test_query_range_and_metadata() {
    let server = Server::start(&[]);
    let start = data_start();
    load(&server, start).await;
    let c = server.client();
    let api = format!("{}/prometheus/api/v1", server.url);

    // "Save & test": exactly this answer.
    let r = c
        .get(format!("{api}/query?query=1%2B1&time=4"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status":"success","data":{"resultType":"scalar","result":[4,"2"]}})
    );
    // The same as a form POST (Grafana's default method).
    let (s, v) = post_form(
        &c,
        &format!("{api}/query"),
        &[("query", "1+1"), ("time", "4")],
    )
    .await;
    assert_eq!(
        (s, &v["data"]),
        (200, &json!({"resultType": "scalar", "result": [4, "2"]}))
    );

    let (s, v) = get_json(&c, &format!("{api}/status/buildinfo"), &[]).await;
    assert_eq!(s, 200);
    assert!(
        v["data"]["version"].as_str().unwrap().starts_with("2."),
        "{v}"
    );

    // query_range as Grafana posts it: float times, float step.
    let from = start + 600;
    let to = start + 900;
    let (s, v) = post_form(
        &c,
        &format!("{api}/query_range"),
        &[
            ("query", "node_load_load1{hostname=\"host_2\"}"),
            ("start", format!("{from}.000").as_str()),
            ("end", format!("{to}").as_str()),
            ("step", "30.0"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{v}");
    assert_eq!(
        result[0]["metric"],
        json!({"__name__": "node_load_load1", "hostname": "host_2"})
    );
    let values = result[0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 11);
    for (i, p) in values.iter().enumerate() {
        let t = from + 30 * i as i64;
        assert_eq!(p[0], json!(t));
        let e = ((t - start) / INTERVAL_S) as f64;
        let want = 1.0 + 2.0 * 0.37 + (e / 17.0 + 2.0).sin() * 0.8;
        let got: f64 = p[1].as_str().unwrap().parse().unwrap();
        assert!((got - want).abs() < 1e-9, "{t}: {got} vs {want}");
    }

    // Step as a duration, RFC 3339 times, the /api/v1 mount and ?db=.
    let rfc = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let (s, v) = get_json(
        &c,
        &format!("{}/api/v1/query_range", server.url),
        &[
            ("query", "count(node_load_load1)".into()),
            ("start", rfc(from)),
            ("end", rfc(to)),
            ("step", "1m".into()),
            ("db", DB.into()),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let values = v["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 6);
    assert!(values.iter().all(|p| p[1] == "4"), "{v}");

    // Instant vector.
    let (s, v) = get_json(
        &c,
        &format!("{api}/query"),
        &[
            ("query", "sort_desc(node_load_load5)".into()),
            ("time", format!("{from}")),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "vector");
    let got: Vec<f64> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"][1].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(got.len(), HOSTS);
    assert!(got.windows(2).all(|w| w[0] >= w[1]), "{got:?}");

    // An unknown database is a 404 that names it, not an empty success.
    let (s, v) = get_json(
        &c,
        &format!("{api}/query"),
        &[
            ("query", "node_load_load1".into()),
            ("db", "nope".into()),
            ("time", format!("{from}")),
        ],
    )
    .await;
    assert_eq!((s, &v["errorType"]), (404, &json!("not_found")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("\"nope\""), "{v}");

    // Metadata lists the metrics.
    let (s, v) = get_json(&c, &format!("{api}/metadata"), &[]).await;
    assert_eq!(s, 200);
    for m in [
        "cpu_usage_user",
        "node_net_bytes_total",
        "http_latency_bucket",
        "node_load_load1",
    ] {
        assert!(v["data"][m].is_array(), "{m} missing: {v}");
    }
    let (_, v) = get_json(&c, &format!("{api}/metadata"), &[("limit", "2".into())]).await;
    assert_eq!(v["data"].as_object().unwrap().len(), 2);
}

/// An error answer's status, errorType and message.
async fn expect_error(
    c: &reqwest::Client,
    url: &str,
    params: &[(&str, String)],
    status: u16,
    error_type: &str,
    needle: &str,
) {
    let (s, v) = get_json(c, url, params).await;
    assert_eq!(s, status, "{params:?}: {v}");
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["errorType"], error_type, "{params:?}: {v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains(needle),
        "{params:?}: {msg:?} should mention {needle:?}"
    );
}

#[tokio::test]
async fn errors_use_prometheus_envelopes_and_statuses() {
    let server = Server::start(&[]);
    load(&server, data_start()).await;
    let c = server.client();
    let q = format!("{}/prometheus/api/v1/query", server.url);
    let qr = format!("{}/prometheus/api/v1/query_range", server.url);
    let range = |query: &str, step: &str| {
        vec![
            ("query", query.to_string()),
            ("start", "1000".to_string()),
            ("end", "2000".to_string()),
            ("step", step.to_string()),
        ]
    };
    // Parse errors: 400 bad_data.
    expect_error(
        &c,
        &q,
        &[("query", "rate(x[5m]".into())],
        400,
        "bad_data",
        "invalid parameter \"query\"",
    )
    .await;
    expect_error(
        &c,
        &q,
        &[("query", "sum(".into())],
        400,
        "bad_data",
        "query",
    )
    .await;
    // Missing and malformed parameters.
    expect_error(&c, &q, &[], 400, "bad_data", "\"query\": missing").await;
    expect_error(
        &c,
        &q,
        &[("query", "1".into()), ("time", "noon".into())],
        400,
        "bad_data",
        "\"time\"",
    )
    .await;
    expect_error(
        &c,
        &qr,
        &range("1", "0"),
        400,
        "bad_data",
        "zero or negative",
    )
    .await;
    expect_error(&c, &qr, &range("1", "1x"), 400, "bad_data", "\"step\"").await;
    expect_error(
        &c,
        &qr,
        &range("1", "0.05"),
        400,
        "bad_data",
        "11,000 points",
    )
    .await;
    expect_error(&c, &qr, &range("\"text\"", "10"), 400, "bad_data", "string").await;
    expect_error(
        &c,
        &qr,
        &range("up[5m]", "10"),
        400,
        "bad_data",
        "range vector",
    )
    .await;
    let mut backwards = range("1", "10");
    backwards[1].1 = "3000".into();
    expect_error(
        &c,
        &qr,
        &backwards,
        400,
        "bad_data",
        "end timestamp must not be before start",
    )
    .await;
    // Valid PromQL that fleetlake does not evaluate: 422 naming the construct.
    expect_error(
        &c,
        &q,
        &[(
            "query",
            "double_exponential_smoothing(node_load_load1[5m], 0.5, 0.5)".into(),
        )],
        422,
        "execution",
        "double_exponential_smoothing",
    )
    .await;
    expect_error(
        &c,
        &q,
        &[("query", "limitk(2, node_load_load1)".into())],
        422,
        "execution",
        "limitk",
    )
    .await;
    expect_error(
        &c,
        &q,
        &[(
            "query",
            "node_load_load1{hostname=\"a\" or hostname=\"b\"}".into(),
        )],
        422,
        "execution",
        "or",
    )
    .await;
    // Evaluation errors: 422 execution.
    expect_error(
        &c,
        &q,
        &[
            (
                "query",
                "node_net_bytes_total / on(hostname) node_load_load1".into(),
            ),
            ("time", format!("{}", data_start() + 600)),
        ],
        422,
        "execution",
        "many-to-one matching must be explicit",
    )
    .await;
    expect_error(
        &c,
        &q,
        &[
            ("query", "rate({__name__=~\"node_net_.*\"}[5m])".into()),
            ("time", format!("{}", data_start() + 600)),
        ],
        422,
        "execution",
        "same labelset",
    )
    .await;
    // A POST that is not a form.
    let r = c
        .post(&q)
        .header("Content-Type", "application/json")
        .body("{\"query\": \"1\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errorType"], "bad_data");
}

#[tokio::test]
async fn queries_past_the_time_limit_answer_503_timeout() {
    // A limit no query can meet: the answer is Prometheus' timeout envelope.
    let server = Server::start(&["--query-timeout", "1ms"]);
    load(&server, data_start()).await;
    let c = server.client();
    let start = data_start();
    let (s, v) = get_json(
        &c,
        &format!("{}/prometheus/api/v1/query_range", server.url),
        &[
            (
                "query",
                "sum by (hostname) (rate(node_net_bytes_total[5m]))".into(),
            ),
            ("start", format!("{}", start + 600)),
            ("end", format!("{}", start + 3500)),
            ("step", "10".into()),
        ],
    )
    .await;
    assert_eq!((s, v["errorType"].as_str()), (503, Some("timeout")), "{v}");
}

/// Runs promtool and returns its stdout.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install the Debian package `prometheus` \
                 (apt-get install prometheus; scripts/test does)"
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "promtool {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn promtool_queries_fleetlake() {
    let server = Server::start(&[]);
    let start = data_start();
    load(&server, start).await;
    let url = format!("{}/prometheus", server.url);
    let t = start + 1200;
    let e = 120.0; // epoch at t
    let url2 = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        promtool(&[
            "query",
            "instant",
            "--time",
            t.to_string().as_str(),
            url2.as_str(),
            "node_load_load1{hostname=\"host_1\"} * 2",
        ])
    })
    .await
    .unwrap();
    let want = (1.0 + 0.37 + (e / 17.0 + 1.0f64).sin() * 0.8) * 2.0;
    // `{hostname="host_1"} => 2.3... @[t]`
    let line = out
        .lines()
        .find(|l| l.contains("host_1"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        !line.contains("__name__"),
        "arithmetic drops the name: {line}"
    );
    let value: f64 = line
        .split("=> ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((value - want).abs() < 1e-9, "{value} vs {want}");
    assert!(line.contains(&format!("@[{t}]")), "{line}");

    let url2 = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        promtool(&[
            "query",
            "range",
            "--start",
            (start + 600).to_string().as_str(),
            "--end",
            (start + 900).to_string().as_str(),
            "--step",
            "1m",
            url2.as_str(),
            "count by (device) (node_net_bytes_total)",
        ])
    })
    .await
    .unwrap();
    // Two series (eth0, eth1) of six points, each counting every host.
    assert_eq!(out.matches("device=\"eth").count(), 2, "{out}");
    assert_eq!(out.matches(&format!("{HOSTS} @[")).count(), 12, "{out}");
    assert!(out.contains(&format!("@[{}]", start + 900)), "{out}");
}

/// One corpus entry.
struct Case {
    query: String,
    /// The VictoriaMetrics query giving Prometheus' answer, where VM's own
    /// function deliberately differs.
    vm_query: String,
    line: usize,
}

fn corpus() -> Vec<Case> {
    include_str!("promql/corpus.txt")
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            let (q, vm) = match l.split_once(" ;; vm: ") {
                Some((q, vm)) => (q.trim(), vm.trim()),
                None => (l.trim(), l.trim()),
            };
            Case {
                query: q.to_string(),
                vm_query: vm.to_string(),
                line: i + 1,
            }
        })
        .collect()
}

/// A result as `labels → [(t, value)]`.
type Series = BTreeMap<String, Vec<(f64, f64)>>;

fn series_of(v: &Value) -> Result<Series, String> {
    if v["status"] != "success" {
        return Err(format!("error answer: {v}"));
    }
    let data = &v["data"];
    let mut out = Series::new();
    let num = |p: &Value| -> (f64, f64) {
        let t = p[0].as_f64().unwrap_or(f64::NAN);
        let x = p[1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        (t, x)
    };
    match data["resultType"].as_str() {
        Some("matrix") | Some("vector") => {
            for r in data["result"].as_array().into_iter().flatten() {
                let mut labels: Vec<(String, String)> = r["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                labels.sort();
                let key = format!("{labels:?}");
                let pts: Vec<(f64, f64)> = if let Some(vals) = r["values"].as_array() {
                    vals.iter().map(num).collect()
                } else {
                    vec![num(&r["value"])]
                };
                if out.insert(key.clone(), pts).is_some() {
                    return Err(format!("duplicate series {key}"));
                }
            }
        }
        Some("scalar") => {
            // VictoriaMetrics answers an instant scalar as a vector of one
            // unlabelled series: compare both as that.
            out.insert("[]".into(), vec![num(&data["result"])]);
        }
        other => return Err(format!("unexpected result type {other:?}")),
    }
    Ok(out)
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs()) || (a - b).abs() < 1e-9
}

/// Differences between two answers, empty when they agree.
fn compare(ours: &Series, theirs: &Series) -> Vec<String> {
    let mut diffs = Vec::new();
    for k in ours.keys().filter(|k| !theirs.contains_key(*k)) {
        diffs.push(format!("only fleetlake has {k}"));
    }
    for k in theirs.keys().filter(|k| !ours.contains_key(*k)) {
        diffs.push(format!("only VictoriaMetrics has {k}"));
    }
    for (k, a) in ours {
        let Some(b) = theirs.get(k) else { continue };
        if a.len() != b.len() {
            diffs.push(format!("{k}: {} points vs {}", a.len(), b.len()));
            continue;
        }
        for (x, y) in a.iter().zip(b) {
            if x.0 != y.0 || !close(x.1, y.1) {
                diffs.push(format!("{k}: {x:?} vs {y:?}"));
                break;
            }
        }
    }
    diffs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_against_victoria_metrics() {
    let vm = VictoriaMetrics::start();
    let server = Server::start(&[]);
    let c = server.client();
    vm.wait_ready(&c).await;
    let start = data_start();
    load(&server, start).await;
    // Without `db=`: VictoriaMetrics would add a `db` label to every series.
    for chunk in dataset(start).chunks(60) {
        let r = c
            .post(format!("{}/write", vm.url))
            .body(chunk.concat())
            .send()
            .await
            .expect("write to victoria-metrics");
        assert!(
            r.status().is_success(),
            "victoria-metrics write: {:?}",
            r.text().await
        );
    }
    let _ = c
        .get(format!("{}/internal/force_flush", vm.url))
        .send()
        .await;
    // Wait until VictoriaMetrics sees every sample.
    let expected = (EPOCHS * HOSTS) as f64;
    let mut seen = 0.0;
    for _ in 0..100 {
        let (_, v) = get_json(
            &c,
            &format!("{}/api/v1/query", vm.url),
            &[
                ("query", "sum(count_over_time(node_load_load1[2h]))".into()),
                ("time", format!("{}", start + 3600)),
            ],
        )
        .await;
        seen = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        if seen == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        seen, expected,
        "victoria-metrics did not ingest every sample"
    );

    let range_params = |q: &str| {
        vec![
            ("query", q.to_string()),
            ("start", format!("{}", start + 600)),
            ("end", format!("{}", start + 3300)),
            ("step", "60".to_string()),
        ]
    };
    let instant_params = |q: &str| {
        vec![
            ("query", q.to_string()),
            ("time", format!("{}", start + 1830)),
        ]
    };
    let cases = corpus();
    assert!(
        cases.len() >= 50,
        "the corpus has only {} queries",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut points = 0usize;
    for case in &cases {
        for (kind, path, ours_p, theirs_p) in [
            (
                "range",
                "query_range",
                range_params(&case.query),
                range_params(&case.vm_query),
            ),
            (
                "instant",
                "query",
                instant_params(&case.query),
                instant_params(&case.vm_query),
            ),
        ] {
            let (_, a) = get_json(
                &c,
                &format!("{}/prometheus/api/v1/{path}", server.url),
                &ours_p,
            )
            .await;
            let (_, b) = get_json(&c, &format!("{}/api/v1/{path}", vm.url), &theirs_p).await;
            let diffs = match (series_of(&a), series_of(&b)) {
                (Ok(a), Ok(b)) => {
                    if a.is_empty() {
                        vec!["empty answer: the corpus must test something".to_string()]
                    } else {
                        points += a.values().map(Vec::len).sum::<usize>();
                        compare(&a, &b)
                    }
                }
                (Err(e), _) => vec![format!("fleetlake: {e}")],
                (_, Err(e)) => vec![format!("VictoriaMetrics: {e}")],
            };
            if !diffs.is_empty() {
                failures.push(format!(
                    "line {} ({kind}) {}:\n    {}",
                    case.line,
                    case.query,
                    diffs.into_iter().take(4).collect::<Vec<_>>().join("\n    ")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries differ from VictoriaMetrics:\n{}",
        failures.len(),
        cases.len() * 2,
        failures.join("\n")
    );
    assert!(points > 10_000, "only {points} points compared");
}
