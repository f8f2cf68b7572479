//! Pure bookkeeping for the eBPF CPU maps: turns raw per-CPU map snapshots into exact,
//! monotonic per-cgroup totals (on-CPU time and run-queue wait, one [`CgroupTotals`] each), decides when a removed cgroup's entry may be deleted, and
//! aggregates exited threads into processes. No I/O; the loader (`ebpf.rs`) feeds it.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
};

use collector_common::{COMM_LEN, CgroupTime, CpuState, WaitPair};

/// How many consecutive reads a cgroup must be gone from cgroupfs before its map entry is
/// deleted. A task's very last slices can still be charged to a cgroup that was removed
/// moments before (cgroup_exit precedes the final switch), so one read is not enough.
pub const RETIRE_AFTER_READS: u32 = 3;

/// One read of the maps, combined: per-cgroup on-CPU and run-queue wait nanoseconds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Combined {
    pub cpu_ns: HashMap<u64, u64>,
    pub wait_ns: HashMap<u64, u64>,
    /// CPUs that flushed during the read; their pending time is left for the next read.
    pub torn: usize,
}

/// Whether a CPU did not flush between the two reads of its state (`flush_seq` unchanged
/// and even): its pending figures are not in the hash read meanwhile.
fn unflushed(before: Option<&CpuState>, now: &CpuState) -> bool {
    before.is_some_and(|b| b.flush_seq == now.flush_seq) && now.flush_seq.is_multiple_of(2)
}

/// Sums a map entry's per-CPU values.
pub fn sum_times(per_cpu: &[CgroupTime]) -> CgroupTime {
    per_cpu
        .iter()
        .fold(CgroupTime::default(), |a, t| CgroupTime {
            cpu_ns: a.cpu_ns + t.cpu_ns,
            wait_ns: a.wait_ns + t.wait_ns,
        })
}

/// Combines one consistent read of the maps into per-cgroup totals.
///
/// `before` and `after` are the per-CPU `CpuState` slots read around the hash read. A CPU
/// whose `flush_seq` moved (or is odd) flushed while we read, so its cached pending figures
/// may already be in `hash`; for such CPUs the pending part (time and wait alike, they are
/// flushed together) is left out (counted next time) rather than risk counting it twice.
pub fn combine(
    before: &[CpuState],
    hash: &[(u64, Vec<CgroupTime>)],
    after: &[CpuState],
) -> Combined {
    let capacity = hash.len() + after.len();
    let mut cpu_ns: HashMap<u64, u64> = HashMap::with_capacity(capacity);
    let mut wait_ns: HashMap<u64, u64> = HashMap::with_capacity(capacity);
    for (cgroup, per_cpu) in hash {
        let sum = sum_times(per_cpu);
        *cpu_ns.entry(*cgroup).or_default() += sum.cpu_ns;
        *wait_ns.entry(*cgroup).or_default() += sum.wait_ns;
    }
    let mut torn = 0;
    for (cpu, now) in after.iter().enumerate() {
        let stable = unflushed(before.get(cpu), now);
        if !stable {
            torn += 1;
            continue;
        }
        if now.cached_cgroup != 0 && (now.pending_ns | now.pending_wait_ns) != 0 {
            *cpu_ns.entry(now.cached_cgroup).or_default() += now.pending_ns;
            *wait_ns.entry(now.cached_cgroup).or_default() += now.pending_wait_ns;
        }
    }
    Combined {
        cpu_ns,
        wait_ns,
        torn,
    }
}

/// One read of the wait-attribution map, combined like [`combine`]: wait nanoseconds per
/// (waiter, holder) pair, the pending pair of each CPU included where the read was not torn.
/// Also returns the number of torn CPUs.
pub fn combine_behind(
    before: &[CpuState],
    hash: &[(WaitPair, Vec<u64>)],
    after: &[CpuState],
) -> (HashMap<WaitPair, u64>, usize) {
    let mut out: HashMap<WaitPair, u64> = HashMap::with_capacity(hash.len() + after.len());
    for (pair, per_cpu) in hash {
        *out.entry(*pair).or_default() += per_cpu.iter().sum::<u64>();
    }
    let mut torn = 0;
    for (cpu, now) in after.iter().enumerate() {
        let stable = unflushed(before.get(cpu), now);
        if !stable {
            torn += 1;
        } else if now.behind.waiter != 0 && now.pending_behind_ns != 0 {
            *out.entry(now.behind).or_default() += now.pending_behind_ns;
        }
    }
    (out, torn)
}

