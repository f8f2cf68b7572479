//! A Markdown report of a run, for a CI job summary (`$GITHUB_STEP_SUMMARY`, Forgejo's
//! equivalent) or a comment: the containers' table with their verdicts, the job's verdict,
//! the top commands, and the timeline as Mermaid `xychart-beta` charts, which GitHub and
//! Forgejo render without any image service. Short by default: one screen.

use std::fmt::Write as _;

use summary::units::bytes;
use summary::{RunSummary, timeline::Timeline};

/// Most containers drawn in a chart (the ones with the most CPU), and most points per line.
const CHART_CONTAINERS: usize = 4;
const CHART_POINTS: usize = 60;
/// Most top commands listed.
const COMMANDS: usize = 5;

/// The report of one run under a `###` heading.
pub fn report(headline: &str, s: &RunSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### {}\n", escape_outside_code(headline));
    if let Some(v) = &s.verdict {
        // One sentence: the text says "not starved" itself.
        if v.starved {
            let _ = writeln!(out, "**Starved**: {}\n", escape(&v.text));
        } else {
            let _ = writeln!(out, "{}\n", escape(&capitalized(&v.text)));
        }
    }
    let _ = writeln!(
        out,
        "| container | CPU s | avg cores | p95 | peak | memory peak | verdict |\n|---|---:|---:|---:|---:|---:|---|"
    );
    for c in &s.containers {
        let peak = c
            .memory_peak_bytes
            .map_or(c.memory_bytes.peak, |p| p as f64);
        let verdict = c.verdict.as_ref().map_or(String::new(), |v| {
            if v.starved {
                format!("**{}**", escape(&v.text))
            } else {
                escape(&v.text)
            }
        });
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {verdict} |",
            escape(&c.name),
            c.cpu_seconds,
            c.cpu_cores.avg,
            c.cpu_cores.p95,
            c.cpu_cores.peak,
            bytes(peak)
        );
    }
    held_back_by(&mut out, s);
    if !s.top_commands.is_empty() {
        let _ = writeln!(
            out,
            "\n| command | processes | CPU s | peak RSS | longest s |\n|---|---:|---:|---:|---:|"
        );
        for c in s.top_commands.iter().take(COMMANDS) {
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} | {} | {:.2} |",
                escape(&c.name),
                c.processes,
                c.cpu_seconds,
                bytes(c.peak_rss_bytes as f64),
                c.longest_seconds
            );
        }
    }
    if let Some(t) = s.timeline.as_ref().filter(|t| !t.containers.is_empty()) {
        out.push_str(&charts(t, s));
    }
    out
}

/// Who held the CPU while each container waited a second or more (eBPF).
fn held_back_by(out: &mut String, s: &RunSummary) {
    let waits = summary::starvation::held_back_rows(s);
    if waits.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n| waited for a CPU | held back by | which is | job | s | of its wait |\n|---|---|---|---|---:|---:|"
    );
    for (c, w) in waits {
        for b in &w.behind {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.2} | {:.0} % |",
                escape(&c.name),
                escape(&b.container),
                b.kind.label(),
                escape(b.job.as_deref().unwrap_or("")),
                b.seconds,
                100.0 * b.seconds / w.seconds
            );
        }
    }
}

