//! Grouping processes into containers.
//!
//! In a shared-PID-namespace pod every container's processes are visible, and what tells
//! them apart is their cgroup path. Two sources name a cgroup:
//!
//! 1. `CGROUP_PROCESS_MAP` ([`ProcessMap`]), the seed's contract: a process whose name is a
//!    key marks its cgroup path as belonging to the container the key maps to, and every
//!    process in that same cgroup belongs to that container.
//! 2. Otherwise [`auto_container_name`] derives a name from the path's well-known shape
//!    (Kubernetes, containerd, CRI-O, Docker, Podman, systemd).
//!
//! # Automatic names
//!
//! Stable across samples and runs (derived from the path only), short enough for a table:
//!
//! | cgroup path shape | name |
//! |---|---|
//! | `/` (or empty) | `host` |
//! | `.../kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`, `/kubepods/burstable/pod<uid>/<id>` | `k8s:pod-<uid8>/<id12>` |
//! | the pod's own cgroup (`...-pod<uid>.slice`, `/kubepods/pod<uid>`) | `k8s:pod-<uid8>` |
//! | `crio-conmon-<id>.scope` in a pod (CRI-O's monitor) | `k8s:pod-<uid8>/conmon-<id12>` |
//! | `/docker/<id>`, `.../docker-<id>.scope` | `docker:<id12>` |
//! | `.../cri-containerd-<id>.scope` outside a pod | `containerd:<id12>` |
//! | `.../crio-<id>.scope` outside a pod | `crio:<id12>` |
//! | `.../libpod-<id>.scope`, `/libpod_parent/libpod-<id>` | `podman:<id12>` |
//! | `/system.slice/foo.service`, `/user.slice/user-1000.slice/session-3.scope` | `foo.service`, `session-3.scope` (the deepest unit) |
//! | anything else | the path itself (starts with `/`) |
//!
//! `<uid8>` is the first 8 characters of the pod uid (dashes restored from the systemd
//! driver's underscores), `<id12>` the first 12 of the container id, as `docker ps` and
//! `crictl ps` show them. Deeper cgroups inside a container (systemd or a nested runtime in
//! it) get the container's name. The full pod uid is available from
//! [`ContainerName::pod_uid`] so containers can be grouped per pod.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// The environment variable [`ProcessMap`] is parsed from, named in its errors.
pub const ENV_VAR: &str = "CGROUP_PROCESS_MAP";

/// Longest command name the kernel keeps (`TASK_COMM_LEN - 1`).
const COMM_LEN: usize = 15;

/// `CGROUP_PROCESS_MAP` was not a JSON object of strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ENV_VAR}: invalid JSON: {0}")]
pub struct ProcessMapError(String);

/// `CGROUP_PROCESS_MAP`: process name -> container name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessMap {
    /// Sorted, so that lookups by a truncated name are deterministic.
    by_process: BTreeMap<String, String>,
}

impl ProcessMap {
    /// Parses the JSON object (`{"node": "runner"}`). An empty variable is an empty map.
    pub fn from_json(json: &str) -> Result<Self, ProcessMapError> {
        if json.trim().is_empty() {
            return Ok(Self::default());
        }
        let by_process = serde_json::from_str(json).map_err(|e| ProcessMapError(e.to_string()))?;
        Ok(Self { by_process })
    }

    /// The container a process name marks. Besides exact matches, a key longer than the
    /// kernel's 15-byte command name matches its own first 15 bytes, because that is all
    /// `/proc` ever shows of it (`{"containerd-shim-runc-v2": ...}` matches
    /// `containerd-shim`).
    pub fn container_for(&self, comm: &str) -> Option<&str> {
        if let Some(container) = self.by_process.get(comm) {
            return Some(container);
        }
        if comm.len() != COMM_LEN {
            return None;
        }
        self.by_process
            .iter()
            .find(|(key, _)| key.len() > COMM_LEN && key.as_bytes()[..COMM_LEN] == *comm.as_bytes())
            .map(|(_, container)| container.as_str())
    }

