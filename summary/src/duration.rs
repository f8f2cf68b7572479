//! The one duration syntax of every command line (collector and receiver).
//!
//! [`parse_duration`] takes humantime's syntax (`500ms`, `2s`, `1.5s`, `1m 30s`, `1h`,
//! `3days`) or a plain number of seconds (`2`, `1.5`), and refuses zero, negative, non-finite and
//! unparsable values: every duration flag means "how long", so it must be positive. A flag
//! that needs an "off" value says so with an explicit word of its own.

use std::time::Duration;

/// What the error messages offer as examples.
const EXAMPLES: &str = "e.g. 500ms, 2s, 1m 30s, 1h, or a number of seconds such as 1.5";

/// Parses a positive duration: humantime syntax, or a plain (possibly fractional) number
/// of seconds. The error names the input and shows examples.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("empty duration {text:?} ({EXAMPLES})"));
    }
    let duration = if trimmed.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        // A plain number of seconds. Only digits and a dot: `inf`, `NaN`, `1e3` and signs
        // are not durations.
        let seconds: f64 = trimmed
            .parse()
            .map_err(|_| format!("invalid duration {text:?} ({EXAMPLES})"))?;
        Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("duration {text:?} is too large ({EXAMPLES})"))?
    } else if trimmed.starts_with('-') {
        return Err(format!("duration {text:?} must be positive ({EXAMPLES})"));
    } else {
        humantime::parse_duration(trimmed)
            .map_err(|e| format!("invalid duration {text:?}: {e} ({EXAMPLES})"))?
    };
    if duration.is_zero() {
        return Err(format!("duration {text:?} must be positive ({EXAMPLES})"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humantime_syntax() {
        let ok = |s: &str| parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("2s"), Duration::from_secs(2));
        assert_eq!(ok("1m 30s"), Duration::from_secs(90));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("2min"), Duration::from_secs(120));
        assert_eq!(ok("3days"), Duration::from_secs(3 * 86_400));
        assert_eq!(ok(" 10s "), Duration::from_secs(10));
        assert_eq!(ok("1us"), Duration::from_micros(1));
        // Fractions with a unit, as the parsers before this one took them.
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0.5m"), Duration::from_secs(30));
    }

    #[test]
    fn plain_numbers_are_seconds() {
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(".5"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn refuses_zero_negative_non_finite_and_garbage() {
        for bad in [
            "",
            "  ",
            "0",
            "0.0",
            "0s",
            "0ms",
            "0h 0m",
            "-1",
            "-1s",
            "-0.5",
            "inf",
            "infinity",
            "NaN",
            "+1",
            "1e3",
            "1e400",
            "1.2.3",
            ".",
            "s",
            "2 weeks ago",
            "abc",
            "3x",
            "1e-20",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(
                err.contains(&format!("{bad:?}")) && err.contains("500ms"),
                "{bad}: {err}"
            );
        }
        assert!(parse_duration("0s").unwrap_err().contains("positive"));
        assert!(parse_duration("-1s").unwrap_err().contains("positive"));
        assert!(
            parse_duration("99999999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
    }
}
