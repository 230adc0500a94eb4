//! Starting the real server and talking to it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running `fleetlake serve` on a free port with its own data directory.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server on a fresh temporary directory.
    pub fn start(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_in(&dir, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on `dir` (which may hold an earlier server's data).
    // The child moves into `Server`, whose `Drop` kills and waits for it.
    pub fn start_in(dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(dir, extra, &[])
    }

    /// Starts a server on `dir` with extra environment variables.
    pub fn start_with_env(dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let (child, url) = fleetlake_benches::server::spawn(
            Path::new(env!("CARGO_BIN_EXE_fleetlake")),
            dir,
            extra,
            envs,
            Stdio::inherit(),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        Self {
            child: Some(child),
            url,
            data_dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Peak resident memory of the server so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let pid = self.pid().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM")
            * 1024
    }

    /// Whether the server process still runs, for failure messages: a
    /// request that cannot reach it says whether it died.
    pub fn liveness(&self) -> String {
        let Some(pid) = self.pid() else {
            return "stopped by the test".into();
        };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => match stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
            {
                Some("Z") => "dead (exited; see its stderr above)".into(),
                Some(state) => format!("running (state {state})"),
                None => "unknown".into(),
            },
            Err(_) => "gone".into(),
        }
    }

    /// `kill -9`: no flush, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill");
            c.wait().expect("wait");
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status success.
    pub fn terminate(&mut self) -> bool {
        if let Some(mut c) = self.child.take() {
            let pid = c.id().to_string();
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill -TERM");
            return c.wait().expect("wait").success();
        }
        true
    }

    /// Keeps the data directory after this handle is dropped (for restarts).
    pub fn take_dir(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client")
    }

    /// POSTs line protocol to `/api/v3/write_lp?db=...` and returns (status, body).
    pub async fn write(&self, db: &str, body: &str) -> (u16, String) {
        let r = self
            .client()
            .post(format!(
                "{}/api/v3/write_lp?db={db}&precision=nanosecond",
                self.url
            ))
            .body(body.to_string())
            .send()
            .await
            .expect("write");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Writes and asserts 204.
    pub async fn write_ok(&self, db: &str, body: &str) {
        let (status, text) = self.write(db, body).await;
        assert_eq!(status, 204, "write failed: {text}");
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.client()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("/metrics body")
    }

    /// Runs SQL and returns (status, body text).
    pub async fn sql_raw(&self, db: &str, sql: &str, format: &str) -> (u16, String) {
        let r = self
            .client()
            .post(format!("{}/api/v1/sql", self.url))
            .json(&serde_json::json!({"sql": sql, "db": db, "format": format}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("sql {sql:?}: {e:?}; server {}", self.liveness()));
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Runs SQL, asserts 200, returns the rows as JSON objects.
    pub async fn sql(&self, db: &str, sql: &str) -> Vec<Value> {
        let (status, text) = self.sql_raw(db, sql, "json").await;
        assert_eq!(status, 200, "query {sql:?} failed: {text}");
        serde_json::from_str::<Vec<Value>>(&text).unwrap_or_else(|e| panic!("bad json {e}: {text}"))
    }

    /// The text of an `EXPLAIN [ANALYZE] …` answer: its `plan` column, one
    /// line per row.
    pub async fn plan(&self, db: &str, explain: &str) -> String {
        self.sql(db, explain)
            .await
            .iter()
            .map(|r| r["plan"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs a one-row, one-column query and returns the value as i64.
    pub async fn sql_i64(&self, db: &str, sql: &str) -> i64 {
        let rows = self.sql(db, sql).await;
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        let obj = rows[0].as_object().expect("object");
        obj.values()
            .next()
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("{sql}: {rows:?}"))
    }

    /// POSTs `/api/v1/admin/<action>` (flush, compact, rollup), asserts 200
    /// and returns the JSON answer.
    pub async fn admin(&self, action: &str) -> Value {
        let r = self
            .client()
            .post(format!("{}/api/v1/admin/{action}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, 200, "{action} failed: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{action}: bad json {e}: {text}"))
    }

    /// Writes the simulated fleet of `config` with `faults` faults (the
    /// five classic kinds) to database `fleet`, flushes, and answers its
    /// ground truth.
    pub async fn load_fleet(
        &self,
        config: &fleetlake_sim::SimConfig,
        faults: u32,
    ) -> fleetlake_sim::GroundTruth {
        let options = fleetlake_sim::FleetOptions {
            faults,
            ..Default::default()
        };
        let mut fleet = fleetlake_sim::Fleet::new(config, &options).expect("fleet");
        let mut buf = Vec::new();
        while fleetlake_sim::LineSource::next_chunk(&mut fleet, &mut buf, 20_000) > 0 {
            self.write_ok("fleet", std::str::from_utf8(&buf).expect("utf8"))
                .await;
            buf.clear();
        }
        self.flush().await;
        fleet.ground_truth()
    }

    /// Flushes the write buffer to Parquet (admin endpoint) and asserts success.
    pub async fn flush(&self) {
        let r = self
            .client()
            .post(format!("{}/api/v1/admin/flush", self.url))
            .send()
            .await
            .expect("flush");
        assert_eq!(
            r.status().as_u16(),
            200,
            "flush failed: {:?}",
            r.text().await
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `fleetlake token create` on `dir`'s store and returns the secret.
pub fn create_token(dir: &Path, name: &str, scopes: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetlake"));
    cmd.args(["token", "--data-dir"])
        .arg(dir)
        .args(["create", "--name", name]);
    for s in scopes {
        cmd.args(["--scope", s]);
    }
    let out = cmd.output().expect("run fleetlake token create");
    assert!(
        out.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// A TSBS-style cpu row generator with known values.
pub struct Tsbs {
    pub hosts: usize,
    pub start_ns: i64,
    pub interval_ns: i64,
}

pub const TSBS_FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

impl Tsbs {
    pub fn new(hosts: usize) -> Self {
        Self {
            hosts,
            start_ns: 1_451_606_400_000_000_000, // 2016-01-01T00:00:00Z
            interval_ns: 10_000_000_000,
        }
    }

    /// Deterministic value of field `f` of host `h` at epoch `e`, in [0, 100).
    pub fn value(&self, h: usize, e: usize, f: usize) -> i64 {
        let mut x = (h as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (e as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
            ^ (f as u64).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        x ^= x >> 29;
        (x % 100) as i64
    }

    pub fn time(&self, e: usize) -> i64 {
        self.start_ns + e as i64 * self.interval_ns
    }

    pub fn line(&self, h: usize, e: usize) -> String {
        let region = REGIONS[h % REGIONS.len()];
        let mut s = format!(
            "cpu,hostname=host_{h},region={region},datacenter={region}a,rack={},os=Ubuntu16.04LTS,arch=x64,team=SF,service={},service_version=1,service_environment=production ",
            h % 100,
            h % 20
        );
        for (i, f) in TSBS_FIELDS.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!("{f}={}i", self.value(h, e, i)));
        }
        s.push_str(&format!(" {}\n", self.time(e)));
        s
    }

    /// Lines for epochs `[from, to)`, epoch-major.
    pub fn body(&self, from: usize, to: usize) -> String {
        let mut s = String::new();
        for e in from..to {
            for h in 0..self.hosts {
                s.push_str(&self.line(h, e));
            }
        }
        s
    }
}

/// A port nothing listens on now (for peers started by the tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Line protocol of a finished job `job_id` that starts at `t0`: one stage
/// of four tasks, task 3 reading 18x the others' input (data skew), 200 s
/// from submit to end.
pub fn skewed_job_lp(job_id: &str, t0: i64) -> String {
    const S: i64 = 1_000_000_000;
    let mut lp = format!(
        "job_runs,job_id={job_id},user=u,queue=q status=\"SUCCEEDED\",submit_ns={}i,start_ns={}i,end_ns={}i {}\n\
         job_stages,job_id={job_id},stage_id=0 status=\"SUCCEEDED\",parents=\"\",tasks=4i,attempts=4i,failed_attempts=0i,start_ns={}i,end_ns={}i {}\n",
        t0,
        t0 + 10 * S,
        t0 + 200 * S,
        t0 + 200 * S,
        t0 + 11 * S,
        t0 + 199 * S,
        t0 + 199 * S
    );
    for t in 0..4 {
        let (mib, secs): (i64, i64) = if t == 3 { (9000, 185) } else { (500, 25) };
        lp.push_str(&format!(
            "job_tasks,hostname=host_{t},job_id={job_id},stage_id=0,task_id={t},attempt=0 status=\"SUCCEEDED\",start_ns={}i,end_ns={}i,duration_ms={}i,bytes_read={}i,shuffle_read_bytes=0i,records_read={}i {}\n",
            t0 + 12 * S,
            t0 + (12 + secs) * S,
            secs * 1000,
            mib << 20,
            mib * 4000,
            t0 + (12 + secs) * S
        ));
    }
    lp
}
