use super::*;
use crate::testing::{JobBuilder, MIB, OOM, secs};
use crate::{Attempt, Config, SegmentKind, diagnose};

/// Stage 0 → stage 1, 8 tasks each; stage 1 task 3 reads 18× its
/// siblings' input (the top cause, and the end of the critical path).
fn skewed() -> JobBuilder {
    let mut b = JobBuilder::new("job_000042");
    b.stage(0, &[], 11.0);
    for t in 0..8 {
        b.task(0, t, &format!("host_{t}"), 12.0, 20.0 + f64::from(t), 500.0);
    }
    b.stage(1, &[0], 42.0);
    for t in 0..8 {
        let (dur, mib) = if t == 3 {
            (400.0, 9000.0)
        } else {
            (22.0, 500.0)
        };
        b.task(1, t, &format!("host_{}", 10 + t), 43.0, dur, mib);
    }
    b
}

fn page(b: &JobBuilder) -> (Report, String) {
    let r = diagnose(&b.build(), &Config::default()).unwrap();
    let html = render(&r);
    (r, html)
}

/// The `<rect class="b …">` elements with their titles.
fn bars(html: &str) -> Vec<(&str, &str)> {
    html.split("<rect class=\"b ")
        .skip(1)
        .map(|s| {
            let class = &s[..s.find('"').unwrap()];
            let title = &s[s.find("<title>").unwrap() + 7..s.find("</title>").unwrap()];
            (class, title)
        })
        .collect()
}

fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for banned in [
        "http://", "https://", "<script", " src=\"", " href=\"", "url(", "@import", "xmlns",
    ] {
        assert!(!lower.contains(banned), "page contains {banned:?}");
    }
}

#[test]
fn hostile_strings_are_escaped() {
    let evil_host = "<script>alert('host')</script>\" onmouseover=\"x";
    let evil_error = "java.io.IOException: </title><script>alert(1)</script><img src=x>";
    let mut b = JobBuilder::new("job_<b>1</b>");
    b.stage(0, &[], 11.0);
    for t in 0..6 {
        b.task(0, t, &format!("host_{t}"), 12.0, 20.0, 500.0);
    }
    // A task that fails twice on the hostile host with the hostile error:
    // named by a cause, on the critical path, in the evidence.
    b.failed(0, 6, evil_host, 12.0, 30.0, evil_error);
    b.failed(0, 6, evil_host, 44.0, 30.0, evil_error);
    b.task(0, 6, "host_9", 76.0, 20.0, 500.0);
    let mut input = b.build();
    input.run.as_mut().unwrap().user = Some("<i>mallory</i>".into());
    input.notes.push("note with <marquee>".into());
    let r = diagnose(&input, &Config::default()).unwrap();
    assert!(
        r.causes
            .iter()
            .any(|c| c.hosts.iter().any(|h| h == evil_host)
                || c.attempts.iter().any(|a| a.hostname == evil_host))
    );
    let html = render(&r);
    assert_self_contained(&html);
    for raw in [
        "<b>1</b>",
        "<i>mallory",
        "<marquee",
        "<img",
        "onmouseover=\"",
        "</title><script",
    ] {
        assert!(!html.contains(raw), "unescaped {raw:?}");
    }
    assert!(
        html.contains(
            "&lt;script&gt;alert(&#39;host&#39;)&lt;/script&gt;&quot; onmouseover=&quot;x"
        )
    );
    assert!(html.contains("&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x&gt;"));
    assert!(html.contains("job_&lt;b&gt;1&lt;/b&gt;"));
    // Every bar still has its own title: nothing broke out of one.
    assert_eq!(bars(&html).len(), r.attempts.len());
}

#[test]
fn critical_path_bars_are_marked() {
    let (r, html) = page(&skewed());
    assert_self_contained(&html);
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
    let bars = bars(&html);
    assert_eq!(bars.len(), 16);
    let crit: Vec<_> = bars.iter().filter(|(c, _)| c.contains("crit")).collect();
    let on_path = r
        .critical_path
        .iter()
        .filter(|s| matches!(s.kind, SegmentKind::Attempt | SegmentKind::FailedAttempt))
        .count();
    assert_eq!(crit.len(), on_path);
    assert!(
        crit.iter().any(
            |(c, t)| t.starts_with("stage 1 task 3 attempt 0 on host_13")
                && c.contains("named")
                && t.contains("named by: data_skew")
        ),
        "{crit:?}"
    );
    // Every bar's tooltip names task, attempt, host, duration and bytes.
    for (_, t) in &bars {
        assert!(t.contains(" attempt ") && t.contains(" on host_") && t.contains(" in "));
        assert!(t.contains("read ") && (t.contains(" MiB") || t.contains(" GiB")));
    }
    // The path row and the causes.
    assert!(html.contains("class=\"seg seg-attempt\""));
    assert!(html.contains("class=\"seg seg-queue\""));
    assert!(html.contains("<span class=\"rank\">1.</span> data_skew"));
    assert!(html.contains("<pre class=\"sql\">"));
    assert!(html.contains("Suggested action:"));
    assert!(!html.contains("left out"));
}

