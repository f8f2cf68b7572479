//! Processes: the /proc scan, which process is in scope, which container each belongs to,
//! and what is kept of processes that ended (exact figures from eBPF exit records).

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt,
    time::Duration,
};

use summary::ProcessSummary;

use super::{
    Sampler, Scope, container::Container, grouping::ContainerName, process::Process, rates,
};
use crate::sources::{
    cgroupfs::{self, CgroupPath},
    cpu_totals::ExitedProcess,
    procfs,
};

impl Sampler {
    pub(super) fn scan_processes(&mut self, window: Option<Duration>) {
        let pids = match procfs::list_pids(&self.cfg.proc_root) {
            Ok(p) => p,
            Err(e) => {
                self.read_errors += 1;
                tracing::warn!("{e:#}");
                return;
            }
        };
        let tick = self.slow_ticks;
        let mut new_pids = Vec::new();
        let mut moved = Vec::new();
        let mut settled = Vec::new();
        for pid in pids {
            let stat = match self.reader.read_pid(&self.cfg.proc_root, pid, "stat") {
                Ok(Some(text)) => match procfs::parse_pid_stat(&text) {
                    Ok(s) => s,
                    Err(e) => {
                        self.read_errors += 1;
                        tracing::debug!("skipping pid {pid}: unparsable stat: {e}");
                        continue;
                    }
                },
                Ok(None) => continue,
                Err(e) => {
                    self.read_errors += 1;
                    tracing::debug!("skipping pid {pid}: {e:#}");
                    continue;
                }
            };
            let ticks = stat.utime.saturating_add(stat.stime);
            let rss = stat.rss_pages.saturating_mul(procfs::page_size());
            match self.processes.get_mut(&pid) {
                Some(p) if p.start_ticks == stat.starttime => {
                    if let Some(w) = window.filter(|w| !w.is_zero()) {
                        let delta = ticks.saturating_sub(p.last_ticks);
                        let cores = rates::cores_from_ticks(delta, self.ticks_per_sec, w);
                        p.peak_cpu_percent = p.peak_cpu_percent.max(rates::percent_of_core(cores));
                    }
                    p.window_ticks = ticks.saturating_sub(p.last_ticks);
                    p.last_ticks = ticks;
                    p.rss = rss;
                    p.threads = stat.num_threads;
                    p.peak_rss = p.peak_rss.max(rss);
                    p.scans += 1;
                    // A process can move to another cgroup just after it starts (a runtime
                    // placing it, `sh -c 'echo $$ > cgroup.procs; exec ...'`): look again at
                    // its second scan and after an exec (its command name changed).
                    if p.scans == 2 || p.comm != stat.comm {
                        if let Ok(Some(text)) =
                            self.reader.read_pid(&self.cfg.proc_root, pid, "cgroup")
                        {
                            let lines = procfs::parse_pid_cgroup(&text);
                            let v2 = procfs::cgroup_v2_path(&lines).map(str::to_owned);
                            let v1 = procfs::cgroup_v1_path(&lines).map(str::to_owned);
                            if v2 != p.cgroup_v2 || v1 != p.cgroup_v1 {
                                (p.cgroup_v2, p.cgroup_v1) = (v2, v1);
                                p.memory_v1 = v1_twin_of(&lines, "memory");
                                p.cpu_v1 = v1_twin_of(&lines, "cpu");
                                p.blkio_v1 = v1_twin_of(&lines, "blkio");
                                p.netns = netns_of(&self.cfg.proc_root, pid);
                                moved.push(pid);
                            }
                        }
                        if p.scans == 2 {
                            settled.push(pid);
                        }
                    }
                    p.comm = stat.comm;
                    p.seen_at_slow_tick = tick;
                }
                _ => {
                    // New process (or a reused pid): learn its cgroup and network namespace.
                    let lines = match self.reader.read_pid(&self.cfg.proc_root, pid, "cgroup") {
                        Ok(Some(text)) => procfs::parse_pid_cgroup(&text),
                        _ => continue,
                    };
                    let process = Process {
                        start_ticks: stat.starttime,
                        comm: stat.comm,
                        container: ContainerName::unassigned(),
                        cgroup_v2: procfs::cgroup_v2_path(&lines).map(str::to_owned),
                        cgroup_v1: procfs::cgroup_v1_path(&lines).map(str::to_owned),
                        memory_v1: v1_twin_of(&lines, "memory"),
                        cpu_v1: v1_twin_of(&lines, "cpu"),
                        blkio_v1: v1_twin_of(&lines, "blkio"),
                        netns: netns_of(&self.cfg.proc_root, pid),
                        ppid: stat.ppid,
                        first_ticks: ticks,
                        last_ticks: ticks,
                        // Found after the first scan: it started during the run.
                        window_ticks: if tick > 1 { ticks } else { 0 },
                        peak_cpu_percent: 0.0,
                        threads: stat.num_threads,
                        rss,
                        peak_rss: rss,
                        seen_at_slow_tick: tick,
                        scans: 1,
                        exact_exit: None,
                        run_delay_ns: None,
                    };
                    if let Some(old) = self.processes.insert(pid, process) {
                        self.retire_process(pid, old);
                    }
                    new_pids.push(pid);
                }
            }
        }
        // Pending thread CPU of processes that are gone for good (their leader's record lost).
        let live: HashSet<i32> = self.processes.keys().copied().collect();
        self.pending_threads
            .retain(|tgid, (_, at)| live.contains(&(*tgid as i32)) || tick <= *at + 2);
        // Processes not seen this tick have exited.
        let gone: Vec<i32> = self
            .processes
            .iter()
            .filter(|(_, p)| p.seen_at_slow_tick != tick)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in gone {
            if let Some(p) = self.processes.remove(&pid) {
                self.retire_process(pid, p);
            }
        }
        // Processes at their second scan, or that moved: their cgroup is now trustworthy.
        settled.extend(moved.iter().copied());
        settled.sort_unstable();
        settled.dedup();
        self.new_at_last_scan = settled;
        self.first_seen_at_last_scan.clone_from(&new_pids);
        if !moved.is_empty() && new_pids.is_empty() {
            self.assign_containers();
        }
        // Scope: drop what is not ours (new processes only; scope never widens).
        if !new_pids.is_empty() {
            let out_of_scope: Vec<i32> = new_pids
                .iter()
                .copied()
                .filter(|pid| !self.in_scope(*pid))
                .collect();
            for pid in &out_of_scope {
                self.processes.remove(pid);
            }
            self.assign_containers();
        }
    }

