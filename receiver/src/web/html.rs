//! HTML building blocks: escaping, the page frame, number formats (bytes are
//! [`summary::units::bytes`]), and the stylesheet.
//!
//! The stylesheet is the only one the page uses, inline in every page and allowed by its
//! SHA-256 in the Content-Security-Policy ([`csp`]); no script runs at all.

use std::fmt::Write as _;
use std::sync::OnceLock;

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What [`url_part`] encodes: everything but RFC 3986's unreserved characters (ASCII letters
/// and digits, `-`, `_`, `.`, `~`).
const URL_PART: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a path segment or query value (everything but unreserved characters;
/// non-ASCII as its UTF-8 bytes).
pub fn url_part(s: &str) -> String {
    utf8_percent_encode(s, URL_PART).to_string()
}

/// The page's path of a job: `/job/{org}/{repo}/{workflow}/{job}`.
pub fn job_href(org: &str, repo: &str, workflow: &str, job: &str) -> String {
    format!(
        "/job/{}/{}/{}/{}",
        url_part(org),
        url_part(repo),
        url_part(workflow),
        url_part(job)
    )
}

/// Cores: `0.25 cores`, `2 cores`, `1 core`.
pub fn cores(c: f64) -> String {
    if (c - 1.0).abs() < 1e-9 {
        "1 core".to_owned()
    } else if c >= 10.0 || c == c.round() {
        format!("{} cores", num(c, 0))
    } else if c.abs() < 0.005 {
        // Not "0.00 cores" for something that is not nothing.
        "less than 0.01 cores".to_owned()
    } else {
        format!("{} cores", num(c, 2))
    }
}

/// A duration: `45 s`, `12 min 5 s`, `2 h 3 min`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// A share as a percentage: `42 %`.
pub fn pct(share: f64) -> String {
    format!("{} %", num(share * 100.0, 0))
}

/// `v` with `decimals` decimals, never a negative zero (`-0.0` from a summary, or a small
/// negative that rounds to zero, reads `0.0`).
pub fn num(v: f64, decimals: usize) -> String {
    let text = format!("{v:.decimals$}");
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_owned(),
        _ => text,
    }
}

/// Seconds: `12.5 s`.
pub fn secs(v: f64) -> String {
    format!("{} s", num(v, 1))
}

/// Core time in the unit that reads best for the larger of `hours` (core-seconds,
/// core-minutes or core-hours): `(["12.5", "40.0"], "core-min")`. Short jobs' totals are
/// not rounded to zero.
pub fn core_time(values_hours: &[f64]) -> (Vec<String>, &'static str) {
    scaled(
        values_hours,
        &[
            (1.0 / 3600.0, "core-s"),
            (1.0 / 60.0, "core-min"),
            (1.0, "core-h"),
        ],
    )
}

/// Memory time likewise: MiB-hours below a GiB-hour, else GiB-hours.
pub fn memory_time(values_gib_hours: &[f64]) -> (Vec<String>, &'static str) {
    scaled(values_gib_hours, &[(1.0 / 1024.0, "MiB-h"), (1.0, "GiB-h")])
}

