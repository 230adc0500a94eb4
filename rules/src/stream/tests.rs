//! Streaming against batch: generated rules over generated data (late and
//! out-of-order rows, overwrites, rows without the field, a tag that
//! appears later, deletes), answered from the state and by the SQL at the
//! same instants, must give the same instances and values (floats within
//! 1e-9, relative).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, Float64Array};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use fleetlake_ingest::{IngestConfig, Ingester, Precision};
use fleetlake_query::{QueryConfig, QueryEngine, SqlCheck};
use fleetlake_storage::catalog::Catalog;
use object_store::ObjectStore;
use object_store::memory::InMemory;

use super::shape::{Shape, compile};
use super::{Hub, StateKey};
use crate::state::Scope;

const S: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_040 * S;

/// splitmix64: a seeded, dependency-free stream of numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// Lines of `n` rows around `T0`: five hosts on two racks, a float `v`
/// (sometimes absent), an integer `c`; times on a 10 s grid so that rows
/// collide (overwrites), sent in random order.
fn lines(rng: &mut Rng, n: usize, with_zone: bool) -> String {
    let mut out = String::new();
    for _ in 0..n {
        let mut h = rng.below(5);
        // The new tag comes with new hosts: a group of (host, rack) never
        // mixes two series, whose rows at one time would tie.
        let zone = if with_zone && rng.below(2) == 0 {
            h += 5;
            ",zone=z1"
        } else {
            ""
        };
        let rack = ["r1", "r2"][(h % 2) as usize];
        let t = T0 - 600 * S + rng.below(70) as i64 * 10 * S;
        let v = (rng.below(2000) as f64 - 500.0) / 10.0;
        let c = rng.below(100);
        if rng.below(8) == 0 {
            out.push_str(&format!("m,host=h{h},rack={rack}{zone} c={c}i {t}\n"));
        } else {
            out.push_str(&format!("m,host=h{h},rack={rack}{zone} v={v},c={c}i {t}\n"));
        }
    }
    out
}

/// A rule's SQL of the streaming shape, drawn at random.
fn rule(rng: &mut Rng) -> String {
    let agg = rng.pick(&[
        "avg(v)",
        "min(v)",
        "max(v)",
        "sum(v)",
        "count(v)",
        "count(*)",
        "stddev(v)",
        "last_value(v ORDER BY time)",
        "sum(c)",
        "zscore(v, time)",
        "robust_zscore(v, time)",
        "ewma_deviation(v, time, 0.3)",
        "anomaly_score(v, time)",
        "anomaly_score(v, time, INTERVAL '30 seconds')",
        "increase(c, time)",
        "rate(c, time)",
        "staleness(time, now())",
    ]);
    // Series functions and last_value order points by time; over several
    // series a tie has no defined order, so they group by the whole series.
    let group = if agg.contains("time") {
        "host, rack"
    } else {
        rng.pick(&["host", "rack", "host, rack", "rack, host"])
    };
    let window = rng.pick(&[
        "1 minute",
        "5 minutes",
        "90 seconds",
        "10 minutes",
        "1 hour",
    ]);
    let upper = rng.pick(&["", " AND time <= now()", " AND time < now()"]);
    let lower = rng.pick(&[">", ">="]);
    let tag = rng.pick(&[
        "",
        " AND host != 'h3'",
        " AND rack = 'r1'",
        " AND host IN ('h0', 'h1', 'h4')",
        " AND host NOT IN ('h2')",
    ]);
    let field = if agg.contains("(v") {
        rng.pick(&["", " AND v > 0", " AND v <= 50"])
    } else {
        ""
    };
    let having = match rng.below(3) {
        0 => format!(" HAVING {agg} > 10"),
        1 => format!(" HAVING 3 < {agg}"),
        _ => String::new(),
    };
    format!(
        "SELECT {group}, {agg} AS value FROM m WHERE time {lower} now() - INTERVAL '{window}'{upper}{tag}{field} GROUP BY {group}{having}"
    )
}

/// Rows as label text → value, for comparison.
fn rows(batches: &[RecordBatch]) -> BTreeMap<String, Option<f64>> {
    let mut out = BTreeMap::new();
    let opts = FormatOptions::default().with_null("NULL");
    for b in batches {
        let vi = b.schema().index_of("value").unwrap();
        let v = cast(b.column(vi), &DataType::Float64).unwrap();
        let v = v.as_any().downcast_ref::<Float64Array>().unwrap().clone();
        let fmts: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            let key: Vec<String> = (0..b.num_columns())
                .filter(|&i| i != vi)
                .map(|i| format!("{}={}", b.schema().field(i).name(), fmts[i].value(r)))
                .collect();
            out.insert(key.join(","), (!v.is_null(r)).then(|| v.value(r)));
        }
    }
    out
}

