//! Unit tests of the /proc parsers and readers, on fixtures from several kernels.

use std::path::Path;

use super::*;
use crate::sources::cgroupfs::CgroupPath;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/", $name))
    };
}

#[test]
fn file_reader_reads_whole_files_of_any_size() {
    let mut r = FileReader::default();
    let own = r
        .read_pid(Path::new("/proc"), std::process::id() as i32, "stat")
        .unwrap()
        .unwrap()
        .into_owned();
    assert_eq!(parse_pid_stat(&own).unwrap().pid, std::process::id() as i32);
    // Larger than the initial buffer, and a regular file.
    let dir = std::env::temp_dir().join(format!("collector-filereader-{}", std::process::id()));
    let big = "x".repeat(10_000);
    std::fs::write(&dir, &big).unwrap();
    assert_eq!(r.read(&dir).unwrap(), big);
    std::fs::remove_file(&dir).unwrap();
    assert!(
        r.read_pid(Path::new("/proc"), i32::MAX, "stat")
            .unwrap()
            .is_none()
    );
}

#[test]
fn stat_comm_with_parentheses_and_spaces() {
    let s = parse_pid_stat(fixture!("pid-stat-sd-pam")).unwrap();
    assert_eq!(s.pid, 1234);
    assert_eq!(s.comm, "(sd-pam) )x(");
    assert_eq!(s.state, 'S');
    assert_eq!(s.ppid, 1);
    assert_eq!((s.utime, s.stime), (7, 3));
    assert_eq!(s.num_threads, 1);
    assert_eq!(s.starttime, 4518);
    assert_eq!(s.rss_pages, 1291);

    let s = parse_pid_stat(fixture!("pid-stat-weird-name")).unwrap();
    assert_eq!(s.comm, "weird ) name");
    assert_eq!((s.pid, s.ppid, s.state), (4321, 4000, 'R'));
    assert_eq!((s.utime, s.stime, s.num_threads), (1500, 250, 8));
    assert_eq!((s.starttime, s.rss_pages), (123456, 25600));
}

#[test]
fn stat_comm_with_newline() {
    let s = parse_pid_stat(fixture!("pid-stat-newline")).unwrap();
    assert_eq!(s.comm, "two\nlines");
    assert_eq!((s.pid, s.ppid, s.utime, s.stime), (99, 1, 1, 2));
}

#[test]
fn stat_with_fewer_trailing_fields() {
    let s = parse_pid_stat(fixture!("pid-stat-3.x")).unwrap();
    assert_eq!(s.comm, "nginx");
    assert_eq!((s.utime, s.stime, s.num_threads), (300, 200, 4));
    assert_eq!((s.starttime, s.rss_pages), (9876, 2048));
    // Exactly up to rss (field 24) is enough.
    let minimal = "7 (x) S 1 0 0 0 0 0 0 0 0 0 11 22 0 0 0 0 3 0 44 0 55";
    let s = parse_pid_stat(minimal).unwrap();
    assert_eq!(
        (s.utime, s.stime, s.num_threads, s.starttime),
        (11, 22, 3, 44)
    );
    assert_eq!(s.rss_pages, 55);
}

#[test]
fn stat_truncated_and_garbage() {
    let truncated = "7 (x) S 1 0 0 0 0 0 0 0 0 0 11 22 0 0 0 0 3 0 44 0";
    assert_eq!(
        parse_pid_stat(truncated),
        Err(ParseError::MissingField {
            name: "rss",
            number: 24
        })
    );
    assert_eq!(
        parse_pid_stat("7 (x) S"),
        Err(ParseError::MissingField {
            name: "ppid",
            number: 4
        })
    );
    assert_eq!(parse_pid_stat(""), Err(ParseError::MissingComm));
    assert_eq!(parse_pid_stat("garbage"), Err(ParseError::MissingComm));
    assert_eq!(parse_pid_stat(") 1 2 ("), Err(ParseError::MissingComm));
    assert!(matches!(
        parse_pid_stat("abc (x) S 1"),
        Err(ParseError::BadNumber { name: "pid", .. })
    ));
    let bad_utime = "7 (x) S 1 0 0 0 0 0 0 0 0 0 1x 22 0 0 0 0 3 0 44 0 55";
    assert!(matches!(
        parse_pid_stat(bad_utime),
        Err(ParseError::BadNumber { name: "utime", .. })
    ));
    let negative_rss = "7 (x) Z 1 0 0 0 0 0 0 0 0 0 1 2 0 0 0 0 1 0 44 0 -1";
    assert_eq!(parse_pid_stat(negative_rss).unwrap().rss_pages, 0);
}

#[test]
fn cgroup_v2_kubernetes() {
    let lines = parse_pid_cgroup(fixture!("pid-cgroup-k8s-v2"));
    assert_eq!(lines.len(), 1);
    let v2 = cgroup_v2_path(&lines).unwrap();
    assert!(v2.starts_with("/kubepods.slice/kubepods-burstable.slice/"));
    assert!(v2.ends_with(".scope"));
    assert_eq!(cgroup_v1_path(&lines), None);
    assert_eq!(
        CgroupPath::best(Some(v2), None),
        Some(CgroupPath::V2(v2.into()))
    );
}

