//! The `/proc` parsers on arbitrary text: `parse_pid_stat`, `parse_pid_cgroup` (with
//! `cgroup_v2_path`, `cgroup_v1_path`, `cgroup_v1_controller_path` on its lines),
//! `parse_net_dev`, `parse_system_stat`, `parse_meminfo`, `parse_schedstat`.
//!
//! - None of them panics, whatever the text.
//! - A stat line that parses round-trips: the fields written back into a stat line (with the
//!   command name between parentheses and zeros in the fields the collector does not read)
//!   parse to the same `PidStat`, and the pid and command name are the input's own.
//! - Every parsed cgroup line has an absolute path; the v2 and v1 paths picked are paths of
//!   parsed lines of the right hierarchy.
//! - Every network device has a non-empty name; totals of `/proc/stat` and `/proc/meminfo`
//!   are computed without overflow.
//! - A schedstat that parses is the text's first three whitespace-separated numbers, and
//!   written back parses to the same figures.
#![no_main]

use collector::sources::procfs::{
    CgroupLine, PidStat, cgroup_v1_controller_path, cgroup_v1_path, cgroup_v2_path, parse_meminfo,
    parse_net_dev, parse_pid_cgroup, parse_pid_stat, parse_schedstat, parse_system_stat,
};
use libfuzzer_sys::fuzz_target;

/// A stat line with `s`'s fields at their proc(5) positions and 0 elsewhere.
fn stat_line(s: &PidStat) -> String {
    let mut fields = vec!["0".to_string(); 52];
    // fields[i] is field i + 1 (1-based as in proc(5)).
    fields[2] = s.state.to_string();
    fields[3] = s.ppid.to_string();
    fields[13] = s.utime.to_string();
    fields[14] = s.stime.to_string();
    fields[19] = s.num_threads.to_string();
    fields[21] = s.starttime.to_string();
    fields[23] = s.rss_pages.to_string();
    format!("{} ({}) {}\n", s.pid, s.comm, fields[2..].join(" "))
}

fn check_stat(text: &str) {
    let Ok(stat) = parse_pid_stat(text) else {
        return;
    };
    // The command name is everything between the first '(' and the last ')'.
    let open = text.find('(').unwrap();
    let close = text.rfind(')').unwrap();
    assert_eq!(stat.comm, text[open + 1..close]);
    assert_eq!(Ok(stat.pid), text[..open].trim().parse::<i32>());
    assert!(
        stat.rss_pages <= i64::MAX as u64,
        "rss comes from an i64: {stat:?}"
    );
    let line = stat_line(&stat);
    assert_eq!(
        parse_pid_stat(&line).as_ref(),
        Ok(&stat),
        "written back as {line:?}"
    );
}

fn check_cgroup(text: &str) {
    let lines: Vec<CgroupLine> = parse_pid_cgroup(text);
    for l in &lines {
        assert!(l.path.starts_with('/'), "{l:?}");
        assert!(
            l.controllers
                .iter()
                .all(|c| !c.is_empty() && !c.contains(','))
        );
    }
    if let Some(v2) = cgroup_v2_path(&lines) {
        assert!(
            lines
                .iter()
                .any(|l| l.hierarchy_id == 0 && l.controllers.is_empty() && l.path == v2)
        );
    }
    // cgroup_v1_path: the first line of each preferred controller, in order; the first of
    // those with a non-root path, else the first of them.
    const PREFERRED: [&str; 5] = ["cpu", "cpuacct", "memory", "pids", "name=systemd"];
    let ranked: Vec<&str> = PREFERRED
        .iter()
        .filter_map(|want| {
            lines
                .iter()
                .find(|l| l.hierarchy_id != 0 && l.controllers.iter().any(|c| c == want))
        })
        .map(|l| l.path.as_str())
        .collect();
    let expected = ranked
        .iter()
        .find(|p| **p != "/")
        .or(ranked.first())
        .copied();
    assert_eq!(cgroup_v1_path(&lines), expected, "{lines:?}");
    for controller in ["memory", "cpu", "cpuacct", "pids", "name=systemd", ""] {
        if let Some(p) = cgroup_v1_controller_path(&lines, controller) {
            assert_ne!(p, "/");
            assert!(lines.iter().any(|l| l.hierarchy_id != 0 && l.path == p));
        }
    }
}

fn check_net_dev(text: &str) {
    for d in parse_net_dev(text) {
        assert!(!d.iface.is_empty() && d.iface.trim() == d.iface, "{d:?}");
        assert!(!d.iface.contains('|'));
    }
}

fn check_system(text: &str) {
    let cpu = parse_system_stat(text);
    let _ = (cpu.total(), cpu.idle_total());
    let mem = parse_meminfo(text);
    assert!(mem.used_bytes() <= mem.total, "{mem:?}");
}

fn check_schedstat(text: &str) {
    let Ok(s) = parse_schedstat(text) else {
        return;
    };
    let fields: Vec<u64> = text
        .split_ascii_whitespace()
        .take(3)
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fields, [s.on_cpu_ns, s.run_delay_ns, s.timeslices]);
    let line = format!("{} {} {}\n", s.on_cpu_ns, s.run_delay_ns, s.timeslices);
    assert_eq!(parse_schedstat(&line), Ok(s));
}

fuzz_target!(|data: &[u8]| {
    let text = collector_fuzz::text(data);
    check_stat(&text);
    check_cgroup(&text);
    check_net_dev(&text);
    check_system(&text);
    check_schedstat(&text);
});
