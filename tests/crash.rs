//! `kill -9` at any moment loses no acknowledged write and duplicates nothing.

use crate::common::{Server, Tsbs};

async fn assert_exactly_once(server: &Server, hosts: usize, epochs: usize) {
    let n = server.sql_i64("fleet", "SELECT count(*) FROM cpu").await;
    assert_eq!(n, (hosts * epochs) as i64, "row count after restart");
    let distinct = server
        .sql_i64(
            "fleet",
            "SELECT count(*) FROM (SELECT DISTINCT hostname, time FROM cpu)",
        )
        .await;
    assert_eq!(distinct, n, "an identity appears twice");
}

#[tokio::test]
async fn kill9_after_acks_replays_the_wal() {
    let tsbs = Tsbs::new(10);
    let mut server = Server::start(&[]);
    for b in 0..10 {
        server
            .write_ok("fleet", &tsbs.body(b * 10, b * 10 + 10))
            .await;
    }
    server.kill9();
    let dir = server.take_dir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    assert_exactly_once(&server, 10, 100).await;
    // The replayed rows carry their original values.
    let v = server
        .sql_i64("fleet", "SELECT usage_user FROM cpu WHERE hostname = 'host_4' AND time = '2016-01-01T00:05:00Z'")
        .await;
    assert_eq!(v, tsbs.value(4, 30, 0));
}

#[tokio::test]
async fn kill9_during_and_after_flushes() {
    let tsbs = Tsbs::new(50);
    let tmp = tempfile::tempdir().unwrap();
    let mut epochs = 0;
    // Each round: acknowledged writes, a flush racing with kill -9 at a
    // different moment, a restart on the same directories.
    for (round, delay_ms) in [0u64, 2, 10, 40, 150].into_iter().enumerate() {
        let mut server = Server::start_in(tmp.path(), &[]);
        for _ in 0..3 {
            server
                .write_ok("fleet", &tsbs.body(epochs, epochs + 20))
                .await;
            epochs += 20;
        }
        let url = server.url.clone();
        let flush = tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(format!("{url}/api/v1/admin/flush"))
                .send()
                .await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        server.kill9();
        let _ = flush.await;
        let server = Server::start_in(tmp.path(), &[]);
        assert_exactly_once(&server, 50, epochs).await;
        // Rewriting an already-acknowledged batch after the crash changes nothing.
        if round == 2 {
            server.write_ok("fleet", &tsbs.body(0, 20)).await;
            assert_exactly_once(&server, 50, epochs).await;
        }
        drop(server);
    }
}

/// A second server on a running one's data directory refuses to start
/// (it would delete the first's unfinished flush files as a crash's
/// orphans), and names the holder; once the first is gone, a restart
/// takes the directory over.
#[tokio::test]
async fn a_second_server_on_the_same_directory_refuses_to_start() {
    let tsbs = Tsbs::new(3);
    let mut server = Server::start(&[]);
    server.write_ok("fleet", &tsbs.body(0, 5)).await;
    let dir = server.take_dir().expect("data dir");
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_fleetlake"))
        .args(["serve", "--http-bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run a second server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while second.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second server on the same directory kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = second.wait_with_output().expect("its output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second server started: {stderr}");
    let pid = server.pid().expect("running").to_string();
    assert!(
        stderr.contains("another fleetlake server") && stderr.contains(&pid),
        "{stderr}"
    );
    // The first one still answers, with every row.
    assert_eq!(
        server.sql_i64("fleet", "SELECT count(*) FROM cpu").await,
        15
    );

    server.kill9();
    let server = Server::start_in(dir.path(), &[]);
    assert_eq!(
        server.sql_i64("fleet", "SELECT count(*) FROM cpu").await,
        15
    );
}
