//! The guest's report: what `init.sh` writes to its second serial port, parsed.
//!
//! The guest frames everything in lines that start with `@@vm@@`:
//!
//! ```text
//! @@vm@@ kernel 6.1.0-48-cloud-amd64 #1 SMP ...
//! @@vm@@ begin check
//! ...`collector check` output...
//! @@vm@@ end check rc=0
//! @@vm@@ begin test collector::run_counts_a_command_shorter_than_the_first_scan
//! ...the test binary's output...
//! @@vm@@ end test collector::run_counts_a_command_shorter_than_the_first_scan rc=0 seconds=4.2
//! @@vm@@ done
//! ```
//!
//! A test passes when its binary exits 0 **and** its own summary line says exactly one test
//! passed and none failed: a test renamed on the host, which `--exact` would then not find,
//! is a failure here, not a silent pass. A report without `done` (the guest panicked, hung
//! or ran out of memory) fails too.

use crate::util::TestTotals;

const MARK: &str = "@@vm@@ ";

/// One test's outcome in the guest.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestTest {
    pub label: String,
    pub passed: bool,
    /// Why it failed, in a few words (exit status, or what its summary line said).
    pub problem: Option<String>,
    pub seconds: Option<f64>,
    /// Everything the test binary printed (stdout and stderr).
    pub output: String,
}

/// The whole report.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    /// `uname -r` and `-v` of the guest.
    pub kernel: Option<String>,
    /// `collector check`'s output and exit status.
    pub check: Option<(String, i32)>,
    /// Other `@@vm@@` facts (cpus, controllers, notes), as written.
    pub facts: Vec<String>,
    pub tests: Vec<GuestTest>,
    /// The guest reached the end of its list.
    pub complete: bool,
    /// A test that began and never ended (the guest died in it).
    pub unfinished: Option<(String, String)>,
}

impl Report {
    pub fn parse(text: &str) -> Self {
        let mut report = Report::default();
        // The block being read: ("check" | "test", label, lines so far).
        let mut open: Option<(String, String, String)> = None;
        for raw in text.split('\n') {
            let line = raw.trim_end_matches('\r');
            let Some(at) = line.find(MARK) else {
                if let Some((_, _, body)) = open.as_mut() {
                    body.push_str(line);
                    body.push('\n');
                }
                continue;
            };
            // Output without a final newline runs into the marker: keep it.
            if let Some((_, _, body)) = open.as_mut()
                && at > 0
            {
                body.push_str(&line[..at]);
                body.push('\n');
            }
            let directive = &line[at + MARK.len()..];
            let mut words = directive.split_whitespace();
            match (words.next(), words.next()) {
                (Some("kernel"), _) => {
                    report.kernel = Some(directive["kernel".len()..].trim().to_owned());
                }
                (Some("begin"), Some(kind)) => {
                    let label = words.next().unwrap_or("").to_owned();
                    open = Some((kind.to_owned(), label, String::new()));
                }
                (Some("end"), Some(kind)) => {
                    let Some((open_kind, label, body)) = open.take() else {
                        continue;
                    };
                    let fields: Vec<&str> = words.collect();
                    let field = |key: &str| {
                        fields
                            .iter()
                            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
                    };
                    let rc = field("rc").and_then(|v| v.parse::<i32>().ok());
                    let body = body.trim_end().to_owned();
                    if open_kind == "check" && kind == "check" {
                        report.check = Some((body, rc.unwrap_or(-1)));
                    } else if open_kind == "test" {
                        let seconds = field("seconds").and_then(|v| v.parse().ok());
                        report.tests.push(judge(label, rc, seconds, body));
                    }
                }
                (Some("done"), _) => report.complete = true,
                _ => report.facts.push(directive.to_owned()),
            }
        }
        if let Some((kind, label, body)) = open
            && kind == "test"
        {
            report.unfinished = Some((label, body));
        }
        report
    }

    /// Adds the report of a later boot that went on from where this one died.
    pub fn absorb(&mut self, next: Report) {
        self.kernel = self.kernel.take().or(next.kernel);
        self.check = self.check.take().or(next.check);
        if self.facts.is_empty() {
            self.facts = next.facts;
        }
        self.tests.extend(next.tests);
        self.complete = next.complete;
        self.unfinished = next.unfinished;
    }

    /// Test counts as `cargo xtask test` adds them up: a guest that died counts its
    /// unfinished test as failed.
    pub fn totals(&self) -> TestTotals {
        let passed = self.tests.iter().filter(|t| t.passed).count() as u64;
        TestTotals {
            passed,
            failed: self.tests.len() as u64 - passed + u64::from(self.unfinished.is_some()),
            ignored: 0,
        }
    }

    /// The report as JSON, for tools (`target/vm/report.json`).
    pub fn to_json(&self, extra: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "kernel": self.kernel,
            "facts": self.facts,
            "collector_check": self.check.as_ref().map(|(out, rc)| serde_json::json!({"rc": rc, "output": out})),
            "complete": self.complete,
            "unfinished": self.unfinished.as_ref().map(|(label, _)| label),
            "tests": self.tests.iter().map(|t| serde_json::json!({
                "label": t.label,
                "passed": t.passed,
                "problem": t.problem,
                "seconds": t.seconds,
                "output": t.output,
            })).collect::<Vec<_>>(),
            "host": extra,
        })
    }
}

