//! Kubernetes resource quantities (`"750m"`, `"1536Mi"`) and runner classes
//! (`small=2c/4Gi,medium=4c/8Gi`).

use serde::{Deserialize, Serialize};

use super::{Resources, RunnerClass};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// CPU as a Kubernetes quantity, in whole millicores rounded up: `0.75` is `"750m"`, `2.0`
/// is `"2"`.
pub fn cpu(cores: f64) -> String {
    let milli = (cores.max(0.0) * 1000.0 - 1e-6).ceil().max(0.0) as u64;
    if milli.is_multiple_of(1000) && milli > 0 {
        format!("{}", milli / 1000)
    } else {
        format!("{milli}m")
    }
}

/// Memory as a Kubernetes quantity in whole MiB rounded up (`"1536Mi"`), or in GiB when
/// exact (`"2Gi"`).
pub fn memory(bytes: u64) -> String {
    let mib = bytes.div_ceil(MIB);
    if mib.is_multiple_of(1024) && mib > 0 {
        format!("{}Gi", mib / 1024)
    } else {
        format!("{mib}Mi")
    }
}

/// Parses a CPU quantity: `2`, `2c`, `1.5`, `750m`.
pub fn parse_cpu(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (num, div) = match s.strip_suffix('m') {
        Some(n) => (n, 1000.0),
        None => (s.strip_suffix('c').unwrap_or(s), 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v / div),
        _ => Err(format!(
            "{s:?} is not a CPU quantity (for example 2, 2c, 1.5 or 750m)"
        )),
    }
}

/// Parses a memory quantity: `4Gi`, `512Mi`, `4G`, `500M`, `1Ti`, or bytes.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let units: [(&str, f64); 8] = [
        ("Ki", 1024.0),
        ("Mi", MIB as f64),
        ("Gi", GIB as f64),
        ("Ti", (GIB as f64) * 1024.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (num, mult) = units
        .iter()
        .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n, *m)))
        .unwrap_or((s, 1.0));
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v * mult < 1e18 => Ok((v * mult).round() as u64),
        _ => Err(format!(
            "{s:?} is not a memory quantity (for example 4Gi, 512Mi or 4G)"
        )),
    }
}

/// Parses runner classes, `name=CPU/MEMORY` separated by commas
/// (`small=2c/4Gi,medium=4c/8Gi,large=8c/16Gi`), smallest first.
pub fn parse_classes(s: &str) -> Result<Vec<RunnerClass>, String> {
    let mut classes = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, spec) = part.split_once('=').ok_or_else(|| {
            format!("runner class {part:?}: expected NAME=CPU/MEMORY, for example small=2c/4Gi")
        })?;
        let (c, m) = spec.split_once('/').ok_or_else(|| {
            format!("runner class {part:?}: expected NAME=CPU/MEMORY, for example small=2c/4Gi")
        })?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("runner class {part:?} has no name"));
        }
        if classes.iter().any(|k: &RunnerClass| k.name == name) {
            return Err(format!("runner class {name:?} is listed twice"));
        }
        classes.push(RunnerClass {
            name: name.to_owned(),
            cpu_cores: parse_cpu(c).map_err(|e| format!("runner class {name:?}: {e}"))?,
            memory_bytes: parse_memory(m).map_err(|e| format!("runner class {name:?}: {e}"))?,
        });
    }
    sort_classes(&mut classes);
    Ok(classes)
}

/// Smallest first: by CPU, then memory.
pub fn sort_classes(classes: &mut [RunnerClass]) {
    classes.sort_by(|a, b| {
        a.cpu_cores
            .total_cmp(&b.cpu_cores)
            .then(a.memory_bytes.cmp(&b.memory_bytes))
    });
}

/// The smallest class with at least the requested CPU and the memory limit.
pub fn smallest_fit<'a>(classes: &'a [RunnerClass], need: &Resources) -> Option<&'a RunnerClass> {
    classes
        .iter()
        .filter(|k| {
            k.cpu_cores + 1e-9 >= need.cpu_request_cores
                && k.memory_bytes >= need.memory_limit_bytes
        })
        .min_by(|a, b| {
            a.cpu_cores
                .total_cmp(&b.cpu_cores)
                .then(a.memory_bytes.cmp(&b.memory_bytes))
        })
}