/// An on_write evaluation's [`super::eval::Covered`] covers the instances
/// of the rows of its groups (`scope`, before `HAVING`) and no instance of
/// the other rows of the whole answer.
fn covers_as_keys_do(
    sql: &str,
    shape: &Shape,
    schema: &arrow::datatypes::SchemaRef,
    groups: &super::eval::Groups,
    scope: &RecordBatch,
    whole: &RecordBatch,
) {
    // A rule's own label overrides a column's when they share a name.
    for labels in [
        "severity = \"page\"",
        "severity = \"page\"\nhost = \"fixed\"",
    ] {
        let toml = format!(
            "[[rule]]\nname = \"r\"\nkind = \"alert\"\nevery = \"1m\"\nsql = {sql:?}\n[rule.labels]\n{labels}\n"
        );
        let def = &crate::definition::parse_toml(&toml).unwrap()[0];
        let covered = super::eval::Covered::of(shape, schema, groups, &def.labels);
        let inside = crate::eval::samples(def, std::slice::from_ref(scope)).unwrap();
        let keys: std::collections::BTreeSet<_> = inside.iter().map(|s| s.key()).collect();
        for s in &inside {
            assert!(
                covered.covers(&s.labels),
                "{sql}: {:?} not covered",
                s.labels
            );
        }
        for s in crate::eval::samples(def, std::slice::from_ref(whole)).unwrap() {
            assert_eq!(
                covered.covers(&s.labels),
                keys.contains(&s.key()),
                "{sql}: {:?}",
                s.labels
            );
        }
    }
}

fn same(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// A write path and query engine over an in-memory store and a temporary WAL.
async fn engines() -> (Arc<Ingester>, Arc<QueryEngine>, tempfile::TempDir) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let catalog = Arc::new(Catalog::load(store.clone(), 100).await.unwrap());
    let wal = tempfile::tempdir().unwrap();
    let ingester = Ingester::open(catalog, IngestConfig::new(wal.path().to_path_buf()))
        .await
        .unwrap();
    let query = Arc::new(
        QueryEngine::new(ingester.clone(), store.clone(), QueryConfig::default()).unwrap(),
    );
    (ingester, query, wal)
}

