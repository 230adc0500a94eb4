//! Benchmarks for fleetlake; see benches/README.md.
