//! Flags of `fleetlake serve`. Every flag has an environment variable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use fleetlake_storage::memory_budget::MemoryBudget;
use fleetlake_time::parse_duration;

/// What a server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Ingest, store, compact, publish, evaluate rules and answer queries.
    All,
    /// A read replica: answers SQL, PromQL and Grafana from the object store
    /// another server writes, following its catalog; no WAL, no writes.
    Query,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port of the HTTP API (InfluxDB's port by default, so
    /// Telegraf's influxdb outputs work unchanged).
    #[arg(long, env = "FLEETLAKE_HTTP_BIND", default_value = "127.0.0.1:8086")]
    pub http_bind: String,

    /// Directory for local state: the object store (unless --object-store
    /// says otherwise) and the WAL (unless --wal-dir says otherwise).
    /// Default: ./fleetlake-data (with --demo: ./fleetlake-demo).
    #[arg(long, env = "FLEETLAKE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Object store URL for Parquet files and the catalog: a directory,
    /// file:///dir, or s3://bucket/prefix (configured from the standard AWS_*
    /// environment variables). Default: <data-dir>/store.
    #[arg(long, env = "FLEETLAKE_OBJECT_STORE")]
    pub object_store: Option<String>,

    /// Directory of the write-ahead log. Default: <data-dir>/wal.
    #[arg(long, env = "FLEETLAKE_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,

    /// Memory budget of the write buffer in bytes; past it writes get 503
    /// with Retry-After until a flush frees room.
    #[arg(long, env = "FLEETLAKE_MEMORY_BUDGET", default_value_t = 512 << 20)]
    pub memory_budget: usize,

    /// Memory the write buffer, flushes, queries and compaction hold
    /// together, in bytes, of which --memory-budget is kept for the write
    /// buffer. Each keeps its own limit too; past this sum a query gets
    /// 503 with Retry-After, a sort spills, and a merge waits for a later
    /// round.
    #[arg(long, env = "FLEETLAKE_MEMORY_LIMIT", default_value_t = 2 << 30)]
    pub memory_limit: usize,

    /// Flush the write buffer to Parquet once it holds this many bytes.
    #[arg(long, env = "FLEETLAKE_FLUSH_BYTES", default_value_t = 64 << 20)]
    pub flush_bytes: usize,

    /// Flush the write buffer once its oldest write is this old (e.g. 5m, 30s).
    #[arg(long, env = "FLEETLAKE_FLUSH_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub flush_interval: Duration,

    /// Columns (tags and fields) a table may have; a line that would add
    /// more is rejected with the limit named.
    #[arg(long, env = "FLEETLAKE_MAX_COLUMNS_PER_TABLE", default_value_t = fleetlake_ingest::validate::DEFAULT_MAX_COLUMNS_PER_TABLE)]
    pub max_columns_per_table: usize,

    /// Largest accepted write body in bytes (after gzip decoding); larger → 413.
    #[arg(long, env = "FLEETLAKE_MAX_BODY_BYTES", default_value_t = 64 << 20)]
    pub max_body_bytes: usize,

    /// Time limit of one query (e.g. 60s, 2m).
    #[arg(long, env = "FLEETLAKE_QUERY_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub query_timeout: Duration,

    /// Memory limit of one query in bytes; operators that can spill do so
    /// first, then the query fails with a message saying so.
    #[arg(long, env = "FLEETLAKE_QUERY_MEMORY_LIMIT", default_value_t = 1 << 30)]
    pub query_memory_limit: usize,

    /// Bytes of Parquet footers and page indexes kept in memory for
    /// queries (least recently used files' go first).
    #[arg(long, env = "FLEETLAKE_QUERY_METADATA_CACHE", default_value_t = 256 << 20)]
    pub query_metadata_cache: usize,

    /// Query shapes (SQL with the literals compared with columns taken
    /// out) whose optimized plans are kept and reused with other values;
    /// 0 plans every query from its SQL.
    #[arg(long, env = "FLEETLAKE_QUERY_PLAN_CACHE", default_value_t = 256)]
    pub query_plan_cache: usize,

    /// How often the compactor looks for partitions to merge; 0 disables
    /// background compaction and garbage collection.
    #[arg(long, env = "FLEETLAKE_COMPACTION_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub compaction_interval: Duration,

    /// Flush files in one table/day partition that trigger merging them.
    #[arg(long, env = "FLEETLAKE_COMPACTION_L0_TRIGGER", default_value_t = 4)]
    pub compaction_l0_trigger: usize,

    /// Sorted runs in one partition that trigger merging all of them.
    #[arg(long, env = "FLEETLAKE_COMPACTION_MAX_RUNS", default_value_t = 8)]
    pub compaction_max_runs: usize,

    /// A partition without a new file for this long is merged into one run.
    #[arg(long, env = "FLEETLAKE_COMPACTION_COLD_AFTER", default_value = "10m", value_parser = parse_duration)]
    pub compaction_cold_after: Duration,

    /// Rows per compacted file (cut at the next series boundary past it).
    #[arg(long, env = "FLEETLAKE_COMPACTION_TARGET_ROWS", default_value_t = 8 << 20)]
    pub compaction_target_rows: u64,

    /// Compacted files each hold one time window of this length (or a
    /// multiple of it when the merge's memory limit needs fewer files open
    /// at once), so the newest minutes over every series read one window;
    /// `0s` cuts files by series only.
    #[arg(long, env = "FLEETLAKE_COMPACTION_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub compaction_window: Duration,

    /// Memory of one compaction in bytes; its sorts spill to disk beyond it.
    #[arg(long, env = "FLEETLAKE_COMPACTION_MEMORY_LIMIT", default_value_t = 512 << 20)]
    pub compaction_memory_limit: usize,

    /// Files replaced by compaction are deleted as soon as no running query
    /// reads them; this keeps them longer, for readers outside the server
    /// (another engine scanning the Parquet directly).
    #[arg(long, env = "FLEETLAKE_GC_GRACE", default_value = "0s", value_parser = parse_duration)]
    pub gc_grace: Duration,

    /// `all` (the default) or `query`: a stateless read replica of the
    /// server that writes `--object-store` (see "Read replicas" in the
    /// README). It refuses writes, deletes and admin requests with a 403.
    #[arg(long, env = "FLEETLAKE_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,

    /// How often a read replica looks for new catalog commits.
    #[arg(long, env = "FLEETLAKE_FOLLOW_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub follow_interval: Duration,

    /// Do not publish the tables as Delta Lake tables (`<db>/<table>/_delta_log`
    /// beside the data, for Spark, Trino, DuckDB and delta-rs).
    #[arg(long, env = "FLEETLAKE_WITHOUT_DELTA")]
    pub without_delta: bool,

    /// A Delta checkpoint (the table's state as Parquet, so readers need
    /// not replay every commit) every this many versions of a table.
    #[arg(long, env = "FLEETLAKE_DELTA_CHECKPOINT_EVERY", default_value_t = fleetlake_storage::delta::checkpoint::CHECKPOINT_EVERY)]
    pub delta_checkpoint_every: u64,

    /// Delta log files (commits and older checkpoints) are deleted once a
    /// newer checkpoint is this old: Delta readers can travel back in time
    /// at least this far (Delta's own default is 30 days).
    #[arg(long, env = "FLEETLAKE_DELTA_LOG_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub delta_log_retention: Duration,

    /// Retention: `DB=DURATION` for a database, `DB.TABLE=DURATION` for one
    /// table (e.g. `fleet=30d`, `fleet.cpu=7d`); repeat the flag or separate
    /// with commas. Rows older than that disappear from queries at once;
    /// their files are deleted by the compactor. Also settable at runtime
    /// with `PUT /api/v1/retention`.
    #[arg(long, env = "FLEETLAKE_RETENTION", value_delimiter = ',', value_parser = parse_retention)]
    pub retention: Vec<Retention>,

    /// Write a catalog checkpoint every N commits (bounds start-up time).
    #[arg(long, env = "FLEETLAKE_CHECKPOINT_EVERY", default_value_t = 100)]
    pub checkpoint_every: u64,

    /// Rollups to materialize: a TOML file of `[[rollup]]` entries (source,
    /// target, every; optional db, delay, fields). See README, "Rollups".
    /// They run in the compactor's loop and on POST /api/v1/admin/rollup.
    #[arg(long, env = "FLEETLAKE_ROLLUPS")]
    pub rollups: Option<PathBuf>,

    /// The database of every API when a request names none: line protocol,
    /// SQL, Grafana, PromQL, label listing and remote write. It always
    /// exists; a read that names another database never written is a 404.
    #[arg(
        long,
        env = "FLEETLAKE_DEFAULT_DB",
        default_value = "fleet",
        alias = "prometheus-db"
    )]
    pub default_db: String,

    /// Directory of rule files (`*.toml`, `[[rule]]` entries; see README,
    /// "Rules"). Re-read when a file changes; a file that does not parse or
    /// validate stops start-up, and later keeps its previous rules.
    #[arg(long, env = "FLEETLAKE_RULES_DIR")]
    pub rules_dir: Option<PathBuf>,

    /// Actions (self-heal rules, all rules together) allowed per hour; 0 = no global limit.
    #[arg(
        long,
        env = "FLEETLAKE_RULES_MAX_ACTIONS_PER_HOUR",
        default_value_t = 100
    )]
    pub rules_max_actions_per_hour: u32,

    /// Actions running at once (all rules together); 0 = no global limit.
    #[arg(long, env = "FLEETLAKE_RULES_MAX_IN_FLIGHT", default_value_t = 10)]
    pub rules_max_in_flight: u32,

    /// This server's URL as receivers should see it (Alertmanager's
    /// generatorURL). Default: http://<the bound address>.
    #[arg(long, env = "FLEETLAKE_RULES_EXTERNAL_URL")]
    pub rules_external_url: Option<String>,

    /// Tables whose last-value cache (each series' newest row, read by
    /// `DISTINCT ON` queries such as the portal's fleet overview) is built
    /// in the background at start-up, in every database that has them
    /// (comma-separated; empty: none, the first query builds it).
    #[arg(
        long,
        env = "FLEETLAKE_WARM_LAST_VALUE",
        value_delimiter = ',',
        default_value = "heartbeat"
    )]
    pub warm_last_value: Vec<String>,

    /// How often newly ended jobs are diagnosed and their results written
    /// to the `diagnosis_*` tables of their database, which the fleet view
    /// (`/api/v1/diagnosis/hosts`) answers from. `0s`: never.
    #[arg(long, env = "FLEETLAKE_DIAGNOSIS_JOURNAL_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub diagnosis_journal_interval: Duration,

    /// How far back the diagnosis journal starts in a database it has not
    /// journaled yet (from the newest job end).
    #[arg(long, env = "FLEETLAKE_DIAGNOSIS_BACKFILL", default_value = "1h", value_parser = parse_duration)]
    pub diagnosis_backfill: Duration,

    /// Programs `exec` actions may run (exact paths, comma-separated).
    /// Empty (the default): no rule can run a command.
    #[arg(long, env = "FLEETLAKE_RULES_EXEC_ALLOW", value_delimiter = ',')]
    pub rules_exec_allow: Vec<PathBuf>,

    /// Hosts (or host:port) webhook and Alertmanager actions may reach,
    /// comma-separated; `*` allows any. Empty (the default): none.
    #[arg(long, env = "FLEETLAKE_RULES_WEBHOOK_ALLOW", value_delimiter = ',')]
    pub rules_webhook_allow: Vec<String>,

    /// Bytes of streaming-rule state (the points of their windows) past
    /// which new streaming rules run as batch SQL instead.
    #[arg(long, env = "FLEETLAKE_RULES_STATE_MEMORY", default_value_t = 1 << 30)]
    pub rules_state_memory: usize,

    /// Largest body of any request but a write (SQL, PromQL, Grafana,
    /// rules, tokens), in bytes; larger → 413.
    #[arg(long, env = "FLEETLAKE_MAX_REQUEST_BYTES", default_value_t = 4 << 20)]
    pub max_request_bytes: usize,

    /// Require a token (`fleetlake token create`) on every request but
    /// /health and /ping, even on a loopback address. Authentication is on
    /// by default whenever --http-bind is not a loopback address.
    #[arg(long, env = "FLEETLAKE_AUTH", conflicts_with = "without_auth")]
    pub auth: bool,

    /// Serve without authentication even on a non-loopback address: anyone
    /// who reaches the port may write, read, delete and define rules.
    #[arg(long, env = "FLEETLAKE_WITHOUT_AUTH")]
    pub without_auth: bool,

    #[clap(flatten)]
    pub demo: crate::demo::DemoArgs,
}

