//! A small PromQL scanner: metric names, label matchers, groupings and `$variables` of an
//! expression, enough to check a dashboard against what is exported.

/// Functions, aggregation operators and keywords of PromQL, plus Grafana's templating
/// functions: identifiers that are never metric names.
pub const NOT_METRICS: &[&str] = &[
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
pub const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// One vector selector: a metric name and the label names of its `{...}` matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub metric: Option<String>,
    pub labels: Vec<String>,
}

/// What one PromQL expression references.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Vector selectors, in order (a bare `{__name__="x"}` gives metric `x`; `{job="a"}` none).
    pub selectors: Vec<Selector>,
    /// Label names in `by (...)`, `without (...)`, `on (...)`, `ignoring (...)`,
    /// `group_left (...)`, `group_right (...)`.
    pub grouping: Vec<String>,
    /// The label argument of Grafana's `label_values(metric, label)`.
    pub label_values: Vec<String>,
    /// Grafana variables (`$name`, `${name}`, `${name:fmt}`, `[[name]]`), without the `$`.
    pub variables: Vec<String>,
}

pub fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

pub fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

pub struct Lexer<'a> {
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
pub fn variables_in(s: &str) -> Vec<String> {
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
pub fn scan(expr: &str) -> Result<Scan, String> {
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
    pub fn metrics(&self) -> Vec<&str> {
        self.selectors
            .iter()
            .filter_map(|s| s.metric.as_deref())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The scanner itself
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
pub fn scanner_skips_functions_groupings_durations_and_numbers() {
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
pub fn scanner_reads_selectors_without_names_and_grafana_syntax() {
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
pub fn scanner_rejects_broken_expressions() {
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
