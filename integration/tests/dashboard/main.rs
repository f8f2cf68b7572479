//! The observability rig under `deploy/observability` against the metrics that really exist.
//!
//! - The Grafana dashboard is valid JSON with the expected panels (by title) and unique ids.
//! - Every expression parses as PromQL (the `promql-parser` crate), once Grafana's variables
//!   are replaced ([`grafana_to_promql`]); template variable queries are Grafana's
//!   `label_values(...)` around a series selector ([`scan`], with unit tests of its own).
//! - Every metric name in every PromQL expression (panel targets, template variable queries)
//!   is one the collector exports ([`collector::output::live::METRIC_NAMES`]), one the receiver
//!   registers (read from `receiver/src/metrics.rs`, checked against what the receiver really
//!   encodes), or a Prometheus built-in (`up`). A renamed metric fails here, naming the panel.
//! - Label names in matchers (and groupings) of collector metrics are labels the collector
//!   puts on its series, or `instance`/`job` that Prometheus adds.
//! - `$variables` in expressions are template variables of the dashboard or Grafana's own.
//! - The Prometheus config, its entrypoint and the compose/provisioning YAML hang together
//!   (structural checks only: the crate has no YAML parser; `deploy/observability/validate.sh`
//!   parses them fully).
//! - Where `promtool` is installed, the rendered Prometheus config and every dashboard
//!   expression pass `promtool check` (PromQL syntax). Under `CI=true` a missing `promtool`
//!   fails; elsewhere that part is skipped with the reason.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rig() -> PathBuf {
    root().join("deploy/observability")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

mod promql;
mod rig;

use promql::*;

// ---------------------------------------------------------------------------------------------
// What exists
// ---------------------------------------------------------------------------------------------

/// Prometheus' own series for every target.
const BUILTINS: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: &[&str] = &["instance", "job", "__name__"];

/// Metric types of the receiver's registered families, keyed by name without prefix.
fn receiver_families_from_source(source: &str) -> Result<BTreeMap<String, &'static str>, String> {
    let compact: String = source.split_whitespace().collect::<Vec<_>>().join(" ");
    let prefix = compact
        .split("Registry::with_prefix(\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or("no Registry::with_prefix(\"...\") in receiver/src/metrics.rs")?;
    // `let <var> = <initialiser>;` gives each registered value's type.
    let mut kinds = BTreeMap::new();
    for stmt in compact.split("let ").skip(1) {
        let Some((var, init)) = stmt.split_once(" = ") else {
            continue;
        };
        let mut init = init.split(';').next().unwrap_or_default().to_owned();
        // `let x = f();` with `fn f() -> Histogram`: the function's return type.
        if let Some(f) = init.strip_suffix("()") {
            let sig = format!("fn {f}() -> ");
            if let Some(ret) = compact.split(&sig).nth(1) {
                init = ret.split('{').next().unwrap_or_default().to_owned();
            }
        }
        let kind = if init.contains("Histogram") {
            "histogram"
        } else if init.contains("Counter") {
            "counter"
        } else if init.contains("Gauge") {
            "gauge"
        } else {
            continue;
        };
        kinds.insert(var.trim().to_owned(), kind);
    }
    let mut families = BTreeMap::new();
    for call in compact.split("registry.register(").skip(1) {
        let mut args = call.splitn(3, ',');
        let name = args
            .next()
            .and_then(|a| a.trim().strip_prefix('"'))
            .and_then(|a| a.strip_suffix('"'))
            .ok_or_else(|| format!("register call without a literal name: {call:.60}"))?;
        // The help text may contain commas; the value is the last argument.
        let rest = args.nth(1).unwrap_or_default();
        let value = rest.split(')').next().unwrap_or_default();
        let value = value.rsplit(',').next().unwrap_or_default().trim();
        let var = value.trim_end_matches(".clone(").trim();
        let kind = kinds
            .get(var)
            .ok_or_else(|| format!("cannot tell the type of `{var}` registered as `{name}`"))?;
        families.insert(format!("{prefix}_{name}"), *kind);
    }
    if families.is_empty() {
        return Err("no registry.register(...) calls in receiver/src/metrics.rs".into());
    }
    Ok(families)
}

