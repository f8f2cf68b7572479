use super::*;

/// Readings every 100 ms of `cores` each, from 0 to `seconds`.
fn steady(b: &mut TimelineBuilder, seconds: f64, cores: impl Fn(usize) -> f64) {
    for i in 0..(seconds * 10.0).round() as usize {
        let t = i as f64 * 0.1;
        b.record_span(Series::Cpu, t, t + 0.1, cores(i));
    }
}

/// What the builder holds of `series`, rate times seconds.
fn integral(b: &TimelineBuilder, series: Series) -> f64 {
    b.series[series as usize].iter().map(|b| b.sum).sum()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-9)
}

#[test]
fn a_short_run_keeps_every_interval() {
    let mut b = TimelineBuilder::new(0.1);
    steady(&mut b, 5.0, |i| if i < 25 { 0.0 } else { 2.0 });
    for i in 0..50 {
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
    assert_eq!(t.cpu_millicores_max[24..26], [0, 2000]);
    assert_eq!(t.memory_mib_max[49], 49);
    assert!(t.network_kib_per_sec.is_empty() && t.disk_kib_per_sec.is_empty());
}

#[test]
fn a_long_run_doubles_the_width_and_keeps_spikes() {
    let mut b = TimelineBuilder::new(0.1);
    // Two hours at 10 readings a second: idle but for one 100 ms spike to 8 cores.
    steady(&mut b, 7200.0, |i| if i == 40_000 { 8.0 } else { 0.5 });
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
    assert!(close(integral(&b, Series::Cpu), 71_999.0 * 0.05 + 0.8));
}

#[test]
fn a_bucket_without_a_reading_repeats_memory_and_has_no_rate() {
    let mut b = TimelineBuilder::new(1.0);
    b.record(Series::Memory, 0.5, 1048576.0);
    b.record_span(Series::Cpu, 0.0, 1.0, 1.0);
    b.record_span(Series::Network, 0.0, 1.0, 2048.0);
    b.record(Series::Memory, 5.5, 3.0 * 1048576.0);
    b.record_span(Series::Cpu, 5.0, 6.0, 3.0);
    let t = b.finish("c");
    assert_eq!(t.memory_mib, [1, 1, 1, 1, 1, 3]);
    // Nothing was read from 1 s to 5 s: nothing is counted there.
    assert_eq!(t.cpu_millicores, [1000, 0, 0, 0, 0, 3000]);
    assert_eq!(t.cpu_millicores_max, [1000, 0, 0, 0, 0, 3000]);
    assert_eq!(t.network_kib_per_sec, [2, 0, 0, 0, 0, 0]);
}

#[test]
fn containers_share_the_widest_width() {
    let mut short = TimelineBuilder::new(0.1);
    short.record_span(Series::Cpu, 0.9, 1.0, 1.0);
    let mut long = TimelineBuilder::new(0.1);
    steady(&mut long, 100.0, |_| 2.0);
    let t = assemble([("s", &short, 0.0), ("l", &long, 0.0)]).unwrap();
    assert_eq!(t.bucket_seconds, long.width());
    assert_eq!(t.containers[0].len(), (1.0 / t.bucket_seconds) as usize + 1);
    // Widened, the short one still holds its 0.1 CPU seconds.
    assert!((t.containers[0].cpu_seconds(t.bucket_seconds) - 0.1).abs() < 0.0005);
    assert!(assemble([("e", &TimelineBuilder::new(0.1), 0.0)]).is_none());
}

#[test]
fn pieces_of_a_run_merge_in_time() {
    let mut a = TimelineBuilder::new(1.0);
    a.record_span(Series::Cpu, 0.0, 1.0, 1.0);
    a.record_span(Series::Cpu, 1.0, 2.0, 4.0);
    let mut b = TimelineBuilder::new(1.0);
    b.record_span(Series::Cpu, 0.0, 1.0, 2.0);
    let (a, b) = (
        assemble([("c", &a, 0.0)]).unwrap(),
        assemble([("c", &b, 0.0), ("d", &b, 0.0)]).unwrap(),
    );
    // The later piece started 3 s after the earlier one; nothing was read in between.
    let m = merge(&a, &b, 3.0);
    assert_eq!(m.bucket_seconds, 1.0);
    assert_eq!(m.containers[0].cpu_millicores, [1000, 4000, 0, 2000]);
    assert_eq!(m.containers[0].cpu_millicores_max, [1000, 4000, 0, 2000]);
    assert_eq!(m.containers[1].name, "d");
    assert_eq!(m.containers[1].cpu_millicores, [0, 0, 0, 2000]);
}

#[test]
fn a_rate_read_every_interval_fills_the_interval() {
    let mut b = TimelineBuilder::new(1.0);
    b.record_span(Series::Cpu, 0.0, 6.0, 1.0);
    // Read at 5 s over the 5 s before it.
    b.record_span(Series::CpuPressure, 0.0, 5.0, 0.5);
    b.record_span(Series::CpuPressure, 1.0, f64::NAN, 0.9);
    b.record_span(Series::CpuPressure, 3.0, 2.0, 0.9);
    assert_eq!(b.finish("c").cpu_pressure_percent, [50, 50, 50, 50, 50, 0]);
    // A span past the last bucket widens the buckets first.
    let mut b = TimelineBuilder::new(0.1);
    b.record_span(Series::Network, 0.0, 100.0, 2048.0);
    assert!(b.width() > 0.1 && b.finish("c").len() <= MAX_POINTS);
    // One that ends on the last bucket's end does not.
    let mut b = TimelineBuilder::new(0.1);
    b.record_span(Series::Network, 0.0, MAX_POINTS as f64 * 0.1, 2048.0);
    assert_eq!((b.width(), b.finish("c").len()), (0.1, MAX_POINTS));
}

#[test]
fn starvation_series_where_known() {
    let mut b = TimelineBuilder::new(1.0);
    b.record_span(Series::Cpu, 0.0, 2.0, 1.0);
    b.record_span(Series::Wait, 0.0, 2.0, 0.25);
    b.record_span(Series::CpuPressure, 0.0, 2.0, 0.4);
    let t = b.finish("c");
    assert_eq!(t.run_queue_wait_millicores, [250, 250]);
    assert_eq!(t.cpu_pressure_percent, [40, 40]);
    let mut none = TimelineBuilder::new(1.0);
    none.record_span(Series::Cpu, 0.0, 2.0, 1.0);
    let t = none.finish("c");
    assert!(t.run_queue_wait_millicores.is_empty() && t.cpu_pressure_percent.is_empty());
}

#[test]
fn bad_readings_are_ignored() {
    let mut b = TimelineBuilder::new(0.0);
    assert_eq!(b.width(), 1.0);
    b.record(Series::Memory, f64::NAN, 1.0);
    b.record(Series::Memory, -1.0, 1.0);
    b.record(Series::Memory, 1.0, f64::INFINITY);
    b.record_span(Series::Cpu, -1.0, 1.0, 1.0);
    b.record_span(Series::Cpu, 0.0, f64::INFINITY, 1.0);
    b.record_span(Series::Cpu, 0.0, 1.0, f64::INFINITY);
    // A window of no length covers nothing.
    b.record_span(Series::Cpu, 1.0, 1.0, 1.0);
    assert!(b.finish("c").is_empty());
}

#[test]
fn spans_of_any_length_add_up_to_rate_times_time() {
    // Windows of 0.3 ms to 2.5 s from a fixed sequence, at rates from 0 to 3.9, across
    // boundaries and the doublings a long run brings.
    let mut b = TimelineBuilder::new(0.1);
    let (mut t, mut expected, mut seed) = (0.0, 0.0, 7u64);
    for _ in 0..5000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let span = 0.0003 + (seed >> 40) as f64 / (1u64 << 24) as f64 * 2.5;
        let rate = (seed % 40) as f64 / 10.0;
        b.record_span(Series::Cpu, t, t + span, rate);
        b.record_span(Series::Disk, t, t + span, rate * 1e6);
        expected += rate * span;
        t += span;
    }
    assert!(b.width() > 0.1, "{}", b.width());
    assert!(close(integral(&b, Series::Cpu), expected));
    assert!(close(integral(&b, Series::Disk), expected * 1e6));
    // On the wire too, to within half a millicore over one bucket.
    let c = b.finish("c");
    let half_unit = 0.0005 * b.width() * 1.001;
    assert!((c.cpu_seconds(b.width()) - expected).abs() <= half_unit);
}

