//! Hostile input, side by side: the requests of issue 15 (amplifying
//! remote-write bodies, millions of bad lines, tables of thousands of
//! columns, a body of gigabytes, queries that build huge values or nest
//! deeply) sent to a fresh `fleetlake serve` and, where the request means
//! something to it, to a fresh VictoriaMetrics. For each: the status, the
//! time to the answer, the body bytes sent before it, and the server's
//! resident memory (VmRSS after, VmHWM so far). Both servers must still
//! answer `/health` at the end.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/hostile --fleetlake target/release/fleetlake \
//!     --victoria-metrics /usr/bin/victoria-metrics
//! ```
//!
//! Exit status 2 when a server died or answered a hostile request with 2xx
//! or 5xx.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use fleetlake_benches::server::{Server, proc_status_kb};
use fleetlake_benches::stats::truncate;
use fleetlake_benches::victoria::Victoria;
use fleetlake_ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode, snappy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Parser)]
#[command(
    name = "hostile",
    about = "Hostile requests, answers and memory, beside a peer"
)]
struct Args {
    /// The fleetlake binary.
    #[arg(long)]
    fleetlake: PathBuf,
    /// VictoriaMetrics binary; without it, fleetlake alone.
    #[arg(long)]
    victoria_metrics: Option<PathBuf>,
    /// Size of the endless body, in MiB.
    #[arg(long, default_value_t = 7_680)]
    endless_mib: u64,
}

/// What a request is, and where each server takes it.
enum Body {
    /// A POST to a path: (fleetlake path, VictoriaMetrics path or none).
    Post {
        fleetlake: &'static str,
        victoria: Option<&'static str>,
        headers: Vec<(&'static str, &'static str)>,
        body: Vec<u8>,
    },
    /// A chunked POST of `mib` MiB of line protocol, stopped at the answer.
    Endless {
        fleetlake: &'static str,
        victoria: &'static str,
        mib: u64,
    },
}

struct Outcome {
    status: String,
    secs: f64,
    sent: u64,
    rss_mib: f64,
    hwm_mib: f64,
    answer: String,
}

fn requests(endless_mib: u64) -> Vec<(&'static str, Body)> {
    let rw = |body: Vec<u8>| Body::Post {
        fleetlake: "/api/v1/prom/write",
        victoria: Some("/api/v1/write"),
        headers: vec![
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
        ],
        body,
    };
    let lp = |body: Vec<u8>, gzip: bool| Body::Post {
        fleetlake: "/api/v3/write_lp?db=fleet",
        victoria: Some("/write"),
        headers: if gzip {
            vec![("Content-Encoding", "gzip")]
        } else {
            vec![]
        },
        body,
    };
    let sql = |q: &str, format: &str| Body::Post {
        fleetlake: "/api/v1/sql",
        victoria: None,
        headers: vec![("Content-Type", "application/json")],
        body: serde_json::json!({"sql": q, "format": format})
            .to_string()
            .into_bytes(),
    };
    let promql = |q: String| Body::Post {
        fleetlake: "/prometheus/api/v1/query",
        victoria: Some("/api/v1/query"),
        headers: vec![("Content-Type", "application/x-www-form-urlencoded")],
        body: format!("query={}&time=1", urlencode(&q)).into_bytes(),
    };
    let long_label = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "amplified".into(),
                },
                Label {
                    name: "l".into(),
                    value: "x".repeat(10 << 10),
                },
            ],
            samples: (0..50_000)
                .map(|i| Sample {
                    value: 1.0,
                    timestamp: 1_700_000_000_000 + i,
                })
                .collect(),
        }],
    };
    let bad_lines = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let chunk = "a\n".repeat(1 << 20);
        for _ in 0..32 {
            gz.write_all(chunk.as_bytes()).expect("gzip");
        }
        gz.finish().expect("gzip")
    };
    let wide: String = (0..5_000)
        .map(|i| format!("wide,t{i}=x v=1 {}\n", 1_700_000_000_000_000_000i64 + i))
        .collect();
    let widest = format!(
        "widest,{} v=1 1700000000000000000\n",
        (0..40_000)
            .map(|i| format!("t{i}=x"))
            .collect::<Vec<_>>()
            .join(",")
    );
    vec![
        (
            "remote write: 10 KiB label x 50,000 samples",
            rw(encode(&long_label)),
        ),
        (
            "remote write: 2,000,000 empty series",
            rw(snappy(&[0x0a, 0x00].repeat(2_000_000))),
        ),
        ("line protocol: 33.5M bad lines (gzip)", lp(bad_lines, true)),
        (
            "line protocol: 5,000 new columns",
            lp(wide.into_bytes(), false),
        ),
        (
            "line protocol: one line of 40,000 tags",
            lp(widest.into_bytes(), false),
        ),
        (
            "line protocol: endless body",
            Body::Endless {
                fleetlake: "/api/v3/write_lp?db=fleet",
                victoria: "/write",
                mib: endless_mib,
            },
        ),
        (
            "SQL: generate_series(1, 1e12), pretty",
            sql("SELECT * FROM generate_series(1, 1000000000000)", "pretty"),
        ),
        (
            "SQL: repeat('x', 2e9)",
            sql("SELECT repeat('x', 2000000000)", "json"),
        ),
        (
            "SQL: 1+1+...+1, 3,000 terms",
            sql(&format!("SELECT {}", vec!["1"; 3_000].join("+")), "json"),
        ),
        (
            "PromQL: 10,000 nested parentheses",
            promql(format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000))),
        ),
        (
            "PromQL: abs(abs(...)) 10,000 deep",
            promql(format!("{}1{}", "abs(".repeat(10_000), ")".repeat(10_000))),
        ),
    ]
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (String, u64, String) {
    let mut r = client.post(format!("{base}{path}")).body(body.to_vec());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    match r.send().await {
        Ok(r) => {
            let status = r.status().as_u16().to_string();
            let text = r.text().await.unwrap_or_default();
            (status, body.len() as u64, text)
        }
        Err(e) => (format!("error: {e}"), body.len() as u64, String::new()),
    }
}

