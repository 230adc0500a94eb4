//! Distributed SQL on Apache Ballista: a scheduler and two executors
//! (`fleetlake ballista scheduler|executor`) answer SQL over a writer's
//! flushed tables as the writer answers it — with overlapping flushes
//! de-duplicated and deletes applied on the cluster, then after compaction.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Server, Tsbs, free_port};

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fleetlake(args: &[&str], envs: &[(&str, &str)]) -> Proc {
    fleetlake_logged(args, envs, "warn", Stdio::inherit())
}

/// `fleetlake` with its log at level `log` going to `stderr`.
fn fleetlake_logged(args: &[&str], envs: &[(&str, &str)], log: &str, stderr: Stdio) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_fleetlake"))
            .args(args)
            .env("RUST_LOG", log)
            .env("NO_COLOR", "1")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("fleetlake starts"),
    )
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ballista_sql(scheduler: u16, store: &str, envs: &[(&str, &str)], sql: &str) -> Vec<Value> {
    let out = ballista_run(scheduler, store, envs, sql);
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{sql}: {e}: {text}"))
}

fn ballista_run(
    scheduler: u16,
    store: &str,
    envs: &[(&str, &str)],
    sql: &str,
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fleetlake"))
        .args(["ballista", "sql", "--scheduler"])
        .arg(format!("df://127.0.0.1:{scheduler}"))
        .arg("--store")
        .arg(store)
        .args(["--db", "fleet", sql])
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied())
        .output()
        .expect("fleetlake ballista sql runs")
}

const QUERIES: [&str; 4] = [
    "SELECT count(*) AS n FROM cpu",
    // fleetlake's own functions, their partial states merged across stages.
    "SELECT hostname, increase(usage_idle, time) AS inc, robust_zscore(usage_user, time) AS z FROM cpu GROUP BY hostname ORDER BY hostname",
    "SELECT hostname, max(usage_user) AS m, sum(usage_idle) AS s, count(*) AS n FROM cpu GROUP BY hostname ORDER BY hostname",
    "SELECT region, CAST(date_bin(INTERVAL '10 minutes', time) AS BIGINT) AS t, sum(usage_system) AS s FROM cpu GROUP BY region, t ORDER BY region, t",
];

#[tokio::test]
async fn two_ballista_executors_answer_as_the_writer_does() {
    let writer = Server::start(&["--compaction-interval", "0"]);
    let store = writer.data_dir.join("store");
    cluster_answers_as_the_writer(&writer, store.to_str().unwrap(), &[]).await;
}

/// The same on an S3 store (moto's server): the writer, the scheduler,
/// the executors and the client all reach the bucket.
#[tokio::test]
async fn two_ballista_executors_on_s3_answer_as_the_writer_does() {
    let moto = crate::s3::Moto::start();
    moto.wait_ready().await;
    moto.create_bucket("lake").await;
    let env = moto.env();
    let tmp = tempfile::tempdir().unwrap();
    let store = "s3://lake/fleetlake";
    let writer = Server::start_with_env(
        tmp.path(),
        &["--compaction-interval", "0", "--object-store", store],
        &env,
    );
    cluster_answers_as_the_writer(&writer, store, &env).await;
}

/// `tsbs`'s rows of epochs `[from, to)` with every `usage_user` changed.
fn overwritten(tsbs: &Tsbs, from: usize, to: usize) -> String {
    tsbs.body(from, to).replace("usage_user=", "usage_user=1")
}

