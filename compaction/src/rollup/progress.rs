//! How far a rollup got, kept as `_rollups/<db>/<target>.json` in the store.
//!
//! The object is written after the catalog commit that adds the rollup's
//! files, never before: a crash in between leaves progress behind the data,
//! and the next pass recomputes those buckets with identical rows (same row
//! identity, a later `seq`), which queries de-duplicate. Deleting the object
//! makes the next pass rebuild the target from the whole source.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const DIR: &str = "_rollups";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub source: String,
    pub every_ns: i64,
    /// Every bucket that starts before this is materialized.
    pub watermark_ns: i64,
    /// Source data written up to this sequence (file `seq`, buffered
    /// `__seq`) is reflected in the materialized buckets.
    pub seen_seq: u64,
    /// Deletes of source rows up to this tombstone `seq` are reflected.
    /// (Absent in objects written before deletes were followed: 0.)
    #[serde(default)]
    pub seen_delete_seq: u64,
    pub updated_ns: i64,
}

pub fn path(db: &str, target: &str) -> Path {
    Path::from_iter([DIR.to_string(), db.to_string(), format!("{target}.json")])
}

fn os_err(path: &Path) -> impl FnOnce(object_store::Error) -> Error + '_ {
    move |source| {
        Error::Storage(fleetlake_storage::Error::ObjectStore {
            path: path.to_string(),
            source,
        })
    }
}

pub async fn load(
    store: &Arc<dyn ObjectStore>,
    db: &str,
    target: &str,
) -> Result<Option<Progress>> {
    let p = path(db, target);
    let bytes = match store.get(&p).await {
        Ok(r) => r.bytes().await.map_err(os_err(&p))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(os_err(&p)(e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::Rollup(format!(
            "progress object {p} is corrupt ({e}); delete it to rebuild the rollup"
        ))
    })
}

pub async fn save(
    store: &Arc<dyn ObjectStore>,
    db: &str,
    target: &str,
    progress: &Progress,
) -> Result<()> {
    let p = path(db, target);
    let body = serde_json::to_vec(progress).expect("progress serialises");
    store
        .put(&p, PutPayload::from(body))
        .await
        .map_err(os_err(&p))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn round_trip() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        assert_eq!(load(&store, "fleet", "cpu_1m").await.unwrap(), None);
        let p = Progress {
            source: "cpu".into(),
            every_ns: 60_000_000_000,
            watermark_ns: 120_000_000_000,
            seen_seq: 7,
            seen_delete_seq: 5,
            updated_ns: 1,
        };
        save(&store, "fleet", "cpu_1m", &p).await.unwrap();
        assert_eq!(load(&store, "fleet", "cpu_1m").await.unwrap(), Some(p));
        assert_eq!(
            path("fleet", "cpu_1m").to_string(),
            "_rollups/fleet/cpu_1m.json"
        );
    }
}
