//! Evaluations of one rule driven by a [`ManualClock`]: what
//! [`apply`] decides as time passes, and [`finish`] for the breaker.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::definition::parse_toml;

const S: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * S;
const URL: &str = "http://fleetlake.test/api/v1/rules/r";

/// One rule's state and the clock it is evaluated by.
struct Rig {
    def: RuleDef,
    st: RuleState,
    clock: ManualClock,
    ids: u32,
    global: GlobalLimits,
    live: Live,
}

impl Rig {
    fn new(toml: &str) -> Self {
        Self {
            def: parse_toml(toml).unwrap().remove(0),
            st: RuleState::default(),
            clock: ManualClock::new(T0),
            ids: 0,
            global: GlobalLimits::default(),
            live: Live::default(),
        }
    }

    /// Evaluates at the clock's time with rows for `hosts`.
    fn eval(&mut self, hosts: &[&str]) -> Outcome {
        let ids = &mut self.ids;
        let mut new_id = || {
            *ids += 1;
            format!("a{ids}")
        };
        let env = Env {
            global: self.global,
            live: self.live.clone(),
            inventory: None,
            generator_url: URL.into(),
            new_id: &mut new_id,
        };
        let samples = hosts.iter().map(|h| sample(h, 95.0)).collect();
        apply(&self.def, &mut self.st, samples, self.clock.now_ns(), env)
    }

    /// Advances the clock by `secs`, then evaluates.
    fn after(&mut self, secs: u64, hosts: &[&str]) -> Outcome {
        self.clock.advance(Duration::from_secs(secs));
        self.eval(hosts)
    }

    fn now(&self) -> i64 {
        self.clock.now_ns()
    }

    fn instance(&self, host: &str) -> &Instance {
        &self.st.instances[&key(host)]
    }
}

fn sample(host: &str, v: f64) -> Sample {
    let mut row = serde_json::Map::new();
    row.insert("hostname".into(), host.into());
    row.insert("value".into(), v.into());
    Sample {
        labels: BTreeMap::from([("hostname".to_string(), host.to_string())]),
        value: Some(v),
        row,
    }
}

fn key(host: &str) -> String {
    format!("{{hostname={host:?}}}")
}

fn changes(t: &[Transition]) -> Vec<Change> {
    t.iter().map(|t| t.change).collect()
}

/// Each decision as (decision or skip reason, status, whether it runs).
fn decided(out: &Outcome) -> Vec<(&'static str, &str, bool)> {
    out.decisions
        .iter()
        .map(|(r, run)| {
            let what = r.reason.map_or(r.decision.as_str(), |x| x.as_str());
            (what, r.status.as_str(), run.is_some())
        })
        .collect()
}

fn alert(extra: &str) -> String {
    format!(
        r#"
[[rule]]
name = "hot"
kind = "alert"
every = "30s"
sql = "SELECT hostname, max(temp) AS value FROM thermal GROUP BY hostname"
{extra}
"#
    )
}

fn self_heal(safety: &str) -> String {
    format!(
        r#"
[[rule]]
name = "heal"
kind = "self_heal"
every = "30s"
sql = "SELECT hostname, max(temp) AS value FROM thermal GROUP BY hostname"
[rule.action]
type = "webhook"
url = "http://127.0.0.1:9/heal"
[rule.safety]
{safety}
"#
    )
}

const WEBHOOK: &str = "[rule.action]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"";

