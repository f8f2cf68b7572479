//! A cgroup's starvation counters, as the kernel counts them: CPU bandwidth throttling
//! (`cpu.stat`, with the quota from `cpu.max` or `cpu.cfs_quota_us`), pressure stall
//! information (`cpu.pressure`, `memory.pressure`, `io.pressure`) and block I/O (`io.stat`,
//! or v1 `blkio.throttle.io_service_bytes_recursive` / `_serviced_recursive`).
//!
//! Every counter is cumulative since the cgroup was made; the sampler keeps the first and
//! last reading per cgroup and reports the growth. Parsers are pure; a malformed or missing
//! file is `None` (an unknown [`Quota`]), never an error.

use std::path::Path;

use super::cgroupfs::{CgroupPath, Mounts, parse_keyed};

/// Cumulative counters of one cgroup, each where its file has it. Times in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StarvationCounters {
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_us: Option<u64>,
    pub bursts: Option<u64>,
    pub burst_us: Option<u64>,
    pub cpu_some_us: Option<u64>,
    pub cpu_full_us: Option<u64>,
    pub memory_some_us: Option<u64>,
    pub memory_full_us: Option<u64>,
    pub io_some_us: Option<u64>,
    pub io_full_us: Option<u64>,
    pub read_bytes: Option<u64>,
    pub write_bytes: Option<u64>,
    pub read_ops: Option<u64>,
    pub write_ops: Option<u64>,
}

impl StarvationCounters {
    /// Fills the fields `other` has and `self` lacks (a v2 cgroup's PSI with its v1 twin's
    /// throttling on a hybrid host).
    pub fn fill_from(&mut self, other: &Self) {
        *self = self.zip_with(other, |mine, theirs| mine.or(theirs));
    }

    /// Element-wise growth from `base` (a counter that went backwards, a cgroup made again
    /// under the same name, grows from zero).
    pub fn growth_since(&self, base: &Self) -> Self {
        self.zip_with(base, |now, then| match (now, then) {
            (Some(n), Some(t)) if n >= t => Some(n - t),
            _ => now,
        })
    }

    /// Element-wise sum (of a container's cgroups).
    pub fn add(&mut self, other: &Self) {
        *self = self.zip_with(other, |mine, theirs| match theirs {
            Some(t) => Some(mine.unwrap_or(0).saturating_add(t)),
            None => mine,
        });
    }

    /// Each counter of `self` combined with the same counter of `other` by `f`: the one
    /// place that lists them all.
    fn zip_with(&self, other: &Self, f: impl Fn(Option<u64>, Option<u64>) -> Option<u64>) -> Self {
        Self {
            periods: f(self.periods, other.periods),
            throttled_periods: f(self.throttled_periods, other.throttled_periods),
            throttled_us: f(self.throttled_us, other.throttled_us),
            bursts: f(self.bursts, other.bursts),
            burst_us: f(self.burst_us, other.burst_us),
            cpu_some_us: f(self.cpu_some_us, other.cpu_some_us),
            cpu_full_us: f(self.cpu_full_us, other.cpu_full_us),
            memory_some_us: f(self.memory_some_us, other.memory_some_us),
            memory_full_us: f(self.memory_full_us, other.memory_full_us),
            io_some_us: f(self.io_some_us, other.io_some_us),
            io_full_us: f(self.io_full_us, other.io_full_us),
            read_bytes: f(self.read_bytes, other.read_bytes),
            write_bytes: f(self.write_bytes, other.write_bytes),
            read_ops: f(self.read_ops, other.read_ops),
            write_ops: f(self.write_ops, other.write_ops),
        }
    }
}

/// The CPU quota of a cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Quota {
    /// No cpu controller says: none read yet, no `cpu.max` or `cpu.cfs_quota_us` file, or one
    /// that could not be parsed.
    #[default]
    Unknown,
    /// The controller sets no quota (`max`, or `-1` on v1).
    Unlimited,
    /// At most this many cores.
    Cores(f64),
}

