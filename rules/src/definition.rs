//! Rule definitions: the TOML file format, the JSON API body, and the
//! checks that need no data (names, durations, required keys, templates).
//! Checks that need the catalog (the SQL plans, its columns) live in
//! [`crate::validate`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::Dur;
use crate::error::{Error, Result};
use crate::template::Template;

/// The database a rule's SQL runs in when it names none.
pub const DEFAULT_DB: &str = "fleet";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Alert,
    Record,
    SelfHeal,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Alert => "alert",
            Kind::Record => "record",
            Kind::SelfHeal => "self_heal",
        }
    }
}

/// One rule, as written in a file's `[[rule]]` or an API body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub name: String,
    pub kind: Kind,
    #[serde(default = "default_db")]
    pub db: String,
    pub every: Dur,
    #[serde(default, rename = "for")]
    pub for_: Dur,
    #[serde(default)]
    pub keep_firing_for: Dur,
    pub sql: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<SafetyDef>,
    /// When the rule is evaluated besides every `every`.
    #[serde(default, skip_serializing_if = "Eval::is_every")]
    pub eval: Eval,
}

/// When a rule is evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Eval {
    /// At multiples of `every` (Prometheus' rule groups).
    #[default]
    Every,
    /// Also as soon as a write reaches the rule's streaming state, so a
    /// condition a row makes true is seen when it is acknowledged (the
    /// rule must stream).
    OnWrite,
}

impl Eval {
    pub fn is_every(&self) -> bool {
        *self == Eval::Every
    }
}

/// The server's `--default-db`, set once at start-up; [`DEFAULT_DB`] until then.
static SERVER_DEFAULT_DB: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the database of rules that name none (the server's `--default-db`).
/// The first call wins: there is one default per process.
pub fn set_default_db(db: &str) {
    let _ = SERVER_DEFAULT_DB.set(db.to_string());
}

fn default_db() -> String {
    SERVER_DEFAULT_DB
        .get()
        .map_or(DEFAULT_DB, String::as_str)
        .to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Webhook,
    Alertmanager,
    Exec,
    Log,
    /// Diagnose the instance's job ([`crate::attach`]); the action log
    /// keeps the summary.
    Diagnose,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionDef {
    #[serde(rename = "type")]
    pub kind: ActionKind,
    /// webhook: the URL posted to; alertmanager: its base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// exec: the program and its arguments (templates over the row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// One attempt's time limit (default 10s); an exec past it is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// webhook / alertmanager: retries after a failed attempt (default 3),
    /// with exponential backoff from 500 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// alertmanager: re-send active alerts this often (default: `every`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resend: Option<Dur>,
    /// webhook / alertmanager / log: what to send besides the row, e.g.
    /// `["diagnosis"]`, the diagnosis of the instance's job
    /// ([`crate::attach`]); on firing notifications only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attach: Vec<crate::attach::Attachment>,
}

impl ActionDef {
    pub fn timeout(&self) -> Duration {
        self.timeout.map_or(Duration::from_secs(10), |d| d.0)
    }

    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(3)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Evaluate and record decisions; never act, never notify.
    Shadow,
    /// Record what would be done (limits applied as if it were done).
    #[default]
    DryRun,
    /// Each action waits for `POST /api/v1/actions/<id>/approve`.
    Approval,
    Auto,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shadow => "shadow",
            Mode::DryRun => "dry_run",
            Mode::Approval => "approval",
            Mode::Auto => "auto",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeLimit {
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerDef {
    /// Trips when failures / actions in `window` reach this (0 < r <= 1).
    pub failure_rate: f64,
    /// ... and at least this many actions finished in the window.
    #[serde(default = "default_min_actions")]
    pub min_actions: u32,
    #[serde(default = "default_window")]
    pub window: Dur,
}

fn default_min_actions() -> u32 {
    4
}

fn default_window() -> Dur {
    Dur::from_secs(3600)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyDef {
    #[serde(default)]
    pub mode: Mode,
    /// The label naming the entity acted on (default `hostname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_actions_per_hour: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub max_per_scope: Vec<ScopeLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_candidates: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_ttl: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerDef>,
    /// SQL returning one row per entity of the fleet with its scope labels
    /// (e.g. `SELECT DISTINCT hostname, rack FROM heartbeat WHERE time >
    /// now() - INTERVAL '1 hour'`). It sizes `max_percent` scopes, names the
    /// scope of entities whose rows lack the label, and defines "the whole
    /// fleet" for `max_candidates`. Default: the entity and scope columns of
    /// the first table the rule's SQL reads, over the last hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_sql: Option<String>,
}

impl SafetyDef {
    pub fn entity(&self) -> &str {
        self.entity.as_deref().unwrap_or("hostname")
    }

    pub fn approval_ttl(&self) -> Duration {
        self.approval_ttl.map_or(Duration::from_secs(1800), |d| d.0)
    }
}

/// A rules file: one or more `[[rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RuleDef>,
}

/// Parses a TOML rules file and checks each rule (see [`RuleDef::check`]).
///
/// # Errors
/// TOML or serde errors (unknown keys, bad durations) with their position;
/// the first rule that fails its checks; two rules of the same name.
pub fn parse_toml(text: &str) -> Result<Vec<RuleDef>> {
    let file: RuleFile = toml::from_str(text).map_err(|e| Error::invalid(e.to_string()))?;
    let mut seen = std::collections::BTreeSet::new();
    for r in &file.rule {
        r.check()?;
        if !seen.insert(r.name.clone()) {
            return Err(Error::invalid(format!(
                "rule {:?} is defined twice in the same file",
                r.name
            )));
        }
    }
    Ok(file.rule)
}

/// Parses one rule from an API body: JSON (an object with the file's keys),
/// or TOML (a `[[rule]]` file holding exactly one rule, or the keys at top
/// level) when the body does not start with `{`.
pub fn parse_body(body: &[u8]) -> Result<RuleDef> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::invalid("rule body must be UTF-8 JSON or TOML"))?;
    let rule: RuleDef = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| Error::invalid(format!("rule JSON: {e}")))?
    } else if text.contains("[[rule]]") {
        let mut rules = parse_toml(text)?;
        if rules.len() != 1 {
            return Err(Error::invalid(format!(
                "the body holds {} rules; send one at a time",
                rules.len()
            )));
        }
        rules.remove(0)
    } else {
        toml::from_str(text).map_err(|e| Error::invalid(format!("rule TOML: {e}")))?
    };
    rule.check()?;
    Ok(rule)
}

