//! Who a job is: its identity from a process environment, a file-safe key of it, and the
//! group (pod or container) a process of the job claims.

use std::collections::HashMap;

use summary::Execution;

use crate::{sampler::grouping::ContainerName, settings::cli::GroupBy};

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
pub fn group_of(container: &ContainerName, by: GroupBy) -> String {
    match (by, container.pod_name()) {
        (GroupBy::Pod, Some(pod)) => pod,
        _ => container.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::grouping::auto_container_name;

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
        let pod = "/kubepods.slice/kubepods-pod1234abcd_0000_0000_0000_000000000000.slice/cri-containerd-0123456789abcdef.scope";
        let container = auto_container_name(pod);
        assert_eq!(container.as_str(), "k8s:pod-1234abcd/0123456789ab");
        assert_eq!(group_of(&container, GroupBy::Pod), "k8s:pod-1234abcd");
        assert_eq!(
            group_of(&container, GroupBy::Container),
            "k8s:pod-1234abcd/0123456789ab"
        );
        let docker = auto_container_name("/docker/0123456789abcdef0123");
        assert_eq!(group_of(&docker, GroupBy::Pod), "docker:0123456789ab");
    }

    #[test]
    fn job_keys_are_stable_distinct_and_file_safe() {
        let id = |repo: &str, job: &str| Execution {
            organization: "o".into(),
            repository: repo.into(),
            workflow: "w".into(),
            job: job.into(),
            run_id: "1".into(),
            run_attempt: String::new(),
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
}