/// A test passes when it exits 0 and its summary says one test passed, none failed.
fn judge(label: String, rc: Option<i32>, seconds: Option<f64>, output: String) -> GuestTest {
    let mut totals = TestTotals::default();
    for line in output.lines() {
        totals.add_line(line);
    }
    let problem = match rc {
        None => Some("no exit status".to_owned()),
        Some(rc) if rc != 0 => Some(format!("exit status {rc}")),
        Some(_) if totals.failed > 0 => Some(format!("{} failed", totals.failed)),
        Some(_) if totals.passed != 1 => Some(format!(
            "{} tests ran, expected exactly 1 (was the test renamed?)",
            totals.passed
        )),
        Some(_) => None,
    };
    GuestTest {
        label,
        passed: problem.is_none(),
        problem,
        seconds,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "@@vm@@ kernel 6.1.0-48-cloud-amd64 #1 SMP Debian\r
@@vm@@ cpus 2 memory_kib 2000000\r
@@vm@@ begin check\r
cpu source: ebpf\r
cgroup layout: pure v2\r
@@vm@@ end check rc=0\r
@@vm@@ begin test a::one\r
running 1 test\r
test one ... cgroup layout: pure v2\r
ok\r
\r
test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 5 filtered out\r
@@vm@@ end test a::one rc=0 seconds=3.5\r
@@vm@@ begin test a::renamed\r
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 6 filtered out\r
@@vm@@ end test a::renamed rc=0 seconds=0.1\r
@@vm@@ begin test b::broken\r
thread panicked at 'peak 0'\r
test result: FAILED. 0 passed; 1 failed; 0 ignored\r
@@vm@@ end test b::broken rc=101 seconds=2.0\r
@@vm@@ done\r
";

    #[test]
    fn parses_facts_check_and_tests() {
        let r = Report::parse(GOOD);
        assert_eq!(
            r.kernel.as_deref(),
            Some("6.1.0-48-cloud-amd64 #1 SMP Debian")
        );
        assert_eq!(r.facts, ["cpus 2 memory_kib 2000000"]);
        assert_eq!(
            r.check,
            Some(("cpu source: ebpf\ncgroup layout: pure v2".to_owned(), 0))
        );
        assert!(r.complete && r.unfinished.is_none());
        let outcomes: Vec<(&str, bool, Option<&str>)> = r
            .tests
            .iter()
            .map(|t| (t.label.as_str(), t.passed, t.problem.as_deref()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("a::one", true, None),
                (
                    "a::renamed",
                    false,
                    Some("0 tests ran, expected exactly 1 (was the test renamed?)")
                ),
                ("b::broken", false, Some("exit status 101")),
            ]
        );
        assert_eq!(r.tests[0].seconds, Some(3.5));
        assert!(r.tests[0].output.contains("cgroup layout: pure v2\nok"));
        assert_eq!(
            r.totals(),
            TestTotals {
                passed: 1,
                failed: 2,
                ignored: 0
            }
        );
    }

    #[test]
    fn a_guest_that_died_mid_test_fails_it() {
        let r = Report::parse(
            "@@vm@@ begin test a::one\nrunning 1 test\nKernel panic - not syncing: Out of memory",
        );
        assert!(!r.complete);
        assert_eq!(r.unfinished.as_ref().map(|u| u.0.as_str()), Some("a::one"));
        assert!(r.unfinished.as_ref().unwrap().1.contains("Out of memory"));
        assert_eq!(r.totals().failed, 1);
    }

    #[test]
    fn a_second_boot_goes_on_from_the_test_the_first_died_in() {
        let mut r = Report::parse(
            "@@vm@@ kernel 6.1\n@@vm@@ begin check\nok\n@@vm@@ end check rc=0\n\
             @@vm@@ begin test a\ntest result: ok. 1 passed; 0 failed\n@@vm@@ end test a rc=0\n\
             @@vm@@ begin test b\nwatchdog: BUG: soft lockup",
        );
        assert_eq!(r.totals().failed, 1);
        r.unfinished = None;
        r.absorb(Report::parse(
            "@@vm@@ kernel 6.1\n@@vm@@ begin test b\ntest result: ok. 1 passed; 0 failed\n\
             @@vm@@ end test b rc=0\n@@vm@@ done\n",
        ));
        assert!(r.complete && r.unfinished.is_none());
        assert_eq!(r.check, Some(("ok".to_owned(), 0)));
        let labels: Vec<&str> = r.tests.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["a", "b"]);
        assert_eq!(r.totals().passed, 2);
    }

    #[test]
    fn output_without_a_final_newline_is_kept() {
        let r = Report::parse(
            "@@vm@@ begin test t\ntest result: ok. 1 passed; 0 failed\npartial@@vm@@ end test t rc=0 seconds=1\n@@vm@@ done\n",
        );
        assert!(r.tests[0].passed);
        assert!(r.tests[0].output.ends_with("partial"), "{:?}", r.tests[0]);
    }

    #[test]
    fn a_failed_summary_fails_even_with_status_zero() {
        let r = Report::parse(
            "@@vm@@ begin test t\ntest result: FAILED. 3 passed; 1 failed; 0 ignored\n@@vm@@ end test t rc=0\n",
        );
        assert_eq!(r.tests[0].problem.as_deref(), Some("1 failed"));
        assert!(!r.complete);
    }
}
