//! Stored runs, compressed: one row format for both backends, read back beside the
//! uncompressed rows older receivers wrote.
//!
//! A stored value is either
//! - **plain** (every row before schema 4 of redb and 2 of PostgreSQL): the run's JSON
//!   itself (redb), or its `head` and `payload` pieces (PostgreSQL); JSON starts with `{`;
//! - **packed**: `[format, dict, received_ms: u64 LE, head_len: u32 LE, json_len: u32 LE]`
//!   then one zstd frame (with its content checksum) of `head ‖ payload`, the pieces of
//!   [`super::NewRun`]: as they are ([`FORMAT_ZSTD`]) or with their histograms and
//!   timelines as binary ([`FORMAT_SPLIT`], [`super::split`]; what new rows get). `dict`
//!   names the zstd dictionary it was compressed with ([`DICTS`]; 0: none). The id is the
//!   row's key, so it is not stored again.
//!
//! Dictionaries are trained on summaries (`receiver-bench --train-dict`), shipped in the
//! binary under `receiver/dict/`, and never changed once released: a new one gets the next
//! id, and rows keep naming the one they were written with, so every row stays readable.
//! Pure functions, tested here apart from any database.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::OnceLock;

/// First byte of a packed value of the JSON as text (never `{`, the first byte of a plain
/// one).
pub const FORMAT_ZSTD: u8 = 0x01;
/// First byte of a packed value of the JSON split ([`super::split`]): what new rows get.
pub const FORMAT_SPLIT: u8 = 0x02;
/// Bytes before the zstd frame.
pub const HEADER_LEN: usize = 18;
/// Largest JSON a packed value may claim to hold (a corrupt length is refused, not
/// allocated): far above the largest body a receiver accepts.
const MAX_JSON: usize = 256 << 20;

/// The shipped dictionaries, by id. Id 0 is "no dictionary" (plain zstd).
/// 1: trained on the JSON as text ([`FORMAT_ZSTD`] rows); 2: on its split
/// ([`FORMAT_SPLIT`]).
pub const DICTS: &[(u8, &[u8])] = &[
    (1, include_bytes!("../../dict/runs-1.zdict")),
    (2, include_bytes!("../../dict/runs-2.zdict")),
];
/// The dictionary new rows are compressed with.
pub const CURRENT_DICT: u8 = 2;
/// zstd's level for stored runs (chosen by `receiver-bench --storage`, see docs/storage.md).
pub const LEVEL: i32 = 3;

/// How new runs are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compression {
    /// Plain JSON, as before (the benchmark's baseline).
    Off,
    /// zstd without a dictionary.
    Zstd,
    /// zstd with the current dictionary (the default).
    #[default]
    ZstdDict,
}

impl Compression {
    /// The dictionary id rows get, `None` when they are stored plain.
    fn dict(self) -> Option<u8> {
        match self {
            Self::Off => None,
            Self::Zstd => Some(0),
            Self::ZstdDict => Some(CURRENT_DICT),
        }
    }
}

/// A stored value that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("stored run has an unknown format (first byte {0:#04x})")]
    UnknownFormat(u8),
    #[error("stored run is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("stored run names zstd dictionary {0}, which this receiver does not have")]
    UnknownDict(u8),
    #[error("stored run claims {0} bytes of JSON, more than any run")]
    TooLarge(usize),
    #[error("stored run does not decompress: {0}")]
    Corrupt(String),
}

