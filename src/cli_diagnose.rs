//! `fleetlake diagnose <job_id>`: ask a running server why a job was slow
//! or failed, and print the answer for a person, the JSON report, or the
//! self-contained HTML page (`--format html > report.html`).

use std::fmt::Write as _;

use anyhow::{Context, bail};
use clap::Args;
use fleetlake_diagnosis::Report;

#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// The job to diagnose (`job_runs.job_id`, e.g. job_000123).
    pub job_id: String,
    /// Base URL of the server.
    #[arg(long, env = "FLEETLAKE_URL", default_value = "http://127.0.0.1:8086")]
    pub url: String,
    /// Database holding the job tables.
    #[arg(long, env = "FLEETLAKE_DB", default_value = "fleet")]
    pub db: String,
    /// Output format: text (a summary for a person), json (the report) or
    /// html (a self-contained page with a Gantt of the job: `> report.html`).
    #[arg(long, env = "FLEETLAKE_FORMAT", default_value = "text")]
    pub format: String,
    /// API token, when the server requires one (`fleetlake token create`).
    #[arg(long, env = "FLEETLAKE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub async fn run(args: DiagnoseArgs) -> anyhow::Result<()> {
    if !matches!(args.format.as_str(), "text" | "json" | "html") {
        bail!("unknown format {:?}: use text, json or html", args.format);
    }
    let mut url =
        reqwest::Url::parse(&args.url).with_context(|| format!("invalid --url {:?}", args.url))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("--url {:?} cannot take a path", args.url))?
        .pop_if_empty()
        .extend(["api", "v1", "diagnosis", "jobs", &args.job_id]);
    url.query_pairs_mut().append_pair("db", &args.db);
    if args.format == "html" {
        url.query_pairs_mut().append_pair("format", "html");
    }
    let request = reqwest::Client::new().get(url.clone());
    let body =
        crate::cli_client::send(request, args.token.as_deref(), url.as_str(), "diagnosis").await?;
    if args.format == "json" {
        println!("{body}");
        return Ok(());
    }
    if args.format == "html" {
        print!("{body}");
        return Ok(());
    }
    let report: Report = serde_json::from_str(&body).context("reading the report")?;
    print!("{}", summary(&report));
    Ok(())
}

/// The report for a person: the job, where its time went, the causes.
fn summary(r: &Report) -> String {
    let mut out = String::new();
    let who = [
        r.user.as_deref().map(|u| format!("user {u}")),
        r.queue.as_deref().map(|q| format!("queue {q}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    let _ = writeln!(
        out,
        "job {}: {:?}{}{}",
        r.job_id,
        r.status,
        if r.running { " (still running)" } else { "" },
        if who.is_empty() {
            String::new()
        } else {
            format!(" ({who})")
        }
    );
    let _ = writeln!(
        out,
        "wall time {}, queue wait {}",
        secs(r.wall_ns),
        r.queue_wait_ns.map_or_else(|| "unknown".to_owned(), secs)
    );
    let _ = writeln!(out, "critical path:");
    for s in &r.critical_path {
        let _ = writeln!(out, "  {:>10}  {}", secs(s.duration_ns), s.label());
    }
    let reported: Vec<_> = r.reported().collect();
    if reported.is_empty() {
        let _ = writeln!(
            out,
            "causes: none at or above the confidence cut of {}",
            r.confidence_cut
        );
    } else {
        let _ = writeln!(out, "causes (confidence cut {}):", r.confidence_cut);
    }
    for (i, c) in reported.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {}. {} (confidence {:.2}, cost {}): {}",
            i + 1,
            serde_json::to_value(c.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            c.confidence,
            secs(c.cost_ns),
            c.summary
        );
        if !c.action.is_empty() {
            let _ = writeln!(out, "     action: {}", c.action);
        }
    }
    let below = r.causes.len() - reported.len();
    if below > 0 {
        let _ = writeln!(
            out,
            "  ({below} more below the cut: --format json lists them)"
        );
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

fn secs(ns: i64) -> String {
    let s = ns as f64 / 1e9;
    if s.abs() >= 120.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_read_well() {
        assert_eq!(super::secs(1_500_000_000), "1.5 s");
        assert_eq!(super::secs(600_000_000_000), "10.0 min");
    }
}
