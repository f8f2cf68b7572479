//! Live per-container metrics in the Prometheus text format, for `--metrics-addr`.
//!
//! The sampler feeds these as it measures: counters grow by what each reading added, gauges
//! are set. When a container ends its series are deleted, so a node that runs thousands of
//! short jobs keeps a bounded number of live series. Metric names (all prefixed
//! `ci_collector_`) are listed in [`METRIC_NAMES`]; the Grafana dashboard may use only those.

use std::{net::SocketAddr, sync::Arc, sync::atomic::AtomicU64};

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, header};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use summary::{Execution, Source};

/// Every metric name the collector exports (as they appear in the exposition, with the
/// `_total` suffix of counters). The dashboard check in CI compares against this list.
pub const METRIC_NAMES: &[&str] = &[
    "ci_collector_container_cpu_seconds_total",
    "ci_collector_container_memory_bytes",
    "ci_collector_container_memory_anon_bytes",
    "ci_collector_container_memory_limit_bytes",
    "ci_collector_container_cpu_limit_cores",
    "ci_collector_container_network_receive_bytes_total",
    "ci_collector_container_network_transmit_bytes_total",
    "ci_collector_container_oom_kills_total",
    "ci_collector_container_cpu_throttled_seconds_total",
    "ci_collector_container_cpu_pressure_seconds_total",
    "ci_collector_container_memory_pressure_seconds_total",
    "ci_collector_container_io_pressure_seconds_total",
    "ci_collector_container_run_queue_wait_seconds_total",
    "ci_collector_container_run_queue_wait_behind_seconds_total",
    "ci_collector_container_disk_read_bytes_total",
    "ci_collector_container_disk_write_bytes_total",
    "ci_collector_samples_total",
    "ci_collector_errors_total",
    "ci_collector_proc_lines_skipped_total",
    "ci_collector_ebpf_attached",
    "ci_collector_ebpf_map_entries",
    "ci_collector_ebpf_map_capacity",
    "ci_collector_ebpf_map_full_total",
    "ci_collector_ebpf_exit_records_lost_total",
    "ci_collector_containers",
];

/// Labels of every per-container series: which container, of which job, measured how.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContainerLabels {
    pub container: String,
    pub repository: String,
    pub workflow: String,
    /// The CI job (`GITHUB_JOB`). Not `job`: Prometheus reserves that for the scrape job and
    /// would rename ours to `exported_job`.
    pub ci_job: String,
    pub run_id: String,
    /// Where the figure came from: `ebpf`, `cgroup` or `proc`.
    pub source: String,
}

/// Most holders one container's wait is split over in the live series, besides `other`:
/// a container has at most `MAX_LIVE_BEHIND + 1` `..._behind_seconds_total` series.
pub const MAX_LIVE_BEHIND: usize = 3;
/// The `behind` label of the holders beyond the first [`MAX_LIVE_BEHIND`].
pub const BEHIND_OTHER: &str = "other";

/// A container's labels and who held the CPU while it waited.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BehindLabels {
    /// The holder: another container's name, `itself`, `host`, `nobody`, or `other` (the
    /// holders beyond the first few this container waited behind).
    pub behind: String,
    // Last: the derive moves the encoder into a flattened field.
    #[prometheus(flatten)]
    pub container: ContainerLabels,
}

type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Growth of a container's starvation counters between two readings.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StarvationDelta {
    pub throttled_seconds: Option<f64>,
    pub cpu_some_seconds: Option<f64>,
    pub memory_some_seconds: Option<f64>,
    pub io_some_seconds: Option<f64>,
    pub read_bytes: Option<u64>,
    pub write_bytes: Option<u64>,
}

