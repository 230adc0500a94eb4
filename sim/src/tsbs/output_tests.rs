//! The TSBS generators' output, read back with an independent parser.

use std::collections::HashMap;

use super::{CPU_FIELDS, CpuHost, CpuOnly, DEVOPS_TABLES, Devops};
use crate::test_util::{Value, generate_all, parse};
use crate::time::{SECOND_NS, TSBS_START_NS};
use crate::{LineSource, SimConfig};

fn config(hosts: u64, epochs: i64, seed: u64) -> SimConfig {
    SimConfig::new(
        hosts,
        TSBS_START_NS,
        TSBS_START_NS + epochs * 10 * SECOND_NS,
        10 * SECOND_NS,
        seed,
    )
    .unwrap()
}

#[test]
fn cpu_only_is_deterministic_whatever_the_chunks() {
    let c = config(7, 30, 1);
    let a = generate_all(&mut CpuOnly::new(&c), 1);
    let b = generate_all(&mut CpuOnly::new(&c), 13);
    let d = generate_all(&mut CpuOnly::new(&c), 100_000);
    assert_eq!(a, b);
    assert_eq!(a, d);
    let other = generate_all(&mut CpuOnly::new(&config(7, 30, 2)), 100);
    assert_ne!(a, other);
}

#[test]
fn devops_is_deterministic_whatever_the_chunks() {
    let c = config(5, 12, 3);
    let a = generate_all(&mut Devops::new(&c), 1);
    let b = generate_all(&mut Devops::new(&c), 17);
    assert_eq!(a, b);
    let other = generate_all(&mut Devops::new(&config(5, 12, 4)), 17);
    assert_ne!(a, other);
}

#[test]
fn cpu_only_lines_parse_with_tsbs_shape_and_ranges() {
    let c = config(20, 200, 5);
    let mut source = CpuOnly::new(&c);
    let total = source.total_lines().unwrap();
    let rows = parse(&generate_all(&mut source, 1000));
    assert_eq!(rows.len() as u64, total);
    assert_eq!(total, 20 * 200);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.table, "cpu");
        assert_eq!(row.tags.len(), 10);
        assert_eq!(row.tags[0].0, "hostname");
        assert_eq!(row.tags[0].1, format!("host_{}", i % 20));
        let names: Vec<&str> = row.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, CPU_FIELDS);
        for (_, v) in &row.fields {
            let Value::I(v) = v else { panic!("{v:?}") };
            assert!((0..=100).contains(v), "{v}");
        }
        // Epoch-major: row i belongs to epoch i / hosts.
        assert_eq!(row.time, c.epoch_ns(i as u64 / 20));
    }
    // The walks move by Normal(0, 1) steps: mostly small changes.
    let mut big_jumps = 0;
    for pair in rows.chunks(20).collect::<Vec<_>>().windows(2) {
        for (a, b) in pair[0].iter().zip(pair[1]) {
            big_jumps += usize::from((a.int("usage_user") - b.int("usage_user")).abs() > 4);
        }
    }
    assert!(big_jumps < 10, "{big_jumps} jumps above 4 points");
}

#[test]
fn a_host_regenerated_alone_matches_the_stream() {
    let c = config(9, 50, 11);
    let rows = parse(&generate_all(&mut CpuOnly::new(&c), 64));
    for id in [0u64, 4, 8] {
        let mut host = CpuHost::new(c.seed, id);
        for e in 0..50u64 {
            if e > 0 {
                host.step();
            }
            let row = &rows[(e * 9 + id) as usize];
            assert_eq!(row.host(), format!("host_{id}"));
            let got: Vec<i64> = CPU_FIELDS.iter().map(|f| row.int(f)).collect();
            assert_eq!(got, host.fields(), "host {id} epoch {e}");
        }
    }
}

#[test]
fn devops_cpu_rows_are_the_cpu_only_rows() {
    let c = config(6, 10, 21);
    let cpu_only = String::from_utf8(generate_all(&mut CpuOnly::new(&c), 50)).unwrap();
    let devops = String::from_utf8(generate_all(&mut Devops::new(&c), 50)).unwrap();
    let cpu_from_devops: Vec<&str> = devops.lines().filter(|l| l.starts_with("cpu,")).collect();
    assert_eq!(cpu_from_devops, cpu_only.lines().collect::<Vec<_>>());
}

