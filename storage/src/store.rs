//! Opening the object store that holds a fleetlake root.

use std::path::Path as FsPath;
use std::sync::Arc;

use std::ops::Range;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

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

/// An object-store error as [`Error::ObjectStore`], naming `path`.
pub fn os_err(path: &Path) -> impl FnOnce(object_store::Error) -> Error + '_ {
    move |source| Error::ObjectStore {
        path: path.to_string(),
        source,
    }
}

/// The whole object at `path`.
///
/// # Errors
/// [`Error::ObjectStore`] naming the path.
pub async fn read(store: &dyn ObjectStore, path: &Path) -> Result<Bytes> {
    store
        .get(path)
        .await
        .map_err(os_err(path))?
        .bytes()
        .await
        .map_err(os_err(path))
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
    Ok(Arc::new(SyncedLocal {
        inner: Arc::new(fs),
    }))
}

/// A put option (in [`PutOptions::extensions`]): the write need not be
/// durable when it returns. A local directory leaves it to the kernel's
/// writeback instead of fsyncing the file and its directory; stores that
/// are durable anyway ignore it. For small objects rewritten often whose
/// loss in a crash costs a recomputation, never acknowledged data.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lazy;

impl Lazy {
    /// Put options that ask for a lazy write.
    pub fn options() -> PutOptions {
        let mut opts = PutOptions::default();
        opts.extensions.insert(Lazy);
        opts
    }
}

/// A local directory whose writes are durable when they return: the file and
/// its directory are fsynced (unless the put asks for [`Lazy`]). `LocalFileSystem` alone only renames a temp
/// file into place, and the flush removes WAL segments right after its
/// commit — a power loss could otherwise lose both copies of acked rows.
#[derive(Debug, Clone)]
struct SyncedLocal {
    inner: Arc<LocalFileSystem>,
}

impl std::fmt::Display for SyncedLocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Synced({})", self.inner)
    }
}

impl SyncedLocal {
    async fn sync(&self, location: &Path) -> object_store::Result<()> {
        let file = self.inner.path_to_filesystem(location)?;
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&file)?.sync_all()?;
            if let Some(dir) = file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "SyncedLocal",
            source: Box::new(e),
        })?
        .map_err(|e| object_store::Error::Generic {
            store: "SyncedLocal",
            source: Box::new(e),
        })
    }
}

/// Reads of at most this many bytes in all are done inline (see
/// `SyncedLocal::get_ranges`): a few pages, microseconds from the page cache.
const INLINE_READ_BYTES: u64 = 256 * 1024;

/// `ranges` of `file`, each whole (a range past the end is an error).
fn read_ranges(file: &FsPath, ranges: &[Range<u64>]) -> std::io::Result<Vec<Bytes>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(file)?;
    ranges
        .iter()
        .map(|r| {
            let len = usize::try_from(r.end.saturating_sub(r.start))
                .map_err(|_| std::io::Error::other("range too large"))?;
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, r.start)?;
            Ok(Bytes::from(buf))
        })
        .collect()
}

/// A multipart upload to a [`SyncedLocal`] that fsyncs on completion.
#[derive(Debug)]
struct SyncedUpload {
    inner: Box<dyn MultipartUpload>,
    store: SyncedLocal,
    location: Path,
}

#[async_trait::async_trait]
impl MultipartUpload for SyncedUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let result = self.inner.complete().await?;
        self.store.sync(&self.location).await?;
        Ok(result)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait::async_trait]
impl ObjectStore for SyncedLocal {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let lazy = opts.extensions.get::<Lazy>().is_some();
        let result = self.inner.put_opts(location, payload, opts).await?;
        if !lazy {
            self.sync(location).await?;
        }
        Ok(result)
    }

    /// The upload's `complete` returns once the file and its directory are
    /// fsynced, as `put_opts` does.
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SyncedUpload {
            inner,
            store: self.clone(),
            location: location.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    /// A few pages are read on the calling thread: handing them to the
    /// blocking pool and back cost a small query two thread wake-ups per
    /// read, more than the read (from the page cache) itself.
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let total: u64 = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
        if total > INLINE_READ_BYTES {
            return self.inner.get_ranges(location, ranges).await;
        }
        let file = self.inner.path_to_filesystem(location)?;
        read_ranges(&file, ranges).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => object_store::Error::NotFound {
                path: location.to_string(),
                source: Box::new(source),
            },
            _ => object_store::Error::Generic {
                store: "SyncedLocal",
                source: format!("reading {location}: {source}").into(),
            },
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        self.sync(to).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await?;
        self.sync(to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, PutMode};

    #[tokio::test]
    async fn local_store_keeps_put_if_not_exists() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path().to_str().unwrap()).unwrap();
        let path = Path::from("_catalog/commits/1.json");
        let create = || PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        store
            .put_opts(&path, PutPayload::from_static(b"one"), create())
            .await
            .unwrap();
        let again = store
            .put_opts(&path, PutPayload::from_static(b"two"), create())
            .await;
        assert!(
            matches!(again, Err(object_store::Error::AlreadyExists { .. })),
            "{again:?}"
        );
        let body = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&body[..], b"one");
        assert!(dir.path().join("_catalog/commits/1.json").exists());
    }

    #[tokio::test]
    async fn local_ranges_are_read_whole_small_or_large() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path().to_str().unwrap()).unwrap();
        let path = Path::from("data/f.bin");
        let body: Vec<u8> = (0..(INLINE_READ_BYTES as usize * 3))
            .map(|i| i as u8)
            .collect();
        store
            .put(&path, PutPayload::from(body.clone()))
            .await
            .unwrap();
        let big = INLINE_READ_BYTES * 2;
        // Read inline (a few bytes) and through the blocking pool (more).
        for ranges in [vec![3..10, 100..164, 0..1], vec![0..big, big..big + 5]] {
            let got = store.get_ranges(&path, &ranges).await.unwrap();
            for (r, b) in ranges.iter().zip(&got) {
                assert_eq!(&b[..], &body[r.start as usize..r.end as usize]);
            }
        }
        let len = body.len() as u64;
        assert!(
            store
                .get_ranges(&path, &[len - 2..len + 2, 0..1])
                .await
                .is_err()
        );
        let missing = store
            .get_ranges(&Path::from("data/none.bin"), &[0..4, 4..8])
            .await;
        assert!(
            matches!(missing, Err(object_store::Error::NotFound { .. })),
            "{missing:?}"
        );
    }
}

/// Reads `inner` and refuses every write: the store as a process that must
/// never change it sees it (a Ballista scheduler or executor, which runs
/// whatever plan a client sends).
#[derive(Debug)]
pub struct ReadOnly(pub Arc<dyn ObjectStore>);

impl std::fmt::Display for ReadOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadOnly({})", self.0)
    }
}

fn refused(location: &Path) -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: location.to_string(),
        source: "this process only reads the store; writes go to the fleetlake server".into(),
    }
}

#[async_trait::async_trait]
impl ObjectStore for ReadOnly {
    async fn put_opts(
        &self,
        location: &Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(refused(location))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(refused(location))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.0.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.0.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        use futures::StreamExt;
        locations.map(|l| l.and_then(|l| Err(refused(&l)))).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        _from: &Path,
        to: &Path,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        Err(refused(to))
    }

    async fn rename_opts(
        &self,
        _from: &Path,
        to: &Path,
        _options: RenameOptions,
    ) -> object_store::Result<()> {
        Err(refused(to))
    }
}
