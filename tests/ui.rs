//! The operations portal: its files over plain HTTP (embedded, CSP, ETag,
//! no token needed for code, a token for data) and its pages in a real
//! browser — Debian's headless Chromium driven through `chromedriver` —
//! against the real server holding a simulated fleet: a query's rows and
//! chart, a rule created through the editor after its backtest, an action
//! approved in the queue and received by a local webhook, a host page and a
//! job page, and the read-only view of a read token; then an action denied
//! in the queue (recorded, never sent), a tripped breaker reset, PromQL's
//! chart and error, and rules deleted after their confirmation.
//!
//! With `FLEETLAKE_UI_SCREENSHOTS=<dir>` the browser test saves PNGs of the
//! main pages there (the README's are in `docs/portal/`).

mod webdriver;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fleetlake_sim::{FaultKind, GroundTruth, SimConfig};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::common::{Server, create_token};
use webdriver::{Driver, Session};

const S: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

fn screenshots() -> Option<PathBuf> {
    std::env::var_os("FLEETLAKE_UI_SCREENSHOTS").map(PathBuf::from)
}

#[tokio::test(flavor = "multi_thread")]
async fn portal_files_are_embedded_with_csp_and_etag() {
    let server = Server::start(&[]);
    let c = server.client();
    let r = c
        .get(format!("{}/", server.url))
        .send()
        .await
        .expect("GET /");
    assert_eq!(r.status(), 200);
    assert!(r.url().path() == "/ui/", "/ redirects to /ui/: {}", r.url());
    for (path, ct) in [
        ("/ui/", "text/html"),
        ("/ui/js/app.js", "text/javascript"),
        ("/ui/js/chart.js", "text/javascript"),
        ("/ui/css/app.css", "text/css"),
    ] {
        let r = c
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .expect("asset");
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(ct),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'")
                && csp.contains("script-src 'self'")
                && csp.contains("frame-ancestors 'none'")
                && !csp.contains("unsafe"),
            "{path}: {csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cache-control"], "no-cache");
        let etag = h["etag"].to_str().unwrap().to_string();
        assert!(
            etag.starts_with('"') && etag.len() > 10,
            "strong etag {etag}"
        );
        let body = r.bytes().await.unwrap();
        assert!(!body.is_empty());
        let again = c
            .get(format!("{}{path}", server.url))
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path} revalidates");
        assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
        assert!(again.bytes().await.unwrap().is_empty());
    }
    // The page names only files of its own origin.
    let index = c
        .get(format!("{}/ui/", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!index.contains("http://") && !index.contains("https://"));
    for path in ["/ui/js/nope.js", "/ui/../Cargo.toml", "/ui/js/"] {
        let r = c.get(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn portal_needs_no_token_but_its_data_does() {
    let dir = tempfile::tempdir().unwrap();
    let admin = create_token(dir.path(), "ops", &["admin"]);
    let reader = create_token(dir.path(), "viewer", &["read:fleet"]);
    let server = Server::start_in(dir.path(), &["--auth"]);
    let c = server.client();
    for path in ["/ui/", "/ui/js/app.js", "/ui/css/app.css"] {
        let r = c.get(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} needs no token");
    }
    let whoami = |token: Option<String>| {
        let mut r = c.get(format!("{}/api/v1/whoami", server.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let r = r.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(whoami(None).await.0, 401);
    assert_eq!(whoami(Some("nope".into())).await.0, 401);
    let (s, v) = whoami(Some(reader)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "viewer");
    assert_eq!(v["can"]["read"], true);
    assert_eq!(v["can"]["rules"], false);
    assert_eq!(v["can"]["admin"], false);
    let (s, v) = whoami(Some(admin)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["can"]["admin"], true);
    assert_eq!(v["authenticated"], true);
}

/// A webhook receiver: records each JSON body.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let b = bodies.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let b = b.clone();
            async move {
                b.lock()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, bodies)
}

/// A webhook receiver that always answers 500; counts the calls.
async fn failing_receiver() -> (String, Arc<AtomicUsize>) {
    let calls: Arc<AtomicUsize> = Arc::default();
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/fail",
        axum::routing::post(move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::INTERNAL_SERVER_ERROR
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/fail", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

/// 40 hosts × 2 hours ending now, every 10 s, with one fault of each kind.
async fn fleet(server: &Server) -> GroundTruth {
    let end = now_ns() / (10 * S) * (10 * S);
    let config = SimConfig::new(40, end - 2 * 3600 * S, end, 10 * S, 3).expect("config");
    server.load_fleet(&config, 5).await
}

async fn api(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = server.client();
    let url = format!("{}{path}", server.url);
    let req = match method {
        "GET" => c.get(url),
        "POST" => c.post(url),
        m => panic!("{m}"),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().await.expect("request");
    let s = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn set_value(s: &Session, css: &str, value: &str) {
    s.execute(
        "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
         e.dispatchEvent(new Event('input'));",
        vec![json!(css), json!(value)],
    )
    .await;
}

async fn scroll_to(s: &Session, css: &str) {
    s.execute(
        "document.querySelector(arguments[0]).scrollIntoView();",
        vec![json!(css)],
    )
    .await;
}

/// Clicks the element matching `css`, waiting up to 30 s for it; found
/// again when the page re-rendered it between finding and clicking (the
/// operations pages poll every 5 s).
async fn click(s: &Session, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let e = s.wait(css, 30).await;
        if s.try_click(&e).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{css:?} kept being replaced before it could be clicked"
        );
    }
}

/// Every flow of the portal in one browser over one simulated fleet.
#[tokio::test(flavor = "multi_thread")]
async fn portal_flows_in_a_real_browser() {
    let driver = Driver::start().await;
    let (hook, received) = receiver().await;
    let server = Server::start(&["--rules-webhook-allow", "127.0.0.1"]);
    eprintln!("ui: writing the fleet");
    let truth = fleet(&server).await;
    eprintln!("ui: browser session");
    let shots = screenshots();
    let s = driver.session().await;
    let base = format!("{}/ui/", server.url);

    eprintln!("ui: query");
    // 1. A query: its rows in the table, then its chart. A tag value that
    // is markup shows as text and runs nothing.
    let t = now_ns() - 60 * S;
    server
        .write_ok(
            "fleet",
            &format!("xss,tag=<img\\ src\\=x\\ onerror\\=window.pwned\\=1> v=1 {t}\n"),
        )
        .await;
    s.goto(&base).await;
    s.wait("#sql", 30).await;
    set_value(&s, "#sql", "SELECT tag, v FROM xss").await;
    click(&s, "#run").await;
    s.wait_text("#status", 30, |t| t.contains("rows in")).await;
    let cell = s
        .wait_text("#results .vt-body", 10, |t| t.contains("<img"))
        .await;
    assert!(cell.contains("onerror"), "{cell}");
    let pwned = s
        .execute(
            "return [window.pwned === undefined, document.querySelectorAll('#results img').length];",
            vec![],
        )
        .await;
    assert_eq!(
        pwned,
        json!([true, 0]),
        "markup from the store must stay text"
    );

    set_value(
        &s,
        "#sql",
        "SELECT time, hostname, temp_c FROM cpu_thermal WHERE hostname IN ('host_1', 'host_2', 'host_3') ORDER BY time",
    )
    .await;
    click(&s, "#run").await;
    let status = s.wait_text("#status", 60, |t| t.contains("rows in")).await;
    let n: usize = status
        .split_whitespace()
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("{status}"));
    let want = server
        .sql_i64(
            "fleet",
            "SELECT count(*) FROM cpu_thermal WHERE hostname IN ('host_1', 'host_2', 'host_3')",
        )
        .await;
    assert_eq!(n as i64, want, "{status}");
    s.wait_text("#results .vt-body", 10, |t| t.contains("host_1"))
        .await;
    // The schema browser lists the fleet's tables.
    s.wait_text(".schema", 30, |t| {
        t.contains("cpu_thermal") && t.contains("heartbeat")
    })
    .await;
    s.screenshot(shots.as_deref(), "query").await;
    click(&s, "button[data-tab=chart]").await;
    s.wait("#chart-view canvas.chart", 60).await;
    let legend = s.find_all("#chart-view .legend-item").await;
    assert_eq!(legend.len(), 3, "one series per host");
    // Keyboard zoom on the focused chart changes its range.
    let canvas = s.wait("#chart-view canvas.chart", 5).await;
    s.click(&canvas).await;
    s.send_keys(&canvas, "+").await;
    scroll_to(&s, "#chart-view").await;
    s.screenshot(shots.as_deref(), "query-chart").await;
    // EXPLAIN shows DataFusion's plan; a bad query shows DataFusion's message.
    click(&s, "#explain").await;
    s.wait_text("#results", 30, |t| t.contains("physical_plan"))
        .await;
    set_value(&s, "#sql", "SELECT nope FROM cpu_thermal").await;
    click(&s, "#run").await;
    let err = s.wait_text("#results .error", 30, |_| true).await;
    assert!(err.contains("400") && err.contains("nope"), "{err}");

    eprintln!("ui: rule editor");
    // 2. A rule through the editor: validate, backtest (timeline and data
    // plot), then save.
    let hot: Vec<Value> = server
        .sql(
            "fleet",
            "SELECT hostname, avg(temp_c) AS a FROM cpu_thermal GROUP BY hostname ORDER BY a DESC LIMIT 3",
        )
        .await;
    let threshold = hot[2]["a"].as_f64().unwrap();
    let rule = json!({
        "name": "portal_hot_cpu", "kind": "alert", "every": "5m", "for": "5m",
        "sql": format!("SELECT hostname, rack, avg(temp_c) AS value FROM cpu_thermal WHERE time > now() - INTERVAL '10 minutes' AND time <= now() GROUP BY hostname, rack HAVING avg(temp_c) > {threshold}"),
        "labels": {"severity": "warning"},
        "annotations": {"summary": "{{ hostname }} runs hot"},
    });
    s.goto(&format!("{base}#/rule")).await;
    s.wait("#rule-json", 30).await;
    set_value(
        &s,
        "#rule-json",
        &serde_json::to_string_pretty(&rule).unwrap(),
    )
    .await;
    let end = chrono::Utc::now();
    let start = end - chrono::Duration::hours(2);
    set_value(&s, "#bt-start", &start.to_rfc3339()).await;
    set_value(&s, "#bt-end", &end.to_rfc3339()).await;
    click(&s, "#validate").await;
    s.wait_text("#rule-note", 30, |t| t.contains("Valid")).await;
    click(&s, "#backtest").await;
    let summary = s
        .wait_text("#backtest-summary", 60, |t| t.contains("evaluations"))
        .await;
    assert!(
        !summary.contains(" 0 instances"),
        "the rule fires in the data: {summary}"
    );
    s.wait("#backtest-result canvas.timeline", 10).await;
    s.wait("#backtest-data canvas.chart", 60).await;
    scroll_to(&s, "#backtest-result").await;
    s.screenshot(shots.as_deref(), "rule-backtest").await;
    click(&s, "#save").await;
    s.wait_text("#saved", 30, |t| t.contains("portal_hot_cpu"))
        .await;
    let (st, v) = api(&server, "GET", "/api/v1/rules/portal_hot_cpu", None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["definition"]["sql"], rule["sql"]);

    eprintln!("ui: approval");
    // 3. An approval: approve it in the queue; the local webhook receives it.
    let t = now_ns() - 30 * S;
    let probe: String = [(1, 99.0), (2, 99.0), (3, 10.0)]
        .iter()
        .map(|(h, v)| format!("probe,hostname=h{h},rack=r{h} v={v} {t}\n"))
        .collect();
    server.write_ok("fleet", &probe).await;
    let heal = json!({
        "name": "portal_heal", "kind": "self_heal", "every": "1s",
        "sql": "SELECT hostname, rack, max(v) AS value FROM probe WHERE time > now() - INTERVAL '10 minutes' AND time <= now() GROUP BY hostname, rack HAVING max(v) > 50",
        "action": {"type": "webhook", "url": hook},
        "safety": {"mode": "approval", "approval_ttl": "10m", "cooldown": "1h"},
    });
    let (st, v) = api(&server, "POST", "/api/v1/rules", Some(heal)).await;
    assert_eq!(st, 201, "{v}");
    s.goto(&format!("{base}#/ops/approvals")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.find_all("button.approve").await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "two approvals: {}",
            s.page_text().await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    s.screenshot(shots.as_deref(), "approvals").await;
    assert!(received.lock().is_empty(), "nothing runs before approval");
    let id = s
        .execute(
            "return document.querySelector('button.approve').dataset.id;",
            vec![],
        )
        .await;
    let id = id.as_str().expect("approval id").to_string();
    let (_, queue) = api(&server, "GET", "/api/v1/actions", None).await;
    let entity = queue["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .expect("the approval")["entity"]
        .clone();
    click(&s, "button.approve").await;
    s.wait_text("#approval-note", 20, |t| t.contains("Approved"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(b) = received.lock().first().cloned() {
            assert_eq!(b["entity"], entity, "{b}");
            assert_eq!(b["rule"], "portal_heal");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the webhook never received the approved action"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(received.lock().len(), 1, "only the approved action ran");
    // The action log shows the decision; the rules list shows both rules.
    s.goto(&format!("{base}#/ops/actions")).await;
    s.wait("#f-decision", 30).await;
    set_value(&s, "#f-rule", "portal_heal").await;
    set_value(&s, "#f-decision", "approved").await;
    click(&s, "#f-go").await;
    s.wait_text("#ops-actions .vt-body", 30, |t| {
        t.contains("approved") && t.contains(entity.as_str().unwrap_or("?"))
    })
    .await;
    s.screenshot(shots.as_deref(), "actions").await;
    s.goto(&format!("{base}#/ops/rules")).await;
    s.wait_text("#ops-rules", 30, |t| {
        t.contains("portal_hot_cpu") && t.contains("portal_heal")
    })
    .await;
    s.screenshot(shots.as_deref(), "rules").await;
    s.goto(&format!("{base}#/ops/alerts")).await;
    s.wait_text("#ops-alerts", 30, |t| t.contains("portal_heal"))
        .await;

    eprintln!("ui: fleet, host, job");
    // 4. The fleet, a host and a job.
    s.goto(&format!("{base}#/fleet")).await;
    s.wait_text("#tiles", 60, |t| t.contains("hosts reporting"))
        .await;
    s.wait_text("#by-dc", 60, |t| t.contains("dc0")).await;
    s.wait_text("#jobs", 60, |t| t.contains("job_")).await;
    // Host impact: the hour before the newest heartbeat unless asked for
    // more; the choice is remembered.
    let hour = s
        .wait_text("#impact-summary", 120, |t| t.starts_with("The 1 h before"))
        .await;
    s.screenshot(shots.as_deref(), "fleet").await;
    click(&s, "#impact button[data-hours='6']").await;
    let six = s
        .wait_text("#impact-summary", 120, |t| t.starts_with("The 6 h before"))
        .await;
    let diagnosed = |t: &str| -> u64 {
        let n = t.split(": ").nth(1).and_then(|r| r.split(' ').next());
        n.and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no job count in {t:?}"))
    };
    assert!(
        diagnosed(&six) >= diagnosed(&hour) && diagnosed(&six) > 0,
        "{hour} / {six}"
    );
    s.goto(&format!("{base}#/query")).await;
    s.goto(&format!("{base}#/fleet")).await;
    s.wait_text("#impact-summary", 120, |t| t.starts_with("The 6 h before"))
        .await;

    let skew = truth
        .faults
        .iter()
        .find(|f| f.kind == FaultKind::DataSkew)
        .and_then(|f| f.job.clone())
        .expect("a skewed job");
    let host = server
        .sql(
            "fleet",
            &format!("SELECT hostname FROM job_tasks WHERE job_id = '{skew}' LIMIT 1"),
        )
        .await[0]["hostname"]
        .as_str()
        .unwrap()
        .to_string();
    s.goto(&format!("{base}#/host/{host}")).await;
    s.wait_text("#host-info", 60, |t| t.contains("datacenter"))
        .await;
    s.wait("#host-charts canvas.chart", 60).await;
    s.wait_text("#host-jobs", 60, |t| t.contains("job_")).await;
    s.screenshot(shots.as_deref(), "host").await;

    s.goto(&format!("{base}#/job/{skew}")).await;
    s.wait_text("#job-summary", 60, |t| t.contains("wall"))
        .await;
    let causes = s.wait_text("#causes", 10, |_| true).await;
    assert!(causes.contains("data skew"), "{causes}");
    s.screenshot(shots.as_deref(), "job").await;
    s.quit().await;
}

/// A self-heal rule over `table`: `hosts` (name, value) written 30 s ago,
/// those above 50 its candidates.
async fn self_heal_over(
    server: &Server,
    name: &str,
    table: &str,
    hosts: &[(&str, f64)],
    action: Value,
    safety: Value,
) {
    let t = now_ns() - 30 * S;
    let lp: String = hosts
        .iter()
        .map(|(h, v)| format!("{table},hostname={h},rack=r_{h} v={v} {t}\n"))
        .collect();
    server.write_ok("fleet", &lp).await;
    let rule = json!({
        "name": name, "kind": "self_heal", "every": "1s",
        "sql": format!("SELECT hostname, rack, max(v) AS value FROM {table} WHERE time > now() - INTERVAL '10 minutes' AND time <= now() GROUP BY hostname, rack HAVING max(v) > 50"),
        "action": action, "safety": safety,
    });
    let (st, v) = api(server, "POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(st, 201, "{v}");
}

/// The flows of the operations pages and the PromQL tab that
/// `portal_flows_in_a_real_browser` leaves out, in one browser over one
/// simulated fleet: deny in the approval queue, a tripped breaker's reset,
/// PromQL's rows, chart and error, and deleting rules after confirming.
#[tokio::test(flavor = "multi_thread")]
async fn portal_deny_breaker_promql_and_delete_in_a_real_browser() {
    let driver = Driver::start().await;
    let (hook, received) = receiver().await;
    let (failing, failed) = failing_receiver().await;
    let server = Server::start(&["--rules-webhook-allow", "127.0.0.1"]);
    eprintln!("ui: writing the fleet");
    fleet(&server).await;
    let s = driver.session().await;
    let base = format!("{}/ui/", server.url);

    eprintln!("ui: deny");
    // 1. Two approvals: deny g1's, approve g2's. The denial is recorded and
    // never reaches the webhook, which does receive the approved one.
    self_heal_over(
        &server,
        "portal_gate",
        "gate",
        &[("g1", 99.0), ("g2", 99.0), ("g3", 10.0)],
        json!({"type": "webhook", "url": hook}),
        json!({"mode": "approval", "approval_ttl": "10m", "cooldown": "1h"}),
    )
    .await;
    s.goto(&format!("{base}#/ops/approvals")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.find_all("button.deny").await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "two approvals: {}",
            s.page_text().await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, queue) = api(&server, "GET", "/api/v1/actions", None).await;
    let id_of = |entity: &str| {
        queue["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["entity"] == entity)
            .unwrap_or_else(|| panic!("an approval for {entity}: {queue}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (deny_id, approve_id) = (id_of("g1"), id_of("g2"));
    click(&s, &format!("button.deny[data-id=\"{deny_id}\"]")).await;
    s.wait_text("#approval-note", 20, |t| {
        t.contains("Denied portal_gate on g1")
    })
    .await;
    s.wait_gone(&format!("button.deny[data-id=\"{deny_id}\"]"), 20)
        .await;
    let denied = server
        .sql(
            "fleet",
            "SELECT entity, detail FROM system.actions WHERE rule = 'portal_gate' AND decision = 'denied'",
        )
        .await;
    assert_eq!(
        denied,
        vec![json!({"entity": "g1", "detail": format!("denial of {deny_id}")})]
    );
    click(&s, &format!("button.approve[data-id=\"{approve_id}\"]")).await;
    s.wait_text("#approval-note", 20, |t| {
        t.contains("Approved portal_gate on g2")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !received.lock().iter().any(|b| b["entity"] == "g2") {
        assert!(
            Instant::now() < deadline,
            "the webhook never received the approved action"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got: Vec<Value> = received
        .lock()
        .iter()
        .map(|b| b["entity"].clone())
        .collect();
    assert_eq!(got, vec![json!("g2")], "the denied action must not run");
    // The action log, filtered to denials, shows g1's and only it.
    s.goto(&format!("{base}#/ops/actions")).await;
    s.wait("#f-decision", 30).await;
    set_value(&s, "#f-rule", "portal_gate").await;
    set_value(&s, "#f-decision", "denied").await;
    click(&s, "#f-go").await;
    s.wait_text("#ops-actions .vt-body", 30, |t| {
        t.contains("denied") && t.contains("g1") && !t.contains("g2")
    })
    .await;

    eprintln!("ui: breaker");
    // 2. A rule whose webhook fails trips its breaker; the rules page shows
    // it open, and its Reset closes it.
    self_heal_over(
        &server,
        "portal_flaky",
        "flaky",
        &[
            ("f1", 99.0),
            ("f2", 99.0),
            ("f3", 99.0),
            ("f4", 99.0),
            ("f5", 10.0),
        ],
        json!({"type": "webhook", "url": failing, "timeout": "1s", "retries": 0}),
        json!({"mode": "auto", "cooldown": "1h",
               "breaker": {"failure_rate": 0.5, "min_actions": 4, "window": "1h"}}),
    )
    .await;
    s.goto(&format!("{base}#/ops/rules")).await;
    let reset = "button.reset[data-name=\"portal_flaky\"]";
    s.wait(reset, 60).await;
    let (_, rule) = api(&server, "GET", "/api/v1/rules/portal_flaky", None).await;
    assert_eq!(rule["breaker"]["open"], true, "{rule}");
    assert!(
        failed.load(Ordering::SeqCst) >= 4,
        "the failures tripped it"
    );
    click(&s, reset).await;
    s.wait_text("#rules-note", 20, |t| {
        t.contains("Breaker of portal_flaky reset")
    })
    .await;
    s.wait_gone(reset, 20).await;
    let (_, rule) = api(&server, "GET", "/api/v1/rules/portal_flaky", None).await;
    assert_eq!(rule["breaker"]["open"], false, "{rule}");

    eprintln!("ui: promql");
    // 3. PromQL over the fleet: three hosts' series as a chart and a table;
    // a malformed query shows the server's message.
    s.goto(&format!("{base}#/query")).await;
    s.wait("#sql", 30).await;
    click(&s, "button[data-tab=promql]").await;
    s.wait("#promql", 30).await;
    set_value(
        &s,
        "#promql",
        "avg by (hostname) (cpu_thermal_temp_c{hostname=~\"host_[123]\"})",
    )
    .await;
    click(&s, "#prom-run").await;
    let status = s
        .wait_text("#prom-status", 60, |t| t.contains("series in"))
        .await;
    assert!(status.starts_with("3 series"), "{status}");
    s.wait("#prom-results canvas.chart", 30).await;
    let legend = s.find_all("#prom-results .legend-item").await;
    assert_eq!(legend.len(), 3, "one series per host");
    s.wait_text("#prom-results .vt-body", 10, |t| {
        (1..=3).all(|h| t.contains(&format!("host_{h}\"")))
    })
    .await;
    let bad = "sum(cpu_thermal_temp_c";
    set_value(&s, "#promql", bad).await;
    click(&s, "#prom-run").await;
    s.wait_text("#prom-status", 30, |t| t == "Failed.").await;
    let shown = s.wait_text("#prom-results .error", 10, |_| true).await;
    let r = server
        .client()
        .get(format!("{}/api/v1/query_range", server.url))
        .query(&[
            ("query", bad),
            ("start", "0"),
            ("end", "60"),
            ("step", "15s"),
        ])
        .send()
        .await
        .expect("query_range");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("error json");
    let msg = v["error"].as_str().expect("an error message");
    assert!(
        !msg.is_empty() && shown.contains("HTTP 400") && shown.contains(msg),
        "{shown} should show {msg}"
    );

    eprintln!("ui: delete");
    // 4. Deleting from the rules page asks first: Cancel keeps the rule,
    // OK deletes it. The editor's Delete does the same.
    let doomed = json!({
        "name": "portal_doomed", "kind": "alert", "every": "1m",
        "sql": "SELECT hostname, avg(temp_c) AS value FROM cpu_thermal WHERE time > now() - INTERVAL '10 minutes' AND time <= now() GROUP BY hostname HAVING avg(temp_c) > 1000",
    });
    let (st, v) = api(&server, "POST", "/api/v1/rules", Some(doomed)).await;
    assert_eq!(st, 201, "{v}");
    s.goto(&format!("{base}#/ops/rules")).await;
    let delete = "button.delete-rule[data-name=\"portal_doomed\"]";
    click(&s, delete).await;
    let asked = s.wait_prompt(10).await;
    assert!(asked.contains("portal_doomed"), "{asked}");
    s.answer_prompt(false).await;
    let (st, _) = api(&server, "GET", "/api/v1/rules/portal_doomed", None).await;
    assert_eq!(st, 200, "Cancel keeps the rule");
    click(&s, delete).await;
    s.wait_prompt(10).await;
    s.answer_prompt(true).await;
    s.wait_text("#rules-note", 20, |t| {
        t.contains("Deleted rule portal_doomed")
    })
    .await;
    s.wait_text("#ops-rules .vt-body", 30, |t| {
        t.contains("portal_flaky") && !t.contains("portal_doomed")
    })
    .await;
    let (st, v) = api(&server, "GET", "/api/v1/rules/portal_doomed", None).await;
    assert_eq!(st, 404, "{v}");

    s.goto(&format!("{base}#/rule/portal_gate")).await;
    click(&s, "#delete").await;
    let asked = s.wait_prompt(10).await;
    assert!(asked.contains("portal_gate"), "{asked}");
    s.answer_prompt(true).await;
    s.wait_text("#ops-rules .vt-body", 30, |t| {
        t.contains("portal_flaky") && !t.contains("portal_gate")
    })
    .await;
    let (st, v) = api(&server, "GET", "/api/v1/rules/portal_gate", None).await;
    assert_eq!(st, 404, "{v}");
    s.quit().await;
}

/// A read token is asked for, then sees data and rules but no approve,
/// reset, delete or save.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_token_gets_a_read_only_portal() {
    let driver = Driver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let reader = create_token(dir.path(), "viewer", &["read:fleet"]);
    let admin = create_token(dir.path(), "ops", &["admin"]);
    let server = Server::start_in(dir.path(), &["--auth"]);
    // An admin's rule, which the reader may see but not delete.
    let c = server.client();
    let r = c
        .post(format!(
            "{}/api/v3/write_lp?db=fleet&precision=nanosecond",
            server.url
        ))
        .bearer_auth(&admin)
        .body(format!("probe,hostname=h1 v=1 {}\n", now_ns()))
        .send()
        .await
        .expect("write");
    assert_eq!(r.status(), 204);
    let r = c
        .post(format!("{}/api/v1/rules", server.url))
        .bearer_auth(&admin)
        .json(&json!({
            "name": "admins_rule", "kind": "alert", "every": "1m",
            "sql": "SELECT hostname, max(v) AS value FROM probe WHERE time > now() - INTERVAL '10 minutes' GROUP BY hostname HAVING max(v) > 50",
        }))
        .send()
        .await
        .expect("create rule");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let s = driver.session().await;
    s.goto(&format!("{}/ui/#/ops/rules", server.url)).await;
    s.wait("dialog#token-dialog[open]", 30).await;
    let input = s.wait("#token-input", 5).await;
    s.send_keys(&input, &reader).await;
    click(&s, "#token-save").await;
    s.wait_text("#who", 30, |t| {
        t.contains("viewer") && t.contains("read-only")
    })
    .await;
    s.wait_text("#ops-rules .vt-body", 30, |t| t.contains("admins_rule"))
        .await;
    assert!(
        s.find("#new-rule").await.is_none(),
        "no New rule for a reader"
    );
    assert!(
        s.find("button.delete-rule").await.is_none(),
        "no Delete for a reader"
    );
    s.goto(&format!("{}/ui/#/rule", server.url)).await;
    s.wait("#rule-json", 30).await;
    for css in ["#save", "#backtest", "#validate"] {
        assert!(s.find(css).await.is_none(), "{css} hidden from a reader");
    }
    // The token works for data.
    s.goto(&format!("{}/ui/#/query", server.url)).await;
    s.wait("#sql", 30).await;
    set_value(&s, "#sql", "SELECT 1 AS one").await;
    click(&s, "#run").await;
    s.wait_text("#status", 30, |t| t.starts_with("1 rows"))
        .await;
    s.quit().await;
}
