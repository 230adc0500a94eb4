//! Rule state on the object store, under `_rules/`:
//!
//! ```text
//! _rules/defs/<name>.json          rules created through the API
//! _rules/state/<name>.json         alert instances, safety history, breaker, version
//! _rules/actions/<ns>-<seq>.json   the decision log (system.actions), append-only;
//!                                  a later object's row replaces an earlier one of the same id
//! ```

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

pub const ROOT: &str = "_rules";

#[derive(Debug, Clone)]
pub struct RuleStore {
    store: Arc<dyn ObjectStore>,
}

impl RuleStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    fn path(kind: &str, name: &str) -> Path {
        Path::from(format!("{ROOT}/{kind}/{name}.json"))
    }

    pub async fn put<T: Serialize>(&self, kind: &str, name: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))?;
        self.store
            .put(&Self::path(kind, name), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    pub async fn delete(&self, kind: &str, name: &str) -> Result<()> {
        match self.store.delete(&Self::path(kind, name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object of `kind`, in path order, as (name, value). An object
    /// that does not parse is an error naming it.
    pub async fn list<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<(String, T)>> {
        let prefix = Path::from(format!("{ROOT}/{kind}"));
        let mut metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let Some(name) = m
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
                .map(str::to_string)
            else {
                continue;
            };
            let bytes = self.store.get(&m.location).await?.bytes().await?;
            let value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Internal(format!("reading {}: {e}", m.location)))?;
            out.push((name, value));
        }
        Ok(out)
    }
}
