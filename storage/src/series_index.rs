//! The series index of one table: series key → dense `u32` series id, and
//! (tag key, tag value) → roaring bitmap of series ids.
//!
//! The index only grows: it knows every series it was ever shown. Which of
//! them are *live* (have data in the files and buffer a query can see, in a
//! time range) is a bitmap the caller passes in — see the ingest crate's
//! `series_index` module, which keeps one bitmap per data file and per
//! buffer generation. Answers are computed against that bitmap, so they are
//! exact for whatever the caller considers live.
//!
//! Per data file, the distinct tag sets it holds are persisted next to the
//! data as a small Parquet object (a *series file*, [`series_file_path`]), so
//! that start-up reads one small object per file and never the data.
//!
//! ```
//! use fleetlake_storage::series_index::{MatchOp, Matcher, SeriesIndex};
//! use roaring::RoaringBitmap;
//! let mut idx = SeriesIndex::default();
//! let a = idx.insert(&[("host", "a"), ("dc", "x")]);
//! let b = idx.insert(&[("dc", "x"), ("host", "b")]);
//! assert_eq!(idx.insert(&[("host", "a"), ("dc", "x")]), a);
//! let live: RoaringBitmap = [a, b].into_iter().collect();
//! assert_eq!(idx.label_values("host", &live), ["a", "b"]);
//! let m = Matcher::new("host", MatchOp::NotEqual, "a").unwrap();
//! assert_eq!(idx.select(&[m], &live).iter().collect::<Vec<_>>(), [b]);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use bytes::Bytes;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use regex::Regex;
use roaring::RoaringBitmap;

use crate::error::{Error, Result};

/// Where the series file of data file `data_path` lives. Not `.parquet`, so
/// the garbage collector's orphan sweep and other engines' globs skip it.
pub fn series_file_path(data_path: &str) -> Path {
    Path::from(format!("_index/{data_path}.series"))
}

/// The placeholder column of a series file of a table without tags.
const ROWS_COLUMN: &str = "__rows";

/// How a label matcher compares (Prometheus' four).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    /// Fully anchored regular expression.
    Regex,
    NotRegex,
}

/// A label matcher. As in Prometheus, a series without the label has the
/// value `""` for it: `host=""` selects series without `host`, and
/// `host!="a"` selects them too.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    /// # Errors
    /// An invalid regular expression (for the regex operators).
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, regex::Error> {
        let value = value.into();
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(Regex::new(&format!("^(?:{value})$"))?),
            _ => None,
        };
        Ok(Self {
            name: name.into(),
            op,
            value,
            regex,
        })
    }

    /// Whether a series whose label has value `v` (`""` when absent) matches.
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct KeyValues {
    /// Value → value id, in value order (answers come out sorted).
    ids: BTreeMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
    /// By value id: the series with this value.
    postings: Vec<RoaringBitmap>,
    /// Series that have this key at all.
    any: RoaringBitmap,
}

type SeriesKey = Box<[(u32, u32)]>;

/// See the module docs.
#[derive(Debug, Default, Clone)]
pub struct SeriesIndex {
    key_ids: HashMap<Arc<str>, u32>,
    keys: Vec<Arc<str>>,
    values: Vec<KeyValues>,
    /// Series ids, found by the hash of their key in `series_tags` (each
    /// key is stored once: at 900,000 series a second copy was ~90 MB).
    series: hashbrown::HashTable<u32>,
    hasher: Fold,
    /// By series id: (key id, value id), sorted by key id.
    series_tags: Vec<SeriesKey>,
}

impl SeriesIndex {
    /// Series known (live or not).
    pub fn len(&self) -> usize {
        self.series_tags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series_tags.is_empty()
    }

    fn key_id(&mut self, key: &str) -> u32 {
        if let Some(&k) = self.key_ids.get(key) {
            return k;
        }
        let k = self.keys.len() as u32;
        let key: Arc<str> = key.into();
        self.keys.push(key.clone());
        self.key_ids.insert(key, k);
        self.values.push(KeyValues::default());
        k
    }

    fn value_id(&mut self, key: u32, value: &str) -> u32 {
        let kv = &mut self.values[key as usize];
        if let Some(&v) = kv.ids.get(value) {
            return v;
        }
        let v = kv.names.len() as u32;
        let value: Arc<str> = value.into();
        kv.names.push(value.clone());
        kv.ids.insert(value, v);
        kv.postings.push(RoaringBitmap::new());
        v
    }

