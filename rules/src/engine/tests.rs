//! The engine without a server: an in-memory object store, a real write
//! path and query engine over a temporary WAL, a [`ManualClock`], and a
//! scheduler stopped at once so each test evaluates at the times it picks.

use std::path::Path;
use std::sync::Arc;

use fleetlake_ingest::{IngestConfig, Ingester, Precision};
use fleetlake_query::{QueryConfig, QueryEngine};
use fleetlake_storage::catalog::Catalog;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::registry::{dir_signature, read_dir_rules};
use super::scheduler::grid;
use super::*;
use crate::clock::ManualClock;
use crate::definition::{RuleDef, parse_toml};
use crate::eval;
use crate::state::Sample;

const S: i64 = 1_000_000_000;
/// On the 30 s and 1 m grids.
const T0: i64 = 1_700_000_040 * S;

const HOT: &str = r#"
[[rule]]
name = "hot"
kind = "alert"
every = "30s"
for = "1m"
sql = "SELECT hostname, max(temp) AS value FROM thermal WHERE time > now() - INTERVAL '5 minutes' AND time <= now() GROUP BY hostname HAVING max(temp) > 90"
[rule.annotations]
summary = "{{ hostname }} at {{ value }}"
[rule.action]
type = "log"
"#;

const COLD: &str = r#"
[[rule]]
name = "cold"
kind = "alert"
every = "1m"
sql = "SELECT hostname, min(temp) AS value FROM thermal GROUP BY hostname HAVING min(temp) < 0"
"#;

const REC: &str = r#"
[[rule]]
name = "rec"
kind = "record"
every = "1m"
into = "thermal_max"
sql = "SELECT hostname, max(temp) AS value FROM thermal WHERE time > now() - INTERVAL '5 minutes' AND time <= now() GROUP BY hostname"
"#;

const HEAL: &str = r#"
[[rule]]
name = "heal"
kind = "self_heal"
every = "30s"
sql = "SELECT hostname, max(temp) AS value FROM thermal WHERE time > now() - INTERVAL '5 minutes' AND time <= now() GROUP BY hostname HAVING max(temp) > 90"
[rule.action]
type = "log"
[rule.safety]
mode = "approval"
approval_ttl = "1m"
"#;

const API_BODY: &str = r#"{"name": "api_hot", "kind": "alert", "every": "30s",
  "sql": "SELECT hostname, max(temp) AS value FROM thermal GROUP BY hostname HAVING max(temp) > 90"}"#;

struct Fixture {
    engine: Arc<RulesEngine>,
    query: Arc<QueryEngine>,
    ingester: Arc<Ingester>,
    store: Arc<dyn ObjectStore>,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
    _wal: tempfile::TempDir,
}

