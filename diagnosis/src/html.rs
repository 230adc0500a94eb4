//! The report as one self-contained HTML page: the job, its ranked causes
//! with evidence and SQL, a Gantt of its stages and attempts with the
//! critical path highlighted ([`gantt`]), the path and the stages as
//! tables, and the notes.
//!
//! # Invariants
//! - Self-contained: inline CSS and inline SVG, no script, no URL of any
//!   kind (no CDN, no font, no link), so the page opens offline and can be
//!   mailed or attached to a ticket as one file.
//! - Every string that comes from data (job id, user, queue, hostnames,
//!   errors, summaries, evidence, SQL, notes) goes through [`esc`]: hostile
//!   rows cannot inject markup.
//! - Size follows the attempts the report carries, which
//!   [`Config::timeline_attempts`](crate::Config::timeline_attempts) caps
//!   (2,000 by default: about half a megabyte of bars); the page says how
//!   many attempts were left out.

mod gantt;

use std::fmt::Write as _;

use crate::cause::{Cause, CauseKind, human_ns};
use crate::model::Status;
use crate::report::Report;

/// Evidence rows listed per piece of evidence; the rest are counted.
const MAX_ROWS: usize = 20;

/// Renders `report` as a self-contained HTML page.
pub fn render(report: &Report) -> String {
    let r = report;
    let mut out = String::with_capacity(16_384 + r.attempts.len() * 260);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Diagnosis of {}</title><style>{CSS}</style></head><body>\n",
        esc(&r.job_id)
    );
    header(&mut out, r);
    causes(&mut out, r);
    timeline(&mut out, r);
    path_table(&mut out, r);
    stage_table(&mut out, r);
    if !r.notes.is_empty() {
        out.push_str("<section><h2>Notes</h2><ul class=\"notes\">");
        for n in &r.notes {
            let _ = write!(out, "<li>{}</li>", esc(n));
        }
        out.push_str("</ul></section>\n");
    }
    out.push_str("<footer>fleetlake job diagnosis</footer>\n</body></html>\n");
    out
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `data_skew`: the name the JSON report uses.
fn kind_name(k: CauseKind) -> &'static str {
    match k {
        CauseKind::DataSkew => "data_skew",
        CauseKind::Straggler => "straggler",
        CauseKind::HostErrors => "host_errors",
        CauseKind::TaskFailures => "task_failures",
        CauseKind::SlowHost => "slow_host",
        CauseKind::QueueingDelay => "queueing_delay",
        CauseKind::FailingDisk => "failing_disk",
        CauseKind::BadMemory => "bad_memory",
        CauseKind::ThermalThrottling => "thermal_throttling",
        CauseKind::FlappingNic => "flapping_nic",
        CauseKind::HostLost => "host_lost",
        CauseKind::HardwareAnomaly => "hardware_anomaly",
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Succeeded => "SUCCEEDED",
        Status::Failed => "FAILED",
        Status::Running => "RUNNING",
    }
}

fn time(ns: i64) -> String {
    fleetlake_time::rfc3339(ns)
}

fn header(out: &mut String, r: &Report) {
    let _ = write!(
        out,
        "<header><h1>Job <code>{}</code> <span class=\"status st-{}\">{}</span>{}</h1><dl class=\"facts\">",
        esc(&r.job_id),
        status_name(r.status).to_ascii_lowercase(),
        status_name(r.status),
        if r.running {
            " <span class=\"running\">still running: diagnosed from what was reported so far</span>"
        } else {
            ""
        }
    );
    let mut fact = |k: &str, v: String| {
        let _ = write!(out, "<div><dt>{k}</dt><dd>{v}</dd></div>");
    };
    let unknown = || "<em>unknown</em>".to_owned();
    fact("user", r.user.as_deref().map_or_else(unknown, esc));
    fact("queue", r.queue.as_deref().map_or_else(unknown, esc));
    fact("wall time", human_ns(r.wall_ns));
    fact("queue wait", r.queue_wait_ns.map_or_else(unknown, human_ns));
    fact("submitted", r.submit_ns.map_or_else(unknown, time));
    fact("started", time(r.start_ns));
    fact(
        if r.running { "latest data" } else { "ended" },
        time(r.end_ns),
    );
    fact(
        "stages / attempts",
        format!(
            "{} / {}",
            r.stages.len(),
            r.stages.iter().map(|s| s.attempts).sum::<usize>()
        ),
    );
    out.push_str("</dl></header>\n");
}