async fn check_seed(seed: u64) {
    let mut rng = Rng(seed);
    let (ingester, query, _wal) = engines().await;
    let hub = Hub::new(1 << 30);
    ingester.observe(hub.clone());
    let write = |body: String| {
        let ingester = ingester.clone();
        async move {
            let out = ingester
                .write_lp("fleet", body, Precision::Nanosecond, true)
                .await
                .unwrap();
            assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        }
    };
    // Some data before the rules (filled from the query), some flushed.
    write(lines(&mut rng, 150, false)).await;
    ingester.flush().await.unwrap();
    write(lines(&mut rng, 100, false)).await;

    let mut rules = Vec::new();
    let (mut later, mut all_tags) = (Vec::new(), Vec::new());
    for i in 0..12 {
        let sql = rule(&mut rng);
        let SqlCheck::Planned { plan, schema, .. } = query.check("fleet", &sql).await.unwrap()
        else {
            panic!("{sql}: not planned");
        };
        let (shape, tags) = compile(&plan).unwrap_or_else(|e| panic!("{sql}: {}", e.0));
        let key = StateKey::of("fleet", &shape);
        let name = format!("r{i}");
        // Kept long enough for the earliest instant checked below.
        // Half are evaluated on write: their states say which series a
        // write touched.
        let on_write = (i % 2 == 0).then(|| shape.group_by.clone());
        hub.attach(&name, &key, shape.window_ns + 300 * S, on_write)
            .unwrap();
        if i == 0 {
            assert_eq!(hub.unfilled(), 1, "a new state waits for its fill");
        }
        // The first half fill one state at a time, the rest with one scan
        // of the table for all of theirs (each keeping its own window).
        if i < 6 {
            hub.fill(&query, &key, &tags, T0).await.unwrap();
        } else {
            later.push(key.clone());
            all_tags = tags;
        }
        rules.push((sql, shape, key, schema));
    }
    let mut seen = std::collections::HashSet::new();
    later.retain(|k| seen.insert(k.clone()));
    hub.fill_table(&query, &later, &all_tags, T0).await.unwrap();
    assert_eq!(hub.unfilled(), 0);
    // Writes after the fill reach the state through the write path: late,
    // out of order, overwriting, with a new tag.
    write(lines(&mut rng, 200, true)).await;
    ingester
        .delete(
            "fleet",
            "m",
            T0 - 300 * S,
            T0 - 200 * S,
            vec![("host".into(), "h1".into())],
        )
        .await
        .unwrap();
    write(lines(&mut rng, 50, true)).await;
    hub.drain();
    let touched = std::mem::take(&mut *hub.changed.lock());
    let mut partial_rows = 0;

    for at in [T0, T0 + 30 * S, T0 - 120 * S] {
        for (sql, shape, key, schema) in &rules {
            let streamed = hub
                .evaluate(key, shape, at, None, schema, &Default::default())
                .unwrap()
                .expect("ready");
            let batch = crate::eval::run_sql(&query, "fleet", sql, at)
                .await
                .unwrap();
            let (s, b) = (rows(std::slice::from_ref(&streamed)), rows(&batch));
            let keys: Vec<_> = s.keys().chain(b.keys()).collect();
            for k in keys {
                let (x, y) = (s.get(k).copied().flatten(), b.get(k).copied().flatten());
                assert!(
                    s.contains_key(k) == b.contains_key(k) && same(x, y),
                    "seed {seed}, at {at}: {sql}\n  {k}: streaming {:?}, batch {:?}\n  streaming {s:?}\n  batch {b:?}",
                    s.get(k),
                    b.get(k)
                );
            }
            // An on_write evaluation of the touched series' groups answers
            // as the whole evaluation does for those groups.
            if let Some(t) = touched.get(key) {
                let (part, groups) = hub
                    .evaluate_touched(key, shape, at, None, schema, t, &Default::default())
                    .unwrap()
                    .expect("ready");
                let all = Shape {
                    having: None,
                    ..shape.clone()
                };
                let scope = super::eval::answer(&all, &groups, schema).unwrap();
                covers_as_keys_do(sql, shape, schema, &groups, &scope, &streamed);
                let (p, scope) = (rows(&[part]), rows(&[scope]));
                let want: BTreeMap<_, _> = s
                    .iter()
                    .filter(|(k, _)| scope.contains_key(*k))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                assert!(
                    p.len() == want.len()
                        && p.iter()
                            .all(|(k, v)| want.get(k).is_some_and(|w| same(*v, *w))),
                    "seed {seed}, at {at}: {sql}\n  touched groups {p:?}\n  whole {want:?}"
                );
                partial_rows += scope.len();
            }
        }
    }
    assert!(
        partial_rows > 0,
        "seed {seed}: no on_write evaluation was checked"
    );
}

#[tokio::test]
async fn streaming_answers_as_batch_sql_does() {
    let seeds: u64 = std::env::var("STREAM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    for seed in 1..=seeds {
        check_seed(seed).await;
    }
}

#[tokio::test]
async fn constructs_outside_the_shape_name_themselves() {
    let (ingester, query, _wal) = engines().await;
    ingester
        .write_lp(
            "fleet",
            "m,host=a v=1,w=2 1\n".into(),
            Precision::Nanosecond,
            true,
        )
        .await
        .unwrap();
    for (sql, why) in [
        (
            "SELECT host, v AS value FROM m WHERE v > 1",
            "no GROUP BY aggregate",
        ),
        (
            "SELECT host, avg(v) AS value FROM m GROUP BY host",
            "no time window",
        ),
        (
            "SELECT host, avg(v) AS value, max(w) FROM m WHERE time > now() - INTERVAL '1 minute' GROUP BY host",
            "2 aggregates",
        ),
        (
            "SELECT host, avg(v) AS value FROM m WHERE time > now() - INTERVAL '1 minute' AND w > 1 GROUP BY host",
            "conditions on tags and the aggregated field only",
        ),
        (
            "SELECT date_bin(INTERVAL '1 minute', time) AS t, avg(v) AS value FROM m WHERE time > now() - INTERVAL '1 minute' GROUP BY 1",
            "GROUP BY",
        ),
        (
            "SELECT host, avg(v) AS value FROM m WHERE time > now() - INTERVAL '1 month' GROUP BY host",
            "time > now() - INTERVAL",
        ),
        (
            "SELECT host, approx_median(v) AS value FROM m WHERE time > now() - INTERVAL '1 minute' GROUP BY host",
            "the aggregate approx_median",
        ),
        (
            "SELECT host, avg(v) AS value FROM m WHERE time > now() - INTERVAL '1 minute' GROUP BY host LIMIT 3",
            "Limit",
        ),
    ] {
        let SqlCheck::Planned { plan, .. } = query.check("fleet", sql).await.unwrap() else {
            panic!("{sql}: not planned");
        };
        let err = compile(&plan).expect_err(sql);
        assert!(err.0.contains(why), "{sql}: {}", err.0);
    }
}

