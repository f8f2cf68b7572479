//! The observability rig under `deploy/observability` against the metrics that really exist.
//!
//! - The Grafana dashboard is valid JSON with the expected panels (by title) and unique ids.
//! - Every metric name in every PromQL expression (panel targets, template variable queries)
//!   is one the collector exports ([`collector::live::METRIC_NAMES`]), one the receiver
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
//!
//! PromQL is read by a small hand-written scanner ([`scan`]) with unit tests of its own.

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

// ---------------------------------------------------------------------------------------------
// PromQL scanner
// ---------------------------------------------------------------------------------------------

/// Functions, aggregation operators and keywords of PromQL, plus Grafana's templating
/// functions: identifiers that are never metric names.
const NOT_METRICS: &[&str] = &[
    // aggregation operators
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    // keywords
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
    // functions
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "holt_winters",
    "double_exponential_smoothing",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
    // Grafana template variable queries
    "label_values",
    "label_names",
    "metrics",
    "query_result",
];

/// Keywords followed by a parenthesised list of label names.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// One vector selector: a metric name and the label names of its `{...}` matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    metric: Option<String>,
    labels: Vec<String>,
}

/// What one PromQL expression references.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    /// Vector selectors, in order (a bare `{__name__="x"}` gives metric `x`; `{job="a"}` none).
    selectors: Vec<Selector>,
    /// Label names in `by (...)`, `without (...)`, `on (...)`, `ignoring (...)`,
    /// `group_left (...)`, `group_right (...)`.
    grouping: Vec<String>,
    /// The label argument of Grafana's `label_values(metric, label)`.
    label_values: Vec<String>,
    /// Grafana variables (`$name`, `${name}`, `${name:fmt}`, `[[name]]`), without the `$`.
    variables: Vec<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    expr: &'a str,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.pos += 1;
            } else if c == '#' {
                // A comment runs to the end of the line.
                while self.peek().is_some_and(|c| c != '\n') {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_ident) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    /// A quoted string starting at the current quote; returns its (unescaped) content.
    fn string(&mut self) -> Result<String, String> {
        let quote = self.chars[self.pos];
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == quote {
                return Ok(out);
            }
            if c == '\\' && quote != '`' {
                if let Some(next) = self.peek() {
                    out.push(next);
                    self.pos += 1;
                }
                continue;
            }
            out.push(c);
        }
        Err(format!("unterminated string at {start} in `{}`", self.expr))
    }

    /// A Grafana variable after its `$`: `name`, `{name}` or `{name:format}`.
    fn variable(&mut self) -> Result<String, String> {
        if self.peek() == Some('{') {
            self.pos += 1;
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                self.pos += 1;
            }
            let name = self.chars[start..self.pos].iter().collect();
            while self.peek().is_some_and(|c| c != '}') {
                self.pos += 1;
            }
            if self.peek() != Some('}') {
                return Err(format!("unterminated ${{...}} in `{}`", self.expr));
            }
            self.pos += 1;
            Ok(name)
        } else {
            Ok(self.ident())
        }
    }

    /// Skips `[...]` (a range, a subquery's `[5m:1m]`, or `[$__rate_interval]`), returning the
    /// Grafana variables in it; `[[name]]` is Grafana's old variable syntax.
    fn brackets(&mut self, vars: &mut Vec<String>) -> Result<(), String> {
        let start = self.pos;
        self.pos += 1;
        let legacy = self.peek() == Some('[');
        if legacy {
            self.pos += 1;
            vars.push(self.ident());
        }
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                '$' => vars.push(self.variable()?),
                ']' if legacy => {
                    if self.peek() != Some(']') {
                        return Err(format!(
                            "unterminated [[...]] at {start} in `{}`",
                            self.expr
                        ));
                    }
                    self.pos += 1;
                    return Ok(());
                }
                ']' => return Ok(()),
                '[' | '(' | '{' | '"' | '\'' | '`' => {
                    return Err(format!(
                        "unexpected `{c}` in the range at {start} in `{}`",
                        self.expr
                    ));
                }
                _ => {}
            }
        }
        Err(format!("unterminated `[` at {start} in `{}`", self.expr))
    }

    /// Label matchers after `{`: `name op "value"` separated by commas; returns the label names
    /// and the metric named by a `__name__="..."` matcher, if any.
    fn matchers(
        &mut self,
        vars: &mut Vec<String>,
    ) -> Result<(Vec<String>, Option<String>), String> {
        let start = self.pos;
        self.pos += 1;
        let mut labels = Vec::new();
        let mut name = None;
        loop {
            self.skip_space();
            match self.peek() {
                Some('}') => {
                    self.pos += 1;
                    return Ok((labels, name));
                }
                Some(',') => {
                    self.pos += 1;
                    continue;
                }
                Some(c) if is_ident_start(c) => {}
                // Prometheus 3 allows quoted (UTF-8) names: `{"metric.name", "label"="v"}`.
                Some('"') => {
                    let quoted = self.string()?;
                    self.skip_space();
                    if matches!(self.peek(), Some('=' | '!')) {
                        labels.push(quoted);
                    } else {
                        name = Some(quoted);
                        continue;
                    }
                    self.op_and_value(&mut labels, &mut name, vars, start)?;
                    continue;
                }
                Some(c) => {
                    return Err(format!(
                        "unexpected `{c}` in the matchers at {start} in `{}`",
                        self.expr
                    ));
                }
                None => return Err(format!("unterminated `{{` at {start} in `{}`", self.expr)),
            }
            let label = self.ident();
            labels.push(label);
            self.op_and_value(&mut labels, &mut name, vars, start)?;
        }
    }

    fn op_and_value(
        &mut self,
        labels: &mut [String],
        name: &mut Option<String>,
        vars: &mut Vec<String>,
        start: usize,
    ) -> Result<(), String> {
        self.skip_space();
        let op: String = match (self.peek(), self.chars.get(self.pos + 1).copied()) {
            (Some('='), Some('~')) | (Some('!'), Some('=' | '~')) => {
                self.pos += 2;
                self.chars[self.pos - 2..self.pos].iter().collect()
            }
            (Some('='), _) => {
                self.pos += 1;
                "=".to_owned()
            }
            _ => {
                return Err(format!(
                    "expected a matcher operator after `{}` at {start} in `{}`",
                    labels.last().map(String::as_str).unwrap_or_default(),
                    self.expr
                ));
            }
        };
        self.skip_space();
        if !matches!(self.peek(), Some('"' | '\'' | '`')) {
            return Err(format!(
                "expected a string after `{op}` at {start} in `{}`",
                self.expr
            ));
        }
        let value = self.string()?;
        vars.extend(variables_in(&value));
        if labels.last().map(String::as_str) == Some("__name__") && op == "=" {
            *name = Some(value);
        }
        Ok(())
    }

    /// Whether the call whose `(` is at the current position has a comma at its own level.
    fn comma_before_close(&self) -> bool {
        let mut depth = 0usize;
        let mut quote = None;
        let mut i = self.pos;
        while let Some(&c) = self.chars.get(i) {
            i += 1;
            match (quote, c) {
                (Some(q), '\\') if q != '`' => i += 1,
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'' | '`') => quote = Some(c),
                (None, '(' | '[' | '{') => depth += 1,
                (None, ')' | ']' | '}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return false;
                    }
                }
                (None, ',') if depth == 1 => return true,
                _ => {}
            }
        }
        false
    }

    /// A parenthesised list of label names after `by`, `on`, ... (already at `(`).
    fn label_list(&mut self) -> Result<Vec<String>, String> {
        let start = self.pos;
        self.pos += 1;
        let mut labels = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                Some(')') => {
                    self.pos += 1;
                    return Ok(labels);
                }
                Some(',') => self.pos += 1,
                Some(c) if is_ident_start(c) => labels.push(self.ident()),
                Some('"') => labels.push(self.string()?),
                _ => {
                    return Err(format!("bad label list at {start} in `{}`", self.expr));
                }
            }
        }
    }
}

