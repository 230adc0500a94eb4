//! Hardware evidence for a job: the rule pack's signatures
//! (`rules/examples/*.toml`), evaluated over the job's hosts and time span
//! and bucketed by minute, so each [`HostSignal`] has a start and an end.
//!
//! Each probe is one rule's SQL turned from "the latest window" into "every
//! row": the rule's functions (`increase`, `rate`, `anomaly_score`) run as
//! window functions over the rule's own lookback (`RANGE BETWEEN <lookback>
//! PRECEDING AND CURRENT ROW`; the detector over the whole range searched,
//! see [`Frame::Growing`]), the rule's `HAVING` becomes a row filter
//! with the same thresholds, and the rows that pass are grouped by host,
//! device and minute (`time_bucket`). Minutes a minute or less apart are
//! merged into one signal. A signal's `sql` is the probe for that host
//! alone, over the same time range: rerun it to see the minutes.
//!
//! | probe | table | row condition (the rule's thresholds) | signal |
//! |---|---|---|---|
//! | `disk_stuck` | `diskio_hw` | over 1 min: `min(util_pct) > 90 AND max(iops) < 100` (the rule asks 10 min before it acts; a minute dates the onset) | disk latency |
//! | `disk_latency_anomaly` | `diskio_hw` | `anomaly_score(latency_ms, time, INTERVAL '1 minute') >= 0.9` over the range searched (the rule: 2 h) | disk latency |
//! | `smart_sectors_rising` | `smart` | `increase(reallocated_sector_ct) + increase(current_pending_sector) >= 3` over 15 min | disk SMART |
//! | `ecc_storm` | `edac` | `increase(ce_count) >= 10` over 10 min | memory ECC |
//! | `mce_uncorrected` | `mce` | an event with `corrected = false` (no rule in the pack: an uncorrected machine check is never noise) | memory ECC |
//! | `thermal_throttling` | `cpu_thermal` | `rate(throttle_count) > 0 AND avg(freq_mhz / base_mhz) < 0.8` over 5 min | thermal |
//! | `cpu_temp_anomaly` | `cpu_thermal` | `anomaly_score(temp_c, time, INTERVAL '1 minute') >= 0.9` over the range searched (the rule: 2 h) | thermal |
//! | `nic_flapping` | `nic` | `increase(carrier_changes) >= 2 OR increase(rx_errors) + increase(tx_errors) >= 100` over 10 min | NIC errors |
//! | `host_down` | `heartbeat` | consecutive heartbeats more than 60 s apart, or `staleness(time, <end>) > 60` | heartbeat gap |
//!
//! The two `anomaly_score` probes are the pack's detector rules; the pack
//! aims them at the same faults as their fixed-threshold siblings (failing
//! disk, thermal), so their minutes join those signals rather than a
//! generic anomaly. The detector needs 150 points (25 min at 10 s) before
//! it scores: the caller looks back 30 min before the job starts.

use std::collections::BTreeMap;

use fleetlake_query::QueryEngine;

use super::rows::Rows;
use crate::model::{HostSignal, SignalKind};
use crate::sql::{lit, lits, ts};

const MINUTE_NS: i64 = 60_000_000_000;

/// The hosts and time range searched.
pub(crate) struct Scope<'a> {
    pub hosts: &'a [String],
    pub start_ns: i64,
    pub end_ns: i64,
}

impl Scope<'_> {
    fn filter(&self) -> String {
        format!(
            "hostname IN ({}) AND time >= {} AND time <= {}",
            lits(self.hosts.iter().map(String::as_str)),
            ts(self.start_ns),
            ts(self.end_ns)
        )
    }
}