#[test]
fn cgroup_hybrid_prefers_deeper_v1() {
    let lines = parse_pid_cgroup(fixture!("pid-cgroup-hybrid-docker"));
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[1].hierarchy_id, 11);
    assert_eq!(lines[1].controllers, ["cpu", "cpuacct"]);
    let docker = "/docker/fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    assert_eq!(cgroup_v2_path(&lines), Some("/"));
    assert_eq!(cgroup_v1_path(&lines), Some(docker));
    let best = CgroupPath::best(Some("/"), Some(docker));
    assert_eq!(best, Some(CgroupPath::V1(docker.into())));
    let root = CgroupPath::best(Some("/"), Some("/"));
    assert_eq!(root, Some(CgroupPath::V2("/".into())));
}

#[test]
fn cgroup_v1_falls_back_past_root_paths() {
    // Seen in sandboxes: only the memory hierarchy is moved.
    let text = "4:memory:/process_api/6a9f\n2:cpuacct:/\n1:cpu:/\n0::/\n";
    let lines = parse_pid_cgroup(text);
    assert_eq!(cgroup_v1_path(&lines), Some("/process_api/6a9f"));
    let systemd_only = parse_pid_cgroup("1:name=systemd:/user.slice\n");
    assert_eq!(cgroup_v1_path(&systemd_only), Some("/user.slice"));
    let all_root = parse_pid_cgroup("3:cpu,cpuacct:/\n2:memory:/\n");
    assert_eq!(cgroup_v1_path(&all_root), Some("/"));
}

#[test]
fn cgroup_odd_lines() {
    let text = "0::/a:b/c (deleted)\nnot a line\nx::/y\n5:cpu:relative\n\n1:name=systemd:/s\n";
    let lines = parse_pid_cgroup(text);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].path, "/a:b/c");
    assert!(lines[0].controllers.is_empty());
    assert_eq!(lines[1].controllers, ["name=systemd"]);
}

#[test]
fn net_dev_current_kernel() {
    let devs = parse_net_dev(fixture!("net-dev-6.x"));
    let names: Vec<&str> = devs.iter().map(|d| d.iface.as_str()).collect();
    assert_eq!(names, ["lo", "ifb0", "ifb1", "eth0"]);
    assert_eq!(
        devs[3],
        NetDevice {
            iface: "eth0".into(),
            rx_bytes: 308689569,
            rx_packets: 11159,
            tx_bytes: 662557,
            tx_packets: 7308,
        }
    );
    assert_eq!(devs[0].rx_bytes, 4685053123);
}

#[test]
fn net_dev_old_kernel_and_garbage() {
    let devs = parse_net_dev(fixture!("net-dev-old"));
    let names: Vec<&str> = devs.iter().map(|d| d.iface.as_str()).collect();
    assert_eq!(names, ["lo", "vethab12cd34", "eth0"]);
    assert_eq!(devs[1].rx_bytes, 12345678901);
    assert_eq!(devs[1].tx_packets, 88888);
    assert_eq!(
        (
            devs[2].rx_bytes,
            devs[2].rx_packets,
            devs[2].tx_bytes,
            devs[2].tx_packets
        ),
        (123, 4, 567, 8)
    );
    // A name with a ':' (not allowed by current kernels) still splits at the last one.
    let devs = parse_net_dev("eth0:1: 1 2 0 0 0 0 0 0 3 4 0 0 0 0 0 0\n");
    assert_eq!(devs[0].iface, "eth0:1");
    assert_eq!(devs[0].tx_packets, 4);
    assert!(parse_net_dev("").is_empty());
}

#[test]
fn system_stat_current_and_old_kernels() {
    let cpu = parse_system_stat(fixture!("stat-6.x"));
    assert_eq!(cpu.cpu_count, 2);
    assert_eq!((cpu.user, cpu.system, cpu.idle), (72621, 23431, 99269));
    assert_eq!((cpu.iowait, cpu.softirq, cpu.steal), (1969, 624, 31));
    assert_eq!(cpu.total(), 72621 + 23431 + 99269 + 1969 + 624 + 31);
    assert_eq!(cpu.idle_total(), 99269 + 1969);

    let old = parse_system_stat(fixture!("stat-2.6"));
    assert_eq!(old.cpu_count, 2);
    assert_eq!(
        (old.user, old.nice, old.system, old.idle),
        (100, 5, 50, 800)
    );
    assert_eq!((old.iowait, old.irq, old.softirq), (20, 3, 2));
    assert_eq!((old.steal, old.guest, old.guest_nice), (0, 0, 0));
    assert_eq!(old.total(), 980);

    // Guest time is inside user time: not counted twice.
    let guest = parse_system_stat("cpu 10 0 0 10 0 0 0 0 5 0\n");
    assert_eq!(guest.total(), 20);
}

