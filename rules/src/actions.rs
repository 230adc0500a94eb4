//! Carrying out actions: webhook, Alertmanager, exec, log. Each returns
//! `Ok(message)` or `Err(message)`; nothing here decides *whether* to act
//! (that is [`crate::safety`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tracing::info;

use crate::definition::{ActionDef, ActionKind};
use crate::eval::rfc3339;
use crate::template;

/// What an action is about: one instance of a rule at one evaluation.
#[derive(Debug, Clone)]
pub struct ActionRequest {
    pub action_id: String,
    pub rule: String,
    pub version: u64,
    /// `firing` or `resolved`.
    pub status: &'static str,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub value: Option<f64>,
    pub evidence: Vec<serde_json::Map<String, Value>>,
    pub idempotency_key: String,
    pub evaluation_time: i64,
    pub starts_at: i64,
    /// Alertmanager `endsAt`: the resolve time, or a horizon while firing.
    pub ends_at: i64,
    pub entity: Option<String>,
    pub generator_url: String,
    /// What the action carries besides the row, by key (`diagnosis`),
    /// filled just before it runs ([`crate::attach`]).
    pub attachments: BTreeMap<String, Value>,
}

/// Stable per (rule, instance, firing episode): receivers de-duplicate retries with it.
pub fn idempotency_key(rule: &str, instance: &str, active_at: i64) -> String {
    // FNV-1a: stable across builds (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rule
        .bytes()
        .chain([0])
        .chain(instance.bytes())
        .chain([0])
        .chain(active_at.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{rule}-{h:016x}")
}

pub async fn run(
    client: &reqwest::Client,
    action: &ActionDef,
    req: &ActionRequest,
) -> Result<String, String> {
    match action.kind {
        ActionKind::Webhook => webhook(client, action, req).await,
        ActionKind::Alertmanager => alertmanager(client, action, req).await,
        ActionKind::Exec => exec(action, req).await,
        ActionKind::Log => {
            info!(
                rule = %req.rule,
                status = req.status,
                labels = ?req.labels,
                value = ?req.value,
                annotations = ?req.annotations,
                attachments = ?req.attachments,
                idempotency_key = %req.idempotency_key,
                "rule action"
            );
            Ok(match req.attachments.get("diagnosis") {
                Some(d) => format!("logged; diagnosis: {}", crate::attach::summary_line(d)),
                None => "logged".into(),
            })
        }
        ActionKind::Diagnose => match req.attachments.get("diagnosis") {
            Some(d) if d.get("error").is_none() => Ok(crate::attach::summary_line(d)),
            Some(d) => Err(crate::attach::summary_line(d)),
            None => Err("no diagnosis was made".into()),
        },
    }
}

/// POSTs `body` to `url`, retrying failures (connection errors, 5xx, 429)
/// with exponential backoff from 500 ms; 4xx other than 429 is final.
async fn post_with_retries(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    key: &str,
    timeout: Duration,
    retries: u32,
) -> Result<String, String> {
    let mut delay = Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(60));
        }
        let r = client
            .post(url)
            .timeout(timeout)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => {
                return Ok(format!(
                    "HTTP {} after {} attempt{}",
                    resp.status().as_u16(),
                    attempt + 1,
                    if attempt == 0 { "" } else { "s" }
                ));
            }
            Ok(resp) => {
                let status = resp.status();
                let text: String = resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect();
                last = format!("HTTP {}: {text}", status.as_u16());
                if status.is_client_error() && status.as_u16() != 429 {
                    return Err(last);
                }
            }
            Err(e) if e.is_timeout() => last = format!("timed out after {timeout:?}"),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("{last} (after {} attempts)", retries + 1))
}

async fn webhook(
    client: &reqwest::Client,
    action: &ActionDef,
    req: &ActionRequest,
) -> Result<String, String> {
    let body = json!({
        "rule": req.rule,
        "version": req.version,
        "status": req.status,
        "action_id": req.action_id,
        "idempotency_key": req.idempotency_key,
        "evaluation_time": rfc3339(req.evaluation_time),
        "starts_at": rfc3339(req.starts_at),
        "entity": req.entity,
        "labels": req.labels,
        "annotations": req.annotations,
        "value": req.value,
        "evidence": req.evidence,
    });
    let mut body = body;
    for (k, v) in &req.attachments {
        body[k] = v.clone();
    }
    let url = action.url.as_deref().unwrap_or_default();
    post_with_retries(
        client,
        url,
        &body,
        &req.idempotency_key,
        action.timeout(),
        action.retries(),
    )
    .await
}

