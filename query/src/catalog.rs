//! DataFusion catalog over fleetlake: one schema per database, plus `system`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use fleetlake_ingest::Ingester;

use crate::system::{SYSTEM_SCHEMA, SystemSchema, SystemTable};
use crate::table::FleetTable;

/// Name of the DataFusion catalog that holds every database.
pub const CATALOG_NAME: &str = "fleetlake";

#[derive(Debug)]
pub struct FleetCatalog {
    ingester: Arc<Ingester>,
    store_url: ObjectStoreUrl,
    extra_system: Vec<Arc<dyn SystemTable>>,
}

impl FleetCatalog {
    /// `extra_system` adds tables of other components (e.g. compaction) to
    /// the `system` schema.
    pub fn new(
        ingester: Arc<Ingester>,
        store_url: ObjectStoreUrl,
        extra_system: Vec<Arc<dyn SystemTable>>,
    ) -> Self {
        Self {
            ingester,
            store_url,
            extra_system,
        }
    }
}

impl CatalogProvider for FleetCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.ingester.databases();
        names.push(SYSTEM_SCHEMA.to_string());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SYSTEM_SCHEMA {
            return Some(Arc::new(SystemSchema::new(
                self.ingester.clone(),
                self.extra_system.clone(),
            )));
        }
        Some(Arc::new(DatabaseSchema {
            ingester: self.ingester.clone(),
            db: name.to_string(),
            store_url: self.store_url.clone(),
        }))
    }
}

/// The tables of one database. An unknown database is an empty schema, so
/// that its tables are reported as "not found" rather than the schema.
#[derive(Debug)]
struct DatabaseSchema {
    ingester: Arc<Ingester>,
    db: String,
    store_url: ObjectStoreUrl,
}

#[async_trait]
impl SchemaProvider for DatabaseSchema {
    fn table_names(&self) -> Vec<String> {
        self.ingester.tables(&self.db)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(schema) = self.ingester.table_schema(&self.db, name) else {
            return Ok(None);
        };
        // Buffer before catalog: a flush that lands in between then shows its
        // rows twice (de-duplicated by identity), never zero times.
        let buffered = self.ingester.buffered(&self.db, name);
        let state = self.ingester.catalog().state();
        Ok(Some(Arc::new(FleetTable::from_catalog(
            &state,
            &self.db,
            name,
            schema,
            buffered,
            self.store_url.clone(),
        ))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.ingester.table_schema(&self.db, name).is_some()
    }
}
