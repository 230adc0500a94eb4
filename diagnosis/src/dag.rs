//! The job's stage DAG and timeline, rebuilt from its rows.
//!
//! # Invariants
//! - Every stage with a row or with an attempt is a node; a stage known only
//!   from its attempts (still running: its row is written at its end) has no
//!   known parents and `reported == false`.
//! - Every parent named by a stage is a node, and the parent relation is
//!   acyclic: [`Dag::build`] returns a typed error otherwise, never panics.
//! - [`Dag::order`] is a topological order (parents first), ties by id.
//! - Each task's attempts are sorted by attempt number.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::model::{Attempt, JobInput, Status};

/// One stage of the DAG with its tasks.
#[derive(Debug, Clone)]
pub struct StageNode {
    pub stage_id: u32,
    pub parents: Vec<u32>,
    pub status: Status,
    /// From the row, else the first attempt's start.
    pub start_ns: i64,
    /// From the row; `None` while the stage runs.
    pub end_ns: Option<i64>,
    /// The end, else the latest attempt end seen, else the start.
    pub last_ns: i64,
    /// Whether the stage has a `job_stages` row.
    pub reported: bool,
    /// Task id → indices into the job's attempts, by attempt number.
    pub tasks: BTreeMap<u32, Vec<usize>>,
}

/// The stage DAG of one job over its attempts.
#[derive(Debug, Clone)]
pub struct Dag<'a> {
    pub job_id: &'a str,
    pub attempts: &'a [Attempt],
    stages: BTreeMap<u32, StageNode>,
    order: Vec<u32>,
}

impl<'a> Dag<'a> {
    /// Builds the DAG of `input`.
    ///
    /// # Errors
    /// [`Error::Empty`] without stages or attempts, [`Error::Duplicate`] for
    /// two rows of one stage or one attempt, [`Error::Backwards`] for a range
    /// that ends before it starts, [`Error::UnknownParent`] and
    /// [`Error::Cycle`] for a DAG that is not one.
    pub fn build(input: &'a JobInput) -> Result<Dag<'a>> {
        let job_id = input.job_id.as_str();
        if input.stages.is_empty() && input.attempts.is_empty() {
            return Err(Error::Empty {
                job_id: job_id.to_owned(),
            });
        }
        let mut stages: BTreeMap<u32, StageNode> = BTreeMap::new();
        for s in &input.stages {
            if let (Some(start), Some(end)) = (s.start_ns, s.end_ns)
                && end < start
            {
                return Err(Error::Backwards {
                    job_id: job_id.to_owned(),
                    what: format!("stage {}", s.stage_id),
                    start_ns: start,
                    end_ns: end,
                });
            }
            let node = StageNode {
                stage_id: s.stage_id,
                parents: s.parents.clone(),
                status: if s.end_ns.is_none() {
                    Status::Running
                } else {
                    s.status
                },
                start_ns: s.start_ns.unwrap_or(i64::MAX),
                end_ns: s.end_ns,
                last_ns: s.end_ns.unwrap_or(i64::MIN),
                reported: true,
                tasks: BTreeMap::new(),
            };
            if stages.insert(s.stage_id, node).is_some() {
                return Err(Error::Duplicate {
                    job_id: job_id.to_owned(),
                    what: format!("stage {}", s.stage_id),
                });
            }
        }
        for (i, a) in input.attempts.iter().enumerate() {
            if a.end_ns < a.start_ns {
                return Err(Error::Backwards {
                    job_id: job_id.to_owned(),
                    what: a.label(),
                    start_ns: a.start_ns,
                    end_ns: a.end_ns,
                });
            }
            let node = stages.entry(a.stage_id).or_insert_with(|| StageNode {
                stage_id: a.stage_id,
                parents: Vec::new(),
                status: Status::Running,
                start_ns: i64::MAX,
                end_ns: None,
                last_ns: i64::MIN,
                reported: false,
                tasks: BTreeMap::new(),
            });
            node.tasks.entry(a.task_id).or_default().push(i);
        }
        for node in stages.values_mut() {
            let start_known = node.start_ns != i64::MAX;
            for ids in node.tasks.values_mut() {
                ids.sort_by_key(|&i| input.attempts[i].attempt);
                if let Some(w) = ids
                    .windows(2)
                    .find(|w| input.attempts[w[0]].attempt == input.attempts[w[1]].attempt)
                {
                    return Err(Error::Duplicate {
                        job_id: job_id.to_owned(),
                        what: input.attempts[w[0]].label(),
                    });
                }
                for &i in ids.iter() {
                    let a = &input.attempts[i];
                    if !start_known {
                        node.start_ns = node.start_ns.min(a.start_ns);
                    }
                    node.last_ns = node.last_ns.max(a.end_ns);
                }
            }
            if node.start_ns == i64::MAX {
                node.start_ns = node.end_ns.ok_or_else(|| {
                    Error::Invalid(format!(
                        "job {job_id}: stage {} has neither start, end nor attempts",
                        node.stage_id
                    ))
                })?;
            }
            node.last_ns = node.last_ns.max(node.start_ns);
        }
        for node in stages.values() {
            if let Some(&parent) = node.parents.iter().find(|p| !stages.contains_key(p)) {
                return Err(Error::UnknownParent {
                    job_id: job_id.to_owned(),
                    stage: node.stage_id,
                    parent,
                });
            }
        }
        let order = topo_order(job_id, &stages)?;
        Ok(Dag {
            job_id,
            attempts: &input.attempts,
            stages,
            order,
        })
    }

    /// Stage ids, parents before children.
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    pub fn stage(&self, id: u32) -> Option<&StageNode> {
        self.stages.get(&id)
    }

    /// Stages in topological order.
    pub fn stages(&self) -> impl Iterator<Item = &StageNode> {
        self.order.iter().map(|id| &self.stages[id])
    }

    /// A task's attempts, by attempt number.
    pub fn task_attempts(&self, node: &StageNode, task: u32) -> Vec<&'a Attempt> {
        let attempts = self.attempts;
        node.tasks
            .get(&task)
            .map(|ids| ids.iter().map(|&i| &attempts[i]).collect())
            .unwrap_or_default()
    }