#[test]
fn alert_is_pending_until_for_elapses_then_notifies_once() {
    let mut r = Rig::new(&alert(&format!(
        "for = \"2m\"\n[rule.annotations]\nsummary = \"{{{{ hostname }}}} at {{{{ value }}}}\"\n{WEBHOOK}"
    )));
    let out = r.eval(&["a"]);
    assert_eq!(changes(&out.transitions), [Change::Pending]);
    assert!(out.decisions.is_empty());
    assert_eq!(r.instance("a").state, AlertState::Pending);
    assert_eq!(r.instance("a").annotations["summary"], "a at 95");
    assert_eq!(r.st.last_eval, Some(T0));

    // 90 s in: `for` has not elapsed.
    let out = r.after(90, &["a"]);
    assert!(out.transitions.is_empty() && out.decisions.is_empty());
    assert_eq!(r.instance("a").state, AlertState::Pending);

    let out = r.after(30, &["a"]);
    let fired = r.now();
    assert_eq!(changes(&out.transitions), [Change::Firing]);
    assert_eq!(decided(&out), [("executed", "firing", true)]);
    let (row, run) = &out.decisions[0];
    assert_eq!(
        (row.id.as_str(), row.mode.as_str(), row.action.as_str()),
        ("a1", "auto", "webhook")
    );
    assert_eq!((row.evaluation_time, row.entity.as_deref()), (fired, None));
    assert!(
        row.evidence.contains("\"hostname\":\"a\""),
        "{}",
        row.evidence
    );
    let req = run.as_ref().unwrap();
    assert_eq!((req.action_id.as_str(), req.status), ("a1", "firing"));
    assert_eq!(req.starts_at, fired);
    // As Prometheus: endsAt four re-send intervals (here `every`) ahead.
    assert_eq!(req.ends_at, fired + 4 * 30 * S);
    assert_eq!(
        req.idempotency_key,
        idempotency_key("hot", &key("a"), T0),
        "keyed by the episode's active_at"
    );
    assert_eq!(req.generator_url, URL);
    assert_eq!(req.annotations["summary"], "a at 95");
    assert_eq!(r.instance("a").last_sent, Some(fired));

    // Still firing: a webhook is not told again.
    let out = r.after(30, &["a"]);
    assert!(out.transitions.is_empty() && out.decisions.is_empty());
    assert!(out.resends.is_empty());
}

#[test]
fn pending_alert_that_goes_away_is_dropped_without_a_notification() {
    let mut r = Rig::new(&alert(&format!("for = \"5m\"\n{WEBHOOK}")));
    r.eval(&["a"]);
    let out = r.after(30, &[]);
    assert_eq!(changes(&out.transitions), [Change::Dropped]);
    assert!(out.decisions.is_empty());
    assert!(r.st.instances.is_empty());
}

#[test]
fn resolution_is_notified_with_its_time() {
    let mut r = Rig::new(&alert(WEBHOOK));
    assert_eq!(decided(&r.eval(&["a"])), [("executed", "firing", true)]);
    let out = r.after(30, &[]);
    assert_eq!(changes(&out.transitions), [Change::Resolved]);
    assert_eq!(decided(&out), [("executed", "resolved", true)]);
    let req = out.decisions[0].1.as_ref().unwrap();
    assert_eq!((req.status, req.ends_at), ("resolved", r.now()));
    // The same episode: receivers match the resolution to the firing.
    assert_eq!(req.idempotency_key, idempotency_key("hot", &key("a"), T0));
}

#[test]
fn exec_actions_run_on_firing_only() {
    let mut r = Rig::new(&alert(
        "[rule.action]\ntype = \"exec\"\ncommand = [\"/bin/true\", \"{{ hostname }}\"]",
    ));
    assert_eq!(decided(&r.eval(&["a"])), [("executed", "firing", true)]);
    let out = r.after(30, &[]);
    assert_eq!(changes(&out.transitions), [Change::Resolved]);
    assert!(out.decisions.is_empty());
}

#[test]
fn keep_firing_for_holds_the_alert_then_resolves() {
    let mut r = Rig::new(&alert(&format!("keep_firing_for = \"1m\"\n{WEBHOOK}")));
    r.eval(&["a"]);
    let gone = r.after(30, &[]);
    assert!(gone.transitions.is_empty() && gone.decisions.is_empty());
    assert_eq!(r.instance("a").state, AlertState::Firing);
    assert_eq!(r.instance("a").keep_firing_since, Some(T0 + 30 * S));
    // Gone for 30 s of the 60: still held.
    assert!(r.after(30, &[]).transitions.is_empty());
    assert_eq!(r.instance("a").state, AlertState::Firing);
    let out = r.after(30, &[]);
    assert_eq!(changes(&out.transitions), [Change::Resolved]);
    assert_eq!(decided(&out), [("executed", "resolved", true)]);
    assert_eq!(r.instance("a").resolved_at, Some(T0 + 90 * S));
}

