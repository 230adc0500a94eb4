//! Catalog start-up with many commits (issue 4: "catalog checkpoints keep
//! start-up fast as commits accumulate: measure start-up with 10,000 commits
//! and 100,000 files in the catalog").
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/catalog_startup --commits 10000 --files-per-commit 10 \
//!     --checkpoint-every 100 --runs 7
//! ```
//!
//! Steps:
//! 1. Build a catalog on a local directory store (`open_local`, the server's
//!    store with an fsync per put) through `Catalog::commit`: one commit that
//!    creates the database and ten tables, then `--commits` flush-like commits
//!    of `--files-per-commit` files each (one file per table, 5 minutes of
//!    data, so the files spread over days as a real flush every 5 minutes
//!    would), each with a `PersistedWal` action, as the ingester commits.
//!    Commit latency is reported per thousand commits: every commit copies
//!    the tables it touches, so its cost grows with the catalog.
//! 2. Time `Catalog::load` in a fresh process (this binary with
//!    `--load-once`), `--runs` times per case, median:
//!    - as built: the newest checkpoint plus the commits after it;
//!    - newest checkpoint hidden: the one before it plus about
//!      `--checkpoint-every` commits, the worst case between checkpoints;
//!    - every checkpoint hidden: all commits replayed — what start-up costs
//!      without checkpoints (the commit files are the same ones a catalog
//!      built with checkpoints disabled would have).
//!
//!    Hidden checkpoints are moved out of the store and put back afterwards.
//! 3. Sizes: the commit log, the checkpoints, the newest checkpoint.
//!
//! The page cache is warm (the store was just written); a cold object store
//! (S3) adds one GET per commit replayed plus the checkpoint's transfer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use fleetlake_storage::catalog::{Action, Catalog, FileMeta, now_ns};
use fleetlake_storage::schema::{ColumnDef, ColumnKind, FieldType};
use fleetlake_storage::store::open_local;
use serde_json::Value;

const DB: &str = "fleet";
const START_NS: i64 = 1_451_606_400_000_000_000; // 2016-01-01T00:00:00Z
const FLUSH_NS: i64 = 300_000_000_000; // the server's default --flush-interval

/// The TSBS devops host tags, highest cardinality first (as flushes order them).
const HOST_TAGS: [&str; 10] = [
    "hostname",
    "rack",
    "service",
    "datacenter",
    "region",
    "team",
    "os",
    "service_environment",
    "arch",
    "service_version",
];

/// Ten tables: the nine TSBS devops tables and a job-telemetry table, with
/// their extra tags and number of fields.
const TABLES: [(&str, &[&str], usize); 10] = [
    ("cpu", &[], 10),
    ("diskio", &["serial"], 7),
    ("disk", &["path", "fstype"], 7),
    ("kernel", &[], 6),
    ("mem", &[], 9),
    ("net", &["interface"], 8),
    ("nginx", &["port", "server"], 7),
    ("postgresl", &[], 16),
    ("redis", &["port", "server"], 31),
    ("job_tasks", &["job", "stage", "task"], 8),
];

#[derive(Debug, Parser)]
#[command(
    name = "catalog_startup",
    about = "Catalog start-up time with and without checkpoints (issue 4)"
)]
struct Args {
    /// Flush-like commits after the one that creates the tables.
    #[arg(long, default_value_t = 10_000)]
    commits: u64,
    /// Files added by each commit (one per table, cycling over ten tables).
    #[arg(long, default_value_t = 10)]
    files_per_commit: usize,
    /// Checkpoint every N commits while building (the server's default is
    /// 100); 0 builds without checkpoints.
    #[arg(long, default_value_t = 100)]
    checkpoint_every: u64,
    /// Loads per case (each in a fresh process); the median is reported.
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Work directory (must be empty or absent); default: a fresh temp dir.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    keep: bool,
    /// Internal: load the store at this directory once and print one JSON line.
    #[arg(long, hide = true, value_name = "STORE")]
    load_once: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if let Some(store) = &args.load_once {
        return runtime.block_on(load_once(store));
    }
    runtime.block_on(run(args))
}

