//! Hardware evidence for a job: the rule pack's signatures
//! (`rules/examples/*.toml`), evaluated over the job's hosts and time span
//! and bucketed by minute, so each [`HostSignal`] has a start and an end.
//!
//! Each probe is one rule's SQL turned from "the latest window" into "every
//! minute", as if the rule were evaluated at the end of each minute: the
//! rows are folded into minutes first (a `GROUP BY` of `time_bucket`; a
//! counter's increase per minute from `lag`, resets counted as `increase`
//! counts them), the rule's lookback is a window over those minute rows
//! ([`Shape::Minutes`]), and the rule's `HAVING` becomes a filter with the
//! same thresholds. The detector probes run `anomaly_score` over every row
//! of the range searched ([`Shape::Growing`]) and keep the minutes it
//! flags. Minutes a minute or less apart are merged into one signal. A
//! signal's `sql` is the probe for that host alone, over the same time
//! range: rerun it to see the minutes.
//!
//! | probe | table | a minute is flagged when (the rule's thresholds) | signal |
//! |---|---|---|---|
//! | `disk_stuck` | `diskio_hw` | in the minute: `min(util_pct) > 90 AND max(iops) < 100` (the rule asks 10 min before it acts; a minute dates the onset) | disk latency |
//! | `disk_latency_anomaly` | `diskio_hw` | `anomaly_score(latency_ms, time, INTERVAL '1 minute') >= 0.9` over the range searched (the rule: 2 h) | disk latency |
//! | `smart_sectors_rising` | `smart` | `increase(reallocated_sector_ct) + increase(current_pending_sector) >= 3` over 15 min | disk SMART |
//! | `ecc_storm` | `edac` | `increase(ce_count) >= 10` over 10 min | memory ECC |
//! | `mce_uncorrected` | `mce` | an event with `corrected = false` (no rule in the pack: an uncorrected machine check is never noise) | memory ECC |
//! | `thermal_throttling` | `cpu_thermal` | `increase(throttle_count) > 0 AND avg(freq_mhz / base_mhz) < 0.8` over 5 min (`rate > 0`) | thermal |
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

/// The longest `IN` list DataFusion turns into equalities, and so skips
/// row groups and pages with by their statistics and bloom filters; a
/// longer list reads every row group. (ORed lists do not help: the
/// optimizer merges them into one.) A job's hosts are probed in queries
/// of at most this many ([`super::search`]).
pub(crate) const PRUNABLE_IN_LIST: usize = 20;

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

/// How a probe reads its table.
#[derive(Clone, Copy)]
enum Shape {
    /// Each row on its own: `select` defines `value` and `extra`, the
    /// rows where `condition` holds are flagged.
    Row {
        select: &'static str,
        condition: &'static str,
    },
    /// The rule's lookback, in whole minutes: each row of the table is
    /// first folded into its minute (`per_minute`, aggregates over the
    /// minute's rows or empty, plus `inc_<i>` for each of `counters`: the counter's
    /// increase into and through the minute, resets counted as the
    /// `increase` function counts them), then `select` runs over the
    /// window `w` of the last `minutes` minutes (`RANGE BETWEEN minutes-1
    /// minutes PRECEDING AND CURRENT ROW` over the minute rows) and must
    /// define `value` and `extra`. A rule evaluated every minute sees the
    /// same windows; a window over the raw rows would cost a window
    /// function per row (six times the rows at 10 s, and DataFusion's
    /// RANGE frames are slow: 5× the whole probe, measured).
    ///
    /// `prune`, when given, is a `HAVING` over a series' minute rows that
    /// every series with a flagged minute passes (the window's sums are
    /// at most the range's, as increases are never negative; a window's
    /// average is at least its lowest minute's): the window runs over the
    /// series that pass only — on a healthy fleet, few (a third of the
    /// probe's time where the table is sampled every minute, measured).
    Minutes {
        minutes: u32,
        counters: &'static [&'static str],
        per_minute: &'static str,
        select: &'static str,
        condition: &'static str,
        prune: Option<&'static str>,
    },
    /// Every row of the series so far in the range searched. For
    /// `anomaly_score`'s span form: the detector learns each row once
    /// (linear), where a sliding 2-h frame would learn the frame again
    /// for every row. The scan already starts 30 min before the job, so
    /// for jobs under 1.5 h both frames hold the same rows; longer ranges
    /// (the bulk form, a day) learn from more history than the rule.
    /// `select` runs over the window `w`.
    Growing {
        select: &'static str,
        condition: &'static str,
    },
}

