//! Who held the CPU while a container's tasks waited for one, and what that means: whether
//! its wait was self-inflicted (its own quota, its own processes outnumbering its cores:
//! more cores help) or contention (others held the CPU: isolation or a less loaded node
//! helps). Pure maths over [`RunQueueWait::behind`](crate::starvation::RunQueueWait).

use serde::{Deserialize, Serialize};

/// Most entries a `behind` list names; the rest are summed as one [`HolderKind::Other`].
pub const MAX_BEHIND: usize = 5;

/// What held the CPU, as far as the container is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HolderKind {
    /// Its own processes (more of them runnable than it had CPUs).
    Itself,
    /// Another container of the same job.
    OwnJob,
    /// A container of another job.
    OtherJob,
    /// Processes of no job the collector knows (the host, the runner, system services).
    #[default]
    Host,
    /// Its own CPU quota: the wait while its cgroup was throttled (`cpu.stat`).
    Quota,
    /// The hypervisor: time stolen from the VM's CPUs (`/proc/stat` steal).
    Steal,
    /// Nobody on that CPU: a wake-up's latency on an idle CPU, interrupts, or slices too
    /// far back to tell (see `docs/starvation.md`).
    Nobody,
    /// The entries beyond the first [`MAX_BEHIND`], summed.
    Other,
}

impl HolderKind {
    /// Whether more cores for the job would have shortened this wait.
    pub fn self_inflicted(self) -> bool {
        matches!(
            self,
            HolderKind::Itself | HolderKind::OwnJob | HolderKind::Quota
        )
    }

    /// For a person: `itself`, `its own job`, `another job`, ...
    pub fn label(self) -> &'static str {
        match self {
            HolderKind::Itself => "itself",
            HolderKind::OwnJob => "its own job",
            HolderKind::OtherJob => "another job",
            HolderKind::Host => "no job (host)",
            HolderKind::Quota => "its quota",
            HolderKind::Steal => "the hypervisor",
            HolderKind::Nobody => "nobody",
            HolderKind::Other => "the rest",
        }
    }

    /// Whether someone else took the CPU.
    pub fn contention(self) -> bool {
        matches!(
            self,
            HolderKind::OtherJob | HolderKind::Host | HolderKind::Steal
        )
    }
}

/// One holder of the CPU while the container waited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Behind {
    /// The container (or, for the kinds that are not one, a description).
    pub container: String,
    /// The job it belongs to, where known (`org/repo workflow job #run`).
    pub job: Option<String>,
    /// Wait behind it, seconds.
    pub seconds: f64,
    #[serde(default)]
    pub kind: HolderKind,
}

impl Behind {
    pub fn new(kind: HolderKind, container: &str, job: Option<String>, seconds: f64) -> Self {
        Self {
            container: container.to_owned(),
            job,
            seconds,
            kind,
        }
    }
}

/// Names of the entries that are not a container.
pub const NOBODY: &str = "nobody (idle CPU, interrupts)";
pub const QUOTA: &str = "its CPU quota (throttled)";
pub const STEAL: &str = "the hypervisor (steal time)";
pub const OTHER: &str = "other";

/// The list as shown: equal holders merged, scaled to add up to `wait_seconds` (the
/// attribution is read at the sampling interval, the wait at the CPU tick), largest first,
/// at most [`MAX_BEHIND`] with the rest summed as `other`, nothing under a microsecond.
pub fn rank(entries: Vec<Behind>, wait_seconds: f64) -> Vec<Behind> {
    let mut merged = scale(entries, wait_seconds);
    merged.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    if merged.len() > MAX_BEHIND {
        let rest: f64 = merged.drain(MAX_BEHIND - 1..).map(|e| e.seconds).sum();
        merged.push(Behind::new(HolderKind::Other, OTHER, None, rest));
    }
    merged.retain(|e| e.seconds >= 1e-6);
    merged
}

/// Equal holders merged and the list scaled to add up to `wait_seconds` (unless empty).
pub fn scale(entries: Vec<Behind>, wait_seconds: f64) -> Vec<Behind> {
    let mut merged: Vec<Behind> = Vec::new();
    for e in entries.into_iter().filter(|e| e.seconds > 0.0) {
        match merged
            .iter_mut()
            .find(|m| m.kind == e.kind && m.container == e.container && m.job == e.job)
        {
            Some(m) => m.seconds += e.seconds,
            None => merged.push(e),
        }
    }
    let total: f64 = merged.iter().map(|e| e.seconds).sum();
    if total > 0.0 && wait_seconds.is_finite() && wait_seconds >= 0.0 {
        let scale = wait_seconds / total;
        merged.iter_mut().for_each(|e| e.seconds *= scale);
    }
    merged
}

