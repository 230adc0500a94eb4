//! The timeline as inline SVG: a time axis, the critical path as its own
//! row, then one band per stage whose tasks are packed into lanes (a task's
//! attempts share its lane, so a retry sits right of the failure it
//! retried, joined by a dashed line).
//!
//! # Invariants
//! - Every string from the report goes through [`esc`]; the SVG has no
//!   `xmlns` or any other URL (inline SVG in HTML needs none).
//! - Every attempt bar carries a `<title>` (task, attempt, host, duration,
//!   bytes), is classed `ok`/`fail`, and `crit` when on the critical path.
//! - Size is linear in the bars the report carries (~250 bytes each): the
//!   cap lives in the report (`Config::timeline_attempts`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;

use super::{esc, kind_name};
use crate::bars::AttemptBar;
use crate::cause::{human_bytes, human_ns};
use crate::model::Status;
use crate::report::Report;

const WIDTH: f64 = 1200.0;
const GUTTER: f64 = 150.0;
const RIGHT: f64 = 16.0;
const AXIS: f64 = 30.0;
const ROW: f64 = 22.0;
const BAND_HEAD: f64 = 16.0;
const BAND_PAD: f64 = 6.0;
/// The lanes of all stages share about this many pixels.
const LANES_PX: f64 = 900.0;

/// Maps time to x over the plot area.
struct Scale {
    t0: i64,
    span: i64,
}

impl Scale {
    fn x(&self, t: i64) -> f64 {
        GUTTER + (t - self.t0) as f64 / self.span as f64 * (WIDTH - GUTTER - RIGHT)
    }

    fn width(&self, start: i64, end: i64) -> f64 {
        (self.x(end) - self.x(start)).max(0.8)
    }
}

/// The origin of the axis: submit (else start, else the first thing seen).
pub(super) fn origin(r: &Report) -> i64 {
    let first = r
        .attempts
        .iter()
        .map(|a| a.start_ns)
        .chain(r.stages.iter().map(|s| s.start_ns))
        .min()
        .unwrap_or(r.start_ns);
    r.submit_ns.unwrap_or(r.start_ns).min(first)
}

/// One stage's drawn tasks packed into lanes: lane → attempts of each task.
fn lanes<'a>(bars: &[&'a AttemptBar]) -> Vec<Vec<Vec<&'a AttemptBar>>> {
    let mut tasks: BTreeMap<u32, Vec<&'a AttemptBar>> = BTreeMap::new();
    for b in bars {
        tasks.entry(b.task_id).or_default().push(b);
    }
    let mut tasks: Vec<Vec<&'a AttemptBar>> = tasks.into_values().collect();
    let span = |t: &[&AttemptBar]| {
        (
            t.iter().map(|a| a.start_ns).min().unwrap_or(0),
            t.iter().map(|a| a.end_ns).max().unwrap_or(0),
        )
    };
    tasks.sort_by_key(|t| (span(t).0, t[0].task_id));
    let mut out: Vec<Vec<Vec<&'a AttemptBar>>> = Vec::new();
    // (end of the lane's last task, lane), earliest end first.
    let mut free: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    for t in tasks {
        let (start, end) = span(&t);
        let lane = match free.peek() {
            Some(Reverse((last, lane))) if *last <= start => {
                let lane = *lane;
                free.pop();
                lane
            }
            _ => {
                out.push(Vec::new());
                out.len() - 1
            }
        };
        out[lane].push(t);
        free.push(Reverse((end, lane)));
    }
    out
}

/// A step of about a tenth of `span`, from a list people read easily.
fn tick_step(span: i64) -> i64 {
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000 * MS;
    const STEPS: [i64; 24] = [
        MS,
        2 * MS,
        5 * MS,
        10 * MS,
        20 * MS,
        50 * MS,
        100 * MS,
        200 * MS,
        500 * MS,
        S,
        2 * S,
        5 * S,
        10 * S,
        15 * S,
        30 * S,
        60 * S,
        120 * S,
        300 * S,
        600 * S,
        900 * S,
        1800 * S,
        3600 * S,
        2 * 3600 * S,
        6 * 3600 * S,
    ];
    let raw = span / 10;
    STEPS
        .iter()
        .copied()
        .find(|s| *s >= raw)
        .unwrap_or_else(|| (raw / (86_400 * S) + 1) * 86_400 * S)
}

