//! A `fleetlake serve` child process for the benchmark binaries: started on
//! a free port and a given data directory, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Starts `bin serve --http-bind 127.0.0.1:0 --data-dir dir` with `extra`
/// arguments and `envs`, and waits (at most two minutes) until it prints the
/// address it listens on. The one launcher of the server for tests and
/// benchmarks: they own the child as they need (kill -9, SIGTERM, logs).
///
/// # Errors
/// The binary does not start, exits or closes stdout before listening, or
/// does not listen within the deadline.
pub fn spawn(
    bin: &Path,
    dir: &Path,
    extra: &[&str],
    envs: &[(&str, &str)],
    stderr: Stdio,
) -> Result<(Child, String)> {
    let mut child = Command::new(bin)
        .args(["serve", "--http-bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        // Quiet unless asked: `FLEETLAKE_BENCH_SERVER_LOG=fleetlake_rules=info`.
        .env(
            "RUST_LOG",
            std::env::var("FLEETLAKE_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        // Keep draining so the server never blocks on a full pipe.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("fleetlake listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.trim().trim_end_matches('/').to_string());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(url) => return Ok((child, url)),
            Err(RecvTimeoutError::Timeout) => {
                if let Some(status) = child.try_wait()? {
                    bail!("{} exited ({status}) before listening", bin.display());
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("{} did not print its address within 120 s", bin.display());
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.wait()?;
                bail!(
                    "{} closed stdout ({status}) before listening",
                    bin.display()
                );
            }
        }
    }
}

pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub url: String,
}

impl Server {
    /// Starts `bin serve` on `dir` with `extra` arguments ([`spawn`]).
    ///
    /// # Errors
    /// As [`spawn`].
    pub fn start(bin: &Path, dir: &Path, extra: &[&str]) -> Result<Self> {
        let (child, url) = spawn(bin, dir, extra, &[], Stdio::inherit())?;
        Ok(Self { child, url })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server the way an operator would (SIGTERM) and waits for it.
    ///
    /// # Errors
    /// `kill` or `wait` failed.
    pub fn stop(mut self) -> Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A no-op after `stop` (the child was reaped).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User plus system CPU seconds `pid` has used so far (Linux `/proc`).
///
/// # Errors
/// `/proc/<pid>/stat` unreadable or not in the documented format.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("/proc stat format")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    let ticks: f64 = f
        .get(11..13)
        .context("/proc stat fields")?
        .iter()
        .map(|x| x.parse::<f64>())
        .sum::<Result<f64, _>>()?;
    // USER_HZ is 100 on every Linux architecture fleetlake builds for.
    Ok(ticks / 100.0)
}

/// A `kB` figure of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`, …).
pub fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