async fn alertmanager(
    client: &reqwest::Client,
    action: &ActionDef,
    req: &ActionRequest,
) -> Result<String, String> {
    let mut labels = req.labels.clone();
    labels.insert("alertname".into(), req.rule.clone());
    // Annotations are strings: an attachment goes as its one-line summary.
    let mut annotations = req.annotations.clone();
    for (k, v) in &req.attachments {
        annotations.insert(k.clone(), crate::attach::summary_line(v));
    }
    let body = json!([{
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(req.starts_at),
        "endsAt": rfc3339(req.ends_at),
        "generatorURL": req.generator_url,
    }]);
    let base = action
        .url
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('/');
    post_with_retries(
        client,
        &format!("{base}/api/v2/alerts"),
        &body,
        &req.idempotency_key,
        action.timeout(),
        action.retries(),
    )
    .await
}

/// `FLEETLAKE_<COLUMN>`: upper case, anything but letters and digits as `_`.
pub fn env_name(column: &str) -> String {
    let mut s = String::from("FLEETLAKE_");
    s.extend(column.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    s
}

async fn exec(action: &ActionDef, req: &ActionRequest) -> Result<String, String> {
    let row = req
        .evidence
        .first()
        .map(crate::eval::row_text)
        .unwrap_or_default();
    let argv: Vec<String> = action
        .command
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|a| template::render(a, &row, &req.labels))
        .collect();
    let Some((program, args)) = argv.split_first() else {
        return Err("exec action without a command".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in &row {
        cmd.env(env_name(k), v);
    }
    for (k, v) in &req.labels {
        if !row.contains_key(k) {
            cmd.env(env_name(k), v);
        }
    }
    cmd.env("FLEETLAKE_RULE", &req.rule)
        .env("FLEETLAKE_STATUS", req.status)
        .env("FLEETLAKE_ACTION_ID", &req.action_id)
        .env("FLEETLAKE_IDEMPOTENCY_KEY", &req.idempotency_key)
        .env("FLEETLAKE_EVALUATION_TIME", rfc3339(req.evaluation_time));
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let timeout = action.timeout();
    // Dropping the future on timeout drops the child, which kills it.
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(format!(
            "{program:?} timed out after {timeout:?} and was killed"
        )),
        Ok(Err(e)) => Err(format!("{program:?}: {e}")),
        Ok(Ok(out)) => {
            let tail = |b: &[u8]| {
                let s = String::from_utf8_lossy(b);
                let s = s.trim();
                s.chars()
                    .skip(s.chars().count().saturating_sub(300))
                    .collect::<String>()
            };
            if out.status.success() {
                Ok(format!("exit 0: {}", tail(&out.stdout)))
            } else {
                Err(format!(
                    "{program:?} failed ({}): {}",
                    out.status,
                    tail(&out.stderr)
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_env_names() {
        let a = idempotency_key("r", "{h=\"a\"}", 1);
        assert_eq!(a, idempotency_key("r", "{h=\"a\"}", 1));
        assert_ne!(a, idempotency_key("r", "{h=\"a\"}", 2));
        assert_eq!(env_name("host-name"), "FLEETLAKE_HOST_NAME");
    }

    #[tokio::test]
    async fn exec_gets_the_row_and_is_killed_on_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        let action = ActionDef {
            kind: ActionKind::Exec,
            url: None,
            command: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo \"$FLEETLAKE_HOSTNAME $1\" > {}", out.display()),
                "sh".into(),
                "{{ hostname }}-arg".into(),
            ]),
            timeout: Some(crate::duration::Dur::from_secs(5)),
            retries: None,
            resend: None,
            attach: Vec::new(),
        };
        let mut row = serde_json::Map::new();
        row.insert("hostname".into(), "h7".into());
        let req = ActionRequest {
            action_id: "a1".into(),
            rule: "r".into(),
            version: 1,
            status: "firing",
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            value: Some(1.0),
            evidence: vec![row],
            idempotency_key: "k".into(),
            evaluation_time: 0,
            starts_at: 0,
            ends_at: 0,
            entity: Some("h7".into()),
            generator_url: String::new(),
            attachments: BTreeMap::new(),
        };
        exec(&action, &req).await.unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "h7 h7-arg");
        let slow = ActionDef {
            command: Some(vec!["/bin/sleep".into(), "30".into()]),
            timeout: Some(crate::duration::Dur(Duration::from_millis(300))),
            ..action
        };
        let started = std::time::Instant::now();
        let e = exec(&slow, &req).await.unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