/// Issue 21: `sh -c 'sleep 1'` read every 100 ms used 2.3 ms of CPU in all, 1.6 ms of it read
/// 3 ms after the first reading (541 millicores over those 3 ms).
#[test]
fn a_short_reading_at_a_high_rate_is_no_spike() {
    let mut b = TimelineBuilder::new(0.1);
    b.record_span(Series::Cpu, 0.0, 0.003, 0.541);
    let mut t = 0.003;
    for _ in 0..10 {
        b.record_span(Series::Cpu, t, t + 0.1, 0.0);
        t += 0.1;
    }
    // The last reading, as the command exits.
    b.record_span(Series::Cpu, t, t + 0.002, 0.35);
    let total = 0.541 * 0.003 + 0.35 * 0.002;
    let c = b.finish("c");
    assert_eq!(c.len(), 11);
    // 1.6 ms in a 100 ms bucket is 16 millicores; its largest reading is that CPU over
    // 10 ms at most, not 541.
    assert_eq!(c.cpu_millicores[0], 16);
    assert!(c.cpu_millicores_max[0] <= 163, "{:?}", c.cpu_millicores_max);
    assert!(c.cpu_millicores[1..10].iter().all(|m| *m == 0));
    assert!((c.cpu_seconds(b.width()) - total).abs() <= 0.02 * total);
    // A reading of a whole interval keeps its rate as its bucket's largest.
    let mut b = TimelineBuilder::new(0.1);
    b.record_span(Series::Cpu, 0.0, 0.1, 0.541);
    assert_eq!(b.finish("c").cpu_millicores_max, [541]);
}