/// Host `a` at 95°, host `b` at 50°, ten seconds before `T0`; the clock
/// 7 s past `T0`; `files` in the rules directory.
async fn fixture(files: &[(&str, &str)]) -> Fixture {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let catalog = Arc::new(Catalog::load(store.clone(), 100).await.unwrap());
    let wal = tempfile::tempdir().unwrap();
    let ingester = Ingester::open(catalog, IngestConfig::new(wal.path().to_path_buf()))
        .await
        .unwrap();
    let t = T0 - 10 * S;
    let out = ingester
        .write_lp(
            "fleet",
            format!("thermal,hostname=a temp=95 {t}\nthermal,hostname=b temp=50 {t}\n"),
            Precision::Nanosecond,
            true,
        )
        .await
        .unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let query = Arc::new(
        QueryEngine::new(ingester.clone(), store.clone(), QueryConfig::default()).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let clock = Arc::new(ManualClock::new(T0 + 7 * S));
    let engine = start(dir.path(), &clock, &store, &ingester, &query)
        .await
        .unwrap();
    Fixture {
        engine,
        query,
        ingester,
        store,
        clock,
        dir,
        _wal: wal,
    }
}

/// An engine over `store` reading rules from `dir`, started with its
/// scheduler stopped at once: tests evaluate by hand.
async fn start(
    dir: &Path,
    clock: &Arc<ManualClock>,
    store: &Arc<dyn ObjectStore>,
    ingester: &Arc<Ingester>,
    query: &Arc<QueryEngine>,
) -> Result<Arc<RulesEngine>> {
    let config = RulesConfig {
        rules_dir: Some(dir.to_path_buf()),
        clock: clock.clone(),
        ..RulesConfig::default()
    };
    let engine = RulesEngine::new(config, store.clone(), ingester.clone());
    let stop = CancellationToken::new();
    stop.cancel();
    engine
        .start(query.clone(), "http://fleetlake.test/".into(), stop)
        .await?
        .await
        .unwrap();
    Ok(engine)
}

impl Fixture {
    /// A new engine over the same store, rules directory and clock, as
    /// after a restart.
    async fn start(&self) -> Result<Arc<RulesEngine>> {
        start(
            self.dir.path(),
            &self.clock,
            &self.store,
            &self.ingester,
            &self.query,
        )
        .await
    }

    fn path(&self, file: &str) -> std::path::PathBuf {
        self.dir.path().join(file)
    }

    fn write_file(&self, file: &str, text: &str) {
        std::fs::write(self.path(file), text).unwrap();
    }

    async fn stored_states(&self) -> Vec<String> {
        let rows: Vec<(String, RuleState)> = self.engine.store.list("state").await.unwrap();
        rows.into_iter().map(|(n, _)| n).collect()
    }

    /// Waits for the actions the engine started.
    async fn settle(&self) {
        let mut tasks = std::mem::take(&mut *self.engine.tasks.lock());
        while tasks.join_next().await.is_some() {}
    }

    fn alerts(&self) -> Vec<Value> {
        self.engine.alerts_json()["data"]["alerts"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// (id, decision, outcome) of each row of `system.actions`.
    fn action_rows(&self) -> Vec<(String, &'static str, Option<String>)> {
        self.engine
            .snapshot_actions()
            .into_iter()
            .map(|r| (r.id, r.decision.as_str(), r.outcome))
            .collect()
    }
}

fn def(toml: &str) -> RuleDef {
    parse_toml(toml).unwrap().remove(0)
}

fn sample(labels: &[(&str, &str)], value: Option<f64>) -> Sample {
    Sample {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
        row: serde_json::Map::new(),
    }
}

#[test]
fn grid_rounds_down_to_a_multiple_of_every() {
    assert_eq!(grid(95 * S, 30 * S), 90 * S);
    assert_eq!(grid(90 * S, 30 * S), 90 * S);
    assert_eq!(grid(-S, 30 * S), -30 * S, "before the epoch, still down");
    assert_eq!(grid(7, 0), 7, "a zero period does not divide by zero");
}

#[test]
fn record_lines_escape_tags_and_skip_rows_without_a_value() {
    let d = def(REC);
    let samples = [
        sample(
            &[
                ("hostname", "a b"),
                ("rack", "r,1"),
                ("k=v", "x"),
                ("time", "2023-11-14T22:13:20"),
                ("empty", ""),
            ],
            Some(1.5),
        ),
        sample(&[("hostname", "nan")], Some(f64::NAN)),
        sample(&[("hostname", "inf")], Some(f64::INFINITY)),
        sample(&[("hostname", "null")], None),
        sample(&[], Some(2.0)),
    ];
    assert_eq!(
        record_lines(&d, &samples, 42),
        "thermal_max,hostname=a\\ b,k\\=v=x,rack=r\\,1 value=1.5 42\n\
         thermal_max value=2.0 42\n"
    );
    assert_eq!(record_lines(&d, &samples[1..4], 42), "");
}

#[test]
fn rule_files_are_read_in_name_order_and_a_repeated_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f);
    std::fs::write(p("b.toml"), HOT.replace("\"hot\"", "\"cold\"")).unwrap();
    std::fs::write(p("a.toml"), HOT).unwrap();
    std::fs::write(p("c.toml"), format!("{HOT}{REC}")).unwrap();
    std::fs::write(p("d.toml"), "[[rule]]\nname = 1\n").unwrap();
    std::fs::write(p("notes.txt"), "not rules").unwrap();
    std::fs::create_dir(p("sub")).unwrap();

    let files = read_dir_rules(dir.path()).unwrap();
    let names: Vec<_> = files.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(names, ["a.toml", "b.toml", "c.toml", "d.toml"].map(p));
    let rules = |i: usize| -> Vec<String> {
        files[i]
            .1
            .as_ref()
            .unwrap()
            .iter()
            .map(|d| d.name.clone())
            .collect()
    };
    assert_eq!(
        (rules(0), rules(1)),
        (vec!["hot".to_string()], vec!["cold".to_string()])
    );
    let Err(e) = &files[2].1 else {
        panic!("c.toml repeats hot")
    };
    assert!(e.to_string().contains("also defined in"), "{e}");
    assert!(e.to_string().contains("a.toml"), "{e}");
    assert!(files[3].1.is_err(), "d.toml does not parse");
}

#[test]
fn dir_signature_changes_with_the_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), HOT).unwrap();
    let before = dir_signature(dir.path()).unwrap();
    assert_eq!(before.len(), 1);
    std::fs::write(dir.path().join("a.toml"), format!("{HOT}\n# more")).unwrap();
    assert_ne!(dir_signature(dir.path()).unwrap(), before);
    let e = dir_signature(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
}