#[test]
fn alertmanager_gets_firing_alerts_again_each_resend_interval() {
    let mut r = Rig::new(&alert(
        "[rule.action]\ntype = \"alertmanager\"\nurl = \"http://127.0.0.1:9/am\"\nresend = \"1m\"",
    ));
    let out = r.eval(&["a"]);
    assert_eq!(decided(&out), [("executed", "firing", true)]);
    // endsAt is four re-send intervals ahead when they exceed `every`.
    assert_eq!(
        out.decisions[0].1.as_ref().unwrap().ends_at,
        T0 + 4 * 60 * S
    );
    assert!(out.resends.is_empty(), "just notified");
    let out = r.after(30, &["a"]);
    assert!(out.resends.is_empty() && out.decisions.is_empty());
    let out = r.after(30, &["a"]);
    assert!(out.decisions.is_empty(), "a re-send has no row");
    assert_eq!(out.resends.len(), 1);
    assert_eq!(
        (out.resends[0].status, out.resends[0].action_id.as_str()),
        ("firing", "")
    );
    assert_eq!(r.instance("a").last_sent, Some(T0 + 60 * S));
}

#[test]
fn shadow_and_dry_run_alerts_record_but_never_send() {
    for (mode, decision) in [("shadow", "shadow"), ("dry_run", "dry_run")] {
        let mut r = Rig::new(&alert(&format!(
            "[rule.action]\ntype = \"alertmanager\"\nurl = \"http://127.0.0.1:9/am\"\n[rule.safety]\nmode = \"{mode}\""
        )));
        let out = r.eval(&["a"]);
        assert_eq!(decided(&out), [(decision, "firing", false)], "{mode}");
        assert_eq!(out.decisions[0].0.mode, mode);
        assert_eq!(r.instance("a").last_sent, None, "{mode}");
        let out = r.after(600, &["a"]);
        assert!(out.resends.is_empty(), "{mode}: no re-sends either");
    }
}

#[test]
fn alert_without_an_action_decides_nothing() {
    let mut r = Rig::new(&alert(""));
    let out = r.eval(&["a"]);
    assert_eq!(changes(&out.transitions), [Change::Pending, Change::Firing]);
    assert!(out.decisions.is_empty() && out.resends.is_empty());
}

#[test]
fn repeated_labels_count_once_and_are_reported() {
    let mut r = Rig::new(&alert(""));
    let out = r.eval(&["a", "a", "b"]);
    assert_eq!(out.duplicate_rows, 1);
    assert_eq!(r.st.instances.len(), 2);
}

#[test]
fn self_heal_acts_then_cooldown_skips_the_same_entity() {
    let mut r = Rig::new(&self_heal("mode = \"auto\"\ncooldown = \"10m\""));
    let out = r.eval(&["h1"]);
    assert_eq!(decided(&out), [("executed", "firing", true)]);
    let (row, run) = &out.decisions[0];
    assert_eq!(row.entity.as_deref(), Some("h1"));
    assert_eq!(run.as_ref().unwrap().entity.as_deref(), Some("h1"));
    assert_eq!(r.st.acted.len(), 1);
    assert_eq!(
        (r.st.acted[0].id.as_str(), r.st.acted[0].acted.at),
        ("a1", T0)
    );
    assert_eq!(r.instance("h1").attempts, 1);

    let out = r.after(30, &["h1", "h2"]);
    assert_eq!(
        decided(&out),
        [("cooldown", "firing", false), ("executed", "firing", true)]
    );
    assert_eq!(r.instance("h1").attempts, 1, "a skip is not an attempt");
    // Ten minutes after the action the cooldown is over.
    let out = r.after(570, &["h1", "h2"]);
    assert_eq!(decided(&out)[0], ("executed", "firing", true));
}

#[test]
fn self_heal_needs_the_entity_column() {
    let mut r = Rig::new(&self_heal("mode = \"auto\"\nentity = \"node\""));
    let out = r.eval(&["h1"]);
    assert_eq!(decided(&out), [("no_entity", "firing", false)]);
    assert!(r.st.acted.is_empty());
}

#[test]
fn dry_run_counts_against_limits_without_running() {
    let mut r = Rig::new(&self_heal("mode = \"dry_run\"\nmax_actions_per_hour = 1"));
    let out = r.eval(&["h1", "h2"]);
    assert_eq!(
        decided(&out),
        [
            ("dry_run", "firing", false),
            ("rate_limit", "firing", false)
        ]
    );
    assert_eq!(r.st.acted.len(), 1);
}