fn causes(out: &mut String, r: &Report) {
    out.push_str("<section><h2>Causes</h2>");
    let reported: Vec<&Cause> = r.reported().collect();
    if reported.is_empty() {
        let _ = write!(
            out,
            "<p class=\"healthy\">No cause reaches the confidence cut of {}: the job looks healthy.</p>",
            r.confidence_cut
        );
    } else {
        let _ = write!(
            out,
            "<p class=\"hint\">Ranked by confidence × the time each cost the job; reported at confidence ≥ {}.</p>",
            r.confidence_cut
        );
    }
    for (i, c) in reported.iter().enumerate() {
        cause(out, i + 1, c, true);
    }
    let below: Vec<&Cause> = r.causes.iter().filter(|c| !c.reported).collect();
    if !below.is_empty() {
        let _ = write!(
            out,
            "<details class=\"below\"><summary>{} candidate cause(s) below the cut</summary>",
            below.len()
        );
        for (i, c) in below.iter().enumerate() {
            cause(out, reported.len() + i + 1, c, false);
        }
        out.push_str("</details>");
    }
    out.push_str("</section>\n");
}

fn cause(out: &mut String, rank: usize, c: &Cause, reported: bool) {
    let _ = write!(
        out,
        "<article class=\"cause{}\"><h3><span class=\"rank\">{rank}.</span> {} \
         <span class=\"meta\">confidence {:.2} · cost {} · score {:.1}</span></h3><p class=\"summary\">{}</p>",
        if reported { " reported" } else { "" },
        kind_name(c.kind),
        c.confidence,
        human_ns(c.cost_ns),
        c.score,
        esc(&c.summary)
    );
    if !c.hosts.is_empty() {
        let hosts: Vec<String> = c
            .hosts
            .iter()
            .map(|h| format!("<code>{}</code>", esc(h)))
            .collect();
        let _ = write!(out, "<p><b>Hosts:</b> {}</p>", hosts.join(", "));
    }
    if let Some(stage) = c.stage_id {
        let _ = write!(out, "<p><b>Stage:</b> {stage}</p>");
    }
    if !c.attempts.is_empty() {
        let names: Vec<String> = c
            .attempts
            .iter()
            .take(MAX_ROWS)
            .map(|a| {
                format!(
                    "stage {} task {} attempt {} on <code>{}</code>",
                    a.stage_id,
                    a.task_id,
                    a.attempt,
                    esc(&a.hostname)
                )
            })
            .collect();
        let _ = write!(
            out,
            "<p><b>Attempts:</b> {}{}</p>",
            names.join("; "),
            more(c.attempts.len())
        );
    }
    if !c.action.is_empty() {
        let _ = write!(
            out,
            "<p class=\"action\"><b>Suggested action:</b> {}</p>",
            esc(&c.action)
        );
    }
    if !c.evidence.is_empty() {
        let _ = write!(
            out,
            "<details class=\"evidence\"{}><summary>Evidence ({})</summary>",
            if reported { " open" } else { "" },
            c.evidence.len()
        );
        for e in &c.evidence {
            let _ = write!(out, "<div class=\"ev\"><p>{}</p>", esc(&e.description));
            if !e.rows.is_empty() {
                out.push_str("<ul class=\"rows\">");
                for row in e.rows.iter().take(MAX_ROWS) {
                    let _ = write!(out, "<li>{}</li>", esc(row));
                }
                if e.rows.len() > MAX_ROWS {
                    let _ = write!(out, "<li><em>{}</em></li>", more(e.rows.len()).trim());
                }
                out.push_str("</ul>");
            }
            if let Some(sql) = &e.sql {
                let _ = write!(out, "<pre class=\"sql\">{}</pre>", esc(sql));
            }
            out.push_str("</div>");
        }
        out.push_str("</details>");
    }
    out.push_str("</article>\n");
}

