//! Metrics exposition shared by the collector's and the receiver's `/metrics`.
//!
//! prometheus-client writes OpenMetrics text, in which a counter family is announced without
//! its `_total` suffix and the text ends with `# EOF`. Prometheus asks for OpenMetrics and reads
//! that; other readers (curl, `promtool check metrics`, older scrapers) expect the classic text
//! format 0.0.4, where the announced name is the sample name. [`negotiate`] picks by the
//! request's `Accept` header, and [`openmetrics_to_text`] converts.

/// Content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The body and content type to answer with, given the request's `Accept` header and the
/// OpenMetrics exposition.
pub fn negotiate(accept: Option<&str>, openmetrics: String) -> (&'static str, String) {
    if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        (OPENMETRICS, openmetrics)
    } else {
        (TEXT, openmetrics_to_text(&openmetrics))
    }
}

/// Converts OpenMetrics text to the classic format: counters are announced with `_total`,
/// `# UNIT` and `# EOF` lines are dropped.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let announced = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match announced {
            Some(l) => out.push_str(l.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_announced_with_total_and_eof_is_dropped() {
        let om = "# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests_total{a=\"1\"} 3\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n# EOF\n";
        let text = openmetrics_to_text(om);
        assert_eq!(
            text,
            "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\nx_requests_total{a=\"1\"} 3\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n"
        );
        assert_eq!(
            negotiate(
                Some("application/openmetrics-text;version=1.0.0"),
                om.into()
            )
            .0,
            OPENMETRICS
        );
        assert_eq!(negotiate(None, om.into()).0, TEXT);
    }
}
