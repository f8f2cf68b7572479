//! Job bookkeeping at every slow tick: which containers belong to which job, when a job
//! ends, resuming checkpoints after a restart.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    time::SystemTime,
};

use summary::{Accumulator, Execution, MetricsPush, SCALE_BYTES, SCALE_PERCENT};

use super::{
    identity::{group_of, identity_from_environ, job_key},
    spool::Spool,
};
use crate::{
    output::file::write_atomically,
    sampler::{JobSystem, Sampler, grouping::ContainerName},
    settings::cli::{GroupBy, NodeArgs},
};

/// A job being measured.
struct Job {
    id: Execution,
    /// Groups (pods or containers) it claimed, and their containers.
    groups: BTreeSet<String>,
    containers: BTreeSet<ContainerName>,
    start: SystemTime,
    system_cpu: Accumulator,
    system_mem: Accumulator,
    samples: u64,
    /// Last slow tick at which one of its containers had a process.
    last_alive_tick: u64,
    /// Its summary from before a restart, merged in at the end.
    resumed: Option<summary::RunSummary>,
}

impl Job {
    fn new(
        id: Execution,
        start: SystemTime,
        tick: u64,
        resumed: Option<summary::RunSummary>,
    ) -> Self {
        Self {
            id,
            groups: BTreeSet::new(),
            containers: BTreeSet::new(),
            start,
            system_cpu: Accumulator::new(SCALE_PERCENT),
            system_mem: Accumulator::new(SCALE_BYTES),
            samples: 0,
            last_alive_tick: tick,
            resumed,
        }
    }
}

pub(super) struct NodeState {
    jobs: BTreeMap<String, Job>,
    group_job: HashMap<String, String>,
    /// Checkpoints from before a restart not yet claimed by a running job.
    checkpoints: HashMap<String, MetricsPush>,
    /// Containers of no job that ended, and since when (forgotten after the grace).
    unowned_dead_since: HashMap<ContainerName, u64>,
    /// Job identities of live processes, read when they were first seen.
    identities: HashMap<i32, Execution>,
    tick: u64,
    grace_ticks: u64,
    checkpoint_ticks: u64,
    group_by: GroupBy,
    proc_root: PathBuf,
}

impl NodeState {
    /// Bookkeeping that resumes `checkpoints`; durations are counted in slow ticks.
    pub(super) fn new(
        checkpoints: HashMap<String, MetricsPush>,
        args: &NodeArgs,
        interval: std::time::Duration,
        proc_root: PathBuf,
    ) -> Self {
        let ticks = |d: std::time::Duration| {
            (d.as_secs_f64() / interval.as_secs_f64()).ceil().max(1.0) as u64
        };
        Self {
            jobs: BTreeMap::new(),
            group_job: HashMap::new(),
            checkpoints,
            unowned_dead_since: HashMap::new(),
            identities: HashMap::new(),
            tick: 0,
            grace_ticks: ticks(args.job_grace),
            checkpoint_ticks: ticks(args.checkpoint_interval),
            group_by: args.group_by,
            proc_root,
        }
    }

    /// Jobs being measured.
    pub(super) fn active_jobs(&self) -> usize {
        self.jobs.len()
    }

    /// Checkpoints from before a restart not yet resumed or pushed.
    pub(super) fn pending_checkpoints(&self) -> usize {
        self.checkpoints.len()
    }

