//! Server-rendered SVG line charts: axes with units, a legend, the limit drawn as a dashed
//! line, one marked point per run, and markers for OOM kills and starved runs. Pure: data
//! in, markup out. Colours come from the page's stylesheet classes (`s0`..`s3`, `limit`,
//! `oom`, `starved`), so the markup needs no inline style.

use std::fmt::Write as _;

use super::html::esc;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    pub name: &'a str,
    /// One value per x position (`None`: no value there).
    pub values: Vec<Option<f64>>,
}

/// A chart: series over shared x positions.
#[derive(Debug, Clone, Default)]
pub struct Chart<'a> {
    /// For the reader and for screen readers (`<title>`).
    pub title: &'a str,
    /// The unit of the y axis, shown beside its labels and in each point's tooltip.
    pub unit: &'a str,
    /// Label of each x position (a run's time, or seconds into the run).
    pub x_labels: Vec<String>,
    /// What the x axis is.
    pub x_title: &'a str,
    pub series: Vec<Series<'a>>,
    /// The limit at each x position, drawn as a dashed step line where known.
    pub limit: Vec<Option<f64>>,
    /// x positions of runs with OOM kills and of starved runs.
    pub oom: Vec<usize>,
    pub starved: Vec<usize>,
    /// Draw a circle at each value (one per run); off for dense timelines.
    pub points: bool,
}

const W: f64 = 720.0;
const H: f64 = 260.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 66.0;

/// A "nice" step for about `n` ticks up to `max` (1, 2 or 5 times a power of ten).
pub fn nice_step(max: f64, n: usize) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let raw = max / n.max(1) as f64;
    let pow = 10f64.powf(raw.log10().floor());
    let m = raw / pow;
    let f = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    f * pow
}

/// A tick label: no more digits than the step needs.
fn tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

