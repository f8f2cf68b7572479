//! The BTF reader on well-formed blobs built from a structured description (`arbitrary`):
//! structs and unions with (anonymous) members, typedefs and qualifiers, and every other kind
//! the reader knows, with names from a small pool so that lookups hit. Deep paths that raw
//! bytes rarely reach: nested anonymous members, alias chains, bit offsets.
//!
//! - A blob of known kinds with consistent lengths always parses.
//! - `member_offset` and `prefix_through_typedef` never panic, overflow, recurse without
//!   bound or hang, whatever the member types point at (cycles included).
//! - A member found directly in a struct (not through an anonymous one) has the offset its
//!   record says, when that offset is byte-aligned.
#![no_main]

use arbitrary::Arbitrary;
use collector::sources::btf::{Btf, BtfError};
use collector_fuzz::BtfBuilder;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 8] = [
    "",
    "task_struct",
    "se",
    "sum_exec_runtime",
    "btf_trace_sched_switch",
    "a",
    "b",
    "sched_entity",
];

fn name(i: u8) -> &'static str {
    NAMES[usize::from(i) % NAMES.len()]
}

#[derive(Arbitrary, Debug)]
struct Member {
    name: u8,
    /// Type id (may point anywhere, including past the last type, or at its own struct).
    type_id: u8,
    /// Bit offset; with the kind flag the top 8 bits are a bitfield size.
    offset: u32,
}

#[derive(Arbitrary, Debug)]
enum Alias {
    Typedef,
    Volatile,
    Const,
    Restrict,
    TypeTag,
}

#[derive(Arbitrary, Debug)]
enum Type {
    Int {
        name: u8,
        bits: u32,
    },
    Ptr {
        target: u8,
    },
    Array {
        elem: u8,
        len: u32,
    },
    Composite {
        union: bool,
        kind_flag: bool,
        name: u8,
        size: u32,
        members: Vec<Member>,
    },
    Alias {
        kind: Alias,
        name: u8,
        target: u8,
    },
    /// ENUM (6) or FUNC_PROTO (13): `vlen` 8-byte entries.
    Pairs {
        func_proto: bool,
        vlen: u8,
    },
    /// FUNC (12), FWD (7), FLOAT (16): no trailing data.
    Bare {
        kind: u8,
    },
    /// VAR (14), DECL_TAG (17): one trailing word.
    OneWord {
        decl_tag: bool,
    },
    /// DATASEC (15), ENUM64 (19): `vlen` 12-byte entries.
    Triples {
        enum64: bool,
        vlen: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    types: Vec<Type>,
    queries: Vec<(u8, Vec<u8>)>,
}

fn build(types: &[Type]) -> Vec<u8> {
    let mut b = BtfBuilder::new();
    for t in types {
        match t {
            Type::Int { name: n, bits } => b.ty(1, false, name(*n), 0, 8, &[*bits]),
            Type::Ptr { target } => b.ty(2, false, "", 0, u32::from(*target), &[]),
            Type::Array { elem, len } => b.ty(3, false, "", 0, 0, &[u32::from(*elem), 1, *len]),
            Type::Composite {
                union,
                kind_flag,
                name: n,
                size,
                members,
            } => {
                let members = &members[..members.len().min(64)];
                let mut extra = Vec::with_capacity(members.len() * 3);
                for m in members {
                    let off = b.str(name(m.name));
                    extra.extend([off, u32::from(m.type_id), m.offset]);
                }
                let kind = if *union { 5 } else { 4 };
                b.ty(
                    kind,
                    *kind_flag,
                    name(*n),
                    members.len() as u16,
                    *size,
                    &extra,
                );
            }
            Type::Alias {
                kind,
                name: n,
                target,
            } => {
                let kind = match kind {
                    Alias::Typedef => 8,
                    Alias::Volatile => 9,
                    Alias::Const => 10,
                    Alias::Restrict => 11,
                    Alias::TypeTag => 18,
                };
                b.ty(kind, false, name(*n), 0, u32::from(*target), &[]);
            }
            Type::Pairs { func_proto, vlen } => {
                let kind = if *func_proto { 13 } else { 6 };
                b.ty(
                    kind,
                    false,
                    "",
                    u16::from(*vlen),
                    4,
                    &vec![0; usize::from(*vlen) * 2],
                );
            }
            Type::Bare { kind } => {
                let kind = [7, 12, 16][usize::from(*kind) % 3];
                b.ty(kind, false, "a", 0, 0, &[]);
            }
            Type::OneWord { decl_tag } => {
                b.ty(if *decl_tag { 17 } else { 14 }, false, "b", 0, 1, &[0]);
            }
            Type::Triples { enum64, vlen } => {
                let kind = if *enum64 { 19 } else { 15 };
                b.ty(
                    kind,
                    false,
                    "",
                    u16::from(*vlen),
                    0,
                    &vec![0; usize::from(*vlen) * 3],
                );
            }
        }
    }
    b.finish()
}

fuzz_target!(|input: Input| {
    let data = build(&input.types);
    let btf = Btf::parse(&data).expect("a well-formed blob parses");
    for (struct_name, path) in input.queries.iter().take(16) {
        let path: Vec<&str> = path.iter().take(6).map(|i| name(*i)).collect();
        let _ = btf.member_offset(name(*struct_name), &path);
        let _ = btf.prefix_through_typedef(name(*struct_name));
    }
    // A direct member: the offset of its record (the first struct of that name wins, and
    // within it the first member of that name, unless an anonymous member before it has one).
    let first_struct = input.types.iter().find(
        |t| matches!(t, Type::Composite { union: false, name: n, .. } if !name(*n).is_empty()),
    );
    let Some(Type::Composite {
        kind_flag: false,
        name: n,
        members,
        ..
    }) = first_struct
    else {
        return;
    };
    let struct_name = name(*n);
    for m in members.iter().take(64) {
        let member = name(m.name);
        if member.is_empty() {
            // Anonymous members are searched in place; stop at the first one, since it may
            // hold a later member's name.
            break;
        }
        if members
            .iter()
            .take_while(|o| !std::ptr::eq(*o, m))
            .any(|o| name(o.name) == member)
        {
            continue;
        }
        let got = btf.member_offset(struct_name, &[member]);
        if m.offset % 8 == 0 {
            assert_eq!(got, Ok(m.offset / 8), "{struct_name}.{member}");
        } else {
            assert_eq!(got, Err(BtfError::Unaligned(member.to_owned())));
        }
    }
});
