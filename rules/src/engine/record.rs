//! Record rules: their rows written back as line protocol into the table
//! named by `into`, at the evaluation time, through the normal write path.
//!
//! # Invariants
//! - One line per row with a finite `value`; rows without one are left
//!   out (line protocol has no null or NaN field to carry them).
//! - Labels become tags (empty ones and `time` left out), `value` the only
//!   field, and the evaluation time the timestamp; a backtest counts the
//!   same lines as the records it would have written.

use fleetlake_ingest::Precision;
use fleetlake_ingest::lp_writer::{push_measurement, push_tag};

use super::RulesEngine;
use crate::definition::RuleDef;
use crate::error::{Error, Result};
use crate::state::Sample;

/// Line protocol for a record rule's rows: labels as tags, `value` as the field.
pub fn record_lines(def: &RuleDef, samples: &[Sample], at: i64) -> String {
    let mut body = String::new();
    let table = def.into.as_deref().unwrap_or_default();
    for s in samples {
        let Some(v) = s.value.filter(|v| v.is_finite()) else {
            continue;
        };
        push_measurement(&mut body, table);
        for (k, val) in &s.labels {
            if k == "time" || val.is_empty() {
                continue;
            }
            push_tag(&mut body, k, val);
        }
        body.push_str(&format!(" value={v:?} {at}\n"));
    }
    body
}

impl RulesEngine {
    /// Writes a record rule's rows.
    ///
    /// # Errors
    /// The write path's error, or [`Error::Invalid`] when it rejected rows.
    pub(super) async fn write_records(
        &self,
        def: &RuleDef,
        samples: &[Sample],
        at: i64,
    ) -> Result<()> {
        let body = record_lines(def, samples, at);
        if body.is_empty() {
            return Ok(());
        }
        let out = self
            .ingester
            .write_lp(&def.db, body, Precision::Nanosecond, true)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(r) = out.rejected.first() {
            return Err(Error::invalid(format!(
                "{} rows rejected, e.g. {:?}",
                out.rejected.len(),
                r
            )));
        }
        Ok(())
    }
}
