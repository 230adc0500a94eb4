//! Ballista extension codecs for fleetlake's table and plans.
//!
//! The client plans SQL over [`FleetTable`]s; Ballista sends the logical
//! plan to the scheduler, which plans it physically and sends each stage to
//! executors. Two things of ours travel:
//!
//! - the table ([`FleetLogicalCodec`]): a catalog snapshot of it — schema,
//!   live files, tombstones, retention cut-off — so the scheduler plans
//!   the same scan the server would, with no catalog of its own;
//! - [`DedupExec`] ([`FleetPhysicalCodec`]): its key and input ordering.
//!
//! On the cluster a table's tags are plain strings
//! ([`FleetTable::with_plain_tags`]): Ballista's shuffle hands dictionaries
//! on as plain strings, and the stage after it would get a type its plan
//! did not expect.
//!
//! Everything else a scan plans (Parquet scans, filters, sorts, unions) is
//! DataFusion's and travels with Ballista's own codecs. The Parquet scans
//! name the store as `fleetlake://data`, so each scheduler and executor
//! registers the same store under that URL (see [`crate::runtime_with_store`]).
//! A scan loses our footer-caching reader on the way: executors read each
//! file's footer once per task.
//!
//! Every encoding starts with a tag byte saying whose it is, so that what
//! Ballista's codecs encode comes back to them.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use fleetlake_query::dedup_exec::DedupExec;
use fleetlake_query::engine::STORE_URL;
use fleetlake_query::table::FleetTable;
use fleetlake_storage::catalog::{FileMeta, Tombstone};
use fleetlake_storage::schema::TableSchema;
use serde::{Deserialize, Serialize};

/// Tag of an encoding of ours.
const FLEET: u8 = 1;
/// Tag of an encoding of Ballista's codec.
const BALLISTA: u8 = 2;

fn codec_error(what: &str, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("fleetlake codec: {what}: {e}"))
}

/// Splits an encoding into its tag and body.
fn tagged(buf: &[u8]) -> Result<(u8, &[u8])> {
    buf.split_first()
        .map(|(&tag, body)| (tag, body))
        .ok_or_else(|| codec_error("decode", "empty buffer"))
}

/// A [`FleetTable`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct TableWire {
    db: String,
    table: String,
    schema: TableSchema,
    files: Vec<FileMeta>,
    tombstones: Vec<Tombstone>,
    expired_before: Option<i64>,
    delete_seq: u64,
}

/// Carries [`FleetTable`]s; everything else goes to Ballista's codec.
#[derive(Debug, Default)]
pub struct FleetLogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for FleetLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let (tag, body) = tagged(buf)?;
        if tag != FLEET {
            return self
                .ballista
                .try_decode_table_provider(body, table_ref, schema, ctx);
        }
        let wire: TableWire = serde_json::from_slice(body).map_err(|e| codec_error("table", e))?;
        let store_url = ObjectStoreUrl::parse(STORE_URL)?;
        let table = FleetTable::new(Arc::new(wire.schema), wire.files, Vec::new(), store_url)
            .with_tombstones(wire.tombstones)
            .with_expiry(wire.expired_before)
            .with_identity(&wire.db, &wire.table, wire.delete_seq)
            .with_plain_tags();
        if table.schema().fields() != schema.fields() {
            return Err(codec_error(
                "table",
                format!("{table_ref}: the plan's schema is not the table's"),
            ));
        }
        Ok(Arc::new(table))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(table) = node.downcast_ref::<FleetTable>() else {
            buf.push(BALLISTA);
            return self
                .ballista
                .try_encode_table_provider(table_ref, node, buf);
        };
        // The write buffer lives in the writing server only.
        if !table.buffered().is_empty() {
            return Err(codec_error(
                "table",
                format!("{table_ref}: buffered rows cannot be sent to a cluster"),
            ));
        }
        let (db, name) = table.identity().unwrap_or(("", ""));
        let wire = TableWire {
            db: db.to_string(),
            table: name.to_string(),
            schema: table.table_schema().as_ref().clone(),
            files: table.files().to_vec(),
            tombstones: table.tombstones().to_vec(),
            expired_before: table.expired_before(),
            delete_seq: table.delete_seq(),
        };
        buf.push(FLEET);
        serde_json::to_writer(&mut *buf, &wire).map_err(|e| codec_error("table", e))
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}

/// One sort key of a [`DedupExec`]'s input: a column and its order.
#[derive(Debug, Serialize, Deserialize)]
struct SortWire {
    column: usize,
    descending: bool,
    nulls_first: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct DedupWire {
    key: Vec<usize>,
    ordering: Vec<SortWire>,
}

/// Carries [`DedupExec`]; everything else goes to Ballista's codec.
#[derive(Debug, Default)]
pub struct FleetPhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for FleetPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (tag, body) = tagged(buf)?;
        if tag != FLEET {
            return self.ballista.try_decode(body, inputs, ctx, proto_converter);
        }
        let wire: DedupWire = serde_json::from_slice(body).map_err(|e| codec_error("dedup", e))?;
        let [input] = inputs else {
            return Err(codec_error("dedup", "expected one input"));
        };
        let schema = input.schema();
        let n = schema.fields().len();
        if let Some(bad) = wire
            .key
            .iter()
            .chain(wire.ordering.iter().map(|s| &s.column))
            .find(|&&i| i >= n)
        {
            return Err(codec_error(
                "dedup",
                format!("column {bad} of an input with {n}"),
            ));
        }
        let sort = wire.ordering.iter().map(|s| {
            PhysicalSortExpr::new(
                Arc::new(Column::new(schema.field(s.column).name(), s.column))
                    as Arc<dyn PhysicalExpr>,
                SortOptions {
                    descending: s.descending,
                    nulls_first: s.nulls_first,
                },
            )
        });
        let ordering =
            LexOrdering::new(sort).ok_or_else(|| codec_error("dedup", "empty ordering"))?;
        Ok(Arc::new(DedupExec::new(
            Arc::clone(input),
            wire.key,
            ordering,
        )))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(dedup) = node.downcast_ref::<DedupExec>() else {
            buf.push(BALLISTA);
            return self.ballista.try_encode(node, buf, proto_converter);
        };
        let ordering = dedup
            .ordering()
            .iter()
            .map(|s| {
                let column = s.expr.downcast_ref::<Column>().ok_or_else(|| {
                    codec_error("dedup", format!("sort key {} is not a column", s.expr))
                })?;
                Ok(SortWire {
                    column: column.index(),
                    descending: s.options.descending,
                    nulls_first: s.options.nulls_first,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let wire = DedupWire {
            key: dedup.key().to_vec(),
            ordering,
        };
        buf.push(FLEET);
        serde_json::to_writer(&mut *buf, &wire).map_err(|e| codec_error("dedup", e))
    }
}
