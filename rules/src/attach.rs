//! What an action can carry besides the alert's row: a job's diagnosis
//! (`attach = ["diagnosis"]` on a webhook, Alertmanager or log action), or
//! the diagnosis as the action itself (`type = "diagnose"`: the action log
//! keeps its summary).
//!
//! The rules engine does not know how to diagnose a job: the server gives
//! it a [`Diagnoser`] (the diagnosis crate over the query engine), as
//! InfluxDB 3 puts a narrow trait between its query and write sides.
//!
//! # Which job
//! The instance's `job_id` label, else the `job_id` column of its row. An
//! instance with neither gets an attachment saying so (the alert still goes
//! out); a `diagnose` action fails with that message.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::actions::ActionRequest;

/// The column or label naming the job an instance is about.
pub const JOB_COLUMN: &str = "job_id";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attachment {
    /// The diagnosis of the instance's job ([`Diagnoser::diagnose`]).
    Diagnosis,
}

impl Attachment {
    pub fn key(self) -> &'static str {
        match self {
            Attachment::Diagnosis => "diagnosis",
        }
    }
}

/// Diagnoses jobs for actions.
#[async_trait]
pub trait Diagnoser: Send + Sync {
    /// A compact diagnosis of job `job_id` in database `db`: a JSON object
    /// with at least `summary` (one line for a person), and `report_path`
    /// (the full report, under the server's URL) if there is one; `Err`
    /// says why there is none (unknown job, a query that failed).
    async fn diagnose(&self, db: &str, job_id: &str) -> Result<Value, String>;
}

/// The job an action request is about (see the module docs).
pub fn job_of(req: &ActionRequest) -> Option<String> {
    req.labels.get(JOB_COLUMN).cloned().or_else(|| {
        req.evidence.first()?.get(JOB_COLUMN).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    })
}

/// The diagnosis attachment of `req`: the diagnoser's answer (its
/// `report_path` also as `report_url`, under `base_url`), or an object
/// with `error` (no job named, no diagnoser, the diagnosis failed or took
/// longer than `limit`).
pub async fn diagnosis(
    diagnoser: Option<&dyn Diagnoser>,
    db: &str,
    req: &ActionRequest,
    limit: std::time::Duration,
    base_url: &str,
) -> Value {
    let Some(job) = job_of(req) else {
        return json!({
            "error": format!("no {JOB_COLUMN} in the alert's labels or row: nothing to diagnose")
        });
    };
    let Some(d) = diagnoser else {
        return json!({ "job_id": job, "error": "job diagnosis is not available in this process" });
    };
    match tokio::time::timeout(limit, d.diagnose(db, &job)).await {
        Ok(Ok(mut v)) => {
            if let Some(path) = v.get("report_path").and_then(Value::as_str) {
                v["report_url"] =
                    Value::String(format!("{}{path}", base_url.trim_end_matches('/')));
            }
            v
        }
        Ok(Err(e)) => json!({ "job_id": job, "error": e }),
        Err(_) => json!({
            "job_id": job,
            "error": format!("the diagnosis took longer than the action's timeout ({limit:?})")
        }),
    }
}

/// One line for a log, an annotation or the action log: the attachment's
/// `summary`, else its `error`.
pub fn summary_line(v: &Value) -> String {
    v.get("summary")
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct Fixed;

    #[async_trait]
    impl Diagnoser for Fixed {
        async fn diagnose(&self, db: &str, job_id: &str) -> Result<Value, String> {
            if job_id == "job_slow" {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
            if job_id == "job_gone" {
                return Err(format!("job {job_id:?} not found in database {db:?}"));
            }
            Ok(json!({
                "job_id": job_id,
                "summary": format!("{job_id} in {db}: data_skew"),
                "report_path": format!("/api/v1/diagnosis/jobs/{job_id}"),
            }))
        }
    }

    fn req(labels: &[(&str, &str)], row: &[(&str, Value)]) -> ActionRequest {
        ActionRequest {
            action_id: "a".into(),
            rule: "r".into(),
            version: 1,
            status: "firing",
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            annotations: BTreeMap::new(),
            value: None,
            evidence: vec![
                row.iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ],
            idempotency_key: "k".into(),
            evaluation_time: 0,
            starts_at: 0,
            ends_at: 0,
            entity: None,
            generator_url: String::new(),
            attachments: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn the_job_comes_from_a_label_or_the_row() {
        let limit = std::time::Duration::from_millis(200);
        let d: Option<&dyn Diagnoser> = Some(&Fixed);
        let v = diagnosis(
            d,
            "fleet",
            &req(&[("job_id", "job_1")], &[]),
            limit,
            "http://x:1/",
        )
        .await;
        assert_eq!(summary_line(&v), "job_1 in fleet: data_skew");
        assert_eq!(v["report_url"], "http://x:1/api/v1/diagnosis/jobs/job_1");
        let v = diagnosis(
            d,
            "fleet",
            &req(&[], &[("job_id", json!("job_2"))]),
            limit,
            "",
        )
        .await;
        assert_eq!(v["job_id"], "job_2");
        let v = diagnosis(d, "fleet", &req(&[("host", "h")], &[]), limit, "").await;
        assert!(summary_line(&v).contains("no job_id"), "{v}");
        let v = diagnosis(d, "fleet", &req(&[("job_id", "job_gone")], &[]), limit, "").await;
        assert!(summary_line(&v).contains("not found"), "{v}");
        let v = diagnosis(d, "fleet", &req(&[("job_id", "job_slow")], &[]), limit, "").await;
        assert!(summary_line(&v).contains("longer than"), "{v}");
        let v = diagnosis(None, "fleet", &req(&[("job_id", "job_1")], &[]), limit, "").await;
        assert!(summary_line(&v).contains("not available"), "{v}");
    }
}