/// `requests` and `limits` as Kubernetes quantities.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KubeResources {
    pub requests: KubeQuantities,
    pub limits: KubeQuantities,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KubeQuantities {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

impl KubeResources {
    pub fn of(r: &Resources) -> Self {
        Self {
            requests: KubeQuantities {
                cpu: Some(cpu(r.cpu_request_cores)),
                memory: Some(memory(r.memory_request_bytes)),
            },
            limits: KubeQuantities {
                cpu: r.cpu_limit_cores.map(cpu),
                memory: Some(memory(r.memory_limit_bytes)),
            },
        }
    }
}

/// A Kubernetes `containers:` list with each container's `resources:` block, to paste
/// into a pod spec.
pub fn kubernetes_yaml(containers: &[(&str, &KubeResources)]) -> String {
    let mut out = String::from("containers:\n");
    for (name, r) in containers {
        out.push_str(&format!(
            "  - name: {}\n    resources:\n",
            yaml_scalar(name)
        ));
        for (key, q) in [("requests", &r.requests), ("limits", &r.limits)] {
            if q.cpu.is_none() && q.memory.is_none() {
                continue;
            }
            out.push_str(&format!("      {key}:\n"));
            if let Some(c) = &q.cpu {
                out.push_str(&format!("        cpu: \"{c}\"\n"));
            }
            if let Some(m) = &q.memory {
                out.push_str(&format!("        memory: \"{m}\"\n"));
            }
        }
    }
    out
}

/// A container name as a YAML scalar: plain when it is a DNS label, else double-quoted.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !s.starts_with(['-', '.']);
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_round_up() {
        assert_eq!(cpu(0.75), "750m");
        assert_eq!(cpu(0.7501), "751m");
        assert_eq!(cpu(2.0), "2");
        assert_eq!(cpu(0.0), "0m");
        assert_eq!(memory(1536 * MIB), "1536Mi");
        assert_eq!(memory(2 * GIB), "2Gi");
        assert_eq!(memory(2 * GIB + 1), "2049Mi");
        assert_eq!(memory(1), "1Mi");
    }

    #[test]
    fn parses_quantities_and_classes() {
        assert_eq!(parse_cpu("750m").unwrap(), 0.75);
        assert_eq!(parse_cpu("2c").unwrap(), 2.0);
        assert!(parse_cpu("-1").is_err() && parse_cpu("x").is_err() && parse_cpu("").is_err());
        assert_eq!(parse_memory("4Gi").unwrap(), 4 * GIB);
        assert_eq!(parse_memory("500M").unwrap(), 500_000_000);
        assert!(parse_memory("4Gb").is_err() && parse_memory("1e30").is_err());
        let c = parse_classes("large=8c/16Gi, small=2c/4Gi,medium=4c/8Gi").unwrap();
        let names: Vec<_> = c.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["small", "medium", "large"]);
        let need = Resources {
            cpu_request_cores: 2.5,
            memory_limit_bytes: 3 * GIB,
            ..Default::default()
        };
        assert_eq!(smallest_fit(&c, &need).unwrap().name, "medium");
        for bad in ["small", "small=2c", "=2c/4Gi", "a=1/1Gi,a=2/2Gi", "a=x/1Gi"] {
            assert!(parse_classes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn yaml_block() {
        let r = KubeResources::of(&Resources {
            cpu_request_cores: 0.75,
            cpu_limit_cores: None,
            memory_request_bytes: 1536 * MIB,
            memory_limit_bytes: 1536 * MIB,
        });
        assert_eq!(
            kubernetes_yaml(&[("build", &r), ("odd name", &r)]),
            "containers:\n  - name: build\n    resources:\n      requests:\n        cpu: \"750m\"\n        memory: \"1536Mi\"\n      limits:\n        memory: \"1536Mi\"\n  - name: \"odd name\"\n    resources:\n      requests:\n        cpu: \"750m\"\n        memory: \"1536Mi\"\n      limits:\n        memory: \"1536Mi\"\n"
        );
    }
}
