//! RFC 3339 timestamps without a date library.
//!
//! The wire format writes UTC with milliseconds and a `Z` suffix
//! (`2026-02-06T14:30:02.185Z`), as the seed's examples do. The parser is more lenient:
//! any number of fractional digits and `Z` or a numeric `±hh:mm` offset, so timestamps
//! written by other producers (Go's `RFC3339Nano`, for example) are understood too.
//!
//! Not humantime: its RFC 3339 parser takes only UTC (`Z`/`+00:00`, no other offsets) and
//! no year before 1970, and its formatter panics before the epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_unix_millis(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Formats a `SystemTime` as RFC 3339 UTC with milliseconds (truncated) and `Z`.
pub fn format_rfc3339(t: SystemTime) -> String {
    let millis = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => {
            let back = e.duration();
            // Round towards negative infinity so that formatting stays monotonic.
            let ms = i64::try_from(back.as_millis()).unwrap_or(i64::MAX);
            if back.subsec_nanos() % 1_000_000 == 0 {
                -ms
            } else {
                -ms - 1
            }
        }
    };
    format_unix_millis(millis)
}

/// Parses an RFC 3339 timestamp into nanoseconds since the Unix epoch.
///
/// Returns `None` for anything that is not a valid RFC 3339 date-time.
pub fn parse_rfc3339_nanos(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || !s.is_ascii() {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = num(0..4)?;
    let month = num(5..7)?;
    let day = num(8..10)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let hour = num(11..13)?;
    let minute = num(14..16)?;
    let second = num(17..19)?;
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_len = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > month_len || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + i128::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset_secs: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = i64::from(num(i + 1..i + 3)?);
            let om = i64::from(num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
        - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// Parses an RFC 3339 timestamp into a `SystemTime`.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let nanos = parse_rfc3339_nanos(s)?;
    let abs = Duration::new(
        u64::try_from(nanos.unsigned_abs() / 1_000_000_000).ok()?,
        (nanos.unsigned_abs() % 1_000_000_000) as u32,
    );
    if nanos >= 0 {
        UNIX_EPOCH.checked_add(abs)
    } else {
        UNIX_EPOCH.checked_sub(abs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_unix_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_unix_millis(1_770_388_202_185),
            "2026-02-06T14:30:02.185Z"
        );
        assert_eq!(
            format_unix_millis(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(format_unix_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn formats_system_time() {
        let t = UNIX_EPOCH + Duration::from_millis(1_770_388_202_185) + Duration::from_micros(900);
        assert_eq!(format_rfc3339(t), "2026-02-06T14:30:02.185Z");
    }

    #[test]
    fn parses_variants() {
        let ms = |s: &str| parse_rfc3339_nanos(s).map(|n| n / 1_000_000);
        assert_eq!(ms("2026-02-06T14:30:02.185Z"), Some(1_770_388_202_185));
        assert_eq!(ms("2026-02-06T14:30:02Z"), Some(1_770_388_202_000));
        assert_eq!(
            ms("2026-02-06T15:30:02.185123456+01:00"),
            Some(1_770_388_202_185)
        );
        assert_eq!(
            parse_rfc3339_nanos("2026-02-06T14:30:02.123456789Z").map(|n| n % 1_000_000_000),
            Some(123_456_789)
        );
        for bad in [
            "",
            "2026-02-06",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-06T24:00:00Z",
            "2026-02-06T14:30:02.Z",
            "2026-02-06T14:30:02",
            "2026-02-06T14:30:02Zjunk",
            "2026-02-06T14:30:02+1:00",
            "२०२६-02-06T14:30:02Z",
        ] {
            assert_eq!(parse_rfc3339_nanos(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trips_every_day_across_centuries() {
        let mut days = -719_162i64; // 0001-01-01
        while days < 2_932_000 {
            let ms = days * 86_400_000 + 12_345_678;
            let s = format_unix_millis(ms);
            assert_eq!(
                parse_rfc3339_nanos(&s),
                Some(i128::from(ms) * 1_000_000),
                "{s}"
            );
            days += 997;
        }
    }
}
