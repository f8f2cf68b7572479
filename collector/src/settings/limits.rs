//! `CGROUP_LIMITS`: per-container CPU and memory limits in Kubernetes quantity notation.
//!
//! ```json
//! { "runner": { "cpu": "2", "memory": "1Gi" }, "sidecar": { "cpu": "500m" } }
//! ```
//!
//! Quantities are parsed exactly (integer arithmetic on the decimal digits), so `"1.5Gi"` is
//! exactly 1610612736 bytes; fractional bytes round up, as Kubernetes does. A limit of zero
//! means "no limit" (as a zero limit does in Kubernetes) and reads as `None`, which also keeps
//! usage-to-limit ratios from dividing by zero.

use std::collections::HashMap;

use summary::Limits;

/// The environment variable this module parses, named in every error.
pub const ENV_VAR: &str = "CGROUP_LIMITS";

/// Why `CGROUP_LIMITS` was rejected. The message names the variable, the container and the
/// value, so a typo in a CI config is found from the log line alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// Not JSON, or not an object of objects.
    #[error("{ENV_VAR}: invalid JSON: {0}")]
    Json(String),
    /// A container's `cpu` or `memory` is not a valid quantity.
    #[error("{ENV_VAR}: container {container:?}: invalid {resource} {value:?}: {reason}")]
    Quantity {
        /// Container name (the JSON key).
        container: String,
        /// `cpu` or `memory`.
        resource: &'static str,
        /// The value as written (a JSON number is shown as its JSON text).
        value: String,
        /// What is wrong with it.
        reason: QuantityError,
    },
}

/// Why a quantity string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Empty or only whitespace.
    #[error("empty")]
    Empty,
    /// Starts with `-`.
    #[error("negative")]
    Negative,
    /// No digits where the number should be (`NaN`, `inf`, `Gi`, `.`).
    #[error("not a number")]
    NotANumber,
    /// A suffix that is neither binary (`Ki`..`Ei`), decimal (`n u m k K M G T P E`) nor an
    /// exponent (`e9`, `E-3`).
    #[error("unknown suffix {0:?}")]
    UnknownSuffix(String),
    /// Does not fit (more than `u64` bytes, or an absurd number of digits or exponent).
    #[error("too large")]
    TooLarge,
}

/// Parses `CGROUP_LIMITS`. An empty (or all-whitespace) variable means no limits, so CI
/// templates can always set it. Unknown keys in a container's object are ignored with a
/// warning, as the Go seed (encoding/json) ignored them.
pub fn parse_limits(json: &str) -> Result<HashMap<String, Limits>, LimitsError> {
    if json.trim().is_empty() {
        return Ok(HashMap::new());
    }
    let raw: HashMap<String, serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(json).map_err(|e| LimitsError::Json(e.to_string()))?;
    let mut limits = HashMap::with_capacity(raw.len());
    for (container, mut object) in raw {
        let cpu_text = quantity_text(object.remove("cpu"));
        let memory_text = quantity_text(object.remove("memory"));
        for key in object.keys() {
            tracing::warn!(
                "{ENV_VAR}: container {container:?}: ignoring unknown key {key:?} \
                 (expected \"cpu\" or \"memory\")"
            );
        }
        let error = |resource: &'static str, value: &str, reason| LimitsError::Quantity {
            container: container.clone(),
            resource,
            value: value.to_owned(),
            reason,
        };
        let cpu_cores = match cpu_text {
            Some(text) => Some(parse_cpu(&text).map_err(|r| error("cpu", &text, r))?),
            None => None,
        };
        let memory_bytes = match memory_text {
            Some(text) => Some(parse_memory(&text).map_err(|r| error("memory", &text, r))?),
            None => None,
        };
        let entry = Limits {
            cpu_cores: cpu_cores.filter(|&c| c > 0.0),
            memory_bytes: memory_bytes.filter(|&m| m > 0),
        };
        limits.insert(container, entry);
    }
    Ok(limits)
}

/// The text of a JSON quantity: strings as written, numbers as their JSON text (`"cpu": 2`
/// is common in YAML-minded configs), `null` as absent.
fn quantity_text(value: Option<serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// A CPU quantity in cores: `"2"`, `"500m"` (0.5), `"0.5"`, `"1.5"`, `"2000m"` (2).
pub fn parse_cpu(text: &str) -> Result<f64, QuantityError> {
    let q = Quantity::parse(text)?;
    let cores = q.to_f64();
    if cores.is_finite() {
        Ok(cores)
    } else {
        Err(QuantityError::TooLarge)
    }
}

/// A memory quantity in bytes: `"1Gi"`, `"256Mi"`, `"1G"`, `"1.5Gi"`, `"1e9"`, `"129e6"`,
/// `"1024"`. Fractional bytes round up.
pub fn parse_memory(text: &str) -> Result<u64, QuantityError> {
    Quantity::parse(text)?.to_bytes()
}

/// An exact non-negative quantity: `digits * 2^binary_exp * 10^decimal_exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quantity {
    /// All digits of the number, the decimal point removed.
    digits: u128,
    /// Power of two from a binary suffix (`Ki` = 10, ..., `Ei` = 60).
    binary_exp: u32,
    /// Power of ten from decimal suffixes, exponents and the decimal point.
    decimal_exp: i32,
}