/// The longest rule name: it names an object on the store, and a web page.
pub const MAX_NAME_LEN: usize = 128;

pub fn valid_name(s: &str) -> bool {
    if s.len() > MAX_NAME_LEN {
        return false;
    }
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl RuleDef {
    /// The checks that need no data.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the rule and the key at fault.
    pub fn check(&self) -> Result<()> {
        let name = &self.name;
        let bad = |msg: String| Err(Error::invalid(format!("rule {name:?}: {msg}")));
        if !valid_name(name) {
            return Err(Error::invalid(format!(
                "rule name {name:?} is invalid: use [a-zA-Z_][a-zA-Z0-9_]*, at most {MAX_NAME_LEN} characters"
            )));
        }
        if let Err(e) = fleetlake_storage::schema::validate_name(&self.db) {
            return bad(format!("db: {e}"));
        }
        if self.every.is_zero() {
            return bad("every must be positive, e.g. \"1m\"".into());
        }
        if self.sql.trim().is_empty() {
            return bad("sql is empty".into());
        }
        for (k, v) in &self.labels {
            if !valid_name(k) {
                return bad(format!("label name {k:?} is invalid"));
            }
            if k == "alertname" || k == "rule" {
                return bad(format!("label {k:?} is set by fleetlake"));
            }
            if v.contains("{{") {
                return bad(format!(
                    "label {k:?}: labels are constant, templates go in annotations"
                ));
            }
        }
        for (k, v) in &self.annotations {
            if let Err(e) = Template::parse(v) {
                return bad(format!("annotation {k:?}: {e}"));
            }
        }
        match self.kind {
            Kind::Record => {
                let Some(into) = &self.into else {
                    return bad(
                        "a record rule needs `into`, the table its rows are written to".into(),
                    );
                };
                if let Err(e) = fleetlake_storage::schema::validate_name(into) {
                    return bad(format!("into: {e}"));
                }
                if self.action.is_some() || self.safety.is_some() {
                    return bad("a record rule writes rows; it takes no action or safety".into());
                }
                if !self.for_.is_zero() || !self.keep_firing_for.is_zero() {
                    return bad(
                        "for / keep_firing_for apply to alert and self_heal rules, not record"
                            .into(),
                    );
                }
            }
            Kind::Alert | Kind::SelfHeal => {
                if self.into.is_some() {
                    return bad("`into` is for record rules only".into());
                }
            }
        }
        if self.kind == Kind::SelfHeal && self.action.is_none() {
            return bad(
                "a self_heal rule needs [rule.action] (type = webhook | alertmanager | exec | log | diagnose)"
                    .into(),
            );
        }
        if let Some(a) = &self.action {
            self.check_action(a).or_else(bad)?;
        }
        if let Some(s) = &self.safety {
            check_safety(s).or_else(bad)?;
        }
        Ok(())
    }

    /// Makes the rule decide in `mode` whatever its `safety` says: a
    /// self-heal rule's actions and an alert rule's notifications (an
    /// alert rule without `safety` gets the default limits, which do not
    /// apply to alerts). Record rules take no action and are unchanged.
    pub fn force_mode(&mut self, mode: Mode) {
        if self.kind != Kind::Record {
            self.safety.get_or_insert_with(SafetyDef::default).mode = mode;
        }
    }

    fn check_action(&self, a: &ActionDef) -> Result<(), String> {
        match a.kind {
            ActionKind::Webhook | ActionKind::Alertmanager => {
                let Some(url) = &a.url else {
                    return Err(format!("action type {:?} needs `url`", a.kind));
                };
                let parsed =
                    reqwest::Url::parse(url).map_err(|e| format!("action url {url:?}: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(format!("action url {url:?}: use http or https"));
                }
                if a.command.is_some() {
                    return Err("`command` is for exec actions".into());
                }
            }
            ActionKind::Exec => {
                match &a.command {
                    Some(c) if !c.is_empty() && !c[0].trim().is_empty() => {
                        for arg in c {
                            Template::parse(arg).map_err(|e| format!("command: {e}"))?;
                        }
                    }
                    _ => return Err("exec action needs `command`, e.g. [\"/usr/local/bin/drain\", \"{{ hostname }}\"]".into()),
                }
                if a.url.is_some() {
                    return Err("`url` is for webhook and alertmanager actions".into());
                }
            }
            ActionKind::Log => {
                if a.url.is_some() || a.command.is_some() {
                    return Err("a log action takes no url or command".into());
                }
            }
            ActionKind::Diagnose => {
                if a.url.is_some() || a.command.is_some() || !a.attach.is_empty() {
                    return Err(
                        "a diagnose action takes no url, command or attach: it diagnoses the job in the row's job_id"
                            .into(),
                    );
                }
            }
        }
        if !a.attach.is_empty() && a.kind == ActionKind::Exec {
            return Err("`attach` is for webhook, alertmanager and log actions".into());
        }
        if a.timeout.is_some_and(|t| t.is_zero()) {
            return Err("action timeout must be positive".into());
        }
        if a.resend.is_some() && a.kind != ActionKind::Alertmanager {
            return Err("`resend` is for alertmanager actions".into());
        }
        Ok(())
    }
}

fn check_safety(s: &SafetyDef) -> Result<(), String> {
    if !valid_name(s.entity()) {
        return Err(format!(
            "safety.entity {:?} is not a column name",
            s.entity()
        ));
    }
    for l in &s.max_per_scope {
        if !valid_name(&l.label) {
            return Err(format!(
                "max_per_scope label {:?} is not a column name",
                l.label
            ));
        }
        match (l.max, l.max_percent) {
            (Some(_), None) => {}
            (None, Some(p)) if p > 0.0 && p <= 100.0 => {}
            (None, Some(p)) => {
                return Err(format!(
                    "max_per_scope {:?}: max_percent {p} must be in (0, 100]",
                    l.label
                ));
            }
            _ => {
                return Err(format!(
                    "max_per_scope {:?}: give exactly one of max or max_percent",
                    l.label
                ));
            }
        }
    }
    if let Some(b) = &s.breaker {
        if !(b.failure_rate > 0.0 && b.failure_rate <= 1.0) {
            return Err(format!(
                "breaker.failure_rate {} must be in (0, 1]",
                b.failure_rate
            ));
        }
        if b.min_actions == 0 {
            return Err("breaker.min_actions must be at least 1".into());
        }
        if b.window.is_zero() {
            return Err("breaker.window must be positive".into());
        }
    }
    if s.max_attempts == Some(0) {
        return Err("max_attempts must be at least 1".into());
    }
    if s.max_in_flight == Some(0) {
        return Err("max_in_flight must be at least 1".into());
    }
    if s.approval_ttl.is_some_and(|t| t.is_zero()) {
        return Err("approval_ttl must be positive".into());
    }
    if s.inventory_sql
        .as_ref()
        .is_some_and(|q| q.trim().is_empty())
    {
        return Err("inventory_sql is empty".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISK: &str = r#"
[[rule]]
name = "disk_stuck"
kind = "self_heal"
every = "1m"
for = "10m"
keep_firing_for = "5m"
sql = "SELECT hostname, rack, avg(util) AS value FROM disk GROUP BY hostname, rack"
[rule.labels]
severity = "page"
[rule.annotations]
summary = "disk stuck on {{ hostname }} ({{ value }}% util)"
[rule.action]
type = "exec"
command = ["/usr/local/bin/drain", "{{ hostname }}"]
timeout = "10s"
[rule.safety]
mode = "dry_run"
entity = "hostname"
max_actions_per_hour = 10
max_per_scope = [ { label = "rack", max = 1 }, { label = "cluster", max_percent = 2.0 } ]
breaker = { failure_rate = 0.5, min_actions = 4, window = "1h" }
"#;

    #[test]
    fn parses_the_documented_format() {
        let rules = parse_toml(DISK).unwrap();
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert_eq!(r.db, "fleet");
        assert_eq!(r.for_.0, Duration::from_secs(600));
        assert_eq!(
            r.safety.as_ref().unwrap().max_per_scope[1].max_percent,
            Some(2.0)
        );
        // JSON round trip: the API body is the same object.
        let json = serde_json::to_vec(r).unwrap();
        assert_eq!(&parse_body(&json).unwrap(), r);
    }

    #[test]
    fn precise_errors() {
        let unknown = DISK.replace("keep_firing_for", "keep_firing");
        let e = parse_toml(&unknown).unwrap_err().to_string();
        assert!(e.contains("unknown field `keep_firing`"), "{e}");
        let dur = DISK.replace("\"10m\"", "\"10 minutes\"");
        let e = parse_toml(&dur).unwrap_err().to_string();
        assert!(e.contains("invalid duration"), "{e}");
        let no_action = DISK.replace("[rule.action]\ntype = \"exec\"\ncommand = [\"/usr/local/bin/drain\", \"{{ hostname }}\"]\ntimeout = \"10s\"\n", "");
        let e = parse_toml(&no_action).unwrap_err().to_string();
        assert!(e.contains("needs [rule.action]"), "{e}");
        let pct = DISK.replace("max_percent = 2.0", "max_percent = 200.0");
        assert!(
            parse_toml(&pct)
                .unwrap_err()
                .to_string()
                .contains("(0, 100]")
        );
        let name = DISK.replace("\"disk_stuck\"", "\"disk-stuck\"");
        assert!(
            parse_toml(&name)
                .unwrap_err()
                .to_string()
                .contains("invalid")
        );
        let tpl = DISK.replace("{{ value }}%", "{{ value %");
        assert!(
            parse_toml(&tpl)
                .unwrap_err()
                .to_string()
                .contains("annotation")
        );
        let e = parse_body(br#"{"name":"r","kind":"record","every":"1m","sql":"SELECT 1"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs `into`"), "{e}");
        let e = parse_body(br#"{"name":"r","kind":"alert","every":"0s","sql":"SELECT 1"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("every must be positive"), "{e}");
    }

    /// The shipped rule pack parses (its SQL is planned in tests/rules.rs,
    /// against a server holding the simulator's tables).
    #[test]
    fn example_pack_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let entries = std::fs::read_dir(&dir).expect("rules/examples exists");
        let mut n = 0;
        for e in entries {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let rules = parse_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!rules.is_empty(), "{}: no [[rule]]", path.display());
                n += rules.len();
            }
        }
        assert!(n > 0, "rules/examples holds no rules");
    }
}