#[test]
fn a_steady_rate_is_every_whole_bucket() {
    // Readings about every 100 ms (a tick late or early), never on a boundary.
    let mut b = TimelineBuilder::new(0.1);
    let mut t = 0.0;
    for late in [0.003, -0.002, 0.0, 0.001].iter().cycle().take(30) {
        b.record_span(Series::Cpu, t, t + 0.1 + late, 1.5);
        t += 0.1 + late;
    }
    let c = b.finish("c");
    let whole = (t / 0.1) as usize;
    assert_eq!(c.len(), whole + 1);
    assert_eq!(c.cpu_millicores[..whole], [1500; 30]);
    assert_eq!(c.cpu_millicores_max, [1500; 31]);
    // The last bucket, read over 15 ms of its 100: its CPU over the whole bucket.
    assert_eq!(c.cpu_millicores[whole], 225);
}

#[test]
fn doubling_and_widening_keep_the_total() {
    let mut b = TimelineBuilder::new(0.1);
    b.record_span(Series::Cpu, 0.0, 0.1, 1.0);
    b.record_span(Series::Cpu, 0.1, 0.2, 3.0);
    b.record_span(Series::Cpu, 0.2, 0.23, 2.0);
    let before = integral(&b, Series::Cpu);
    b.double();
    assert!(close(integral(&b, Series::Cpu), before));
    // The mean of the two halves' CPU over the doubled width, not of their readings.
    let c = b.finish("c");
    assert_eq!(c.cpu_millicores, [2000, 300]);
    assert_eq!(c.cpu_millicores_max, [3000, 2000]);
    b.widen_to(0.8);
    assert_eq!(b.width(), 0.8);
    assert!(close(integral(&b, Series::Cpu), before));
    assert_eq!(b.finish("c").cpu_millicores, [575]);
}

#[test]
fn merging_pieces_keeps_their_cpu_seconds() {
    // Pieces of different widths, the later one starting mid-bucket.
    let mut a = TimelineBuilder::new(0.1);
    steady(&mut a, 50.0, |i| (i % 7) as f64 * 0.3);
    let mut b = TimelineBuilder::new(0.1);
    steady(&mut b, 20.0, |i| (i % 5) as f64 * 0.7);
    let (a, b) = (
        assemble([("c", &a, 0.0)]).unwrap(),
        assemble([("c", &b, 1.3)]).unwrap(),
    );
    assert_ne!(a.bucket_seconds, b.bucket_seconds);
    let seconds = |t: &Timeline| t.containers[0].cpu_seconds(t.bucket_seconds);
    let m = merge(&a, &b, 61.75);
    let half_unit = |t: &Timeline| 0.0005 * t.bucket_seconds * 1.001;
    assert!(
        (seconds(&m) - seconds(&a) - seconds(&b)).abs() <= half_unit(&m),
        "{} + {} != {}",
        seconds(&a),
        seconds(&b),
        seconds(&m)
    );
    let c = &m.containers[0];
    assert!(
        c.cpu_millicores
            .iter()
            .zip(&c.cpu_millicores_max)
            .all(|(m, x)| m <= x)
    );
    assert_eq!(*c.cpu_millicores_max.iter().max().unwrap(), 2800);
}

#[test]
fn rounding_keeps_the_total() {
    // A near idle container: rounding each bucket up would triple its CPU, to nearest lose it.
    let points = round_keeping_total(&[0.3; 100]);
    assert_eq!(points.iter().sum::<u32>(), 30);
    assert!(points.iter().all(|p| *p <= 1));
    let values = [16.23, 0.0, 0.0, 2.5, 1999.6, 7.0, 0.49];
    let points = round_keeping_total(&values);
    for (p, v) in points.iter().zip(values) {
        assert!((f64::from(*p) - v).abs() < 1.0, "{points:?}");
    }
    let sum: f64 = values.iter().sum();
    assert!((f64::from(points.iter().sum::<u32>()) - sum).abs() <= 0.5);
    assert_eq!(round_keeping_total(&[-1.0, f64::NAN, 2.0]), [0, 0, 2]);
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
            b.record_span(Series::Cpu, t, t + 0.1, 3.999 + f64::from(c));
            b.record(Series::Memory, t, 60.0e9);
            if i % 50 == 0 {
                b.record_span(Series::Network, t, t + 5.0, 900.0e6);
                b.record_span(Series::Disk, t, t + 5.0, 900.0e6);
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
