//! A stored run's JSON with its bulky fields taken out as binary, before compression
//! ([`super::codec`]'s format 2), and put back byte for byte when read.
//!
//! Two kinds of field dominate a summary and compress poorly as text:
//! - **base64 strings** (the HDR histograms, `hdr_v2`): a string of at least
//!   [`MIN_BASE64`] characters that is canonical padded base64 is stored as its decoded
//!   bytes (three bytes for four characters, and no text alphabet for zstd to model);
//! - **integer arrays** (the timeline's series): an array of at least [`MIN_INTS`]
//!   integers written canonically (`[1,-2,30]`, no spaces) is stored as zigzag LEB128
//!   varints, either of the differences between neighbours or of the differences from the
//!   previous array of the same length (a series' maximum beside its mean), whichever is
//!   shorter.
//!
//! Everything else stays text: the *skeleton* is the JSON with those fields' contents cut
//! out (the quotes and brackets stay). The encoding is
//!
//! ```text
//! varint skeleton_len, varint cuts,
//! per cut: varint (position in the skeleton − previous cut's), kind u8, varint n
//!          (kind 0: n bytes of base64 data; 1: n neighbour-delta ints; 2: n ints as
//!          differences from the previous array),
//! skeleton, then the base64 data of every cut, then the varints of every cut.
//! ```
//!
//! [`split`] only cuts a field it can reproduce exactly (a string re-encodes to the same
//! characters, an integer prints as it was written), and the packer checks the whole round
//! trip before using the format, so a value always reads back as the bytes it was. [`join`]
//! takes any bytes: it gives the original or an error, never a panic, and never builds more
//! than the length the caller expects. Pure functions.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Shortest base64 string worth cutting out.
pub const MIN_BASE64: usize = 24;
/// Fewest integers an array needs to be cut out.
pub const MIN_INTS: usize = 4;

const KIND_BASE64: u8 = 0;
const KIND_DELTA: u8 = 1;
const KIND_PREVIOUS: u8 = 2;