/// The registry and every family, shared between the sampler and the HTTP server.
pub struct LiveMetrics {
    registry: Registry,
    cpu_seconds: Family<ContainerLabels, FloatCounter>,
    memory: Family<ContainerLabels, Gauge>,
    memory_anon: Family<ContainerLabels, Gauge>,
    memory_limit: Family<ContainerLabels, Gauge>,
    cpu_limit: Family<ContainerLabels, FloatGauge>,
    rx: Family<ContainerLabels, Counter>,
    tx: Family<ContainerLabels, Counter>,
    oom_kills: Family<ContainerLabels, Counter>,
    throttled: Family<ContainerLabels, FloatCounter>,
    cpu_pressure: Family<ContainerLabels, FloatCounter>,
    memory_pressure: Family<ContainerLabels, FloatCounter>,
    io_pressure: Family<ContainerLabels, FloatCounter>,
    run_queue_wait: Family<ContainerLabels, FloatCounter>,
    run_queue_wait_behind: Family<BehindLabels, FloatCounter>,
    /// The `behind` labels each container's series use, in the order they were given (the
    /// first [`MAX_LIVE_BEHIND`] holders, then `other`).
    behind_slots: std::sync::Mutex<std::collections::HashMap<ContainerLabels, Vec<String>>>,
    disk_read: Family<ContainerLabels, Counter>,
    disk_write: Family<ContainerLabels, Counter>,
    pub samples: Counter,
    pub errors: Counter,
    pub skipped_lines: Counter,
    pub ebpf_attached: Gauge,
    pub ebpf_map_entries: Gauge,
    pub ebpf_map_capacity: Gauge,
    pub ebpf_map_full: Counter,
    pub ebpf_exit_records_lost: Counter,
    pub containers: Gauge,
}

impl Default for LiveMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ci_collector");
        let m = Self {
            registry: Registry::default(),
            cpu_seconds: Family::default(),
            memory: Family::default(),
            memory_anon: Family::default(),
            memory_limit: Family::default(),
            cpu_limit: Family::default(),
            rx: Family::default(),
            tx: Family::default(),
            oom_kills: Family::default(),
            throttled: Family::default(),
            cpu_pressure: Family::default(),
            memory_pressure: Family::default(),
            io_pressure: Family::default(),
            run_queue_wait: Family::default(),
            run_queue_wait_behind: Family::default(),
            behind_slots: Default::default(),
            disk_read: Family::default(),
            disk_write: Family::default(),
            samples: Counter::default(),
            errors: Counter::default(),
            skipped_lines: Counter::default(),
            ebpf_attached: Gauge::default(),
            ebpf_map_entries: Gauge::default(),
            ebpf_map_capacity: Gauge::default(),
            ebpf_map_full: Counter::default(),
            ebpf_exit_records_lost: Counter::default(),
            containers: Gauge::default(),
        };
        registry.register(
            "container_cpu_seconds",
            "CPU time used by the container",
            m.cpu_seconds.clone(),
        );
        registry.register(
            "container_memory_bytes",
            "Memory in use by the container (cgroup memory.current, or summed RSS)",
            m.memory.clone(),
        );
        registry.register(
            "container_memory_anon_bytes",
            "Anonymous memory of the container, where the cgroup reports it",
            m.memory_anon.clone(),
        );
        registry.register(
            "container_memory_limit_bytes",
            "Memory limit of the container (CGROUP_LIMITS)",
            m.memory_limit.clone(),
        );
        registry.register(
            "container_cpu_limit_cores",
            "CPU limit of the container in cores (CGROUP_LIMITS)",
            m.cpu_limit.clone(),
        );
        registry.register(
            "container_network_receive_bytes",
            "Bytes received in the container's network namespace (loopback excluded)",
            m.rx.clone(),
        );
        registry.register(
            "container_network_transmit_bytes",
            "Bytes sent from the container's network namespace (loopback excluded)",
            m.tx.clone(),
        );
        registry.register(
            "container_cpu_throttled_seconds",
            "Time the container's CPU quota held its run queues back (cpu.stat, summed over CPUs)",
            m.throttled.clone(),
        );
        registry.register(
            "container_cpu_pressure_seconds",
            "Time some task of the container waited for a CPU (cpu.pressure some total)",
            m.cpu_pressure.clone(),
        );
        registry.register(
            "container_memory_pressure_seconds",
            "Time some task of the container stalled on memory (memory.pressure some total)",
            m.memory_pressure.clone(),
        );
        registry.register(
            "container_io_pressure_seconds",
            "Time some task of the container stalled on I/O (io.pressure some total)",
            m.io_pressure.clone(),
        );
        registry.register(
            "container_run_queue_wait_seconds",
            "Time the container's runnable tasks waited for a CPU, summed over tasks",
            m.run_queue_wait.clone(),
        );
        registry.register(
            "container_run_queue_wait_behind_seconds",
            "Run-queue wait of the container by who held the CPU meanwhile (eBPF): the first \
             few holders it waited behind, then `other`",
            m.run_queue_wait_behind.clone(),
        );
        registry.register(
            "container_disk_read_bytes",
            "Bytes the container read from block devices (io.stat, v1 blkio)",
            m.disk_read.clone(),
        );
        registry.register(
            "container_disk_write_bytes",
            "Bytes the container wrote to block devices (io.stat, v1 blkio)",
            m.disk_write.clone(),
        );
        registry.register(
            "container_oom_kills",
            "Processes of the container killed by the OOM killer",
            m.oom_kills.clone(),
        );
        registry.register(
            "samples",
            "Samples taken (every --interval)",
            m.samples.clone(),
        );
        registry.register(
            "errors",
            "Read errors (skipped and logged)",
            m.errors.clone(),
        );
        registry.register(
            "proc_lines_skipped",
            "Malformed /proc lines skipped (logged at debug level)",
            m.skipped_lines.clone(),
        );
        registry.register(
            "ebpf_attached",
            "1 when the eBPF CPU accounting is attached",
            m.ebpf_attached.clone(),
        );
        registry.register(
            "ebpf_map_entries",
            "Entries in the eBPF per-cgroup map",
            m.ebpf_map_entries.clone(),
        );
        registry.register(
            "ebpf_map_capacity",
            "Capacity of the eBPF per-cgroup map",
            m.ebpf_map_capacity.clone(),
        );
        registry.register(
            "ebpf_map_full",
            "Flushes that found the eBPF per-cgroup map full",
            m.ebpf_map_full.clone(),
        );
        registry.register(
            "ebpf_exit_records_lost",
            "Process exit records lost to a full ring buffer",
            m.ebpf_exit_records_lost.clone(),
        );
        registry.register(
            "containers",
            "Containers being measured",
            m.containers.clone(),
        );
        Self { registry, ..m }
    }
}

