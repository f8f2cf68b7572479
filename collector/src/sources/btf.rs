//! Just enough of a BTF reader to find the byte offset of a (nested) struct member in the
//! kernel's `/sys/kernel/btf/vmlinux`.
//!
//! The eBPF program reads `task_struct.se.sum_exec_runtime` of an exiting task. Rust has no
//! CO-RE field relocations, so the loader finds the offset here and hands it to the program as
//! a read-only global. aya parses BTF too, but keeps its type accessors crate-private.
//! Pure: bytes in, offset out; unit-tested on a hand-built BTF blob.

use std::collections::{HashMap, HashSet};

const BTF_MAGIC: u16 = 0xeb9f;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not a BTF blob (bad magic or truncated header)")]
    BadHeader,
    #[error("BTF type section is truncated or malformed at type #{0}")]
    Truncated(u32),
    #[error("BTF kind {kind} of type #{id} is unknown to this reader")]
    UnknownKind { id: u32, kind: u32 },
    #[error("struct `{0}` not found in BTF")]
    NoStruct(String),
    #[error("member `{member}` not found in `{ty}`")]
    NoMember { ty: String, member: String },
    #[error("member `{0}` is a bitfield or not byte-aligned")]
    Unaligned(String),
}

/// A parsed BTF blob, indexed lazily: for each type id only the byte offset of its record
/// is kept (members are decoded when asked for), so the 6 MB of vmlinux BTF cost little more
/// than the file itself.
pub struct Btf<'a> {
    /// Byte offset of each type's record in `types` (index = id; id 0 is `void`).
    offsets: Vec<u32>,
    types: &'a [u8],
    strings: &'a [u8],
    structs_by_name: HashMap<&'a str, u32>,
}

/// Anonymous structs and unions nested deeper than this are not searched (the kernel's
/// `task_struct` nests two).
const MAX_ANONYMOUS_DEPTH: u32 = 16;

const STRUCT: u32 = 4;
const UNION: u32 = 5;

