//! Prometheus remote write and the label endpoints (issue 6, sections 2–4):
//! hand-built remote-write requests, Debian's `prometheus` scraping Debian's
//! `prometheus-node-exporter` and remote-writing to fleetlake, and
//! `labels` / `label/<name>/values` / `series` answered from the series index.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetlake_ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode, snappy};
use serde_json::Value;

use crate::common::{Server, free_port};

fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(value, timestamp)| Sample { value, timestamp })
            .collect(),
    }
}

async fn remote_write(s: &Server, path: &str, body: Vec<u8>) -> (u16, String) {
    let r = s
        .client()
        .post(format!("{}{path}", s.url))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("remote write");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// GET under `/prometheus/api/v1/`; returns (status, JSON body).
pub async fn prom_get(s: &Server, path_and_query: &str) -> (u16, Value) {
    let r = s
        .client()
        .get(format!("{}/prometheus/api/v1/{path_and_query}", s.url))
        .send()
        .await
        .expect("prometheus api");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad json {e}: {text}"));
    (status, v)
}

/// The `data` array of a successful answer, as strings.
pub async fn prom_strings(s: &Server, path_and_query: &str) -> Vec<String> {
    let (status, v) = prom_get(s, path_and_query).await;
    assert_eq!(status, 200, "{path_and_query}: {v}");
    assert_eq!(v["status"], "success", "{path_and_query}: {v}");
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{path_and_query}: {v}"))
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

#[tokio::test]
async fn remote_write_stores_samples_and_rejects_bad_bodies() {
    let s = Server::start(&["--max-body-bytes", "100000"]);
    let t0 = 1_700_000_000_000i64; // ms
    let req = WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "temp"), ("host", "a"), ("rack", "r 1")],
                &[(20.5, t0), (21.0, t0 + 1000)],
            ),
            series(&[("__name__", "temp"), ("host", "b")], &[(30.0, t0)]),
            series(
                &[("__name__", "temp"), ("host", "c")],
                &[(f64::from_bits(0x7ff0_0000_0000_0002), t0)],
            ),
        ],
    };
    let (status, text) = remote_write(&s, "/api/v1/prom/write", encode(&req)).await;
    assert_eq!(status, 204, "{text}");
    // The other path, and ?db=.
    let (status, text) = remote_write(
        &s,
        "/prometheus/api/v1/write?db=other",
        encode(&WriteRequest {
            timeseries: vec![series(&[("__name__", "up")], &[(1.0, t0)])],
        }),
    )
    .await;
    assert_eq!(status, 204, "{text}");
    let rows = s
        .sql(
            "fleet",
            "SELECT host, rack, value, CAST(time AS BIGINT) / 1000000 AS ms FROM temp ORDER BY host, time",
        )
        .await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["host"], "a");
    assert_eq!(rows[0]["rack"], "r 1");
    assert_eq!(rows[0]["value"], 20.5);
    assert_eq!(rows[0]["ms"], t0);
    assert_eq!(rows[2]["host"], "b");
    assert!(rows[2]["rack"].is_null());
    // The stale marker of host c was not stored.
    assert_eq!(s.sql_i64("other", "SELECT count(*) FROM up").await, 1);

    // A retried batch changes nothing.
    let (status, _) = remote_write(&s, "/api/v1/prom/write", encode(&req)).await;
    assert_eq!(status, 204);
    assert_eq!(s.sql_i64("fleet", "SELECT count(*) FROM temp").await, 3);

    // Bad bodies: 400 with a message naming the problem.
    let (status, text) = remote_write(&s, "/api/v1/prom/write", b"not snappy".to_vec()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("snappy"), "{text}");
    let junk = snappy(&[0x0a, 0xff, 0xff, 0xff, 0x0f]);
    let (status, text) = remote_write(&s, "/api/v1/prom/write", junk).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("protobuf"), "{text}");

    // An invalid metric name is named; the rest of the request is stored.
    let partial = WriteRequest {
        timeseries: vec![
            series(&[("__name__", "_bad"), ("x", "1")], &[(1.0, t0)]),
            series(&[("__name__", "temp"), ("host", "d")], &[(7.0, t0)]),
            // A label clashing with the `value` field's type is rejected by validation.
            series(&[("__name__", "temp"), ("value", "v")], &[(8.0, t0)]),
        ],
    };
    let (status, text) = remote_write(&s, "/api/v1/prom/write", encode(&partial)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("_bad"), "{text}");
    assert!(text.contains("2 series rejected"), "{text}");
    assert_eq!(
        s.sql_i64("fleet", "SELECT count(*) FROM temp WHERE host = 'd'")
            .await,
        1
    );

    // Over the body limit: 413 (compressed or decompressed).
    let big = WriteRequest {
        timeseries: (0..3000)
            .map(|i| {
                series(
                    &[("__name__", "big"), ("host", &format!("host_{i}"))],
                    &[(i as f64, t0)],
                )
            })
            .collect(),
    };
    let (status, text) = remote_write(&s, "/api/v1/prom/write", encode(&big)).await;
    assert_eq!(status, 413, "{text}");
}

