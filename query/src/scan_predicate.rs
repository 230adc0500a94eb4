//! A physical optimizer rule, run last: every Parquet scan's predicate
//! without repeated conjuncts.
//!
//! [`crate::table::FleetTable`] gives its scans the query's filters, so
//! files, row groups and pages are pruned wherever the scan sits in a plan.
//! Where a `FilterExec` of the same filters is right above the scan,
//! DataFusion's filter pushdown then adds them to the scan's predicate a
//! second time: every pruning test and row filter ran twice (a one-host
//! query's `hostname = 'x' AND time >= … AND time < …` became six
//! conjuncts).

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::{conjunction, split_conjunction};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

#[derive(Debug, Default)]
pub struct DedupScanPredicate;

impl PhysicalOptimizerRule for DedupScanPredicate {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(deduplicated(&node).map_or(Transformed::no(node), Transformed::yes))
        })
        .data()
    }

    fn name(&self) -> &str {
        "dedup_scan_predicate"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `node` with its predicate's repeated conjuncts left out, if it is a
/// Parquet scan that has some.
fn deduplicated(node: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    let exec = node.downcast_ref::<DataSourceExec>()?;
    let config = exec.data_source().downcast_ref::<FileScanConfig>()?;
    let parquet = config.file_source().downcast_ref::<ParquetSource>()?;
    let predicate = datafusion::datasource::physical_plan::FileSource::filter(parquet)?;
    let conjuncts = split_conjunction(&predicate);
    let mut kept: Vec<Arc<dyn PhysicalExpr>> = Vec::with_capacity(conjuncts.len());
    for c in &conjuncts {
        if !kept.iter().any(|k| k.as_ref() == c.as_ref()) {
            kept.push(Arc::clone(c));
        }
    }
    if kept.len() == conjuncts.len() {
        return None;
    }
    let source = parquet.with_predicate(conjunction(kept));
    let config = FileScanConfigBuilder::from(config.clone())
        .with_source(Arc::new(source))
        .build();
    Some(DataSourceExec::from_data_source(config))
}