/// Whether a kind only qualifies or renames another type (TYPEDEF, VOLATILE, CONST,
/// RESTRICT, TYPE_TAG).
fn is_alias(kind: u32) -> bool {
    matches!(kind, 8 | 9 | 10 | 11 | 18)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Btf<'a> {
    /// Parses a little-endian BTF blob (the only kind an x86_64 or arm64 kernel exports).
    pub fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        if u16_at(data, 0) != Some(BTF_MAGIC) {
            return Err(BtfError::BadHeader);
        }
        let field = |at| u32_at(data, at).ok_or(BtfError::BadHeader);
        let hdr_len = field(4)? as usize;
        let (type_off, type_len) = (field(8)? as usize, field(12)? as usize);
        let (str_off, str_len) = (field(16)? as usize, field(20)? as usize);
        let section = |off: usize, len: usize| {
            data.get(hdr_len + off..hdr_len + off + len)
                .ok_or(BtfError::BadHeader)
        };
        let type_data = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;

        let mut offsets = vec![0];
        let mut structs_by_name = HashMap::new();
        let mut at = 0;
        while at < type_data.len() {
            let id = offsets.len() as u32;
            let truncated = BtfError::Truncated(id);
            let name_off = u32_at(type_data, at).ok_or(truncated.clone())?;
            let info = u32_at(type_data, at + 4).ok_or(truncated.clone())?;
            u32_at(type_data, at + 8).ok_or(truncated.clone())?;
            offsets.push(at as u32);
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let extra = match kind {
                STRUCT | UNION => vlen * 12,
                k if is_alias(k) => 0,
                1 | 14 | 17 => 4,
                3 => 12,
                6 | 13 => vlen * 8,
                15 | 19 => vlen * 12,
                2 | 7 | 12 | 16 => 0,
                kind => return Err(BtfError::UnknownKind { id, kind }),
            };
            if kind == STRUCT
                && let Some(name) = str_at(strings, name_off)
                && !name.is_empty()
            {
                // Keep the first definition of a name, as the kernel's own lookups do.
                structs_by_name.entry(name).or_insert(id);
            }
            at += 12 + extra;
            if at > type_data.len() {
                return Err(truncated);
            }
        }
        Ok(Self {
            offsets,
            types: type_data,
            strings,
            structs_by_name,
        })
    }

    /// A BTF blob holding only the types up to and including the typedef `name`, with the
    /// string section whole: every type keeps its id, so `name` resolves to the kernel's own
    /// id, at a fraction of the parsing cost.
    ///
    /// aya's `BtfTracePoint::load` needs the kernel BTF only to look up the id of
    /// `btf_trace_<tracepoint>`. A full parse of vmlinux costs ~10 MB more at the start-up
    /// peak than this prefix (`cargo xtask bench collector`: 41 → 32 MB). The rest of the
    /// peak is aya 0.14's own: `EbpfLoader::new()` always parses the full kernel BTF.
    pub fn prefix_through_typedef(&self, name: &str) -> Result<Vec<u8>, BtfError> {
        const TYPEDEF: u32 = 8;
        let id = (1..self.offsets.len() as u32)
            .find(|id| {
                self.header(*id).is_some_and(|(kind, ..)| kind == TYPEDEF)
                    && u32_at(self.types, self.offsets[*id as usize] as usize)
                        .and_then(|off| str_at(self.strings, off))
                        == Some(name)
            })
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))?;
        // The typedef's record is 12 bytes with no trailing data.
        let end = self.offsets[id as usize] as usize + 12;
        let mut out = Vec::with_capacity(24 + end + self.strings.len());
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [24u32, 0, end as u32, end as u32, self.strings.len() as u32] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&self.types[..end]);
        out.extend_from_slice(self.strings);
        Ok(out)
    }

    /// (kind, vlen, kind_flag, size_or_type, offset of the trailing data) of type `id`.
    fn header(&self, id: u32) -> Option<(u32, usize, bool, u32, usize)> {
        let at = *self.offsets.get(id as usize)? as usize;
        let info = u32_at(self.types, at + 4)?;
        let size_or_type = u32_at(self.types, at + 8)?;
        Some((
            (info >> 24) & 0x1f,
            (info & 0xffff) as usize,
            info >> 31 == 1,
            size_or_type,
            at + 12,
        ))
    }

    /// Byte offset of `path` (e.g. `["se", "sum_exec_runtime"]`) inside struct `name`.
    /// Members of anonymous structs and unions are found as the C compiler would.
    pub fn member_offset(&self, name: &str, path: &[&str]) -> Result<u32, BtfError> {
        let mut id = *self
            .structs_by_name
            .get(name)
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))?;
        let mut ty_name = name.to_owned();
        let mut bits = 0u32;
        for member in path {
            let (off, member_type) =
                self.find_member(id, member)
                    .ok_or_else(|| BtfError::NoMember {
                        ty: ty_name.clone(),
                        member: (*member).to_owned(),
                    })?;
            // A corrupt offset could overflow (found by fuzzing): no such member, then.
            bits = bits.checked_add(off).ok_or_else(|| BtfError::NoMember {
                ty: ty_name.clone(),
                member: (*member).to_owned(),
            })?;
            id = self.resolve(member_type);
            ty_name = (*member).to_owned();
        }
        if !bits.is_multiple_of(8) {
            return Err(BtfError::Unaligned(path.join(".")));
        }
        Ok(bits / 8)
    }

    /// (bit offset, type id) of `member` in composite `id`, searching anonymous members.
    fn find_member(&self, id: u32, member: &str) -> Option<(u32, u32)> {
        let mut searched = HashSet::new();
        self.find_member_within(id, member, MAX_ANONYMOUS_DEPTH, &mut searched)
    }

    /// [`Btf::find_member`], descending at most `depth` anonymous members and searching each
    /// composite once: a malformed (or hostile) BTF can nest a struct in itself, which must
    /// not overflow the stack, or in itself many times over, which must not take exponential
    /// time (both found by fuzzing). A type searched once without the member cannot have it
    /// on another path either.
    fn find_member_within(
        &self,
        id: u32,
        member: &str,
        depth: u32,
        searched: &mut HashSet<u32>,
    ) -> Option<(u32, u32)> {
        if !searched.insert(id) {
            return None;
        }
        let (kind, vlen, kind_flag, _, data) = self.header(id)?;
        if kind != STRUCT && kind != UNION {
            return None;
        }
        for i in 0..vlen {
            let m = data + i * 12;
            let name = str_at(self.strings, u32_at(self.types, m)?).unwrap_or("");
            let type_id = u32_at(self.types, m + 4)?;
            let offset = u32_at(self.types, m + 8)?;
            // With kind_flag the top 8 bits hold a bitfield size.
            let bit_offset = if kind_flag {
                offset & 0xff_ffff
            } else {
                offset
            };
            if name == member {
                return Some((bit_offset, type_id));
            }
            if name.is_empty()
                && depth > 0
                && let Some((inner, ty)) =
                    self.find_member_within(self.resolve(type_id), member, depth - 1, searched)
            {
                return Some((bit_offset.checked_add(inner)?, ty));
            }
        }
        None
    }

    /// Follows typedefs and qualifiers to the underlying type id (bounded against cycles).
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.header(id) {
                Some((kind, _, _, target, _)) if is_alias(kind) => id = target,
                _ => break,
            }
        }
        id
    }
}