#[test]
fn system_stat_garbage() {
    assert_eq!(parse_system_stat(""), SystemCpu::default());
    let cpu = parse_system_stat("cpu 1 2 3\ncpu0 1 2 3 4\ncpux 1\ncpu 1 2 x 4\nintr 5\n");
    assert_eq!(cpu.total(), 0);
    assert_eq!(cpu.cpu_count, 1);
}

#[test]
fn meminfo_with_and_without_available() {
    let m = parse_meminfo(fixture!("meminfo-6.x"));
    assert!(m.total > 0);
    let available = m.available.unwrap();
    assert_eq!(m.used_bytes(), m.total - available);

    let old = parse_meminfo(fixture!("meminfo-3.x"));
    assert_eq!(old.available, None);
    assert_eq!(old.total, 2048000 * 1024);
    assert_eq!(
        old.used_bytes(),
        (2048000 - 512000 - 128000 - 256000) * 1024
    );

    let odd = parse_meminfo("MemTotal: 10 kB\nMemFree: 20 kB\nMemAvailable: x kB\nnope\n");
    assert_eq!(odd.available, None);
    assert_eq!(odd.used_bytes(), 0, "never negative");
}

#[test]
fn vanished_process_is_none_and_bad_root_names_the_path() {
    let root = Path::new("/proc");
    // Above pid_max (at most 2^22), so never a live process.
    assert_eq!(read_net_dev(root, 999_999_999).unwrap(), None);
    let missing = Path::new("/nonexistent-proc-root");
    let err = read_system(missing).unwrap_err();
    assert!(
        format!("{err:#}").contains("/nonexistent-proc-root/stat"),
        "{err:#}"
    );
    let err = list_pids(missing).unwrap_err();
    assert!(
        format!("{err:#}").contains("/nonexistent-proc-root"),
        "{err:#}"
    );
}

#[test]
fn schedstat_parses_the_three_columns() {
    let s = parse_schedstat("98027 2295963 2\n").unwrap();
    assert_eq!(
        s,
        Schedstat {
            on_cpu_ns: 98_027,
            run_delay_ns: 2_295_963,
            timeslices: 2
        }
    );
    // A kernel without CONFIG_SCHED_INFO, full u64 range, and extra columns.
    assert_eq!(parse_schedstat("0 0 0").unwrap(), Schedstat::default());
    let big = parse_schedstat("18446744073709551615 1 2 99\n").unwrap();
    assert_eq!((big.on_cpu_ns, big.run_delay_ns), (u64::MAX, 1));
    let sum = big + s;
    assert_eq!(
        (sum.on_cpu_ns, sum.run_delay_ns, sum.timeslices),
        (u64::MAX, 2_295_964, 4)
    );
}

#[test]
fn schedstat_garbage_is_an_error() {
    let missing = |text: &str, number| {
        assert!(
            matches!(parse_schedstat(text), Err(ParseError::MissingField { number: n, .. }) if n == number),
            "{text:?}"
        );
    };
    missing("", 1);
    missing("\n", 1);
    missing("12", 2);
    missing("12 34\n", 3);
    for bad in [
        "-1 2 3",
        "1 x 3",
        "1 2 3.5",
        "1 2 18446744073709551616",
        "\u{fffd} 2 3",
    ] {
        assert!(
            matches!(parse_schedstat(bad), Err(ParseError::BadNumber { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn schedstat_readers_see_own_threads_and_vanished_processes() {
    let proc_root = Path::new("/proc");
    let me = std::process::id() as i32;
    let leader = read_schedstat(proc_root, me).unwrap().unwrap();
    assert!(leader.timeslices > 0);
    // A second thread that has used CPU makes the process's sum exceed the leader's own.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(20) {
            std::hint::black_box(started.elapsed());
        }
        ready_tx.send(()).unwrap();
        done_rx.recv().unwrap();
    });
    ready_rx.recv().unwrap();
    let process = read_process_schedstat(proc_root, me).unwrap().unwrap();
    let leader = read_schedstat(proc_root, me).unwrap().unwrap();
    done_tx.send(()).unwrap();
    worker.join().unwrap();
    assert!(
        process.on_cpu_ns >= leader.on_cpu_ns + 10_000_000,
        "{process:?} vs {leader:?}"
    );
    assert!(process.timeslices > leader.timeslices);
    assert!(read_schedstat(proc_root, i32::MAX).unwrap().is_none());
    assert!(
        read_process_schedstat(proc_root, i32::MAX)
            .unwrap()
            .is_none()
    );
    // A file that is not a schedstat is an error that names the path.
    let root = std::env::temp_dir().join(format!("collector-schedstat-{me}"));
    std::fs::create_dir_all(root.join("7")).unwrap();
    std::fs::write(root.join("7/schedstat"), "oops\n").unwrap();
    let err = read_schedstat(&root, 7).unwrap_err();
    std::fs::remove_dir_all(&root).unwrap();
    assert!(format!("{err:#}").contains("7/schedstat"), "{err:#}");
}
