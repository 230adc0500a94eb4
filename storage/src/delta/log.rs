//! One Delta Lake table's transaction log: its actions as the protocol
//! spells them ("Actions" in Delta's PROTOCOL.md), replaying the log into
//! the table's current snapshot, and writing the next commit.
//!
//! # Invariants
//! - Commit `n` is `_delta_log/<n, 20 digits>.json`, one JSON action per
//!   line, written with put-if-not-exists: two writers never both own `n`.
//! - Versions start at 0 and have no gaps; a gap is an error, not a guess.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::os_err;

/// The log's folder under a table's root.
pub const LOG_DIR: &str = "_delta_log";

/// One line of a commit: exactly one of its fields is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_data: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<Add>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<Remove>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_info: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    pub min_reader_version: u32,
    pub min_writer_version: u32,
}

impl Protocol {
    /// Plain Parquet files, no table features: every Delta reader reads it.
    pub fn basic() -> Self {
        Self {
            min_reader_version: 1,
            min_writer_version: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub format: Format,
    pub schema_string: String,
    pub partition_columns: Vec<String>,
    #[serde(default)]
    pub configuration: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Format {
    pub provider: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl Default for Format {
    fn default() -> Self {
        Self {
            provider: "parquet".into(),
            options: BTreeMap::new(),
        }
    }
}

/// A data file enters the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Add {
    /// Relative to the table root, URI-encoded.
    pub path: String,
    pub partition_values: BTreeMap<String, Option<String>>,
    pub size: u64,
    /// Milliseconds since the epoch.
    pub modification_time: i64,
    pub data_change: bool,
    /// Per-file statistics, a JSON document in a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
}

/// A data file leaves the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<i64>,
    pub data_change: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_file_metadata: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_values: Option<BTreeMap<String, Option<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// What the log says the table is at its newest version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// `None` while the log is empty (the table is not published yet).
    pub version: Option<u64>,
    pub metadata: Option<Metadata>,
    /// Live files by their (relative) path.
    pub files: BTreeMap<String, Add>,
}

impl Snapshot {
    fn apply(&mut self, version: u64, lines: Vec<LogLine>) {
        for line in lines {
            if let Some(m) = line.meta_data {
                self.metadata = Some(m);
            }
            if let Some(a) = line.add {
                self.files.insert(a.path.clone(), a);
            }
            if let Some(r) = line.remove {
                self.files.remove(&r.path);
            }
        }
        self.version = Some(version);
    }

    /// The version the next commit takes.
    pub fn next_version(&self) -> u64 {
        self.version.map_or(0, |v| v + 1)
    }
}

fn log_dir(root: &Path) -> Path {
    root.clone().join(LOG_DIR)
}

fn commit_path(root: &Path, version: u64) -> Path {
    log_dir(root).join(format!("{version:020}.json"))
}

fn version_of(path: &Path) -> Option<u64> {
    numbered(path, ".json")
}

/// The version in a log file's name `<20 digits><suffix>`.
pub(super) fn numbered(path: &Path, suffix: &str) -> Option<u64> {
    let digits = path.filename()?.strip_suffix(suffix)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Every object in the log of the table at `root`.
pub(super) async fn list_log(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
) -> Result<Vec<object_store::ObjectMeta>> {
    let dir = log_dir(root);
    store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(os_err(&dir))
}

/// Parses one commit's lines.
pub fn parse_commit(path: &Path, bytes: &[u8]) -> Result<Vec<LogLine>> {
    let mut lines = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = serde_json::from_slice(line)
            .map_err(|e| Error::Invalid(format!("Delta log {path}, line {}: {e}", i + 1)))?;
        lines.push(parsed);
    }
    Ok(lines)
}

/// Replays the log of the table at `root` (every commit from version 0).
///
/// # Errors
/// The store fails, a commit does not parse, or versions have a gap.
pub async fn replay(store: &Arc<dyn ObjectStore>, root: &Path) -> Result<Snapshot> {
    let dir = log_dir(root);
    // From the last checkpoint when there is a readable one: a long-lived
    // table has one commit per publication, and each is a GET on S3.
    let mut snapshot = match super::checkpoint::load(store, root).await {
        Ok(found) => found.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(table = %root, error = %e, "Delta checkpoint unreadable: replaying every commit");
            Snapshot::default()
        }
    };
    let listing = match snapshot.version {
        Some(v) => store.list_with_offset(Some(&dir), &commit_path(root, v)),
        None => store.list(Some(&dir)),
    };
    let mut versions: Vec<(u64, Path)> = listing
        .try_filter_map(|m| async move { Ok(version_of(&m.location).map(|v| (v, m.location))) })
        .try_collect()
        .await
        .map_err(os_err(&dir))?;
    versions.sort_by_key(|(v, _)| *v);
    versions.retain(|(v, _)| *v >= snapshot.next_version());
    for (v, path) in versions {
        if v != snapshot.next_version() {
            return Err(Error::Invalid(format!(
                "Delta log {dir} has a gap: expected version {}, found {v}",
                snapshot.next_version()
            )));
        }
        let bytes = crate::store::read(store.as_ref(), &path).await?;
        snapshot.apply(v, parse_commit(&path, &bytes)?);
    }
    Ok(snapshot)
}

/// Writes `lines` as version `snapshot.next_version()` and applies them to
/// `snapshot`. Returns `false`, changing nothing, when another writer took
/// that version first (replay and decide again).
///
/// # Errors
/// The store fails.
pub async fn commit(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    snapshot: &mut Snapshot,
    lines: Vec<LogLine>,
) -> Result<bool> {
    let version = snapshot.next_version();
    let path = commit_path(root, version);
    let mut body = Vec::new();
    for line in &lines {
        serde_json::to_writer(&mut body, line).expect("Delta actions serialise");
        body.push(b'\n');
    }
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store.put_opts(&path, PutPayload::from(body), opts).await {
        Ok(_) => {
            snapshot.apply(version, lines);
            Ok(true)
        }
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(source) => Err(Error::ObjectStore {
            path: path.to_string(),
            source,
        }),
    }
}

/// The Delta type of an Arrow column of ours, or `None` for one Delta
/// cannot hold.
fn delta_type(t: &DataType) -> Option<&'static str> {
    Some(match t {
        DataType::Dictionary(_, v) if **v == DataType::Utf8 => "string",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Float64 => "double",
        DataType::Int64 => "long",
        // Delta has no unsigned integers: a decimal holds every u64 exactly.
        DataType::UInt64 => "decimal(20,0)",
        DataType::Boolean => "boolean",
        // Delta's timestamps are microseconds: readers see ours truncated.
        DataType::Timestamp(_, Some(_)) => "timestamp",
        _ => return None,
    })
}