#[test]
fn approval_mode_waits_then_expires_the_approval() {
    let mut r = Rig::new(&self_heal("mode = \"approval\"\napproval_ttl = \"1m\""));
    let out = r.eval(&["h1"]);
    assert_eq!(decided(&out), [("awaiting_approval", "firing", false)]);
    let ap = &r.st.approvals["a1"];
    assert_eq!(
        (ap.entity.as_str(), ap.instance.as_str()),
        ("h1", key("h1").as_str())
    );
    assert_eq!((ap.evaluation_time, ap.expires_at), (T0, T0 + 60 * S));

    // Awaiting approval, the entity is busy.
    let out = r.after(30, &["h1"]);
    assert_eq!(decided(&out), [("in_flight", "firing", false)]);

    // At expiry the approval is denied by default, then asked again.
    let out = r.after(30, &["h1"]);
    assert_eq!(
        decided(&out),
        [
            ("expired", "firing", false),
            ("awaiting_approval", "firing", false)
        ]
    );
    assert_eq!(out.decisions[0].0.id, "a1-expired");
    assert!(out.decisions[0].0.detail.contains("a1"));
    assert_eq!(r.st.approvals.keys().collect::<Vec<_>>(), ["a3"]);
}

#[test]
fn expire_approvals_leaves_the_unexpired() {
    let mut r = Rig::new(&self_heal("mode = \"approval\"\napproval_ttl = \"1m\""));
    r.eval(&["h1"]);
    r.after(30, &["h1", "h2"]);
    assert_eq!(r.st.approvals.len(), 2);
    let mut out = Outcome::default();
    expire_approvals(&r.def, &mut r.st, T0 + 60 * S, &mut out);
    assert_eq!(decided(&out), [("expired", "firing", false)]);
    assert_eq!(r.st.approvals.keys().collect::<Vec<_>>(), ["a3"]);
}

#[test]
fn max_attempts_escalates_until_the_episode_ends() {
    let mut r = Rig::new(&self_heal("mode = \"auto\"\nmax_attempts = 1"));
    assert_eq!(decided(&r.eval(&["h1"])), [("executed", "firing", true)]);
    let out = r.after(30, &["h1"]);
    assert_eq!(decided(&out), [("max_attempts", "firing", false)]);
    assert_eq!(
        changes(&out.safety_transitions),
        [Change::Pending, Change::Firing]
    );
    let esc = r.st.safety_alerts.values().next().unwrap();
    assert_eq!(esc.labels["alertname"], "RuleEscalation");
    assert_eq!(esc.labels["hostname"], "h1");
    assert!(esc.annotations["summary"].contains("gave up on h1"));

    // The instance resolves: the escalation too, and attempts start over.
    let out = r.after(30, &[]);
    assert_eq!(changes(&out.safety_transitions), [Change::Resolved]);
    assert_eq!(r.instance("h1").attempts, 0);
    let out = r.after(30, &["h1"]);
    assert_eq!(decided(&out), [("executed", "firing", true)]);
}

#[test]
fn too_many_candidates_does_nothing_and_raises_an_alert() {
    let mut r = Rig::new(&self_heal("mode = \"auto\"\nmax_candidates = 2"));
    let out = r.eval(&["h1", "h2", "h3"]);
    assert!(
        decided(&out)
            .iter()
            .all(|d| *d == ("max_candidates", "firing", false))
    );
    assert_eq!(out.decisions.len(), 3);
    assert!(r.st.acted.is_empty());
    let a = r.st.safety_alerts.values().next().unwrap();
    assert_eq!(
        (a.labels["alertname"].as_str(), a.state, a.value),
        ("RuleSafetyCandidates", AlertState::Firing, Some(3.0))
    );
    // Back to two: both are acted on and the alert resolves.
    let out = r.after(30, &["h1", "h2"]);
    assert_eq!(decided(&out).iter().filter(|d| d.2).count(), 2);
    assert_eq!(changes(&out.safety_transitions), [Change::Resolved]);
}

#[test]
fn global_in_flight_limit_holds_back_real_actions_only() {
    for (mode, want) in [("auto", "in_flight"), ("dry_run", "dry_run")] {
        let mut r = Rig::new(&self_heal(&format!("mode = \"{mode}\"")));
        r.global.max_in_flight = Some(1);
        r.live.in_flight_global = 1;
        assert_eq!(decided(&r.eval(&["h1"]))[0].0, want, "{mode}");
    }
}

