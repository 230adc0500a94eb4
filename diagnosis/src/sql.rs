//! SQL text for evidence: the queries that show a cause's rows, so an
//! analyst can paste them into `fleetlake sql`. Tags are strings, hence the
//! quoted ids and the casts for ordering.

/// A SQL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A SQL timestamp literal for Unix nanoseconds (`TIMESTAMP
/// '2026-01-01T00:00:00Z'`): the planner folds it into the scan's time
/// range, so partitions and files outside it are pruned.
pub fn ts(ns: i64) -> String {
    format!("TIMESTAMP {}", lit(&fleetlake_time::rfc3339(ns)))
}

/// `'a', 'b'`: string literals for an `IN (...)` list.
pub fn lits<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    values.into_iter().map(lit).collect::<Vec<_>>().join(", ")
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
        assert_eq!(super::lits(["a", "b'c"]), "'a', 'b''c'");
        assert_eq!(super::ts(0), "TIMESTAMP '1970-01-01T00:00:00Z'");
    }
}