    /// One slow tick of job bookkeeping; returns how many jobs finished.
    pub(super) fn tick(&mut self, sampler: &mut Sampler, spool: &Spool, top: usize) -> usize {
        self.tick += 1;
        // 1. A new process's identity is read at once (it may exit soon), and its group is
        //    claimed when its cgroup has settled (it may still be moved just after it starts).
        for pid in sampler.first_seen() {
            match std::fs::read(self.proc_root.join(format!("{pid}/environ"))) {
                Ok(environ) => {
                    if let Some(id) = identity_from_environ(&environ) {
                        tracing::trace!(pid, job = %id.job, "identity read");
                        self.identities.insert(*pid, id);
                    }
                }
                Err(e) => tracing::trace!(pid, "environment unreadable: {e}"),
            }
        }
        self.identities.retain(|pid, _| sampler.has_process(*pid));
        for (pid, container) in sampler.new_processes() {
            let group = group_of(&container, self.group_by);
            if self.group_job.contains_key(&group) {
                continue;
            }
            // Read at first sight, or now if that read failed (a process between fork and
            // exec has no readable environment yet).
            let id = self.identities.get(&pid).cloned().or_else(|| {
                let environ = std::fs::read(self.proc_root.join(format!("{pid}/environ"))).ok()?;
                identity_from_environ(&environ)
            });
            let Some(id) = id else { continue };
            tracing::debug!(pid, %container, job = %id.job, "process of a job settled");
            let key = job_key(&id);
            let resumed = self.checkpoints.remove(&key).map(|p| p.summary);
            let job = self.jobs.entry(key.clone()).or_insert_with(|| {
                tracing::info!(repository = %id.repository, workflow = %id.workflow, job = %id.job, run_id = %id.run_id, resumed = resumed.is_some(), "job started");
                let start = resumed
                    .as_ref()
                    .and_then(|r| summary::time::parse_rfc3339(&r.start_time))
                    .unwrap_or_else(SystemTime::now);
                Job::new(id.clone(), start, self.tick, resumed)
            });
            job.groups.insert(group.clone());
            self.group_job.insert(group, key);
        }
        // 2. Every container of a claimed group belongs to its job.
        let containers: Vec<ContainerName> = sampler.containers().cloned().collect();
        for name in &containers {
            let group = group_of(name, self.group_by);
            match self
                .group_job
                .get(&group)
                .and_then(|k| self.jobs.get_mut(k))
            {
                Some(job) => {
                    if job.containers.insert(name.clone()) {
                        sampler.set_identity(name, job.id.clone());
                    }
                    self.unowned_dead_since.remove(name);
                }
                None if !sampler.is_alive(name.as_str()) => {
                    self.unowned_dead_since
                        .entry(name.clone())
                        .or_insert(self.tick);
                }
                None => {
                    self.unowned_dead_since.remove(name);
                }
            }
        }
        // 3. Containers of no job that ended are forgotten after the grace.
        let stale: BTreeSet<ContainerName> = self
            .unowned_dead_since
            .iter()
            .filter(|(_, since)| self.tick - **since >= self.grace_ticks)
            .map(|(n, _)| n.clone())
            .collect();
        if !stale.is_empty() {
            sampler.forget(&stale);
            self.unowned_dead_since.retain(|n, _| !stale.contains(n));
        }
        // 4. Jobs: sample while alive, finish after the grace.
        let (cpu, mem) = sampler.system_now();
        let mut finished = Vec::new();
        for (key, job) in self.jobs.iter_mut() {
            tracing::debug!(job = %key, containers = ?job.containers, alive = job.containers.iter().any(|c| sampler.is_alive(c.as_str())), last_alive = job.last_alive_tick, tick = self.tick, "job state");
            if job.containers.iter().any(|c| sampler.is_alive(c.as_str())) {
                job.last_alive_tick = self.tick;
                job.samples += 1;
                if let Some(cpu) = cpu {
                    job.system_cpu.record(cpu);
                }
                if let Some(mem) = mem {
                    job.system_mem.record(mem as f64);
                }
            } else if self.tick - job.last_alive_tick >= self.grace_ticks {
                finished.push(key.clone());
            }
        }
        let count = finished.len();
        for key in finished {
            let Some(job) = self.jobs.remove(&key) else {
                continue;
            };
            self.group_job.retain(|_, k| k != &key);
            for name in &job.containers {
                tracing::debug!(job = %job.id.job, "CPU of {}", sampler.describe_cpu(name));
            }
            let push = job_summary(sampler, &job, top);
            match spool.add(&push) {
                Ok(path) => {
                    tracing::info!(job = %job.id.job, run_id = %job.id.run_id, "job ended: summary spooled at {}", path.display())
                }
                Err(e) => tracing::error!("could not spool the summary of {}: {e:#}", key),
            }
            let _ = std::fs::remove_file(spool.checkpoint_path(&key));
            sampler.forget(&job.containers);
        }
        // 5. Checkpoints from before a restart: a job any of whose containers still runs goes
        //    on (even if only a sidecar without the variables is left); the others ended
        //    while we were down and their checkpoint is their summary.
        if self.tick == 2 {
            let resumable: Vec<String> = self
                .checkpoints
                .iter()
                .filter(|(_, push)| {
                    push.summary
                        .containers
                        .iter()
                        .any(|c| sampler.is_alive(&c.name))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for key in resumable {
                let Some(push) = self.checkpoints.remove(&key) else {
                    continue;
                };
                // The live containers the checkpoint names, with their pods.
                let names: Vec<ContainerName> = sampler
                    .containers()
                    .filter(|c| push.summary.containers.iter().any(|s| s.name == c.as_str()))
                    .cloned()
                    .collect();
                let start = summary::time::parse_rfc3339(&push.summary.start_time)
                    .unwrap_or_else(SystemTime::now);
                tracing::info!(job = %push.execution.job, run_id = %push.execution.run_id, "job still running after the restart: resuming it");
                let mut job =
                    Job::new(push.execution.clone(), start, self.tick, Some(push.summary));
                for name in names {
                    let group = group_of(&name, self.group_by);
                    job.groups.insert(group.clone());
                    self.group_job.entry(group).or_insert_with(|| key.clone());
                }
                self.jobs.entry(key).or_insert(job);
            }
        }
        if self.tick == self.grace_ticks + 1 {
            for (key, push) in self.checkpoints.drain() {
                tracing::info!(job = %push.execution.job, run_id = %push.execution.run_id, "job ended while the collector was down: pushing its checkpoint");
                if let Err(e) = spool.add(&push) {
                    tracing::error!("could not spool the checkpoint of {key}: {e:#}");
                }
                let _ = std::fs::remove_file(spool.checkpoint_path(&key));
            }
        }
        // 6. Periodic checkpoints.
        if self.tick.is_multiple_of(self.checkpoint_ticks) {
            self.checkpoint_all(sampler, spool);
        }
        count
    }

    pub(super) fn checkpoint_all(&self, sampler: &Sampler, spool: &Spool) {
        for (key, job) in &self.jobs {
            let push = job_summary(sampler, job, usize::MAX);
            if let Err(e) = serde_json::to_vec(&push)
                .map_err(std::io::Error::other)
                .and_then(|b| write_atomically(&spool.checkpoint_path(key), &b))
            {
                tracing::warn!("could not checkpoint job {key}: {e}");
            }
        }
    }
}

fn job_summary(sampler: &Sampler, job: &Job, top: usize) -> MetricsPush {
    let system = JobSystem {
        start: job.start,
        cpu: &job.system_cpu,
        mem: &job.system_mem,
        samples: job.samples,
        // A job already running when the collector started: its cgroups' own counters hold
        // what it used before. A resumed job's checkpoint has that part already.
        count_before_start: job.resumed.is_none(),
    };
    let info = sampler.collector_info("node");
    let mut summary = sampler.summary_of(Some(&job.containers), &system, info);
    if let Some(earlier) = &job.resumed {
        summary = summary::merge::merge_runs(earlier, &summary);
    }
    if top != usize::MAX {
        summary.top_cpu_processes.truncate(top);
        summary.top_mem_processes.truncate(top);
    }
    MetricsPush {
        execution: job.id.clone(),
        summary,
    }
}