/// The labels of one container's series.
pub fn labels(container: &str, id: &Execution, source: Source) -> ContainerLabels {
    ContainerLabels {
        container: container.to_owned(),
        repository: id.repository.clone(),
        workflow: id.workflow.clone(),
        ci_job: id.job.clone(),
        run_id: id.run_id.clone(),
        source: source.as_str().to_owned(),
    }
}

impl LiveMetrics {
    pub fn add_cpu_seconds(&self, l: &ContainerLabels, seconds: f64) {
        if seconds > 0.0 {
            self.cpu_seconds.get_or_create(l).inc_by(seconds);
        } else {
            // Create the series so a container shows up before it has used CPU.
            let _created = self.cpu_seconds.get_or_create(l);
        }
    }

    pub fn set_memory(&self, l: &ContainerLabels, bytes: u64, anon: Option<u64>) {
        self.memory
            .get_or_create(l)
            .set(bytes.min(i64::MAX as u64) as i64);
        if let Some(anon) = anon {
            self.memory_anon
                .get_or_create(l)
                .set(anon.min(i64::MAX as u64) as i64);
        }
    }

    pub fn set_limits(&self, l: &ContainerLabels, limits: &summary::Limits) {
        if let Some(cpu) = limits.cpu_cores {
            self.cpu_limit.get_or_create(l).set(cpu);
        }
        if let Some(mem) = limits.memory_bytes {
            self.memory_limit
                .get_or_create(l)
                .set(mem.min(i64::MAX as u64) as i64);
        }
    }