/// Characters Delta (without column mapping) refuses in a column name.
const INVALID_NAME_CHARS: &[char] = &[' ', ',', ';', '{', '}', '(', ')', '\n', '\t', '='];

/// The table's schema as Delta's `schemaString`, with `partition` (a
/// `date`) last.
///
/// # Errors
/// A column Delta cannot name or type without column mapping, which this
/// writer does not use: the table is not published, and the reason says why.
pub fn schema_string(schema: &Schema, partition: &str) -> std::result::Result<String, String> {
    let mut fields = Vec::new();
    for f in schema.fields() {
        if f.name().contains(INVALID_NAME_CHARS) {
            return Err(format!(
                "column {:?} has a character Delta refuses in a name (one of \" ,;{{}}()=\" or a tab or newline)",
                f.name()
            ));
        }
        let Some(t) = delta_type(f.data_type()) else {
            return Err(format!(
                "column {:?} has type {}, which has no Delta type",
                f.name(),
                f.data_type()
            ));
        };
        fields.push(serde_json::json!({
            "name": f.name(), "type": t, "nullable": f.is_nullable(), "metadata": {}
        }));
    }
    fields.push(serde_json::json!({
        "name": partition, "type": "date", "nullable": false, "metadata": {}
    }));
    Ok(serde_json::json!({"type": "struct", "fields": fields}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    fn add(path: &str) -> LogLine {
        LogLine {
            add: Some(Add {
                path: path.into(),
                partition_values: BTreeMap::from([("day".into(), Some("2024-01-01".into()))]),
                size: 10,
                modification_time: 1,
                data_change: true,
                stats: None,
            }),
            ..Default::default()
        }
    }

    fn remove(path: &str) -> LogLine {
        LogLine {
            remove: Some(Remove {
                path: path.into(),
                deletion_timestamp: Some(2),
                data_change: true,
                extended_file_metadata: None,
                partition_values: None,
                size: None,
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn commits_replay_to_the_live_files_and_a_taken_version_is_refused() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("db/t");
        let mut s = replay(&store, &root).await.unwrap();
        assert_eq!(s.version, None);
        assert!(
            commit(&store, &root, &mut s, vec![add("a"), add("b")])
                .await
                .unwrap()
        );
        assert!(
            commit(&store, &root, &mut s, vec![remove("a"), add("c")])
                .await
                .unwrap()
        );
        let replayed = replay(&store, &root).await.unwrap();
        assert_eq!(replayed, s);
        assert_eq!(replayed.version, Some(1));
        assert_eq!(replayed.files.keys().collect::<Vec<_>>(), ["b", "c"]);
        // A writer with a stale view loses the race and changes nothing.
        let mut stale = Snapshot::default();
        assert!(
            !commit(&store, &root, &mut stale, vec![add("x")])
                .await
                .unwrap()
        );
        assert_eq!(stale.version, None);
        // The lines are what the protocol names them.
        let bytes = store
            .get(&commit_path(&root, 1))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.starts_with("{\"remove\":{\"path\":\"a\",\"deletionTimestamp\":2,\"dataChange\":true}}\n{\"add\":{\"path\":\"c\",\"partitionValues\":{\"day\":\"2024-01-01\"}"), "{text}");
    }

    #[tokio::test]
    async fn replay_starts_from_the_last_checkpoint_and_survives_a_torn_one() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("db/t");
        let mut s = replay(&store, &root).await.unwrap();
        let meta = LogLine {
            meta_data: Some(Metadata {
                id: "id".into(),
                name: Some("t".into()),
                format: Format::default(),
                schema_string: "{}".into(),
                partition_columns: vec!["day".into()],
                configuration: BTreeMap::from([("k".into(), "v".into())]),
                created_time: Some(5),
            }),
            ..Default::default()
        };
        let mut stats = add("s");
        stats.add.as_mut().unwrap().stats = Some("{\"numRecords\":3}".into());
        assert!(
            commit(&store, &root, &mut s, vec![meta, add("a"), add("b"), stats])
                .await
                .unwrap()
        );
        assert!(
            commit(&store, &root, &mut s, vec![remove("a")])
                .await
                .unwrap()
        );
        super::super::checkpoint::write(&store, &root, &s, &Protocol::basic())
            .await
            .unwrap();
        assert!(commit(&store, &root, &mut s, vec![add("c")]).await.unwrap());
        // Commit 0 is no longer read: a replay that still read it would fail.
        store
            .put(&commit_path(&root, 0), PutPayload::from("not json"))
            .await
            .unwrap();
        let from_checkpoint = replay(&store, &root).await.unwrap();
        assert_eq!(from_checkpoint.version, Some(2));
        assert_eq!(from_checkpoint.metadata, s.metadata);
        assert_eq!(
            from_checkpoint.files.keys().collect::<Vec<_>>(),
            ["b", "c", "s"]
        );
        // A checkpoint's adds are state, not changes; the rest is as written.
        let mut b = s.files["b"].clone();
        b.data_change = false;
        assert_eq!(from_checkpoint.files["b"], b);
        assert_eq!(from_checkpoint.files["s"].stats, s.files["s"].stats);
        assert_eq!(from_checkpoint.files["c"], s.files["c"]);
        // A torn checkpoint: every commit is replayed instead (and commit 0,
        // restored, is read again).
        let checkpoint = Path::from("db/t/_delta_log/00000000000000000001.checkpoint.parquet");
        store
            .put(&checkpoint, PutPayload::from("torn"))
            .await
            .unwrap();
        store
            .put(
                &commit_path(&root, 0),
                PutPayload::from(
                    "{\"add\":{\"path\":\"z\",\"partitionValues\":{},\"size\":1,\"modificationTime\":1,\"dataChange\":true}}\n",
                ),
            )
            .await
            .unwrap();
        let full = replay(&store, &root).await.unwrap();
        assert_eq!(full.version, Some(2));
        assert_eq!(full.files.keys().collect::<Vec<_>>(), ["c", "z"]);
    }

    #[tokio::test]
    async fn cleaning_keeps_what_the_newest_old_checkpoint_needs() {
        use super::super::checkpoint;
        use std::time::Duration;
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("db/t");
        let mut s = Snapshot::default();
        let meta = LogLine {
            meta_data: Some(Metadata {
                id: "id".into(),
                name: None,
                format: Format::default(),
                schema_string: "{}".into(),
                partition_columns: vec!["day".into()],
                configuration: BTreeMap::new(),
                created_time: None,
            }),
            ..Default::default()
        };
        assert!(commit(&store, &root, &mut s, vec![meta]).await.unwrap());
        let mut at_4 = Snapshot::default();
        for v in 1..=5 {
            let path = format!("f{v}");
            assert!(
                commit(&store, &root, &mut s, vec![add(&path)])
                    .await
                    .unwrap()
            );
            if v % 2 == 0 {
                checkpoint::write(&store, &root, &s, &Protocol::basic())
                    .await
                    .unwrap();
                at_4 = s.clone();
            }
        }
        // The named checkpoint torn: the one before it serves (commit 0,
        // made unreadable, shows that no full replay stood in).
        let cp_4 = Path::from("db/t/_delta_log/00000000000000000004.checkpoint.parquet");
        store.put(&cp_4, PutPayload::from("torn")).await.unwrap();
        store
            .put(&commit_path(&root, 0), PutPayload::from("not json"))
            .await
            .unwrap();
        let replayed = replay(&store, &root).await.unwrap();
        assert_eq!(replayed.version, Some(5));
        assert_eq!(
            replayed.files.keys().collect::<Vec<_>>(),
            s.files.keys().collect::<Vec<_>>()
        );
        checkpoint::write(&store, &root, &at_4, &Protocol::basic())
            .await
            .unwrap();
        let names = |store: Arc<dyn ObjectStore>| async move {
            let mut v: Vec<String> = store
                .list(Some(&Path::from("db/t/_delta_log")))
                .map_ok(|m| m.location.filename().unwrap().to_string())
                .try_collect()
                .await
                .unwrap();
            v.sort();
            v
        };
        let before = names(store.clone()).await;
        // Nothing is old enough yet.
        let day = Duration::from_secs(86_400);
        assert_eq!(checkpoint::clean_log(&store, &root, day).await.unwrap(), 0);
        assert_eq!(
            checkpoint::clean_log(&store, &root, Duration::MAX)
                .await
                .unwrap(),
            0
        );
        assert_eq!(names(store.clone()).await, before);
        // With no retention, all below the newest checkpoint (4) goes.
        assert_eq!(
            checkpoint::clean_log(&store, &root, Duration::ZERO)
                .await
                .unwrap(),
            5
        );
        assert_eq!(
            names(store.clone()).await,
            [
                "00000000000000000004.checkpoint.parquet",
                "00000000000000000004.json",
                "00000000000000000005.json",
                "_last_checkpoint"
            ]
        );
        let replayed = replay(&store, &root).await.unwrap();
        assert_eq!(replayed.version, Some(5));
        assert_eq!(replayed.metadata, s.metadata);
        assert_eq!(
            replayed.files.keys().collect::<Vec<_>>(),
            s.files.keys().collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_gap_in_the_log_is_an_error() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("db/t");
        store.put(&commit_path(&root, 0), PutPayload::from("{\"add\":{\"path\":\"a\",\"partitionValues\":{},\"size\":1,\"modificationTime\":1,\"dataChange\":true}}\n")).await.unwrap();
        store
            .put(&commit_path(&root, 2), PutPayload::from(""))
            .await
            .unwrap();
        let err = replay(&store, &root).await.unwrap_err().to_string();
        assert!(err.contains("expected version 1, found 2"), "{err}");
    }

    #[test]
    fn schemas_map_to_delta_types_or_say_why_not() {
        use arrow::datatypes::{Field, TimeUnit};
        let s = Schema::new(vec![
            Field::new("host", crate::schema::tag_data_type(), true),
            Field::new("n", DataType::UInt64, true),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
        ]);
        let text = schema_string(&s, "day").unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let types: Vec<&str> = v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["string", "decimal(20,0)", "timestamp", "date"]);
        let bad = Schema::new(vec![Field::new("disk name", DataType::Float64, true)]);
        assert!(
            schema_string(&bad, "day")
                .unwrap_err()
                .contains("\"disk name\"")
        );
    }
}
