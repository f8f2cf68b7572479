//! The run page: one stored run's containers, verdicts, top commands and timeline charts.

use std::fmt::Write as _;

use summary::StoredRun;
use summary::units::bytes;

use super::html::{cores, duration, esc, job_href, num, page, pct, secs, short_time};
use super::svg::{Chart, Series, line_chart};

/// The page of `run`.
pub fn run(r: &StoredRun) -> String {
    let s = &r.payload;
    let repo = summary::canonical_repository(&r.organization, &r.repository);
    let href = job_href(&r.organization, repo, &r.workflow, &r.job);
    let mut b = String::with_capacity(32 * 1024);
    let run_name = if r.run_id.is_empty() {
        format!("#{}", r.id)
    } else {
        r.run_id.clone()
    };
    let _ = write!(
        b,
        r#"<p class="crumbs"><a href="/">Fleet</a> / {} / {} / {} / <a href="{}">{}</a></p><h1>Run {}</h1>"#,
        esc(&r.organization),
        esc(repo),
        esc(&r.workflow),
        esc(&href),
        esc(&r.job),
        esc(&run_name)
    );
    let _ = write!(
        b,
        "<p>Started {} UTC, ran {}, {} samples; CPU measured by {}{}.</p>",
        esc(&short_time(&s.start_time)),
        duration(s.duration_seconds),
        s.sample_count,
        s.cpu_source.as_str(),
        s.collector
            .as_ref()
            .map(|c| format!(", collector {} in {} mode", esc(&c.version), esc(&c.mode)))
            .unwrap_or_default()
    );
    let verdict = s
        .verdict
        .clone()
        .or_else(|| summary::starvation::job_verdict(&s.containers));
    if let Some(v) = verdict {
        let class = if v.starved { "bad" } else { "good" };
        let _ = write!(
            b,
            r#"<p id="verdict"><span class="badge {class}">{}</span> {}</p>"#,
            if v.starved { "starved" } else { "not starved" },
            esc(&v.text)
        );
    }
    // Containers.
    b.push_str(r#"<h2>Containers</h2><div class="scroll"><table id="container-table"><thead><tr><th>Container</th><th class="num">CPU p95 / peak</th><th class="num">CPU limit</th><th class="num">CPU time</th><th class="num">Memory peak</th><th class="num">Memory limit</th><th class="num">OOM kills</th><th class="num">Throttled</th><th class="num">Waiting</th><th>Verdict</th></tr></thead><tbody>"#);
    for c in &s.containers {
        let limits = c.limits.unwrap_or_default();
        let peak = c.memory_peak_bytes.unwrap_or(c.memory_bytes.peak as u64);
        let _ = write!(
            b,
            r#"<tr><td class="name">{}</td><td class="num">{} / {}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="wide">{}</td></tr>"#,
            esc(&c.name),
            cores(c.cpu_cores.p95),
            cores(c.cpu_cores.peak),
            limits.cpu_cores.map_or_else(|| "none".to_owned(), cores),
            secs(c.cpu_seconds),
            bytes(peak as f64),
            limits
                .memory_bytes
                .map_or_else(|| "none".to_owned(), |b| bytes(b as f64)),
            c.oom_kills,
            c.cpu_throttling.map_or_else(
                || "–".to_owned(),
                |t| format!(
                    "{} ({} of periods)",
                    secs(t.throttled_seconds),
                    pct(t.throttled_period_share)
                )
            ),
            c.run_queue_wait.as_ref().map_or_else(
                || "–".to_owned(),
                |w| format!("{} ({})", secs(w.seconds), pct(w.share))
            ),
            c.verdict
                .as_ref()
                .map_or_else(String::new, |v| esc(&v.text)),
        );
    }
    if s.containers.is_empty() {
        b.push_str(
            r#"<tr><td colspan="10" class="muted">No per-container figures in this run.</td></tr>"#,
        );
    }
    b.push_str("</tbody></table></div>");
    held_back_by(&mut b, s);
    // Top commands, else top processes.
    if !s.top_commands.is_empty() {
        b.push_str(r#"<h2>Top commands</h2><div class="scroll"><table id="command-table"><thead><tr><th>Command</th><th class="num">Processes</th><th class="num">CPU time</th><th class="num">Largest peak RSS</th><th class="num">Longest lived</th></tr></thead><tbody>"#);
        for c in &s.top_commands {
            let _ = write!(
                b,
                r#"<tr><td class="name">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                esc(&c.name),
                c.processes,
                secs(c.cpu_seconds),
                bytes(c.peak_rss_bytes as f64),
                duration(c.longest_seconds)
            );
        }
        b.push_str("</tbody></table></div>");
    } else if !s.top_cpu_processes.is_empty() {
        b.push_str(r#"<h2>Top processes by CPU</h2><div class="scroll"><table id="command-table"><thead><tr><th>Process</th><th class="num">PID</th><th class="num">Peak CPU</th><th class="num">CPU time</th><th class="num">Peak RSS</th></tr></thead><tbody>"#);
        for p in &s.top_cpu_processes {
            let _ = write!(
                b,
                r#"<tr><td class="name">{}</td><td class="num">{}</td><td class="num">{} %</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                esc(&p.name),
                p.pid,
                num(p.peak_cpu_percent, 0),
                secs(p.cpu_seconds),
                bytes(p.peak_mem_rss_bytes as f64)
            );
        }
        b.push_str("</tbody></table></div>");
    }
    // Timeline.
    if let Some(t) = s.timeline.as_ref().filter(|t| !t.containers.is_empty()) {
        b.push_str(r#"<h2>Over time</h2><section class="charts" aria-label="Timeline">"#);
        for c in &t.containers {
            let labels: Vec<String> = (0..c.len())
                .map(|i| format!("{:.0}", c.start_seconds + i as f64 * t.bucket_seconds))
                .collect();
            let limits = s
                .containers
                .iter()
                .find(|x| x.name == c.name)
                .and_then(|x| x.limits)
                .unwrap_or_default();
            let series = |v: &[u32], k: f64| v.iter().map(|x| Some(f64::from(*x) * k)).collect();
            let series_of = series;
            let labels_for_wait = labels.clone();
            let cpu = line_chart(&Chart {
                title: "CPU over the run: mean and largest sample per point",
                unit: "cores",
                x_labels: labels.clone(),
                x_title: "seconds into the run",
                series: vec![
                    Series {
                        name: "mean",
                        values: series(&c.cpu_millicores, 0.001),
                    },
                    Series {
                        name: "max",
                        values: series(&c.cpu_millicores_max, 0.001),
                    },
                ],
                limit: vec![limits.cpu_cores; c.len()],
                ..Chart::default()
            });
            let mem = line_chart(&Chart {
                title: "Memory over the run: mean and largest sample per point",
                unit: "MiB",
                x_labels: labels,
                x_title: "seconds into the run",
                series: vec![
                    Series {
                        name: "mean",
                        values: series(&c.memory_mib, 1.0),
                    },
                    Series {
                        name: "max",
                        values: series(&c.memory_mib_max, 1.0),
                    },
                ],
                limit: vec![limits.memory_bytes.map(|b| b as f64 / 1_048_576.0); c.len()],
                ..Chart::default()
            });
            // Starvation where the summary has it: tasks waiting for a CPU on average
            // (run-queue wait, seconds per second) and the share of time some task stalled
            // on CPU (PSI), both over the run.
            let starvation = (!c.run_queue_wait_millicores.is_empty()
                || !c.cpu_pressure_percent.is_empty())
            .then(|| {
                let mut series = Vec::new();
                if !c.run_queue_wait_millicores.is_empty() {
                    series.push(Series {
                        name: "tasks waiting for a CPU",
                        values: series_of(&c.run_queue_wait_millicores, 0.001),
                    });
                }
                if !c.cpu_pressure_percent.is_empty() {
                    series.push(Series {
                        name: "CPU pressure (share of time)",
                        values: series_of(&c.cpu_pressure_percent, 0.01),
                    });
                }
                line_chart(&Chart {
                    title: "Waiting for a CPU over the run",
                    unit: "",
                    x_labels: labels_for_wait.clone(),
                    x_title: "seconds into the run",
                    series,
                    ..Chart::default()
                })
            });
            let name = esc(&c.name);
            let _ = write!(
                b,
                r#"<figure class="timeline"><figcaption>{name}: CPU</figcaption>{cpu}</figure><figure class="timeline"><figcaption>{name}: memory</figcaption>{mem}</figure>"#
            );
            if let Some(chart) = starvation {
                let _ = write!(
                    b,
                    r#"<figure class="timeline wait"><figcaption>{name}: waiting for a CPU</figcaption>{chart}</figure>"#
                );
            }
        }
        b.push_str("</section>");
    }
    let _ = write!(
        b,
        r#"<p class="muted">Stored run {} received {} UTC. The whole summary: <code>GET /api/v1/metrics/repo/…</code> with the read token.</p>"#,
        r.id,
        esc(&short_time(&r.received_at))
    );
    page(&format!("Run {run_name} of {}", r.job), true, &b)
}

/// Who held the CPU while each container waited a second or more (eBPF attribution).
fn held_back_by(b: &mut String, s: &summary::RunSummary) {
    let waits = summary::starvation::held_back_rows(s);
    if waits.is_empty() {
        return;
    }
    b.push_str(r#"<h2>Held back by</h2><div class="scroll"><table id="behind-table"><thead><tr><th>Waited for a CPU</th><th>Held back by</th><th>Which is</th><th>Job</th><th class="num">Wait</th><th class="num">Of its wait</th></tr></thead><tbody>"#);
    for (c, w) in waits {
        for h in &w.behind {
            let _ = write!(
                b,
                r#"<tr><td class="name">{}</td><td class="name">{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                esc(&c.name),
                esc(&h.container),
                h.kind.label(),
                esc(h.job.as_deref().unwrap_or("–")),
                secs(h.seconds),
                pct(h.seconds / w.seconds)
            );
        }
    }
    b.push_str("</tbody></table></div>");
}