/// Grafana variables inside a string (label matcher values are strings: `=~"$container"`).
fn variables_in(s: &str) -> Vec<String> {
    let mut lexer = Lexer {
        chars: s.chars().collect(),
        pos: 0,
        expr: s,
    };
    let mut vars = Vec::new();
    while let Some(c) = lexer.peek() {
        lexer.pos += 1;
        if c == '$' {
            if let Ok(v) = lexer.variable() {
                if !v.is_empty() {
                    vars.push(v);
                }
            }
        } else if c == '[' && lexer.peek() == Some('[') {
            lexer.pos += 1;
            vars.push(lexer.ident());
        }
    }
    vars
}

/// Reads one PromQL expression (or Grafana variable query) and returns what it references.
fn scan(expr: &str) -> Result<Scan, String> {
    let mut lx = Lexer {
        chars: expr.chars().collect(),
        pos: 0,
        expr,
    };
    let mut out = Scan::default();
    // One entry per open `(`: whether it is the argument list of `label_values`.
    let mut parens: Vec<bool> = Vec::new();
    // Set after `label_values(...,` at the depth of that call: the next identifier is a label.
    let mut label_arg_depth: Option<usize> = None;
    loop {
        lx.skip_space();
        let Some(c) = lx.peek() else { break };
        match c {
            '"' | '\'' | '`' => {
                let s = lx.string()?;
                out.variables.extend(variables_in(&s));
            }
            '[' => lx.brackets(&mut out.variables)?,
            '{' => {
                // A selector without a metric name before it (`{job="x"}`); one with a name
                // is handled where the name is read.
                let (labels, metric) = lx.matchers(&mut out.variables)?;
                out.selectors.push(Selector { metric, labels });
            }
            '(' => {
                parens.push(false);
                lx.pos += 1;
            }
            ')' => {
                if parens.pop().is_none() {
                    return Err(format!("unbalanced `)` at {} in `{expr}`", lx.pos));
                }
                if label_arg_depth.is_some_and(|d| d > parens.len()) {
                    label_arg_depth = None;
                }
                lx.pos += 1;
            }
            ',' => {
                if parens.last() == Some(&true) {
                    label_arg_depth = Some(parens.len());
                }
                lx.pos += 1;
            }
            '}' | ']' => return Err(format!("unbalanced `{c}` at {} in `{expr}`", lx.pos)),
            '$' => {
                lx.pos += 1;
                let v = lx.variable()?;
                if v.is_empty() {
                    return Err(format!("lone `$` at {} in `{expr}`", lx.pos));
                }
                out.variables.push(v);
            }
            c if c.is_ascii_digit()
                || (c == '.' && lx.chars.get(lx.pos + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // Numbers (1, 0.99, 1e9, 0x1f, Inf handled as a keyword) and durations (5m,
                // 1h30m, after `offset` or `@`).
                while lx
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
                {
                    lx.pos += 1;
                }
            }
            c if is_ident_start(c) => {
                let word = lx.ident();
                let lower = word.to_ascii_lowercase();
                lx.skip_space();
                if label_arg_depth == Some(parens.len()) {
                    out.label_values.push(word);
                    label_arg_depth = None;
                } else if GROUPING.contains(&lower.as_str()) {
                    if lx.peek() == Some('(') {
                        out.grouping.extend(lx.label_list()?);
                    }
                } else if NOT_METRICS.contains(&lower.as_str()) {
                    if lower == "label_values" && lx.peek() == Some('(') {
                        // `label_values(metric, label)`, or `label_values(label)` alone.
                        let single = !lx.comma_before_close();
                        lx.pos += 1;
                        parens.push(true);
                        if single {
                            label_arg_depth = Some(parens.len());
                        }
                    }
                } else {
                    let labels = if lx.peek() == Some('{') {
                        lx.matchers(&mut out.variables)?.0
                    } else {
                        Vec::new()
                    };
                    out.selectors.push(Selector {
                        metric: Some(word),
                        labels,
                    });
                }
            }
            // Operators: + - * / % ^ == != <= >= < > @ and the `:` of subqueries.
            '+' | '-' | '*' | '/' | '%' | '^' | '=' | '!' | '<' | '>' | '@' | ':' => lx.pos += 1,
            c => return Err(format!("unexpected `{c}` at {} in `{expr}`", lx.pos)),
        }
    }
    if !parens.is_empty() {
        return Err(format!("unbalanced `(` in `{expr}`"));
    }
    Ok(out)
}

impl Scan {
    fn metrics(&self) -> Vec<&str> {
        self.selectors
            .iter()
            .filter_map(|s| s.metric.as_deref())
            .collect()
    }
}

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
    let live = collector::live::LiveMetrics::default();
    let id = summary::Execution {
        repository: "o/r".into(),
        workflow: "w".into(),
        job: "j".into(),
        run_id: "1".into(),
        ..Default::default()
    };
    let l = collector::live::labels("c", &id, summary::Source::Cgroup);
    live.add_cpu_seconds(&l, 1.0);
    let text = live.encode();
    let line = text
        .lines()
        .find(|l| l.starts_with("ci_collector_container_cpu_seconds_total{"))
        .unwrap_or_else(|| panic!("no CPU series in\n{text}"));
    let inside = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
    let mut labels: BTreeSet<String> = inside
        .split("\",")
        .map(|kv| kv.split('=').next().unwrap().trim().to_owned())
        .collect();
    labels.extend(TARGET_LABELS.iter().map(|s| s.to_string()));
    labels
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
    let collector: BTreeSet<&str> = collector::live::METRIC_NAMES.iter().copied().collect();
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
    let collector = collector::live::METRIC_NAMES;
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
    for m in collector::live::METRIC_NAMES {
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
                    labels.contains(l)
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
                if !labels.contains(l) {
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

// ---------------------------------------------------------------------------------------------
// Prometheus config, entrypoint, compose and provisioning
// ---------------------------------------------------------------------------------------------

/// Structural YAML check: no tabs, indentation in steps of two, balanced quotes and brackets
/// per line. (The crate has no YAML parser; validate.sh parses the files for real.)
fn check_yaml_shape(path: &Path) -> Vec<String> {
    let text = read(path);
    let name = path
        .strip_prefix(rig())
        .unwrap_or(path)
        .display()
        .to_string();
    let mut problems = Vec::new();
    if text.trim().is_empty() {
        problems.push(format!("{name}: empty"));
    }
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let content = line.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if line.contains('\t') {
            problems.push(format!("{name}:{n}: tab"));
        }
        if !(line.len() - content.len()).is_multiple_of(2) {
            problems.push(format!("{name}:{n}: odd indentation"));
        }
        let code = content.split(" #").next().unwrap_or_default();
        if !code.matches('"').count().is_multiple_of(2) {
            problems.push(format!("{name}:{n}: unbalanced quotes"));
        }
        if code.matches('[').count() != code.matches(']').count() {
            problems.push(format!("{name}:{n}: unbalanced brackets"));
        }
        let item = content.strip_prefix("- ").unwrap_or(content);
        if !item.starts_with('"') && !item.contains(':') && !content.starts_with("- ") {
            problems.push(format!("{name}:{n}: neither a key nor a list item"));
        }
    }
    problems
}

#[test]
fn yaml_files_are_well_formed_and_consistent() {
    let files = [
        "prometheus.yml",
        "docker-compose.yml",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/dashboards.yml",
    ];
    let problems: Vec<String> = files
        .iter()
        .flat_map(|f| check_yaml_shape(&rig().join(f)))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let prom = read(&rig().join("prometheus.yml"));
    assert!(prom.contains("scrape_interval: 5s"), "{prom}");
    for (job, target) in [
        ("collector", "host.docker.internal:9464"),
        ("receiver", "host.docker.internal:8080"),
    ] {
        let section = prom
            .split("- job_name: ")
            .find(|s| s.starts_with(job))
            .unwrap_or_else(|| panic!("no scrape job {job} in prometheus.yml"));
        // The entrypoint replaces exactly this text: it must be written so.
        assert!(
            section.contains(&format!("- targets: [\"{target}\"]")),
            "scrape job {job}: expected `- targets: [\"{target}\"]` on one line"
        );
    }

    let compose = read(&rig().join("docker-compose.yml"));
    for needle in [
        "services:",
        "prometheus:",
        "grafana:",
        "host.docker.internal:host-gateway",
        "GF_AUTH_ANONYMOUS_ENABLED",
    ] {
        assert!(
            compose.contains(needle),
            "docker-compose.yml lacks {needle}"
        );
    }
    // Every bind mount's source exists.
    for line in compose.lines() {
        let item = line.trim().trim_start_matches("- ");
        if let Some(src) = item.strip_prefix("./") {
            let src = src.split(':').next().unwrap();
            assert!(
                rig().join(src).exists(),
                "docker-compose.yml mounts ./{src}, which does not exist"
            );
        }
    }
    // Every variable of .env.example is used by the compose file.
    for line in read(&rig().join(".env.example")).lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let var = line.split('=').next().unwrap();
        assert!(
            compose.contains(&format!("${{{var}")),
            ".env.example sets {var}, which docker-compose.yml never reads"
        );
    }

    // Grafana loads the dashboard from where compose mounts it, from the datasource it names.
    let ds = read(&rig().join("grafana/provisioning/datasources/prometheus.yml"));
    assert!(ds.contains("uid: prometheus") && ds.contains("url: http://prometheus:9090"));
    let provider = read(&rig().join("grafana/provisioning/dashboards/dashboards.yml"));
    assert!(provider.contains("path: /var/lib/grafana/dashboards"));
    assert!(compose.contains("./grafana/dashboards:/var/lib/grafana/dashboards"));
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

fn skip_or_fail(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why} (CI=true, so this is a failure)");
    }
    eprintln!("skipped: {why}");
}