struct Dicts {
    encoders: Vec<(u8, zstd::dict::EncoderDictionary<'static>)>,
    decoders: Vec<(u8, zstd::dict::DecoderDictionary<'static>)>,
}

fn dicts() -> &'static Dicts {
    static DICTS_READY: OnceLock<Dicts> = OnceLock::new();
    DICTS_READY.get_or_init(|| Dicts {
        encoders: DICTS
            .iter()
            .map(|(id, d)| (*id, zstd::dict::EncoderDictionary::copy(d, LEVEL)))
            .collect(),
        decoders: DICTS
            .iter()
            .map(|(id, d)| (*id, zstd::dict::DecoderDictionary::copy(d)))
            .collect(),
    })
}

thread_local! {
    /// One compression context per (thread, dictionary): making one costs more than
    /// compressing a summary.
    static COMPRESSORS: RefCell<Vec<(u8, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(Vec::new()) };
    static DECOMPRESSORS: RefCell<Vec<(u8, zstd::bulk::Decompressor<'static>)>> =
        const { RefCell::new(Vec::new()) };
}

fn new_compressor(dict: u8) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    let mut c = match dict {
        0 => zstd::bulk::Compressor::new(LEVEL)?,
        id => {
            let d = &dicts()
                .encoders
                .iter()
                .find(|(i, _)| *i == id)
                .ok_or_else(|| std::io::Error::other(format!("no dictionary {id}")))?
                .1;
            zstd::bulk::Compressor::with_prepared_dictionary(d)?
        }
    };
    // The row names its dictionary; the frame's checksum catches corruption.
    use zstd::zstd_safe::CParameter;
    c.set_parameter(CParameter::DictIdFlag(false))?;
    c.set_parameter(CParameter::ChecksumFlag(true))?;
    c.set_parameter(CParameter::ContentSizeFlag(false))?;
    Ok(c)
}

fn new_decompressor(dict: u8) -> Result<zstd::bulk::Decompressor<'static>, CodecError> {
    match dict {
        0 => zstd::bulk::Decompressor::new(),
        id => {
            let d = &dicts()
                .decoders
                .iter()
                .find(|(i, _)| *i == id)
                .ok_or(CodecError::UnknownDict(id))?
                .1;
            zstd::bulk::Decompressor::with_prepared_dictionary(d)
        }
    }
    .map_err(|e| CodecError::Corrupt(e.to_string()))
}

/// Packs `head ‖ payload` with `compression` (`None` for [`Compression::Off`]) in
/// [`FORMAT_SPLIT`], or [`FORMAT_ZSTD`] for JSON the split would not give back exactly (or
/// would make longer). The receive time is left 0, for [`set_received_ms`] once the writer
/// knows it.
pub fn pack(head: &[u8], payload: &[u8], compression: Compression) -> Option<Vec<u8>> {
    pack_as(head, payload, compression, FORMAT_SPLIT)
}

/// [`pack`] in `format` ([`FORMAT_ZSTD`] or [`FORMAT_SPLIT`]; the older format is kept for
/// tests and the benchmark's comparison).
pub fn pack_as(
    head: &[u8],
    payload: &[u8],
    compression: Compression,
    format: u8,
) -> Option<Vec<u8>> {
    let dict = compression.dict()?;
    let json_len = head.len() + payload.len();
    let mut joined = Vec::with_capacity(json_len);
    joined.extend_from_slice(head);
    joined.extend_from_slice(payload);
    let mut format = format;
    if format == FORMAT_SPLIT {
        let split = super::split::split(&joined);
        if split.len() <= json_len
            && super::split::join(&split, json_len).is_ok_and(|back| back == joined)
        {
            joined = split;
        } else {
            format = FORMAT_ZSTD;
        }
    }
    let bound = zstd::zstd_safe::compress_bound(joined.len());
    let mut out = vec![0u8; HEADER_LEN + bound];
    out[0] = format;
    out[1] = dict;
    out[10..14].copy_from_slice(&(head.len() as u32).to_le_bytes());
    out[14..18].copy_from_slice(&(json_len as u32).to_le_bytes());
    let written = COMPRESSORS.with(|cs| {
        let mut cs = cs.borrow_mut();
        let at = match cs.iter().position(|(i, _)| *i == dict) {
            Some(at) => at,
            None => {
                cs.push((dict, new_compressor(dict).ok()?));
                cs.len() - 1
            }
        };
        cs[at]
            .1
            .compress_to_buffer(&joined, &mut out[HEADER_LEN..])
            .ok()
    })?;
    out.truncate(HEADER_LEN + written);
    Some(out)
}

