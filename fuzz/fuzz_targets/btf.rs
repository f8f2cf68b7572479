//! The BTF reader on arbitrary bytes: `Btf::parse`, then `member_offset` and
//! `prefix_through_typedef` with names taken from the input (so they can match the blob's
//! own strings).
//!
//! - Nothing panics, reads out of bounds (that would be a panic in safe Rust, or an ASan
//!   report), recurses without bound or hangs.
//! - A prefix cut by `prefix_through_typedef` parses, and cutting it again at the same
//!   typedef gives the same bytes.
#![no_main]

use collector::sources::btf::Btf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = Btf::parse(data) else {
        return;
    };
    let mut names = collector_fuzz::words(data, 8);
    names.extend([
        "task_struct",
        "se",
        "sum_exec_runtime",
        "btf_trace_sched_switch",
    ]);
    for name in &names {
        if let Ok(prefix) = btf.prefix_through_typedef(name) {
            let small = Btf::parse(&prefix).expect("a prefix of a parsed blob parses");
            assert_eq!(
                small.prefix_through_typedef(name).as_ref(),
                Ok(&prefix),
                "cutting a prefix again at {name:?} changes it"
            );
        }
        let _ = btf.member_offset(name, &[]);
        for a in &names {
            let _ = btf.member_offset(name, &[a]);
            for b in names.iter().take(4) {
                let _ = btf.member_offset(name, &[a, b]);
            }
        }
    }
});
