//! The Prometheus config, its entrypoint, the compose file and Grafana provisioning.

use super::*;

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

/// The shared rule (`testkit::require`): a failure under `CI=true` or `REQUIRE_EBPF=1`,
/// else `SKIP` with the reason.
fn skip_or_fail(why: &str) {
    testkit::require(why, Err("not installed"));
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
    // with Grafana's variables replaced by PromQL that parses where they stand.
    let dash = dashboard();
    let rules: Vec<Value> = expressions(&dash)
        .iter()
        .enumerate()
        .filter(|(_, (loc, _))| loc.starts_with("panel"))
        .map(|(i, (loc, expr))| {
            let (e, _) = grafana_to_promql(expr).unwrap();
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