/// The two charts (CPU cores, memory MiB) of the containers with the most CPU.
fn charts(t: &Timeline, s: &RunSummary) -> String {
    let mut shown: Vec<&summary::timeline::ContainerTimeline> = t.containers.iter().collect();
    let cpu_of = |name: &str| {
        s.containers
            .iter()
            .find(|c| c.name == name)
            .map_or(0.0, |c| c.cpu_seconds)
    };
    shown.sort_by(|a, b| cpu_of(&b.name).total_cmp(&cpu_of(&a.name)));
    shown.truncate(CHART_CONTAINERS);
    // All lines over the same buckets: from the run's start to the last point of any.
    let offset = |c: &summary::timeline::ContainerTimeline| {
        (c.start_seconds / t.bucket_seconds).round() as usize
    };
    let total = shown.iter().map(|c| offset(c) + c.len()).max().unwrap_or(0);
    let per = total.div_ceil(CHART_POINTS).max(1);
    let columns = total.div_ceil(per);
    let line = |c: &summary::timeline::ContainerTimeline, series: &[u32]| -> Vec<u32> {
        let mut full = vec![0u32; offset(c)];
        full.extend_from_slice(series);
        (0..columns)
            .map(|col| {
                full.iter()
                    .skip(col * per)
                    .take(per)
                    .copied()
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    };
    let seconds = total as f64 * t.bucket_seconds;
    let names: Vec<String> = shown.iter().map(|c| format!("`{}`", c.name)).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nOver {seconds:.0} s, the largest value of each {:.1} s (lines in order: {}):",
        per as f64 * t.bucket_seconds,
        names.join(", ")
    );
    for (title, axis, scale, series) in [("CPU", "cores", 1000.0, 0), ("Memory", "MiB", 1.0, 1)] {
        let lines: Vec<Vec<f64>> = shown
            .iter()
            .map(|c| {
                let data = if series == 0 {
                    &c.cpu_millicores_max
                } else {
                    &c.memory_mib_max
                };
                line(c, data)
                    .into_iter()
                    .map(|v| f64::from(v) / scale)
                    .collect()
            })
            .collect();
        let top = lines.iter().flatten().copied().fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "\n```mermaid\nxychart-beta\n    title \"{title}\"\n    x-axis \"seconds\" 0 --> {}\n    y-axis \"{axis}\" 0 --> {}",
            number(seconds.max(1.0)),
            number((top * 1.1).max(if series == 0 { 0.1 } else { 1.0 }))
        );
        for l in &lines {
            let values: Vec<String> = l.iter().map(|v| number(*v)).collect();
            let _ = writeln!(out, "    line [{}]", values.join(", "));
        }
        out.push_str("```\n");
    }
    out
}

