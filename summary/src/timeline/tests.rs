use super::*;

#[test]
fn a_short_run_keeps_every_interval() {
    let mut b = TimelineBuilder::new(0.1);
    for i in 0..50 {
        b.record(
            Series::Cpu,
            i as f64 * 0.1 + 0.05,
            if i < 25 { 0.0 } else { 2.0 },
        );
        b.record(
            Series::Memory,
            i as f64 * 0.1 + 0.05,
            (i as f64) * 1048576.0,
        );
    }
    let t = b.finish("c");
    assert_eq!(b.width(), 0.1);
    assert_eq!(t.len(), 50);
    assert_eq!(t.cpu_millicores[..25], [0; 25]);
    assert_eq!(t.cpu_millicores[25..], [2000; 25]);
    assert_eq!(t.memory_mib_max[49], 49);
    assert!(t.network_kib_per_sec.is_empty() && t.disk_kib_per_sec.is_empty());
}

#[test]
fn a_long_run_doubles_the_width_and_keeps_spikes() {
    let mut b = TimelineBuilder::new(0.1);
    // Two hours at 10 readings a second: idle but for one 100 ms spike to 8 cores.
    for i in 0..72_000u32 {
        let t = f64::from(i) * 0.1;
        let cores = if i == 40_000 { 8.0 } else { 0.5 };
        b.record(Series::Cpu, t, cores);
    }
    let t = b.finish("c");
    assert!(
        t.len() <= MAX_POINTS && t.len() > MAX_POINTS / 2,
        "{}",
        t.len()
    );
    assert_eq!(b.width(), 25.6);
    assert_eq!(*t.cpu_millicores_max.iter().max().unwrap(), 8000);
    // The spike moves its bucket's mean by a little, never to 8 cores.
    assert!(
        t.cpu_millicores.iter().all(|m| *m <= 530),
        "{:?}",
        t.cpu_millicores
    );
}

#[test]
fn buckets_without_a_reading_repeat_the_last_one() {
    let mut b = TimelineBuilder::new(1.0);
    b.record(Series::Cpu, 0.5, 1.0);
    b.record(Series::Network, 0.5, 2048.0);
    b.record(Series::Cpu, 5.5, 3.0);
    let t = b.finish("c");
    assert_eq!(t.cpu_millicores, [1000, 1000, 1000, 1000, 1000, 3000]);
    assert_eq!(t.network_kib_per_sec, [2; 6]);
}

#[test]
fn containers_share_the_widest_width() {
    let mut short = TimelineBuilder::new(0.1);
    short.record(Series::Cpu, 1.0, 1.0);
    let mut long = TimelineBuilder::new(0.1);
    for i in 0..1000 {
        long.record(Series::Cpu, f64::from(i) * 0.1, 2.0);
    }
    let t = assemble([("s", &short, 0.0), ("l", &long, 0.0)]).unwrap();
    assert_eq!(t.bucket_seconds, long.width());
    assert_eq!(t.containers[0].len(), (1.0 / t.bucket_seconds) as usize + 1);
    assert!(assemble([("e", &TimelineBuilder::new(0.1), 0.0)]).is_none());
}

#[test]
fn pieces_of_a_run_merge_in_time() {
    let mut a = TimelineBuilder::new(1.0);
    a.record(Series::Cpu, 0.5, 1.0);
    a.record(Series::Cpu, 1.5, 4.0);
    let mut b = TimelineBuilder::new(1.0);
    b.record(Series::Cpu, 0.5, 2.0);
    let (a, b) = (
        assemble([("c", &a, 0.0)]).unwrap(),
        assemble([("c", &b, 0.0), ("d", &b, 0.0)]).unwrap(),
    );
    // The later piece started 3 s after the earlier one.
    let m = merge(&a, &b, 3.0);
    assert_eq!(m.bucket_seconds, 1.0);
    assert_eq!(m.containers[0].cpu_millicores, [1000, 4000, 4000, 2000]);
    assert_eq!(m.containers[0].cpu_millicores_max, [1000, 4000, 4000, 2000]);
    assert_eq!(m.containers[1].name, "d");
    assert_eq!(m.containers[1].cpu_millicores, [0, 0, 0, 2000]);
}