#[test]
fn retries_are_drawn_as_failed_bars_joined_to_the_retry() {
    let mut b = skewed();
    b.failed(1, 8, "host_30", 43.0, 6.0, OOM);
    b.task(1, 8, "host_31", 51.0, 10.0, 520.0);
    let (_, html) = page(&b);
    let bars = bars(&html);
    let failed: Vec<_> = bars.iter().filter(|(c, _)| c.starts_with("fail")).collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].1.contains("FAILED") && failed[0].1.contains("OutOfMemoryError"));
    assert_eq!(html.matches("<line class=\"retry\"").count(), 1);
}

#[test]
fn a_running_job_says_so() {
    let mut input = skewed().build();
    input.run = None;
    input.stages.retain(|s| s.stage_id == 0);
    input.attempts.retain(|a| a.stage_id == 0 || a.task_id < 3);
    let r = diagnose(&input, &Config::default()).unwrap();
    let html = render(&r);
    assert_self_contained(&html);
    assert!(html.contains("still running: diagnosed from what was reported so far"));
    assert!(html.contains("st-running\">RUNNING"));
    assert!(html.contains("<line class=\"now\""));
    assert!(html.contains("latest data"));
    assert!(html.contains("(no row yet)"));
}

#[test]
fn a_healthy_job_says_so() {
    let mut b = skewed();
    b.input
        .attempts
        .retain(|a| !(a.stage_id == 1 && a.task_id == 3));
    b.task(1, 3, "host_13", 43.0, 22.0, 500.0);
    let (_, html) = page(&b);
    assert!(html.contains("the job looks healthy"));
}

/// 10,000 tasks in 5 stages, task 4244 skewed: the page draws about 2,000
/// bars, always the critical and the named ones, says how many it left
/// out, and stays small.
#[test]
fn ten_thousand_tasks_stay_a_small_page() {
    let mut b = JobBuilder::new("job_big");
    for s in 0..5u32 {
        b.stage(
            s,
            if s == 0 { &[] } else { &[0] },
            11.0 + 600.0 * f64::from(s),
        );
    }
    let mut input = b.build();
    for i in 0..10_000u32 {
        let stage = i % 5;
        let start = secs(12.0 + 600.0 * f64::from(stage) + f64::from(i % 50));
        let (dur, mib) = if i == 4244 {
            (500.0, 9000)
        } else {
            (20.0 + f64::from(i % 97) / 10.0, 500)
        };
        input.attempts.push(Attempt {
            stage_id: stage,
            task_id: i,
            attempt: 0,
            hostname: format!("host_{}", i % 3000),
            status: Status::Succeeded,
            start_ns: start,
            end_ns: start + secs(dur),
            bytes_read: mib * MIB,
            shuffle_read_bytes: 0,
            records_read: 1000,
            error: None,
        });
    }
    for s in &mut input.stages {
        s.end_ns = Some(s.start_ns.unwrap() + secs(599.0));
    }
    input.run.as_mut().unwrap().end_ns = Some(secs(11.0 + 3000.0));
    let t = std::time::Instant::now();
    let r = diagnose(&input, &Config::default()).unwrap();
    let html = render(&r);
    eprintln!(
        "10,000 tasks: {} bytes of HTML in {:?}",
        html.len(),
        t.elapsed()
    );
    assert_self_contained(&html);
    assert!(html.len() < 3_000_000, "{} bytes", html.len());
    let bars = bars(&html);
    assert!((1900..=2100).contains(&bars.len()), "{} bars", bars.len());
    assert_eq!(r.attempts_omitted, 10_000 - r.attempts.len());
    assert!(html.contains(&format!(
        "{} of 10000 attempts drawn; {} left out",
        r.attempts.len(),
        r.attempts_omitted
    )));
    assert_eq!(r.top().unwrap().kind, CauseKind::DataSkew);
    assert!(
        bars.iter()
            .any(|(c, t)| c.contains("named") && t.starts_with("stage 4 task 4244 attempt 0"))
    );
    for s in &r.critical_path {
        if let (Some(st), Some(task)) = (s.stage_id, s.task_id) {
            let want = format!("stage {st} task {task} attempt {} on", s.attempt.unwrap());
            assert!(
                bars.iter()
                    .any(|(c, t)| c.contains("crit") && t.starts_with(&want)),
                "{want} missing"
            );
        }
    }
    // Every stage is a band, each with some of its bars.
    for s in 0..5 {
        assert!(
            bars.iter()
                .filter(|(_, t)| t.starts_with(&format!("stage {s} ")))
                .count()
                > 300
        );
    }
}