#[tokio::test]
async fn start_installs_file_rules_on_the_clocks_grid() {
    let f = fixture(&[("alerts.toml", HOT), ("rec.toml", REC)]).await;
    {
        let inner = f.engine.inner.lock();
        let hot = &inner.rules["hot"];
        assert_eq!(hot.source, Source::File(f.path("alerts.toml")));
        assert_eq!(hot.state.version, 1);
        assert_eq!(hot.next_eval, T0, "the clock is 7 s past a 30 s grid point");
        assert_eq!(hot.tables, ["thermal"]);
        assert!(!hot.evaluating);
    }
    assert_eq!(f.stored_states().await, ["hot", "rec"]);
    let v = f.engine.rules_json();
    assert_eq!(v["rules"][0]["name"], "hot");
    assert_eq!(v["rules"][0]["health"], "unknown");
    assert_eq!(v["rules"][0]["source"]["type"], "file");
    assert!(f.engine.rule_def("rec").is_some() && f.engine.rule_def("nope").is_none());
    assert_eq!(f.engine.now(), T0 + 7 * S);
}

#[tokio::test]
async fn a_broken_rule_file_stops_start_up() {
    let f = fixture(&[]).await;
    f.write_file("bad.toml", "[[rule]]\nname = 1\n");
    let e = f.start().await.unwrap_err();
    assert!(e.to_string().contains("bad.toml"), "{e}");
    std::fs::remove_file(f.path("bad.toml")).unwrap();
    f.write_file(
        "bad_sql.toml",
        &HOT.replace("FROM thermal", "FROM thermal WHERE"),
    );
    let e = f.start().await.unwrap_err();
    assert!(e.to_string().contains("bad_sql.toml"), "{e}");
}

#[tokio::test]
async fn an_alert_fires_after_for_and_its_action_is_logged() {
    let f = fixture(&[("alerts.toml", HOT)]).await;
    f.engine.evaluate("hot", T0).await;
    let alerts = f.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["state"], "pending");
    assert_eq!(alerts[0]["labels"]["alertname"], "hot");
    assert_eq!(alerts[0]["labels"]["hostname"], "a");
    assert_eq!(alerts[0]["annotations"]["summary"], "a at 95");
    assert_eq!(alerts[0]["activeAt"], eval::rfc3339(T0));
    assert!(f.action_rows().is_empty());

    f.clock.set(T0 + 60 * S);
    f.engine.evaluate("hot", T0 + 60 * S).await;
    assert_eq!(f.alerts()[0]["state"], "firing");
    f.settle().await;
    let rows = f.engine.snapshot_actions();
    assert_eq!(rows.len(), 1, "one row, completed by its outcome: {rows:?}");
    let r = &rows[0];
    assert_eq!(
        (r.decision.as_str(), r.status.as_str()),
        ("executed", "firing")
    );
    assert_eq!(
        (r.outcome.as_deref(), r.message.as_str()),
        (Some("success"), "logged")
    );
    assert_eq!(r.finished_at, Some(T0 + 60 * S));
    assert_eq!(f.engine.inner.lock().in_flight.total, 0);
    let v = f.engine.rule_json("hot").unwrap();
    assert_eq!(
        (v["health"].as_str(), v["firing"].as_u64()),
        (Some("ok"), Some(1))
    );
    let stored: Vec<(String, RuleState)> = f.engine.store.list("state").await.unwrap();
    assert_eq!(stored[0].1.instances.len(), 1);
    assert_eq!(stored[0].1.last_eval, Some(T0 + 60 * S));
}