/// ` and 12 more` past [`MAX_ROWS`].
fn more(n: usize) -> String {
    if n > MAX_ROWS {
        format!(" and {} more", n - MAX_ROWS)
    } else {
        String::new()
    }
}

fn timeline(out: &mut String, r: &Report) {
    out.push_str("<section><h2>Timeline</h2>");
    let _ = write!(
        out,
        "<p class=\"hint\">Time from {} ({}). One band per stage, its tasks in lanes; \
         hover a bar for its task, attempt, host, duration and bytes.</p>",
        time(gantt::origin(r)),
        if r.submit_ns.is_some() {
            "submit"
        } else {
            "first seen"
        }
    );
    out.push_str(
        "<p class=\"legend\"><span class=\"sw ok\"></span>attempt \
         <span class=\"sw fail\"></span>failed attempt \
         <span class=\"sw crit\"></span>on the critical path \
         <span class=\"sw named\"></span>named by a cause \
         <span class=\"sw retry\"></span>retry \
         <span class=\"sw seg-queue\"></span>queue wait \
         <span class=\"sw seg-sched\"></span>scheduling gap</p>",
    );
    let total = r.attempts.len() + r.attempts_omitted;
    if r.attempts_omitted > 0 {
        let _ = write!(
            out,
            "<p class=\"omitted\">{} of {} attempts drawn; {} left out to keep the page small \
             (every critical-path attempt and every attempt a cause names is drawn, \
             with the other attempts of its task).</p>",
            r.attempts.len(),
            total,
            r.attempts_omitted
        );
    } else if total == 0 {
        out.push_str("<p class=\"omitted\">This report carries no attempts: stages only.</p>");
    }
    let _ = writeln!(
        out,
        "<div class=\"scroll\">{}</div></section>",
        gantt::svg(r)
    );
}

fn path_table(out: &mut String, r: &Report) {
    out.push_str(
        "<section><h2>Critical path</h2><table><thead><tr><th>from</th><th>duration</th>\
         <th>share</th><th>what</th></tr></thead><tbody>",
    );
    let wall = r.wall_ns.max(1) as f64;
    let t0 = gantt::origin(r);
    for s in &r.critical_path {
        let _ = write!(
            out,
            "<tr class=\"seg-row\"><td>+{}</td><td>{}</td><td>{:.0} %</td><td>{}</td></tr>",
            human_ns(s.start_ns - t0),
            human_ns(s.duration_ns),
            100.0 * s.duration_ns as f64 / wall,
            esc(&s.label())
        );
    }
    out.push_str("</tbody></table></section>\n");
}

fn stage_table(out: &mut String, r: &Report) {
    out.push_str(
        "<section><h2>Stages</h2><table><thead><tr><th>stage</th><th>parents</th><th>status</th>\
         <th>duration</th><th>tasks</th><th>attempts</th><th>failed</th><th>median task</th>\
         <th>critical</th></tr></thead><tbody>",
    );
    for s in &r.stages {
        let parents: Vec<String> = s.parents.iter().map(u32::to_string).collect();
        let _ = write!(
            out,
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.stage_id,
            if s.reported {
                ""
            } else {
                " <em>(no row yet)</em>"
            },
            if parents.is_empty() {
                "—".to_owned()
            } else {
                parents.join(", ")
            },
            status_name(s.status),
            human_ns(s.duration_ns),
            s.tasks,
            s.attempts,
            s.failed_attempts,
            s.median_task_ns.map_or_else(|| "—".to_owned(), human_ns),
            if s.on_critical_path { "◆" } else { "" }
        );
    }
    out.push_str("</tbody></table></section>\n");
}

