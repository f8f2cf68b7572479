//! Just enough of a BTF reader to find the byte offset of a (nested) struct member in the
//! kernel's `/sys/kernel/btf/vmlinux`.
//!
//! The eBPF program reads `task_struct.se.sum_exec_runtime` of an exiting task. Rust has no
//! CO-RE field relocations, so the loader finds the offset here and hands it to the program as
//! a read-only global. aya parses BTF too, but keeps its type accessors crate-private.
//! Pure: bytes in, offset out; unit-tested on a hand-built BTF blob.

use std::collections::HashMap;

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

#[derive(Clone, Copy, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Clone, Debug)]
enum Type {
    /// STRUCT or UNION: named members with bit offsets.
    Composite {
        members: Vec<Member>,
    },
    /// TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG: look through to `type_id`.
    Alias {
        type_id: u32,
    },
    Other,
}

/// A parsed BTF blob: types by id (index = id; id 0 is `void`) and the string section.
pub struct Btf<'a> {
    types: Vec<Type>,
    strings: &'a [u8],
    structs_by_name: HashMap<&'a str, u32>,
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

        let mut types = vec![Type::Other];
        let mut structs_by_name = HashMap::new();
        let mut at = 0;
        while at < type_data.len() {
            let id = types.len() as u32;
            let truncated = BtfError::Truncated(id);
            let name_off = u32_at(type_data, at).ok_or(truncated.clone())?;
            let info = u32_at(type_data, at + 4).ok_or(truncated.clone())?;
            let size_or_type = u32_at(type_data, at + 8).ok_or(truncated.clone())?;
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let (ty, extra) = match kind {
                4 | 5 => {
                    let mut members = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset = u32_at(type_data, m + 8).ok_or(truncated.clone())?;
                        members.push(Member {
                            name_off: u32_at(type_data, m).ok_or(truncated.clone())?,
                            type_id: u32_at(type_data, m + 4).ok_or(truncated.clone())?,
                            // With kind_flag the top 8 bits hold a bitfield size.
                            bit_offset: if kind_flag {
                                offset & 0xff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    if kind == 4
                        && let Some(name) = str_at(strings, name_off)
                        && !name.is_empty()
                    {
                        // Keep the first definition of a name, as the kernel's own lookups do.
                        structs_by_name.entry(name).or_insert(id);
                    }
                    (Type::Composite { members }, vlen * 12)
                }
                8 | 9 | 10 | 11 | 18 => (
                    Type::Alias {
                        type_id: size_or_type,
                    },
                    0,
                ),
                1 | 14 | 17 => (Type::Other, 4),
                3 => (Type::Other, 12),
                6 | 13 => (Type::Other, vlen * 8),
                15 | 19 => (Type::Other, vlen * 12),
                2 | 7 | 12 | 16 => (Type::Other, 0),
                kind => return Err(BtfError::UnknownKind { id, kind }),
            };
            at += extra;
            if at > type_data.len() {
                return Err(truncated);
            }
            types.push(ty);
        }
        Ok(Self {
            types,
            strings,
            structs_by_name,
        })
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
            bits += off;
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
        let Type::Composite { members, .. } = self.types.get(id as usize)? else {
            return None;
        };
        for m in members {
            let name = str_at(self.strings, m.name_off).unwrap_or("");
            if name == member {
                return Some((m.bit_offset, m.type_id));
            }
            if name.is_empty()
                && let Some((inner, ty)) = self.find_member(self.resolve(m.type_id), member)
            {
                return Some((m.bit_offset + inner, ty));
            }
        }
        None
    }

    /// Follows typedefs and qualifiers to the underlying type id (bounded against cycles).
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(Type::Alias { type_id }) => id = *type_id,
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
    fn parses_the_running_kernel_when_present() {
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            eprintln!("skipping: /sys/kernel/btf/vmlinux not readable");
            return;
        };
        let btf = Btf::parse(&data).unwrap();
        let off = btf
            .member_offset("task_struct", &["se", "sum_exec_runtime"])
            .unwrap();
        assert!(off > 0 && off.is_multiple_of(8), "offset {off}");
    }
}