    /// Whether no process names are mapped.
    pub fn is_empty(&self) -> bool {
        self.by_process.is_empty()
    }
}

/// A container's name, and the Kubernetes pod it belongs to if any.
///
/// The name is the identity (equality, order and hashing look at it alone, so a map keyed by
/// names can be searched with a `&str`); the pod uid is what the name was derived from.
#[derive(Debug, Clone)]
pub struct ContainerName {
    /// What the summary shows.
    name: String,
    /// Full pod uid, for grouping the containers of one pod.
    pod_uid: Option<String>,
}

impl ContainerName {
    /// The name of the root cgroup: processes not in any container.
    pub const HOST: &'static str = "host";

    /// A name given by `CGROUP_PROCESS_MAP` (or by `collector run --name`).
    pub fn mapped(name: impl Into<String>, pod_uid: Option<String>) -> Self {
        Self {
            name: name.into(),
            pod_uid,
        }
    }

    /// The placeholder of a process not yet assigned to a container.
    pub fn unassigned() -> Self {
        Self::mapped(String::new(), None)
    }

    /// The name, unless this is the [`ContainerName::unassigned`] placeholder.
    pub fn assigned(&self) -> Option<&str> {
        Some(self.name.as_str()).filter(|n| !n.is_empty())
    }

    /// The name, as shown in the summary.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The pod's uid, for containers of Kubernetes pods.
    pub fn pod_uid(&self) -> Option<&str> {
        self.pod_uid.as_deref()
    }

    /// The pod's own name (`k8s:pod-<uid8>`), for containers of Kubernetes pods.
    pub fn pod_name(&self) -> Option<String> {
        self.pod_uid.as_deref().map(pod_name)
    }
}

impl PartialEq for ContainerName {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ContainerName {}

impl PartialOrd for ContainerName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ContainerName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}

