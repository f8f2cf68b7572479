//! `touch-memory MB SECONDS`: allocates MB MiB, writes every page (so each is resident),
//! holds them for SECONDS, exits. The memory-peak tests' workload: its own baseline is a
//! few hundred KiB, where an interpreter's would spoil a 5 % bound.

use std::{process::ExitCode, time::Duration};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [mb, secs] => mb.parse::<usize>().ok().zip(secs.parse::<f64>().ok()),
        _ => None,
    };
    let Some((mb, secs)) = parsed.filter(|(_, s)| s.is_finite() && *s >= 0.0) else {
        eprintln!("usage: touch-memory MB SECONDS");
        return ExitCode::from(2);
    };
    let Some(len) = mb.checked_mul(1 << 20) else {
        eprintln!("{mb} MiB is more than this machine can address");
        return ExitCode::from(2);
    };
    let mut block = Vec::<u8>::new();
    if block.try_reserve_exact(len).is_err() {
        eprintln!("cannot allocate {mb} MiB");
        return ExitCode::from(1);
    }
    // Reserved pages are not resident until written: this writes every byte of every one.
    block.resize(len, 1);
    std::hint::black_box(&block);
    std::thread::sleep(Duration::from_secs_f64(secs));
    std::hint::black_box(&block);
    ExitCode::SUCCESS
}