fn render(collector: &str, receiver: &str) -> String {
    let out = Command::new("sh")
        .arg(rig().join("prometheus-entrypoint.sh"))
        .env("RENDER_ONLY", "1")
        .env("PROMETHEUS_CONFIG_TEMPLATE", rig().join("prometheus.yml"))
        .env("COLLECTOR_TARGET", collector)
        .env("RECEIVER_TARGET", receiver)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "entrypoint failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn entrypoint_renders_the_targets_and_promtool_accepts_everything() {
    if !have("sh") {
        return skip_or_fail("no sh");
    }
    let default = render("", "");
    assert_eq!(default, read(&rig().join("prometheus.yml")));
    let rendered = render(" node-a:9464, node-b.lan:9464 ,", "receiver:8080");
    assert!(
        rendered.contains(r#"- targets: ["node-a:9464","node-b.lan:9464"]"#),
        "{rendered}"
    );
    assert!(
        rendered.contains(r#"- targets: ["receiver:8080"]"#),
        "{rendered}"
    );
    let bad = Command::new("sh")
        .arg(rig().join("prometheus-entrypoint.sh"))
        .env("RENDER_ONLY", "1")
        .env("PROMETHEUS_CONFIG_TEMPLATE", rig().join("prometheus.yml"))
        .env("COLLECTOR_TARGET", "a|b")
        .output()
        .unwrap();
    assert!(
        !bad.status.success(),
        "a target list with `|` must be refused"
    );

    if !have("promtool") {
        return skip_or_fail("no promtool (Debian package prometheus)");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, &rendered).unwrap();
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every dashboard expression as a recording rule (JSON is YAML): PromQL syntax check,
    // with Grafana's variables replaced as Grafana would.
    let dash = dashboard();
    let rules: Vec<Value> = expressions(&dash)
        .iter()
        .enumerate()
        .filter(|(_, (loc, _))| loc.starts_with("panel"))
        .map(|(i, (loc, expr))| {
            let mut e = expr
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "15s")
                .replace("$__range", "1h");
            for v in scan(expr).unwrap().variables {
                e = e.replace(&format!("${v}"), ".*");
            }
            serde_json::json!({"record": format!("dashboard:expr_{i}"), "expr": e,
                               "labels": {"location": loc}})
        })
        .collect();
    let rules_file = dir.path().join("rules.yml");
    std::fs::write(
        &rules_file,
        serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules (dashboard PromQL): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// The scanner itself
// ---------------------------------------------------------------------------------------------

fn metrics_of(expr: &str) -> Vec<String> {
    scan(expr)
        .unwrap()
        .metrics()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[test]
fn scanner_skips_functions_groupings_durations_and_numbers() {
    let s = scan(
        "sum by (container, ci_job) (rate(ci_collector_container_cpu_seconds_total\
         {repository=~\"$repository\", container!=\"x,y}\"}[$__rate_interval]))",
    )
    .unwrap();
    assert_eq!(s.metrics(), ["ci_collector_container_cpu_seconds_total"]);
    assert_eq!(s.selectors[0].labels, ["repository", "container"]);
    assert_eq!(s.grouping, ["container", "ci_job"]);
    assert_eq!(s.variables, ["repository", "__rate_interval"]);

    assert_eq!(
        metrics_of(
            "histogram_quantile(0.99, sum by (le, route) \
             (rate(receiver_http_request_duration_seconds_bucket[5m])))"
        ),
        ["receiver_http_request_duration_seconds_bucket"]
    );
    // Aggregation after the expression, binary operators with matching, numbers, offset.
    assert_eq!(
        metrics_of(
            "sum(a_total) without (instance) / on (job) group_left (x) b > 0.5 * 1e3 \
             or c offset 5m unless d @ 1700000000 and e bool == 2"
        ),
        ["a_total", "b", "c", "d", "e"]
    );
    // Subqueries, nested brackets of a range vector, and comments.
    assert_eq!(
        metrics_of("max_over_time(rate(x_total[1m])[30m:1m]) # a comment: y_total\n + z"),
        ["x_total", "z"]
    );
    // Keywords are case-insensitive; names that contain keywords are names.
    assert_eq!(
        metrics_of("SUM BY (a) (rate_total) + by_route + sum_of_x"),
        ["rate_total", "by_route", "sum_of_x"]
    );
    // Strings with escapes and backticks do not leak identifiers.
    assert_eq!(
        metrics_of(r#"label_replace(m, "dst", "a \"b\" c", "src", `(.*) d`)"#),
        ["m"]
    );
    // Colons in recording-rule names.
    assert_eq!(metrics_of("job:requests:rate5m"), ["job:requests:rate5m"]);
}

#[test]
fn scanner_reads_selectors_without_names_and_grafana_syntax() {
    let s = scan(r#"{__name__="up", job="collector"}"#).unwrap();
    assert_eq!(s.metrics(), ["up"]);
    assert_eq!(s.selectors[0].labels, ["__name__", "job"]);
    let s = scan(r#"{job="x"}"#).unwrap();
    assert!(s.metrics().is_empty());

    let s = scan(r#"label_values(ci_collector_samples_total{instance=~"$instance"}, instance)"#)
        .unwrap();
    assert_eq!(s.metrics(), ["ci_collector_samples_total"]);
    assert_eq!(s.label_values, ["instance"]);
    assert_eq!(s.variables, ["instance"]);
    // One argument is a label name, across all metrics.
    let s = scan("label_values(run_id)").unwrap();
    assert!(s.metrics().is_empty(), "{s:?}");
    assert_eq!(s.label_values, ["run_id"]);
    let s = scan(r#"label_values(m{a=~"x,y"}, container)"#).unwrap();
    assert_eq!(s.metrics(), ["m"]);
    assert_eq!(s.label_values, ["container"]);
    let s = scan("label_values(m, ci_job)").unwrap();
    assert_eq!(s.metrics(), ["m"]);
    assert_eq!(s.label_values, ["ci_job"]);

    let s = scan("rate(m[${__rate_interval}]) * ${factor:raw} + [[old]] - $x").unwrap();
    assert_eq!(s.metrics(), ["m"]);
    assert_eq!(s.variables, ["__rate_interval", "factor", "old", "x"]);

    // Prometheus 3 quoted names.
    let s = scan(r#"{"my.metric", "a.b"="c"}"#).unwrap();
    assert_eq!(s.metrics(), ["my.metric"]);
    assert_eq!(s.selectors[0].labels, ["a.b"]);
}

#[test]
fn scanner_rejects_broken_expressions() {
    for bad in [
        "rate(m[5m]",
        "rate(m[5m)",
        "m{a=\"b\"",
        "m{a \"b\"}",
        "m{a=b}",
        "sum(m))",
        "m{a=\"unterminated}",
        "m}",
        "m ; n",
    ] {
        assert!(scan(bad).is_err(), "accepted `{bad}`: {:?}", scan(bad));
    }
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