fn str_at(strings: &[u8], off: u32) -> Option<&str> {
    let rest = strings.get(off as usize..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a BTF blob: strings and (kind, name, vlen, size_or_type, trailing words).
    pub(crate) struct Builder {
        strings: Vec<u8>,
        types: Vec<u8>,
    }

    impl Builder {
        pub(crate) fn new() -> Self {
            Self {
                strings: vec![0],
                types: Vec::new(),
            }
        }
        pub(crate) fn str(&mut self, s: &str) -> u32 {
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }
        pub(crate) fn ty(&mut self, kind: u32, name: &str, vlen: u32, sot: u32, extra: &[u32]) {
            let name_off = if name.is_empty() { 0 } else { self.str(name) };
            for w in [name_off, (kind << 24) | vlen, sot].iter().chain(extra) {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
        }
        pub(crate) fn finish(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for w in [24u32, 0, self.types.len() as u32, self.types.len() as u32] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&(self.strings.len() as u32).to_le_bytes());
            out.extend(self.types);
            out.extend(self.strings);
            out
        }
    }

    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        // #1 u64 (INT)
        b.ty(1, "u64", 0, 8, &[64]);
        // #2 struct sched_entity { u64 load; u64 sum_exec_runtime; }
        let (load, sum) = (b.str("load"), b.str("sum_exec_runtime"));
        b.ty(4, "sched_entity", 2, 16, &[load, 1, 0, sum, 1, 64]);
        // #3 typedef se_t = struct sched_entity
        b.ty(8, "se_t", 0, 2, &[]);
        // #4 anonymous struct { int pad; se_t se; } placed at byte 16 of task_struct
        let (pad, se) = (b.str("pad"), b.str("se"));
        b.ty(4, "", 2, 24, &[pad, 1, 0, se, 3, 64]);
        // #5 struct task_struct { u64 state; u64 flags; <anon #4>; }
        let (state, flags) = (b.str("state"), b.str("flags"));
        b.ty(
            4,
            "task_struct",
            3,
            40,
            &[state, 1, 0, flags, 1, 64, 0, 4, 128],
        );
        // #6 FUNC_PROTO with 2 params, to check skipping of trailing data
        b.ty(13, "", 2, 0, &[0, 1, 0, 1]);
        // #7 struct with a bitfield member (kind_flag set)
        let bf = b.str("bits");
        b.ty(4 | 0x80, "bitty", 1, 8, &[bf, 1, (3 << 24) | 5]);
        b.finish()
    }

    #[test]
    fn a_struct_nested_in_itself_is_not_searched_forever() {
        // Found by fuzzing: #1 struct loop { <anonymous member of type #1> } overflowed the
        // stack.
        let mut b = Builder::new();
        b.ty(4, "loop", 1, 8, &[0, 1, 0]);
        let data = b.finish();
        let btf = Btf::parse(&data).unwrap();
        assert!(btf.member_offset("loop", &["missing"]).is_err());
    }

    #[test]
    fn a_struct_nested_in_itself_many_times_is_searched_once() {
        // Found by fuzzing: a struct with many anonymous members of its own type took
        // vlen^depth steps (a hang) before each composite was searched once.
        let mut b = Builder::new();
        let members: Vec<u32> = (0..1000).flat_map(|i| [0, 1, i * 8]).collect();
        b.ty(4, "fan", 1000, 8, &members);
        let data = b.finish();
        let btf = Btf::parse(&data).unwrap();
        let started = std::time::Instant::now();
        assert!(btf.member_offset("fan", &["missing"]).is_err());
        // Once per composite is 1,000 member reads; the old search did 1000^16.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn finds_nested_member_through_anonymous_struct_and_typedef() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        // 16 (anon) + 8 (se in anon) + 8 (sum_exec_runtime in se)
        assert_eq!(
            btf.member_offset("task_struct", &["se", "sum_exec_runtime"])
                .unwrap(),
            32
        );
        assert_eq!(btf.member_offset("task_struct", &["flags"]).unwrap(), 8);
    }

    #[test]
    fn prefix_keeps_ids_up_to_the_typedef() {
        let mut b = Builder::new();
        b.ty(1, "u64", 0, 8, &[64]); // #1
        b.ty(8, "btf_trace_x", 0, 1, &[]); // #2
        b.ty(1, "later", 0, 8, &[64]); // #3
        let data = b.finish();
        let btf = Btf::parse(&data).unwrap();
        let prefix = btf.prefix_through_typedef("btf_trace_x").unwrap();
        let small = Btf::parse(&prefix).unwrap();
        assert_eq!(small.offsets.len(), 3); // void, #1, #2
        assert!(prefix.len() < data.len());
        assert!(btf.prefix_through_typedef("btf_trace_nope").is_err());
    }

    #[test]
    fn reports_missing_struct_member_and_unaligned() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(
            btf.member_offset("nope", &["x"]),
            Err(BtfError::NoStruct("nope".into()))
        );
        assert!(matches!(
            btf.member_offset("task_struct", &["se", "nothing"]),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("bitty", &["bits"]),
            Err(BtfError::Unaligned(_))
        ));
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert_eq!(Btf::parse(b"hello").err(), Some(BtfError::BadHeader));
        let mut data = sample();
        // Cut the type section short by claiming a longer one than exists.
        data.truncate(30);
        assert!(Btf::parse(&data).is_err());
    }

    #[test]
    fn parses_the_running_kernel() {
        let data = std::fs::read("/sys/kernel/btf/vmlinux");
        let readable = data.as_ref().map(drop).map_err(|e| e.to_string());
        if !testkit::require("reads the kernel's BTF (/sys/kernel/btf/vmlinux)", readable) {
            return;
        }
        let data = data.unwrap();
        let btf = Btf::parse(&data).unwrap();
        let prefix = btf
            .prefix_through_typedef("btf_trace_sched_switch")
            .unwrap();
        // aya reads it (the eBPF tests then attach with it, which proves the id is right).
        aya::Btf::parse(&prefix, aya::Endianness::Little).unwrap();
        assert!(prefix.len() < data.len());
        let off = btf
            .member_offset("task_struct", &["se", "sum_exec_runtime"])
            .unwrap();
        assert!(off > 0 && off.is_multiple_of(8), "offset {off}");
    }
}