    fn in_scope(&self, pid: i32) -> bool {
        let Some(p) = self.processes.get(&pid) else {
            return false;
        };
        match &self.cfg.scope {
            Scope::All => true,
            Scope::Cgroup(root) => p
                .cgroup_v2
                .as_deref()
                .is_some_and(|path| cgroupfs::is_within(path, root)),
            Scope::Tree(root) => {
                // Walk up the parent chain through the processes we know.
                let mut cur = pid;
                for _ in 0..64 {
                    if cur == *root {
                        return true;
                    }
                    match self.processes.get(&cur) {
                        Some(p) if p.ppid > 0 && p.ppid != cur => cur = p.ppid,
                        _ => return false,
                    }
                }
                false
            }
        }
    }

    /// (Re)computes every live process's container and each container's cgroup set.
    fn assign_containers(&mut self) {
        let names: HashMap<i32, ContainerName> = match &self.cfg.single_container {
            Some(name) => self
                .processes
                .keys()
                .map(|pid| (*pid, name.clone()))
                .collect(),
            None => {
                let paths: Vec<(i32, &str, Option<CgroupPath>)> = self
                    .processes
                    .iter()
                    .map(|(pid, p)| (*pid, p.comm.as_str(), p.group_cgroup()))
                    .collect();
                let rows: Vec<(i32, &str, &str)> = paths
                    .iter()
                    .map(|(pid, comm, cg)| (*pid, *comm, cg.as_ref().map_or("/", |c| c.path())))
                    .collect();
                self.cfg.grouper.group(&rows)
            }
        };
        for (pid, p) in self.processes.iter_mut() {
            let Some(name) = names.get(pid) else { continue };
            p.container = name.clone();
            let limits = self.cfg.limits.get(name.as_str()).copied();
            let c = self
                .containers
                .entry(name.clone())
                .or_insert_with(|| Container::new(limits));
            if let Some(ns) = p.netns {
                c.network.namespaces.insert(ns);
            }
            // The same cgroup in the other hierarchy is the same container, counted once. On
            // hybrid hosts runc joins the v1 controllers first and the unified hierarchy last,
            // so a process caught in between is grouped by its v1 path; a cgroup counter
            // summed over both would count its CPU twice. Before the first CPU reading the v2
            // path replaces the v1 one (it has an eBPF id); after it, the source stays.
            let cgroup = p.group_cgroup().filter(|cgroup| {
                let twin = match cgroup {
                    CgroupPath::V2(path) => CgroupPath::V1(path.clone()),
                    CgroupPath::V1(path) => CgroupPath::V2(path.clone()),
                };
                if !c.cgroups.contains(&twin) {
                    return true;
                }
                let replace = matches!(cgroup, CgroupPath::V2(_)) && c.cpu.source.is_none();
                if replace {
                    c.cgroups.remove(&twin);
                }
                replace
            });
            if let Some(cgroup) = cgroup
                && c.cgroups.insert(cgroup.clone())
            {
                // eBPF counts per cgroup v2 id: only meaningful when the container is a v2
                // cgroup (a v1-grouped one shares the v2 root with everything else).
                if let CgroupPath::V2(path) = &cgroup
                    && let Some(dir) = self.mounts.v2_dir(path)
                    && let Ok(id) = cgroupfs::cgroup_id(&dir)
                {
                    c.cgroup_ids.insert(id);
                    self.container_of_cgroup.insert(id, name.clone());
                }
            }
        }
    }