/// A child process killed when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_peer(bin: &str, args: &[String]) -> Peer {
    let package = if bin.contains("node-exporter") {
        "prometheus-node-exporter"
    } else {
        "prometheus"
    };
    assert!(
        Path::new(bin).exists(),
        "{bin} is missing: install the Debian package `{package}` (apt-get install {package}; scripts/test does)"
    );
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    Peer(child)
}

/// Debian's Prometheus scrapes Debian's node_exporter every second and
/// remote-writes to fleetlake; the node metrics then answer through SQL and
/// the label endpoints.
#[tokio::test]
async fn prometheus_remote_writes_node_exporter_metrics() {
    let s = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let ne_port = free_port();
    let _ne = start_peer(
        "/usr/bin/prometheus-node-exporter",
        &[format!("--web.listen-address=127.0.0.1:{ne_port}")],
    );
    let prom_port = free_port();
    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:{ne_port}']
remote_write:
  - url: {url}/api/v1/prom/write
    queue_config:
      batch_send_deadline: 1s
      max_samples_per_send: 2000
      min_backoff: 100ms
      max_backoff: 1s
"#,
        url = s.url
    );
    let config_path = tmp.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let _prom = start_peer(
        "/usr/bin/prometheus",
        &[
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", tmp.path().join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
    );

    // Wait for both metrics to arrive (Prometheus starts, scrapes, batches, sends).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let tables: Vec<String> = s
            .sql("fleet", r#"SELECT "table" FROM system.tables"#)
            .await
            .iter()
            .filter_map(|r| r["table"].as_str().map(String::from))
            .collect();
        if tables.iter().any(|t| t == "node_cpu_seconds_total") && tables.iter().any(|t| t == "up")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not remote-write node_cpu_seconds_total and up within 90 s; tables: {tables:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let rows = s
        .sql(
            "fleet",
            "SELECT count(*) AS n, count(DISTINCT cpu) AS cpus, count(DISTINCT mode) AS modes FROM node_cpu_seconds_total",
        )
        .await;
    let cpus = rows[0]["cpus"].as_i64().unwrap();
    assert!(cpus >= 1, "{rows:?}");
    assert!(rows[0]["modes"].as_i64().unwrap() >= 2, "{rows:?}");
    assert!(rows[0]["n"].as_i64().unwrap() >= cpus, "{rows:?}");
    let instance = format!("127.0.0.1:{ne_port}");
    let rows = s
        .sql(
            "fleet",
            "SELECT mode, instance, job, value FROM node_cpu_seconds_total WHERE mode = 'idle' LIMIT 1",
        )
        .await;
    assert_eq!(rows[0]["instance"], instance.as_str(), "{rows:?}");
    assert_eq!(rows[0]["job"], "node", "{rows:?}");
    assert!(rows[0]["value"].as_f64().unwrap() > 0.0, "{rows:?}");
    let up = s
        .sql("fleet", "SELECT max(value) AS v FROM up WHERE job = 'node'")
        .await;
    assert_eq!(up[0]["v"], 1.0, "{up:?}");

    // The label endpoints answer from the series index.
    let labels = prom_strings(&s, "labels").await;
    for l in ["__name__", "mode", "cpu", "instance", "job"] {
        assert!(labels.iter().any(|x| x == l), "{l} missing from {labels:?}");
    }
    let names = prom_strings(&s, "label/__name__/values").await;
    assert!(
        names.iter().any(|x| x == "node_cpu_seconds_total"),
        "{names:?}"
    );
    assert!(names.iter().any(|x| x == "up"), "{names:?}");
    let modes = prom_strings(&s, "label/mode/values?match[]=node_cpu_seconds_total").await;
    assert!(modes.iter().any(|x| x == "idle"), "{modes:?}");
    let (status, v) = prom_get(&s, "series?match[]=up").await;
    assert_eq!(status, 200, "{v}");
    let series = v["data"].as_array().unwrap();
    assert!(
        series.iter().any(|x| x["__name__"] == "up"
            && x["instance"] == instance.as_str()
            && x["job"] == "node"),
        "{v}"
    );
}

async fn prom_post(s: &Server, path: &str, form: &str) -> (u16, Value) {
    let r = s
        .client()
        .post(format!("{}/prometheus/api/v1/{path}", s.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .expect("prometheus api");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad json {e}: {text}")),
    )
}

/// Every answer the label checks below expect, asked at once.
async fn check_labels(s: &Server, when: &str, hosts: &[&str]) {
    let labels = prom_strings(s, "labels").await;
    assert_eq!(labels, ["__name__", "dc", "host", "job"], "{when}");
    assert_eq!(prom_strings(s, "label/host/values").await, hosts, "{when}");
    assert_eq!(
        prom_strings(s, "label/__name__/values").await,
        ["k", "m_v", "m_w"],
        "{when}"
    );
    let x: Vec<&str> = hosts.iter().copied().filter(|h| *h == "a").collect();
    assert_eq!(
        prom_strings(s, "label/host/values?match[]=m_v%7Bdc%3D%22x%22%7D").await,
        x,
        "{when}"
    );
    assert_eq!(
        prom_strings(
            s,
            "label/host/values?match[]=%7Bhost%3D~%22a%7Cc%22%7D&match[]=k"
        )
        .await,
        hosts
            .iter()
            .copied()
            .filter(|h| *h == "a" || *h == "c")
            .collect::<Vec<_>>(),
        "{when}"
    );
    // dc="" selects series without dc.
    assert_eq!(
        prom_strings(s, "label/host/values?match[]=m_v%7Bdc%3D%22%22%7D").await,
        ["c"],
        "{when}"
    );
    // Only the day of 2016-01-01 (host c wrote on 2016-01-03).
    let first_day: Vec<&str> = hosts.iter().copied().filter(|h| *h != "c").collect();
    assert_eq!(
        prom_strings(s, "label/host/values?start=1451606000&end=1451606500").await,
        first_day,
        "{when}"
    );
    assert_eq!(
        prom_strings(s, "label/host/values?start=2016-01-02T00:00:00Z").await,
        ["c"],
        "{when}"
    );
    assert_eq!(
        prom_strings(s, "label/__name__/values?match[]=%7Bjob%3D%22j%22%7D").await,
        ["k"],
        "{when}"
    );
    let (status, v) = prom_get(s, "series?match[]=k").await;
    assert_eq!(status, 200, "{when}: {v}");
    assert_eq!(
        v["data"],
        serde_json::json!([{"__name__": "k", "job": "j"}]),
        "{when}"
    );
    let (status, v) = prom_get(
        s,
        "series?match[]=%7B__name__%3D~%22m_.*%22%2Chost%3D%22c%22%7D",
    )
    .await;
    assert_eq!(status, 200, "{when}: {v}");
    assert_eq!(
        v["data"],
        serde_json::json!([{"__name__": "m_v", "host": "c"}, {"__name__": "m_w", "host": "c"}]),
        "{when}"
    );
    // Form POST, as Grafana sends.
    let (status, v) = prom_post(s, "labels", "match%5B%5D=k").await;
    assert_eq!(status, 200, "{when}: {v}");
    assert_eq!(v["data"], serde_json::json!(["__name__", "job"]), "{when}");
}

#[tokio::test]
async fn label_endpoints_answer_from_the_index_across_flush_restart_delete_and_compaction() {
    let mut s = Server::start(&[]);
    let t1 = 1_451_606_400_000_000_000i64; // 2016-01-01T00:00:00Z
    let t2 = t1 + 2 * 86_400_000_000_000; // two days later
    s.write_ok(
        "fleet",
        &format!(
            "m,host=a,dc=x v=1,w=1i {t1}\nm,host=b,dc=y v=2 {t1}\nm,host=c v=3 {t2}\nk,job=j value=1 {t1}"
        ),
    )
    .await;
    check_labels(&s, "buffered", &["a", "b", "c"]).await;

    // Errors: 400 with the Prometheus error envelope.
    for (q, needle) in [
        ("series", "no match[]"),
        ("labels?match[]=m_v%7B", "invalid match[] selector"),
        ("labels?match[]=rate(m_v%5B1m%5D)", "series selector"),
        ("label/host/values?match[]=%7Bhost%3D~%22(%22%7D", "invalid"),
        ("labels?start=yesterday", "cannot parse \"yesterday\""),
        ("labels?start=10&end=5", "before start"),
    ] {
        let (status, v) = prom_get(&s, q).await;
        assert_eq!(status, 400, "{q}: {v}");
        assert_eq!(v["status"], "error", "{q}: {v}");
        assert_eq!(v["errorType"], "bad_data", "{q}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{q}: {v}");
    }
    // Unknown label, unknown database: empty, not an error.
    assert!(prom_strings(&s, "label/nope/values").await.is_empty());
    // A database never written is named in a 404, not an empty success.
    let (status, v) = prom_get(&s, "labels?db=nodb").await;
    assert_eq!(
        (status, &v["errorType"]),
        (404, &serde_json::json!("not_found")),
        "{v}"
    );
    assert!(v["error"].as_str().unwrap().contains("\"nodb\""), "{v}");

    s.flush().await;
    check_labels(&s, "flushed", &["a", "b", "c"]).await;
    // Buffered and persisted together.
    s.write_ok("fleet", &format!("m,host=d,dc=x v=4 {t1}"))
        .await;
    assert_eq!(
        prom_strings(&s, "label/host/values").await,
        ["a", "b", "c", "d"]
    );
    let (status, text) = s
        .sql_raw(
            "fleet",
            "DELETE FROM m WHERE time < '2100-01-01T00:00:00Z' AND host = 'd'",
            "json",
        )
        .await;
    assert_eq!(status, 200, "{text}");
    check_labels(&s, "after deleting d", &["a", "b", "c"]).await;

    // Restart: the index comes back from the series files.
    assert!(s.terminate());
    let dir = s.take_dir().unwrap();
    let s = Server::start_in(dir.path(), &[]);
    check_labels(&s, "restarted", &["a", "b", "c"]).await;

    // Delete a whole series; compaction then rewrites the files (their
    // series files are built from the new files' tag columns).
    let (status, text) = s
        .sql_raw(
            "fleet",
            "DELETE FROM m WHERE time < '2100-01-01T00:00:00Z' AND host = 'a'",
            "json",
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(prom_strings(&s, "label/host/values").await, ["b", "c"]);
    s.admin("compact").await;
    assert_eq!(prom_strings(&s, "label/host/values").await, ["b", "c"]);
    assert_eq!(
        prom_strings(&s, "label/dc/values").await,
        ["y"],
        "dc=x was only on deleted series"
    );

    // Repair: without any series file, a restart rebuilds them from the data.
    let mut s = s;
    assert!(s.terminate());
    let index_dir = dir.path().join("store").join("_index");
    assert!(
        index_dir.exists(),
        "series files live under {}",
        index_dir.display()
    );
    std::fs::remove_dir_all(&index_dir).unwrap();
    let s = Server::start_in(dir.path(), &[]);
    assert_eq!(prom_strings(&s, "label/host/values").await, ["b", "c"]);
    assert_eq!(
        prom_strings(&s, "labels").await,
        ["__name__", "dc", "host", "job"]
    );
    assert!(index_dir.exists(), "rebuilt series files are stored again");

    // Grafana's variable query and tag listing use the same index.
    let r = s
        .client()
        .post(format!("{}/grafana/variable", s.url))
        .json(&serde_json::json!({"payload": {"target": "tag_values(m, host)"}}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"__text": "b", "__value": "b"}, {"__text": "c", "__value": "c"}])
    );
    let r = s
        .client()
        .post(format!("{}/grafana/tag-values", s.url))
        .json(&serde_json::json!({"key": "host"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, serde_json::json!([{"text": "b"}, {"text": "c"}]));
}
