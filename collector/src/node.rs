//! Node mode: one collector per CI node measures every job running there and pushes one
//! summary per job when it ends.
//!
//! - **Jobs** are found from their processes' environment (`/proc/PID/environ`, read once per
//!   new process): `GITHUB_REPOSITORY`, `GITHUB_WORKFLOW`, `GITHUB_JOB`, `GITHUB_RUN_ID`, or
//!   their `FORGEJO_*` equivalents. A process with an identity claims its group: the
//!   Kubernetes pod (`--group-by pod`, the default) or its own container; every container of
//!   the group belongs to the job, so sidecars without the variables are counted too.
//! - **A job ends** when none of its containers has had a process for `--job-grace`. Its
//!   summary (the same per-container breakdown as sidecar mode) is written to the spool and
//!   pushed with a wildcard-scoped push token; then everything kept about it is dropped.
//! - **The spool** (`--spool-dir`) holds summaries until the receiver acknowledges them: a
//!   receiver outage delays pushes, it does not lose them. It is bounded by
//!   `--spool-max-bytes`; past that the oldest summaries are dropped, with an error log.
//! - **Restarts**: active jobs are checkpointed (their summary so far) every
//!   `--checkpoint-interval` and on SIGTERM. After a restart a checkpoint is merged into the
//!   job when it is still running, or pushed as the job's summary when it ended meanwhile.
//!   What is lost: the time the collector was down (a job that ran entirely in that gap is
//!   not seen at all), and after a crash whatever happened since the last checkpoint. A
//!   summary is deleted from the spool right after the receiver's 2xx; a crash between the
//!   two would push it again on restart.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use summary::{Accumulator, CollectorInfo, Execution, MetricsPush, SCALE_BYTES, SCALE_PERCENT};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cgroupfs::Mounts,
    cli::{Common, GroupBy, NodeArgs},
    containers::Grouper,
    push::{self, PushError, PushTarget},
    sampler::{JobSystem, Sampler, SamplerConfig, Scope},
    source::CpuSource,
};

/// A job being measured.
struct Job {
    id: Execution,
    /// Groups (pods or containers) it claimed, and their containers.
    groups: BTreeSet<String>,
    containers: BTreeSet<String>,
    start: SystemTime,
    system_cpu: Accumulator,
    system_mem: Accumulator,
    samples: u64,
    /// Last slow tick at which one of its containers had a process.
    last_alive_tick: u64,
    /// Its summary from before a restart, merged in at the end.
    resumed: Option<summary::RunSummary>,
}

/// A stable, file-safe key of a job identity.
pub fn job_key(id: &Execution) -> String {
    // FNV-1a over the length-prefixed fields: stable across versions and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for field in [
        &id.organization,
        &id.repository,
        &id.workflow,
        &id.job,
        &id.run_id,
    ] {
        for b in (field.len() as u32)
            .to_be_bytes()
            .iter()
            .chain(field.as_bytes())
        {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let readable: String = format!("{}-{}", id.run_id, id.job)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    format!("{readable}-{hash:016x}")
}

/// The job identity in a process environment (`NUL`-separated `KEY=value`), if complete.
pub fn identity_from_environ(environ: &[u8]) -> Option<Execution> {
    let vars: HashMap<&str, &str> = environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
        .collect();
    let id = Execution::from_env(|k| vars.get(k).map(|v| (*v).to_owned()));
    let complete = [&id.organization, &id.repository, &id.workflow, &id.job]
        .iter()
        .all(|f| !f.is_empty());
    complete.then_some(id)
}

/// The group a container belongs to: its Kubernetes pod with `--group-by pod`, else itself.
pub fn group_of(container: &str, by: GroupBy) -> String {
    match (by, container.strip_prefix("k8s:")) {
        (GroupBy::Pod, Some(rest)) => format!("k8s:{}", rest.split('/').next().unwrap_or(rest)),
        _ => container.to_owned(),
    }
}

/// Summaries waiting for the receiver, one file each, bounded in bytes.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
}

