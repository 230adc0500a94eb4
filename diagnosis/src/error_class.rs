//! Task error messages, classified: which ones blame a host, and which host.
//!
//! Host-blaming errors (a host's disk, executor or shuffle service failed):
//! `java.io.IOException ... on host_N` (a local block: the attempt's own
//! host), `ExecutorLostFailure: executor on host_N exited ...`, and
//! `FetchFailed: ... from host_N: ...`, which names the shuffle **source**,
//! not the host the failing attempt ran on. Memory errors (OOM, containers
//! killed for memory) blame the job's settings, not a host.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "class")]
pub enum ErrorClass {
    /// An I/O error reading a local block; the host named, if any.
    LocalIo {
        host: Option<String>,
    },
    /// The executor died (heartbeat timed out); the host named, if any.
    ExecutorLost {
        host: Option<String>,
    },
    /// A shuffle fetch failed; the source host named, if any.
    FetchFailed {
        source: Option<String>,
    },
    OutOfMemory,
    ContainerKilled,
    /// Anything else; blames no host.
    Other,
}

impl ErrorClass {
    pub fn parse(message: &str) -> ErrorClass {
        let m = message.trim();
        if m.contains("FetchFailed") {
            ErrorClass::FetchFailed {
                source: word_after(m, " from "),
            }
        } else if m.contains("ExecutorLost") {
            ErrorClass::ExecutorLost {
                host: word_after(m, " on "),
            }
        } else if m.contains("IOException") {
            ErrorClass::LocalIo {
                host: m.rfind(" on ").and_then(|i| word(&m[i + 4..])),
            }
        } else if m.contains("OutOfMemoryError") || m.contains("Java heap space") {
            ErrorClass::OutOfMemory
        } else if m.contains("Container killed") || m.contains("exceeding memory limits") {
            ErrorClass::ContainerKilled
        } else {
            ErrorClass::Other
        }
    }

    pub fn blames_host(&self) -> bool {
        matches!(
            self,
            ErrorClass::LocalIo { .. }
                | ErrorClass::ExecutorLost { .. }
                | ErrorClass::FetchFailed { .. }
        )
    }

    /// The host this error blames, for an attempt that ran on `ran_on`: the
    /// named host, else (local I/O, lost executor) the attempt's own host.
    /// `None` for errors that blame no host, and for a fetch failure whose
    /// source cannot be read from the message.
    pub fn blamed_host(&self, ran_on: &str) -> Option<String> {
        match self {
            ErrorClass::LocalIo { host } | ErrorClass::ExecutorLost { host } => {
                Some(host.clone().unwrap_or_else(|| ran_on.to_owned()))
            }
            ErrorClass::FetchFailed { source } => source.clone(),
            _ => None,
        }
    }

    /// A short name: `local_io`, `fetch_failed`, ...
    pub fn name(&self) -> &'static str {
        match self {
            ErrorClass::LocalIo { .. } => "local_io",
            ErrorClass::ExecutorLost { .. } => "executor_lost",
            ErrorClass::FetchFailed { .. } => "fetch_failed",
            ErrorClass::OutOfMemory => "out_of_memory",
            ErrorClass::ContainerKilled => "container_killed",
            ErrorClass::Other => "other",
        }
    }
}

fn word_after(m: &str, marker: &str) -> Option<String> {
    m.find(marker).and_then(|i| word(&m[i + marker.len()..]))
}

/// A host name at the start of `s`: letters, digits, `-`, `_`, `.`, without
/// a trailing dot.
fn word(s: &str) -> Option<String> {
    let w: String = s
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    let w = w.trim_end_matches('.');
    (!w.is_empty()).then(|| w.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_simulators_messages() {
        let io = ErrorClass::parse(
            "java.io.IOException: Input/output error reading a local block on host_12",
        );
        assert_eq!(io.blamed_host("host_12").as_deref(), Some("host_12"));
        let lost = ErrorClass::parse(
            "ExecutorLostFailure: executor on host_7 exited: heartbeat timed out",
        );
        assert_eq!(lost.blamed_host("host_7").as_deref(), Some("host_7"));
        let fetch = ErrorClass::parse(
            "FetchFailed: failed to fetch a shuffle block from host_42: Connection reset by peer",
        );
        assert_eq!(
            fetch.blamed_host("host_3").as_deref(),
            Some("host_42"),
            "the source, not the reader"
        );
        let oom = ErrorClass::parse("java.lang.OutOfMemoryError: Java heap space");
        assert_eq!(oom, ErrorClass::OutOfMemory);
        assert!(!oom.blames_host());
        assert_eq!(
            ErrorClass::parse("Container killed by YARN for exceeding memory limits"),
            ErrorClass::ContainerKilled
        );
        assert_eq!(ErrorClass::parse("boom"), ErrorClass::Other);
        // A fetch failure without a readable source blames nobody.
        assert_eq!(
            ErrorClass::parse("FetchFailed: timeout").blamed_host("host_3"),
            None
        );
    }
}
