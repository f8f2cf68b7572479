//! The demo's fleet: a few runs of three more jobs, each measured for real by
//! `collector run` and pushed, so the web page has charts and recommendations to show:
//!
//! - `compile` is starved: six busy loops on a machine's cores wait for a CPU most of
//!   the time (run-queue wait, from eBPF);
//! - `lint` is wasteful: a short, light command under 4 cores and 4 GiB of declared limits;
//! - `unit-tests` holds a couple of hundred MiB against a 512 MiB limit.
//!
//! Limits are declared with `CGROUP_LIMITS` (the collector's way to know them where the
//! cgroup does not enforce any, as on a hybrid-cgroup machine).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::util::step;

struct Job {
    name: &'static str,
    limits: &'static str,
    script: &'static str,
}

const JOBS: [Job; 3] = [
    Job {
        name: "compile",
        limits: r#"{"compile":{"cpu":"2","memory":"512Mi"}}"#,
        script: "for i in 1 2 3 4 5 6; do (end=$(( $(date +%s) + 4 )); while [ $(date +%s) -lt $end ]; do :; done) & done; wait",
    },
    Job {
        name: "lint",
        limits: r#"{"lint":{"cpu":"4","memory":"4Gi"}}"#,
        script: "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; sleep 2",
    },
    Job {
        name: "unit-tests",
        limits: r#"{"unit-tests":{"cpu":"1","memory":"512Mi"}}"#,
        script: "(head -c 220M /dev/zero; sleep 3) | tail -c 220M > /dev/null",
    },
];

/// Runs each job `runs` times under `collector run`, pushing to `addr` with `token` (scoped
/// to every job of the demo repository).
pub fn run_all(bin: &Path, dir: &Path, addr: SocketAddr, token: &str, runs: u32) -> Result<()> {
    let pid = std::process::id();
    for round in 1..=runs {
        for job in &JOBS {
            step(format!("{}: run {round} of {runs}", job.name));
            let log = dir.join(format!("{}-{round}.log", job.name));
            let status = crate::util::die_with_parent(&mut Command::new(bin.join("collector")))
                .args(["run", "--interval=1s", "--name", job.name])
                .arg(format!("--push-endpoint=http://{addr}/api/v1/metrics"))
                .arg(format!("--push-token={token}"))
                .arg(format!(
                    "--summary-file={}",
                    dir.join(format!("{}-{round}.json", job.name)).display()
                ))
                .args(["--", "sh", "-c", job.script])
                .envs([
                    ("GITHUB_REPOSITORY_OWNER", "demo-org"),
                    ("GITHUB_REPOSITORY", "demo-org/demo-repo"),
                    ("GITHUB_WORKFLOW", "demo.yml"),
                    ("GITHUB_JOB", job.name),
                    ("GITHUB_RUN_ID", &format!("demo-{pid}-{round}")),
                    ("CGROUP_LIMITS", job.limits),
                ])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .status()
                .with_context(|| format!("running collector run for {}", job.name))?;
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if !status.success() || !text.contains("summary pushed") {
                bail!(
                    "collector run for {} did not push its summary ({status}); its log:\n{text}",
                    job.name
                );
            }
        }
    }
    Ok(())
}
