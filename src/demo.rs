//! `fleetlake serve --demo`: the server on its embedded default, plus a
//! simulated fleet streaming in live and the example rule pack deciding in
//! dry_run, so the whole loop — telemetry in, an anomaly, an alert, a
//! guarded action recorded as a dry-run decision — shows within a minute.
//!
//! The fleet is `gen fleet`'s ([`fleetlake_sim::Fleet`]), its time the wall
//! clock: at start-up the last `--demo-backfill` is written, then each
//! 10-s epoch once it has passed (so no row is from the future), through
//! the write path every client uses (in process: [`Ingester::write_lp`],
//! which feeds the streaming rules as a `/write` does). The rules are the
//! pack compiled into the binary ([`fleetlake_rules::pack`]), written to
//! `<data-dir>/demo-rules/` and loaded from there by the rules engine's own
//! loader, every rule forced to dry_run ([`RulesConfig::force_mode`]).
//!
//! # Invariants
//! - Five faults, one of each classic kind, start 25 to 10 minutes before
//!   start-up (inside the backfill, and each lasts at least 30 minutes, so
//!   all are under way when the server starts answering); five more start
//!   5 minutes to 2 hours after it.
//! - The demo writes only database [`DEMO_DB`], the one the pack's rules,
//!   the portal and Grafana read by default.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use fleetlake_ingest::{Ingester, Precision};
use fleetlake_rules::definition::Mode;
use fleetlake_rules::{Clock, RulesConfig, RulesEngine};
use fleetlake_sim::time::{DAY_NS, MINUTE_NS, SECOND_NS};
use fleetlake_sim::{FaultKind, Fleet, FleetOptions, SimConfig};
use fleetlake_time::{format_duration, parse_duration};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The database the simulated fleet is written to.
pub const DEMO_DB: &str = "fleet";
/// The data directory of `--demo` when `--data-dir` is not given: the
/// simulated hosts and their dry-run decisions stay out of a real store.
pub const DEMO_DATA_DIR: &str = "./fleetlake-demo";
/// Where the example pack is written, under the data directory.
const RULES_SUBDIR: &str = "demo-rules";
/// The pack's rules assume 10-s heartbeats.
const INTERVAL_NS: i64 = 10 * SECOND_NS;
/// How long the simulated fleet runs: a year of wall-clock time.
const RANGE_NS: i64 = 366 * DAY_NS;
/// Lines per write while backfilling.
const BATCH_LINES: usize = 20_000;
/// The shortest backfill: the early faults start within it.
const MIN_BACKFILL: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Demo mode: a simulated fleet (`fleetlake gen fleet`, with faults)
    /// streams into database `fleet` as the clock advances, after a
    /// backfill of its recent past, and the example rule pack runs with
    /// every rule in dry_run (decisions recorded in system.actions, nothing
    /// carried out) — unless --rules-dir names other rules, which then run
    /// as written. The data directory defaults to ./fleetlake-demo.
    #[arg(long, env = "FLEETLAKE_DEMO")]
    pub demo: bool,

    /// With --demo: simulated hosts.
    #[arg(long, env = "FLEETLAKE_DEMO_HOSTS", default_value_t = 200)]
    pub demo_hosts: u64,

    /// With --demo: how much recent history is written at start-up (the
    /// detectors learn from it); at least 30m.
    #[arg(long, env = "FLEETLAKE_DEMO_BACKFILL", default_value = "1h", value_parser = parse_duration)]
    pub demo_backfill: Duration,

    /// With --demo: the simulator's seed; another seed puts the faults on
    /// other hosts. The hosts' tags (SKU, disks) follow the seed too: give
    /// a new seed a new data directory, or a host's old and new series mix.
    #[arg(long, env = "FLEETLAKE_DEMO_SEED", default_value_t = 1)]
    pub demo_seed: u64,
}

/// Where the demo's rules came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RulesFrom {
    /// The example pack, written to this directory, forced to dry_run.
    Pack(std::path::PathBuf),
    /// The user's `--rules-dir`, as written.
    User,
}

/// A planned demo: the simulated fleet, positioned at the start of its
/// backfill.
pub struct Demo {
    fleet: Fleet,
    clock: Arc<dyn Clock>,
    hosts: u64,
    seed: u64,
    faults: u32,
    backfill: Duration,
    rules: RulesFrom,
}

impl Demo {
    /// Plans the fleet around the clock's present and sets up the rules:
    /// without a rules directory, the example pack is written under
    /// `data_dir` and `rules` is pointed at it with every rule in dry_run.
    ///
    /// # Errors
    /// A backfill under 30 minutes, a fleet the simulator refuses (too few
    /// hosts for its faults), the pack's directory not writable.
    pub fn plan(args: &DemoArgs, data_dir: &Path, rules: &mut RulesConfig) -> anyhow::Result<Self> {
        if args.demo_backfill < MIN_BACKFILL {
            bail!(
                "--demo-backfill {} is too short: at least {} (the first faults start in it)",
                format_duration(args.demo_backfill),
                format_duration(MIN_BACKFILL)
            );
        }
        let clock = rules.clock.clone();
        let now = clock.now_ns();
        let seed = args.demo_seed;
        let backfill_ns =
            i64::try_from(args.demo_backfill.as_nanos()).context("--demo-backfill too long")?;
        let start = now - now.rem_euclid(INTERVAL_NS) - backfill_ns;
        let config = SimConfig::new(args.demo_hosts, start, start + RANGE_NS, INTERVAL_NS, seed)
            .context("--demo-hosts")?;
        // Fault i is of kind ALL[i % 5]: the first five are one of each.
        let kinds = FaultKind::ALL.len();
        let early = (now - 25 * MINUTE_NS, now - 10 * MINUTE_NS);
        let later = (now + 5 * MINUTE_NS, now + 120 * MINUTE_NS);
        let fault_starts: Vec<(i64, i64)> = std::iter::repeat_n(early, kinds)
            .chain(std::iter::repeat_n(later, kinds))
            .collect();
        let options = FleetOptions {
            faults: fault_starts.len() as u32,
            fault_kinds: FaultKind::ALL.to_vec(),
            fault_starts,
        };
        let fleet = Fleet::new(&config, &options).context("planning the simulated fleet")?;
        let from = match &rules.rules_dir {
            Some(_) => RulesFrom::User,
            None => {
                let dir = data_dir.join(RULES_SUBDIR);
                fleetlake_rules::pack::write_example_pack(&dir).with_context(|| {
                    format!("writing the example rule pack to {}", dir.display())
                })?;
                rules.rules_dir = Some(dir.clone());
                rules.force_mode = Some(Mode::DryRun);
                RulesFrom::Pack(dir)
            }
        };
        Ok(Self {
            fleet,
            clock,
            hosts: args.demo_hosts,
            seed,
            faults: options.faults,
            backfill: args.demo_backfill,
            rules: from,
        })
    }

