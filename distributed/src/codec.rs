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
            files: table.files().into_iter().cloned().collect(),
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

#[cfg(test)]
mod tests {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::bytes::{
        logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
        physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
    };
    use fleetlake_storage::schema::{ColumnKind, FieldType};
    use object_store::memory::InMemory;

    use super::*;

    fn file(path: &str, min_time: i64, max_time: i64, seq: u64) -> FileMeta {
        FileMeta {
            path: path.to_string(),
            db: "fleet".into(),
            table: "cpu".into(),
            day: "2016-01-01".into(),
            rows: 10,
            bytes: 1000,
            min_time,
            max_time,
            seq,
            created_ns: 0,
            level: 0,
            run: None,
            sort_order: Vec::new(),
            deletes_applied: 0,
        }
    }

    /// A session that reaches an (empty) store as `fleetlake://data`.
    fn session() -> SessionContext {
        let ctx = SessionContext::new();
        let url = ObjectStoreUrl::parse(STORE_URL).unwrap();
        ctx.runtime_env()
            .register_object_store(url.as_ref(), Arc::new(InMemory::new()));
        ctx
    }

    #[tokio::test]
    async fn a_table_and_its_dedup_plan_arrive_as_they_left() {
        let mut schema = TableSchema::new();
        schema.merge_column("cpu", "host", ColumnKind::Tag).unwrap();
        schema
            .merge_column("cpu", "usage", ColumnKind::Field(FieldType::Float))
            .unwrap();
        let tombstone = Tombstone {
            seq: 9,
            min_time: 0,
            max_time: 50,
            tags: vec![("host".into(), "a".into())],
            created_ns: 0,
        };
        // Two files over the same minute: their overlap is de-duplicated.
        let files = vec![file("a.parquet", 0, 100, 1), file("b.parquet", 50, 150, 2)];
        let table = FleetTable::new(
            Arc::new(schema),
            files.clone(),
            Vec::new(),
            ObjectStoreUrl::parse(STORE_URL).unwrap(),
        )
        .with_tombstones(vec![tombstone.clone()])
        .with_expiry(Some(-5))
        .with_identity("fleet", "cpu", 9)
        .with_plain_tags();

        let client = session();
        client.register_table("cpu", Arc::new(table)).unwrap();
        let sql = "SELECT host, max(usage) FROM cpu GROUP BY host";
        let plan = client.sql(sql).await.unwrap().logical_plan().clone();
        let logical = FleetLogicalCodec::default();
        let bytes = logical_plan_to_bytes_with_extension_codec(&plan, &logical).unwrap();

        let scheduler = session();
        let decoded =
            logical_plan_from_bytes_with_extension_codec(&bytes, &scheduler.task_ctx(), &logical)
                .unwrap();
        assert_eq!(format!("{decoded}"), format!("{plan}"));
        let mut provider = None;
        decoded
            .apply(|node| {
                if let LogicalPlan::TableScan(scan) = node {
                    provider = Some(Arc::clone(&scan.source));
                }
                Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
            })
            .unwrap();
        let source = provider.expect("a table scan");
        let source = datafusion::datasource::source_as_provider(&source).unwrap();
        let table = source.downcast_ref::<FleetTable>().expect("a FleetTable");
        assert_eq!(table.files(), files.iter().collect::<Vec<_>>());
        assert_eq!(table.tombstones(), [tombstone].as_slice());
        assert_eq!(table.expired_before(), Some(-5));
        assert_eq!(table.identity(), Some(("fleet", "cpu")));
        assert_eq!(table.delete_seq(), 9);

        let physical = scheduler
            .state()
            .create_physical_plan(&decoded)
            .await
            .unwrap();
        let shown = displayable(physical.as_ref()).indent(true).to_string();
        assert!(shown.contains("DedupExec"), "{shown}");
        let physical_codec = FleetPhysicalCodec::default();
        let bytes =
            physical_plan_to_bytes_with_extension_codec(Arc::clone(&physical), &physical_codec)
                .unwrap();
        let executor = session();
        let back = physical_plan_from_bytes_with_extension_codec(
            &bytes,
            &executor.task_ctx(),
            &physical_codec,
        )
        .unwrap();
        assert_eq!(displayable(back.as_ref()).indent(true).to_string(), shown);
    }

    #[test]
    fn a_foreign_or_damaged_encoding_is_an_error_not_a_panic() {
        let ctx = session();
        let codec = FleetPhysicalCodec::default();
        let converter = datafusion_proto::physical_plan::DefaultPhysicalProtoConverter {};
        for buf in [&b""[..], &[FLEET][..], &[FLEET, b'{'][..], &[7, 1, 2][..]] {
            assert!(
                codec
                    .try_decode(buf, &[], &ctx.task_ctx(), &converter)
                    .is_err()
            );
        }
        let wire =
            br#"{"key":[5],"ordering":[{"column":5,"descending":false,"nulls_first":false}]}"#;
        let mut buf = vec![FLEET];
        buf.extend_from_slice(wire);
        let input: Arc<dyn ExecutionPlan> =
            Arc::new(datafusion::physical_plan::empty::EmptyExec::new(Arc::new(
                datafusion::arrow::datatypes::Schema::empty(),
            )));
        let err = codec
            .try_decode(&buf, &[input], &ctx.task_ctx(), &converter)
            .unwrap_err();
        assert!(err.to_string().contains("column 5"), "{err}");
    }
}
