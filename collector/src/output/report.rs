//! The human-readable table `collector run` prints.

use std::fmt::Write;

use summary::RunSummary;
use summary::units::bytes;

/// The headline of `collector run`: how the command ended.
pub fn run_headline(command: &str, status: std::process::ExitStatus, s: &RunSummary) -> String {
    let how = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended".to_owned(),
    };
    format!(
        "{} {how} after {:.2} s (CPU source: {})",
        code_span(command),
        s.duration_seconds,
        s.cpu_source.as_str()
    )
}

/// `arg` quoted for a POSIX shell where it needs it: `'perl -e "$x"'`, `'it'\''s'`.
pub fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        return arg.to_owned();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// `text` as a Markdown code span (also plain enough for a terminal): fenced by one more
/// backtick than its longest run of them, padded where it starts or ends with one.
pub fn code_span(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// Everything a summary says, as text (for `collector run` and `collector show`).
pub fn table(headline: &str, s: &RunSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{headline}");
    let _ = writeln!(
        out,
        "{} to {}, {} samples; system CPU avg {:.1} % (peak {:.1} %), memory used avg {} (peak {})",
        s.start_time,
        s.end_time,
        s.sample_count,
        s.cpu_total_percent.avg,
        s.cpu_total_percent.peak,
        bytes(s.mem_used_bytes.avg),
        bytes(s.mem_used_bytes.peak)
    );
    let _ = writeln!(
        out,
        "\n{:<20} {:>9} {:>8} {:>8} {:>8} {:>11} {:>11} {:>11} {:>4}",
        "CONTAINER", "CPU s", "avg", "p95", "peak", "mem avg", "mem peak", "net rx/tx", "OOM"
    );
    // Containers sharing a network namespace (a pod) report the same traffic: mark them.
    let mut per_namespace: std::collections::HashMap<&str, usize> = Default::default();
    for n in s.containers.iter().filter_map(|c| c.network.as_ref()) {
        *per_namespace.entry(n.namespace.as_str()).or_default() += 1;
    }
    let mut shared = false;
    for c in &s.containers {
        let peak_mem = c
            .memory_peak_bytes
            .map(|p| p as f64)
            .unwrap_or(c.memory_bytes.peak);
        let net = c
            .network
            .as_ref()
            .map(|n| {
                let mark = if !n.namespace.is_empty() && per_namespace[n.namespace.as_str()] > 1 {
                    shared = true;
                    "*"
                } else {
                    ""
                };
                format!(
                    "{}/{}{mark}",
                    bytes(n.rx_bytes as f64),
                    bytes(n.tx_bytes as f64)
                )
            })
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<20} {:>9.3} {:>8.2} {:>8.2} {:>8.2} {:>11} {:>11} {:>11} {:>4}",
            truncate(&c.name, 20),
            c.cpu_seconds,
            c.cpu_cores.avg,
            c.cpu_cores.p95,
            c.cpu_cores.peak,
            bytes(c.memory_bytes.avg),
            bytes(peak_mem),
            net,
            c.oom_kills
        );
        if let Some(l) = c.limits {
            let cpu = c.cpu_to_limit.map(|r| {
                format!(
                    "CPU p95 {:.0} % of {} cores",
                    r.p95 * 100.0,
                    l.cpu_cores.unwrap_or(0.0)
                )
            });
            let mem = c.memory_to_limit.map(|r| {
                format!(
                    "memory peak {:.0} % of {}",
                    r.peak * 100.0,
                    bytes(l.memory_bytes.unwrap_or(0) as f64)
                )
            });
            let parts: Vec<String> = cpu.into_iter().chain(mem).collect();
            if !parts.is_empty() {
                let _ = writeln!(out, "{:<20} limits: {}", "", parts.join(", "));
            }
        }
        if let Some(d) = &c.disk_io
            && (d.read_bytes > 0 || d.write_bytes > 0)
        {
            let _ = writeln!(
                out,
                "{:<20} disk: read {} ({} ops), wrote {} ({} ops)",
                "",
                bytes(d.read_bytes as f64),
                d.read_ops,
                bytes(d.write_bytes as f64),
                d.write_ops
            );
        }
        if let Some(v) = &c.verdict {
            // One sentence: an unstarved verdict says "not starved" itself.
            let text = if v.starved {
                format!("STARVED: {}", v.text)
            } else {
                format!("verdict: {}", v.text)
            };
            let _ = writeln!(out, "{:<20} {text}", "");
        }
    }
    let _ = writeln!(
        out,
        "  (avg, p95, peak: cores used; CPU sampled every --cpu-interval; mem peak: the kernel's \
         high-water mark where it has one, else the largest sample)"
    );
    if shared {
        let _ = writeln!(
            out,
            "  * network namespace shared with other containers: the same traffic"
        );
    }
    if let Some(v) = s.verdict.as_ref().filter(|_| s.containers.len() > 1) {
        let mark = if v.starved { "STARVED" } else { "not starved" };
        let _ = writeln!(out, "\nJob: {mark}: {}", v.text);
    }
    out.push_str(&super::chart::timeline_chart(s.timeline.as_ref()));
    if !s.top_commands.is_empty() {
        let _ = writeln!(
            out,
            "\nTop commands:\n{:<16} {:>9} {:>9} {:>11} {:>9}",
            "NAME", "processes", "CPU s", "peak RSS", "longest s"
        );
        for c in &s.top_commands {
            let _ = writeln!(
                out,
                "{:<16} {:>9} {:>9.3} {:>11} {:>9.2}",
                truncate(&c.name, 16),
                c.processes,
                c.cpu_seconds,
                bytes(c.peak_rss_bytes as f64),
                c.longest_seconds
            );
        }
    }
    for (title, list) in [
        ("Top CPU processes", &s.top_cpu_processes),
        ("Top memory processes", &s.top_mem_processes),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n{title}:\n{:>8} {:<16} {:>9} {:>8} {:>11}",
            "PID", "NAME", "CPU s", "peak %", "peak RSS"
        );
        for p in list {
            let _ = writeln!(
                out,
                "{:>8} {:<16} {:>9.3} {:>8.1} {:>11}{}",
                p.pid,
                truncate(&p.name, 16),
                p.cpu_seconds,
                p.peak_cpu_percent,
                if p.peak_mem_rss_bytes > 0 {
                    bytes(p.peak_mem_rss_bytes as f64)
                } else {
                    "-".into()
                },
                if p.exited { "  (exited)" } else { "" }
            );
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max - 1).chain(['…']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_long_names() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