/// Where the object store is: the flags `serve` and `token` share.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory for local state (see `serve --data-dir`).
    #[arg(long, env = "FLEETLAKE_DATA_DIR", default_value = "./fleetlake-data")]
    pub data_dir: PathBuf,

    /// Object store URL (see `serve --object-store`). Default: <data-dir>/store.
    #[arg(long, env = "FLEETLAKE_OBJECT_STORE")]
    pub object_store: Option<String>,
}

impl StoreArgs {
    pub fn object_store_url(&self) -> String {
        store_url(&self.data_dir, self.object_store.as_deref())
    }
}

fn store_url(data_dir: &std::path::Path, object_store: Option<&str>) -> String {
    object_store
        .map(String::from)
        .unwrap_or_else(|| data_dir.join("store").display().to_string())
}

impl ServeArgs {
    pub fn compaction_config(
        &self,
        budget: Arc<MemoryBudget>,
    ) -> fleetlake_compaction::CompactionConfig {
        fleetlake_compaction::CompactionConfig {
            interval: self.compaction_interval,
            l0_trigger: self.compaction_l0_trigger,
            max_runs: self.compaction_max_runs,
            cold_after: self.compaction_cold_after,
            target_rows: self.compaction_target_rows,
            window: self.compaction_window,
            memory_limit: self.compaction_memory_limit,
            gc_grace: self.gc_grace,
            budget,
        }
    }