/// Streams `mib` MiB of line protocol in chunks until the server answers;
/// returns the status line's code, the body bytes sent and the answer.
async fn endless(base: &str, path: &str, mib: u64) -> Result<(String, u64, String)> {
    let addr = base.trim_start_matches("http://").to_string();
    let conn = tokio::net::TcpStream::connect(&addr).await?;
    let (mut rd, mut wr) = conn.into_split();
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n");
    wr.write_all(head.as_bytes()).await?;
    let total = mib << 20;
    let sender = tokio::spawn(async move {
        // Distinct series, so that a store keeping them all pays for them.
        let mut sent = 0u64;
        let mut i = 0u64;
        let started = Instant::now();
        // A server that reads on and on is given a minute, then the body ends.
        while sent < total && started.elapsed() < Duration::from_secs(60) {
            let chunk: String = (0..16_384)
                .map(|k| {
                    format!(
                        "endless,host=h{} v=1 {}\n",
                        (i + k) % 100_000,
                        1_700_000_000_000_000_000u64 + i + k
                    )
                })
                .collect();
            i += 16_384;
            let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
            if wr.write_all(framed.as_bytes()).await.is_err() {
                return sent;
            }
            sent += chunk.len() as u64;
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
        sent
    });
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(1_800), rd.read(&mut buf))
        .await
        .context("no answer in 30 minutes")??;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    drop(rd);
    let sent = match tokio::time::timeout(Duration::from_secs(10), sender).await {
        Ok(r) => r?,
        Err(_) => 0,
    };
    let status = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("closed")
        .to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, sent, body))
}

async fn run(
    client: &reqwest::Client,
    base: &str,
    pid: u32,
    body: &Body,
    victoria: bool,
) -> Option<Outcome> {
    let started = Instant::now();
    let (status, sent, answer) = match body {
        Body::Post {
            fleetlake,
            victoria: vm,
            headers,
            body,
        } => {
            let path = if victoria { (*vm)? } else { fleetlake };
            post(client, base, path, headers, body).await
        }
        Body::Endless {
            fleetlake,
            victoria: vm,
            mib,
        } => {
            let path = if victoria { vm } else { fleetlake };
            endless(base, path, *mib)
                .await
                .unwrap_or_else(|e| (format!("error: {e}"), 0, String::new()))
        }
    };
    let kb = |key| proc_status_kb(pid, key).unwrap_or(0) as f64 / 1024.0;
    Some(Outcome {
        status,
        secs: started.elapsed().as_secs_f64(),
        sent,
        rss_mib: kb("VmRSS:"),
        hwm_mib: kb("VmHWM:"),
        answer: truncate(answer.trim(), 120).replace('\n', " "),
    })
}

fn cell(o: &Option<Outcome>) -> String {
    match o {
        None => "—".into(),
        Some(o) => format!(
            "{} in {:.2} s, {:.1} MiB sent; RSS {:.0} MiB, peak {:.0} MiB",
            o.status,
            o.secs,
            o.sent as f64 / (1 << 20) as f64,
            o.rss_mib,
            o.hwm_mib
        ),
    }
}

fn hostile_ok(o: &Option<Outcome>) -> bool {
    o.as_ref().is_none_or(|o| o.status.starts_with('4'))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1_800))
        .build()?;
    let dir = tempfile::tempdir()?;
    let fl = Server::start(&args.fleetlake, &dir.path().join("fleetlake"), &[])?;
    let vm = match &args.victoria_metrics {
        Some(bin) => {
            Some(Victoria::start(bin, &dir.path().join("vm"), &dir.path().join("vm.log")).await?)
        }
        None => None,
    };
    let kb = |pid| proc_status_kb(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0;
    println!(
        "idle RSS: fleetlake {:.0} MiB{}",
        kb(fl.pid()),
        vm.as_ref()
            .map(|v| format!(
                ", VictoriaMetrics {:.0} MiB",
                kb(v.pid().parse().unwrap_or(0))
            ))
            .unwrap_or_default()
    );
    println!("| request | fleetlake | VictoriaMetrics |\n|---|---|---|");
    let mut failed = false;
    for (name, body) in requests(args.endless_mib) {
        let ours = run(&client, &fl.url, fl.pid(), &body, false).await;
        let theirs = match &vm {
            Some(v) => run(&client, &v.url, v.pid().parse().unwrap_or(0), &body, true).await,
            None => None,
        };
        println!("| {name} | {} | {} |", cell(&ours), cell(&theirs));
        for (who, o) in [("fleetlake", &ours), ("VictoriaMetrics", &theirs)] {
            if let Some(o) = o {
                eprintln!("  {who}: {}", o.answer);
            }
        }
        failed |= !hostile_ok(&ours);
    }
    for (who, url) in [
        ("fleetlake", Some(fl.url.clone())),
        ("VictoriaMetrics", vm.as_ref().map(|v| v.url.clone())),
    ] {
        let Some(url) = url else { continue };
        let path = if who == "fleetlake" {
            "/ping"
        } else {
            "/health"
        };
        let alive = client
            .get(format!("{url}{path}"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        println!("{who} alive at the end: {alive}");
        failed |= who == "fleetlake" && !alive;
    }
    fl.stop()?;
    if failed {
        std::process::exit(2);
    }
    Ok(())
}