/// A table whose retention is shorter than a rule's window: the state
/// hides the rows the query engine hides (older than the wall clock's now
/// minus the retention), and several fields of one table share one set of
/// series keys.
#[tokio::test]
async fn retention_shorter_than_the_window_hides_the_same_rows() {
    use fleetlake_storage::catalog::{Action, now_ns};
    let (ingester, query, _wal) = engines().await;
    let hub = Hub::new(1 << 30);
    ingester.observe(hub.clone());
    let now = now_ns();
    // Rows 7 s apart over the last 20 minutes, 2.5 s off whole seconds.
    let mut body = String::new();
    for i in 0..170i64 {
        let t = now - 2_500_000_000 - i * 7 * S;
        for h in 0..3 {
            body.push_str(&format!("m,host=h{h} v={},w={} {t}\n", i + h, 2 * i));
        }
    }
    ingester
        .write_lp("fleet", body, Precision::Nanosecond, true)
        .await
        .unwrap();
    let ttl = 5 * 60 * S;
    ingester
        .catalog()
        .commit(vec![Action::SetRetention {
            db: "fleet".into(),
            table: Some("m".into()),
            ttl_ns: Some(ttl),
        }])
        .await
        .unwrap();
    let mut rules = Vec::new();
    for (i, sql) in [
        "SELECT host, count(v) AS value FROM m WHERE time > now() - INTERVAL '15 minutes' GROUP BY host",
        "SELECT host, min(w) AS value FROM m WHERE time > now() - INTERVAL '15 minutes' GROUP BY host",
    ]
    .into_iter()
    .enumerate()
    {
        let SqlCheck::Planned { plan, schema, .. } = query.check("fleet", sql).await.unwrap()
        else {
            panic!("{sql}: not planned");
        };
        let (shape, tags) = compile(&plan).unwrap();
        let key = StateKey::of("fleet", &shape);
        hub.attach(&format!("r{i}"), &key, shape.window_ns + 30 * S, None)
            .unwrap();
        hub.fill(&query, &key, &tags, now).await.unwrap();
        rules.push((sql, shape, key, schema));
    }
    let keys_shared = {
        let inner = hub.inner.read();
        inner.keys.values().map(|k| k.len()).sum::<usize>()
    };
    assert_eq!(keys_shared, 3, "one key per series for both fields");
    for (sql, shape, key, schema) in &rules {
        // The query engine takes its own wall-clock cutoff a moment later;
        // compare only when no row lies between the two.
        for attempt in 0.. {
            let at = now_ns();
            let before = at - ttl;
            let streamed = hub
                .evaluate(key, shape, at, Some(before), schema, &Default::default())
                .unwrap()
                .expect("ready");
            let batch = crate::eval::run_sql(&query, "fleet", sql, at)
                .await
                .unwrap();
            let after = now_ns() - ttl;
            let gap = |t: i64| (t - (now - 2_500_000_000)).rem_euclid(7 * S);
            if after - before >= S || gap(before) > gap(after) {
                assert!(attempt < 5, "a row crossed the cutoff five times");
                continue;
            }
            let (s, b) = (rows(std::slice::from_ref(&streamed)), rows(&batch));
            assert_eq!(s, b, "{sql}");
            let counted: f64 = s.values().map(|v| v.unwrap()).sum();
            assert!(
                sql.contains("min") || (counted > 100.0 && counted < 140.0),
                "{sql}: 3 hosts × ~43 rows inside 5 minutes, got {counted}"
            );
            break;
        }
    }
}