#[test]
fn failures_trip_the_breaker_which_holds_until_reset() {
    let mut r = Rig::new(&self_heal(
        "mode = \"auto\"\nbreaker = { failure_rate = 0.5, min_actions = 2, window = \"1h\" }",
    ));
    assert_eq!(decided(&r.eval(&["h1", "h2"])).len(), 2);
    let done = T0 + S;
    assert_eq!(
        finish(&r.def, &mut r.st, "a1", false, done),
        None,
        "one of min 2"
    );
    let reason = finish(&r.def, &mut r.st, "a2", false, done).expect("trips");
    assert!(reason.contains("2 of 2"), "{reason}");
    assert!(r.st.breaker.open);
    assert_eq!(r.st.breaker.since, Some(done));
    assert!(r.st.breaker.reason.starts_with("circuit breaker open:"));
    assert_eq!(r.st.acted[0].acted.outcome, Some(false));
    assert_eq!(r.st.acted[0].acted.finished_at, Some(done));
    // Already open: nothing more to report.
    assert_eq!(finish(&r.def, &mut r.st, "a2", false, done), None);

    let out = r.after(30, &["h1", "h2"]);
    assert!(decided(&out).iter().all(|d| d.0 == "breaker_open" && !d.2));
    let open = r.st.safety_alerts.values().next().unwrap();
    assert_eq!(open.labels["alertname"], "RuleBreakerOpen");
    assert_eq!(open.state, AlertState::Firing);
    assert_eq!(open.annotations["summary"], r.st.breaker.reason);

    // A reset (as the engine does it) lets actions through again.
    r.st.breaker = BreakerState {
        reset_at: Some(r.now()),
        ..BreakerState::default()
    };
    let out = r.after(30, &["h1", "h2"]);
    assert!(decided(&out).iter().all(|d| d.0 == "executed"));
    assert_eq!(changes(&out.safety_transitions), [Change::Resolved]);
}

#[test]
fn successes_do_not_trip_the_breaker() {
    let mut r = Rig::new(&self_heal(
        "mode = \"auto\"\nbreaker = { failure_rate = 0.5, min_actions = 2, window = \"1h\" }",
    ));
    r.eval(&["h1", "h2"]);
    assert_eq!(finish(&r.def, &mut r.st, "a1", true, T0), None);
    assert_eq!(finish(&r.def, &mut r.st, "a2", true, T0), None);
    assert!(!r.st.breaker.open);
}

#[test]
fn action_history_keeps_unfinished_actions_up_to_a_day() {
    let mut r = Rig::new(&self_heal("mode = \"auto\""));
    r.eval(&["h1", "h2"]);
    finish(&r.def, &mut r.st, "a1", true, T0 + S);
    // An hour (the longest window here) later, the finished one goes; the
    // unfinished one stays, its outcome still to come.
    r.after(3600, &[]);
    let ids: Vec<&str> = r.st.acted.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["a2"]);
    r.after(20 * 3600, &[]);
    assert_eq!(r.st.acted.len(), 1);
    r.after(3 * 3600, &[]);
    assert!(r.st.acted.is_empty(), "given up on after a day");
}

#[test]
fn record_rules_track_rows_but_decide_nothing() {
    let mut r = Rig::new(
        r#"
[[rule]]
name = "rec"
kind = "record"
every = "1m"
into = "thermal_max"
sql = "SELECT hostname, max(temp) AS value FROM thermal GROUP BY hostname"
"#,
    );
    let out = r.eval(&["a", "b"]);
    assert!(out.decisions.is_empty() && out.resends.is_empty());
    assert_eq!(r.st.last_eval, Some(T0));
}

#[test]
fn the_durable_fingerprint_ignores_what_an_evaluation_recomputes() {
    let mut r = Rig::new(&alert("for = \"1m\""));
    r.eval(&["a", "b"]);
    let pending = r.st.durable_fingerprint();
    // Values, rows and sightings change every evaluation: the same print.
    r.clock.advance(Duration::from_secs(30));
    let samples = vec![sample("a", 97.5), sample("b", 99.0)];
    let now = r.now();
    let env = Env {
        global: r.global,
        live: r.live.clone(),
        inventory: None,
        generator_url: URL.into(),
        new_id: &mut || "x".to_string(),
    };
    apply(&r.def, &mut r.st, samples, now, env);
    assert_eq!(r.instance("a").value, Some(97.5));
    assert_eq!(r.st.durable_fingerprint(), pending);
    // A lifecycle change (firing after `for`) and a gone instance do not.
    r.after(30, &["a", "b"]);
    assert_eq!(r.instance("a").state, AlertState::Firing);
    let firing = r.st.durable_fingerprint();
    assert_ne!(firing, pending);
    r.after(30, &["a"]);
    assert_ne!(r.st.durable_fingerprint(), firing);
}