/// Writes the receive time into a packed value.
pub fn set_received_ms(packed: &mut [u8], received_ms: u64) {
    packed[2..10].copy_from_slice(&received_ms.to_le_bytes());
}

/// A packed value's pieces: its receive time, `head` and `payload` (one buffer, split at
/// the returned length).
pub fn unpack(value: &[u8]) -> Result<(u64, Vec<u8>, usize), CodecError> {
    let format = match value.first() {
        Some(&b @ (FORMAT_ZSTD | FORMAT_SPLIT)) => b,
        Some(&b) => return Err(CodecError::UnknownFormat(b)),
        None => return Err(CodecError::Truncated(0)),
    };
    if value.len() < HEADER_LEN {
        return Err(CodecError::Truncated(value.len()));
    }
    let dict = value[1];
    let received_ms = u64::from_le_bytes(value[2..10].try_into().expect("8 bytes"));
    let head_len = u32::from_le_bytes(value[10..14].try_into().expect("4 bytes")) as usize;
    let json_len = u32::from_le_bytes(value[14..18].try_into().expect("4 bytes")) as usize;
    if json_len > MAX_JSON {
        return Err(CodecError::TooLarge(json_len));
    }
    if head_len > json_len {
        return Err(CodecError::Corrupt(format!(
            "head of {head_len} bytes in {json_len}"
        )));
    }
    let mut out = Vec::with_capacity(json_len);
    DECOMPRESSORS.with(|ds| {
        let mut ds = ds.borrow_mut();
        let at = match ds.iter().position(|(i, _)| *i == dict) {
            Some(at) => at,
            None => {
                ds.push((dict, new_decompressor(dict)?));
                ds.len() - 1
            }
        };
        ds[at]
            .1
            .decompress_to_buffer(&value[HEADER_LEN..], &mut out)
            .map_err(|e| CodecError::Corrupt(e.to_string()))
    })?;
    if format == FORMAT_SPLIT {
        out = super::split::join(&out, json_len).map_err(|e| CodecError::Corrupt(e.to_string()))?;
    }
    if out.len() != json_len {
        return Err(CodecError::Corrupt(format!(
            "{} bytes decompressed, {json_len} expected",
            out.len()
        )));
    }
    Ok((received_ms, out, head_len))
}

/// The JSON of stored run `id` from its redb value: a plain value as it is, a packed one
/// decompressed and assembled ([`super::run::assemble`]).
pub fn stored_json(id: u64, value: &[u8]) -> Result<Cow<'_, [u8]>, CodecError> {
    if value.first() == Some(&b'{') {
        return Ok(Cow::Borrowed(value));
    }
    let (received_ms, joined, head_len) = unpack(value)?;
    let (head, payload) = joined.split_at(head_len);
    Ok(Cow::Owned(super::run::assemble(
        id,
        head,
        received_ms as i64,
        payload,
    )))
}

