//! The bounds a summary must keep: sizes of lists and texts, the most plausible figures, and
//! the window its timestamps must fall in (documented in `receiver/README.md`, "Limits").

/// Most containers one summary may carry.
pub const MAX_CONTAINERS: usize = 1_000;
/// Most processes in each of `top_cpu_processes` and `top_mem_processes`.
pub const MAX_TOP_PROCESSES: usize = 1_000;
/// Longest organization, repository, workflow or job, in bytes (of a push or a token).
pub const MAX_IDENTITY_BYTES: usize = 256;
/// Longest run id or run attempt, in bytes.
pub const MAX_RUN_ID_BYTES: usize = 128;
/// Longest container name (also a process's `container` and a network namespace list).
pub const MAX_NAME_BYTES: usize = 512;
/// Longest process name.
pub const MAX_PROCESS_NAME_BYTES: usize = 256;
/// Longest histogram key, collector version or collector mode.
pub const MAX_SHORT_BYTES: usize = 64;
/// Most histograms in one histogram map.
pub const MAX_HISTOGRAMS: usize = 16;
/// Longest serialized histogram, in bytes of base64.
pub const MAX_HISTOGRAM_BYTES: usize = 64 * 1024;
/// Most bytes of base64 of all the histograms of one summary together.
pub const MAX_RUN_HISTOGRAM_BYTES: usize = 768 * 1024;
/// Largest histogram scale (samples are multiplied by it before being recorded).
pub const MAX_HISTOGRAM_SCALE: u64 = 1_000_000;
/// Longest run: 31 days, in seconds.
pub const MAX_DURATION_SECONDS: f64 = 31.0 * 86_400.0;
/// Most cores a container, a limit or a process (as `100 %` per core) may report.
pub const MAX_CORES: f64 = 4096.0;
/// Highest system-wide CPU percentage: 100, plus the histograms' 0.1 % precision (a
/// merged summary's peak is a histogram bucket's upper end).
pub const MAX_TOTAL_CPU_PERCENT: f64 = 100.1;
/// Most CPU seconds of a container or a process: [`MAX_CORES`] for [`MAX_DURATION_SECONDS`].
pub const MAX_CPU_SECONDS: f64 = MAX_CORES * MAX_DURATION_SECONDS;
/// Most memory any figure may report: 64 TiB.
pub const MAX_MEMORY_BYTES: u64 = 64 << 40;
/// Highest network rate: 10 TB/s (80 Tbit/s).
pub const MAX_BYTES_PER_SEC: f64 = 1e13;
/// Highest process id (Linux's `PID_MAX_LIMIT`).
pub const MAX_PID: i32 = 4_194_304;
/// Earliest accepted timestamp: 2000-01-01T00:00:00Z, in Unix seconds.
pub const EARLIEST_UNIX_SECONDS: i64 = 946_684_800;
/// How far ahead of the receiver's clock a timestamp may be: one day, in seconds.
pub const MAX_FUTURE_SECONDS: i64 = 86_400;