/// One rule of the pack, as a per-minute probe.
pub(crate) struct Probe {
    /// The rule it follows (named in each signal's detail).
    pub rule: &'static str,
    pub table: &'static str,
    pub kind: SignalKind,
    /// The device tag (`disk`, `dimm`, `interface`), or a constant.
    device: &'static str,
    shape: Shape,
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
            shape: Shape::Minutes {
                minutes: 1,
                counters: &[],
                per_minute: "max(latency_ms) AS latency_max, min(util_pct) AS util_min, \
                             max(iops) AS iops_max",
                select: "CAST(latency_max AS DOUBLE) AS value, CAST(util_min AS DOUBLE) AS extra, \
                         iops_max",
                condition: "extra > 90 AND iops_max < 100",
                prune: None,
            },
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
            shape: Shape::Growing {
                select: "anomaly_score(latency_ms, time, INTERVAL '1 minute') OVER w AS value, \
                         CAST(latency_ms AS DOUBLE) AS extra",
                condition: "value >= 0.9",
            },
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
            shape: Shape::Minutes {
                minutes: 15,
                counters: &["reallocated_sector_ct", "current_pending_sector"],
                per_minute: "max(reallocated_sector_ct) AS reallocated",
                select: "sum(inc_0) OVER w + sum(inc_1) OVER w AS value, \
                         CAST(reallocated AS DOUBLE) AS extra",
                condition: "value >= 3",
                prune: Some("sum(inc_0) + sum(inc_1) >= 3"),
            },
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
            shape: Shape::Minutes {
                minutes: 10,
                counters: &["ce_count"],
                per_minute: "",
                select: "sum(inc_0) OVER w AS value, CAST(NULL AS DOUBLE) AS extra",
                condition: "value >= 10",
                prune: Some("sum(inc_0) >= 10"),
            },
            describe: |d, v, _| format!("{d}: up to {v:.0} correctable ECC errors per 10 min"),
        },
        Probe {
            rule: "mce_uncorrected",
            table: "mce",
            kind: SignalKind::MemoryEcc,
            device: "kind",
            shape: Shape::Row {
                select: "CASE WHEN corrected = false THEN 1.0 ELSE 0.0 END AS value, \
                         CAST(bank AS DOUBLE) AS extra",
                condition: "value >= 1",
            },
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
            // rate(throttle_count) > 0 is an increase over the 5 minutes;
            // the clock ratio is averaged over their rows.
            shape: Shape::Minutes {
                minutes: 5,
                counters: &["throttle_count"],
                per_minute: "sum(CAST(freq_mhz AS DOUBLE) / base_mhz) AS ratio_sum, \
                             count(freq_mhz) AS ratio_n, max(temp_c) AS temp_max",
                select: "sum(inc_0) OVER w / 300.0 AS value, \
                         sum(ratio_sum) OVER w / sum(ratio_n) OVER w AS freq_ratio, \
                         CAST(temp_max AS DOUBLE) AS extra",
                condition: "value > 0 AND freq_ratio < 0.8",
                prune: Some("sum(inc_0) > 0 AND min(ratio_sum / ratio_n) < 0.8"),
            },
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
            shape: Shape::Growing {
                select: "anomaly_score(temp_c, time, INTERVAL '1 minute') OVER w AS value, \
                         CAST(temp_c AS DOUBLE) AS extra",
                condition: "value >= 0.9",
            },
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
            shape: Shape::Minutes {
                minutes: 10,
                counters: &["carrier_changes", "rx_errors", "tx_errors"],
                per_minute: "",
                select: "sum(inc_0) OVER w AS value, \
                         sum(inc_1) OVER w + sum(inc_2) OVER w AS extra",
                condition: "value >= 2 OR extra >= 100",
                prune: Some("sum(inc_0) >= 2 OR sum(inc_1) + sum(inc_2) >= 100"),
            },
            describe: |d, v, e| {
                format!(
                    "{d} flapping: up to {v:.0} carrier changes and {:.0} errors per 10 min",
                    e.unwrap_or(0.0)
                )
            },
        },
    ]
}