#[tokio::test]
async fn an_evaluation_error_is_the_rules_health() {
    let f = fixture(&[("alerts.toml", HOT)]).await;
    // The table goes away from under the rule: the query fails.
    {
        let mut inner = f.engine.inner.lock();
        let l = inner.rules.get_mut("hot").unwrap();
        l.def = Arc::new(def(&HOT.replace("FROM thermal", "FROM missing_table")));
        l.mode = crate::validate::Mode::Batch("changed by the test".into());
        l.plan = None;
    }
    f.engine.evaluate("hot", T0).await;
    let v = f.engine.rule_json("hot").unwrap();
    assert_eq!(v["health"], "err");
    assert!(
        v["last_error"].as_str().unwrap().contains("missing_table"),
        "{v}"
    );
    // Evaluating a rule that does not exist does nothing.
    f.engine.evaluate("nope", T0).await;
}

#[tokio::test]
async fn a_record_rule_writes_its_rows_at_the_evaluation_time() {
    let f = fixture(&[("rec.toml", REC)]).await;
    f.engine.evaluate("rec", T0).await;
    assert_eq!(
        f.engine.rule_json("rec").unwrap()["last_error"],
        Value::Null
    );
    let batches = eval::run_sql(
        &f.query,
        "fleet",
        "SELECT hostname, value FROM thermal_max WHERE time = now() ORDER BY hostname",
        T0,
    )
    .await
    .unwrap();
    let rows: Vec<(String, Option<f64>)> = eval::samples(&def(REC), &batches)
        .unwrap()
        .into_iter()
        .map(|s| (s.labels["hostname"].clone(), s.value))
        .collect();
    assert_eq!(
        rows,
        [("a".to_string(), Some(95.0)), ("b".to_string(), Some(50.0))]
    );
}

