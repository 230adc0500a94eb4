//! The registry: which rules exist and where they came from — `*.toml`
//! files of the rules directory (re-read when they change) and rules
//! created through the API (stored under `_rules/defs/`).
//!
//! # Invariants
//! - A file rule wins over an API rule of the same name; the API rule is
//!   kept aside ("shadowed") and comes back when the file rule goes.
//! - A rule's version goes up exactly when its definition changes.
//! - A rules file that fails to parse or validate keeps its previous rules
//!   (at start-up it stops the start instead).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;
use tracing::{error, info, warn};

use super::scheduler::grid;
use super::{Loaded, RulesEngine};
use crate::actions;
use crate::core::RuleState;
use crate::definition::{self, RuleDef};
use crate::error::{Error, Result};
use crate::validate::{Mode, Validation, validate};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "path")]
pub enum Source {
    File(PathBuf),
    Api,
}

/// How long the parts of creating or replacing a rule took, in
/// milliseconds (the API reports them in a `Server-Timing` header).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PutTimings {
    /// Parsing the body, planning the SQL, compiling the streaming shape.
    pub check_ms: f64,
    /// Writing the definition (and a replaced rule's state) durably.
    pub store_ms: f64,
    /// Registering it with the scheduler and its streaming state.
    pub install_ms: f64,
}

impl PutTimings {
    /// The `Server-Timing` header value (W3C Server Timing).
    pub fn header(&self) -> String {
        format!(
            "check;dur={:.3}, store;dur={:.3}, install;dur={:.3}",
            self.check_ms, self.store_ms, self.install_ms
        )
    }
}

fn def_hash(def: &RuleDef) -> String {
    let text = serde_json::to_string(def).unwrap_or_default();
    actions::idempotency_key("def", &text, 0)
}

impl RulesEngine {
    /// Installs the stored API rules at start-up with their saved state
    /// (taken out of `states`). One that no longer validates still runs,
    /// and reports its errors.
    pub(super) async fn load_api_rules(
        &self,
        states: &mut BTreeMap<String, RuleState>,
    ) -> Result<()> {
        let api: Vec<(String, RuleDef)> = self.store.list("defs").await?;
        for (_, def) in api {
            let v = match validate(self.query()?, &def).await {
                Ok(v) => v,
                Err(e) => {
                    warn!(rule = %def.name, error = %e, "stored API rule no longer validates; it runs and reports its errors");
                    Validation::default()
                }
            };
            let st = states.remove(&def.name).unwrap_or_default();
            self.install(def, Source::Api, v, Some(st));
        }
        Ok(())
    }

    /// Installs the rules directory's rules at start-up with their saved
    /// state (taken out of `states`).
    ///
    /// # Errors
    /// The first file that does not read, parse or validate, naming it.
    pub(super) async fn load_rule_files(
        &self,
        states: &mut BTreeMap<String, RuleState>,
    ) -> Result<()> {
        let Some(dir) = self.config.rules_dir.clone() else {
            return Ok(());
        };
        let sig = dir_signature(&dir)?;
        let files = self.read_rule_files(&dir)?;
        for (path, defs) in files {
            let defs = defs.map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
            for def in defs {
                let v = validate(self.query()?, &def)
                    .await
                    .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
                let st = states.remove(&def.name);
                self.install(def, Source::File(path.clone()), v, st);
            }
        }
        self.inner.lock().file_sig = sig;
        Ok(())
    }

    /// Registers (or replaces) a rule; bumps its version when the definition changed.
    pub(super) fn install(
        &self,
        def: RuleDef,
        source: Source,
        v: Validation,
        state: Option<RuleState>,
    ) {
        let mut inner = self.inner.lock();
        let now = self.now();
        if let (Source::Api, Some(existing)) = (&source, inner.rules.get(&def.name))
            && matches!(existing.source, Source::File(_))
        {
            warn!(rule = %def.name, "an API rule has the name of a file rule; the file rule wins");
            inner.shadowed.insert(def.name.clone(), Arc::new(def));
            return;
        }
        let previous = inner.rules.remove(&def.name);
        if let (Source::File(_), Some(p)) = (&source, &previous)
            && p.source == Source::Api
        {
            warn!(rule = %def.name, "a rule file defines the name of an API rule; the file rule wins");
            inner.shadowed.insert(def.name.clone(), p.def.clone());
        }
        let mut st = state
            .or_else(|| previous.as_ref().map(|p| p.state.clone()))
            .unwrap_or_default();
        let hash = def_hash(&def);
        if st.def_hash != hash {
            st.version += 1;
            st.def_hash = hash;
        }
        let mode = self.attach_stream(&def, v.mode);
        let next_eval = previous
            .as_ref()
            .filter(|p| p.def.every == def.every)
            .map_or(grid(now, def.every.ns()), |p| p.next_eval);
        inner.rules.insert(
            def.name.clone(),
            Loaded {
                def: Arc::new(def),
                source,
                state: st,
                tables: v.tables,
                warnings: v.warnings,
                mode,
                plan: v.plan,
                last_error: None,
                last_duration_ms: 0.0,
                next_eval,
                evaluating: false,
                rerun: false,
                touched: Default::default(),
                persisted: None,
            },
        );
    }

