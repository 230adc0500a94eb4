//! The compaction step: `POST /api/v1/admin/compact`, timed, with the
//! server's resident memory sampled while it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::Value;

use crate::{read_proc_cpu_secs, read_proc_status_kb, truncate};

/// What one forced compaction cost.
pub struct Measured {
    pub wall: Duration,
    pub answer: Value,
    /// Resident memory before the request (MB).
    pub rss_before_mb: f64,
    /// Highest resident memory seen while it ran (MB): the kernel's
    /// high-water mark after resetting it, else the highest 20 ms sample.
    pub rss_peak_mb: f64,
    pub peak_from_hwm: bool,
    pub samples: usize,
    /// Server CPU seconds spent during the request.
    pub cpu_secs: Option<f64>,
}

impl Measured {
    pub fn input_rows(&self) -> u64 {
        self.sum("input_rows")
    }

    pub fn sum(&self, key: &str) -> u64 {
        self.answer
            .get("compactions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get(key).and_then(Value::as_u64))
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Samples VmRSS of `pid` every 20 ms until stopped; returns (max kB, samples).
fn sampler(pid: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, usize)> {
    std::thread::spawn(move || {
        let (mut peak, mut n) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            if let Some(kb) = read_proc_status_kb(&pid, "VmRSS:") {
                peak = peak.max(kb);
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (peak, n)
    })
}

pub async fn compact(
    client: &reqwest::Client,
    base: &str,
    pid: &str,
    ticks: f64,
) -> Result<Measured> {
    let rss_before = read_proc_status_kb(pid, "VmRSS:").unwrap_or(0);
    // Writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS,
    // so the high-water mark afterwards is the compaction's own.
    let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let cpu0 = read_proc_cpu_secs(pid, ticks);
    let stop = Arc::new(AtomicBool::new(false));
    let sampling = sampler(pid.to_string(), stop.clone());
    let t = Instant::now();
    let resp = client
        .post(format!("{base}/api/v1/admin/compact"))
        .timeout(Duration::from_secs(4 * 3600))
        .send()
        .await;
    let wall = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (sampled_peak, samples) = sampling.join().unwrap_or((0, 0));
    let hwm = read_proc_status_kb(pid, "VmHWM:");
    let cpu_secs = read_proc_cpu_secs(pid, ticks).zip(cpu0).map(|(b, a)| b - a);
    let resp = resp?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("compact answered HTTP {status}: {}", truncate(&text, 2000));
    }
    let answer: Value = serde_json::from_str(&text)?;
    let (peak, from_hwm) = match hwm {
        Some(h) if hwm_reset => (h.max(sampled_peak), true),
        _ => (sampled_peak, false),
    };
    Ok(Measured {
        wall,
        answer,
        rss_before_mb: rss_before as f64 / 1024.0,
        rss_peak_mb: peak as f64 / 1024.0,
        peak_from_hwm: from_hwm,
        samples,
        cpu_secs,
    })
}