#[tokio::test]
async fn api_rules_are_created_replaced_and_deleted() {
    let f = fixture(&[("alerts.toml", HOT)]).await;
    let e = &f.engine;
    let v = e.put_rule(None, API_BODY.as_bytes(), false).await.unwrap();
    assert_eq!(
        (v["version"].as_u64(), v["source"]["type"].as_str()),
        (Some(1), Some("api"))
    );
    let err = e
        .put_rule(None, API_BODY.as_bytes(), false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    let changed = API_BODY.replace("\"30s\"", "\"1m\"");
    let v = e
        .put_rule(Some("api_hot"), changed.as_bytes(), true)
        .await
        .unwrap();
    assert_eq!(v["version"], 2, "a changed definition is a new version");
    let v = e
        .put_rule(Some("api_hot"), changed.as_bytes(), true)
        .await
        .unwrap();
    assert_eq!(v["version"], 2, "the same definition is not");
    let defs: Vec<(String, RuleDef)> = e.store.list("defs").await.unwrap();
    assert_eq!(defs.len(), 1);
    assert_eq!(defs[0].1.every.ns(), 60 * S);

    let err = e
        .put_rule(Some("other"), API_BODY.as_bytes(), true)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    let missing = API_BODY.replace("api_hot", "api_new");
    let err = e
        .put_rule(None, missing.as_bytes(), true)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let file_named = API_BODY.replace("api_hot", "hot");
    let err = e
        .put_rule(None, file_named.as_bytes(), false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict(ref m) if m.contains("edit the file")),
        "{err}"
    );
    let err = e
        .put_rule(None, b"{\"name\": \"x\"}", false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");

    assert!(matches!(
        e.delete_rule("hot").await,
        Err(Error::Conflict(_))
    ));
    e.delete_rule("api_hot").await.unwrap();
    assert!(e.rule_def("api_hot").is_none());
    assert!(matches!(
        e.delete_rule("api_hot").await,
        Err(Error::NotFound(_))
    ));
    let defs: Vec<(String, RuleDef)> = e.store.list("defs").await.unwrap();
    assert!(defs.is_empty());
    assert_eq!(f.stored_states().await, ["hot"]);
}

#[tokio::test]
async fn a_restart_keeps_for_timers_api_rules_and_the_action_log() {
    let f = fixture(&[("alerts.toml", HOT), ("rec.toml", REC)]).await;
    f.engine
        .put_rule(None, API_BODY.as_bytes(), false)
        .await
        .unwrap();
    f.engine.evaluate("hot", T0).await;
    f.engine.evaluate("api_hot", T0).await;
    f.settle().await;
    assert!(
        f.action_rows().is_empty(),
        "hot is pending, api_hot has no action"
    );
    std::fs::remove_file(f.path("rec.toml")).unwrap();
    // What a stopping scheduler does last (the persister writes pending
    // states within moments anyway).
    f.engine.flush_dirty().await;

    let again = f.start().await.unwrap();
    let v = again.rules_json();
    let names: Vec<&str> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api_hot", "hot"]);
    assert_eq!(again.rule_json("hot").unwrap()["version"], 1);
    let alerts = again.alerts_json();
    let active = alerts["data"]["alerts"].as_array().unwrap();
    assert_eq!(active.len(), 2, "{alerts}");
    // The state of a rule that is gone is dropped.
    let states: Vec<(String, RuleState)> = again.store.list("state").await.unwrap();
    let states: Vec<&str> = states.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(states, ["api_hot", "hot"]);

    // The `for` timer runs from before the restart.
    again.evaluate("hot", T0 + 60 * S).await;
    let mut tasks = std::mem::take(&mut *again.tasks.lock());
    while tasks.join_next().await.is_some() {}
    let rows = again.snapshot_actions();
    assert_eq!(rows.len(), 1);

    // And the action log survives the next restart, each row as last written.
    let third = f.start().await.unwrap();
    let restored = third.snapshot_actions();
    assert_eq!(restored, rows);
    assert_eq!(restored[0].outcome.as_deref(), Some("success"));
}

#[tokio::test]
async fn approvals_are_approved_denied_and_expire() {
    let f = fixture(&[("heal.toml", HEAL)]).await;
    let e = &f.engine;
    e.evaluate("heal", T0).await;
    let pending = e.approvals_json()["approvals"].as_array().unwrap().clone();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["entity"], "a");
    assert_eq!(pending[0]["expires_at"], eval::rfc3339(T0 + 60 * S));
    let id = pending[0]["id"].as_str().unwrap().to_string();

    let v = e.decide_approval(&id, true).await.unwrap();
    assert_eq!(
        (v["decision"].as_str(), v["entity"].as_str()),
        (Some("approved"), Some("a"))
    );
    let new_id = v["id"].as_str().unwrap().to_string();
    assert!(matches!(
        e.decide_approval(&id, true).await,
        Err(Error::ActionNotFound(_))
    ));
    f.settle().await;
    assert_eq!(
        f.action_rows(),
        [
            (id.clone(), "awaiting_approval", None),
            (new_id.clone(), "approved", Some("success".into())),
        ]
    );
    {
        let inner = e.inner.lock();
        let acted = &inner.rules["heal"].state.acted;
        // The approval's placeholder became the action: counted once.
        assert_eq!(acted.len(), 1);
        assert_eq!(acted[0].id, new_id);
        assert_eq!(acted[0].acted.outcome, Some(true));
        assert_eq!(inner.in_flight.total, 0);
    }

    // Asked again, then left alone past approval_ttl.
    e.evaluate("heal", T0 + 30 * S).await;
    let id2 = e.approvals_json()["approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    f.clock.set(T0 + 89 * S);
    e.expire_approvals().await;
    assert_eq!(e.approvals_json()["approvals"].as_array().unwrap().len(), 1);
    f.clock.set(T0 + 90 * S);
    e.expire_approvals().await;
    assert!(
        e.approvals_json()["approvals"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let last = f.action_rows().pop().unwrap();
    assert_eq!(last, (format!("{id2}-expired"), "expired", None));

    // Denied: nothing runs.
    e.evaluate("heal", T0 + 120 * S).await;
    let id3 = e.approvals_json()["approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = e.decide_approval(&id3, false).await.unwrap();
    assert_eq!(v["decision"], "denied");
    f.settle().await;
    assert_eq!(f.action_rows().pop().unwrap().1, "denied");
    assert_eq!(f.action_rows().pop().unwrap().2, None);
}

#[tokio::test]
async fn resetting_the_breaker_closes_it_at_the_clocks_time() {
    let f = fixture(&[("heal.toml", HEAL)]).await;
    assert!(matches!(
        f.engine.reset_breaker("nope").await,
        Err(Error::NotFound(_))
    ));
    {
        let mut inner = f.engine.inner.lock();
        let b = &mut inner.rules.get_mut("heal").unwrap().state.breaker;
        b.open = true;
        b.since = Some(T0);
        b.reason = "circuit breaker open: test".into();
    }
    assert_eq!(f.engine.rule_json("heal").unwrap()["breaker"]["open"], true);
    let v = f.engine.reset_breaker("heal").await.unwrap();
    assert_eq!(v["was_open"], true);
    assert_eq!(v["reset_at"], eval::rfc3339(T0 + 7 * S));
    let stored: Vec<(String, RuleState)> = f.engine.store.list("state").await.unwrap();
    let b = &stored[0].1.breaker;
    assert_eq!(
        (b.open, b.since, b.reset_at),
        (false, None, Some(T0 + 7 * S))
    );
    assert!(b.reason.is_empty());
}

#[tokio::test]
async fn reloading_picks_up_changed_files_and_keeps_the_rules_of_a_broken_one() {
    let f = fixture(&[("alerts.toml", HOT)]).await;
    let e = &f.engine;
    f.write_file("cold.toml", COLD);
    e.reload_files().await.unwrap();
    assert_eq!(
        e.rule_json("cold").unwrap()["source"]["path"],
        Value::String(f.path("cold.toml").display().to_string())
    );

    f.write_file("cold.toml", &format!("{COLD}\n[[rule]]\nname = 1\n"));
    e.reload_files().await.unwrap();
    assert!(
        e.rule_def("cold").is_some(),
        "a broken file keeps its rules"
    );
    let v = e.rules_json();
    assert_eq!(v["file_errors"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["file_errors"][0]["file"],
        f.path("cold.toml").display().to_string()
    );

    f.write_file(
        "cold.toml",
        &COLD.replace("FROM thermal", "FROM thermal WHERE"),
    );
    e.reload_files().await.unwrap();
    assert!(
        e.rule_def("cold").is_some(),
        "SQL that does not plan keeps them too"
    );

    let edited = COLD.replace("< 0", "< -10");
    f.write_file("cold.toml", &edited);
    e.reload_files().await.unwrap();
    assert!(e.rules_json()["file_errors"].as_array().unwrap().is_empty());
    assert_eq!(e.rule_def("cold").unwrap().sql, def(&edited).sql);
    assert_eq!(e.rule_json("cold").unwrap()["version"], 2);

    std::fs::remove_file(f.path("cold.toml")).unwrap();
    e.reload_files().await.unwrap();
    assert!(e.rule_def("cold").is_none());
    assert_eq!(f.stored_states().await, ["hot"]);
}

#[tokio::test]
async fn a_file_rule_shadows_an_api_rule_of_its_name_until_it_goes() {
    let f = fixture(&[]).await;
    let e = &f.engine;
    let body = API_BODY.replace("api_hot", "cold");
    e.put_rule(None, body.as_bytes(), false).await.unwrap();
    f.write_file("cold.toml", COLD);
    e.reload_files().await.unwrap();
    let v = e.rules_json();
    assert_eq!(v["rules"][0]["source"]["type"], "file");
    assert_eq!(v["shadowed_api_rules"], serde_json::json!(["cold"]));
    assert_eq!(e.rule_def("cold").unwrap().every.ns(), 60 * S);

    std::fs::remove_file(f.path("cold.toml")).unwrap();
    e.reload_files().await.unwrap();
    assert_eq!(e.rule_json("cold").unwrap()["source"]["type"], "api");
    assert_eq!(e.rule_def("cold").unwrap().every.ns(), 30 * S);
}

#[tokio::test]
async fn a_changed_period_moves_the_rule_to_its_new_grid() {
    let f = fixture(&[("cold.toml", COLD)]).await;
    f.engine
        .inner
        .lock()
        .rules
        .get_mut("cold")
        .unwrap()
        .next_eval = T0 + 60 * S;
    f.clock.set(T0 + 95 * S);
    // The same period keeps the schedule ...
    f.write_file("cold.toml", &COLD.replace("< 0", "< -10"));
    f.engine.reload_files().await.unwrap();
    assert_eq!(f.engine.inner.lock().rules["cold"].next_eval, T0 + 60 * S);
    // ... a new one starts on its grid.
    f.write_file("cold.toml", &COLD.replace("\"1m\"", "\"45s\""));
    f.engine.reload_files().await.unwrap();
    assert_eq!(
        f.engine.inner.lock().rules["cold"].next_eval,
        grid(T0 + 95 * S, 45 * S)
    );
}

#[tokio::test]
async fn an_engine_without_a_rules_dir_has_nothing_to_reload() {
    let f = fixture(&[]).await;
    let e = RulesEngine::new(RulesConfig::default(), f.store.clone(), f.ingester.clone());
    e.reload_files().await.unwrap();
    assert!(e.rules_json()["rules"].as_array().unwrap().is_empty());
    // Not started: nothing can be planned yet.
    let err = e.check_body(API_BODY.as_bytes()).await.unwrap_err();
    assert!(matches!(err, Error::Internal(_)), "{err}");
}

/// An evaluation that changes only what the next one recomputes (values,
/// the time of the evaluation) does not write the rule's state; one that
/// changes an instance's lifecycle does, and a restart resumes from it.
#[tokio::test]
async fn state_is_written_when_a_restart_would_need_it() {
    let f = fixture(&[("alerts.toml", HOT)]).await;
    let stored = || async {
        let rows: Vec<(String, RuleState)> = f.engine.store.list("state").await.unwrap();
        rows.into_iter().find(|(n, _)| n == "hot").unwrap().1
    };
    f.engine.evaluate("hot", T0).await;
    f.engine.flush_dirty().await;
    let first = stored().await;
    assert_eq!(first.last_eval, Some(T0), "a new instance is written");
    assert_eq!(first.instances.len(), 1);

    // Still pending, a new value: nothing a restart needs changed.
    let t = T0 + 20 * S;
    f.ingester
        .write_lp(
            "fleet",
            format!("thermal,hostname=a temp=97 {t}\n"),
            Precision::Nanosecond,
            true,
        )
        .await
        .unwrap();
    f.clock.set(T0 + 30 * S);
    f.engine.evaluate("hot", T0 + 30 * S).await;
    f.engine.flush_dirty().await;
    assert_eq!(f.alerts()[0]["value"], "97");
    assert_eq!(stored().await, first, "the state object was rewritten");

    // Firing: written.
    f.clock.set(T0 + 60 * S);
    f.engine.evaluate("hot", T0 + 60 * S).await;
    let fired = stored().await;
    assert_eq!(fired.last_eval, Some(T0 + 60 * S));
    let inst = fired.instances.values().next().unwrap();
    assert_eq!(inst.fired_at, Some(T0 + 60 * S));
    f.settle().await;

    let again = f.start().await.unwrap();
    let alerts = again.alerts_json();
    assert_eq!(alerts["data"]["alerts"][0]["state"], "firing", "{alerts:?}");
}

/// A batch rule runs the plan made when it was installed — against the
/// data as it is at each evaluation — and is planned again only when a
/// table it reads changes its schema.
#[tokio::test]
async fn batch_rules_reuse_their_plan_until_the_schema_changes() {
    let f = fixture(&[("cold.toml", COLD)]).await;
    let plan = || {
        f.engine.inner.lock().rules["cold"]
            .plan
            .clone()
            .expect("planned at install")
    };
    let names = || -> Vec<String> {
        f.alerts()
            .iter()
            .map(|a| a["labels"]["hostname"].as_str().unwrap().to_string())
            .collect()
    };
    let first = plan();
    f.engine.evaluate("cold", T0).await;
    assert!(names().is_empty());
    let write = |line: String| {
        let ingester = f.ingester.clone();
        async move {
            let out = ingester
                .write_lp("fleet", line, Precision::Nanosecond, true)
                .await
                .unwrap();
            assert!(out.rejected.is_empty());
        }
    };
    write(format!("thermal,hostname=c temp=-5 {}\n", T0 + S)).await;
    f.clock.set(T0 + 60 * S);
    f.engine.evaluate("cold", T0 + 60 * S).await;
    assert_eq!(names(), ["c"], "the kept plan reads the new row");
    assert!(
        Arc::ptr_eq(&first, &plan()),
        "planned again without a change"
    );

    write(format!(
        "thermal,hostname=d temp=-1,fan=3 {}\n",
        T0 + 61 * S
    ))
    .await;
    f.clock.set(T0 + 120 * S);
    f.engine.evaluate("cold", T0 + 120 * S).await;
    assert_eq!(names(), ["c", "d"]);
    assert!(
        !Arc::ptr_eq(&first, &plan()),
        "a new column changes the schema: planned again"
    );
    assert!(f.engine.inner.lock().rules["cold"].last_error.is_none());
}

#[tokio::test]
async fn a_forced_mode_holds_for_every_rule_file_and_nothing_is_carried_out() {
    use crate::definition::Mode as SafetyMode;
    let f = fixture(&[]).await;
    // An alert with a log action and no `safety`, a self-heal in approval.
    std::fs::write(f.dir.path().join("rules.toml"), format!("{HOT}{HEAL}")).unwrap();
    let config = RulesConfig {
        rules_dir: Some(f.dir.path().to_path_buf()),
        clock: f.clock.clone(),
        force_mode: Some(SafetyMode::DryRun),
        ..RulesConfig::default()
    };
    let engine = RulesEngine::new(config, f.store.clone(), f.ingester.clone());
    let stop = CancellationToken::new();
    stop.cancel();
    engine
        .start(f.query.clone(), "http://fleetlake.test/".into(), stop)
        .await
        .unwrap()
        .await
        .unwrap();
    for name in ["hot", "heal"] {
        let def = engine.rule_def(name).unwrap();
        assert_eq!(
            def.safety.as_ref().map(|s| s.mode),
            Some(SafetyMode::DryRun),
            "{name}"
        );
    }
    engine.evaluate("heal", T0).await;
    engine.evaluate("hot", T0).await;
    f.clock.set(T0 + 60 * S);
    engine.evaluate("hot", T0 + 60 * S).await;
    let mut tasks = std::mem::take(&mut *engine.tasks.lock());
    while tasks.join_next().await.is_some() {}
    let mut rows: Vec<_> = engine
        .snapshot_actions()
        .into_iter()
        .map(|r| (r.rule, r.decision.as_str(), r.outcome))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("heal".to_string(), "dry_run", None),
            ("hot".to_string(), "dry_run", None)
        ]
    );
    assert_eq!(engine.inner.lock().in_flight.total, 0);
}
