//! `DedupExec`: last-write-wins merge of a stream sorted by identity and write order.

use std::fmt;
use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{
    Distribution, EquivalenceProperties, LexOrdering, OrderingRequirements, Partitioning,
    PhysicalExpr,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use fleetlake_storage::dedup::dedup_sorted;
use futures::StreamExt;

/// Merges rows of equal identity (the `key` columns) into one: key columns
/// from the first row, every other column from its last non-NULL value.
///
/// # Invariants
/// The single input partition is sorted by the key columns, then by write
/// order (oldest first). A run of equal keys may span batches; the last run
/// of each batch is held back until the next batch shows where it ends.
#[derive(Debug)]
pub struct DedupExec {
    input: Arc<dyn ExecutionPlan>,
    key: Vec<usize>,
    /// The order the input must have: key columns, then the write-order column.
    ordering: LexOrdering,
    props: Arc<PlanProperties>,
}

impl DedupExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, key: Vec<usize>, ordering: LexOrdering) -> Self {
        let props = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            input,
            key,
            ordering,
            props: Arc::new(props),
        }
    }

    /// The identity columns (indices into the input's schema).
    pub fn key(&self) -> &[usize] {
        &self.key
    }

    /// The order the input has: the key columns, then write order.
    pub fn ordering(&self) -> &LexOrdering {
        &self.ordering
    }
}

impl DisplayAs for DedupExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let schema = self.input.schema();
        let names: Vec<&str> = self
            .key
            .iter()
            .map(|&i| schema.field(i).name().as_str())
            .collect();
        write!(f, "DedupExec: key=[{}]", names.join(", "))
    }
}

impl ExecutionPlan for DedupExec {
    fn name(&self) -> &str {
        "DedupExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        vec![Some(OrderingRequirements::from(self.ordering.clone()))]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        // Output order is not declared (see `new`), so nothing relies on it.
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(DedupExec::new(
            Arc::clone(&children[0]),
            self.key.clone(),
            self.ordering.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // One output partition. A caller asking for another would get the
        // whole output again from a single-partition input.
        if partition != 0 {
            return datafusion::common::internal_err!(
                "DedupExec has one partition; asked for partition {partition}"
            );
        }
        let input = self.input.execute(partition, context)?;
        let schema = self.input.schema();
        let key = self.key.clone();
        let state = (input, None::<RecordBatch>, key, schema.clone(), false);
        let stream =
            futures::stream::unfold(state, |(mut input, carry, key, schema, done)| async move {
                if done {
                    return None;
                }
                loop {
                    match input.next().await {
                        Some(Ok(batch)) => {
                            if batch.num_rows() == 0 {
                                continue;
                            }
                            let all = match &carry {
                                Some(c) => match concat_batches(&schema, [c, &batch]) {
                                    Ok(b) => b,
                                    Err(e) => {
                                        return Some((
                                            Err(e.into()),
                                            (input, None, key, schema, true),
                                        ));
                                    }
                                },
                                None => batch,
                            };
                            let (ready, rest) = match split_last_run(&all, &key) {
                                Ok(x) => x,
                                Err(e) => return Some((Err(e), (input, None, key, schema, true))),
                            };
                            match ready {
                                Some(r) => {
                                    return Some((Ok(r), (input, Some(rest), key, schema, false)));
                                }
                                None => {
                                    // The whole batch is one run: keep collecting.
                                    return Some((
                                        Ok(RecordBatch::new_empty(schema.clone())),
                                        (input, Some(rest), key, schema, false),
                                    ));
                                }
                            }
                        }
                        Some(Err(e)) => return Some((Err(e), (input, None, key, schema, true))),
                        None => {
                            let out = match carry {
                                Some(c) => dedup_sorted(&c, &key).map_err(|e| {
                                    datafusion::error::DataFusionError::External(Box::new(e))
                                }),
                                None => return None,
                            };
                            return Some((out, (input, None, key, schema, true)));
                        }
                    }
                }
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Splits off the last run of equal keys; de-duplicates the rest.
fn split_last_run(
    batch: &RecordBatch,
    key: &[usize],
) -> Result<(Option<RecordBatch>, RecordBatch)> {
    let keys: Vec<_> = key.iter().map(|&i| batch.column(i).clone()).collect();
    let ranges = arrow::compute::kernels::partition::partition(&keys)?.ranges();
    let last = ranges.last().expect("non-empty batch").clone();
    let rest = batch.slice(last.start, last.end - last.start);
    if last.start == 0 {
        return Ok((None, rest));
    }
    let head = batch.slice(0, last.start);
    let ready = dedup_sorted(&head, key)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    Ok((Some(ready), rest))
}
