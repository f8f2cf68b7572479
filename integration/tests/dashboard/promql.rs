//! What one dashboard expression references: metric names, label matchers, groupings,
//! Grafana's `label_values(...)` and `$variables`. The PromQL itself is parsed by the
//! `promql-parser` crate; what is ours is the Grafana layer around it ([`grafana_to_promql`],
//! the variable queries in [`scan`]) and the walk that collects what the checks need.

use promql_parser::label::{METRIC_NAME, MatchOp, Matcher};
use promql_parser::parser::{self, Expr, LabelModifier};

/// One vector selector: a metric name and the label names of its `{...}` matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The name before `{`, or of a `__name__="x"` matcher or a quoted `{"x"}`.
    pub metric: Option<String>,
    /// The labels matched on, in order, without `__name__` (the metric above).
    pub labels: Vec<String>,
}

/// What one PromQL expression references.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Vector selectors (range vectors' too), in order.
    pub selectors: Vec<Selector>,
    /// Label names in `by (...)`, `without (...)`, `on (...)`, `ignoring (...)`,
    /// `group_left (...)`, `group_right (...)`.
    pub grouping: Vec<String>,
    /// The label argument of Grafana's `label_values(metric, label)` or `label_values(label)`.
    pub label_values: Vec<String>,
    /// Grafana variables (`$name`, `${name}`, `${name:fmt}`, `[[name]]`), without the `$`.
    pub variables: Vec<String>,
}

/// Replaces Grafana's template variables (`$name`, `${name}`, `${name:format}`, `[[name]]`),
/// which are not PromQL, by text that parses where they stand: `.*` inside a string (a label
/// matcher's value or regex), `1m` inside `[...]` (a range such as `[$__rate_interval]`), `1`
/// elsewhere. Returns that PromQL and the variables' names, in order. A `$` that starts no
/// variable is kept inside a string (a regex's end anchor) and an error outside one, as is an
/// unterminated `${`.
pub fn grafana_to_promql(expr: &str) -> Result<(String, Vec<String>), String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(expr.len());
    let mut vars = Vec::new();
    let mut quote = None;
    let mut brackets = 0usize;
    let mut rest = expr;
    while let Some(c) = rest.chars().next() {
        let placeholder = match (quote, brackets) {
            (Some(_), _) => ".*",
            (None, 0) => "1",
            (None, _) => "1m",
        };
        // A variable: its name and the length of its text.
        let var = if let Some(braced) = rest.strip_prefix("${") {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unterminated ${{...}} in `{expr}`"))?;
            // `${name:format}`, `${name.field}`: the name is what comes first.
            let name = &braced[..braced.find(|c| !is_name(c)).unwrap_or(end)];
            (!name.is_empty()).then_some((name, end + 3))
        } else if let Some(after) = rest.strip_prefix('$') {
            let name = &after[..after.find(|c| !is_name(c)).unwrap_or(after.len())];
            (!name.is_empty()).then_some((name, name.len() + 1))
        } else {
            // Grafana's old `[[name]]`.
            rest.strip_prefix("[[")
                .and_then(|r| r.split_once("]]"))
                .map(|(name, _)| name)
                .filter(|name| !name.is_empty() && name.chars().all(is_name))
                .map(|name| (name, name.len() + 4))
        };
        if let Some((name, len)) = var {
            vars.push(name.to_owned());
            out.push_str(placeholder);
            rest = &rest[len..];
            continue;
        }
        if c == '$' && quote.is_none() {
            return Err(format!("lone `$` in `{expr}`"));
        }
        let mut len = c.len_utf8();
        match (quote, c) {
            // An escaped character (backtick strings have no escapes).
            (Some(q), '\\') if q != '`' => {
                len += rest[len..].chars().next().map_or(0, char::len_utf8);
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '[') => brackets += 1,
            (None, ']') => brackets = brackets.saturating_sub(1),
            (None, _) => {}
        }
        out.push_str(&rest[..len]);
        rest = &rest[len..];
    }
    Ok((out, vars))
}