/// One start-up: what the server does first, timed inside the process.
async fn load_once(dir: &Path) -> Result<()> {
    let store = open_local(dir)?;
    let t = Instant::now();
    let catalog = Catalog::load(store, 100).await?;
    let elapsed = t.elapsed();
    let state = catalog.state();
    let line = serde_json::json!({
        "load_ms": elapsed.as_secs_f64() * 1e3,
        "seq": state.seq,
        "files": state.file_count(),
        "vm_hwm_kb": proc_status_kb("VmHWM:"),
        "vm_rss_kb": proc_status_kb("VmRSS:"),
    });
    println!("{line}");
    Ok(())
}

fn proc_status_kb(key: &str) -> Option<u64> {
    fleetlake_benches::server::proc_status_kb(std::process::id(), key)
}

/// splitmix64: file ids and sizes, reproducible.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

/// The day partition (`YYYY-MM-DD`) of a time.
fn day_of(ns: i64) -> String {
    fleetlake_time::rfc3339(ns)[..10].to_string()
}

fn sort_order(extra: &[&str]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    // Extra tags of these tables have more values than the host tags after
    // `hostname`, so a cardinality-ordered flush puts them second.
    order.push(HOST_TAGS[0].to_string());
    order.extend(extra.iter().map(|t| t.to_string()));
    order.extend(HOST_TAGS[1..].iter().map(|t| t.to_string()));
    order
}

fn create_actions() -> Vec<Action> {
    let mut actions = vec![Action::CreateDatabase { db: DB.into() }];
    for (table, extra, fields) in TABLES {
        actions.push(Action::CreateTable {
            db: DB.into(),
            table: table.into(),
        });
        let mut columns: Vec<ColumnDef> = HOST_TAGS
            .iter()
            .chain(extra)
            .map(|t| ColumnDef {
                name: t.to_string(),
                kind: ColumnKind::Tag,
            })
            .collect();
        columns.extend((0..fields).map(|i| ColumnDef {
            name: format!("field_{i}"),
            kind: ColumnKind::Field(FieldType::Integer),
        }));
        actions.push(Action::AddColumns {
            db: DB.into(),
            table: table.into(),
            columns,
        });
        actions.push(Action::SetSortKey {
            db: DB.into(),
            table: table.into(),
            tags: sort_order(extra),
        });
    }
    actions
}

/// The actions of flush `i`: one file per table for 5 minutes of data.
fn flush_actions(i: u64, files_per_commit: usize, rng: &mut Rng) -> Vec<Action> {
    let t0 = START_NS + i as i64 * FLUSH_NS;
    let day = day_of(t0);
    let files = (0..files_per_commit)
        .map(|k| {
            let (table, extra, fields) = TABLES[k % TABLES.len()];
            // 5 minutes of 10 s samples from 2,000-20,000 series.
            let rows = 30 * (2_000 + rng.next_u64() % 18_000);
            let id = rng.uuid();
            FileMeta {
                path: format!("{DB}/{table}/day={day}/{id}.parquet"),
                db: DB.into(),
                table: table.into(),
                day: day.clone(),
                rows,
                // About 0.45 bytes per sample, as flush files measure.
                bytes: rows * fields as u64 * 45 / 100 + 4096,
                min_time: t0,
                max_time: t0 + FLUSH_NS - 10_000_000_000,
                seq: i + 1,
                created_ns: now_ns(),
                level: 0,
                run: None,
                sort_order: sort_order(extra),
                deletes_applied: 0,
            }
        })
        .collect();
    vec![
        Action::AddFiles { files },
        Action::PersistedWal { wal_seq: i + 1 },
    ]
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// (files, bytes) of the regular files directly in `dir`.
fn dir_size(dir: &Path) -> Result<(u64, u64)> {
    let mut n = 0;
    let mut bytes = 0;
    if !dir.exists() {
        return Ok((0, 0));
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            n += 1;
            bytes += meta.len();
        }
    }
    Ok((n, bytes))
}

/// Checkpoint files of the store, oldest first.
fn checkpoints(store: &Path) -> Result<Vec<PathBuf>> {
    let dir = store.join("_catalog/checkpoints");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    Ok(files)
}