impl Quantity {
    fn parse(text: &str) -> Result<Self, QuantityError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(QuantityError::Empty);
        }
        let unsigned = match text.as_bytes()[0] {
            b'-' => return Err(QuantityError::Negative),
            b'+' => &text[1..],
            _ => text,
        };
        let number_len = unsigned
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(number_len);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
            return Err(QuantityError::NotANumber);
        }
        let mut digits: u128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            digits = digits
                .checked_mul(10)
                .and_then(|d| d.checked_add(u128::from(b - b'0')))
                .ok_or(QuantityError::TooLarge)?;
        }
        let frac_len = i32::try_from(frac_part.len()).map_err(|_| QuantityError::TooLarge)?;
        let (binary_exp, suffix_exp) = suffix_exponents(suffix)?;
        Ok(Self {
            digits,
            binary_exp,
            decimal_exp: suffix_exp - frac_len,
        })
    }

    fn to_f64(self) -> f64 {
        if self.digits == 0 {
            return 0.0; // not 0 * inf = NaN for "0e400"
        }
        self.digits as f64 * 2f64.powi(self.binary_exp as i32) * 10f64.powi(self.decimal_exp)
    }

    fn to_bytes(self) -> Result<u64, QuantityError> {
        let too_large = QuantityError::TooLarge;
        let mut n = self
            .digits
            .checked_mul(
                1u128
                    .checked_shl(self.binary_exp)
                    .ok_or(too_large.clone())?,
            )
            .ok_or(too_large.clone())?;
        let scale = 10u128.checked_pow(self.decimal_exp.unsigned_abs());
        if n == 0 {
            // Zero stays zero whatever the exponent ("0e99").
        } else if self.decimal_exp >= 0 {
            n = n
                .checked_mul(scale.ok_or(too_large.clone())?)
                .ok_or(too_large.clone())?;
        } else {
            // Fractional bytes round up; past 38 decimals any non-zero value is a fraction
            // of a byte.
            n = scale.map_or(1, |scale| n.div_ceil(scale));
        }
        u64::try_from(n).map_err(|_| too_large)
    }
}