/// Per-cgroup nanoseconds (on-CPU, or run-queue wait) over the collector's life, including
/// cgroups whose map entries were already deleted. Totals never go backwards.
pub type CgroupTotals = Totals<u64>;

/// Nanoseconds per map key (a cgroup id, or a (waiter, holder) pair of cgroups) over the
/// collector's life, including keys whose map entries were already deleted. Totals never go
/// backwards.
#[derive(Debug)]
pub struct Totals<K> {
    /// Nanoseconds of entries already deleted from the map, by key.
    retired: HashMap<K, u64>,
    /// Last reported total by key (the monotonic floor).
    last: HashMap<K, u64>,
    /// Consecutive reads for which each mapped key was absent from cgroupfs.
    absent_reads: HashMap<K, u32>,
}

impl<K> Default for Totals<K> {
    fn default() -> Self {
        Self {
            retired: HashMap::new(),
            last: HashMap::new(),
            absent_reads: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash + Ord> Totals<K> {
    /// Folds a fresh `combine` result in and returns the current totals.
    pub fn update(&mut self, observed: &HashMap<K, u64>) -> &HashMap<K, u64> {
        for (cgroup, ns) in observed {
            let total = ns + self.retired.get(cgroup).copied().unwrap_or(0);
            let slot = self.last.entry(*cgroup).or_default();
            *slot = (*slot).max(total);
        }
        &self.last
    }

    /// Current totals by key.
    pub fn totals(&self) -> &HashMap<K, u64> {
        &self.last
    }

    /// Map entries that may be deleted now: cgroups absent from cgroupfs for
    /// `RETIRE_AFTER_READS` reads and not cached on any CPU (so no flush can recreate them).
    pub fn retirable(
        &mut self,
        in_map: &HashMap<K, u64>,
        cached: &HashSet<K>,
        is_live: impl Fn(K) -> bool,
    ) -> Vec<K> {
        let mut out = Vec::new();
        self.absent_reads
            .retain(|cgroup, _| in_map.contains_key(cgroup));
        for cgroup in in_map.keys() {
            if is_live(*cgroup) {
                self.absent_reads.remove(cgroup);
                continue;
            }
            let reads = self.absent_reads.entry(*cgroup).or_default();
            *reads += 1;
            if *reads >= RETIRE_AFTER_READS && !cached.contains(cgroup) {
                out.push(*cgroup);
            }
        }
        out.sort_unstable();
        out
    }

    /// Records that the map entry of `cgroup`, last read as `map_ns`, was deleted.
    pub fn retired(&mut self, cgroup: K, map_ns: u64) {
        *self.retired.entry(cgroup).or_default() += map_ns;
        self.absent_reads.remove(&cgroup);
        let total = self.retired[&cgroup];
        let slot = self.last.entry(cgroup).or_default();
        *slot = (*slot).max(total);
    }

    /// Drops what is kept about cgroups the caller has finished with (e.g. after a job's
    /// summary), so memory does not grow with the number of cgroups over time.
    pub fn forget(&mut self, cgroups: &[K]) {
        self.forget_where(|k| cgroups.contains(k));
    }

    /// [`Totals::forget`] for every key `gone` says.
    pub fn forget_where(&mut self, gone: impl Fn(&K) -> bool) {
        self.retired.retain(|k, _| !gone(k));
        self.last.retain(|k, _| !gone(k));
        self.absent_reads.retain(|k, _| !gone(k));
    }
}

/// One exited thread, as read from the exit ring buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitedThread {
    pub tgid: u32,
    pub pid: u32,
    pub cgroup_id: u64,
    pub runtime_ns: u64,
    pub exit_ns: u64,
    pub start_ns: u64,
    /// Its process's peak resident pages so far (`signal->maxrss`).
    pub max_rss_pages: u64,
    pub comm: String,
}

impl ExitedThread {
    pub fn from_record(r: &collector_common::ExitRecord) -> Self {
        Self {
            tgid: r.tgid,
            pid: r.pid,
            cgroup_id: r.cgroup_id,
            runtime_ns: r.runtime_ns,
            exit_ns: r.exit_ns,
            start_ns: r.start_ns,
            max_rss_pages: r.max_rss_pages,
            comm: comm_to_string(&r.comm),
        }
    }
}

/// Kernel command names are up to 16 bytes, NUL-padded, and not necessarily UTF-8.
pub fn comm_to_string(comm: &[u8; COMM_LEN]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// CPU of an exited process: the sum of its threads' runtimes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitedProcess {
    pub tgid: u32,
    /// Name of the thread-group leader if seen, else of the last thread to exit.
    pub comm: String,
    pub cgroup_id: u64,
    pub runtime_ns: u64,
    pub threads: u32,
    /// Life of the process (leader's start to the last thread's exit), for its average CPU.
    pub lifetime_ns: u64,
    /// Whether the thread-group leader is among the exited threads (the process is gone);
    /// otherwise these are threads of a process that lives on.
    pub leader_exited: bool,
    /// The process's peak resident pages, the most its exiting threads reported.
    pub max_rss_pages: u64,
}

/// Groups exited threads by process id.
pub fn aggregate_exits(threads: &[ExitedThread]) -> Vec<ExitedProcess> {
    let mut by_tgid: HashMap<u32, ExitedProcess> = HashMap::new();
    for t in threads {
        let p = by_tgid.entry(t.tgid).or_insert_with(|| ExitedProcess {
            tgid: t.tgid,
            comm: t.comm.clone(),
            cgroup_id: t.cgroup_id,
            ..Default::default()
        });
        p.runtime_ns += t.runtime_ns;
        p.threads += 1;
        p.lifetime_ns = p.lifetime_ns.max(t.exit_ns.saturating_sub(t.start_ns));
        p.max_rss_pages = p.max_rss_pages.max(t.max_rss_pages);
        if t.pid == t.tgid {
            p.comm = t.comm.clone();
            p.cgroup_id = t.cgroup_id;
            p.leader_exited = true;
        }
    }
    let mut out: Vec<_> = by_tgid.into_values().collect();
    out.sort_by(|a, b| b.runtime_ns.cmp(&a.runtime_ns).then(a.tgid.cmp(&b.tgid)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU slot whose pending wait is a tenth of its pending time.
    fn st(cached: u64, pending: u64, seq: u64) -> CpuState {
        CpuState {
            in_task: 1,
            in_runtime_ns: 1,
            in_run_delay_ns: 1,
            in_pcount: 1,
            cached_cgroup: cached,
            pending_ns: pending,
            pending_wait_ns: pending / 10,
            flush_seq: seq,
            ..Default::default()
        }
    }

    /// Map values whose wait is twice their time.
    fn ht(cpu: &[u64]) -> Vec<CgroupTime> {
        cpu.iter()
            .map(|&c| CgroupTime {
                cpu_ns: c,
                wait_ns: 2 * c,
            })
            .collect()
    }

    #[test]
    fn combine_adds_hash_and_pending_of_stable_cpus() {
        let before = [st(7, 10, 2), st(9, 50, 4)];
        let after = [st(7, 150, 2), st(9, 60, 4)];
        let hash = vec![(7, ht(&[100, 1])), (8, ht(&[0, 50]))];
        let c = combine(&before, &hash, &after);
        assert_eq!(c.torn, 0);
        assert_eq!((c.cpu_ns[&7], c.wait_ns[&7]), (251, 202 + 15));
        assert_eq!((c.cpu_ns[&8], c.wait_ns[&8]), (50, 100));
        assert_eq!((c.cpu_ns[&9], c.wait_ns[&9]), (60, 6));
        // Wait alone (a slice that used no measurable CPU) is still pending time.
        let waiting = CpuState {
            pending_ns: 0,
            pending_wait_ns: 3,
            ..st(5, 0, 2)
        };
        let c = combine(&[waiting], &[], &[waiting]);
        assert_eq!((c.cpu_ns[&5], c.wait_ns[&5]), (0, 3));
    }

    #[test]
    fn combine_skips_pending_of_torn_cpus() {
        // CPU 1 flushed during the read (seq moved) and another is mid-flush (odd).
        let before = [st(7, 10, 2), st(9, 5, 4), st(3, 1, 5)];
        let after = [st(7, 150, 2), st(4, 60, 6), st(3, 10, 5)];
        let hash = vec![(9, ht(&[0, 5, 0]))];
        let c = combine(&before, &hash, &after);
        assert_eq!(c.torn, 2);
        assert_eq!((c.cpu_ns[&9], c.wait_ns[&9]), (5, 10));
        assert_eq!((c.cpu_ns[&7], c.wait_ns[&7]), (150, 15));
        for cgroup in [4, 3] {
            assert!(!c.cpu_ns.contains_key(&cgroup) && !c.wait_ns.contains_key(&cgroup));
        }
    }

    #[test]
    fn sum_times_adds_both_figures() {
        assert_eq!(
            sum_times(&ht(&[1, 2, 3])),
            CgroupTime {
                cpu_ns: 6,
                wait_ns: 12
            }
        );
        assert_eq!(sum_times(&[]), CgroupTime::default());
    }

    #[test]
    fn totals_are_monotonic_and_survive_retirement() {
        let mut c = CgroupTotals::default();
        c.update(&HashMap::from([(5, 100)]));
        // A torn read under-counts: the reported total does not go back.
        assert_eq!(c.update(&HashMap::from([(5, 90)]))[&5], 100);
        assert_eq!(c.update(&HashMap::from([(5, 130)]))[&5], 130);
        c.retired(5, 130);
        // The entry is gone from the map; a late flush recreates it with a small value.
        assert_eq!(c.update(&HashMap::from([(5, 7)]))[&5], 137);
        c.forget(&[5]);
        assert!(c.totals().is_empty());
    }

    #[test]
    fn behind_pairs_add_stable_pending_and_skip_torn_cpus() {
        let pair = |waiter, holder| WaitPair { waiter, holder };
        let hash = vec![(pair(7, 8), vec![10, 5]), (pair(7, 0), vec![1, 0])];
        let mut cpu0 = st(7, 0, 4);
        cpu0.behind = pair(7, 8);
        cpu0.pending_behind_ns = 100;
        let mut cpu1 = st(9, 0, 6);
        cpu1.behind = pair(9, 7);
        cpu1.pending_behind_ns = 50;
        let mut cpu1_after = cpu1;
        cpu1_after.flush_seq = 8;
        let (out, torn) = combine_behind(&[cpu0, cpu1], &hash, &[cpu0, cpu1_after]);
        assert_eq!(torn, 1, "CPU 1 flushed meanwhile");
        assert_eq!(out[&pair(7, 8)], 115);
        assert_eq!(out[&pair(7, 0)], 1);
        assert!(!out.contains_key(&pair(9, 7)), "left for the next read");
        let (out, torn) = combine_behind(&[cpu0, cpu1], &hash, &[cpu0, cpu1]);
        assert_eq!((torn, out[&pair(9, 7)]), (0, 50));
    }

    #[test]
    fn pair_totals_retire_and_forget_like_cgroups() {
        let pair = WaitPair {
            waiter: 3,
            holder: 4,
        };
        let mut t: Totals<WaitPair> = Totals::default();
        t.update(&HashMap::from([(pair, 10)]));
        t.retired(pair, 12);
        assert_eq!(t.totals()[&pair], 12);
        t.update(&HashMap::new());
        assert_eq!(t.totals()[&pair], 12, "never backwards");
        t.forget_where(|p| p.waiter == 3);
        assert!(t.totals().is_empty());
    }

    #[test]
    fn retirable_needs_grace_and_no_cached_cpu() {
        let mut c = CgroupTotals::default();
        let in_map = HashMap::from([(1, 10), (2, 20), (3, 30)]);
        let live = |id| id == 1;
        let cached = HashSet::from([3]);
        for _ in 1..RETIRE_AFTER_READS {
            assert!(c.retirable(&in_map, &cached, live).is_empty());
        }
        assert_eq!(c.retirable(&in_map, &cached, live), vec![2]);
        // Reappearing (e.g. an id seen live again) resets the grace.
        assert!(c.retirable(&in_map, &cached, |_| true).is_empty());
    }

    #[test]
    fn exits_group_by_process_and_prefer_leader_name() {
        let t = |tgid, pid, ns, comm: &str| ExitedThread {
            tgid,
            pid,
            cgroup_id: 42,
            runtime_ns: ns,
            exit_ns: 100,
            start_ns: 40,
            max_rss_pages: ns * 10,
            comm: comm.into(),
        };
        let procs = aggregate_exits(&[
            t(10, 11, 5, "worker"),
            t(10, 10, 7, "make"),
            t(20, 20, 3, "cc1"),
        ]);
        assert_eq!(procs[0].tgid, 10);
        assert_eq!(procs[0].runtime_ns, 12);
        assert_eq!(procs[0].threads, 2);
        assert_eq!(procs[0].comm, "make");
        assert_eq!(procs[0].lifetime_ns, 60);
        // The process's peak is the most any of its threads reported.
        assert_eq!(procs[0].max_rss_pages, 70);
        assert!(procs[0].leader_exited);
        let only_worker = aggregate_exits(&[t(30, 31, 5, "worker")]);
        assert!(!only_worker[0].leader_exited);
        assert_eq!(procs[1].comm, "cc1");
    }

    #[test]
    fn comm_handles_full_length_and_invalid_utf8() {
        assert_eq!(comm_to_string(b"0123456789abcdef"), "0123456789abcdef");
        let mut c = [0u8; COMM_LEN];
        c[..3].copy_from_slice(&[b'a', 0xff, b'b']);
        assert_eq!(comm_to_string(&c), "a\u{fffd}b");
    }
}
