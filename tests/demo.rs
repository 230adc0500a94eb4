//! `fleetlake serve --demo`: the simulated fleet streams in live and the
//! example rule pack, forced to dry_run, closes the loop — telemetry, an
//! alert, a dry-run decision in `system.actions` — with nothing carried out.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Server;

const S: i64 = 1_000_000_000;

/// The rules of `rules/examples/`.
const PACK: [&str; 8] = [
    "cpu_temp_anomaly",
    "disk_latency_anomaly",
    "disk_stuck",
    "ecc_storm",
    "host_down",
    "nic_flapping",
    "smart_sectors_rising",
    "thermal_throttling",
];

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

async fn get(server: &Server, path: &str) -> Value {
    let r = server
        .client()
        .get(format!("{}{path}", server.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}; server {}", server.liveness()));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
}

/// Polls `f` every 500 ms until it returns `Some`, or panics after `secs`.
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
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// (hosts, oldest, newest) of the heartbeat table.
async fn heartbeats(server: &Server) -> (i64, i64, i64) {
    let rows = server
        .sql(
            "fleet",
            "SELECT count(DISTINCT hostname) AS hosts, CAST(min(time) AS BIGINT) AS oldest, \
             CAST(max(time) AS BIGINT) AS newest FROM heartbeat",
        )
        .await;
    let n = |k: &str| {
        rows[0][k]
            .as_i64()
            .unwrap_or_else(|| panic!("{k}: {rows:?}"))
    };
    (n("hosts"), n("oldest"), n("newest"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_streams_a_fleet_and_its_faults_end_in_dry_run_decisions() {
    let started = Instant::now();
    // Any host may be reached: were a dry-run decision carried out, the
    // pack's webhooks would be tried, and recorded as executed.
    let mut server = Server::start(&["--demo", "--rules-webhook-allow", "*"]);
    let answering = started.elapsed();

    // The backfill is in before the server answers: 200 hosts, an hour.
    let (hosts, oldest, newest) = heartbeats(&server).await;
    let now = now_ns();
    assert_eq!(hosts, 200, "simulated hosts");
    assert!(
        oldest <= now - 55 * 60 * S,
        "the backfill reaches back an hour: oldest {} s ago",
        (now - oldest) / S
    );
    assert!(
        now - newest <= 40 * S && newest <= now,
        "the newest heartbeat is the present: {} s ago",
        (now - newest) / S
    );
    // ... and the fleet keeps reporting as the clock advances.
    let later = wait_for(60, "a newer heartbeat", || async {
        let (_, _, n) = heartbeats(&server).await;
        (n > newest).then_some(n)
    })
    .await;
    assert!(later <= now_ns(), "no heartbeat from the future");

    // The pack is loaded from its files, every rule in dry_run.
    let listing = get(&server, "/api/v1/rules").await;
    let rules = listing["rules"].as_array().expect("rules");
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, PACK.into_iter().collect(), "{listing}");
    for r in rules {
        assert_eq!(
            r["definition"]["safety"]["mode"], "dry_run",
            "{}: {r}",
            r["name"]
        );
        assert_eq!(r["source"]["type"], "file", "{r}");
        assert!(
            r["source"]["path"]
                .as_str()
                .is_some_and(|p| p.contains("demo-rules")),
            "{r}"
        );
    }

    // A fault under way at start-up raises an alert of the pack ...
    let alert = wait_for(180, "an alert of the pack", || async {
        let v = get(&server, "/api/v1/alerts").await;
        v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| PACK.contains(&a["labels"]["alertname"].as_str().unwrap_or_default()))
            .cloned()
    })
    .await;
    let first_alert = started.elapsed();

    // ... and its decision is recorded as a dry run.
    let decision = wait_for(180, "a dry-run decision in system.actions", || async {
        let rows = server
            .sql(
                "fleet",
                "SELECT rule, entity, decision FROM system.actions WHERE decision = 'dry_run' \
                 ORDER BY evaluation_time LIMIT 1",
            )
            .await;
        rows.into_iter()
            .find(|r| PACK.contains(&r["rule"].as_str().unwrap_or_default()))
    })
    .await;
    let first_decision = started.elapsed();

    // Nothing was carried out, nor queued to be.
    let acted = server
        .sql(
            "fleet",
            "SELECT rule, decision, outcome, message FROM system.actions \
             WHERE decision IN ('executed', 'approved', 'awaiting_approval') \
                OR outcome IS NOT NULL",
        )
        .await;
    assert!(acted.is_empty(), "actions carried out: {acted:?}");
    let modes = server
        .sql(
            "fleet",
            "SELECT DISTINCT mode FROM system.actions ORDER BY mode",
        )
        .await;
    assert_eq!(modes, [serde_json::json!({"mode": "dry_run"})], "{modes:?}");

    eprintln!(
        "demo: answering after {:.1} s; first alert ({} {}) after {:.1} s; first dry-run decision ({} on {}) after {:.1} s",
        answering.as_secs_f64(),
        alert["labels"]["alertname"],
        alert["state"],
        first_alert.as_secs_f64(),
        decision["rule"],
        decision["entity"],
        first_decision.as_secs_f64(),
    );
    assert!(server.terminate(), "the demo stops cleanly on SIGTERM");
}
