//! The ground truth of a shell's CPU: what its `times` builtin prints.

/// Seconds of CPU from a POSIX shell's `times`: two lines `<user> <system>` (the shell's,
/// then its children's), each like `0m1.250000s` (dash) or `0m1.250s` (bash); the sum of
/// the last two such lines, `None` without them.
pub fn shell_times_seconds(text: &str) -> Option<f64> {
    let secs = |f: &str| -> Option<f64> {
        let (m, s) = f.strip_suffix('s')?.split_once('m')?;
        Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
    };
    let rows: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 2)
                .then(|| Some(secs(f[0])? + secs(f[1])?))
                .flatten()
        })
        .collect();
    (rows.len() >= 2).then(|| rows[rows.len() - 2..].iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_up_shell_times() {
        // dash prints microseconds, bash milliseconds; the last two lines count.
        let dash = "noise\n0m0.950000s 0m0.010000s\n0m0.040000s 0m0.000000s\n";
        assert!((shell_times_seconds(dash).unwrap() - 1.0).abs() < 1e-9);
        let bash = "1m0.5s 0m0.5s\n0m0s 0m0s";
        assert!((shell_times_seconds(bash).unwrap() - 61.0).abs() < 1e-9);
        assert_eq!(shell_times_seconds("0m0.1s 0m0.1s\n"), None);
    }
}