#[test]
fn a_rate_read_every_interval_fills_the_interval() {
    let mut b = TimelineBuilder::new(1.0);
    b.record(Series::Cpu, 0.5, 1.0);
    b.record(Series::Cpu, 5.5, 1.0);
    // Read at 5 s over the 5 s before it.
    b.record_span(Series::CpuPressure, 0.0, 4.99, 0.5);
    b.record_span(Series::CpuPressure, 1.0, f64::NAN, 0.9);
    b.record_span(Series::CpuPressure, 3.0, 2.0, 0.9);
    assert_eq!(b.finish("c").cpu_pressure_percent, [50, 50, 50, 50, 50, 50]);
    // A span past the last bucket widens the buckets first.
    let mut b = TimelineBuilder::new(0.1);
    b.record_span(Series::Network, 0.0, 100.0, 2048.0);
    assert!(b.width() > 0.1 && b.finish("c").len() <= MAX_POINTS);
}

#[test]
fn starvation_series_where_known() {
    let mut b = TimelineBuilder::new(1.0);
    b.record(Series::Cpu, 0.5, 1.0);
    b.record(Series::Wait, 0.5, 0.25);
    b.record(Series::CpuPressure, 0.5, 0.4);
    b.record(Series::Cpu, 1.5, 1.0);
    let t = b.finish("c");
    assert_eq!(t.run_queue_wait_millicores, [250, 250]);
    assert_eq!(t.cpu_pressure_percent, [40, 40]);
    let mut none = TimelineBuilder::new(1.0);
    none.record(Series::Cpu, 0.5, 1.0);
    let t = none.finish("c");
    assert!(t.run_queue_wait_millicores.is_empty() && t.cpu_pressure_percent.is_empty());
}

#[test]
fn bad_readings_are_ignored() {
    let mut b = TimelineBuilder::new(0.0);
    assert_eq!(b.width(), 1.0);
    b.record(Series::Cpu, f64::NAN, 1.0);
    b.record(Series::Cpu, -1.0, 1.0);
    b.record(Series::Cpu, 1.0, f64::INFINITY);
    assert!(b.finish("c").is_empty());
}

#[test]
fn cpu_seconds_of_a_timeline() {
    let c = ContainerTimeline {
        cpu_millicores: vec![16, 0, 0, 1500, 7],
        ..Default::default()
    };
    assert!((c.cpu_seconds(0.1) - 0.1523).abs() < 1e-12);
    assert!((c.cpu_seconds(25.6) - 38.9888).abs() < 1e-9);
    assert_eq!(ContainerTimeline::default().cpu_seconds(0.1), 0.0);
}

#[test]
fn a_two_hour_job_of_five_containers_fits_the_budget() {
    let mut builders = Vec::new();
    for c in 0..5 {
        let mut b = TimelineBuilder::new(0.1);
        for i in 0..72_000u32 {
            let t = f64::from(i) * 0.1;
            b.record(Series::Cpu, t, 3.999 + f64::from(c));
            b.record(Series::Memory, t, 60.0e9);
            if i % 50 == 0 {
                b.record(Series::Network, t, 900.0e6);
                b.record(Series::Disk, t, 900.0e6);
            }
        }
        builders.push((format!("container-{c}"), b));
    }
    let t = assemble(builders.iter().map(|(n, b)| (n.as_str(), b, 0.0))).unwrap();
    let json = serde_json::to_string(&t).unwrap();
    println!(
        "two hours, five containers: {} points of {} s each, {} bytes of JSON",
        t.containers[0].len(),
        t.bucket_seconds,
        json.len()
    );
    assert!(json.len() <= 64 << 10, "{} bytes", json.len());
}