/// Reads one PromQL expression, or Grafana variable query (`label_values(metric, label)`,
/// `label_values(label)`, `query_result(expr)`), and returns what it references.
pub fn scan(expr: &str) -> Result<Scan, String> {
    let (promql, variables) = grafana_to_promql(expr)?;
    let mut out = Scan {
        variables,
        ..Scan::default()
    };
    let call = |name: &str| {
        let rest = promql.trim().strip_prefix(name)?.trim_start();
        rest.strip_prefix('(')?.strip_suffix(')')
    };
    let promql = if let Some(args) = call("label_values") {
        // The label is the last argument, a name: the last comma ends the series selector.
        let (series, label) = match args.rsplit_once(',') {
            Some((series, label)) => (Some(series), label.trim()),
            None => (None, args.trim()),
        };
        if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{label}` is not a label name in `{expr}`"));
        }
        out.label_values.push(label.to_owned());
        match series {
            Some(series) => series,
            None => return Ok(out),
        }
    } else {
        call("query_result").unwrap_or(&promql)
    };
    let ast = parser::parse(promql).map_err(|e| format!("{} in `{expr}`", e.trim()))?;
    out.walk(&ast);
    Ok(out)
}

impl Scan {
    /// The metric names of the selectors, in order.
    pub fn metrics(&self) -> Vec<&str> {
        self.selectors
            .iter()
            .filter_map(|s| s.metric.as_deref())
            .collect()
    }

    /// Collects the selectors and groupings of `expr` and its subexpressions, left to right
    /// (an aggregation's grouping first, wherever it is written).
    fn walk(&mut self, expr: &Expr) {
        let names = |m: &LabelModifier| m.labels().labels.clone();
        match expr {
            Expr::Aggregate(a) => {
                self.grouping
                    .extend(a.modifier.as_ref().map(names).unwrap_or_default());
                if let Some(param) = &a.param {
                    self.walk(param);
                }
                self.walk(&a.expr);
            }
            Expr::Binary(b) => {
                self.walk(&b.lhs);
                if let Some(m) = &b.modifier {
                    self.grouping
                        .extend(m.matching.as_ref().map(names).unwrap_or_default());
                    if let Some(card) = m.card.labels() {
                        self.grouping.extend(card.labels.iter().cloned());
                    }
                }
                self.walk(&b.rhs);
            }
            Expr::Unary(u) => self.walk(&u.expr),
            Expr::Paren(p) => self.walk(&p.expr),
            Expr::Subquery(s) => self.walk(&s.expr),
            Expr::Call(c) => c.args.args.iter().for_each(|a| self.walk(a)),
            Expr::VectorSelector(vs) => self.selector(vs),
            Expr::MatrixSelector(ms) => self.selector(&ms.vs),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn selector(&mut self, vs: &parser::VectorSelector) {
        let matchers = vs
            .matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten());
        let is_name = |m: &&Matcher| m.name == METRIC_NAME;
        let named = matchers
            .clone()
            .find(|m| is_name(m) && m.op == MatchOp::Equal);
        self.selectors.push(Selector {
            metric: vs.name.clone().or(named.map(|m| m.value.clone())),
            labels: matchers
                .filter(|m| !is_name(m))
                .map(|m| m.name.clone())
                .collect(),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Our part: the Grafana layer and what is collected (the parser has its own tests)
// ---------------------------------------------------------------------------------------------

pub fn metrics_of(expr: &str) -> Vec<String> {
    scan(expr)
        .unwrap()
        .metrics()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[test]
pub fn promql_scan_collects_selectors_groupings_and_variables() {
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
    let s = scan(
        "sum(a_total) without (instance) / on (job) group_left (x) b > 0.5 * 1e3 \
         or c offset 5m unless d @ 1700000000 and e == bool 2",
    )
    .unwrap();
    assert_eq!(s.metrics(), ["a_total", "b", "c", "d", "e"]);
    assert_eq!(s.grouping, ["instance", "job", "x"]);
    // Subqueries, nested brackets of a range vector, comments, aggregation parameters.
    assert_eq!(
        metrics_of("max_over_time(rate(x_total[1m])[30m:1m]) # a comment: y_total\n + z"),
        ["x_total", "z"]
    );
    assert_eq!(metrics_of("topk(scalar(k), m)"), ["k", "m"]);
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
pub fn promql_scan_reads_selectors_without_names_and_grafana_syntax() {
    let s = scan(r#"{__name__="up", job="collector"}"#).unwrap();
    assert_eq!(s.metrics(), ["up"]);
    assert_eq!(s.selectors[0].labels, ["job"]);
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
    assert_eq!(metrics_of("query_result(sum(m))"), ["m"]);

    let s = scan("rate(m[${__rate_interval}]) * ${factor:raw} + [[old]] - $x").unwrap();
    assert_eq!(s.metrics(), ["m"]);
    assert_eq!(s.variables, ["__rate_interval", "factor", "old", "x"]);

    // Prometheus 3 quoted names.
    let s = scan(r#"{"my.metric", "a.b"="c"}"#).unwrap();
    assert_eq!(s.metrics(), ["my.metric"]);
    assert_eq!(s.selectors[0].labels, ["a.b"]);
}

#[test]
pub fn promql_grafana_variables_become_promql_where_they_stand() {
    let to = |e: &str| grafana_to_promql(e).unwrap();
    assert_eq!(
        to(r#"rate(m{a=~"$a|${b:regex}", c="[[c]]-x"}[$__rate_interval]) * $k"#),
        (
            r#"rate(m{a=~".*|.*", c=".*-x"}[1m]) * 1"#.to_owned(),
            vec![
                "a".into(),
                "b".into(),
                "c".into(),
                "__rate_interval".into(),
                "k".into()
            ]
        )
    );
    // Subquery ranges; `$` ending a regex; quotes and escapes inside strings.
    assert_eq!(
        to("max_over_time(m[$__range:$__interval])").0,
        "max_over_time(m[1m:1m])"
    );
    assert_eq!(
        to(r#"m{a=~"x$", b="\"$v\"", c=`\`}"#).0,
        r#"m{a=~"x$", b="\".*\"", c=`\`}"#
    );
    assert_eq!(to("m{a=\"é$v\"}").0, "m{a=\"é.*\"}");
    assert!(grafana_to_promql("m * $").is_err());
    assert!(grafana_to_promql("m{a=\"${v\"").is_err());
}

#[test]
pub fn promql_scan_rejects_broken_expressions() {
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
        "no_such_function(m)",
        "e bool == 2",
        "label_values(m, a b)",
        "label_values()",
    ] {
        assert!(scan(bad).is_err(), "accepted `{bad}`: {:?}", scan(bad));
    }
}