impl Spool {
    pub fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<Self> {
        for sub in ["", "active", "rejected"] {
            std::fs::create_dir_all(dir.join(sub)).with_context(|| {
                format!("creating the spool directory {}", dir.join(sub).display())
            })?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
        })
    }

    /// Adds a finished job's summary, then drops the oldest entries past the size bound.
    pub fn add(&self, push: &MetricsPush) -> anyhow::Result<PathBuf> {
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let path = self
            .dir
            .join(format!("{millis:015}-{}.json", job_key(&push.execution)));
        write_atomically(&path, &serde_json::to_vec(push)?)?;
        let mut entries = self.pending();
        let mut total: u64 = entries
            .iter()
            .filter_map(|p| p.metadata().ok())
            .map(|m| m.len())
            .sum();
        while total > self.max_bytes && entries.len() > 1 {
            let oldest = entries.remove(0);
            let size = oldest.metadata().map(|m| m.len()).unwrap_or(0);
            tracing::error!(
                "spool over --spool-max-bytes ({} bytes): dropping the oldest summary {}",
                self.max_bytes,
                oldest.display()
            );
            let _ = std::fs::remove_file(&oldest);
            total = total.saturating_sub(size);
        }
        Ok(path)
    }

    /// Summaries not yet acknowledged, oldest first.
    pub fn pending(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
    }

    fn checkpoint_path(&self, key: &str) -> PathBuf {
        self.dir.join("active").join(format!("{key}.json"))
    }

    fn checkpoints(&self) -> Vec<(String, MetricsPush)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.join("active"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            let Some(key) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(push) => out.push((key, push)),
                None => tracing::warn!("ignoring the unreadable checkpoint {}", path.display()),
            }
        }
        out
    }

    fn reject(&self, path: &Path) {
        if let Some(name) = path.file_name() {
            let _ = std::fs::rename(path, self.dir.join("rejected").join(name));
        }
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// Pushes what the spool holds, oldest first, until it is empty or the receiver fails.
/// Returns how many were acknowledged.
async fn drain_spool(spool: &Spool, target: &PushTarget) -> Result<usize, String> {
    let mut pushed = 0;
    for path in spool.pending() {
        let push: MetricsPush = match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(p) => p,
            None => {
                tracing::error!("unreadable summary {} moved to rejected/", path.display());
                spool.reject(&path);
                continue;
            }
        };
        match push::push(target, &push).await {
            Ok(_) => {
                let _ = std::fs::remove_file(&path);
                pushed += 1;
                tracing::info!(job = %push.execution.job, run_id = %push.execution.run_id, repository = %push.execution.repository, "job summary pushed");
            }
            Err(PushError::Refused { status, body }) => {
                tracing::error!(
                    "the receiver refused {} ({status}: {body}); kept in rejected/",
                    path.display()
                );
                spool.reject(&path);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(pushed)
}

/// `collector node`.
pub async fn run(common: Common, args: NodeArgs) -> anyhow::Result<ExitCode> {
    let endpoint = common
        .push_endpoint
        .as_deref()
        .context("node mode needs --push-endpoint (and a wildcard-scoped --push-token)")?;
    // Each push attempt gets a short deadline; the spool retries across rounds.
    let target = PushTarget::new(endpoint, common.push_token.clone(), Duration::from_secs(10))?;
    let spool = Arc::new(Spool::open(&args.spool_dir, args.spool_max_bytes)?);
    let mounts = Mounts::discover().unwrap_or_default();
    let cpu = CpuSource::pick(common.cpu_choice(), &mounts)?;
    let live = crate::app::start_live_metrics(&common).await?;
    let mut sampler = Sampler::new(
        SamplerConfig {
            proc_root: common.proc_path.clone(),
            top: common.top,
            scope: Scope::All,
            grouper: Grouper::default(),
            limits: HashMap::new(),
            single_container: None,
            mode: "node",
            identity: Execution::default(),
            live,
            exclude_own_netns: false,
        },
        cpu,
    )?;

    // Pusher: drains the spool whenever told to, and retries with backoff.
    let (wake, mut woken) = tokio::sync::mpsc::channel::<()>(16);
    let pusher = {
        let spool = spool.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                match drain_spool(&spool, &target).await {
                    Ok(_) => backoff = Duration::from_secs(1),
                    Err(e) => {
                        tracing::warn!(
                            "receiver unavailable ({e}); {} summaries spooled, retrying in {backoff:?}",
                            spool.pending().len()
                        );
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                }
                tokio::select! {
                    _ = woken.recv() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        })
    };
    let _ = wake.try_send(());

    let mut state = NodeState {
        jobs: BTreeMap::new(),
        group_job: HashMap::new(),
        checkpoints: spool.checkpoints().into_iter().collect(),
        unowned_dead_since: HashMap::new(),
        identities: HashMap::new(),
        tick: 0,
        grace_ticks: (args.job_grace.as_secs_f64() / common.interval.as_secs_f64())
            .ceil()
            .max(1.0) as u64,
        checkpoint_ticks: (args.checkpoint_interval.as_secs_f64() / common.interval.as_secs_f64())
            .ceil()
            .max(1.0) as u64,
        group_by: args.group_by,
        proc_root: common.proc_path.clone(),
    };
    if !state.checkpoints.is_empty() {
        tracing::info!(
            "resuming: {} job checkpoints from before the restart",
            state.checkpoints.len()
        );
    }
    tracing::info!(group_by = ?args.group_by, spool = %args.spool_dir.display(), "node mode: measuring every CI job on this node");

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let (mut slow, mut fast) = crate::app::tickers(&common);
    let cheap = sampler.cpu_is_cheap();
    loop {
        tokio::select! {
            _ = slow.tick() => {
                sampler.slow_tick();
                sampler.cpu_tick();
                let finished = state.tick(&mut sampler, &spool, common.top);
                if finished > 0 {
                    let _ = wake.try_send(());
                }
            }
            _ = fast.tick(), if cheap => sampler.cpu_tick(),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    tokio::spawn(async move {
        tokio::select! { _ = sigint.recv() => {}, _ = sigterm.recv() => {} }
        eprintln!("second signal: exiting at once");
        std::process::exit(130);
    });
    tracing::info!("stopping: checkpointing {} active jobs", state.jobs.len());
    sampler.slow_tick();
    sampler.cpu_tick();
    state.checkpoint_all(&sampler, &spool);
    pusher.abort();
    // One last chance for what is spooled; what is left waits for the next start.
    let last = PushTarget::new(endpoint, common.push_token.clone(), common.push_timeout)?;
    match tokio::time::timeout(common.push_timeout, drain_spool(&spool, &last)).await {
        Ok(Ok(n)) if n > 0 => tracing::info!("pushed {n} spooled summaries"),
        Ok(Err(e)) => tracing::warn!(
            "{} summaries stay spooled for the next start: {e}",
            spool.pending().len()
        ),
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

struct NodeState {
    jobs: BTreeMap<String, Job>,
    group_job: HashMap<String, String>,
    /// Checkpoints from before a restart not yet claimed by a running job.
    checkpoints: HashMap<String, MetricsPush>,
    /// Containers of no job that ended, and since when (forgotten after the grace).
    unowned_dead_since: HashMap<String, u64>,
    /// Job identities of live processes, read when they were first seen.
    identities: HashMap<i32, Execution>,
    tick: u64,
    grace_ticks: u64,
    checkpoint_ticks: u64,
    group_by: GroupBy,
    proc_root: PathBuf,
}

impl NodeState {
    /// One slow tick of job bookkeeping; returns how many jobs finished.
    fn tick(&mut self, sampler: &mut Sampler, spool: &Spool, top: usize) -> usize {
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
                Job {
                    id: id.clone(),
                    groups: BTreeSet::new(),
                    containers: BTreeSet::new(),
                    start: resumed
                        .as_ref()
                        .and_then(|r| summary::time::parse_rfc3339(&r.start_time))
                        .unwrap_or_else(SystemTime::now),
                    system_cpu: Accumulator::new(SCALE_PERCENT),
                    system_mem: Accumulator::new(SCALE_BYTES),
                    samples: 0,
                    last_alive_tick: self.tick,
                    resumed,
                }
            });
            job.groups.insert(group.clone());
            self.group_job.insert(group, key);
        }
        // 2. Every container of a claimed group belongs to its job.
        let containers: Vec<String> = sampler.containers().map(str::to_owned).collect();
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
                None if !sampler.is_alive(name) => {
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
        let stale: BTreeSet<String> = self
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
            tracing::debug!(job = %key, containers = ?job.containers, alive = job.containers.iter().any(|c| sampler.is_alive(c)), last_alive = job.last_alive_tick, tick = self.tick, "job state");
            if job.containers.iter().any(|c| sampler.is_alive(c)) {
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
                let names: BTreeSet<String> = push
                    .summary
                    .containers
                    .iter()
                    .map(|c| c.name.clone())
                    .collect();
                let start = summary::time::parse_rfc3339(&push.summary.start_time)
                    .unwrap_or_else(SystemTime::now);
                tracing::info!(job = %push.execution.job, run_id = %push.execution.run_id, "job still running after the restart: resuming it");
                let mut job = Job {
                    id: push.execution.clone(),
                    groups: BTreeSet::new(),
                    containers: BTreeSet::new(),
                    start,
                    system_cpu: Accumulator::new(SCALE_PERCENT),
                    system_mem: Accumulator::new(SCALE_BYTES),
                    samples: 0,
                    last_alive_tick: self.tick,
                    resumed: Some(push.summary),
                };
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

    fn checkpoint_all(&self, sampler: &Sampler, spool: &Spool) {
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
    };
    let info = CollectorInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        mode: "node".to_owned(),
        ebpf: matches!(sampler.cpu_source(), CpuSource::Ebpf(_)),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_from_environment() {
        let env = b"PATH=/bin\0GITHUB_REPOSITORY=org/repo\0GITHUB_WORKFLOW=ci.yml\0GITHUB_JOB=build\0GITHUB_RUN_ID=7\0";
        let id = identity_from_environ(env).unwrap();
        assert_eq!(
            (
                id.organization.as_str(),
                id.repository.as_str(),
                id.job.as_str(),
                id.run_id.as_str()
            ),
            ("org", "org/repo", "build", "7")
        );
        let forgejo = b"FORGEJO_REPOSITORY=o/r\0FORGEJO_WORKFLOW=w\0FORGEJO_JOB=j\0";
        assert_eq!(identity_from_environ(forgejo).unwrap().workflow, "w");
        assert!(identity_from_environ(b"GITHUB_REPOSITORY=o/r\0").is_none());
        assert!(identity_from_environ(b"\xff\xfe\0garbage").is_none());
    }

    #[test]
    fn groups_by_pod_or_container() {
        assert_eq!(
            group_of("k8s:pod-1234abcd/0123456789ab", GroupBy::Pod),
            "k8s:pod-1234abcd"
        );
        assert_eq!(
            group_of("k8s:pod-1234abcd/0123456789ab", GroupBy::Container),
            "k8s:pod-1234abcd/0123456789ab"
        );
        assert_eq!(
            group_of("docker:0123456789ab", GroupBy::Pod),
            "docker:0123456789ab"
        );
    }

    #[test]
    fn job_keys_are_stable_distinct_and_file_safe() {
        let id = |repo: &str, job: &str| Execution {
            organization: "o".into(),
            repository: repo.into(),
            workflow: "w".into(),
            job: job.into(),
            run_id: "1".into(),
        };
        let a = job_key(&id("o/a", "b/c"));
        assert_eq!(a, job_key(&id("o/a", "b/c")));
        assert_ne!(a, job_key(&id("o/a/b", "c")));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{a}"
        );
    }

    #[test]
    fn spool_is_bounded_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let push = |run: &str| MetricsPush {
            execution: Execution {
                run_id: run.into(),
                ..Default::default()
            },
            summary: Default::default(),
        };
        let one = serde_json::to_vec(&push("1")).unwrap().len() as u64;
        let spool = Spool::open(dir.path(), one * 2 + one / 2).unwrap();
        for run in ["1", "2", "3"] {
            spool.add(&push(run)).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let left: Vec<String> = spool
            .pending()
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(left.len(), 2);
        assert!(left[0].contains(r#""run_id":"2""#) && left[1].contains(r#""run_id":"3""#));
    }
}