/// Counts the wait spent throttled once, as its quota's: `throttled` seconds of the wait
/// (at most all of it) become a [`HolderKind::Quota`] entry, taken first from
/// [`HolderKind::Nobody`] (a throttled cgroup's CPU is often left idle) and then from the
/// others in proportion. The list keeps its sum.
pub fn with_quota(mut entries: Vec<Behind>, throttled: f64) -> Vec<Behind> {
    let total: f64 = entries.iter().map(|e| e.seconds).sum();
    let quota = throttled.clamp(0.0, total);
    if quota.is_nan() || quota <= 0.0 {
        return entries;
    }
    let mut left = quota;
    for e in entries.iter_mut().filter(|e| e.kind == HolderKind::Nobody) {
        let part = e.seconds.min(left);
        e.seconds -= part;
        left -= part;
    }
    let rest: f64 = entries.iter().map(|e| e.seconds).sum();
    if left > 0.0 && rest > 0.0 {
        let keep = (1.0 - left / rest).max(0.0);
        entries.iter_mut().for_each(|e| e.seconds *= keep);
    }
    entries.push(Behind::new(HolderKind::Quota, QUOTA, None, quota));
    entries.retain(|e| e.seconds > 0.0);
    entries
}

/// Moves the share of `Nobody` that the hypervisor's steal explains (`steal_share` of the
/// node's CPU time over the run, times the wait) into a [`HolderKind::Steal`] entry: a
/// stolen stretch is in no task's runtime, so the walk over the slices leaves it to nobody.
pub fn with_steal(mut entries: Vec<Behind>, wait_seconds: f64, steal_share: f64) -> Vec<Behind> {
    let want = (wait_seconds * steal_share.clamp(0.0, 1.0)).max(0.0);
    let mut moved = 0.0;
    for e in entries.iter_mut().filter(|e| e.kind == HolderKind::Nobody) {
        let part = e.seconds.min(want - moved);
        e.seconds -= part;
        moved += part;
    }
    if moved > 0.0 {
        entries.push(Behind::new(HolderKind::Steal, STEAL, None, moved));
    }
    entries.retain(|e| e.seconds > 0.0);
    entries
}

/// The wait split three ways: (self-inflicted, contention, neither: nobody on the CPU or the
/// summed rest), seconds.
pub fn split(behind: &[Behind]) -> (f64, f64, f64) {
    let mut out = (0.0, 0.0, 0.0);
    for e in behind {
        if e.kind.self_inflicted() {
            out.0 += e.seconds;
        } else if e.kind.contention() {
            out.1 += e.seconds;
        } else {
            out.2 += e.seconds;
        }
    }
    out
}

/// Why a container's CPU was short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Its own quota or its own processes: more cores help.
    SelfInflicted,
    /// Others held the CPU: isolation, or a less loaded node, helps.
    Contention,
}

/// The cause of a CPU shortage: contention when others held the CPU for more of the wait
/// than the job itself and its quota did; `None` without attribution (no eBPF, no quota).
pub fn cause(behind: &[Behind]) -> Option<Cause> {
    let (own, others, _) = split(behind);
    if own == 0.0 && others == 0.0 {
        None
    } else if others > own {
        Some(Cause::Contention)
    } else {
        Some(Cause::SelfInflicted)
    }
}

