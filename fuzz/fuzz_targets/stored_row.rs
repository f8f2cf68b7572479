//! Stored rows as the store reads them back (`receiver::store::codec`): any bytes in a redb
//! value or a PostgreSQL payload, and any pieces packed then unpacked.
//!
//! What must hold:
//! - decoding arbitrary bytes never panics, and never allocates more than the format's
//!   bound: it gives the JSON or an error;
//! - a plain value (starting with `{`) reads back as itself;
//! - packing `head` and `payload` with either compression, in either packed format, and
//!   reading the row back gives exactly the JSON an uncompressed row of the same run gives;
//! - the split of any bytes joins back to them, and joining arbitrary bytes never builds
//!   more than it is allowed.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use receiver::store::Compression;
use receiver::store::codec::{
    FORMAT_SPLIT, FORMAT_ZSTD, pack_as, set_received_ms, stored_json, stored_json_pieces,
};
use receiver::store::split;

#[derive(Arbitrary, Debug)]
struct Input {
    raw: Vec<u8>,
    head: Vec<u8>,
    payload: Vec<u8>,
    id: u64,
    received_ms: u32,
    dictionary: bool,
    split: bool,
    limit: u16,
}

fuzz_target!(|input: Input| {
    let decoded = stored_json(input.id, &input.raw);
    if input.raw.first() == Some(&b'{') {
        assert_eq!(decoded.unwrap().as_ref(), input.raw.as_slice());
    }
    let _ = stored_json_pieces(input.id, 0, b"", &input.raw);
    if let Ok(joined) = split::join(&input.raw, usize::from(input.limit)) {
        assert!(joined.len() <= usize::from(input.limit));
    }
    let joined = [input.head.as_slice(), &input.payload].concat();
    assert_eq!(
        split::join(&split::split(&joined), usize::MAX).unwrap(),
        joined
    );
    if matches!(input.payload.first(), Some(&(FORMAT_ZSTD | FORMAT_SPLIT))) {
        // Not a summary's JSON (which starts with `{`): plain pieces cannot start so.
        return;
    }
    let compression = if input.dictionary {
        Compression::ZstdDict
    } else {
        Compression::Zstd
    };
    let format = if input.split {
        FORMAT_SPLIT
    } else {
        FORMAT_ZSTD
    };
    let mut packed = pack_as(&input.head, &input.payload, compression, format).expect("packs");
    let ms = u64::from(input.received_ms);
    set_received_ms(&mut packed, ms);
    let plain = stored_json_pieces(input.id, ms as i64, &input.head, &input.payload)
        .expect("plain pieces read");
    assert_eq!(
        stored_json(input.id, &packed).unwrap().as_ref(),
        plain.as_slice()
    );
    assert_eq!(
        stored_json_pieces(input.id, ms as i64, b"", &packed).unwrap(),
        plain
    );
});