impl Quota {
    /// The quota in cores, where there is one.
    pub fn cores(self) -> Option<f64> {
        match self {
            Self::Cores(c) => Some(c),
            Self::Unknown | Self::Unlimited => None,
        }
    }
}

/// Throttling from a `cpu.stat` text: v2 (`throttled_usec`, `burst_usec`) or v1
/// (`throttled_time`, `burst_time` in ns). Without `nr_periods` (a v2 cgroup without the
/// cpu controller) there is none.
pub fn parse_throttling(text: &str, into: &mut StarvationCounters) {
    let Some(periods) = parse_keyed(text, "nr_periods") else {
        return;
    };
    into.periods = Some(periods);
    into.throttled_periods = parse_keyed(text, "nr_throttled");
    into.throttled_us = parse_keyed(text, "throttled_usec")
        .or_else(|| parse_keyed(text, "throttled_time").map(|ns| ns / 1000));
    into.bursts = parse_keyed(text, "nr_bursts");
    into.burst_us = parse_keyed(text, "burst_usec")
        .or_else(|| parse_keyed(text, "burst_time").map(|ns| ns / 1000));
}

/// The quota from v2 `cpu.max` (`max 100000`, `50000 100000`); `Unknown` when the text is
/// not a `cpu.max`.
pub fn parse_cpu_max(text: &str) -> Quota {
    let mut f = text.split_whitespace();
    let (Some(quota), Some(Ok(period))) = (f.next(), f.next().map(str::parse::<f64>)) else {
        return Quota::Unknown;
    };
    if quota == "max" {
        return Quota::Unlimited;
    }
    match quota.parse::<f64>() {
        Ok(quota) if period > 0.0 && quota > 0.0 => Quota::Cores(quota / period),
        _ => Quota::Unknown,
    }
}

/// The quota from v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` (-1: none).
pub fn parse_cfs_quota(quota: &str, period: &str) -> Quota {
    let (Ok(quota), Ok(period)) = (quota.trim().parse::<i64>(), period.trim().parse::<f64>())
    else {
        return Quota::Unknown;
    };
    if quota < 0 {
        Quota::Unlimited
    } else if quota > 0 && period > 0.0 {
        Quota::Cores(quota as f64 / period)
    } else {
        Quota::Unknown
    }
}

/// `total=` of the `some` and `full` lines of a PSI file, microseconds.
pub fn parse_psi(text: &str) -> (Option<u64>, Option<u64>) {
    let total = |kind: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(kind)?.strip_prefix(' ')?;
            rest.split_whitespace()
                .find_map(|f| f.strip_prefix("total="))
                .and_then(|v| v.parse().ok())
        })
    };
    (total("some"), total("full"))
}

/// Bytes and operations read and written, summed over devices, from v2 `io.stat`
/// (`8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`).
pub fn parse_io_stat(text: &str, into: &mut StarvationCounters) {
    let mut sums = [None::<u64>; 4];
    for line in text.lines() {
        for field in line.split_whitespace().skip(1) {
            let Some((k, v)) = field.split_once('=') else {
                continue;
            };
            let i = match k {
                "rbytes" => 0,
                "wbytes" => 1,
                "rios" => 2,
                "wios" => 3,
                _ => continue,
            };
            if let Ok(v) = v.parse::<u64>() {
                sums[i] = Some(sums[i].unwrap_or(0).saturating_add(v));
            }
        }
    }
    // A cgroup that did no I/O has an empty io.stat: that is zero, not unknown.
    let known = |v: Option<u64>| v.or(Some(0));
    into.read_bytes = known(sums[0]);
    into.write_bytes = known(sums[1]);
    into.read_ops = known(sums[2]);
    into.write_ops = known(sums[3]);
}

