//! `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use fleetlake_storage::counter::Counter;
use fleetlake_storage::memory_budget::{Consumer, MemoryBudget};
use parking_lot::Mutex;

use crate::AppState;

/// Upper bounds (seconds) of the query latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Debug, Default)]
pub struct ServerMetrics {
    pub write_bytes: Counter,
    writes_by_status: Mutex<Vec<(u16, u64)>>,
    queries_by_status: Mutex<Vec<(u16, u64)>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    /// Planning phases of SQL queries: session, plan, optimize, physical (ns).
    phase_sum_nanos: [AtomicU64; 4],
    phase_count: AtomicU64,
}

/// The planning phases, in `PhaseTimings` order.
const PHASES: [&str; 4] = ["session", "plan", "optimize", "physical"];

fn bump(v: &Mutex<Vec<(u16, u64)>>, status: u16) {
    let mut v = v.lock();
    match v.iter_mut().find(|(s, _)| *s == status) {
        Some((_, n)) => *n += 1,
        None => {
            v.push((status, 1));
            v.sort();
        }
    }
}

impl ServerMetrics {
    pub fn count_write(&self, status: u16) {
        bump(&self.writes_by_status, status);
    }

    /// Adds one SQL query's planning phases.
    pub fn count_phases(&self, t: &fleetlake_query::engine::PhaseTimings) {
        for (sum, d) in self
            .phase_sum_nanos
            .iter()
            .zip([t.session, t.plan, t.optimize, t.physical])
        {
            let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            sum.fetch_add(nanos, Ordering::Relaxed);
        }
        self.phase_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_query(&self, status: u16, seconds: f64) {
        bump(&self.queries_by_status, status);
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *le {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// The server's memory budget: its limit and what each consumer holds.
fn memory_budget_metrics(out: &mut String, b: &MemoryBudget) {
    gauge(
        out,
        "fleetlake_memory_limit_bytes",
        "The memory budget the write buffer, flushes, queries and compaction share (--memory-limit).",
        b.limit() as u64,
    );
    gauge(
        out,
        "fleetlake_memory_others_limit_bytes",
        "What flushes, queries and compaction may hold together: the memory limit less what is kept for the write buffer (--memory-budget).",
        b.others_limit() as u64,
    );
    let name = "fleetlake_memory_used_bytes";
    let _ = writeln!(
        out,
        "# HELP {name} Bytes of the memory budget held, by consumer.\n# TYPE {name} gauge"
    );
    for c in Consumer::ALL {
        let _ = writeln!(out, "{name}{{consumer=\"{}\"}} {}", c.name(), b.used_by(c));
    }
}

/// The Delta Lake publisher's figures: how far behind the catalog the
/// published tables are.
fn delta_metrics(out: &mut String, d: &fleetlake_storage::delta::DeltaMetrics) {
    counter(
        out,
        "fleetlake_delta_commits_total",
        "Delta log commits written.",
        d.commits.get(),
    );
    counter(
        out,
        "fleetlake_delta_errors_total",
        "Delta log syncs that failed (retried).",
        d.errors.get(),
    );
    gauge(
        out,
        "fleetlake_delta_unpublished_files",
        "Live data files Delta readers do not see yet (a day partition is published once compacted into one run).",
        d.unpublished_files.load(Ordering::Relaxed),
    );
    gauge(
        out,
        "fleetlake_delta_refused_tables",
        "Tables that cannot be published as Delta (a column Delta cannot name or type; see the log).",
        d.refused_tables.load(Ordering::Relaxed),
    );
    gauge(
        out,
        "fleetlake_delta_synced_seq",
        "Catalog commit the Delta logs were last brought in line with.",
        d.synced_seq.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP fleetlake_delta_lag_seconds Age of the oldest live file Delta readers do not see yet (0: they see everything).\n# TYPE fleetlake_delta_lag_seconds gauge\nfleetlake_delta_lag_seconds {:.3}",
        d.lag_seconds(fleetlake_storage::catalog::now_ns())
    );
}

pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let m = &state.metrics;
    let i = state.ingester.metrics();
    let mut out = String::new();
    counter(
        &mut out,
        "fleetlake_rows_written_total",
        "Rows acknowledged by the write APIs.",
        i.rows_written.get(),
    );
    counter(
        &mut out,
        "fleetlake_fields_written_total",
        "Field values acknowledged.",
        i.fields_written.get(),
    );
    counter(
        &mut out,
        "fleetlake_write_bytes_total",
        "Line-protocol bytes received (after gzip decoding).",
        m.write_bytes.get(),
    );
    counter(
        &mut out,
        "fleetlake_lines_rejected_total",
        "Lines rejected by validation.",
        i.lines_rejected.get(),
    );
    let _ = writeln!(
        out,
        "# HELP fleetlake_write_requests_total Write requests by HTTP status.\n# TYPE fleetlake_write_requests_total counter"
    );
    for (status, n) in m.writes_by_status.lock().iter() {
        let _ = writeln!(
            out,
            "fleetlake_write_requests_total{{status=\"{status}\"}} {n}"
        );
    }
    counter(
        &mut out,
        "fleetlake_wal_fsyncs_total",
        "WAL fsyncs (one per group commit).",
        i.wal_fsyncs.get(),
    );
    counter(
        &mut out,
        "fleetlake_wal_bytes_total",
        "Bytes appended to the WAL.",
        i.wal_bytes.get(),
    );
    counter(
        &mut out,
        "fleetlake_flushes_total",
        "Buffer flushes committed.",
        i.flushes.get(),
    );
    counter(
        &mut out,
        "fleetlake_flush_errors_total",
        "Flush attempts that failed (retried).",
        i.flush_errors.get(),
    );
    counter(
        &mut out,
        "fleetlake_flushed_rows_total",
        "Rows written to Parquet by flushes.",
        i.flushed_rows.get(),
    );
    counter(
        &mut out,
        "fleetlake_flushed_bytes_total",
        "Parquet bytes written by flushes.",
        i.flushed_bytes.get(),
    );
    counter(
        &mut out,
        "fleetlake_writes_refused_buffer_full_total",
        "Writes answered 503 because the buffer was over budget.",
        i.writes_refused_buffer_full.get(),
    );
    counter(
        &mut out,
        "fleetlake_writes_refused_memory_total",
        "Writes answered 503 because the server's memory budget (--memory-limit) had no room.",
        i.writes_refused_memory.get(),
    );
    memory_budget_metrics(&mut out, &state.ingester.config().budget);
    gauge(
        &mut out,
        "fleetlake_buffer_bytes",
        "Bytes held by the write buffer.",
        state.ingester.buffer_bytes() as u64,
    );
    gauge(
        &mut out,
        "fleetlake_buffer_rows",
        "Rows held by the write buffer.",
        state.ingester.buffer_rows() as u64,
    );
    gauge(
        &mut out,
        "fleetlake_catalog_files",
        "Data files in the catalog.",
        state.ingester.catalog().state().file_count() as u64,
    );
    let c = state.compactor.metrics();
    for (name, help, value) in [
        (
            "fleetlake_compactions_total",
            "Partition merges committed.",
            c.compactions.get(),
        ),
        (
            "fleetlake_compaction_errors_total",
            "Partition merges that failed.",
            c.errors.get(),
        ),
        (
            "fleetlake_compaction_input_rows_total",
            "Rows read by compaction.",
            c.input_rows.get(),
        ),
        (
            "fleetlake_compaction_output_rows_total",
            "Rows written by compaction.",
            c.output_rows.get(),
        ),
        (
            "fleetlake_compaction_input_bytes_total",
            "Parquet bytes replaced by compaction.",
            c.input_bytes.get(),
        ),
        (
            "fleetlake_compaction_output_bytes_total",
            "Parquet bytes written by compaction.",
            c.output_bytes.get(),
        ),
        (
            "fleetlake_gc_files_deleted_total",
            "Replaced files deleted after the grace period.",
            c.files_deleted.get(),
        ),
        (
            "fleetlake_gc_orphans_deleted_total",
            "Unreferenced files deleted.",
            c.orphans_deleted.get(),
        ),
    ] {
        counter(&mut out, name, help, value);
    }
    if let Some(d) = &state.delta {
        delta_metrics(&mut out, d.metrics());
    }
    let _ = writeln!(
        out,
        "# HELP fleetlake_queries_total Queries by HTTP status.\n# TYPE fleetlake_queries_total counter"
    );
    for (status, n) in m.queries_by_status.lock().iter() {
        let _ = writeln!(out, "fleetlake_queries_total{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP fleetlake_query_duration_seconds Time to plan a query and send its first batch.\n# TYPE fleetlake_query_duration_seconds histogram"
    );
    for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "fleetlake_query_duration_seconds_bucket{{le=\"{le}\"}} {}",
            m.latency_buckets[i].load(Ordering::Relaxed)
        );
    }
    let count = m.latency_count.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "fleetlake_query_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "fleetlake_query_duration_seconds_sum {}",
        m.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "fleetlake_query_duration_seconds_count {count}");
    let _ = writeln!(
        out,
        "# HELP fleetlake_query_phase_seconds Time SQL queries spent before running, by phase (session: the query's session; plan: SQL to a logical plan; optimize: the logical optimizer; physical: physical planning).\n# TYPE fleetlake_query_phase_seconds summary"
    );
    let phases = m.phase_count.load(Ordering::Relaxed);
    for (phase, sum) in PHASES.iter().zip(&m.phase_sum_nanos) {
        let _ = writeln!(
            out,
            "fleetlake_query_phase_seconds_sum{{phase=\"{phase}\"}} {}\nfleetlake_query_phase_seconds_count{{phase=\"{phase}\"}} {phases}",
            sum.load(Ordering::Relaxed) as f64 / 1e9
        );
    }
    let pc = state.engine.plan_cache_stats();
    let _ = writeln!(
        out,
        "# HELP fleetlake_query_plan_cache_total SQL queries by where their plan came from (hit: a kept plan of the same shape; miss: the shape planned now and kept; planned: planned from its SQL, not cacheable).\n# TYPE fleetlake_query_plan_cache_total counter"
    );
    for (result, n) in [
        ("hit", pc.hits),
        ("miss", pc.misses),
        ("planned", pc.planned),
    ] {
        let _ = writeln!(
            out,
            "fleetlake_query_plan_cache_total{{result=\"{result}\"}} {n}"
        );
    }
    gauge(
        &mut out,
        "fleetlake_query_plan_cache_entries",
        "Query shapes whose plans are kept.",
        pc.entries as u64,
    );
    let r = state.rules.metrics();
    gauge(
        &mut out,
        "fleetlake_rules",
        "Rules installed.",
        r.rules as u64,
    );
    gauge(
        &mut out,
        "fleetlake_rules_streaming",
        "Rules answered from streaming state instead of a query.",
        r.streaming as u64,
    );
    gauge(
        &mut out,
        "fleetlake_rules_state_bytes",
        "Bytes of streaming-rule state (--rules-state-memory bounds it).",
        r.state_bytes as u64,
    );
    gauge(
        &mut out,
        "fleetlake_rules_states_filling",
        "Streaming states not filled yet from the table (their rules wait for the fill).",
        r.states_filling as u64,
    );
    counter(
        &mut out,
        "fleetlake_rules_shared_scans_total",
        "Windows of a table read once for several batch rules of a round.",
        r.shared_scans,
    );
    counter(
        &mut out,
        "fleetlake_rules_shared_scan_reuses_total",
        "Batch rules' reads of a window another rule of the round had read.",
        r.shared_scan_reuses,
    );
    counter(
        &mut out,
        "fleetlake_rules_evaluations_total",
        "Scheduled rule evaluations finished.",
        r.rounds.evaluations,
    );
    let _ = writeln!(
        out,
        "# HELP fleetlake_rules_round_duration_seconds From a grid instant to the end of the last evaluation due at it.\n# TYPE fleetlake_rules_round_duration_seconds histogram"
    );
    for (i, le) in fleetlake_rules::engine::ROUND_BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "fleetlake_rules_round_duration_seconds_bucket{{le=\"{le}\"}} {}",
            r.rounds.buckets[i]
        );
    }
    let _ = writeln!(
        out,
        "fleetlake_rules_round_duration_seconds_bucket{{le=\"+Inf\"}} {0}\nfleetlake_rules_round_duration_seconds_sum {1}\nfleetlake_rules_round_duration_seconds_count {0}",
        r.rounds.rounds, r.rounds.sum_seconds
    );
    let _ = writeln!(
        out,
        "# HELP fleetlake_rules_last_round_duration_seconds Duration of the round that closed last.\n# TYPE fleetlake_rules_last_round_duration_seconds gauge\nfleetlake_rules_last_round_duration_seconds {}",
        r.rounds.last_seconds
    );
    let _ = writeln!(
        out,
        "# HELP fleetlake_rules_evaluation_seconds_total Wall time of rule evaluations, by phase (queued for a permit, drain of queued writes, lock wait, pass over the streaming state, answer, SQL, alert step, record).\n# TYPE fleetlake_rules_evaluation_seconds_total counter"
    );
    for (phase, secs) in &r.phases {
        let _ = writeln!(
            out,
            "fleetlake_rules_evaluation_seconds_total{{phase=\"{}\"}} {secs}",
            phase.as_str()
        );
    }
    let _ = writeln!(
        out,
        "# HELP fleetlake_last_value_series Series in each table's last-value cache (built by its first DISTINCT ON query, or at start-up: --warm-last-value).\n# TYPE fleetlake_last_value_series gauge"
    );
    for (db, table, series) in state.engine.last_value_caches().built() {
        let _ = writeln!(
            out,
            "fleetlake_last_value_series{{db=\"{}\",table=\"{}\"}} {series}",
            label_value(&db),
            label_value(&table)
        );
    }
    gauge(
        &mut out,
        "fleetlake_uptime_seconds",
        "Seconds since the server started.",
        state.started.elapsed().as_secs(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// A label value in the text exposition format: backslash, double quote
/// and line feed escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