/// The JSON of stored run `id` from PostgreSQL's columns: plain pieces, or a packed
/// `payload` (with an empty `head`).
pub fn stored_json_pieces(
    id: u64,
    received_ms: i64,
    head: &[u8],
    payload: &[u8],
) -> Result<Vec<u8>, CodecError> {
    if matches!(payload.first(), Some(&(FORMAT_ZSTD | FORMAT_SPLIT))) {
        let (_, joined, head_len) = unpack(payload)?;
        let (head, payload) = joined.split_at(head_len);
        return Ok(super::run::assemble(id, head, received_ms, payload));
    }
    Ok(super::run::assemble(id, head, received_ms, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] =
        br#","organization":"o","repository":"o/r","workflow":"w","job":"j","run_id":"7""#;
    const PAYLOAD: &[u8] = br#"{"schema_version":1,"start_time":"2026-02-06T14:30:02.185Z","end_time":"2026-02-06T14:40:02.185Z","duration_seconds":600.0,"sample_count":600,"containers":[]}"#;

    fn plain(id: u64, ms: i64) -> Vec<u8> {
        super::super::run::assemble(id, HEAD, ms, PAYLOAD)
    }

    #[test]
    fn packed_rows_read_back_as_the_plain_json() {
        for c in [Compression::Zstd, Compression::ZstdDict] {
            let mut v = pack(HEAD, PAYLOAD, c).unwrap();
            set_received_ms(&mut v, 1_770_388_223_056);
            assert_eq!(v[0], FORMAT_ZSTD);
            assert_eq!(
                stored_json(42, &v).unwrap().as_ref(),
                plain(42, 1_770_388_223_056).as_slice()
            );
            assert_eq!(
                stored_json_pieces(42, 1_770_388_223_056, b"", &v).unwrap(),
                plain(42, 1_770_388_223_056)
            );
        }
        assert_eq!(pack(HEAD, PAYLOAD, Compression::Off), None);
    }

    #[test]
    fn both_packed_formats_read_back_as_the_plain_json() {
        let hist = "HISTfwAAAAMAAAAAAAAAAwAAAAAAAAABAAAAAAAAA+g/8AAAAAAAAAICAgIEBgg=";
        let payload = format!(
            r#"{{"schema_version":1,"h":{{"cpu":{{"scale":1000,"hdr_v2":"{hist}"}}}},"timeline":{{"cpu":[1,5,9,12,3],"max":[4,5,10,12,9]}},"containers":[]}}"#
        );
        for c in [Compression::Zstd, Compression::ZstdDict] {
            for format in [FORMAT_ZSTD, FORMAT_SPLIT] {
                let mut v = pack_as(HEAD, payload.as_bytes(), c, format).unwrap();
                assert_eq!(v[0], format);
                set_received_ms(&mut v, 9);
                let expected = super::super::run::assemble(5, HEAD, 9, payload.as_bytes());
                assert_eq!(stored_json(5, &v).unwrap().as_ref(), expected.as_slice());
                assert_eq!(stored_json_pieces(5, 9, b"", &v).unwrap(), expected);
            }
        }
        // Nothing to cut: the split would only be longer, so the text format is used.
        assert_eq!(
            pack(HEAD, PAYLOAD, Compression::Zstd).unwrap()[0],
            FORMAT_ZSTD
        );
    }

    #[test]
    fn plain_rows_read_unchanged() {
        let v = plain(3, 5);
        assert!(matches!(stored_json(3, &v).unwrap(), Cow::Borrowed(_)));
        assert_eq!(stored_json_pieces(3, 5, HEAD, PAYLOAD).unwrap(), v);
    }

    #[test]
    fn the_dictionary_makes_small_summaries_smaller() {
        let plain = pack(HEAD, PAYLOAD, Compression::Zstd).unwrap();
        let dict = pack(HEAD, PAYLOAD, Compression::ZstdDict).unwrap();
        assert!(
            dict.len() < plain.len(),
            "{} vs {}",
            dict.len(),
            plain.len()
        );
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let mut v = pack(HEAD, PAYLOAD, Compression::ZstdDict).unwrap();
        assert_eq!(stored_json(1, &[]), Err(CodecError::Truncated(0)));
        assert_eq!(stored_json(1, &v[..10]), Err(CodecError::Truncated(10)));
        assert_eq!(
            stored_json(1, b"\x07abc"),
            Err(CodecError::UnknownFormat(7))
        );
        let mut unknown = v.clone();
        unknown[1] = 200;
        assert_eq!(stored_json(1, &unknown), Err(CodecError::UnknownDict(200)));
        let mut huge = v.clone();
        huge[14..18].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            stored_json(1, &huge),
            Err(CodecError::TooLarge(_))
        ));
        let last = v.len() - 3;
        v[last] ^= 0xff;
        let err = stored_json(1, &v).unwrap_err();
        assert!(matches!(err, CodecError::Corrupt(_)), "{err}");
        assert!(
            err.to_string()
                .starts_with("stored run does not decompress")
        );
    }
}
