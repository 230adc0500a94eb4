//! The write-ahead log: append-only segment files with group commit.
//!
//! ```text
//! <wal-dir>/<first-seq:020>.wal     segment: records with seq >= first-seq
//! record := len:u32le crc32:u32le payload[len]
//! payload := seq:u64le default_time_ns:i64le precision:u8 db_len:u16le db lines
//! ```
//!
//! # Invariants
//! - A write is acknowledged only after its record is fsynced; one fsync covers
//!   every record queued while the previous one ran (group commit).
//! - Sequence numbers increase by one per record across segments.
//! - The buffer receives records in sequence order, after their fsync, on the
//!   WAL thread: buffer order is WAL order.
//! - Only the last segment may end in a torn record (a crash mid-append); it is
//!   ignored on replay and the next start opens a fresh segment.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use tracing::{error, info, warn};

use crate::error::{Error, Result};
use crate::metrics::IngestMetrics;
use crate::precision::Precision;

/// One durable write request.
#[derive(Debug, Clone, PartialEq)]
pub struct WalRecord {
    pub seq: u64,
    pub db: String,
    pub default_time_ns: i64,
    pub precision: Precision,
    pub lines: String,
}

/// Appends one framed record to `out`.
fn encode_record(
    out: &mut Vec<u8>,
    seq: u64,
    db: &str,
    default_time_ns: i64,
    precision: Precision,
    lines: &str,
) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&default_time_ns.to_le_bytes());
    out.push(precision.to_u8());
    out.extend_from_slice(&(db.len() as u16).to_le_bytes());
    out.extend_from_slice(db.as_bytes());
    out.extend_from_slice(lines.as_bytes());
    let payload = &out[start + 8..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

impl WalRecord {
    fn decode(payload: &[u8]) -> Option<Self> {
        let seq = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
        let default_time_ns = i64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
        let precision = Precision::from_u8(*payload.get(16)?)?;
        let db_len = u16::from_le_bytes(payload.get(17..19)?.try_into().ok()?) as usize;
        let db = std::str::from_utf8(payload.get(19..19 + db_len)?).ok()?;
        let lines = std::str::from_utf8(payload.get(19 + db_len..)?).ok()?;
        Some(Self {
            seq,
            db: db.to_string(),
            default_time_ns,
            precision,
            lines: lines.to_string(),
        })
    }
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::WalIo {
        path: path.to_path_buf(),
        source,
    }
}

/// Segments in `dir`, by first sequence number.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Reads every record of every segment, in order. A torn tail of the last
/// segment ends the replay and is truncated; a bad record anywhere else is an
/// error.
pub fn read_all(dir: &Path) -> Result<Vec<WalRecord>> {
    let segments = list_segments(dir)?;
    let mut records = Vec::new();
    for (i, (_, path)) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_err(path))?;
        let mut off = 0usize;
        while off < bytes.len() {
            let bad = |reason: &str| Error::WalCorrupt {
                path: path.clone(),
                offset: off as u64,
                reason: reason.to_string(),
            };
            let record = (|| {
                let header = bytes
                    .get(off..off + 8)
                    .ok_or_else(|| bad("truncated header"))?;
                let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
                let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
                let payload = bytes
                    .get(off + 8..off + 8 + len)
                    .ok_or_else(|| bad("truncated record"))?;
                if crc32fast::hash(payload) != crc {
                    return Err(bad("checksum mismatch"));
                }
                let r = WalRecord::decode(payload).ok_or_else(|| bad("undecodable record"))?;
                Ok((r, 8 + len))
            })();
            match record {
                Ok((r, n)) => {
                    records.push(r);
                    off += n;
                }
                Err(e) if last => {
                    warn!(error = %e, "truncating the torn tail of the last WAL segment");
                    // Cut it off, so that this segment is clean once it is no longer the last.
                    OpenOptions::new()
                        .write(true)
                        .open(path)
                        .and_then(|f| f.set_len(off as u64).and_then(|()| f.sync_all()))
                        .map_err(io_err(path))?;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(records)
}

/// Applies fsynced records to the write buffer, on the WAL thread, in order.
pub trait WalApply: Send + Sync + 'static {
    fn apply(&self, seq: u64, db: &str, payload: AppendPayload);
}

/// What a request hands to the WAL besides its record text.
pub type AppendPayload = Vec<crate::validate::TableWrite>;

struct AppendRequest {
    db: String,
    default_time_ns: i64,
    precision: Precision,
    lines: String,
    payload: AppendPayload,
    reply: tokio::sync::oneshot::Sender<Result<u64, String>>,
}

/// What the writer thread is asked to do.
enum Op {
    Append(AppendRequest),
    /// Start a new segment now (unless the current one is empty); the
    /// sender hears when it has.
    Rotate(tokio::sync::oneshot::Sender<()>),
}

/// Handle to the WAL writer thread.
pub struct Wal {
    dir: PathBuf,
    tx: parking_lot::Mutex<Option<mpsc::Sender<Op>>>,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).finish()
    }
}