/// (read, write) summed over devices from a v1 blkio file (`8:0 Read 4096` lines, then
/// `Total N`). `None` when no device is listed: v1 counts a cgroup's I/O only on devices
/// with a `blkio.throttle` rule (or a bfq scheduler), so a bare `Total 0` is "not counted",
/// not zero.
pub fn parse_blkio(text: &str) -> Option<(u64, u64)> {
    let (mut read, mut write) = (0u64, 0u64);
    let mut devices = false;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(_dev), Some(op), Some(v)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(v) = v.parse::<u64>() else { continue };
        devices = true;
        match op {
            "Read" => read = read.saturating_add(v),
            "Write" => write = write.saturating_add(v),
            _ => {}
        }
    }
    devices.then_some((read, write))
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The counters of one cgroup, from the hierarchy it is named in: throttling and I/O from
/// whichever controller files it has, PSI from a v2 cgroup (also on hybrid hosts, whose v2
/// hierarchy has PSI files but no controllers).
pub fn read_starvation(mounts: &Mounts, cgroup: &CgroupPath) -> StarvationCounters {
    let mut c = StarvationCounters::default();
    match cgroup {
        CgroupPath::V2(path) => {
            let Some(dir) = mounts.v2_dir(path) else {
                return c;
            };
            if let Some(t) = read(&dir.join("cpu.stat")) {
                parse_throttling(&t, &mut c);
            }
            for (file, some, full) in [
                ("cpu.pressure", &mut c.cpu_some_us, &mut c.cpu_full_us),
                (
                    "memory.pressure",
                    &mut c.memory_some_us,
                    &mut c.memory_full_us,
                ),
                ("io.pressure", &mut c.io_some_us, &mut c.io_full_us),
            ] {
                if let Some(t) = read(&dir.join(file)) {
                    (*some, *full) = parse_psi(&t);
                }
            }
            if let Some(t) = read(&dir.join("io.stat")) {
                parse_io_stat(&t, &mut c);
            }
        }
        CgroupPath::V1(path) => {
            if let Some(t) = mounts
                .v1_dir("cpu", path)
                .and_then(|d| read(&d.join("cpu.stat")))
            {
                parse_throttling(&t, &mut c);
            }
            if let Some(dir) = mounts.v1_dir("blkio", path) {
                let bytes = read(&dir.join("blkio.throttle.io_service_bytes_recursive"))
                    .or_else(|| read(&dir.join("blkio.throttle.io_service_bytes")));
                let ops = read(&dir.join("blkio.throttle.io_serviced_recursive"))
                    .or_else(|| read(&dir.join("blkio.throttle.io_serviced")));
                if let Some((r, w)) = bytes.as_deref().and_then(parse_blkio) {
                    (c.read_bytes, c.write_bytes) = (Some(r), Some(w));
                }
                if let Some((r, w)) = ops.as_deref().and_then(parse_blkio) {
                    (c.read_ops, c.write_ops) = (Some(r), Some(w));
                }
            }
        }
    }
    c
}