    pub fn rules_config(&self) -> fleetlake_rules::RulesConfig {
        let limit = |n: u32| (n > 0).then_some(n);
        fleetlake_rules::RulesConfig {
            rules_dir: self.rules_dir.clone(),
            global: fleetlake_rules::safety::GlobalLimits {
                max_actions_per_hour: limit(self.rules_max_actions_per_hour),
                max_in_flight: limit(self.rules_max_in_flight),
            },
            external_url: self.rules_external_url.clone(),
            action_policy: fleetlake_rules::policy::ActionPolicy {
                exec_allow: self.rules_exec_allow.clone(),
                webhook_allow: self.rules_webhook_allow.clone(),
            },
            stream_memory_budget: self.rules_state_memory,
            ..fleetlake_rules::RulesConfig::default()
        }
    }

    /// `--data-dir`, else the default: the demo's data stays out of a
    /// real store.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            PathBuf::from(if self.demo.demo {
                crate::demo::DEMO_DATA_DIR
            } else {
                "./fleetlake-data"
            })
        })
    }

    pub fn object_store_url(&self) -> String {
        store_url(&self.data_dir(), self.object_store.as_deref())
    }

    /// Whether requests need a token: asked for, refused, or by the bind
    /// address (anything but loopback is reachable by others).
    pub fn auth_enabled(&self) -> bool {
        if self.without_auth {
            return false;
        }
        self.auth || !is_loopback(&self.http_bind)
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.wal_dir
            .clone()
            .unwrap_or_else(|| self.data_dir().join("wal"))
    }
}