const CSS: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2330;margin:0 auto;max-width:1240px;padding:16px 20px;background:#fff}
h1{font-size:22px;margin:4px 0 10px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:3px}
h3{font-size:15px;margin:0 0 4px}code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.status{font-size:13px;padding:2px 8px;border-radius:10px;vertical-align:middle;color:#fff;background:#2e7d32}
.status.st-failed{background:#c62828}.status.st-running{background:#1565c0}
.running{font-size:13px;font-weight:600;color:#1565c0;margin-left:8px;vertical-align:middle}
.facts{display:flex;flex-wrap:wrap;gap:6px 26px;margin:0}.facts dt{font-size:11px;text-transform:uppercase;color:#6b7485}.facts dd{margin:0;font-weight:600}
.hint,.legend{color:#5b6476;font-size:13px}.healthy{color:#2e7d32;font-weight:600}
.cause{border:1px solid #dde2ea;border-left:5px solid #9aa3b2;border-radius:4px;padding:8px 12px;margin:8px 0;background:#fafbfc}
.cause.reported{border-left-color:#c62828;background:#fff}.cause .meta{font-weight:400;color:#5b6476;font-size:13px;margin-left:8px}
.cause p{margin:4px 0}.action{background:#fff8e1;padding:4px 8px;border-radius:3px}.rank{color:#9aa3b2}
.ev{margin:6px 0 6px 12px}.rows{margin:2px 0;padding-left:20px;font-size:13px}
pre.sql{background:#f3f5f8;border:1px solid #e1e5ec;padding:6px 8px;overflow:auto;white-space:pre-wrap;margin:4px 0}
.below>summary,.evidence>summary{cursor:pointer;color:#3b4456}.omitted{color:#8a5a00;font-weight:600}
.scroll{overflow-x:auto;border:1px solid #e1e5ec}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 10px;border-bottom:1px solid #eceff3;text-align:left}th{background:#f3f5f8}
footer{margin:30px 0 10px;color:#9aa3b2;font-size:12px}.notes li{margin:2px 0}
.gantt{display:block;font-size:11px}.gantt .grid{stroke:#e3e7ee;stroke-width:1}.gantt .tick{fill:#5b6476;text-anchor:middle}
.gantt .lbl{fill:#1d2330;font-weight:600}.gantt .sub{fill:#6b7485;font-size:10px}.gantt .crit-lbl{fill:#b23c00}
.band{fill:#fff}.band.alt{fill:#f6f8fb}
.stage-span{fill:#dfe7f3;stroke:#9fb3d1;stroke-width:.5}.stage-span.st-fail{fill:#f6d5d5;stroke:#d08a8a}.stage-span.st-run{fill:#dcecfb;stroke-dasharray:3 2}
.b.ok,.sw.ok{fill:#4a86c8;background:#4a86c8}.b.fail,.sw.fail{fill:#d64541;background:#d64541}
.b.named,.sw.named{stroke:#8e24aa;stroke-width:1.5;border:2px solid #8e24aa}
.b.crit,.sw.crit{stroke:#111;stroke-width:2;fill:#f08c00;background:#f08c00;border:2px solid #111}.b.fail.crit{fill:#d64541}
.retry{stroke:#d64541;stroke-width:1;stroke-dasharray:3 2}.sw.retry{border-top:2px dashed #d64541;height:0;vertical-align:middle}
.now{stroke:#1565c0;stroke-width:1.5;stroke-dasharray:6 3}
.seg{stroke:#fff;stroke-width:.5}.seg-queue{fill:#b0b7c3;background:#b0b7c3}.seg-sched{fill:#d7dbe2;background:#d7dbe2}.seg-launch{fill:#e8d9a8}
.seg-attempt{fill:#f08c00}.seg-failed{fill:#d64541}.seg-retry{fill:#f3b3b1}.seg-tail{fill:#c9ced8}.seg-other{fill:#eceff3}
.sw{display:inline-block;width:14px;height:10px;margin:0 4px 0 12px;box-sizing:border-box}
";

#[cfg(test)]
mod tests;