/// The rows a probe's window functions see for each row.
#[derive(Clone, Copy)]
enum Frame {
    /// Each row on its own.
    Row,
    /// The rule's lookback: `RANGE BETWEEN <lookback> PRECEDING AND
    /// CURRENT ROW`.
    Range(&'static str),
    /// Every row of the series so far in the range searched. For
    /// `anomaly_score`'s span form: the detector learns each row once
    /// (linear), where a sliding 2-h frame would learn the frame again
    /// for every row. The scan already starts 30 min before the job, so
    /// for jobs under 1.5 h both frames hold the same rows; longer ranges
    /// (the bulk form, a day) learn from more history than the rule.
    Growing,
}

/// One rule of the pack, as a per-minute probe.
pub(crate) struct Probe {
    /// The rule it follows (named in each signal's detail).
    pub rule: &'static str,
    pub table: &'static str,
    pub kind: SignalKind,
    /// The device tag (`disk`, `dimm`, `interface`), or a constant.
    device: &'static str,
    /// The rows each row's functions see.
    frame: Frame,
    /// The per-row select list: must define `value` and `extra` (DOUBLE).
    select: &'static str,
    /// The rule's threshold, on the select list's columns.
    condition: &'static str,
    /// `value` and `extra` (their maxima over the signal) in words.
    describe: fn(device: &str, value: f64, extra: Option<f64>) -> String,
}

/// The probes, in the order they are run.
pub(crate) fn probes() -> Vec<Probe> {
    vec![
        Probe {
            rule: "disk_stuck",
            table: "diskio_hw",
            kind: SignalKind::DiskLatency,
            device: "disk",
            frame: Frame::Range("1 minute"),
            select: "max(latency_ms) OVER w AS value, min(util_pct) OVER w AS extra, \
                     max(iops) OVER w AS iops_max",
            condition: "extra > 90 AND iops_max < 100",
            describe: |d, v, e| {
                format!(
                    "{d} stuck: over {:.0} % busy with under 100 IOPS, latency up to {v:.0} ms",
                    e.unwrap_or(90.0)
                )
            },
        },
        Probe {
            rule: "disk_latency_anomaly",
            table: "diskio_hw",
            kind: SignalKind::DiskLatency,
            device: "disk",
            frame: Frame::Growing,
            select: "anomaly_score(latency_ms, time, INTERVAL '1 minute') OVER w AS value, \
                     CAST(latency_ms AS DOUBLE) AS extra",
            condition: "value >= 0.9",
            describe: |d, v, e| {
                format!(
                    "{d} latency anomalous (anomaly_score {v:.2}), up to {:.0} ms",
                    e.unwrap_or(0.0)
                )
            },
        },
        Probe {
            rule: "smart_sectors_rising",
            table: "smart",
            kind: SignalKind::DiskSmart,
            device: "disk",
            frame: Frame::Range("15 minutes"),
            select: "increase(reallocated_sector_ct, time) OVER w \
                     + increase(current_pending_sector, time) OVER w AS value, \
                     CAST(reallocated_sector_ct AS DOUBLE) AS extra",
            condition: "value >= 3",
            describe: |d, v, e| {
                format!(
                    "{d} SMART: up to {v:.0} sectors reallocated or pending per 15 min \
                     ({:.0} reallocated in all)",
                    e.unwrap_or(0.0)
                )
            },
        },
        Probe {
            rule: "ecc_storm",
            table: "edac",
            kind: SignalKind::MemoryEcc,
            device: "dimm",
            frame: Frame::Range("10 minutes"),
            select: "increase(ce_count, time) OVER w AS value, CAST(NULL AS DOUBLE) AS extra",
            condition: "value >= 10",
            describe: |d, v, _| format!("{d}: up to {v:.0} correctable ECC errors per 10 min"),
        },
        Probe {
            rule: "mce_uncorrected",
            table: "mce",
            kind: SignalKind::MemoryEcc,
            device: "kind",
            frame: Frame::Row,
            select: "CASE WHEN corrected = false THEN 1.0 ELSE 0.0 END AS value, \
                     CAST(bank AS DOUBLE) AS extra",
            condition: "value >= 1",
            describe: |d, _, e| {
                format!(
                    "uncorrected {d} machine check (bank {:.0})",
                    e.unwrap_or(-1.0)
                )
            },
        },
        Probe {
            rule: "thermal_throttling",
            table: "cpu_thermal",
            kind: SignalKind::Thermal,
            device: "'cpu'",
            frame: Frame::Range("5 minutes"),
            select: "rate(throttle_count, time) OVER w AS value, \
                     avg(CAST(freq_mhz AS DOUBLE) / base_mhz) OVER w AS freq_ratio, \
                     CAST(temp_c AS DOUBLE) AS extra",
            condition: "value > 0 AND freq_ratio < 0.8",
            describe: |_, v, e| {
                format!(
                    "throttling ({v:.1} throttle events/s, clock under 80 % of base), up to {:.0} °C",
                    e.unwrap_or(0.0)
                )
            },
        },
        Probe {
            rule: "cpu_temp_anomaly",
            table: "cpu_thermal",
            kind: SignalKind::Thermal,
            device: "'cpu'",
            frame: Frame::Growing,
            select: "anomaly_score(temp_c, time, INTERVAL '1 minute') OVER w AS value, \
                     CAST(temp_c AS DOUBLE) AS extra",
            condition: "value >= 0.9",
            describe: |_, v, e| {
                format!(
                    "CPU temperature anomalous (anomaly_score {v:.2}), up to {:.0} °C",
                    e.unwrap_or(0.0)
                )
            },
        },
        Probe {
            rule: "nic_flapping",
            table: "nic",
            kind: SignalKind::NicErrors,
            device: "interface",
            frame: Frame::Range("10 minutes"),
            select: "CAST(increase(carrier_changes, time) OVER w AS DOUBLE) AS value, \
                     increase(rx_errors, time) OVER w + increase(tx_errors, time) OVER w AS extra",
            condition: "value >= 2 OR extra >= 100",
            describe: |d, v, e| {
                format!(
                    "{d} flapping: up to {v:.0} carrier changes and {:.0} errors per 10 min",
                    e.unwrap_or(0.0)
                )
            },
        },
    ]
}

impl Probe {
    /// The probe's SQL over `scope`.
    pub(crate) fn sql(&self, scope: &Scope<'_>) -> String {
        let partition = if self.device.starts_with('\'') {
            "hostname".to_owned()
        } else {
            format!("hostname, {}", self.device)
        };
        let window = match self.frame {
            Frame::Range(l) => format!(
                " WINDOW w AS (PARTITION BY {partition} ORDER BY time \
                 RANGE BETWEEN INTERVAL {} PRECEDING AND CURRENT ROW)",
                lit(l)
            ),
            Frame::Growing => format!(
                " WINDOW w AS (PARTITION BY {partition} ORDER BY time \
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
            ),
            Frame::Row => String::new(),
        };
        format!(
            "SELECT hostname, device, time_bucket(INTERVAL '1 minute', time) AS minute, \
             max(value) AS value, max(extra) AS extra \
             FROM (SELECT hostname, {device} AS device, time, {select} \
             FROM {table} WHERE {filter}{window}) \
             WHERE {condition} \
             GROUP BY hostname, device, time_bucket(INTERVAL '1 minute', time) \
             ORDER BY hostname, device, minute",
            device = self.device,
            select = self.select,
            table = self.table,
            filter = scope.filter(),
            condition = self.condition,
        )
    }