/// A number as Mermaid reads it: no exponent, at most two decimals.
fn number(v: f64) -> String {
    let s = format!("{:.2}", if v.is_finite() { v.max(0.0) } else { 0.0 });
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Text safe in a table cell: no pipes, no line breaks, no HTML.
/// `text` with its first letter upper-case.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// [`escape`] outside code spans; inside them only line breaks go (a code span shows an
/// entity literally).
fn escape_outside_code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('`') {
        out.push_str(&escape(&rest[..open]));
        let fence_len = rest[open..].chars().take_while(|c| *c == '`').count();
        let fence = &rest[open..open + fence_len];
        let after = &rest[open + fence_len..];
        // The span closes at the next run of exactly as many backticks.
        let close = (0..after.len()).find(|&i| {
            after[i..].starts_with(fence)
                && !after[i + fence_len..].starts_with('`')
                && (i == 0 || !after[..i].ends_with('`'))
        });
        match close {
            Some(i) => {
                out.push_str(fence);
                out.push_str(&after[..i].replace(['\n', '\r'], " "));
                out.push_str(fence);
                rest = &after[i + fence_len..];
            }
            None => {
                out.push_str(&escape(&rest[open..]));
                rest = "";
            }
        }
    }
    out.push_str(&escape(rest));
    out
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|")
        .replace(['\n', '\r'], " ")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use summary::{
        ContainerSummary, Stats,
        behind::{Behind, Cause, HolderKind},
        starvation::{CommandSummary, RunQueueWait, Verdict},
        timeline::ContainerTimeline,
    };

    use super::*;

    fn fixed() -> RunSummary {
        let stats = |avg: f64, peak: f64| Stats {
            peak,
            p99: peak,
            p95: peak,
            p75: avg,
            p50: avg,
            avg,
        };
        RunSummary {
            duration_seconds: 3.0,
            containers: vec![
                ContainerSummary {
                    name: "build|x".into(),
                    cpu_seconds: 4.5,
                    cpu_cores: stats(1.5, 2.0),
                    memory_bytes: stats(100e6, 400e6),
                    memory_peak_bytes: Some(420 << 20),
                    run_queue_wait: Some(RunQueueWait {
                        seconds: 1.8,
                        share: 0.29,
                        tasks_waiting: Some(0.6),
                        source: summary::Source::Ebpf,
                        behind: vec![
                            Behind::new(
                                HolderKind::OtherJob,
                                "lint-3",
                                Some("acme/app ci lint #9".into()),
                                1.5,
                            ),
                            Behind::new(HolderKind::Itself, "build|x", None, 0.3),
                        ],
                    }),
                    verdict: Some(Verdict {
                        starved: true,
                        by: vec!["cpu".into()],
                        text: "CPU-starved: waiting for a CPU 60 % of the run (1.8 s; 0.60 tasks on average; 29 % of the time it was ready to run); contention, isolation or a less loaded node helps (held back by lint-3 (acme/app ci lint #9) 1.5 s, itself 300 ms)".into(),
                        cause: Some(Cause::Contention),
                    }),
                    ..Default::default()
                },
                ContainerSummary {
                    name: "db".into(),
                    cpu_seconds: 0.2,
                    cpu_cores: stats(0.1, 0.1),
                    memory_bytes: stats(64e6, 64e6),
                    ..Default::default()
                },
            ],
            top_commands: vec![CommandSummary {
                name: "cc1".into(),
                processes: 400,
                cpu_seconds: 312.0,
                peak_rss_bytes: 150 << 20,
                longest_seconds: 4.5,
            }],
            verdict: Some(Verdict {
                starved: true,
                by: vec!["cpu".into()],
                text: "build|x: CPU-starved: waiting for a CPU 60 % of the run (1.8 s; 0.60 tasks on average; 29 % of the time it was ready to run); contention, isolation or a less loaded node helps (held back by lint-3 (acme/app ci lint #9) 1.5 s, itself 300 ms)".into(),
                cause: Some(Cause::Contention),
            }),
            timeline: Some(Timeline {
                bucket_seconds: 0.5,
                containers: vec![
                    ContainerTimeline {
                        name: "build|x".into(),
                        start_seconds: 0.0,
                        cpu_millicores: vec![0, 2000, 2000, 1000, 0, 0],
                        cpu_millicores_max: vec![0, 2000, 2000, 1500, 0, 0],
                        memory_mib: vec![10, 100, 300, 400, 20, 10],
                        memory_mib_max: vec![10, 120, 320, 420, 20, 10],
                        ..Default::default()
                    },
                    ContainerTimeline {
                        name: "db".into(),
                        start_seconds: 1.0,
                        cpu_millicores: vec![100; 4],
                        cpu_millicores_max: vec![100; 4],
                        memory_mib: vec![64; 4],
                        memory_mib_max: vec![64; 4],
                        ..Default::default()
                    },
                ],
            }),
            ..Default::default()
        }
    }

    /// The report of a fixed summary, as committed in `tests/fixtures/report.md` (rewrite
    /// it with `UPDATE_GOLDEN=1` after a deliberate change).
    #[test]
    fn report_of_a_fixed_summary_matches_the_golden_file() {
        let md = report("`make test` exited with status 0 after 3.00 s", &fixed());
        let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/report.md");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(golden, &md).unwrap();
        }
        let expected = std::fs::read_to_string(golden).unwrap();
        assert_eq!(
            md, expected,
            "rerun with UPDATE_GOLDEN=1 if the change is deliberate"
        );
        assert!(md.contains("build\\|x"), "pipes are escaped in table cells");
        assert_eq!(md.matches("```mermaid").count(), 2);
    }

    #[test]
    fn a_summary_without_a_timeline_still_reports_the_rest() {
        let s = RunSummary {
            timeline: None,
            ..fixed()
        };
        let md = report("run", &s);
        assert!(md.contains("| db |") && md.contains("| cc1 |"), "{md}");
        assert!(!md.contains("mermaid"));
    }

    /// A command with quotes, `<` and backticks stays as typed inside its code span.
    #[test]
    fn the_headline_shows_the_command_as_typed() {
        use crate::output::report::{code_span, shell_quote};
        let cmd = ["sh", "-c", "perl -e \"$x=q(x)x(80<<20)\"; echo `date`"]
            .map(shell_quote)
            .join(" ");
        assert_eq!(cmd, "sh -c 'perl -e \"$x=q(x)x(80<<20)\"; echo `date`'");
        let md = report(
            &format!("{} exited", code_span(&cmd)),
            &RunSummary::default(),
        );
        assert!(
            md.starts_with("### ``sh -c 'perl -e \"$x=q(x)x(80<<20)\"; echo `date`'`` exited\n"),
            "{md}"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a/b.c-d"), "a/b.c-d");
        assert_eq!(code_span("`x`"), "`` `x` ``");
        assert_eq!(escape_outside_code("a<b `c<d` e|f"), "a&lt;b `c<d` e\\|f");
    }

    #[test]
    fn an_unstarved_run_says_so_once() {
        let mut s = fixed();
        s.verdict = Some(Verdict {
            text: "not starved: no CPU quota".into(),
            ..Default::default()
        });
        let md = report("x", &s);
        assert!(md.contains("\nNot starved: no CPU quota\n"), "{md}");
        assert!(
            !md.to_lowercase().contains("not starved: not starved"),
            "{md}"
        );
    }

    #[test]
    fn numbers_are_plain() {
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.126), "0.13");
        assert_eq!(number(1e12), "1000000000000");
        assert_eq!(number(f64::NAN), "0");
    }
}