    pub(super) fn retire_process(&mut self, pid: i32, p: Process) {
        let (cpu_seconds, avg) = p.exact_exit.unwrap_or((
            (p.last_ticks - p.first_ticks) as f64 / self.ticks_per_sec.max(1) as f64,
            0.0,
        ));
        let lifetime = p.lifetime_seconds(self.ticks_per_sec);
        if let Some(c) = self.containers.get_mut(&p.container) {
            c.commands
                .count(&p.comm, 1, cpu_seconds, p.peak_rss, lifetime);
        }
        // Its eBPF exit record may come after this: it must correct, not count again.
        self.retired_recently
            .insert((pid, p.comm.clone()), (self.slow_ticks, cpu_seconds));
        self.push_exited(ProcessSummary {
            pid,
            name: p.comm,
            peak_cpu_percent: p.peak_cpu_percent.max(avg),
            peak_mem_rss_bytes: p.peak_rss,
            cpu_seconds,
            container: p.container.assigned().map(str::to_owned),
            exited: true,
        });
    }

    /// Exact per-process CPU of processes that exited (eBPF), short-lived ones included.
    /// Returns the containers whose every process known to the last scan has now exited:
    /// their counters are read at once, before a container runtime removes their cgroups.
    pub(super) fn record_exits(&mut self, exits: Vec<ExitedProcess>) -> Vec<ContainerName> {
        let mut touched: Vec<ContainerName> = Vec::new();
        for mut e in exits {
            // A thread exiting is not its process exiting: hold its CPU until the leader goes.
            if !e.leader_exited {
                let slot = self.pending_threads.entry(e.tgid).or_default();
                slot.0 += e.runtime_ns;
                slot.1 = self.slow_ticks;
                continue;
            }
            self.exits_since_scan.insert(e.tgid as i32);
            if let Some((ns, _)) = self.pending_threads.remove(&e.tgid) {
                e.runtime_ns += ns;
            }
            let Some(container) = self.container_of_cgroup.get(&e.cgroup_id).cloned() else {
                continue; // not one of ours (out of scope)
            };
            if !touched.contains(&container) {
                touched.push(container.clone());
            }
            let cpu_seconds = e.runtime_ns as f64 / 1e9;
            let avg_percent = if e.lifetime_ns > 0 {
                e.runtime_ns as f64 / e.lifetime_ns as f64 * 100.0
            } else {
                0.0
            };
            let pid = e.tgid as i32;
            // Its true peak, between two scans included.
            let peak_rss = e.max_rss_pages.saturating_mul(procfs::page_size());
            // Still listed from /proc: keep it there (it may linger as a zombie) with the
            // exact figures; the scan retires it.
            if let Some(p) = self.processes.get_mut(&pid) {
                p.exact_exit = Some((cpu_seconds, avg_percent));
                p.peak_rss = p.peak_rss.max(peak_rss);
                continue;
            }
            // Already retired by a scan: correct that entry.
            if let Some(p) = self
                .exited
                .iter_mut()
                .rev()
                .find(|p| p.pid == pid && p.name == e.comm)
            {
                if let Some(c) = self.containers.get_mut(&container) {
                    let lifetime = e.lifetime_ns as f64 / 1e9;
                    c.commands
                        .count(&e.comm, 0, cpu_seconds - p.cpu_seconds, peak_rss, lifetime);
                }
                p.cpu_seconds = cpu_seconds;
                p.peak_mem_rss_bytes = p.peak_mem_rss_bytes.max(peak_rss);
                p.peak_cpu_percent = p.peak_cpu_percent.max(avg_percent);
                self.retired_recently.remove(&(pid, e.comm.clone()));
                continue;
            }
            let lifetime = e.lifetime_ns as f64 / 1e9;
            if let Some(c) = self.containers.get_mut(&container) {
                match self.retired_recently.remove(&(pid, e.comm.clone())) {
                    // Retired by a scan, its entry since pruned from the top lists.
                    Some((_, counted)) => {
                        c.commands
                            .count(&e.comm, 0, cpu_seconds - counted, peak_rss, lifetime)
                    }
                    None => c
                        .commands
                        .count(&e.comm, 1, cpu_seconds, peak_rss, lifetime),
                }
            }
            self.push_exited(ProcessSummary {
                pid,
                name: e.comm,
                peak_cpu_percent: avg_percent,
                peak_mem_rss_bytes: peak_rss,
                cpu_seconds,
                container: Some(container.to_string()),
                exited: true,
            });
        }
        // Those with a process exit whose processes from the last scan have all exited.
        touched.retain(|name| {
            self.processes
                .values()
                .filter(|p| &p.container == name)
                .all(|p| p.exact_exit.is_some())
        });
        touched
    }