    /// The id of the series with these (tag, value) pairs (any order, no
    /// empty values, no duplicate tags), adding it if new.
    pub fn insert(&mut self, tags: &[(&str, &str)]) -> u32 {
        let mut key: Vec<(u32, u32)> = tags
            .iter()
            .map(|(k, v)| {
                let k = self.key_id(k);
                (k, self.value_id(k, v))
            })
            .collect();
        key.sort_unstable();
        self.insert_ids(key.into_boxed_slice())
    }

    fn insert_ids(&mut self, key: SeriesKey) -> u32 {
        let hash = self.hasher.hash_one(&*key);
        let tags = &self.series_tags;
        if let Some(&id) = self.series.find(hash, |&id| *tags[id as usize] == *key) {
            return id;
        }
        let id = self.series_tags.len() as u32;
        for &(k, v) in key.iter() {
            let kv = &mut self.values[k as usize];
            kv.postings[v as usize].insert(id);
            kv.any.insert(id);
        }
        self.series_tags.push(key);
        let (tags, hasher) = (&self.series_tags, &self.hasher);
        self.series
            .insert_unique(hash, id, |&id| hasher.hash_one(&*tags[id as usize]));
        id
    }

    /// Adds the series of every row of `batch`: the columns named in `tags`
    /// (Utf8 or `Dictionary(Int32, Utf8)`; null = the row lacks the tag).
    /// Returns the ids of the series the batch holds.
    pub fn insert_batch(&mut self, batch: &RecordBatch, tags: &[&str]) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        let cols: Vec<(u32, TagColumn<'_>)> = tags
            .iter()
            .filter_map(|t| {
                let col = batch.column_by_name(t)?;
                let c = TagColumn::of(col)?;
                Some((self.key_id(t), c))
            })
            .collect();
        if cols.is_empty() {
            if batch.num_rows() > 0 {
                out.insert(self.insert_ids(Box::new([])));
            }
            return out;
        }
        // Per column, code → value id + 1 (0: not resolved yet), resolved once.
        let mut resolved: Vec<Vec<u32>> = cols.iter().map(|(_, c)| vec![0; c.codes()]).collect();
        // A row's series as its columns' codes; rows of a series are often
        // adjacent (always, in a sorted batch), so the previous row's is kept.
        let mut local: HashMap<Box<[u32]>, u32, Fold> = HashMap::default();
        let mut codes: Vec<u32> = Vec::with_capacity(cols.len());
        let mut previous: Vec<u32> = Vec::new();
        for row in 0..batch.num_rows() {
            codes.clear();
            codes.extend(cols.iter().map(|(_, c)| c.code(row)));
            if row > 0 && codes == previous {
                continue;
            }
            std::mem::swap(&mut codes, &mut previous);
            if local.contains_key(previous.as_slice()) {
                continue;
            }
            let mut key: Vec<(u32, u32)> = Vec::with_capacity(cols.len());
            for (i, (k, c)) in cols.iter().enumerate() {
                let code = previous[i];
                if code == NO_CODE {
                    continue;
                }
                let slot = &mut resolved[i][code as usize];
                if *slot == 0 {
                    *slot = self.value_id(*k, c.text(code as usize)) + 1;
                }
                key.push((*k, *slot - 1));
            }
            key.sort_unstable();
            let id = self.insert_ids(key.into_boxed_slice());
            out.insert(id);
            local.insert(previous.clone().into_boxed_slice(), id);
        }
        out
    }

    /// Tag keys that some series of `live` has, sorted.
    pub fn label_names(&self, live: &RoaringBitmap) -> Vec<String> {
        let mut out: Vec<String> = self
            .keys
            .iter()
            .zip(&self.values)
            .filter(|(_, kv)| !kv.any.is_disjoint(live))
            .map(|(k, _)| k.to_string())
            .collect();
        out.sort();
        out
    }

