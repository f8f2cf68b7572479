//! The command line and environment, read once into one [`Settings`] value that every mode
//! reads (no mode re-reads a flag or re-discovers the machine).
//!
//! - [`cli`]: flags (the seed's names kept) and `--help`.
//! - [`limits`]: `CGROUP_LIMITS` in Kubernetes quantity notation.
//! - `CGROUP_PROCESS_MAP` is parsed by [`crate::sampler::grouping::ProcessMap`], next to the
//!   grouping it drives.

pub mod cli;
pub mod limits;

use std::collections::HashMap;

use summary::{Execution, Limits};

use self::cli::Common;
use crate::{
    output::push::PushTarget,
    sampler::grouping::{self, ProcessMap},
    sources::{cgroupfs::Mounts, cpu_source::CpuSource},
};

/// Everything a mode needs to know before it measures.
pub struct Settings {
    /// The flags shared by every mode.
    pub common: Common,
    /// The cgroup hierarchies, from this process's mountinfo.
    pub mounts: Mounts,
    /// The job identity from `GITHUB_*`/`FORGEJO_*` (sidecar and run modes).
    pub identity: Execution,
    /// `CGROUP_PROCESS_MAP`.
    pub process_map: ProcessMap,
    /// `CGROUP_LIMITS`: container name -> limits.
    pub limits: HashMap<String, Limits>,
    /// Where to push, when `--push-endpoint` is set.
    pub push: Option<PushTarget>,
}

impl Settings {
    /// Reads the environment and validates what the flags left open; errors name the flag
    /// or variable.
    pub fn new(common: Common) -> anyhow::Result<Self> {
        let process_map = match std::env::var(grouping::ENV_VAR) {
            Ok(json) => ProcessMap::from_json(&json)?,
            Err(_) => ProcessMap::default(),
        };
        let limits = match std::env::var(limits::ENV_VAR) {
            Ok(json) => limits::parse_limits(&json)?,
            Err(_) => HashMap::new(),
        };
        let push = common
            .push_endpoint
            .as_deref()
            .map(|e| PushTarget::new(e, common.push_token.clone(), common.push_timeout))
            .transpose()?;
        let mounts = Mounts::discover().unwrap_or_else(|e| {
            tracing::warn!("{e:#}: cgroup counters are unavailable");
            Mounts::default()
        });
        Ok(Self {
            identity: Execution::from_env(|k| std::env::var(k).ok()),
            common,
            mounts,
            process_map,
            limits,
            push,
        })
    }

    /// The CPU source this machine and `--cpu-source` allow.
    pub fn cpu_source(&self) -> anyhow::Result<CpuSource> {
        CpuSource::pick(self.common.cpu_choice(), &self.mounts)
    }
}