/// An offset from the origin, as precise as the step needs: `250ms`,
/// `40s`, `2m30s`, `1h05m`.
fn tick_label(offset_ns: i64, step_ns: i64) -> String {
    const S: i64 = 1_000_000_000;
    if step_ns < 100_000_000 {
        return format!("{}ms", offset_ns / 1_000_000);
    }
    if step_ns < S {
        return format!("{:.1}s", offset_ns as f64 / 1e9).replace(".0s", "s");
    }
    let secs = offset_ns / S;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if step_ns < 60 * S {
        if secs < 60 {
            format!("{s}s")
        } else if h == 0 {
            format!("{m}m{s:02}s")
        } else {
            format!("{h}h{m:02}m{s:02}s")
        }
    } else if h == 0 {
        format!("{m}m")
    } else {
        format!("{h}h{m:02}m")
    }
}

fn bar_title(b: &AttemptBar) -> String {
    let mut t = format!(
        "stage {} task {} attempt {} on {}\n{} in {}\nread {}, shuffle read {}",
        b.stage_id,
        b.task_id,
        b.attempt,
        b.hostname,
        match b.status {
            Status::Succeeded => "succeeded",
            Status::Failed => "FAILED",
            Status::Running => "running",
        },
        human_ns(b.duration_ns()),
        human_bytes(b.bytes_read as f64),
        human_bytes(b.shuffle_read_bytes as f64),
    );
    if b.critical {
        t.push_str("\non the critical path");
    }
    if !b.causes.is_empty() {
        let names: Vec<&str> = b.causes.iter().map(|k| kind_name(*k)).collect();
        let _ = write!(t, "\nnamed by: {}", names.join(", "));
    }
    if let Some(e) = &b.error {
        let _ = write!(t, "\nerror: {e}");
    }
    t
}

