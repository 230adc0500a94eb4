//! Opening the object store that holds a fleetlake root.

use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;

use crate::error::{Error, Result};

/// Opens `url` as the store root:
/// - `s3://bucket/prefix` through object_store's S3 builder, configured from
///   the standard `AWS_*` environment variables;
/// - `memory://` for an in-process store (tests);
/// - `file:///abs/dir` or a plain path for a local directory (created if missing).
pub fn open(url: &str) -> Result<Arc<dyn ObjectStore>> {
    let bad = |reason: String| Error::BadObjectStoreUrl {
        url: url.to_string(),
        reason,
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket name".into()));
        }
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            return Ok(Arc::new(s3));
        }
        return Ok(Arc::new(PrefixStore::new(s3, prefix)));
    }
    if url == "memory://" {
        return Ok(Arc::new(InMemory::new()));
    }
    if url.contains("://") && !url.starts_with("file://") {
        return Err(bad(
            "unsupported scheme; use a directory, file://, s3:// or memory://".into(),
        ));
    }
    let dir = url.strip_prefix("file://").unwrap_or(url);
    open_local(FsPath::new(dir))
}

/// A local directory as the store root.
pub fn open_local(dir: &FsPath) -> Result<Arc<dyn ObjectStore>> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let fs = LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| Error::BadObjectStoreUrl {
            url: dir.display().to_string(),
            reason: e.to_string(),
        })?
        .with_automatic_cleanup(true);
    Ok(Arc::new(fs))
}
