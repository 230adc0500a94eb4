//! Another engine reads the warehouse: DuckDB (from PyPI), pointed at
//! `<root>/<db>/<table>/**/*.parquet` with hive partitioning, sees exactly the
//! rows fleetlake answers after a flush.

use std::process::Command;

use crate::common::{Server, Tsbs};

const SCRIPT: &str = r#"
import duckdb, json, sys
glob = sys.argv[1]
con = duckdb.connect()
rows = con.execute(f"""
    SELECT hostname, region, usage_user, usage_idle, epoch_ns(time) AS t, day
    FROM read_parquet('{glob}', hive_partitioning = true)
    ORDER BY hostname, t
""").fetchall()
print(json.dumps([[r[0], r[1], r[2], r[3], r[4], str(r[5])] for r in rows]))
"#;

#[tokio::test]
async fn duckdb_reads_the_same_rows() {
    let server = Server::start(&[]);
    let tsbs = Tsbs {
        // 23:50 on 2015-12-31: the data spans two day partitions.
        start_ns: 1_451_605_800_000_000_000,
        ..Tsbs::new(6)
    };
    // Two flushes: two files per day partition.
    server.write_ok("fleet", &tsbs.body(0, 60)).await;
    server.flush().await;
    server.write_ok("fleet", &tsbs.body(60, 120)).await;
    server.flush().await;

    let ours = server
        .sql(
            "fleet",
            "SELECT hostname, region, usage_user, usage_idle, CAST(time AS BIGINT) AS t, \
             to_char(time, '%Y-%m-%d') AS day FROM cpu ORDER BY hostname, t",
        )
        .await;
    assert_eq!(ours.len(), 6 * 120);

    let glob = server.data_dir.join("store/fleet/cpu/**/*.parquet");
    let out = Command::new("python3")
        .args(["-c", SCRIPT, glob.to_str().unwrap()])
        .output()
        .expect("python3 runs (scripts/test installs duckdb from PyPI)");
    assert!(
        out.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs.len(), ours.len());
    for (a, b) in ours.iter().zip(theirs.iter()) {
        let want = serde_json::json!([
            a["hostname"],
            a["region"],
            a["usage_user"],
            a["usage_idle"],
            a["t"],
            a["day"]
        ]);
        assert_eq!(&want, b, "row differs");
    }
    let days: std::collections::BTreeSet<&str> =
        ours.iter().map(|r| r["day"].as_str().unwrap()).collect();
    assert_eq!(
        days.into_iter().collect::<Vec<_>>(),
        ["2015-12-31", "2016-01-01"]
    );
}