/// Bytes after which the writer starts a new segment.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

impl Wal {
    /// Starts the writer thread with a fresh segment whose first record is `next_seq`.
    pub fn start(
        dir: &Path,
        next_seq: u64,
        apply: Arc<dyn WalApply>,
        metrics: Arc<IngestMetrics>,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let (tx, rx) = mpsc::channel::<Op>();
        let mut writer = SegmentWriter::open(dir, next_seq)?;
        let thread = std::thread::Builder::new()
            .name("fleetlake-wal".into())
            .spawn(move || {
                let mut next_seq = next_seq;
                let mut encoded = Vec::new();
                // After a failed append the segment may end in a partial group.
                let mut broken = false;
                while let Ok(first) = rx.recv() {
                    let mut batch = Vec::new();
                    let mut rotations = Vec::new();
                    let mut bytes = 0;
                    let mut next = Some(first);
                    while let Some(op) = next.take() {
                        match op {
                            Op::Append(r) => {
                                bytes += r.lines.len();
                                batch.push(r);
                            }
                            Op::Rotate(done) => rotations.push(done),
                        }
                        if bytes < 64 * 1024 * 1024 {
                            next = rx.try_recv().ok();
                        }
                    }
                    let rotate = broken || (!rotations.is_empty() && writer.written > 0);
                    if rotate || writer.written >= SEGMENT_BYTES {
                        match SegmentWriter::open(&writer.dir, next_seq) {
                            Ok(w) => {
                                writer = w;
                                broken = false;
                            }
                            Err(e) => error!(error = %e, "cannot start a new WAL segment"),
                        }
                    }
                    for done in rotations {
                        let _ = done.send(());
                    }
                    if batch.is_empty() {
                        continue;
                    }
                    encoded.clear();
                    let first_seq = next_seq;
                    for r in &batch {
                        encode_record(
                            &mut encoded,
                            next_seq,
                            &r.db,
                            r.default_time_ns,
                            r.precision,
                            &r.lines,
                        );
                        next_seq += 1;
                    }
                    match writer.append_and_sync(&encoded) {
                        Ok(()) => {
                            metrics.wal_fsyncs.inc();
                            metrics.wal_bytes.add(encoded.len() as u64);
                            for (i, r) in batch.into_iter().enumerate() {
                                let seq = first_seq + i as u64;
                                apply.apply(seq, &r.db, r.payload);
                                let _ = r.reply.send(Ok(seq));
                            }
                        }
                        Err(e) => {
                            // Nothing of this group is acknowledged; the segment
                            // may hold a partial group, so start a new one.
                            error!(error = %e, "WAL append failed");
                            next_seq = first_seq + batch.len() as u64;
                            for r in batch {
                                let _ = r.reply.send(Err(e.to_string()));
                            }
                            broken = true;
                        }
                    }
                }
                info!("WAL writer stopped");
            })
            .map_err(io_err(dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            tx: parking_lot::Mutex::new(Some(tx)),
            thread: parking_lot::Mutex::new(Some(thread)),
        })
    }

