//! The rules engine end to end: API, alert state across restarts, actions
//! against real receivers (an HTTP listener of the test's, a script,
//! Debian's Alertmanager), every safety limit, and backtests equal to a live run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::common::Server;

/// Webhooks and Alertmanager here are local receivers: the server must be
/// told it may reach them (nothing is allowed by default).
const ALLOW_LOOPBACK: &[&str] = &["--rules-webhook-allow", "127.0.0.1"];

const S: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

async fn call(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = server.client();
    let url = format!("{}{path}", server.url);
    let req = match method {
        "GET" => c.get(url),
        "POST" => c.post(url),
        "PUT" => c.put(url),
        "DELETE" => c.delete(url),
        m => panic!("{m}"),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls `f` every 200 ms until it returns `Some`, or panics after `secs`.
async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn alerts(server: &Server) -> Vec<Value> {
    let (s, v) = call(server, "GET", "/api/v1/alerts", None).await;
    assert_eq!(s, 200, "{v}");
    v["data"]["alerts"].as_array().cloned().unwrap_or_default()
}

async fn actions(server: &Server, rule: &str) -> Vec<Value> {
    server
        .sql(
            "fleet",
            &format!(
                "SELECT id, entity, decision, reason, detail, outcome, message, evidence, \
                 CAST(evaluation_time AS BIGINT) AS t FROM system.actions WHERE rule = '{rule}' \
                 ORDER BY evaluation_time, entity"
            ),
        )
        .await
}

/// `probe,hostname=h<i>,rack=r<rack(i)> v=<v> <now - 30s>` for each host.
async fn write_probe(server: &Server, hosts: &[(usize, usize, f64)]) {
    let t = now_ns() - 30 * S;
    let body: String = hosts
        .iter()
        .map(|(h, rack, v)| format!("probe,hostname=h{h},rack=r{rack} v={v} {t}\n"))
        .collect();
    server.write_ok("fleet", &body).await;
}

const HOT: &str = "SELECT hostname, rack, max(v) AS value FROM probe \
    WHERE time > now() - INTERVAL '10 minutes' AND time <= now() GROUP BY hostname, rack HAVING max(v) > 50";

/// A receiver of webhooks: records each JSON body, answers `status`.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    keys: Arc<Mutex<Vec<String>>>,
}

async fn receiver(status: u16) -> Receiver {
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let keys: Arc<Mutex<Vec<String>>> = Arc::default();
    let (b, k) = (bodies.clone(), keys.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (b, k) = (b.clone(), k.clone());
                async move {
                    b.lock()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    k.lock().push(
                        headers
                            .get("idempotency-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string(),
                    );
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, bodies, keys }
}

fn self_heal(name: &str, action: Value, safety: Value) -> Value {
    json!({
        "name": name, "kind": "self_heal", "every": "1s", "sql": HOT,
        "labels": {"severity": "page"},
        "annotations": {"summary": "{{ hostname }} hot ({{ value }})"},
        "action": action, "safety": safety,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_rules_get_precise_messages() {
    let server = Server::start(&[]);
    write_probe(&server, &[(1, 1, 10.0)]).await;
    let base = json!({"name": "r", "kind": "alert", "every": "1s", "sql": HOT});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"sql": "SELEC hostname FROM probe"}), "sql"),
        (json!({"sql": "SELECT nope AS value FROM probe"}), "nope"),
        (
            json!({"sql": "SELECT hostname AS value FROM probe"}),
            "must be numeric",
        ),
        (json!({"evry": "1m"}), "unknown field `evry`"),
        (json!({"every": "5 minutes"}), "invalid duration"),
        (json!({"for": "1x"}), "invalid duration unit"),
        // Nothing runs or leaves the server unless its flags allow it.
        (
            json!({"kind": "self_heal", "action": {"type": "exec", "command": ["/usr/bin/touch", "p"]}, "safety": {"entity": "hostname"}}),
            "--rules-exec-allow",
        ),
        (
            json!({"kind": "self_heal", "action": {"type": "webhook", "url": "http://169.254.169.254/latest"}, "safety": {"entity": "hostname"}}),
            "--rules-webhook-allow 169.254.169.254",
        ),
        (json!({"name": "bad-name"}), "invalid"),
        (json!({"kind": "self_heal"}), "needs [rule.action]"),
        (json!({"kind": "record"}), "needs `into`"),
        (
            json!({"annotations": {"s": "{{ missing }}"}}),
            "{{ missing }}",
        ),
        (
            json!({"kind": "self_heal", "action": {"type": "webhook"}}),
            "needs `url`",
        ),
        (
            json!({"kind": "self_heal", "action": {"type": "log"}, "safety": {"entity": "host"}}),
            "entity column \"host\"",
        ),
    ];
    for (patch, want) in cases {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, v) = call(&server, "POST", "/api/v1/rules", Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{body}: {msg:?} lacks {want:?}");
    }
    // DataFusion's own words for a SQL error.
    let mut body = base.clone();
    body["sql"] = json!("SELECT hostname FROM probe WHERE");
    let (_, v) = call(&server, "POST", "/api/v1/rules", Some(body)).await;
    assert!(v["error"].as_str().unwrap().contains("SQL error"), "{v}");
    // TOML bodies too, with the file's format.
    let r = server
        .client()
        .post(format!("{}/api/v1/rules/validate", server.url))
        .body("[[rule]]\nname = \"t\"\nkind = \"alert\"\nevery = \"1m\"\nsql = \"SELECT 1 AS value\"\ncolour = 1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("unknown field `colour`"));
    let (s, _) = call(&server, "GET", "/api/v1/rules/nothing", None).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn crud_takes_effect_without_restart_and_persists() {
    let mut server = Server::start(ALLOW_LOOPBACK);
    write_probe(&server, &[(1, 1, 90.0), (2, 2, 10.0)]).await;
    let rule = json!({"name": "hot", "kind": "alert", "every": "1s", "sql": HOT,
        "labels": {"team": "ops"}, "annotations": {"summary": "{{ hostname }} at {{ value }}"}});
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule.clone())).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["version"], 1);
    let (s, _) = call(&server, "POST", "/api/v1/rules", Some(rule.clone())).await;
    assert_eq!(s, 409, "a second create of the same name conflicts");
    let a = wait_for(15, "h1 firing", || async {
        alerts(&server)
            .await
            .into_iter()
            .find(|a| a["state"] == "firing")
    })
    .await;
    assert_eq!(a["labels"]["hostname"], "h1");
    assert_eq!(a["labels"]["alertname"], "hot");
    assert_eq!(a["labels"]["team"], "ops");
    assert_eq!(a["annotations"]["summary"], "h1 at 90");
    // Lower the threshold: h2 appears, version 2, no restart.
    let mut changed = rule.clone();
    changed["sql"] = json!(HOT.replace("> 50", "> 5"));
    let (s, v) = call(&server, "PUT", "/api/v1/rules/hot", Some(changed)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"], 2);
    wait_for(15, "h2 firing", || async {
        let n = alerts(&server)
            .await
            .iter()
            .filter(|a| a["state"] == "firing")
            .count();
        (n == 2).then_some(())
    })
    .await;
    let rows = server
        .sql(
            "fleet",
            "SELECT rule, version, state FROM system.alerts WHERE rule = 'hot' ORDER BY instance",
        )
        .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["version"], 2);
    // API rules survive a restart.
    let dir = server.take_dir().unwrap();
    assert!(server.terminate());
    let server = Server::start_in(dir.path(), ALLOW_LOOPBACK);
    let (s, v) = call(&server, "GET", "/api/v1/rules/hot", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"], 2);
    let (s, _) = call(&server, "DELETE", "/api/v1/rules/hot", None).await;
    assert_eq!(s, 200);
    assert!(alerts(&server).await.is_empty());
    let (s, _) = call(&server, "GET", "/api/v1/rules/hot", None).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_dir_is_reloaded_and_wins_over_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let rules_dir = tmp.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    let file = |threshold: u32| {
        format!(
            "[[rule]]\nname = \"from_file\"\nkind = \"alert\"\nevery = \"1s\"\nsql = \"\"\"\n{}\n\"\"\"\n",
            HOT.replace("> 50", &format!("> {threshold}"))
        )
    };
    std::fs::write(rules_dir.join("a.toml"), file(50)).unwrap();
    let data = tmp.path().join("data");
    let server = Server::start_in(
        &data,
        &[
            "--rules-dir",
            rules_dir.to_str().unwrap(),
            "--rules-webhook-allow",
            "127.0.0.1",
        ],
    );
    write_probe(&server, &[(1, 1, 90.0), (2, 2, 20.0)]).await;
    wait_for(15, "file rule firing", || async {
        (alerts(&server).await.len() == 1).then_some(())
    })
    .await;
    let (s, v) = call(
        &server,
        "PUT",
        "/api/v1/rules/from_file",
        Some(json!({"name": "from_file", "kind": "alert", "every": "1s", "sql": HOT})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    // Edit the file: picked up without a restart, version bumped.
    std::fs::write(rules_dir.join("a.toml"), file(5)).unwrap();
    wait_for(20, "edited file rule", || async {
        (alerts(&server).await.len() == 2).then_some(())
    })
    .await;
    let (_, v) = call(&server, "GET", "/api/v1/rules/from_file", None).await;
    assert_eq!(v["version"], 2);
    // A broken edit keeps the previous rules and says why.
    std::fs::write(rules_dir.join("a.toml"), "[[rule]]\nname = \"from_file\"\n").unwrap();
    let v = wait_for(20, "file error", || async {
        let (_, v) = call(&server, "GET", "/api/v1/rules", None).await;
        (!v["file_errors"].as_array().unwrap().is_empty()).then_some(v)
    })
    .await;
    assert!(
        v["file_errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("missing field"),
        "{v}"
    );
    assert_eq!(v["rules"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_mid_for_keeps_the_timer() {
    let mut server = Server::start(ALLOW_LOOPBACK);
    write_probe(&server, &[(1, 1, 90.0)]).await;
    let rule = json!({"name": "slow", "kind": "alert", "every": "1s", "for": "8s", "sql": HOT});
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    let pending = wait_for(10, "pending", || async {
        alerts(&server)
            .await
            .into_iter()
            .find(|a| a["state"] == "pending")
    })
    .await;
    let active_at = pending["activeAt"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dir = server.take_dir().unwrap();
    assert!(server.terminate());
    let server = Server::start_in(dir.path(), ALLOW_LOOPBACK);
    let a = alerts(&server).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        a[0]["activeAt"].as_str().unwrap(),
        active_at,
        "the restart kept the timer"
    );
    let firing = wait_for(20, "firing", || async {
        alerts(&server)
            .await
            .into_iter()
            .find(|a| a["state"] == "firing")
    })
    .await;
    let t = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    };
    let waited = t(firing["firedAt"].as_str().unwrap()) - t(&active_at);
    assert!(
        (8 * S..11 * S).contains(&waited),
        "fired {waited} ns after activeAt: the timer ran across the restart, not from it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_action_and_exec_action() {
    let hook = receiver(200).await;
    // exec: the row in the environment, templated arguments; the program
    // is allowed by path when the server starts.
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("record.sh");
    let out = tmp.path().join("out");
    let server = Server::start(&[
        "--rules-webhook-allow",
        "127.0.0.1",
        "--rules-exec-allow",
        script.to_str().unwrap(),
    ]);
    // h3 is healthy: the candidates are not the whole fleet (which executes nothing).
    write_probe(&server, &[(1, 1, 90.0), (2, 2, 95.0), (3, 3, 10.0)]).await;
    let rule = self_heal(
        "heal_hook",
        json!({"type": "webhook", "url": hook.url, "timeout": "2s", "retries": 1}),
        json!({"mode": "auto", "entity": "hostname", "cooldown": "1h"}),
    );
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    wait_for(15, "two webhooks", || async {
        (hook.bodies.lock().len() >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bodies = hook.bodies.lock().clone();
    assert_eq!(
        bodies.len(),
        2,
        "cooldown 1h: one action per host: {bodies:?}"
    );
    let b = bodies
        .iter()
        .find(|b| b["labels"]["hostname"] == "h1")
        .expect("h1");
    assert_eq!(b["rule"], "heal_hook");
    assert_eq!(b["version"], 1);
    assert_eq!(b["value"], 90.0);
    assert_eq!(b["labels"]["severity"], "page");
    assert_eq!(b["annotations"]["summary"], "h1 hot (90)");
    assert_eq!(b["evidence"][0]["rack"], "r1");
    assert_eq!(b["entity"], "h1");
    let keys = hook.keys.lock().clone();
    assert!(keys.contains(&b["idempotency_key"].as_str().unwrap().to_string()));
    let rows = wait_for(10, "outcomes", || async {
        let rows = actions(&server, "heal_hook").await;
        let done = rows
            .iter()
            .filter(|r| r["decision"] == "executed" && r["outcome"] == "success")
            .count();
        (done == 2).then_some(rows)
    })
    .await;
    assert!(rows.iter().any(|r| r["reason"] == "cooldown"), "{rows:?}");

    // Grafana annotations: the built-in `actions` and `alerts` queries.
    let range = json!({
        "from": chrono::DateTime::from_timestamp_nanos(now_ns() - 600 * S).to_rfc3339(),
        "to": chrono::DateTime::from_timestamp_nanos(now_ns() + 60 * S).to_rfc3339(),
    });
    for (query, needle) in [
        ("actions", "heal_hook: webhook executed"),
        ("alerts", "heal_hook firing"),
    ] {
        let (s, v) = call(
            &server,
            "POST",
            "/grafana/annotations",
            Some(json!({"range": range, "annotation": {"name": query, "query": query}})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let items = v.as_array().expect("a list");
        assert!(
            items.iter().any(|a| a["title"] == needle
                && a["text"].as_str().is_some_and(|t| t.contains("h1"))
                && a["tags"].as_array().is_some_and(|t| t[0] == "heal_hook")),
            "{query}: {v}"
        );
    }

    std::fs::write(&script, format!("#!/bin/sh\necho \"$1 $FLEETLAKE_HOSTNAME $FLEETLAKE_RACK $FLEETLAKE_VALUE $FLEETLAKE_RULE\" >> {}\n", out.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let rule = self_heal(
        "heal_exec",
        json!({"type": "exec", "command": [script.to_str().unwrap(), "drain-{{ hostname }}"]}),
        json!({"mode": "auto", "cooldown": "1h"}),
    );
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    let text = wait_for(15, "exec output", || async {
        let t = std::fs::read_to_string(&out).unwrap_or_default();
        (t.lines().count() >= 2).then_some(t)
    })
    .await;
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["drain-h1 h1 r1 90 heal_exec", "drain-h2 h2 r2 95 heal_exec"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_receives_and_resolves() {
    let bin = "/usr/bin/prometheus-alertmanager";
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} is missing: apt-get install prometheus-alertmanager (scripts/test does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("am.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: none\n  group_wait: 1s\nreceivers:\n  - name: none\n",
    )
    .unwrap();
    let port = crate::common::free_port();
    let cluster = crate::common::free_port();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _am = Kill(
        std::process::Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                tmp.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--cluster.listen-address=127.0.0.1:{cluster}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start alertmanager"),
    );
    let am = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_for(30, "alertmanager ready", || async {
        client
            .get(format!("{am}/-/ready"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    let server = Server::start(ALLOW_LOOPBACK);
    write_probe(&server, &[(1, 1, 90.0)]).await;
    let rule = json!({"name": "HostHot", "kind": "alert", "every": "1s", "sql": HOT,
        "labels": {"severity": "page"}, "annotations": {"summary": "{{ hostname }} is hot"},
        "action": {"type": "alertmanager", "url": am}});
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule.clone())).await;
    assert_eq!(s, 201, "{v}");
    let get_alerts = || async {
        client
            .get(format!("{am}/api/v2/alerts"))
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap()
    };
    let a = wait_for(20, "alert in alertmanager", || async {
        get_alerts()
            .await
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "HostHot")
    })
    .await;
    assert_eq!(a["labels"]["hostname"], "h1");
    assert_eq!(a["labels"]["severity"], "page");
    assert_eq!(a["annotations"]["summary"], "h1 is hot");
    assert_eq!(a["status"]["state"], "active");
    assert!(
        a["generatorURL"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/rules/HostHot"),
        "{a}"
    );
    // The condition goes away: fleetlake sends endsAt, Alertmanager resolves it.
    let mut cold = rule.clone();
    cold["sql"] = json!(HOT.replace("> 50", "> 500"));
    let (s, v) = call(&server, "PUT", "/api/v1/rules/HostHot", Some(cold)).await;
    assert_eq!(s, 200, "{v}");
    wait_for(20, "resolved in alertmanager", || async {
        let active = get_alerts()
            .await
            .into_iter()
            .any(|a| a["labels"]["alertname"] == "HostHot");
        (!active).then_some(())
    })
    .await;
    let rows = actions(&server, "HostHot").await;
    assert!(
        rows.iter()
            .any(|r| r["decision"] == "executed" && r["outcome"] == "success"),
        "{rows:?}"
    );
}

/// 500 hosts in 50 racks fail at once under a webhook that fails: the
/// limits hold, every other candidate is skipped with its reason, the
/// breaker trips and stays open until reset.
#[tokio::test(flavor = "multi_thread")]
async fn fault_storm_limits_and_breaker() {
    let hook = receiver(500).await;
    let server = Server::start(&[
        "--rules-max-actions-per-hour",
        "1000",
        "--rules-webhook-allow",
        "127.0.0.1",
    ]);
    // 500 hot (10 per rack), 10 healthy: the candidates are not the whole fleet.
    let hosts: Vec<_> = (0..510)
        .map(|h| (h, h % 50, if h < 500 { 99.0 } else { 10.0 }))
        .collect();
    write_probe(&server, &hosts).await;
    let rule = self_heal(
        "storm",
        json!({"type": "webhook", "url": hook.url, "timeout": "1s", "retries": 0}),
        json!({"mode": "auto", "max_actions_per_hour": 6, "max_in_flight": 10, "cooldown": "1h",
               "max_per_scope": [{"label": "rack", "max": 1}], "max_candidates": 1000,
               "breaker": {"failure_rate": 0.5, "min_actions": 4, "window": "1h"}}),
    );
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    let rows = wait_for(60, "breaker open", || async {
        let rows = actions(&server, "storm").await;
        rows.iter()
            .any(|r| r["reason"] == "breaker_open")
            .then_some(rows)
    })
    .await;
    let executed: Vec<_> = rows
        .iter()
        .filter(|r| r["decision"] == "executed")
        .collect();
    assert!(
        !executed.is_empty() && executed.len() <= 6,
        "{} executed",
        executed.len()
    );
    assert!(hook.bodies.lock().len() <= 6);
    // First evaluation: one per rack, six racks before the rate limit; the
    // other 9 hosts of those six racks hit the scope cap (54), every host of
    // the 44 racks left (440) the rate limit.
    let first_t = rows[0]["t"].clone();
    let first: Vec<_> = rows.iter().filter(|r| r["t"] == first_t).collect();
    assert_eq!(first.len(), 500);
    let count = |reason: &str| first.iter().filter(|r| r["reason"] == reason).count();
    assert_eq!(
        first.iter().filter(|r| r["decision"] == "executed").count(),
        6
    );
    assert_eq!(count("rate_limit"), 440);
    assert_eq!(count("scope_cap"), 54);
    assert!(
        first
            .iter()
            .all(|r| r["decision"] == "executed" || r["decision"] == "skipped")
    );
    let (_, rule) = call(&server, "GET", "/api/v1/rules/storm", None).await;
    assert_eq!(rule["breaker"]["open"], true, "{rule}");
    assert!(
        alerts(&server)
            .await
            .iter()
            .any(|a| a["labels"]["alertname"] == "RuleBreakerOpen")
    );
    let (s, v) = call(&server, "POST", "/api/v1/rules/storm/breaker/reset", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["was_open"], true);
    let (_, rule) = call(&server, "GET", "/api/v1/rules/storm", None).await;
    assert_eq!(rule["breaker"]["open"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_candidates_cooldown_attempts_escalation() {
    let hook = receiver(200).await;
    let server = Server::start(ALLOW_LOOPBACK);
    write_probe(&server, &(0..10).map(|h| (h, h, 99.0)).collect::<Vec<_>>()).await;
    let rule = self_heal(
        "too_many",
        json!({"type": "webhook", "url": hook.url}),
        json!({"mode": "auto", "max_candidates": 3}),
    );
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    let a = wait_for(15, "RuleSafetyCandidates", || async {
        alerts(&server)
            .await
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "RuleSafetyCandidates")
    })
    .await;
    assert_eq!(a["labels"]["rule"], "too_many");
    let rows = actions(&server, "too_many").await;
    assert!(
        rows.len() >= 10 && rows.iter().all(|r| r["reason"] == "max_candidates"),
        "{rows:?}"
    );
    assert!(hook.bodies.lock().is_empty(), "nothing executed");
    call(&server, "DELETE", "/api/v1/rules/too_many", None).await;

    // Whole fleet: every host of the inventory is a candidate.
    let rule = self_heal(
        "whole",
        json!({"type": "webhook", "url": hook.url}),
        json!({"mode": "auto"}),
    );
    call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    wait_for(15, "whole fleet refused", || async {
        let rows = actions(&server, "whole").await;
        (rows.len() >= 10
            && rows.iter().all(|r| r["reason"] == "max_candidates")
            && rows[0]["detail"].as_str().unwrap().contains("whole fleet"))
        .then_some(())
    })
    .await;
    call(&server, "DELETE", "/api/v1/rules/whole", None).await;

    // Cooldown 1s and 2 attempts: h0 gets two actions, then an escalation.
    let sql = HOT
        .replace(
            "HAVING",
            "AND hostname = 'h0' GROUP BY hostname, rack HAVING",
        )
        .replacen(" GROUP BY hostname, rack", "", 1);
    let mut rule = self_heal(
        "retry",
        json!({"type": "webhook", "url": hook.url}),
        json!({"mode": "auto", "cooldown": "2s", "max_attempts": 2}),
    );
    rule["sql"] = json!(sql);
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    let esc = wait_for(20, "escalation", || async {
        alerts(&server)
            .await
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "RuleEscalation")
    })
    .await;
    assert_eq!(esc["labels"]["hostname"], "h0");
    let rows = actions(&server, "retry").await;
    let executed = rows.iter().filter(|r| r["decision"] == "executed").count();
    assert_eq!(executed, 2, "{rows:?}");
    assert!(rows.iter().any(|r| r["reason"] == "cooldown"), "{rows:?}");
    assert!(
        rows.iter().any(|r| r["reason"] == "max_attempts"),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_approve_deny_expire() {
    let hook = receiver(200).await;
    let server = Server::start(ALLOW_LOOPBACK);
    // h4 is healthy: the candidates are not the whole fleet.
    write_probe(
        &server,
        &[(1, 1, 99.0), (2, 2, 99.0), (3, 3, 99.0), (4, 4, 10.0)],
    )
    .await;
    let rule = self_heal(
        "ask",
        json!({"type": "webhook", "url": hook.url}),
        json!({"mode": "approval", "approval_ttl": "3s", "cooldown": "1h"}),
    );
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    let pending = wait_for(15, "three approvals", || async {
        let (_, v) = call(&server, "GET", "/api/v1/actions", None).await;
        let a = v["approvals"].as_array().cloned().unwrap_or_default();
        (a.len() == 3).then_some(a)
    })
    .await;
    let id_of = |h: &str| {
        pending.iter().find(|a| a["entity"] == h).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        hook.bodies.lock().is_empty(),
        "nothing runs before approval"
    );
    let (s, v) = call(
        &server,
        "POST",
        &format!("/api/v1/actions/{}/approve", id_of("h1")),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = call(
        &server,
        "POST",
        &format!("/api/v1/actions/{}/deny", id_of("h2")),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &server,
        "POST",
        &format!("/api/v1/actions/{}/deny", id_of("h2")),
        None,
    )
    .await;
    assert_eq!(s, 404, "decided already");
    wait_for(10, "approved action ran", || async {
        (hook.bodies.lock().len() == 1).then_some(())
    })
    .await;
    assert_eq!(hook.bodies.lock()[0]["entity"], "h1");
    let rows = wait_for(15, "h3 expired", || async {
        let rows = actions(&server, "ask").await;
        rows.iter()
            .any(|r| r["decision"] == "expired")
            .then_some(rows)
    })
    .await;
    let decision_of =
        |h: &str, d: &str| rows.iter().any(|r| r["entity"] == h && r["decision"] == d);
    assert!(decision_of("h1", "awaiting_approval") && decision_of("h1", "approved"));
    assert!(
        decision_of("h2", "denied") && decision_of("h3", "expired"),
        "{rows:?}"
    );
    assert_eq!(hook.bodies.lock().len(), 1, "denied and expired never run");
}

/// A record rule writes through the ingester; a dry-run rule's backtest
/// equals what the live engine decided at the same evaluation times.
#[tokio::test(flavor = "multi_thread")]
async fn record_rule_and_backtest_equals_live() {
    let server = Server::start(ALLOW_LOOPBACK);
    // h1 hot throughout; h2 hot only in the samples 20–10 s before the write.
    let t0 = now_ns();
    let mut body = String::new();
    for i in 0..60 {
        let t = t0 - 60 * S + i * S;
        body.push_str(&format!("probe,hostname=h1,rack=r1 v=90 {t}\n"));
        body.push_str(&format!(
            "probe,hostname=h2,rack=r2 v={} {t}\n",
            if (40..50).contains(&i) { 80 } else { 1 }
        ));
    }
    for i in 0..30 {
        body.push_str(&format!(
            "probe,hostname=h2,rack=r2 v={} {}\n",
            if i % 10 < 4 { 85 } else { 2 },
            t0 + i * S
        ));
        body.push_str(&format!("probe,hostname=h1,rack=r1 v=90 {}\n", t0 + i * S));
    }
    server.write_ok("fleet", &body).await;
    let sql = "SELECT hostname, rack, max(v) AS value FROM probe WHERE time > now() - INTERVAL '3 seconds' AND time <= now() GROUP BY hostname, rack HAVING max(v) > 50";
    let rec =
        json!({"name": "rec", "kind": "record", "every": "1s", "into": "probe_hot", "sql": sql});
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rec)).await;
    assert_eq!(s, 201, "{v}");
    let mut rule = self_heal(
        "live",
        json!({"type": "log"}),
        json!({"mode": "dry_run", "cooldown": "3s", "max_per_scope": [{"label": "rack", "max": 1}]}),
    );
    rule["sql"] = json!(sql);
    rule["for"] = json!("2s");
    rule["keep_firing_for"] = json!("1s");
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule.clone())).await;
    assert_eq!(s, 201, "{v}");
    tokio::time::sleep(Duration::from_secs(14)).await;
    let rows = actions(&server, "live").await;
    assert!(!rows.is_empty(), "no decisions");
    // From the same read as the rows: the rule keeps evaluating meanwhile.
    let times = rows.iter().map(|r| r["t"].as_i64().unwrap());
    let (first, last) = (times.clone().min().unwrap(), times.max().unwrap());
    // The backtest starts where the live rule started: its first evaluation.
    let created = server
        .sql(
            "fleet",
            "SELECT CAST(min(active_at) AS BIGINT) AS t FROM system.alerts WHERE rule = 'live'",
        )
        .await;
    let live_start = created[0]["t"].as_i64().unwrap_or(first).min(first);
    let (s, bt) = call(
        &server,
        "POST",
        "/api/v1/rules/backtest",
        Some(json!({
        "rule": rule, "start": live_start, "end": last, "step": "1s"})),
    )
    .await;
    assert_eq!(s, 200, "{bt}");
    let live: Vec<(i64, String, String)> = rows
        .iter()
        .filter(|r| r["t"].as_i64().unwrap() <= last)
        .map(|r| {
            (
                r["t"].as_i64().unwrap(),
                r["entity"].as_str().unwrap_or("").to_string(),
                r["reason"]
                    .as_str()
                    .map_or(r["decision"].as_str().unwrap().to_string(), str::to_string),
            )
        })
        .collect();
    let t = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    };
    let mut simulated: Vec<(i64, String, String)> = bt["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                t(a["evaluation_time"].as_str().unwrap()),
                a["entity"].as_str().unwrap_or("").to_string(),
                a["reason"]
                    .as_str()
                    .map_or(a["decision"].as_str().unwrap().to_string(), str::to_string),
            )
        })
        .collect();
    simulated.sort();
    let mut live = live;
    live.sort();
    assert_eq!(simulated, live, "backtest {bt}");
    assert!(live.iter().any(|r| r.2 == "dry_run"));
    assert!(bt["timeline"].as_array().unwrap().iter().any(|i| {
        i["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["to"] == "firing")
    }));
    // The backtest wrote nothing: the decision log is unchanged.
    let after = actions(&server, "live").await;
    assert!(
        after
            .iter()
            .all(|r| !r["id"].as_str().unwrap().starts_with("backtest"))
    );
    // The record rule's rows are queryable like any write.
    let n = server
        .sql_i64(
            "fleet",
            "SELECT count(*) FROM probe_hot WHERE hostname = 'h1'",
        )
        .await;
    assert!(n >= 5, "{n} rows recorded");
}

/// Every shipped example rule parses and its SQL plans against the
/// simulator's fleet tables.
#[tokio::test(flavor = "multi_thread")]
async fn example_pack_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/examples");
    let server = Server::start(ALLOW_LOOPBACK);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_fleetlake"))
        .args([
            "gen",
            "fleet",
            "--hosts",
            "20",
            "--hours",
            "1",
            "--faults",
            "3",
            "--url",
            &server.url,
        ])
        .status()
        .expect("fleetlake gen");
    assert!(status.success());
    let mut detectors = 0;
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("rules/examples") {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let rules = fleetlake_rules::definition::parse_toml(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for r in rules {
            let (s, v) = call(
                &server,
                "POST",
                "/api/v1/rules/validate",
                Some(serde_json::to_value(&r).unwrap()),
            )
            .await;
            assert_eq!(s, 200, "{}: {v}", path.display());
            assert_eq!(v["warnings"], json!([]), "{}: {v}", path.display());
            // The detector rules are answered from streaming state.
            if r.sql.contains("anomaly_score") {
                let (s, v) = call(
                    &server,
                    "POST",
                    "/api/v1/rules",
                    Some(serde_json::to_value(&r).unwrap()),
                )
                .await;
                assert_eq!(s, 201, "{}: {v}", path.display());
                let (_, v) = call(&server, "GET", &format!("/api/v1/rules/{}", r.name), None).await;
                let e = &v["evaluation"];
                assert_eq!(e["mode"], "streaming", "{}: {v}", r.name);
                assert_eq!(e["aggregate"], "anomaly_score", "{}: {v}", r.name);
                detectors += 1;
            }
            n += 1;
        }
    }
    assert!(n >= 5, "{n} example rules");
    assert!(
        detectors >= 2,
        "{detectors} example rules use anomaly_score"
    );
}

/// One default database for every API: writes, SQL and rules that name
/// none use `--default-db`.
#[tokio::test(flavor = "multi_thread")]
async fn rules_and_apis_share_the_default_database() {
    let server = Server::start(&["--default-db", "ops"]);
    let c = server.client();
    let r = c
        .post(format!("{}/write", server.url))
        .body("probe,hostname=h1,rack=r1 v=90 1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let rows = server.sql("ops", "SELECT count(*) AS n FROM probe").await;
    assert_eq!(rows[0]["n"], 1);
    let rule = json!({"name": "hot", "kind": "alert", "every": "1m", "sql": HOT});
    let (status, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["definition"]["db"], "ops", "{v}");
}

/// A rule of the streaming shape is answered from state the writes feed and
/// says so; one outside it says why it runs as batch. Both agree on the
/// instances, and a DELETE resolves the streaming rule's alert.
#[tokio::test(flavor = "multi_thread")]
async fn streaming_rules_answer_from_writes_and_say_so() {
    let server = Server::start(ALLOW_LOOPBACK);
    write_probe(&server, &[(1, 1, 10.0), (2, 2, 20.0)]).await;
    let hook = receiver(200).await;
    let stream = json!({"name": "hot_stream", "kind": "alert", "every": "1s", "sql": HOT,
        "action": {"type": "webhook", "url": hook.url}});
    let batch = json!({"name": "hot_batch", "kind": "alert", "every": "1s",
        "sql": "SELECT hostname, rack, v AS value FROM probe WHERE v > 50"});
    for rule in [stream, batch] {
        // The parts of an install, as W3C Server-Timing.
        let r = server
            .client()
            .post(format!("{}/api/v1/rules", server.url))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let timing = r.headers()["server-timing"].to_str().unwrap().to_string();
        let parts: Vec<&str> = timing
            .split(", ")
            .map(|p| p.split(';').next().unwrap())
            .collect();
        assert_eq!(parts, ["check", "store", "install"], "{timing}");
        assert!(timing.split("dur=").skip(1).all(|d| {
            d.split(',')
                .next()
                .unwrap()
                .parse::<f64>()
                .is_ok_and(|ms| ms >= 0.0)
        }));
    }
    let (_, v) = call(&server, "GET", "/api/v1/rules/hot_stream", None).await;
    let e = &v["evaluation"];
    assert_eq!(
        (
            e["mode"].as_str(),
            e["table"].as_str(),
            e["field"].as_str(),
            e["aggregate"].as_str()
        ),
        (Some("streaming"), Some("probe"), Some("v"), Some("max")),
        "{v}"
    );
    assert_eq!(e["window"], "10m", "{v}");
    let (_, v) = call(&server, "GET", "/api/v1/rules/hot_batch", None).await;
    assert_eq!(v["evaluation"]["mode"], "batch", "{v}");
    assert!(
        v["evaluation"]["reason"]
            .as_str()
            .unwrap()
            .contains("no GROUP BY aggregate"),
        "{v}"
    );
    let modes = server
        .sql(
            "fleet",
            "SELECT name, evaluation FROM system.rules ORDER BY name",
        )
        .await;
    assert_eq!(modes[0]["evaluation"], "batch");
    assert_eq!(modes[1]["evaluation"], "streaming");
    // The new state fills in the background; /metrics says when it has.
    wait_for(10, "the state to fill", || async {
        let text = server.metrics().await;
        let has = |line: &str| text.lines().any(|l| l == line);
        (has("fleetlake_rules_streaming 1") && has("fleetlake_rules_states_filling 0"))
            .then_some(())
    })
    .await;

    // Let both evaluate once over the quiet data, then h2 runs hot.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(alerts(&server).await.is_empty());
    write_probe(&server, &[(2, 2, 95.0)]).await;
    let body = wait_for(10, "the webhook", || async {
        hook.bodies.lock().first().cloned()
    })
    .await;
    assert_eq!(body["labels"]["hostname"], "h2", "{body}");
    let firing = wait_for(10, "both rules firing", || async {
        let a = alerts(&server).await;
        (a.len() == 2).then_some(a)
    })
    .await;
    for a in &firing {
        assert_eq!(a["labels"]["hostname"], "h2", "{a}");
        assert_eq!(a["value"], "95", "{a}");
    }
    // Deleting h2's rows takes them out of the state as out of the data.
    let (status, text) = server
        .sql_raw(
            "fleet",
            "DELETE FROM probe WHERE time >= '2000-01-01T00:00:00Z' AND time < '2100-01-01T00:00:00Z' AND hostname = 'h2'",
            "json",
        )
        .await;
    assert_eq!(status, 200, "{text}");
    wait_for(10, "the alerts to resolve", || async {
        alerts(&server).await.is_empty().then_some(())
    })
    .await;
}

/// `eval = "on_write"`: a streaming rule evaluated every hour still sees a
/// hot row as soon as it is written; a rule that cannot stream cannot ask
/// for it.
#[tokio::test(flavor = "multi_thread")]
async fn on_write_rules_act_on_the_write_not_the_hour() {
    let server = Server::start(ALLOW_LOOPBACK);
    write_probe(&server, &[(1, 1, 10.0)]).await;
    let hook = receiver(200).await;
    let rule = json!({"name": "hot_now", "kind": "alert", "every": "1h", "eval": "on_write",
        "sql": HOT, "action": {"type": "webhook", "url": hook.url}});
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    let refused = json!({"name": "batch_now", "kind": "alert", "every": "1h", "eval": "on_write",
        "sql": "SELECT hostname, v AS value FROM probe WHERE v > 50"});
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(refused)).await;
    assert_eq!(s, 400, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("on_write") && msg.contains("no GROUP BY aggregate"),
        "{msg}"
    );
    // The hour's first evaluation comes at once; then only writes wake it.
    wait_for(10, "the first evaluation", || async {
        let (_, v) = call(&server, "GET", "/api/v1/rules/hot_now", None).await;
        v["last_evaluation"].as_str().map(str::to_string)
    })
    .await;
    assert!(hook.bodies.lock().is_empty());
    write_probe(&server, &[(3, 1, 99.0)]).await;
    let body = wait_for(10, "the webhook after the write", || async {
        hook.bodies.lock().first().cloned()
    })
    .await;
    assert_eq!(body["labels"]["hostname"], "h3", "{body}");
}

/// The racks of firing alerts, with their values.
async fn firing_racks(server: &Server) -> Vec<(String, String)> {
    let mut racks: Vec<(String, String)> = alerts(server)
        .await
        .iter()
        .filter(|a| a["state"] == "firing")
        .map(|a| {
            (
                a["labels"]["rack"].as_str().unwrap_or_default().to_string(),
                a["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    racks.sort();
    racks
}

/// An `on_write` evaluation answers for the groups a write touched — with
/// every series in them, not only the written ones — and leaves the other
/// instances as they are; a write that makes a group's condition false
/// resolves it at once.
#[tokio::test(flavor = "multi_thread")]
async fn on_write_evaluations_answer_for_the_groups_a_write_touched() {
    let server = Server::start(ALLOW_LOOPBACK);
    write_probe(&server, &[(1, 1, 10.0), (2, 2, 10.0)]).await;
    let rule = json!({"name": "rack_now", "kind": "alert", "every": "1h", "eval": "on_write",
        "sql": "SELECT rack, avg(v) AS value FROM probe WHERE time > now() - INTERVAL '10 minutes' \
                GROUP BY rack HAVING avg(v) > 50"});
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    wait_for(10, "the first evaluation", || async {
        let (_, v) = call(&server, "GET", "/api/v1/rules/rack_now", None).await;
        v["last_evaluation"].as_str().map(str::to_string)
    })
    .await;
    // Rack 1's average counts host 1's row, which this write did not touch.
    write_probe(&server, &[(3, 1, 99.0)]).await;
    let want = vec![("r1".to_string(), "54.5".to_string())];
    wait_for(10, "rack 1 to fire", || async {
        (firing_racks(&server).await == want).then_some(())
    })
    .await;
    // A write to rack 2 fires it and leaves rack 1 firing.
    write_probe(&server, &[(4, 2, 100.0)]).await;
    let want = vec![
        ("r1".to_string(), "54.5".to_string()),
        ("r2".to_string(), "55".to_string()),
    ];
    wait_for(10, "rack 2 to fire beside rack 1", || async {
        (firing_racks(&server).await == want).then_some(())
    })
    .await;
    // A cool host in rack 1 brings its average under the threshold.
    write_probe(&server, &[(5, 1, 0.0)]).await;
    let want = vec![("r2".to_string(), "55".to_string())];
    wait_for(10, "rack 1 to resolve on the write", || async {
        (firing_racks(&server).await == want).then_some(())
    })
    .await;
}

/// Batch rules of a round with different SQL over one table and window
/// read it once (`/metrics` counts the shared reads) and each still
/// answers its own SQL: its filters, grouping and order apply to the
/// shared rows.
#[tokio::test(flavor = "multi_thread")]
async fn batch_rules_over_one_window_share_its_scan() {
    let server = Server::start(ALLOW_LOOPBACK);
    write_probe(&server, &[(1, 1, 30.0), (2, 2, 20.0)]).await;
    const W: &str = "time > now() - INTERVAL '10 minutes' AND time <= now()";
    let rules = [
        (
            "hot_rows",
            format!("SELECT hostname, v AS value FROM probe WHERE {W} AND v > 50"),
        ),
        (
            "rack_spread",
            format!(
                "SELECT rack, max(v) - min(v) AS value FROM probe WHERE {W} \
                 GROUP BY rack HAVING max(v) - min(v) > 50"
            ),
        ),
        (
            "coolest_but_h2",
            format!(
                "SELECT hostname, v AS value FROM probe WHERE {W} AND hostname <> 'h2' \
                 ORDER BY v LIMIT 1"
            ),
        ),
    ];
    for (name, sql) in &rules {
        let rule = json!({"name": name, "kind": "alert", "every": "1s", "sql": sql});
        let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
        assert_eq!(s, 201, "{v}");
        let (_, v) = call(&server, "GET", &format!("/api/v1/rules/{name}"), None).await;
        assert_eq!(v["evaluation"]["mode"], "batch", "{name}: {v}");
    }
    write_probe(&server, &[(2, 2, 95.0)]).await;
    let firing = wait_for(15, "the three rules firing", || async {
        let mut a: Vec<(String, String, String)> = alerts(&server)
            .await
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                let l = &a["labels"];
                let who = l["hostname"].as_str().or(l["rack"].as_str()).unwrap_or("");
                (
                    l["alertname"].as_str().unwrap_or("").to_string(),
                    who.to_string(),
                    a["value"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        a.sort();
        (a.len() == 3).then_some(a)
    })
    .await;
    let want = [
        ("coolest_but_h2", "h1", "30"),
        ("hot_rows", "h2", "95"),
        ("rack_spread", "r2", "75"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(firing, want);
    let counter = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
    };
    let text = server.metrics().await;
    let (scans, reuses) = (
        counter(&text, "fleetlake_rules_shared_scans_total "),
        counter(&text, "fleetlake_rules_shared_scan_reuses_total "),
    );
    // A round's rules read its window once and then from the share (a
    // rule still evaluating the last round sits one out).
    assert!(scans >= 1 && reuses >= 1, "scans {scans}, reuses {reuses}");
}

/// A finished job `job_id` that began `ago` before now, with data skew
/// ([`crate::common::skewed_job_lp`]).
async fn write_skewed_job(server: &Server, job_id: &str, ago: i64) {
    server
        .write_ok(
            "fleet",
            &crate::common::skewed_job_lp(job_id, now_ns() - ago),
        )
        .await;
}

/// A rule on job duration: its webhook carries the job's diagnosis, and a
/// `diagnose` action keeps the diagnosis in the action log.
#[tokio::test(flavor = "multi_thread")]
async fn a_diagnosis_rides_with_a_rule_or_is_its_action() {
    let hook = receiver(200).await;
    let server = Server::start(ALLOW_LOOPBACK);
    write_skewed_job(&server, "job_slow_1", 600 * S).await;
    let slow_jobs = "SELECT job_id, (end_ns - start_ns) / 1e9 AS value FROM job_runs \
        WHERE time > now() - INTERVAL '1 hour' AND end_ns - start_ns > 100000000000";
    let rule = json!({
        "name": "slow_job", "kind": "alert", "every": "1s", "sql": slow_jobs,
        "annotations": {"summary": "{{ job_id }} took {{ value }} s"},
        "action": {"type": "webhook", "url": hook.url, "attach": ["diagnosis"]},
    });
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    let body = wait_for(20, "the webhook", || async {
        hook.bodies.lock().first().cloned()
    })
    .await;
    let d = &body["diagnosis"];
    assert_eq!(d["job_id"], "job_slow_1", "{body:#}");
    assert_eq!(d["causes"][0]["kind"], "data_skew", "{body:#}");
    assert!(
        d["summary"]
            .as_str()
            .unwrap()
            .starts_with("job_slow_1: data_skew"),
        "{d:#}"
    );
    // The whole report, one GET away.
    let url = d["report_url"].as_str().expect("report_url");
    assert!(url.starts_with(&server.url), "{url}");
    let page = server.client().get(url).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("<svg"));

    // The diagnosis as the action: the action log keeps its summary.
    let rule = json!({
        "name": "diagnose_slow", "kind": "self_heal", "every": "1s", "sql": slow_jobs,
        "action": {"type": "diagnose"},
        "safety": {"mode": "auto", "entity": "job_id"},
    });
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    let row = wait_for(20, "the diagnose action", || async {
        actions(&server, "diagnose_slow")
            .await
            .into_iter()
            .find(|r| r["outcome"] == "success")
    })
    .await;
    assert!(
        row["message"]
            .as_str()
            .unwrap()
            .contains("job_slow_1: data_skew"),
        "{row:#}"
    );

    // A row without a job: the action fails saying so.
    write_probe(&server, &[(1, 1, 90.0)]).await;
    let rule = json!({
        "name": "diagnose_host", "kind": "self_heal", "every": "1s", "sql": HOT,
        "action": {"type": "diagnose"},
        "safety": {"mode": "auto", "entity": "hostname"},
    });
    let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    let row = wait_for(20, "the failed diagnose action", || async {
        actions(&server, "diagnose_host")
            .await
            .into_iter()
            .find(|r| r["outcome"] == "failure")
    })
    .await;
    assert!(
        row["message"].as_str().unwrap().contains("no job_id"),
        "{row:#}"
    );
    // Validation: a diagnose action takes no url; attach is not for exec.
    for (action, want) in [
        (
            json!({"type": "diagnose", "url": hook.url}),
            "a diagnose action takes no url",
        ),
        (
            json!({"type": "exec", "command": ["/bin/true"], "attach": ["diagnosis"]}),
            "`attach` is for webhook",
        ),
        (json!({"type": "log", "attach": ["coffee"]}), "coffee"),
    ] {
        let rule =
            json!({"name": "bad", "kind": "alert", "every": "1s", "sql": HOT, "action": action});
        let (s, v) = call(&server, "POST", "/api/v1/rules", Some(rule)).await;
        assert_eq!(s, 400, "{v}");
        assert!(v.to_string().contains(want), "{want}: {v}");
    }
}
