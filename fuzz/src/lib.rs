//! What the fuzz targets share: turning bytes into text, and a BTF blob builder.
//!
//! Each target is one file in `fuzz_targets/`; its module docs say what it checks.

use std::borrow::Cow;

/// The input as text: UTF-8 as is, anything else lossily (the readers get `String`s, so a
/// parser only ever sees valid UTF-8).
pub fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// The BTF magic, little-endian.
pub const BTF_MAGIC: u16 = 0xeb9f;

/// Builds a little-endian BTF blob: a 24-byte header, the type section, the string section.
/// The same layout as the unit tests' builder in `collector/src/sources/btf.rs`.
#[derive(Default)]
pub struct BtfBuilder {
    strings: Vec<u8>,
    types: Vec<u8>,
}

impl BtfBuilder {
    pub fn new() -> Self {
        Self {
            strings: vec![0],
            types: Vec::new(),
        }
    }

    /// Appends a string and returns its offset; the empty string is offset 0.
    pub fn str(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    /// Appends one type record: `name_off`, `info`, `size_or_type`, then trailing words.
    pub fn raw(&mut self, name_off: u32, info: u32, size_or_type: u32, extra: &[u32]) {
        for w in [name_off, info, size_or_type].iter().chain(extra) {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
    }

    /// Appends one type record of `kind` with `vlen` (and the kind flag).
    pub fn ty(
        &mut self,
        kind: u32,
        kind_flag: bool,
        name: &str,
        vlen: u16,
        sot: u32,
        extra: &[u32],
    ) {
        let name_off = self.str(name);
        let info = (u32::from(kind_flag) << 31) | ((kind & 0x1f) << 24) | u32::from(vlen);
        self.raw(name_off, info, sot, extra);
    }

    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.types.len() + self.strings.len());
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        let types = self.types.len() as u32;
        for w in [24u32, 0, types, types, self.strings.len() as u32] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend(self.types);
        out.extend(self.strings);
        out
    }
}

/// Up to `max` distinct names in `data`: runs of printable ASCII between NULs or spaces,
/// taken from the end first (a BTF blob's string section is its tail), so that lookups in a
/// fuzzed BTF blob can hit the names the blob defines.
pub fn words(data: &[u8], max: usize) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for piece in data.rsplit(|b| *b == 0 || b.is_ascii_whitespace()) {
        if out.len() == max {
            break;
        }
        if !piece.is_empty() && piece.len() <= 64 && piece.iter().all(u8::is_ascii_graphic) {
            // Printable ASCII is UTF-8.
            let w = std::str::from_utf8(piece).unwrap();
            if !out.contains(&w) {
                out.push(w);
            }
        }
    }
    out
}