    /// Writes the epochs that have passed: the backfill at start-up.
    ///
    /// # Errors
    /// A write the write path refuses for good (not back-pressure).
    pub async fn backfill(&mut self, ingester: &Arc<Ingester>) -> anyhow::Result<()> {
        info!(
            hosts = self.hosts,
            seed = self.seed,
            backfill = %format_duration(self.backfill),
            db = DEMO_DB,
            "demo: writing the simulated fleet's recent past"
        );
        let started = Instant::now();
        let rows = self.write_due(ingester).await?;
        info!(
            rows,
            seconds = started.elapsed().as_secs_f64(),
            "demo: backfill written"
        );
        Ok(())
    }

    /// The line telling the user where to look, once the server answers.
    pub fn banner(&self, url: &str) -> String {
        let rules = match &self.rules {
            RulesFrom::Pack(_) => "the example rule pack runs in dry_run",
            RulesFrom::User => "the --rules-dir rules run as written",
        };
        format!(
            "fleetlake demo: {} simulated hosts stream into database \"{DEMO_DB}\" ({} backfilled, {} faults, seed {}); {rules}: open {url}/#/ops for alerts and dry-run decisions, {url}/#/fleet for the hosts",
            self.hosts,
            format_duration(self.backfill),
            self.faults,
            self.seed,
        )
    }

    /// Logs which rules the demo runs, and warns of any that would act.
    pub fn log_rules(&self, rules: &RulesEngine) {
        let listing = rules.rules_json();
        let mut names = Vec::new();
        for r in listing["rules"].as_array().into_iter().flatten() {
            let name = r["name"].as_str().unwrap_or_default();
            let kind = r["definition"]["kind"].as_str().unwrap_or_default();
            let mode = r["definition"]["safety"]["mode"]
                .as_str()
                .unwrap_or(if kind == "alert" { "auto" } else { "dry_run" });
            if kind != "record" && !matches!(mode, "dry_run" | "shadow") {
                warn!(
                    rule = name,
                    mode, "demo: this rule acts on the simulated hosts"
                );
            }
            names.push(format!("{name} ({kind}, {mode})"));
        }
        match &self.rules {
            RulesFrom::Pack(dir) => info!(
                dir = %dir.display(),
                rules = %names.join(", "),
                "demo: the example rule pack, every rule forced to dry_run (rewritten at each start)"
            ),
            RulesFrom::User => info!(
                rules = %names.join(", "),
                "demo: the rules of --rules-dir (and the API), as written"
            ),
        }
    }

    /// Writes each epoch once it has passed, until `shutdown`.
    pub async fn run(mut self, ingester: Arc<Ingester>, shutdown: CancellationToken) {
        loop {
            let Some(next) = self.fleet.next_epoch_ns() else {
                info!("demo: the simulated fleet's year is over; nothing more is written");
                return;
            };
            let wait = (next + INTERVAL_NS - self.clock.now_ns()).max(0);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_nanos(wait as u64)) => {}
            }
            if let Err(e) = self.write_due(&ingester).await {
                // The next epoch tries again (a full disk may clear).
                error!(error = %format!("{e:#}"), "demo: writing the simulated fleet failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    }

    /// Writes every epoch whose interval has ended by now; returns the rows.
    async fn write_due(&mut self, ingester: &Arc<Ingester>) -> anyhow::Result<u64> {
        // Epoch t holds the jobs' rows of [t, t + interval): it is written
        // once that interval has passed.
        let before = self.clock.now_ns() - INTERVAL_NS + 1;
        let mut rows = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = self.fleet.next_chunk_before(&mut buf, BATCH_LINES, before);
            if n == 0 {
                return Ok(rows);
            }
            let body = String::from_utf8(std::mem::take(&mut buf))
                .context("the simulator wrote invalid UTF-8")?;
            rows += write(ingester, body).await? as u64;
        }
    }
}

/// One write, retried while the write buffer is full (back-pressure).
async fn write(ingester: &Arc<Ingester>, body: String) -> anyhow::Result<usize> {
    loop {
        match ingester
            .write_lp(DEMO_DB, body.clone(), Precision::Nanosecond, true)
            .await
        {
            Ok(outcome) => {
                if let Some(first) = outcome.rejected.first() {
                    // A table of the same name written before with other
                    // types: the rest of the fleet still goes in.
                    warn!(
                        rejected = outcome.rejected_total,
                        line = %first.text,
                        reason = %first.reason,
                        "demo: lines refused by the write path"
                    );
                }
                return Ok(outcome.rows);
            }
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Err(e).context("writing the simulated fleet"),
        }
    }
}