impl std::hash::Hash for ContainerName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl std::borrow::Borrow<str> for ContainerName {
    fn borrow(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ContainerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

fn pod_name(uid: &str) -> String {
    format!("k8s:pod-{}", prefix(uid, 8))
}

/// The first `n` characters (ids and uids are ASCII; this never splits a character).
fn prefix(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

/// Names a cgroup path from its well-known shape (see the module docs for the table).
pub fn auto_container_name(cgroup_path: &str) -> ContainerName {
    let components: Vec<&str> = cgroup_path.split('/').filter(|c| !c.is_empty()).collect();
    if components.is_empty() {
        return ContainerName::mapped(ContainerName::HOST, None);
    }
    // Kubernetes: a pod cgroup, then (optionally) the container's.
    if let Some((i, uid)) = components
        .iter()
        .enumerate()
        .find_map(|(i, c)| Some((i, pod_uid_of(c)?)))
    {
        let name = match components.get(i + 1) {
            Some(c) => match runtime_scope(c) {
                Some(("crio-conmon", id)) => format!("{}/conmon-{}", pod_name(&uid), id),
                Some((_, id)) => format!("{}/{}", pod_name(&uid), id),
                None if is_container_id(c) => format!("{}/{}", pod_name(&uid), prefix(c, 12)),
                None => format!("{}/{}", pod_name(&uid), c),
            },
            None => pod_name(&uid),
        };
        return ContainerName::mapped(name, Some(uid));
    }
    // A runtime's scope anywhere (`/system.slice/docker-<id>.scope`, Podman's libpod-<id>).
    if let Some((runtime, id)) = components.iter().find_map(|c| runtime_scope(c)) {
        let runtime = match runtime {
            "cri-containerd" => "containerd",
            "crio-conmon" => "crio-conmon",
            "libpod" => "podman",
            other => other,
        };
        return ContainerName::mapped(format!("{runtime}:{id}"), None);
    }
    // cgroupfs drivers: `/docker/<id>`, `/libpod_parent/libpod-<id>`.
    if let Some(id) = components
        .windows(2)
        .find_map(|w| (w[0] == "docker" && is_container_id(w[1])).then(|| prefix(w[1], 12)))
    {
        return ContainerName::mapped(format!("docker:{id}"), None);
    }
    // The deepest systemd unit: the service or session the process was started in.
    if let Some(unit) = components
        .iter()
        .rev()
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
    {
        return ContainerName::mapped(*unit, None);
    }
    ContainerName::mapped(cgroup_path, None)
}

/// The pod uid of a pod cgroup component: `pod<uid>` (cgroupfs driver) or
/// `kubepods[-<qos>]-pod<uid_with_underscores>.slice` (systemd driver, possibly prefixed as
/// in `kubelet-kubepods-...`).
fn pod_uid_of(component: &str) -> Option<String> {
    let uid = if let Some(slice) = component.strip_suffix(".slice") {
        if !slice.contains("kubepods") {
            return None;
        }
        &slice[slice.rfind("-pod")? + 4..]
    } else {
        component.strip_prefix("pod")?
    };
    let uid_like = uid.len() >= 8
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    uid_like.then(|| uid.replace('_', "-"))
}

/// `(runtime, id12)` of a container runtime's cgroup: `<runtime>-<id>.scope` for systemd
/// drivers, `libpod-<id>` for Podman's cgroupfs driver.
fn runtime_scope(component: &str) -> Option<(&'static str, &str)> {
    const RUNTIMES: [&str; 5] = ["cri-containerd", "crio-conmon", "crio", "docker", "libpod"];
    let name = component.strip_suffix(".scope").unwrap_or(component);
    RUNTIMES.iter().find_map(|runtime| {
        let id = name.strip_prefix(runtime)?.strip_prefix('-')?;
        let scoped = name.len() != component.len() || *runtime == "libpod";
        (scoped && is_container_id(id)).then(|| (*runtime, prefix(id, 12)))
    })
}

/// Container ids are long hex strings (64 for Docker/containerd/CRI-O).
fn is_container_id(s: &str) -> bool {
    s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Assigns processes to containers, remembering which cgroups `CGROUP_PROCESS_MAP` marked.
///
/// Marks are sticky for the grouper's life: when the mapped process (say `node`) exits, the
/// rest of its cgroup keeps the container's name instead of flipping to an automatic one
/// mid-run. Pure: no I/O, the caller passes what it read.
#[derive(Debug, Clone, Default)]
pub struct Grouper {
    /// The user's mapping.
    map: ProcessMap,
    /// cgroup path -> container name, from mapped processes seen so far.
    marks: HashMap<String, ContainerName>,
}

impl Grouper {
    /// A grouper for this mapping (an empty map gives automatic names only).
    pub fn new(map: ProcessMap) -> Self {
        Self {
            map,
            marks: HashMap::new(),
        }
    }

    /// Container of every `(pid, comm, cgroup_path)`.
    ///
    /// If mapped processes in the same cgroup name different containers, the first mark
    /// wins: from an earlier call, else from the lowest pid (deterministic, and usually the
    /// older process).
    pub fn group(&mut self, processes: &[(i32, &str, &str)]) -> HashMap<i32, ContainerName> {
        let mut mapped: Vec<(i32, &str, &str)> = processes
            .iter()
            .filter_map(|&(pid, comm, path)| Some((pid, path, self.map.container_for(comm)?)))
            .collect();
        mapped.sort_unstable_by_key(|&(pid, _, _)| pid);
        for (pid, path, container) in mapped {
            match self.marks.get(path) {
                Some(existing) if existing.as_str() != container => tracing::debug!(
                    pid,
                    cgroup = path,
                    container,
                    kept = existing.as_str(),
                    "{ENV_VAR}: cgroup already belongs to another container"
                ),
                Some(_) => {}
                None => {
                    let pod_uid = auto_container_name(path).pod_uid;
                    let name = ContainerName::mapped(container, pod_uid);
                    self.marks.insert(path.to_owned(), name);
                }
            }
        }
        let mut auto: HashMap<&str, ContainerName> = HashMap::new();
        processes
            .iter()
            .map(|&(pid, _, path)| {
                let name = match self.marks.get(path) {
                    Some(name) => name.clone(),
                    None => auto
                        .entry(path)
                        .or_insert_with(|| auto_container_name(path))
                        .clone(),
                };
                (pid, name)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn name(path: &str) -> String {
        auto_container_name(path).as_str().to_owned()
    }

    #[test]
    fn kubernetes_shapes() {
        let uid = "4f7c2a1e-9b3d-4c5e-8f6a-1b2c3d4e5f60";
        let systemd_uid = uid.replace('-', "_");
        let cases = [
            // containerd, systemd driver
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{systemd_uid}.slice/cri-containerd-{ID}.scope"
            ),
            // guaranteed QoS, systemd driver
            format!("/kubepods.slice/kubepods-pod{systemd_uid}.slice/cri-containerd-{ID}.scope"),
            // cgroupfs driver
            format!("/kubepods/burstable/pod{uid}/{ID}"),
            format!("/kubepods/pod{uid}/{ID}"),
            // CRI-O
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{systemd_uid}.slice/crio-{ID}.scope"
            ),
            // kind / nested kubelet
            format!(
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{systemd_uid}.slice/cri-containerd-{ID}.scope"
            ),
            // dockershim, and a cgroup nested inside the container
            format!("/kubepods.slice/kubepods-pod{systemd_uid}.slice/docker-{ID}.scope/init.scope"),
        ];
        for path in &cases {
            let n = auto_container_name(path);
            assert_eq!(n.as_str(), "k8s:pod-4f7c2a1e/0123456789ab", "{path}");
            assert_eq!(n.pod_uid(), Some(uid), "{path}");
            assert_eq!(n.pod_name().as_deref(), Some("k8s:pod-4f7c2a1e"));
        }
        let pod = auto_container_name(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{systemd_uid}.slice"
        ));
        assert_eq!(pod.as_str(), "k8s:pod-4f7c2a1e");
        assert_eq!(pod.pod_uid(), Some(uid));
        assert_eq!(name(&format!("/kubepods/pod{uid}")), "k8s:pod-4f7c2a1e");
        assert_eq!(
            name(&format!(
                "/kubepods.slice/kubepods-pod{systemd_uid}.slice/crio-conmon-{ID}.scope"
            )),
            "k8s:pod-4f7c2a1e/conmon-0123456789ab"
        );
        // QoS slices alone are not pods.
        assert_eq!(
            name("/kubepods.slice/kubepods-burstable.slice"),
            "/kubepods.slice/kubepods-burstable.slice"
        );
        assert_eq!(name("/kubepods/burstable"), "/kubepods/burstable");
    }

    #[test]
    fn runtimes_outside_kubernetes() {
        assert_eq!(name(&format!("/docker/{ID}")), "docker:0123456789ab");
        assert_eq!(
            name(&format!("/docker/{ID}/init.scope")),
            "docker:0123456789ab"
        );
        assert_eq!(
            name(&format!("/system.slice/docker-{ID}.scope")),
            "docker:0123456789ab"
        );
        assert_eq!(
            name(&format!(
                "/system.slice/containerd.service/cri-containerd-{ID}.scope"
            )),
            "containerd:0123456789ab"
        );
        assert_eq!(
            name(&format!("/system.slice/crio-{ID}.scope")),
            "crio:0123456789ab"
        );
        assert_eq!(
            name(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
            )),
            "podman:0123456789ab"
        );
        assert_eq!(
            name(&format!("/libpod_parent/libpod-{ID}")),
            "podman:0123456789ab"
        );
        // Not an id: no runtime match.
        assert_eq!(name("/docker/notanid"), "/docker/notanid");
        assert_eq!(name("/system.slice/docker.service"), "docker.service");
    }

    #[test]
    fn systemd_host_and_unknown() {
        assert_eq!(name("/"), "host");
        assert_eq!(name(""), "host");
        assert_eq!(name("/system.slice/foo.service"), "foo.service");
        assert_eq!(
            name("/user.slice/user-1000.slice/session-3.scope"),
            "session-3.scope"
        );
        assert_eq!(
            name("/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-x.scope"),
            "app-gnome-x.scope"
        );
        assert_eq!(name("/init.scope"), "init.scope");
        assert_eq!(name("/system.slice"), "/system.slice");
        assert_eq!(name("/actions_job/abc"), "/actions_job/abc");
        assert_eq!(auto_container_name("/x").pod_uid(), None);
    }

    #[test]
    fn process_map_json() {
        let map = ProcessMap::from_json(r#"{"node": "runner", "containerd-shim-runc-v2": "shim"}"#)
            .unwrap();
        assert_eq!(map.container_for("node"), Some("runner"));
        assert_eq!(map.container_for("nod"), None);
        assert_eq!(map.container_for("containerd-shim"), Some("shim"));
        assert!(ProcessMap::from_json("").unwrap().is_empty());
        assert!(ProcessMap::from_json("{}").unwrap().is_empty());
        for bad in ["{", r#"{"node": 1}"#, r#"["node"]"#, "null"] {
            let err = ProcessMap::from_json(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("CGROUP_PROCESS_MAP: invalid JSON: "),
                "{bad}: {err}"
            );
            assert!(
                err.len() > "CGROUP_PROCESS_MAP: invalid JSON: ".len(),
                "{err}"
            );
        }
    }

    #[test]
    fn grouper_marks_cgroups_by_mapped_processes() {
        let map = ProcessMap::from_json(r#"{"node": "runner", "postgres": "db"}"#).unwrap();
        let mut grouper = Grouper::new(map);
        let runner = "/kubepods/pod11111111-2222/aaaaaaaaaaaaaaaa";
        let db = "/kubepods/pod11111111-2222/bbbbbbbbbbbbbbbb";
        let other = "/kubepods/pod11111111-2222/cccccccccccccccc";
        let procs = [
            (10, "node", runner),
            (11, "sh", runner),
            (20, "postgres", db),
            (21, "postgres", db),
            (30, "sidecar", other),
            (1, "init", "/"),
        ];
        let groups = grouper.group(&procs);
        assert_eq!(groups.len(), 6);
        assert_eq!(groups[&10].as_str(), "runner");
        assert_eq!(groups[&11].as_str(), "runner");
        assert_eq!(groups[&11].pod_uid(), Some("11111111-2222"));
        assert_eq!(groups[&20].as_str(), "db");
        assert_eq!(groups[&21].as_str(), "db");
        assert_eq!(groups[&30].as_str(), "k8s:pod-11111111/cccccccccccc");
        assert_eq!(groups[&1].as_str(), "host");

        // node exited: its cgroup keeps the name.
        let groups = grouper.group(&[(11, "sh", runner), (12, "make", runner)]);
        assert_eq!(groups[&12].as_str(), "runner");
    }

    #[test]
    fn grouper_conflicts_are_deterministic() {
        let map = ProcessMap::from_json(r#"{"a": "first", "b": "second"}"#).unwrap();
        let mut grouper = Grouper::new(map);
        let groups = grouper.group(&[(9, "b", "/x"), (5, "a", "/x"), (7, "c", "/x")]);
        assert!(groups.values().all(|n| n.as_str() == "first"), "{groups:?}");
        // A later process cannot take the cgroup over.
        let groups = grouper.group(&[(2, "b", "/x")]);
        assert_eq!(groups[&2].as_str(), "first");

        let mut plain = Grouper::default();
        let groups = plain.group(&[(1, "node", "/system.slice/x.service")]);
        assert_eq!(groups[&1].as_str(), "x.service");
        assert!(plain.group(&[]).is_empty());
    }
}
