//! The Markdown report for a CI job summary: `collector show --markdown` on a summary with a
//! timeline, its Mermaid charts rendered by the real Mermaid library in headless Chromium
//! (`cargo xtask test` installs Debian's `chromium` and the npm package `mermaid` into
//! `target/mermaid/`). A chart that does not render fails the test.

mod common;

use std::{path::PathBuf, process::Command};

use common::collector;

/// The summary of the golden test of the `summary` crate: every field, a timeline included.
const SUMMARY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../summary/tests/fixtures/stored_run.json"
);

fn mermaid_js() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/mermaid/node_modules/mermaid/dist/mermaid.min.js"
    ))
}

fn markdown_of(file: &str) -> String {
    let out = collector()
        .args(["show", "--markdown", file])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The bodies of the ```mermaid blocks.
fn mermaid_blocks(md: &str) -> Vec<String> {
    md.split("```mermaid\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_owned())
        .collect()
}

#[test]
fn the_markdown_report_and_its_charts_render() {
    let md = markdown_of(SUMMARY);
    println!("{md}");
    assert!(
        md.contains("| container |") && md.contains("| runner |"),
        "{md}"
    );
    let blocks = mermaid_blocks(&md);
    assert_eq!(blocks.len(), 2, "a CPU and a memory chart");
    let browser = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let ready = match (&browser, mermaid_js().exists()) {
        (Some(_), true) => Ok(()),
        (None, _) => Err("no chromium".to_owned()),
        (_, false) => Err(format!("no {}", mermaid_js().display())),
    };
    if !testkit::require(
        "renders the Mermaid charts in headless Chromium (`cargo xtask test` installs both)",
        ready,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("render.html");
    let blocks_json = serde_json::to_string(&blocks).unwrap();
    std::fs::write(
        &page,
        format!(
            r#"<!doctype html><html><body><pre id="out">pending</pre>
<script src="file://{js}"></script>
<script>
mermaid.initialize({{ startOnLoad: false }});
(async () => {{
  const results = [];
  for (const [i, code] of {blocks_json}.entries()) {{
    try {{
      const {{ svg }} = await mermaid.render("chart" + i, code);
      results.push({{ ok: svg.includes("<svg") && !svg.includes("Syntax error"), bytes: svg.length }});
    }} catch (e) {{
      results.push({{ ok: false, error: String(e && e.message || e) }});
    }}
  }}
  document.getElementById("out").textContent = "RESULTS" + JSON.stringify(results);
}})();
</script></body></html>"#,
            js = mermaid_js().display()
        ),
    )
    .unwrap();
    let profile = dir.path().join("profile");
    let out = Command::new("timeout")
        .arg("120")
        .arg(browser.unwrap())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
            "--virtual-time-budget=20000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let results = dom
        .split("RESULTS")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| {
            panic!(
                "the page did not finish rendering; chromium said:\n{}\n{dom}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let results: Vec<serde_json::Value> =
        serde_json::from_str(&results.replace("&quot;", "\"")).unwrap();
    println!("rendered: {results:?}");
    assert_eq!(results.len(), blocks.len());
    for (r, block) in results.iter().zip(&blocks) {
        assert_eq!(r["ok"], true, "{r}\n{block}");
    }
}