async fn cluster_answers_as_the_writer(writer: &Server, store: &str, env: &[(&str, &str)]) {
    let tsbs = Tsbs {
        // The rows span two days.
        start_ns: 1_451_605_800_000_000_000,
        ..Tsbs::new(12)
    };
    writer.write_ok("fleet", &tsbs.body(0, 200)).await;
    writer.flush().await;
    writer.write_ok("fleet", &tsbs.body(200, 360)).await;
    writer.flush().await;
    // A third file over both: its rows replace theirs, field by field.
    writer
        .write_ok("fleet", &overwritten(&tsbs, 150, 250))
        .await;
    writer.flush().await;
    let (status, body) = writer
        .sql_raw(
            "fleet",
            &format!(
                "DELETE FROM cpu WHERE hostname = 'host_3' AND time >= '{}'",
                chrono::DateTime::from_timestamp_nanos(tsbs.time(300)).to_rfc3339()
            ),
            "json",
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let scheduler = free_port();
    let _scheduler = fleetlake(
        &[
            "ballista",
            "scheduler",
            "--bind",
            &format!("127.0.0.1:{scheduler}"),
            "--store",
            store,
        ],
        env,
    );
    wait_listening(scheduler);
    let work = tempfile::tempdir().unwrap();
    let mut executors = Vec::new();
    for i in 0..2 {
        let (port, grpc) = (free_port(), free_port());
        let dir = work.path().join(format!("executor-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(work.path().join(format!("executor-{i}.log"))).unwrap();
        executors.push(fleetlake_logged(
            &[
                "ballista",
                "executor",
                "--scheduler",
                &format!("127.0.0.1:{scheduler}"),
                "--port",
                &port.to_string(),
                "--grpc-port",
                &grpc.to_string(),
                "--concurrent-tasks",
                "1",
                "--work-dir",
                dir.to_str().unwrap(),
                "--store",
                store,
            ],
            env,
            "warn,ballista_executor::executor_server=info",
            log.into(),
        ));
        wait_listening(port);
    }

    // The overlap and the delete are the cluster's to resolve.
    let plan = ballista_sql(scheduler, store, env, &format!("EXPLAIN {}", QUERIES[0]));
    let plan = serde_json::to_string(&plan).unwrap();
    assert!(plan.contains("DedupExec"), "{plan}");
    let answers_as_the_writer = async || {
        for q in QUERIES {
            let want = writer.sql("fleet", q).await;
            assert!(!want.is_empty(), "{q}");
            let got = ballista_sql(scheduler, store, env, q);
            assert_eq!(got, want, "{q}");
        }
    };
    answers_as_the_writer().await;
    let n = writer.sql_i64("fleet", QUERIES[0]).await;
    assert_eq!(n, 12 * 360 - 60, "each row once, host_3's last 60 deleted");
    // Compaction rewrites the day into one run, the delete applied.
    writer.admin("compact").await;
    answers_as_the_writer().await;
    // The cluster runs whatever plan reaches the scheduler: it reaches no
    // store but ours (the executor refuses the local file system), and ours
    // only to read.
    let outside = work.path().join("outside.csv");
    std::fs::write(&outside, "a\n1\n").unwrap();
    let copied = work.path().join("copied.csv");
    for sql in [
        format!(
            "COPY (SELECT 1 AS a) TO '{}' STORED AS CSV",
            copied.display()
        ),
        "COPY (SELECT 1 AS a) TO 'fleetlake://data/fleet/evil.csv' STORED AS CSV".to_string(),
    ] {
        let out = ballista_run(scheduler, store, env, &sql);
        assert!(!out.status.success(), "{sql} ran");
    }
    assert!(!copied.exists());
    // Nor does the client read files by name.
    let read = ballista_run(
        scheduler,
        store,
        env,
        &format!("SELECT * FROM '{}'", outside.display()),
    );
    assert!(!read.status.success(), "read a file outside the store");
    // The store is as the writer left it.
    for q in QUERIES {
        assert_eq!(
            ballista_sql(scheduler, store, env, q),
            writer.sql("fleet", q).await
        );
    }
    // Both executors ran tasks (a job's shuffle files are removed when it
    // ends, so their logs tell).
    for i in 0..2 {
        let log = std::fs::read_to_string(work.path().join(format!("executor-{i}.log"))).unwrap();
        let tasks = log.matches("Execute task").count();
        assert!(tasks > 0, "executor {i} ran no task: {log}");
    }
}