/// The chart as an `<svg>` element.
pub fn line_chart(c: &Chart<'_>) -> String {
    let n = c
        .series
        .iter()
        .map(|s| s.values.len())
        .chain([c.limit.len(), c.x_labels.len()])
        .max()
        .unwrap_or(0);
    let max = c
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .chain(c.limit.iter().flatten())
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let step = nice_step(max * 1.05, 4);
    let top = (max * 1.05 / step).ceil().max(1.0) * step;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |i: usize| {
        if n <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| TOP + plot_h * (1.0 - (v / top).clamp(0.0, 1.0));
    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(c.title)
    );
    // Y axis: grid lines and labels with the unit.
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        let yy = y(v);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{} {}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            tick(v, step),
            esc(c.unit)
        );
        v += step;
    }
    // X axis: at most 6 labels, evenly spread.
    let _ = write!(
        s,
        r#"<line class="axis" x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
        TOP + plot_h,
        W - RIGHT,
        TOP + plot_h
    );
    if n > 0 {
        // Every `every`-th label and the last, without one too close before the last.
        let every = n.div_ceil(5).max(1);
        let shown = (0..n).filter(|i| {
            *i == n - 1 || (i % every == 0 && (*i == 0 || n - 1 - i >= every.div_ceil(2)))
        });
        for i in shown {
            let anchor = match i {
                0 if n > 1 => "start",
                i if i == n - 1 && n > 1 => "end",
                _ => "middle",
            };
            if let Some(label) = c.x_labels.get(i) {
                let _ = write!(
                    s,
                    r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
                    x(i),
                    TOP + plot_h + 16.0,
                    esc(label)
                );
            }
        }
    }
    let _ = write!(
        s,
        r#"<text class="axis-title" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        TOP + plot_h + 32.0,
        esc(c.x_title)
    );
    // The limit, as a dashed step line.
    let mut d = String::new();
    for (i, l) in c.limit.iter().enumerate() {
        if let Some(l) = l {
            let cmd = if d.is_empty() || c.limit[i - 1].is_none() {
                'M'
            } else {
                'L'
            };
            let _ = write!(d, "{cmd}{:.1},{:.1} ", x(i), y(*l));
        }
    }
    if !d.is_empty() {
        let _ = write!(s, r#"<path class="limit" d="{}"/>"#, d.trim_end());
    }
    // Markers under the lines: OOM kills and starved runs.
    for &i in c.starved.iter().filter(|i| **i < n) {
        let _ = write!(
            s,
            r#"<rect class="starved" x="{:.1}" y="{TOP}" width="6" height="{plot_h}"><title>starved</title></rect>"#,
            x(i) - 3.0
        );
    }
    for &i in c.oom.iter().filter(|i| **i < n) {
        let (xx, yy) = (x(i), TOP + 8.0);
        let _ = write!(
            s,
            r#"<path class="oom" d="M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}"><title>OOM kill</title></path>"#,
            xx - 5.0,
            yy - 5.0,
            xx + 5.0,
            yy + 5.0,
            xx - 5.0,
            yy + 5.0,
            xx + 5.0,
            yy - 5.0
        );
    }
    for (k, series) in c.series.iter().enumerate() {
        let class = format!("s{}", k % 4);
        let mut d = String::new();
        let mut pen_up = true;
        for (i, v) in series.values.iter().enumerate() {
            match v {
                Some(v) if v.is_finite() => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen_up { 'M' } else { 'L' },
                        x(i),
                        y(*v)
                    );
                    pen_up = false;
                }
                _ => pen_up = true,
            }
        }
        if !d.is_empty() {
            let _ = write!(s, r#"<path class="line {class}" d="{}"/>"#, d.trim_end());
        }
        if c.points {
            for (i, v) in series.values.iter().enumerate() {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    let label = c.x_labels.get(i).map_or("", String::as_str);
                    let _ = write!(
                        s,
                        r#"<circle class="pt {class}" data-series="{k}" cx="{:.1}" cy="{:.1}" r="3.5"><title>{}: {} {:.3} {}</title></circle>"#,
                        x(i),
                        y(v),
                        esc(label),
                        esc(series.name),
                        v,
                        esc(c.unit)
                    );
                }
            }
        }
    }
    // Legend, one row under the axis title.
    #[derive(Clone, Copy)]
    enum Key {
        Line(usize),
        Limit,
        Oom,
        Starved,
    }
    let mut keys: Vec<(Key, &str)> = c
        .series
        .iter()
        .enumerate()
        .map(|(k, series)| (Key::Line(k), series.name))
        .collect();
    if c.limit.iter().any(Option::is_some) {
        keys.push((Key::Limit, "limit"));
    }
    if !c.oom.is_empty() {
        keys.push((Key::Oom, "OOM kill"));
    }
    if !c.starved.is_empty() {
        keys.push((Key::Starved, "starved run"));
    }
    let mut lx = LEFT;
    let ly = H - 8.0;
    for (key, name) in keys {
        let (y0, y1) = (ly - 9.0, ly + 1.0);
        let _ = match key {
            Key::Line(k) => write!(
                s,
                r#"<line class="line s{}" x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
                k % 4,
                ly - 4.0,
                lx + 16.0,
                ly - 4.0
            ),
            Key::Limit => write!(
                s,
                r#"<line class="limit" x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
                ly - 4.0,
                lx + 16.0,
                ly - 4.0
            ),
            Key::Oom => write!(
                s,
                r#"<path class="oom" d="M{:.1},{y0:.1} L{:.1},{y1:.1} M{:.1},{y1:.1} L{:.1},{y0:.1}"/>"#,
                lx + 3.0,
                lx + 13.0,
                lx + 3.0,
                lx + 13.0
            ),
            Key::Starved => write!(
                s,
                r#"<rect class="starved" x="{lx:.1}" y="{y0:.1}" width="16" height="10"/>"#
            ),
        };
        let _ = write!(
            s,
            r#"<text class="legend" x="{:.1}" y="{ly:.1}">{}</text>"#,
            lx + 22.0,
            esc(name)
        );
        lx += 36.0 + 8.0 * name.chars().count() as f64;
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_nice() {
        assert_eq!(nice_step(10.0, 4), 5.0);
        assert_eq!(nice_step(3.9, 4), 1.0);
        assert_eq!(nice_step(0.42, 4), 0.2);
        assert_eq!(nice_step(0.0, 4), 1.0);
        assert_eq!(nice_step(f64::NAN, 4), 1.0);
        assert_eq!(tick(0.2, 0.1), "0.2");
        assert_eq!(tick(500.0, 100.0), "500");
    }

    #[test]
    fn one_point_per_value_limit_legend_and_markers() {
        let c = Chart {
            title: "CPU <per run>",
            unit: "cores",
            x_labels: (0..5).map(|i| format!("run {i}")).collect(),
            x_title: "run",
            series: vec![
                Series {
                    name: "p95",
                    values: vec![Some(1.0), Some(2.0), None, Some(1.5), Some(0.5)],
                },
                Series {
                    name: "peak",
                    values: vec![Some(2.0); 5],
                },
            ],
            limit: vec![Some(2.0), Some(2.0), Some(4.0), Some(4.0), None],
            oom: vec![1],
            starved: vec![3, 99],
            points: true,
        };
        let svg = line_chart(&c);
        assert_eq!(svg.matches(r#"class="pt s0""#).count(), 4);
        assert_eq!(svg.matches(r#"class="pt s1""#).count(), 5);
        assert_eq!(svg.matches(r#"<path class="limit""#).count(), 1);
        assert!(svg.contains("CPU &lt;per run&gt;"));
        assert!(svg.contains(">limit</text>") && svg.contains(">OOM kill</text>"));
        assert_eq!(
            svg.matches(r#"<rect class="starved" x="#).count(),
            2,
            "one marker, one swatch"
        );
        assert!(svg.contains(" cores</text>"));
        // No data: still a valid chart.
        let empty = line_chart(&Chart::default());
        assert!(empty.starts_with("<svg") && empty.ends_with("</svg>"));
    }
}