fn checkpoint_seq(path: &Path) -> u64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn run(args: Args) -> Result<()> {
    if args.commits == 0 || args.files_per_commit == 0 || args.runs == 0 {
        bail!("--commits, --files-per-commit and --runs must be positive");
    }
    let (dir, temp) = match &args.dir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d)?.next().is_some() {
                bail!("--dir {} is not empty", d.display());
            }
            (d.clone(), false)
        }
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos();
            (
                std::env::temp_dir()
                    .join(format!("fleetlake-catalog-{}-{nanos}", std::process::id())),
                true,
            )
        }
    };
    let store_dir = dir.join("store");
    let hidden_dir = dir.join("hidden-checkpoints");
    std::fs::create_dir_all(&hidden_dir)?;
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("fleetlake catalog start-up benchmark");
    println!(
        "command:  {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    println!(
        "machine:  {} cores, loadavg(1/5/15 min) {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "catalog:  {} commits x {} files = {} files; checkpoint every {}; store {}",
        args.commits,
        args.files_per_commit,
        args.commits * args.files_per_commit as u64,
        if args.checkpoint_every == 0 {
            "never".to_string()
        } else {
            args.checkpoint_every.to_string()
        },
        store_dir.display()
    );

    // 1. Build.
    println!();
    println!("[build] Catalog::commit on open_local (fsync per put)");
    let store = open_local(&store_dir)?;
    let every = if args.checkpoint_every == 0 {
        u64::MAX
    } else {
        args.checkpoint_every
    };
    let catalog = Catalog::load(Arc::clone(&store), every).await?;
    catalog.commit(create_actions()).await?;
    let mut rng = Rng(0x00C0_FFEE);
    let started = Instant::now();
    let mut block: Vec<f64> = Vec::new();
    let mut block_started = Instant::now();
    let mut block_first = 1;
    let mut all_checkpoint_commits: Vec<f64> = Vec::new();
    for i in 0..args.commits {
        let actions = flush_actions(i, args.files_per_commit, &mut rng);
        let t = Instant::now();
        let state = catalog.commit(actions).await?;
        let took = t.elapsed().as_secs_f64() * 1e3;
        if state.seq.is_multiple_of(every) {
            all_checkpoint_commits.push(took);
        } else {
            block.push(took);
        }
        if (i + 1) % 1000 == 0 || i + 1 == args.commits {
            block.sort_by(f64::total_cmp);
            println!(
                "  commits {:>6}..{:<6} files {:>7}: median {:.2} ms, p99 {:.2} ms, max {:.2} ms (without checkpoint commits); {:.1} s for the block",
                block_first,
                i + 1,
                state.file_count(),
                median(&block),
                percentile(&block, 99.0),
                block.last().copied().unwrap_or(f64::NAN),
                block_started.elapsed().as_secs_f64()
            );
            block.clear();
            block_started = Instant::now();
            block_first = i + 2;
        }
    }
    catalog.checkpoint_written().await;
    let build = started.elapsed();
    let state = catalog.state();
    drop(catalog);
    println!(
        "  built {} commits, {} files in {:.1} s ({:.1} commits/s)",
        state.seq,
        state.file_count(),
        build.as_secs_f64(),
        args.commits as f64 / build.as_secs_f64()
    );
    if !all_checkpoint_commits.is_empty() {
        all_checkpoint_commits.sort_by(f64::total_cmp);
        println!(
            "  commits that wrote a checkpoint ({}): median {:.1} ms, max {:.1} ms",
            all_checkpoint_commits.len(),
            median(&all_checkpoint_commits),
            all_checkpoint_commits.last().copied().unwrap_or(f64::NAN)
        );
    }

    // 2. Sizes.
    println!();
    println!("[sizes]");
    let (n_commits, commit_bytes) = dir_size(&store_dir.join("_catalog/commits"))?;
    let (n_cps, cp_bytes) = dir_size(&store_dir.join("_catalog/checkpoints"))?;
    println!(
        "  commit log: {n_commits} files, {:.1} MB ({:.0} bytes/commit)",
        mb(commit_bytes),
        commit_bytes as f64 / n_commits.max(1) as f64
    );
    let cps = checkpoints(&store_dir)?;
    let newest_cp = cps.last().map(|p| std::fs::metadata(p).map(|m| m.len()));
    let newest_cp = newest_cp.transpose()?;
    println!(
        "  checkpoints: {n_cps} files, {:.1} MB in all; newest {} = {:.1} MB ({:.0} bytes/file in the catalog)",
        mb(cp_bytes),
        cps.last()
            .and_then(|p| p.file_name())
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or("-".into()),
        mb(newest_cp.unwrap_or(0)),
        newest_cp.unwrap_or(0) as f64 / state.file_count().max(1) as f64
    );

    // 3. Start-up.
    println!();
    println!(
        "[start-up] Catalog::load in a fresh process, {} runs per case",
        args.runs
    );
    let exe = std::env::current_exe()?;
    let mut cases: Vec<(&str, usize)> = Vec::new();
    if cps.is_empty() {
        cases.push(("no checkpoint: replay every commit", 0));
    } else {
        cases.push(("newest checkpoint + commits after it", 0));
        if cps.len() >= 2 {
            cases.push(("previous checkpoint + commits after it (worst case)", 1));
        }
        cases.push(("no checkpoint: replay every commit", cps.len()));
    }
    let mut summary = Vec::new();
    for (name, hide) in cases {
        let hidden: Vec<PathBuf> = cps[cps.len() - hide..].to_vec();
        for p in &hidden {
            std::fs::rename(p, hidden_dir.join(p.file_name().expect("a file name")))?;
        }
        let result = time_loads(&exe, &store_dir, args.runs);
        for p in &hidden {
            std::fs::rename(hidden_dir.join(p.file_name().expect("a file name")), p)?;
        }
        let Loads {
            load_ms,
            process_ms,
            hwm_kb,
            seq,
            files,
        } = result?;
        let from = if hide < cps.len() {
            checkpoint_seq(&cps[cps.len() - hide - 1])
        } else {
            0
        };
        println!(
            "  {name}: checkpoint seq {from}, {} commits replayed, seq {seq}, {files} files",
            seq - from
        );
        println!(
            "    Catalog::load median {:.1} ms (min {:.1}, max {:.1}); process start to exit median {:.1} ms; peak RSS {:.0} MB",
            median(&load_ms),
            load_ms.first().copied().unwrap_or(f64::NAN),
            load_ms.last().copied().unwrap_or(f64::NAN),
            median(&process_ms),
            hwm_kb as f64 / 1024.0
        );
        summary.push((name, seq - from, median(&load_ms), hwm_kb));
    }
    println!();
    println!("| case | commits replayed | Catalog::load, median | peak RSS |");
    println!("|---|---|---|---|");
    for (name, replayed, ms, hwm) in &summary {
        println!(
            "| {name} | {replayed} | {ms:.0} ms | {:.0} MB |",
            *hwm as f64 / 1024.0
        );
    }

    if temp && !args.keep {
        std::fs::remove_dir_all(&dir)?;
    } else {
        println!("work dir kept: {}", dir.display());
    }
    Ok(())
}