/// One `--retention` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub db: String,
    pub table: Option<String>,
    pub ttl: Duration,
}

fn parse_retention(s: &str) -> Result<Retention, String> {
    let (target, ttl) = s.split_once('=').ok_or_else(|| {
        format!(
            "invalid retention {s:?}: expected DB=DURATION or DB.TABLE=DURATION, e.g. fleet.cpu=7d"
        )
    })?;
    let (db, table) = match target.split_once('.') {
        Some((db, table)) => (db, Some(table.to_string())),
        None => (target, None),
    };
    if db.is_empty() || table.as_deref() == Some("") {
        return Err(format!(
            "invalid retention {s:?}: empty database or table name"
        ));
    }
    Ok(Retention {
        db: db.to_string(),
        table,
        ttl: parse_duration(ttl)?,
    })
}

/// Whether `bind` (`host:port`) only listens on this machine.
fn is_loopback(bind: &str) -> bool {
    if let Ok(addr) = bind.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let host = bind.rsplit_once(':').map_or(bind, |(h, _)| h);
    host.eq_ignore_ascii_case("localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_is_on_off_loopback() {
        for (bind, loopback) in [
            ("127.0.0.1:8086", true),
            ("[::1]:8086", true),
            ("localhost:8086", true),
            ("0.0.0.0:8086", false),
            ("10.1.2.3:8086", false),
            ("[::]:8086", false),
            ("fleetlake.internal:8086", false),
        ] {
            assert_eq!(is_loopback(bind), loopback, "{bind}");
        }
    }

    #[test]
    fn retention_entries() {
        let r = parse_retention("fleet.cpu=7d").unwrap();
        assert_eq!((r.db.as_str(), r.table.as_deref()), ("fleet", Some("cpu")));
        assert_eq!(r.ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(parse_retention("fleet=1h").unwrap().table, None);
        assert!(parse_retention("fleet").is_err());
        assert!(parse_retention("fleet.=1d").is_err());
        assert!(parse_retention("fleet=1x").is_err());
    }
}