    /// Appends one record; resolves with its sequence number once it is
    /// fsynced and applied to the buffer.
    pub async fn append(
        &self,
        db: &str,
        default_time_ns: i64,
        precision: Precision,
        lines: String,
        payload: AppendPayload,
    ) -> Result<u64> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let req = AppendRequest {
            db: db.to_string(),
            default_time_ns,
            precision,
            lines,
            payload,
            reply,
        };
        self.tx
            .lock()
            .as_ref()
            .ok_or(Error::ShuttingDown)?
            .send(Op::Append(req))
            .map_err(|_| Error::WalClosed)?;
        match rx.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(msg)) => Err(Error::WalIo {
                path: self.dir.clone(),
                source: std::io::Error::other(msg),
            }),
            Err(_) => Err(Error::WalClosed),
        }
    }

    /// Starts a new segment (unless the current one is empty) and returns
    /// once the writer has: every record appended before is in an older
    /// segment, which [`Self::remove_persisted`] deletes once they are
    /// persisted, with no later write needed to close it.
    pub async fn rotate(&self) {
        let (done, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .tx
            .lock()
            .as_ref()
            .is_some_and(|tx| tx.send(Op::Rotate(done)).is_ok());
        if sent {
            let _ = rx.await;
        }
    }

    /// Deletes every segment all of whose records are `<= persisted_seq`.
    /// The newest segment is kept: the writer may still append to it.
    pub fn remove_persisted(&self, persisted_seq: u64) -> Result<usize> {
        let segments = list_segments(&self.dir)?;
        let mut removed = 0;
        for pair in segments.windows(2) {
            let (_, path) = &pair[0];
            let (next_first, _) = pair[1];
            if next_first <= persisted_seq + 1 {
                std::fs::remove_file(path).map_err(io_err(path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Stops accepting appends and waits for queued ones to finish.
    pub fn close(&self) {
        self.tx.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

struct SegmentWriter {
    dir: PathBuf,
    path: PathBuf,
    file: BufWriter<File>,
    written: u64,
}

impl SegmentWriter {
    fn open(dir: &Path, first_seq: u64) -> Result<Self> {
        let path = segment_path(dir, first_seq);
        // A segment named `first_seq` can only hold a torn tail from before a
        // crash (every valid record is older), so it is started afresh.
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let written = 0;
        // Make the new directory entry durable before any record in it is acknowledged.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            path,
            file: BufWriter::with_capacity(1 << 20, file),
            written,
        })
    }

    fn append_and_sync(&mut self, bytes: &[u8]) -> Result<()> {
        let path = self.path.clone();
        self.file.write_all(bytes).map_err(io_err(&path))?;
        self.file.flush().map_err(io_err(&path))?;
        self.file.get_ref().sync_data().map_err(io_err(&path))?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(parking_lot::Mutex<Vec<u64>>);
    impl WalApply for Collect {
        fn apply(&self, seq: u64, _db: &str, _payload: AppendPayload) {
            self.0.lock().push(seq);
        }
    }

    #[tokio::test]
    async fn appends_replay_in_order_and_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let applied = Arc::new(Collect(parking_lot::Mutex::new(vec![])));
        let metrics = Arc::new(IngestMetrics::default());
        let wal = Wal::start(dir.path(), 5, applied.clone(), metrics.clone()).unwrap();
        let mut handles = Vec::new();
        let wal = Arc::new(wal);
        for i in 0..20 {
            let wal = Arc::clone(&wal);
            handles.push(tokio::spawn(async move {
                wal.append("fleet", i, Precision::Second, format!("m v={i}"), vec![])
                    .await
                    .unwrap()
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(*applied.0.lock(), (5..25).collect::<Vec<_>>());
        assert!(metrics.wal_fsyncs.get() <= 20);
        wal.close();
        // Tear the tail: append half a record.
        let (_, seg) = list_segments(dir.path()).unwrap().pop().unwrap();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        let records = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 20);
        assert_eq!(records[0].seq, 5);
        let mut lines: Vec<_> = records.iter().map(|r| r.lines.clone()).collect();
        lines.sort();
        assert!(lines.contains(&"m v=7".to_string()));
        assert_eq!(records[3].precision, Precision::Second);
    }

    #[tokio::test]
    async fn a_rotation_lets_every_persisted_segment_go_with_no_later_write() {
        let dir = tempfile::tempdir().unwrap();
        let apply = Arc::new(Collect(parking_lot::Mutex::new(vec![])));
        let wal = Wal::start(dir.path(), 1, apply, Arc::default()).unwrap();
        wal.rotate().await; // the first segment is empty: it stays the only one
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
        for i in 0..3 {
            wal.append("fleet", i, Precision::Second, format!("m v={i}"), vec![])
                .await
                .unwrap();
        }
        wal.rotate().await;
        assert_eq!(
            wal.remove_persisted(2).unwrap(),
            0,
            "record 3 is not persisted"
        );
        assert_eq!(wal.remove_persisted(3).unwrap(), 1);
        let left = list_segments(dir.path()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, 4, "the new segment starts after the last record");
        assert_eq!(std::fs::metadata(&left[0].1).unwrap().len(), 0);
        wal.append("fleet", 9, Precision::Second, "m v=9".into(), vec![])
            .await
            .unwrap();
        wal.close();
        let records = read_all(dir.path()).unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4]);
    }

    #[test]
    fn remove_persisted_keeps_the_newest_segment() {
        let dir = tempfile::tempdir().unwrap();
        for s in [1u64, 10, 20] {
            File::create(segment_path(dir.path(), s)).unwrap();
        }
        let apply = Arc::new(Collect(parking_lot::Mutex::new(vec![])));
        let wal = Wal::start(dir.path(), 30, apply, Arc::default()).unwrap();
        assert_eq!(wal.remove_persisted(15).unwrap(), 1);
        assert_eq!(wal.remove_persisted(100).unwrap(), 2);
        let left: Vec<u64> = list_segments(dir.path())
            .unwrap()
            .iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(left, vec![30]);
        wal.close();
    }
}
