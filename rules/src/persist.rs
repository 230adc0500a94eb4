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
use object_store::{ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
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
        self.put_opts(kind, name, value, PutOptions::default())
            .await
    }

    /// [`RuleStore::put`], durable only once the kernel writes it back: a
    /// crash may lose it or leave it torn, which [`RuleStore::list_readable`]
    /// skips.
    pub async fn put_lazy<T: Serialize>(&self, kind: &str, name: &str, value: &T) -> Result<()> {
        self.put_opts(kind, name, value, fleetlake_storage::store::Lazy::options())
            .await
    }

    async fn put_opts<T: Serialize>(
        &self,
        kind: &str,
        name: &str,
        value: &T,
        opts: PutOptions,
    ) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))?;
        self.store
            .put_opts(&Self::path(kind, name), PutPayload::from(bytes), opts)
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
        self.list_parsed(kind, false).await
    }

    /// [`RuleStore::list`] for objects written by [`RuleStore::put_lazy`]:
    /// one that does not parse (torn by a crash) is left out with a warning.
    pub async fn list_readable<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<(String, T)>> {
        self.list_parsed(kind, true).await
    }

    async fn list_parsed<T: DeserializeOwned>(
        &self,
        kind: &str,
        skip_unreadable: bool,
    ) -> Result<Vec<(String, T)>> {
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
            match serde_json::from_slice(&bytes) {
                Ok(value) => out.push((name, value)),
                Err(e) if skip_unreadable => {
                    tracing::warn!(object = %m.location, error = %e, "skipping an unreadable object (torn by a crash?)");
                }
                Err(e) => {
                    return Err(Error::Internal(format!("reading {}: {e}", m.location)));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lazy_object_reads_back_and_a_torn_one_is_skipped_where_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = fleetlake_storage::store::open_local(dir.path()).unwrap();
        let rules = RuleStore::new(store.clone());
        rules.put_lazy("state", "a", &[1, 2]).await.unwrap();
        rules.put("state", "b", &[3]).await.unwrap();
        // What a crash can leave of a lazy write.
        store
            .put(
                &RuleStore::path("state", "c"),
                PutPayload::from_static(b"[4, "),
            )
            .await
            .unwrap();
        let read: Vec<(String, Vec<i32>)> = rules.list_readable("state").await.unwrap();
        assert_eq!(
            read,
            vec![("a".to_string(), vec![1, 2]), ("b".to_string(), vec![3])]
        );
        let e = rules.list::<Vec<i32>>("state").await.unwrap_err();
        assert!(e.to_string().contains("state/c.json"), "{e}");
    }
}
