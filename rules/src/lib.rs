//! fleetlake rules: SQL rules that run next to the data — alerts with
//! Prometheus semantics, record rules, and self-heal actions under safety
//! limits — plus backtests over history.
//!
//! Components:
//! - [`definition`]: the TOML file / JSON API format and its static checks;
//!   [`validate`] plans a rule's SQL against the catalog.
//! - [`state`]: the alert state machine (pure; the caller gives the time).
//! - [`safety`]: the safety decisions (pure; the caller gives the history).
//! - [`engine`]: the registry (files + API), the scheduler, persistence on
//!   the object store under `_rules/`, actions, `system.alerts`,
//!   `system.actions`, `system.rules`.
//! - [`stream`]: streaming evaluation — rules of the dominant shape answered
//!   from state the write path feeds, instead of a query per evaluation.
//! - [`backtest`]: the same evaluation over past times, without side effects.
//! - [`pack`]: the example rule pack (`rules/examples/`), compiled in.
//! - [`clock`]: the engine's time source, and a manual clock for tests.
//!
//! # Invariants
//! - An evaluation at time `t` runs the SQL with `now()` = `t`; live
//!   evaluation times are multiples of the rule's `every`, so a backtest
//!   with `step = every` evaluates at the same instants.
//! - Alert state and the action log are written to the object store after
//!   every evaluation that changed them: a restart neither resets `for`
//!   timers nor re-runs actions.
//!
//! ```
//! use fleetlake_rules::definition::parse_toml;
//! let rules = parse_toml(r#"
//! [[rule]]
//! name = "hot"
//! kind = "alert"
//! every = "30s"
//! for = "2m"
//! sql = "SELECT hostname, max(temp) AS value FROM thermal WHERE time > now() - INTERVAL '1 minute' GROUP BY hostname HAVING max(temp) > 90"
//! "#).unwrap();
//! assert_eq!(rules[0].for_.0, std::time::Duration::from_secs(120));
//! ```

pub mod actions;
pub mod attach;
pub mod background;
pub mod backtest;
pub mod clock;
pub mod core;
pub mod definition;
pub mod duration;
pub mod engine;
pub mod error;
pub mod eval;
pub mod pack;
pub mod persist;
pub mod policy;
pub mod safety;
pub mod state;
pub mod stream;
pub mod system;
pub mod template;
pub mod validate;

pub use engine::{Clock, RulesConfig, RulesEngine, SystemClock};
pub use error::{Error, Result};
