//! The fifteen TSBS cpu queries of `shared/tsbs-devops.md`: their shapes,
//! seeded parameters, their text for fleetlake SQL (which DuckDB also runs
//! unchanged over a view), InfluxQL and MetricsQL, and each answer
//! recomputed from the generator alone.
//!
//! Windows follow TSBS: a window of length W starts uniformly (whole
//! seconds) in [start, end − W); a window at least as long as the data
//! covers all of it (the default benchmark has 3 hours, shorter than the
//! 8- and 12-hour windows). Hosts are drawn without repetition.
//!
//! Buckets are aligned to the Unix epoch (`time_bucket`/`date_bin` with no
//! origin, InfluxQL `GROUP BY time(..)`), so a window that starts inside a
//! minute has a partial first and last bucket, as in TSBS.

use fleetlake_sim::rng::{SplitMix64, stream};
use fleetlake_sim::time::{HOUR_NS, MINUTE_NS};
use fleetlake_sim::{CpuHost, SimConfig, tsbs::CPU_FIELDS};
use fleetlake_time::rfc3339;

use crate::answer::{Cell, Columns, Kind, Table};

/// The query types, in the order of the spec's table.
pub const NAMES: [&str; 15] = [
    "single-groupby-1-1-1",
    "single-groupby-1-1-12",
    "single-groupby-1-8-1",
    "single-groupby-5-1-1",
    "single-groupby-5-1-12",
    "single-groupby-5-8-1",
    "cpu-max-all-1",
    "cpu-max-all-8",
    "double-groupby-1",
    "double-groupby-5",
    "double-groupby-all",
    "high-cpu-1",
    "high-cpu-all",
    "lastpoint",
    "groupby-orderby-limit",
];

/// What a query type computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// max of the first `metrics` fields over `hosts` hosts, per bucket,
    /// over a window (single-groupby-*, cpu-max-all-*).
    MaxPerBucket {
        metrics: usize,
        hosts: u64,
        window_ns: i64,
        bucket_ns: i64,
    },
    /// avg of the first `metrics` fields per hour and host, all hosts, 12 h.
    AvgPerHourHost { metrics: usize },
    /// Every row with usage_user > 90 in 12 h; one host, or all (`None`).
    HighCpu { hosts: Option<u64> },
    /// The latest row of every host.
    Lastpoint,
    /// max(usage_user) per minute, all hosts, the last 5 minutes before a
    /// random end.
    GroupbyOrderbyLimit,
}

impl Shape {
    pub fn of(name: &str) -> Option<Shape> {
        let groupby = |metrics, hosts, hours| Shape::MaxPerBucket {
            metrics,
            hosts,
            window_ns: hours * HOUR_NS,
            bucket_ns: MINUTE_NS,
        };
        let max_all = |hosts| Shape::MaxPerBucket {
            metrics: 10,
            hosts,
            window_ns: 8 * HOUR_NS,
            bucket_ns: HOUR_NS,
        };
        Some(match name {
            "single-groupby-1-1-1" => groupby(1, 1, 1),
            "single-groupby-1-1-12" => groupby(1, 1, 12),
            "single-groupby-1-8-1" => groupby(1, 8, 1),
            "single-groupby-5-1-1" => groupby(5, 1, 1),
            "single-groupby-5-1-12" => groupby(5, 1, 12),
            "single-groupby-5-8-1" => groupby(5, 8, 1),
            "cpu-max-all-1" => max_all(1),
            "cpu-max-all-8" => max_all(8),
            "double-groupby-1" => Shape::AvgPerHourHost { metrics: 1 },
            "double-groupby-5" => Shape::AvgPerHourHost { metrics: 5 },
            "double-groupby-all" => Shape::AvgPerHourHost { metrics: 10 },
            "high-cpu-1" => Shape::HighCpu { hosts: Some(1) },
            "high-cpu-all" => Shape::HighCpu { hosts: None },
            "lastpoint" => Shape::Lastpoint,
            "groupby-orderby-limit" => Shape::GroupbyOrderbyLimit,
            _ => return None,
        })
    }

