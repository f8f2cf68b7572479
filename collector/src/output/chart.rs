//! Terminal charts of a run's timeline: one line of Unicode block sparklines for CPU and one
//! for memory per container, printed under the table by `collector run` and `collector
//! show`. Each column is the largest value of the points it covers, so a spike always shows.

use std::fmt::Write as _;

use summary::timeline::Timeline;
use summary::units::bytes;

/// Most columns of a sparkline.
pub const WIDTH: usize = 60;
const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// `values` squeezed into at most `width` columns (the maximum of each group), drawn
/// against `top` (the lowest block is zero, the highest `top`).
pub fn sparkline(values: &[u32], width: usize, top: u32) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let per = values.len().div_ceil(width);
    values
        .chunks(per)
        .map(|group| {
            let v = group.iter().copied().max().unwrap_or(0);
            if top == 0 || v == 0 {
                BLOCKS[0]
            } else {
                let level = (u64::from(v) * 7).div_ceil(u64::from(top)).min(7);
                BLOCKS[level as usize]
            }
        })
        .collect()
}

/// The chart of a run: per container, CPU (against its peak in cores) and memory (against
/// its peak), with the time each column covers. Empty without a timeline.
pub fn timeline_chart(t: Option<&Timeline>) -> String {
    let Some(t) = t.filter(|t| !t.containers.is_empty()) else {
        return String::new();
    };
    let mut out = String::new();
    let points = t.containers.iter().map(|c| c.len()).max().unwrap_or(0);
    let per = points.div_ceil(WIDTH).max(1);
    let _ = writeln!(
        out,
        "\nOver time (one column per {}; the highest block is the container's largest sample):",
        seconds(t.bucket_seconds * per as f64)
    );
    let name_width = t
        .containers
        .iter()
        .map(|c| c.name.chars().count().min(24))
        .max()
        .unwrap_or(0);
    for c in &t.containers {
        // Columns of all containers cover the same time: pad by the start offset.
        let lead = ((c.start_seconds / t.bucket_seconds) as usize / per).min(WIDTH);
        let pad = |line: String| format!("{}{line}", " ".repeat(lead));
        let name: String = c.name.chars().take(24).collect();
        let cpu_top = c.cpu_millicores_max.iter().copied().max().unwrap_or(0);
        let mem_top = c.memory_mib_max.iter().copied().max().unwrap_or(0);
        let _ = writeln!(
            out,
            "  {name:<name_width$}  cpu {}  sampled peak {:.2} cores",
            pad(sparkline(&c.cpu_millicores_max, WIDTH - lead, cpu_top)),
            f64::from(cpu_top) / 1000.0
        );
        let _ = writeln!(
            out,
            "  {:<name_width$}  mem {}  sampled peak {}",
            "",
            pad(sparkline(&c.memory_mib_max, WIDTH - lead, mem_top)),
            bytes(f64::from(mem_top) * 1048576.0)
        );
    }
    out
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

#[cfg(test)]
mod tests {
    use summary::timeline::ContainerTimeline;

    use super::*;

    #[test]
    fn sparklines_keep_spikes_and_scale_to_the_peak() {
        assert_eq!(sparkline(&[0, 1000, 2000, 4000], 10, 4000), "▁▃▅█");
        // 8 points in 4 columns: each the max of two, so the lone spike survives.
        assert_eq!(sparkline(&[0, 0, 0, 8, 0, 0, 0, 0], 4, 8), "▁█▁▁");
        assert_eq!(sparkline(&[5, 5], 4, 0), "▁▁");
        assert_eq!(sparkline(&[], 4, 1), "");
    }

    #[test]
    fn chart_of_a_fixed_timeline() {
        let t = Timeline {
            bucket_seconds: 0.5,
            containers: vec![
                ContainerTimeline {
                    name: "build".into(),
                    start_seconds: 0.0,
                    cpu_millicores: vec![0, 0, 2000, 2000, 1000, 0],
                    cpu_millicores_max: vec![0, 0, 2000, 2000, 1200, 0],
                    memory_mib: vec![10, 10, 50, 150, 300, 20],
                    memory_mib_max: vec![10, 10, 60, 200, 320, 20],
                    ..Default::default()
                },
                ContainerTimeline {
                    name: "db".into(),
                    start_seconds: 1.0,
                    cpu_millicores: vec![100, 100],
                    cpu_millicores_max: vec![100, 100],
                    memory_mib: vec![64, 64],
                    memory_mib_max: vec![64, 64],
                    ..Default::default()
                },
            ],
        };
        let chart = timeline_chart(Some(&t));
        let expected = "\nOver time (one column per 500 ms; the highest block is the container's largest sample):\n  \
                        build  cpu ▁▁██▆▁  sampled peak 2.00 cores\n         mem ▂▂▃▆█▂  sampled peak 320.0 MiB\n  \
                        db     cpu   ██  sampled peak 0.10 cores\n         mem   ██  sampled peak 64.0 MiB\n";
        assert_eq!(chart, expected, "{chart}");
        assert_eq!(timeline_chart(None), "");
    }
}
