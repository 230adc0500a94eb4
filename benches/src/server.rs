//! A `fleetlake serve` child process for the benchmark binaries: started on
//! a free port and a given data directory, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub url: String,
}

impl Server {
    /// Starts `bin serve` on `dir` with `extra` arguments and waits until it listens.
    ///
    /// # Errors
    /// The binary does not start, or exits before listening.
    pub fn start(bin: &Path, dir: &Path, extra: &[&str]) -> Result<Self> {
        let mut child = Command::new(bin)
            .args(["serve", "--http-bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let url = loop {
            match lines.next() {
                Some(line) => {
                    if let Some(u) = line?.strip_prefix("fleetlake listening on ") {
                        break u.trim().trim_end_matches('/').to_string();
                    }
                }
                None => bail!("{} exited before listening", bin.display()),
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
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