/// `time` bucketed to its minute.
const MINUTE: &str = "time_bucket(INTERVAL '1 minute', time)";

impl Probe {
    /// The probe's SQL over `scope`: one row per flagged minute of a host's
    /// device, `(hostname, device, minute, value, extra)`.
    pub(crate) fn sql(&self, scope: &Scope<'_>) -> String {
        let (device, table, filter) = (self.device, self.table, scope.filter());
        // A series: the host's device, over the table's columns
        // (`series`) and over the minute rows (`partition`).
        let (series, partition) = if device.starts_with('\'') {
            ("hostname".to_owned(), "hostname")
        } else {
            (format!("hostname, {device}"), "hostname, device")
        };
        match self.shape {
            Shape::Row { select, condition } => format!(
                "SELECT hostname, device, {MINUTE} AS minute, \
                 max(value) AS value, max(extra) AS extra \
                 FROM (SELECT hostname, {device} AS device, time, {select} \
                 FROM {table} WHERE {filter}) \
                 WHERE {condition} \
                 GROUP BY hostname, device, {MINUTE} \
                 ORDER BY hostname, device, minute"
            ),
            Shape::Growing { select, condition } => format!(
                "SELECT hostname, device, {MINUTE} AS minute, \
                 max(value) AS value, max(extra) AS extra \
                 FROM (SELECT hostname, {device} AS device, time, {select} \
                 FROM {table} WHERE {filter} \
                 WINDOW w AS (PARTITION BY {series} ORDER BY time \
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) \
                 WHERE {condition} \
                 GROUP BY hostname, device, {MINUTE} \
                 ORDER BY hostname, device, minute"
            ),
            Shape::Minutes {
                minutes,
                counters,
                per_minute,
                select,
                condition,
                prune,
            } => {
                // Each counter's value and the one before it in its series
                // (`lag`, a cheap ROWS window), then their increase per
                // minute.
                let rows = if counters.is_empty() {
                    format!("{table} WHERE {filter}")
                } else {
                    let lags: Vec<String> = counters
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            format!(
                                "CAST({c} AS DOUBLE) AS c_{i}, CAST(lag({c}) OVER s AS DOUBLE) AS p_{i}"
                            )
                        })
                        .collect();
                    format!(
                        "(SELECT *, {} FROM {table} WHERE {filter} \
                         WINDOW s AS (PARTITION BY {series} ORDER BY time))",
                        lags.join(", ")
                    )
                };
                // The minute's aggregates: the probe's own, then each
                // counter's increase.
                let aggregates: Vec<String> = (!per_minute.is_empty())
                    .then(|| per_minute.to_owned())
                    .into_iter()
                    .chain((0..counters.len()).map(|i| {
                        format!(
                            "sum(CASE WHEN p_{i} IS NULL THEN 0.0 WHEN c_{i} >= p_{i} \
                             THEN c_{i} - p_{i} ELSE c_{i} END) AS inc_{i}"
                        )
                    }))
                    .collect();
                let window = if minutes > 1 {
                    format!(
                        " WINDOW w AS (PARTITION BY {partition} ORDER BY minute \
                         RANGE BETWEEN INTERVAL {} PRECEDING AND CURRENT ROW)",
                        lit(&format!("{} minutes", minutes - 1))
                    )
                } else {
                    String::new()
                };
                let minute_rows = format!(
                    "SELECT hostname, {device} AS device, {MINUTE} AS minute, \
                     {} \
                     FROM {rows} \
                     GROUP BY hostname, {device}, {MINUTE}",
                    aggregates.join(", ")
                );
                // The minute rows of the series that pass `prune`.
                let (with, from) = match prune {
                    Some(prune) => (
                        format!(
                            "WITH m AS ({minute_rows}), \
                             s AS (SELECT hostname AS s_host, device AS s_device FROM m \
                             GROUP BY hostname, device HAVING {prune}) "
                        ),
                        "m JOIN s ON hostname = s_host AND device = s_device".to_owned(),
                    ),
                    None => (String::new(), format!("({minute_rows})")),
                };
                format!(
                    "{with}SELECT hostname, device, minute, value, extra \
                     FROM (SELECT hostname, device, minute, {select} \
                     FROM {from}{window}) \
                     WHERE {condition} \
                     ORDER BY hostname, device, minute"
                )
            }
        }
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
