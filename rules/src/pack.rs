//! The example rule pack (`rules/examples/*.toml`), compiled into the
//! binary so `fleetlake serve --demo` can load it wherever the binary runs.
//!
//! # Invariants
//! - [`EXAMPLE_PACK`] holds every `*.toml` file of `rules/examples/`, by
//!   file name, byte for byte (a unit test compares them).

/// (file name, contents) of each file of the example pack, in name order.
pub const EXAMPLE_PACK: [(&str, &str); 8] = [
    (
        "cpu_temp_anomaly.toml",
        include_str!("../examples/cpu_temp_anomaly.toml"),
    ),
    (
        "disk_latency_anomaly.toml",
        include_str!("../examples/disk_latency_anomaly.toml"),
    ),
    (
        "disk_stuck.toml",
        include_str!("../examples/disk_stuck.toml"),
    ),
    ("ecc_storm.toml", include_str!("../examples/ecc_storm.toml")),
    ("host_down.toml", include_str!("../examples/host_down.toml")),
    (
        "nic_flapping.toml",
        include_str!("../examples/nic_flapping.toml"),
    ),
    (
        "smart_sectors_rising.toml",
        include_str!("../examples/smart_sectors_rising.toml"),
    ),
    (
        "thermal_throttling.toml",
        include_str!("../examples/thermal_throttling.toml"),
    ),
];

/// Writes the pack's files into `dir` (created if missing), replacing
/// files of the same names; other files are left alone.
///
/// # Errors
/// The first file or directory that cannot be written.
pub fn write_example_pack(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in EXAMPLE_PACK {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{Kind, Mode, parse_toml};

    #[test]
    fn the_pack_is_the_examples_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<(String, String)> = EXAMPLE_PACK
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn forcing_a_mode_reaches_every_acting_rule() {
        let mut kinds = Vec::new();
        for (name, text) in EXAMPLE_PACK {
            for mut def in parse_toml(text).unwrap_or_else(|e| panic!("{name}: {e}")) {
                def.force_mode(Mode::Approval);
                assert_eq!(def.safety.as_ref().map(|s| s.mode), Some(Mode::Approval));
                def.check().unwrap();
                kinds.push(def.kind);
            }
        }
        // The pack has both kinds: alerts without `safety` get one.
        assert!(kinds.contains(&Kind::Alert) && kinds.contains(&Kind::SelfHeal));
        let mut record = parse_toml(
            "[[rule]]\nname = \"r\"\nkind = \"record\"\nevery = \"1m\"\ninto = \"t\"\nsql = \"SELECT 1 AS value\"\n",
        )
        .unwrap()
        .remove(0);
        record.force_mode(Mode::DryRun);
        assert!(record.safety.is_none());
        record.check().unwrap();
    }
}
