//! `--object-store s3://bucket/prefix` against a real S3 API: moto's server
//! (from PyPI, installed by `scripts/test`), configured through the standard AWS
//! environment variables. Data files and the catalog land under the prefix;
//! a restart reads them back.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Server, Tsbs, free_port};

pub(crate) struct Moto {
    child: Child,
    pub(crate) url: String,
}

impl Moto {
    pub(crate) fn start() -> Self {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "moto_server must be installed: pip install 'moto[server]' (scripts/test does)",
            );
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    pub(crate) async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::get(&self.url).await.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Keys under `prefix`, via ListObjectsV2.
    async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let body = reqwest::get(format!("{}/{bucket}?list-type=2&prefix={prefix}", self.url))
            .await
            .expect("list")
            .text()
            .await
            .expect("list body");
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }
}

impl Moto {
    /// Creates bucket `name`.
    pub(crate) async fn create_bucket(&self, name: &str) {
        let created = reqwest::Client::new()
            .put(format!("{}/{name}", self.url))
            .send()
            .await
            .expect("create bucket");
        assert!(created.status().is_success(), "{created:?}");
    }

    /// The standard AWS variables that point a process at this server.
    pub(crate) fn env(&self) -> [(&'static str, &str); 5] {
        [
            ("AWS_ENDPOINT", self.url.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn s3_object_store_holds_files_and_catalog() {
    let moto = Moto::start();
    moto.wait_ready().await;
    moto.create_bucket("fleet-bucket").await;
    let env = moto.env();
    let args = ["--object-store", "s3://fleet-bucket/warehouse/one"];
    let tmp = tempfile::tempdir().expect("tempdir");
    let tsbs = Tsbs::new(4);
    // usage_user over the first 30 epochs (the flushed file).
    let expected_sum: i64 = (0..4)
        .flat_map(|h| (0..30).map(move |e| (h, e)))
        .map(|(h, e)| tsbs.value(h, e, 0))
        .sum();
    {
        let mut server = Server::start_with_env(tmp.path(), &args, &env);
        server.write_ok("fleet", &tsbs.body(0, 30)).await;
        server.flush().await;
        // Some rows stay in the WAL only, replayed after the restart.
        server.write_ok("fleet", &tsbs.body(30, 40)).await;
        assert_eq!(
            server.sql_i64("fleet", "SELECT count(*) FROM cpu").await,
            160
        );
        assert!(server.terminate(), "clean exit");
    }
    let keys = moto.keys("fleet-bucket", "warehouse/one/").await;
    assert!(
        keys.iter()
            .any(|k| k.starts_with("warehouse/one/fleet/cpu/day=") && k.ends_with(".parquet")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("warehouse/one/_catalog/commits/")),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| !k.starts_with("warehouse/one/")),
        "everything under the prefix: {keys:?}"
    );
    // Nothing on the local disk but the WAL.
    assert!(!tmp.path().join("store").exists());

    let server = Server::start_with_env(tmp.path(), &args, &env);
    assert_eq!(
        server.sql_i64("fleet", "SELECT count(*) FROM cpu").await,
        160
    );
    let sum = server
        .sql_i64(
            "fleet",
            &format!(
                "SELECT CAST(sum(usage_user) AS BIGINT) FROM cpu WHERE time < to_timestamp_nanos({})",
                tsbs.time(30)
            ),
        )
        .await;
    assert_eq!(sum, expected_sum);

    // The Delta log is in the bucket too: the first flush's file (its day
    // held one file); the last flush's file waits for compaction.
    let options = serde_json::json!({
        "AWS_ENDPOINT_URL": moto.url, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
    });
    let delta = crate::delta::read_delta_at(
        "s3://fleet-bucket/warehouse/one/fleet/cpu",
        None,
        Some(&options),
    );
    assert_eq!(delta["rows"].as_array().map(Vec::len), Some(120), "{delta}");

    // A read replica on the same bucket answers what the writer flushed.
    let replica_dir = tempfile::tempdir().expect("tempdir");
    let replica = Server::start_with_env(
        replica_dir.path(),
        &[
            "--role",
            "query",
            "--object-store",
            "s3://fleet-bucket/warehouse/one",
        ],
        &env,
    );
    assert_eq!(
        replica.sql_i64("fleet", "SELECT count(*) FROM cpu").await,
        160
    );
}