#[test]
fn devops_tables_fields_order_and_ranges() {
    let hosts = 8u64;
    let epochs = 300u64;
    let c = config(hosts, epochs as i64, 8);
    let mut source = Devops::new(&c);
    let total = source.total_lines().unwrap();
    let rows = parse(&generate_all(&mut source, 777));
    assert_eq!(rows.len() as u64, total);
    assert_eq!(total, hosts * epochs * 9);

    // Epoch-major, table-major within the epoch, host order within a table.
    for (i, row) in rows.iter().enumerate() {
        let i = i as u64;
        let epoch = i / (hosts * 9);
        let table = (i / hosts) % 9;
        assert_eq!(row.time, c.epoch_ns(epoch), "row {i}");
        assert_eq!(row.table, DEVOPS_TABLES[table as usize], "row {i}");
        assert_eq!(row.host(), format!("host_{}", i % hosts));
    }

    // 101 fields per host per epoch, and the extra tags.
    let per_epoch: usize = rows[..(hosts * 9) as usize]
        .iter()
        .map(|r| r.fields.len())
        .sum();
    assert_eq!(per_epoch, 101 * hosts as usize);
    let extra: HashMap<&str, Vec<&str>> = HashMap::from([
        ("diskio", vec!["serial"]),
        ("disk", vec!["path", "fstype"]),
        ("net", vec!["interface"]),
        ("nginx", vec!["port", "server"]),
        ("redis", vec!["port", "server"]),
    ]);
    for row in &rows[..(hosts * 9) as usize] {
        let keys: Vec<&str> = row.tags[10..].iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            extra.get(row.table.as_str()).cloned().unwrap_or_default()
        );
    }

    // Ranges and derived fields.
    let mut last: HashMap<(String, String), Vec<(String, Value)>> = HashMap::new();
    for row in &rows {
        match row.table.as_str() {
            "disk" => {
                let (total, free, used) = (row.int("total"), row.int("free"), row.int("used"));
                assert_eq!(total, 1 << 40);
                assert_eq!(used, total - free);
                assert!((0..=100).contains(&row.int("used_percent")));
                assert_eq!(row.int("inodes_used"), total / 4096 - free / 4096);
                let path = row.tag("path").unwrap();
                assert!(path.starts_with("/dev/sda") && path.len() == 9, "{path}");
                assert!(["ext3", "ext4", "btrfs"].contains(&row.tag("fstype").unwrap()));
            }
            "mem" => {
                let total = row.int("total");
                assert!([8i64 << 30, 12 << 30, 16 << 30].contains(&total));
                assert!((0..=total).contains(&row.int("used")));
                assert_eq!(row.int("available"), total - row.int("used"));
                assert_eq!(row.int("free"), row.int("available"));
                let pct = row.num("used_percent");
                assert!(matches!(row.field("used_percent"), Some(Value::F(_))));
                assert!((0.0..=100.0).contains(&pct));
                assert!((pct + row.num("available_percent") - 100.0).abs() < 1e-9);
            }
            "kernel" => assert!((0..240).contains(&row.int("boot_time"))),
            "nginx" => {
                for f in ["active", "reading", "waiting", "writing"] {
                    assert!((0..=100).contains(&row.int(f)), "nginx {f}");
                }
                let port: u32 = row.tag("port").unwrap().parse().unwrap();
                assert!((1024..21024).contains(&port));
                assert!(row.tag("server").unwrap().starts_with("nginx_"));
            }
            "postgresl" => {
                for (k, v) in &row.fields {
                    let Value::I(v) = v else { panic!() };
                    let hi = if k == "temp_bytes" { 1 << 30 } else { 1000 };
                    assert!((0..=hi).contains(v), "postgresl {k}={v}");
                }
            }
            "redis" => {
                let elapsed = (row.time - c.start_ns) / SECOND_NS;
                assert_eq!(row.int("uptime_in_seconds"), elapsed);
                assert!((0..=16i64 << 30).contains(&row.int("used_memory")));
                assert!((0..=100).contains(&row.int("mem_fragmentation_ratio")));
                assert_eq!(row.fields.len(), 31);
            }
            _ => {}
        }
        // Counters never go down.
        let key = (row.table.clone(), row.host().to_string());
        if let Some(prev) = last.get(&key) {
            let counters: &[&str] = match row.table.as_str() {
                "diskio" => &["reads", "writes", "read_bytes", "io_time"],
                "net" => &["bytes_sent", "err_in", "drop_out"],
                "kernel" => &["interrupts", "disk_pages_out"],
                "nginx" => &["accepts", "requests"],
                "redis" => &["keyspace_hits", "total_connections_received"],
                _ => &[],
            };
            for c in counters {
                let before = prev.iter().find(|(k, _)| k == c).unwrap();
                let Value::I(before) = before.1 else { panic!() };
                assert!(row.int(c) >= before, "{} {c} went down", row.table);
            }
        }
        last.insert(key, row.fields.clone());
    }

    // Dynamics: diskio reads grow by |Normal(50, 1)| a step.
    let reads_end = rows
        .iter()
        .rev()
        .find(|r| r.table == "diskio" && r.host() == "host_0")
        .unwrap()
        .int("reads");
    let expected = 50 * (epochs as i64 - 1);
    assert!(
        (reads_end - expected).abs() < 100,
        "{reads_end} vs {expected}"
    );
}

#[test]
fn generators_state_does_not_grow() {
    let c = config(50, 2000, 1);
    for mut source in [
        Box::new(CpuOnly::new(&c)) as Box<dyn LineSource>,
        Box::new(Devops::new(&c)),
    ] {
        let mut buf = Vec::new();
        source.next_chunk(&mut buf, 1000);
        let before = source.state_bytes();
        let mut chunks = 0;
        loop {
            buf.clear();
            if source.next_chunk(&mut buf, 1000) == 0 {
                break;
            }
            chunks += 1;
            assert_eq!(source.state_bytes(), before, "after {chunks} chunks");
        }
        assert!(chunks >= 99);
    }
}
