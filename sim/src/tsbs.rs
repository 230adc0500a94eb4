//! The TSBS `cpu-only` and `devops` use cases (`shared/tsbs-devops.md`).
//!
//! Same schema, value sets and walk dynamics as TSBS; a different PRNG. Each
//! host's ten tags are drawn once from the host's own stream, and each
//! (host, table) pair walks with its own stream, so:
//!
//! - the `cpu` rows of `devops` are exactly the rows of `cpu-only` for the
//!   same config, and
//! - one host can be regenerated alone ([`CpuHost`]), which is how the
//!   end-to-end driver checks query answers independently of the server.

mod cpu_only;
mod devops;
#[cfg(test)]
mod output_tests;

pub use cpu_only::{CPU_FIELDS, CpuHost, CpuOnly};
pub use devops::{DEVOPS_TABLES, Devops};

use crate::rng::{SplitMix64, stream};

/// Stream id of the host tags; tables use their index + 1.
const STREAM_TAGS: u64 = 0;

/// Regions and their zones (the `datacenter` tag).
pub const REGIONS: [(&str, &[&str]); 9] = [
    (
        "us-east-1",
        &["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"],
    ),
    ("us-west-1", &["us-west-1a", "us-west-1b"]),
    ("us-west-2", &["us-west-2a", "us-west-2b", "us-west-2c"]),
    ("eu-west-1", &["eu-west-1a", "eu-west-1b", "eu-west-1c"]),
    ("eu-central-1", &["eu-central-1a", "eu-central-1b"]),
    ("ap-southeast-1", &["ap-southeast-1a", "ap-southeast-1b"]),
    ("ap-southeast-2", &["ap-southeast-2a", "ap-southeast-2b"]),
    ("ap-northeast-1", &["ap-northeast-1a", "ap-northeast-1c"]),
    ("sa-east-1", &["sa-east-1a", "sa-east-1b", "sa-east-1c"]),
];
pub const OS: [&str; 3] = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
pub const ARCH: [&str; 2] = ["x64", "x86"];
pub const TEAM: [&str; 4] = ["SF", "NYC", "LON", "CHI"];
pub const SERVICE_ENVIRONMENT: [&str; 3] = ["production", "staging", "test"];

/// The ten tags of a TSBS host, drawn once, uniformly, from its own stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTags {
    pub id: u64,
    pub region: &'static str,
    pub datacenter: &'static str,
    /// 0..=99
    pub rack: u8,
    pub os: &'static str,
    pub arch: &'static str,
    pub team: &'static str,
    /// 0..=19
    pub service: u8,
    /// 0 or 1
    pub service_version: u8,
    pub service_environment: &'static str,
}

impl HostTags {
    pub fn draw(seed: u64, id: u64) -> Self {
        let mut rng = stream(seed, id, STREAM_TAGS);
        let (region, zones) = rng.pick(&REGIONS);
        Self {
            id,
            region,
            datacenter: rng.pick(zones),
            rack: rng.below(100) as u8,
            os: rng.pick(&OS),
            arch: rng.pick(&ARCH),
            team: rng.pick(&TEAM),
            service: rng.below(20) as u8,
            service_version: rng.below(2) as u8,
            service_environment: rng.pick(&SERVICE_ENVIRONMENT),
        }
    }

    /// `,hostname=host_0,region=…,service_environment=…`: what follows the
    /// measurement name in every line of this host.
    pub fn line_fragment(&self) -> String {
        format!(
            ",hostname=host_{},region={},datacenter={},rack={},os={},arch={},team={},service={},service_version={},service_environment={}",
            self.id,
            self.region,
            self.datacenter,
            self.rack,
            self.os,
            self.arch,
            self.team,
            self.service,
            self.service_version,
            self.service_environment
        )
    }
}

/// One TSBS field's dynamics: a random walk whose step is Normal(mean, sd).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Walk {
    /// Adds the step, then clamps to [lo, hi].
    Clamped {
        mean: f64,
        sd: f64,
        lo: f64,
        hi: f64,
    },
    /// Adds |step|: a counter.
    Monotonic { mean: f64, sd: f64 },
    /// Adds the step, unbounded.
    Free { mean: f64, sd: f64 },
}

impl Walk {
    #[inline]
    pub(crate) fn step(self, v: f64, rng: &mut SplitMix64) -> f64 {
        match self {
            Walk::Clamped { mean, sd, lo, hi } => (v + rng.normal_with(mean, sd)).clamp(lo, hi),
            Walk::Monotonic { mean, sd } => v + rng.normal_with(mean, sd).abs(),
            Walk::Free { mean, sd } => v + rng.normal_with(mean, sd),
        }
    }
}

/// TSBS emits `int64(value)`: truncation toward zero.
#[inline]
pub(crate) fn emitted(v: f64) -> i64 {
    v as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_come_from_the_value_sets() {
        for id in 0..500 {
            let t = HostTags::draw(9, id);
            let zones = REGIONS.iter().find(|(r, _)| *r == t.region).unwrap().1;
            assert!(zones.contains(&t.datacenter));
            assert!(t.rack < 100 && t.service < 20 && t.service_version < 2);
            assert!(OS.contains(&t.os) && ARCH.contains(&t.arch) && TEAM.contains(&t.team));
            assert!(SERVICE_ENVIRONMENT.contains(&t.service_environment));
            assert_eq!(t, HostTags::draw(9, id));
        }
        let f = HostTags::draw(1, 3).line_fragment();
        assert!(f.starts_with(",hostname=host_3,region="), "{f}");
        assert_eq!(f.matches('=').count(), 10);
    }

    #[test]
    fn walks() {
        let mut rng = SplitMix64::new(1);
        let clamped = Walk::Clamped {
            mean: 0.0,
            sd: 50.0,
            lo: 0.0,
            hi: 100.0,
        };
        let mono = Walk::Monotonic { mean: 0.0, sd: 1.0 };
        let (mut c, mut m) = (50.0, 0.0);
        for _ in 0..10_000 {
            c = clamped.step(c, &mut rng);
            assert!((0.0..=100.0).contains(&c));
            let next = mono.step(m, &mut rng);
            assert!(next >= m);
            m = next;
        }
        assert_eq!(emitted(99.9), 99);
        assert_eq!(emitted(-0.5), 0);
    }
}