/// The values in the largest unit (`(size in the base unit, name)`, smallest first) in which
/// the largest value is at least 1, else the smallest unit.
fn scaled(values: &[f64], units: &[(f64, &'static str)]) -> (Vec<String>, &'static str) {
    let top = values.iter().copied().fold(0.0, f64::max);
    let (size, name) = units
        .iter()
        .rev()
        .find(|(size, _)| top / size >= 1.0)
        .copied()
        .unwrap_or(units[0]);
    (values.iter().map(|v| num(v / size, 1)).collect(), name)
}

/// An RFC 3339 time shortened for a chart axis: `12-07 14:03`.
pub fn axis_time(rfc3339: &str) -> String {
    short_time(rfc3339).get(5..).unwrap_or_default().to_owned()
}

/// An RFC 3339 time shortened for a table: `2026-12-07 14:03`.
pub fn short_time(rfc3339: &str) -> String {
    rfc3339.get(..16).unwrap_or(rfc3339).replace('T', " ")
}

/// The stylesheet: readable at 1280 px and at 400 px, visible keyboard focus.
pub const CSS: &str = r#"
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--accent:#0a58ca;--warn:#b35900;--bad:#c62828;--good:#1a7f37}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--accent)}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,summary:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:#fff;padding:4px 8px;z-index:9}
header{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:center;padding:10px 20px;border-bottom:1px solid var(--line);background:#f6f8fa}
header .brand{font-weight:600;color:var(--fg);text-decoration:none}
header form{margin-left:auto}
main{padding:16px 20px;max-width:1400px}
h1{font-size:1.4rem;margin:.2em 0 .6em;word-break:break-word}h2{font-size:1.1rem;margin:1.4em 0 .5em}
.crumbs{color:var(--muted);word-break:break-word}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:10px;margin:12px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:10px 12px}.card b{display:block;font-size:1.25rem}
.card span{color:var(--muted);font-size:.9rem}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#f6f8fa}td.num,th.num{text-align:right}
td{overflow-wrap:anywhere}td.name{min-width:9em}td.wide{min-width:14em}
.held-back{display:inline-block;font-size:.85rem}
.badge{display:inline-block;padding:0 6px;border-radius:10px;font-size:.8rem;font-weight:600;white-space:nowrap}
.badge.bad{background:#fde8e8;color:var(--bad)}.badge.warn{background:#fff1e0;color:var(--warn)}.badge.good{background:#e6f4ea;color:var(--good)}
.muted{color:var(--muted)}
form.filters{display:flex;flex-wrap:wrap;gap:8px 12px;align-items:end}
form.filters label{display:flex;flex-direction:column;font-size:.85rem;color:var(--muted)}
input,select,button{font:inherit;padding:5px 8px;border:1px solid var(--line);border-radius:6px;background:#fff;color:var(--fg)}
button{cursor:pointer;background:#f6f8fa}button.primary{background:var(--accent);color:#fff;border-color:var(--accent)}
.pager{display:flex;gap:16px;margin:10px 0}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,540px),1fr));gap:16px}
figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:8px}figcaption{font-weight:600;margin-bottom:4px}
svg.chart{width:100%;height:auto;display:block}
svg .grid{stroke:#eaeef2;stroke-width:1}svg .axis{stroke:#8c959f;stroke-width:1}
svg .tick,svg .legend,svg .axis-title{font-size:14px;fill:#424a53}svg .axis-title{fill:#59636e}
svg .line{fill:none;stroke-width:2}svg .pt{stroke:#fff;stroke-width:1}
svg .s0{stroke:#0a58ca}svg circle.s0{fill:#0a58ca}svg .s1{stroke:#b35900}svg circle.s1{fill:#b35900}
svg .s2{stroke:#6f42c1}svg circle.s2{fill:#6f42c1}svg .s3{stroke:#1a7f37}svg circle.s3{fill:#1a7f37}
svg .limit{fill:none;stroke:#c62828;stroke-width:2;stroke-dasharray:6 4}
svg .oom{stroke:#c62828;stroke-width:2.5;fill:none}svg .starved{fill:#f59e0b;fill-opacity:.25}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:10px;overflow-x:auto}
ul.explain{padding-left:1.2em}
.login{max-width:420px;margin:60px auto;padding:0 16px}.login input{width:100%;margin:6px 0 12px}
.error{color:var(--bad);font-weight:600}
@media (max-width:600px){main{padding:10px}header{padding:8px 10px}.charts{grid-template-columns:1fr}th,td{padding:5px 6px}}
"#;

/// The Content-Security-Policy of every page: nothing but this stylesheet and same-origin
/// forms; no scripts, no frames, nothing fetched.
pub fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

/// A whole page: `title`, and the header with sign-out when `signed_in`.
pub fn page(title: &str, signed_in: bool, body: &str) -> String {
    let mut s = String::with_capacity(body.len() + CSS.len() + 1024);
    let _ = write!(
        s,
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{} · CI resources</title><style>{CSS}</style></head><body><a class="skip" href="#main">Skip to content</a><header><a class="brand" href="/">CI resources</a>"##,
        esc(title)
    );
    if signed_in {
        s.push_str(r#"<a href="/">Fleet</a><form method="post" action="/logout"><button type="submit">Sign out</button></form>"#);
    }
    let _ = write!(s, r#"</header><main id="main">{body}</main></body></html>"#);
    s
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use summary::units::bytes;

    use super::*;

    /// Whether `text` shows a negative zero (`-0`, `-0.0`, `-0 %`).
    fn negative_zero(text: &str) -> bool {
        text.match_indices('-').any(|(i, _)| {
            let rest = &text[i + 1..];
            let digits: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            !digits.is_empty() && digits.chars().all(|c| c == '0' || c == '.')
        })
    }

    proptest! {
        /// No formatter shows a negative zero, whatever tiny negative (or -0.0) it gets.
        #[test]
        fn no_negative_zero(v in prop_oneof![Just(-0.0f64), -0.05f64..0.0, -1e-9f64..1e-9]) {
            let (c, _) = core_time(&[v, v / 2.0]);
            let (m, _) = memory_time(&[v]);
            for text in [pct(v), num(v, 0), num(v, 1), num(v, 2), secs(v), cores(v), duration(v), bytes(v)]
                .into_iter()
                .chain(c)
                .chain(m)
            {
                prop_assert!(!negative_zero(&text), "{v}: {text}");
            }
        }
    }

    #[test]
    fn short_totals_scale_their_unit() {
        assert_eq!(
            core_time(&[0.0025, 0.01]),
            (vec!["9.0".into(), "36.0".into()], "core-s")
        );
        assert_eq!(
            core_time(&[0.1, 0.5]),
            (vec!["6.0".into(), "30.0".into()], "core-min")
        );
        assert_eq!(
            core_time(&[2.0, 30.0]),
            (vec!["2.0".into(), "30.0".into()], "core-h")
        );
        assert_eq!(memory_time(&[0.5]), (vec!["512.0".into()], "MiB-h"));
        assert_eq!(memory_time(&[0.0]), (vec!["0.0".into()], "MiB-h"));
        assert_eq!(cores(0.001), "less than 0.01 cores");
        assert!(negative_zero("-0.0 s") && negative_zero("-0 %") && !negative_zero("-1.0"));
    }

    #[test]
    fn escaping_and_formats() {
        assert_eq!(
            esc(r#"<img src=x onerror="alert(1)">&'"#),
            "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#39;"
        );
        assert_eq!(url_part("a b/c?d"), "a%20b%2Fc%3Fd");
        // Unreserved characters stay; `%` itself, non-ASCII (as UTF-8 bytes) and the rest do not.
        assert_eq!(url_part("Az09-_.~"), "Az09-_.~");
        assert_eq!(url_part("100%"), "100%25");
        assert_eq!(url_part("ci/é ü"), "ci%2F%C3%A9%20%C3%BC");
        assert_eq!(url_part("a+b&c=d#e"), "a%2Bb%26c%3Dd%23e");
        assert_eq!(url_part(""), "");
        assert_eq!(
            job_href("o", "r", "ci.yml", "<x>"),
            "/job/o/r/ci.yml/%3Cx%3E"
        );
        assert_eq!(cores(1.0), "1 core");
        assert_eq!(cores(0.25), "0.25 cores");
        assert_eq!(cores(2.0), "2 cores");
        assert_eq!(duration(45.2), "45 s");
        assert_eq!(duration(725.0), "12 min 5 s");
        assert_eq!(duration(7380.0), "2 h 3 min");
        assert_eq!(pct(0.424), "42 %");
        assert_eq!(short_time("2026-12-07T14:03:09.000Z"), "2026-12-07 14:03");
        assert_eq!(axis_time("2026-12-07T14:03:09.000Z"), "12-07 14:03");
        assert!(csp().starts_with("default-src 'none'; style-src 'sha256-"));
        let p = page("<t>", true, "<p>x</p>");
        assert!(p.contains("<title>&lt;t&gt; · CI resources</title>") && p.contains("Sign out"));
        assert!(!page("t", false, "").contains("Sign out"));
    }
}