/// Batch rules of one round with different SQL over one table's window
/// read it once ([`fleetlake_query::ScanShare`]) and answer as each
/// reading it on its own does: through flushed files, the buffer, late
/// rows, overwrites and a delete; a window over the share's cap is read
/// by each on its own.
#[tokio::test(flavor = "multi_thread")]
async fn batch_rules_sharing_a_scan_answer_as_their_own_scans_do() {
    use std::collections::HashSet;
    use std::sync::atomic::Ordering;

    use fleetlake_query::{ScanShare, ScanShareStats};

    let mut rng = Rng(7);
    let (ingester, query, _wal) = engines().await;
    let write = |body: String| {
        let ingester = ingester.clone();
        async move {
            ingester
                .write_lp("fleet", body, Precision::Nanosecond, true)
                .await
                .unwrap();
        }
    };
    write(lines(&mut rng, 300, false)).await;
    ingester.flush().await.unwrap();
    write(lines(&mut rng, 300, true)).await;
    ingester
        .delete(
            "fleet",
            "m",
            T0 - 400 * S,
            T0 - 300 * S,
            vec![("host".into(), "h2".into())],
        )
        .await
        .unwrap();
    write(lines(&mut rng, 100, true)).await;

    const TEN: &str = "time > now() - INTERVAL '10 minutes' AND time <= now()";
    let sqls = [
        format!("SELECT host, time, v AS value FROM m WHERE {TEN} AND v > 40"),
        format!("SELECT rack, max(v) - min(v) AS value FROM m WHERE {TEN} GROUP BY rack"),
        format!(
            "SELECT host, c AS value FROM m WHERE {TEN} AND host <> 'h1' ORDER BY c DESC, host LIMIT 3"
        ),
        format!(
            "SELECT zone, count(*) AS value FROM m WHERE {TEN} AND zone IS NOT NULL GROUP BY zone"
        ),
        // Another window: a scan of its own.
        "SELECT host, sum(c) AS value FROM m WHERE time > now() - INTERVAL '5 minutes' GROUP BY host"
            .to_string(),
    ];
    let mut plans = Vec::new();
    for sql in &sqls {
        let SqlCheck::Planned { plan, .. } = query.check("fleet", sql).await.unwrap() else {
            panic!("{sql}: not planned");
        };
        plans.push(plan);
    }
    let tables: HashSet<(String, String)> = [("fleet".to_string(), "m".to_string())].into();
    for (cap, shared) in [(1 << 30, true), (0, false)] {
        for at in [T0, T0 - 200 * S] {
            let stats = Arc::new(ScanShareStats::default());
            let share = Arc::new(ScanShare::new(tables.clone(), cap, stats.clone()));
            for (sql, plan) in sqls.iter().zip(&plans) {
                let through = crate::eval::run_plan(&query, "fleet", plan, at, Some(&share))
                    .await
                    .unwrap()
                    .expect("the schema did not change");
                let own = crate::eval::run_sql(&query, "fleet", sql, at)
                    .await
                    .unwrap();
                let (a, b) = (rows(&through), rows(&own));
                assert!(!b.is_empty(), "{sql} at {at}: no rows to compare");
                assert_eq!(a.len(), b.len(), "{sql} at {at}");
                for (k, v) in &b {
                    assert!(same(a[k], *v), "{sql} at {at}: {k}: {:?} vs {v:?}", a[k]);
                }
            }
            let (scans, reused) = (
                stats.scans.load(Ordering::Relaxed),
                stats.reused.load(Ordering::Relaxed),
            );
            if shared {
                // Two windows; four rules read the first.
                assert_eq!((scans, reused), (2, 3), "at {at}");
            } else {
                assert_eq!(reused, 0, "over the cap nothing is held");
            }
        }
    }
}

/// `/metrics` and the scheduler ask which states are filled or refused
/// from the runtime's workers: the answer never waits for the state's
/// lock, which a pass or a drain holds for up to hundreds of milliseconds.
#[test]
fn which_states_are_filled_is_answered_while_a_pass_holds_the_state() {
    let hub = Hub::new(1 << 30);
    let key = StateKey {
        db: "fleet".into(),
        table: "m".into(),
        field: Some("v".into()),
    };
    hub.attach("r", &key, 60 * S, None).unwrap();
    assert_eq!(hub.unfilled(), 1, "attached, not filled");
    hub.drain();
    assert_eq!(hub.unfilled(), 1, "its slot made, still not filled");
    hub.add_filled(std::slice::from_ref(&key), &[], T0);
    assert_eq!((hub.unfilled(), hub.refused(&key)), (0, false));

    let held = hub.inner.write();
    let (tx, rx) = std::sync::mpsc::channel();
    let (h, k) = (hub.clone(), key.clone());
    let asker = std::thread::spawn(move || {
        let _ = tx.send((h.unfilled(), h.refused(&k)));
    });
    let answer = rx.recv_timeout(std::time::Duration::from_secs(5));
    drop(held);
    asker.join().unwrap();
    assert_eq!(answer, Ok((0, false)), "waited for the state's lock");
}