    /// The bucket width, for the shapes that have buckets.
    pub fn bucket_ns(&self) -> Option<i64> {
        match *self {
            Shape::MaxPerBucket { bucket_ns, .. } => Some(bucket_ns),
            Shape::AvgPerHourHost { .. } => Some(HOUR_NS),
            Shape::GroupbyOrderbyLimit => Some(MINUTE_NS),
            Shape::HighCpu { .. } | Shape::Lastpoint => None,
        }
    }

    /// Name of the bucket column.
    fn bucket_col(&self) -> &'static str {
        if self.bucket_ns() == Some(HOUR_NS) {
            "hour"
        } else {
            "minute"
        }
    }
}

/// One run's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub name: &'static str,
    pub shape: Shape,
    /// Selected hosts (ids); empty means all.
    pub hosts: Vec<u64>,
    /// Time range [t0, t1); for lastpoint the whole data, for
    /// groupby-orderby-limit [data start, random end).
    pub t0: i64,
    pub t1: i64,
}

/// `runs` seeded parameter draws of query type `name` over `data`. The same
/// seed and data give the same draws; each type has its own stream.
///
/// # Errors
///
/// An unknown name (the message lists the known ones).
pub fn draw(name: &str, data: &SimConfig, seed: u64, runs: usize) -> anyhow::Result<Vec<Params>> {
    let idx = NAMES.iter().position(|n| *n == name).ok_or_else(|| {
        anyhow::anyhow!("unknown TSBS query {name:?}; known: {}", NAMES.join(", "))
    })?;
    let name = NAMES[idx];
    let shape = Shape::of(name).expect("every name has a shape");
    let mut rng = stream(seed, 0x7473_6273_7175_6572, idx as u64);
    Ok((0..runs)
        .map(|_| draw_one(name, shape, data, &mut rng))
        .collect())
}

fn draw_one(name: &'static str, shape: Shape, data: &SimConfig, rng: &mut SplitMix64) -> Params {
    let end = data_end(data);
    let (hosts, (t0, t1)) = match shape {
        Shape::MaxPerBucket {
            hosts, window_ns, ..
        } => (
            pick_hosts(rng, data.hosts, hosts),
            window(rng, data, window_ns),
        ),
        Shape::AvgPerHourHost { .. } => (Vec::new(), window(rng, data, 12 * HOUR_NS)),
        Shape::HighCpu { hosts } => (
            hosts.map_or(Vec::new(), |n| pick_hosts(rng, data.hosts, n)),
            window(rng, data, 12 * HOUR_NS),
        ),
        Shape::Lastpoint => (Vec::new(), (data.start_ns, end)),
        Shape::GroupbyOrderbyLimit => (Vec::new(), (data.start_ns, window(rng, data, HOUR_NS).1)),
    };
    Params {
        name,
        shape,
        hosts,
        t0,
        t1,
    }
}

/// Just past the last epoch's time.
fn data_end(data: &SimConfig) -> i64 {
    data.epoch_ns(data.epochs() - 1) + 1
}

/// TSBS's `RandWindow`: length `len` starting uniformly (whole seconds) in
/// [start, end − len); all of the data when it is not longer than `len`.
fn window(rng: &mut SplitMix64, data: &SimConfig, len: i64) -> (i64, i64) {
    let span_s = (data.end_ns - data.start_ns - len) / 1_000_000_000;
    if span_s <= 0 {
        return (data.start_ns, data.end_ns.max(data_end(data)));
    }
    let t0 = data.start_ns + rng.below(span_s as u64) as i64 * 1_000_000_000;
    (t0, t0 + len)
}

fn pick_hosts(rng: &mut SplitMix64, hosts: u64, n: u64) -> Vec<u64> {
    let mut picked: Vec<u64> = Vec::new();
    while picked.len() < n.min(hosts) as usize {
        let h = rng.below(hosts);
        if !picked.contains(&h) {
            picked.push(h);
        }
    }
    picked
}