    /// Whether the process's exit has been seen: its exit record (eBPF), or without eBPF,
    /// its absence from /proc (a reaped child).
    pub fn exit_seen(&self, pid: i32) -> bool {
        if !matches!(self.cpu, crate::sources::cpu_source::CpuSource::Ebpf(_)) {
            return !self.cfg.proc_root.join(pid.to_string()).exists();
        }
        self.exits_since_scan.contains(&pid)
    }

    /// CPU nanoseconds of every container so far.
    pub fn cpu_ns_total(&self) -> u64 {
        self.containers.values().map(|c| c.cpu.ns).sum()
    }

    fn push_exited(&mut self, p: ProcessSummary) {
        self.exited.push(p);
        let keep = self.cfg.top.max(1) * 4;
        if self.exited.len() > keep * 4 {
            super::report_of::prune_top(&mut self.exited, keep);
        }
    }
}

/// The v1 cgroup of a process in `controller` when it is the twin of its v2 cgroup (the same
/// last component, as systemd, container runtimes and `collector run` create them). Another
/// one is inherited from whoever started the process and counts others too.
fn v1_twin_of(lines: &[procfs::CgroupLine], controller: &str) -> Option<String> {
    let v1 = procfs::cgroup_v1_controller_path(lines, controller)?;
    let v2 = procfs::cgroup_v2_path(lines)?;
    let last = |p: &str| p.rsplit('/').next().unwrap_or("").to_owned();
    (last(v1) == last(v2)).then(|| v1.to_owned())
}

/// The network namespace inode of a process, if it is still there.
fn netns_of(proc_root: &std::path::Path, pid: i32) -> Option<u64> {
    std::fs::metadata(proc_root.join(format!("{pid}/ns/net")))
        .ok()
        .map(|m| m.ino())
}
