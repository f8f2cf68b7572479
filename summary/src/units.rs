//! Units for people: seconds, and bytes with a binary unit, the one format of the collector's reports,
//! the receiver's pages and the sizing explanations.

/// Bytes with a binary unit: `512 B`, `1.5 KiB`, `420.0 MiB`, `3.0 GiB`. Nothing to show (a
/// negative, `-0.0` or NaN) reads `0 B`, never a negative zero.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    // `f64::max` may keep a `-0.0`, which would print as `-0 B`.
    let mut v = if n > 0.0 { n } else { 0.0 };
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `1.4 s`, or `35 ms` below a second (so a light job's few milliseconds read as such).
pub fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.0} ms", s * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_bytes() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(300.0 * 1024.0 * 1024.0), "300.0 MiB");
        assert_eq!(bytes(1536.0 * 1024.0 * 1024.0), "1.5 GiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
        assert_eq!(bytes(5000.0 * 1024f64.powi(4)), "5000.0 TiB");
        for nothing in [0.0, -0.0, -1.0, f64::NAN] {
            assert_eq!(bytes(nothing), "0 B");
        }
    }
}