/// `web-1 (org/repo ci build #7) 12.3 s, itself 2.0 s`: the first `n` holders for a person.
pub fn describe(behind: &[Behind], own: &str, n: usize) -> String {
    behind
        .iter()
        .take(n)
        .map(|e| {
            let who = match (e.kind, &e.job) {
                (HolderKind::Itself, _) => "itself".to_owned(),
                (_, Some(job)) if e.container != *own => format!("{} ({job})", e.container),
                _ => e.container.clone(),
            };
            format!("{who} {}", crate::units::seconds(e.seconds))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(kind: HolderKind, name: &str, s: f64) -> Behind {
        Behind::new(kind, name, None, s)
    }

    #[test]
    fn rank_merges_scales_sorts_and_caps() {
        let entries = vec![
            b(HolderKind::OtherJob, "a", 1.0),
            b(HolderKind::OtherJob, "b", 3.0),
            b(HolderKind::OtherJob, "a", 1.0),
            b(HolderKind::Itself, "me", 0.5),
            b(HolderKind::Host, "host", 0.25),
            b(HolderKind::Nobody, NOBODY, 0.125),
            b(HolderKind::OtherJob, "c", 0.0625),
            b(HolderKind::OtherJob, "z", 0.0),
        ];
        // Sum 5.9375; the wait read later is 2 × that.
        let r = rank(entries, 11.875);
        let names: Vec<&str> = r.iter().map(|e| e.container.as_str()).collect();
        assert_eq!(names, ["b", "a", "me", "host", OTHER]);
        assert_eq!(r[0].seconds, 6.0);
        assert_eq!(r[1].seconds, 4.0);
        assert_eq!(r[4].seconds, 2.0 * (0.125 + 0.0625));
        let sum: f64 = r.iter().map(|e| e.seconds).sum();
        assert!((sum - 11.875).abs() < 1e-9, "adds up to the wait: {sum}");
        assert!(rank(Vec::new(), 1.0).is_empty());
    }

    #[test]
    fn throttled_wait_is_counted_once_as_the_quota() {
        let entries = vec![
            b(HolderKind::Nobody, NOBODY, 1.5),
            b(HolderKind::Host, "host", 0.5),
        ];
        let q = with_quota(entries.clone(), 1.0);
        assert_eq!(q.len(), 3);
        assert_eq!(q[0].seconds, 0.5, "from nobody first");
        assert_eq!(q[1].seconds, 0.5, "the host untouched");
        assert_eq!((q[2].kind, q[2].seconds), (HolderKind::Quota, 1.0));
        // More throttled than nobody holds: the rest in proportion; never more than the wait.
        let q = with_quota(entries.clone(), 1.75);
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].seconds, 0.25);
        assert_eq!(q[1].seconds, 1.75);
        let q = with_quota(entries.clone(), 9.0);
        assert_eq!(q, vec![b(HolderKind::Quota, QUOTA, 2.0)]);
        assert_eq!(with_quota(entries.clone(), 0.0), entries, "not throttled");
    }

    #[test]
    fn steal_comes_out_of_nobody_only() {
        let entries = vec![
            b(HolderKind::Nobody, NOBODY, 0.2),
            b(HolderKind::OtherJob, "x", 1.8),
        ];
        let s = with_steal(entries.clone(), 2.0, 0.05);
        assert_eq!(s[0].seconds, 0.1);
        assert_eq!(s[1].seconds, 1.8);
        assert_eq!((s[2].kind, s[2].seconds), (HolderKind::Steal, 0.1));
        let s = with_steal(entries.clone(), 2.0, 0.5);
        assert_eq!(s.len(), 2, "at most what nobody holds");
        assert_eq!(s[1].seconds, 0.2);
        assert_eq!(with_steal(entries.clone(), 2.0, 0.0), entries, "no steal");
    }

    #[test]
    fn cause_is_whoever_held_more_of_the_wait() {
        let own = [
            b(HolderKind::Itself, "me", 3.0),
            b(HolderKind::Host, "host", 1.0),
            b(HolderKind::Nobody, NOBODY, 9.0),
        ];
        assert_eq!(cause(&own), Some(Cause::SelfInflicted));
        assert_eq!(split(&own), (3.0, 1.0, 9.0));
        let others = [
            b(HolderKind::OtherJob, "b", 3.0),
            b(HolderKind::OwnJob, "sidecar", 1.0),
        ];
        assert_eq!(cause(&others), Some(Cause::Contention));
        assert_eq!(cause(&[b(HolderKind::Nobody, NOBODY, 1.0)]), None);
        assert_eq!(cause(&[]), None);
        let quota = [
            b(HolderKind::Quota, QUOTA, 2.0),
            b(HolderKind::Host, "h", 1.0),
        ];
        assert_eq!(cause(&quota), Some(Cause::SelfInflicted));
    }

    #[test]
    fn described_for_a_person() {
        let list = [
            Behind::new(HolderKind::OtherJob, "b", Some("o/r ci b #2".into()), 3.0),
            b(HolderKind::Itself, "me", 0.02),
        ];
        assert_eq!(
            describe(&list, "me", 5),
            "b (o/r ci b #2) 3.0 s, itself 20 ms"
        );
        assert_eq!(describe(&list, "me", 1), "b (o/r ci b #2) 3.0 s");
    }
}
