//! SQL text for evidence: the queries that show a cause's rows, so an
//! analyst can paste them into `fleetlake sql`. Tags are strings, hence the
//! quoted ids and the casts for ordering.

/// A SQL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The attempts of a job, optionally of one stage, one host, or failed only.
pub fn tasks(
    job_id: &str,
    stage_id: Option<u32>,
    hostname: Option<&str>,
    failed_only: bool,
) -> String {
    let mut sql = format!(
        "SELECT stage_id, task_id, attempt, hostname, status, start_ns, end_ns, duration_ms, bytes_read, \
         shuffle_read_bytes, error FROM job_tasks WHERE job_id = {}",
        lit(job_id)
    );
    if let Some(s) = stage_id {
        sql.push_str(&format!(" AND stage_id = {}", lit(&s.to_string())));
    }
    if let Some(h) = hostname {
        sql.push_str(&format!(" AND hostname = {}", lit(h)));
    }
    if failed_only {
        sql.push_str(" AND status = 'FAILED'");
    }
    sql.push_str(
        " ORDER BY CAST(stage_id AS BIGINT), CAST(task_id AS BIGINT), CAST(attempt AS BIGINT)",
    );
    sql
}

/// The job's run row.
pub fn run(job_id: &str) -> String {
    format!(
        "SELECT job_id, user, queue, status, submit_ns, start_ns, end_ns, start_ns - submit_ns AS queue_wait_ns \
         FROM job_runs WHERE job_id = {}",
        lit(job_id)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes() {
        assert_eq!(super::lit("a'b"), "'a''b'");
        assert!(
            super::tasks("j", Some(3), None, true).contains("stage_id = '3' AND status = 'FAILED'")
        );
    }
}
