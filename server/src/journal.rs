//! The diagnosis journal's background task
//! ([`fleetlake_diagnosis::journal`]): every `interval`, each database
//! with a `job_runs` table has its newly ended jobs diagnosed and the
//! results written back as rows, so the fleet view answers from them.
//!
//! A pass that fails (a query, the write) is logged and retried at the
//! next tick from the same watermark: nothing is lost, since the
//! watermark is the newest pass stored. More jobs in a range than a bulk
//! diagnosis reads at once halves the range until it fits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetlake_diagnosis::fetch::{RangeOptions, load_range};
use fleetlake_diagnosis::journal::{JournalOptions, next_range, pass_lines};
use fleetlake_diagnosis::{Config, Error, bulk::diagnose_all};
use fleetlake_ingest::Precision;
use fleetlake_query::QueryEngine;
use fleetlake_rules::clock::Clock;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The journal of every database, one pass each per tick.
pub struct DiagnosisJournal {
    pub engine: Arc<QueryEngine>,
    pub clock: Arc<dyn Clock>,
    pub options: JournalOptions,
    pub interval: Duration,
}

/// What one pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub db: String,
    pub from_ns: i64,
    pub to_ns: i64,
    pub jobs: usize,
}

impl DiagnosisJournal {
    /// Runs passes every `interval` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for db in self.engine.ingester().databases() {
                // A journal behind (a restart, a backfill) catches up one
                // span per pass without waiting for the next tick.
                loop {
                    if shutdown.is_cancelled() {
                        return;
                    }
                    match self.pass(&db, &shutdown).await {
                        Ok(Some(p)) => info!(
                            db = p.db,
                            from = %fleetlake_time::rfc3339(p.from_ns),
                            to = %fleetlake_time::rfc3339(p.to_ns),
                            jobs = p.jobs,
                            "diagnosis journal pass"
                        ),
                        Ok(None) => break,
                        Err(e) => {
                            warn!(db, error = %e, "diagnosis journal pass failed; retried next tick");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// One pass over `db`'s next range; `None` when there is nothing new,
    /// or when `shutdown` comes before the pass is written (reading and
    /// diagnosing are dropped; the write, once started, finishes).
    ///
    /// # Errors
    /// A failed read, diagnosis task or write.
    pub async fn pass(
        &self,
        db: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<Pass>, String> {
        let Some((lo, mut hi)) = next_range(&self.engine, db, self.clock.now_ns(), &self.options)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let started = Instant::now();
        let diagnosed = async {
            let inputs = loop {
                match load_range(&self.engine, db, lo, hi, &RangeOptions::default()).await {
                    Err(Error::TooManyJobs { .. }) if hi > lo => hi = lo + (hi - lo) / 2,
                    other => break other.map_err(|e| e.to_string())?,
                }
            };
            let jobs = inputs.len();
            let reports =
                tokio::task::spawn_blocking(move || diagnose_all(&inputs, &Config::default()))
                    .await
                    .map_err(|e| format!("the diagnosis task failed: {e}"))?;
            Ok::<_, String>((jobs, reports, hi))
        };
        let (jobs, reports, hi) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            r = diagnosed => r?,
        };
        let body = pass_lines(&reports, lo, hi);
        self.engine
            .ingester()
            .write_lp(db, body, Precision::Nanosecond, false)
            .await
            .map_err(|e| format!("writing the pass: {e}"))?;
        tracing::debug!(
            db,
            jobs,
            ms = started.elapsed().as_millis() as u64,
            "journal pass took"
        );
        Ok(Some(Pass {
            db: db.to_owned(),
            from_ns: lo,
            to_ns: hi,
            jobs,
        }))
    }
}