/// Families and types from an exposition's `# TYPE` lines.
fn families_from_exposition(text: &str) -> BTreeMap<String, &'static str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            let kind = match kind.trim() {
                "counter" => "counter",
                "histogram" => "histogram",
                "gauge" => "gauge",
                _ => "other",
            };
            Some((name.to_owned(), kind))
        })
        .collect()
}

/// The series names a family appears under in the exposition.
fn series_names(family: &str, kind: &str) -> Vec<String> {
    match kind {
        "counter" => vec![format!("{family}_total")],
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{family}{s}"))
            .collect(),
        _ => vec![family.to_owned()],
    }
}

fn receiver_metric_names() -> BTreeSet<String> {
    let path = root().join("receiver/src/metrics.rs");
    let families = receiver_families_from_source(&read(&path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    families
        .iter()
        .flat_map(|(f, k)| series_names(f, k))
        .collect()
}

/// The label names the collector puts on its per-container series, from a real exposition.
fn collector_labels() -> BTreeSet<String> {
    collector_labels_by_metric()
        .into_values()
        .flatten()
        .collect()
}

/// The labels of each collector series, by metric name (as exported), with the scrape's.
fn collector_labels_by_metric() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let live = collector::output::live::LiveMetrics::default();
    let id = summary::Execution {
        repository: "o/r".into(),
        workflow: "w".into(),
        job: "j".into(),
        run_id: "1".into(),
        ..Default::default()
    };
    let l = collector::output::live::labels("c", &id, summary::Source::Cgroup);
    live.add_cpu_seconds(&l, 1.0);
    live.add_run_queue_wait_behind(&l, "itself", 1.0);
    let text = live.encode();
    assert!(
        text.contains("ci_collector_container_cpu_seconds_total{"),
        "no CPU series in\n{text}"
    );
    let mut out: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(open) = line.find('{') else {
            continue;
        };
        let inside = &line[open + 1..line.rfind('}').unwrap()];
        let labels = out.entry(line[..open].to_owned()).or_default();
        labels.extend(
            inside
                .split("\",")
                .map(|kv| kv.split('=').next().unwrap().trim().to_owned()),
        );
        labels.extend(TARGET_LABELS.iter().map(|s| s.to_string()));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The dashboard
// ---------------------------------------------------------------------------------------------

fn dashboard() -> Value {
    let path = rig().join("grafana/dashboards/ci-collector.json");
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// Every PromQL expression with where it is: `(location, expression)`.
fn expressions(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        let title = p["title"].as_str().unwrap_or("<untitled>");
        for t in p["targets"].as_array().into_iter().flatten() {
            let refid = t["refId"].as_str().unwrap_or("?");
            if let Some(expr) = t["expr"].as_str() {
                out.push((format!("panel \"{title}\" target {refid}"), expr.to_owned()));
            }
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or("?");
        if v["type"] != "query" {
            continue;
        }
        let query = match &v["query"] {
            Value::String(s) => Some(s.clone()),
            q => q["query"].as_str().map(str::to_owned),
        };
        for (what, q) in [
            ("query", query),
            ("definition", v["definition"].as_str().map(str::to_owned)),
        ] {
            if let Some(q) = q.filter(|q| !q.is_empty()) {
                out.push((format!("template variable ${name} ({what})"), q));
            }
        }
    }
    out
}

const EXPECTED_PANELS: &[&str] = &[
    "CPU cores per container",
    "Memory per container",
    "Network receive rate",
    "Network transmit rate",
    "OOM kills",
    "CPU throttled",
    "Waiting for a CPU",
    "Memory and I/O pressure",
    "Disk I/O",
    "Live containers",
    "Collector samples rate",
    "Collector errors",
    "eBPF attached",
    "eBPF map fill",
    "Receiver request rate",
    "Receiver latency p99",
    "Receiver commit batch size",
];

#[test]
fn dashboard_has_the_panels_and_unique_ids() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "ci-collector");
    let schema = dash["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(
        (36..=41).contains(&schema),
        "schemaVersion {schema}: expected about 39"
    );
    let panels = panels(&dash);
    let titles: BTreeSet<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    let missing: Vec<_> = EXPECTED_PANELS
        .iter()
        .filter(|t| !titles.contains(*t))
        .collect();
    assert!(
        missing.is_empty(),
        "dashboard lacks panels {missing:?}; it has {titles:?}"
    );

    let mut ids = BTreeMap::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("<untitled>");
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel \"{title}\" has no numeric id"));
        if let Some(other) = ids.insert(id, title) {
            panic!("panels \"{other}\" and \"{title}\" share id {id}");
        }
        for k in ["x", "y", "w", "h"] {
            assert!(
                p["gridPos"][k].is_u64(),
                "panel \"{title}\" lacks gridPos.{k}"
            );
        }
        assert!(
            p["gridPos"]["x"].as_u64().unwrap() + p["gridPos"]["w"].as_u64().unwrap() <= 24,
            "panel \"{title}\" is wider than the 24-column grid"
        );
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array();
        assert!(
            targets.is_some_and(|t| !t.is_empty()),
            "panel \"{title}\" has no queries"
        );
        let mut refs = BTreeSet::new();
        for t in targets.unwrap() {
            let r = t["refId"].as_str().unwrap_or_default();
            assert!(
                refs.insert(r),
                "panel \"{title}\": duplicate or missing refId {r:?}"
            );
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "panel \"{title}\" target {r}: empty expr"
            );
        }
        // Every panel queries the provisioned datasource.
        assert_eq!(
            p["datasource"]["uid"], "prometheus",
            "panel \"{title}\": datasource"
        );
    }

    // The CPU panel compares usage with the limit; memory likewise.
    let exprs_of = |title: &str| -> String {
        panels
            .iter()
            .find(|p| p["title"] == title)
            .map(|p| {
                p["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["expr"].as_str().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let cpu = exprs_of("CPU cores per container");
    assert!(
        cpu.contains("rate(ci_collector_container_cpu_seconds_total")
            && cpu.contains("ci_collector_container_cpu_limit_cores"),
        "{cpu}"
    );
    let mem = exprs_of("Memory per container");
    assert!(
        mem.contains("ci_collector_container_memory_limit_bytes"),
        "{mem}"
    );
    assert!(
        exprs_of("OOM kills").contains("increase(ci_collector_container_oom_kills_total"),
        "OOM kills must use increase()"
    );
    // Counters are read with $__rate_interval (never a fixed window shorter than 4 scrapes).
    for (loc, expr) in expressions(&dash) {
        if expr.contains("rate(") || expr.contains("increase(") {
            assert!(
                expr.contains("[$__rate_interval]"),
                "{loc}: use [$__rate_interval] in `{expr}`"
            );
        }
    }

    // Template variables for the filters.
    let vars: BTreeSet<&str> = dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for v in ["repository", "ci_job", "run_id", "container"] {
        assert!(vars.contains(v), "no template variable {v}: {vars:?}");
    }
}

/// Problems with the metric names of a dashboard (one line each, naming the panel or
/// variable), and every metric name it uses.
fn unknown_metrics(dash: &Value) -> (Vec<String>, BTreeSet<String>) {
    let collector: BTreeSet<&str> = collector::output::live::METRIC_NAMES
        .iter()
        .copied()
        .collect();
    let receiver = receiver_metric_names();
    let mut unknown = Vec::new();
    let mut seen = BTreeSet::new();
    for (loc, expr) in expressions(dash) {
        let s = match scan(&expr) {
            Ok(s) => s,
            Err(e) => {
                unknown.push(format!("{loc}: {e}"));
                continue;
            }
        };
        let metrics = s.metrics();
        if metrics.is_empty() && s.label_values.is_empty() {
            unknown.push(format!("{loc}: no metric at all in `{expr}`"));
        }
        for m in metrics {
            seen.insert(m.to_owned());
            let known = collector.contains(m)
                || (m.starts_with("receiver_") && receiver.contains(m))
                || BUILTINS.contains(&m);
            if !known {
                unknown.push(format!("{loc}: unknown metric `{m}` in `{expr}`"));
            }
        }
    }
    (unknown, seen)
}

#[test]
fn every_metric_in_the_dashboard_exists() {
    let dash = dashboard();
    let (unknown, seen) = unknown_metrics(&dash);
    let collector = collector::output::live::METRIC_NAMES;
    let receiver = receiver_metric_names();
    assert!(
        unknown.is_empty(),
        "the dashboard references metrics nobody exports:\n  {}\n\ncollector exports {:?}\n\
         receiver exports {:?}",
        unknown.join("\n  "),
        collector,
        receiver
    );
    // The dashboard shows every per-container family the collector exports.
    for m in collector::output::live::METRIC_NAMES {
        if m.starts_with("ci_collector_container_") {
            assert!(seen.contains(*m), "no panel shows {m}");
        }
    }
}

#[test]
fn receiver_names_read_from_source_match_what_it_exports() {
    let path = root().join("receiver/src/metrics.rs");
    let from_source = receiver_families_from_source(&read(&path)).unwrap();
    let exported = families_from_exposition(&receiver::metrics::Metrics::default().encode());
    assert_eq!(
        from_source, exported,
        "the reading of receiver/src/metrics.rs in tests/dashboard.rs no longer matches what \
         the receiver encodes: update receiver_families_from_source"
    );
    let names = receiver_metric_names();
    for n in [
        "receiver_http_requests_total",
        "receiver_http_request_duration_seconds_bucket",
        "receiver_store_commits_total",
        "receiver_store_commit_batch_size_count",
    ] {
        assert!(names.contains(n), "{n} missing from {names:?}");
    }
    assert!(!names.contains("receiver_http_requests"), "{names:?}");
}

#[test]
fn labels_and_variables_in_the_dashboard_exist() {
    let dash = dashboard();
    let labels = collector_labels();
    let by_metric = collector_labels_by_metric();
    // A metric's own labels where the exposition shows it, else those of any series.
    let labels_of = |m: &str| by_metric.get(m).unwrap_or(&labels);
    for l in [
        "container",
        "repository",
        "workflow",
        "ci_job",
        "run_id",
        "source",
    ] {
        assert!(
            labels.contains(l),
            "collector series lack label {l}: {labels:?}"
        );
    }
    assert!(!labels.contains("job") || TARGET_LABELS.contains(&"job"));
    let receiver_labels: BTreeSet<&str> = ["route", "status", "le", "instance", "job"].into();
    let defined: BTreeSet<String> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    let grafana_vars = [
        "__rate_interval",
        "__interval",
        "__interval_ms",
        "__range",
        "__range_s",
        "__range_ms",
    ];
    let mut problems = Vec::new();
    for (loc, expr) in expressions(&dash) {
        let s = scan(&expr).unwrap();
        let is_collector = |m: &str| m.starts_with("ci_collector_");
        for sel in &s.selectors {
            let Some(m) = sel.metric.as_deref() else {
                continue;
            };
            for l in &sel.labels {
                let ok = if is_collector(m) {
                    labels_of(m).contains(l)
                } else if m.starts_with("receiver_") {
                    receiver_labels.contains(l.as_str())
                } else {
                    TARGET_LABELS.contains(&l.as_str())
                };
                if !ok {
                    problems.push(format!("{loc}: `{m}` has no label `{l}`"));
                }
            }
        }
        // Groupings and label_values of expressions over collector metrics only.
        let metrics = s.metrics();
        if !metrics.is_empty() && metrics.iter().all(|m| is_collector(m)) {
            for l in s.grouping.iter().chain(&s.label_values) {
                if !metrics.iter().any(|m| labels_of(m).contains(l)) {
                    problems.push(format!("{loc}: collector series have no label `{l}`"));
                }
            }
        }
        for v in &s.variables {
            if !defined.contains(v) && !grafana_vars.contains(&v.as_str()) {
                problems.push(format!("{loc}: undefined variable ${v}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn unknown_metric_is_reported_with_its_panel() {
    // The check itself, on a doctored dashboard: the message names the panel and the metric.
    let mut dash = dashboard();
    let p = dash["panels"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["title"] == "OOM kills")
        .unwrap();
    p["targets"][0]["expr"] =
        "increase(ci_collector_container_oom_killed_total[$__rate_interval])".into();
    let (unknown, _) = unknown_metrics(&dash);
    assert_eq!(
        unknown,
        [
            "panel \"OOM kills\" target A: unknown metric `ci_collector_container_oom_killed_total` \
          in `increase(ci_collector_container_oom_killed_total[$__rate_interval])`"
        ]
    );
}