/// A value [`join`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("split run: {0}")]
pub struct SplitError(pub &'static str);

/// One field cut out of the JSON: `at..end` in the input.
enum Cut {
    Base64 {
        at: usize,
        end: usize,
        data: Vec<u8>,
    },
    Ints {
        at: usize,
        end: usize,
        values: Vec<i64>,
    },
}

impl Cut {
    fn span(&self) -> (usize, usize) {
        match self {
            Cut::Base64 { at, end, .. } | Cut::Ints { at, end, .. } => (*at, *end),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn varint_len(v: u64) -> usize {
    (64 - v.max(1).leading_zeros() as usize).div_ceil(7)
}

/// Reads varints from a slice, failing on truncation or overlong values.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, SplitError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .bytes
                .get(self.at)
                .ok_or(SplitError("truncated varint"))?;
            self.at += 1;
            if shift == 63 && b > 1 {
                return Err(SplitError("varint overflows"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(SplitError("varint overflows"))
    }

    fn len(&mut self, limit: usize) -> Result<usize, SplitError> {
        let v = self.varint()?;
        usize::try_from(v)
            .ok()
            .filter(|v| *v <= limit)
            .ok_or(SplitError("length past the value"))
    }

    fn byte(&mut self) -> Result<u8, SplitError> {
        let b = *self.bytes.get(self.at).ok_or(SplitError("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SplitError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(SplitError("truncated"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
}

/// The end of the string whose opening quote is at `at` (the index of its closing quote),
/// and whether it holds an escape.
fn string_end(json: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut i = at + 1;
    let mut escaped = false;
    while i < json.len() {
        match json[i] {
            b'\\' => {
                escaped = true;
                i += 2;
            }
            b'"' => return Some((i, escaped)),
            _ => i += 1,
        }
    }
    None
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='
}

/// The canonical integers of `[a,b,...]` starting at `at` (the `[`) and the index of its
/// `]`, when the array is only such integers.
fn int_array(json: &[u8], at: usize) -> Option<(Vec<i64>, usize)> {
    let mut values = Vec::new();
    let mut i = at + 1;
    loop {
        let start = i;
        if json.get(i) == Some(&b'-') {
            i += 1;
        }
        let digits = i;
        while json.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == digits {
            return None;
        }
        let text = std::str::from_utf8(&json[start..i]).ok()?;
        let v: i64 = text.parse().ok()?;
        // Canonical only: no leading zeros, no `-0`; so printing gives the same text.
        if v.to_string() != text {
            return None;
        }
        values.push(v);
        match json.get(i) {
            Some(b',') => i += 1,
            Some(b']') => return Some((values, i)),
            _ => return None,
        }
    }
}

/// The fields [`split`] cuts out of `json`, in order.
fn cuts(json: &[u8]) -> Vec<Cut> {
    let mut cuts = Vec::new();
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                let Some((end, escaped)) = string_end(json, i) else {
                    break;
                };
                let content = &json[i + 1..end];
                if !escaped
                    && content.len() >= MIN_BASE64
                    && content.len().is_multiple_of(4)
                    && content.iter().all(|b| is_base64_char(*b))
                    && let Ok(data) = BASE64.decode(content)
                    && BASE64.encode(&data).as_bytes() == content
                {
                    cuts.push(Cut::Base64 {
                        at: i + 1,
                        end,
                        data,
                    });
                }
                i = end + 1;
            }
            b'[' => match int_array(json, i) {
                Some((values, end)) if values.len() >= MIN_INTS => {
                    cuts.push(Cut::Ints {
                        at: i + 1,
                        end,
                        values,
                    });
                    i = end + 1;
                }
                _ => i += 1,
            },
            _ => i += 1,
        }
    }
    cuts
}

/// `json` with its base64 strings and integer arrays as binary ([the format](self)).
pub fn split(json: &[u8]) -> Vec<u8> {
    let cuts = cuts(json);
    let mut table = Vec::new();
    let mut skeleton = Vec::with_capacity(json.len() / 2);
    let mut data = Vec::new();
    let mut ints = Vec::new();
    let (mut from, mut last_pos) = (0, 0);
    let mut previous: &[i64] = &[];
    for cut in &cuts {
        let (at, end) = cut.span();
        skeleton.extend_from_slice(&json[from..at]);
        from = end;
        put_varint(&mut table, (skeleton.len() - last_pos) as u64);
        last_pos = skeleton.len();
        match cut {
            Cut::Base64 { data: d, .. } => {
                table.push(KIND_BASE64);
                put_varint(&mut table, d.len() as u64);
                data.extend_from_slice(d);
            }
            Cut::Ints { values, .. } => {
                let delta: Vec<u64> = values
                    .iter()
                    .scan(0i64, |prev, v| {
                        let d = v.wrapping_sub(*prev);
                        *prev = *v;
                        Some(zigzag(d))
                    })
                    .collect();
                let against: Option<Vec<u64>> = (previous.len() == values.len()).then(|| {
                    values
                        .iter()
                        .zip(previous)
                        .map(|(v, p)| zigzag(v.wrapping_sub(*p)))
                        .collect()
                });
                let size = |v: &[u64]| v.iter().map(|x| varint_len(*x)).sum::<usize>();
                let (kind, chosen) = match against {
                    Some(a) if size(&a) < size(&delta) => (KIND_PREVIOUS, a),
                    _ => (KIND_DELTA, delta),
                };
                table.push(kind);
                put_varint(&mut table, values.len() as u64);
                for v in chosen {
                    put_varint(&mut ints, v);
                }
                previous = values;
            }
        }
    }
    skeleton.extend_from_slice(&json[from..]);
    let mut out = Vec::with_capacity(16 + table.len() + skeleton.len() + data.len() + ints.len());
    put_varint(&mut out, skeleton.len() as u64);
    put_varint(&mut out, cuts.len() as u64);
    out.extend_from_slice(&table);
    out.extend_from_slice(&skeleton);
    out.extend_from_slice(&data);
    out.extend_from_slice(&ints);
    out
}

/// The JSON [`split`] was given, from its output; `max_len` bounds what is built (the
/// length the packed row claims), and a longer result is an error.
pub fn join(value: &[u8], max_len: usize) -> Result<Vec<u8>, SplitError> {
    let mut r = Reader {
        bytes: value,
        at: 0,
    };
    let skeleton_len = r.len(value.len())?;
    let n = r.len(value.len())?;
    let mut table = Vec::with_capacity(n.min(4096));
    let mut pos = 0usize;
    let mut data_len = 0usize;
    for _ in 0..n {
        pos = pos
            .checked_add(r.len(skeleton_len)?)
            .filter(|p| *p <= skeleton_len)
            .ok_or(SplitError("cut past the skeleton"))?;
        let kind = r.byte()?;
        if kind > KIND_PREVIOUS {
            return Err(SplitError("unknown cut"));
        }
        let count = r.len(max_len)?;
        if kind == KIND_BASE64 {
            data_len = data_len
                .checked_add(count)
                .filter(|d| *d <= value.len())
                .ok_or(SplitError("base64 data past the value"))?;
        }
        table.push((pos, kind, count));
    }
    let skeleton = r.take(skeleton_len)?;
    let mut data = Reader {
        bytes: r.take(data_len)?,
        at: 0,
    };
    let mut ints = Reader {
        bytes: &value[r.at..],
        at: 0,
    };
    let mut out = Vec::with_capacity(max_len.min(skeleton_len.saturating_mul(4)));
    let mut from = 0;
    let mut previous: Vec<i64> = Vec::new();
    let mut text = String::new();
    let room = |out: &Vec<u8>, more: usize| {
        if out.len().saturating_add(more) > max_len {
            Err(SplitError("longer than the row claims"))
        } else {
            Ok(())
        }
    };
    for (pos, kind, count) in table {
        room(&out, pos - from)?;
        out.extend_from_slice(&skeleton[from..pos]);
        from = pos;
        if kind == KIND_BASE64 {
            let bytes = data.take(count)?;
            room(&out, count.div_ceil(3) * 4)?;
            text.clear();
            BASE64.encode_string(bytes, &mut text);
            out.extend_from_slice(text.as_bytes());
            continue;
        }
        // Every integer takes at least one varint byte and one character.
        if count > ints.bytes.len() - ints.at {
            return Err(SplitError("integers past the value"));
        }
        if kind == KIND_PREVIOUS && previous.len() != count {
            return Err(SplitError("no previous array of that length"));
        }
        let mut values = Vec::with_capacity(count);
        let mut prev = 0i64;
        // Same length as this array when it is used (checked above).
        let mut against = previous.iter();
        for k in 0..count {
            let d = unzigzag(ints.varint()?);
            let base = if kind == KIND_DELTA {
                prev
            } else {
                against.next().copied().unwrap_or(0)
            };
            let v = base.wrapping_add(d);
            prev = v;
            if k > 0 {
                room(&out, 1)?;
                out.push(b',');
            }
            text.clear();
            write!(text, "{v}").expect("writing to a String");
            room(&out, text.len())?;
            out.extend_from_slice(text.as_bytes());
            values.push(v);
        }
        previous = values;
    }
    room(&out, skeleton_len - from)?;
    out.extend_from_slice(&skeleton[from..]);
    if data.at != data.bytes.len() || ints.at != ints.bytes.len() {
        return Err(SplitError("bytes left over"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(json: &[u8]) -> Vec<u8> {
        let s = split(json);
        assert_eq!(
            join(&s, json.len()).unwrap(),
            json,
            "{}",
            String::from_utf8_lossy(json)
        );
        s
    }

    #[test]
    fn bulky_fields_are_cut_and_put_back() {
        let hist = BASE64.encode((0u8..200).collect::<Vec<_>>());
        let json = format!(
            r#"{{"a":"{hist}","t":{{"cpu":[100,120,90,95,101],"max":[130,121,99,95,140],"m":[-5,0,7,1234567890123]}},"short":[1,2],"s":"x\"[1,2,3,4]"}}"#
        );
        let s = round_trip(json.as_bytes());
        assert!(
            s.len() < json.len() - hist.len() / 4,
            "{} vs {}",
            s.len(),
            json.len()
        );
        // The string with an escape, the short array: left as text.
        assert!(s.windows(9).any(|w| w == br#"[1,2,3,4]"#));
    }

    #[test]
    fn what_cannot_be_reproduced_stays_text() {
        for json in [
            &br#"{"a":[01,2,3,4],"b":[1, 2,3,4],"c":[-0,1,2,3],"d":[1,2,3,99999999999999999999]}"#[..],
            br#"{"e":"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=","f":"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVq="}"#,
            br#"[1,2,3,4"#,
            br#""unterminated"#,
            b"",
            br#"[9223372036854775807,-9223372036854775808,0,9223372036854775807]"#,
        ] {
            round_trip(json);
        }
    }

    #[test]
    fn an_array_beside_its_maximum_is_stored_as_differences() {
        let mean: Vec<i64> = (0..100).map(|i| 1000 + (i * 7919) % 400).collect();
        let max: Vec<i64> = mean.iter().map(|v| v + 3).collect();
        let json = format!("{{\"mean\":{mean:?},\"max\":{max:?}}}").replace(' ', "");
        let s = round_trip(json.as_bytes());
        let mut r = Reader { bytes: &s, at: 0 };
        let (_, n) = (r.varint().unwrap(), r.varint().unwrap());
        let kinds: Vec<u8> = (0..n)
            .map(|_| {
                r.varint().unwrap();
                let k = r.byte().unwrap();
                r.varint().unwrap();
                k
            })
            .collect();
        assert_eq!(kinds, [KIND_DELTA, KIND_PREVIOUS]);
    }

    #[test]
    fn corrupt_values_are_errors_not_panics() {
        let json = br#"{"cpu":[100,120,90,95,101],"max":[130,121,99,95,140]}"#;
        let s = split(json);
        for cut in 0..s.len() {
            let _ = join(&s[..cut], 1000);
            let mut flipped = s.clone();
            flipped[cut] ^= 0x55;
            let _ = join(&flipped, 1000);
        }
        assert!(join(&s, json.len() - 1).is_err());
        assert_eq!(join(&[0xff; 11], 10), Err(SplitError("varint overflows")));
    }

    #[test]
    fn varints_and_zigzag_round_trip() {
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            let mut b = Vec::new();
            put_varint(&mut b, zigzag(v));
            assert_eq!(b.len(), varint_len(zigzag(v)));
            let mut r = Reader { bytes: &b, at: 0 };
            assert_eq!(unzigzag(r.varint().unwrap()), v);
        }
    }
}