    pub fn add_network(&self, l: &ContainerLabels, rx: u64, tx: u64) {
        self.rx.get_or_create(l).inc_by(rx);
        self.tx.get_or_create(l).inc_by(tx);
    }

    pub fn add_oom_kills(&self, l: &ContainerLabels, kills: u64) {
        self.oom_kills.get_or_create(l).inc_by(kills);
    }

    /// Adds the growth of the container's starvation counters since the last call: throttled,
    /// CPU, memory and I/O stall seconds, and bytes read and written. Only figures the kernel
    /// gives create a series.
    pub fn add_starvation(&self, l: &ContainerLabels, d: &StarvationDelta) {
        let add = |f: &Family<ContainerLabels, FloatCounter>, v: Option<f64>| {
            if let Some(v) = v {
                f.get_or_create(l).inc_by(v.max(0.0));
            }
        };
        add(&self.throttled, d.throttled_seconds);
        add(&self.cpu_pressure, d.cpu_some_seconds);
        add(&self.memory_pressure, d.memory_some_seconds);
        add(&self.io_pressure, d.io_some_seconds);
        if let Some(b) = d.read_bytes {
            self.disk_read.get_or_create(l).inc_by(b);
        }
        if let Some(b) = d.write_bytes {
            self.disk_write.get_or_create(l).inc_by(b);
        }
    }

    pub fn add_run_queue_wait(&self, l: &ContainerLabels, seconds: f64) {
        self.run_queue_wait
            .get_or_create(l)
            .inc_by(seconds.max(0.0));
    }

    /// Adds wait behind `holder`: its own series among the container's first
    /// [`MAX_LIVE_BEHIND`] holders, else `other`. A series once given stays the holder's,
    /// so every counter only grows.
    pub fn add_run_queue_wait_behind(&self, l: &ContainerLabels, holder: &str, seconds: f64) {
        if seconds <= 0.0 {
            return;
        }
        let behind = {
            let mut slots = self.behind_slots.lock().unwrap_or_else(|e| e.into_inner());
            let slots = slots.entry(l.clone()).or_default();
            let named = slots.iter().filter(|s| *s != BEHIND_OTHER).count();
            if slots.iter().any(|s| s == holder) {
                holder.to_owned()
            } else if named < MAX_LIVE_BEHIND && holder != BEHIND_OTHER {
                slots.push(holder.to_owned());
                holder.to_owned()
            } else {
                if !slots.iter().any(|s| s == BEHIND_OTHER) {
                    slots.push(BEHIND_OTHER.to_owned());
                }
                BEHIND_OTHER.to_owned()
            }
        };
        self.run_queue_wait_behind
            .get_or_create(&BehindLabels {
                container: l.clone(),
                behind,
            })
            .inc_by(seconds);
    }

    /// Deletes every series of a container that ended (all its label sets).
    pub fn remove_container(&self, sets: &[ContainerLabels]) {
        let mut slots = self.behind_slots.lock().unwrap_or_else(|e| e.into_inner());
        for l in sets {
            for behind in slots.remove(l).unwrap_or_default() {
                self.run_queue_wait_behind.remove(&BehindLabels {
                    container: l.clone(),
                    behind,
                });
            }
            self.cpu_seconds.remove(l);
            self.memory.remove(l);
            self.memory_anon.remove(l);
            self.memory_limit.remove(l);
            self.cpu_limit.remove(l);
            self.rx.remove(l);
            self.tx.remove(l);
            self.oom_kills.remove(l);
            for f in [
                &self.throttled,
                &self.cpu_pressure,
                &self.memory_pressure,
                &self.io_pressure,
                &self.run_queue_wait,
            ] {
                f.remove(l);
            }
            self.disk_read.remove(l);
            self.disk_write.remove(l);
        }
    }