impl Params {
    fn metrics(&self) -> &'static [&'static str] {
        match self.shape {
            Shape::MaxPerBucket { metrics, .. } | Shape::AvgPerHourHost { metrics } => {
                &CPU_FIELDS[..metrics]
            }
            Shape::GroupbyOrderbyLimit => &CPU_FIELDS[..1],
            Shape::HighCpu { .. } | Shape::Lastpoint => &CPU_FIELDS,
        }
    }

    fn time_range(&self) -> String {
        format!(
            "time >= '{}' AND time < '{}'",
            rfc3339(self.t0),
            rfc3339(self.t1)
        )
    }

    fn host_in(&self) -> String {
        let list: Vec<String> = self.hosts.iter().map(|h| format!("'host_{h}'")).collect();
        format!("hostname IN ({})", list.join(", "))
    }

    fn host_or(&self) -> String {
        let list: Vec<String> = self
            .hosts
            .iter()
            .map(|h| format!("hostname = 'host_{h}'"))
            .collect();
        format!("({})", list.join(" OR "))
    }

    /// `f(m) AS alias_m` for each of the query's metrics, comma-separated
    /// (SQL and InfluxQL alike).
    fn aggregates(&self, f: &str, alias: &str) -> String {
        self.metrics()
            .iter()
            .map(|m| format!("{f}({m}) AS {alias}_{m}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// fleetlake SQL (DataFusion), the text TSBS sends TimescaleDB with
    /// `time_bucket`; DuckDB runs it unchanged over a `cpu` view.
    pub fn sql(&self) -> String {
        let b = self.shape.bucket_col();
        let bucket = format!("time_bucket(INTERVAL '1 {b}', time) AS {b}");
        let aggs = |f: &str, alias: &str| self.aggregates(f, alias);
        match self.shape {
            Shape::MaxPerBucket { .. } => format!(
                "SELECT {bucket}, {} FROM cpu WHERE {} AND {} GROUP BY {b} ORDER BY {b}",
                aggs("max", "max"),
                self.host_in(),
                self.time_range()
            ),
            Shape::AvgPerHourHost { .. } => format!(
                "SELECT {bucket}, hostname, {} FROM cpu WHERE {} GROUP BY {b}, hostname ORDER BY {b}, hostname",
                aggs("avg", "mean"),
                self.time_range()
            ),
            Shape::HighCpu { hosts } => format!(
                "SELECT * FROM cpu WHERE usage_user > 90.0 AND {}{}",
                self.time_range(),
                if hosts.is_some() {
                    format!(" AND {}", self.host_in())
                } else {
                    String::new()
                }
            ),
            Shape::Lastpoint => {
                "SELECT DISTINCT ON (hostname) * FROM cpu ORDER BY hostname, time DESC".to_string()
            }
            Shape::GroupbyOrderbyLimit => format!(
                "SELECT {bucket}, max(usage_user) AS max_usage_user FROM cpu WHERE time < '{}' GROUP BY {b} ORDER BY {b} DESC LIMIT 5",
                rfc3339(self.t1)
            ),
        }
    }

    /// InfluxQL, as TSBS sends InfluxDB 1.x (`fill(none)`: no empty buckets,
    /// like SQL). The bucket column comes back as `time`.
    pub fn influxql(&self) -> String {
        let b = if self.shape.bucket_ns() == Some(HOUR_NS) {
            "1h"
        } else {
            "1m"
        };
        let aggs = |f: &str, alias: &str| self.aggregates(f, alias);
        match self.shape {
            Shape::MaxPerBucket { .. } => format!(
                "SELECT {} FROM cpu WHERE {} AND {} GROUP BY time({b}) fill(none)",
                aggs("max", "max"),
                self.host_or(),
                self.time_range()
            ),
            Shape::AvgPerHourHost { .. } => format!(
                "SELECT {} FROM cpu WHERE {} GROUP BY time({b}), hostname fill(none)",
                aggs("mean", "mean"),
                self.time_range()
            ),
            Shape::HighCpu { hosts } => format!(
                "SELECT * FROM cpu WHERE usage_user > 90.0 AND {}{}",
                self.time_range(),
                if hosts.is_some() {
                    format!(" AND {}", self.host_or())
                } else {
                    String::new()
                }
            ),
            Shape::Lastpoint => {
                "SELECT * FROM cpu GROUP BY hostname ORDER BY time DESC LIMIT 1".to_string()
            }
            Shape::GroupbyOrderbyLimit => format!(
                "SELECT max(usage_user) AS max_usage_user FROM cpu WHERE time >= '{}' AND time < '{}' GROUP BY time({b}) fill(none) ORDER BY time DESC LIMIT 5",
                rfc3339(self.t0),
                rfc3339(self.t1)
            ),
        }
    }

    /// Columns an answer is checked on: the bucket (or `time`), `hostname`
    /// where the answer is per host, then the aggregates or fields.
    pub fn columns(&self) -> Columns {
        let b = self.shape.bucket_col();
        let mut cols: Vec<(String, Kind)> = Vec::new();
        let prefix = match self.shape {
            Shape::MaxPerBucket { .. } | Shape::GroupbyOrderbyLimit => {
                cols.push((b.into(), Kind::Time));
                "max_"
            }
            Shape::AvgPerHourHost { .. } => {
                cols.push((b.into(), Kind::Time));
                cols.push(("hostname".into(), Kind::Str));
                "mean_"
            }
            Shape::HighCpu { .. } | Shape::Lastpoint => {
                cols.push(("time".into(), Kind::Time));
                cols.push(("hostname".into(), Kind::Str));
                ""
            }
        };
        for m in self.metrics() {
            cols.push((format!("{prefix}{m}"), Kind::Num));
        }
        Columns(cols)
    }

    /// The answer, recomputed from the generator (each needed host
    /// regenerated alone with [`CpuHost`]), independently of any server.
    pub fn expected(&self, data: &SimConfig) -> Table {
        let mut table = Table::new(self.columns());
        let all: Vec<u64>;
        let hosts: &[u64] = if self.hosts.is_empty() {
            all = (0..data.hosts).collect();
            &all
        } else {
            &self.hosts
        };
        let m = self.metrics().len();
        match self.shape {
            Shape::MaxPerBucket { .. } | Shape::GroupbyOrderbyLimit => {
                let bucket_ns = bucket_ns_of(self.shape);
                let mut max: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
                each_row(data, hosts, self.t0, self.t1, |_, t, f| {
                    let e = max
                        .entry(t.div_euclid(bucket_ns) * bucket_ns)
                        .or_insert_with(|| f[..m].to_vec());
                    for (x, y) in e.iter_mut().zip(&f[..m]) {
                        *x = (*x).max(*y);
                    }
                });
                let keep = if self.shape == Shape::GroupbyOrderbyLimit {
                    5
                } else {
                    usize::MAX
                };
                for (b, v) in max.iter().rev().take(keep) {
                    let mut row = vec![Cell::Time(*b)];
                    row.extend(v.iter().map(|x| Cell::Num(*x as f64)));
                    table.rows.push(row);
                }
            }
            Shape::AvgPerHourHost { .. } => {
                let mut sums: std::collections::BTreeMap<(i64, u64), (Vec<i64>, i64)> =
                    Default::default();
                each_row(data, hosts, self.t0, self.t1, |h, t, f| {
                    let e = sums
                        .entry((t.div_euclid(HOUR_NS) * HOUR_NS, h))
                        .or_insert_with(|| (vec![0; m], 0));
                    for (x, y) in e.0.iter_mut().zip(&f[..m]) {
                        *x += y;
                    }
                    e.1 += 1;
                });
                for ((b, h), (s, n)) in sums {
                    let mut row = vec![Cell::Time(b), Cell::Str(format!("host_{h}"))];
                    row.extend(s.iter().map(|x| Cell::Num(*x as f64 / n as f64)));
                    table.rows.push(row);
                }
            }
            Shape::HighCpu { .. } => {
                each_row(data, hosts, self.t0, self.t1, |h, t, f| {
                    if f[0] > 90 {
                        table.rows.push(full_row(h, t, f));
                    }
                });
            }
            Shape::Lastpoint => {
                let last_t = data.epoch_ns(data.epochs() - 1);
                each_row(data, hosts, last_t, last_t + 1, |h, t, f| {
                    table.rows.push(full_row(h, t, f));
                });
            }
        }
        table
    }
}

/// A MetricsQL range or instant query (VictoriaMetrics `/api/v1/query_range`
/// or `/api/v1/query`), times in Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmQuery {
    pub query: String,
    /// `None`: an instant query at `end`.
    pub step_s: Option<i64>,
    pub start_s: i64,
    pub end_s: i64,
    /// Prefix of the column a metric's values go to (`max_`, `mean_`, ``).
    pub column_prefix: &'static str,
}

impl Params {
    /// The run as MetricsQL, with the parameters it really answers and the
    /// columns it returns.
    ///
    /// A rollup over `[d]` evaluated at `t` covers `(t − d, t]`; with
    /// `offset -(d − interval)` it covers `[t, t + d)` for samples on the
    /// `interval` grid, which is a SQL bucket starting at `t`. MetricsQL
    /// cannot cut a bucket at an arbitrary time, so the window is narrowed to
    /// whole buckets (the returned `Params`), and the answer is checked
    /// against that run's expected answer. `time` is not returned by
    /// lastpoint (an instant query's sample is at the evaluation time), and
    /// high-cpu returns only `usage_user`: the columns say which are checked.
    pub fn metricsql(&self, interval_ns: i64) -> (Params, VmQuery, Columns) {
        let sec = 1_000_000_000;
        let names = {
            let m = self.metrics();
            if m.len() == 1 {
                format!("__name__=\"cpu_{}\"", m[0])
            } else {
                format!("__name__=~\"cpu_({})\"", m.join("|"))
            }
        };
        let host_re = if self.hosts.is_empty() {
            String::new()
        } else {
            let h: Vec<String> = self.hosts.iter().map(|h| format!("host_{h}")).collect();
            format!(",hostname=~\"{}\"", h.join("|"))
        };
        let mut aligned = self.clone();
        let mut cols = self.columns();
        let q = match self.shape {
            Shape::MaxPerBucket { .. }
            | Shape::AvgPerHourHost { .. }
            | Shape::GroupbyOrderbyLimit => {
                let b = bucket_ns_of(self.shape);
                aligned.t0 =
                    self.t0.div_euclid(b) * b + if self.t0.rem_euclid(b) == 0 { 0 } else { b };
                aligned.t1 = self.t1.div_euclid(b) * b;
                if self.shape == Shape::GroupbyOrderbyLimit {
                    aligned.t0 = self.t0.div_euclid(b) * b;
                }
                let (f, prefix, outer) = match self.shape {
                    Shape::AvgPerHourHost { .. } => ("avg_over_time", "mean_", false),
                    _ => ("max_over_time", "max_", true),
                };
                let inner = format!(
                    "{f}({{{names}{host_re}}}[{}s] offset -{}s) keep_metric_names",
                    b / sec,
                    (b - interval_ns) / sec
                );
                let query = if outer {
                    format!("max by (__name__) ({inner})")
                } else {
                    inner
                };
                let end_s = (aligned.t1 - b) / sec;
                let start_s = if self.shape == Shape::GroupbyOrderbyLimit {
                    end_s - 4 * b / sec
                } else {
                    aligned.t0 / sec
                };
                VmQuery {
                    query,
                    step_s: Some(b / sec),
                    start_s,
                    end_s,
                    column_prefix: prefix,
                }
            }
            Shape::HighCpu { .. } => {
                cols = Columns(cols.0[..3].to_vec());
                let step = interval_ns / sec;
                VmQuery {
                    query: format!("{{__name__=\"cpu_usage_user\"{host_re}}} > 90"),
                    step_s: Some(step),
                    start_s: (self.t0 + interval_ns - 1).div_euclid(interval_ns) * step,
                    end_s: (self.t1 - 1).div_euclid(interval_ns) * step,
                    column_prefix: "",
                }
            }
            Shape::Lastpoint => {
                cols = Columns(cols.0[1..].to_vec());
                VmQuery {
                    query: "last_over_time({__name__=~\"cpu_.*\"}[1h]) keep_metric_names".into(),
                    step_s: None,
                    start_s: (self.t1 - 1) / sec,
                    end_s: (self.t1 - 1) / sec,
                    column_prefix: "",
                }
            }
        };
        (aligned, q, cols)
    }
}

fn bucket_ns_of(shape: Shape) -> i64 {
    shape.bucket_ns().expect("a bucketed shape")
}

fn full_row(h: u64, t: i64, f: &[i64; 10]) -> Vec<Cell> {
    let mut row = vec![Cell::Time(t), Cell::Str(format!("host_{h}"))];
    row.extend(f.iter().map(|x| Cell::Num(*x as f64)));
    row
}

/// Calls `f(host, time, fields)` for every row of `hosts` in [t0, t1),
/// regenerating each host from its initial state.
fn each_row(
    data: &SimConfig,
    hosts: &[u64],
    t0: i64,
    t1: i64,
    mut f: impl FnMut(u64, i64, &[i64; 10]),
) {
    for &h in hosts {
        let mut host = CpuHost::new(data.seed, h);
        for e in 0..data.epochs() {
            let t = data.epoch_ns(e);
            if t >= t1 {
                break;
            }
            if e > 0 {
                host.step();
            }
            if t >= t0 {
                f(h, t, &host.fields());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fleetlake_sim::LineSource;
    use fleetlake_sim::time::TSBS_START_NS;

    use super::*;

    fn data() -> SimConfig {
        SimConfig::new(
            12,
            TSBS_START_NS,
            TSBS_START_NS + 3 * HOUR_NS,
            10_000_000_000,
            7,
        )
        .unwrap()
    }

    /// (host, time, fields) of every generated line, parsed from the text.
    fn rows(data: &SimConfig) -> Vec<(u64, i64, [i64; 10])> {
        let mut src = fleetlake_sim::CpuOnly::new(data);
        let mut buf = Vec::new();
        while src.next_chunk(&mut buf, 1000) > 0 {}
        let text = String::from_utf8(buf).unwrap();
        fleetlake_ingest::line_protocol::parse_lines(&text)
            .map(|l| {
                let p = l.parsed.unwrap();
                let host = p
                    .tags
                    .iter()
                    .find(|(k, _)| k == "hostname")
                    .unwrap()
                    .1
                    .trim_start_matches("host_")
                    .parse()
                    .unwrap();
                let mut f = [0i64; 10];
                for (i, (_, v)) in p.fields.iter().enumerate() {
                    let fleetlake_ingest::line_protocol::FieldValue::I64(x) = v else {
                        panic!()
                    };
                    f[i] = *x;
                }
                (host, p.timestamp.unwrap(), f)
            })
            .collect()
    }

    /// The answer computed naively from the parsed lines.
    fn brute(p: &Params, all: &[(u64, i64, [i64; 10])]) -> Table {
        let mut t = Table::new(p.columns());
        let m = p.metrics().len();
        let sel = |h: u64, time: i64| {
            (p.hosts.is_empty() || p.hosts.contains(&h)) && time >= p.t0 && time < p.t1
        };
        let full = |h: u64, time: i64, f: &[i64; 10]| {
            let mut r = vec![Cell::Time(time), Cell::Str(format!("host_{h}"))];
            r.extend(f.iter().map(|x| Cell::Num(*x as f64)));
            r
        };
        match p.shape {
            Shape::MaxPerBucket { .. } | Shape::GroupbyOrderbyLimit => {
                let b = p.shape.bucket_ns().unwrap();
                let mut g: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
                for (h, time, f) in all.iter().filter(|r| sel(r.0, r.1)) {
                    let _ = h;
                    let e = g
                        .entry(time - time.rem_euclid(b))
                        .or_insert(vec![i64::MIN; m]);
                    for i in 0..m {
                        e[i] = e[i].max(f[i]);
                    }
                }
                let n = if p.shape == Shape::GroupbyOrderbyLimit {
                    5
                } else {
                    g.len()
                };
                for (k, v) in g.iter().rev().take(n) {
                    let mut r = vec![Cell::Time(*k)];
                    r.extend(v.iter().map(|x| Cell::Num(*x as f64)));
                    t.rows.push(r);
                }
            }
            Shape::AvgPerHourHost { .. } => {
                let mut g: BTreeMap<(i64, u64), Vec<Vec<i64>>> = BTreeMap::new();
                for (h, time, f) in all.iter().filter(|r| sel(r.0, r.1)) {
                    g.entry((time - time.rem_euclid(HOUR_NS), *h))
                        .or_default()
                        .push(f[..m].to_vec());
                }
                for ((k, h), vs) in g {
                    let mut r = vec![Cell::Time(k), Cell::Str(format!("host_{h}"))];
                    for i in 0..m {
                        r.push(Cell::Num(
                            vs.iter().map(|v| v[i]).sum::<i64>() as f64 / vs.len() as f64,
                        ));
                    }
                    t.rows.push(r);
                }
            }
            Shape::HighCpu { .. } => {
                for (h, time, f) in all.iter().filter(|r| sel(r.0, r.1) && r.2[0] > 90) {
                    t.rows.push(full(*h, *time, f));
                }
            }
            Shape::Lastpoint => {
                let mut last: BTreeMap<u64, (i64, [i64; 10])> = BTreeMap::new();
                for (h, time, f) in all {
                    if last.get(h).is_none_or(|(t0, _)| time > t0) {
                        last.insert(*h, (*time, *f));
                    }
                }
                for (h, (time, f)) in last {
                    t.rows.push(full(h, time, &f));
                }
            }
        }
        t
    }

    #[test]
    fn expected_answers_match_a_naive_evaluation_of_the_lines() {
        let data = data();
        let all = rows(&data);
        for name in NAMES {
            for p in draw(name, &data, 3, 3).unwrap() {
                let e = p.expected(&data);
                assert_eq!(e.diff(&brute(&p, &all)), None, "{name} {p:?}");
                // Not vacuous: every query but high-cpu-1 has rows here.
                if name != "high-cpu-1" {
                    assert!(!e.rows.is_empty(), "{name}");
                }
            }
        }
    }

    #[test]
    fn draws_are_seeded_and_follow_the_spec() {
        let data = data();
        assert_eq!(
            draw("cpu-max-all-8", &data, 1, 4).unwrap(),
            draw("cpu-max-all-8", &data, 1, 4).unwrap()
        );
        assert_ne!(
            draw("single-groupby-1-1-1", &data, 1, 4).unwrap(),
            draw("single-groupby-1-1-1", &data, 2, 4).unwrap()
        );
        for p in draw("single-groupby-5-8-1", &data, 1, 20).unwrap() {
            let mut h = p.hosts.clone();
            h.dedup();
            assert_eq!(h.len(), 8);
            assert_eq!(p.t1 - p.t0, HOUR_NS);
            assert!(p.t0 >= data.start_ns && p.t1 <= data.end_ns);
            assert_eq!(p.t0 % 1_000_000_000, 0);
        }
        // Longer than the data: the whole of it.
        let p = &draw("double-groupby-1", &data, 1, 1).unwrap()[0];
        assert_eq!((p.t0, p.t1), (data.start_ns, data.end_ns));
        assert!(draw("nope", &data, 1, 1).is_err());
        let p = &draw("single-groupby-5-8-1", &data, 1, 1).unwrap()[0];
        let sql = p.sql();
        assert!(sql.starts_with("SELECT time_bucket(INTERVAL '1 minute', time) AS minute, max(usage_user) AS max_usage_user, max(usage_system)"), "{sql}");
        assert!(sql.contains("hostname IN ('host_"), "{sql}");
        let iq = p.influxql();
        assert!(
            iq.contains("GROUP BY time(1m) fill(none)") && iq.contains(" OR hostname = 'host_"),
            "{iq}"
        );
        let (aligned, vm, cols) = p.metricsql(10_000_000_000);
        assert_eq!(aligned.t0 % MINUTE_NS, 0);
        assert!(
            vm.query.starts_with(
                "max by (__name__) (max_over_time({__name__=~\"cpu_(usage_user|usage_system|"
            ),
            "{}",
            vm.query
        );
        assert!(
            vm.query.ends_with("[60s] offset -50s) keep_metric_names)"),
            "{}",
            vm.query
        );
        assert_eq!(vm.start_s * 1_000_000_000, aligned.t0);
        assert_eq!(vm.end_s * 1_000_000_000, aligned.t1 - MINUTE_NS);
        assert_eq!(cols, p.columns());
    }
}