    /// Values of `key` among the series of `live`, sorted.
    pub fn label_values(&self, key: &str, live: &RoaringBitmap) -> Vec<String> {
        let Some(&k) = self.key_ids.get(key) else {
            return Vec::new();
        };
        let kv = &self.values[k as usize];
        let with_key = &kv.any & live;
        if with_key.is_empty() {
            return Vec::new();
        }
        // Every series with the key is live (the common case): every value is.
        if with_key.len() == kv.any.len() {
            return kv.ids.keys().map(|name| String::from(&**name)).collect();
        }
        // Few live series among many values: walk the series; else walk the values.
        if with_key.len() * 8 < kv.names.len() as u64 {
            let mut ids: Vec<u32> = with_key
                .iter()
                .filter_map(|s| {
                    let tags = &self.series_tags[s as usize];
                    tags.iter().find(|(kk, _)| *kk == k).map(|(_, v)| *v)
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let mut out: Vec<String> = ids
                .iter()
                .map(|&v| String::from(&*kv.names[v as usize]))
                .collect();
            out.sort();
            return out;
        }
        kv.ids
            .iter()
            .filter(|(_, v)| !kv.postings[**v as usize].is_disjoint(&with_key))
            .map(|(name, _)| String::from(&**name))
            .collect()
    }

    /// The series of `universe` that every matcher accepts.
    pub fn select(&self, matchers: &[Matcher], universe: &RoaringBitmap) -> RoaringBitmap {
        let mut out = universe.clone();
        for m in matchers {
            if out.is_empty() {
                break;
            }
            let kv = self
                .key_ids
                .get(m.name.as_str())
                .map(|&k| &self.values[k as usize]);
            let posting = |v: &str| {
                kv.and_then(|kv| kv.ids.get(v))
                    .map(|&id| &kv.expect("found above").postings[id as usize])
            };
            match (m.op, m.value.is_empty()) {
                (MatchOp::Equal, false) => match posting(&m.value) {
                    Some(p) => out &= p,
                    None => out.clear(),
                },
                (MatchOp::NotEqual, false) => {
                    if let Some(p) = posting(&m.value) {
                        out -= p;
                    }
                }
                (MatchOp::Equal, true) => {
                    if let Some(kv) = kv {
                        out -= &kv.any;
                    }
                }
                (MatchOp::NotEqual, true) => match kv {
                    Some(kv) => out &= &kv.any,
                    None => out.clear(),
                },
                _ => {
                    let absent_matches = m.matches("");
                    let mut acc = RoaringBitmap::new();
                    if let Some(kv) = kv {
                        for (name, &v) in &kv.ids {
                            // Absent-matching: remove the values that do not match; else keep those that do.
                            if m.matches(name) != absent_matches {
                                acc |= &kv.postings[v as usize];
                            }
                        }
                    }
                    if absent_matches {
                        out -= acc;
                    } else {
                        out &= acc;
                    }
                }
            }
        }
        out
    }

    /// The (tag, value) pairs of series `id`, sorted by tag.
    pub fn series_tags(&self, id: u32) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .series_tags
            .get(id as usize)
            .map(|t| {
                t.iter()
                    .map(|&(k, v)| {
                        (
                            &*self.keys[k as usize],
                            &*self.values[k as usize].names[v as usize],
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_unstable();
        out
    }
}

/// The code of a row without the tag. Real codes are below it: an Arrow
/// array's length fits `i32` offsets' range.
const NO_CODE: u32 = u32::MAX;

type Fold = foldhash::fast::RandomState;

/// A tag column: a dictionary (codes are dictionary keys) or plain strings
/// (codes are rows).
enum TagColumn<'a> {
    Dict {
        keys: &'a arrow::array::PrimitiveArray<Int32Type>,
        values: &'a StringArray,
    },
    Plain(&'a StringArray),
}

impl<'a> TagColumn<'a> {
    fn of(col: &'a ArrayRef) -> Option<Self> {
        match col.data_type() {
            DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                let d = col.as_dictionary::<Int32Type>();
                Some(Self::Dict {
                    keys: d.keys(),
                    values: d.values().as_string::<i32>(),
                })
            }
            DataType::Utf8 => Some(Self::Plain(col.as_string::<i32>())),
            _ => None,
        }
    }

    /// How many codes there are: dictionary entries, or rows.
    fn codes(&self) -> usize {
        match self {
            Self::Dict { values, .. } => values.len(),
            Self::Plain(a) => a.len(),
        }
    }

    /// [`NO_CODE`] for null or empty.
    fn code(&self, row: usize) -> u32 {
        match self {
            Self::Dict { keys, values } => {
                if keys.is_null(row) {
                    return NO_CODE;
                }
                let k = keys.value(row) as usize;
                if values.is_null(k) || values.value(k).is_empty() {
                    NO_CODE
                } else {
                    k as u32
                }
            }
            Self::Plain(a) => {
                if a.is_null(row) || a.value(row).is_empty() {
                    NO_CODE
                } else {
                    row as u32
                }
            }
        }
    }

    fn text(&self, code: usize) -> &'a str {
        match self {
            Self::Dict { values, .. } => values.value(code),
            Self::Plain(a) => a.value(code),
        }
    }
}

/// The distinct tag sets of `batch` as a series file: one row per series,
/// one nullable Utf8 column per tag of `tags` present in the batch.
///
/// # Errors
/// Parquet encoding failures.
pub fn encode_series_file(batch: &RecordBatch, tags: &[&str]) -> Result<Vec<u8>> {
    let mut index = SeriesIndex::default();
    let ids = index.insert_batch(batch, tags);
    let present: Vec<&str> = tags
        .iter()
        .copied()
        .filter(|t| batch.column_by_name(t).is_some())
        .collect();
    let mut cols: Vec<Vec<Option<&str>>> =
        vec![Vec::with_capacity(ids.len() as usize); present.len()];
    for id in &ids {
        let st = index.series_tags(id);
        for (i, t) in present.iter().enumerate() {
            cols[i].push(st.iter().find(|(k, _)| k == t).map(|(_, v)| *v));
        }
    }
    let columns: Vec<(&str, ArrayRef)> = present
        .iter()
        .zip(cols)
        .map(|(t, c)| (*t, Arc::new(StringArray::from(c)) as ArrayRef))
        .collect();
    write_series_file(columns, ids.len() as usize)
}

/// The series file of rows that are each one series (a data file's
/// [`crate::series_sort::SeriesOrder::series_rows`]): their `tags` columns
/// as Utf8, without building an index. A repeated tag set, or an empty
/// value beside a NULL, is harmless: [`load_series_file`] merges them.
///
/// # Errors
/// Tag columns that are not strings; Parquet encoding failures.
pub fn encode_series_rows(series: &RecordBatch, tags: &[&str]) -> Result<Vec<u8>> {
    let columns = tags
        .iter()
        .filter_map(|t| Some((*t, series.column_by_name(t)?)))
        .map(|(t, c)| Ok((t, arrow::compute::cast(c, &DataType::Utf8)?)))
        .collect::<Result<Vec<_>>>()?;
    write_series_file(columns, series.num_rows())
}

fn write_series_file(columns: Vec<(&str, ArrayRef)>, series: usize) -> Result<Vec<u8>> {
    let (mut fields, mut arrays): (Vec<Field>, Vec<ArrayRef>) = columns
        .into_iter()
        .map(|(t, a)| (Field::new(t, DataType::Utf8, true), a))
        .unzip();
    if arrays.is_empty() {
        // Parquet needs a column to count rows: a table without tags has one series.
        fields.push(Field::new(ROWS_COLUMN, DataType::Utf8, true));
        arrays.push(arrow::array::new_null_array(&DataType::Utf8, series));
    }
    let schema = Arc::new(Schema::new(fields));
    let out = RecordBatch::try_new(schema.clone(), arrays)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, Some(props))?;
    w.write(&out)?;
    w.close()?;
    Ok(buf)
}

/// Adds the series of a series file to `index`; returns their ids.
///
/// # Errors
/// A corrupt series file.
pub fn load_series_file(index: &mut SeriesIndex, bytes: Bytes) -> Result<RoaringBitmap> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    let mut out = RoaringBitmap::new();
    for batch in reader {
        let batch = batch.map_err(Error::from)?;
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n != ROWS_COLUMN)
            .collect();
        let tags: Vec<&str> = names.iter().map(String::as_str).collect();
        out |= index.insert_batch(&batch, &tags);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, StringArray};

    fn batch() -> RecordBatch {
        let host: DictionaryArray<Int32Type> =
            vec![Some("a"), Some("b"), Some("a"), None, Some("c")]
                .into_iter()
                .collect();
        let dc = StringArray::from(vec![Some("x"), Some("x"), Some("x"), Some("y"), Some("")]);
        RecordBatch::try_from_iter(vec![
            ("host", Arc::new(host) as ArrayRef),
            ("dc", Arc::new(dc) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn batches_give_distinct_series() {
        let mut idx = SeriesIndex::default();
        let ids = idx.insert_batch(&batch(), &["host", "dc", "missing"]);
        // (a,x), (b,x), (-,y), (c,-)
        assert_eq!(ids.len(), 4);
        assert_eq!(idx.insert(&[("host", "a"), ("dc", "x")]), 0);
        assert_eq!(idx.insert(&[("host", "c")]), 3);
        assert_eq!(idx.label_values("host", &ids), ["a", "b", "c"]);
        assert_eq!(idx.label_values("dc", &ids), ["x", "y"]);
        assert_eq!(idx.label_names(&ids), ["dc", "host"]);
        let only_c: RoaringBitmap = [3].into_iter().collect();
        assert_eq!(idx.label_names(&only_c), ["host"]);
        assert!(idx.label_values("dc", &only_c).is_empty());
    }

    #[test]
    fn matchers_follow_prometheus() {
        let mut idx = SeriesIndex::default();
        let all = idx.insert_batch(&batch(), &["host", "dc"]);
        let sel = |op, name: &str, v: &str| -> Vec<u32> {
            idx.select(&[Matcher::new(name, op, v).unwrap()], &all)
                .iter()
                .collect()
        };
        assert_eq!(sel(MatchOp::Equal, "host", "a"), [0]);
        assert_eq!(sel(MatchOp::Equal, "host", "zz"), Vec::<u32>::new());
        assert_eq!(sel(MatchOp::NotEqual, "host", "a"), [1, 2, 3]);
        assert_eq!(sel(MatchOp::Equal, "host", ""), [2]);
        assert_eq!(sel(MatchOp::NotEqual, "dc", ""), [0, 1, 2]);
        assert_eq!(sel(MatchOp::Regex, "host", "a|b"), [0, 1]);
        assert_eq!(sel(MatchOp::Regex, "host", "a|"), [0, 2]);
        assert_eq!(sel(MatchOp::NotRegex, "host", "[ab]"), [2, 3]);
        assert_eq!(sel(MatchOp::NotRegex, "nope", ".+"), [0, 1, 2, 3]);
        assert_eq!(sel(MatchOp::Regex, "nope", ".+"), Vec::<u32>::new());
        // Anchored: "a" does not match "ab".
        assert!(
            !Matcher::new("h", MatchOp::Regex, "a")
                .unwrap()
                .matches("ab")
        );
        assert!(Matcher::new("h", MatchOp::Regex, "(").is_err());
        let both = idx.select(
            &[
                Matcher::new("dc", MatchOp::Equal, "x").unwrap(),
                Matcher::new("host", MatchOp::NotEqual, "b").unwrap(),
            ],
            &all,
        );
        assert_eq!(both.iter().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn series_rows_file_round_trip() {
        // Rows that are each a series, one repeated and one with an empty
        // value beside a NULL: loading merges them.
        let rows = batch();
        let bytes = encode_series_rows(&rows, &["host", "dc", "missing"]).unwrap();
        let mut idx = SeriesIndex::default();
        let ids = load_series_file(&mut idx, Bytes::from(bytes)).unwrap();
        let mut expected = SeriesIndex::default();
        let want = expected.insert_batch(&rows, &["host", "dc"]);
        assert_eq!(ids.len(), want.len());
        let tags = |i: &SeriesIndex, ids: &RoaringBitmap| {
            let mut t: Vec<Vec<(String, String)>> = ids
                .iter()
                .map(|id| {
                    i.series_tags(id)
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .collect();
            t.sort();
            t
        };
        assert_eq!(tags(&idx, &ids), tags(&expected, &want));
        assert_eq!(idx.label_values("host", &ids), ["a", "b", "c"]);
    }

    #[test]
    fn series_file_round_trip() {
        let bytes = encode_series_file(&batch(), &["host", "dc"]).unwrap();
        let mut idx = SeriesIndex::default();
        idx.insert(&[("other", "z")]);
        let ids = load_series_file(&mut idx, Bytes::from(bytes)).unwrap();
        assert_eq!(ids.len(), 4);
        assert_eq!(idx.label_values("host", &ids), ["a", "b", "c"]);
        let tags: Vec<_> = ids.iter().map(|i| idx.series_tags(i)).collect();
        assert!(tags.contains(&vec![("dc", "y")]), "{tags:?}");
        // A table without tags has one series.
        let no_tags = RecordBatch::try_from_iter(vec![(
            "v",
            Arc::new(StringArray::from(vec!["1", "2"])) as ArrayRef,
        )])
        .unwrap();
        let bytes = encode_series_file(&no_tags, &[]).unwrap();
        let ids = load_series_file(&mut idx, Bytes::from(bytes)).unwrap();
        assert_eq!(ids.len(), 1);
        assert!(idx.series_tags(ids.min().unwrap()).is_empty());
    }
}