/// `(binary exponent, decimal exponent)` of a suffix.
fn suffix_exponents(suffix: &str) -> Result<(u32, i32), QuantityError> {
    let binary = |k: u32| Ok((10 * k, 0));
    let decimal = |e: i32| Ok((0, e));
    match suffix {
        "" => decimal(0),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        // Kubernetes only has lowercase k; the seed's README documents K as well.
        "k" | "K" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        _ => {
            // An exponent: e or E followed by an optionally signed integer ("1e9", "5E-3").
            let unknown = || QuantityError::UnknownSuffix(suffix.to_owned());
            let exp = suffix
                .strip_prefix(['e', 'E'])
                .filter(|e| {
                    let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                })
                .ok_or_else(unknown)?;
            let exp: i32 = exp.parse().map_err(|_| QuantityError::TooLarge)?;
            if exp.unsigned_abs() > 1000 {
                return Err(QuantityError::TooLarge);
            }
            decimal(exp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        let cases: &[(&str, f64)] = &[
            ("2", 2.0),
            ("500m", 0.5),
            ("0.5", 0.5),
            ("1.5", 1.5),
            ("2000m", 2.0),
            ("100m", 0.1),
            ("1m", 0.001),
            ("+3", 3.0),
            (".25", 0.25),
            ("4.", 4.0),
            ("1e0", 1.0),
            ("15e-1", 1.5),
            ("250000u", 0.25),
            ("0", 0.0),
        ];
        for &(text, want) in cases {
            let got = parse_cpu(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!((got - want).abs() < 1e-12, "{text}: {got} != {want}");
        }
    }

    #[test]
    fn memory_quantities() {
        let cases: &[(&str, u64)] = &[
            ("1024", 1024),
            ("1Ki", 1024),
            ("256Mi", 256 << 20),
            ("1Gi", 1 << 30),
            ("1.5Gi", 1_610_612_736),
            ("2Ti", 2 << 40),
            ("1Pi", 1 << 50),
            ("1Ei", 1 << 60),
            ("1k", 1000),
            ("1K", 1000),
            ("128M", 128_000_000),
            ("1G", 1_000_000_000),
            ("2T", 2_000_000_000_000),
            ("1P", 1_000_000_000_000_000),
            ("1E", 1_000_000_000_000_000_000),
            ("1e9", 1_000_000_000),
            ("129e6", 129_000_000),
            ("1E3", 1000),
            ("1.5e3", 1500),
            ("0.1Gi", 107_374_183), // 107374182.4 rounds up
            ("500m", 1),            // half a byte rounds up
            ("0", 0),
            ("0e99", 0),
            ("18446744073709551615", u64::MAX),
        ];
        for &(text, want) in cases {
            let got = parse_memory(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn invalid_quantities() {
        use QuantityError::*;
        let unknown = |s: &str| UnknownSuffix(s.to_owned());
        let cases: &[(&str, QuantityError)] = &[
            ("", Empty),
            ("   ", Empty),
            ("-1", Negative),
            ("-500m", Negative),
            ("NaN", NotANumber),
            ("inf", NotANumber),
            ("Gi", NotANumber),
            (".", NotANumber),
            ("1.2.3", NotANumber),
            ("12Qi", unknown("Qi")),
            ("1gi", unknown("gi")),
            ("1 Gi", unknown(" Gi")),
            ("1e", unknown("e")),
            ("1e+", unknown("e+")),
            ("1ee9", unknown("ee9")),
            ("1Mi5", unknown("Mi5")),
            ("16Ei", TooLarge),
            ("18446744073709551616", TooLarge),
            ("1e20", TooLarge),
            ("1e99999", TooLarge),
            ("999999999999999999999999999999999999999999", TooLarge),
        ];
        for (text, want) in cases {
            assert_eq!(parse_memory(text).as_ref(), Err(want), "{text:?}");
        }
        assert_eq!(parse_cpu("1e400"), Err(TooLarge));
        assert_eq!(parse_cpu("0e400"), Ok(0.0));
        assert_eq!(parse_cpu("-1"), Err(Negative));
        assert_eq!(parse_cpu("2 cores"), Err(unknown(" cores")));
    }

    #[test]
    fn limits_json() {
        let json = r#"{
            "runner": { "cpu": "2", "memory": "1Gi" },
            "sidecar": { "cpu": "500m", "memory": "256Mi" },
            "cpu-only": { "cpu": 1.5 },
            "memory-only": { "memory": "1e9", "note": "ignored" },
            "unlimited": { "cpu": "0", "memory": null },
            "empty": {}
        }"#;
        let limits = parse_limits(json).unwrap();
        assert_eq!(limits.len(), 6);
        let get = |name: &str| limits[name];
        assert_eq!(
            get("runner"),
            Limits {
                cpu_cores: Some(2.0),
                memory_bytes: Some(1 << 30)
            }
        );
        assert_eq!(get("sidecar").cpu_cores, Some(0.5));
        assert_eq!(get("sidecar").memory_bytes, Some(256 << 20));
        assert_eq!(get("cpu-only").cpu_cores, Some(1.5));
        assert_eq!(get("cpu-only").memory_bytes, None);
        assert_eq!(get("memory-only").memory_bytes, Some(1_000_000_000));
        assert_eq!(get("unlimited"), Limits::default());
        assert_eq!(get("empty"), Limits::default());
        assert!(parse_limits("").unwrap().is_empty());
        assert!(parse_limits(" \n").unwrap().is_empty());
    }

    #[test]
    fn limits_errors_name_container_and_value() {
        let err = parse_limits(r#"{"runner": {"memory": "12Qi"}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"CGROUP_LIMITS: container "runner": invalid memory "12Qi": unknown suffix "Qi""#
        );
        let err = parse_limits(r#"{"a": {"cpu": "-1"}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"CGROUP_LIMITS: container "a": invalid cpu "-1": negative"#
        );
        let err = parse_limits(r#"{"a": {"cpu": -2}}"#).unwrap_err();
        assert!(
            err.to_string().contains(r#"invalid cpu "-2": negative"#),
            "{err}"
        );
        let err = parse_limits(r#"{"a": {"cpu": ""}}"#).unwrap_err();
        assert!(
            err.to_string().ends_with(r#"invalid cpu "": empty"#),
            "{err}"
        );
        for bad in ["{", "[]", r#"{"a": "2"}"#, "null"] {
            let err = parse_limits(bad).unwrap_err();
            assert!(matches!(err, LimitsError::Json(_)), "{bad}: {err}");
            assert!(err.to_string().starts_with("CGROUP_LIMITS: invalid JSON: "));
        }
    }
}