    /// Makes rule `def` a reader of the streaming state its mode names, in
    /// place of what it read before; over the state's budget it runs as
    /// batch.
    pub(super) fn attach_stream(&self, def: &RuleDef, mode: Mode) -> Mode {
        let name = def.name.as_str();
        self.hub.detach(name);
        match mode {
            Mode::Streaming(c) => {
                // Points are kept for the window plus one interval.
                let keep = c.shape.window_ns.saturating_add(def.every.ns());
                let on_write =
                    (def.eval == definition::Eval::OnWrite).then(|| c.shape.group_by.clone());
                match self.hub.attach(name, &c.key, keep, on_write) {
                    Some(_) => {
                        self.fills
                            .lock()
                            .entry(c.key.clone())
                            .or_insert_with(|| c.tags.clone());
                        self.fills_queued.notify_one();
                        Mode::Streaming(c)
                    }
                    None => {
                        warn!(rule = %name, "streaming state over its memory budget; the rule runs as batch SQL");
                        Mode::Batch("the streaming state is over its memory budget".into())
                    }
                }
            }
            batch => batch,
        }
    }

    /// Re-reads the rules directory when a file changed. A file that fails
    /// keeps its previous rules and reports its error.
    pub(super) async fn reload_files(self: &Arc<Self>) -> Result<()> {
        let Some(dir) = self.config.rules_dir.clone() else {
            return Ok(());
        };
        let sig = dir_signature(&dir)?;
        if self.inner.lock().file_sig == sig {
            return Ok(());
        }
        let files = self.read_rule_files(&dir)?;
        let mut keep: BTreeSet<String> = BTreeSet::new();
        let mut errors = BTreeMap::new();
        let mut installs = Vec::new();
        for (path, defs) in files {
            let defs = match defs {
                Ok(d) => d,
                Err(e) => {
                    errors.insert(path.clone(), e.to_string());
                    keep.extend(self.rules_of_file(&path));
                    continue;
                }
            };
            let mut validated = Vec::new();
            let mut failed = None;
            for def in defs {
                match validate(self.query()?, &def).await {
                    Ok(v) => validated.push((def, v)),
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            match failed {
                Some(e) => {
                    errors.insert(path.clone(), e);
                    keep.extend(self.rules_of_file(&path));
                }
                None => {
                    for (def, v) in validated {
                        keep.insert(def.name.clone());
                        installs.push((def, path.clone(), v));
                    }
                }
            }
        }
        for (def, path, v) in installs {
            let same = {
                let inner = self.inner.lock();
                inner
                    .rules
                    .get(&def.name)
                    .is_some_and(|l| *l.def == def && l.source == Source::File(path.clone()))
            };
            if !same {
                info!(rule = %def.name, file = %path.display(), "rule loaded from file");
                let name = def.name.clone();
                self.install(def, Source::File(path), v, None);
                self.persist_state(&name).await;
            }
        }
        let removed: Vec<String> = {
            let inner = self.inner.lock();
            inner
                .rules
                .iter()
                .filter(|(n, l)| matches!(l.source, Source::File(_)) && !keep.contains(*n))
                .map(|(n, _)| n.clone())
                .collect()
        };
        for n in removed {
            info!(rule = %n, "rule removed from its file");
            let restored = {
                self.hub.detach(&n);
                let mut inner = self.inner.lock();
                inner.rules.remove(&n);
                inner.shadowed.remove(&n)
            };
            match restored {
                Some(def) => {
                    let v = validate(self.query()?, &def).await.unwrap_or_default();
                    self.install((*def).clone(), Source::Api, v, None);
                    self.persist_state(&n).await;
                }
                None => self.store.delete("state", &n).await?,
            }
        }
        for (p, e) in &errors {
            error!(file = %p.display(), error = %e, "rule file refused; its previous rules stay");
        }
        let mut inner = self.inner.lock();
        inner.file_errors = errors;
        inner.file_sig = sig;
        Ok(())
    }

    /// The rules directory's files, each rule in the configured
    /// [`super::RulesConfig::force_mode`] when there is one.
    fn read_rule_files(&self, dir: &Path) -> Result<FileRules> {
        let mut files = read_dir_rules(dir)?;
        if let Some(mode) = self.config.force_mode {
            for defs in files.iter_mut().filter_map(|(_, d)| d.as_mut().ok()) {
                defs.iter_mut().for_each(|d| d.force_mode(mode));
            }
        }
        Ok(files)
    }

    fn rules_of_file(&self, path: &Path) -> Vec<String> {
        let inner = self.inner.lock();
        inner
            .rules
            .iter()
            .filter(|(_, l)| l.source == Source::File(path.to_path_buf()))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Parses and validates a rule body without installing it.
    pub async fn check_body(&self, body: &[u8]) -> Result<(RuleDef, Validation)> {
        let def = definition::parse_body(body)?;
        if let Some(action) = &def.action {
            self.config
                .action_policy
                .check(action)
                .map_err(|e| Error::invalid(format!("rule {:?}: action: {e}", def.name)))?;
        }
        let v = validate(self.query()?, &def).await?;
        Ok((def, v))
    }

    /// Creates (`replace = false`) or replaces an API rule; effective at
    /// the next scheduler tick and persisted on the object store.
    pub async fn put_rule(
        &self,
        path_name: Option<&str>,
        body: &[u8],
        replace: bool,
    ) -> Result<Value> {
        self.put_rule_timed(path_name, body, replace)
            .await
            .map(|(v, _)| v)
    }

    /// [`RulesEngine::put_rule`], with how long its parts took.
    pub async fn put_rule_timed(
        &self,
        path_name: Option<&str>,
        body: &[u8],
        replace: bool,
    ) -> Result<(Value, PutTimings)> {
        let started = std::time::Instant::now();
        let ms = |t: std::time::Instant| t.elapsed().as_secs_f64() * 1e3;
        let (def, v) = self.check_body(body).await?;
        let mut timings = PutTimings {
            check_ms: ms(started),
            ..PutTimings::default()
        };
        if let Some(n) = path_name
            && n != def.name
        {
            return Err(Error::invalid(format!(
                "the URL names rule {n:?} but the body names {:?}",
                def.name
            )));
        }
        {
            let inner = self.inner.lock();
            match inner.rules.get(&def.name) {
                Some(l) => {
                    if let Source::File(p) = &l.source {
                        return Err(Error::Conflict(format!(
                            "rule {:?} is defined in {}; edit the file instead",
                            def.name,
                            p.display()
                        )));
                    }
                    if !replace {
                        return Err(Error::Conflict(format!(
                            "rule {:?} exists; PUT /api/v1/rules/{} replaces it",
                            def.name, def.name
                        )));
                    }
                }
                None if replace => return Err(Error::NotFound(def.name.clone())),
                None => {}
            }
        }
        let t = std::time::Instant::now();
        self.store.put("defs", &def.name, &def).await?;
        timings.store_ms = ms(t);
        let name = def.name.clone();
        let t = std::time::Instant::now();
        self.install(def, Source::Api, v, None);
        timings.install_ms = ms(t);
        // A new rule's state is what a restart would make from its
        // definition (version 1); a replaced one's version went up.
        if replace {
            let t = std::time::Instant::now();
            self.persist_state(&name).await;
            timings.store_ms += ms(t);
        }
        let rule = self.rule_json(&name).ok_or_else(|| Error::NotFound(name))?;
        Ok((rule, timings))
    }

    pub async fn delete_rule(&self, name: &str) -> Result<()> {
        {
            let inner = self.inner.lock();
            match inner.rules.get(name) {
                None => return Err(Error::NotFound(name.to_string())),
                Some(l) => {
                    if let Source::File(p) = &l.source {
                        return Err(Error::Conflict(format!(
                            "rule {name:?} is defined in {}; remove it from the file instead",
                            p.display()
                        )));
                    }
                }
            }
        }
        self.store.delete("defs", name).await?;
        self.store.delete("state", name).await?;
        self.hub.detach(name);
        self.inner.lock().rules.remove(name);
        Ok(())
    }

    pub fn rule_def(&self, name: &str) -> Option<Arc<RuleDef>> {
        self.inner.lock().rules.get(name).map(|l| l.def.clone())
    }
}

/// `*.toml` files of the rules directory with their modification times.
pub(super) fn dir_signature(dir: &Path) -> Result<Vec<(PathBuf, SystemTime, u64)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::invalid(format!(
            "reading the rules directory {}: {e}",
            dir.display()
        ))
    })?;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml")
            && let Ok(m) = e.metadata()
        {
            out.push((p, m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        }
    }
    out.sort();
    Ok(out)
}

type FileRules = Vec<(PathBuf, Result<Vec<RuleDef>>)>;

/// Each `*.toml` file with its rules, or why it is refused (it does not
/// read or parse, or names a rule an earlier file already defines).
pub(super) fn read_dir_rules(dir: &Path) -> Result<FileRules> {
    let mut out: FileRules = Vec::new();
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (p, _, _) in dir_signature(dir)? {
        let parsed = std::fs::read_to_string(&p)
            .map_err(|e| Error::invalid(format!("reading {}: {e}", p.display())))
            .and_then(|t| definition::parse_toml(&t));
        let parsed = parsed.and_then(|defs| {
            for d in &defs {
                if let Some(other) = names.get(&d.name) {
                    return Err(Error::invalid(format!(
                        "rule {:?} is also defined in {}",
                        d.name,
                        other.display()
                    )));
                }
            }
            for d in &defs {
                names.insert(d.name.clone(), p.clone());
            }
            Ok(defs)
        });
        out.push((p, parsed));
    }
    Ok(out)
}