/// The `<svg>` of the report's timeline.
pub(super) fn svg(r: &Report) -> String {
    let t0 = origin(r);
    let t1 = r
        .attempts
        .iter()
        .map(|a| a.end_ns)
        .chain(r.stages.iter().map(|s| s.start_ns + s.duration_ns))
        .chain([r.end_ns])
        .max()
        .unwrap_or(r.end_ns);
    let scale = Scale {
        t0,
        span: (t1 - t0).max(1),
    };

    let mut by_stage: BTreeMap<u32, Vec<&AttemptBar>> = BTreeMap::new();
    for b in &r.attempts {
        by_stage.entry(b.stage_id).or_default().push(b);
    }
    let packed: Vec<Vec<Vec<Vec<&AttemptBar>>>> = r
        .stages
        .iter()
        .map(|s| lanes(by_stage.get(&s.stage_id).map_or(&[][..], Vec::as_slice)))
        .collect();
    let total_lanes: usize = packed.iter().map(Vec::len).sum();
    let lane_h = (LANES_PX / total_lanes.max(1) as f64).clamp(3.0, 14.0);
    let plot_h: f64 = ROW
        + packed
            .iter()
            .map(|l| BAND_HEAD + l.len() as f64 * lane_h + BAND_PAD)
            .sum::<f64>();
    let height = AXIS + plot_h + AXIS;

    let mut out = String::with_capacity(600 + r.attempts.len() * 260);
    let _ = write!(
        out,
        r#"<svg class="gantt" viewBox="0 0 {WIDTH} {height:.0}" width="{WIDTH}" height="{height:.0}" role="img" aria-label="timeline of job {}">"#,
        esc(&r.job_id)
    );

    // Axis: gridlines and labels at the top and the bottom.
    let step = tick_step(scale.span);
    let bottom = AXIS + plot_h;
    let mut off = 0;
    while off <= scale.span {
        let x = scale.x(t0 + off);
        let label = tick_label(off, step);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{x:.1}" y1="{:.0}" x2="{x:.1}" y2="{bottom:.0}"/><text class="tick" x="{x:.1}" y="{:.0}">{label}</text><text class="tick" x="{x:.1}" y="{:.0}">{label}</text>"#,
            AXIS - 6.0,
            AXIS - 10.0,
            bottom + 18.0,
        );
        off += step;
    }

    // The critical path row.
    let mut y = AXIS;
    let _ = write!(
        out,
        r#"<text class="lbl crit-lbl" x="6" y="{:.1}">critical path</text>"#,
        y + 15.0
    );
    for s in &r.critical_path {
        let _ = write!(
            out,
            r#"<rect class="seg seg-{}" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{}: {}</title></rect>"#,
            segment_class(s.kind),
            scale.x(s.start_ns),
            y + 3.0,
            scale.width(s.start_ns, s.end_ns),
            ROW - 6.0,
            esc(&s.label()),
            human_ns(s.duration_ns),
        );
    }
    y += ROW;

    // One band per stage.
    for (i, (stage, lanes)) in r.stages.iter().zip(&packed).enumerate() {
        let band_h = BAND_HEAD + lanes.len() as f64 * lane_h + BAND_PAD;
        let drawn: usize = lanes.iter().flatten().map(Vec::len).sum();
        let _ = write!(
            out,
            r#"<rect class="band{}" x="0" y="{y:.1}" width="{WIDTH}" height="{band_h:.1}"/>"#,
            if i % 2 == 0 { "" } else { " alt" }
        );
        let end = stage.start_ns + stage.duration_ns;
        let _ = write!(
            out,
            r#"<rect class="stage-span st-{}" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>stage {}: {}, {} task(s), {} attempt(s), {} failed; {} drawn{}</title></rect>"#,
            status_class(stage.status),
            scale.x(stage.start_ns),
            y + 4.0,
            scale.width(stage.start_ns, end),
            BAND_HEAD - 7.0,
            stage.stage_id,
            human_ns(stage.duration_ns),
            stage.tasks,
            stage.attempts,
            stage.failed_attempts,
            drawn,
            if stage.on_critical_path {
                "; on the critical path"
            } else {
                ""
            },
        );
        let _ = write!(
            out,
            r#"<text class="lbl{}" x="6" y="{:.1}">{}stage {}</text><text class="sub" x="6" y="{:.1}">{} task(s){}</text>"#,
            if stage.on_critical_path {
                " crit-lbl"
            } else {
                ""
            },
            y + 12.0,
            if stage.on_critical_path { "◆ " } else { "" },
            stage.stage_id,
            y + 24.0,
            stage.tasks,
            if drawn < stage.attempts {
                format!(", {drawn}/{} drawn", stage.attempts)
            } else {
                String::new()
            },
        );
        let bar_h = (lane_h * 0.8).max(2.0);
        for (l, tasks) in lanes.iter().enumerate() {
            let ly = y + BAND_HEAD + l as f64 * lane_h;
            for task in tasks {
                for pair in task.windows(2) {
                    let _ = write!(
                        out,
                        r#"<line class="retry" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
                        scale.x(pair[0].end_ns),
                        ly + bar_h / 2.0,
                        scale.x(pair[1].start_ns),
                        ly + bar_h / 2.0,
                    );
                }
                for b in task {
                    let mut class = String::from(if b.status == Status::Failed {
                        "b fail"
                    } else {
                        "b ok"
                    });
                    if b.critical {
                        class.push_str(" crit");
                    }
                    if !b.causes.is_empty() {
                        class.push_str(" named");
                    }
                    let _ = write!(
                        out,
                        r#"<rect class="{class}" x="{:.1}" y="{ly:.1}" width="{:.1}" height="{bar_h:.1}"><title>{}</title></rect>"#,
                        scale.x(b.start_ns),
                        scale.width(b.start_ns, b.end_ns),
                        esc(&bar_title(b)),
                    );
                }
            }
        }
        y += band_h;
    }

    if r.running {
        let x = scale.x(r.end_ns);
        let _ = write!(
            out,
            r#"<line class="now" x1="{x:.1}" y1="{AXIS:.0}" x2="{x:.1}" y2="{bottom:.0}"><title>latest data: the job is still running</title></line>"#
        );
    }
    out.push_str("</svg>");
    out
}

fn status_class(s: Status) -> &'static str {
    match s {
        Status::Succeeded => "ok",
        Status::Failed => "fail",
        Status::Running => "run",
    }
}

fn segment_class(k: crate::SegmentKind) -> &'static str {
    use crate::SegmentKind as K;
    match k {
        K::QueueWait => "queue",
        K::SchedulingGap => "sched",
        K::TaskLaunch => "launch",
        K::FailedAttempt => "failed",
        K::RetryGap => "retry",
        K::Attempt => "attempt",
        K::StageTail | K::JobTail => "tail",
        K::Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn ticks_are_round_and_labels_readable() {
        assert_eq!(tick_step(100 * S), 10 * S);
        assert_eq!(tick_step(45 * 60 * S), 300 * S);
        assert_eq!(tick_step(3 * S), 500_000_000);
        assert_eq!(tick_label(70 * S, 10 * S), "1m10s");
        assert_eq!(tick_label(40 * S, 10 * S), "40s");
        assert_eq!(tick_label(3900 * S, 300 * S), "1h05m");
        assert_eq!(tick_label(1_500_000_000, 500_000_000), "1.5s");
        assert_eq!(tick_label(2 * S, 500_000_000), "2s");
        assert_eq!(tick_label(40_000_000, 20_000_000), "40ms");
    }
}