/// The CPU quota of a cgroup; `Unknown` where there is no cpu controller to say.
pub fn read_quota(mounts: &Mounts, cgroup: &CgroupPath) -> Quota {
    let quota = match cgroup {
        CgroupPath::V2(path) => mounts
            .v2_dir(path)
            .and_then(|dir| read(&dir.join("cpu.max")))
            .map(|text| parse_cpu_max(&text)),
        CgroupPath::V1(path) => mounts.v1_dir("cpu", path).and_then(|dir| {
            Some(parse_cfs_quota(
                &read(&dir.join("cpu.cfs_quota_us"))?,
                &read(&dir.join("cpu.cfs_period_us"))?,
            ))
        }),
    };
    quota.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_v2_and_v1() {
        let mut c = StarvationCounters::default();
        parse_throttling(
            "usage_usec 10\nuser_usec 5\nsystem_usec 5\nnr_periods 100\nnr_throttled 20\nthrottled_usec 1500\nnr_bursts 1\nburst_usec 7\n",
            &mut c,
        );
        assert_eq!(
            (
                c.periods,
                c.throttled_periods,
                c.throttled_us,
                c.bursts,
                c.burst_us
            ),
            (Some(100), Some(20), Some(1500), Some(1), Some(7))
        );
        let mut c = StarvationCounters::default();
        parse_throttling(
            "nr_periods 10\nnr_throttled 3\nthrottled_time 2000000\n",
            &mut c,
        );
        assert_eq!((c.throttled_us, c.bursts), (Some(2000), None));
        // A v2 cgroup without the cpu controller: usage only, no throttling.
        let mut c = StarvationCounters::default();
        parse_throttling("usage_usec 10\nuser_usec 5\n", &mut c);
        assert_eq!(c, StarvationCounters::default());
    }

    #[test]
    fn quotas() {
        assert_eq!(parse_cpu_max("max 100000\n"), Quota::Unlimited);
        assert_eq!(parse_cpu_max("50000 100000\n"), Quota::Cores(0.5));
        assert_eq!(parse_cpu_max("garbage"), Quota::Unknown);
        assert_eq!(parse_cpu_max("max garbage"), Quota::Unknown);
        assert_eq!(parse_cfs_quota("-1\n", "100000\n"), Quota::Unlimited);
        assert_eq!(parse_cfs_quota("200000", "100000"), Quota::Cores(2.0));
        assert_eq!(parse_cfs_quota("x", "100000"), Quota::Unknown);
        assert_eq!(parse_cfs_quota("0", "100000"), Quota::Unknown);
    }

    #[test]
    fn psi_totals() {
        let t = "some avg10=6.78 avg60=21.24 avg300=18.51 total=3346956821\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=12\n";
        assert_eq!(parse_psi(t), (Some(3346956821), Some(12)));
        assert_eq!(
            parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n"),
            (Some(5), None)
        );
        assert_eq!(parse_psi("somewhere total=5\n"), (None, None));
        assert_eq!(parse_psi(""), (None, None));
    }

    #[test]
    fn io_v2_and_blkio() {
        let mut c = StarvationCounters::default();
        parse_io_stat(
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=1 rios=1 wios=1 dbytes=0 dios=0\n",
            &mut c,
        );
        assert_eq!(
            (c.read_bytes, c.write_bytes, c.read_ops, c.write_ops),
            (Some(4097), Some(8193), Some(2), Some(3))
        );
        let mut empty = StarvationCounters::default();
        parse_io_stat("", &mut empty);
        assert_eq!(empty.write_bytes, Some(0));
        assert_eq!(
            parse_blkio(
                "8:0 Read 4096\n8:0 Write 100\n8:0 Sync 4196\n8:0 Total 4196\n253:0 Write 5\nTotal 4201\n"
            ),
            Some((4096, 105))
        );
        assert_eq!(parse_blkio("Total 0\n"), None);
    }

    #[test]
    fn growth_fill_and_sum() {
        let base = StarvationCounters {
            periods: Some(10),
            cpu_some_us: Some(100),
            ..Default::default()
        };
        let now = StarvationCounters {
            periods: Some(15),
            cpu_some_us: Some(50), // went backwards: a new cgroup of the same name
            write_bytes: Some(7),
            ..Default::default()
        };
        let g = now.growth_since(&base);
        assert_eq!(
            (g.periods, g.cpu_some_us, g.write_bytes),
            (Some(5), Some(50), Some(7))
        );
        let mut sum = g;
        sum.add(&g);
        assert_eq!(sum.periods, Some(10));
        let mut psi_only = StarvationCounters {
            cpu_some_us: Some(1),
            ..Default::default()
        };
        psi_only.fill_from(&StarvationCounters {
            cpu_some_us: Some(9),
            periods: Some(3),
            ..Default::default()
        });
        assert_eq!((psi_only.cpu_some_us, psi_only.periods), (Some(1), Some(3)));
    }

    #[test]
    fn reads_this_process_cgroup() {
        let mounts = Mounts::discover().unwrap();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let lines = crate::sources::procfs::parse_pid_cgroup(&own);
        if let Some(v2) = crate::sources::procfs::cgroup_v2_path(&lines) {
            let c = read_starvation(&mounts, &CgroupPath::V2(v2.to_owned()));
            println!("v2 {v2}: {c:?}");
            // PSI is there on pure v2 and on hybrid hosts where the kernel has PSI on.
            if Path::new("/proc/pressure/cpu").exists() && mounts.v2.is_some() {
                assert!(
                    c.cpu_some_us.is_some() && c.memory_some_us.is_some(),
                    "{c:?}"
                );
            }
        }
    }
}
