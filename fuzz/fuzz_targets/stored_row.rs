//! Stored rows as the store reads them back (`receiver::store::codec`): any bytes in a redb
//! value or a PostgreSQL payload, and any pieces packed then unpacked.
//!
//! What must hold:
//! - decoding arbitrary bytes never panics, and never allocates more than the format's
//!   bound: it gives the JSON or an error;
//! - a plain value (starting with `{`) reads back as itself;
//! - packing `head` and `payload` with either compression and reading the row back gives
//!   exactly the JSON an uncompressed row of the same run gives.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use receiver::store::Compression;
use receiver::store::codec::{FORMAT_ZSTD, pack, set_received_ms, stored_json, stored_json_pieces};

#[derive(Arbitrary, Debug)]
struct Input {
    raw: Vec<u8>,
    head: Vec<u8>,
    payload: Vec<u8>,
    id: u64,
    received_ms: u32,
    dictionary: bool,
}

fuzz_target!(|input: Input| {
    let decoded = stored_json(input.id, &input.raw);
    if input.raw.first() == Some(&b'{') {
        assert_eq!(decoded.unwrap().as_ref(), input.raw.as_slice());
    }
    let _ = stored_json_pieces(input.id, 0, b"", &input.raw);
    if input.payload.first() == Some(&FORMAT_ZSTD) {
        // Not a summary's JSON (which starts with `{`): plain pieces cannot start so.
        return;
    }
    let compression = if input.dictionary {
        Compression::ZstdDict
    } else {
        Compression::Zstd
    };
    let mut packed = pack(&input.head, &input.payload, compression).expect("packs");
    let ms = u64::from(input.received_ms);
    set_received_ms(&mut packed, ms);
    let plain = stored_json_pieces(input.id, ms as i64, &input.head, &input.payload)
        .expect("plain pieces read");
    assert_eq!(stored_json(input.id, &packed).unwrap().as_ref(), plain.as_slice());
    assert_eq!(
        stored_json_pieces(input.id, ms as i64, b"", &packed).unwrap(),
        plain
    );
});
