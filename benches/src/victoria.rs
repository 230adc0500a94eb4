//! VictoriaMetrics as a peer process: started on a free loopback port with a
//! fresh data directory, its memory and disk read off `/proc` and `du`. The
//! end-to-end driver loads the same generated lines into it through its
//! InfluxDB endpoint (`/write`); the hostile-input bench sends it the same
//! requests as fleetlake.
//!
//! VictoriaMetrics acknowledges a write once it is in memory (it flushes to
//! disk every second or so); fleetlake acknowledges after an fsynced WAL
//! append. Ingest rates are quoted with that difference.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::server::proc_status_kb;
use crate::stats::{thousands, truncate};

pub struct Victoria {
    child: Child,
    pub url: String,
    log: PathBuf,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Victoria {
    /// Starts `bin` on loopback with a fresh `data` directory. The data is
    /// from 2016, so retention is 100 years.
    pub async fn start(bin: &Path, data: &Path, log: &Path) -> Result<Self> {
        if data.exists() {
            bail!(
                "{} exists; VictoriaMetrics needs a fresh directory",
                data.display()
            );
        }
        let port = free_port()?;
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(bin)
            .arg(format!("-storageDataPath={}", data.display()))
            .arg("-retentionPeriod=100y")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut vm = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
        };
        let client = reqwest::Client::builder().no_proxy().build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = vm.child.try_wait()? {
                bail!("VictoriaMetrics exited ({status}); log:\n{}", vm.log_tail());
            }
            if let Ok(r) = client.get(format!("{}/health", vm.url)).send().await
                && r.status().is_success()
            {
                return Ok(vm);
            }
            if Instant::now() > deadline {
                bail!(
                    "VictoriaMetrics not healthy within 60 s; log:\n{}",
                    vm.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn peak_rss_mb(&self) -> Option<f64> {
        proc_status_kb(self.child.id(), "VmHWM:").map(|kb| kb as f64 / 1024.0)
    }

    /// SIGTERM (it flushes on shutdown), SIGKILL after 60 s.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        if let Some(s) = self.child.try_wait()? {
            return Ok(s);
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.pid()).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Ok(self.child.wait()?);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn get(&self, client: &reqwest::Client, path: &str) -> Result<String> {
        let r = client.get(format!("{}{path}", self.url)).send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("GET {path}: HTTP {status}: {}", truncate(&text, 500));
        }
        Ok(text)
    }

    /// Samples stored, counted by VictoriaMetrics itself: every sample of
    /// the `cpu_*` metrics in the `hours` before `end_s` (Unix seconds).
    pub async fn count_samples(
        &self,
        client: &reqwest::Client,
        end_s: i64,
        hours: u64,
    ) -> Result<u64> {
        // The range vector (t − hours, t] at t = end − 1 s holds every sample.
        let t = end_s - 1;
        let q = format!(
            "/api/v1/query?query=sum(count_over_time({{__name__%3D~%22cpu_.*%22}}[{hours}h]))&time={t}"
        );
        let text = self.get(client, &q).await?;
        let v: Value = serde_json::from_str(&text)?;
        v.pointer("/data/result/0/value/1")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<f64>().ok())
            .map(|f| f as u64)
            .with_context(|| format!("unexpected answer: {}", truncate(&text, 500)))
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `du -sb PATH` in bytes.
pub fn du_sb(path: &Path) -> Option<u64> {
    let out = Command::new("du").arg("-sb").arg(path).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Polls `du -sb path` every 2 s until it has not changed for `quiet`;
/// returns (bytes, time waited). Gives up after `limit` with the last size.
pub async fn settle(path: &Path, quiet: Duration, limit: Duration) -> (u64, Duration, bool) {
    let started = Instant::now();
    let mut last = du_sb(path).unwrap_or(0);
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = du_sb(path).unwrap_or(0);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return (now, started.elapsed(), true);
        }
        if started.elapsed() >= limit {
            return (now, started.elapsed(), false);
        }
    }
}

/// Sizes of VictoriaMetrics's directory parts: (total, data, indexdb).
pub fn parts(data: &Path) -> (u64, u64, u64) {
    (
        du_sb(data).unwrap_or(0),
        du_sb(&data.join("data")).unwrap_or(0),
        du_sb(&data.join("indexdb")).unwrap_or(0),
    )
}

pub fn describe(label: &str, (total, data, index): (u64, u64, u64), samples: u64) {
    let per = |b: u64| b as f64 / samples.max(1) as f64;
    println!(
        "  {label}: du -sb {} bytes = {:.3} bytes/sample (data/ {} = {:.3}, indexdb/ {} = {:.3})",
        thousands(total),
        per(total),
        thousands(data),
        per(data),
        thousands(index),
        per(index)
    );
}