    /// The exposition (OpenMetrics text, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// Serves `GET /metrics` on `addr` until the task is dropped. Binds before returning, so a
/// bad address is an error at start-up.
pub async fn serve(
    addr: SocketAddr,
    live: Arc<LiveMetrics>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: {e}"))?;
    tracing::info!(
        "serving live metrics on http://{}/metrics",
        listener.local_addr()?
    );
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let live = live.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let live = live.clone();
                        async move { Ok::<_, std::convert::Infallible>(respond(&req, &live)) }
                    });
                let conn = hyper::server::conn::http1::Builder::new()
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(60), conn).await;
            });
        }
    }))
}

fn respond(req: &Request<hyper::body::Incoming>, live: &LiveMetrics) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let (ctype, body) = summary::exposition::negotiate(accept, live.encode());
            (StatusCode::OK, ctype, body)
        }
        ("GET", _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics\n".to_owned(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".to_owned(),
        ),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_appear_and_are_deleted_and_names_are_listed() {
        let live = LiveMetrics::default();
        let id = Execution {
            repository: "o/r".into(),
            workflow: "w".into(),
            job: "j".into(),
            run_id: "1".into(),
            ..Default::default()
        };
        let l = labels("runner", &id, Source::Ebpf);
        live.add_cpu_seconds(&l, 1.5);
        live.set_memory(&l, 1024, Some(512));
        live.set_limits(
            &l,
            &summary::Limits {
                cpu_cores: Some(2.0),
                memory_bytes: Some(4096),
            },
        );
        live.add_network(&l, 10, 20);
        live.add_oom_kills(&l, 1);
        live.add_run_queue_wait_behind(&l, "itself", 0.5);
        live.samples.inc();
        let text = live.encode();
        assert!(text.contains(r#"ci_collector_container_cpu_seconds_total{container="runner",repository="o/r",workflow="w",ci_job="j",run_id="1",source="ebpf"} 1.5"#), "{text}");
        // Every family in the exposition is in METRIC_NAMES, and the other way round.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            let counter = line.ends_with(" counter");
            let exported = if counter {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            assert!(
                METRIC_NAMES.contains(&exported.as_str()),
                "{exported} not listed"
            );
        }
        assert_eq!(
            text.lines().filter(|l| l.starts_with("# TYPE ")).count(),
            METRIC_NAMES.len()
        );
        live.remove_container(&[l]);
        assert!(!live.encode().contains("runner"));
    }

    /// At most `MAX_LIVE_BEHIND + 1` series per container, whatever the number of holders;
    /// a holder keeps its series; nothing is lost to the bound.
    #[test]
    fn wait_behind_series_are_bounded_per_container() {
        let live = LiveMetrics::default();
        let l = labels("build", &Execution::default(), Source::Ebpf);
        let other = labels("lint", &Execution::default(), Source::Ebpf);
        for round in 0..3 {
            for holder in 0..20 {
                live.add_run_queue_wait_behind(&l, &format!("job-{holder}"), 1.0);
            }
            live.add_run_queue_wait_behind(&other, "itself", 0.25);
            let text = live.encode();
            let series: Vec<&str> = text
                .lines()
                .filter(|t| {
                    t.starts_with("ci_collector_container_run_queue_wait_behind_seconds_total{")
                        && t.contains(r#"container="build""#)
                })
                .collect();
            assert_eq!(series.len(), MAX_LIVE_BEHIND + 1, "{text}");
            let rounds = f64::from(round + 1);
            for (holder, value) in [
                ("job-0", rounds),
                ("job-2", rounds),
                ("other", 17.0 * rounds),
            ] {
                assert!(
                    series.iter().any(|s| {
                        s.contains(&format!(r#"behind="{holder}","#))
                            && s.ends_with(&format!(" {value:.1}"))
                    }),
                    "{holder} {value}: {series:?}"
                );
            }
        }
        live.remove_container(&[l]);
        let text = live.encode();
        assert!(!text.contains(r#"container="build""#), "{text}");
        assert!(
            text.lines()
                .any(|t| t.contains(r#"behind="itself","#) && t.ends_with(" 0.75")),
            "{text}"
        );
    }
}