    /// The last attempt of each task of a stage, by task id.
    pub fn final_attempts(&self, node: &StageNode) -> Vec<&'a Attempt> {
        let attempts = self.attempts;
        node.tasks
            .values()
            .filter_map(|ids| ids.last().map(|&i| &attempts[i]))
            .collect()
    }

    /// Whether some stage has not ended yet (or was never reported).
    pub fn running(&self) -> bool {
        self.stages.values().any(|s| s.end_ns.is_none())
    }

    /// The first start and the last end (or latest activity) over all stages.
    pub fn span(&self) -> (i64, i64) {
        let start = self.stages.values().map(|s| s.start_ns).min().unwrap_or(0);
        let end = self
            .stages
            .values()
            .map(|s| s.last_ns)
            .max()
            .unwrap_or(start);
        (start, end)
    }
}

/// Kahn's algorithm; ready stages are taken by id so the order is stable.
fn topo_order(job_id: &str, stages: &BTreeMap<u32, StageNode>) -> Result<Vec<u32>> {
    let mut pending: BTreeMap<u32, usize> = stages
        .values()
        .map(|s| {
            let distinct: BTreeSet<u32> = s.parents.iter().copied().collect();
            (s.stage_id, distinct.len())
        })
        .collect();
    let mut children: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for s in stages.values() {
        for &p in &s.parents {
            children.entry(p).or_default().insert(s.stage_id);
        }
    }
    let mut ready: BTreeSet<u32> = pending
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut order = Vec::with_capacity(stages.len());
    while let Some(id) = ready.pop_first() {
        order.push(id);
        pending.remove(&id);
        for c in children.get(&id).into_iter().flatten() {
            if let Some(n) = pending.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    ready.insert(*c);
                }
            }
        }
    }
    if !pending.is_empty() {
        return Err(Error::Cycle {
            job_id: job_id.to_owned(),
            stages: pending.into_keys().collect(),
        });
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::JobBuilder;

    fn job(stages: &[(u32, &[u32])]) -> JobInput {
        let mut b = JobBuilder::new("job_1");
        for (id, parents) in stages {
            b.stage(*id, parents, 20.0 * f64::from(*id));
            b.task(*id, 0, "host_1", 20.0 * f64::from(*id) + 1.0, 5.0, 100.0);
        }
        b.build()
    }

    #[test]
    fn orders_parents_first() {
        let input = job(&[(3, &[1, 2]), (2, &[0]), (1, &[0]), (0, &[])]);
        let dag = Dag::build(&input).unwrap();
        assert_eq!(dag.order(), &[0, 1, 2, 3]);
        let input = job(&[(0, &[]), (1, &[2]), (2, &[])]);
        assert_eq!(Dag::build(&input).unwrap().order(), &[0, 2, 1]);
    }

    #[test]
    fn a_cycle_is_an_error_naming_its_stages() {
        let input = job(&[(0, &[]), (1, &[0, 2]), (2, &[1]), (3, &[0])]);
        let err = Dag::build(&input).unwrap_err();
        assert_eq!(
            err,
            Error::Cycle {
                job_id: "job_1".into(),
                stages: vec![1, 2]
            }
        );
        let input = job(&[(0, &[0])]);
        assert!(matches!(Dag::build(&input), Err(Error::Cycle { .. })));
    }

    #[test]
    fn bad_rows_are_typed_errors() {
        let input = job(&[(0, &[]), (1, &[7])]);
        assert_eq!(
            Dag::build(&input).unwrap_err(),
            Error::UnknownParent {
                job_id: "job_1".into(),
                stage: 1,
                parent: 7
            }
        );
        let mut dup = job(&[(0, &[])]);
        dup.attempts.push(dup.attempts[0].clone());
        assert!(matches!(Dag::build(&dup), Err(Error::Duplicate { .. })));
        let mut backwards = job(&[(0, &[])]);
        backwards.attempts[0].end_ns = backwards.attempts[0].start_ns - 1;
        assert!(matches!(
            Dag::build(&backwards),
            Err(Error::Backwards { .. })
        ));
        let empty = JobInput {
            job_id: "job_2".into(),
            ..JobInput::default()
        };
        assert!(matches!(Dag::build(&empty), Err(Error::Empty { .. })));
    }

    #[test]
    fn a_stage_without_a_row_comes_from_its_attempts() {
        let mut input = job(&[(0, &[]), (1, &[0])]);
        input.stages.retain(|s| s.stage_id == 0);
        input.attempts.push(Attempt {
            task_id: 1,
            ..input.attempts[1].clone()
        });
        let dag = Dag::build(&input).unwrap();
        let s1 = dag.stage(1).unwrap();
        assert!(!s1.reported && s1.end_ns.is_none() && s1.parents.is_empty());
        assert_eq!(s1.start_ns, input.attempts[1].start_ns);
        assert_eq!(s1.tasks.len(), 2);
        assert!(dag.running());
    }

    #[test]
    fn parses_parents() {
        assert_eq!(crate::Stage::parse_parents("").unwrap(), Vec::<u32>::new());
        assert_eq!(crate::Stage::parse_parents("0,2").unwrap(), vec![0, 2]);
        assert!(crate::Stage::parse_parents("0,x").is_err());
    }
}
