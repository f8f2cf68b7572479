//! The receiver's own metrics, served at `GET /metrics` in the Prometheus text format.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route name (`push`, `token`, `query`, `healthz`, `livez`, `metrics`, `other`), never the raw
    /// path, so cardinality stays bounded.
    pub route: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of the latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route name, as in [`RequestLabels`].
    pub route: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// All counters and histograms, plus the registry that exposes them.
pub struct Metrics {
    /// Registry holding (clones of) every metric below.
    registry: Registry,
    /// Requests answered, by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency (from routing to response), by route.
    pub request_duration: HistogramFamily,
    /// Write transactions committed.
    pub commits: Counter,
    /// Write transactions that failed (every request in them got a 5xx).
    pub commit_failures: Counter,
    /// Operations per committed write transaction.
    pub commit_batch_size: Histogram,
    /// Time to build and commit one write transaction (fsync included).
    pub commit_duration: Histogram,
    /// Runs pruned by retention.
    pub runs_pruned: Counter,
    /// 1 while the store accepts writes, 0 while it recovers from an I/O error.
    pub store_available: Gauge,
    /// Times the database was reopened after an I/O error.
    pub store_reopens: Counter,
    /// redb: the file's size, bytes (at start and after each retention round).
    pub store_file_bytes: Gauge,
    /// redb: the bytes of the pages allocated in the file (the rest is free and reused).
    pub store_allocated_bytes: Gauge,
    /// Connections being served now.
    pub connections_open: Gauge,
    /// Connections refused because `--max-connections` were open.
    pub connections_refused: Counter,
    /// Failed `accept` calls (EMFILE, ENFILE, ENOBUFS, ...).
    pub accept_errors: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("receiver");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration = HistogramFamily::new_with_constructor(latency_histogram);
        let commits = Counter::default();
        let commit_failures = Counter::default();
        let commit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        let commit_duration = latency_histogram();
        let runs_pruned = Counter::default();
        let store_available = Gauge::default();
        let store_reopens = Counter::default();
        let store_file_bytes = Gauge::default();
        let store_allocated_bytes = Gauge::default();
        let connections_open = Gauge::default();
        let connections_refused = Counter::default();
        let accept_errors = Counter::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            request_duration.clone(),
        );
        registry.register(
            "store_commits",
            "Write transactions committed",
            commits.clone(),
        );
        registry.register(
            "store_commit_failures",
            "Write transactions that failed",
            commit_failures.clone(),
        );
        registry.register(
            "store_commit_batch_size",
            "Operations per write transaction",
            commit_batch_size.clone(),
        );
        registry.register(
            "store_commit_duration_seconds",
            "Time to build and durably commit one write transaction",
            commit_duration.clone(),
        );
        registry.register(
            "store_runs_pruned",
            "Runs deleted by retention",
            runs_pruned.clone(),
        );
        registry.register(
            "store_available",
            "1 while the store accepts writes, 0 while it recovers from an I/O error",
            store_available.clone(),
        );
        registry.register(
            "store_reopens",
            "Times the database was reopened after an I/O error",
            store_reopens.clone(),
        );
        registry.register(
            "store_file_bytes",
            "redb file size in bytes, at start and after each retention round",
            store_file_bytes.clone(),
        );
        registry.register(
            "store_allocated_bytes",
            "Bytes of the pages redb has allocated in its file (the rest is free for reuse)",
            store_allocated_bytes.clone(),
        );
        registry.register(
            "connections_open",
            "Connections being served",
            connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused because --max-connections were open",
            connections_refused.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accept calls such as EMFILE",
            accept_errors.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            commits,
            commit_failures,
            commit_batch_size,
            commit_duration,
            runs_pruned,
            store_available,
            store_reopens,
            store_file_bytes,
            store_allocated_bytes,
            connections_open,
            connections_refused,
            accept_errors,
        }
    }
}

impl Metrics {
    /// Records one answered request.
    pub fn observe_request(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// Records one committed write transaction.
    pub fn observe_commit(&self, batch: usize, elapsed: Duration) {
        self.commits.inc();
        self.commit_batch_size.observe(batch as f64);
        self.commit_duration.observe(elapsed.as_secs_f64());
    }

    /// Number of committed write transactions.
    pub fn commits(&self) -> u64 {
        self.commits.get()
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_and_histograms() {
        let m = Metrics::default();
        m.observe_request("push", 201, Duration::from_millis(3));
        m.observe_commit(7, Duration::from_millis(2));
        let text = m.encode();
        assert!(
            text.contains("receiver_http_requests_total{route=\"push\",status=\"201\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("receiver_http_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("receiver_store_commits_total 1"), "{text}");
        for series in [
            "receiver_connections_open 0",
            "receiver_connections_refused_total 0",
            "receiver_accept_errors_total 0",
            "receiver_store_available 0",
            "receiver_store_reopens_total 0",
            "receiver_store_file_bytes 0",
            "receiver_store_allocated_bytes 0",
        ] {
            assert!(text.contains(series), "{series}: {text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