/// What `runs` start-ups measured.
struct Loads {
    /// `Catalog::load` alone, ms, sorted.
    load_ms: Vec<f64>,
    /// Process start to exit, ms, sorted.
    process_ms: Vec<f64>,
    /// The largest peak RSS of the runs, kB.
    hwm_kb: u64,
    seq: u64,
    files: u64,
}

/// Runs `--load-once` `runs` times.
fn time_loads(exe: &Path, store: &Path, runs: usize) -> Result<Loads> {
    let mut load_ms = Vec::new();
    let mut process_ms = Vec::new();
    let mut hwm = 0;
    let mut seq = 0;
    let mut files = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(exe)
            .arg("--load-once")
            .arg(store)
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        process_ms.push(t.elapsed().as_secs_f64() * 1e3);
        if !out.status.success() {
            bail!(
                "load failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let line: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("output {}", String::from_utf8_lossy(&out.stdout)))?;
        let num = |k: &str| line.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        load_ms.push(num("load_ms"));
        hwm = hwm.max(num("vm_hwm_kb") as u64);
        seq = num("seq") as u64;
        files = num("files") as u64;
    }
    load_ms.sort_by(f64::total_cmp);
    process_ms.sort_by(f64::total_cmp);
    Ok(Loads {
        load_ms,
        process_ms,
        hwm_kb: hwm,
        seq,
        files,
    })
}