    /// Runs the probe and merges its minutes into signals.
    pub(crate) async fn run(
        &self,
        engine: &QueryEngine,
        db: &str,
        scope: &Scope<'_>,
    ) -> fleetlake_query::Result<Vec<HostSignal>> {
        let (_, batches) = engine.query_collect(db, &self.sql(scope)).await?;
        // (host, device) → minutes with their value and extra.
        let mut minutes: BTreeMap<(String, String), Vec<Minute>> = BTreeMap::new();
        for b in &batches {
            let rows = Rows::new(b);
            let (host, device, minute, value, extra) = (
                rows.strings("hostname"),
                rows.strings("device"),
                rows.ints("minute"),
                rows.floats("value"),
                rows.floats("extra"),
            );
            for i in 0..rows.len() {
                let (Some(h), Some(m), Some(v)) = (host.get(i), minute.get(i), value.get(i)) else {
                    continue;
                };
                let d = device.get(i).unwrap_or("");
                minutes
                    .entry((h.to_owned(), d.to_owned()))
                    .or_default()
                    .push((m, v, extra.get(i)));
            }
        }
        let mut out = Vec::new();
        for ((host, device), mut ms) in minutes {
            ms.sort_by_key(|m| m.0);
            let one = [host.clone()];
            let sql = self.sql(&Scope {
                hosts: &one,
                start_ns: scope.start_ns,
                end_ns: scope.end_ns,
            });
            for run in runs(&ms) {
                let value = run.iter().map(|m| m.1).fold(f64::MIN, f64::max);
                let extra = run.iter().filter_map(|m| m.2).reduce(f64::max);
                let start_ns = run[0].0;
                let end_ns = run[run.len() - 1].0 + MINUTE_NS;
                out.push(HostSignal {
                    hostname: host.clone(),
                    kind: self.kind.clone(),
                    start_ns,
                    end_ns,
                    detail: format!(
                        "{}: {} for {} min",
                        self.rule,
                        (self.describe)(&device, value, extra),
                        (end_ns - start_ns) / MINUTE_NS
                    ),
                    sql: sql.clone(),
                });
            }
        }
        Ok(out)
    }
}

/// A flagged minute: its start, the maxima of `value` and `extra`.
type Minute = (i64, f64, Option<f64>);

/// Splits sorted minutes into runs, bridging a one-minute hole (a rule
/// evaluated every minute keeps firing through one quiet sample).
fn runs<T>(minutes: &[(i64, f64, T)]) -> Vec<&[(i64, f64, T)]> {
    let mut out = Vec::new();
    let mut from = 0;
    for i in 1..=minutes.len() {
        if i == minutes.len() || minutes[i].0 - minutes[i - 1].0 > 2 * MINUTE_NS {
            if from < i {
                out.push(&minutes[from..i]);
            }
            from = i;
        }
    }
    out
}

/// `host_down`: heartbeats more than 60 s apart inside the range, and
/// hosts silent for over 60 s at its end (`staleness`, as the rule).
pub(crate) fn heartbeat_sql(scope: &Scope<'_>) -> String {
    let filter = scope.filter();
    let end = ts(scope.end_ns);
    format!(
        "SELECT hostname, prev AS silent_from_ns, time_ns AS silent_until_ns FROM (\
         SELECT hostname, CAST(time AS BIGINT) AS time_ns, \
         CAST(lag(time) OVER (PARTITION BY hostname ORDER BY time) AS BIGINT) AS prev \
         FROM heartbeat WHERE {filter}) \
         WHERE time_ns - prev > 60000000000 \
         UNION ALL \
         SELECT hostname, CAST(max(time) AS BIGINT) AS silent_from_ns, \
         CAST({end} AS BIGINT) AS silent_until_ns \
         FROM heartbeat WHERE {filter} \
         GROUP BY hostname HAVING staleness(time, {end}) > 60 \
         ORDER BY hostname, silent_from_ns"
    )
}

pub(crate) async fn heartbeat_gaps(
    engine: &QueryEngine,
    db: &str,
    scope: &Scope<'_>,
) -> fleetlake_query::Result<Vec<HostSignal>> {
    let (_, batches) = engine.query_collect(db, &heartbeat_sql(scope)).await?;
    let mut out = Vec::new();
    for b in &batches {
        let rows = Rows::new(b);
        let (host, from, until) = (
            rows.strings("hostname"),
            rows.ints("silent_from_ns"),
            rows.ints("silent_until_ns"),
        );
        for i in 0..rows.len() {
            let (Some(h), Some(f), Some(u)) = (host.get(i), from.get(i), until.get(i)) else {
                continue;
            };
            let one = [h.to_owned()];
            out.push(HostSignal {
                hostname: h.to_owned(),
                kind: SignalKind::HeartbeatGap,
                start_ns: f,
                end_ns: u,
                detail: format!(
                    "host_down: no heartbeat for {} s{}",
                    (u - f) / 1_000_000_000,
                    if u == scope.end_ns {
                        " (still silent at the end of the range searched)"
                    } else {
                        ""
                    }
                ),
                sql: heartbeat_sql(&Scope {
                    hosts: &one,
                    start_ns: scope.start_ns,
                    end_ns: scope.end_ns,
                }),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_bridge_one_quiet_minute() {
        let m = |i: i64| (i * MINUTE_NS, 1.0, ());
        let ms = [m(0), m(1), m(3), m(7), m(8)];
        let r = runs(&ms);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].len(), 3);
        assert_eq!(r[1][0].0, 7 * MINUTE_NS);
        assert!(runs::<()>(&[]).is_empty());
    }

    #[test]
    fn probe_sql_quotes_hosts_and_bounds_time() {
        let hosts = vec!["host_1".to_owned(), "h'x".to_owned()];
        let scope = Scope {
            hosts: &hosts,
            start_ns: 0,
            end_ns: 60_000_000_000,
        };
        for p in probes() {
            let sql = p.sql(&scope);
            assert!(sql.contains("hostname IN ('host_1', 'h''x')"), "{sql}");
            assert!(
                sql.contains("time <= TIMESTAMP '1970-01-01T00:01:00Z'"),
                "{sql}"
            );
            assert!(sql.contains(p.table));
        }
        assert!(heartbeat_sql(&scope).contains("staleness(time, TIMESTAMP"));
    }
}
